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
marked late, once each); ``most_urgent`` O(log n + L). Memory: about 10
bytes per task held, its slot in the list (a pointer and the list's growth).
The list is lean: it holds the tasks themselves, keyed by deadline, and reads
each one's cost and deadline from the task (a late task's bound is ``inf``:
its id is in the late set): no item per task, no costs or deadlines of its
own, no table by id, and no sequence number unless its deadline is shared.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable
from operator import attrgetter
from typing import Final

from taskdist.queues._prefix_sorted import PrefixSumSortedList
from taskdist.task import Task

__all__ = ["DeadlineSlack", "Taken"]

Taken = tuple[Task, bool, int]
"""What :meth:`DeadlineSlack.take` took out, whether it was late, and its seq (see
``DeadlineSlack._ties``): what ``put_back`` needs to put it back in its place."""

_INF: Final = math.inf
_deadline = attrgetter("deadline")
_cost = attrgetter("cost")
_id = attrgetter("id")


class DeadlineSlack:
    """Held tasks with deadlines in deadline order, with their least margins (see the module)."""

    __slots__ = ("_order", "_seq", "_ties")

    def __init__(self) -> None:
        # The seq of each held task whose deadline was shared when it came (others: 0):
        # equal deadlines go in (deadline, seq) order, the order they came in, so a
        # task costs no number and no table entry of its own unless its deadline is shared.
        self._ties: dict[Hashable, int] = {}
        self._order = self._new_order()
        self._seq = itertools.count(1)

    def _new_order(self, load: int = 128) -> PrefixSumSortedList[Task]:
        """An empty lean list of tasks by (deadline, seq): the list keeps the tasks alone,
        their ids in its ``unbound`` set once late."""
        return PrefixSumSortedList(load, key=_deadline, tie=self._tie, cost=_cost, ident=_id)

    @property
    def _late(self) -> set[Hashable]:
        """The ids of the held tasks marked late: the list's unbound ones."""
        return self._order.unbound

    def __len__(self) -> int:
        return self._order.count

    def __bool__(self) -> bool:
        return self._order.count > 0

    def _tie(self, task: Task) -> int:
        """The seq of a held task (0 unless its deadline was shared when it came). O(1)."""
        return self._ties.get(task.id, 0) if self._ties else 0

    def _new_seq(self, task: Task, deadline: float) -> int:
        """The seq of a task coming now: 0, or, if a held task has its deadline, a new
        number (filed in ``_ties``), behind theirs. O(log n)."""
        if not self._order.holds_key(deadline):
            return 0
        seq = self._ties[task.id] = next(self._seq)
        return seq

    def add(self, task: Task) -> None:
        """Hold ``task`` (it has a deadline). O(log n + L)."""
        deadline = task.deadline
        assert deadline is not None
        self._new_seq(task, deadline)
        self._order.add(task, task.cost, deadline, last=True)

    def take(self, task: Task) -> Taken | None:
        """Stop holding ``task`` (if held); what it was, for ``put_back``. O(log n + L)."""
        try:
            self._order.remove(task)
        except ValueError:
            return None
        task_id = task.id
        seq = self._ties.pop(task_id, 0) if self._ties else 0
        late = task_id in self._late
        if late:
            self._late.discard(task_id)
        if not self._order.count:
            self._ties.clear()  # give back the tables of dicts emptied key by key
            self._late.clear()
        return task, late, seq

    def put_back(self, taken: Taken) -> None:
        """Hold again what ``take`` took, in the same place and as late as it was."""
        task, late, seq = taken
        deadline = task.deadline
        assert deadline is not None
        if seq:
            self._ties[task.id] = seq
        self._order.add(task, task.cost, _INF if late else deadline)  # inf: files it as late

    def listed(self) -> list[tuple[Task, bool]]:
        """Every held task in deadline order, and whether it is marked late. O(n)."""
        late = self._late
        return [(task, task.id in late) for task in self._order]

    def load(self, held: Iterable[tuple[Task, bool]]) -> None:
        """Hold the tasks ``held`` lists (as :meth:`listed` gave them: deadline order,
        late marks) besides those held already. O(n (log n + L))."""
        for task, late in held:
            assert task.deadline is not None
            self.put_back((task, late, self._new_seq(task, task.deadline)))

    def is_late(self, task_id: Hashable) -> bool:
        """Whether the task was marked late (it cannot make its deadline any more). O(1)."""
        return task_id in self._late

    def settle(self, now: float) -> None:
        """Mark late every task whose margin fell below ``now``. O(1) when the earliest
        deadline is at least all the work away; else O(log n + L) plus the marked."""
        if not self._roomy(now, 0.0):
            self._order.unbind_margins_below(now)  # their ids go to the late set

    def is_safe(self, task: Task, now: float) -> bool:
        """Whether serving ``task`` (queued) now keeps every task with a deadline that
        could make it able to (call :meth:`settle` first). O(log n + L)."""
        cost = task.cost
        if not cost or self._roomy(now, cost):
            return True
        threshold = now + cost
        deadline = task.deadline
        if deadline is None:  # it delays every held task
            return self._order.margin() >= threshold
        first_short = self._order.first_margin_below(threshold)
        # Only the tasks ahead of it are delayed; its own margin and those behind keep.
        if first_short is None or first_short is task:
            return True
        ahead = first_short.deadline
        assert ahead is not None
        if ahead != deadline:
            return ahead > deadline
        return self._tie(first_short) > self._tie(task)

    def most_urgent(self) -> Task | None:
        """The task first in deadline order that is not late, or ``None``. O(log n + L)."""
        return self._order.first_margin_below(_INF)

    def _roomy(self, now: float, cost: float) -> bool:
        """The obvious case, O(1): all the work held and ``cost`` more end before the earliest
        deadline, so every margin is at least ``now + cost``."""
        first = self._order.first()
        if first is None:
            return True
        deadline = first.deadline
        assert deadline is not None
        return deadline - now >= self._order.total() + cost

    def clear(self) -> None:
        self._order = self._new_order()
        self._ties.clear()
