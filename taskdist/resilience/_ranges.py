"""The accepted ranges of the resilience components' numbers, and the check they share.

Each bound is far beyond any sensible setting and keeps the arithmetic
finite and exact enough: a value outside it is refused at the boundary with
an :class:`~taskdist.errors.InvalidArgumentError` that says the range.
"""

from __future__ import annotations

from typing import Final

from taskdist._validate import check_number
from taskdist.errors import InvalidArgumentError

__all__ = ["LARGEST_BURST", "LARGEST_WINDOW", "LONGEST_DURATION", "check_duration"]

LONGEST_DURATION: Final = 1e9
"""Seconds (about 31.7 years): the longest open duration, half-open wait, retry
delay or cap. Sums and clock times plus such durations stay far from overflow."""

LARGEST_WINDOW: Final = 1_000_000
"""Calls (count window) or seconds (time window, about 11.6 days) in a breaker's
sliding window. Memory grows with what the window holds, never up front."""

LARGEST_BURST: Final = 2.0**40
"""Units (about 1.1e12) a rate limiter's bucket holds: its unit counts stay exact
integers in a float, with 2**-10 of a unit to spare for fractional amounts."""


def check_duration(value: object, name: str, *, positive: bool = False) -> float:
    """A finite number of seconds, ``>= 0`` (``> 0`` if ``positive``), at most
    :data:`LONGEST_DURATION`."""
    seconds = check_number(value, name, minimum=0.0, positive=positive)
    if seconds > LONGEST_DURATION:
        raise InvalidArgumentError(
            f"{name} must be at most {LONGEST_DURATION:g} seconds (about 31.7 years), got {value!r}"
        )
    return seconds
