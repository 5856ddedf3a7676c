"""DeadlineScheduler: earliest deadline first, with admission control and preemption advice."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence
from heapq import heapreplace
from itertools import chain
from typing import Final, Literal

import attrs

from taskdist._lazy_heap import LazyHeap
from taskdist._validate import check_choice, check_enqueued_at, check_int, check_number
from taskdist.clock import Clock, MonotonicClock
from taskdist.errors import (
    DeadlineError,
    DeadlineInfeasibleError,
    DuplicateTaskError,
    InvalidArgumentError,
    InvalidTypeError,
    QueueFullError,
    TaskStateError,
    UnknownTaskError,
)
from taskdist.metrics import Percentiles, RecentSamples
from taskdist.queues._held import HeldTasks, unpop_refusal
from taskdist.queues._prefix_sorted import PrefixSumSortedList
from taskdist.queues.protocol import OVERFLOW_POLICIES, Eviction, Overflow, Predicate
from taskdist.task import Priority, Reason, Task

__all__ = ["DeadlineScheduler", "DeadlineStats", "OnMiss"]

OnMiss = Literal["run_late", "dead_letter", "reject"]
"""The ``on_miss=`` of :class:`DeadlineScheduler`: what happens to a task that cannot make it."""
_ON_MISS_POLICIES: tuple[OnMiss, ...] = ("run_late", "dead_letter", "reject")

_CRITICAL: Final = int(Priority.CRITICAL)
_INF: Final = math.inf

# A list entry is an immutable tuple whose leading fields are numbers, so
# comparisons stay in C and never reach the task (``seq`` is unique):
#     (time_key, priority, seq, task_id, task, enqueued_at, due or None)
# ``time_key`` is the deadline, or for a task without one its implicit
# deadline (see the class docstring). ``due`` is when expire() takes it: its
# TTL expiry, or its deadline if that is earlier and the policy is not
# run_late. CRITICAL tasks live in their own list, ahead of all others.
_TIME: Final = 0
_PRIORITY: Final = 1
_SEQ: Final = 2
_ID: Final = 3
_TASK: Final = 4
_ENQUEUED: Final = 5
_DUE: Final = 6
_Entry = tuple[float, int, int, Hashable, Task, float, "float | None"]

# The side heaps (timers; costliest task, kept only with several servers) hold
# ``(number, seq, entry)``; an entry is live while ``index[task_id] is entry``
# (lazy deletion, see LazyHeap).
_Side = tuple[float, int, _Entry]
_NEVER: Final = math.inf

# Fast feasibility answers closer than this (relative) to the boundary are
# settled by running the simulation itself, so float rounding in the prefix
# sums never flips an answer.
_REL_TOLERANCE: Final = 1e-9


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
    """Held tasks admitted though infeasible (``run_late``) or whose deadline has passed."""
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
    """Infeasible pushes kept and flagged (``on_miss="run_late"``)."""
    dead_lettered: int
    """Infeasible pushes handed back as ``Eviction`` (``on_miss="dead_letter"``)."""
    rejected: int
    """Infeasible pushes refused with ``DeadlineInfeasibleError`` (``on_miss="reject"``)."""
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
    """Earliest deadline first (EDF), with admission control, TTL and preemption advice.

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

    **Admission control.** A task with a deadline is *feasible* when, in
    the following simulation, it finishes by its deadline: all ``servers``
    are free from ``now``; the held tasks are taken in queue order up to and
    including this one, each placed on the server that is free earliest
    (list scheduling), each taking ``cost`` seconds; no further task
    arrives. Its finish is its server's free time plus its ``cost``, and it
    is feasible iff ``finish <= deadline``. With one server that is
    ``now + (cost of everything ahead) + cost <= deadline``. Running tasks
    are not in the simulation (the scheduler does not see them); lower
    ``servers`` or pad ``cost`` to account for them.

    A push whose task is infeasible follows ``on_miss``:

    - ``"run_late"`` (default): keep it, flag it (:meth:`is_late`), count it;
    - ``"dead_letter"``: return ``Eviction(task, Reason.DEADLINE_INFEASIBLE)``
      and leave the scheduler unchanged;
    - ``"reject"``: raise :class:`~taskdist.errors.DeadlineInfeasibleError`,
      unchanged.

    Admission checks only the pushed task: it may delay tasks behind it past
    their deadlines (:meth:`slack` shows it). A task whose deadline is not
    after ``now`` is refused with :class:`~taskdist.errors.DeadlineError`
    under every policy.

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
    only once the pushed one is admitted, so an infeasible push evicts
    nothing.

    **Complexity** (n tasks held, k = tasks ahead of the one in question,
    m = ``servers``; the ordered index is a
    :class:`~taskdist.queues._prefix_sorted.PrefixSumSortedList` whose
    operations are O(log n) amortised):

    ==========================  ==============================================
    ``push``, ``feasible``      O(log n) with one server. With m > 1, O(log n)
                                when the bound ``W/m - c_max <= start <= W/m``
                                (W = cost ahead, c_max = largest held cost)
                                decides, else O(k log m) for the simulation:
                                only when the slack is within one ``c_max`` of
                                the boundary.
    ``pop()``                   O(log n)
    ``pop(where=p)``            O(k + log n), k = tasks ahead of the result
    ``peek`` / ``peek(where)``  O(1) / O(k)
    ``remove``                  O(log n)
    ``unpop``                   O(log n)
    ``expire``                  O(x log n) for x expired tasks
    ``next_wakeup``             O(1) amortised
    ``slack``                   O(log n) with one server, O(k log m) with more
    ``is_late``                 O(1)
    ``len``, ``in``             O(1)
    ``preemption_candidates``   O(r log r) for r running tasks
    ``stats``                   O(n + w log w) for the wait window w
    ==========================  ==============================================

    >>> from taskdist import ManualClock, Task
    >>> clock = ManualClock()
    >>> edf = DeadlineScheduler(clock, servers=1, on_miss="dead_letter")
    >>> edf.push(Task("report", deadline=10.0, cost=4.0))
    >>> edf.push(Task("alert", deadline=5.0, cost=2.0))
    >>> edf.feasible(Task("summary", deadline=7.0, cost=6.0))  # after "alert": 2 + 6 > 7
    False
    >>> edf.push(Task("summary", deadline=7.0, cost=6.0)).reason
    <Reason.DEADLINE_INFEASIBLE: 'deadline_infeasible'>
    >>> edf.slack("report")  # finishes at 6.0 of 10.0
    4.0
    >>> edf.pop().id, edf.pop().id
    ('alert', 'report')
    """

    __slots__ = (
        "_admitted_late",
        "_clock",
        "_costliest",
        "_critical",
        "_dead_lettered",
        "_deadline_timers",
        "_evicted",
        "_expired",
        "_expired_count",
        "_expired_deadline",
        "_index",
        "_last_pop",
        "_late",
        "_maxsize",
        "_met",
        "_missed",
        "_next_due",
        "_normal",
        "_now",
        "_on_miss",
        "_overflow",
        "_overflowed",
        "_popped",
        "_pushed",
        "_rate",
        "_record_wait",
        "_rejected",
        "_removed",
        "_seq",
        "_servers",
        "_timers",
        "_waits_window",
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
            on_miss: ``"run_late"``, ``"dead_letter"`` or ``"reject"``: what an
                infeasible push does, and whether a deadline passing while a task
                waits expires it (all but ``"run_late"``).
            aging_rate: priority levels a task without a deadline gains per second
                waited (>= 0; 0 = it waits for every deadlined task).
            maxsize: most tasks held at once (>= 1, expired ones included until
                ``expire()`` returns them), or ``None`` for unbounded.
            overflow: ``"reject"`` or ``"drop_lowest"``: what a push onto a full
                scheduler does.
            stats_window: how many recent waits ``stats()`` computes percentiles over.
        """
        if clock is None:
            clock = MonotonicClock()
        elif not callable(getattr(clock, "now", None)):
            raise InvalidTypeError(f"clock must have a now() method, got {clock!r}")
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
        self._critical: PrefixSumSortedList[_Entry] = PrefixSumSortedList()
        self._normal: PrefixSumSortedList[_Entry] = PrefixSumSortedList()
        self._index: dict[Hashable, _Entry] = {}
        # Expired tasks held until expire() returns them, in the order they fell due.
        self._expired: dict[Hashable, tuple[_Entry, Reason]] = {}
        self._timers: LazyHeap[_Side] = LazyHeap(self._index, at=_ID, via=2)
        # At most the earliest due time held (never later), checked before the timers.
        self._next_due = _NEVER
        # (-cost, seq, entry): the largest held cost, for the multi-server bound.
        self._costliest: LazyHeap[_Side] | None = (
            None if servers == 1 else LazyHeap(self._index, at=_ID, via=2)
        )
        self._late: set[Hashable] = set()
        # What the latest pop took (entry, late flag, met deadline or None), while
        # unpop may still put it back.
        self._last_pop: tuple[_Entry, bool, bool | None] | None = None
        self._seq = 0
        self._pushed = self._popped = self._removed = 0
        self._expired_count = self._expired_deadline = 0
        self._met = self._missed = 0
        self._admitted_late = self._dead_lettered = self._rejected = 0
        self._evicted = self._overflowed = 0

    # -- adding -----------------------------------------------------------

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Eviction | None:
        """Add ``task``, or hand it back if it is infeasible under ``"dead_letter"``.

        ``enqueued_at`` (default: now, never later than now) backdates the
        task, so a requeued task keeps its age for aging, TTL and wait
        statistics; its deadline is still checked against now.

        Returns ``None``; ``Eviction(task, Reason.DEADLINE_INFEASIBLE)`` (the
        scheduler unchanged); or, when full with ``overflow="drop_lowest"``,
        ``Eviction(victim, Reason.EVICTED)`` for the least urgent task, which
        may be ``task`` itself (then the scheduler is unchanged).

        Complexity: O(log n) with one server; see the class docstring for more.

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            DuplicateTaskError: a task with this id is already held.
            DeadlineError: the task's deadline is not after now.
            DeadlineInfeasibleError: infeasible, with ``on_miss="reject"``.
            QueueFullError: full, with ``overflow="reject"``.
            InvalidArgumentError: ``enqueued_at`` NaN, infinite or in the future.
        """
        if not isinstance(task, Task):
            raise InvalidTypeError(f"push() takes a Task, got {type(task).__name__} {task!r}")
        task_id = task.id
        index = self._index
        if task_id in index or (self._expired and task_id in self._expired):
            raise DuplicateTaskError(f"a task with id {task_id!r} is already in the scheduler")
        now = self._now()
        enqueued = now if enqueued_at is None else check_enqueued_at(enqueued_at, now)
        deadline = task.deadline
        if deadline is not None and deadline <= now:
            raise DeadlineError(
                f"Task.deadline must be later than now ({now!r}); "
                f"task {task_id!r} has deadline {deadline!r}"
            )
        if self._next_due <= now:
            self._collect_due(now)
        maxsize = self._maxsize
        full = maxsize is not None and len(index) + len(self._expired) >= maxsize
        if full and self._overflow == "reject":
            self._overflowed += 1
            raise QueueFullError(
                f"the scheduler is full ({maxsize} tasks); {task_id!r} was not added"
            )
        entry = self._entry(task, enqueued, self._seq)
        self._seq += 1
        victim = None
        if full:
            # An expired task is never the victim: it is already on its way out.
            victim = self._normal.last() or self._critical.last()
            if victim is None or _after(entry, victim):
                self._overflowed += 1
                return Eviction(task, Reason.EVICTED)
        tasks = self._critical if task.priority <= _CRITICAL else self._normal
        before = tasks.add(entry, task.cost)
        if deadline is not None:
            # The victim, if any, is behind the task: it changes nothing ahead of it.
            if tasks is self._normal:
                before += self._critical.total()
            if not self._meets(entry, before, now):
                eviction = self._infeasible(entry, tasks)
                if eviction is not None:
                    return eviction
        if victim is not None:
            del index[victim[_ID]]
            self._drop_live(victim)
            self._evicted += 1
        index[task_id] = entry
        self._track(entry)
        self._last_pop = None
        self._pushed += 1
        return None if victim is None else Eviction(victim[_TASK], Reason.EVICTED)

    # -- taking -----------------------------------------------------------

    def pop(self, where: Predicate | None = None) -> Task | None:
        """Remove and return the most urgent task (satisfying ``where``), or ``None``.

        Expired tasks are never returned. With ``where``, tasks that fail the
        predicate stay exactly where they are.

        Complexity: O(log n); with ``where``, O(k + log n) where k is the
        number of tasks ahead of the result.
        """
        now = self._now()
        if self._next_due <= now:
            self._collect_due(now)
        if where is None:
            if self._critical:
                entry = self._critical.pop_first()
            elif self._normal:
                entry = self._normal.pop_first()
            else:
                self._last_pop = None
                return None
        else:
            found = self._critical.remove_first_matching(
                lambda entry: where(entry[_TASK])
            ) or self._normal.remove_first_matching(lambda entry: where(entry[_TASK]))
            if found is None:
                self._last_pop = None
                return None
            entry = found
        task_id = entry[_ID]
        del self._index[task_id]
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
        if entry[_DUE] is not None or self._costliest is not None:
            self._maybe_compact()
        return task

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
        """
        if not isinstance(task, Task):
            raise InvalidTypeError(f"unpop() takes a Task, got {type(task).__name__} {task!r}")
        last = self._last_pop
        if last is None or last[0][_TASK] is not task:
            raise TaskStateError(unpop_refusal(task, "scheduler"))
        self._last_pop = None
        entry, late, met = last
        self._list_of(entry).add(entry, task.cost)
        self._index[entry[_ID]] = entry
        if late:
            self._late.add(entry[_ID])
        self._track(entry)
        self._popped -= 1
        self._waits_window.retract()
        if met is not None:
            if met:
                self._met -= 1
            else:
                self._missed -= 1

    def peek(self, where: Predicate | None = None) -> Task | None:
        """The task ``pop(where)`` would return, without removing it.

        Complexity: O(1); with ``where``, O(k) as for ``pop``.
        """
        now = self._now()
        if self._next_due <= now:
            self._collect_due(now)
        if where is None:
            entry = self._critical.first() or self._normal.first()
        else:
            entry = self._critical.find_first_matching(
                lambda entry: where(entry[_TASK])
            ) or self._normal.find_first_matching(lambda entry: where(entry[_TASK]))
        return None if entry is None else entry[_TASK]

    def remove(self, task_id: Hashable) -> Task:
        """Remove the task with this id (cancel it) and return it. O(log n).

        Raises:
            UnknownTaskError: no held task has this id (the scheduler is unchanged).
            InvalidTypeError: ``task_id`` is unhashable.
        """
        entry: _Entry
        held, live = self._take_held(task_id, "scheduler")
        self._last_pop = None
        if live:
            entry = held
            self._drop_live(entry)
        else:
            entry = held[0]  # expired: (entry, reason)
            self._late.discard(task_id)
        self._removed += 1
        return entry[_TASK]

    def release(self, task: Task) -> None:
        """Nothing to do: the scheduler does not track running tasks. O(1)."""

    # -- time -------------------------------------------------------------

    def expire(self) -> list[Task]:
        """Remove and return every task whose TTL ran out or (per policy) whose deadline passed.

        Earliest due first. A returned task with ``task.deadline <=
        now`` missed its deadline; use :meth:`expire_with_reasons` for the
        exact reason. Complexity: O(x log n) for x expired tasks.
        """
        return [eviction.task for eviction in self.expire_with_reasons()]

    def expire_with_reasons(self) -> list[Eviction]:
        """:meth:`expire`, with each task's reason.

        ``Reason.DEADLINE_MISSED`` when its deadline came first (not under
        ``"run_late"``), else ``Reason.TTL_EXPIRED``. Earliest due first.
        Complexity: O(x log n).
        """
        self._collect_due(self._now())
        if not self._expired:
            return []
        # Earliest due first (a backdated push can fall due before tasks collected earlier).
        held = sorted(self._expired.values(), key=lambda item: (item[0][_DUE], item[0][_SEQ]))
        evictions = [Eviction(entry[_TASK], reason) for entry, reason in held]
        self._expired = {}
        self._last_pop = None
        missed = sum(1 for eviction in evictions if eviction.reason is Reason.DEADLINE_MISSED)
        self._expired_count += len(evictions)
        self._expired_deadline += missed
        self._missed += missed
        return evictions

    def next_wakeup(self) -> float | None:
        """When the next held task expires, or ``None``.

        While expired tasks wait for :meth:`expire`, a time already past.
        Call :meth:`expire` once ``clock.now() >= next_wakeup()``.
        Complexity: O(1) amortised.
        """
        timer = self._timers.top()
        wakeup = None if timer is None else timer[0]
        if self._expired:
            # Already past: expire() is due now (the first one held is enough to say so).
            due = next(iter(self._expired.values()))[0][_DUE]
            assert due is not None  # only entries with a due time expire
            wakeup = due if wakeup is None else min(wakeup, due)
        return wakeup

    # -- deadlines --------------------------------------------------------

    def feasible(self, task: Task) -> bool:
        """Whether ``task`` can still meet its deadline (see the class docstring).

        For a task not held: whether it would be feasible if pushed now. For
        a held task (matched by id): whether it is feasible where it stands.
        ``True`` without a deadline; ``False`` once the deadline is not after
        now, and for an expired task waiting to be returned by :meth:`expire`.

        Complexity: O(log n) with one server; with more, O(log n) when the
        bound decides, else O(k log m).

        Raises:
            InvalidTypeError: ``task`` is not a Task.
        """
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
        entry = self._index.get(task.id)
        if entry is None:
            # Where it would go if pushed now, without taking a sequence number.
            entry = self._entry(task, now, self._seq)
        return self._meets(entry, self._cost_ahead(entry), now)

    def slack(self, task_id: Hashable) -> float:
        """Seconds between a held task's predicted finish and its deadline.

        The finish is that of the feasibility simulation (class docstring),
        so ``slack >= 0`` exactly when the task is feasible where it stands;
        negative means it is predicted to miss. ``math.inf`` for a task
        without a deadline; for an expired task waiting to be returned,
        ``deadline - (now + cost)``.

        Complexity: O(log n) with one server, O(k log m) with more.

        Raises:
            UnknownTaskError: no held task has this id.
            InvalidTypeError: ``task_id`` is unhashable.
        """
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
        if self._servers == 1:
            before = self._cost_ahead(entry)
            slack = deadline - (now + before + task.cost)
            if abs(slack) > _tolerance(now, before, task.cost, deadline):
                return slack
        return deadline - (self._simulated_start(entry, now) + task.cost)

    def is_late(self, task_id: Hashable) -> bool:
        """Whether a held task was admitted though infeasible, or its deadline has passed. O(1).

        A task admitted in time may later be predicted to miss because of
        tasks pushed ahead of it: ``slack(task_id) < 0`` tells that.

        Raises:
            UnknownTaskError: no held task has this id.
            InvalidTypeError: ``task_id`` is unhashable.
        """
        deadline = self._held(task_id)[_TASK].deadline
        return task_id in self._late or (deadline is not None and deadline <= self._now())

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
        """Tasks that run in parallel; settable (>= 1) as capacity changes, in O(n) at most."""
        return self._servers

    @servers.setter
    def servers(self, value: int) -> None:
        servers = check_int(value, "servers", minimum=1)
        if servers > 1 and self._costliest is None:
            self._costliest = LazyHeap(self._index, at=_ID, via=2)
            self._costliest.reset(
                [(-entry[_TASK].cost, entry[_SEQ], entry) for entry in self._index.values()]
            )
        elif servers == 1:
            self._costliest = None
        self._servers = servers

    @property
    def on_miss(self) -> OnMiss:
        """What an infeasible push does: ``"run_late"``, ``"dead_letter"`` or ``"reject"``."""
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
        held = [*self._index.values(), *(entry for entry, _ in self._expired.values())]
        late = self._late
        return DeadlineStats(
            depth=len(held),
            critical=sum(1 for entry in held if entry[_PRIORITY] <= _CRITICAL),
            late=sum(
                1
                for entry in held
                if entry[_ID] in late
                or (entry[_TASK].deadline is not None and entry[_TASK].deadline <= now)
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

    # -- internals --------------------------------------------------------

    def _entry(self, task: Task, enqueued: float, seq: int) -> _Entry:
        deadline = task.deadline
        priority = task.priority
        if deadline is not None:
            time_key = deadline
        elif self._rate and priority > _CRITICAL:
            time_key = enqueued + (priority - _CRITICAL) / self._rate
        else:
            time_key = _INF
        ttl = task.ttl
        due = None if ttl is None else enqueued + ttl
        if deadline is not None and self._deadline_timers and (due is None or deadline <= due):
            due = deadline
        return (time_key, priority, seq, task.id, task, enqueued, due)

    def _track(self, entry: _Entry) -> None:
        """File a held entry in the side heaps it belongs in (timers; largest costs)."""
        due = entry[_DUE]
        if due is not None:
            self._timers.push((due, entry[_SEQ], entry))
            if due < self._next_due:
                self._next_due = due
        if self._costliest is not None:
            self._costliest.push((-entry[_TASK].cost, entry[_SEQ], entry))

    def _drop_live(self, entry: _Entry) -> None:
        """Take a live entry, already out of the index, off its list; its timers go lazily."""
        self._list_of(entry).remove(entry)
        self._late.discard(entry[_ID])
        self._maybe_compact()

    def _list_of(self, entry: _Entry) -> PrefixSumSortedList[_Entry]:
        return self._critical if entry[_PRIORITY] <= _CRITICAL else self._normal

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
        """Total cost of the held tasks ahead of ``entry`` (held or not): O(log n)."""
        if entry[_PRIORITY] <= _CRITICAL:
            return self._critical.cost_before(entry)
        return self._critical.total() + self._normal.cost_before(entry)

    def _costs_ahead(self, entry: _Entry) -> Iterator[float]:
        """The costs of the held tasks ahead of ``entry``, in queue order."""
        if entry[_PRIORITY] <= _CRITICAL:
            return self._critical.costs_before(entry)
        return chain(self._critical.costs(), self._normal.costs_before(entry))

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
            slack_if_earliest += min(self._max_cost(), before / servers)
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

    def _max_cost(self) -> float:
        heap = self._costliest
        assert heap is not None
        top = heap.top()
        return 0.0 if top is None else -top[0]

    def _infeasible(self, entry: _Entry, tasks: PrefixSumSortedList[_Entry]) -> Eviction | None:
        """Apply ``on_miss`` to an infeasible entry already in ``tasks``: keep it or take it out."""
        task = entry[_TASK]
        if self._on_miss == "run_late":
            self._late.add(task.id)
            self._admitted_late += 1
            return None
        tasks.remove(entry)
        if self._on_miss == "reject":
            self._rejected += 1
            raise DeadlineInfeasibleError(
                f"task {task.id!r} cannot meet its deadline {task.deadline!r}: with the work "
                f"ahead of it on {self._servers} server(s) it would finish later "
                f"(on_miss='reject'; the scheduler is unchanged)"
            )
        self._dead_lettered += 1
        return Eviction(task, Reason.DEADLINE_INFEASIBLE)

    def _collect_due(self, now: float) -> None:
        """Move every entry due by ``now`` out of the order, into the expired holding area."""
        timers = self._timers
        expired = self._expired
        for due, _, entry in timers.pop_until(now):  # out of the index too
            task_id = entry[_ID]
            self._list_of(entry).remove(entry)
            self._late.discard(task_id)
            deadline = entry[_TASK].deadline
            missed = self._deadline_timers and deadline is not None and deadline <= due
            expired[task_id] = (entry, Reason.DEADLINE_MISSED if missed else Reason.TTL_EXPIRED)
        timer = timers.top()
        self._next_due = _NEVER if timer is None else timer[0]
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        """Drop dead entries from the side heaps once they outnumber live ones (amortised O(1))."""
        self._timers.compact()
        if self._costliest is not None:
            self._costliest.compact()


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
