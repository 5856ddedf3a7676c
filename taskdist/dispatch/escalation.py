"""Escalation: a task that has waited too long is raised in priority, or sent to a pool.

On top of aging (which a queue may do continuously), an :class:`Escalation`
is a rule with steps: a waiting task whose wait at its current priority
crosses the threshold for that priority (``after``), or that has used up a
share of its deadline's slack (``slack``), is raised by ``raise_by`` levels
(never above ``ceiling``) and, if ``to`` is given, may run only in that pool
from then on. Each step happens once, exactly when its threshold is crossed,
driven by a timer per waiting task: the queue is never rescanned.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from taskdist._validate import check_int, check_number
from taskdist.dispatch.routing import Pool
from taskdist.errors import InvalidArgumentError, InvalidTypeError
from taskdist.task import Priority, Task

__all__ = ["Escalation"]


def _after(value: float | Mapping[int, float] | None) -> float | Mapping[int, float] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        checked: dict[int, float] = {}
        for priority, seconds in value.items():
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise InvalidTypeError(
                    f"Escalation.after keys are priorities (int), got {priority!r}"
                )
            name = f"Escalation.after[{priority}]"
            checked[priority] = check_number(seconds, name, positive=True)
        return checked
    return check_number(value, "Escalation.after", positive=True)


@attrs.frozen
class Escalation:
    """When and how a waiting task escalates. Each question is O(1).

    - ``after``: seconds a task may wait at one priority before it is raised;
      one number for every priority, or ``{priority: seconds}`` (priorities
      not listed never escalate by waiting).
    - ``slack``: a fraction in (0, 1): a task with a deadline escalates once
      it has used up that share of its slack at arrival (``deadline -
      arrival - cost``), if that comes first.
    - ``raise_by``: levels per step (>= 1); a task never goes above
      ``ceiling`` (default ``Priority.HIGH``: only the host makes CRITICAL).
    - ``to``: from its first escalation on, the task may run only in this pool.

    >>> rule = Escalation(after={3: 600.0, 2: 300.0})
    >>> rule.threshold(Task("t", priority=3)), rule.threshold(Task("u", priority=4))
    (600.0, None)
    >>> rule.raised(Task("t", priority=3))
    2
    """

    after: float | Mapping[int, float] | None = attrs.field(default=None, converter=_after)
    slack: float | None = None
    raise_by: int = 1
    ceiling: int = Priority.HIGH
    to: Pool | None = None

    def __attrs_post_init__(self) -> None:
        if self.after is None and self.slack is None:
            raise InvalidArgumentError("an Escalation needs after=, slack= or both")
        if self.slack is not None:
            slack = check_number(self.slack, "Escalation.slack", positive=True, maximum=1.0)
            object.__setattr__(self, "slack", slack)
        check_int(self.raise_by, "Escalation.raise_by", minimum=1)
        check_int(self.ceiling, "Escalation.ceiling")
        if self.to is not None and not isinstance(self.to, Pool):
            raise InvalidTypeError(f"Escalation.to must be a Pool, got {self.to!r}")

    def threshold(self, task: Task) -> float | None:
        """Seconds ``task`` may wait at its priority before a step, or ``None`` (never)."""
        if task.priority <= self.ceiling:
            return None
        after = self.after
        if after is None:
            return None
        if isinstance(after, Mapping):
            return after.get(task.priority)
        return after

    def slack_due(self, task: Task, arrived: float) -> float | None:
        """When ``task`` will have used its share of slack (``None``: no deadline or rule)."""
        if self.slack is None or task.deadline is None or task.priority <= self.ceiling:
            return None
        room = task.deadline - arrived - task.cost
        return arrived + self.slack * max(room, 0.0)

    def raised(self, task: Task) -> int:
        """The priority one step gives ``task`` (never above ``ceiling``)."""
        return max(task.priority - self.raise_by, min(self.ceiling, task.priority))
