"""ParkingLot: tasks taken out of the queue because nothing can take them now.

Kubernetes keeps pods that no node fits in an "unschedulable" queue and moves
them back when a cluster event could change the answer; the Distributor does
the same with tasks. Parked tasks are grouped by what blocks them (a
placement signature: skills, zone and demand; or the gates), so one event
wakes exactly the group it concerns and no dispatch looks at a parked task.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator

from taskdist.task import Task

__all__ = ["GATES", "ParkingLot", "signature"]

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
    """Parked tasks by group, in the order they were parked.

    ``park``, ``remove``, ``group_of``, ``in`` and ``len`` are O(1); ``take`` of a
    group of k tasks is O(k); ``groups()`` is O(1) per group.
    """

    __slots__ = ("_group_of", "_groups")

    def __init__(self) -> None:
        # Ordered dicts: taking the oldest of a group stays O(1) however many were taken
        # before (a plain dict would scan the holes its deletions left at the front).
        self._groups: dict[Hashable, OrderedDict[Hashable, Task]] = {}
        self._group_of: dict[Hashable, Hashable] = {}

    def park(self, task: Task, group: Hashable) -> None:
        """Add ``task`` (not already parked) to ``group``. O(1)."""
        members = self._groups.get(group)
        if members is None:
            members = self._groups[group] = OrderedDict()
        members[task.id] = task
        self._group_of[task.id] = group

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
            return taken
        del self._groups[group]
        for task_id in members:
            del group_of[task_id]
        return list(members.values())

    def remove(self, task_id: Hashable) -> Task:
        """Remove one parked task and return it (``KeyError`` if not parked). O(1)."""
        group = self._group_of.pop(task_id)
        members = self._groups[group]
        task = members.pop(task_id)
        if not members:
            del self._groups[group]
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
        """Every group with its tasks, in the order parked: parking them again in this
        order rebuilds the lot as it is. O(parked)."""
        return [(group, list(members.values())) for group, members in self._groups.items()]

    def ids(self) -> Iterator[Hashable]:
        """Every parked task id. O(1) per id."""
        return iter(self._group_of)

    def __len__(self) -> int:
        return len(self._group_of)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._group_of
