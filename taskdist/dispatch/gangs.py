"""Gangs: tasks that start together or not at all, as Kubernetes' coscheduling places pods.

A task with ``gang="g1", gang_size=4`` is one of four that must start in the
same dispatch. The :class:`~taskdist.Distributor` keeps the members that have
arrived parked ("waiting for gang 'g1': 2 of 4") and holds no capacity for
them, though each is refused at submit as the queue would refuse it alone
(the queue's ``check_push``: a tenant's quota, an unknown tenant, a full
queue), and when, with the members already waiting, the gang's demands on
a gate, or on a tenant's quota in the queue, add up to more than it could
ever grant at once (the gate's or the queue's ``check_together``). When the
last arrives, one member (the gang's *leader*, the one that completed it)
enters the queue for the whole gang; when the queue offers it, the
Distributor finds a worker for every member, and places all of them, or
none and parks the leader until capacity frees. A queue with
``take_along`` (a ``FairScheduler``) is asked to count the other members
too, against their tenants' quotas and fair shares; without room there,
the leader stays queued and the gang is tried at the next dispatch. A gang
not placed within :attr:`Gangs.timeout` seconds of its first member's
arrival is dead-lettered as a whole (``gang_timeout``). Once placed,
members are ordinary tasks: each completes, fails and retries on its own.
"""

from __future__ import annotations

from collections.abc import Hashable

import attrs

from taskdist._validate import check_number
from taskdist.errors import DuplicateTaskError, InvalidArgumentError
from taskdist.task import Task

__all__ = ["Gangs"]


@attrs.frozen
class Gangs:
    """How long a gang may wait to be placed: ``timeout`` seconds (> 0) from its first
    member's arrival, after which every member is dead-lettered as ``gang_timeout``.

    What it costs the Distributor: a member's arrival O(1) (and one timer per
    gang, O(log n)); trying to place a gang of size m, m balancer choices and
    tracker assignments (undone if it does not fit); a timeout O(m).

    >>> Gangs(timeout=60.0)
    Gangs(timeout=60.0)
    """

    timeout: float = 300.0

    def __attrs_post_init__(self) -> None:
        timeout = check_number(self.timeout, "Gangs.timeout", positive=True)
        object.__setattr__(self, "timeout", timeout)


WAITING_FOR_GANG: Hashable = ("waiting for the gang",)
"""The parking group of every gang member that waits for the rest of its gang (one
group for all gangs, so the groups looked at on each release stay few)."""


@attrs.frozen
class GangMark:
    """Part of the parking signature of a gang's leader: its gang's shape (how many
    members of each placement signature), so gangs that fit alike park together."""

    shape: Hashable


def gang_leaders(group: Hashable) -> bool:
    """Whether a parking group is of gang leaders waiting for room (one shape)."""
    return type(group) is tuple and len(group) == 2 and isinstance(group[1], GangMark)


@attrs.frozen
class GangTimer:
    """The timer key of a gang's timeout."""

    gang: Hashable


@attrs.frozen
class GangRetryTimer:
    """The timer key of a complete gang's next try, once its tenants' rate quotas refill
    (a wakeup only: the leader waits in the queue, tried at every dispatch)."""

    gang: Hashable


class _Gang:
    __slots__ = ("due", "leader", "members", "size")

    def __init__(self, size: int, due: float) -> None:
        self.size = size
        self.due = due
        self.members: dict[Hashable, Task] = {}
        self.leader: Hashable = None


class GangBook:
    """The gangs not placed yet: their members, sizes, leaders and timeouts.

    Every operation is O(1), except ``members`` (O(size)).
    """

    __slots__ = ("_gangs", "_of", "policy")

    def __init__(self, policy: Gangs) -> None:
        self.policy = policy
        self._gangs: dict[Hashable, _Gang] = {}
        self._of: dict[Hashable, Hashable] = {}

    def check(self, task: Task) -> bool:
        """Whether ``task`` would complete its gang; raises if it cannot join it, and
        changes nothing. O(1).

        Raises:
            InvalidArgumentError: its ``gang_size`` is not the gang's, or the gang
                already has all its members.
            DuplicateTaskError: a member with its id waits in the gang already.
        """
        gang = self._gangs.get(task.gang)
        if gang is None:
            return task.gang_size == 1
        if task.gang_size != gang.size:
            raise InvalidArgumentError(
                f"task {task.id!r} says gang {task.gang!r} has {task.gang_size} members, "
                f"its other members say {gang.size}; it was not added"
            )
        if task.id in gang.members:
            raise DuplicateTaskError(f"task {task.id!r} is already in gang {task.gang!r}")
        if len(gang.members) >= gang.size:
            raise InvalidArgumentError(
                f"gang {task.gang!r} already has its {gang.size} members; "
                f"task {task.id!r} was not added"
            )
        return len(gang.members) + 1 == gang.size

    def arrived(self, gang_id: Hashable) -> list[Task]:
        """The members of a gang not placed yet, in the order they arrived ([] for a
        gang none of whose members waits). O(size)."""
        gang = self._gangs.get(gang_id)
        return [] if gang is None else list(gang.members.values())

    def join(self, task: Task, now: float) -> tuple[bool, bool]:
        """Add a checked member: ``(whether its gang is new, whether it is now complete)``.
        A member that completes its gang becomes the leader. O(1)."""
        gang = self._gangs.get(task.gang)
        new = gang is None
        if gang is None:
            assert task.gang_size is not None
            gang = self._gangs[task.gang] = _Gang(task.gang_size, now + self.policy.timeout)
        gang.members[task.id] = task
        self._of[task.id] = task.gang
        complete = len(gang.members) == gang.size
        if complete:
            gang.leader = task.id
        return new, complete

    def waiting(self, task_id: Hashable) -> bool:
        """Whether ``task_id`` is a member of a gang not placed yet. O(1)."""
        return task_id in self._of

    def is_leader(self, task: Task) -> bool:
        """Whether ``task`` stands in the queue for its whole gang. O(1)."""
        gang = self._gangs.get(task.gang) if task.gang is not None else None
        return gang is not None and gang.leader == task.id

    def leader_of(self, task_id: Hashable) -> Hashable:
        """The leader of the waiting gang ``task_id`` is a member of (``None`` if the gang
        has none, or it is no waiting member). O(1)."""
        gang_id = self._of.get(task_id)
        return None if gang_id is None else self._gangs[gang_id].leader

    def members(self, gang_id: Hashable) -> list[Task]:
        """The waiting members of a gang, its leader first. O(size)."""
        gang = self._gangs[gang_id]
        leader = gang.members.get(gang.leader)
        rest = [task for task in gang.members.values() if task.id != gang.leader]
        return rest if leader is None else [leader, *rest]

    def replace(self, task: Task) -> None:
        """A waiting member changed (e.g. its priority): keep the new one. O(1)."""
        gang_id = self._of.get(task.id)
        if gang_id is not None:
            self._gangs[gang_id].members[task.id] = task

    def leave(self, task_id: Hashable) -> tuple[Hashable, Hashable] | None:
        """A waiting member left (cancelled, expired): ``(its gang, the leader to send back
        to wait)`` (that leader ``None`` if the gang had none, or it was this one), or
        ``None`` if it was no waiting member. The gang is forgotten once empty. O(1)."""
        gang_id = self._of.pop(task_id, None)
        if gang_id is None:
            return None
        gang = self._gangs[gang_id]
        del gang.members[task_id]
        leader, gang.leader = gang.leader, None
        if not gang.members:
            del self._gangs[gang_id]
        return gang_id, (None if leader == task_id else leader)

    def forget(self, gang_id: Hashable) -> None:
        """Every member started, or the gang timed out: forget it (members that still
        live are ordinary tasks from now on). O(size)."""
        gang = self._gangs.pop(gang_id)
        for task_id in gang.members:
            del self._of[task_id]

    def due(self, gang_id: Hashable) -> float | None:
        """When the gang times out, or ``None`` if it is not waiting."""
        gang = self._gangs.get(gang_id)
        return None if gang is None else gang.due

    def words(self, task: Task) -> str:
        """Why a member waits, for ``explain``."""
        words = self.words_of(task.id)
        assert words is not None
        return words

    def words_of(self, task_id: Hashable) -> str | None:
        """Why a member waits, for ``explain``; ``None`` for a task in no waiting gang."""
        gang_id = self._of.get(task_id)
        if gang_id is None:
            return None
        gang = self._gangs[gang_id]
        count = f"gang {gang_id!r}: {len(gang.members)} of {gang.size}"
        if gang.leader is None:
            return f"waiting for {count}"
        if gang.leader == task_id:
            return f"{count}, placed all together"
        return f"waiting for {count}, placed all together with {gang.leader!r}"

    def data(self) -> list[tuple[Hashable, int, float, Hashable, list[Task]]]:
        """Every gang not placed yet: ``(gang, size, due, leader or None, members)``, the
        members in the order they arrived. O(members)."""
        return [
            (gang_id, gang.size, gang.due, gang.leader, list(gang.members.values()))
            for gang_id, gang in self._gangs.items()
        ]

    def restore(
        self, gang_id: Hashable, size: int, due: float, leader: Hashable, members: list[Task]
    ) -> None:
        """Take back a gang as :meth:`data` gave it (checked by the caller). O(size)."""
        gang = self._gangs[gang_id] = _Gang(size, due)
        gang.leader = leader
        for task in members:
            gang.members[task.id] = task
            self._of[task.id] = gang_id

    def __contains__(self, gang_id: object) -> bool:
        return gang_id in self._gangs
