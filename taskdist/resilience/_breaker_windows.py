"""The circuit breaker's sliding windows: the outcomes of the last N calls, or last N seconds.

An outcome is two bits, ``FAILED`` and ``SLOW``. Each window keeps running
totals (``calls``, ``failures``, ``slow``) and answers ``record(now,
outcome) -> bool``: whether the rates must be judged now. Neither takes a
lock: the breaker that owns a window holds its own around every call.

Memory grows with what a window holds and nothing is allocated up front, so
a window of a million calls or seconds costs nothing until calls come: the
count window holds at most ``size`` outcomes (about 8 bytes each), the time
window one bucket (about 100 bytes) per second that had calls.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from taskdist._snapshot import refuse

__all__ = ["FAILED", "SLOW", "CountWindow", "TimeWindow"]

FAILED: Final = 1
SLOW: Final = 2

_INF: Final = float("inf")


class CountWindow:
    """The outcomes of the last ``size`` calls: a ring with running totals. O(1).

    ``record`` returns whether the rates must be judged now: the window holds
    at least ``minimum`` calls and the record could have raised a rate to its
    threshold (a success that only adds to or replaces a success cannot).
    The ring grows to ``size`` as calls come; ``reset`` is O(1).
    """

    __slots__ = ("_ring", "calls", "failures", "minimum", "size", "slow")

    def __init__(self, size: int, minimum: int) -> None:
        self.size = size
        self.minimum = min(minimum, size)  # as resilience4j: a count window caps it
        self.reset()

    def reset(self) -> None:
        self._ring: deque[int] = deque(maxlen=self.size)
        self.calls = self.failures = self.slow = 0

    def record(self, now: float, outcome: int) -> bool:
        ring = self._ring
        calls = self.calls
        if calls == self.size:  # full: the oldest outcome leaves as this one comes
            old = ring[0]
            ring.append(outcome)
            if old != outcome:
                self.failures += (outcome & FAILED) - (old & FAILED)
                self.slow += (outcome >> 1) - (old >> 1)
            return outcome != 0
        ring.append(outcome)
        calls = self.calls = calls + 1
        if outcome:
            self.failures += outcome & FAILED
            self.slow += outcome >> 1
        return calls >= self.minimum and (outcome != 0 or calls == self.minimum)

    def totals(self, now: float) -> tuple[int, int, int]:
        return self.calls, self.failures, self.slow

    def snapshot(self) -> list[Any]:
        """The outcomes held, oldest first, as plain data."""
        return list(self._ring)

    def prepare_load(self, data: object, where: str) -> Any:
        """Check :meth:`snapshot`'s data; return what loads it."""
        if (
            type(data) is not list
            or len(data) > self.size
            or not all(type(outcome) is int and 0 <= outcome <= FAILED | SLOW for outcome in data)
        ):
            refuse(where, f"must be at most {self.size} outcomes (ints 0 to 3)")

        def load() -> None:
            self._ring.extend(data)
            self.calls = len(data)
            self.failures = sum(outcome & FAILED for outcome in data)
            self.slow = sum(outcome >> 1 for outcome in data)

        return load


class TimeWindow:
    """The outcomes of the calls of the last ``size`` whole seconds, one bucket per second.

    A call recorded at time ``t`` counts while ``floor(now) - floor(t) < size``.
    Only seconds that had calls have a bucket (``[second, calls, failures,
    slow]``, oldest first), so evicting costs one step per bucket that
    leaves, however long the clock jumped: recording is O(1) amortised.
    ``record`` returns whether the rates must be judged now (evictions since
    the last judgement can raise a rate, so they make the next record judge).
    """

    __slots__ = (
        "_bucket_end",
        "_buckets",
        "_evicted",
        "_newest",
        "_second",
        "calls",
        "failures",
        "minimum",
        "size",
        "slow",
    )

    def __init__(self, size: int, minimum: int) -> None:
        self.size = size
        self.minimum = minimum
        self.reset()

    def reset(self) -> None:
        self._buckets: deque[list[int]] = deque()
        self._second: int | None = None  # the newest second seen
        self._newest: list[int] | None = None  # its bucket, once it has a call
        self._bucket_end = -_INF  # when the second after it starts
        self._evicted = False
        self.calls = self.failures = self.slow = 0

    def _advance(self, second: int) -> None:
        if self._second is not None and second <= self._second:
            return
        self._second = second
        self._newest = None
        self._bucket_end = second + 1.0
        buckets = self._buckets
        oldest_kept = second - self.size + 1
        while buckets and buckets[0][0] < oldest_kept:
            _, calls, failures, slow = buckets.popleft()
            self.calls -= calls
            self.failures -= failures
            self.slow -= slow
            self._evicted = True

    def record(self, now: float, outcome: int) -> bool:
        if now >= self._bucket_end:
            self._advance(int(now // 1.0))
        # A record stamped before the newest second (a clock read before another
        # thread's) lands in the newest second's bucket: at most a second late, never lost.
        bucket = self._newest
        if bucket is None:
            bucket = self._newest = [self._second or 0, 0, 0, 0]  # _second is set by now
            self._buckets.append(bucket)
        bucket[1] += 1
        calls = self.calls = self.calls + 1
        if outcome:
            failed = outcome & FAILED
            slow = outcome >> 1
            bucket[2] += failed
            bucket[3] += slow
            self.failures += failed
            self.slow += slow
        if calls < self.minimum or not (outcome or self._evicted or calls == self.minimum):
            return False
        self._evicted = False
        return True

    def totals(self, now: float) -> tuple[int, int, int]:
        self._advance(int(now // 1.0))
        return self.calls, self.failures, self.slow

    def snapshot(self) -> list[Any]:
        """The buckets held, oldest first, and where the window stands, as plain data."""
        newest = self._newest is not None
        return [self._second, newest, self._evicted, [list(b) for b in self._buckets]]

    def prepare_load(self, data: object, where: str) -> Any:
        """Check :meth:`snapshot`'s data; return what loads it."""
        if (
            type(data) is not list
            or len(data) != 4
            or not (data[0] is None or type(data[0]) is int)
            or type(data[1]) is not bool
            or type(data[2]) is not bool
            or type(data[3]) is not list
            or not all(
                type(b) is list and len(b) == 4 and all(type(n) is int for n in b) for b in data[3]
            )
            or (data[1] and (not data[3] or data[3][-1][0] != data[0]))
        ):
            refuse(where, "must be [second, newest, evicted, [[second, calls, failed, slow]]]")
        second, newest, evicted, buckets = data

        def load() -> None:
            self._buckets.extend(buckets)
            self._second = second
            self._newest = self._buckets[-1] if newest else None
            self._bucket_end = -_INF if second is None else second + 1.0
            self._evicted = evicted
            self.calls = sum(b[1] for b in buckets)
            self.failures = sum(b[2] for b in buckets)
            self.slow = sum(b[3] for b in buckets)

        return load
