"""CapacityTracker: the live view of workers — load per resource, health and EWMA performance.

The tracker is where placements are recorded (``assign`` / ``release``) and
where a balancer's choices come from (``candidates(task)``): the workers that
are available, have the skills, and have room. Each worker is seen through a
:class:`WorkerState`, a read-only view the tracker keeps up to date.
"""

from __future__ import annotations

import enum
import itertools
import math
import random
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from fractions import Fraction
from typing import Any, Final, Literal, TypeVar

import attrs

from taskdist._snapshot import (
    SNAPSHOT_VERSION,
    Fields,
    check_header,
    decode_key,
    encode_key,
    header,
    one_of,
    refuse,
)
from taskdist._validate import check_choice, check_int, check_number, check_optional_number
from taskdist.clock import Clock, check_clock
from taskdist.errors import (
    DuplicateTaskError,
    DuplicateWorkerError,
    InvalidArgumentError,
    InvalidTypeError,
    ReentrancyError,
    UnknownTaskError,
    UnknownWorkerError,
    WorkerFullError,
    WorkerUnavailableError,
)
from taskdist.metrics import coefficient_of_variation
from taskdist.task import Task, Worker
from taskdist.workers._load_index import PURE_KEYS, LoadIndex, LoadKey
from taskdist.workers._outcomes import RAMP_STEPS, Outcomes
from taskdist.workers._ranges import MAX_SECONDS, check_capacity, check_weight
from taskdist.workers.health import Health, HealthPolicy, OutlierEjection, SlowStart
from taskdist.workers.state import CandidateList, Demand, WorkerState, demand_of, nonzero

__all__ = [
    "CapacityTracker",
    "DegradedPolicy",
    "LoadKey",
    "WorkerFilter",
    "WorkerState",
    "demand_of",
]

DegradedPolicy = Literal["fallback", "include", "exclude"]
"""The ``degraded=`` of :class:`CapacityTracker`: when ``DEGRADED`` workers are candidates."""
_DEGRADED_POLICIES: tuple[DegradedPolicy, ...] = ("fallback", "include", "exclude")

WorkerFilter = Callable[[WorkerState], bool]
"""A host's extra test of a worker (e.g. "its circuit breaker is not open").

It must be side-effect free: it may be asked about any number of workers,
in any order, and only about workers that otherwise qualify. It may read
the ``WorkerState`` it is given (and ``len``, ``in``, ``tasks_on`` and
``degraded`` of the tracker); any other call back into the tracker running
it (``assign``, ``release``, ``add_worker``, a query...) raises
:class:`~taskdist.errors.ReentrancyError` and changes nothing, and the
error propagates out of the query that ran the filter. A query whose filter
raises leaves the tracker as it was; only the draws :meth:`CapacityTracker.sample`
made from its ``rng`` before then stay drawn (a random generator's state is
not rolled back)."""

_R = TypeVar("_R")

_DEFAULT_HEALTH: Final = HealthPolicy()
_DEFAULT_EJECTION: Final = OutlierEjection()


class _Unset(enum.Enum):
    UNSET = "unset"


_UNSET: Final = _Unset.UNSET
_HEALTHY: Final = Health.HEALTHY
_DEGRADED: Final = Health.DEGRADED
_UNAVAILABLE: Final = Health.UNAVAILABLE
# Outcomes.next_due while no ejection or slow-start ramp waits for a time: then
# _refresh has nothing to lift, whatever the clock says, and need not read it.
_NEVER: Final = math.inf
_ONE_SLOT: Final[Demand] = (("slots", 1.0),)

_NO_SKILLS: Final[frozenset[str]] = frozenset()
# The snapshot format: 2 added ``config`` (EWMA, health, ejection, slow start), checked
# on load; a version 1 snapshot, without it, still loads (its configuration unchecked).
_VERSION: Final = 2
_VERSIONS: Final = (SNAPSHOT_VERSION, _VERSION)
# How far a restored load may be from the sum of its tasks' demands, relative to the
# amounts involved: what adding and taking off demands in another order leaves.
_LOAD_TOLERANCE: Final = 1e-9
# Load indexes kept at once, one per key asked for (a fifth drops the oldest).
_MAX_INDEXES: Final = 4
# Indexes of the workers with a set of skills, one per (key, skills) asked for; past
# this many, tasks asking for other skill sets walk the key's index of every worker.
_MAX_SKILL_INDEXES: Final = 16


class CapacityTracker:
    """The live view of workers: load per resource, health, EWMA performance.

    **Load.** ``assign(task, worker_id)`` adds the task's demand
    (:func:`demand_of`: ``task.resources``, ``"slots"`` defaulting to 1) to
    the worker's load; ``release`` takes it off. A placement that does not fit
    the worker's free capacity in every resource is refused. A worker lacking
    a resource that other workers have has none of it: give
    ``Worker(capacity={"slots": 4, "gpu": 2})``, not ``{"gpu": 2}``, to a
    worker meant to run ordinary tasks too. A resource that no worker's
    capacity has ever named (an API's ``"api_calls"``, read by a rate gate)
    is not the workers' to give, and placement ignores it.

    **Health** is the worst of the host's word (:meth:`set_health`), the
    outcomes (a :class:`~taskdist.workers.health.HealthPolicy` on the EWMA error rate
    and latency: ``DEGRADED``), and outlier ejection (an
    :class:`~taskdist.workers.health.OutlierEjection`: ``UNAVAILABLE`` for a growing
    interval after consecutive failures, never more than
    ``max_ejection_percent`` of the workers at once). Ejections end on their
    own; :meth:`next_wakeup` says when the next one does.

    **Performance.** Each ``release`` may report a duration and an outcome;
    the tracker keeps their EWMA per worker (``alpha``, optionally decaying
    with time since that average's previous sample: ``ewma_half_life``; a
    failure reported without a duration does not refresh the latency).

    **Candidates.** :meth:`candidates` returns, in registration order, the
    workers a balancer may choose from for a task: not ``UNAVAILABLE``, with
    every skill it ``requires``, in its zone if ``strict_zones``, and with
    room for its demand. ``DEGRADED`` workers are offered per ``degraded``:
    ``"fallback"`` (only when no healthy worker qualifies; Envoy's
    behaviour), ``"include"`` or ``"exclude"``.

    **Without listing every worker**, :meth:`lowest` finds the candidate
    lowest in an order a strategy gives (``LeastConnections``: load per unit
    of weight) from an index sorted by it, and :meth:`sample` draws random
    candidates (for ``PowerOfTwoChoices``); a balancer's ``choose(task,
    tracker)`` uses them, so dispatch need not be O(n).

    **Callbacks.** A ``where=`` filter (:data:`WorkerFilter`) and a load
    key (:data:`LoadKey`) run inside the tracker: a call back into it from
    one is refused with :class:`~taskdist.errors.ReentrancyError` before it
    changes anything (re-entry is refused, not handled).

    **Threads.** Not safe to share between threads: every call reads and
    changes shared state with no lock. A host with threads drives it from
    one thread, wraps it in its own lock, or uses the
    ``taskdist.threaded.ThreadSafeDistributor``.

    **Ranges.** Worker weights from 1e-9 to 1e9; capacity amounts 0 or from
    1e-9 to 1e15; durations from 0 to 1e12 s (see ``workers/_ranges.py``):
    inside them every ratio and total stays finite, outside them the input is
    refused with :class:`~taskdist.errors.InvalidArgumentError`.

    **Bookkeeping.** What outcomes and time say of each worker (EWMA,
    derived health, ejection, slow start) is kept by a private ``Outcomes``
    object (``workers/_outcomes.py``); the views change only through their
    own private mutators.

    **Complexity** (n workers, r resources per worker or task; "+ log" is
    O(log n) more per load index :meth:`lowest` has built that files the
    worker: one per key, and one per key and set of skills asked for that it
    has):

    ===============================  ==========================================
    ``assign``, ``release``          O(r) + log (+ O(log n) when an ejection
                                     starts)
    ``candidates``                   O(n r)
    ``is_candidate``                 O(r) (for a degraded worker under
                                     ``degraded="fallback"``, O(1) more when no
                                     healthy worker has free capacity, else
                                     O(k r) for the k healthy workers with room
                                     looked at)
    ``has_room``, ``available_*``    O(1)
    ``first_candidate``              O(k r) for the k ids read
    ``lowest``                       O(1 + k (r + log k)), k workers passed
                                     over (first call with a key, or a key and
                                     a set of skills: O(n log n) to build its
                                     index)
    ``sample(task, c, rng)``         O(c r) expected when most workers
                                     qualify; at worst O(n r)
    ``add_worker``                   O(r) + log
    ``remove_worker``                O(r + tasks on it) + log (+ O(log n) per
                                     ejection lifted to keep the bound)
    ``update_worker``, ``set_health``   O(r) + log
    ``worker``, ``next_wakeup``      O(1) amortised
    ``load_variance``, ``utilization``  O(n r)
    ===============================  ==========================================

    Due ejections are lifted, and slow-start weights moved along, lazily at
    the start of each public call: O(1) when nothing is due. A ramp moves
    in 32 equal steps of its window (``effective_weight`` is the weight
    times the ramp's factor at the start of the current step), so each
    ramping worker is refiled at most 32 times per ramp, however many calls
    are made: O(log n) per step.

    >>> from taskdist import ManualClock, Task, Worker
    >>> tracker = CapacityTracker(ManualClock())
    >>> _ = tracker.add_worker(Worker("a", capacity=2))
    >>> _ = tracker.add_worker(Worker("b", capacity=1, skills={"gpu"}))
    >>> [w.id for w in tracker.candidates(Task("t1"))]
    ['a', 'b']
    >>> tracker.assign(Task("t1"), "b").in_flight
    1
    >>> [w.id for w in tracker.candidates(Task("t2"))]
    ['a']
    >>> tracker.release(Task("t1"), "b", duration=2.0).latency
    2.0
    >>> round(tracker.utilization(), 3), tracker.has_room()
    (0.0, True)
    """

    __slots__ = (
        "_available_in_flight",
        "_available_weight",
        "_available_weight_sum",
        "_busy",
        "_clock",
        "_degraded",
        "_degraded_count",
        "_guard_keys",
        "_index_list",
        "_indexes",
        "_named",
        "_outcomes",
        "_placed",
        "_pool",
        "_pool_at",
        "_room_degraded",
        "_room_healthy",
        "_seq",
        "_skill_indexes",
        "_skill_indexes_of",
        "_strict_zones",
        "_version",
        "_workers",
    )

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        ewma_alpha: float = 0.2,
        ewma_half_life: float | None = None,
        health: HealthPolicy | None = _DEFAULT_HEALTH,
        ejection: OutlierEjection | None = _DEFAULT_EJECTION,
        slow_start: SlowStart | None = None,
        degraded: DegradedPolicy = "fallback",
        strict_zones: bool = False,
    ) -> None:
        """
        Args:
            clock: where time comes from (default: :class:`MonotonicClock`).
            ewma_alpha: weight of each new sample in the duration and success
                averages, in (0, 1].
            ewma_half_life: if set (seconds, > 0), an average also loses half
                its weight per half-life since its previous sample.
            health: when outcomes make a worker ``DEGRADED``; ``None``: never.
            ejection: outlier ejection; ``None``: never eject.
            slow_start: ramp the weight of new and readmitted workers; ``None``: off.
            degraded: ``"fallback"``, ``"include"`` or ``"exclude"``: when
                ``DEGRADED`` workers are candidates.
            strict_zones: if true, a task with a ``zone`` only gets workers in that zone.
        """
        clock = check_clock(clock)
        alpha = check_number(ewma_alpha, "ewma_alpha", positive=True, maximum=1.0)
        half_life = check_optional_number(ewma_half_life, "ewma_half_life", positive=True)
        for value, name, kind in (
            (health, "health", HealthPolicy),
            (ejection, "ejection", OutlierEjection),
            (slow_start, "slow_start", SlowStart),
        ):
            if value is not None and not isinstance(value, kind):
                raise InvalidTypeError(f"{name} must be a {kind.__name__} or None, got {value!r}")
        if not isinstance(degraded, str):
            raise InvalidTypeError(f"degraded must be a policy name (str), got {degraded!r}")
        policy = check_choice(degraded, "degraded", _DEGRADED_POLICIES)
        if not isinstance(strict_zones, bool):
            raise InvalidTypeError(f"strict_zones must be a bool, got {strict_zones!r}")
        self._clock = clock
        # True while a where= filter or a load key runs: calls back are refused.
        self._busy = False
        self._degraded = policy
        self._strict_zones = strict_zones
        self._outcomes = Outcomes(
            alpha=alpha,
            half_life=half_life,
            policy=health,
            ejection=ejection,
            slow_start=slow_start,
            changed=self._changed,
        )
        self._workers: dict[Hashable, WorkerState] = {}
        # Every resource a worker's capacity has ever named: the ones placement
        # tracks. It only grows, so a GPU task finds no room (rather than
        # any room) once the last GPU worker is gone.
        self._named: set[str] = set()
        # task id -> the worker it is placed on (its demand is kept by the worker).
        self._placed: dict[Hashable, WorkerState] = {}
        self._seq = itertools.count()
        # One load index per key a strategy asked for (lowest()), built by the
        # first query with that key, then kept up to date (O(log n) per change).
        self._indexes: dict[LoadKey, LoadIndex] = {}
        self._index_list: tuple[LoadIndex, ...] = ()  # the same, to walk on each change
        # (key, skills) -> an index of the workers with those skills only: a task that
        # needs them finds its worker at the front instead of walking past the others.
        self._skill_indexes: dict[tuple[LoadKey, frozenset[str]], LoadIndex] = {}
        # worker -> the skill indexes it is filed in (worked out again when they change).
        self._skill_indexes_of: dict[WorkerState, tuple[LoadIndex, ...]] = {}
        self._guard_keys = False  # whether some index's key is not known to be pure
        # The workers in an array for O(1) random draws (sample()); removal swaps in the last.
        self._pool: list[WorkerState] = []
        self._pool_at: dict[WorkerState, int] = {}
        # The HEALTHY and the DEGRADED workers with free capacity in some resource
        # their capacity names, kept up to date by _refile (has_room() in O(1)).
        self._room_healthy: set[WorkerState] = set()
        self._room_degraded: set[WorkerState] = set()
        self._degraded_count = 0  # workers DEGRADED now
        # Over the workers that are not UNAVAILABLE: tasks in flight, and the sum
        # of weights (exact, as a fraction: it goes up and down as workers come
        # and go, and a float sum would drift) with its float value.
        self._available_in_flight = 0
        self._available_weight_sum = Fraction(0)
        self._available_weight = 0.0
        self._version = 0  # counts additions and removals

    @property
    def degraded(self) -> DegradedPolicy:
        """The ``degraded`` policy: ``"fallback"``, ``"include"`` or ``"exclude"``."""
        return self._degraded

    # -- membership -------------------------------------------------------

    def add_worker(self, worker: Worker) -> WorkerState:
        """Register ``worker`` and return its view. O(r), + O(log n) per load index.

        Raises:
            InvalidTypeError: ``worker`` is not a Worker.
            DuplicateWorkerError: a worker with this id is registered.
            InvalidArgumentError: its weight is outside [1e-9, 1e9], or an
                amount of its capacity is neither 0 nor within [1e-9, 1e15].
        """
        if not isinstance(worker, Worker):
            raise InvalidTypeError(
                f"add_worker() takes a Worker, got {type(worker).__name__} {worker!r}"
            )
        if worker.id in self._workers:
            raise DuplicateWorkerError(f"a worker with id {worker.id!r} is already registered")
        _check_ranges(worker)
        now = self._refresh()
        state = WorkerState(worker, next(self._seq), now, self._named)
        self._workers[worker.id] = state
        self._named.update(worker.capacity)
        self._pool_at[state] = len(self._pool)
        self._pool.append(state)
        self._outcomes.join(state, now)
        self._count_available(state, 1)
        self._version += 1
        self._refile(state)
        return state

    def remove_worker(self, worker_id: Hashable) -> list[Task]:
        """Unregister a worker; return the tasks that were in flight on it, oldest first.

        Nothing is lost: the caller requeues (or fails) the returned tasks.
        If the removal would leave more than ``max_ejection_percent`` of the
        remaining workers ejected, the ejections closest to their end are
        lifted. O(r + tasks on it), plus O(log n) per lifted ejection.

        Raises:
            UnknownWorkerError: no worker has this id.
        """
        state = self._state(worker_id)
        now = self._refresh()
        del self._workers[worker_id]
        self._version += 1
        if state.health is not _UNAVAILABLE:
            self._count_available(state, -1)
        self._leave_pool(state)
        for index in (*self._indexes.values(), *self._skill_indexes.values()):
            index.discard(state)
        self._skill_indexes_of.pop(state, None)
        self._room_healthy.discard(state)
        self._room_degraded.discard(state)
        self._degraded_count -= state.health is _DEGRADED
        self._outcomes.leave(state)
        tasks = []
        for task, _ in state._tasks.values():
            del self._placed[task.id]
            tasks.append(task)
        self._outcomes.keep_bound(len(self._workers), now)
        return tasks

    def update_worker(
        self,
        worker_id: Hashable,
        *,
        capacity: float | Mapping[str, float] | _Unset = _UNSET,
        weight: float | _Unset = _UNSET,
        skills: Iterable[str] | _Unset = _UNSET,
        zone: str | _Unset | None = _UNSET,
        cost: float | _Unset = _UNSET,
    ) -> WorkerState:
        """Change a registered worker's capacity, weight, skills, zone or cost at runtime.

        O(r), + O(log n) per load index (see :meth:`lowest`).

        Only the fields given change; they are validated as ``Worker`` validates
        them. Tasks in flight stay: a capacity shrunk below the current load
        is allowed, and the worker simply takes no new work until it drains.

        Raises:
            UnknownWorkerError: no worker has this id.
            InvalidArgumentError, InvalidTypeError: a field ``Worker`` refuses,
                or a weight or capacity outside the ranges ``add_worker``
                takes (the worker is unchanged).
        """
        state = self._state(worker_id)
        changes: dict[str, Any] = {
            name: value
            for name, value in (
                ("capacity", capacity),
                ("weight", weight),
                ("skills", skills),
                ("zone", zone),
                ("cost", cost),
            )
            if value is not _UNSET
        }
        worker = attrs.evolve(state.worker, **changes)  # validates
        _check_ranges(worker)
        self._refresh()
        self._named.update(worker.capacity)
        if state.health is not _UNAVAILABLE and worker.weight != state.weight:
            self._count_weight(Fraction(worker.weight) - Fraction(state.weight))
        if worker.skills != state.skills:  # filed again below where it now qualifies
            for index in self._skill_indexes.values():
                index.discard(state)
            self._skill_indexes_of.pop(state, None)
        state._describe(worker)
        self._outcomes.reweigh(state)
        self._refile(state)
        return state

    # -- health -----------------------------------------------------------

    def set_health(self, worker_id: Hashable, health: Health | str) -> WorkerState:
        """Record the host's view of a worker (e.g. from its own health checks).

        O(1), + O(log n) per load index (see :meth:`lowest`).

        The worker's :attr:`WorkerState.health` is the worst of this, the
        outcome-derived health and ejection; ``set_health(id,
        Health.HEALTHY)`` withdraws the host's objection but neither lifts an
        ejection (see :meth:`reinstate`) nor clears a degradation the outcomes
        show. A worker leaving ``UNAVAILABLE`` restarts its slow start.

        Raises:
            UnknownWorkerError: no worker has this id.
            InvalidTypeError: ``health`` is not a Health or a str.
            InvalidArgumentError: ``health`` is a str that is not a Health's value.
        """
        state = self._state(worker_id)
        if not isinstance(health, str):  # a Health is a str
            raise InvalidTypeError(f"health must be a Health (or its str value), got {health!r}")
        try:
            value = Health(health)
        except ValueError:
            allowed = ", ".join(repr(h.value) for h in Health)
            raise InvalidArgumentError(
                f"health must be a Health ({allowed}), got {health!r}"
            ) from None
        now = self._refresh()
        self._outcomes.set_host_health(state, value, now)
        return state

    def reinstate(self, worker_id: Hashable) -> WorkerState:
        """Lift a worker's outlier ejection now (e.g. an active health check passed).

        O(1), + O(log n) per load index (see :meth:`lowest`).

        Its consecutive-failure count restarts from zero; its ejection
        multiplier keeps decaying as usual. A worker that is not ejected is
        unchanged.

        Raises:
            UnknownWorkerError: no worker has this id.
        """
        state = self._state(worker_id)
        now = self._refresh()
        self._outcomes.reinstate(state, now)
        return state

    def next_wakeup(self) -> float | None:
        """When the next ejection ends (call anything on the tracker then), or ``None``.

        O(1) amortised.
        """
        self._refresh()
        return self._outcomes.next_wakeup()

    # -- placements -------------------------------------------------------

    def assign(self, task: Task, worker_id: Hashable) -> WorkerState:
        """Record that ``task`` now runs on the worker; return the worker's view.

        O(r), + O(log n) per load index (see :meth:`lowest`).

        Skills and zones are not checked here (a host may override routing);
        availability and capacity are.

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            UnknownWorkerError: no worker has this id.
            DuplicateTaskError: a task with this id is already assigned.
            WorkerUnavailableError: the worker is ``UNAVAILABLE`` (down or ejected).
            WorkerFullError: its demand does not fit the worker's free capacity.
        """
        if not isinstance(task, Task):
            raise InvalidTypeError(f"assign() takes a Task, got {type(task).__name__} {task!r}")
        state = self._state(worker_id)
        self._refresh()
        task_id = task.id
        if task_id in self._placed:
            raise DuplicateTaskError(
                f"task {task_id!r} is already assigned to worker {self._placed[task_id].id!r}"
            )
        if state.health is _UNAVAILABLE:
            raise WorkerUnavailableError(
                f"worker {worker_id!r} is unavailable"
                + (" (ejected as an outlier)" if state.ejected_until is not None else "")
                + f"; task {task_id!r} was not assigned"
            )
        checked = self._demand(task)
        if not state._admits(_NO_SKILLS, None, checked):  # the fit test, skills aside
            raise WorkerFullError(
                f"task {task_id!r} does not fit worker {state.id!r} "
                f"({state._short_of(checked)}); it was not assigned"
            )
        state._hold(task, checked)
        self._available_in_flight += 1
        self._placed[task_id] = state
        self._refile(state)
        return state

    def _assign_chosen(self, task: Task, state: WorkerState) -> None:
        """:meth:`assign` for a caller that holds the worker's view and knows the task
        is not placed (the Distributor, placing what its balancer chose for a task it
        leases once). The health and fit checks stay: they are what the caller cannot
        know for sure, since a gate or breaker it asked since may have run anything."""
        if self._busy or self._outcomes.next_due != _NEVER:
            self._refresh()  # (without a time to wait for, nothing is ever due)
        # _demand, inline: the hot path
        checked = _ONE_SLOT if not task.resources and "slots" in self._named else self._demand(task)
        if state.health is _UNAVAILABLE or not state._admits(_NO_SKILLS, None, checked):
            self.assign(task, state.id)  # raises the public error (or, if it fits now, assigns)
            return
        state._hold(task, checked)
        self._available_in_flight += 1
        self._placed[task.id] = state
        self._refile(state)

    def _check_placements(self, placements: Iterable[tuple[Task, WorkerState]]) -> None:
        """Raise what :meth:`assign` would for the first of ``placements`` (each task with
        the worker it is to go to, each assigned after those before it) that could not be
        assigned now; change nothing. O(r) each.

        For the Distributor, before a gang's members leave where they wait: the gates and
        breakers it asked since it planned them may have changed a worker. Nothing is
        assigned and released to find out, which would leave the float residue of the
        sums in the workers' loads (and so move their order)."""
        loads: dict[WorkerState, dict[str, float]] = {}
        for task, state in placements:
            if self._workers.get(state.id) is not state:
                raise UnknownWorkerError(f"no worker with id {state.id!r}")
            if state.health is _UNAVAILABLE:
                raise WorkerUnavailableError(
                    f"worker {state.id!r} is unavailable; task {task.id!r} was not assigned"
                )
            load = loads.get(state)
            if load is None:
                load = loads[state] = dict(state._load)
            checked = self._demand(task)
            limit = state._limit
            # As assign's fit test and _hold, summed in the same order: the same answer.
            for name, amount in checked:
                if load.get(name, 0.0) + amount > limit.get(name, 0.0):
                    raise WorkerFullError(
                        f"task {task.id!r} does not fit worker {state.id!r} with the tasks "
                        "placed there before it; it was not assigned"
                    )
            for name, amount in checked:
                load[name] = load.get(name, 0.0) + amount

    def release(
        self,
        task: Task,
        worker_id: Hashable,
        duration: float | None = None,
        ok: bool | None = True,
    ) -> WorkerState:
        """Record that ``task`` left the worker; return the worker's view.

        O(r), + O(log n) per load index (see :meth:`lowest`).

        ``duration`` (seconds, 0 to 1e12) feeds the worker's latency EWMA. ``ok``
        is the outcome: ``True`` or ``False`` feed the success EWMA, the
        health policy and outlier ejection; ``None`` records no outcome (a
        cancelled or requeued task only frees its capacity).

        Raises:
            InvalidTypeError: ``task`` is not a Task, or ``ok`` not a bool or None.
            InvalidArgumentError: ``duration`` negative, above 1e12, NaN or infinite.
            UnknownWorkerError: no worker has this id.
            UnknownTaskError: the task is not assigned to this worker.
        """
        if not isinstance(task, Task):
            raise InvalidTypeError(f"release() takes a Task, got {type(task).__name__} {task!r}")
        duration = check_optional_number(duration, "duration", minimum=0.0, maximum=MAX_SECONDS)
        if ok is not None and not isinstance(ok, bool):
            raise InvalidTypeError(f"ok must be True, False or None, got {ok!r}")
        state = self._state(worker_id)
        task_id = task.id
        if task_id not in state._tasks:
            where = self._placed.get(task_id)
            raise UnknownTaskError(
                f"task {task_id!r} is not assigned to worker {worker_id!r}"
                + (f" (it is on {where.id!r})" if where is not None else "")
            )
        return self._release_placed(task, worker_id, duration, ok)

    def _release_placed(
        self, task: Task, worker_id: Hashable, duration: float | None, ok: bool | None
    ) -> WorkerState:
        """:meth:`release` for a caller that checked its arguments and knows the task
        is on the worker (the Distributor, ending a lease it made)."""
        state = self._workers[worker_id]
        task_id = task.id
        if self._busy:
            self._refresh()  # raises
        now = self._clock.now()  # _refresh, inline: the hot path
        outcomes = self._outcomes
        if now >= outcomes.next_due:
            outcomes.due(now)
        state._let_go(task_id)
        if state.health is not _UNAVAILABLE:
            self._available_in_flight -= 1
        del self._placed[task_id]
        if duration is not None or ok is not None:
            outcomes.record(state, now, duration, ok, len(self._workers))
        self._refile(state)
        return state

    # -- looking ----------------------------------------------------------

    def candidates(self, task: Task, where: WorkerFilter | None = None) -> list[WorkerState]:
        """The workers a balancer may choose from for ``task``, in registration order.

        Not ``UNAVAILABLE``; every skill in ``task.requires``; in
        ``task.zone`` if ``strict_zones``; room for the task's demand;
        ``where(worker)`` true if given (it is asked before the ``degraded``
        policy decides, so a healthy worker it rejects does not keep the
        degraded ones out); and ``DEGRADED`` ones as the ``degraded`` policy
        says. O(n r).

        Raises:
            InvalidTypeError: ``task`` is not a Task, or ``where`` is not callable.
        """
        return self._query(task, where, self._candidates, task, where)

    def _candidates(self, task: Task, where: WorkerFilter | None) -> list[WorkerState]:
        requires = task.requires
        zone = task.zone if self._strict_zones else None
        demand = self._demand(task)
        # A comprehension, the dispatch hot path's fastest way through every worker.
        listed = [
            state
            for state in self._workers.values()
            if state.health is not _UNAVAILABLE and state._admits(requires, zone, demand)
        ]
        if where is not None:  # asked before the degraded policy decides
            listed = [state for state in listed if where(state)]
        # Marked as holding only views, so balancers need not check each one.
        if not self._degraded_count or self._degraded == "include":
            return CandidateList(listed)
        healthy = CandidateList(state for state in listed if state.health is not _DEGRADED)
        if healthy or self._degraded == "exclude":
            return healthy
        return CandidateList(state for state in listed if state.health is _DEGRADED)

    def is_candidate(
        self, task: Task, worker_id: Hashable, where: WorkerFilter | None = None
    ) -> bool:
        """Whether the worker is among ``candidates(task, where)``, without listing them.

        ``False`` for an id the tracker does not know (or cannot hash). This
        is how to check that a balancer's choice is a real candidate: a
        ``WorkerState`` ``w`` returned for ``task`` is one exactly when
        ``tracker.is_candidate(task, w.id, where)`` and ``tracker.worker(w.id)
        is w``. ``where`` is asked about this worker only (and, for a degraded
        one under ``"fallback"``, about healthy ones; see below).

        O(r) with r the resources of the task (the worker's health, skills,
        zone and room, then ``where``), except for a ``DEGRADED`` worker
        under ``degraded="fallback"``, which is a candidate only when no
        healthy worker is: then O(1) more when no healthy worker has free
        capacity in any resource (the usual reason to fall back, kept as a
        set), else O(k r) for the k healthy workers with free capacity
        looked at until one qualifies (all healthy workers, for a task that
        demands nothing of the workers).

        Raises:
            InvalidTypeError: ``task`` is not a Task, or ``where`` is not callable.
        """
        return self._query(task, where, self._is_candidate, task, worker_id, where)

    def _is_candidate(self, task: Task, worker_id: Hashable, where: WorkerFilter | None) -> bool:
        try:
            state = self._workers.get(worker_id)
        except TypeError:
            return False
        if state is None:
            return False
        requires = task.requires
        zone = task.zone if self._strict_zones else None
        demand = self._demand(task)
        if not _qualifies(state, requires, zone, demand, where):
            return False
        if state.health is not _DEGRADED or self._degraded == "include":
            return True
        if self._degraded == "exclude":
            return False
        # Fallback: a candidate unless some healthy worker qualifies. One that does
        # has room for this demand, so it is among the healthy workers with room.
        if demand:
            healthy: Iterable[WorkerState] = self._room_healthy
        else:
            healthy = (s for s in self._workers.values() if s.health is Health.HEALTHY)
        return not any(_qualifies(other, requires, zone, demand, where) for other in healthy)

    def has_room(self) -> bool:
        """Whether some worker that is not ``UNAVAILABLE`` has free capacity in at least
        one resource its capacity names (``load < capacity``). O(1).

        ``False`` means every available worker is full in every resource it
        has (or there is none): no task that demands some of the workers'
        resources can be placed now, so a dispatcher may return at once
        without looking at its queue. ``True`` does not promise that a given
        task fits (it may need another resource, a skill, or more room).
        Not covered by ``False``: a task that demands nothing of the
        workers (every amount 0, or only resources no worker's capacity
        names) fits any available worker, full or not, and one whose
        amounts are within the fit tolerance (1e-9 of a capacity) may fit a
        full one.

        Kept as a set of the workers with room, updated on every change
        that can alter it (``assign``, ``release``, health, ejections,
        capacity, membership): never a scan.
        """
        if self._busy or self._outcomes.next_due != _NEVER:
            self._refresh()  # (without a time to wait for, nothing is ever due)
        return bool(self._room_healthy or self._room_degraded)

    def _has_room_now(self) -> bool:
        """:meth:`has_room` without lifting what is due: for a caller whose last call
        into the tracker did (the Distributor's dispatch loop). O(1)."""
        return bool(self._room_healthy or self._room_degraded)

    @property
    def available_in_flight(self) -> int:
        """Tasks in flight on the workers that are not ``UNAVAILABLE``. O(1) (a counter).

        With :attr:`available_weight`, the mean load per unit of weight of
        the available pool: what ``ConsistentHash.choose`` bounds loads
        against. Reading it lifts no due ejection: call a method first.
        """
        return self._available_in_flight

    @property
    def available_weight(self) -> float:
        """The sum of ``weight`` over the workers that are not ``UNAVAILABLE``. O(1).

        Kept exactly (as a fraction) as workers come, go, change weight and
        health, so it never drifts; this is its nearest float.
        """
        return self._available_weight

    @property
    def membership_version(self) -> int:
        """A number that changes whenever a worker is added or removed. O(1).

        A balancer that mirrors the membership (``ConsistentHash``'s ring)
        compares it with the one it last saw, to notice changes without
        listing the workers.
        """
        return self._version

    def first_candidate(
        self, task: Task, worker_ids: Iterable[Hashable], where: WorkerFilter | None = None
    ) -> WorkerState | None:
        """The first worker, in the order of ``worker_ids``, that is a candidate for ``task``.

        Ids the tracker does not know are passed over. A worker is taken as
        ``is_candidate`` would take it, except that a ``DEGRADED`` one is
        taken only under ``degraded="include"`` (under ``"fallback"`` it is
        a candidate only when no healthy worker is, which a walk in a given
        order cannot know; list the candidates for that). ``None`` if none
        of them is. ``worker_ids`` is read lazily, and no further once a
        candidate is found, so a strategy can hand over a walk in its own
        order (``ConsistentHash``: clockwise on its ring) and stop it at the
        first worker it wants: O(k r) for the k ids read.

        Raises:
            InvalidTypeError: ``task`` is not a Task, or ``where`` is not callable.
        """
        return self._query(task, where, self._first_candidate, task, worker_ids, where)

    def _first_candidate(
        self, task: Task, worker_ids: Iterable[Hashable], where: WorkerFilter | None
    ) -> WorkerState | None:
        workers = self._workers
        requires = task.requires
        zone = task.zone if self._strict_zones else None
        demand = self._demand(task)
        take_degraded = self._degraded == "include"
        for worker_id in worker_ids:
            try:
                state = workers.get(worker_id)
            except TypeError:
                continue
            # _qualifies, with DEGRADED workers taken only under "include".
            if (
                state is not None
                and (state.health is _HEALTHY or (take_degraded and state.health is _DEGRADED))
                and state._admits(requires, zone, demand)
                and (where is None or where(state))
            ):
                return state
        return None

    def lowest(
        self, task: Task, key: LoadKey, where: WorkerFilter | None = None
    ) -> WorkerState | None:
        """The candidate for ``task`` with the lowest ``key(worker)``, without listing them all.

        The first of ``candidates(task, where)`` sorted by ``(key(worker),
        registration order)``, or ``None`` if there is none. The key is the
        strategy's: ``LeastConnections`` gives ``(load_ratio /
        effective_weight, load_ratio)``. It must depend only on the worker's
        view (see :data:`~taskdist.workers._load_index.LoadKey`), and be the
        same function object from call to call (a module-level function, not
        a fresh lambda): each key has its own index.

        The first call with a key builds an index of the available workers
        sorted by it (O(n log n)); from then on every change to a worker's
        load, weight, capacity, slow-start ramp or health refiles it in
        O(log n), for as long as the index is kept (at most four are: a
        fifth key drops the oldest index). ``DEGRADED`` workers are filed apart
        unless ``degraded="include"``. A task that needs skills
        (``requires=``) is looked up in an index of the workers that have
        them, built by the first such query for its key and set of skills and
        kept as long as the tracker (at most 16 such indexes are built; tasks
        needing skills without one walk the index of every worker), so workers
        without the skills are never walked past. A query walks the healthy
        workers from the lowest key and stops at the first that qualifies:
        O(1 + k (r + log k)), where k counts the workers ahead of it that do
        not (in another zone, too full for this task's demand, or rejected by
        ``where``). Workers that every query
        rejects take no new work, drain, and so gather at the front of a load
        order: a lasting exclusion is cheaper as ``set_health(id,
        Health.UNAVAILABLE)`` than as a ``where`` filter. Under
        ``degraded="fallback"`` the degraded workers are walked only when no
        healthy one qualifies.

        Raises:
            InvalidTypeError: ``task`` is not a Task, or ``key`` or ``where``
                is not callable.
        """
        if not callable(key):
            raise InvalidTypeError(
                f"key must be a function of a WorkerState giving its place in an order, got {key!r}"
            )
        if where is None and type(task) is Task:  # _query, inline: the balancers' hot path
            if self._busy or self._outcomes.next_due != _NEVER:
                self._refresh()  # (without a time to wait for, nothing is ever due)
            return self._lowest(task, key, None)
        return self._query(task, where, self._lowest, task, key, where)

    def _lowest(self, task: Task, key: LoadKey, where: WorkerFilter | None) -> WorkerState | None:
        requires = task.requires
        index = None
        if requires:
            index = self._skill_indexes.get((key, requires))
            if index is None and len(self._skill_indexes) < _MAX_SKILL_INDEXES:
                index = self._skill_index(key, requires)
        if index is None:
            index = self._indexes.get(key)
            if index is None:
                index = self._index(key)
        zone = task.zone if self._strict_zones else None
        # _demand, inline: the hot path
        demand = _ONE_SLOT if not task.resources and "slots" in self._named else self._demand(task)
        # _qualifies, less its health test: an index holds no UNAVAILABLE worker.
        # The first worker is the usual answer: asked before any walk is built.
        top = index.top_healthy()
        if top is None:
            walk: Iterator[WorkerState] = iter(())
        elif top._admits(requires, zone, demand) and (where is None or where(top)):
            return top
        else:
            walk = index.healthy()
            next(walk)  # the top again, refused already
        for state in walk:
            if state._admits(requires, zone, demand) and (where is None or where(state)):
                return state
        if self._degraded == "fallback":
            for state in index.degraded():
                if state._admits(requires, zone, demand) and (where is None or where(state)):
                    return state
        return None

    def sample(
        self,
        task: Task,
        count: int,
        rng: random.Random,
        where: WorkerFilter | None = None,
    ) -> list[WorkerState]:
        """``count`` distinct candidates for ``task`` drawn uniformly at random, without
        listing them all (all of them, in random order, if there are fewer).

        Distributed exactly as ``rng.sample(tracker.candidates(task, where),
        count)``. Workers are drawn from every registered worker and redrawn
        while they do not qualify; after ``max(4 * count + 4, n // 4)``
        draws without enough, the candidates are listed and sampled instead
        (as they are at once when ``2 * count > n``). With m of the n workers
        qualifying that is O(count r n / m) expected: O(count r) when most
        qualify, and at worst the budget plus the listing, O(n r).
        ``DEGRADED`` workers are only drawn under ``degraded="include"``;
        otherwise the listing serves them when no healthy worker qualifies.

        Raises:
            InvalidTypeError: ``task`` is not a Task, ``rng`` not a
                ``random.Random``, ``where`` not callable, or ``count`` not an int.
            InvalidArgumentError: ``count`` is negative.
        """
        count = check_int(count, "count", minimum=0)
        if not isinstance(task, Task) or (where is not None and not callable(where)):
            self._check_query(task, where)  # raises (tested first: this is the hot path)
        if not isinstance(rng, random.Random):
            raise InvalidTypeError(f"rng must be a random.Random, got {rng!r}")
        if self._busy or self._outcomes.next_due != _NEVER:
            self._refresh()  # (without a time to wait for, nothing is ever due)
        pool = self._pool
        size = len(pool)
        if count == 0 or size == 0:
            return []
        if 2 * count <= size:
            chosen = (
                self._draw(task, count, rng, None)
                if where is None
                else self._filtered(where, self._draw, task, count, rng, where)
            )
            if chosen is not None:
                return chosen
        # Too few qualify to find them by chance: list them. Which ones the draws above
        # found says nothing about which the listing picks, so the result stays uniform.
        listed = self._filtered(where, self._candidates, task, where)
        return rng.sample(listed, min(count, len(listed)))

    def _draw(
        self, task: Task, count: int, rng: random.Random, where: WorkerFilter | None
    ) -> list[WorkerState] | None:
        """``count`` distinct qualifying workers drawn at random, or ``None`` if the
        draw budget ran out first."""
        pool = self._pool
        size = len(pool)
        requires = task.requires
        zone = task.zone if self._strict_zones else None
        # _demand, inline: the hot path
        demand = _ONE_SLOT if not task.resources and "slots" in self._named else self._demand(task)
        include_degraded = self._degraded == "include"
        chosen: list[WorkerState] = []
        seen: set[int] = set()
        draw = rng.randrange
        for _ in range(max(4 * count + 4, size // 4)):
            at = draw(size)
            if at in seen:  # chosen already, or known not to qualify
                continue
            seen.add(at)
            state = pool[at]
            health = state.health
            # _qualifies, inline (the hot loop), DEGRADED workers only under "include"
            if (
                health is not _UNAVAILABLE
                and (include_degraded or health is not _DEGRADED)
                and state._admits(requires, zone, demand)
                and (where is None or where(state))
            ):
                chosen.append(state)
                if len(chosen) == count:
                    return chosen
        return None

    def worker(self, worker_id: Hashable) -> WorkerState:
        """The view of one worker. O(1) amortised.

        Raises:
            UnknownWorkerError: no worker has this id.
        """
        state = self._state(worker_id)
        self._refresh()
        return state

    def workers(self) -> list[WorkerState]:
        """Every registered worker's view, in registration order. O(n)."""
        self._refresh()
        return list(self._workers.values())

    def tasks_on(self, worker_id: Hashable) -> list[Task]:
        """The tasks in flight on a worker, oldest assignment first. O(tasks on it).

        Raises:
            UnknownWorkerError: no worker has this id.
        """
        return [task for task, _ in self._state(worker_id)._tasks.values()]

    def __len__(self) -> int:
        return len(self._workers)

    def __contains__(self, worker_id: object) -> bool:
        try:
            return worker_id in self._workers
        except TypeError:
            return False

    def load_variance(self) -> float:
        """Coefficient of variation of ``load_ratio`` across workers: the seeds' "load variance".

        Workers with no capacity at all are left out (they take no work).
        0 when every worker is equally loaded, or there are none. O(n r).
        """
        self._refresh()
        return coefficient_of_variation(
            state.load_ratio
            for state in self._workers.values()
            if any(amount > 0 for amount in state.capacity.values())
        )

    def utilization(self, resource: str = "slots") -> float:
        """Load over capacity of ``resource``, summed over every worker (0 if none has any). O(n).

        Raises:
            InvalidTypeError: ``resource`` is not a str.
            InvalidArgumentError: ``resource`` is empty.
        """
        if not isinstance(resource, str):
            raise InvalidTypeError(f"resource must be a resource name (str), got {resource!r}")
        if not resource:
            raise InvalidArgumentError("resource must be a non-empty resource name, got ''")
        self._refresh()
        total = used = 0.0
        for state in self._workers.values():
            total += state.capacity.get(resource, 0.0)
            used += state.load.get(resource, 0.0)
        return used / total if total > 0 else 0.0

    def __repr__(self) -> str:
        in_flight = len(self._placed)
        return f"CapacityTracker(workers={len(self._workers)}, in_flight={in_flight})"

    # -- persistence ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every worker with its load, tasks in flight, health, ejection and
        averages, and the tracker's configuration (checked on load), as plain
        data. O(w + tasks in flight).

        :meth:`load_snapshot` on an empty tracker of the same configuration
        takes it back; see ``docs/persistence.md``.

        Raises:
            SnapshotError: an id a snapshot cannot carry.
        """
        self._refresh()  # ejections and ramps due now are part of the state now
        following = next(self._seq)
        self._seq = itertools.count(following)  # nothing consumed
        outcomes = self._outcomes
        workers = []
        for state in self._workers.values():
            workers.append(
                {
                    "worker": state.worker.to_data(),
                    "seq": state.seq,
                    "added_at": state.added_at,
                    "state": [
                        state.health.value,
                        state.host_health.value,
                        state.ejected_until,
                        state.ejections,
                        state.consecutive_failures,
                        state.latency,
                        state.success_rate,
                        state.outcomes,
                        state.effective_weight,
                    ],
                    "tasks": [
                        [task.to_data(), [list(pair) for pair in demand]]
                        for task, demand in state._tasks.values()
                    ],
                    "load": dict(state._load),
                    "books": outcomes.record_data(state),
                }
            )
        return {
            **header("CapacityTracker", _VERSION),
            "degraded": self._degraded,
            "strict_zones": self._strict_zones,
            "config": outcomes.config(),
            "workers": workers,
            "pool": [encode_key(state.id, "a worker id") for state in self._pool],
            "named": sorted(self._named),
            "next_seq": following,
            "membership_version": self._version,
        }

    def load_snapshot(self, data: object) -> None:
        """Take on the state :meth:`snapshot` wrote, into an empty tracker configured
        as the one snapshotted (health, ejection, slow start, EWMA). O(w + tasks).

        Raises:
            SnapshotError: an unknown format version, a missing or ill-typed field,
                a tracker configured otherwise (naming the field), inconsistent books
                (a worker's load that is not the sum of its tasks' demands), or a
                tracker that has workers (nothing changes).
        """
        self._prepare_snapshot(data, "tracker")[0]()

    def _prepare_snapshot(
        self, data: object, where: str
    ) -> tuple[Callable[[], None], dict[Hashable, Hashable], list[Hashable]]:
        """Check ``data`` whole; return what loads it (it cannot fail), which worker
        each task in flight is on, and the workers' ids in registration order."""
        fields = check_header(data, "CapacityTracker", where, _VERSIONS)
        if self._workers or self._version:
            refuse(where, "can be loaded only into a new CapacityTracker with no worker")
        for name, mine in (("degraded", self._degraded), ("strict_zones", self._strict_zones)):
            fields.same(name, mine, "tracker")
        if fields.version >= 2:
            _same_config(fields.value("config"), self._outcomes.config(), f"{where}.config")
        names = fields.items("named")
        if not all(type(name) is str for name in names):
            refuse(f"{where}.named", "must be a list of resource names")
        named = set(names)
        following = fields.integer("next_seq", minimum=0)
        version = fields.integer("membership_version", minimum=0)
        states: dict[Hashable, WorkerState] = {}
        books: list[tuple[WorkerState, list[object]]] = []
        placed: dict[Hashable, WorkerState] = {}
        seqs: set[int] = set()  # (they break ties between workers: each its own)
        for i, item in enumerate(fields.items("workers")):
            state, record = self._restored_state(Fields(item, f"{where}.workers[{i}]"), named)
            if state.id in states or state.seq in seqs or state.seq >= following:
                refuse(
                    f"{where}.workers[{i}]",
                    "repeats a worker id or seq, or its seq is not below next_seq",
                )
            seqs.add(state.seq)
            states[state.id] = state
            books.append((state, record))
            for task_id in state._tasks:
                if task_id in placed:
                    refuse(f"{where}.workers[{i}]", f"holds task {task_id!r}, held elsewhere too")
                placed[task_id] = state
        pool = []
        for i, worker_id in enumerate(fields.items("pool")):
            found = states.get(decode_key(worker_id, f"{where}.pool[{i}]"))
            if found is None:
                refuse(f"{where}.pool[{i}]", f"names no worker of the snapshot: {worker_id!r}")
            pool.append(found)
        if len(set(map(id, pool))) != len(pool) or len(pool) != len(states):
            refuse(f"{where}.pool", "must list every worker once")
        fields.done()

        def load() -> None:
            self._named.update(named)
            for state in states.values():
                # The tracker's own set, as add_worker gives it: a resource a worker added
                # later names first must count for the restored workers too.
                object.__setattr__(state, "_tracked", self._named)
            self._workers.update(states)
            self._placed.update(placed)
            self._pool.extend(pool)
            self._pool_at.update((state, at) for at, state in enumerate(pool))
            for state in states.values():
                if state.health is not _UNAVAILABLE:
                    self._count_available(state, 1)
                    if state._has_free:
                        room = (
                            self._room_degraded
                            if state.health is _DEGRADED
                            else (self._room_healthy)
                        )
                        room.add(state)
                self._degraded_count += state.health is _DEGRADED
            self._outcomes.restore(books)
            self._seq = itertools.count(following)
            self._version = version

        return load, {task_id: state.id for task_id, state in placed.items()}, list(states)

    def _restored_state(self, fields: Fields, named: set[str]) -> tuple[WorkerState, list[object]]:
        """One worker's view from its snapshot, with its books (checked)."""
        where = fields.where
        worker = Worker.from_data(fields.value("worker"), f"{where}.worker")
        state = WorkerState(
            worker, fields.integer("seq", minimum=0), fields.number("added_at"), named
        )
        values = fields.items("state")
        healths = {health.value for health in Health}
        if (
            len(values) != 9
            or not one_of(values[0], healths)
            or not one_of(values[1], healths)
            or not all(type(v) is int and v >= 0 for v in (values[3], values[4], values[7]))
            or not all(_number_or_none(v) for v in (values[2], values[5]))
            or not all(_number_or_none(v) and v is not None for v in (values[6], values[8]))
            or (values[2] is not None and values[0] != Health.UNAVAILABLE.value)
            # A rate in [0, 1]; the weight as slow start scales it, never 0 (a divisor).
            or not 0.0 <= values[6] <= 1.0
            or not 0.0 < values[8] <= worker.weight
        ):
            refuse(f"{where}.state", f"is not a worker's state, got {values!r}")
        tasks: list[tuple[Task, Demand]] = []
        for j, pair in enumerate(fields.items("tasks")):
            at = f"{where}.tasks[{j}]"
            if type(pair) is not list or len(pair) != 2 or type(pair[1]) is not list:
                refuse(at, "must be [task, demand]")
            task = Task.from_data(pair[0], f"{at}[0]")
            demand = []
            for amount in pair[1]:
                if (
                    type(amount) is not list
                    or len(amount) != 2
                    or type(amount[0]) is not str
                    or not _number_or_none(amount[1])
                    or amount[1] is None
                ):
                    refuse(f"{at}[1]", f"must be [resource, amount] pairs, got {amount!r}")
                demand.append((amount[0], float(amount[1])))
            tasks.append((task, demand))
        load = fields.value("load")
        if type(load) is not dict or not all(
            type(k) is str and _number_or_none(v) and v is not None for k, v in load.items()
        ):
            refuse(f"{where}.load", f"must map resource names to numbers, got {load!r}")
        _check_load(tasks, load, worker, named, where)
        record = fields.items("books")
        if (
            len(record) != 6
            or not one_of(record[0], healths)
            or not all(_number_or_none(v) for v in record[1:5])
            or type(record[5]) is not int
            or not -1 <= record[5] <= RAMP_STEPS
        ):
            refuse(f"{where}.books", f"is not a worker's books, got {record!r}")
        fields.done()
        state._restore(
            {
                "health": Health(values[0]),
                "host_health": Health(values[1]),
                "ejected_until": _float_or_none(values[2]),
                "ejections": values[3],
                "consecutive_failures": values[4],
                "latency": _float_or_none(values[5]),
                "success_rate": float(values[6]),
                "outcomes": values[7],
                "effective_weight": float(values[8]),
            },
            tasks,
            {name: float(amount) for name, amount in load.items()},
        )
        record[1:5] = [_float_or_none(v) for v in record[1:5]]
        return state, record

    # -- internals --------------------------------------------------------

    def _state(self, worker_id: Hashable) -> WorkerState:
        try:
            return self._workers[worker_id]
        except TypeError:
            raise InvalidTypeError(f"worker ids are hashable, got {worker_id!r}") from None
        except KeyError:
            raise UnknownWorkerError(f"no worker with id {worker_id!r}") from None

    def _demand(self, task: Task) -> Demand:
        """The task's nonzero demand on the resources placement tracks."""
        if not task.resources and "slots" in self._named:
            return _ONE_SLOT  # the usual task: no mapping to build
        return nonzero(demand_of(task, self._named))

    def _check_query(self, task: object, where: object) -> None:
        if not isinstance(task, Task):
            raise InvalidTypeError(f"expected a Task, got {type(task).__name__} {task!r}")
        if where is not None and not callable(where):
            raise InvalidTypeError(
                f"where must be a function of a WorkerState returning bool, or None; got {where!r}"
            )

    def _index(self, key: LoadKey) -> LoadIndex:
        """Build the load index sorted by ``key``; past ``_MAX_INDEXES``, the oldest
        index is dropped."""
        indexes = self._indexes
        busy, self._busy = self._busy, True  # building calls the key
        try:
            index = LoadIndex(
                key, self._workers.values(), separate_degraded=self._degraded != "include"
            )
        finally:
            self._busy = busy
        if len(indexes) >= _MAX_INDEXES:
            del indexes[next(iter(indexes))]  # _guard_keys is worked out below
        indexes[key] = index
        self._index_list = tuple(indexes.values())
        self._guard_unknown_keys()
        return index

    def _skill_index(self, key: LoadKey, skills: frozenset[str]) -> LoadIndex:
        """Build the load index sorted by ``key`` of the workers that have ``skills``.
        Kept as long as the tracker lives: at most ``_MAX_SKILL_INDEXES`` are built."""
        busy, self._busy = self._busy, True  # building calls the key
        try:
            index = LoadIndex(
                key,
                (state for state in self._workers.values() if skills <= state.skills),
                separate_degraded=self._degraded != "include",
            )
        finally:
            self._busy = busy
        self._skill_indexes[(key, skills)] = index
        self._skill_indexes_of.clear()  # which a worker is filed in: worked out again
        self._guard_unknown_keys()
        return index

    def _guard_unknown_keys(self) -> None:
        """Refile under the re-entry guard while some index's key is not known to be pure."""
        keys = {*self._indexes, *(key for key, _ in self._skill_indexes)}
        self._guard_keys = not keys <= PURE_KEYS

    def _filed_by_skill(self, state: WorkerState) -> tuple[LoadIndex, ...]:
        """The skill indexes ``state`` is filed in: those of skills it has."""
        filed = self._skill_indexes_of.get(state)
        if filed is None:
            skills = state.skills
            filed = self._skill_indexes_of[state] = tuple(
                index for (_, needed), index in self._skill_indexes.items() if needed <= skills
            )
        return filed

    def _refile(self, state: WorkerState, health_changed: bool = False) -> None:
        """After a change to a worker's load, weight, capacity or health: file it anew
        (its load indexes, and whether it has room). A change of health comes
        through _changed, which takes it out of the room set it was in."""
        indexes = self._index_list
        if self._skill_indexes:
            indexes += self._filed_by_skill(state)
        if indexes:
            if self._guard_keys:
                self._busy = True  # a key of the caller's own: no calls back
                try:
                    for index in indexes:
                        index.place(state)
                finally:
                    self._busy = False
            else:
                for index in indexes:
                    index.place(state)
        health = state.health
        if health is _UNAVAILABLE or not (health_changed or state._free_flipped):
            return  # its room set is right already (a probe of a large set costs a miss)
        room = self._room_degraded if health is _DEGRADED else self._room_healthy
        if state._has_free:
            room.add(state)
        else:
            room.discard(state)

    def _changed(self, state: WorkerState, before: Health) -> None:
        """The outcome bookkeeping changed a worker's health or effective weight."""
        if before is not state.health:
            self._room_healthy.discard(state)
            self._room_degraded.discard(state)
            self._degraded_count += (state.health is _DEGRADED) - (before is _DEGRADED)
            if (before is _UNAVAILABLE) is not (state.health is _UNAVAILABLE):
                self._count_available(state, -1 if before is not _UNAVAILABLE else 1)
        self._refile(state, before is not state.health)

    def _count_available(self, state: WorkerState, sign: int) -> None:
        """A worker joins (``sign`` 1) or leaves (-1) the workers that are not UNAVAILABLE."""
        self._available_in_flight += sign * state.in_flight
        self._count_weight(sign * Fraction(state.weight))

    def _count_weight(self, change: Fraction) -> None:
        self._available_weight_sum += change
        self._available_weight = float(self._available_weight_sum)

    def _leave_pool(self, state: WorkerState) -> None:
        at = self._pool_at.pop(state)
        last = self._pool.pop()
        if at < len(self._pool):  # it was not the last: the last takes its place
            self._pool[at] = last
            self._pool_at[last] = at

    def _query(
        self, task: object, where: WorkerFilter | None, run: Callable[..., _R], *args: Any
    ) -> _R:
        """A query's way in: check ``task`` and ``where``, bring the tracker up to date,
        then ``run(*args)`` refusing calls back while it runs ``where``."""
        if not isinstance(task, Task) or (where is not None and not callable(where)):
            self._check_query(task, where)  # raises (tested first: this is the hot path)
        self._refresh()
        if where is None:
            return run(*args)
        return self._filtered(where, run, *args)

    def _filtered(self, where: WorkerFilter | None, run: Callable[..., _R], *args: Any) -> _R:
        """``run(*args)``, refusing calls back into the tracker while it runs ``where``
        (or a load key) on the tracker's behalf."""
        if where is None:
            return run(*args)
        self._busy = True
        try:
            return run(*args)
        finally:
            self._busy = False

    def _refresh(self) -> float:
        """Lift ejections that are due and move slow-start weights along; return now.

        Every public method that reads or changes the workers calls it first,
        so it is where a call from inside a filter or a key is refused."""
        if self._busy:
            raise ReentrancyError(
                "a where= filter or a load key called back into the CapacityTracker that is "
                "running it; they may only read the WorkerState they are given "
                "(the call was refused and changed nothing)"
            )
        now = self._clock.now()
        if now >= self._outcomes.next_due:
            self._outcomes.due(now)
        return now


def _same_config(data: object, mine: dict[str, Any], where: str) -> None:
    """Refuse a snapshot's configuration that is not ``mine``, naming the first field
    that differs (a policy's own field, or the policy on one side and off on the other)."""
    fields = Fields(data, where)
    for name, value in mine.items():
        theirs = fields.value(name)
        if type(value) is dict and type(theirs) is dict:
            policy = Fields(theirs, f"{where}.{name}")
            for field, amount in value.items():
                policy.same(field, amount, "tracker")
            policy.done()
        else:
            fields.same(name, value, "tracker")
    fields.done()


def _check_load(
    tasks: list[tuple[Task, Demand]],
    load: dict[str, Any],
    worker: Worker,
    named: set[str],
    where: str,
) -> None:
    """A worker's load is the sum of its tasks' demands (to rounding), and each demand
    is its task's on resources the tracker tracks."""
    sums: dict[str, float] = {}
    for j, (task, demand) in enumerate(tasks):
        own = demand_of(task)
        names = [name for name, _ in demand]
        if len(set(names)) != len(names) or any(
            name not in named or amount <= 0 or own.get(name) != amount for name, amount in demand
        ):
            refuse(
                f"{where}.tasks[{j}][1]",
                f"is not the demand of task {task.id!r} on the resources tracked: "
                f"{[list(pair) for pair in demand]!r}",
            )
        for name, amount in demand:
            sums[name] = sums.get(name, 0.0) + amount
    for name in sorted(set(sums) | set(load)):
        held, expected = float(load.get(name, 0.0)), sums.get(name, 0.0)
        scale = max(1.0, abs(held), expected, worker.capacity.get(name, 0.0))
        if abs(held - expected) > _LOAD_TOLERANCE * scale:
            refuse(
                f"{where}.load",
                f"holds {held!r} of {name!r}; the demands of the worker's tasks add up "
                f"to {expected!r}",
            )


def _number_or_none(value: object) -> bool:
    return value is None or (type(value) in (int, float) and math.isfinite(value))  # type: ignore[arg-type]


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _check_ranges(worker: Worker) -> None:
    """A worker's weight and capacity within what the tracker takes (see ``_ranges``)."""
    check_weight(worker.weight, f"worker {worker.id!r} weight")
    check_capacity(worker.capacity, f"worker {worker.id!r} capacity")


def _qualifies(
    state: WorkerState,
    requires: frozenset[str],
    zone: str | None,
    demand: Demand,
    where: WorkerFilter | None,
) -> bool:
    """Whether a worker is a candidate (health policy aside): available, skills, zone, room,
    and the host's filter."""
    return (
        state.health is not _UNAVAILABLE
        and state._admits(requires, zone, demand)
        and (where is None or where(state))
    )
