"""Service-time distributions: how long one attempt of a task runs.

Each distribution is a frozen value with a ``mean`` (what planning and a
task's ``cost`` use) and ``sample(rng)``, one draw from an injected
``random.Random``, O(1) (``Empirical``: O(1) too, a uniform pick). The
built-in ones also give ``sampler(rng)``: a function of no arguments drawing
the same values as ``sample(rng)`` would, without looking up the
distribution's parameters on every draw (what the simulator's hot loop
calls; it falls back to ``sample`` for any other distribution).

>>> import random
>>> rng = random.Random(1)
>>> Constant(2.0).sample(rng), Exponential(2.0).mean
(2.0, 2.0)
>>> round(LogNormal(mean=3.0, cv=0.5).mean, 6)
3.0
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, runtime_checkable

import attrs

from taskdist._validate import check_number, shown
from taskdist.errors import InvalidArgumentError, InvalidTypeError

__all__ = ["Constant", "Empirical", "Exponential", "LogNormal", "ServiceTime", "Uniform"]

_LARGEST = 1e12  # seconds; far beyond any run, and still exact to the microsecond in a float


@runtime_checkable
class ServiceTime(Protocol):
    """Anything with a ``mean`` (seconds) and ``sample(rng) -> seconds >= 0``."""

    @property
    def mean(self) -> float: ...

    def sample(self, rng: random.Random) -> float: ...


@attrs.frozen
class Constant:
    """Always ``value`` seconds (M/D/c). O(1)."""

    value: float

    def __attrs_post_init__(self) -> None:
        check_number(self.value, "Constant.value", minimum=0.0, maximum=_LARGEST)

    @property
    def mean(self) -> float:
        """The value."""
        return self.value

    def sample(self, rng: random.Random) -> float:
        """The value. O(1)."""
        return self.value

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """``sample(rng)`` as a function of no arguments. O(1) per draw."""
        return itertools.repeat(self.value).__next__


@attrs.frozen
class Exponential:
    """Exponentially distributed with the given ``mean`` (> 0): the M of M/M/c. O(1)."""

    mean: float

    def __attrs_post_init__(self) -> None:
        check_number(self.mean, "Exponential.mean", positive=True, maximum=_LARGEST)

    def sample(self, rng: random.Random) -> float:
        """One draw. O(1)."""
        return rng.expovariate(1.0 / self.mean)

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """``sample(rng)`` as a function of no arguments. O(1) per draw."""
        return functools.partial(rng.expovariate, 1.0 / self.mean)


@attrs.frozen
class LogNormal:
    """Log-normal with the given ``mean`` (> 0) and coefficient of variation ``cv`` (> 0).

    Service times of calls to remote services are skewed like this: most are
    near the median, a few take several times longer. O(1).
    """

    mean: float
    cv: float = 0.5

    def __attrs_post_init__(self) -> None:
        check_number(self.mean, "LogNormal.mean", positive=True, maximum=_LARGEST)
        check_number(self.cv, "LogNormal.cv", positive=True, maximum=100.0)

    @property
    def sigma(self) -> float:
        """The standard deviation of the underlying normal."""
        return math.sqrt(math.log1p(self.cv * self.cv))

    @property
    def mu(self) -> float:
        """The mean of the underlying normal."""
        return math.log(self.mean) - self.sigma**2 / 2

    def sample(self, rng: random.Random) -> float:
        """One draw. O(1)."""
        return rng.lognormvariate(self.mu, self.sigma)

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """``sample(rng)`` as a function of no arguments. O(1) per draw."""
        return functools.partial(rng.lognormvariate, self.mu, self.sigma)


@attrs.frozen
class Uniform:
    """Uniform on ``[low, high]`` (0 <= low <= high). O(1)."""

    low: float
    high: float

    def __attrs_post_init__(self) -> None:
        low = check_number(self.low, "Uniform.low", minimum=0.0, maximum=_LARGEST)
        check_number(self.high, "Uniform.high", minimum=low, maximum=_LARGEST)

    @property
    def mean(self) -> float:
        """The midpoint."""
        return (self.low + self.high) / 2

    def sample(self, rng: random.Random) -> float:
        """One draw. O(1)."""
        return rng.uniform(self.low, self.high)

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """``sample(rng)`` as a function of no arguments. O(1) per draw."""
        return functools.partial(rng.uniform, self.low, self.high)


def _values(values: Iterable[float]) -> tuple[float, ...]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise InvalidTypeError(
            f"Empirical.values must be a sequence of durations, got {shown(values)}"
        )
    checked = tuple(
        check_number(value, f"Empirical.values[{index}]", minimum=0.0, maximum=_LARGEST)
        for index, value in enumerate(values)
    )
    if not checked:
        raise InvalidArgumentError("Empirical.values must hold at least one duration")
    return checked


@attrs.frozen
class Empirical:
    """Draws uniformly from observed durations (seconds >= 0, at least one). O(1) per draw."""

    values: tuple[float, ...] = attrs.field(converter=_values)

    @property
    def mean(self) -> float:
        """The mean of the observations."""
        return math.fsum(self.values) / len(self.values)

    def sample(self, rng: random.Random) -> float:
        """One of the observations. O(1)."""
        return self.values[int(rng.random() * len(self.values))]

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """``sample(rng)`` as a function of no arguments. O(1) per draw."""
        values, count, uniform = self.values, len(self.values), rng.random

        def draw() -> float:
            return values[int(uniform() * count)]

        return draw
