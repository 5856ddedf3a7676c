"""Distributor: a queue, workers, a balancer, breakers, retries, gates and leases, composed.

The Distributor is a state machine a host drives: it takes tasks
(``submit``), hands out assignments (``dispatch``), hears outcomes
(``complete`` / ``fail`` / ``heartbeat``), and keeps time when told
(``tick``, ``next_wakeup``). It never sleeps, spawns or runs a task.
"""

from __future__ import annotations

import math
import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

import attrs

from taskdist._call_all import call_all
from taskdist._validate import check_int, check_number, check_optional_number
from taskdist.balancing.base import Balancer, check_balancer, hears_nothing, trusts_choice
from taskdist.balancing.least_load import LeastConnections
from taskdist.batching.optimizer import BatchOptimizer
from taskdist.clock import Clock, reader
from taskdist.dispatch import _persistence
from taskdist.dispatch._gate_scouts import gate_scouts
from taskdist.dispatch._gate_shut import Shut, gate_shut
from taskdist.dispatch._parking import GATES, ParkingLot, signature
from taskdist.dispatch._placement import Filter, PlacementRules
from taskdist.dispatch._records import (
    _BREAKER,
    _ESCALATE,
    _GANG,
    _GANG_RETRY,
    _HEALTH_RANK,
    _LEASE,
    _REFUSING,
    _RETRY,
    _STEP,
    _TENANT_COLUMN,
    _TTL,
    _WAITING,
    _WORKER_FIELDS,
    _assignment,
    _BreakerTimer,
    _check_gates,
    _error_text,
    _EscalationTimer,
    _frees_on_release,
    _gate_admits,
    _gate_list,
    _gate_words,
    _gates_admit,
    _group,
    _group_words,
    _hashable,
    _held_by,
    _is_pause,
    _lookup,
    _policy_limit,
    _Refusal,
    _Refused,
    _Run,
    _RunningBatch,
    _StepTimer,
)
from taskdist.dispatch._timers import Timers
from taskdist.dispatch.dead_letter import DeadLetter, DeadLetterQueue, RedriveReport, Selector
from taskdist.dispatch.escalation import Escalation
from taskdist.dispatch.events import Event, EventKind, Listener
from taskdist.dispatch.gangs import (
    WAITING_FOR_GANG,
    GangBook,
    GangMark,
    GangRetryTimer,
    Gangs,
    GangTimer,
)
from taskdist.dispatch.gangs import gang_leaders as _gang_leaders
from taskdist.dispatch.intake import IntakePolicy, Verdict
from taskdist.dispatch.preemption import Preemption
from taskdist.dispatch.reservation import (
    NOWHERE,
    Backfill,
    HeldGroup,
    Holds,
    Reservation,
    backfill_group,
)
from taskdist.dispatch.retry_budget import RetryBudget
from taskdist.dispatch.routing import Pool, Route, Router
from taskdist.dispatch.stats import AttemptRecord, DistributorStats, TenantCounts, WorkerCounts
from taskdist.errors import (
    CapacityError,
    CircuitOpenError,
    ClosedError,
    DeadlineError,
    DeadlineInfeasibleError,
    InvalidArgumentError,
    InvalidTypeError,
    QueueFullError,
    QuotaExceededError,
    ReentrancyError,
    SnapshotError,
    TaskdistError,
    TaskStateError,
    UnknownTaskError,
    UnsatisfiableDemandError,
    WorkerFullError,
    WorkerUnavailableError,
)
from taskdist.metrics import RecentSamples, coefficient_of_variation
from taskdist.queues._held import HeldTasks
from taskdist.queues.deadline import DeadlineScheduler
from taskdist.queues.priority import PriorityQueue
from taskdist.queues.protocol import Eviction, Queue, expire_with_reasons
from taskdist.resilience.breaker import BreakerStateChange, CircuitBreaker, CircuitState
from taskdist.resilience.gates import AllGates, Gate
from taskdist.resilience.retry import RetryPolicy
from taskdist.task import Assignment, Reason, Task, TaskState, Worker, _slot_setters
from taskdist.workers._ranges import MAX_SECONDS
from taskdist.workers.health import Health
from taskdist.workers.state import WorkerState
from taskdist.workers.tracker import CapacityTracker

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["BreakerFactory", "Distributor", "SubmitResult"]

BreakerFactory = Callable[[Hashable], CircuitBreaker]
"""Makes the circuit breaker of one worker from its id, e.g.
``lambda worker_id: CircuitBreaker(clock, minimum_calls=5)``."""


@attrs.frozen(init=False)
class SubmitResult:
    """What ``submit`` did: accepted the task, or found it a duplicate.

    Truthy when accepted. ``state`` is the task's state after the call: for an
    accepted task usually ``QUEUED`` (``DEAD`` if a bounded queue evicted it at
    once); for a duplicate, the state of the task already known by that id.
    """

    task_id: Hashable
    accepted: bool
    state: TaskState

    # Written out, as Task's: one is made per submit.
    def __init__(self, task_id: Hashable, accepted: bool, state: TaskState) -> None:
        _set_task_id(self, task_id)
        _set_accepted(self, accepted)
        _set_state(self, state)

    @property
    def duplicate(self) -> bool:
        """Whether the id was already live, or finished within the dedup window."""
        return not self.accepted

    def __bool__(self) -> bool:
        return self.accepted


_set_task_id, _set_accepted, _set_state = _slot_setters(SubmitResult)


_BATCH_SCAN = 64
"""Most queued tasks of other groups (or not placeable) a batch looks past for its next task."""
# The round-blocked mark of a gang whose other members the queue would not take along.
_TAKE_ALONG_REFUSED = "take along refused"

# What redrive() finds in place of the id it took in once the queue evicted that task back.
_EVICTED_BACK: Hashable = object()


def _undo_admissions(verdicts: list[tuple[IntakePolicy, Verdict]], task: Task) -> None:
    """The submit of ``task`` was refused: each policy that admitted it takes that back
    (``undo_admit`` where it has one, restoring what the admission replaced; else
    ``forget``)."""
    for policy, _ in verdicts:
        undo = getattr(policy, "undo_admit", None)
        if undo is not None:
            undo(task)
        else:
            policy.forget(task)


def _check_choice(
    balancer: Balancer,
    task: Task,
    worker: object,
    tracker: CapacityTracker,
    where: Filter | None,
) -> None:
    """Refuse what a user's ``choose`` returned unless it is a candidate of ``tracker``
    for ``task``: the tracker's own view of one of its workers (not a look-alike of
    another tracker's, nor something else) that ``is_candidate`` accepts. O(r).

    Raises:
        InvalidTypeError: it is not a ``WorkerState``.
        InvalidArgumentError: it is not a candidate of this tracker.
    """
    if type(worker) is not WorkerState:
        raise InvalidTypeError(
            f"balancer {balancer!r} chose {type(worker).__name__} {worker!r:.80} for task "
            f"{task.id!r}: choose() must return one of the tracker's WorkerState views "
            "or None; nothing was placed"
        )
    worker_id = worker.id
    if not (
        worker_id in tracker
        and tracker.worker(worker_id) is worker
        and tracker.is_candidate(task, worker_id, where)
    ):
        raise InvalidArgumentError(
            f"balancer {balancer!r} chose {worker!r} for task {task.id!r}, "
            "which is not one of its candidates (unavailable, full, missing a skill, "
            "outside its route, its breaker is open, or a worker of another tracker); "
            "nothing was placed"
        )


def _check_worker_takes(state: WorkerState, task: Task) -> None:
    """Refuse, for :meth:`Distributor.assign`, a worker that cannot take ``task`` now."""
    if state.health is Health.UNAVAILABLE:
        raise WorkerUnavailableError(
            f"worker {state.id!r} is unavailable; {task.id!r} was not assigned"
        )
    if not state.fits(task):
        raise WorkerFullError(
            f"task {task.id!r} does not fit worker {state.id!r}'s free capacity; "
            "it was not assigned"
        )


def _with_gang_mates(selected: list[DeadLetter], dlq: DeadLetterQueue) -> list[DeadLetter]:
    """``selected``, the first selected member of each gang followed by every other member
    of its gang in ``dlq`` (oldest first, selected or not): a gang is taken in whole or
    its members wait for the rest, and no task taken in between its members can take the
    room ``max_queued`` had for them."""
    gangs = {entry.task.gang for entry in selected if entry.task.gang is not None}
    if not gangs:
        return selected
    # One pass over the dead-letter queue, whatever the number of gangs selected.
    mates: dict[Hashable, list[DeadLetter]] = {}
    for mate in dlq:
        if mate.task.gang in gangs:
            mates.setdefault(mate.task.gang, []).append(mate)
    placed: set[Hashable] = set()
    out: list[DeadLetter] = []
    for entry in selected:
        if entry.task.id in placed:
            continue  # a member placed after the first selected one of its gang
        placed.add(entry.task.id)
        out.append(entry)
        gang = entry.task.gang
        if gang is None:
            continue
        for mate in mates.pop(gang, ()):
            if mate.task.id not in placed:
                placed.add(mate.task.id)
                out.append(mate)
    return out


class _ScanOver(Exception):
    """Stops a batch's walk through the queue once it has looked far enough."""


class _Joiner:
    """The ``where=`` of a batch's walk: does a queued task join the batch now?"""

    __slots__ = ("balancer", "d", "group", "scanned", "worker")

    def __init__(
        self, d: Distributor, group: Hashable, worker: WorkerState, balancer: Balancer
    ) -> None:
        self.d = d
        self.group = group
        self.worker = worker
        self.balancer = balancer
        self.scanned = 0

    def __call__(self, task: Task) -> bool:
        d = self.d
        batcher = d._batcher
        assert batcher is not None
        if batcher.group_of(task) == self.group and self._placeable_here(task):
            d._choice = (task, self.worker, self.balancer)
            return True
        self.scanned += 1
        if self.scanned >= _BATCH_SCAN:
            raise _ScanOver
        return False

    def _placeable_here(self, task: Task) -> bool:
        """What any placement asks (pause, gates, route, capacity held for others, room),
        of this batch's worker; a gang starts as a whole, never inside a batch."""
        d = self.d
        if task.gang is not None or d._pause_of(task) is not None:
            return False
        if d._gates is not None and d._gate_refusal(task) is not None:
            return False
        where = d._route(task)[0]
        return where is not NOWHERE and d._tracker.is_candidate(task, self.worker.id, where)


class Distributor:
    """Moves tasks from a queue onto workers under leases, and loses none of them.

    **Lifecycle.** A submitted task is in exactly one state at a time
    (:class:`~taskdist.TaskState`): ``QUEUED`` in the queue; ``PARKED`` out
    of it while no worker or gate can take it; ``RETRYING`` while a failed
    attempt waits out its retry delay; ``LEASED`` on a worker; then
    ``COMPLETED``, ``DEAD`` (in the dead-letter queue, with its reason) or
    ``CANCELLED``. Every path that takes a task out of one state puts it in
    exactly one other; :meth:`stats` counts each.

    **Dispatch.** While some worker has room, the queue offers its best task
    among those that are placeable now (``pop(where=...)``: the gates would
    admit it, and the balancer finds a worker for it among the workers
    whose breaker is not open); the balancer's choice is checked, the gates
    admit it (all or nothing), the worker's breaker grants a permit, the
    tracker records the placement, and a lease starts. A task the queue
    passes over because nothing can take it is *parked* under its
    placement signature (skills, zone, demand), or under the gates, and is
    woken, back into the queue with its age, by the events that can change
    the answer: a worker added, healthier or with capacity freed, a breaker
    half-opening, an ejection ending, a gate refilling or releasing. So a
    task nobody can run never blocks the ones behind it and is not looked at
    again until something changes. When a rate or pool gate that charges
    every task has less left than any task asks for, it holds back every
    task: the first refusal ends the walk, the tasks stay queued, in the
    queue's order, and ``next_wakeup`` says when the gate refills (see
    ``docs/distributor.md``; so a placement behind a spent rate limit costs
    one queue look, whatever the number waiting). When no worker has room,
    ``dispatch`` returns at once without looking at the queue. Putting a
    task back after the pop (a breaker refused its probe, a user's balancer
    declined) uses the queue's ``unpop`` when it has one, so it costs the
    tenant nothing.

    **Leases.** An assignment's lease runs ``lease`` seconds; ``heartbeat``
    extends it. A lease that expires counts as a failed attempt and returns
    the task to the queue at once, with the age it had (time spent running
    does not count as waiting). The first report wins: a late ``complete``
    for an expired lease completes the task if nothing has completed it
    since (ending the newer lease if it was dispatched again); a late
    ``fail`` for it changes nothing (the expiry already counted that
    attempt); either is accepted once, and a second report is an error.
    Each lease has a number no other lease has had (``Assignment.lease_id``):
    a report, heartbeat or requeue naming it reaches that lease and nothing
    else, not even a later lease of an id submitted again (whose attempts
    count from 1 once more).

    **Batches.** With a ``batcher`` (a :class:`~taskdist.BatchOptimizer`), a
    task of one of its groups (``batcher.group_of(task)`` not ``None``) that
    is placed opens a batch on its worker: queued tasks of the same group
    that the worker can take join it, best first, each passing what any
    placement passes (pause, gates, route, room), until the batcher closes
    the batch (its group's size, ``max_cost``, ``max_resources``, a CRITICAL
    task) or no such task waits. Tasks wait in the queue, not in the batcher:
    a batch takes what is queued when a worker is free (``max_wait`` holds
    nothing back here). The assignments of one batch carry its id
    (``Assignment.batch``), share one worker and one lease (a heartbeat of
    any of them renews it for all still running), and each reports on its
    own: a partial failure retries only the tasks that failed. When every
    task of a batch completed, the batcher hears how long it took, so a
    sizing rule (``AIMDSizing``) adapts the group's batch size. Forming a
    batch of b tasks costs O(b) placements plus a best-first walk that looks
    past at most 64 tasks of other groups.

    **Retries.** ``fail(..., retryable=True)`` retries after the retry
    policy's delay (held in a timer, not pushed back early) while attempts
    remain: the task's own ``max_attempts`` wins over the policy's. A task
    out of attempts is dead-lettered as ``max_attempts``, one whose error
    the policy does not retry (or failed with ``retryable=False``) as
    ``not_retryable``, both with their attempt history. TTL expiry
    (``ttl_expired``), a missed deadline (``deadline_missed``, under a
    deadline scheduler that drops them), an eviction by a bounded queue
    (``evicted``), a deadline found infeasible (``deadline_infeasible``) and
    a requeue the queue refuses (``rejected``) each end in the dead-letter
    queue with their reason. A worker removed with tasks on it requeues them
    without spending an attempt.

    **Intake.** ``submit`` of an id that is live, in the dead-letter queue,
    or finished within ``dedup_window`` seconds is a duplicate: reported,
    nothing else. ``max_queued`` bounds the tasks waiting (queued, parked,
    retrying): beyond it ``submit`` raises ``QueueFullError``. A task whose
    deadline has passed, or whose demand no gate could ever grant, is
    refused. After :meth:`close`, ``submit`` raises ``ClosedError``; leased
    and queued work still runs.

    **Time.** Lease expiries, retry delays, parked tasks' TTLs, breaker
    reopenings, escalation steps, fallback moves and gang timeouts live in
    one timer heap; the queue's expiries, the gates' refills and the
    tracker's ejections are asked of their owners.
    :meth:`tick` does everything due (``dispatch`` does too, first);
    :meth:`next_wakeup` is the earliest time something is due, never in
    the past, so a host sleeps exactly. The host loop::

        while True:
            for assignment in distributor.dispatch():
                start(assignment)              # later: complete() or fail()
            sleep_until(distributor.next_wakeup(), or new work, or an outcome)

    **Seeing inside.** ``on_event`` (and each listener added with
    :meth:`add_listener`) receives an :class:`~taskdist.Event` for every
    change, after the call that made it (a listener may call back). Every
    listener hears every event: one that raises does so once the call's
    changes are made, and the call raises the first such error after all
    were told. :meth:`stats` is a plain-data snapshot that moves nothing
    (breakers are read with ``peek_state``); :meth:`explain` says in one
    sentence why a task is where it is.

    **Errors.** Bad calls raise a specific :class:`~taskdist.TaskdistError`
    and change nothing: unknown ids, completing a task that is not leased,
    NaN or negative durations, removing an unknown worker, re-entering the
    distributor from a balancer, filter or queue callback
    (``ReentrancyError``). A callback of the host's that raises during a
    dispatch (a balancer, a gate's key, a queue's ``tenant_of``) loses no
    task: the dispatch raises the error and takes back every placement it
    made; a task the queue then refuses, or whose push back raises, is
    dead-lettered with the reason and error. Not safe to share between
    threads: use ``taskdist.threaded`` or one lock around every call.

    **Complexity** (n tasks waiting, w workers, g parked groups, r
    resources per task; "queue" and "balancer" are their own costs, e.g.
    O(log n) for a ``PriorityQueue`` and O(log w) for
    ``LeastConnections``):

    ============================  ===============================================
    ``submit``                    queue push, O(1) more
    ``dispatch`` per assignment   queue pop + balancer choose + O(r) + O(log n)
                                  timers; a task passed over is parked once,
                                  O(queue remove); behind a shut gate, one
                                  look into the queue and O(g) for g gates
    ``complete``, ``fail``        O(r + g) + O(log n) timers, + queue release
    ``heartbeat``                 O(log n)
    ``cancel``                    queue remove or O(1)
    ``redrive``                   a submit per task; O(DLQ size) for a predicate
    ``tick``                      O(log n) per timer due, + O(k) queue pushes to
                                  wake k parked tasks
    ``next_wakeup``               O(1) amortised
    ``add_worker``, ``set_health``  tracker + O(g r)
    ``remove_worker``             tracker + requeue of its tasks
    ``explain``, ``state_of``     O(1) (``explain`` of a parked task: O(w))
    ``stats``                     O(n + w + tenants) + percentiles of the windows
    ============================  ===============================================

    >>> from taskdist import ManualClock, Task, Worker
    >>> clock = ManualClock()
    >>> d = Distributor(clock)
    >>> _ = d.add_worker(Worker("w1", capacity=2))
    >>> d.submit(Task("t1")).accepted
    True
    >>> [(a.task.id, a.worker_id, a.attempt) for a in d.dispatch()]
    [('t1', 'w1', 1)]
    >>> d.complete("t1", duration=0.5)
    <TaskState.COMPLETED: 'completed'>
    >>> d.stats().by_state[TaskState.COMPLETED]
    1
    """

    __slots__ = (
        "_advised",
        "_assign_to",
        "_balancer",
        "_batch_group",
        "_batcher",
        "_batches",
        "_breaker_changes",
        "_breaker_factory",
        "_breakers",
        "_budget",
        "_busy",
        "_choice",
        "_clock",
        "_closed",
        "_counts",
        "_dead_by_reason",
        "_deadline_met",
        "_deadline_missed",
        "_deaf_balancer",
        "_dedup_window",
        "_deferred",
        "_dlq",
        "_end_to_end",
        "_escalated",
        "_escalation",
        "_events",
        "_finished",
        "_flushing",
        "_gang_plan",
        "_gang_sig",
        "_gangs",
        "_gangs_placed",
        "_gate_due",
        "_gate_list",
        "_gates",
        "_group_leased",
        "_group_live",
        "_handed_over",
        "_holds",
        "_intake",
        "_learning_gates",
        "_lease",
        "_leased_now",
        "_leases",
        "_listener",
        "_listeners",
        "_lot",
        "_max_queued",
        "_next_lease_id",
        "_now",
        "_parked",
        "_passed",
        "_paused",
        "_pop_when_empty",
        "_pops_checked",
        "_preemption",
        "_progress",
        "_queue",
        "_queue_releases",
        "_record_end_to_end",
        "_record_wait",
        "_redriving",
        "_release_from",
        "_retry",
        "_retrying",
        "_rng",
        "_room_now",
        "_round_blocked",
        "_routed",
        "_rules",
        "_scouts",
        "_shut",
        "_shut_walk",
        "_steps_held",
        "_tenants",
        "_ticked_at",
        "_timers",
        "_tracker",
        "_tracker_wake",
        "_trusted_balancer",
        "_waiting_since",
        "_waits",
        "_worker_counts",
    )

    def __init__(
        self,
        clock: Clock,
        *,
        queue: Queue | None = None,
        tracker: CapacityTracker | None = None,
        balancer: Balancer | None = None,
        breaker: BreakerFactory | None = None,
        retry: RetryPolicy | None = None,
        dlq: DeadLetterQueue | None = None,
        gates: Gate | Iterable[Gate] = (),
        routes: Iterable[Route] | None = None,
        escalation: Escalation | None = None,
        preemption: Preemption | None = None,
        reservations: Reservation | Iterable[Reservation] = (),
        backfill: Backfill | None = None,
        gangs: Gangs | None = None,
        intake: Iterable[IntakePolicy] = (),
        retry_budget: RetryBudget | None = None,
        batcher: BatchOptimizer | None = None,
        lease: float | None = 30.0,
        dedup_window: float = 60.0,
        max_queued: int | None = None,
        rng: random.Random | None = None,
        on_event: Listener | None = None,
        stats_window: int = 10_000,
    ) -> None:
        """
        Args:
            clock: where time comes from; give the queue, tracker, gates and
                breakers the same one.
            queue: any :class:`~taskdist.Queue` (default: a ``PriorityQueue``).
            tracker: the workers' :class:`~taskdist.CapacityTracker` (default: a
                new one on ``clock``); add workers through the distributor.
            balancer: places tasks (default: ``LeastConnections()``).
            breaker: makes each worker's circuit breaker from its id; ``None``:
                no breakers.
            retry: when and how often to retry (default: three attempts, capped
                exponential backoff with full jitter, drawing from ``rng``).
            dlq: where tasks that leave the normal path go (default: an
                unbounded ``DeadLetterQueue``; a bounded one must use
                ``overflow="drop_oldest"``, so that no dead letter is refused).
            gates: admission gates (rate limits, pools), all or nothing.
            routes: routing rules, tried in order (see :class:`~taskdist.Route`):
                the first that matches a task decides its pool and balancer.
            escalation: raises (or re-routes) tasks that wait too long
                (see :class:`~taskdist.Escalation`); ``None``: none.
            preemption: when an urgent task finds every worker that could run it
                full, emit a ``preempt`` event naming running tasks to give
                back (see :class:`~taskdist.Preemption`); ``None``: never.
            reservations: shares of pools held for urgent tasks (see
                :class:`~taskdist.Reservation`).
            backfill: reserve a worker for the next large task that finds no room,
                and let only tasks that end in time use it meanwhile (see
                :class:`~taskdist.Backfill`); ``None``: no such reservation.
            gangs: how long a gang (tasks with ``gang``) may wait to start all
                together (see :class:`~taskdist.Gangs`; default: ``Gangs()``).
            intake: rules on arriving tasks by key (``ConcurrencyLimit``,
                ``Debounce``, ``Throttle``); one that is also a gate gates too.
            retry_budget: bounds the retries in progress (a
                :class:`~taskdist.RetryBudget`); ``None``: no bound.
            batcher: a :class:`~taskdist.BatchOptimizer` (on the same clock, empty,
                used by this distributor alone): tasks of one of its groups are
                dispatched together to one worker, as one batch under one lease
                (see "Batches" above); ``None``: every task goes alone.
            lease: seconds an assignment may run without a heartbeat (> 0), or
                ``None`` for leases that never expire.
            dedup_window: seconds a finished task's id stays known, so that a
                resubmit is reported as a duplicate (>= 0; memory grows with the
                tasks finished per window).
            max_queued: most tasks waiting (queued, parked, retrying) at once
                (>= 1), or ``None`` for no bound.
            rng: the random source of the default retry policy.
            on_event: receives every :class:`~taskdist.Event`.
            stats_window: how many recent waits and latencies ``stats()``
                computes percentiles over (>= 1).

        Raises:
            InvalidTypeError: an argument of the wrong kind.
            InvalidArgumentError: ``lease`` <= 0, a negative ``dedup_window``,
                ``max_queued`` < 1, a dead-letter queue that rejects when full.
        """
        if not callable(getattr(clock, "now", None)):
            raise InvalidTypeError(f"clock must have a now() method, got {clock!r}")
        if queue is None:
            queue = PriorityQueue(clock)
        elif not isinstance(queue, Queue):
            raise InvalidTypeError(
                f"queue must be a Queue (push, pop, peek, remove, expire, next_wakeup, "
                f"release, len, in), got {type(queue).__name__}"
            )
        if tracker is None:
            tracker = CapacityTracker(clock)
        elif not isinstance(tracker, CapacityTracker):
            raise InvalidTypeError(f"tracker must be a CapacityTracker, got {tracker!r}")
        balancer = LeastConnections() if balancer is None else check_balancer(balancer, "balancer")
        if breaker is not None and not callable(breaker):
            raise InvalidTypeError(
                f"breaker must make a CircuitBreaker from a worker id, got {breaker!r}"
            )
        if rng is None:
            rng = random.Random()
        elif not isinstance(rng, random.Random):
            raise InvalidTypeError(f"rng must be a random.Random, got {rng!r}")
        if retry is None:
            retry = RetryPolicy(max_attempts=3, jitter="full", rng=rng)
        elif not isinstance(retry, RetryPolicy):
            raise InvalidTypeError(f"retry must be a RetryPolicy, got {retry!r}")
        if dlq is None:
            dlq = DeadLetterQueue(clock)
        elif not isinstance(dlq, DeadLetterQueue):
            raise InvalidTypeError(f"dlq must be a DeadLetterQueue, got {dlq!r}")
        elif dlq.maxsize is not None and dlq.overflow == "reject":
            raise InvalidArgumentError(
                "the dead-letter queue must not refuse a task when full (a refused dead "
                "letter would be lost): give it overflow='drop_oldest' or no maxsize"
            )
        gate_list = _gate_list(gates)
        intake_list = list(intake)
        for policy in intake_list:
            if not isinstance(policy, IntakePolicy):
                raise InvalidTypeError(
                    f"intake policies have admit(task, now, state_of) and forget(task), "
                    f"got {policy!r}"
                )
            if isinstance(policy, Gate) and not any(policy is g for g in gate_list):
                gate_list.append(policy)
        if retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            raise InvalidTypeError(f"retry_budget must be a RetryBudget, got {retry_budget!r}")
        if escalation is not None and not isinstance(escalation, Escalation):
            raise InvalidTypeError(f"escalation must be an Escalation, got {escalation!r}")
        if preemption is not None and not isinstance(preemption, Preemption):
            raise InvalidTypeError(f"preemption must be a Preemption, got {preemption!r}")
        if batcher is not None:
            if not isinstance(batcher, BatchOptimizer):
                raise InvalidTypeError(f"batcher must be a BatchOptimizer, got {batcher!r}")
            if len(batcher):
                raise InvalidArgumentError(
                    f"the batcher must be empty (it forms this distributor's batches "
                    f"alone), but it holds {len(batcher)} tasks"
                )
        reservation_list = Holds.check(reservations)
        if backfill is not None and not isinstance(backfill, Backfill):
            raise InvalidTypeError(f"backfill must be a Backfill, got {backfill!r}")
        if gangs is not None and not isinstance(gangs, Gangs):
            raise InvalidTypeError(f"gangs must be a Gangs, got {gangs!r}")
        lease = check_optional_number(lease, "lease", positive=True)
        dedup_window = check_number(dedup_window, "dedup_window", minimum=0.0)
        if max_queued is not None:
            max_queued = check_int(max_queued, "max_queued", minimum=1)
        self._clock = clock
        # A host's clock is checked at every read: a NaN or infinite time is refused
        # before the call that read it changes anything.
        self._now = reader(clock)
        self._queue = queue
        self._tracker = tracker
        # The tracker's own assign and release, less the checks the Distributor's books
        # make already; a subclass that overrides either is called as it is.
        plain_tracker = (
            type(tracker).assign is CapacityTracker.assign
            and type(tracker).release is CapacityTracker.release
            and type(tracker).has_room is CapacityTracker.has_room
        )
        self._room_now = tracker._has_room_now if plain_tracker else tracker.has_room
        # A PriorityQueue or DeadlineScheduler as it is tracks no running task (its
        # release only checks the type) and, empty, has nothing a pop could change.
        # (Read off the class: a method set on the instance is the host's own.)
        kind = type(queue)
        self._queue_releases = getattr(kind, "release", None) is not HeldTasks.release
        # This package's own queues pop only tasks they hold: no need to check each one.
        self._pops_checked = kind not in (PriorityQueue, DeadlineScheduler)
        self._pop_when_empty = not (
            getattr(kind, "pop", None) in (PriorityQueue.pop, DeadlineScheduler.pop)
            and getattr(kind, "__bool__", None) is HeldTasks.__bool__
        )
        self._assign_to: Callable[[Task, WorkerState], object] = (
            tracker._assign_chosen
            if plain_tracker
            else lambda task, state: tracker.assign(task, state.id)
        )
        self._release_from: Callable[[Task, Hashable, float | None, bool | None], WorkerState] = (
            tracker._release_placed if plain_tracker else tracker.release
        )
        self._balancer = balancer
        # The balancer when it hears nothing (on_assign and on_release are the base's
        # no-ops): a lease it placed skips both calls.
        self._deaf_balancer = balancer if hears_nothing(balancer) else None
        # The balancer when its choice needs no check (trusts_choice), asked once.
        self._trusted_balancer = balancer if trusts_choice(balancer) else None
        self._rules = PlacementRules(balancer, None if routes is None else Router(routes))
        self._routed = routes is not None
        self._breaker_factory = breaker
        self._escalation = escalation
        # task id -> (escalation steps taken, its waiting age when the last was taken),
        # while it lives: an age, not a time, so that time spent running is not waiting.
        self._escalated: dict[Hashable, tuple[int, float]] = {}
        self._preemption = preemption
        self._holds = (
            Holds(
                reservation_list,
                backfill,
                tracker,
                self._started_at,
                self._wake_group,
            )
            if reservation_list or backfill is not None
            else None
        )
        self._gangs = GangBook(Gangs() if gangs is None else gangs)
        # The workers found for every member of the gang whose leader dispatch accepted.
        self._gang_plan: list[tuple[Task, WorkerState, Balancer]] = []
        self._gang_sig: Hashable = None
        self._intake = tuple(intake_list)
        self._budget = retry_budget
        self._batcher = batcher
        # Batches with a task still leased under them, by batch id.
        self._batches: dict[int, _RunningBatch] = {}
        # Per batch group: tasks alive (waiting or leased), and leased in a batch; the
        # difference says whether a queue walk could find the next task of a batch.
        self._group_live: Counter[Hashable] = Counter()
        self._group_leased: Counter[Hashable] = Counter()
        # Task id -> its batch group, asked of the batcher once, at submit: the counts
        # above go down under the group they went up under, even if the key is not pure.
        self._batch_group: dict[Hashable, Hashable] = {}
        # Paused tenants and keys: their tasks stay parked, in order, until resumed.
        self._paused: dict[str, set[Hashable]] = {"tenant": set(), "key": set()}
        # Urgent tasks whose preemption advice was given while they wait.
        self._advised: set[Hashable] = set()
        self._breakers: dict[Hashable, CircuitBreaker] = {}
        self._retry = retry
        self._dlq = dlq
        # The id of the task redrive() is taking in, while its entry is still in the DLQ.
        self._redriving: Hashable | None = None
        self._gate_list = gate_list
        # Gates that learn from outcomes: they hear every complete and fail.
        self._learning_gates: tuple[Any, ...] = tuple(
            gate for gate in gate_list if callable(getattr(gate, "record", None))
        )
        self._gates = AllGates(gate_list) if gate_list else None
        self._lease = lease
        self._dedup_window = dedup_window
        self._max_queued = max_queued
        self._rng = rng
        # Every listener; _listener is None without any, else what calls them all.
        self._listeners: list[Listener] = []
        self._listener: Listener | None = None
        if on_event is not None:
            self.add_listener(on_event)
        self._events: list[Event] = []
        self._flushing = False
        self._busy = False
        self._deferred: Exception | None = None
        self._closed = False
        # The books: every live task is in exactly one of the queue, the lot,
        # _retrying and _leases; _waiting_since covers the first three.
        self._waiting_since: dict[Hashable, float] = {}
        self._lot = ParkingLot()
        self._parked = self._lot.by_task  # task id -> its group: truthy when any is parked
        # Which gate-refused tasks go back to the queue when a gate opens (see
        # _gate_scouts): the first of each class, or (None) all of them.
        plain = (
            self._holds is None
            and preemption is None
            and batcher is None
            and not self._rules.has_fallbacks()
        )
        self._scouts = gate_scouts(queue, gate_list, self._rules, plain=plain)
        # The rate and pool gates that, closed, hold back every waiting task: then the
        # dispatch walk stops at the first refusal (see _gate_shut), and _shut_walk says
        # that the last walk stopped so, so that the gates' wakeup is the host's.
        self._shut = gate_shut(queue, gate_list, plain=plain)
        self._shut_walk = False
        # Scouts placed in the dispatch under way: id -> (class, ticket), so that a
        # dispatch a callback's error undoes can call back the scouts sent after them.
        self._handed_over: dict[Hashable, tuple[Hashable, int]] = {}
        # Every task leased by the dispatch under way, in order: all of them are taken
        # back if a callback raises, whether or not its assignment was returned yet.
        self._leased_now: list[Task] = []
        # The gangs the dispatch under way placed, as they waited: if it fails, they wait
        # again. (gang, size, timeout, leader, members, retry timer or None)
        self._gangs_placed: list[
            tuple[Hashable, int, float, Hashable, list[Task], float | None]
        ] = []
        # Fallback step timers the leases of the dispatch under way cancelled (id ->
        # when): a lease taken back times its task's next step as it was.
        self._steps_held: dict[Hashable, float] = {}
        self._retrying: dict[Hashable, Task] = {}
        self._leases: dict[Hashable, _Run] = {}
        self._progress: dict[Hashable, _Run] = {}
        # The number the next lease takes: no two leases share one, so a report naming
        # it never reaches a later lease of the same id (see Assignment.lease_id).
        self._next_lease_id = 1
        # Finished ids still known for dedup: id -> (final state, when), oldest first.
        self._finished: OrderedDict[Hashable, tuple[TaskState, float]] = OrderedDict()
        self._timers = Timers()
        self._ticked_at = -math.inf
        self._tracker_wake: float | None = None
        # The earliest wakeup the gates named for a task they refused, kept here too:
        # a gate forgets its own at the next try_acquire at or after it, which a
        # dispatch under a running clock or an assign() may make before any tick.
        self._gate_due: float | None = None
        # Scratch of one dispatch: tasks passed over (to park), blocked signatures, the choice.
        self._passed: list[tuple[Task, Hashable]] = []
        self._round_blocked: set[Hashable] = set()
        self._choice: tuple[Task, WorkerState, Balancer] | None = None
        # Breaker transitions heard and not yet acted on: (worker id, new state).
        self._breaker_changes: list[tuple[Hashable, CircuitState]] = []
        # Counters.
        window = check_int(stats_window, "stats_window", minimum=1)
        self._waits = RecentSamples(window)
        self._end_to_end = RecentSamples(window)
        # C-level appends for the hot path (the distributor keeps its own counts).
        self._record_wait = self._waits.appender()
        self._record_end_to_end = self._end_to_end.appender()
        self._counts = dict.fromkeys(
            (
                "submitted",
                "duplicates",
                "dispatched",
                "failed",
                "lease_expiries",
                "retries",
                TaskState.COMPLETED,
                TaskState.DEAD,
                TaskState.CANCELLED,
            ),
            0,
        )
        self._dead_by_reason: dict[Reason, int] = {}
        self._deadline_met = self._deadline_missed = 0
        # tenant -> [submitted, completed, dead, cancelled, dispatches, wait sum]
        self._tenants: dict[Hashable, list[float]] = {}
        # worker id -> [completed, failed]
        self._worker_counts: dict[Hashable, list[int]] = {}
        for state in tracker.workers():
            self._adopt(state, defer=False)
        # Built: a redrive into this queue goes through redrive() from now on.
        dlq._feeds += (queue,)

    # -- properties ----------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock everything here reads."""
        return self._clock

    @property
    def queue(self) -> Queue:
        """The queue (read it; change tasks through the distributor)."""
        return self._queue

    @property
    def tracker(self) -> CapacityTracker:
        """The capacity tracker (read it; change workers through the distributor)."""
        return self._tracker

    @property
    def balancer(self) -> Balancer:
        """The balancer that places tasks."""
        return self._balancer

    @property
    def dlq(self) -> DeadLetterQueue:
        """The dead-letter queue."""
        return self._dlq

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def breaker(self, worker_id: Hashable) -> CircuitBreaker | None:
        """The circuit breaker of a worker, or ``None`` without breakers. O(1).

        Raises:
            UnknownWorkerError: no worker has this id.
        """
        self._tracker.worker(worker_id)
        return self._breakers.get(worker_id)

    # -- the call frame: re-entry guard and event delivery ---------------------

    def _enter(self) -> None:
        if self._busy:
            raise ReentrancyError(
                "a callback (balancer, worker filter, queue predicate, gate or breaker "
                "factory) called back into the Distributor running it; the inner call was "
                "refused and changed nothing"
            )
        self._busy = True

    def _leave(self) -> None:
        self._busy = False
        deferred, self._deferred = self._deferred, None
        try:
            if self._events and not self._flushing:
                self._flush()
        except Exception:
            if deferred is None:
                raise
            # The call's own error (a callback's, held until the books were done) goes
            # first; a listener's, raised after it, is its context.
            raise deferred  # noqa: B904 (the listener's error stays its context)
        if deferred is not None:
            raise deferred

    def _flush(self) -> None:
        """Hand the events made so far to the listeners. Each event reaches each of
        them, whichever raises: the first error is raised once all have been told."""
        listener = self._listener
        self._flushing = True
        failed: Exception | None = None
        try:
            while self._events:
                batch, self._events = self._events, []
                if listener is not None:
                    for event in batch:
                        try:
                            listener(event)
                        except Exception as raised:
                            if failed is None:
                                failed = raised
        finally:
            self._flushing = False
        if failed is not None:
            raise failed

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every :class:`~taskdist.Event` from now on, after
        the listeners added before it. O(listeners).

        Raises:
            InvalidTypeError: ``listener`` is not callable.
        """
        if not callable(listener):
            raise InvalidTypeError(f"a listener must be callable, got {listener!r}")
        self._listeners.append(listener)
        self._fan_out()

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (the first added, if added twice). O(listeners).

        Raises:
            InvalidArgumentError: ``listener`` was not added.
        """
        try:
            self._listeners.remove(listener)
        except ValueError:
            raise InvalidArgumentError(
                f"{listener!r} is not a listener of this distributor"
            ) from None
        self._fan_out()

    def _fan_out(self) -> None:
        listeners = tuple(self._listeners)
        if not listeners:
            self._listener = None
        elif len(listeners) == 1:
            self._listener = listeners[0]
        else:

            def every(event: Event) -> None:
                failed: Exception | None = None
                for listener in listeners:
                    try:
                        listener(event)
                    except Exception as raised:  # the others hear it all the same
                        if failed is None:
                            failed = raised
                if failed is not None:
                    raise failed

            self._listener = every

    def _emit(self, kind: EventKind, task_id: Hashable | None = None, **fields: Any) -> None:
        self._events.append(Event(kind, self._now(), task_id, **fields))

    # -- workers ---------------------------------------------------------------

    def add_worker(self, worker: Worker) -> WorkerState:
        """Register a worker (and make its breaker); wake the parked tasks it can take.

        O(r + g r) plus the tracker's and the breaker factory's cost.

        Raises:
            InvalidTypeError: not a Worker, or the factory did not make a CircuitBreaker.
            DuplicateWorkerError: a worker with this id is registered.
        """
        self._enter()
        try:
            self._now()  # a host's clock that reads NaN or infinity: refused before any change
            if not isinstance(worker, Worker):
                raise InvalidTypeError(
                    f"add_worker() takes a Worker, got {type(worker).__name__} {worker!r}"
                )
            if worker.id in self._tracker:
                self._tracker.add_worker(worker)  # raises DuplicateWorkerError
            made = None
            if self._breaker_factory is not None:
                made = self._breaker_factory(worker.id)
                if not isinstance(made, CircuitBreaker):
                    raise InvalidTypeError(
                        f"the breaker factory must return a CircuitBreaker, got {made!r}"
                    )
            state = self._tracker.add_worker(worker)
            self._adopt(state, made)
            self._emit(EventKind.WORKER_ADDED, worker_id=worker.id)
            if self._holds is not None:
                self._holds.workers_changed()
            self._wake_for(state)
            return state
        finally:
            self._leave()

    def _adopt(
        self, state: WorkerState, made: CircuitBreaker | None = None, *, defer: bool = True
    ) -> None:
        """Take on a worker the tracker holds: its breaker, its counts, the balancers'
        ``on_worker_added`` (whose error waits for the end of the call when ``defer``;
        else, building the distributor or restoring it, it is raised at once)."""
        if made is None and self._breaker_factory is not None:
            made = self._breaker_factory(state.id)
            if not isinstance(made, CircuitBreaker):
                raise InvalidTypeError(
                    f"the breaker factory must return a CircuitBreaker, got {made!r}"
                )
        if made is not None:
            self._breakers[state.id] = made
            self._watch(state.id, made)
            if self._rules.breakers is None:
                self._rules.set_breakers(self._breaker_admits)
        self._worker_counts[state.id] = [0, 0]
        for balancer in self._rules.balancers():
            if defer:
                self._hook(balancer.on_worker_added, state)
            else:
                balancer.on_worker_added(state)

    def remove_worker(self, worker_id: Hashable) -> list[Task]:
        """Unregister a worker; its leased tasks go back to the queue with their age.

        No attempt is spent (the task did not fail: its worker left). Returns
        the requeued tasks, oldest assignment first. O(tasks on it) queue
        pushes, plus the tracker's cost.

        Raises:
            UnknownWorkerError: no worker has this id.
        """
        self._enter()
        try:
            now = self._now()
            tasks = self._tracker.remove_worker(worker_id)
            breaker = self._breakers.pop(worker_id, None)
            self._timers.cancel(_BreakerTimer(worker_id))
            del self._worker_counts[worker_id]
            for balancer in self._rules.balancers():
                self._hook(balancer.on_worker_removed, worker_id)
            self._emit(EventKind.WORKER_REMOVED, worker_id=worker_id)
            for task in tasks:
                lease = self._leases[task.id]
                self._unlease(lease, now, ok=None)
                if self._holds is not None:
                    self._holds.released(task, worker_id)
                if breaker is not None and lease.permit is not None:
                    breaker.release(lease.permit)
                self._end_gates_and_queue(lease)
                self._record_attempt(lease, now, "requeued", None)
                self._requeue(task, now, EventKind.REQUEUED, worker_id=worker_id)
            if breaker is not None:  # transitions heard but not yet acted on: moot now
                changes = self._breaker_changes
                changes[:] = [change for change in changes if change[0] != worker_id]
            return tasks
        finally:
            self._leave()

    def set_health(self, worker_id: Hashable, health: Health | str) -> WorkerState:
        """Record the host's view of a worker's health; wake parked tasks if it improved.

        O(1) plus the tracker's cost, + O(g r) when it improved.

        Raises:
            UnknownWorkerError: no worker has this id.
            InvalidArgumentError: not a Health.
        """
        self._enter()
        try:
            self._now()  # a host's clock that reads NaN or infinity: refused before any change
            before = self._tracker.worker(worker_id).health
            state = self._tracker.set_health(worker_id, health)
            if state.health is not before:
                self._emit(EventKind.WORKER_HEALTH, worker_id=worker_id, detail=state.health.value)
                if _HEALTH_RANK[state.health] < _HEALTH_RANK[before]:
                    self._wake_for(state)
            return state
        finally:
            self._leave()

    def update_worker(self, worker_id: Hashable, **changes: Any) -> WorkerState:
        """Change a worker's capacity, weight, skills, zone or cost (as
        ``CapacityTracker.update_worker``); wake the parked tasks it can now take.

        O(r + g r) plus the tracker's cost.

        Raises:
            UnknownWorkerError: no worker has this id.
            InvalidArgumentError, InvalidTypeError: a field ``Worker`` refuses.
        """
        unknown = sorted(set(changes) - _WORKER_FIELDS)
        if unknown:
            raise InvalidTypeError(
                f"update_worker() changes {', '.join(sorted(_WORKER_FIELDS))}; got {unknown}"
            )
        self._enter()
        try:
            self._now()  # a host's clock that reads NaN or infinity: refused before any change
            state = self._tracker.update_worker(worker_id, **changes)
            if self._holds is not None:
                self._holds.workers_changed()
            self._wake_for(state)
            return state
        finally:
            self._leave()

    # -- intake ----------------------------------------------------------------

    def submit(self, task: Task) -> SubmitResult:
        """Accept ``task`` into the queue, or report it as a duplicate.

        O(1) plus the queue's push.

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            ClosedError: after :meth:`close`.
            QueueFullError: ``max_queued`` tasks are waiting (or the queue is full).
            QuotaExceededError: the queue's tenant quota refused it.
            UnknownTenantError: a fair scheduler with ``strict_tenants`` does not
                know its tenant. (A gang member that waits out of the queue for
                the rest of its gang is refused alike, by the queue's
                ``check_push``.)
            DeadlineError: its deadline is not after now.
            DeadlineInfeasibleError: a deadline scheduler with ``on_miss="reject"``
                found it infeasible.
            UnsatisfiableDemandError: its demand is more than a gate could ever grant
                (for a gang member: its gang's demand, with the members already
                waiting, is more than a gate could grant at once, or than the
                queue could ever start at once: a fair scheduler's tenant quota,
                by its ``check_together``).
        """
        if self._busy:
            self._enter()  # raises
        self._busy = True
        try:
            if not isinstance(task, Task):
                raise InvalidTypeError(f"submit() takes a Task, got {type(task).__name__} {task!r}")
            if self._closed:
                raise ClosedError(
                    f"the distributor is closed and takes no new tasks; {task.id!r} was not added"
                )
            now = self._now()
            task_id = task.id  # hashable: a Task checks its id
            known = (
                self._state_or_none(task_id, now)
                if task_id in self._leases
                or task_id in self._waiting_since
                or task_id in self._finished
                or task_id in self._dlq
                else None
            )
            if known is not None:
                self._counts["duplicates"] += 1
                if self._listener is not None:
                    self._emit(EventKind.DUPLICATE, task_id, state=known)
                return SubmitResult(task_id, False, known)
            if self._intake:
                return self._take_in(task, now)
            return self._admit(task, now)
        finally:
            if self._events or self._deferred is not None:
                self._leave()
            else:
                self._busy = False

    def _take_in(
        self, task: Task, now: float, refusals: list[Verdict] | None = None
    ) -> SubmitResult:
        """Submit through the intake policies: each may refuse, replace, or cancel others.
        A refusal's verdict is added to ``refusals`` when given."""
        verdicts: list[tuple[IntakePolicy, Verdict]] = []
        state_of = self._state_or_forgotten
        try:
            for policy in self._intake:
                verdict = policy.admit(task, now, state_of)
                if not isinstance(verdict, Verdict):
                    raise InvalidTypeError(
                        f"{type(policy).__name__}.admit() must return a Verdict, got "
                        f"{type(verdict).__name__} {verdict!r:.80}; {task.id!r} was not added"
                    )
                verdicts.append((policy, verdict))
                if not verdict.accept:
                    raise _Refusal(verdict)
                if verdict.replace is not None:
                    task = self._replacement(policy, task, verdict.replace, now)
            result = self._admit(task, now)
        except _Refusal as refusal:
            _undo_admissions(verdicts, task)
            verdict = refusal.verdict
            if refusals is not None:
                refusals.append(verdict)
            state = state_of(verdict.because) or TaskState.CANCELLED
            self._counts["duplicates"] += 1
            if self._listener is not None:
                self._emit(EventKind.DUPLICATE, task.id, state=state, detail=verdict.reason)
            return SubmitResult(task.id, False, state)
        except BaseException:
            _undo_admissions(verdicts, task)
            raise
        for _, verdict in verdicts:
            for task_id in verdict.cancel:
                if task_id != task.id and task_id in self:
                    self._cancel_live(task_id, now, verdict.reason)
            if verdict.cancel_self and task.id in self:
                self._cancel_live(task.id, now, verdict.reason)
                return SubmitResult(task.id, True, TaskState.CANCELLED)
        return result

    def _replacement(self, policy: IntakePolicy, task: Task, replace: object, now: float) -> Task:
        """``replace``, what ``policy`` would take instead of ``task``, if it is a Task
        whose id is free (a new one as much as ``task``'s is)."""
        if not isinstance(replace, Task):
            raise InvalidTypeError(
                f"{type(policy).__name__}.admit() must name a Task to take instead of "
                f"{task.id!r}, got {type(replace).__name__} {replace!r:.80}; it was not added"
            )
        if replace.id != task.id:
            state = self._state_or_none(replace.id, now)
            if state is not None:
                raise InvalidArgumentError(
                    f"{type(policy).__name__}.admit() would take {replace.id!r} instead of "
                    f"{task.id!r}, but a task with that id is {state.value}; "
                    f"{task.id!r} was not added"
                )
        return replace

    def _state_or_forgotten(self, task_id: Hashable) -> TaskState | None:
        try:
            return self._state_or_none(task_id, self._now())
        except InvalidTypeError:
            return None

    def _admit(self, task: Task, now: float) -> SubmitResult:
        """Check and queue a new task (its id known to be free). Raises before any change."""
        max_queued = self._max_queued
        if max_queued is not None and len(self._waiting_since) >= max_queued:
            raise QueueFullError(
                f"{len(self._waiting_since)} tasks are waiting, the distributor's "
                f"max_queued; {task.id!r} was not added"
            )
        deadline = task.deadline
        if deadline is not None and deadline <= now:
            raise DeadlineError(
                f"task {task.id!r} has deadline {deadline!r}, not after now ({now!r})"
            )
        gates = self._gates
        if gates is not None:
            _check_gates(self._gate_list, task)
            if self._shut is not None:
                self._shut.note(task)  # before it is queued: a bound that only falls
        group = None if self._batcher is None else self._batcher.group_of(task)
        # A gang member waits for the rest; the one that completes the gang is queued.
        completes = self._gangs.check(task) if task.gang is not None else True
        if task.gang is not None:
            # Its gang's members start at one moment: together they must fit the gates'
            # and the queue's limits (a tenant's max_concurrent, say), or never will.
            members = [*self._gangs.arrived(task.gang), task]
            if gates is not None:
                gates.check_together(members)
            queue_check = getattr(self._queue, "check_together", None)
            if queue_check is not None:
                queue_check(members)
        # The routes are asked before the task goes in: a `when` that raises then leaves
        # nothing behind (a task in the queue the distributor does not know).
        route = self._rules.route_of(task) if self._routed else None
        eviction = self._queue.push(task) if completes else self._check_member(task)
        task_id = task.id
        if group is not None:
            self._group_live[group] += 1
            self._batch_group[task_id] = group
        self._finished.pop(task_id, None)  # a stale entry past the window
        if self._routed:
            self._rules.enter(task, route)
        self._waiting_since[task_id] = now
        if self._escalation is not None:
            self._plan_escalation(task, now)
        self._counts["submitted"] += 1
        tenant = task.tenant
        (self._tenants.get(tenant) or self._tenant(tenant))[0] += 1
        if self._listener is not None:
            self._emit(EventKind.SUBMITTED, task_id, state=TaskState.QUEUED)
        if task.gang is not None:
            self._join_gang(task, now, completes)
        if eviction is None:
            if self._holds is None:
                # Only a hold or a gang parks a task at its arrival.
                if task.gang is None or task_id not in self._lot:
                    return SubmitResult(task_id, True, TaskState.QUEUED)
                return SubmitResult(task_id, True, TaskState.PARKED)
            if completes:
                self._hold_on_arrival(task, now)
            state = TaskState.PARKED if task_id in self._lot else TaskState.QUEUED
            return SubmitResult(task_id, True, state)
        self._dead_letter_eviction(eviction, now)
        return SubmitResult(task_id, True, self._state_or_none(task_id, now) or TaskState.DEAD)

    def close(self) -> None:
        """Stop intake: a later ``submit`` raises ``ClosedError``; queued and leased
        work still dispatches and finishes. Idempotent. O(1)."""
        self._enter()
        try:
            if not self._closed:
                self._now()  # a host's clock that reads NaN or infinity: refused, still open
                self._closed = True
                self._emit(EventKind.CLOSED)
        finally:
            self._leave()

    # -- dispatch ----------------------------------------------------------------

    def dispatch(self, limit: int | None = None) -> list[Assignment]:
        """Place as many queued tasks as workers and gates take now (at most ``limit``).

        Does what is due first (as :meth:`tick`). Returns the new assignments,
        in the order made; each is leased until its ``lease_expiry``. See the
        class docstring for what it costs.

        Raises:
            InvalidArgumentError / InvalidTypeError: ``limit`` not an int >= 0.
            InvalidArgumentError: the balancer returned a worker that is not a
                candidate for the task (nothing was placed).
        """
        # The check, with the usual value (an int >= 0) passed inline.
        if limit is not None and not (limit.__class__ is int and limit >= 0):
            limit = check_int(limit, "limit", minimum=0)
        if self._busy:
            self._enter()  # raises
        self._busy = True
        try:
            now = self._now()
            self._run_due(now)
            if self._holds is not None:  # tasks held for a reservation that has room now
                self._holds.wake_held(self._lot.has_group)
            made: list[Assignment] = []
            tracker = self._tracker
            queue = self._queue
            round_blocked = self._round_blocked
            round_blocked.clear()
            if self._handed_over:  # what assign() recorded
                self._handed_over.clear()
            leased_now = self._leased_now
            leased_now.clear()
            in_hand: Task | None = None  # popped last, maybe not placed yet
            placeable = self._placeable
            pop_when_empty = self._pop_when_empty
            # The first asks the tracker to lift what is due; the placements after it
            # brought the tracker up to date themselves.
            has_room = tracker.has_room
            try:
                while limit is None or len(made) < limit:
                    if not has_room():
                        if self._preemption is not None:
                            self._advise_for_head(now)
                        break
                    has_room = self._room_now
                    if not pop_when_empty and not queue:
                        self._shut_walk = False  # nothing is queued behind a gate
                        break  # no pop: it would find nothing and change nothing
                    self._choice = None
                    if self._gang_plan:
                        self._gang_plan = []  # made in a walk that did not pop its leader
                    # Until this pop stops at a shut gate. (A dispatch that pops nothing,
                    # for want of room or with limit 0, leaves the last walk's word.)
                    self._shut_walk = False
                    try:
                        task = queue.pop(where=placeable)
                    except Shut:  # the queue is as it was; the tasks stay in it
                        task = None
                        self._note_shut_wake()
                        self._shut_walk = True
                    if task is not None and self._pops_checked:
                        self._check_popped(task)
                    in_hand = task
                    if self._passed:
                        self._park_passed(now)
                    if task is None:
                        break
                    if self._gang_plan and not any(m is task for m, _, _ in self._gang_plan):
                        # The queue asked about a gang's leader, then popped another task
                        # (a deadline-aware FairScheduler's urgent one): not its plan.
                        self._gang_plan = []
                    if self._gang_plan:  # a gang's leader: every member, or none
                        room = None if limit is None else limit - len(made)
                        placed = self._place_gang(task, now, room)
                        if placed is None:
                            break
                        made += placed
                        continue
                    assignment = self._place(task, now)
                    if assignment is not None:
                        made.append(assignment)
                        if self._batcher is not None:
                            self._fill_batch(made, now, limit)
                        if not pop_when_empty and not queue:
                            break  # nothing left to pop: no need to ask for room
                if self._deferred is not None:
                    # A callback raised and the books were finished first: the host
                    # sees the error, not these assignments, so they are taken back.
                    raise self._deferred
            except BaseException as error:
                # A callback raised: what it interrupted is dropped, and the placements
                # made so far are taken back, since the host never sees them.
                earlier = self._deferred  # a hook's error from before it, if any
                self._passed = []
                if self._batcher is not None:
                    self._batcher.flush()  # a batch being formed, if any
                if in_hand is not None and self._in_limbo(in_hand.id):
                    self._put_back(in_hand)  # popped, in no place yet: back where it waited
                # Asked while the leases still hold what they free (a gate may read that).
                frees = (
                    bool(leased_now)
                    and self._lot.has_group(GATES)
                    and any(_frees_on_release(self._gate_list, task) for task in leased_now)
                )
                for task in reversed(leased_now):
                    self._undo_lease(task)
                for waited in reversed(self._gangs_placed):
                    self._regang(*waited)
                if frees:
                    # Units given back: what the gates refused for want of them may pass.
                    self._wake_gated()
                self._first_error_wins(error, earlier)
                raise
            finally:
                round_blocked.clear()
                leased_now.clear()
                if self._gangs_placed:
                    self._gangs_placed.clear()
                if self._handed_over:
                    self._handed_over.clear()
                if self._steps_held:
                    self._steps_held.clear()
            return made
        finally:
            if self._events or self._deferred is not None:
                self._leave()
            else:
                self._busy = False

    def _placeable(self, task: Task) -> bool:
        """The ``where=`` of dispatch: can ``task`` be placed now? Records the choice.

        It touches no queue: tasks it refuses are parked after the pop returns.
        """
        paused = self._paused
        if paused["tenant"] or paused["key"]:  # _pause_of, inline: the hot path
            held = _held_by(paused, task)
            if held is not None:
                self._passed.append((task, held))
                return False
        if task.gang is not None and self._gangs.waiting(task.id):
            return self._plan_gang(task)
        if self._holds is None:  # _route, inline: the hot path
            filter_, balancer, placement = self._rules.of(task)
            parking = None
        else:
            filter_, balancer, placement, parking = self._route(task)
        if filter_ is NOWHERE:
            self._passed.append((task, parking))
            return False
        # The signature is needed only when something is blocked already.
        sig = None
        if self._round_blocked or self._parked:
            sig = _group(task, placement)
            if sig in self._round_blocked or self._lot.has_group(sig):
                self._passed.append((task, sig if parking is None else parking))
                return False
        if self._gates is not None:
            refusal = self._gate_refusal(task)
            if refusal is not None:  # GATES: not now; a _Refused: never (dead-lettered)
                if refusal is GATES and self._shut is not None and self._shut.shut():
                    raise Shut  # nothing behind it passes either: the walk ends here
                self._passed.append((task, refusal))
                return False
        worker = balancer.choose(task, self._tracker, filter_)
        if worker is None:
            if sig is None:
                sig = _group(task, placement)
            self._round_blocked.add(sig)
            self._passed.append((task, sig if parking is None else parking))
            if parking is None and self._holds is not None:  # before any later pick
                self._reserve_for(task, self._now())
            return False
        if balancer is not self._trusted_balancer and not trusts_choice(balancer):
            _check_choice(balancer, task, worker, self._tracker, filter_)
        self._choice = (task, worker, balancer)
        return True

    def _pause_of(self, task: Task) -> Hashable | None:
        """The pause group that holds ``task`` back, or ``None``. O(1), no side effect."""
        paused = self._paused
        if paused["tenant"] or paused["key"]:
            return _held_by(paused, task)
        return None

    def _gate_refusal(self, task: Task) -> Hashable | None:
        """Why the gates refuse ``task`` now: ``GATES`` (not now), a ``_Refused`` (never:
        no gate could ever grant its demand), or ``None`` when they admit it. O(g)."""
        assert self._gates is not None
        try:
            return None if _gates_admit(self._gates, task) else GATES
        except InvalidArgumentError as error:
            return _Refused(error)

    def _route(self, task: Task) -> tuple[Filter | None, Balancer, Hashable, Hashable]:
        """Where ``task`` may go now, without side effects: ``(worker filter, balancer,
        placement group, parking group)``. The filter is its route's, narrowed off the
        capacity held for others (``NOWHERE`` if that leaves no worker, when it parks
        in the parking group; otherwise that group is ``None``)."""
        filter_, balancer, placement = self._rules.of(task)
        if self._holds is None:
            return filter_, balancer, placement, None
        filter_, mark, parking = self._holds.narrow(task, filter_, self._now)
        if mark is not None:
            placement = (placement, mark)
        return filter_, balancer, placement, parking

    def _breaker_admits(self, worker: WorkerState) -> bool:
        """The worker filter: its breaker would grant a permit now. A refusal also sets
        a timer for when it may, so tasks parked behind it wake then."""
        breaker = self._breakers.get(worker.id)
        if breaker is None:
            return True
        admits = breaker.can_acquire()
        if not admits:
            reopens = breaker.next_wakeup()
            key = _BreakerTimer(worker.id)
            if reopens is not None and key not in self._timers:
                self._timers.schedule(key, reopens, _BREAKER)
        return admits

    def _park_passed(self, now: float) -> None:
        passed, self._passed = self._passed, []
        queue = self._queue
        seen: set[Hashable] = set()
        for task, group in passed:
            task_id = task.id
            if task_id in seen or task_id not in queue:
                continue
            seen.add(task_id)
            queue.remove(task_id)
            if isinstance(group, _Refused):
                self._waiting_since.pop(task_id)
                self._dead_letter(task, Reason.REJECTED, now, group.error)
                continue
            if group is GATES:
                self._note_gate_wake()
            self._park(task, group)
            ttl = task.ttl
            if ttl is not None:
                self._timers.schedule(task_id, self._waiting_since[task_id] + ttl, _TTL)
            if group is not GATES and not _is_pause(group):
                self._plan_fallback(task, now)
                if self._routed and task.gang is not None and self._gangs.is_leader(task):
                    # Its gang waits for room: each member moves down its own chain too.
                    for member in self._gangs.members(task.gang):
                        if member.id != task_id:
                            self._plan_fallback(member, now)
                if self._preemption is not None:
                    self._advise_preemption(task, now)
            if self._listener is not None:
                self._emit(
                    EventKind.PARKED, task_id, state=TaskState.PARKED, detail=_group_words(group)
                )

    def _plan_fallback(self, task: Task, now: float) -> None:
        """A routed task parked in a step with a next one: move it on after that
        step's wait, or now if only the breakers of its pool keep it out."""
        step = self._rules.next_step(task.id)
        key = _StepTimer(task.id)
        if step is None or key in self._timers:
            return
        when = now + step.after
        if self._rules.breakers is not None:
            unbroken = self._rules.without_breakers(task)
            if self._tracker.candidates(task, unbroken):
                when = now  # its pool has room, behind open breakers only
        self._timers.schedule(key, when, _STEP)

    def _next_step(self, task_id: Hashable, now: float) -> None:
        """A routed task's step timer: if it still waits, it moves down its chain."""
        if task_id not in self._waiting_since or not self._rules.advance(task_id):
            return
        where = self._rules.describe(task_id)
        if self._scouts is not None:  # its class changed: the next of the old one goes out
            self._scout_left(task_id)
        leader = None
        if task_id in self._lot:
            if self._lot.group_of(task_id) is WAITING_FOR_GANG:
                # A member waiting with its gang: the gang is tried again, by its leader.
                leader = self._gangs.leader_of(task_id)
            else:
                task = self._lot.remove(task_id)
                if task.ttl is not None:
                    self._timers.cancel(task_id)
                if not self._enqueue(task, now):
                    return
                if self._listener is not None:
                    self._emit(EventKind.UNPARKED, task_id, state=TaskState.QUEUED)
        if self._listener is not None:
            self._emit(
                EventKind.REROUTED, task_id, state=self._state_of(task_id, now), detail=where
            )
        if leader is not None:
            self._reconsider(leader, now)

    def _check_popped(self, task: object) -> None:
        """Refuse what the queue's ``pop`` returned unless it is a task that waited in
        the queue and left it: a task the books do not know, one leased, parked or
        retrying, or one the queue still holds would be placed twice, or from nowhere.
        O(1) but the queue's ``in``."""
        if task.__class__ is not Task and not isinstance(task, Task):
            raise InvalidTypeError(
                f"queue {self._queue!r} popped {type(task).__name__} {task!r}, not a Task; "
                "nothing was placed"
            )
        if not self._in_limbo(task.id):
            raise InvalidArgumentError(
                f"queue {self._queue!r} popped task {task.id!r}, which is not a task that "
                f"waited in it and left it (it is {self._where_is(task.id)}); nothing was "
                "placed"
            )

    def _where_is(self, task_id: Hashable) -> str:
        """Where the books have ``task_id``, for a message. O(1) but the queue's ``in``."""
        state = self._state_or_none(task_id, self._now())
        if state is None:
            return "unknown to this distributor"
        if state is TaskState.QUEUED and task_id in self._queue:
            return "still in the queue"
        return state.value

    def _in_limbo(self, task_id: Hashable) -> bool:
        """Whether a waiting task is in none of the places a waiting task is: popped and
        not yet placed (or put back) when a callback raised. O(1) but the queue's ``in``."""
        return (
            task_id in self._waiting_since
            and task_id not in self._lot
            and task_id not in self._retrying
            and task_id not in self._queue
        )

    def _place(self, task: Task, now: float) -> Assignment | None:
        """Admit, permit, assign and lease a popped task; put it back if that fails.

        If a callback raises before the task is leased, the gates it passed roll back
        and the error propagates: the caller puts the task back (``_in_limbo``); once
        leased, the dispatch takes the lease back."""
        choice = self._choice
        if choice is not None and choice[0] is task:
            worker, balancer = choice[1], choice[2]
        else:  # a queue that popped another task than the one its predicate accepted last
            try:
                placeable = self._placeable(task)
            except Shut:  # a shut gate refuses it, as any other
                self._passed.append((task, GATES))
                placeable = False
            if not placeable:
                self._unpop(task, self._passed.pop()[1])
                return None
            assert self._choice is not None
            worker, balancer = self._choice[1], self._choice[2]
        gates = self._gates
        if gates is not None:
            try:
                admitted = gates.try_acquire(task)
            except InvalidArgumentError as error:  # it can never pass: dead-letter it
                self._queue.release(task)
                self._waiting_since.pop(task.id)
                self._dead_letter(task, Reason.REJECTED, now, error)
                return None
            if not admitted:
                self._unpop(task, GATES)
                return None
        permit: int | None = None
        breaker = self._breakers.get(worker.id)
        if breaker is not None:
            try:
                permit = breaker.acquire()
            except BaseException:
                if gates is not None:
                    gates.rollback(task)
                raise
            if permit is None:  # its half-open probes are out: leave it out this round
                if gates is not None:
                    gates.rollback(task)
                self._unpop(task, None)
                return None
        try:
            run = self._lease_task(task, worker, balancer, permit, now)
        except BaseException:
            if task.id not in self._leases:
                # The tracker refused the worker: a gate or the breaker changed it (through
                # the tracker itself). What they granted goes back; the caller puts the
                # task back.
                if breaker is not None and permit is not None:
                    breaker.release(permit)
                if gates is not None:
                    gates.rollback(task)
            raise
        return Assignment(task, worker.id, run.attempt, now, run.expiry, None, run.lease_id)

    def _lease_task(
        self,
        task: Task,
        worker: WorkerState,
        balancer: Balancer,
        permit: int | None,
        now: float,
        *,
        notify: bool = True,
        assigned: bool = False,
    ) -> _Run:
        """Record the placement of a waiting task (out of where it waited) and lease it
        (on the tracker too, unless ``assigned`` there already).

        The balancer hears of it last (``notify``), once the lease is on the books: if
        its hook raises, the lease is there to be taken back."""
        if not assigned:
            self._assign_to(task, worker)
        if self._holds is not None and self._holds.leased(task, worker):
            self._wake_backfill_groups()
        task_id = task.id
        enqueued = self._waiting_since.pop(task_id)
        if self._scouts is not None:
            was = self._scout_left(task_id)
            if was is not None:
                self._handed_over[task_id] = was
        waited = now - enqueued
        expiry = None if self._lease is None else now + self._lease
        lease_id = self._next_lease_id
        self._next_lease_id = lease_id + 1
        run = self._progress.get(task_id)
        if run is None:  # a new record starts at now as its first lease, popped and gated
            attempt = 1
            run = self._progress[task_id] = _Run(
                task, enqueued, now, worker.id, balancer, permit, waited, expiry, attempt, lease_id
            )
        else:
            run.lease_id = lease_id
            run.task = task
            run.retry_at = None
            run.started_at = now
            run.popped = run.gated = True
            run.attempt = attempt = run.attempt + 1
            run.worker_id = worker.id
            run.permit = permit
            run.balancer = balancer
            run.waited = waited
            run.expiry = expiry
        self._record_wait(waited)
        tenant = self._tenants.get(task.tenant) or self._tenant(task.tenant)
        tenant[4] += 1
        tenant[5] += waited
        self._leases[task_id] = run
        self._leased_now.append(task)
        if self._budget is not None:
            self._budget.leased(task)
        if self._routed:  # only a routed task has a fallback step timed
            step = _StepTimer(task_id)
            when = self._timers.when(step)
            if when is not None:
                self._steps_held[task_id] = when
                self._timers.cancel(step)
        if self._escalation is not None:
            self._timers.cancel(_EscalationTimer(task_id))
        if self._advised:
            self._advised.discard(task_id)
        if expiry is not None:
            self._timers.schedule(task_id, expiry, _LEASE)
        self._counts["dispatched"] += 1
        if self._listener is not None:
            self._emit(
                EventKind.DISPATCHED,
                task_id,
                worker_id=worker.id,
                state=TaskState.LEASED,
                attempt=attempt,
                at=expiry,
            )
        if notify and balancer is not self._deaf_balancer:
            balancer.on_assign(task, worker)
        return run

    def _undo_lease(self, task: Task) -> None:
        """Take back a lease the dispatch under way made, as if never made: a scout's
        successor, sent in its place, goes back to its class first."""
        task_id = task.id
        if task_id not in self._leases:
            return  # (taken back already: a batch's own take-back)
        was = self._handed_over.pop(task_id, None)
        if was is not None:  # a scout: the one sent in its place goes back
            self._call_back_scout(was[0])
        self._take_back(task)
        scouts = self._scouts
        if (
            was is not None
            and scouts is not None
            and task_id in self._queue
            and scouts.scout_of(was[0]) is None
        ):
            scouts.sent(was[0], task_id, was[1])

    def _take_back(self, task: Task, *, latest: bool = False) -> None:
        """Undo a placement that dispatch made and cannot return, as if never made (but
        that a task pushed back goes behind tasks of its rank enqueued at its instant).

        ``latest``: its pop was the queue's latest, which an ``unpop`` can undo exactly.
        """
        task_id = task.id
        lease = self._leases[task_id]
        self._unlease(lease, None, ok=None)
        state = self._tracker.release(task, lease.worker_id, ok=None)
        assert lease.balancer is not None
        self._hook(lease.balancer.on_release, task, state)
        if self._holds is not None:
            self._holds.released(task, lease.worker_id)
        breaker = self._breakers.get(lease.worker_id)
        if breaker is not None and lease.permit is not None:
            breaker.release(lease.permit)
        if self._gates is not None and lease.gated:  # (an assign(force=True) passed none)
            self._hook(self._gates.release, task)
        progress = self._progress[task_id]
        self._waiting_since[task_id] = lease.started_at - progress.waited
        if self._steps_held:
            when = self._steps_held.pop(task_id, None)
            if when is not None:  # its next step, timed as before the lease
                self._timers.schedule(_StepTimer(task_id), when, _STEP)
        tenant = self._tenants.get(task.tenant) or self._tenant(task.tenant)
        tenant[4] -= 1
        tenant[5] -= progress.waited
        self._counts["dispatched"] -= 1
        if lease.lease_id == self._next_lease_id - 1:  # (taken back latest first)
            self._next_lease_id = lease.lease_id
        progress.attempt -= 1
        if not progress.attempt:
            del self._progress[task_id]
        self._events = [
            e for e in self._events if e.kind is not EventKind.DISPATCHED or e.task_id != task_id
        ]
        if latest:
            self._put_back(task)
        else:
            # Several placements are taken back, latest first: an unpop undoes only the
            # latest pop, so each goes back by release and push, with its age.
            if lease.popped:
                self._queue.release(task)
            self._enqueue(task, self._now())
        if self._escalation is not None and task_id in self._waiting_since:
            # The lease cancelled its escalation timer; it waits again, timed as before.
            self._plan_escalation(task, self._now())

    def _put_back(self, task: Task) -> None:
        """Undo the latest pop, ``task``'s (waiting since ``_waiting_since``): by the
        queue's ``unpop`` when it has one and can (a queue may refuse once it changed
        since the pop, e.g. a task passed over was parked meanwhile), else by release
        and a push with its age. A push the queue refuses, or one that evicts (tasks
        pushed since the pop filled a bounded queue), dead-letters as any push does:
        nothing is lost."""
        queue = self._queue
        unpop = getattr(queue, "unpop", None)
        if unpop is not None:
            try:
                unpop(task)
            except TaskStateError:
                pass  # refused, nothing changed: put it back the long way
            else:
                return
        queue.release(task)
        self._enqueue(task, self._now())

    def _unpop(self, task: Task, group: Hashable | None) -> None:
        """Undo the pop of ``task``: back in the queue as if never taken, or parked."""
        self._put_back(task)
        if group is None:
            self._round_blocked.add(_group(task, self._rules.of(task)[2]))
        else:
            self._passed.append((task, group))
            self._park_passed(self._now())

    # -- batches -------------------------------------------------------------------

    def _fill_batch(self, made: list[Assignment], now: float, limit: int | None) -> None:
        """The task just placed (``made[-1]``) opens a batch: queued tasks of its group
        that its worker can take join it, until the batcher closes it or none is left.

        A joining task passes what any placement passes (its pause, gates, route
        filter and the worker's room); the queue is walked best first, looking at
        no more than ``_BATCH_SCAN`` tasks it passes over, so forming a batch costs
        O((b + _BATCH_SCAN) log n) for b tasks in it.
        """
        batcher = self._batcher
        assert batcher is not None
        first = made[-1]
        task = first.task
        group = batcher.group_of(task)
        if group is None:
            return
        start = len(made) - 1
        try:
            # Sent now whatever its due times: only size, cost, resources or a CRITICAL
            # task close the batch in dispatch.
            released = batcher.add(task, timed=False)
        except InvalidArgumentError:  # larger than any batch may be: it goes alone
            return
        run = self._leases[task.id]
        assert run.balancer is not None
        worker = self._tracker.worker(first.worker_id)
        joins = _Joiner(self, group, worker, run.balancer)
        queue = self._queue
        while released is None and (limit is None or len(made) < limit):
            if self._group_live[group] - self._group_leased[group] <= len(made) - start:
                break  # no other task of the group waits
            joins.scanned = 0
            try:
                companion = queue.pop(where=joins)
            except _ScanOver:
                companion = None
            if companion is None:
                break
            if self._pops_checked:
                self._check_popped(companion)
            try:
                assignment = self._place(companion, now)
            except BaseException:
                if self._in_limbo(companion.id):
                    self._put_back(companion)  # popped, in no place yet
                raise
            if assignment is None:
                break
            try:
                released = batcher.add(companion, timed=False)
            except InvalidArgumentError:
                self._take_back(assignment.task, latest=True)
                break
            if released is not None and released.tasks[-1] is not companion:
                # It did not fit (cost, resources): the batch closed without it.
                batcher.remove(companion.id)
                self._take_back(assignment.task, latest=True)
                break
            made.append(assignment)
        if released is None:
            (released,) = batcher.flush()
        batch_id = released.id
        self._batches[batch_id] = _RunningBatch(released, now)
        for task_id in released.ids:  # each under the group it was counted live in
            counted = self._batch_group.get(task_id)
            if counted is not None:
                self._group_leased[counted] += 1
        leases = self._leases
        for i in range(start, len(made)):
            assignment = made[i]
            leases[assignment.task.id].batch = batch_id
            made[i] = attrs.evolve(assignment, batch=batch_id)

    def _leave_batch(self, lease: _Run, *, ok: bool | None, now: float | None) -> None:
        """A task of a batch stops running under its lease (``now`` None: taken back).

        When the last one leaves and every one completed, the batcher hears how long
        the batch took (its sizing rule may adapt the group's batch size)."""
        batch_id = lease.batch
        assert batch_id is not None
        assert self._batcher is not None
        lease.batch = None
        book = self._batches[batch_id]
        book.running.pop(lease.task.id, None)
        counted = self._batch_group.get(lease.task.id)
        if counted is not None:
            self._group_leased[counted] -= 1
            if not self._group_leased[counted]:
                del self._group_leased[counted]
        if ok is not True:
            book.ok = False
        if book.running:
            return
        del self._batches[batch_id]
        if book.ok and now is not None:
            self._batcher.record(book.batch, now - book.started)

    def _leave_group(self, task: Task) -> None:
        """A finished task no longer counts among its batch group's live tasks (the
        group it was counted in at submit: the batcher is not asked again)."""
        group = self._batch_group.pop(task.id, None)
        if group is not None and group in self._group_live:
            self._group_live[group] -= 1
            if not self._group_live[group]:
                del self._group_live[group]

    # -- outcomes ----------------------------------------------------------------

    def heartbeat(
        self, task_id: Hashable, extend: float | None = None, *, lease_id: int | None = None
    ) -> float | None:
        """Extend a leased task's lease to now + ``extend`` (default: the lease length).

        ``lease_id`` (optional, :attr:`Assignment.lease_id`) names the lease
        meant: a run whose lease has lapsed, or was taken over since, cannot
        keep another run's lease alive. Returns the new expiry (``None`` with
        leases that never expire). O(log n).

        Raises:
            UnknownTaskError: no task has this id.
            TaskStateError: the task is not leased (under ``lease_id``, if given).
            InvalidArgumentError: ``extend`` <= 0, NaN or infinite; ``lease_id`` < 1.
            InvalidTypeError: ``lease_id`` not an int.
        """
        extend = check_optional_number(extend, "extend", positive=True)
        if lease_id is not None:
            lease_id = check_int(lease_id, "lease_id", minimum=1)
        self._enter()
        try:
            lease = self._lease_of(task_id, "heartbeat", lease_id=lease_id)
            if self._lease is None and extend is None:
                return None
            length = self._lease if extend is None else extend
            assert length is not None
            expiry = self._now() + length
            if lease.batch is None:
                members = [lease]
            else:  # one lease for the batch: every task of it still running
                leases = self._leases
                members = [leases[member] for member in self._batches[lease.batch].running]
            for member in members:
                member.expiry = expiry
                self._timers.schedule(member.task.id, expiry, _LEASE)
            return expiry
        finally:
            self._leave()

    def complete(
        self,
        task_id: Hashable,
        *,
        duration: float | None = None,
        attempt: int | None = None,
        lease_id: int | None = None,
    ) -> TaskState:
        """The task succeeded (``duration``: seconds it ran, for the worker's EWMA).

        ``lease_id`` (:attr:`Assignment.lease_id`) or ``attempt`` (optional)
        names the lease reporting: a report of a lease that expired completes
        the task if nothing else has (see the class docstring). Attempts count
        again from 1 when an id is submitted anew, so only ``lease_id`` keeps a
        run of an earlier task with the same id from completing this one.
        Returns ``TaskState.COMPLETED``. O(r + g) + O(log n).

        Raises:
            UnknownTaskError: no task has this id.
            TaskStateError: the task is not leased (and no expired lease of it
                awaits a late report), not under the lease named, or already
                finished.
            InvalidArgumentError: ``duration`` negative, NaN, infinite or above 1e12
                seconds; ``attempt`` or ``lease_id`` < 1 (nothing changed).
            InvalidTypeError: ``attempt`` or ``lease_id`` not an int.
        """
        # The checks, with the usual values (a float in range, an int >= 1) passed inline.
        if duration is not None and not (
            duration.__class__ is float and 0.0 <= duration <= MAX_SECONDS
        ):
            duration = check_number(duration, "duration", minimum=0.0, maximum=MAX_SECONDS)
        if attempt is not None and not (attempt.__class__ is int and attempt >= 1):
            attempt = check_int(attempt, "attempt", minimum=1)
        if lease_id is not None and not (lease_id.__class__ is int and lease_id >= 1):
            lease_id = check_int(lease_id, "lease_id", minimum=1)
        if self._busy:
            self._enter()  # raises
        self._busy = True
        try:
            now = self._now()
            try:  # _lookup, inline: the hot path
                lease = self._leases.get(task_id)
            except TypeError:  # unhashable: no such lease (_late_report says why)
                lease = None
            if (
                lease is not None
                and (attempt is None or attempt == lease.attempt)
                and (lease_id is None or lease_id == lease.lease_id)
            ):
                self._end_lease(lease, now, duration, ok=True)
                if self._learning_gates:
                    self._feed_gates(lease.task, ok=True, duration=duration)
                self._finish_completed(lease.task, now)
                return TaskState.COMPLETED
            self._late_report(task_id, attempt, lease_id, "complete")
            # The late report wins: take the task from wherever it went since.
            current = self._leases.get(task_id)
            if current is not None:
                task = current.task
                self._end_lease(current, now, None, ok=None)
            else:
                task = self._withdraw_waiting(task_id)
            self._finish_completed(task, now, late=True)
            return TaskState.COMPLETED
        finally:
            if self._events or self._deferred is not None:
                self._leave()
            else:
                self._busy = False

    def fail(
        self,
        task_id: Hashable,
        *,
        error: BaseException | str | None = None,
        retryable: bool = True,
        duration: float | None = None,
        attempt: int | None = None,
        throttled: bool = False,
        retry_after: float | None = None,
        lease_id: int | None = None,
    ) -> TaskState:
        """The attempt failed: retry after the policy's delay, or dead-letter.

        ``throttled=True`` says a dependency refused for load (an HTTP 429 or
        503): no attempt is spent, the worker's health and breaker are not
        charged, gates that learn from outcomes (``AdaptiveConcurrency``) hear
        it, and the task retries after ``retry_after`` seconds (default: at
        once). A retry over the ``retry_budget`` waits for room, or is
        dead-lettered as ``retry_budget``, by the budget's policy.

        ``error`` (an exception or a description) is kept in the attempt
        history and offered to the retry policy's ``retryable`` predicate
        and the worker's breaker; ``retryable=False`` dead-letters at once.
        ``lease_id`` or ``attempt`` names the lease reporting, as for
        :meth:`complete`. Returns the task's new state (``RETRYING`` or
        ``DEAD``; or, for a late report of an expired lease, its state
        unchanged). O(r + g) + O(log n).

        Raises:
            UnknownTaskError: no task has this id.
            TaskStateError: the task is not leased (and no expired lease of it
                awaits a late report), not under the lease named, or already
                finished.
            InvalidArgumentError / InvalidTypeError: ``duration`` negative, NaN or
                above 1e12 seconds, ``attempt`` or ``lease_id`` not an int >= 1,
                ``error`` neither an exception, a str nor None, ``retryable`` not a bool.
            Whatever the retry policy's ``retryable`` predicate raises, before
                anything changed: the lease stands, and a later ``fail`` ends it.
            Whatever its ``should_retry`` or ``delay`` raises (and InvalidArgumentError
                / InvalidTypeError for a delay that is not a number from 0 to 1e12
                seconds), once the lease has ended: the task is dead-lettered first,
                as ``rejected``, with the error.
        """
        duration = check_optional_number(duration, "duration", minimum=0.0, maximum=MAX_SECONDS)
        if attempt is not None:
            attempt = check_int(attempt, "attempt", minimum=1)
        if lease_id is not None:
            lease_id = check_int(lease_id, "lease_id", minimum=1)
        if error is not None and not isinstance(error, (BaseException, str)):
            raise InvalidTypeError(f"error must be an exception, a str or None, got {error!r}")
        if not isinstance(retryable, bool):
            raise InvalidTypeError(f"retryable must be a bool, got {retryable!r}")
        if not isinstance(throttled, bool):
            raise InvalidTypeError(f"throttled must be a bool, got {throttled!r}")
        retry_after = check_optional_number(retry_after, "retry_after", minimum=0.0)
        self._enter()
        try:
            now = self._now()
            lease = _lookup(self._leases, task_id)
            if (
                lease is None
                or (attempt is not None and attempt != lease.attempt)
                or (lease_id is not None and lease_id != lease.lease_id)
            ):
                self._late_report(task_id, attempt, lease_id, "fail")
                return self._state_or_none(task_id, now) or TaskState.DEAD
            task = lease.task
            text = _error_text(error)
            if throttled:
                return self._throttled(lease, now, duration, retry_after, text)
            # Asked first: the retry policy's predicate is the user's, and if it raises,
            # nothing has changed yet (the lease stands, as before the call).
            final = not retryable or (
                isinstance(error, BaseException) and not self._retry.is_retryable(error)
            )
            self._counts["failed"] += 1
            if self._listener is not None:
                self._emit(
                    EventKind.FAILED,
                    task_id,
                    worker_id=lease.worker_id,
                    attempt=lease.attempt,
                    detail=text,
                )
            self._end_lease(lease, now, duration, ok=False, error=error)
            self._record_attempt(lease, now, "failed", text)
            self._feed_gates(task, ok=False, duration=duration)
            progress = self._progress[task_id]
            if final:
                self._dead_letter(task, Reason.NOT_RETRYABLE, now)
                return TaskState.DEAD
            try:
                retry = self._may_retry(task, progress, now)
            except Exception as raised:
                return self._policy_failed(task, now, raised)
            if not retry:
                self._dead_letter(task, Reason.MAX_ATTEMPTS, now)
                return TaskState.DEAD
            budget = self._budget
            if (
                budget is not None
                and budget.over == "dead_letter"
                and not progress.budgeted
                and not budget.allows(task)
            ):
                self._dead_letter(task, Reason.RETRY_BUDGET, now)
                return TaskState.DEAD
            try:
                delay = self._retry_delay(progress)
            except Exception as raised:
                return self._policy_failed(task, now, raised)
            progress.last_delay = delay
            self._hold_for_retry(task, progress, now, now + delay, lease.attempt)
            return TaskState.RETRYING
        finally:
            self._leave()

    def _hold_for_retry(
        self, task: Task, progress: _Run, now: float, retry_at: float, attempt: int
    ) -> None:
        """A failed task waits in RETRYING until ``retry_at``, its age kept."""
        task_id = task.id
        progress.retry_at = retry_at
        self._retrying[task_id] = task
        self._waiting_since[task_id] = now - progress.waited
        self._timers.schedule(task_id, retry_at, _RETRY)
        if self._escalation is not None:
            self._plan_escalation(task, now)
        self._counts["retries"] += 1
        if self._listener is not None:
            self._emit(
                EventKind.RETRY_SCHEDULED,
                task_id,
                state=TaskState.RETRYING,
                attempt=attempt,
                at=retry_at,
            )

    def _throttled(
        self,
        lease: _Run,
        now: float,
        duration: float | None,
        retry_after: float | None,
        text: str | None,
    ) -> TaskState:
        """A dependency refused for load: no attempt spent, nobody's health charged."""
        task = lease.task
        if self._listener is not None:
            self._emit(
                EventKind.THROTTLED,
                task.id,
                worker_id=lease.worker_id,
                attempt=lease.attempt,
                at=None if retry_after is None else now + retry_after,
                detail=text,
            )
        self._end_lease(lease, now, None, ok=None)
        self._record_attempt(lease, now, "throttled", text)
        self._feed_gates(task, ok=False, duration=duration, throttled=True, retry_after=retry_after)
        if not retry_after:
            self._requeue(task, now, EventKind.REQUEUED, worker_id=lease.worker_id)
            return TaskState.QUEUED if task.id in self._waiting_since else TaskState.DEAD
        self._hold_for_retry(task, lease, now, now + retry_after, lease.attempt)
        return TaskState.RETRYING

    def _feed_gates(
        self,
        task: Task,
        *,
        ok: bool,
        duration: float | None,
        throttled: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """Tell the gates that learn from outcomes (e.g. ``AdaptiveConcurrency``)."""
        for gate in self._learning_gates:
            gate.record(
                task, ok=ok, duration=duration, throttled=throttled, retry_after=retry_after
            )

    def requeue(
        self, task_id: Hashable, *, attempt: int | None = None, lease_id: int | None = None
    ) -> Task:
        """Give a leased task back to the queue with its age, without spending an attempt.

        For a host that stops with the task unfinished, or a preemption: the
        worker is freed (no outcome recorded), the breaker permit, gates and
        queue quota are released, and the attempt is recorded as
        ``requeued``. ``lease_id`` or ``attempt`` (optional) names the lease
        meant: a task leased again since is refused. Returns the task. O(r +
        g) + the queue's push.

        Raises:
            UnknownTaskError: no task has this id.
            TaskStateError: the task is not leased (under ``attempt`` and
                ``lease_id``, if given).
            InvalidArgumentError / InvalidTypeError: ``attempt`` or ``lease_id``
                not an int >= 1.
        """
        if attempt is not None:
            attempt = check_int(attempt, "attempt", minimum=1)
        if lease_id is not None:
            lease_id = check_int(lease_id, "lease_id", minimum=1)
        self._enter()
        try:
            lease = self._lease_of(task_id, "requeue", lease_id=lease_id)
            if attempt is not None and attempt != lease.attempt:
                raise TaskStateError(
                    f"cannot requeue task {task_id!r}: attempt {attempt} is not its lease "
                    f"(attempt {lease.attempt} is)"
                )
            now = self._now()
            task = lease.task
            self._end_lease(lease, now, None, ok=None)
            self._record_attempt(lease, now, "requeued", None)
            self._requeue(task, now, EventKind.REQUEUED, worker_id=lease.worker_id)
            return task
        finally:
            self._leave()

    # -- manual overrides --------------------------------------------------------

    def pin(self, task_id: Hashable, worker_id: Hashable | None) -> None:
        """Make a waiting task wait for one worker (``None``: unpin it). O(1) + a
        queue push if it was parked.

        Raises:
            UnknownTaskError, TaskStateError: no such task, or it is not waiting.
            UnknownWorkerError: no worker has ``worker_id``.
        """
        self._enter()
        try:
            self._waiting_state(task_id, "pin")
            if worker_id is not None:
                self._tracker.worker(worker_id)
            self._rules.pin(task_id, worker_id)
            self._reconsider(task_id, self._now())
        finally:
            self._leave()

    def assign(self, task_id: Hashable, worker_id: Hashable, *, force: bool = False) -> Assignment:
        """Place a waiting task on a named worker now, bypassing the queue's order and
        the balancer (and its route). O(r) + the queue's remove.

        The worker's capacity always holds (a worker is never loaded beyond it).
        Without ``force`` the gates must admit the task and the worker's breaker
        grant a permit; with it, both are skipped. A forced task takes no probe
        of a half-open breaker, and past a breaker that is not CLOSED it takes
        no permit at all: its outcome is told to no breaker. Past a CLOSED
        breaker it takes that closed period's permit, as a dispatched task
        does, and its outcome counts toward the breaker only if it comes back
        while that period lasts: once the breaker has left it in any way
        (tripped, or :meth:`~taskdist.CircuitBreaker.reset`, even from
        CLOSED, ``force_open`` or ``disable``), the outcome is dropped, as a
        dispatched task's is. The queue's quotas are not charged: the task
        did not come through a pop.

        Raises:
            UnknownTaskError, TaskStateError: no such task, or it is not waiting.
            UnknownWorkerError: no worker has ``worker_id``.
            WorkerUnavailableError, WorkerFullError: the worker cannot take it.
            CapacityError: without ``force``, the gates refuse it now.
            CircuitOpenError: without ``force``, the worker's breaker refuses.
        """
        if not isinstance(force, bool):
            raise InvalidTypeError(f"force must be a bool, got {force!r}")
        self._enter()
        try:
            now = self._now()
            self._waiting_state(task_id, "assign")
            if self._gangs.waiting(task_id):
                raise InvalidArgumentError(
                    f"task {task_id!r} waits in a gang, whose members start all together "
                    "through dispatch; it was not assigned"
                )
            state = self._tracker.worker(worker_id)
            task = self._waiting_task(task_id, "assign")
            _check_worker_takes(state, task)
            gates = None if force else self._gates
            if gates is not None and not gates.try_acquire(task):
                raise CapacityError(f"the gates refuse task {task_id!r} now; it was not assigned")
            permit: int | None = None
            breaker = self._breakers.get(worker_id)
            if breaker is not None and not force:
                permit = breaker.acquire()
                if permit is None:
                    if gates is not None:
                        gates.rollback(task)
                    raise CircuitOpenError(
                        f"the breaker of worker {worker_id!r} refuses; {task_id!r} was not assigned"
                    )
            elif breaker is not None and breaker.state is CircuitState.CLOSED:
                # Forced, it takes no probe; its outcome counts in the closed period it
                # starts in (a CLOSED breaker's permit costs nothing), and nowhere else:
                # the breaker drops it once that period ends (a trip, or a reset even
                # from CLOSED), as it drops a dispatched task's.
                permit = breaker.acquire()
            try:
                # On the tracker before the task leaves where it waits: a gate or the
                # breaker ran code that may have changed the worker (through the tracker
                # itself), and a tracker of the host's own may refuse for its own reasons.
                self._assign_to(task, state)
            except BaseException:
                if breaker is not None and permit is not None:
                    breaker.release(permit)
                if gates is not None:
                    gates.rollback(task)
                raise
            try:
                self._withdraw_waiting(task_id, keep_since=True)
            except BaseException:  # the queue's remove raised: the task is where it was
                self._tracker.release(task, worker_id, ok=None)
                if breaker is not None and permit is not None:
                    breaker.release(permit)
                if gates is not None:
                    gates.rollback(task)
                raise
            said = len(self._events)  # the assigned event goes before the lease's own
            try:
                run = self._lease_task(task, state, self._balancer, permit, now, assigned=True)
            except BaseException as error:  # the balancer's hook raised: the lease goes back
                earlier = self._deferred
                taken = self._leases.get(task_id)
                if taken is not None:
                    taken.popped = False
                    taken.gated = gates is not None
                    self._take_back(task)
                self._first_error_wins(error, earlier)
                raise
            finally:
                if self._steps_held:
                    self._steps_held.pop(task_id, None)
            if self._listener is not None:
                assigned = Event(
                    EventKind.ASSIGNED, now, task_id, worker_id=worker_id, detail="by the host"
                )
                self._events.insert(said, assigned)
            run.popped = False
            run.gated = gates is not None
            return _assignment(run)
        finally:
            self._leave()

    def reprioritize(self, task_id: Hashable, priority: int) -> Task:
        """Give a waiting task a new priority, keeping its age; returns the new Task.

        O(log n): the queue's remove and push.

        Raises:
            UnknownTaskError, TaskStateError: no such task, or it is not waiting (or
                its queue refused it back because its deadline passed while it
                waited, as a ``DeadlineScheduler`` under ``dead_letter`` or
                ``reject`` does: it is dead-lettered then).
            InvalidTypeError, InvalidArgumentError: not a valid priority.
        """
        self._enter()
        try:
            self._waiting_state(task_id, "reprioritize")
            task = self._waiting_task(task_id, "reprioritize")
            changed = attrs.evolve(task, priority=priority)  # validates
            now = self._now()
            if not self._replace_waiting(task, changed, now):
                raise TaskStateError(
                    f"cannot reprioritize task {task_id!r}: its queue refused it at its new "
                    "priority (it can no longer make its deadline), so it was dead-lettered"
                )
            if self._escalation is not None:
                # Its wait at the new priority counts from now: the step timed for the old
                # one goes, and the next is timed for the new (none at the ceiling).
                self._timers.cancel(_EscalationTimer(task_id))
                steps, _ = self._escalated.get(task_id, (0, 0.0))
                self._escalated[task_id] = (steps, now - self._waiting_since[task_id])
                self._plan_escalation(changed, now)
            return changed
        finally:
            self._leave()

    def preempt(self, task_id: Hashable) -> Task:
        """Give a leased task back to the queue so a more urgent one can run: its
        worker is freed, its age kept, no attempt spent (as :meth:`requeue`, with a
        ``preempted`` event). Returns the task.

        Raises:
            UnknownTaskError, TaskStateError: no such task, or it is not leased.
        """
        self._enter()
        try:
            lease = self._lease_of(task_id, "preempt")
            now = self._now()
            task = lease.task
            self._end_lease(lease, now, None, ok=None)
            self._record_attempt(lease, now, "preempted", None)
            self._requeue(task, now, EventKind.PREEMPTED, worker_id=lease.worker_id)
            return task
        finally:
            self._leave()

    def _waiting_state(self, task_id: Hashable, verb: str) -> TaskState:
        state = self._state_of(task_id, self._now())
        if state not in _WAITING:
            raise TaskStateError(
                f"cannot {verb} task {task_id!r}: it is {state.value}, not waiting"
            )
        return state

    def _waiting_task(self, task_id: Hashable, verb: str) -> Task:
        """The Task object of a waiting task, wherever it waits, left in its place. O(1)
        with the library's queues (a look-up); with a queue of the user's own, which has
        none, or for a task the queue is due to expire (its TTL run out, or its deadline
        missed under a deadline scheduler that expires such tasks), the queue's remove
        and push (which may move it behind tasks of equal rank, or refuse it).

        Raises:
            TaskStateError: the queue refused it back (its deadline passed while it
                waited), so it went to the dead-letter queue instead.
        """
        task = self._retrying.get(task_id) or self._lot.get(task_id)
        if task is not None:
            return task
        find = getattr(self._queue, "_held_task", None)
        if find is not None:
            try:
                return cast("Task", find(task_id))
            except (KeyError, TaskdistError):
                pass  # not one it holds live (one due to expire): the long way, as before
        task = self._queue.remove(task_id)
        if not self._enqueue(task, self._now()):
            raise TaskStateError(
                f"cannot {verb} task {task_id!r}: its queue refused it (a deadline passed "
                "while it waited), so it was dead-lettered"
            )
        return task

    def _replace_waiting(self, old: Task, new: Task, now: float) -> bool:
        """Put ``new`` where the waiting ``old`` (same id) is, keeping its age; whether it
        still waits (``False``: its queue refused it back, and it was dead-lettered)."""
        task_id = old.id
        run = self._progress.get(task_id)
        if run is not None:
            run.task = new
        if new.gang is not None:
            self._gangs.replace(new)
        if self._holds is not None:  # the backfill reservation holds the task as it is
            self._holds.replaced(new)
        if task_id in self._retrying:
            self._retrying[task_id] = new
        elif task_id in self._lot:
            lot = self._lot
            group = lot.group_of(task_id)
            was = lot.class_of(task_id)
            lot.remove(task_id)
            self._park(new, group)
            if (
                new.priority != old.priority
                and (self._holds is not None or self._preemption is not None)
                and group is not GATES
                and not _is_pause(group)
            ):
                # Parked for want of room, where its priority decides whether the
                # capacity held for urgent work is open to it and whether it calls for
                # preemption: it is asked again (a gang member stays with its gang).
                self._reconsider(task_id, now)
                return task_id in self._waiting_since
            scouts = self._scouts
            if was is not None and scouts is not None and scouts.out(was):
                # It waited behind a scout, as if back in the queue: if its new class
                # waits for the gates instead, nothing would ever wake it.
                klass = lot.class_of(task_id)
                if klass is not None and not scouts.out(klass):
                    self._send_scout(klass)
        else:
            self._queue.remove(task_id)
            if not self._enqueue(new, now):
                return False
        if self._scouts is not None:  # its class may have changed: the next goes out
            self._scout_left(task_id)
        return True

    def _reconsider(self, task_id: Hashable, now: float) -> None:
        """A parked task whose placement changed goes back to the queue to be asked again
        (not a gang member: it waits for its gang, which is placed with the new rules)."""
        if self._scouts is not None:  # its class changed: the next of the old one goes out
            self._scout_left(task_id)
        if task_id in self._lot and self._lot.group_of(task_id) is not WAITING_FOR_GANG:
            task = self._lot.remove(task_id)
            if task.ttl is not None:
                self._timers.cancel(task_id)
            if self._enqueue(task, now) and self._listener is not None:
                self._emit(EventKind.UNPARKED, task_id, state=TaskState.QUEUED)

    # -- pause and resume --------------------------------------------------------

    def pause(
        self, *, tenant: Hashable = None, key: Hashable = None, pool: Pool | None = None
    ) -> None:
        """Hold a tenant's, a key's or a pool's work: nothing new starts, nothing is lost.

        A paused tenant's or key's tasks stay waiting, in their order (parked
        as they come up in the queue); a paused pool's workers take no new
        task. Running tasks finish. ``explain()`` says what is paused. O(1)
        (a pool: O(paused pools) per worker check while it is paused).
        ``None`` names nothing: tasks without a tenant or key cannot be paused
        by it.

        Raises:
            InvalidArgumentError: nothing named to pause.
            InvalidTypeError: an unhashable tenant or key, a pool that is not a Pool.
        """
        self._enter()
        try:
            for kind, value in self._pause_targets(tenant, key, pool):
                if kind == "pool":
                    assert isinstance(value, Pool)
                    self._rules.close_pool(value)
                else:
                    self._paused[kind].add(value)
        finally:
            self._leave()

    def resume(
        self, *, tenant: Hashable = None, key: Hashable = None, pool: Pool | None = None
    ) -> None:
        """Undo :meth:`pause`: the held tasks go back to the queue with their age.

        O(k) queue pushes for the k tasks it held.

        Raises:
            InvalidArgumentError: nothing named, or it was not paused.
        """
        self._enter()
        try:
            self._now()  # a host's clock that reads NaN or infinity: refused before any change
            targets = self._pause_targets(tenant, key, pool)
            for kind, value in targets:
                held = (
                    value in self._rules.closed_pools
                    if kind == "pool"
                    else value in self._paused[kind]
                )
                if not held:
                    raise InvalidArgumentError(f"{kind} {value!r} is not paused")
            for kind, value in targets:
                if kind == "pool":
                    assert isinstance(value, Pool)
                    self._rules.open_pool(value)
                    self._wake_all_placement_groups()
                else:
                    self._paused[kind].discard(value)
                    self._wake_group(("paused", kind, value))
        finally:
            self._leave()

    def _pause_targets(
        self, tenant: Hashable, key: Hashable, pool: Pool | None
    ) -> list[tuple[str, Hashable]]:
        targets: list[tuple[str, Hashable]] = []
        for kind, value in (("tenant", tenant), ("key", key)):
            if value is not None:
                try:
                    hash(value)
                except TypeError:
                    raise InvalidTypeError(f"a {kind} is hashable, got {value!r}") from None
                targets.append((kind, value))
        if pool is not None:
            if not isinstance(pool, Pool):
                raise InvalidTypeError(f"pool must be a Pool, got {pool!r}")
            targets.append(("pool", pool))
        if not targets:
            raise InvalidArgumentError("name a tenant=, key= or pool= to pause or resume")
        return targets

    # -- gangs and held capacity -------------------------------------------------------

    def _join_gang(self, task: Task, now: float, completes: bool) -> None:
        """A new gang member (queued already if it completes its gang) joins its gang."""
        gang = task.gang
        new, _ = self._gangs.join(task, now)
        if new:
            due = self._gangs.due(gang)
            assert due is not None
            self._timers.schedule(GangTimer(gang), due, _GANG)
        if not completes:
            self._park_member(task)
        elif self._listener is not None:
            self._emit(EventKind.GANG_READY, task.id, state=TaskState.QUEUED, detail=repr(gang))

    def _check_member(self, task: Task) -> Eviction | None:
        """A gang member that will wait out of the queue is refused as the queue would
        refuse it alone (its quota, tenant, bound): by the queue's ``check_push``,
        which changes nothing, when it has one. ``None``: not pushed, nothing evicted."""
        check = getattr(self._queue, "check_push", None)
        if check is not None:
            check(task)
        return None

    def _park_member(self, task: Task) -> None:
        """A gang member waits, parked, for the rest of its gang (holding nothing)."""
        self._lot.park(task, WAITING_FOR_GANG)
        if task.ttl is not None:
            self._timers.schedule(task.id, self._waiting_since[task.id] + task.ttl, _TTL)
        if self._listener is not None:
            self._emit(
                EventKind.PARKED, task.id, state=TaskState.PARKED, detail=self._gangs.words(task)
            )

    def _gang_left(self, task_id: Hashable, now: float) -> None:
        """A waiting member finished (cancelled, expired): its gang is short of one, so
        its leader, if it had one, goes back to waiting with the others."""
        left = self._gangs.leave(task_id)
        if left is None:
            return
        gang, leader = left
        if gang not in self._gangs:
            self._timers.cancel(GangTimer(gang))
        self._timers.cancel(GangRetryTimer(gang))  # no longer complete: no try to wake for
        if leader is not None:
            if leader in self._lot:
                task = self._lot.remove(leader)
                if task.ttl is not None:
                    self._timers.cancel(leader)
            else:
                task = self._queue.remove(leader)
            self._park_member(task)

    def _gang_timed_out(self, gang: Hashable, now: float) -> None:
        """A gang not placed in time: every waiting member is dead-lettered."""
        if gang not in self._gangs:
            return
        members = self._gangs.members(gang)
        error = (
            f"gang {gang!r} was not placed within {self._gangs.policy.timeout:g} s "
            f"({len(members)} of {members[0].gang_size} members arrived)"
        )
        self._dead_letter_gang(gang, Reason.GANG_TIMEOUT, error, now)

    def _regang(
        self,
        gang: Hashable,
        size: int,
        due: float,
        leader: Hashable,
        members: list[Task],
        retry: float | None,
    ) -> None:
        """A gang the failing dispatch placed waits again as it did: its leases were taken
        back (each member to the queue); the others wait parked for their leader again,
        under the gang's timeout (and retry timer) as before."""
        alive = [task for task in members if task.id in self._waiting_since]
        if not alive:
            return
        if len(alive) < size or all(task.id != leader for task in alive):
            leader = None  # (a member a failed push back dead-lettered: short of one)
        self._gangs.restore(gang, size, due, leader, alive)
        self._timers.schedule(GangTimer(gang), due, _GANG)
        if retry is not None and leader is not None:
            self._timers.schedule(GangRetryTimer(gang), retry, _GANG_RETRY)
        for task in alive:
            if task.id == leader:
                continue
            if task.id in self._queue:
                self._queue.remove(task.id)
                self._park_member(task)
            elif task.id not in self._lot and task.id not in self._retrying:
                # It left the lot for a lease the tracker refused: it waits parked again.
                self._park_member(task)

    def _dead_letter_gang(self, gang: Hashable, reason: Reason, error: object, now: float) -> None:
        """Every waiting member of ``gang`` goes to the dead-letter queue, with ``reason``."""
        members = self._gangs.members(gang)
        self._gangs.forget(gang)
        self._timers.cancel(GangTimer(gang))
        self._timers.cancel(GangRetryTimer(gang))
        for task in members:
            self._withdraw_waiting(task.id)
            self._dead_letter(task, reason, now, error)

    def _never_together(self, tasks: list[Task]) -> UnsatisfiableDemandError | None:
        """Why ``tasks`` (a gang) could never start together under the queue's quotas as
        they are now, or ``None``. Changes nothing."""
        check = getattr(self._queue, "check_together", None)
        if check is None:
            return None
        try:
            check(tasks)
        except UnsatisfiableDemandError as error:
            return error
        return None

    def _plan_gang(self, task: Task) -> bool:
        """The ``where=`` of dispatch for a gang member: a leader is placeable when every
        member of its gang finds a worker (tried on the tracker, then undone); any other
        member goes back to wait for its leader."""
        gang = task.gang
        if not self._gangs.is_leader(task):
            self._passed.append((task, WAITING_FOR_GANG))
            return False
        if (_TAKE_ALONG_REFUSED, gang) in self._round_blocked:
            return False  # its tenants' quotas refused it this dispatch: it stays queued
        members = self._gangs.members(gang)
        paused = self._paused
        if paused["tenant"] or paused["key"]:
            # A member's tenant or key is paused (the leader's was asked already): the
            # whole gang waits, its leader parked under that pause, whose resume wakes it.
            for member in members:
                held = _held_by(paused, member)
                if held is not None:
                    self._passed.append((task, held))
                    return False
        # Gangs of one shape fit or not alike: they wait in one group, woken one at a
        # time, and one that does not fit blocks the others for the round.
        sig = _group(task, GangMark(frozenset(Counter(signature(m) for m in members).items())))
        if sig in self._round_blocked:
            self._passed.append((task, sig))
            return False
        tracker = self._tracker
        holds = self._holds
        if holds is not None:
            held = holds.narrow(task, None, self._now, gang=members)
            if held[0] is NOWHERE:
                self._passed.append((task, held[2]))
                return False
        # Where each member may go, asked before any is tried on the tracker (what is
        # held for others is judged on the workers as they are).
        where = []
        for member in members:
            filter_, balancer, _ = self._rules.of(member)
            if holds is not None:
                filter_ = holds.narrow(member, filter_, self._now, gang=members)[0]
            where.append((member, filter_, balancer))
        plan: list[tuple[Task, WorkerState, Balancer]] = []
        try:
            for member, filter_, balancer in where:
                if filter_ is NOWHERE:
                    break
                worker = balancer.choose(member, tracker, filter_)
                if worker is None:
                    break
                if trusts_choice(balancer):
                    if not tracker.is_candidate(member, worker.id, filter_):
                        break
                else:
                    _check_choice(balancer, member, worker, tracker, filter_)
                tracker.assign(member, worker.id)
                plan.append((member, worker, balancer))
        finally:
            # Every trial placement is undone, last first, even if a release raises.
            call_all(
                [
                    partial(tracker.release, member, worker.id, ok=None)
                    for member, worker, _ in reversed(plan)
                ]
            )
        if len(plan) < len(members):
            self._round_blocked.add(sig)
            self._passed.append((task, sig))
            return False
        self._gang_plan = plan
        self._choice = plan[0]
        self._gang_sig = sig
        return True

    def _place_gang(self, leader: Task, now: float, room: int | None) -> list[Assignment] | None:
        """Place every member of the leader's gang (planned by ``_plan_gang``), or none;
        ``None`` when they are more than ``room`` (the leader goes back, the round ends)."""
        plan, self._gang_plan = self._gang_plan, []
        if room is not None and len(plan) > room:
            self._unpop(leader, None)
            return None
        gates = self._gates
        admitted: list[Task] = []
        permits: list[int | None] = []

        def undo() -> None:
            for (_, worker, _), permit in zip(plan, permits, strict=False):
                if permit is not None:
                    self._breakers[worker.id].release(permit)
            if admitted:  # (a rate gate's rollback undoes only the latest admission)
                assert gates is not None
                gates.rollback_run(admitted)

        for member, worker, _ in plan:
            if gates is not None:
                try:
                    ok = gates.try_acquire(member)
                except InvalidArgumentError:
                    ok = False
                except BaseException:  # a gate's callback: nothing of the gang is placed
                    undo()
                    raise
                if not ok:
                    undo()
                    self._unpop(leader, GATES)
                    return []
                admitted.append(member)
            breaker = self._breakers.get(worker.id)
            try:
                permit = None if breaker is None else breaker.acquire()
            except BaseException:  # a breaker of the host's: nothing of the gang is placed
                undo()
                raise
            if breaker is not None and permit is None:
                undo()
                self._unpop(leader, self._gang_sig)
                return []
            permits.append(permit)
        try:
            # The gates and breakers just asked may have changed a worker (through the
            # tracker itself): the tracker would take the members as planned, all
            # together, or the gang is placed nowhere before any member leaves where it
            # waits. The check changes nothing on the tracker.
            self._tracker._check_placements((member, worker) for member, worker, _ in plan)
        except BaseException:
            undo()
            raise
        # The queue popped the leader only: its other members count against their
        # tenants' quotas and fair shares too (a FairScheduler's take_along).
        take_along = getattr(self._queue, "take_along", None) if len(plan) > 1 else None
        if take_along is not None:
            try:
                take_along([member for member, _, _ in plan if member.id != leader.id])
            except QuotaExceededError as refused:
                # No room in a tenant's quota for them all now: the leader waits in the
                # queue, passed over for the rest of this dispatch (a quota frees with
                # a release or with time, which no parking group would hear of). When
                # time alone brings the room (a rate quota), next_wakeup says when.
                undo()
                if refused.ready_at is None:
                    # No refill would help: if a quota lowered since it was admitted
                    # leaves no room for its members together ever, the gang goes.
                    never = self._never_together([member for member, _, _ in plan])
                    if never is not None:
                        self._put_back(leader)
                        if leader.id in self._waiting_since:  # (else a put-back dropped it)
                            self._dead_letter_gang(leader.gang, Reason.REJECTED, never, now)
                        return []
                if refused.ready_at is not None and refused.ready_at > now:
                    # Timed first: a put-back that dead-letters the leader cancels it.
                    self._timers.schedule(
                        GangRetryTimer(leader.gang), refused.ready_at, _GANG_RETRY
                    )
                self._put_back(leader)
                self._round_blocked.add((_TAKE_ALONG_REFUSED, leader.gang))
                return []
            except BaseException:  # a callback of the queue's: nothing of the gang is placed
                undo()
                raise
        gang = leader.gang
        due = self._gangs.due(gang)
        assert due is not None
        self._gangs_placed.append(
            (
                gang,
                len(plan),
                due,
                leader.id,
                self._gangs.members(gang),
                self._timers.when(GangRetryTimer(gang)),
            )
        )
        self._gangs.forget(gang)
        self._timers.cancel(GangTimer(gang))
        self._timers.cancel(GangRetryTimer(gang))
        # It fit: the next gang of its shape, waiting, may fit too.
        self._wake_group(self._gang_sig, 1)
        made = []
        try:
            for (member, worker, balancer), permit in zip(plan, permits, strict=True):
                is_leader = member.id == leader.id  # (the queue's object may be an equal one)
                if not is_leader:  # from waiting for the gang, through the queue
                    self._lot.remove(member.id)
                    if member.ttl is not None:
                        self._timers.cancel(member.id)
                    if self._listener is not None:
                        self._emit(EventKind.UNPARKED, member.id, state=TaskState.QUEUED)
                run = self._lease_task(member, worker, balancer, permit, now, notify=False)
                run.popped = is_leader or take_along is not None
                run.gated = gates is not None
                made.append(
                    Assignment(member, worker.id, run.attempt, now, run.expiry, None, run.lease_id)
                )
        except BaseException:
            # The tracker refused a member its lease (a subclass's assign): the members
            # not leased give back what they were granted; the dispatch takes back the
            # leased ones, and the gang waits again.
            self._ungrant([(m, w, p) for (m, w, _), p in zip(plan, permits, strict=True)], leader)
            raise
        # Every member is leased before any balancer hears of one: if a hook raises,
        # the dispatch takes the whole gang back.
        for member, worker, balancer in plan:
            if balancer is not self._deaf_balancer:
                balancer.on_assign(member, worker)
        return made

    def _ungrant(self, granted: list[tuple[Task, WorkerState, int | None]], leader: Task) -> None:
        """What a gang's members not leased were granted for a placement that failed goes
        back: their breaker permits, gates, and (taken along) the queue's count of them
        (the leader's is the dispatch's to put back, as any task popped and not placed)."""
        gates = self._gates
        taken_along = getattr(self._queue, "take_along", None) is not None
        unleased: list[Task] = []
        for member, worker, permit in granted:
            if member.id in self._leases:
                continue
            unleased.append(member)
            if permit is not None:
                self._breakers[worker.id].release(permit)
            if taken_along and member.id != leader.id:
                self._hook(self._queue.release, member)
        if gates is not None and unleased:
            # Never leased: their admissions are undone, as a single task's whose lease
            # failed (a rate gate refunds). They are the run's last ones, in order.
            self._hook(gates.rollback_run, unleased)

    def _reserve_for(self, task: Task, now: float) -> None:
        """A task parked for want of room: a backfill reservation for it, if it is large
        and none is held (its worker is where it can start soonest)."""
        holds = self._holds
        assert holds is not None
        if holds.holder is not None or not holds.wants(task):
            return
        in_pool = self._rules.without_breakers(task)
        candidates = [
            state
            for state in self._tracker.workers()
            if state.health is not Health.UNAVAILABLE
            and task.requires <= state.skills
            and (in_pool is None or in_pool(state))
        ]
        worker = holds.reserve(task, candidates, now)
        if worker is not None and self._listener is not None:
            self._emit(
                EventKind.RESERVED,
                task.id,
                worker_id=worker.id,
                state=TaskState.PARKED,
                at=holds.due(now),
            )

    def _started_at(self, task_id: Hashable) -> float:
        """When a task on a worker started: its lease's start (a gang member only being
        tried on the tracker has none yet: it would start now)."""
        lease = self._leases.get(task_id)
        return self._now() if lease is None else lease.started_at

    def _hold_on_arrival(self, task: Task, now: float) -> None:
        """A task that arrives while a reservation over every worker keeps it out is held
        at once, as the next dispatch would hold it, without being looked at there."""
        assert self._holds is not None
        if task.gang is not None and self._gangs.waiting(task.id):
            return  # a gang's leader is checked for its whole gang when dispatch offers it
        keep_out, _, group = self._holds.narrow(task, None, self._now)
        if keep_out is NOWHERE:
            self._passed.append((task, group))
            self._park_passed(now)

    def _wake_backfill_groups(self) -> None:
        """The backfill reservation ended: the tasks it kept off its worker may go there."""
        for group, _ in list(self._lot.groups()):
            if backfill_group(group):
                self._wake_group(group)

    def _held_words(self, task_id: Hashable, now: float) -> str:
        """What gangs and held capacity add to ``explain`` for a live task."""
        words = ""
        if task_id not in self._lot:  # a parked member says it in its own words (O(1))
            gang = self._gangs.words_of(task_id)
            if gang is not None:
                words += f" [{gang}]"
        holds = self._holds
        if holds is None or holds.holder is None:
            return words
        due = holds.due(now)
        if due is None:
            return words
        reserved = holds.reserved_worker
        if task_id == holds.holder:
            return words + f"; worker {reserved!r} reserved for it from {due:g}"
        group = self._lot.group_of(task_id)
        if group is not None and backfill_group(group):
            words += (
                f"; held for reservation: worker {reserved!r} is reserved for "
                f"{holds.holder!r} from {due:g}"
            )
        return words

    # -- escalation and preemption ----------------------------------------------------

    def _plan_escalation(self, task: Task, now: float) -> None:
        """Time a waiting task's next escalation step, if the rule has one for it."""
        rule = self._escalation
        if rule is None:
            return
        task_id = task.id
        steps, age = self._escalated.get(task_id, (0, 0.0))
        since = self._waiting_since[task_id] + age  # waited since the last step
        due = None
        threshold = rule.threshold(task)
        if threshold is not None:
            due = since + threshold
        if steps == 0:
            run = self._progress.get(task_id)
            arrived = self._waiting_since[task_id] if run is None else run.submitted_at
            by_slack = rule.slack_due(task, arrived)
            if by_slack is not None and (due is None or by_slack < due):
                due = by_slack
        if due is not None:
            self._timers.schedule(_EscalationTimer(task_id), max(due, now), _ESCALATE)

    def _escalate(self, task_id: Hashable, due: float, now: float) -> None:
        """A waiting task's escalation step, due at ``due`` (the next is timed from it,
        not from a late tick)."""
        rule = self._escalation
        if rule is None or task_id not in self._waiting_since:
            return  # leased since: it is timed again when it waits again
        try:
            task = self._waiting_task(task_id, "escalate")
        except TaskStateError:
            return  # it missed its deadline while waiting: dead-lettered, nothing to raise
        if task.priority <= rule.ceiling:
            return  # at its ceiling already (the host raised it since): no step to take
        steps, _ = self._escalated.get(task_id, (0, 0.0))
        raised = rule.raised(task)
        self._escalated[task_id] = (steps + 1, due - self._waiting_since[task_id])
        changed = task if raised == task.priority else attrs.evolve(task, priority=raised)
        if changed is not task and not self._replace_waiting(task, changed, now):
            return  # the queue refused it back (it can no longer make its deadline): dead
        # Said before the move to its pool, which may end it (a deadline scheduler
        # refusing it back, its deadline passed): no event follows a final one.
        if self._listener is not None:
            self._emit(
                EventKind.ESCALATED,
                task_id,
                state=self._state_of(task_id, now),
                detail=f"priority {task.priority} -> {raised}",
            )
        if rule.to is not None and steps == 0:
            self._rules.send(task_id, rule.to)
            self._reconsider(task_id, now)
        if task_id in self._waiting_since:
            self._plan_escalation(changed, now)

    def _advise_for_head(self, now: float) -> None:
        """No worker has room: if the task at the head of the queue is one preemption
        is for, name its victims (the queue's head only: one peek, no scan)."""
        head = self._queue.peek()
        if head is not None:
            self._advise_preemption(head, now)

    def _advise_preemption(self, task: Task, now: float) -> None:
        """An urgent task parked for want of room: name the leases it could displace."""
        rule = self._preemption
        if rule is None or task.id in self._advised or not rule.wants(task):
            return
        in_pool = self._rules.without_breakers(task)
        tracker = self._tracker
        running: list[tuple[Task, float]] = []
        for state in tracker.workers():
            if state.health is Health.UNAVAILABLE or not task.requires <= state.skills:
                continue
            if in_pool is not None and not in_pool(state):
                continue
            for placed in tracker.tasks_on(state.id):
                lease = self._leases.get(placed.id)
                if lease is not None:
                    running.append((lease.task, lease.started_at))
        advice = getattr(self._queue, "preemption_candidates", None)
        victims = rule.victims(task, running)
        if advice is not None and running:
            chosen = {victim.id for victim in advice(task, running)}
            victims = [victim for victim in victims if victim.id in chosen]
        if not victims:
            return
        self._advised.add(task.id)
        if self._listener is not None:
            self._emit(
                EventKind.PREEMPT,
                task.id,
                state=TaskState.PARKED,
                detail="victims: " + ", ".join(repr(v.id) for v in victims),
                victims=tuple(v.id for v in victims),
            )

    def redrive(self, ids_or_predicate: Selector) -> RedriveReport:
        """Submit tasks of the dead-letter queue (:attr:`dlq`) again, as new work.

        Each selected entry (oldest first; for ids, in the order given)
        leaves the dead-letter queue and its task is taken in as by
        :meth:`submit` (the intake policies are asked), but that its id, the
        dead one's, is no duplicate: its attempts start from the first and
        its wait from now, with a ``submitted`` event. A task the distributor
        refuses (``max_queued`` reached, its deadline passed, a quota, a
        demand no gate could grant, an intake policy, whose refusal is
        counted and announced as a duplicate as on ``submit``: any refusal of
        ``submit``) stays in the dead-letter queue where it was and is listed
        in ``report.refused`` with why. Every other selected entry is in
        ``report.redriven``. A gang member takes along every member of its
        gang in the dead-letter queue, right after it (they are in the
        report as if selected; members selected later move up with it): a
        member taken in alone would wait for the rest of its gang until the
        gang's timeout. Such a gang is refused whole (every member stays,
        listed in ``report.refused``) when ``max_queued`` has no room for all
        of its members or one member's deadline has passed, and, with no
        intake policies, when the gates or the queue's ``check_push`` would
        refuse a member (a demand no gate could grant, its tenant's quota) or
        the members together. A refusal known only as a member is taken in
        (an intake policy's; the push of the member that completes the gang
        not admitting it on time under ``on_miss="reject"``, or evicting it
        straight back) leaves the members taken in before it waiting. Tasks
        the queue evicts to make room are dead-lettered as on any submit
        (anew, if it is the redriven task itself the queue evicts straight
        back) and listed in ``report.displaced``. While a task is taken in, the dead-letter queue
        holds its entry beyond its ``maxsize`` if it must, so the bound drops
        no entry during a redrive. The task's earlier incarnation stays
        counted as dead in :meth:`stats`.

        Complexity: O(n) for a predicate, O(k) for k ids (O(n) more when one
        is a gang member), plus a submit each.

        Raises:
            ClosedError: after :meth:`close`.
            InvalidTypeError: the selector is neither ids nor a predicate.
            UnknownTaskError: an id is not in the dead-letter queue (nothing moves).
            ReentrancyError: called from a callback of the distributor, or the
                predicate called back into it (nothing moves).
        """
        self._enter()
        try:
            if self._closed:
                raise ClosedError("the distributor is closed and takes no new tasks")
            dlq = self._dlq
            selected = _with_gang_mates(dlq._select(ids_or_predicate), dlq)
            now = self._now()
            redriven: list[DeadLetter] = []
            refused: list[tuple[DeadLetter, str]] = []
            displaced: list[Eviction] = []
            gangs: dict[Hashable, list[DeadLetter]] = {}
            for entry in selected:
                if entry.task.gang is not None:
                    gangs.setdefault(entry.task.gang, []).append(entry)
            # A gang is taken in whole or not at all, for what can be told before its
            # first member is: members taken in without the rest would wait in vain.
            kept_back: dict[Hashable, str | None] = {}
            for entry in selected:
                gang = entry.task.gang
                why = None
                if gang is not None:
                    if gang not in kept_back:
                        kept_back[gang] = self._gang_refusal(gangs[gang], now)
                    why = kept_back[gang]
                if why is None:
                    why = self._redrive_one(entry, now, displaced)
                if why is None:
                    redriven.append(attrs.evolve(entry, redriven_at=now))
                else:
                    refused.append((entry, why))
            return RedriveReport(tuple(redriven), tuple(refused), tuple(displaced))
        finally:
            self._leave()

    def _gang_refusal(self, group: list[DeadLetter], now: float) -> str | None:
        """Why the members of one gang a redrive selected (with their mates) cannot all be
        taken in, as far as that is known before any is: no room for them all under
        ``max_queued``, a member's deadline passed, and (with no intake policies) a
        demand no gate could grant, or what the queue refuses of a member alone (its
        tenant's quota, say) or of the gang together. ``None``: try them (each then
        meets its own refusal, as on submit)."""
        gang = group[0].task.gang
        tasks = [entry.task for entry in group]
        arrived = self._gangs.arrived(gang)
        members = [*arrived, *tasks]
        size = (arrived or tasks)[0].gang_size
        assert size is not None  # a member of a gang has its size
        if len(members) > size or any(task.gang_size != size for task in tasks):
            return None  # not all would join it: each meets its own refusal, as on submit
        max_queued = self._max_queued
        waiting = len(self._waiting_since)
        if max_queued is not None and waiting + len(group) > max_queued:
            return (
                f"QueueFullError: {waiting} tasks are waiting, the distributor's max_queued is "
                f"{max_queued}, and gang {gang!r} brings {len(group)}; "
                f"none of its members was added"
            )
        for entry in group:
            deadline = entry.task.deadline
            if deadline is not None and deadline <= now:
                return (
                    f"DeadlineError: gang member {entry.task.id!r} has deadline {deadline!r}, "
                    f"not after now ({now!r}); none of its gang's members was added"
                )
        if self._intake:
            # An intake policy may cancel a task (making room in a quota) or replace a
            # member: what the gates and the queue would say is known only as it goes in.
            return None
        # What _admit would refuse of a member, asked of each before any goes in: parked
        # members are out of the queue, so each is judged as it would be when its turn came.
        try:
            if self._gates is not None:
                for task in tasks:
                    _check_gates(self._gate_list, task)
                self._gates.check_together(members)
            queue_check = getattr(self._queue, "check_together", None)
            if queue_check is not None:
                queue_check(members)
            for task in tasks:
                self._check_member(task)
        except TaskdistError as error:
            return f"{type(error).__name__}: {error}; none of gang {gang!r}'s members was added"
        return None

    def _redrive_one(self, entry: DeadLetter, now: float, displaced: list[Eviction]) -> str | None:
        """Take one dead-letter entry's task in as new work; why not, if it stays."""
        dlq = self._dlq
        task_id = entry.task.id
        if dlq.get(task_id) is not entry:
            return "it left the dead-letter queue while the redrive ran"
        added = dlq._added
        # Its entry stays put until it is in: a refusal changes nothing. Meanwhile a task
        # the queue displaces may take one place more, so that the bound drops no entry.
        bounded = dlq._maxsize is not None
        if bounded:
            dlq._maxsize += 1  # type: ignore[operator]
        self._redriving = task_id
        try:
            if self._intake:
                verdicts: list[Verdict] = []
                if not self._take_in(entry.task, now, verdicts).accepted:
                    verdict = verdicts[0]
                    return (
                        f"an intake policy refused it as a duplicate of {verdict.because!r}: "
                        f"{verdict.reason}"
                    )
            else:
                self._admit(entry.task, now)
        except TaskdistError as error:  # raised before any change
            return f"{type(error).__name__}: {error}"
        finally:
            if bounded:
                dlq._maxsize -= 1  # type: ignore[operator]
            back = self._redriving is _EVICTED_BACK
            self._redriving = None
        if not back:  # (else _dead_letter took it, to file the task's new entry)
            dlq._take(task_id)
        dlq._redriven += 1
        # What this submit dead-lettered is the newest entries.
        new = list(islice(reversed(dlq._entries.values()), dlq._added - added))
        displaced += [Eviction(dead.task, dead.reason) for dead in reversed(new)]
        return None

    def cancel(self, task_id: Hashable) -> Task:
        """Withdraw a live task, wherever it is; return it. A leased task's worker is
        freed (the host stops the work). O(r) or the queue's remove.

        Raises:
            UnknownTaskError: no task has this id.
            TaskStateError: the task already finished.
        """
        self._enter()
        try:
            now = self._now()
            state = self._state_of(task_id, now)
            if state.is_final:
                raise TaskStateError(f"task {task_id!r} is {state.value}; it cannot be cancelled")
            return self._cancel_live(task_id, now, None)
        finally:
            self._leave()

    def _cancel_live(self, task_id: Hashable, now: float, why: str | None) -> Task:
        lease = self._leases.get(task_id)
        if lease is not None:
            task = lease.task
            self._end_lease(lease, now, None, ok=None)
        else:
            task = self._withdraw_waiting(task_id)
        self._finish(task, TaskState.CANCELLED, now)
        if self._listener is not None:
            self._emit(
                EventKind.CANCELLED,
                task_id,
                state=TaskState.CANCELLED,
                reason=Reason.CANCELLED,
                worker_id=None if lease is None else lease.worker_id,
                detail=why,
            )
        return task

    def _lease_of(self, task_id: Hashable, verb: str, *, lease_id: int | None = None) -> _Run:
        lease = _lookup(self._leases, task_id)
        if lease is None:
            state = self._state_of(task_id, self._now())
            raise TaskStateError(f"cannot {verb} task {task_id!r}: it is {state.value}, not leased")
        if lease_id is not None and lease_id != lease.lease_id:
            raise TaskStateError(
                f"cannot {verb} task {task_id!r}: lease {lease_id} is not its lease "
                f"(lease {lease.lease_id} is)"
            )
        return lease

    def _late_report(
        self, task_id: Hashable, attempt: int | None, lease_id: int | None, verb: str
    ) -> None:
        """Accept a report of an expired lease once (it awaits none after), or raise.

        The lease is the one ``lease_id`` and ``attempt`` name (each if given), or
        without either the latest expired one."""
        now = self._now()
        state = self._state_of(task_id, now)
        progress = self._progress.get(task_id)
        lapsed = None if progress is None else progress.lapsed
        found: int | None = None
        if not state.is_final and lapsed:
            if lease_id is not None:
                found = next((a for a, n in lapsed.items() if n == lease_id), None)
                if attempt is not None and found != attempt:
                    found = None
            elif attempt is not None:
                found = attempt if attempt in lapsed else None
            else:
                found = max(lapsed)
        if found is None:
            which = "" if lease_id is None else f" {lease_id}"
            if attempt is not None:
                which += f" of attempt {attempt}"
            raise TaskStateError(
                f"cannot {verb} task {task_id!r}: it is {state.value}, and no expired lease"
                f"{which} awaits a late report"
            )
        assert lapsed is not None
        del lapsed[found]

    def _end_lease(
        self,
        lease: _Run,
        now: float,
        duration: float | None,
        *,
        ok: bool | None,
        error: BaseException | str | None = None,
    ) -> None:
        """Everything a lease held goes back: worker, breaker permit, gates, queue."""
        task = lease.task
        self._unlease(lease, now, ok=ok)
        tracker = self._tracker
        worker_id = lease.worker_id
        state = self._release_from(task, worker_id, duration, ok)
        balancer = lease.balancer
        assert balancer is not None
        if balancer is not self._deaf_balancer:
            self._hook(balancer.on_release, task, state)
        if self._holds is not None:
            self._holds.released(task, worker_id)
        counts = self._worker_counts[worker_id]
        if ok is True:
            counts[0] += 1
        elif ok is False:
            counts[1] += 1
            if state.ejected_until is not None:
                self._tracker_wake = tracker.next_wakeup()
                if self._listener is not None:
                    self._emit(
                        EventKind.WORKER_EJECTED, worker_id=worker_id, at=state.ejected_until
                    )
        breaker = self._breakers.get(worker_id)
        if breaker is not None:
            self._report_to_breaker(breaker, worker_id, lease, now, duration, ok, error)
            if self._breaker_changes:
                self._breakers_changed()
        if self._gates is None:  # _end_gates_and_queue, inline: the hot path
            if lease.popped and self._queue_releases:
                try:
                    self._queue.release(task)
                except Exception as raised:  # as _hook: the books are finished first
                    self._defer(raised)
        else:
            self._end_gates_and_queue(lease)
        if self._parked:
            self._wake_for(state)

    def _unlease(self, lease: _Run, now: float | None, *, ok: bool | None) -> None:
        """End what a lease is in the Distributor's own books: the lease, its batch, its
        timer, the retry budget's count. Every path that ends a lease starts here; what
        the lease held elsewhere (the worker, a breaker permit, the gates, the queue) is
        the caller's to give back, as each path does it differently."""
        task = lease.task
        del self._leases[task.id]
        if lease.batch is not None:
            self._leave_batch(lease, ok=ok, now=now)
        self._timers.cancel(task.id)
        if self._budget is not None:
            self._budget.unleased(task)

    def _report_to_breaker(
        self,
        breaker: CircuitBreaker,
        worker_id: Hashable,
        lease: _Run,
        now: float,
        duration: float | None,
        ok: bool | None,
        error: BaseException | str | None,
    ) -> None:
        permit = lease.permit
        if permit is None:
            # A lease forced past a breaker that was not closed: it took no probe, and
            # its outcome is no probe's.
            return
        ran = now - lease.started_at if duration is None else duration
        try:
            if ok is None:
                breaker.release(permit)
            elif ok:
                breaker.record_success(ran, permit=permit)
            elif isinstance(error, BaseException):
                breaker.record_error(error, ran, permit=permit)
            else:
                breaker.record_failure(ran, permit=permit)
        except Exception as raised:  # a listener of the breaker's: finish the books first
            self._defer(raised)

    def _first_error_wins(self, error: BaseException, earlier: Exception | None) -> None:
        """A rollback for ``error`` ran a hook that raised too (held in ``_deferred``):
        ``error``, the cause, is what the call raises; the later one becomes a note on
        it (where exceptions take notes, Python 3.11 on).

        ``earlier``: what ``_deferred`` held when ``error`` was caught, a hook's error
        from before it (a lease that ended earlier in the call): that one came first
        and is still raised at the end of the call, ``error`` its context."""
        later = self._deferred
        if later is None or later is error or later is earlier:
            return
        self._deferred = None
        add_note = getattr(error, "add_note", None)
        if add_note is not None:
            add_note(
                "while the distributor took back what the call had placed, a hook raised "
                f"too: {type(later).__name__}: {later}"
            )

    def _defer(self, error: Exception) -> None:
        """Hold ``error`` to be raised at the end of the call under way (``_leave``), once
        its books are done; an error held already goes first."""
        if self._deferred is None:
            self._deferred = error

    def _hook(self, hook: Callable[..., object], *args: object) -> None:
        """Call a hook that reports what the books already did (a balancer's release,
        worker added or removed; a gate's or the queue's release): an error it raises
        waits until the books are done and is raised at the end of the call, so that no
        task is lost half-way."""
        try:
            hook(*args)
        except Exception as raised:
            self._defer(raised)

    def _watch(self, worker_id: Hashable, breaker: CircuitBreaker) -> None:
        """Hear the breaker's transitions, whoever causes them (outcomes, time, the host)."""
        changes = self._breaker_changes
        breakers = self._breakers

        def heard(change: BreakerStateChange) -> None:
            if breakers.get(worker_id) is breaker:  # not once its worker is removed
                changes.append((worker_id, change.current))

        breaker.add_listener(heard)

    def _breakers_changed(self) -> None:
        """Act on breaker transitions heard: time the reopening of an open one, wake
        what waits for one that takes tasks again."""
        changes = self._breaker_changes
        while changes:
            worker_id, state = changes.pop(0)
            breaker = self._breakers.get(worker_id)
            if breaker is None:
                continue  # its worker was removed
            if state in _REFUSING:
                reopens = breaker.next_wakeup()
                if reopens is not None:
                    self._timers.schedule(_BreakerTimer(worker_id), reopens, _BREAKER)
                if self._listener is not None:
                    self._emit(EventKind.BREAKER_OPENED, worker_id=worker_id, at=reopens)
            else:
                if state is CircuitState.CLOSED and self._listener is not None:
                    self._emit(EventKind.BREAKER_CLOSED, worker_id=worker_id)
                self._wake_for(self._tracker.worker(worker_id))

    def _end_gates_and_queue(self, lease: _Run) -> None:
        task = lease.task
        gates = self._gates
        if gates is not None and lease.gated:
            # Asked while the task still holds what it frees (a gate may read that).
            frees = self._lot.has_group(GATES) and _frees_on_release(self._gate_list, task)
            self._hook(gates.release, task)  # (every gate is released even if one raises)
            if frees:
                self._wake_gated()
        if lease.popped:
            self._hook(self._queue.release, task)

    def _record_attempt(self, lease: _Run, now: float, outcome: str, error: str | None) -> None:
        progress = self._progress[lease.task.id]
        if outcome in ("failed", "lease_expired"):
            progress.failures += 1
        if error is not None:
            progress.last_error = error
        if progress.history is None:
            progress.history = []
        progress.history.append(
            AttemptRecord(lease.attempt, lease.worker_id, lease.started_at, now, outcome, error)
        )

    def _may_retry(self, task: Task, progress: _Run, now: float) -> bool:
        if task.max_attempts is not None:
            return progress.failures < task.max_attempts
        # (Never negative: a host's clock that stepped back is no reason to give up.)
        elapsed = max(0.0, now - progress.first_started)
        return self._retry.should_retry(progress.failures, elapsed=elapsed)

    def _retry_delay(self, progress: _Run) -> float:
        """The retry policy's delay after the attempt that just failed, checked."""
        delay = self._retry.delay(max(progress.failures, 1), progress.last_delay)
        return check_number(
            delay, f"the delay of retry policy {self._retry!r}", minimum=0.0, maximum=MAX_SECONDS
        )

    def _policy_failed(self, task: Task, now: float, error: Exception) -> TaskState:
        """The retry policy raised (or gave no valid delay) for a task whose lease
        ended, which is then in no place: it goes to the dead-letter queue with the
        error, and the call raises the error once its books are done."""
        self._waiting_since.pop(task.id, None)
        self._dead_letter(task, Reason.REJECTED, now, error)
        self._defer(error)
        return TaskState.DEAD

    # -- moving tasks between states ---------------------------------------------

    def _requeue(
        self, task: Task, now: float, kind: EventKind, worker_id: Hashable | None = None
    ) -> None:
        """Back into the queue with the age it had; dead-letter it if the queue refuses."""
        progress = self._progress.get(task.id)
        waited = 0.0 if progress is None else progress.waited
        before = self._waiting_since.get(task.id)  # a retry's wait ends: it waited already
        self._waiting_since[task.id] = now - waited
        if before is not None and task.id in self._escalated:
            # Its retry delay was waiting (a step may have been taken in it): the last
            # step keeps its time as the clock of its age moves.
            steps, age = self._escalated[task.id]
            self._escalated[task.id] = (steps, age + before - self._waiting_since[task.id])
        if self._enqueue(task, now):
            if self._escalation is not None:
                self._plan_escalation(task, now)
            if self._listener is not None:
                self._emit(kind, task.id, state=TaskState.QUEUED, worker_id=worker_id)

    def _enqueue(self, task: Task, now: float) -> bool:
        """Push a waiting task (its ``_waiting_since`` set) into the queue. False if it
        went to the dead-letter queue instead.

        A push that raises anything else (a callback of the queue's, such as a fair
        scheduler's ``tenant_of``, failing) dead-letters the task with that error, and
        the call under way raises it once its books are done: the task was out of
        wherever it waited, and must not be lost."""
        task_id = task.id
        try:
            eviction = self._queue.push(task, enqueued_at=self._waiting_since[task_id])
        except DeadlineError as error:
            self._waiting_since.pop(task_id)
            self._dead_letter(task, Reason.DEADLINE_MISSED, now, error)
            return False
        except DeadlineInfeasibleError as error:
            self._waiting_since.pop(task_id)
            self._dead_letter(task, Reason.DEADLINE_INFEASIBLE, now, error)
            return False
        except CapacityError as error:
            self._waiting_since.pop(task_id)
            self._dead_letter(task, Reason.REJECTED, now, error)
            return False
        except Exception as error:
            self._waiting_since.pop(task_id)
            self._dead_letter(task, Reason.REJECTED, now, error)
            self._defer(error)
            return False
        if eviction is not None:
            self._dead_letter_eviction(eviction, now)
            return task_id in self._waiting_since
        return True

    def _withdraw_waiting(self, task_id: Hashable, *, keep_since: bool = False) -> Task:
        """Take a waiting task (queued, parked or retrying) out of where it waits
        (its waiting time is kept with ``keep_since``, for a lease that follows)."""
        task = self._retrying.pop(task_id, None)
        if task is None:
            task = self._lot.remove(task_id) if task_id in self._lot else None
        if task is None:
            task = self._queue.remove(task_id)
        self._timers.cancel(task_id)
        if self._scouts is not None:
            self._scout_left(task_id)
        if not keep_since:
            self._waiting_since.pop(task_id, None)
        return task

    def _finish_completed(self, task: Task, now: float, *, late: bool = False) -> None:
        progress = self._progress.get(task.id)
        submitted = now if progress is None else progress.submitted_at
        self._record_end_to_end(now - submitted)
        deadline = task.deadline
        if deadline is not None:
            if now <= deadline:
                self._deadline_met += 1
            else:
                self._deadline_missed += 1
        self._finish(task, TaskState.COMPLETED, now)
        if self._listener is not None:
            self._emit(
                EventKind.COMPLETED,
                task.id,
                state=TaskState.COMPLETED,
                detail="a late report of an expired lease" if late else None,
            )

    def _finish(self, task: Task, state: TaskState, now: float) -> None:
        task_id = task.id
        if self._group_live:
            self._leave_group(task)
        run = self._progress.pop(task_id, None)
        if run is not None and run.budgeted and self._budget is not None:
            self._budget.settled(task)
        if self._rules.ever_own:  # (and while it is plain, leaving forgets nothing)
            self._rules.leave(task_id)
            self._timers.cancel(_StepTimer(task_id))
        if self._escalation is not None:
            self._escalated.pop(task_id, None)
            self._timers.cancel(_EscalationTimer(task_id))
        if self._advised:
            self._advised.discard(task_id)
        if task.gang is not None:
            self._gang_left(task_id, now)
        if self._holds is not None and self._holds.finished(task_id):
            self._wake_backfill_groups()
        for policy in self._intake:
            # A hook on books already done: one that raises keeps no task from its end,
            # nor the other policies from forgetting it.
            self._hook(policy.forget, task)
        self._counts[state] += 1
        tenant = self._tenants.get(task.tenant) or self._tenant(task.tenant)
        tenant[_TENANT_COLUMN[state]] += 1
        if self._dedup_window > 0:
            self._finished[task_id] = (state, now)

    def _dead_letter(self, task: Task, reason: Reason, now: float, error: object = None) -> None:
        if self._redriving is not None and task.id == self._redriving:
            # Redriven and at once evicted back: its old entry (redriven) makes way for the
            # new one.
            self._dlq._take(task.id)
            self._redriving = _EVICTED_BACK
        if self._scouts is not None:
            self._scout_left(task.id)
        progress = self._progress.get(task.id)
        history: tuple[AttemptRecord, ...] = (
            () if progress is None or progress.history is None else tuple(progress.history)
        )
        text = _error_text(error) or (None if progress is None else progress.last_error)
        if task.deadline is not None:
            self._deadline_missed += 1
        self._dlq.add(task, reason, history=history, error=text)
        self._dead_by_reason[reason] = self._dead_by_reason.get(reason, 0) + 1
        self._finish(task, TaskState.DEAD, now)
        if self._listener is not None:
            self._emit(
                EventKind.DEAD_LETTERED, task.id, state=TaskState.DEAD, reason=reason, detail=text
            )

    def _dead_letter_eviction(self, eviction: Eviction, now: float) -> None:
        """A task the queue handed back on a push (or expired): it leaves the waiting
        books for the DLQ.

        Unless the queue handed back what it did not hold: something not an
        ``Eviction`` of a task, or a task that is not waiting out of every place (one
        the books do not know, leased, parked, retrying, dead already, or still in the
        queue). That changes nothing, and the call raises once its books are done.
        (Something not an ``Eviction`` whose ``task`` waits out of every place, the
        queue having let go of it, goes to the DLQ as ``rejected``: it is not lost.)"""
        task = eviction.task if isinstance(eviction, Eviction) else None
        if task is not None and task.__class__ is not Task and not isinstance(task, Task):
            task = None
        if task is None:
            try:
                named = getattr(eviction, "task", None)
            except Exception:  # a hand-back of the host's own: nothing to name
                named = None
            if not isinstance(named, Task) or not self._in_limbo(named.id):
                named = None
            error: TaskdistError = InvalidTypeError(
                f"queue {self._queue!r} handed back {eviction!r}, not an Eviction of a "
                "Task; "
                + (
                    "it was ignored"
                    if named is None
                    else f"task {named.id!r}, which it let go of, was dead-lettered"
                )
            )
            if named is not None:  # out of the queue and of every other place
                self._waiting_since.pop(named.id)
                self._dead_letter(named, Reason.REJECTED, now, error)
        elif not self._in_limbo(task.id):
            error = InvalidArgumentError(
                f"queue {self._queue!r} handed back task {task.id!r} ({eviction.reason}), "
                "which is not a task that waited in it and left it (it is "
                f"{self._where_is(task.id)}); it stays where it was"
            )
        else:
            self._waiting_since.pop(task.id)
            self._dead_letter(task, eviction.reason, now)
            return
        self._defer(error)

    # -- waking parked tasks --------------------------------------------------------

    def _wake_for(self, worker: WorkerState) -> None:
        """Wake the parked groups this worker could take now. O(g r)."""
        lot = self._lot
        if len(lot) == 0:
            return
        tracker = self._tracker
        rules = self._rules
        skills = worker.skills
        for group, example in list(lot.groups()):
            requires = example.requires
            if (
                group is not GATES
                and not _is_pause(group)
                and group is not WAITING_FOR_GANG
                and not isinstance(group, HeldGroup)
                # A skill it lacks rules the worker out whatever its load: no call needed.
                and (not requires or requires <= skills)
                and tracker.is_candidate(example, worker.id, rules.of(example)[0])
            ):
                # Gangs of one shape fit alike: the oldest is tried, the rest wait on.
                self._wake_group(group, 1 if _gang_leaders(group) else None)

    def _wake_all_placement_groups(self) -> None:
        for group, _ in list(self._lot.groups()):
            if group is not GATES and not _is_pause(group) and group is not WAITING_FOR_GANG:
                self._wake_group(group)

    def _park(self, task: Task, group: Hashable, ticket: int | None = None) -> None:
        """Park a waiting task in ``group`` (in its class, under the gates, when scouting;
        at ``ticket`` among tasks of its rank, or after them)."""
        if group is GATES and self._scouts is not None:
            self._park_gated(task, ticket)
        else:
            self._lot.park(task, group)

    def _park_gated(self, task: Task, ticket: int | None = None) -> None:
        """Park a task the gates refused, in its class. A scout the gates refuse is back
        in its class at its ticket, and the class waits for the gates again; had its
        class changed, the next of the old one goes out in its place."""
        scouts = self._scouts
        assert scouts is not None
        klass, rank = scouts.klass(task, self._waiting_since[task.id])
        was = scouts.gone(task.id)
        if was is not None and was[0] == klass:
            ticket = was[1]
        # (A gang's leader in the queue may end a dispatch's round for want of room for
        # its gang before the gates are asked: it goes back at every wakeup, as it did.)
        due = None if task.gang is not None else scouts.not_before(task, self._now())
        self._lot.park(task, GATES, klass, rank, ticket, due)
        if was is not None and was[0] != klass:
            self._send_scout(was[0])

    def _scout_left(self, task_id: Hashable) -> tuple[Hashable, int] | None:
        """A task leaves the queue or lot for good, or changes: if it was its class's
        scout, the next of its class goes to the queue in its place. Returns the class
        and ticket it held as a scout, if it was one. O(1) otherwise."""
        assert self._scouts is not None
        was = self._scouts.gone(task_id)
        if was is not None:
            self._send_scout(was[0])
        return was

    def _call_back_scout(self, klass: Hashable) -> None:
        """The scout of ``klass``, sent to the queue in the dispatch a callback's error
        undoes, goes back to its class at its ticket, as if never sent (its event
        unsaid), so that the task it replaced can take its place again."""
        scouts = self._scouts
        assert scouts is not None
        task_id = scouts.scout_of(klass)
        if task_id is None or task_id not in self._queue:
            return  # none out, or one that waits elsewhere: it stays the scout
        task = self._queue.remove(task_id)
        ticket = scouts.ticket_of(task_id)
        scouts.gone(task_id)
        since = self._waiting_since[task_id]
        self._lot.park(task, GATES, klass, scouts.klass(task, since)[1], ticket)
        if task.ttl is not None:
            self._timers.schedule(task_id, since + task.ttl, _TTL)
        self._events = [
            e for e in self._events if e.kind is not EventKind.UNPARKED or e.task_id != task_id
        ]

    def _send_scout(self, klass: Hashable) -> None:
        """The first of a class of gate-refused tasks goes to the queue (the next, if the
        queue dead-letters it). O(log n) a task sent."""
        scouts = self._scouts
        assert scouts is not None
        lot = self._lot
        now = self._now()
        while (taken := lot.take_first(GATES, klass)) is not None:
            task, ticket = taken
            if task.ttl is not None:
                self._timers.cancel(task.id)
            # (An eviction its push caused may have sent another class's scout, whose
            # push may have evicted this one: only a task still waiting is a scout.)
            if self._enqueue(task, now) and task.id in self._waiting_since:
                scouts.sent(klass, task.id, ticket)
                if self._listener is not None:
                    self._emit(EventKind.UNPARKED, task.id, state=TaskState.QUEUED)
                return

    def _note_gate_wake(self) -> None:
        """Keep the gates' wakeup after they refused a task (see ``_gate_due``)."""
        self._keep_gate_due(self._gates_wake(after=self._ticked_at))

    def _note_shut_wake(self) -> None:
        """Keep the gates' wakeup after a walk stopped at a shut gate: the gates' own,
        and when the shut rate gate opens, which may not have refused a task yet."""
        assert self._shut is not None
        self._note_gate_wake()
        self._keep_gate_due(self._shut.opens)

    def _keep_gate_due(self, wake: float | None) -> None:
        """Keep ``wake`` as the gates' wakeup if it is sooner than the one kept, or that
        one has passed: handled by a tick at or after it, or left over from refusals
        whose tasks went (a passed one would hide the new)."""
        due = self._gate_due
        if wake is not None and (due is None or wake < due or due <= self._ticked_at):
            self._gate_due = wake

    def _gates_wake(self, after: float = -math.inf) -> float | None:
        """The soonest of the gates' own wakeups later than ``after``. Each gate is
        asked: one not asked to admit since its wakeup passed still reports it (the
        gates are asked in order and stop at the first refusal), and would hide the
        wakeup of the gate that refused. O(g)."""
        soonest = None
        for gate in self._gate_list:
            wake = gate.next_wakeup()
            if wake is not None and wake > after and (soonest is None or wake < soonest):
                soonest = wake
        return soonest

    def _gate_wake(self, after: float = -math.inf) -> float | None:
        """When the tasks the gates refused may pass: the sooner of the gates' own
        wakeup and the one kept since a refusal, of those later than ``after``."""
        wake = self._gates_wake(after)
        due = self._gate_due
        if due is not None and due > after and (wake is None or due < wake):
            wake = due
        if self._scouts is not None:  # the classes a rate gate refuses until a time
            due = self._lot.next_due(self._not_before)
            if due is not None and due > after and (wake is None or due < wake):
                wake = due
        return wake

    def _wake_gated(self) -> None:
        """A gate may admit more now: the tasks it refused go back to the queue (with
        scouts, the first of each class that has none out and is not parked until a
        rate limit refills). O(k log n) for k sent."""
        scouts = self._scouts
        if scouts is None:
            self._wake_group(GATES)
            return
        # A class a rate gate refuses until a time still ahead stays parked: its scout
        # would be refused again, and with a bucket a tenant, a refill would otherwise
        # send a scout of every tenant's to the queue to place one task.
        lot = self._lot
        for klass in lot.wakeable(
            GATES, self._now(), every=scouts.evicted(), again=self._not_before
        ):
            if not scouts.out(klass):
                self._send_scout(klass)

    def _not_before(self, task: Task) -> float | None:
        """When the rate gates may first admit a parked ``task``, if later than now."""
        assert self._scouts is not None
        return self._scouts.not_before(task, self._now())

    def _wake_group(self, group: Hashable, limit: int | None = None) -> None:
        """Put the tasks of a parked group (at most ``limit``) back in the queue."""
        now = self._now()
        timers = self._timers
        for task in self._lot.take(group, limit):
            if task.ttl is not None:
                timers.cancel(task.id)
            if self._enqueue(task, now) and self._listener is not None:
                self._emit(EventKind.UNPARKED, task.id, state=TaskState.QUEUED)

    # -- time ----------------------------------------------------------------------

    def tick(self) -> None:
        """Do everything due now: expire leases (requeue or dead-letter), requeue due
        retries, expire TTLs and missed deadlines, wake parked tasks whose blocker
        may have cleared. O(log n) per timer due, + the queue's ``expire``."""
        self._enter()
        try:
            self._run_due(self._now())
        finally:
            self._leave()

    def _run_due(self, now: float) -> None:
        if self._breaker_changes:
            self._breakers_changed()
        timers = self._timers
        while (due := timers.pop_due(now)) is not None:
            kind, key, when = due
            if kind == _LEASE:
                self._expire_lease(key, now)
            elif kind == _RETRY:
                self._retry_due(key, now)
            elif kind == _ESCALATE:
                assert isinstance(key, _EscalationTimer)
                self._escalate(key.task_id, when, now)
            elif kind == _STEP:
                assert isinstance(key, _StepTimer)
                self._next_step(key.task_id, now)
            elif kind == _GANG:
                assert isinstance(key, GangTimer)
                self._gang_timed_out(key.gang, now)
            elif kind == _GANG_RETRY:
                pass  # a wakeup: the gang's leader waits in the queue for this dispatch
            elif kind == _TTL:
                task = self._lot.remove(key)
                self._waiting_since.pop(key)
                self._dead_letter(task, Reason.TTL_EXPIRED, now)
            else:  # a breaker may let probes through now
                assert isinstance(key, _BreakerTimer)
                if key.worker_id in self._tracker:
                    self._wake_for(self._tracker.worker(key.worker_id))
        queue = self._queue
        wake = queue.next_wakeup()
        if wake is not None and wake <= now:
            self._expire_queue(now)
        if self._shut_walk or (self._parked and self._lot.has_group(GATES)):
            wake = self._gate_wake()
            if wake is not None and wake <= now:
                self._gate_due = None
                self._wake_gated()
        tracker_wake = self._tracker_wake
        if tracker_wake is not None and tracker_wake <= now:
            self._tracker_wake = self._tracker.next_wakeup()
            self._wake_all_placement_groups()
        finished = self._finished
        if finished:
            horizon = now - self._dedup_window
            while finished and next(iter(finished.values()))[1] <= horizon:
                finished.popitem(last=False)
        self._ticked_at = now

    def _retry_due(self, task_id: Hashable, now: float) -> None:
        """A retry's delay is over: it queues again, if the retry budget has room."""
        task = self._retrying[task_id]
        budget = self._budget
        run = self._progress[task_id]
        if budget is not None and not run.budgeted:
            if not budget.allows(task):  # over budget: wait another delay
                try:
                    delay = self._retry_delay(run)
                except Exception as raised:  # out of every place but the retrying books
                    del self._retrying[task_id]
                    self._policy_failed(task, now, raised)
                    return
                run.retry_at = now + delay
                self._timers.schedule(task_id, run.retry_at, _RETRY)
                if self._listener is not None:
                    self._emit(
                        EventKind.RETRY_SCHEDULED,
                        task_id,
                        state=TaskState.RETRYING,
                        at=run.retry_at,
                        detail="over the retry budget",
                    )
                return
            budget.retrying(task)
            run.budgeted = True
        del self._retrying[task_id]
        self._requeue(task, now, EventKind.REQUEUED)

    def _expire_lease(self, task_id: Hashable, now: float) -> None:
        lease = self._leases[task_id]
        task = lease.task
        self._counts["lease_expiries"] += 1
        if self._listener is not None:
            self._emit(
                EventKind.LEASE_EXPIRED, task_id, worker_id=lease.worker_id, attempt=lease.attempt
            )
        self._end_lease(lease, now, None, ok=False)
        self._record_attempt(lease, now, "lease_expired", None)
        progress = self._progress[task_id]
        if progress.lapsed is None:
            progress.lapsed = {}
        progress.lapsed[lease.attempt] = lease.lease_id
        try:
            retry = self._may_retry(task, progress, now)
        except Exception as raised:
            self._policy_failed(task, now, raised)
            return
        if retry:
            self._requeue(task, now, EventKind.REQUEUED)
        else:
            self._dead_letter(task, Reason.MAX_ATTEMPTS, now, "the lease expired")

    def _expire_queue(self, now: float) -> None:
        for eviction in expire_with_reasons(self._queue, now):
            self._dead_letter_eviction(eviction, now)

    def next_wakeup(self) -> float | None:
        """When to call :meth:`tick` (or ``dispatch``) next: the earliest time
        something is due, never before now; ``None`` when nothing waits on time.

        A time a component reported that was already handled by a tick at or
        after it is not reported again, so a host never spins. O(1) amortised.
        """
        ticked = self._ticked_at
        soonest = self._timers.next_time()
        wake = self._queue.next_wakeup()
        if wake is not None and wake > ticked and (soonest is None or wake < soonest):
            soonest = wake
        if self._shut_walk or (self._parked and self._lot.has_group(GATES)):
            wake = self._gate_wake(after=ticked)
            if wake is not None and (soonest is None or wake < soonest):
                soonest = wake
        wake = self._tracker_wake
        # A worker back from ejection may place any task waiting, queued or parked: a
        # task the last dispatch found no room for stays queued, and nothing else wakes.
        if wake is not None and self._waiting_since and (soonest is None or wake < soonest):
            soonest = wake
        if soonest is None:
            return None
        return max(soonest, self._now())

    # -- looking -------------------------------------------------------------------

    def _state_or_none(self, task_id: Hashable, now: float) -> TaskState | None:
        if not _hashable(task_id):
            raise InvalidTypeError(f"task ids are hashable, got {task_id!r}")
        if task_id in self._leases:
            return TaskState.LEASED
        if task_id in self._waiting_since:
            if task_id in self._retrying:
                return TaskState.RETRYING
            if task_id in self._lot:
                return TaskState.PARKED
            return TaskState.QUEUED
        finished = self._finished.get(task_id)
        if finished is not None and finished[1] > now - self._dedup_window:
            return finished[0]
        if task_id in self._dlq:
            return TaskState.DEAD
        return None

    def _state_of(self, task_id: Hashable, now: float) -> TaskState:
        state = self._state_or_none(task_id, now)
        if state is None:
            raise UnknownTaskError(
                f"no task with id {task_id!r} (finished tasks are forgotten after the "
                "dedup window, and dead ones once out of the dead-letter queue)"
            )
        return state

    def state_of(self, task_id: Hashable) -> TaskState:
        """The state of a task: live, in the dead-letter queue, or finished within the
        dedup window. O(1).

        Raises:
            UnknownTaskError: no such task is known.
            InvalidTypeError: ``task_id`` is unhashable.
        """
        return self._state_of(task_id, self._now())

    def assignment(self, task_id: Hashable) -> Assignment:
        """The current assignment of a leased task. O(1).

        Raises:
            UnknownTaskError, TaskStateError: no such task, or it is not leased.
        """
        return _assignment(self._lease_of(task_id, "look up the assignment of"))

    def leases(self) -> list[Assignment]:
        """Every current assignment, oldest first. O(leased)."""
        return [_assignment(lease) for lease in self._leases.values()]

    def explain(self, task_id: Hashable) -> str:
        """Why the task is where it is, in one plain sentence. O(1); O(w) for a parked task.

        A read, as :meth:`stats` is: the workers' breakers are asked without being
        moved (``can_acquire``, ``peek_next_wakeup``) and no timer is set, so a
        run that asks it makes the same later decisions as one that does not.

        Raises:
            UnknownTaskError: no such task is known.
        """
        now = self._now()
        state = self._state_of(task_id, now)
        sentence = self._explain_state(task_id, state, now)
        if not state.is_final:
            sentence += self._held_words(task_id, now)
        if state.is_final or self._rules.plain:
            return sentence
        where = self._rules.describe(task_id)
        if where:
            sentence += f" [{where}]"
        moves = self._timers.when(_StepTimer(task_id))
        if moves is not None:
            sentence += f"; falls back to its next pool at {moves:g}"
        return sentence

    def _explain_state(self, task_id: Hashable, state: TaskState, now: float) -> str:
        if state is TaskState.LEASED:
            lease = self._leases[task_id]
            until = "" if lease.expiry is None else f", lease until {lease.expiry:g}"
            batch = ""
            if lease.batch is not None:
                size = len(self._batches[lease.batch].batch)
                batch = f", in batch {lease.batch} of {size}"
            return (
                f"leased: attempt {lease.attempt} on worker {lease.worker_id!r} since "
                f"{lease.started_at:g}{until}{batch}"
            )
        if state is TaskState.RETRYING:
            progress = self._progress[task_id]
            task = self._retrying[task_id]
            limit = (
                task.max_attempts if task.max_attempts is not None else _policy_limit(self._retry)
            )
            of = "" if limit is None else f" of {limit}"
            last = progress.history[-1] if progress.history else None
            after = (
                "" if last is None else f" after {last.error or last.outcome} on {last.worker_id!r}"
            )
            return f"retry {progress.failures + 1}{of} at {progress.retry_at:g}{after}"
        if state is TaskState.PARKED:
            return "parked: " + self._parked_words(task_id)
        if state is TaskState.QUEUED:
            return "waiting: " + self._queued_words(task_id, now)
        if state is TaskState.DEAD:
            entry = self._dlq.get(task_id)
            if entry is not None:
                error = f" ({entry.error})" if entry.error else ""
                return f"dead-lettered: {entry.reason.value}{error} at {entry.dead_at:g}"
            return "dead-lettered"
        when = self._finished[task_id][1]
        return f"{state.value} at {when:g}"

    def _queued_words(self, task_id: Hashable, now: float) -> str:
        age = now - self._waiting_since[task_id]
        why_waiting = getattr(self._queue, "why_waiting", None)
        if why_waiting is not None:
            waiting = why_waiting(task_id)
            reason = waiting.reason.value
            if reason == "concurrency_quota":
                return (
                    f"tenant {waiting.tenant!r} at its quota of running tasks, "
                    f"until one finishes (queued {age:g} s)"
                )
            if reason == "rate_quota":
                return f"tenant {waiting.tenant!r} at its rate quota, until {waiting.until:g}"
            if reason == "expired":
                return "its TTL ran out; the next tick dead-letters it"
        if not len(self._tracker):
            return f"no worker is registered; queued {age:g} s"
        if not self._tracker.has_room():
            return f"every worker is busy; queued {age:g} s, in the queue's order"
        return f"queued {age:g} s; tasks ahead of it in the queue's order go first"

    def _parked_words(self, task_id: Hashable) -> str:
        group = self._lot.group_of(task_id)
        task = self._lot.get(task_id)
        assert task is not None
        if _is_pause(group):
            assert isinstance(group, tuple)
            return f"{group[1]} {group[2]!r} is paused"
        if group is WAITING_FOR_GANG:
            return self._gangs.words(task)
        if isinstance(group, HeldGroup):
            assert self._holds is not None
            return self._holds.words(group)
        if self._gangs.is_leader(task):
            return f"no room for every member at once [{self._gangs.words(task)}]"
        if group is GATES:
            held = [gate for gate in self._gate_list if not _gate_admits(gate, task)]
            names = ", ".join(_gate_words(gate, task) for gate in held) or "an admission gate"
            return f"held by {names}"
        needs = sorted(task.requires)
        in_pool = self._rules.without_breakers(task)
        workers = [w for w in self._tracker.workers() if in_pool is None or in_pool(w)]
        skilled = [w for w in workers if task.requires <= w.skills]
        if not skilled:
            if not workers:
                return "no worker is registered" if in_pool is None else "its pool has no worker"
            return f"no worker has skill{'s' if len(needs) > 1 else ''} " + ", ".join(
                repr(s) for s in needs
            )
        able = [w for w in skilled if w.health is not Health.UNAVAILABLE]
        if not able:
            return "every worker that can run it is unavailable (down or ejected)"
        # Read, not moved: not _breaker_admits, whose refusal reads next_wakeup() (which
        # makes the transitions time has brought) and sets a timer. An explanation must
        # leave every later decision as it would have been.
        breakers = self._breakers
        closed = [w for w in able if w.id not in breakers or breakers[w.id].can_acquire()]
        if not closed:
            opens = [breakers[w.id].peek_next_wakeup() for w in able if w.id in breakers]
            soonest = min((t for t in opens if t is not None), default=None)
            until = "" if soonest is None else f" until {soonest:g}"
            return f"the circuit breakers of every worker that can run it are open{until}"
        return f"every worker that can run it is full ({len(closed)} of them)"

    def stats(self) -> DistributorStats:
        """A snapshot of every count, latency and ratio (see :class:`DistributorStats`).

        It changes nothing: each worker's breaker is read with
        ``CircuitBreaker.peek_state()``, so asking leaves every later decision
        as it was. O(n + w + tenants) + the percentiles of the recent windows.
        """
        now = self._now()
        waiting = len(self._waiting_since)
        parked = len(self._lot)
        retrying = len(self._retrying)
        counts = self._counts
        by_state = {
            TaskState.QUEUED: waiting - parked - retrying,
            TaskState.PARKED: parked,
            TaskState.RETRYING: retrying,
            TaskState.LEASED: len(self._leases),
            TaskState.COMPLETED: counts[TaskState.COMPLETED],
            TaskState.DEAD: counts[TaskState.DEAD],
            TaskState.CANCELLED: counts[TaskState.CANCELLED],
        }
        oldest = min(self._waiting_since.values(), default=now)
        completed = counts[TaskState.COMPLETED]
        ended = completed + counts[TaskState.DEAD]
        deadlined = self._deadline_met + self._deadline_missed
        tenants = {
            key: TenantCounts(
                tenant=key,
                submitted=int(row[0]),
                live=int(row[0] - row[1] - row[2] - row[3]),
                completed=int(row[1]),
                dead_lettered=int(row[2]),
                cancelled=int(row[3]),
                mean_wait=row[5] / row[4] if row[4] else math.nan,
            )
            for key, row in self._tenants.items()
        }
        workers = {}
        loads = []
        for state in self._tracker.workers():
            breaker = self._breakers.get(state.id)
            done, failed = self._worker_counts[state.id]
            loads.append(state.load_ratio)
            workers[state.id] = WorkerCounts(
                worker_id=state.id,
                in_flight=state.in_flight,
                load_ratio=state.load_ratio,
                health=state.health,
                breaker=None if breaker is None else breaker.peek_state(),  # (a read)
                completed=done,
                failed=failed,
                latency=state.latency,
            )
        return DistributorStats(
            time=now,
            by_state=by_state,
            submitted=counts["submitted"],
            duplicates=counts["duplicates"],
            dispatched=counts["dispatched"],
            failed=counts["failed"],
            lease_expiries=counts["lease_expiries"],
            retries=counts["retries"],
            dead_by_reason=dict(self._dead_by_reason),
            wait=self._waits.percentiles(),
            end_to_end=self._end_to_end.percentiles(),
            oldest_waiting_age=now - oldest,
            utilization=self._tracker.utilization(),
            load_variance=coefficient_of_variation(loads),
            completion_rate=completed / ended if ended else 1.0,
            deadline_hit_rate=self._deadline_met / deadlined if deadlined else 1.0,
            tenants=tenants,
            workers=workers,
        )

    def _tenant(self, tenant: Hashable) -> list[float]:
        row = self._tenants.get(tenant)
        if row is None:
            row = self._tenants[tenant] = [0, 0, 0, 0, 0, 0.0]
        return row

    def __len__(self) -> int:
        """Live tasks: queued, parked, retrying or leased."""
        return len(self._waiting_since) + len(self._leases)

    def __contains__(self, task_id: object) -> bool:
        """Whether a task with this id is live."""
        try:
            return task_id in self._waiting_since or task_id in self._leases
        except TypeError:
            return False

    def __repr__(self) -> str:
        return (
            f"Distributor(queued={len(self._waiting_since)}, leased={len(self._leases)}, "
            f"workers={len(self._tracker)})"
        )

    # -- persistence -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain data: JSON-serialisable when the task payloads are.

        Waiting, parked, retrying and leased tasks (leases with their number and
        expiry), attempt histories, timers, the dedup window, counters, and the
        states of the queue, tracker, dead-letter queue and retry policy. Give
        it to :meth:`restore`; see ``docs/persistence.md``. O(n + w + timers).

        Raises:
            SnapshotError: a part of the composition that snapshots do not carry
                yet, named: a queue without ``snapshot()``, a gate or intake
                policy without snapshot support (one of your own), a paused
                pool whose ``where=`` test no route or escalation names; or an
                id that is not plain data.
            ReentrancyError: called from a callback of this distributor.
        """
        self._enter()
        try:
            return _persistence.snapshot_of(self)
        finally:
            self._leave()

    @classmethod
    def restore(
        cls,
        snapshot: object,
        clock: Clock,
        *,
        queue: Queue | None = None,
        tracker: CapacityTracker | None = None,
        balancer: Balancer | None = None,
        breaker: BreakerFactory | None = None,
        retry: RetryPolicy | None = None,
        dlq: DeadLetterQueue | None = None,
        gates: Gate | Iterable[Gate] = (),
        routes: Iterable[Route] | None = None,
        escalation: Escalation | None = None,
        preemption: Preemption | None = None,
        gangs: Gangs | None = None,
        reservations: Reservation | Iterable[Reservation] = (),
        backfill: Backfill | None = None,
        batcher: BatchOptimizer | None = None,
        intake: Iterable[IntakePolicy] = (),
        retry_budget: RetryBudget | None = None,
        rng: random.Random | None = None,
        on_event: Listener | None = None,
    ) -> Self:
        """A distributor in the state of ``snapshot``, made of the collaborators given.

        The collaborators are what the constructor takes that is code, not
        data; give them as the snapshotted distributor had them, new and empty
        (``queue``, ``tracker``, ``dlq`` and ``batcher`` configured alike: the
        snapshot fills them). The numbers (``lease``, ``dedup_window``, ``max_queued``,
        ``stats_window``) come from the snapshot, and so does the gangs'
        configuration: ``gangs``, if given, must be configured as the
        snapshotted distributor's (a snapshot of format version 1, which does
        not carry it, takes ``gangs`` as given, or the default). With the same clock, the
        restored distributor makes the same decisions the original would
        have: random sources continue from the snapshot's state, and each
        balancer takes back what it keeps (round-robin turns, running weights,
        ``Affinity`` bindings; see ``docs/persistence.md``). A lease whose
        expiry passes while the host is down expires at the first ``tick`` or
        ``dispatch``, and its task goes back to the queue. O(size of the snapshot).

        Raises:
            SnapshotError: a snapshot of a format version this taskdist does not
                read (a later one's: versions 1 to 7 load), with a field
                missing or of the wrong type, with references that disagree (a
                lease of an unknown task), collaborators that are not new, a
                balancer's saved state that does not fit the balancer given, or a
                clock that reads before the snapshot's time; nothing is built
                and the collaborators are unchanged (every part is checked before
                any is loaded; a queue of your own, which checks its part as it
                loads, is loaded last, and emptied again if it then holds other
                tasks than the books say).
        """
        fields, config = _persistence.read_config(snapshot, gangs)
        for given, name in ((queue, "queue"), (tracker, "tracker"), (dlq, "dlq")):
            if given is not None and len(given):
                raise SnapshotError(f"restore() fills a new, empty {name}; this one holds items")
        distributor = cls(
            clock,
            queue=queue,
            tracker=tracker,
            balancer=balancer,
            breaker=breaker,
            retry=retry,
            dlq=dlq,
            gates=gates,
            routes=routes,
            escalation=escalation,
            preemption=preemption,
            reservations=reservations,
            backfill=backfill,
            batcher=batcher,
            intake=intake,
            retry_budget=retry_budget,
            rng=rng,
            on_event=on_event,
            **config,
        )
        try:
            _persistence.restore_into(distributor, fields)
        except BaseException:
            # Nothing was built: the DLQ given serves no new queue after all.
            distributor._dlq._feeds = tuple(
                fed for fed in distributor._dlq._feeds if fed is not distributor._queue
            )
            raise
        return distributor
