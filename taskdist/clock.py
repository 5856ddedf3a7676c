"""Time, injected.

Every taskdist component that needs the time takes a :class:`Clock` and calls
``clock.now()``. This module is the only place that reads the system time, so
a :class:`ManualClock` makes any component, and any simulation built from
them, exactly reproducible.

Times are float seconds on the clock's own scale; only differences matter.
"""

from __future__ import annotations

import math
import time
from typing import Protocol, runtime_checkable

from taskdist.errors import ClockError

__all__ = ["Clock", "ManualClock", "MonotonicClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now() -> float``: seconds, never decreasing."""

    def now(self) -> float:
        """The current time in seconds."""
        ...


class MonotonicClock:
    """The system's monotonic clock (``time.monotonic``), the default for live use.

    ``now()`` is O(1).

    >>> MonotonicClock().now() >= 0.0
    True
    """

    __slots__ = ()

    # The builtin itself, not a wrapper: hot paths call now() twice per task.
    now = staticmethod(time.monotonic)
    """The current monotonic time in seconds. O(1)."""

    def __repr__(self) -> str:
        return "MonotonicClock()"


class ManualClock:
    """A clock that moves only when told to: for tests and simulation.

    It refuses to go backwards or to a NaN or infinite time, raising
    :class:`~taskdist.errors.ClockError` and staying where it was. Every
    operation is O(1).

    >>> clock = ManualClock(start=10.0)
    >>> clock.advance(2.5)
    12.5
    >>> clock.set(20.0)
    20.0
    >>> clock.now()
    20.0
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = _finite_time(start, "start")

    def now(self) -> float:
        """The current time in seconds. O(1)."""
        return self._now

    def advance(self, dt: float) -> float:
        """Move forward by ``dt >= 0`` seconds and return the new time. O(1)."""
        dt = _finite_time(dt, "dt")
        if dt < 0:
            raise ClockError(f"dt must be >= 0 (a clock never goes backwards), got {dt!r}")
        self._now += dt
        return self._now

    def set(self, t: float) -> float:
        """Move to time ``t >= now()`` and return it. O(1)."""
        t = _finite_time(t, "t")
        if t < self._now:
            raise ClockError(
                f"t must be >= the current time {self._now!r} "
                f"(a clock never goes backwards), got {t!r}"
            )
        self._now = t
        return t

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"


def _finite_time(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ClockError(f"{name} must be a finite number of seconds, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ClockError(f"{name} must be a finite number of seconds, got {value!r}")
    return result
