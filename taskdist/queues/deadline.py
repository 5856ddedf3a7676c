"""DeadlineScheduler: earliest deadline first, with admission control and preemption advice."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from heapq import heappush, heapreplace
from itertools import chain
from typing import Any, Final, Literal

import attrs

from taskdist._lazy_heap import Expiries, LazyHeap
from taskdist._snapshot import check_header, decode_key, encode_key, header, one_of, refuse
from taskdist._validate import check_choice, check_enqueued_at, check_int, check_number
from taskdist.clock import Clock, check_clock
from taskdist.errors import (
    DeadlineError,
    DeadlineInfeasibleError,
    DuplicateTaskError,
    InvalidArgumentError,
    InvalidTypeError,
    QueueFullError,
    ReentrancyError,
    TaskStateError,
    UnknownTaskError,
)
from taskdist.metrics import Percentiles, RecentSamples
from taskdist.queues._held import HeldTasks, held_data, read_held, reentry_refusal, unpop_refusal
from taskdist.queues._prefix_sorted import PrefixSumSortedList
from taskdist.queues.protocol import OVERFLOW_POLICIES, Eviction, Overflow, Predicate
from taskdist.task import Priority, Reason, Task

__all__ = ["DeadlineScheduler", "DeadlineStats", "OnMiss"]

OnMiss = Literal["run_late", "dead_letter", "reject"]
"""The ``on_miss=`` of :class:`DeadlineScheduler`: what happens to a task that cannot make it."""
_ON_MISS_POLICIES: tuple[OnMiss, ...] = ("run_late", "dead_letter", "reject")

_CRITICAL: Final = int(Priority.CRITICAL)
_INF: Final = math.inf

# An entry is an immutable tuple whose leading fields are numbers, so
# comparisons stay in C and never reach the task (``seq`` is unique):
#     (time_key, priority, seq, task, enqueued_at)
# ``seq`` rises in push order; a task enqueued later than every number taken
# uses its enqueue time, the same float object, so most tasks pay for one float.
# ``time_key`` is the deadline, or for a task without one its implicit
# deadline (see the class docstring). CRITICAL tasks live in their own list,
# ahead of all others; the others are split at an *edge* entry between an
# ordered index (the front: entries <= edge) and a heap (the back).
_TIME: Final = 0
_PRIORITY: Final = 1
_SEQ: Final = 2
_TASK: Final = 3
_ENQUEUED: Final = 4
_Entry = tuple[float, int, float, Task, float]
# Expiries are found without a timer tuple per task (see _track): TTLs in an
# Expiries of the entries themselves (a FIFO while they come in order), and
# without aging the deadlines that expire a task in the order itself.
_NEVER: Final = math.inf
# The edge before any entry (all in the back) and after every one (all in the front).
_BOTTOM: Final[tuple[float, ...]] = ()
_TOP: Final = (_INF, _INF)

# Answers closer than this (relative) to a boundary are settled by running the
# simulation itself, so float rounding in the prefix sums never flips an answer.
_REL_TOLERANCE: Final = 1e-9
# The back's bound is only ever a shortcut: it holds back this much (relative) more,
# well above the rounding of the back's running cost between fresh sums.
_BACK_TOLERANCE: Final = 1e-8

# The largest Task.cost taken: the work of any number of tasks still adds up to a
# finite number of seconds.
_MAX_COST: Final = 1e270
# With aging, the largest priority of a task without a deadline: its implicit
# deadline is a float, exact for priorities up to 2**53.
_MAX_AGED_PRIORITY: Final = 2**53
_REASONS: Final = frozenset(reason.value for reason in Reason)
# What a scheduler has counted, as its snapshot lists it.
_COUNTERS: Final = (
    "_pushed",
    "_popped",
    "_removed",
    "_expired_count",
    "_expired_deadline",
    "_met",
    "_missed",
    "_admitted_late",
    "_dead_lettered",
    "_rejected",
    "_evicted",
    "_overflowed",
)


@attrs.frozen
class DeadlineStats:
    """A snapshot of a :class:`DeadlineScheduler`: what it holds and how deadlines fared.

    Deadlines are judged when a task leaves the scheduler, against its
    ``cost`` estimate (the scheduler does not see completions): a deadlined
    task popped at ``now`` with ``now + cost <= deadline`` is *met*; one
    popped later, or handed back by ``expire()`` because its deadline
    passed, is *missed*; a task removed or evicted is neither.
    ``pushed == depth + popped + removed + expired + evicted``.
    """

    depth: int
    """Tasks held now (including expired ones that ``expire()`` has not yet returned)."""
    critical: int
    """Held tasks of priority ``CRITICAL`` (or more urgent)."""
    late: int
    """Held tasks late as :meth:`DeadlineScheduler.is_late` says: marked late (admitted
    though not on time under ``run_late``, or found predicted to miss by a later push),
    or whose deadline has come and who can no longer meet it."""
    oldest_age: float
    """Seconds the oldest held task has waited (0 when empty)."""
    wait: Percentiles
    """Wait time (push to pop) of the most recently popped tasks."""
    pushed: int
    """Tasks accepted (refused pushes are counted below, not here)."""
    popped: int
    removed: int
    expired: int
    """Tasks handed back by ``expire()``, for either reason."""
    expired_deadline: int
    """Of those, tasks whose deadline passed while they waited (``deadline_missed``)."""
    met: int
    missed: int
    admitted_late: int
    """Pushes not admitted on time, kept and flagged (``on_miss="run_late"``)."""
    dead_lettered: int
    """Pushes not admitted on time, handed back as ``Eviction`` (``on_miss="dead_letter"``)."""
    rejected: int
    """Pushes not admitted on time, refused with ``DeadlineInfeasibleError``
    (``on_miss="reject"``)."""
    evicted: int
    """Held tasks handed back (``Reason.EVICTED``) to make room for a more urgent push."""
    overflowed: int
    """Pushes turned away because the scheduler was full: refused with ``QueueFullError``
    (``overflow="reject"``), or handed straight back as the least urgent
    (``overflow="drop_lowest"``)."""

    @property
    def hit_rate(self) -> float:
        """``met / (met + missed)``: the share of deadlines met, NaN before any was judged."""
        judged = self.met + self.missed
        return self.met / judged if judged else math.nan


class DeadlineScheduler(HeldTasks):
    """Earliest deadline first (EDF), with admission control that keeps its promises.

    It satisfies the :class:`~taskdist.queues.Queue` protocol, so a
    distributor can take it in place of a
    :class:`~taskdist.queues.PriorityQueue`.

    **Order.** ``CRITICAL`` tasks (priority ``<= Priority.CRITICAL``) come
    first, deadline or not. Then every other task, by its *urgency time*:
    its deadline, or, for a task without one, its *implicit deadline*
    ``enqueued_at + (priority - CRITICAL) / aging_rate`` (the moment its
    aged priority would reach ``CRITICAL``; infinite when ``aging_rate`` is
    0). Ties go to the lower priority number, then first in first out.
    Among CRITICAL tasks the same rule applies, with no aging.

    So with the default ``aging_rate=0`` a task without a deadline waits for
    every deadlined task, whatever their priorities, and tasks without a
    deadline go by priority, then FIFO. With ``aging_rate > 0`` they age and
    never starve: no non-CRITICAL task pushed (without backdating) after
    another task's urgency time is popped before it, so a task without a
    deadline waits at most ``(priority - CRITICAL) / aging_rate`` seconds
    plus the time to drain what was ahead of it by then and any CRITICAL
    tasks.

    **Feasibility.** A task with a deadline is *feasible* when, in the
    following simulation, it finishes by its deadline: all ``servers`` are
    free from ``now``; the held tasks are taken in queue order up to and
    including this one, each placed on the server that is free earliest
    (list scheduling), each taking ``cost`` seconds; no further task
    arrives. With one server that is ``now + (cost of everything ahead) +
    cost <= deadline``. Running tasks are not in the simulation (the
    scheduler does not see them); lower ``servers`` or pad ``cost`` to
    account for them.

    **Admission keeps its promises.** A push is *admitted on time* only if
    its task is feasible (or has no deadline) *and* every held task with a
    deadline that is feasible now stays feasible with it ahead of it. With
    one server that is exact: a task behind the pushed one is delayed by its
    cost, and the scheduler keeps the least slack of the tasks behind any
    point (:class:`~taskdist.queues._prefix_sorted.PrefixSumSortedList`), so
    the answer is O(log n). With several servers it is sound: a pushed task
    delays each task behind it by at most its cost divided among the
    servers in the mean-load bound, and the check uses that bound (it may
    refuse a push that would in fact have been fine, never the reverse).
    Before it checks, a push marks late (:meth:`is_late`) every held task
    already predicted to miss (with several servers: by the bound), so a
    task that cannot make it any more blocks no one. A push not admitted
    on time follows ``on_miss``:

    - ``"run_late"`` (default): keep it, flag it (:meth:`is_late`), count it;
      tasks behind it may then be predicted to miss (:meth:`slack` shows it);
    - ``"dead_letter"``: return ``Eviction(task, Reason.DEADLINE_INFEASIBLE)``
      and leave the scheduler unchanged;
    - ``"reject"``: raise :class:`~taskdist.errors.DeadlineInfeasibleError`,
      unchanged.

    A task whose deadline is not after ``now`` is refused with
    :class:`~taskdist.errors.DeadlineError`, with one exception: under
    ``"run_late"`` a task pushed back with its age (``enqueued_at`` given: a
    task coming back from a worker, a retry or a hold) is kept and flagged
    late, as it would have been had it waited here when its deadline passed
    (one of cost 0 pushed back at the very instant of its deadline still
    meets it: admitted on time).

    **Fast when the answer is obvious.** The tasks far enough behind every
    deadline live in a plain heap (the *back*): while ``m * (d_min -
    c_max - now) >= W + c`` (``d_min`` the earliest urgency time there,
    ``c_max`` the largest cost held since the scheduler was last empty,
    ``W`` the work held, ``c`` the pushed cost), every task there is
    feasible whatever is pushed, and so is a task pushed among them; such a
    push or pop costs what a :class:`~taskdist.queues.PriorityQueue`'s does.
    When the bound fails, the earliest tasks move, once each, into the
    ordered index (the *front*) where the exact answers are computed. There
    too the obvious answer is cheap: the scheduler keeps a lower bound of
    every margin (the *floor*, lowered by each push's cost unless the push
    lands after every protected task), and the margin tree keeps lower
    bounds for the blocks a change moved; only when these do not clear the
    line are the blocks near it summed afresh, and only below it does the
    exact range query run. Admission answers exactly as without them.

    **Expiry.** A task with ``ttl`` expires at ``enqueued_at + ttl``; under
    ``"dead_letter"`` and ``"reject"`` a task also expires when its deadline
    passes while it waits (due when ``now >= deadline``; under ``"run_late"``
    it stays and runs late). Expired tasks are never popped; they stay in
    ``len`` and ``in`` until :meth:`expire` returns them, so nothing is lost.
    :meth:`expire_with_reasons` says which limit each hit first; with plain
    :meth:`expire`, a task with ``task.deadline <= now`` has missed its
    deadline (``deadline_missed``), any other ran out of TTL.

    **Bound.** With ``maxsize``, a push onto a full scheduler (expired
    tasks not yet returned by :meth:`expire` count) either raises
    :class:`~taskdist.errors.QueueFullError` (``overflow="reject"``,
    unchanged) or hands back the least urgent live task — the last in the
    order above, possibly the pushed task itself — as ``Eviction(task,
    Reason.EVICTED)`` (``overflow="drop_lowest"``). A held task is evicted
    only once the pushed one is admitted, so a push not admitted on time evicts
    nothing.

    **Numbers.** A task's ``cost`` must be at most 1e270 (so that the work
    of any number of tasks adds up to a finite time); with ``aging_rate >
    0``, a task without a deadline must have a priority of at most 2**53
    (its implicit deadline is a float). Any int priority is taken
    otherwise. Outside that: :class:`~taskdist.errors.InvalidArgumentError`.

    **Callbacks and threads.** A ``where=`` predicate may look at the
    scheduler (``len``, ``in``, :meth:`is_late`, :meth:`stats`); any other
    call from inside it is refused with
    :class:`~taskdist.errors.ReentrancyError` and changes nothing, and the
    refusal propagates out of the outer call, which changes nothing either.
    A scheduler is not safe to share between threads: a host with threads
    wraps the composition in ``taskdist.threaded.ThreadSafeDistributor``,
    or holds its own lock around every call.

    **Complexity** (n tasks held, f of them in the front, k = tasks ahead of
    the one in question, m = ``servers``):

    ==========================  ==============================================
    ``push``                    O(log n) into the back; O(log f) into the
                                front, plus O(log f) per task it marks late
                                or moves from the back (each at most once),
                                plus O(k log m) for the simulation with
                                m > 1 when the deadline is within one
                                ``c_max`` of the bound
    ``feasible``                as ``push``
    ``pop()``                   O(log n)
    ``pop(where=p)``            O(k log k + log n), k = tasks ahead of the
                                result
    ``peek`` / ``peek(where)``  O(1) amortised / O(k log k)
    ``remove``                  O(log n)
    ``unpop``                   O(log n)
    ``expire``                  O(x log n) for x expired tasks
    ``next_wakeup``             O(1) amortised
    ``slack``                   O(log n) with one server, O(k log m) with
                                more (plus moving the back up to the task)
    ``is_late``                 O(1)
    ``len``, ``in``             O(1)
    ``preemption_candidates``   O(r log r) for r running tasks
    ``stats``                   O(n + w log w) for the wait window w
    ==========================  ==============================================

    Answers within a relative 1e-9 of a boundary are settled by the exact
    float simulation (O(n log m)), so rounding never flips them.

    >>> from taskdist import ManualClock, Task
    >>> clock = ManualClock()
    >>> edf = DeadlineScheduler(clock, servers=1, on_miss="dead_letter")
    >>> edf.push(Task("report", deadline=10.0, cost=4.0))
    >>> edf.push(Task("alert", deadline=5.0, cost=2.0))
    >>> edf.feasible(Task("summary", deadline=7.0, cost=6.0))  # after "alert": 2 + 6 > 7
    False
    >>> edf.push(Task("summary", deadline=7.0, cost=6.0)).reason
    <Reason.DEADLINE_INFEASIBLE: 'deadline_infeasible'>
    >>> edf.push(Task("urgent", deadline=8.0, cost=5.0)).reason  # "report" would end at 11
    <Reason.DEADLINE_INFEASIBLE: 'deadline_infeasible'>
    >>> edf.slack("report")  # finishes at 6.0 of 10.0
    4.0
    >>> edf.pop().id, edf.pop().id
    ('alert', 'report')
    """

    __slots__ = (
        "_admitted_late",
        "_back",
        "_back_budget",
        "_back_cost",
        "_clock",
        "_cost_cap",
        "_critical",
        "_dead_lettered",
        "_deadline_timers",
        "_edge",
        "_evicted",
        "_expired",
        "_expired_count",
        "_expired_deadline",
        "_first_low",
        "_floor",
        "_front",
        "_horizon",
        "_horizon_scale",
        "_index",
        "_last_pop",
        "_late",
        "_maxsize",
        "_met",
        "_missed",
        "_next_due",
        "_now",
        "_on_miss",
        "_overflow",
        "_overflowed",
        "_popped",
        "_protect_edge",
        "_pushed",
        "_rate",
        "_record_wait",
        "_rejected",
        "_removed",
        "_seq",
        "_servers",
        "_timers",
        "_waits_window",
        "_walking",
    )

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        servers: int = 1,
        on_miss: OnMiss = "run_late",
        aging_rate: float = 0.0,
        maxsize: int | None = None,
        overflow: Overflow = "reject",
        stats_window: int = 10_000,
    ) -> None:
        """
        Args:
            clock: where time comes from (default: :class:`MonotonicClock`).
            servers: tasks that run in parallel (>= 1), for feasibility and preemption.
            on_miss: ``"run_late"``, ``"dead_letter"`` or ``"reject"``: what a push
                not admitted on time does, and whether a deadline passing while a
                task waits expires it (all but ``"run_late"``).
            aging_rate: priority levels a task without a deadline gains per second
                waited (>= 0; 0 = it waits for every deadlined task).
            maxsize: most tasks held at once (>= 1, expired ones included until
                ``expire()`` returns them), or ``None`` for unbounded.
            overflow: ``"reject"`` or ``"drop_lowest"``: what a push onto a full
                scheduler does.
            stats_window: how many recent waits ``stats()`` computes percentiles over.
        """
        clock = check_clock(clock)
        servers = check_int(servers, "servers", minimum=1)
        policy = check_choice(on_miss, "on_miss", _ON_MISS_POLICIES)
        rate = check_number(aging_rate, "aging_rate", minimum=0.0)
        if maxsize is not None:
            maxsize = check_int(maxsize, "maxsize", minimum=1)
        overflow = check_choice(overflow, "overflow", OVERFLOW_POLICIES)
        self._waits_window = RecentSamples(stats_window)
        self._record_wait = self._waits_window.appender()
        self._clock = clock
        self._now = clock.now
        self._servers = servers
        self._on_miss: OnMiss = policy
        self._deadline_timers = policy != "run_late"
        self._rate = rate
        self._maxsize = maxsize
        self._overflow: Overflow = overflow
        self._index: dict[Hashable, _Entry] = {}
        self._critical: PrefixSumSortedList[_Entry] = PrefixSumSortedList(64)
        self._front: PrefixSumSortedList[_Entry] = PrefixSumSortedList(64)
        self._back: LazyHeap[_Entry] = LazyHeap(self._index, at=_TASK, task=True)
        # The back's total cost: a running sum, summed afresh every 32 n + 1024 changes
        # (at most a million), so its rounding stays far below the admission tolerance.
        self._back_cost = 0.0
        self._back_budget = 1024
        # At most the time before which the back is safe whatever the next push
        # (see _back_safe): kept as pushes lower it, recomputed when it says no.
        self._horizon = _INF
        self._horizon_scale = 0.0
        self._first_low = _INF
        # Front entries are <= the edge, back ones after it. With drop_lowest all
        # are in front, where the least urgent is the last.
        self._edge: tuple[object, ...] = (
            _TOP if maxsize is not None and overflow == "drop_lowest" else _BOTTOM
        )
        # At least the largest cost held (the largest since the scheduler was empty).
        self._cost_cap = 0.0
        # At most the least margin in the index lists (see _mark_late).
        self._floor = -_INF
        # At least every front entry with a margin (a protected task): a push after it
        # delays no promise in the index lists.
        self._protect_edge: tuple[object, ...] = _BOTTOM
        # Expired tasks held until expire() returns them: (entry, reason, due).
        self._expired: dict[Hashable, tuple[_Entry, Reason, float]] = {}
        # The expiries kept apart from the order, made at the first one.
        self._timers: Expiries[_Entry] | None = None
        # At most the earliest due time held (never later), checked before the timers.
        self._next_due = _NEVER
        self._late: set[Hashable] = set()
        # What the latest pop took (entry, late flag, met deadline or None), while
        # unpop may still put it back.
        self._last_pop: tuple[_Entry, bool, bool | None] | None = None
        # Set while a where= predicate runs: any call back in is refused.
        self._walking = False
        # A float, not an int: 4 bytes less per entry, exact up to 2**53 pushes.
        self._seq = 0.0
        self._pushed = self._popped = self._removed = 0
        self._expired_count = self._expired_deadline = 0
        self._met = self._missed = 0
        self._admitted_late = self._dead_lettered = self._rejected = 0
        self._evicted = self._overflowed = 0

    # -- adding -----------------------------------------------------------

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Eviction | None:
        """Add ``task``; hand it back if it is not admitted on time under ``"dead_letter"``.

        ``enqueued_at`` (default: now, never later than now) backdates the
        task, so a requeued task keeps its age for aging, TTL and wait
        statistics; its deadline is still checked against now: under
        ``on_miss="run_late"`` such a task whose deadline has passed is kept
        and flagged late (counted in ``admitted_late``), under the other
        policies it is refused.

        Returns ``None``; ``Eviction(task, Reason.DEADLINE_INFEASIBLE)`` (the
        scheduler unchanged); or, when full with
        ``overflow="drop_lowest"``, ``Eviction(victim, Reason.EVICTED)`` for
        the least urgent task, which may be ``task`` itself (then the
        scheduler is unchanged).

        Complexity: see the class docstring.

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            DuplicateTaskError: a task with this id is already held.
            DeadlineError: the task's deadline is not after now (and, under
                ``on_miss="run_late"``, no ``enqueued_at`` was given).
            DeadlineInfeasibleError: not admitted on time, with ``on_miss="reject"``.
            QueueFullError: full, with ``overflow="reject"``.
            InvalidArgumentError: ``enqueued_at`` NaN, infinite or in the future;
                a cost or priority out of range (class docstring).
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("push", "scheduler"))
        if not isinstance(task, Task):
            raise InvalidTypeError(f"push() takes a Task, got {type(task).__name__} {task!r}")
        task_id = task.id
        index = self._index
        if task_id in index or (self._expired and task_id in self._expired):
            raise self._duplicate(task_id)
        now = self._now()
        enqueued = now if enqueued_at is None else check_enqueued_at(enqueued_at, now)
        deadline = task.deadline
        # A task coming back with its age runs late under run_late, as it would had it
        # waited here; a new one past its deadline is a mistake of the caller's.
        past = deadline is not None and deadline <= now
        if past and (enqueued_at is None or self._deadline_timers):
            raise self._past(task, now)
        seq = self._seq
        if enqueued >= seq:
            # Later than every number taken: its enqueue time serves as its sequence
            # number, one float for both (most pushes, from a running clock).
            seq = enqueued
        if deadline is None or task.cost > _MAX_COST:
            entry = self._entry(task, enqueued, seq)  # checks and implicit deadlines
        else:
            entry = (deadline, task.priority, seq, task, enqueued)
        if self._next_due <= now:
            self._collect_due(now)
        maxsize = self._maxsize
        full = maxsize is not None and len(index) + len(self._expired) >= maxsize
        if full and self._overflow == "reject":
            self._overflowed += 1
            raise self._full(task)
        victim = None
        if full:
            # An expired task is never the victim: it is already on its way out.
            victim = self._front.last() or self._critical.last()
            if victim is None or _after(entry, victim):
                self._overflowed += 1
                return Eviction(task, Reason.EVICTED)
        self._seq = math.nextafter(seq, _INF)
        index[task_id] = entry
        cost = task.cost
        if victim is None and task.priority > _CRITICAL and entry > self._edge:
            # The fast path, into the back: the kept horizon shows at once that it is
            # safe there, and the least margin kept that no task needs marking late.
            servers = self._servers
            cap = self._cost_cap
            horizon = self._horizon
            first = self._first_low
            key = entry[_TIME]
            if key < first:
                horizon -= first - key  # inf - inf when the back was empty: no shortcut
                first = key
            if cost > cap:
                horizon -= cost - cap
            spread = cost / servers
            horizon -= spread
            scale = self._horizon_scale + spread
            fast = now + _BACK_TOLERANCE * (scale + abs(now)) < horizon and self._floor >= (
                servers * (now - cap) if servers > 1 else now
            )
        else:
            fast = False
        if fast:
            self._horizon = horizon
            self._horizon_scale = scale
            self._first_low = first
            heappush(self._back.entries, entry)
            self._back_cost += cost
            self._back_budget -= 1
            if self._back_budget < 0:
                self._resum_back()
        else:
            marked = self._admit(entry, now, victim)
            if marked is not None:
                eviction = self._not_on_time(entry, marked)
                if eviction is not None:
                    return eviction
        if cost > self._cost_cap:
            self._cost_cap = cost
        if victim is not None:
            del index[victim[_TASK].id]
            self._drop_live(victim)
            self._evicted += 1
        if task.ttl is not None or (deadline is not None and self._deadline_timers):
            self._track(entry)
        self._last_pop = None
        self._pushed += 1
        return None if victim is None else Eviction(victim[_TASK], Reason.EVICTED)

    def rank(self, task: Task, enqueued_at: float) -> tuple[float, int]:
        """The key this scheduler orders ``task`` by among tasks of its priority, had it
        been pushed with ``enqueued_at``: ``(deadline, priority)``, the deadline
        implicit under aging (none: last). Smaller first, equal keys in push
        order. Changes nothing. O(1).

        Raises:
            InvalidTypeError: ``task`` is not a Task, ``enqueued_at`` not a number.
            InvalidArgumentError: ``enqueued_at`` NaN or infinite; a cost or aged
                priority this scheduler refuses.
        """
        if not isinstance(task, Task):
            raise InvalidTypeError(f"rank() takes a Task, got {type(task).__name__} {task!r}")
        if type(enqueued_at) is not float or not math.isfinite(enqueued_at):
            enqueued_at = check_number(enqueued_at, "enqueued_at")
        entry = self._entry(task, enqueued_at, 0.0)
        return (entry[0], entry[1])

    def check_push(self, task: Task, *, enqueued_at: float | None = None) -> None:
        """Raise what :meth:`push` would raise to refuse ``task`` now, for its id, its
        deadline, its cost or priority, or a full scheduler under ``overflow="reject"``;
        change nothing (its counters included). O(1).

        ``enqueued_at`` as :meth:`push` takes it: under ``on_miss="run_late"`` a
        task given one is not refused for a deadline that has passed.

        Whether it would be admitted on time is not asked here: under
        ``on_miss="reject"`` a ``push`` it passes may still raise
        ``DeadlineInfeasibleError`` (see :meth:`feasible`).

        Raises:
            InvalidTypeError, DuplicateTaskError, DeadlineError, QueueFullError,
            InvalidArgumentError, ReentrancyError: as :meth:`push` would.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("check_push", "scheduler"))
        if not isinstance(task, Task):
            raise InvalidTypeError(f"check_push() takes a Task, got {type(task).__name__} {task!r}")
        task_id = task.id
        if task_id in self._index or (self._expired and task_id in self._expired):
            raise self._duplicate(task_id)
        now = self._now()
        enqueued = now if enqueued_at is None else check_enqueued_at(enqueued_at, now)
        deadline = task.deadline
        past = deadline is not None and deadline <= now
        if past and (enqueued_at is None or self._deadline_timers):
            raise self._past(task, now)
        if deadline is None or task.cost > _MAX_COST:
            self._entry(task, enqueued, self._seq)  # its checks (the entry is not kept)
        maxsize = self._maxsize
        if maxsize is not None and self._overflow == "reject" and len(self) >= maxsize:
            raise self._full(task)

    def _duplicate(self, task_id: Hashable) -> DuplicateTaskError:
        return DuplicateTaskError(f"a task with id {task_id!r} is already in the scheduler")

    def _past(self, task: Task, now: float) -> DeadlineError:
        return DeadlineError(
            f"Task.deadline must be later than now ({now!r}); "
            f"task {task.id!r} has deadline {task.deadline!r}"
        )

    def _full(self, task: Task) -> QueueFullError:
        return QueueFullError(
            f"the scheduler is full ({self._maxsize} tasks); {task.id!r} was not added"
        )

    # -- taking -----------------------------------------------------------

    def pop(self, where: Predicate | None = None) -> Task | None:
        """Remove and return the most urgent task (satisfying ``where``), or ``None``.

        Expired tasks are never returned. With ``where``, tasks that fail the
        predicate stay exactly where they are.

        Complexity: O(log n); with ``where``, O(k log k + log n) where k is the
        number of tasks ahead of the result.

        Raises:
            InvalidTypeError: ``where`` is not callable.
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("pop", "scheduler"))
        now = self._now()
        if self._next_due <= now:
            self._collect_due(now)
        index = self._index
        if where is None:
            if self._critical.count:
                entry = self._critical.pop_first()
                del index[entry[_TASK].id]
            elif self._front.count:
                entry = self._front.pop_first()
                del index[entry[_TASK].id]
            else:
                found = self._back.pop()  # out of the index too
                if found is None:
                    self._last_pop = None
                    return None
                entry = found
                self._back_cost -= entry[_TASK].cost
                self._back_budget -= 1
                if self._back_budget < 0:
                    self._resum_back()
        else:
            found = self._find(where, take=True)
            if found is None:
                self._last_pop = None
                return None
            entry = found
            del index[entry[_TASK].id]
            if not self._in_index_lists(entry):
                self._back.drop_top(entry)
                self._back_cost -= entry[_TASK].cost
                self._back_changed()
                self._back.compact()
        task_id = entry[_TASK].id
        late = bool(self._late) and task_id in self._late
        if late:
            self._late.discard(task_id)
        self._record_wait(now - entry[_ENQUEUED])
        self._popped += 1
        task = entry[_TASK]
        deadline = task.deadline
        met = None
        if deadline is not None:
            met = now + task.cost <= deadline
            if met:
                self._met += 1
            else:
                self._missed += 1
        self._last_pop = (entry, late, met)
        if not index:
            self._emptied()
        elif self._timers is not None:
            self._timers.compact()
        return task

    def peek(self, where: Predicate | None = None) -> Task | None:
        """The task ``pop(where)`` would return, without removing it.

        Complexity: O(1) amortised; with ``where``, O(k log k) as for ``pop``.

        Raises:
            InvalidTypeError: ``where`` is not callable.
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("peek", "scheduler"))
        now = self._now()
        if self._next_due <= now:
            self._collect_due(now)
        if where is None:
            entry = self._critical.first() or self._front.first() or self._back.top()
        else:
            entry = self._find(where, take=False)
        return None if entry is None else entry[_TASK]

    def unpop(self, task: Task) -> None:
        """Put back the task the latest :meth:`pop` returned, exactly as it was. O(log n).

        Valid only while nothing else has changed the scheduler since that
        pop (a push, another pop, a remove, an expiry returned). The task
        gets back its place in the order, its age, TTL and late flag; the
        pop's wait sample and its met/missed count are taken back. A
        composition uses it to put back a task it popped and then could not
        place.

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            TaskStateError: ``task`` is not what the latest pop returned, or the
                scheduler changed since (nothing changes).
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("unpop", "scheduler"))
        if not isinstance(task, Task):
            raise InvalidTypeError(f"unpop() takes a Task, got {type(task).__name__} {task!r}")
        last = self._last_pop
        if last is None or last[0][_TASK] is not task:
            raise TaskStateError(unpop_refusal(task, "scheduler"))
        self._last_pop = None
        entry, late, met = last
        # A pop(where=...) may have left the old entry in the back or the timers, dead;
        # a new tuple of the same fields keeps it dead (entries are live by identity).
        entry = (*entry,)
        self._horizon = -_INF  # more work again: computed afresh at the next push
        if task.cost > self._cost_cap:
            self._cost_cap = task.cost  # the pop may have emptied the scheduler
        self._index[entry[_TASK].id] = entry
        if late:
            self._late.add(entry[_TASK].id)
        self._file(entry, self._bound(entry))
        self._track(entry)
        self._popped -= 1
        self._waits_window.retract()
        if met is not None:
            if met:
                self._met -= 1
            else:
                self._missed -= 1

    def remove(self, task_id: Hashable) -> Task:
        """Remove the task with this id (cancel it) and return it. O(log n).

        Raises:
            UnknownTaskError: no held task has this id (the scheduler is unchanged).
            InvalidTypeError: ``task_id`` is unhashable.
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("remove", "scheduler"))
        entry: _Entry
        held, live = self._take_held(task_id, "scheduler")
        self._last_pop = None
        if live:
            entry = held
            self._drop_live(entry)
            if not self._index:
                self._emptied()
        else:
            entry = held[0]  # expired: (entry, reason, due)
            self._late.discard(task_id)
        self._removed += 1
        return entry[_TASK]

    # -- time -------------------------------------------------------------

    def expire(self) -> list[Task]:
        """Remove and return every task whose TTL ran out or (per policy) whose deadline passed.

        Earliest due first. A returned task with ``task.deadline <=
        now`` missed its deadline; use :meth:`expire_with_reasons` for the
        exact reason. Complexity: O(x log n) for x expired tasks.

        Raises:
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        return [eviction.task for eviction in self.expire_with_reasons()]

    def expire_with_reasons(self) -> list[Eviction]:
        """:meth:`expire`, with each task's reason.

        ``Reason.DEADLINE_MISSED`` when its deadline came first (not under
        ``"run_late"``), else ``Reason.TTL_EXPIRED``. Earliest due first.
        Complexity: O(x log n).

        Raises:
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("expire", "scheduler"))
        self._collect_due(self._now())
        if not self._expired:
            return []
        # Earliest due first (a backdated push can fall due before tasks collected earlier).
        held = self._take_expired(lambda item: (item[2], item[0][_SEQ]))
        evictions = [Eviction(entry[_TASK], reason) for entry, reason, _ in held]
        missed = sum(1 for eviction in evictions if eviction.reason is Reason.DEADLINE_MISSED)
        self._expired_deadline += missed
        self._missed += missed
        return evictions

    def next_wakeup(self) -> float | None:
        """When the next held task expires, or ``None``.

        While expired tasks wait for :meth:`expire`, a time already past.
        Call :meth:`expire` once ``clock.now() >= next_wakeup()``.
        Complexity: O(1) amortised.

        Raises:
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("next_wakeup", "scheduler"))
        due = self._first_due()
        wakeup = None if due == _NEVER else due
        if self._expired:
            # Already past: expire() is due now (the first one held is enough to say so).
            due = next(iter(self._expired.values()))[2]
            wakeup = due if wakeup is None else min(wakeup, due)
        return wakeup

    # -- deadlines --------------------------------------------------------

    def feasible(self, task: Task) -> bool:
        """Whether ``task`` can still meet its own deadline (see the class docstring).

        For a task not held: whether it would be feasible if pushed now (it
        may still not be admitted on time, if it would make a held task
        miss). For a held task (matched by id): whether it is feasible where
        it stands. ``True`` without a deadline; ``False`` once the deadline
        is not after now, and for an expired task waiting to be returned by
        :meth:`expire`.

        Complexity: as ``push``.

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            InvalidArgumentError: a cost or priority out of range (class docstring).
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("feasible", "scheduler"))
        if not isinstance(task, Task):
            raise InvalidTypeError(f"feasible() takes a Task, got {type(task).__name__} {task!r}")
        deadline = task.deadline
        if deadline is None:
            return True
        now = self._now()
        if deadline <= now:
            return False
        if self._next_due <= now:
            self._collect_due(now)
        if task.id in self._expired:
            return False
        held = self._index.get(task.id)
        # Where it would go if pushed now, without taking a sequence number.
        entry = self._entry(task, now, self._seq) if held is None else held
        cost = 0.0 if held is not None else task.cost
        if not self._in_index_lists(entry):
            if self._back_safe(entry, cost, now):
                return True  # every task there is feasible, and so is one among them
            self._bring_forward(entry)
        return self._meets(entry, self._cost_ahead(entry), now)

    def slack(self, task_id: Hashable) -> float:
        """Seconds between a held task's predicted finish and its deadline.

        The finish is that of the feasibility simulation (class docstring),
        so ``slack >= 0`` exactly when the task is feasible where it stands;
        negative means it is predicted to miss. ``math.inf`` for a task
        without a deadline; for an expired task waiting to be returned,
        ``deadline - (now + cost)``.

        Complexity: O(log n) with one server, O(k log m) with more, after
        moving the back up to the task into the ordered index (once per task).

        Raises:
            UnknownTaskError: no held task has this id.
            InvalidTypeError: ``task_id`` is unhashable.
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("slack", "scheduler"))
        now = self._now()
        if self._next_due <= now:
            self._collect_due(now)
        entry = self._held(task_id)
        task = entry[_TASK]
        deadline = task.deadline
        if deadline is None:
            return _INF
        if task_id in self._expired:
            return deadline - (now + task.cost)
        self._bring_forward(entry)
        if self._servers == 1:
            before = self._cost_ahead(entry)
            slack = deadline - (now + before + task.cost)
            if abs(slack) > _tolerance(now, before, task.cost, deadline):
                return slack
        return deadline - (self._simulated_start(entry, now) + task.cost)

    def is_late(self, task_id: Hashable) -> bool:
        """Whether a held task is late: admitted though not on time, found predicted to miss
        by a later push, or its deadline has come (``deadline <= now``) and it can no
        longer meet it. Under ``"run_late"`` a task of cost 0 popped at the very instant
        of its deadline meets it, as :meth:`pop` counts it, so it is not late then; under
        ``"dead_letter"`` and ``"reject"`` it is due to :meth:`expire` at that instant.
        O(1).

        A late task is no longer protected by admission. :meth:`slack` says
        by how much a task is predicted to miss or make it.

        Raises:
            UnknownTaskError: no held task has this id.
            InvalidTypeError: ``task_id`` is unhashable.
        """
        task = self._held(task_id)[_TASK]
        return task_id in self._late or self._due_late(task, self._now())

    def _due_late(self, task: Task, now: float) -> bool:
        """Whether a held task is late by the clock alone: its deadline has come, and it
        is due to expire then or cannot finish by it (see :meth:`is_late`)."""
        deadline = task.deadline
        if deadline is None or deadline > now:
            return False
        return self._deadline_timers or now + task.cost > deadline

    def preemption_candidates(
        self, task: Task, running: Sequence[tuple[Task, float]]
    ) -> list[Task]:
        """Which running tasks to preempt so that ``task`` can start now; advice only.

        ``running`` holds ``(task, start_time)`` for the tasks occupying the
        servers. Each is expected to finish at ``start_time + cost``. The
        answer is empty unless all ``servers`` are busy and ``task`` needs to
        start before one frees up:

        - it has a deadline that waiting for the earliest expected finish
          would miss, and (unless it is CRITICAL) starting now would meet; or
        - it is CRITICAL without a deadline (an emergency: as soon as possible).

        Candidates are the running tasks ``task`` outranks in the scheduler's
        order (a CRITICAL task outranks every other; otherwise an earlier
        deadline, or an equal one with a lower priority number). A running
        CRITICAL task is never a candidate. For a task that is not CRITICAL,
        only victims that could still meet their own deadline if restarted
        after it finishes are offered, so one miss is not traded for another.

        They are ordered least urgent first: most *laxity* (``deadline - now
        - cost``, the time a restart could still wait; infinite without a
        deadline), then highest priority number, then most recently started
        (least work lost). Preempting the first is enough for ``task`` to
        start now; the host decides.

        Complexity: O(r log r) for r running tasks.

        Raises:
            InvalidTypeError: ``task`` is not a Task, or ``running`` is not a
                sequence of ``(Task, start_time)`` pairs.
            InvalidArgumentError: a start time NaN, infinite or in the future.
            DuplicateTaskError: a task id appears twice in ``running``, or is ``task``'s.
        """
        if not isinstance(task, Task):
            raise InvalidTypeError(
                f"preemption_candidates() takes a Task, got {type(task).__name__} {task!r}"
            )
        now = self._now()
        pairs = _running_pairs(running, now, task)
        if len(pairs) < self._servers:
            return []
        deadline = task.deadline
        critical = task.priority <= _CRITICAL
        if deadline is None and not critical:
            return []
        if deadline is not None:
            earliest_free = max(now, min(start + held.cost for held, start in pairs))
            if earliest_free + task.cost <= deadline:
                return []
            if not critical and now + task.cost > deadline:
                return []
        rank = (0 if critical else 1, _INF if deadline is None else deadline, task.priority)
        candidates: list[tuple[float, int, float, Task]] = []
        for victim, start in pairs:
            if victim.priority <= _CRITICAL:
                continue
            victim_deadline = _INF if victim.deadline is None else victim.deadline
            if (1, victim_deadline, victim.priority) <= rank:
                continue
            laxity = victim_deadline - now - victim.cost
            if not critical and laxity < task.cost:
                continue
            candidates.append((-laxity, -victim.priority, -start, victim))
        candidates.sort(key=lambda candidate: candidate[:3])
        return [candidate[3] for candidate in candidates]

    # -- looking ----------------------------------------------------------

    @property
    def servers(self) -> int:
        """Tasks that run in parallel; settable (>= 1) as capacity changes, in O(n)."""
        return self._servers

    @servers.setter
    def servers(self, value: int) -> None:
        if self._walking:
            raise ReentrancyError(reentry_refusal("servers", "scheduler"))
        servers = check_int(value, "servers", minimum=1)
        self._servers = servers
        # The bounds in the ordered lists are scaled by the number of servers.
        self._critical.set_bounds(self._bound)
        self._front.set_bounds(self._bound)
        self._floor = -_INF
        self._horizon = -_INF

    @property
    def on_miss(self) -> OnMiss:
        """What a push not admitted on time does: ``"run_late"``, ``"dead_letter"`` or
        ``"reject"``."""
        return self._on_miss

    @property
    def aging_rate(self) -> float:
        """Priority levels a task without a deadline gains per second waited."""
        return self._rate

    @property
    def maxsize(self) -> int | None:
        """Most tasks held at once, or ``None``."""
        return self._maxsize

    @property
    def overflow(self) -> Overflow:
        """What a push onto a full scheduler does: ``"reject"`` or ``"drop_lowest"``."""
        return self._overflow

    def stats(self) -> DeadlineStats:
        """A snapshot: depth, late tasks, wait percentiles, deadline hit/miss counters.

        Complexity: O(n + w log w) for the wait window w.
        """
        now = self._now()
        held = [*self._live_entries(), *(item[0] for item in self._expired.values())]
        late = self._late
        return DeadlineStats(
            depth=len(held),
            critical=sum(1 for entry in held if entry[_PRIORITY] <= _CRITICAL),
            late=sum(
                1 for entry in held if entry[_TASK].id in late or self._due_late(entry[_TASK], now)
            ),
            oldest_age=max(0.0, now - min(entry[_ENQUEUED] for entry in held)) if held else 0.0,
            wait=self._waits_window.percentiles(),
            pushed=self._pushed,
            popped=self._popped,
            removed=self._removed,
            expired=self._expired_count,
            expired_deadline=self._expired_deadline,
            met=self._met,
            missed=self._missed,
            admitted_late=self._admitted_late,
            dead_lettered=self._dead_lettered,
            rejected=self._rejected,
            evicted=self._evicted,
            overflowed=self._overflowed,
        )

    def __repr__(self) -> str:
        return (
            f"DeadlineScheduler(len={len(self)}, servers={self._servers!r}, "
            f"on_miss={self._on_miss!r}, aging_rate={self._rate!r}, "
            f"maxsize={self._maxsize!r}, overflow={self._overflow!r})"
        )

    # -- persistence ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the scheduler holds and has counted, as plain data. O(n).

        Each task keeps its sequence number (ties) and enqueue time (age, TTL,
        implicit deadline), and the late ones their mark. :meth:`load_snapshot`
        on an empty scheduler of the same configuration takes it back; see
        ``docs/persistence.md``.

        Raises:
            SnapshotError: a task whose id, tenant, key or group a snapshot cannot carry.
        """
        late = self._late
        live = self._live_entries()
        return {
            **header("DeadlineScheduler"),
            "servers": self._servers,
            "on_miss": self._on_miss,
            "aging_rate": self._rate,
            "maxsize": self._maxsize,
            "overflow": self._overflow,
            "held": [_entry_data(entry) for entry in live],
            # In the order held, not the set's: its order follows the ids' hashes, which
            # for strings change from process to process.
            "late": [
                encode_key(entry[_TASK].id, "a task id")
                for entry in live
                if entry[_TASK].id in late
            ],
            "expired": [
                [_entry_data(entry), reason.value, due]
                for entry, reason, due in self._expired.values()
            ],
            "next_seq": self._seq,
            "cost_cap": self._cost_cap,
            "counts": [getattr(self, name) for name in _COUNTERS],
            "waits": self._waits_window.snapshot(),
        }

    def load_snapshot(self, data: object) -> None:
        """Take on the state :meth:`snapshot` wrote: same tasks, order, ages, late marks
        and counts. The scheduler must be empty and configured as the one
        snapshotted (``servers``, ``on_miss``, ``aging_rate``, ``maxsize``,
        ``overflow``, ``stats_window``). O(n log n).

        Raises:
            SnapshotError: an unknown format version, a missing or ill-typed field,
                another configuration, or a non-empty scheduler (nothing changes).
        """
        self._prepare_snapshot(data, "queue")[0]()

    def _prepare_snapshot(
        self, data: object, where: str
    ) -> tuple[Callable[[], None], dict[Hashable, Task]]:
        """Check ``data`` whole; return what loads it (it cannot fail) and the tasks it
        holds, by id (the very objects it will hold)."""
        fields = check_header(data, "DeadlineScheduler", where)
        if len(self) or self._pushed:
            refuse(where, "can be loaded only into a new, empty DeadlineScheduler")
        for name, mine in (
            ("servers", self._servers),
            ("on_miss", self._on_miss),
            ("aging_rate", self._rate),
            ("maxsize", self._maxsize),
            ("overflow", self._overflow),
        ):
            fields.same(name, mine, "scheduler")
        following = fields.number("next_seq")
        held = [
            self._restored_entry(item, f"{where}.held[{i}]", following)
            for i, item in enumerate(fields.items("held"))
        ]
        expired: dict[Hashable, tuple[_Entry, Reason, float]] = {}
        for i, item in enumerate(fields.items("expired")):
            at = f"{where}.expired[{i}]"
            if type(item) is not list or len(item) != 3 or not one_of(item[1], _REASONS):
                refuse(at, "must be [entry, reason, due]")
            entry = self._restored_entry(item[0], f"{at}[0]", following)
            if type(item[2]) not in (int, float) or not math.isfinite(item[2]):
                refuse(f"{at}[2]", f"must be a finite time, got {item[2]!r}")
            expired[entry[_TASK].id] = (entry, Reason(item[1]), float(item[2]))
        ids = {entry[_TASK].id for entry in held}
        seqs = {entry[_SEQ] for entry in held} | {e[_SEQ] for e, _, _ in expired.values()}
        if len(ids) != len(held) or ids & set(expired) or len(seqs) != len(ids) + len(expired):
            refuse(where, "holds a task id or sequence number twice")
        if self._maxsize is not None and len(ids) + len(expired) > self._maxsize:
            refuse(where, f"holds more than maxsize {self._maxsize} tasks")
        late = {decode_key(k, f"{where}.late") for k in fields.items("late")}
        if not late <= ids:
            refuse(f"{where}.late", "marks a task the scheduler does not hold")
        cost_cap = fields.number("cost_cap")
        counts = fields.counts("counts", len(_COUNTERS))
        load_waits = self._waits_window._prepare_snapshot(fields.value("waits"), f"{where}.waits")
        fields.done()

        def load() -> None:
            self._late.update(late)
            self._index.update((entry[_TASK].id, entry) for entry in held)
            for entry in sorted(held):  # into the lists in their order
                self._file(entry, self._bound(entry))
            for entry in held:  # in the order they came: TTLs join the FIFO
                self._track(entry)
            self._horizon = -_INF  # computed afresh at the next push
            self._cost_cap = max(cost_cap, max((e[_TASK].cost for e in held), default=0.0))
            self._expired.update(expired)
            self._seq = following
            for name, count in zip(_COUNTERS, counts, strict=True):
                setattr(self, name, count)
            load_waits()

        tasks = {entry[_TASK].id: entry[_TASK] for entry in held}
        tasks.update((task_id, item[0][_TASK]) for task_id, item in expired.items())
        return load, tasks

    def _restored_entry(self, data: object, where: str, following: float) -> _Entry:
        """An entry from its snapshot ``[seq, enqueued_at, task]``, keyed as push keys it."""
        seq, enqueued, task = read_held(data, where, following)
        if seq == enqueued:
            seq = enqueued  # one float for both, as push made it
        try:
            return self._entry(task, enqueued, seq)
        except InvalidArgumentError as error:
            refuse(f"{where}.task", f"is not one this scheduler holds ({error})")

    # -- internals --------------------------------------------------------

    def _live_entries(self) -> list[_Entry]:
        """The live (not expired) entries, in the order snapshots list them. O(n)."""
        return list(self._index.values())

    def _live_count(self) -> int:
        """How many live (not expired) tasks are held. O(1)."""
        return len(self._index)

    def _entry(self, task: Task, enqueued: float, seq: float) -> _Entry:
        """The entry of ``task``; refuses a cost or an aged priority out of range."""
        deadline = task.deadline
        priority = task.priority
        if task.cost > _MAX_COST:
            raise InvalidArgumentError(
                f"Task.cost must be at most {_MAX_COST:g} in a DeadlineScheduler (so that "
                f"the work held adds up to a finite time); task {task.id!r} has {task.cost!r}"
            )
        if deadline is not None:
            time_key = deadline
        elif self._rate and priority > _CRITICAL:
            if priority > _MAX_AGED_PRIORITY:
                raise InvalidArgumentError(
                    f"with aging_rate > 0 a task without a deadline must have a priority of "
                    f"at most 2**53 (its implicit deadline is a float); task {task.id!r} "
                    f"has {priority!r}"
                )
            time_key = enqueued + (priority - _CRITICAL) / self._rate
        else:
            time_key = _INF
        return (time_key, priority, seq, task, enqueued)

    def _due(self, entry: _Entry) -> float | None:
        """When expire() takes an entry: its TTL expiry, or its deadline if earlier (per policy)."""
        task = entry[_TASK]
        if task.deadline is not None and self._deadline_timers:
            return _due_either(entry)
        return None if task.ttl is None else _ttl_expiry(entry)

    def _track(self, entry: _Entry) -> None:
        """File a held entry's due time, if it has one, where :meth:`_first_due` finds it.

        Without aging a deadline that expires a task needs nothing filed: the
        order is by deadline, every task without one after them, so the
        earliest is at the front of the CRITICAL list or of the others. Any
        other due time (a TTL; with aging, a deadline too) joins the expiries.
        """
        due = self._due(entry)
        if due is None:
            return
        if due < self._next_due:
            self._next_due = due
        ttl = entry[_TASK].ttl
        if self._rate or not self._deadline_timers:
            expires = due  # every due time is among the expiries
        elif ttl is not None:
            expires = _ttl_expiry(entry)  # the deadline is found in the order
        else:
            return
        timers = self._timers
        if timers is None:
            later = _due_either if self._rate and self._deadline_timers else _ttl_expiry
            timers = self._timers = Expiries(self._index, at=_TASK, expires=later, task=True)
        timers.add(entry, expires)

    def _first_due(self) -> float:
        """The earliest due time of a live entry (``_NEVER`` if none). O(1) amortised."""
        due = _NEVER if self._timers is None else self._timers.first()
        if self._deadline_timers and not self._rate:
            first = self._critical.first()
            if first is not None and first[_TIME] < due:
                due = first[_TIME]
            first = self._front.first() or self._back.top()
            if first is not None and first[_TIME] < due:
                due = first[_TIME]
        return due

    def _take_missed(self, now: float) -> list[_Entry]:
        """Take out every entry whose deadline is ``<= now``, read from the order (only
        without aging, see :meth:`_track`). O(k log n) for k entries taken."""
        index = self._index
        taken = []
        critical = self._critical
        while (first := critical.first()) is not None and first[_TIME] <= now:
            del index[first[_TASK].id]
            self._drop_live(first)
            taken.append(first)
        while (first := self._front.first() or self._back.top()) is not None:
            if first[_TIME] > now:
                break
            del index[first[_TASK].id]
            self._back.drop_top(first)
            self._drop_live(first)
            taken.append(first)
        return taken

    def _bound(self, entry: _Entry) -> float:
        """An entry's bound in the ordered index: ``m * deadline - (m - 1) * cost`` while
        admission protects it (it has a deadline and is not late), else ``inf``.

        Its margin there, ``bound - work through it``, is ``m`` times the
        lower bound of its slack plus ``m * now``; with one server, its slack
        plus ``now`` exactly.
        """
        task = entry[_TASK]
        deadline = task.deadline
        if deadline is None or entry[_TASK].id in self._late:
            return _INF
        servers = self._servers
        if servers == 1:
            return deadline
        return servers * deadline - (servers - 1) * task.cost

    def _in_index_lists(self, entry: _Entry) -> bool:
        """Whether an entry belongs in the critical list or the front (else the back)."""
        return entry[_PRIORITY] <= _CRITICAL or entry <= self._edge

    def _file(self, entry: _Entry, bound: float) -> float:
        """Put an entry (already in the index) where it belongs; the cost ahead of it if
        it goes into an ordered list, else 0."""
        cost = entry[_TASK].cost
        if entry[_PRIORITY] <= _CRITICAL:
            self._floor = -_INF
            return self._critical.add(entry, cost, bound)
        if entry <= self._edge:
            self._floor = -_INF
            if bound != _INF:
                self._protect(entry)
            return self._critical.total() + self._front.add(entry, cost, bound)
        heappush(self._back.entries, entry)
        self._back_cost += cost
        self._back_changed()
        return 0.0

    def _drop_live(self, entry: _Entry) -> None:
        """Take a live entry, already out of the index, out of its place; timers go lazily."""
        if entry[_PRIORITY] <= _CRITICAL:
            self._critical.remove(entry)
        elif entry <= self._edge:
            self._front.remove(entry)
        else:
            self._back_cost -= entry[_TASK].cost
            self._back_changed()
            self._back.compact()
        self._late.discard(entry[_TASK].id)
        if self._timers is not None:
            self._timers.compact()

    def _emptied(self) -> None:
        """Nothing is held: start the bounds afresh."""
        self._cost_cap = 0.0
        self._back_cost = 0.0
        self._back_budget = 1024
        self._horizon = _INF
        self._horizon_scale = 0.0
        self._first_low = _INF
        if self._edge is not _TOP:
            self._edge = _BOTTOM
        self._protect_edge = _BOTTOM
        self._back.clear()
        self._timers = None
        self._next_due = _NEVER

    def _back_changed(self) -> None:
        """Count a change of the back's running cost; sum it afresh now and then."""
        self._back_budget -= 1
        if self._back_budget < 0:
            self._resum_back()

    def _resum_back(self) -> None:
        """Sum the back's cost afresh, once per ``32 n + 1024`` changes (at most a million):
        amortised O(1/32), and its rounding stays below ``_BACK_TOLERANCE``."""
        self._back_budget = min(32 * self._live_count() + 1024, 1_000_000)
        self._back_cost = math.fsum(entry[_TASK].cost for entry in self._back.live_entries())

    def _work(self) -> float:
        """The cost of every held task (expired ones aside)."""
        return self._critical.total() + self._front.total() + self._back_cost

    def _back_safe(self, entry: _Entry | None, cost: float, now: float) -> bool:
        """Whether every task in the back (with ``entry`` among them, if given) is feasible
        with ``cost`` more work ahead: ``now < d_min - c_max - (W + cost) / m``.

        Each task there starts by ``now + (W + cost) / m`` at the latest (the
        mean load) and has ``deadline - cost >= d_min - c_max``. The right
        side, the *horizon*, is kept for the fast path of :meth:`push`.
        """
        top = self._back.top()
        first = _INF if top is None else top[_TIME]
        if entry is not None and entry[_TIME] < first:
            first = entry[_TIME]
        cap = max(self._cost_cap, cost)
        spread = (self._work() + cost) / self._servers
        horizon = first - cap - spread
        scale = abs(first) + cap + spread
        self._horizon = horizon
        self._horizon_scale = scale
        self._first_low = first
        return first == _INF or now + _BACK_TOLERANCE * (scale + abs(now)) < horizon

    def _bring_forward(self, entry: _Entry) -> None:
        """Move the back's entries up to ``entry`` (held or not) into the ordered front."""
        back = self._back
        while (top := back.top()) is not None and top <= entry:
            self._move_forward(top)

    def _move_forward(self, top: _Entry) -> None:
        """Move the back's first entry to the end of the front."""
        self._back.drop_top(top)
        cost = top[_TASK].cost
        self._back_cost -= cost
        self._back_changed()
        bound = self._bound(top)
        before = self._front.add(top, cost, bound)
        # At the end of the front it changes no other margin: the least one is easy.
        margin = bound - (self._critical.total() + before + cost)
        if margin < self._floor:
            self._floor = margin
        if bound != _INF:
            self._protect(top)
        self._edge = top

    def _admit(self, entry: _Entry, now: float, excluded: _Entry | None) -> list[_Entry] | None:
        """File a new entry (already in the index) and judge it.

        First every held task already predicted to miss is marked late (it is
        no longer a promise to keep). Returns ``None`` when the entry is
        admitted on time, else the tasks marked meanwhile (so that a refusal
        can unmark them). ``excluded`` (a task about to be evicted) counts as
        no promise.
        """
        task = entry[_TASK]
        # Behind every task with a deadline, a task without one delays none of them.
        behind_all = entry[_TIME] == _INF and entry[_PRIORITY] > _CRITICAL
        delays = 0.0 if behind_all else task.cost
        # The back must stay feasible with the task anywhere (and the task too, if it
        # goes there): else its first entries move to the front, where the exact
        # answers are, and with none left, the task opens the front itself.
        while True:
            in_lists = self._in_index_lists(entry)
            if self._back_safe(None if in_lists or behind_all else entry, delays, now):
                break
            top = self._back.top()
            if top is None:
                if not in_lists:
                    self._edge = entry
                break
            self._move_forward(top)
        if excluded is not None:
            self._list_of(excluded).set_bound(excluded, _INF)
        try:
            marked = self._mark_late(now)
            if not self._in_index_lists(entry):
                self._file(entry, self._bound(entry))
                return None  # on time by the bound
            tasks = self._list_of(entry)
            cost = task.cost
            floor = self._floor  # at most every margin before it is filed
            # Filed first (without a margin of its own): the cost ahead comes with it.
            before = tasks.add(entry, cost, _INF)
            if tasks is self._front:
                before += self._critical.total()
            # Every margin behind it fell by its cost, no other moved.
            if excluded is not None:
                self._floor = -_INF
            elif tasks is self._critical or entry < self._protect_edge:
                self._floor = floor - cost
            own = task.deadline is None or self._meets(entry, before, now)
            least = self._least_behind(entry, now, marked, excluded) if own else -_INF
            if least == -_INF:
                return marked
        finally:
            if excluded is not None:
                self._list_of(excluded).set_bound(excluded, self._bound(excluded))
                self._protect(excluded)
                least = -_INF  # its margin is back: the least margin is not known
        bound = self._bound(entry)
        if bound != _INF:
            tasks.set_bound(entry, bound)
            self._protect(entry)
        # Every margin behind it was just found to be at least ``least``.
        self._floor = min(self._floor, least, bound - (before + cost))
        return None

    def _list_of(self, entry: _Entry) -> PrefixSumSortedList[_Entry]:
        return self._critical if entry[_PRIORITY] <= _CRITICAL else self._front

    def _protect(self, entry: _Entry) -> None:
        """Keep the protect edge at least an entry just given a margin in the index lists."""
        if entry[_PRIORITY] > _CRITICAL and entry > self._protect_edge:
            self._protect_edge = entry

    def _mark_late(self, now: float) -> list[_Entry]:
        """Mark late, and return, every protected task already predicted to miss (with
        several servers: surely, by the bound), so that it holds admission back no more.

        O(1) when no task's margin can be below the line: a lower bound of
        the least margin is kept (the floor), and only an entry filed into the
        index lists ahead of a protected task lowers it. Below the line, the
        margin tree's lower bounds are asked before any task is looked at.
        """
        servers = self._servers
        gap = 0.0 if servers == 1 else self._cost_cap
        line = servers * (now - gap)
        line -= _REL_TOLERANCE * servers * (abs(now) + gap + abs(line) + self._work())
        if self._floor >= line:
            return []
        least = self._least_margin(line)
        if least >= line:
            self._floor = least
            return []
        ahead = self._critical.total()
        marked = self._critical.unbind_margins_below(line)
        marked += self._front.unbind_margins_below(line + ahead)
        self._late.update(entry[_TASK].id for entry in marked)
        self._floor = self._least_margin(line)
        self._protect_edge = self._front.last_bound() or _BOTTOM
        return marked

    def _least_margin(self, line: float) -> float:
        """At most the least margin in the index lists, and at least ``line`` when that
        is: the margin tree sums afresh only the blocks it needs to show it."""
        ahead = self._critical.total()
        return min(
            self._critical.margin_at_least(line),
            self._front.margin_at_least(line + ahead) - ahead,
        )

    def _unmark(self, marked: list[_Entry]) -> None:
        """Undo :meth:`_mark_late` (for a refused push, which changes nothing)."""
        if marked:
            self._floor = -_INF
        for entry in marked:
            self._late.discard(entry[_TASK].id)
            self._list_of(entry).set_bound(entry, self._bound(entry))
            self._protect(entry)

    def _least_behind(
        self, entry: _Entry, now: float, marked: list[_Entry], excluded: _Entry | None
    ) -> float:
        """Whether every protected task behind a newly filed entry stays feasible: the least
        margin behind it (at least ``m * now``) if so, else ``-inf``.

        The index lists already hold the entry, so margins behind it include
        its cost; each must stay at least ``m * now``. The back was made safe
        before. A lower bound clearing the line answers first (the reported
        least margin is then that bound): the kept floor in O(1), else the
        margin tree's lower bounds. Within rounding of the line, the
        simulation decides (and may add to ``marked``; the least margin is
        then not known: ``m * now`` less the tolerance is reported).
        """
        servers = self._servers
        line = servers * now
        # The obvious case, O(1): the kept floor (at most every margin, its cost taken
        # off those behind it) clears the line. Else the tree's bound of the least
        # margin of all, which becomes the floor when it clears the line.
        work = self._work()
        floor = self._floor
        if floor == _INF or floor - line > _REL_TOLERANCE * (abs(floor) + abs(line) + work):
            return floor
        least = self._least_margin(line)
        if least == _INF or least - line > _REL_TOLERANCE * (abs(least) + abs(line) + work):
            self._floor = least
            return least
        if entry[_PRIORITY] <= _CRITICAL:
            least = min(
                self._critical.margin_after(entry),
                self._front.margin() - self._critical.total(),
            )
        else:
            least = self._front.margin_after(entry) - self._critical.total()
        if least == _INF:
            return least  # no promise behind it
        tolerance = _REL_TOLERANCE * (abs(least) + abs(line) + self._work())
        if least - line > tolerance:
            return least
        if least - line < -tolerance:
            return -_INF
        if self._simulated_promises(entry, now, marked, excluded):
            return line - 2 * tolerance
        return -_INF

    def _simulated_promises(
        self, entry: _Entry, now: float, marked: list[_Entry], excluded: _Entry | None
    ) -> bool:
        """Admission by the simulation itself, with and without ``entry``: O(n log m).

        A protected task found predicted to miss without it is marked late;
        the entry is on time unless it makes one that was feasible miss.
        """
        ahead = list(chain(self._critical, self._front))
        without = self._finishes([e for e in ahead if e is not entry], now)
        with_it = self._finishes(ahead, now)
        on_time = True
        for held in ahead:
            held_id = held[_TASK].id
            deadline = held[_TASK].deadline
            if held is entry or held is excluded or deadline is None or held_id in self._late:
                continue
            if without[held_id] > deadline:
                self._late.add(held_id)
                self._list_of(held).set_bound(held, _INF)
                marked.append(held)
            elif with_it[held_id] > deadline:
                on_time = False
        return on_time

    def _finishes(self, entries: list[_Entry], now: float) -> dict[Hashable, float]:
        """Each entry's finish in the feasibility simulation, entries in queue order."""
        free = [now] * self._servers
        finish = {}
        for entry in entries:
            start = free[0]
            cost = entry[_TASK].cost
            heapreplace(free, start + cost)
            finish[entry[_TASK].id] = start + cost
        return finish

    def _not_on_time(self, entry: _Entry, marked: list[_Entry]) -> Eviction | None:
        """Apply ``on_miss`` to a filed entry not admitted on time: keep it late, or take it
        out (and unmark the tasks judging it marked late: a refusal changes nothing)."""
        task = entry[_TASK]
        if self._on_miss == "run_late":
            self._late.add(task.id)
            self._admitted_late += 1
            return None
        self._unmark(marked)
        del self._index[task.id]
        self._drop_live(entry)
        if not self._index:
            self._emptied()
        if self._on_miss == "reject":
            self._rejected += 1
            raise DeadlineInfeasibleError(
                f"task {task.id!r} (deadline {task.deadline!r}) cannot be admitted on time: "
                f"with the work ahead of it on {self._servers} server(s) it would finish "
                f"late, or make a task already admitted miss its deadline (on_miss='reject'; "
                f"the scheduler is unchanged)"
            )
        self._dead_lettered += 1
        return Eviction(task, Reason.DEADLINE_INFEASIBLE)

    def _find(self, where: Predicate, *, take: bool) -> _Entry | None:
        """The most urgent live entry passing ``where`` (taken out of an index list if
        ``take``), with re-entry refused while ``where`` runs."""
        if not callable(where):
            raise InvalidTypeError(f"where= takes a function of a Task, got {where!r}")

        def match(entry: _Entry) -> bool:
            return bool(where(entry[_TASK]))

        self._walking = True
        try:
            if take:
                found = self._critical.remove_first_matching(
                    match
                ) or self._front.remove_first_matching(match)
            else:
                found = self._critical.find_first_matching(
                    match
                ) or self._front.find_first_matching(match)
            if found is None:
                found = self._back.find(where, _TASK)
        finally:
            self._walking = False
        return found

    def _expiry_of(self, task_id: Hashable) -> float | None:
        """When :meth:`expire` takes the held task ``task_id``: its TTL's end, or its
        deadline if earlier and the policy expires missed deadlines (``None``: never),
        for a scheduler holding this one. O(1).

        Raises:
            KeyError: no held task has this id.
        """
        held = self._expired.get(task_id)
        return self._due(self._index[task_id] if held is None else held[0])

    def _held_task(self, task_id: Hashable) -> Task:
        """The live task ``task_id``, left where it is: for a scheduler or distributor
        holding this one, which has no public look-up. O(1).

        Raises:
            KeyError: no live task has this id, or it is due to expire (its TTL ran
                out, or its deadline passed under ``"dead_letter"`` or ``"reject"``).
        """
        entry = self._index[task_id]
        due = self._due(entry)
        if due is not None and due <= self._now():
            raise KeyError(task_id)
        return entry[_TASK]

    def _held(self, task_id: Hashable) -> _Entry:
        try:
            entry = self._index.get(task_id)
            if entry is None:
                entry = self._expired[task_id][0]
        except TypeError:
            raise InvalidTypeError(f"task ids are hashable, got {task_id!r}") from None
        except KeyError:
            raise UnknownTaskError(f"no task with id {task_id!r} in the scheduler") from None
        return entry

    def _cost_ahead(self, entry: _Entry) -> float:
        """Total cost of the held tasks ahead of an entry in an index list: O(log n)."""
        if entry[_PRIORITY] <= _CRITICAL:
            return self._critical.cost_before(entry)
        return self._critical.total() + self._front.cost_before(entry)

    def _costs_ahead(self, entry: _Entry) -> Iterator[float]:
        """The costs of the held tasks ahead of an entry in an index list, in queue order."""
        if entry[_PRIORITY] <= _CRITICAL:
            return self._critical.costs_before(entry)
        return chain(self._critical.costs(), self._front.costs_before(entry))

    def _meets(self, entry: _Entry, before: float, now: float) -> bool:
        """Feasibility of ``entry`` with ``before`` seconds of work ahead: bound, else simulate."""
        task = entry[_TASK]
        deadline = task.deadline
        assert deadline is not None
        cost = task.cost
        servers = self._servers
        # start is at most the mean server load W/m (the least loaded server is
        # at most the mean) and at least W/m - c_max: every server's load is at
        # most start + the cost of its last task.
        slack_if_latest = deadline - (now + before / servers + cost)
        slack_if_earliest = slack_if_latest
        if servers > 1:
            slack_if_earliest += min(self._cost_cap, before / servers)
        tolerance = _tolerance(now, before, cost, deadline)
        if slack_if_latest > tolerance:
            return True
        if slack_if_earliest < -tolerance:
            return False
        return self._simulated_start(entry, now) + cost <= deadline

    def _simulated_start(self, entry: _Entry, now: float) -> float:
        """The start time of ``entry`` in the feasibility simulation: O(k log m)."""
        costs = self._costs_ahead(entry)
        if self._servers == 1:
            start = now
            for cost in costs:
                start += cost
            return start
        free = [now] * self._servers
        for cost in costs:
            heapreplace(free, free[0] + cost)
        return free[0]

    def _collect_due(self, now: float) -> None:
        """Move every entry due by ``now`` out of the order, into the expired holding area."""
        taken = [] if self._timers is None else self._timers.pop_until(now)  # out of the index
        for entry in taken:
            self._drop_live(entry)
        if self._deadline_timers and not self._rate:
            taken += self._take_missed(now)
        expired = self._expired
        # Held earliest due first, as expire() returns them and snapshots list them.
        due_of = _due_either if self._deadline_timers else _ttl_expiry
        for due, _, entry in sorted([(due_of(entry), entry[_SEQ], entry) for entry in taken]):
            deadline = entry[_TASK].deadline
            missed = self._deadline_timers and deadline is not None and deadline <= due
            expired[entry[_TASK].id] = (
                entry,
                Reason.DEADLINE_MISSED if missed else Reason.TTL_EXPIRED,
                due,
            )
        if not self._index:
            self._emptied()
        self._next_due = self._first_due()


def _ttl_expiry(entry: _Entry) -> float:
    """When an entry's TTL runs out (the same float each time it is computed)."""
    ttl = entry[_TASK].ttl
    assert ttl is not None  # only entries with a TTL are filed by it
    return entry[_ENQUEUED] + ttl


def _due_either(entry: _Entry) -> float:
    """When an entry falls due by its TTL or its deadline, whichever comes first (the
    deadline on a tie)."""
    deadline = entry[_TASK].deadline
    if entry[_TASK].ttl is None:
        assert deadline is not None  # an entry with neither is not filed
        return deadline
    expires = _ttl_expiry(entry)
    return expires if deadline is None or expires < deadline else deadline


def _after(entry: _Entry, other: _Entry) -> bool:
    """Whether ``entry`` comes after ``other`` in the scheduler's order (CRITICAL list first)."""
    critical = entry[_PRIORITY] <= _CRITICAL
    if critical != (other[_PRIORITY] <= _CRITICAL):
        return not critical
    return entry[:3] > other[:3]


def _tolerance(now: float, before: float, cost: float, deadline: float) -> float:
    return _REL_TOLERANCE * (abs(now) + before + cost + abs(deadline))


def _running_pairs(running: object, now: float, task: Task) -> list[tuple[Task, float]]:
    """Validate ``running`` as ``(Task, start_time)`` pairs with distinct ids, none ``task``'s."""
    try:
        items = list(running)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidTypeError(
            f"running must be a sequence of (Task, start_time) pairs, got {running!r}"
        ) from None
    pairs: list[tuple[Task, float]] = []
    seen = {task.id}
    for item in items:
        try:
            held, start = item
        except (TypeError, ValueError):
            raise InvalidTypeError(
                f"running must hold (Task, start_time) pairs, got {item!r}"
            ) from None
        if not isinstance(held, Task):
            raise InvalidTypeError(f"running must hold (Task, start_time) pairs, got {item!r}")
        start = check_number(start, f"the start time of running task {held.id!r}")
        if start > now:
            raise InvalidArgumentError(
                f"the start time of running task {held.id!r} must not be in the future "
                f"(now is {now!r}), got {start!r}"
            )
        if held.id in seen:
            raise DuplicateTaskError(
                f"task id {held.id!r} appears twice among running and the new task"
            )
        seen.add(held.id)
        pairs.append((held, start))
    return pairs


def _entry_data(entry: _Entry) -> list[Any]:
    return held_data(entry[_SEQ], entry[_ENQUEUED], entry[_TASK])
