"""PriorityQueue: a binary heap with O(log n) aging, TTL, cancellation and bounds."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from heapq import heappop, heappush
from typing import Any, Final

import attrs

from taskdist._lazy_heap import Expiries, LazyHeap, LazyMaxHeap
from taskdist._snapshot import check_header, header, refuse
from taskdist._validate import check_choice, check_enqueued_at, check_int, check_number
from taskdist.clock import Clock, check_clock
from taskdist.errors import (
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
from taskdist.queues.protocol import OVERFLOW_POLICIES, Eviction, Overflow, Predicate
from taskdist.task import Reason, Task

__all__ = ["PriorityQueue", "QueueStats"]


# A heap entry is an immutable tuple whose leading fields are numbers, so
# comparisons stay in C and never reach the task (``(enqueued_at, seq)`` is
# unique):
#     (key, enqueued_at, seq, task)
# so equal keys go oldest first (a task put back with its original enqueued_at
# keeps its place among younger ones), then in push order. ``seq`` is the
# shared _FRESH for a task enqueued later than every task before it (a push
# as time goes on: its time alone orders it), else the next number of a
# counter, so equal times go in push order without a float per task.
# An entry is live while ``index[task.id] is entry`` (the id is read from the
# task, not kept in a field of its own: 8 bytes a task); any other entry still in
# a heap is dead (popped, removed, expired, evicted) and is skipped (lazy
# deletion, see LazyHeap). TTL expiries are filed in Expiries; the least-urgent
# entries come first in a LazyMaxHeap of the same entries.
_KEY: Final = 0
_ENQUEUED: Final = 1
_SEQ: Final = 2
_TASK: Final = 3
_Entry = tuple[float, float, float, Task]
_NEVER: Final = math.inf
# What a queue has counted, as its snapshot lists it.
_COUNTERS: Final = (
    "_popped",
    "_removed",
    "_expired_count",
    "_evicted",
    "_evicted_arrivals",
    "_rejected",
)
# The seq of a task enqueued later than every task before it (see above).
_FRESH: Final = 0.0
# The latest enqueue time of a queue that took no task yet (one float every queue shares).
_NO_STAMP: Final = -math.inf
# The empty holding area of expired tasks every queue starts with; never filled (a queue
# makes one of its own before it files an expired task).
_NONE_EXPIRED: Final[dict[Hashable, Any]] = {}
# With aging, priorities beyond this are refused: the aged key is a float, exact up to 2**53.
_MAX_AGED_PRIORITY: Final = 2**53


def aged_rank(task: Task, enqueued_at: float, rate: float) -> tuple[float, float]:
    """The rank of ``task`` in a ``PriorityQueue`` aging at ``rate``, had it been pushed
    with ``enqueued_at``: ``(aged priority, enqueued_at)``. O(1).

    Raises:
        InvalidTypeError: ``task`` is not a Task, ``enqueued_at`` not a number.
        InvalidArgumentError: ``enqueued_at`` NaN or infinite; with aging, a priority
            beyond ``+-2**53``.
    """
    if not isinstance(task, Task):
        raise InvalidTypeError(f"rank() takes a Task, got {type(task).__name__} {task!r}")
    if type(enqueued_at) is not float or not math.isfinite(enqueued_at):
        enqueued_at = check_number(enqueued_at, "enqueued_at")
    priority = task.priority
    if rate:
        if not -_MAX_AGED_PRIORITY <= priority <= _MAX_AGED_PRIORITY:
            raise _unaged(task)
        return (priority + rate * enqueued_at, enqueued_at)
    return (priority, enqueued_at)


def _unaged(task: Task) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"with aging_rate > 0 a priority must be within +-2**53 (its aged key is "
        f"a float); task {task.id!r} has {task.priority!r}"
    )


def _expires(entry: _Entry) -> float:
    """When an entry with a TTL expires (the same float each time it is computed)."""
    ttl = entry[_TASK].ttl
    assert ttl is not None  # only entries with a ttl ever expire
    return entry[_ENQUEUED] + ttl


def _written_seqs(entries: list[_Entry]) -> tuple[Callable[[_Entry], float], float]:
    """How a snapshot writes the entries' sequence numbers, and the ``next_seq`` after them.

    Only their order among entries enqueued at the same time counts, so each is
    written as its rank there (0 for a time no other entry shares): two queues
    holding the same tasks in the same order write the same snapshot, whatever
    their counters and the tasks that left them.
    """
    by_time: dict[float, list[float]] = {}
    for entry in entries:
        by_time.setdefault(entry[_ENQUEUED], []).append(entry[_SEQ])
    ranks = {
        (enqueued, seq): float(rank)
        for enqueued, seqs in by_time.items()
        if len(seqs) > 1
        for rank, seq in enumerate(sorted(seqs))
    }
    following = float(max(map(len, by_time.values()), default=1))

    def written(entry: _Entry) -> float:
        return ranks.get((entry[_ENQUEUED], entry[_SEQ]), 0.0)

    return written, following


def _expiry_order(entry: _Entry) -> tuple[float, float, float]:
    # Equal expiries go oldest first, then in push order, as equal keys do.
    return _expires(entry), entry[_ENQUEUED], entry[_SEQ]


@attrs.frozen
class QueueStats:
    """A snapshot of a queue: what it holds now and what it has done."""

    depth: int
    """Tasks held now (including expired ones that ``expire()`` has not yet returned)."""
    by_priority: dict[int, int]
    """Tasks held now per base priority."""
    oldest_age: float
    """Seconds the oldest held task has waited (0 when empty)."""
    wait: Percentiles
    """Wait time (push to pop) of the most recently popped tasks."""
    pushed: int
    popped: int
    removed: int
    expired: int
    evicted: int
    rejected: int
    """Pushes refused with ``QueueFullError``."""


class PriorityQueue(HeldTasks):
    """A priority queue of :class:`~taskdist.task.Task` with aging, TTL and a size bound.

    **Order.** Lower priority number = more urgent; among equal effective
    priority, the earliest ``enqueued_at`` first (a task pushed back with its
    original ``enqueued_at`` keeps its place), then first pushed first out.
    With ``aging_rate=r`` a task's *effective priority* falls by ``r`` per second waited::

        effective(t, now) = t.priority - r * (now - enqueued_at)

    Ordering by that is ordering by the time-invariant key ``priority + r *
    enqueued_at`` (the ``-r * now`` term is shared by every task), so the heap
    is keyed once at push and every task ages with no rescans. ``r = 0``
    means no aging.

    **Starvation bound.** Let ``p_min`` be the smallest priority ever pushed.
    A task T of priority ``p`` pushed at ``t0`` is popped (by plain ``pop()``)
    before any task pushed after it at a time ``>= t0 + (p - p_min) / r``: such
    a task's key is at least ``p_min + r * t0 + (p - p_min) = key(T)`` and it
    came later, so FIFO settles a tie. Hence T waits at most ``(p - p_min) / r``
    plus the time to drain the tasks that were ahead of it at that instant
    (pushed before it, or during those ``(p - p_min) / r`` seconds with a
    smaller key).

    **TTL.** A task with ``ttl`` expires at ``enqueued_at + ttl`` (due when
    ``now >= `` that time). An expired task is never popped or peeked; it
    stays counted in ``len`` and ``in`` until :meth:`expire` returns it, so
    nothing is lost. :meth:`next_wakeup` says when the next one expires.

    **Bound.** With ``maxsize``, a push onto a full queue either raises
    :class:`~taskdist.errors.QueueFullError` (``overflow="reject"``, queue
    unchanged) or evicts the least urgent task, which may be the one being
    pushed (``overflow="drop_lowest"``), and returns it as an
    :class:`~taskdist.queues.Eviction`.

    **Numbers.** Without aging any int priority is taken and compared
    exactly (a priority beyond the float range reads as ``±inf`` in
    :meth:`effective_priority`). With ``aging_rate > 0`` the key is a float,
    so a priority must lie within ``±2**53`` (where floats are exact);
    outside, push raises :class:`~taskdist.errors.InvalidArgumentError`.

    **Callbacks and threads.** A ``where=`` predicate may look at the queue
    (``len``, ``in``, :meth:`effective_priority`, :meth:`stats`); any other
    call from inside it (push, pop, peek, remove, unpop, expire,
    next_wakeup) is refused with :class:`~taskdist.errors.ReentrancyError`
    and changes nothing, and the refusal propagates out of the outer call,
    which changes nothing either. A ``where=`` that is not callable is an
    :class:`~taskdist.errors.InvalidTypeError`. A queue is not safe to share
    between threads: a host with threads wraps the composition in
    ``taskdist.threaded.ThreadSafeDistributor``, or holds its own lock
    around every call.

    **Complexity** (n = tasks held):

    ==========================  ==============================================
    ``push``                    O(log n)
    ``pop()``                   O(log n) amortised (lazy deletion)
    ``pop(where=p)``            O(k log k), k = entries more urgent than the
                                result (a best-first walk of the heap: tasks
                                that fail ``p`` are not moved)
    ``peek`` / ``peek(where)``  O(1) amortised / O(k log k)
    ``remove``                  O(1) amortised (lazy deletion; dead entries
                                are compacted once they outnumber live ones)
    ``unpop``                   O(log n)
    ``expire``                  O(m log n) for m expired tasks
    ``expire_with_reasons``     as ``expire``
    ``next_wakeup``             O(1) amortised (plus O(m) while m expired
                                tasks wait for ``expire()``)
    ``effective_priority``      O(1)
    ``len``, ``in``             O(1)
    ``stats``                   O(n + w log w) for the wait window w (depth
                                per priority is counted, not maintained, to
                                keep push and pop lean)
    ==========================  ==============================================

    >>> from taskdist import ManualClock, Task
    >>> clock = ManualClock()
    >>> q = PriorityQueue(clock, aging_rate=0.1)
    >>> q.push(Task("low", priority=3))
    >>> clock.advance(5.0)
    5.0
    >>> q.push(Task("high", priority=1))
    >>> q.effective_priority("low")
    2.5
    >>> q.pop().id, q.pop().id
    ('high', 'low')
    """

    __slots__ = (
        "_clean",
        "_clock",
        "_evicted",
        "_evicted_arrivals",
        "_expired",
        "_expired_count",
        "_expiry",
        "_heap",
        "_index",
        "_last_pop",
        "_limit",
        "_lowest",
        "_maxsize",
        "_monotone",
        "_next_expiry",
        "_now",
        "_order",
        "_overflow",
        "_popped",
        "_rate",
        "_record_wait",
        "_rejected",
        "_removed",
        "_seq",
        "_side_heaps",
        "_stamp",
        "_stats_window",
        "_stored",
        "_waits_window",
        "_walking",
    )

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        aging_rate: float = 0.0,
        maxsize: int | None = None,
        overflow: Overflow = "reject",
        stats_window: int = 10_000,
    ) -> None:
        """
        Args:
            clock: where time comes from (default: :class:`MonotonicClock`).
            aging_rate: priority levels gained per second waited (>= 0; 0 = no aging).
            maxsize: most tasks held at once (>= 1), or ``None`` for unbounded.
            overflow: ``"reject"`` or ``"drop_lowest"``, what a full queue does.
            stats_window: how many recent waits ``stats()`` computes percentiles over.
        """
        clock = check_clock(clock)
        rate = check_number(aging_rate, "aging_rate", minimum=0.0)
        if maxsize is not None:
            maxsize = check_int(maxsize, "maxsize", minimum=1)
        policy = check_choice(overflow, "overflow", OVERFLOW_POLICIES)
        self._stats_window = check_int(stats_window, "stats_window", minimum=1)
        # Made at the first pop: an empty window's deque is most of an empty
        # queue's memory (a FairScheduler holds one queue per tenant).
        self._waits_window: RecentSamples | None = None
        # Records a wait: None until the first pop makes the window (a bound method
        # here would cost every queue of a FairScheduler's tenants 64 bytes).
        self._record_wait: Callable[[float], None] | None = None
        self._clock = clock
        self._now = clock.now
        self._rate = rate
        self._maxsize = maxsize
        # The size at which push takes its slow path: maxsize, or 0 during a where= walk.
        self._limit = maxsize
        self._overflow = policy
        self._index: dict[Hashable, _Entry] = {}
        self._order: LazyHeap[_Entry]
        # TTL expiries, made at the first task with a TTL (most queues never see one).
        self._expiry: Expiries[_Entry] | None
        self._index_in({})
        # Whether every entry in the order heap is live (then pop needs no checks).
        self._clean = True
        # Expired tasks held until expire() returns them. Most queues never hold one:
        # they share one empty area until they do (_collect_expired makes its own).
        self._expired: dict[Hashable, _Entry] = _NONE_EXPIRED
        # At most the earliest expiry held (never later): pop and peek check it
        # before looking at the expiries.
        self._next_expiry = _NEVER
        # Least-urgent-first heap, kept only for overflow="drop_lowest".
        self._lowest: LazyMaxHeap[_Entry] | None = (
            LazyMaxHeap(self._index, at=_TASK, task=True)
            if maxsize is not None and policy == "drop_lowest"
            else None
        )
        # Whether a side heap may hold entries (a TTL was seen, or drop_lowest).
        self._side_heaps = self._lowest is not None
        # Floats, not ints: 4 bytes less per entry, exact up to 2**53 pushes. From
        # 1: _FRESH (0) is every fresh task's; made at the first push that needs one
        # (a FairScheduler holds a queue per tenant). _stamp: the latest enqueue time yet.
        self._seq: Iterator[float] | None = None
        self._stamp = _NO_STAMP
        # Whether the index's insertion order is enqueue order (no backdating).
        self._monotone = True
        # The entry the latest pop took, while unpop may still put it back.
        self._last_pop: _Entry | None = None
        # Set while a where= predicate runs: any call back in is refused.
        self._walking = False
        self._popped = self._removed = self._expired_count = 0
        self._evicted = self._evicted_arrivals = self._rejected = 0
        # Tasks taken in (not counting unpop): with the counters above, what is held.
        self._stored = 0

    # -- adding -----------------------------------------------------------

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Eviction | None:
        """Add ``task``; O(log n).

        ``enqueued_at`` (default: now, never later than now) backdates the
        task, so a requeued task keeps its age for aging and TTL.

        Returns ``None``, or an :class:`Eviction` when the queue was full with
        ``overflow="drop_lowest"`` (the evicted task may be ``task`` itself).

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            DuplicateTaskError: a task with this id is already held.
            QueueFullError: full, with ``overflow="reject"``.
            InvalidArgumentError: ``enqueued_at`` NaN, infinite or in the future; with
                aging, a priority beyond ``±2**53``.
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        # (A push from inside a where= walk finds _limit at 0: _push_full refuses it.)
        if task.__class__ is not Task and not isinstance(task, Task):
            raise InvalidTypeError(f"push() takes a Task, got {type(task).__name__} {task!r}")
        task_id = task.id
        index = self._index
        if task_id in index or (self._expired and task_id in self._expired):
            raise self._duplicate(task_id)
        now = self._now()
        enqueued = now if enqueued_at is None else self._backdate(enqueued_at, now)
        priority = task.priority
        if self._rate:
            if not -_MAX_AGED_PRIORITY <= priority <= _MAX_AGED_PRIORITY:
                raise self._unaged(task)
            key = priority + self._rate * enqueued
        else:
            key = priority
        if enqueued > self._stamp:
            # Later than every task before it: its time alone orders it.
            self._stamp = enqueued
            entry = (key, enqueued, _FRESH, task)
        else:
            seq = self._seq
            if seq is None:
                seq = self._seq = itertools.count(1.0)
            entry = (key, enqueued, next(seq), task)
        if self._limit is not None and len(index) + len(self._expired) >= self._limit:
            return self._push_full(entry, now)
        heappush(self._heap, entry)
        index[task_id] = entry
        self._stored += 1
        self._last_pop = None
        if task.ttl is not None or self._lowest is not None:
            self._track(entry)
        return None

    def rank(self, task: Task, enqueued_at: float) -> tuple[float, float]:
        """The key this queue orders ``task`` by, had it been pushed with ``enqueued_at``:
        ``(aged priority, enqueued_at)``, smaller first, equal keys in push order.
        Changes nothing. O(1).

        Raises:
            InvalidTypeError: ``task`` is not a Task, ``enqueued_at`` not a number.
            InvalidArgumentError: ``enqueued_at`` NaN or infinite; with aging, a
                priority beyond ``+-2**53``.
        """
        return aged_rank(task, enqueued_at, self._rate)

    def check_push(self, task: Task) -> None:
        """Raise what :meth:`push` would raise to refuse ``task`` now, and change nothing
        (its counters included). O(1).

        A task it does not refuse, ``push`` takes (when full with
        ``overflow="drop_lowest"``, handing back an eviction).

        Raises:
            InvalidTypeError, DuplicateTaskError, QueueFullError, InvalidArgumentError,
            ReentrancyError: as :meth:`push` would.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("check_push", "queue"))
        if not isinstance(task, Task):
            raise InvalidTypeError(f"check_push() takes a Task, got {type(task).__name__} {task!r}")
        task_id = task.id
        if task_id in self._index or (self._expired and task_id in self._expired):
            raise self._duplicate(task_id)
        if self._rate and not -_MAX_AGED_PRIORITY <= task.priority <= _MAX_AGED_PRIORITY:
            raise self._unaged(task)
        limit = self._limit
        if limit is not None and self._lowest is None and len(self) >= limit:
            raise self._full(task)

    def _duplicate(self, task_id: Hashable) -> DuplicateTaskError:
        return DuplicateTaskError(f"a task with id {task_id!r} is already in the queue")

    def _unaged(self, task: Task) -> InvalidArgumentError:
        return _unaged(task)

    def _full(self, task: Task) -> QueueFullError:
        return QueueFullError(
            f"the queue is full ({self._maxsize} tasks); {task.id!r} was not added"
        )

    def unpop(self, task: Task) -> None:
        """Put back the task the latest :meth:`pop` returned, exactly as it was. O(log n).

        Valid only while nothing else has changed the queue since that pop
        (a push, another pop, a remove, an ``expire()`` that returned tasks).
        The task gets back its place (same key and sequence number, so the
        same order), its age and its TTL; the pop's wait sample and count are
        taken back. A composition uses it to put back a task it popped and
        then could not place.

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            TaskStateError: ``task`` is not what the latest pop returned, or the
                queue changed since (nothing changes).
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("unpop", "queue"))
        if not isinstance(task, Task):
            raise InvalidTypeError(f"unpop() takes a Task, got {type(task).__name__} {task!r}")
        entry = self._last_pop
        if entry is None or entry[_TASK] is not task:
            raise TaskStateError(unpop_refusal(task, "queue"))
        self._last_pop = None
        # A pop(where=...) may have left the old entry in the heaps, dead; a new tuple
        # of the same fields keeps it dead (entries are live by identity).
        entry = (*entry,)
        newest = self._newest_enqueued()
        if newest is not None and newest > entry[_ENQUEUED]:
            self._monotone = False  # it goes back in behind newer tasks
        heappush(self._heap, entry)
        self._index[entry[_TASK].id] = entry
        if task.ttl is not None or self._lowest is not None:
            self._track(entry)
        self._popped -= 1
        assert self._waits_window is not None  # made by the pop being undone
        self._waits_window.retract()

    # -- taking -----------------------------------------------------------

    def pop(self, where: Predicate | None = None) -> Task | None:
        """Remove and return the most urgent task (satisfying ``where``), or ``None``.

        Expired tasks are never returned. With ``where``, tasks that fail the
        predicate stay exactly where they are.

        Complexity: O(log n) amortised; with ``where``, O(k log k) where k is
        the number of entries more urgent than the result.

        Raises:
            InvalidTypeError: ``where`` is not callable.
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        # (From inside a where= walk, _next_expiry is -inf: _collect_expired refuses it.)
        now = self._now()
        if self._next_expiry <= now:
            self._collect_expired(now, "pop")
        if where is None:
            if self._clean:
                # No dead entry in the heap: its top is the answer, at C speed.
                try:
                    entry = heappop(self._heap)
                except IndexError:  # empty
                    self._last_pop = None
                    return None
                del self._index[entry[_TASK].id]
            else:
                found = self._order.pop()  # out of the index too
                if found is None:
                    self._clean = True  # empty
                    self._last_pop = None
                    return None
                entry = found
            self._popped += 1
        else:
            found = self._find(where)
            if found is None:
                self._last_pop = None
                return None
            entry = found
            del self._index[entry[_TASK].id]
            self._popped += 1  # counted before a compaction weighs what is left
            if not self._order.drop_top(entry):
                self._clean = False  # a match below the top stays there, dead
                self._compact_order()
        self._last_pop = entry
        record_wait = self._record_wait
        if record_wait is None:
            record_wait = self._first_wait()
        record_wait(now - entry[_ENQUEUED])
        if self._side_heaps:
            # They keep the popped entry as a dead one until compacted.
            self._compact_sides()
        return entry[_TASK]

    def peek(self, where: Predicate | None = None) -> Task | None:
        """The task ``pop(where)`` would return, without removing it.

        Complexity: O(1) amortised; with ``where``, O(k log k) as for ``pop``.

        Raises:
            InvalidTypeError: ``where`` is not callable.
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("peek", "queue"))
        now = self._now()
        if self._next_expiry <= now:
            self._collect_expired(now, "peek")
        found = self._order.top() if where is None else self._find(where)
        return None if found is None else found[_TASK]

    def remove(self, task_id: Hashable) -> Task:
        """Remove the task with this id (cancel it) and return it. O(1) amortised.

        Raises:
            UnknownTaskError: no held task has this id (the queue is unchanged).
            InvalidTypeError: ``task_id`` is unhashable.
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("remove", "queue"))
        entry: _Entry
        entry, live = self._take_held(task_id, "queue")
        self._last_pop = None
        self._removed += 1  # counted before a compaction weighs what is left
        if live:
            self._clean = False  # its entry stays in the heap, dead
            self._maybe_compact()
        return entry[_TASK]

    # -- time -------------------------------------------------------------

    def expire(self) -> list[Task]:
        """Remove and return every task whose TTL has run out, earliest expiry first
        (equal expiries oldest first, then in push order).

        Complexity: O(m log n) for m expired tasks.
        """
        return [task for _, task in self._expire_timed()]

    def expire_with_reasons(self) -> list[Eviction]:
        """:meth:`expire`, each task with its reason: ``Reason.TTL_EXPIRED``, since a
        priority queue holds a task past its deadline (a distributor told the reason
        so does not guess it from a deadline that also passed). O(m log n).
        """
        return [Eviction(task, Reason.TTL_EXPIRED) for _, task in self._expire_timed()]

    def _expire_timed(self) -> list[tuple[float, Task]]:
        """:meth:`expire`, each task with its expiry time: for a scheduler holding this
        queue, which then keeps no expiry of its own per task."""
        if self._walking:
            raise ReentrancyError(reentry_refusal("expire", "queue"))
        self._collect_expired(self._now())
        if not self._expired:
            return []
        return [(_expires(entry), entry[_TASK]) for entry in self._take_expired(_expiry_order)]

    def _expiry_of(self, task_id: Hashable) -> float | None:
        """When the held task ``task_id`` expires (``None``: no TTL), for a scheduler
        holding this queue. O(1).

        Raises:
            KeyError: no held task has this id.
        """
        entry = self._held_entry(task_id)
        return None if entry[_TASK].ttl is None else _expires(entry)

    def next_wakeup(self) -> float | None:
        """When the next held task expires (possibly already past), or ``None``.

        Call :meth:`expire` once ``clock.now() >= next_wakeup()``.
        Complexity: O(1) amortised, plus O(m) while m expired tasks wait for
        :meth:`expire`.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("next_wakeup", "queue"))
        first = _NEVER if self._expiry is None else self._expiry.first()
        wakeup = None if first == _NEVER else first
        if self._expired:
            # Usually a handful: expire() is due now anyway.
            held = min(_expires(entry) for entry in self._expired.values())
            wakeup = held if wakeup is None else min(wakeup, held)
        return wakeup

    def effective_priority(self, task_id: Hashable) -> float:
        """``priority - aging_rate * seconds waited`` for a held task. O(1).

        Raises:
            UnknownTaskError: no held task has this id.
        """
        try:
            entry = self._held_entry(task_id)
        except TypeError:
            raise InvalidTypeError(f"task ids are hashable, got {task_id!r}") from None
        except KeyError:
            raise UnknownTaskError(f"no task with id {task_id!r} in the queue") from None
        priority = entry[_TASK].priority
        if not self._rate:
            try:
                return float(priority)
            except OverflowError:  # an int beyond the float range
                return math.inf if priority > 0 else -math.inf
        waited = self._now() - entry[_ENQUEUED]
        return float(priority - self._rate * waited)

    # -- looking ----------------------------------------------------------

    @property
    def maxsize(self) -> int | None:
        """Most tasks held at once, or ``None`` for unbounded."""
        return self._maxsize

    @property
    def aging_rate(self) -> float:
        """Priority levels gained per second waited."""
        return self._rate

    def stats(self) -> QueueStats:
        """A snapshot: depth, depth per priority, oldest age, wait percentiles, counters."""
        now = self._now()
        depth = len(self)
        return QueueStats(
            depth=depth,
            by_priority=dict(
                Counter(
                    entry[_TASK].priority
                    for entries in (self._live_entries(), self._expired.values())
                    for entry in entries
                )
            ),
            oldest_age=max(0.0, now - self._oldest_enqueued()) if depth else 0.0,
            wait=(self._waits_window or RecentSamples(1)).percentiles(),
            pushed=self._stored,
            popped=self._popped,
            removed=self._removed,
            expired=self._expired_count,
            evicted=self._evicted,
            rejected=self._rejected,
        )

    def __repr__(self) -> str:
        return (
            f"PriorityQueue(len={len(self)}, aging_rate={self._rate!r}, "
            f"maxsize={self._maxsize!r}, overflow={self._overflow!r})"
        )

    # -- persistence ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the queue holds and has counted, as plain data. O(n), plus
        O(g log g) for each g tasks sharing one enqueue time.

        Each task keeps its place: its enqueue time (its age and TTL), its
        sequence number (the FIFO tie-break among tasks enqueued at the same
        time, written as its rank there) and, through them, its aged key.
        :meth:`load_snapshot` on an empty queue of the same configuration
        takes it back; see ``docs/persistence.md``.

        Raises:
            SnapshotError: a task whose id, tenant, key or group a snapshot cannot carry.
        """
        held = self._live_entries()
        expired = list(self._expired.values())
        written, following = _written_seqs([*held, *expired])
        return {
            **header("PriorityQueue"),
            "aging_rate": self._rate,
            "maxsize": self._maxsize,
            "overflow": self._overflow,
            "held": [held_data(written(entry), entry[_ENQUEUED], entry[_TASK]) for entry in held],
            "expired": [
                held_data(written(entry), entry[_ENQUEUED], entry[_TASK]) for entry in expired
            ],
            "next_seq": following,
            "monotone": self._monotone,
            "counts": [getattr(self, name) for name in _COUNTERS],
            "waits": None if self._waits_window is None else self._waits_window.snapshot(),
        }

    def load_snapshot(self, data: object) -> None:
        """Take on the state :meth:`snapshot` wrote: same tasks, order, ages and counts.

        The queue must be empty and configured as the one snapshotted
        (``aging_rate``, ``maxsize``, ``overflow``, ``stats_window``). O(n log n).

        Raises:
            SnapshotError: an unknown format version, a missing or ill-typed field,
                another configuration, or a non-empty queue (nothing changes).
        """
        self._prepare_snapshot(data, "queue")[0]()

    def _prepare_snapshot(
        self, data: object, where: str
    ) -> tuple[Callable[[], None], dict[Hashable, Task]]:
        """Check ``data`` whole; return what loads it (it cannot fail) and the tasks it
        holds, by id (the very objects it will hold)."""
        fields = check_header(data, "PriorityQueue", where)
        if len(self) or self._popped or self._removed:
            refuse(where, "can be loaded only into a new, empty PriorityQueue")
        for name, mine in (
            ("aging_rate", self._rate),
            ("maxsize", self._maxsize),
            ("overflow", self._overflow),
        ):
            fields.same(name, mine, "queue")
        following = fields.number("next_seq")
        held = [
            self._entry(item, f"{where}.held[{i}]", following)
            for i, item in enumerate(fields.items("held"))
        ]
        expired = [
            self._entry(item, f"{where}.expired[{i}]", following)
            for i, item in enumerate(fields.items("expired"))
        ]
        ids = {entry[_TASK].id: entry[_TASK] for entry in (*held, *expired)}
        places = {entry[_ENQUEUED:_TASK] for entry in held} | {
            entry[_ENQUEUED:_TASK] for entry in expired
        }
        if len(ids) != len(held) + len(expired) or len(places) != len(ids):
            refuse(where, "holds a task id, or an enqueue time and sequence number, twice")
        if self._maxsize is not None and len(ids) > self._maxsize:
            refuse(where, f"holds {len(ids)} tasks, more than maxsize {self._maxsize}")
        stamp = max((entry[_ENQUEUED] for entry in (*held, *expired)), default=-_NEVER)
        monotone = fields.boolean("monotone")
        counts = fields.counts("counts", len(_COUNTERS))
        waits_data = fields.value("waits")
        window = None
        load_waits = None
        if waits_data is not None:
            window = RecentSamples(self._stats_window)
            load_waits = window._prepare_snapshot(waits_data, f"{where}.waits")
        fields.done()

        def load() -> None:
            for entry in held:
                heappush(self._heap, entry)
                self._index[entry[_TASK].id] = entry
                if entry[_TASK].ttl is not None or self._lowest is not None:
                    self._track(entry)
            self._expired = {entry[_TASK].id: entry for entry in expired}
            # Held, popped, removed, expired, evicted, less the arrivals evicted at once.
            self._stored = len(held) + len(expired) + sum(counts[:4]) - counts[4]
            self._seq = itertools.count(max(following, 1.0))
            self._stamp = stamp
            self._monotone = monotone
            for name, count in zip(_COUNTERS, counts, strict=True):
                setattr(self, name, count)
            if window is not None and load_waits is not None:
                load_waits()
                self._waits_window = window
                self._record_wait = window.appender()

        return load, ids

    def _entry(self, data: object, where: str, following: float) -> _Entry:
        """A heap entry from its snapshot ``[seq, enqueued_at, task]``, its key worked out
        as push works it out."""
        seq, enqueued, task = read_held(data, where, following)
        priority = task.priority
        if self._rate:
            if not -_MAX_AGED_PRIORITY <= priority <= _MAX_AGED_PRIORITY:
                refuse(f"{where}.task", "has a priority beyond +-2**53, which aging refuses")
            key: float = priority + self._rate * enqueued
        else:
            key = priority
        return (key, enqueued, seq, task)

    # -- internals --------------------------------------------------------

    def _index_in(self, index: dict[Hashable, Any]) -> None:
        """Keep the live entries in ``index`` (empty so far), with the heaps over it."""
        self._index = index
        self._order = LazyHeap(index, at=_TASK, task=True)
        # The order's entry list: push and the clean pop call heapq on it directly, the
        # hot path's one C-level call (a bound partial per queue would cost 384 bytes).
        self._heap = self._order.entries
        self._expiry = None

    def _first_wait(self) -> Callable[[float], None]:
        """Make the window of recent waits at the first pop; what records a wait."""
        self._waits_window = window = RecentSamples(self._stats_window)
        record = self._record_wait = window.appender()
        return record

    def _backdate(self, enqueued_at: object, now: float) -> float:
        enqueued = check_enqueued_at(enqueued_at, now)
        if enqueued < now:
            # Behind newer tasks unless there are none.
            self._monotone = not self._live_count()
        return enqueued

    def _push_full(self, entry: _Entry, now: float) -> Eviction | None:
        """Push onto a full queue: make room (handing back the least urgent), or refuse."""
        if self._walking:
            raise ReentrancyError(reentry_refusal("push", "queue"))
        eviction = self._overflow_for(entry, now)
        if eviction is not None and eviction.task is entry[_TASK]:
            return eviction
        heappush(self._heap, entry)
        self._index[entry[_TASK].id] = entry
        self._stored += 1
        self._last_pop = None
        self._track(entry)
        return eviction

    def _overflow_for(self, entry: _Entry, now: float) -> Eviction | None:
        """Make room in a full queue, or refuse; the queue is unchanged if it refuses."""
        lowest = self._lowest
        task = entry[_TASK]
        if lowest is None:
            self._rejected += 1
            raise self._full(task)
        # An expired task is never the victim: it is already on its way out.
        if self._next_expiry <= now:
            self._collect_expired(now)
        top = lowest.top()
        # The newcomer is the least urgent on a tie: it would queue behind.
        if top is None or entry[_KEY:_SEQ] >= top[_KEY:_SEQ]:
            self._evicted += 1
            self._evicted_arrivals += 1
            return Eviction(task, Reason.EVICTED)
        del self._index[top[_TASK].id]
        lowest.drop_top(top)
        self._clean = False  # its entry stays in the order heap, dead
        self._evicted += 1
        return Eviction(top[_TASK], Reason.EVICTED)

    def _find(self, where: Predicate) -> _Entry | None:
        """The most urgent live entry passing ``where``, with re-entry refused meanwhile."""
        if not callable(where):
            raise InvalidTypeError(f"where= takes a function of a Task, got {where!r}")
        # While the walk is under way, pop and peek (which compare _next_expiry with
        # now) and push (which compares the size with _limit) take their slow
        # paths, where they refuse: the hot paths pay no check of their own.
        next_expiry, limit = self._next_expiry, self._limit
        self._walking = True
        self._next_expiry = -_NEVER
        self._limit = 0
        try:
            return self._order.find(where, _TASK)
        finally:
            self._walking = False
            self._next_expiry = next_expiry
            self._limit = limit

    def _track(self, entry: _Entry) -> None:
        """File a held entry in the side heaps it belongs in (expiry; least urgent)."""
        ttl = entry[_TASK].ttl
        if ttl is not None:
            expires = entry[_ENQUEUED] + ttl
            expiry = self._expiry
            if expiry is None:
                expiry = self._expiry = Expiries(self._index, at=_TASK, expires=_expires, task=True)
            expiry.add(entry, expires)
            self._side_heaps = True
            if expires < self._next_expiry:
                self._next_expiry = expires
        if self._lowest is not None:
            self._lowest.push(entry)

    def _collect_expired(self, now: float, call: str = "expire") -> None:
        """Move every entry due by ``now`` from the live index to the expired holding area."""
        if self._walking:
            raise ReentrancyError(reentry_refusal(call, "queue"))
        expiry = self._expiry
        if expiry is not None:
            if self._expired is _NONE_EXPIRED:
                self._expired = {}  # one of its own, before anything is filed in it
            expired = self._expired
            for entry in expiry.pop_until(now):  # out of the index too
                expired[entry[_TASK].id] = entry
                self._clean = False  # its entry stays in the order heap, dead
            self._next_expiry = expiry.first()
        self._maybe_compact()

    def _compact_order(self) -> None:
        """Compact the order heap when due; it is clean again if no dead entry is left."""
        self._order.compact()
        if len(self._order) == self._live_count():
            self._clean = True

    def _maybe_compact(self) -> None:
        """Drop dead entries from the heaps once they outnumber live ones (amortised O(1))."""
        self._compact_order()
        self._compact_sides()

    def _compact_sides(self) -> None:
        """Drop dead entries from the side heaps once they outnumber live ones."""
        if self._expiry is not None:
            self._expiry.compact()
        if self._lowest is not None:
            self._lowest.compact()

    def _oldest_enqueued(self) -> float:
        candidates = [entry[_ENQUEUED] for entry in self._expired.values()]
        if self._index:
            if self._monotone:
                candidates.append(next(iter(self._index.values()))[_ENQUEUED])
            else:
                candidates.append(min(entry[_ENQUEUED] for entry in self._index.values()))
        return float(min(candidates))

    # -- what the queue holds: its own index (a shared one answers otherwise) ----------

    def _live_count(self) -> int:
        """Live tasks held (not expired). O(1)."""
        return len(self._index)

    def _live_entries(self) -> list[_Entry]:
        """The live entries, oldest first (in the order they joined the index). O(n)."""
        return list(self._index.values())

    def _newest_enqueued(self) -> float | None:
        """The enqueue time of the live entry that joined the index last, or ``None``. O(1)."""
        newest = next(reversed(self._index.values()), None)
        return None if newest is None else newest[_ENQUEUED]

    def _held_task(self, task_id: Hashable) -> Task:
        """The live task ``task_id``, left where it is: for a scheduler or distributor
        holding this queue, which has no public look-up. O(1).

        Raises:
            KeyError: no live task has this id, or its TTL has run out.
        """
        entry = self._index[task_id]
        if type(entry) is not tuple:
            raise KeyError(task_id)  # (a shared table leads to the queue of an expired one)
        task: Task = entry[_TASK]
        if task.ttl is not None and _expires(entry) <= self._now():
            raise KeyError(task_id)
        return task

    def _held_entry(self, task_id: Hashable) -> _Entry:
        """The entry of a held task, live or expired. O(1).

        Raises:
            KeyError: no held task has this id.
            TypeError: ``task_id`` is unhashable.
        """
        return self._index.get(task_id) or self._expired[task_id]
