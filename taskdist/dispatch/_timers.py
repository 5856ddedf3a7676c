"""Timers: at most one pending time per key, earliest first, in one heap.

The Distributor keeps every timer it owns here (lease expiries, retry delays,
TTLs of parked tasks, breaker reopenings). Scheduling a key again replaces its
time; the old heap entry is left behind and skipped (lazy deletion), and the
heap is rebuilt when dead entries outnumber live ones.
"""

from __future__ import annotations

from collections.abc import Hashable
from heapq import heapify, heappop, heappush
from typing import Final

__all__ = ["Timers"]

# Rebuild once dead entries exceed live ones by this many (amortises the rebuild).
_COMPACT_SLACK: Final = 64

# [when, seq, kind, key]: seq is unique, so comparison never reaches kind or key.
_Entry = tuple[float, int, str, Hashable]


class Timers:
    """Pending timers by key: ``schedule``, ``cancel`` and ``when`` O(log n) / O(1);
    ``due(now)`` pops each due timer in O(log n)."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[Hashable, _Entry] = {}
        self._seq = 0

    def schedule(self, key: Hashable, when: float, kind: str) -> None:
        """Set ``key``'s timer to ``when`` (replacing any earlier one). O(log n)."""
        self._seq += 1
        entry: _Entry = (when, self._seq, kind, key)
        self._live[key] = entry
        heappush(self._heap, entry)
        if len(self._heap) > 2 * len(self._live) + _COMPACT_SLACK:
            live = self._live
            self._heap = [e for e in self._heap if live.get(e[3]) is e]
            heapify(self._heap)

    def cancel(self, key: Hashable) -> None:
        """Forget ``key``'s timer, if it has one. O(1)."""
        self._live.pop(key, None)

    def when(self, key: Hashable) -> float | None:
        """``key``'s pending time, or ``None``. O(1)."""
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def next_time(self) -> float | None:
        """The earliest pending time, or ``None``. O(1) amortised."""
        heap = self._heap
        live = self._live
        while heap and live.get(heap[0][3]) is not heap[0]:
            heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> tuple[str, Hashable, float] | None:
        """Remove and return ``(kind, key, when)`` of the earliest timer due at ``now``,
        or ``None``.

        O(log n) amortised.
        """
        if (when := self.next_time()) is None or when > now:
            return None
        entry = heappop(self._heap)
        del self._live[entry[3]]
        return entry[2], entry[3], entry[0]

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live
