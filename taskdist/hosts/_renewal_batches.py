"""RenewalBatches: lease renewals kept per due time, not per run.

The runs that one ``dispatch()`` starts share their start time and, most
often, their lease length: they all come due for renewal at the same time.
So a host files each run in the batch of its due time (a dict look-up and
an append) and keeps one heap entry per batch. A run that ends leaves its
batch (a counter goes down); a batch nobody is left in is dropped when it
reaches the top, so the host never wakes for it. Most runs end long before
half their lease: they cost no heap operation at all.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

M = TypeVar("M")


class RenewalBatch(Generic[M]):
    """The runs due for renewal at ``due``; ``live`` of them still want it.

    A member joins by being appended to ``members`` with ``live += 1``, and
    leaves by ``live -= 1`` (the host keeps which batch each run is in, so it
    leaves at most once): plain attributes, as the host does it per run.
    """

    __slots__ = ("due", "live", "members")

    def __init__(self, due: float) -> None:
        self.due = due
        self.members: list[M] = []
        self.live = 0


class RenewalBatches(Generic[M]):
    """Lease renewals due, earliest first, one heap entry per distinct due time.

    ``add`` is O(1) when the due time has a batch already (every run of one
    dispatch), O(log b) for b batches otherwise; taking a batch is O(log b)
    plus its members.
    """

    __slots__ = ("_fraction", "_heap", "_open", "_seq")

    def __init__(self, fraction: float) -> None:
        self._fraction = fraction
        self._heap: list[tuple[float, int, RenewalBatch[M]]] = []
        self._open: dict[float, RenewalBatch[M]] = {}  # due time -> its batch, until taken
        self._seq = itertools.count()

    def batch(self, since: float, expiry: float) -> RenewalBatch[M]:
        """The batch of the leases that run from ``since`` until ``expiry``: due once
        the fraction of that time has passed. A member joins it as :class:`RenewalBatch` says."""
        due = since + self._fraction * (expiry - since)
        batch = self._open.get(due)
        if batch is None:
            batch = self._open[due] = RenewalBatch(due)
            heapq.heappush(self._heap, (due, next(self._seq), batch))
        return batch

    def add(self, member: M, since: float, expiry: float) -> RenewalBatch[M]:
        """File ``member``, whose lease runs from ``since`` until ``expiry``; its batch."""
        batch = self.batch(since, expiry)
        batch.members.append(member)
        batch.live += 1
        return batch

    def due(self, now: float) -> list[RenewalBatch[M]]:
        """Take the batches due at ``now``, earliest first (their members may have
        left: the caller asks each, by whether it is still in that batch)."""
        heap = self._heap
        taken = []
        while heap and heap[0][0] <= now:
            batch = heapq.heappop(heap)[2]
            del self._open[batch.due]
            if batch.live:
                taken.append(batch)
        return taken

    def next_due(self) -> float | None:
        """The earliest due time of a batch someone is still in (dropping empty ones)."""
        heap = self._heap
        while heap:
            batch = heap[0][2]
            if batch.live:
                return batch.due
            heapq.heappop(heap)
            del self._open[batch.due]
        return None

    def clear(self) -> None:
        self._heap.clear()
        self._open.clear()
