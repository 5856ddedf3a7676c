"""Small, dependency-free statistics used by every component's ``stats()``.

- :class:`RecentSamples`: the last *n* observations of something (wait times,
  durations) with percentiles on demand; recording is O(1).
- :func:`percentile`, :func:`coefficient_of_variation` (the "load variance"
  the targets speak of) and :func:`jain_index` (fairness).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import islice

import attrs

from taskdist._validate import check_int, check_number

__all__ = [
    "Percentiles",
    "RecentSamples",
    "coefficient_of_variation",
    "jain_index",
    "percentile",
]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, linearly interpolated.

    Returns NaN for no values. O(1).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    q = check_number(q, "q", minimum=0.0, maximum=100.0)
    n = len(sorted_values)
    if n == 0:
        return math.nan
    rank = (n - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, n - 1)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@attrs.frozen
class Percentiles:
    """p50 / p95 / p99 and the count and mean they were computed from (NaN when empty)."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float


class RecentSamples:
    """The most recent ``window`` observations, with percentiles on demand.

    ``record`` is O(1) (a bounded deque); ``percentiles()`` is
    O(window log window). Memory is O(window) whatever the run length.

    >>> s = RecentSamples(window=3)
    >>> for x in (10.0, 1.0, 2.0, 3.0):
    ...     s.record(x)
    >>> s.percentiles().max, s.total
    (3.0, 4)
    >>> s.retract()  # 3.0 is taken back; 10.0 comes back into the window
    >>> s.percentiles().max, len(s)
    (10.0, 3)
    """

    __slots__ = ("_samples", "_window", "total")

    def __init__(self, window: int = 10_000) -> None:
        self._window = check_int(window, "window", minimum=1)
        # One value beyond the window, so that retracting the latest value
        # brings back the one it pushed out.
        self._samples: deque[float] = deque(maxlen=self._window + 1)
        self.total = 0
        """Observations recorded with :meth:`record` or :meth:`extend` (not only those in
        the window; :meth:`appender` and :meth:`retract` leave it alone)."""

    def record(self, value: float) -> None:
        """Add one observation. O(1)."""
        self._samples.append(value)
        self.total += 1

    def extend(self, values: Iterable[float]) -> None:
        """Add several observations. O(k) for k values."""
        values = list(values)
        self._samples.extend(values)
        self.total += len(values)

    def appender(self) -> Callable[[float], None]:
        """A C-level callable that adds one observation: ``record`` for a hot path. O(1) a call.

        For an owner that keeps its own counts: what it adds is not counted in
        :attr:`total`.
        """
        return self._samples.append

    def retract(self) -> None:
        """Take back the latest observation (an undone event); the one it pushed out of the
        window comes back. O(1). Exact for the latest one; nothing happens when empty."""
        if self._samples:
            self._samples.pop()

    def __len__(self) -> int:
        return min(len(self._samples), self._window)

    def percentiles(self) -> Percentiles:
        """p50/p95/p99, mean and max of the window. O(window log window)."""
        samples = self._samples
        values = sorted(islice(samples, max(0, len(samples) - self._window), None))
        if not values:
            return Percentiles(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        return Percentiles(
            count=len(values),
            mean=math.fsum(values) / len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=values[-1],
        )


def coefficient_of_variation(values: Iterable[float]) -> float:
    """Population standard deviation divided by the mean: the "load variance" target.

    0 when all values are equal, or when there are none or their mean is 0. O(n).

    >>> coefficient_of_variation([1.0, 1.0, 1.0])
    0.0
    >>> round(coefficient_of_variation([0.0, 2.0]), 3)
    1.0
    """
    data = list(values)
    if not data:
        return 0.0
    mean = math.fsum(data) / len(data)
    if mean == 0:
        return 0.0
    variance = math.fsum((x - mean) ** 2 for x in data) / len(data)
    return math.sqrt(variance) / abs(mean)


def jain_index(values: Iterable[float]) -> float:
    """Jain's fairness index ``(sum x)^2 / (n * sum x^2)``: 1 is perfectly fair, 1/n worst.

    Pass each party's allocation divided by its entitlement (e.g. served cost
    over weight). 1.0 for no values or all zeros. O(n).

    >>> jain_index([1.0, 1.0, 1.0, 1.0])
    1.0
    >>> jain_index([1.0, 0.0, 0.0, 0.0])
    0.25
    """
    data = list(values)
    squares = math.fsum(x * x for x in data)
    if not data or squares == 0:
        return 1.0
    total = math.fsum(data)
    return total * total / (len(data) * squares)
