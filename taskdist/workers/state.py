"""WorkerState: the read-only, live view of one worker, and what a task demands of it.

A :class:`~taskdist.CapacityTracker` owns the views. It (with its outcome
bookkeeping) changes a view only through the private mutators the view
defines; balancers and hosts read them. The test "can it take this task"
(skills, zone, and whether the demand fits) is written once, here
(:meth:`WorkerState._admits`).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Container, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, SupportsIndex, overload

if TYPE_CHECKING:
    from typing_extensions import Self

from taskdist.task import Task, Worker
from taskdist.workers.health import Health

__all__ = ["WorkerState", "demand_of"]

_DEFAULT_DEMAND: Final[Mapping[str, float]] = types.MappingProxyType({"slots": 1.0})
_NO_DEMAND: Final[Mapping[str, float]] = types.MappingProxyType({})
# Loads are sums of float demands; a placement fits when it overshoots the
# capacity by no more than this fraction (so 0.1 * 10 fits in 1.0).
_TOLERANCE: Final = 1e-9
_LARGEST: Final = sys.float_info.max
_NO_SKILLS: Final[frozenset[str]] = frozenset()

Demand = Sequence[tuple[str, float]]
"""A task's demand as placement checks it: ``(resource, amount)`` pairs, amounts > 0."""

_set = object.__setattr__


def demand_of(task: Task, tracked: Container[str] | None = None) -> Mapping[str, float]:
    """What ``task`` takes from a worker: ``task.resources``, with ``"slots"`` defaulting to 1.

    A task that names no ``"slots"`` takes one slot; ``resources={"slots": 0}``
    takes none (a task that only uses, say, ``"gpu"``). With ``tracked`` (the
    resources some registered worker's capacity names), a resource outside it
    is left out: it is not the workers' to give (an API's ``"api_calls"`` is a
    gate's business). O(len(resources)).

    >>> dict(demand_of(Task("t"))), dict(demand_of(Task("t", resources={"gpu": 2})))
    ({'slots': 1.0}, {'gpu': 2.0, 'slots': 1.0})
    >>> dict(demand_of(Task("t", resources={"api_calls": 1}), tracked={"slots"}))
    {'slots': 1.0}
    """
    resources = task.resources
    if tracked is None:
        if not resources:
            return _DEFAULT_DEMAND
        if "slots" in resources:
            return resources
        demand = dict(resources)
        demand["slots"] = 1.0
        return demand
    if not resources:
        return _DEFAULT_DEMAND if "slots" in tracked else _NO_DEMAND
    demand = {name: amount for name, amount in resources.items() if name in tracked}
    if "slots" not in resources and "slots" in tracked:
        demand["slots"] = 1.0
    return demand


def nonzero(demand: Mapping[str, float]) -> Demand:
    """The pairs of ``demand`` with an amount above 0 (what placement checks). O(r)."""
    return [(name, amount) for name, amount in demand.items() if amount]


def _limits(capacity: Mapping[str, float]) -> dict[str, float]:
    # min(): a capacity near the largest float must not round its limit up to infinity.
    return {
        name: min(amount + _TOLERANCE * max(1.0, amount), _LARGEST)
        for name, amount in capacity.items()
    }


class WorkerState:
    """A read-only, live view of one worker inside a :class:`~taskdist.CapacityTracker`.

    The tracker updates it in place as tasks are assigned and released and
    as health changes, so a balancer may keep a reference; assigning to an
    attribute raises ``AttributeError``. Identity is stable for as long as the
    worker is registered (equality is identity). After ``remove_worker`` the
    view stops changing.

    Attribute reads are plain slot reads (O(1), no computation); ``free``,
    ``fits`` and ``headroom`` are O(number of resources). Like its tracker,
    a view is not safe to read while another thread changes the tracker.
    """

    __slots__ = (
        "_free_flipped",
        "_has_free",
        "_limit",
        "_load",
        "_sized",
        "_tasks",
        "_tracked",
        "added_at",
        "capacity",
        "consecutive_failures",
        "cost",
        "effective_weight",
        "ejected_until",
        "ejections",
        "health",
        "host_health",
        "id",
        "in_flight",
        "latency",
        "load",
        "load_ratio",
        "outcomes",
        "seq",
        "skills",
        "success_rate",
        "weight",
        "worker",
        "zone",
    )

    # Capacity plus the float tolerance, per resource: what a placement may reach.
    _limit: dict[str, float]
    _load: dict[str, float]
    # (resource, capacity) for the resources of capacity > 0, for the load ratio.
    _sized: tuple[tuple[str, float], ...]
    # task id -> (task, its nonzero demand), oldest assignment first.
    _tasks: dict[Hashable, tuple[Task, Demand]]
    # Whether some resource its capacity names is not taken in full (load < capacity),
    # and whether the last change of load or capacity turned that around.
    _has_free: bool
    _free_flipped: bool
    _tracked: Container[str] | None

    id: Hashable
    """The worker's id."""
    worker: Worker
    """The :class:`~taskdist.task.Worker` as last added or updated."""
    seq: int
    """Registration order in its tracker (0, 1, 2, ...): candidates come in this order."""
    capacity: Mapping[str, float]
    """Capacity per resource (``worker.capacity``)."""
    load: Mapping[str, float]
    """Demand of the tasks in flight, per resource (read-only, live)."""
    in_flight: int
    """Tasks assigned and not yet released."""
    load_ratio: float
    """Load over capacity of its busiest resource (0 idle, 1 full; 1 if it has no capacity).

    Resources of capacity 0 are left out; above 1 when capacity was shrunk under load."""
    weight: float
    """The configured weight (``worker.weight``)."""
    effective_weight: float
    """The weight weighted strategies use: ``weight`` scaled down during slow start."""
    health: Health
    """The worst of: what the host set, what outcomes say, ``UNAVAILABLE`` while ejected."""
    host_health: Health
    """What the host last set with ``set_health`` (``HEALTHY`` at first)."""
    ejected_until: float | None
    """When the current outlier ejection ends, or ``None`` if not ejected."""
    ejections: int
    """The ejection multiplier: how many recent ejections lengthen the next one."""
    consecutive_failures: int
    """Failed outcomes in a row since the last success or ejection."""
    latency: float | None
    """EWMA of reported task durations (seconds), ``None`` before the first."""
    success_rate: float
    """EWMA of outcomes (1 success, 0 failure); starts at 1.0."""
    outcomes: int
    """Outcomes reported (``ok`` True or False) since the worker was added."""
    zone: str | None
    skills: frozenset[str]
    cost: float
    added_at: float
    """Clock time of ``add_worker``."""

    def __init__(
        self, worker: Worker, seq: int, now: float, tracked: Container[str] | None = None
    ) -> None:
        # The resources the tracker's workers have named: demand outside them is not ours.
        _set(self, "_tracked", tracked)
        _set(self, "_load", {})
        _set(self, "_tasks", {})
        _set(self, "_has_free", False)  # until _describe works it out
        _set(self, "id", worker.id)
        _set(self, "seq", seq)
        _set(self, "added_at", now)
        _set(self, "load", types.MappingProxyType(self._load))
        _set(self, "in_flight", 0)
        _set(self, "host_health", Health.HEALTHY)
        _set(self, "health", Health.HEALTHY)
        _set(self, "ejected_until", None)
        _set(self, "ejections", 0)
        _set(self, "consecutive_failures", 0)
        _set(self, "latency", None)
        _set(self, "success_rate", 1.0)
        _set(self, "outcomes", 0)
        self._describe(worker)

    # -- reading ----------------------------------------------------------

    def free(self, resource: str = "slots") -> float:
        """Capacity of ``resource`` not taken by tasks in flight (never below 0). O(1)."""
        return max(0.0, self.capacity.get(resource, 0.0) - self._load.get(resource, 0.0))

    def fits(self, task: Task) -> bool:
        """Whether ``task``'s demand (see :func:`demand_of`) fits in the free capacity now.

        Says nothing about health or skills. O(len(task.resources)).
        """
        return self._fits(nonzero(demand_of(task, self._tracked)))

    def headroom(self, task: Task) -> float:
        """How many more tasks like ``task`` fit now (fractional; ``inf`` if it demands nothing).

        The minimum over the resources ``task`` demands of free / demand.
        O(len(task.resources)).
        """
        room = float("inf")
        for name, amount in nonzero(demand_of(task, self._tracked)):
            room = min(room, self.free(name) / amount)
        return room

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"WorkerState is a read-only view; change worker {self.id!r} "
            f"through its CapacityTracker (cannot set {name!r})"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"WorkerState is a read-only view (cannot delete {name!r})")

    def __repr__(self) -> str:
        return (
            f"WorkerState({self.id!r}, in_flight={self.in_flight}, load={dict(self._load)!r}, "
            f"health={self.health.value!r})"
        )

    # -- the fit test, for the tracker ---------------------------------------

    def _admits(
        self, requires: frozenset[str], zone: str | None, demand: Iterable[tuple[str, float]]
    ) -> bool:
        """Whether it has every skill in ``requires``, is in ``zone`` (unless ``None``),
        and every ``(resource, amount)`` of ``demand`` fits its free capacity. O(r).

        Health is the tracker's business, and so are its filters."""
        if requires and not requires <= self.skills:
            return False
        if zone is not None and self.zone != zone:
            return False
        load = self._load
        limit = self._limit
        # A loop, not all(): a generator costs more than the check on the hot path.
        for name, amount in demand:  # noqa: SIM110
            if load.get(name, 0.0) + amount > limit.get(name, 0.0):
                return False
        return True

    def _fits(self, demand: Iterable[tuple[str, float]]) -> bool:
        """Whether every ``(resource, amount)`` of ``demand`` fits the free capacity. O(r)."""
        return self._admits(_NO_SKILLS, None, demand)

    def _short_of(self, demand: Iterable[tuple[str, float]]) -> str:
        """What of ``demand`` does not fit, for an error message. O(r)."""
        return "; ".join(
            f"{name}: needs {amount:g}, free {self.free(name):g}"
            for name, amount in demand
            if not self._fits(((name, amount),))
        )

    # -- the private mutators: the tracker and its bookkeeping call them --------

    def _describe(self, worker: Worker) -> None:
        """Take on ``worker``'s static fields (on add and update); ``effective_weight``
        becomes ``weight`` until the slow-start bookkeeping says otherwise."""
        _set(self, "worker", worker)
        _set(self, "capacity", worker.capacity)
        # A resource of capacity 0 counts as absent (as for candidates), so draining
        # one under load leaves the ratio finite and load_variance a number.
        _set(self, "_sized", tuple((n, a) for n, a in worker.capacity.items() if a > 0))
        _set(self, "_limit", _limits(worker.capacity))
        _set(self, "weight", worker.weight)
        _set(self, "effective_weight", worker.weight)
        _set(self, "zone", worker.zone)
        _set(self, "skills", worker.skills)
        _set(self, "cost", worker.cost)
        self._update_ratio()

    def _hold(self, task: Task, demand: Demand) -> None:
        """Add ``task`` and its ``demand`` (nonzero amounts) to the load; the caller
        checked that it fits."""
        load = self._load
        for name, amount in demand:
            load[name] = load.get(name, 0.0) + amount
        self._tasks[task.id] = (task, demand)
        _set_in_flight(self, self.in_flight + 1)
        self._update_ratio()

    def _let_go(self, task_id: Hashable) -> Task | None:
        """Take a task's demand off the load; the task, or ``None`` if it is not held."""
        held = self._tasks.pop(task_id, None)
        if held is None:
            return None
        load = self._load
        _set_in_flight(self, self.in_flight - 1)
        if not self._tasks:
            load.clear()  # exact zero: no float residue from the sums
        else:
            for name, amount in held[1]:
                load[name] -= amount
        self._update_ratio()
        return held[0]

    def _set_effective_weight(self, value: float) -> None:
        _set(self, "effective_weight", value)

    def _set_health(self, health: Health) -> None:
        _set(self, "health", health)

    def _set_host_health(self, health: Health) -> None:
        _set(self, "host_health", health)

    def _set_ejection(self, until: float | None, ejections: int, failures: int) -> None:
        """Start (``until`` a time) or end (``None``) an ejection, with the ejection
        multiplier and the consecutive-failure count that follow."""
        _set(self, "ejected_until", until)
        _set(self, "ejections", ejections)
        _set(self, "consecutive_failures", failures)

    def _set_latency(self, value: float) -> None:
        _set_latency(self, value)

    def _count_outcome(self, success_rate: float, ok: bool) -> None:
        """Record one outcome: the new success EWMA, the count, the failures in a row."""
        _set_success_rate(self, success_rate)
        _set_outcomes(self, self.outcomes + 1)
        _set_consecutive_failures(self, 0 if ok else self.consecutive_failures + 1)

    def _restore(
        self,
        fields: dict[str, object],
        tasks: list[tuple[Task, Demand]],
        load: dict[str, float],
    ) -> None:
        """Take on a snapshot's dynamic fields (health, ejection, averages, effective
        weight), tasks with their demands and load; the tracker checked them."""
        for name, value in fields.items():
            _set(self, name, value)
        self._tasks.update((task.id, (task, demand)) for task, demand in tasks)
        self._load.update(load)
        _set(self, "in_flight", len(tasks))
        self._update_ratio()

    def _update_ratio(self) -> None:
        """Work out ``load_ratio`` (the busiest resource) and ``_has_free`` (some
        resource not full) after the load or the capacity changed. O(r)."""
        load = self._load
        sized = self._sized
        if len(sized) == 1:  # the usual worker: slots only
            name, amount = sized[0]
            used = load.get(name, 0.0)
            ratio = used / amount
            has_free = used < amount
        else:
            ratio = 0.0 if sized else 1.0
            has_free = False
            for name, amount in sized:
                used = load.get(name, 0.0)
                ratio = max(ratio, used / amount)
                has_free = has_free or used < amount
        _set_load_ratio(self, ratio)
        _set_free_flipped(self, has_free is not self._has_free)
        _set_has_free(self, has_free)


# Setters of the slots the task cycle changes (assign, release, an outcome): a
# slot's own descriptor, about twice as fast as object.__setattr__ by name.
_set_in_flight = WorkerState.__dict__["in_flight"].__set__
_set_load_ratio = WorkerState.__dict__["load_ratio"].__set__
_set_free_flipped = WorkerState.__dict__["_free_flipped"].__set__
_set_has_free = WorkerState.__dict__["_has_free"].__set__
_set_latency = WorkerState.__dict__["latency"].__set__
_set_success_rate = WorkerState.__dict__["success_rate"].__set__
_set_outcomes = WorkerState.__dict__["outcomes"].__set__
_set_consecutive_failures = WorkerState.__dict__["consecutive_failures"].__set__


class CandidateList(list[WorkerState]):
    """The list ``CapacityTracker.candidates`` returns: a plain list of views, marked
    as holding nothing but ``WorkerState`` objects until something is put into it.

    Balancers check what they are given (:func:`~taskdist.balancing.base.check_candidates`):
    a list the tracker made and nobody added to is taken as it is, in O(1);
    any other sequence is checked element by element. Putting anything into
    the list (``append``, ``extend``, ``insert``, item assignment, ``+=``)
    drops the mark; removing and reordering keep it. Slices and ``copy()``
    are plain lists, and ``copy.copy`` comes back unmarked: they are checked
    like any other sequence. Making one costs what making a list does.
    """

    # A class default, so making one stays the C-level list constructor (no
    # __init__ of ours on the dispatch path); an instance that is added to
    # shadows it with False in its own dict.
    _vouched: bool = True

    @property
    def vouched(self) -> bool:
        """Whether it still holds only what the tracker put in."""
        return self._vouched

    def append(self, value: WorkerState, /) -> None:
        self._vouched = False
        super().append(value)

    def extend(self, values: Iterable[WorkerState], /) -> None:
        self._vouched = False
        super().extend(values)

    def insert(self, index: SupportsIndex, value: WorkerState, /) -> None:
        self._vouched = False
        super().insert(index, value)

    @overload
    def __setitem__(self, index: SupportsIndex, value: WorkerState, /) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[WorkerState], /) -> None: ...
    def __setitem__(self, index: SupportsIndex | slice, value: object, /) -> None:
        self._vouched = False
        super().__setitem__(index, value)  # type: ignore[call-overload]

    def __iadd__(self, values: Iterable[WorkerState], /) -> Self:  # type: ignore[misc,override]
        self._vouched = False
        return super().__iadd__(values)
