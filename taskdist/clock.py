"""Time, injected.

Every taskdist component that needs the time takes a :class:`Clock` and calls
``clock.now()``. This module is the only place that reads the system time, so
a :class:`ManualClock` makes any component, and any simulation built from
them, exactly reproducible.

Times are float seconds on the clock's own scale; only differences matter.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from taskdist._validate import check_number, shown
from taskdist.errors import ClockError, InvalidArgumentError, InvalidTypeError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "MonotonicClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now() -> float``: seconds, never decreasing."""

    def now(self) -> float:
        """The current time in seconds."""
        ...


def check_clock(clock: object) -> Clock:
    """``clock``, or a new :class:`MonotonicClock` for ``None``: what a component keeps. O(1).

    Raises:
        InvalidTypeError: ``clock`` has no ``now()`` method.
    """
    if clock is None:
        return MonotonicClock()
    if not callable(getattr(clock, "now", None)):
        raise InvalidTypeError(f"clock must have a now() method, got {clock!r}")
    return clock  # type: ignore[return-value]  # it has now(): that is the protocol


def reader(clock: Clock) -> Callable[[], float]:
    """What a component calls for the time: ``clock.now`` itself, checked if a host's. O(1).

    This package's own clocks (:class:`ManualClock` and :class:`MonotonicClock`,
    and subclasses that keep their ``now``) never read a NaN or infinite time,
    so their ``now`` is returned as it is. Any other clock's ``now`` is wrapped: a
    reading that is not a finite number raises
    :class:`~taskdist.errors.ClockError` (an ``InvalidArgumentError``) naming
    the value, or :class:`~taskdist.errors.InvalidTypeError` if it is not a
    number, so that the call that read it can stop before it changes anything.
    """
    now = clock.now
    if getattr(type(clock), "now", None) in (ManualClock.now, MonotonicClock.now):
        return now

    def checked_now() -> float:
        t = now()
        if t.__class__ is float and -math.inf < t < math.inf:  # the usual reading
            return t
        return _finite_reading(t, clock)

    return checked_now


def _finite_reading(value: object, clock: object) -> float:
    try:
        return check_number(value, "a time")
    except InvalidArgumentError:
        raise ClockError(
            f"the clock {shown(clock)} read {shown(value)}: its now() must return a finite "
            "number of seconds"
        ) from None
    except InvalidTypeError:
        raise InvalidTypeError(
            f"the clock {shown(clock)} read {shown(value)}: its now() must return a number "
            "of seconds (an int or float)"
        ) from None


class MonotonicClock:
    """The system's monotonic clock (``time.monotonic``), the default for live use.

    ``now()`` is O(1). It holds no state, so it is safe to share between threads.

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

    Its time is any finite float. It refuses to go backwards, or to a NaN or
    infinite time (a step that would overflow past the largest float
    included), raising :class:`~taskdist.errors.ClockError` and staying where
    it was; a time that is not a number (a ``str``, a ``bool``) is an
    :class:`~taskdist.errors.InvalidTypeError`. Every operation is O(1).

    It is safe to share between threads: ``advance`` and ``set`` hold a
    lock, so no step is lost and no thread moves it backwards; ``now`` takes
    no lock.

    >>> clock = ManualClock(start=10.0)
    >>> clock.advance(2.5)
    12.5
    >>> clock.set(20.0)
    20.0
    >>> clock.now()
    20.0
    """

    __slots__ = ("_lock", "_now")

    def __init__(self, start: float = 0.0) -> None:
        self._now = _finite_time(start, "start")
        self._lock = threading.Lock()

    def now(self) -> float:
        """The current time in seconds. O(1)."""
        return self._now

    def advance(self, dt: float) -> float:
        """Move forward by ``dt >= 0`` seconds and return the new time. O(1)."""
        if dt.__class__ is not float or not 0.0 <= dt < math.inf:  # else plainly valid
            dt = _finite_time(dt, "dt")
            if dt < 0:
                raise ClockError(f"dt must be >= 0 (a clock never goes backwards), got {dt!r}")
        with self._lock:
            now = self._now + dt
            if now == math.inf:
                raise ClockError(
                    f"advancing {self._now!r} by {dt!r} passes the largest float: "
                    "the time would be infinite"
                )
            self._now = now
        return now

    def set(self, t: float) -> float:
        """Move to time ``t >= now()`` and return it. O(1)."""
        t = _finite_time(t, "t")
        with self._lock:
            if t < self._now:
                raise ClockError(
                    f"t must be >= the current time {self._now!r} "
                    f"(a clock never goes backwards), got {t!r}"
                )
            self._now = t
        return t

    def __reduce__(self) -> tuple[type[ManualClock], tuple[float]]:
        # Copies and pickles carry the time, and get a lock of their own.
        return (type(self), (self._now,))

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"


def _finite_time(value: object, name: str) -> float:
    try:
        return check_number(value, name)
    except InvalidArgumentError as error:
        raise ClockError(str(error)) from None
