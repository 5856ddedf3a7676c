"""The ranges of numbers the workers layer accepts, and the checks that hold them.

Inside these ranges every sum, ratio and average the tracker and the
balancers compute stays finite and exact enough: a load ratio is at most
``MAX_CAPACITY / MIN_CAPACITY``, a load per unit of weight at most that over
``MIN_WEIGHT * MIN_RAMP_WEIGHT``, a weight total of a million workers far below
the largest float. Outside them the input is refused with
:class:`~taskdist.errors.InvalidArgumentError`, saying what is allowed.

- a worker's ``weight``: ``MIN_WEIGHT`` to ``MAX_WEIGHT`` (1e-9 to 1e9): a
  relative share; a ratio of 1e18 between two workers is already no share;
- each amount of a worker's ``capacity``: 0 (none), or ``MIN_CAPACITY`` to
  ``MAX_CAPACITY`` (1e-9 to 1e15): 1e-9 is the fit tolerance, below it an
  amount cannot be told from none;
- a span of time (a duration reported to ``release``, an ejection time, a
  slow-start window): at most ``MAX_SECONDS`` (1e12 s, about 31 700 years).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from taskdist._validate import MAX_CAPACITY as _MAX_CAPACITY
from taskdist._validate import MAX_WEIGHT as _MAX_WEIGHT
from taskdist._validate import MIN_CAPACITY as _MIN_CAPACITY
from taskdist._validate import MIN_WEIGHT as _MIN_WEIGHT
from taskdist._validate import check_number
from taskdist.errors import InvalidArgumentError

__all__ = [
    "MAX_CAPACITY",
    "MAX_SECONDS",
    "MAX_WEIGHT",
    "MIN_CAPACITY",
    "MIN_RAMP_WEIGHT",
    "MIN_WEIGHT",
    "check_capacity",
    "check_weight",
]

# A Worker is built within these (the vocabulary holds them); updates are checked again.
MIN_WEIGHT: Final = _MIN_WEIGHT
MAX_WEIGHT: Final = _MAX_WEIGHT
MIN_CAPACITY: Final = _MIN_CAPACITY
MAX_CAPACITY: Final = _MAX_CAPACITY
MAX_SECONDS: Final = 1e12
MIN_RAMP_WEIGHT: Final = 1e-6
"""The smallest ``SlowStart.min_weight``: a ramping weight stays at least
``MIN_WEIGHT * MIN_RAMP_WEIGHT``, so a load per unit of weight stays finite."""


def check_weight(value: object, name: str) -> float:
    """A weight within ``[MIN_WEIGHT, MAX_WEIGHT]`` (as a float)."""
    weight = check_number(value, name, positive=True)
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise InvalidArgumentError(
            f"{name} must be within [{MIN_WEIGHT:g}, {MAX_WEIGHT:g}] (a relative share), "
            f"got {value!r}"
        )
    return weight


def check_capacity(capacity: Mapping[str, float], name: str) -> None:
    """Each amount 0 or within ``[MIN_CAPACITY, MAX_CAPACITY]`` (the mapping is a
    ``Worker``'s, already finite and >= 0)."""
    for resource, amount in capacity.items():
        if amount and not MIN_CAPACITY <= amount <= MAX_CAPACITY:
            raise InvalidArgumentError(
                f"{name}[{resource!r}] must be 0 or within [{MIN_CAPACITY:g}, "
                f"{MAX_CAPACITY:g}], got {amount!r}"
            )
