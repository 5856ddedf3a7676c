"""Preemption advice: which running tasks to give back so that an urgent one can start.

The Distributor never stops a running task itself. When a task a
:class:`Preemption` rule cares about (CRITICAL, or bound to a deadline) is
parked because every worker that could run it is full, the Distributor asks
the rule for victims among the leases on those workers and emits a
``preempt`` event naming them; the host decides, and
``Distributor.preempt(victim_id)`` gives a victim back to the queue with its
age and without spending an attempt. A CRITICAL task and a task built with
``preemptible=False`` are never offered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from taskdist.errors import InvalidTypeError
from taskdist.task import Priority, Task

__all__ = ["Preemption"]

_CRITICAL = int(Priority.CRITICAL)


def _urgent(task: Task) -> bool:
    return task.priority <= _CRITICAL or task.deadline is not None


@attrs.frozen
class Preemption:
    """When to ask for preemption, and whom to offer. ``victims`` is O(r log r) for r leases.

    - ``when``: the tasks whose parking may call for it (default: CRITICAL
      tasks and tasks with a deadline).
    - A victim must be less urgent than the task (a higher priority number;
      with equal priorities, a later deadline or none), ``preemptible``, and
      not CRITICAL. They are offered least urgent first: highest priority
      number, then the most recently started (the least work lost).

    >>> rule = Preemption()
    >>> urgent = Task("page", priority=0)
    >>> running = [(Task("report", priority=3), 5.0), (Task("batch", priority=4), 1.0),
    ...            (Task("pinned", priority=4, preemptible=False), 9.0)]
    >>> [t.id for t in rule.victims(urgent, running)]
    ['batch', 'report']
    """

    when: Callable[[Task], bool] = _urgent

    def __attrs_post_init__(self) -> None:
        if not callable(self.when):
            raise InvalidTypeError(f"Preemption.when must be callable, got {self.when!r}")

    def wants(self, task: Task) -> bool:
        """Whether ``task`` waiting for capacity calls for preemption. O(1) plus ``when``."""
        return bool(self.when(task))

    def victims(self, task: Task, running: Sequence[tuple[Task, float]]) -> list[Task]:
        """The running tasks (``(task, started_at)``) ``task`` may displace, least urgent first."""
        offered = [
            (victim, started)
            for victim, started in running
            if victim.preemptible and victim.priority > _CRITICAL and _outranks(task, victim)
        ]
        offered.sort(key=lambda pair: (-pair[0].priority, -pair[1]))
        return [victim for victim, _ in offered]


def _outranks(task: Task, victim: Task) -> bool:
    if task.priority != victim.priority:
        return task.priority < victim.priority
    if task.deadline is None:
        return False
    return victim.deadline is None or task.deadline < victim.deadline
