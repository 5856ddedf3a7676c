"""Timers: at most one pending time per key, earliest first, in one heap.

The Distributor keeps every timer it owns here (lease expiries, retry delays,
TTLs of parked tasks, breaker reopenings, fallback steps, escalations).
Scheduling a key again replaces its time; the old entry is left behind and
skipped (the shared lazy-deletion heap).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from taskdist._lazy_heap import LazyHeap

__all__ = ["Timers"]

# (when, seq, key): seq is unique, so comparison never reaches the key.
_Entry = tuple[float, int, Hashable]


class Timers:
    """Pending timers by key: ``schedule`` O(log n); ``cancel``, ``when`` O(1);
    ``next_time`` O(1) amortised; ``pop_due`` O(log n) per due timer."""

    __slots__ = ("_heap", "_kinds", "_live")

    def __init__(self) -> None:
        self._live: dict[Hashable, Any] = {}
        self._heap: LazyHeap[_Entry] = LazyHeap(self._live, at=2)
        self._kinds: dict[Hashable, str] = {}

    def schedule(self, key: Hashable, when: float, kind: str) -> None:
        """Set ``key``'s timer to ``when`` (replacing any earlier one). O(log n)."""
        self._kinds[key] = kind
        self._heap.schedule(key, when)

    def cancel(self, key: Hashable) -> None:
        """Forget ``key``'s timer, if it has one. O(1) amortised."""
        if self._live.pop(key, None) is not None:
            del self._kinds[key]
            self._heap.compact()

    def when(self, key: Hashable) -> float | None:
        """``key``'s pending time, or ``None``. O(1)."""
        entry = self._live.get(key)
        return None if entry is None else float(entry[0])

    def next_time(self) -> float | None:
        """The earliest pending time, or ``None``. O(1) amortised."""
        if not self._live:  # none pending: no need to look (dead entries wait)
            return None
        top = self._heap.top()
        return None if top is None else top[0]

    def pop_due(self, now: float) -> tuple[str, Hashable, float] | None:
        """Remove and return ``(kind, key, when)`` of the earliest timer due at ``now``,
        or ``None``. O(log n) amortised."""
        if not self._live:
            return None
        top = self._heap.top()
        if top is None or top[0] > now:
            return None
        self._heap.pop()
        key = top[2]
        return self._kinds.pop(key), key, top[0]

    def pending(self) -> list[tuple[str, Hashable, float]]:
        """Every pending ``(kind, key, when)``, in the order they fall due (equal times
        in the order scheduled): scheduling them again in this order keeps it. O(n log n)."""
        entries = sorted(self._live.values())
        return [(self._kinds[entry[2]], entry[2], float(entry[0])) for entry in entries]

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live
