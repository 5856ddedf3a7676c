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
marked late, once each); ``most_urgent`` O(log n + L). Memory: about 90
bytes per task held (its item, 64, and its slots in the list, 26: no table by
id and no sequence number of its own unless its deadline is shared).
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
"""``(deadline, seq, task)``: deadline order, first come first served among equal ones.
``seq`` is 0 for a task whose deadline no held task shares, else the next number of a
counter (from 1), so equal deadlines go in the order they came: a task costs no number
and no table entry of its own unless its deadline is shared."""
Taken = tuple[_Item, bool]
"""What :meth:`DeadlineSlack.take` took out, and whether it was late: what ``put_back`` needs."""

_TASK: Final = 2
_INF: Final = math.inf


class DeadlineSlack:
    """Held tasks with deadlines in deadline order, with their least margins (see the module)."""

    __slots__ = ("_late", "_order", "_seq", "_ties")

    def __init__(self) -> None:
        self._order: PrefixSumSortedList[_Item] = PrefixSumSortedList()
        # The seq of each held task whose deadline was shared when it came (others: 0).
        # Items are found by deadline and seq, so no table by id is kept.
        self._ties: dict[Hashable, int] = {}
        self._late: set[Hashable] = set()
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        return self._order.count

    def __bool__(self) -> bool:
        return self._order.count > 0

    def add(self, task: Task) -> None:
        """Hold ``task`` (it has a deadline). O(log n + L)."""
        deadline = task.deadline
        assert deadline is not None
        item = (deadline, self._new_seq(task, deadline), task)
        self._order.add(item, task.cost, deadline)

    def _new_seq(self, task: Task, deadline: float) -> int:
        """The seq of a task coming now: 0, or, if a held task has its deadline, a new
        number (filed in ``_ties``), behind theirs. O(log n)."""
        following = self._order.ceiling((deadline,))
        if following is None or following[0] != deadline:
            return 0
        seq = self._ties[task.id] = next(self._seq)
        return seq

    def _item(self, task: Task) -> _Item:
        """The item of the held ``task``, as :meth:`add` made it. O(1)."""
        deadline = task.deadline
        assert deadline is not None
        return (deadline, self._ties.get(task.id, 0) if self._ties else 0, task)

    def take(self, task: Task) -> Taken | None:
        """Stop holding ``task`` (if held); what it was, for ``put_back``. O(log n + L)."""
        item = self._item(task)
        try:
            self._order.remove(item)
        except ValueError:
            return None
        task_id = task.id
        if item[1]:
            del self._ties[task_id]
        late = task_id in self._late
        if late:
            self._late.discard(task_id)
        if not self._order.count:
            self._ties.clear()  # give back the tables of dicts emptied key by key
            self._late.clear()
        return item, late

    def put_back(self, taken: Taken) -> None:
        """Hold again what ``take`` took, in the same place and as late as it was."""
        item, late = taken
        task = item[_TASK]
        if item[1]:
            self._ties[task.id] = item[1]
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
            self.put_back(((task.deadline, self._new_seq(task, task.deadline), task), late))

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
        """Whether serving ``task`` (queued) now keeps every task with a deadline that
        could make it able to (call :meth:`settle` first). O(log n + L)."""
        cost = task.cost
        if not cost or self._roomy(now, cost):
            return True
        threshold = now + cost
        if task.deadline is None:  # it delays every held task
            return self._order.margin() >= threshold
        first_short = self._order.first_margin_below(threshold)
        # Only the tasks ahead of it are delayed; its own margin and those behind keep.
        return first_short is None or first_short >= self._item(task)

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
        self._ties.clear()
        self._late.clear()
