"""ResourcePool: a bulkhead, a named pool of N units (connections, slots, GPUs)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import attrs

from taskdist._snapshot import check_header, header, refuse
from taskdist._validate import check_number
from taskdist.errors import (
    CapacityError,
    InvalidArgumentError,
    InvalidTypeError,
    OverReleaseError,
    UnsatisfiableDemandError,
)

__all__ = ["PoolStats", "ResourcePool"]

_Exact = int | Fraction


def _exact(value: float) -> _Exact:
    """``value`` as an exact number: an int when integral, else the float's exact Fraction.

    Units are counted exactly so that taking and giving back the same amounts
    in any order returns the pool to exactly where it was: float sums would
    drift, leaving a ghost unit in use or refusing a legitimate release.
    """
    if value.__class__ is int:
        return value
    if float(value).is_integer():
        return int(value)
    return Fraction(value)


@attrs.frozen
class PoolStats:
    """A snapshot of a :class:`ResourcePool`."""

    name: str
    size: float
    in_use: float
    available: float
    peak: float
    """Most units ever in use at once."""
    acquired: int
    """Successful ``try_acquire`` calls."""
    refused: int
    """``try_acquire`` calls refused for want of units."""
    released: int
    """``release`` calls."""


class ResourcePool:
    """A bulkhead: a named pool of ``size`` units, taken and given back explicitly.

    ``ResourcePool("db", size=20)`` is a database pool of 20 connections: at
    most 20 units are ever in use, whatever the callers do. ``try_acquire(n)``
    takes ``n`` units or refuses without changing anything; ``release(n)``
    gives them back, and giving back more than is in use raises
    :class:`~taskdist.errors.OverReleaseError` with the pool unchanged.
    Amounts may be fractional (GB of memory); they are counted exactly, so
    ``0 <= in_use <= size`` holds exactly and a pool whose units all came
    back is exactly empty.

    To gate a distributor's dispatch on ``task.resources["db"]``, wrap it in
    a :class:`~taskdist.resilience.gates.PoolGate`. ``size`` and amounts may
    be any finite number > 0 (1e-300 to 1e308 units); being exact, a sum of
    many fractional amounts costs time in the number of their binary digits
    (at most about a thousand).

    **Threads.** Not thread-safe: a host with threads drives it through
    ``taskdist.threaded.ThreadSafeDistributor`` or holds its own lock around
    every call.

    Every operation is O(1) (O(digits) for fractional amounts).

    >>> db = ResourcePool("db", size=20)
    >>> db.try_acquire(15), db.try_acquire(10), db.in_use, db.available
    (True, False, 15.0, 5.0)
    >>> db.release(15)
    >>> with db.hold(20):
    ...     db.available
    0.0
    >>> db.in_use
    0.0
    """

    __slots__ = ("_acquired", "_in_use", "_name", "_peak", "_refused", "_released", "_size")

    def __init__(self, name: str, size: float) -> None:
        """
        Args:
            name: what the pool guards (non-empty str); a
                :class:`~taskdist.resilience.gates.PoolGate` reads
                ``task.resources[name]`` by default.
            size: units in the pool (finite, > 0).

        Raises:
            InvalidTypeError: ``name`` not a str, ``size`` not a number.
            InvalidArgumentError: ``name`` empty, ``size`` <= 0, NaN or infinite.
        """
        if not isinstance(name, str):
            raise InvalidTypeError(f"name must be a str, got {name!r}")
        if not name:
            raise InvalidArgumentError("name must name what the pool guards, got ''")
        self._name = name
        self._size: _Exact = _exact(check_number(size, "size", positive=True))
        self._in_use: _Exact = 0
        self._peak: _Exact = 0
        self._acquired = self._refused = self._released = 0

    @property
    def name(self) -> str:
        """What the pool guards."""
        return self._name

    @property
    def size(self) -> float:
        """Units in the pool."""
        return float(self._size)

    @property
    def in_use(self) -> float:
        """Units taken and not yet given back (0 <= in_use <= size). O(1)."""
        return float(self._in_use)

    @property
    def available(self) -> float:
        """Units that could be taken now: ``size - in_use``. O(1)."""
        return float(self._size - self._in_use)

    def try_acquire(self, n: float = 1) -> bool:
        """Take ``n`` units if that many are free; all or nothing. O(1).

        Raises:
            UnsatisfiableDemandError: ``n`` is more than ``size`` (it could never
                be met: an error, not a refusal forever).
            InvalidArgumentError: ``n`` <= 0, NaN or infinite.
            InvalidTypeError: ``n`` is not a number.
        """
        amount = self._check(n)
        in_use = self._in_use + amount
        if in_use > self._size:
            self._refused += 1
            return False
        self._in_use = in_use
        self._acquired += 1
        if in_use > self._peak:
            self._peak = in_use
        return True

    def can_acquire(self, n: float = 1) -> bool:
        """Whether :meth:`try_acquire` would take ``n`` units now; changes nothing. O(1).

        Raises:
            UnsatisfiableDemandError: ``n`` is more than ``size``.
            InvalidArgumentError: ``n`` <= 0, NaN or infinite.
            InvalidTypeError: ``n`` is not a number.
        """
        return self._in_use + self._check(n) <= self._size

    def release(self, n: float = 1) -> None:
        """Give back ``n`` units. O(1).

        Raises:
            OverReleaseError: ``n`` is more than is in use (the pool is unchanged).
            InvalidArgumentError: ``n`` <= 0, NaN or infinite.
            InvalidTypeError: ``n`` is not a number.
        """
        # Not _check: more than ``size`` is an over-release here, not a demand never met.
        amount = n if n.__class__ is int and n > 0 else _exact(check_number(n, "n", positive=True))
        if amount > self._in_use:
            raise OverReleaseError(
                f"pool {self._name!r}: cannot release {n!r} units, "
                f"only {float(self._in_use):g} are in use"
            )
        self._in_use -= amount
        self._released += 1

    @contextlib.contextmanager
    def hold(self, n: float = 1) -> Iterator[ResourcePool]:
        """Hold ``n`` units for the ``with`` block, giving them back however it ends.

        Raises:
            CapacityError: fewer than ``n`` units are free (nothing taken).
        """
        if not self.try_acquire(n):
            raise CapacityError(
                f"pool {self._name!r} has {self.available:g} of {self.size:g} units free, "
                f"{n!r} requested"
            )
        try:
            yield self
        finally:
            self.release(n)

    def stats(self) -> PoolStats:
        """A snapshot: size, in use, available, peak, and call counters. O(1)."""
        return PoolStats(
            name=self._name,
            size=self.size,
            in_use=self.in_use,
            available=self.available,
            peak=float(self._peak),
            acquired=self._acquired,
            refused=self._refused,
            released=self._released,
        )

    def snapshot(self) -> dict[str, Any]:
        """Units in use, the peak and the counters as plain data (exact fractions). O(1)."""
        return {
            **header("ResourcePool"),
            "name": self._name,
            "size": _exact_data(self._size),
            "in_use": _exact_data(self._in_use),
            "peak": _exact_data(self._peak),
            "counts": [self._acquired, self._refused, self._released],
        }

    def load_snapshot(self, data: object) -> None:
        """Take on what :meth:`snapshot` wrote, into a pool of the same name and size. O(1).

        Raises:
            SnapshotError: not such a snapshot, or another pool (nothing changes).
        """
        self._prepare_snapshot(data, "pool")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "ResourcePool", where)
        if fields.text("name") != self._name or _exact_read(fields.value("size")) != self._size:
            refuse(where, f"is not of this pool ({self._name!r}, size {float(self._size):g})")
        in_use = _exact_read(fields.value("in_use"))
        peak = _exact_read(fields.value("peak"))
        counts = fields.counts("counts", 3)
        fields.done()
        if in_use is None or peak is None or not 0 <= in_use <= peak <= self._size:
            refuse(where, "must have 0 <= in_use <= peak <= size")

        def load() -> None:
            self._in_use, self._peak = in_use, peak
            self._acquired, self._refused, self._released = counts

        return load

    def __repr__(self) -> str:
        return f"ResourcePool({self._name!r}, size={self.size:g}, in_use={self.in_use:g})"

    def _check(self, n: object) -> _Exact:
        if n.__class__ is int and 0 < n <= self._size:
            return n  # the common case, already valid
        value = check_number(n, "n", positive=True)
        amount = _exact(value)
        if amount > self._size:
            raise UnsatisfiableDemandError(
                f"n must be <= the size of pool {self._name!r} ({self.size:g}) "
                f"or it could never be met, got {n!r}"
            )
        return amount


def _exact_data(value: _Exact) -> list[int]:
    """An exact amount as ``[numerator, denominator]``."""
    fraction = Fraction(value)
    return [fraction.numerator, fraction.denominator]


def _exact_read(data: object) -> _Exact | None:
    """The amount :func:`_exact_data` wrote, or ``None`` if it is not one."""
    if (
        type(data) is not list
        or len(data) != 2
        or not all(type(n) is int for n in data)
        or data[1] <= 0
    ):
        return None
    value = Fraction(data[0], data[1])
    return value.numerator if value.denominator == 1 else value
