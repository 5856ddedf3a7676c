"""Tenant queues that keep their tasks in one id table, their scheduler's.

A :class:`~taskdist.queues.FairScheduler` must find any queued task by its id
(``remove``, ``in``, ``why_waiting``, the duplicate check), and each tenant's
:class:`~taskdist.queues.PriorityQueue` or
:class:`~taskdist.queues.DeadlineScheduler` keeps an index of its own tasks by
id (its heaps' liveness test). Two tables over the same ids cost a dict slot
a task too many; these queues (:class:`SharedIndexQueue`,
:class:`SharedIndexDeadlineScheduler`) keep theirs in the scheduler's one
table instead.

The table maps the id of each live task to its queue's entry, and the id
of each expired task that ``expire()`` has not yet returned to the queue
holding it (where a queue of its own moves the entry to its expired area,
these also leave the id behind), so the table answers for every queued task
in O(1) (:func:`queued_task`). A queue then counts its tasks from its
counters rather than from the table, lists them from its own structures, and
compacts its heaps against that count. ``in`` on such a queue is O(n): its
scheduler asks the table instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from heapq import heappush
from typing import Any, Final

from taskdist._lazy_heap import COMPACT_SLACK, Expiries, LazyHeap
from taskdist._snapshot import refuse
from taskdist.clock import Clock
from taskdist.errors import InvalidTypeError
from taskdist.queues import deadline
from taskdist.queues.deadline import DeadlineScheduler
from taskdist.queues.priority import (
    _ENQUEUED,
    _FRESH,
    _MAX_AGED_PRIORITY,
    _SEQ,
    _TASK,
    PriorityQueue,
    _Entry,
    _expires,
    _expiry_order,
)
from taskdist.queues.protocol import Eviction, Predicate
from taskdist.task import Task

__all__ = [
    "OwnedSharedIndexQueue",
    "SharedIndexDeadlineScheduler",
    "SharedIndexQueue",
    "queue_holding",
    "queued_task",
]

assert _TASK == deadline._TASK, "queued_task reads either kind of entry at one place"


def queued_task(table: dict[Hashable, Any], task_id: Hashable) -> Task:
    """The task queued under ``task_id`` in a shared table. O(1).

    Raises:
        KeyError: no queue sharing the table holds it.
        TypeError: ``task_id`` is unhashable.
    """
    held = table[task_id]
    if type(held) is tuple:  # a queue's entry: both kinds hold the task at _TASK
        return held[_TASK]  # type: ignore[no-any-return]
    return held._expired_task(task_id)  # type: ignore[no-any-return]


class SharedIndexQueue(PriorityQueue):
    """A :class:`PriorityQueue` (unbounded) whose live tasks are filed in a shared ``table``.

    Every queue sharing a table must be told only of its own tasks (its
    scheduler knows which queue holds each). Complexity as a
    ``PriorityQueue``'s, but ``in`` (O(n)) and ``len`` (O(1), from counters).
    """

    __slots__ = ("_side_checks",)

    def __init__(
        self,
        clock: Clock,
        table: dict[Hashable, Any],
        *,
        aging_rate: float,
        now: Callable[[], float] | None = None,
    ) -> None:
        """
        Args:
            clock: where time comes from.
            table: the shared id table (see the module).
            aging_rate: priority levels gained per second waited.
            now: ``clock.now``, shared by every queue of one scheduler (a bound
                method of its own would cost each tenant's queue 64 bytes).
        """
        super().__init__(clock, aging_rate=aging_rate)
        if now is not None:
            self._now = now
        self._index_in(table)
        # Calls of _compact_sides (each pop of a task with a TTL makes one) until the
        # next look at the count: counting is dearer than a look at the table was.
        self._side_checks = 1

    def __len__(self) -> int:
        return (
            self._stored
            - self._popped
            - self._removed
            - self._expired_count
            - self._evicted
            + self._evicted_arrivals
        )

    def __bool__(self) -> bool:
        return len(self) > 0

    def __contains__(self, task_id: object) -> bool:
        table: dict[Hashable, Any] = self._index
        try:
            held = table.get(task_id)
        except TypeError:  # an unhashable id is in no queue
            return False
        return held is self or self._holds(held)

    def _holds(self, held: Any) -> bool:
        """Whether ``held``, what the table holds for an id, is a live entry of this
        queue. O(n)."""
        return any(entry is held for entry in self._order.live_entries())

    def _live_count(self) -> int:
        return len(self) - len(self._expired)

    def _live_entries(self) -> list[_Entry]:
        # Oldest first, as a queue's own index lists them when nothing was backdated.
        return sorted(self._order.live_entries(), key=_place)

    def _newest_enqueued(self) -> float | None:
        # The table's order is every queue's: nothing reads this queue's order from it
        # (its listing is sorted, its oldest task found by a scan).
        return None

    def _oldest_enqueued(self) -> float:
        entries = [*self._order.live_entries(), *self._expired.values()]
        return float(min(entry[_ENQUEUED] for entry in entries))

    def _expired_task(self, task_id: Hashable) -> Task:
        return self._expired[task_id][_TASK]

    def _held_entry(self, task_id: Hashable) -> _Entry:
        held = self._index.get(task_id)
        if type(held) is not tuple:
            return self._expired[task_id]
        return held

    def _take_held(self, task_id: Hashable, holder: str) -> tuple[Any, bool]:
        held, live = super()._take_held(task_id, holder)
        if held is self:  # expired: the table held the queue, the entry is here
            return self._expired.pop(task_id), False
        return held, live

    def _collect_expired(self, now: float, call: str = "expire") -> None:
        before = len(self._expired)
        self._side_checks = 1  # tasks leave the count in bulk: look at it now
        super()._collect_expired(now, call)
        if len(self._expired) > before:
            table: dict[Hashable, Any] = self._index
            for task_id in list(self._expired)[before:]:  # the newly expired, filed last
                table[task_id] = self

    def _expire_timed(self) -> list[tuple[float, Task]]:
        timed = super()._expire_timed()
        table = self._index
        for _, task in timed:
            del table[task.id]
        return timed

    def _compact_order(self) -> None:
        order = self._order
        live = self._live_count()
        if len(order) > 2 * live + COMPACT_SLACK:
            order.reset(order.live_entries())
        if len(order) == live:
            self._clean = True

    def _compact_sides(self) -> None:
        self._side_checks -= 1
        if self._side_checks > 0:
            return
        expiry = self._expiry
        if expiry is None:
            self._side_checks = COMPACT_SLACK
            return
        live = self._live_count()
        if len(expiry) > 2 * live + COMPACT_SLACK:
            expiry = self._expiry = Expiries(self._index, at=_TASK, expires=_expires, task=True)
            timed = [entry for entry in self._order.live_entries() if entry[_TASK].ttl is not None]
            for entry in sorted(timed, key=_expiry_order):
                expiry.add(entry, _expires(entry))
        # Each call kills at most one entry and a push only widens the margin, so the
        # expiries stay within the bound until the next look.
        self._side_checks = (2 * live + COMPACT_SLACK - len(expiry)) // 2 + 1

    def _prepare_snapshot(
        self, data: object, where: str
    ) -> tuple[Callable[[], None], dict[Hashable, Task]]:
        load, ids = super()._prepare_snapshot(data, where)

        def load_shared() -> None:
            load()
            table: dict[Hashable, Any] = self._index
            for task_id in self._expired:
                table[task_id] = self

        return load_shared, ids


def _place(entry: _Entry) -> tuple[float, float]:
    """An entry's place among its queue's: enqueue time, then sequence number."""
    return entry[_ENQUEUED], entry[_SEQ]


class SharedIndexDeadlineScheduler(DeadlineScheduler):
    """A :class:`DeadlineScheduler` (one server, ``on_miss="run_late"``, no aging,
    unbounded) whose live tasks are filed in a shared ``table``.

    Every queue sharing a table must be told only of its own tasks (its
    scheduler knows which queue holds each). Its order, admission, expiry,
    snapshots and answers are those of a ``DeadlineScheduler`` of its own;
    ``in`` is O(n), ``len`` O(1) from its counters, and each ``pop`` or
    ``remove`` adds an O(1) look at whether its heaps need compacting against
    its own tasks (the table's size says nothing about them).
    """

    __slots__ = ()

    def __init__(
        self, clock: Clock, table: dict[Hashable, Any], *, now: Callable[[], float] | None = None
    ) -> None:
        """
        Args:
            clock: where time comes from.
            table: the shared id table (see the module).
            now: ``clock.now``, shared by every queue of one scheduler.
        """
        super().__init__(clock)
        if now is not None:
            self._now = now
        self._index = table
        self._back = LazyHeap(table, at=deadline._TASK, task=True)

    def __len__(self) -> int:
        return self._live_count() + len(self._expired)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __contains__(self, task_id: object) -> bool:
        try:
            held: Any = self._index.get(task_id)
        except TypeError:  # an unhashable id is in no queue
            return False
        if held is self:
            return True
        return type(held) is tuple and any(entry is held for entry in self._own_entries())

    def pop(self, where: Predicate | None = None) -> Task | None:
        task = DeadlineScheduler.pop(self, where)  # without super(): once a pop
        if task is not None:
            self._dropped()
        return task

    def remove(self, task_id: Hashable) -> Task:
        expired = len(self._expired)
        task = super().remove(task_id)
        if len(self._expired) == expired:  # a live task left
            self._dropped()
        return task

    def expire_with_reasons(self) -> list[Eviction]:
        evictions = super().expire_with_reasons()
        table = self._index
        for eviction in evictions:
            del table[eviction.task.id]
        return evictions

    def _expired_task(self, task_id: Hashable) -> Task:
        return self._expired[task_id][0][deadline._TASK]

    def _own_entries(self) -> list[deadline._Entry]:
        return [*self._critical, *self._front, *self._back.live_entries()]

    def _live_entries(self) -> list[deadline._Entry]:
        # In push order (a queue of its own lists them as they entered its index).
        return sorted(self._own_entries(), key=_deadline_seq)

    def _live_count(self) -> int:
        # From the counters: the tasks taken in, less those that left or expired.
        return (
            self._pushed
            - self._popped
            - self._removed
            - self._expired_count
            - self._evicted
            - len(self._expired)
        )

    def _held(self, task_id: Hashable) -> deadline._Entry:
        held: Any = super()._held(task_id)
        if held is self:  # expired: the table holds the queue, the entry is apart
            return self._expired[task_id][0]  # type: ignore[no-any-return]
        return held  # type: ignore[no-any-return]

    def _take_held(self, task_id: Hashable, holder: str) -> tuple[Any, bool]:
        held, live = super()._take_held(task_id, holder)
        if held is self:  # expired: the table held the queue, the entry is apart
            return self._expired.pop(task_id), False
        return held, live

    def _collect_due(self, now: float) -> None:
        before = len(self._expired)
        super()._collect_due(now)
        expired = self._expired
        if len(expired) > before:
            table: dict[Hashable, Any] = self._index
            newly = reversed(expired)  # the newly expired, filed last
            for _ in range(len(expired) - before):
                table[next(newly)] = self
        if not self._live_count():
            self._emptied()

    def _dropped(self) -> None:
        """A live task left: start afresh if none is left (as a queue of its own does when
        its index empties), else compact the heaps against this queue's own tasks."""
        live = self._live_count()
        if not live:
            self._emptied()
            return
        bound = 2 * live + COMPACT_SLACK
        back = self._back
        if len(back) > bound:
            back.reset(back.live_entries())
        timers = self._timers
        if timers is not None and len(timers) > bound:
            expires = deadline._ttl_expiry
            timers = self._timers = Expiries(
                self._index, at=deadline._TASK, expires=expires, task=True
            )
            own = self._own_entries()
            timed = [entry for entry in own if entry[deadline._TASK].ttl is not None]
            for entry in sorted(timed, key=_expiry_and_seq):
                timers.add(entry, expires(entry))

    def _prepare_snapshot(
        self, data: object, where: str
    ) -> tuple[Callable[[], None], dict[Hashable, Task]]:
        load, tasks = super()._prepare_snapshot(data, where)
        # This queue counts its tasks from its counters: they must add up to those held.
        counts = dict(zip(deadline._COUNTERS, data["counts"], strict=True))  # type: ignore[index]
        held = counts["_pushed"] - counts["_popped"] - counts["_removed"]
        if held - counts["_expired_count"] - counts["_evicted"] != len(tasks):
            refuse(f"{where}.counts", f"do not add up to the {len(tasks)} tasks held")

        def load_shared() -> None:
            load()
            table: dict[Hashable, Any] = self._index
            for task_id in self._expired:
                table[task_id] = self

        return load_shared, tasks


def _deadline_seq(entry: deadline._Entry) -> float:
    """A DeadlineScheduler entry's sequence number: its push order."""
    return entry[deadline._SEQ]


def _expiry_and_seq(entry: deadline._Entry) -> tuple[float, float]:
    """A DeadlineScheduler entry's TTL expiry, then its sequence number."""
    return deadline._ttl_expiry(entry), entry[deadline._SEQ]


_QUEUE: Final = -1
"""Where an :class:`OwnedSharedIndexQueue`'s heap entry holds the queue: its last field."""


def queue_holding(table: dict[Hashable, Any], task_id: Hashable) -> Any:
    """What the table leads to for the task queued under ``task_id``: the queue an
    :class:`OwnedSharedIndexQueue` entry ends with, else what the table holds (the queue
    holding an expired task, or whatever a scheduler filed there itself). O(1); a
    ``KeyError`` if the table has no such id."""
    held = table[task_id]
    return held[_QUEUE] if type(held) is tuple else held


class OwnedSharedIndexQueue(SharedIndexQueue):
    """A :class:`SharedIndexQueue` whose heap entries end with the queue itself, and which
    knows the record that holds it (``owner``, set by its scheduler).

    A table that the queues of several schedulers share (a nested
    :class:`~taskdist.queues.FairScheduler`'s) then leads from a task id to the queue
    holding it, live or expired, and from the queue to its record: no scheduler keeps a
    table of its own, nor asks a ``tenant_of`` again. One pointer more per entry (8
    bytes); ``in`` is O(1). Otherwise as a ``SharedIndexQueue``.
    """

    __slots__ = ("owner",)

    owner: Any
    """The record of the scheduler holding this queue (``None`` until it is set)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As :class:`SharedIndexQueue`'s."""
        super().__init__(*args, **kwargs)
        self.owner = None

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Eviction | None:
        """As :meth:`PriorityQueue.push` (unbounded), the entry ending with this queue. O(log n)."""
        # A PriorityQueue's push with one field more: (key, enqueued_at, seq, task, queue).
        if task.__class__ is not Task and not isinstance(task, Task):
            raise InvalidTypeError(f"push() takes a Task, got {type(task).__name__} {task!r}")
        task_id = task.id
        index: dict[Hashable, Any] = self._index
        if task_id in index:  # an expired task of this queue is in the table too
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
            self._stamp = enqueued
            entry = (key, enqueued, _FRESH, task, self)
        else:
            seq = self._seq
            if seq is None:
                seq = self._seq = itertools.count(1.0)
            entry = (key, enqueued, next(seq), task, self)
        if self._limit is not None:  # 0 only while a where= walk is under way: refused
            return self._push_full(entry, now)  # type: ignore[arg-type]
        heappush(self._heap, entry)  # type: ignore[misc]
        index[task_id] = entry
        self._stored += 1
        self._last_pop = None
        if task.ttl is not None:
            self._track(entry)  # type: ignore[arg-type]
        return None

    def _holds(self, held: Any) -> bool:
        # O(1): the entry ends with its queue.
        return type(held) is tuple and held[_QUEUE] is self

    def _entry(self, data: object, where: str, following: float) -> _Entry:
        return (*super()._entry(data, where, following), self)  # type: ignore[return-value]
