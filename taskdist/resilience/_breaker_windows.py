"""The circuit breaker's sliding windows: the outcomes of the last N calls, or last N seconds.

An outcome is two bits, ``FAILED`` and ``SLOW``. Each window keeps running
totals (``calls``, ``failures``, ``slow``) and answers ``record(now,
outcome) -> bool``: whether the rates must be judged now. Neither takes a
lock: the breaker that owns a window holds its own around every call.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["FAILED", "SLOW", "CountWindow", "TimeWindow"]

FAILED: Final = 1
SLOW: Final = 2

_INF: Final = float("inf")


class CountWindow:
    """The outcomes of the last ``size`` calls: a ring with running totals. O(1).

    ``record`` returns whether the rates must be judged now: the window holds
    at least ``minimum`` calls and the record could have raised a rate to its
    threshold (a success that only adds to or replaces a success cannot).
    """

    __slots__ = ("_ring", "calls", "failures", "minimum", "size", "slow")

    def __init__(self, size: int, minimum: int) -> None:
        self.size = size
        self.minimum = min(minimum, size)  # as resilience4j: a count window caps it
        self.reset()

    def reset(self) -> None:
        # Pre-filled with successes that are not calls: evicting one subtracts nothing.
        self._ring = deque(bytes(self.size), maxlen=self.size)
        self.calls = self.failures = self.slow = 0

    def record(self, now: float, outcome: int) -> bool:
        ring = self._ring
        old = ring[0]
        ring.append(outcome)  # evicts ring[0]
        if old != outcome:
            self.failures += (outcome & FAILED) - (old & FAILED)
            self.slow += (outcome >> 1) - (old >> 1)
        if self.calls < self.size:
            self.calls += 1
            return self.calls >= self.minimum and (outcome != 0 or self.calls == self.minimum)
        return outcome != 0

    def totals(self, now: float) -> tuple[int, int, int]:
        return self.calls, self.failures, self.slow


class TimeWindow:
    """The outcomes of the calls of the last ``size`` whole seconds, one bucket per second.

    A call recorded at time ``t`` counts while ``floor(now) - floor(t) < size``.
    Recording is O(1) amortised: evicting stale buckets costs one step per
    elapsed second (at most ``size`` steps in one call), as in resilience4j.
    ``record`` returns whether the rates must be judged now (evictions since
    the last judgement can raise a rate, so they make the next record judge).
    """

    __slots__ = (
        "_bucket_end",
        "_calls",
        "_evicted",
        "_failures",
        "_index",
        "_second",
        "_slow",
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
        self._second = -(2**62)  # the second of the newest bucket
        self._index = 0  # its place in the bucket lists
        self._bucket_end = -_INF  # when the next second starts
        self._calls = [0] * self.size
        self._failures = [0] * self.size
        self._slow = [0] * self.size
        self._evicted = False
        self.calls = self.failures = self.slow = 0

    def _advance(self, second: int) -> None:
        gap = second - self._second
        if gap <= 0:
            return
        size = self.size
        if self.calls:
            self._evicted = True
        if gap >= size:
            for bucket in (self._calls, self._failures, self._slow):
                bucket[:] = [0] * size
            self.calls = self.failures = self.slow = 0
        else:
            for s in range(self._second + 1, second + 1):
                i = s % size  # the bucket of second s - size leaves the window
                self.calls -= self._calls[i]
                self.failures -= self._failures[i]
                self.slow -= self._slow[i]
                self._calls[i] = self._failures[i] = self._slow[i] = 0
        self._second = second
        self._index = second % size
        self._bucket_end = second + 1.0

    def record(self, now: float, outcome: int) -> bool:
        if now >= self._bucket_end:
            self._advance(int(now // 1.0))
        # A record stamped before the newest bucket (a clock read before another
        # thread's) lands in the newest bucket: at most a second late, never lost.
        i = self._index
        self._calls[i] += 1
        calls = self.calls = self.calls + 1
        if outcome:
            failed = outcome & FAILED
            slow = outcome >> 1
            self._failures[i] += failed
            self._slow[i] += slow
            self.failures += failed
            self.slow += slow
        if calls < self.minimum or not (outcome or self._evicted or calls == self.minimum):
            return False
        self._evicted = False
        return True

    def totals(self, now: float) -> tuple[int, int, int]:
        self._advance(int(now // 1.0))
        return self.calls, self.failures, self.slow
