"""Small, dependency-free statistics used by every component's ``stats()``.

- :class:`RecentSamples`: the last *n* observations of something (wait times,
  durations) with percentiles on demand; recording is O(1).
- :func:`percentile`, :func:`coefficient_of_variation` (the "load variance"
  the targets speak of) and :func:`jain_index` (fairness).
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

import attrs

from taskdist._snapshot import check_header, header, refuse
from taskdist._validate import check_int, check_number, shown
from taskdist.errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "Percentiles",
    "RecentSamples",
    "coefficient_of_variation",
    "jain_index",
    "percentile",
]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, linearly interpolated.

    Returns NaN for no values. O(1): the order is the caller's promise, and
    only the one or two values the answer is read from are checked (finite
    numbers). Any finite values give a finite answer, even when they span
    more than the float range (``[-1e308, 1e308]``).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    q = check_number(q, "q", minimum=0.0, maximum=100.0)
    kind = type(sorted_values)
    if not (hasattr(kind, "__len__") and hasattr(kind, "__getitem__")) or isinstance(
        sorted_values, (str, bytes, Mapping)
    ):
        raise InvalidTypeError(
            f"sorted_values must be a sorted sequence, got {shown(sorted_values)}"
        )
    n = len(sorted_values)
    if n == 0:
        return math.nan
    rank = (n - 1) * q / 100.0
    low = math.floor(rank)
    fraction = rank - low
    below = check_number(sorted_values[low], f"sorted_values[{low}]")
    if fraction == 0:
        return below
    above = check_number(sorted_values[low + 1], f"sorted_values[{low + 1}]")
    gap = above - below
    if math.isinf(gap):  # the values straddle more than the float range
        return below * (1 - fraction) + above * fraction
    return below + gap * fraction


def _finite_values(values: Iterable[float], name: str) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidTypeError(f"{name} must be an iterable of numbers, got {shown(values)}")
    return [check_number(value, f"{name}[{index}]") for index, value in enumerate(values)]


def _scale(data: list[float]) -> float:
    """The largest magnitude in ``data`` (1.0 if all are 0): dividing by it keeps sums finite."""
    largest = max(map(abs, data), default=0.0)
    return largest if largest > 0 else 1.0


def _mean(data: list[float]) -> float:
    """The mean of non-empty finite ``data``, finite even when their sum is not."""
    try:
        return math.fsum(data) / len(data)
    except OverflowError:
        scale = _scale(data)
        return math.fsum(value / scale for value in data) / len(data) * scale


def _figure_key(value: float) -> tuple[bool, float]:
    """A figure as compared and hashed: NaN (no samples) equal to NaN, so that two
    summaries of nothing are equal, and a value holding one is equal to itself."""
    missing = value != value
    return missing, 0.0 if missing else value


@attrs.frozen
class Percentiles:
    """p50 / p95 / p99 and the count and mean they were computed from (NaN when empty).

    Equal when every figure is: the NaN figures of two empty summaries count as equal.
    """

    count: int
    mean: float = attrs.field(eq=_figure_key)
    p50: float = attrs.field(eq=_figure_key)
    p95: float = attrs.field(eq=_figure_key)
    p99: float = attrs.field(eq=_figure_key)
    max: float = attrs.field(eq=_figure_key)


class RecentSamples:
    """The most recent ``window`` observations, with percentiles on demand.

    ``record`` is O(1) (a bounded deque); ``percentiles()`` is
    O(window log window). Memory is O(window) whatever the run length. Not
    safe to share between threads without a lock of the caller's.

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
        self._window = check_int(window, "window", minimum=1, maximum=sys.maxsize - 1)
        # One value beyond the window, so that retracting the latest value
        # brings back the one it pushed out.
        self._samples: deque[float] = deque(maxlen=self._window + 1)
        self.total = 0
        """Observations recorded with :meth:`record` or :meth:`extend` (not only those in
        the window; :meth:`appender` and :meth:`retract` leave it alone)."""

    def record(self, value: float) -> None:
        """Add one observation, a finite number. O(1)."""
        self._samples.append(check_number(value, "value"))
        self.total += 1

    def extend(self, values: Iterable[float]) -> None:
        """Add several observations, all finite numbers (or none is added). O(k) for k values."""
        values = _finite_values(values, "values")
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

    def snapshot(self) -> dict[str, Any]:
        """The window as plain data (see ``docs/persistence.md``). O(window)."""
        return {
            **header("RecentSamples"),
            "window": self._window,
            "samples": list(self._samples),
            "total": self.total,
        }

    def load_snapshot(self, data: object) -> None:
        """Take on the state :meth:`snapshot` wrote (into a window of the same size).

        Recording callables made by :meth:`appender` keep working. O(window).

        Raises:
            SnapshotError: not such a snapshot, or of another window size
                (nothing changes).
        """
        self._prepare_snapshot(data, "samples")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "RecentSamples", where)
        window = fields.integer("window")
        if window != self._window:
            refuse(f"{where}.window", f"is {window}, this window holds {self._window}")
        samples = fields.items("samples")
        total = fields.integer("total", minimum=0)
        fields.done()
        if len(samples) > window + 1 or not all(
            type(x) in (int, float) and math.isfinite(x) for x in samples
        ):
            refuse(f"{where}.samples", f"must be at most {window + 1} finite numbers")
        values = [float(x) for x in samples]

        def load() -> None:
            self._samples.clear()  # in place: appenders hold its append
            self._samples.extend(values)
            self.total = total

        return load

    def percentiles(self) -> Percentiles:
        """p50/p95/p99, mean and max of the window. O(window log window)."""
        samples = self._samples
        values = sorted(islice(samples, max(0, len(samples) - self._window), None))
        if not values:
            return Percentiles(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        return Percentiles(
            count=len(values),
            mean=_mean(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=values[-1],
        )


def coefficient_of_variation(values: Iterable[float]) -> float:
    """Population standard deviation divided by the mean: the "load variance" target.

    0 when all values are equal, or when there are none or their mean is 0.
    The values must be finite numbers; the answer does not depend on their
    scale, so it is computed on the values divided by the largest magnitude
    and neither overflows nor underflows. O(n).

    >>> coefficient_of_variation([1.0, 1.0, 1.0])
    0.0
    >>> round(coefficient_of_variation([0.0, 2.0]), 3)
    1.0
    """
    data = _finite_values(values, "values")
    if not data:
        return 0.0
    scale = _scale(data)
    data = [value / scale for value in data]
    mean = math.fsum(data) / len(data)
    if mean == 0:
        return 0.0
    variance = math.fsum((x - mean) ** 2 for x in data) / len(data)
    return math.sqrt(variance) / abs(mean)


def jain_index(values: Iterable[float]) -> float:
    """Jain's fairness index ``(sum x)^2 / (n * sum x^2)``: 1 is perfectly fair, 1/n worst.

    Pass each party's allocation divided by its entitlement (e.g. served cost
    over weight): finite numbers >= 0. 1.0 for no values or all zeros. Like
    the coefficient of variation it does not depend on scale, and is
    computed on the values divided by the largest, so it neither overflows
    nor underflows. O(n).

    >>> jain_index([1.0, 1.0, 1.0, 1.0])
    1.0
    >>> jain_index([1.0, 0.0, 0.0, 0.0])
    0.25
    """
    data = _finite_values(values, "values")
    for index, value in enumerate(data):
        if value < 0:
            raise InvalidArgumentError(
                f"values[{index}] must be >= 0 (an allocation), got {shown(value)}"
            )
    scale = _scale(data)
    data = [value / scale for value in data]
    squares = math.fsum(x * x for x in data)
    if not data or squares == 0:
        return 1.0
    total = math.fsum(data)
    return total * total / (len(data) * squares)
