"""Dynamic batch sizing: rules that steer a group's target batch size toward a latency goal.

A :class:`~taskdist.batching.BatchOptimizer` built with ``sizing=`` keeps one
*target size* per group. A batch of that group is full when it holds that
many tasks; each time the host reports how long a batch took
(``record(batch, duration)``), the rule computes the group's next target,
which the optimizer clamps to ``[min_size, max_size]``.

A rule is any object with the two methods of :class:`SizingRule`; it holds no
per-group state (the optimizer does), so one rule can serve many optimizers.
:class:`AIMDSizing` is the one provided.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import attrs

from taskdist._validate import check_int, check_number
from taskdist.errors import InvalidArgumentError

__all__ = ["AIMDSizing", "SizingRule"]


@runtime_checkable
class SizingRule(Protocol):
    """How a group's target batch size evolves. Both methods must be pure and O(1).

    - ``initial(min_size, max_size)``: the target of a group never recorded.
    - ``adjust(current, size, duration, min_size, max_size)``: the group's
      next target, given its target now (``current``) and that a batch of
      ``size`` tasks took ``duration`` seconds.

    The optimizer clamps whatever they return to ``[min_size, max_size]``.
    """

    def initial(self, min_size: int, max_size: int) -> int: ...

    def adjust(
        self, current: int, size: int, duration: float, min_size: int, max_size: int
    ) -> int: ...


@attrs.frozen
class AIMDSizing:
    """Additive increase, multiplicative decrease toward a target batch latency.

    After each recorded batch of a group whose target is ``current``:

    - it took longer than ``target_latency``: ``current -> floor(current * decrease)``;
    - it was within the target and full (``size >= current``): ``current -> current + increase``;
    - otherwise (within target but not full: the group is not size-limited,
      so a bigger target would tell nothing): unchanged.

    The result is clamped to ``[min_size, max_size]``.

    **Convergence.** Let latency grow with batch size, ``L(n)`` non-decreasing,
    let ``n*`` be the largest size in ``[min_size, max_size]`` with ``L(n*) <=
    target_latency`` (``n* = min_size`` if there is none) and ``U = min(max_size,
    n* + increase)``. A group whose batches are always full reaches the band
    ``[max(min_size, floor(decrease * (n* + 1))), U]`` within ``(U - start) /
    increase`` batches from below or ``log(start / U) / log(1 / decrease)``
    from above, and never leaves it: below ``n* + 1`` it only grows, by at
    most ``increase``, to at most ``U``; above ``n*`` it shrinks to at least
    ``floor(decrease * (n* + 1))``. If every size meets the target it settles
    at ``max_size``; if none does, at ``min_size``. It is the sawtooth TCP
    congestion control draws: ``decrease=0.5`` reacts fast to overload and
    averages about three quarters of ``n*``; a ``decrease`` nearer 1
    averages closer to ``n*`` but sheds an overload more slowly.

    ``adjust`` and ``initial`` are O(1).

    >>> rule = AIMDSizing(target_latency=1.0)
    >>> rule.adjust(current=8, size=8, duration=0.5, min_size=1, max_size=32)
    9
    >>> rule.adjust(current=9, size=9, duration=1.5, min_size=1, max_size=32)
    4
    """

    target_latency: float
    """Seconds a batch should take at most (> 0)."""
    increase: int = 1
    """Tasks added to the target after a full batch within the target (>= 1)."""
    decrease: float = 0.5
    """Factor the target is multiplied by after a batch over the target (0 < decrease < 1)."""
    initial_size: int | None = None
    """Target of a group not yet recorded (>= 1); ``None`` starts at ``min_size``."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(
            self,
            "target_latency",
            check_number(self.target_latency, "target_latency", positive=True),
        )
        check_int(self.increase, "increase", minimum=1)
        decrease = check_number(self.decrease, "decrease", positive=True)
        if decrease >= 1.0:
            raise InvalidArgumentError(f"decrease must be < 1, got {self.decrease!r}")
        object.__setattr__(self, "decrease", decrease)
        if self.initial_size is not None:
            check_int(self.initial_size, "initial_size", minimum=1)

    def initial(self, min_size: int, max_size: int) -> int:
        """``initial_size`` clamped to ``[min_size, max_size]``, or ``min_size``. O(1)."""
        if self.initial_size is None:
            return min_size
        return min(max_size, max(min_size, self.initial_size))

    def adjust(self, current: int, size: int, duration: float, min_size: int, max_size: int) -> int:
        """The next target after a batch of ``size`` tasks took ``duration`` seconds. O(1)."""
        if duration > self.target_latency:
            proposed = math.floor(current * self.decrease)
        elif size >= current:
            proposed = current + self.increase
        else:
            proposed = current
        return min(max_size, max(min_size, proposed))
