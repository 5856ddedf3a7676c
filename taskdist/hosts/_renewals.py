"""Renewals: when each running assignment's lease is due to be renewed, earliest first.

A host renews a lease once a fixed fraction of it has passed, so a slow run
keeps its task. Entries of runs that ended are dropped lazily: never
renewed, and never reported as the next time to wake.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable

from taskdist._validate import check_optional_number
from taskdist.errors import InvalidArgumentError

Live = Callable[[Hashable, int], bool]
"""Whether the run of (task id, attempt) is still going and wants its lease."""


def check_heartbeat(heartbeat: float | None) -> float | None:
    """A host's ``heartbeat``: a fraction of the lease, 0 < heartbeat < 1, or ``None``."""
    heartbeat = check_optional_number(heartbeat, "heartbeat", positive=True)
    if heartbeat is not None and heartbeat >= 1.0:
        raise InvalidArgumentError(
            f"heartbeat is the fraction of a lease after which it is renewed, "
            f"0 < heartbeat < 1, got {heartbeat!r}"
        )
    return heartbeat


class Renewals:
    """Lease renewals due, as a heap of (time, seq, task id, attempt).

    ``add`` and each entry taken are O(log r) for r entries.
    """

    __slots__ = ("_fraction", "_heap", "_seq")

    def __init__(self, fraction: float) -> None:
        self._fraction = fraction
        self._heap: list[tuple[float, int, Hashable, int]] = []
        self._seq = itertools.count()

    def add(self, task_id: Hashable, attempt: int, since: float, expiry: float) -> None:
        """Renew the lease of ``(task_id, attempt)``, running until ``expiry``, once
        the fraction of ``expiry - since`` has passed."""
        due = since + self._fraction * (expiry - since)
        heapq.heappush(self._heap, (due, next(self._seq), task_id, attempt))

    def due(self, now: float) -> list[tuple[Hashable, int]]:
        """Take the renewals due at ``now``, earliest first."""
        heap = self._heap
        taken = []
        while heap and heap[0][0] <= now:
            _, _, task_id, attempt = heapq.heappop(heap)
            taken.append((task_id, attempt))
        return taken

    def next_due(self, live: Live) -> float | None:
        """The time of the earliest renewal of a live run (dropping dead ones first)."""
        heap = self._heap
        while heap:
            due, _, task_id, attempt = heap[0]
            if live(task_id, attempt):
                return due
            heapq.heappop(heap)
        return None

    def clear(self) -> None:
        self._heap.clear()

    def __bool__(self) -> bool:
        return bool(self._heap)
