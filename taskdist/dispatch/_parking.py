"""ParkingLot: tasks taken out of the queue because nothing can take them now.

Kubernetes keeps pods that no node fits in an "unschedulable" queue and moves
them back when a cluster event could change the answer; the Distributor does
the same with tasks. Parked tasks are grouped by what blocks them (a
placement signature: skills, zone and demand; or the gates), so one event
wakes exactly the group it concerns and no dispatch looks at a parked task.

A group may also keep its tasks in ranked classes: tasks of one class are
refused and admitted alike, so when their blocker clears only the first of
each class (by the queue's order) needs to go back to the queue, and the next
only once that one has gone its way. Waking a gate's waiting tasks then costs
a task per class, not the whole group. A class may also carry a time before
which nothing of it can pass (its rate limit's bucket refills then): such a
class is woken only once that time has come, so that a refill of one bucket
costs a task, not a task per class.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from itertools import chain
from typing import Any

from taskdist.task import Task

__all__ = ["GATES", "ParkingLot", "signature"]

Again = Callable[[Task], float | None]
"""Says a timed class's time afresh, from one of its tasks (``None``: it may pass now)."""

GATES: Hashable = ("gates",)
"""The group of tasks an admission gate refused (woken by the gates' wakeup or a release)."""


def signature(task: Task) -> Hashable:
    """What decides whether some worker can take ``task``: skills, zone and demand. O(r).

    Two tasks with the same signature are refused by the same workers, so one
    refusal stands for both until something changes. (Resources named in a
    different order make a different signature: harmless, one more group.)
    """
    resources = task.resources
    return (task.requires, task.zone, tuple(resources.items()) if resources else ())


class ParkingLot:
    """Parked tasks by group, in the order they were parked; within a group, optionally
    in ranked classes.

    ``park``, ``remove``, ``group_of``, ``in`` and ``len`` are O(1) (O(log c) for
    a class of c tasks, plus O(log k) for k classes with a time); ``take`` of a
    group of k tasks is O(k); ``take_first`` is O(log c) amortised; ``groups()`` is
    O(1) per item; ``wakeable`` is O(u log u + d log k) for u classes it
    returns and d whose time has come; ``next_due`` is O(1) amortised.
    """

    __slots__ = (
        "_class_of",
        "_classes",
        "_due",
        "_due_heap",
        "_group_of",
        "_groups",
        "_live",
        "_stamps",
        "_tickets",
        "_untimed",
        "by_task",
    )

    def __init__(self) -> None:
        # Ordered dicts: taking the oldest of a group stays O(1) however many were taken
        # before (a plain dict would scan the holes its deletions left at the front).
        self._groups: dict[Hashable, OrderedDict[Hashable, Task]] = {}
        self._group_of: dict[Hashable, Hashable] = {}
        # The same table, read only, for a hot path that asks whether anything is
        # parked without a call: ``if lot.by_task`` is ``if len(lot)`` at C speed.
        self.by_task: dict[Hashable, Hashable] = self._group_of
        # (group, class) -> a heap of (rank, ticket, task id), with stale entries of
        # tasks that left it; a task's live entry is the one holding its ticket.
        self._classes: dict[tuple[Hashable, Hashable], list[tuple[Any, int, Hashable]]] = {}
        self._class_of: dict[Hashable, tuple[tuple[Hashable, Hashable], int]] = {}
        self._live: dict[tuple[Hashable, Hashable], int] = {}  # tasks in each class
        self._tickets = 0
        # Every class is either timed (nothing of it passes before its time: class ->
        # (time, stamp), and a heap of (time, stamp, class) with stale entries of times
        # since changed) or untimed (woken whenever its group is).
        self._due: dict[tuple[Hashable, Hashable], tuple[float, int]] = {}
        self._due_heap: list[tuple[float, int, tuple[Hashable, Hashable]]] = []
        self._untimed: dict[tuple[Hashable, Hashable], None] = {}
        self._stamps = 0

    def park(
        self,
        task: Task,
        group: Hashable,
        klass: Hashable = None,
        rank: Any = None,
        ticket: int | None = None,
        due: float | None = None,
    ) -> int:
        """Add ``task`` (not already parked) to ``group``; with a ``klass``, in that
        class of the group at ``rank`` (smaller first, ties by ticket: in the order
        parked, or at the ``ticket`` given, one it held before). Returns its ticket
        (0 without a class). O(1), O(log c) with a class.

        ``due``: nothing of the class can pass before this time, from now on (the
        class is then woken only once it has come); ``None``: the class is woken
        whenever its group is. The latest park of a class says which it is."""
        members = self._groups.get(group)
        if members is None:
            members = self._groups[group] = OrderedDict()
        members[task.id] = task
        self._group_of[task.id] = group
        if klass is not None:
            key = (group, klass)
            heap = self._classes.get(key)
            if heap is None:
                heap = self._classes[key] = []
                self._live[key] = 0
            if ticket is None:
                self._tickets += 1
                ticket = self._tickets
            elif ticket > self._tickets:
                self._tickets = ticket
            heapq.heappush(heap, (rank, ticket, task.id))
            self._class_of[task.id] = (key, ticket)
            self._live[key] += 1
            self._time(key, due)
            return ticket
        return 0

    def _time(self, key: tuple[Hashable, Hashable], due: float | None) -> None:
        """Make a class timed (at ``due``) or untimed."""
        if due is None:
            self._due.pop(key, None)
            self._untimed[key] = None
            return
        timed = self._due.get(key)
        if timed is not None and timed[0] == due:
            return  # (a class's tasks share their bucket: mostly the same time again)
        self._untimed.pop(key, None)
        self._stamps += 1  # (its heap entry is the one with this stamp)
        self._due[key] = (due, self._stamps)
        heap = self._due_heap
        heapq.heappush(heap, (due, self._stamps, key))
        if len(heap) > 2 * len(self._due) + 16:  # mostly stale: keep the live entries
            due_of = self._due
            heap[:] = [entry for entry in heap if due_of.get(entry[2]) == entry[:2]]
            heapq.heapify(heap)

    def _first(self, key: tuple[Hashable, Hashable]) -> Task:
        """The first task of a class, by rank (any stands for all)."""
        heap = self._classes[key]
        class_of = self._class_of
        while class_of.get(heap[0][2], (None, 0))[1] != heap[0][1]:
            heapq.heappop(heap)  # stale: its task left
        return self._groups[key[0]][heap[0][2]]

    def next_due(self, again: Again | None = None) -> float | None:
        """The soonest time of a timed class, or ``None``. O(1) amortised.

        ``again(task)`` says a class's time afresh (``None``: it may pass now); a
        time that moved later since (its bucket was spent by another class) is
        moved, so that the soonest named is one still true."""
        heap = self._due_heap
        due_of = self._due
        asked: set[tuple[Hashable, Hashable]] = set()
        while heap:
            due, stamp, key = heap[0]
            if due_of.get(key) != (due, stamp):
                heapq.heappop(heap)  # stale: its class left, or its time changed
                continue
            if again is None or key in asked:  # (each asked once: a clock may move)
                return due
            asked.add(key)
            later = again(self._first(key))
            if later is None or later <= due:
                return due
            self._time(key, later)
        return None

    def wakeable(
        self, group: Hashable, now: float, *, every: bool = False, again: Again | None = None
    ) -> list[Hashable]:
        """The classes of ``group`` to wake at ``now``: the untimed ones and those whose
        time has come (which are untimed from now on; with ``every``, all of them), by
        the ticket of their first task: as they would be pushed if the whole group
        went back in the order parked. A class whose time has come is asked
        ``again`` first: one that still may not pass is timed afresh instead."""
        due_of = self._due
        untimed = self._untimed
        heap = self._due_heap
        if every:
            untimed.update(dict.fromkeys(due_of))
            due_of.clear()
            heap.clear()
        else:
            while heap and heap[0][0] <= now:
                due, stamp, key = heapq.heappop(heap)
                if due_of.get(key) != (due, stamp):
                    continue  # stale
                later = None if again is None else again(self._first(key))
                if later is not None and later > now:
                    self._time(key, later)
                    continue
                del due_of[key]
                untimed[key] = None
        return self._by_first_ticket(key for key in untimed if key[0] == group)

    def _by_first_ticket(self, keys: Iterable[tuple[Hashable, Hashable]]) -> list[Hashable]:
        firsts = []
        class_of = self._class_of
        classes = self._classes
        for key in keys:
            heap = classes[key]
            while heap and class_of.get(heap[0][2], (None, 0))[1] != heap[0][1]:
                heapq.heappop(heap)  # stale: its task left
            firsts.append((heap[0][1], key[1]))
        firsts.sort(key=lambda first: first[0])
        return [klass for _, klass in firsts]

    def times(self, group: Hashable) -> list[tuple[Hashable, float | None]]:
        """Each class of ``group``, by the ticket of its first task: that task's id and
        the class's time (``None``: untimed), so that a lot rebuilt from :meth:`parked`
        can be timed alike with :meth:`set_time`. O(k log k) for k classes."""
        due_of = self._due
        listed = []
        for key in chain(due_of, self._untimed):
            if key[0] == group:
                first = self._first(key).id
                due = due_of.get(key)
                listed.append((self._class_of[first][1], first, None if due is None else due[0]))
        listed.sort(key=lambda item: item[0])
        return [(first, due) for _, first, due in listed]

    def set_time(self, task_id: Hashable, due: float | None) -> None:
        """Time the class of the parked ``task_id`` at ``due`` (``None``: untimed). O(log k)."""
        self._time(self._class_of[task_id][0], due)

    def issued(self, ticket: int) -> None:
        """``ticket`` is held outside the lot (by a scout sent to the queue, restored
        from a snapshot): tickets given from now on come after it. O(1)."""
        if ticket > self._tickets:
            self._tickets = ticket

    def ticket_of(self, task_id: Hashable) -> int | None:
        """The ticket of a task parked in a class, or ``None``. O(1)."""
        placed = self._class_of.get(task_id)
        return None if placed is None else placed[1]

    def class_of(self, task_id: Hashable) -> Hashable | None:
        """The class a parked task is in, or ``None``. O(1)."""
        placed = self._class_of.get(task_id)
        return None if placed is None else placed[0][1]

    def take_first(self, group: Hashable, klass: Hashable) -> tuple[Task, int] | None:
        """Remove the first task of a class of ``group`` and return it with its ticket
        (``None`` if the class has none). O(log c) amortised."""
        heap = self._classes.get((group, klass))
        class_of = self._class_of
        while heap:
            _, ticket, task_id = heapq.heappop(heap)
            placed = class_of.get(task_id)
            if placed is not None and placed[1] == ticket:
                return self.remove(task_id), ticket
        return None

    def _unclass(self, task_id: Hashable) -> None:
        """Forget a leaving task's class entry (left in its heap, stale, until popped or
        compacted away); a class left without tasks goes."""
        placed = self._class_of.pop(task_id, None)
        if placed is None:
            return
        key = placed[0]
        live = self._live[key] - 1
        if not live:
            del self._live[key], self._classes[key]
            if self._due.pop(key, None) is None:
                del self._untimed[key]
            return
        self._live[key] = live
        heap = self._classes[key]
        if len(heap) > 2 * live + 16:
            # Mostly stale: keep the live entries (O(1) amortised over the removals).
            class_of = self._class_of
            heap[:] = [entry for entry in heap if class_of.get(entry[2], (None, 0))[1] == entry[1]]
            heapq.heapify(heap)

    def take(self, group: Hashable, limit: int | None = None) -> list[Task]:
        """Remove and return every task of ``group`` (at most ``limit``), oldest parked
        first (none if empty). O(k) for the k taken."""
        members = self._groups.get(group)
        if members is None:
            return []
        group_of = self._group_of
        if limit is not None and limit < len(members):
            taken = [members.popitem(last=False)[1] for _ in range(limit)]
            for task in taken:
                del group_of[task.id]
                if self._class_of:
                    self._unclass(task.id)
            return taken
        del self._groups[group]
        for task_id in members:
            del group_of[task_id]
            if self._class_of:
                self._unclass(task_id)
        return list(members.values())

    def remove(self, task_id: Hashable) -> Task:
        """Remove one parked task and return it (``KeyError`` if not parked). O(1)."""
        group = self._group_of.pop(task_id)
        members = self._groups[group]
        task = members.pop(task_id)
        if not members:
            del self._groups[group]
        if self._class_of:
            self._unclass(task_id)
        return task

    def get(self, task_id: Hashable) -> Task | None:
        """The parked task with this id, or ``None``. O(1)."""
        group = self._group_of.get(task_id)
        return None if group is None else self._groups[group][task_id]

    def group_of(self, task_id: Hashable) -> Hashable | None:
        """The group a parked task is in, or ``None``. O(1)."""
        return self._group_of.get(task_id)

    def has_group(self, group: Hashable) -> bool:
        """Whether any task is parked in ``group``. O(1)."""
        return group in self._groups

    def groups(self) -> Iterator[tuple[Hashable, Task]]:
        """Each non-empty group with one of its tasks (the oldest parked), which stands for all."""
        for group, members in self._groups.items():
            yield group, next(iter(members.values()))

    def parked(self) -> list[tuple[Hashable, list[Task]]]:
        """Every group with its tasks, in the order parked (a group's classed tasks by
        ticket): parking them again in this order rebuilds the lot as it is.
        O(parked), O(k log k) for k classed tasks."""
        class_of = self._class_of
        listed = []
        for group, members in self._groups.items():
            tasks = list(members.values())
            if class_of and tasks[0].id in class_of:  # a classed group: all are
                tasks.sort(key=lambda task: class_of[task.id][1])
            listed.append((group, tasks))
        return listed

    def ids(self) -> Iterator[Hashable]:
        """Every parked task id. O(1) per id."""
        return iter(self._group_of)

    def __len__(self) -> int:
        return len(self._group_of)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._group_of
