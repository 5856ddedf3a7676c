"""DeadlineSlack: the queued tasks with deadlines, across tenants, and how much slack they have.

What a deadline-aware :class:`~taskdist.queues.FairScheduler` asks before it
serves its fair pick: *would taking this task now make a task with a
deadline miss it, where deadline order would still have met them all?*

The model is one server, free from ``now``, running the held tasks with a
deadline in deadline order, each for its ``cost``. A task's *margin* is its
deadline minus the cost of every task up to and including it in that order
(:class:`~taskdist.queues._prefix_sorted.PrefixSumSortedList` keeps the least
margin behind any point in O(log n)); the task meets its deadline in the
model when its margin is at least ``now``. Serving a task ``f`` of cost
``c`` first delays exactly the tasks ahead of ``f`` in deadline order (all of
them, if ``f`` has no deadline) by ``c``: it is *safe* when each of them has
a margin of at least ``now + c``. Serving the earliest task is always safe.

A task whose margin fell below ``now`` cannot make it in the model any more
(the work ahead of it is too much): it is marked *late* and counts for no
urgency from then on, so an overload makes no task urgent that cannot be
helped (as :class:`~taskdist.queues.DeadlineScheduler` marks its late tasks).

The obvious case is answered in O(1): when all the work held ends before the
earliest deadline (with room for the task asked about), every margin is
large enough, and neither the margins nor the late marks need a look.

Complexity (n tasks with a deadline held, L the list's block size, 128):
``add``, ``take``, ``put_back`` O(log n + L); ``settle`` and ``is_safe``
O(1) in the obvious case, else O(log n + L) (plus O(log n + L) per task
marked late, once each); ``most_urgent`` O(log n + L). Memory: about 170
bytes per task held.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable
from typing import Final

from taskdist.queues._prefix_sorted import PrefixSumSortedList
from taskdist.task import Task

__all__ = ["DeadlineSlack", "Taken"]

_Item = tuple[float, int, Task]
"""``(deadline, seq, task)``: deadline order, first come first served among equal ones."""
Taken = tuple[_Item, bool]
"""What :meth:`DeadlineSlack.take` took out, and whether it was late: what ``put_back`` needs."""

_TASK: Final = 2
_INF: Final = math.inf


class DeadlineSlack:
    """Held tasks with deadlines in deadline order, with their least margins (see the module)."""

    __slots__ = ("_items", "_late", "_order", "_seq")

    def __init__(self) -> None:
        self._order: PrefixSumSortedList[_Item] = PrefixSumSortedList()
        self._items: dict[Hashable, _Item] = {}
        self._late: set[Hashable] = set()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, task: Task) -> None:
        """Hold ``task`` (it has a deadline). O(log n + L)."""
        deadline = task.deadline
        assert deadline is not None
        item = (deadline, next(self._seq), task)
        self._items[task.id] = item
        self._order.add(item, task.cost, deadline)

    def take(self, task_id: Hashable) -> Taken | None:
        """Stop holding the task with this id (if held); what it was, for ``put_back``."""
        item = self._items.pop(task_id, None)
        if item is None:
            return None
        self._order.remove(item)
        late = task_id in self._late
        if late:
            self._late.discard(task_id)
        if not self._items:
            self._items.clear()  # give back the table of a dict emptied key by key
        return item, late

    def put_back(self, taken: Taken) -> None:
        """Hold again what ``take`` took, in the same place and as late as it was."""
        item, late = taken
        task = item[_TASK]
        self._items[task.id] = item
        self._order.add(item, task.cost, _INF if late else item[0])
        if late:
            self._late.add(task.id)

    def listed(self) -> list[tuple[Task, bool]]:
        """Every held task in deadline order, and whether it is marked late. O(n)."""
        late = self._late
        return [(item[_TASK], item[_TASK].id in late) for item in self._order]

    def load(self, held: Iterable[tuple[Task, bool]]) -> None:
        """Hold the tasks ``held`` lists (as :meth:`listed` gave them: deadline order,
        late marks) besides those held already. O(n (log n + L))."""
        for task, late in held:
            assert task.deadline is not None
            self.put_back(((task.deadline, next(self._seq), task), late))

    def is_late(self, task_id: Hashable) -> bool:
        """Whether the task was marked late (it cannot make its deadline any more). O(1)."""
        return task_id in self._late

    def settle(self, now: float) -> None:
        """Mark late every task whose margin fell below ``now``. O(1) when the earliest
        deadline is at least all the work away; else O(log n + L) plus the marked."""
        if self._roomy(now, 0.0):
            return
        for item in self._order.unbind_margins_below(now):
            self._late.add(item[_TASK].id)

    def is_safe(self, task: Task, now: float) -> bool:
        """Whether serving ``task`` now keeps every task with a deadline that could make it
        able to (call :meth:`settle` first). O(log n + L)."""
        cost = task.cost
        if not cost or self._roomy(now, cost):
            return True
        threshold = now + cost
        item = self._items.get(task.id)
        if item is None:  # no deadline: it delays every held task
            return self._order.margin() >= threshold
        first_short = self._order.first_margin_below(threshold)
        # Only the tasks ahead of it are delayed; its own margin and those behind keep.
        return first_short is None or first_short >= item

    def most_urgent(self) -> Task | None:
        """The task first in deadline order that is not late, or ``None``. O(log n + L)."""
        item = self._order.first_margin_below(_INF)
        return None if item is None else item[_TASK]

    def _roomy(self, now: float, cost: float) -> bool:
        """The obvious case, O(1): all the work held and ``cost`` more end before the earliest
        deadline, so every margin is at least ``now + cost``."""
        first = self._order.first()
        return first is None or first[0] - now >= self._order.total() + cost

    def clear(self) -> None:
        self._order = PrefixSumSortedList()
        self._items.clear()
        self._late.clear()
