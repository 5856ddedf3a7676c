"""RetryBudget: retries may be at most a share of the work in flight, as Envoy's budgets.

When a dependency fails, every task that meets it fails and retries, and the
retries fail again: a retry storm buries the dependency just when it needs
room. A budget bounds the retries in progress (tasks that have failed at
least once and are not finished) by a share of the tasks in flight, with a
floor so that a quiet system can still retry. A retry over budget is delayed
until the budget has room, or dead-lettered as ``retry_budget``, by policy.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Literal

from taskdist._validate import check_choice, check_int, check_key, check_number
from taskdist.errors import InvalidTypeError
from taskdist.task import Task

__all__ = ["OverBudget", "RetryBudget"]

OverBudget = Literal["delay", "dead_letter"]
"""What a retry over budget does: wait for room (``"delay"``) or go to the DLQ."""
_OVER: tuple[OverBudget, ...] = ("delay", "dead_letter")


def _everything(_task: Task) -> Hashable:
    return None


class RetryBudget:
    """Bounds retries in progress per group: ``retries <= max(minimum, ratio * in_flight)``.

    - ``ratio``: the share of the group's leased tasks that may be retries (0..1].
    - ``minimum``: retries always allowed in a group (>= 0).
    - ``per``: the group of a task (default: one budget for all); e.g.
      ``lambda task: task.tenant`` for a budget per tenant.
    - ``over``: ``"delay"`` (the retry waits, re-checked at its next retry
      time) or ``"dead_letter"`` (reason ``retry_budget``).

    The Distributor tells it when a task is leased or its lease ends, when a
    retry starts and when a task that retried finishes; ``allows(task)`` asks
    before a retry. Every operation is O(1). Not safe to share between threads.

    >>> budget = RetryBudget(ratio=0.5, minimum=1)
    >>> for i in range(4):
    ...     budget.leased(Task(i))
    >>> budget.allows(Task(9)), budget.limit(None)
    (True, 2.0)
    """

    __slots__ = ("_counts", "_group", "_held", "_minimum", "_over", "_ratio")

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        minimum: int = 3,
        per: Callable[[Task], Hashable] | None = None,
        over: OverBudget = "delay",
    ) -> None:
        """
        Raises:
            InvalidArgumentError: ``ratio`` outside (0, 1], ``minimum`` < 0.
            UnknownPolicyError: ``over`` is not ``"delay"`` or ``"dead_letter"``.
            InvalidTypeError: ``per`` not callable.
        """
        self._ratio = check_number(ratio, "ratio", positive=True, maximum=1.0)
        self._minimum = check_int(minimum, "minimum", minimum=0)
        if per is not None and not callable(per):
            raise InvalidTypeError(f"per must be callable, got {per!r}")
        self._group = _everything if per is None else per
        self._over: OverBudget = check_choice(over, "over", _OVER)
        # group -> [leased tasks, retries in progress]
        self._counts: dict[Hashable, list[int]] = {}
        # Counted task id -> [its group, how many counts it holds].
        self._held: dict[Hashable, list[Any]] = {}

    @property
    def over(self) -> OverBudget:
        """What a retry over budget does."""
        return self._over

    def group(self, task: Task) -> Hashable:
        """The budget group of ``task``.

        Raises:
            InvalidTypeError: ``per`` returned an unhashable value.
            InvalidArgumentError: ``per`` returned a NaN (or a tuple holding one).
        """
        if self._group is _everything:
            return None
        return check_key(self._group(task), "RetryBudget per(task)")

    def limit(self, group: Hashable) -> float:
        """Retries the group may have in progress now."""
        leased = self._counts.get(group, (0, 0))[0]
        return max(float(self._minimum), self._ratio * leased)

    def retries(self, group: Hashable) -> int:
        """Retries in progress in the group."""
        return self._counts.get(group, (0, 0))[1]

    def allows(self, task: Task) -> bool:
        """Whether ``task`` may start a retry now (one more would fit the budget)."""
        group = self.group(task)
        return self.retries(group) + 1 <= self.limit(group)

    def leased(self, task: Task) -> None:
        """``task`` was placed on a worker."""
        self._take(task, 0)

    def unleased(self, task: Task) -> None:
        """``task``'s lease ended (nothing, if its ``leased`` was never counted)."""
        self._give(task, 0)

    def retrying(self, task: Task) -> None:
        """``task`` starts retrying (its first failure that leads to a retry)."""
        self._take(task, 1)

    def settled(self, task: Task) -> None:
        """A task that had been retrying finished (or left the distributor)."""
        self._give(task, 1)

    def _take(self, task: Task, column: int) -> None:
        """Count ``task`` in its group's column; the group is read once, when the task is
        first counted, and kept while it counts (so that giving it back never asks
        ``per`` again: a ``per`` that raises then would leave a count for ever)."""
        held = self._held.get(task.id)
        if held is None:
            group = self.group(task)  # checked before anything is counted
            held = self._held[task.id] = [group, 0]
        row = self._counts.get(held[0])
        if row is None:
            row = self._counts[held[0]] = [0, 0]
        row[column] += 1
        held[1] += 1

    def _give(self, task: Task, column: int) -> None:
        held = self._held.get(task.id)
        if held is None:
            return  # never counted (its count was refused as it was taken)
        group = held[0]
        row = self._counts[group]
        row[column] -= 1
        held[1] -= 1
        if not held[1]:
            del self._held[task.id]
        if row == [0, 0]:
            del self._counts[group]  # an idle group costs nothing
