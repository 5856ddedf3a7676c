"""IdleTenants: what a FairScheduler keeps of a tenant that left while its state still counts.

A tenant with nothing queued or running costs its scheduler nothing: the
scheduler drops its record (queue, counters, heap entries). Two things must
outlive the record for a while, or leaving and coming back would be a way to
cheat:

- a *debt*: its virtual start tag while the tag is ahead of the virtual time
  (it was served just before it left, and has not yet waited for it);
- a *rate bucket* that is not full again: a fresh one would let a new burst
  through at once.

Each lapses by itself, the debt once the virtual time reaches the tag, the
bucket at the time it would be full; then nothing of the tenant is left. A
tenant that comes back resumes from what is kept here, which is what a new
tenant would get once both have lapsed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable
from typing import TYPE_CHECKING, Final

from taskdist._lazy_heap import LazyHeap
from taskdist.queues._tables import shrink

if TYPE_CHECKING:
    from taskdist.queues.quota import Quota
    from taskdist.resilience import RateLimiter

__all__ = ["IdleTenants", "Kept"]

Kept = tuple[float, int, Hashable, int, float, "RateLimiter | None", "Quota | None"]
"""``(due, seq, tenant, start, weight, limiter, quota)``: due is the tag (a debt) or the
time the bucket is full (a refill); start, weight, limiter and quota are what the tenant
resumes with."""

_TENANT: Final = 2
# Tie-breakers, increasing, shared by every instance: equal dues lapse in the order filed.
_SEQ = itertools.count()


def full_at(limiter: RateLimiter, now: float) -> float | None:
    """When ``limiter``'s bucket is full again (its whole burst), or ``None`` if it is. O(1)."""
    missing = limiter.burst - limiter.available()
    if missing <= 0:
        return None
    return max(now + missing * limiter.interval, math.nextafter(now, math.inf))


class IdleTenants:
    """Dropped tenants whose debt or rate bucket is still in force, until it lapses.

    ``keep`` files a tenant by the first thing still in force: its debt
    (keyed by its tag, lapsing when the virtual time reaches it), else its
    bucket (keyed by the time it is full). ``settle`` lets time and the
    virtual time move them on and forgets those with nothing left.

    Complexity (k tenants kept): ``keep``, ``take`` O(log k); ``get`` and
    ``len`` O(1); ``settle`` O(1) when nothing lapsed, else O(log k) per
    tenant moved on or forgotten.
    """

    __slots__ = ("_debts", "_owed", "_refilling", "_refills", "count")

    def __init__(self) -> None:
        self._owed: dict[Hashable, Kept] = {}
        self._refilling: dict[Hashable, Kept] = {}
        # The heaps, made when a tenant is first kept: most schedulers, and each of a
        # nested one's inner schedulers, keep none (an empty pair weighs about 700 bytes).
        self._debts: LazyHeap[Kept] | None = None
        self._refills: LazyHeap[Kept] | None = None
        self.count = 0
        """How many tenants are kept (read it; never set it): ``len`` without a call."""

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def keep(
        self,
        tenant: Hashable,
        start: int,
        weight: float,
        limiter: RateLimiter | None,
        quota: Quota | None,
        virtual: int,
        now: float,
    ) -> None:
        """File a tenant that just left, or forget it if nothing of it is in force. O(log k)."""
        if start > virtual:
            entry: Kept = (start, next(_SEQ), tenant, start, weight, limiter, quota)
            self._owed[tenant] = entry
            self._debt_heap().push(entry)
        elif limiter is not None:
            self._file_refill(tenant, weight, limiter, quota, now)
        self.count = len(self._owed) + len(self._refilling)

    def get(self, tenant: Hashable) -> Kept | None:
        """What is kept of ``tenant``, or ``None``. O(1)."""
        return self._owed.get(tenant) or self._refilling.get(tenant)

    def take(self, tenant: Hashable) -> None:
        """Forget ``tenant``: it came back, its new record carries what was kept. O(1) amortised."""
        if self._owed.pop(tenant, None) is not None:
            self._debt_heap().compact()
        elif self._refilling.pop(tenant, None) is not None:
            self._refill_heap().compact()
        self._release_emptied()

    def settle(self, virtual: int, now: float) -> None:
        """Debts the virtual time has reached, and buckets full by ``now``, lapse."""
        if self._owed:
            for _, _, tenant, _, weight, limiter, quota in self._debt_heap().pop_until(virtual):
                if limiter is not None:
                    self._file_refill(tenant, weight, limiter, quota, now)
        if self._refilling:
            for _, _, tenant, _, weight, limiter, quota in self._refill_heap().pop_until(now):
                assert limiter is not None  # only tenants with a bucket wait for a refill
                self._file_refill(tenant, weight, limiter, quota, now)
        self._release_emptied()

    def listed(self, virtual: int, now: float) -> tuple[list[Kept], list[Kept]]:
        """The debts and the refilling buckets kept, each in the order they lapse, as
        :meth:`settle` would leave them; nothing changes. O(k log k).

        What has lapsed is left out: kept, it would change no decision, and a
        copy loaded from the lists settles at once.
        """
        debts = sorted(self._owed.values())
        lapsed = [entry for entry in debts if entry[0] <= virtual]  # the first ones
        owed = debts[len(lapsed) :]
        refills = [(entry, 0) for entry in self._refilling.values() if entry[0] > now]
        for later, (_, seq, tenant, _, weight, limiter, quota) in enumerate(lapsed):
            due = None if limiter is None else full_at(limiter, now)
            if due is not None:  # filed behind every bucket kept now, as settle files it
                refills.append(((due, seq, tenant, 0, weight, limiter, quota), 1 + later))
        refills.sort(key=lambda pair: (pair[0][0], pair[1], pair[0][1]))
        return owed, [entry for entry, _ in refills]

    def load(self, debts: list[Kept], refills: list[Kept]) -> None:
        """Take on what :meth:`listed` gave (into an empty instance), in that order. O(k log k).

        The sequence numbers are made afresh, in the order given, so ties lapse as before.
        """
        for table, heap, entries in (
            (self._owed, self._debt_heap, debts),
            (self._refilling, self._refill_heap, refills),
        ):
            for due, _, tenant, start, weight, limiter, quota in entries:
                entry: Kept = (due, next(_SEQ), tenant, start, weight, limiter, quota)
                table[tenant] = entry
                heap().push(entry)
        self.count = len(self._owed) + len(self._refilling)

    def clear(self) -> None:
        """Forget every tenant. O(k)."""
        self._owed.clear()
        self._refilling.clear()
        self._debts = self._refills = None
        self.count = 0

    def shrink(self) -> None:
        """Give back the memory of tables that held many more tenants. O(1) unless due."""
        shrink(self._owed)
        shrink(self._refilling)

    def _release_emptied(self) -> None:
        """Count what is kept; give back the tables of a dict emptied key by key."""
        self.count = len(self._owed) + len(self._refilling)
        if not self._owed:
            self._owed.clear()
            self._debts = None
        if not self._refilling:
            self._refilling.clear()
            self._refills = None

    def _file_refill(
        self,
        tenant: Hashable,
        weight: float,
        limiter: RateLimiter,
        quota: Quota | None,
        now: float,
    ) -> None:
        due = full_at(limiter, now)
        if due is None:
            return  # full: nothing left to keep
        # Its tag is at or behind the virtual time: it comes back at the virtual time.
        entry: Kept = (due, next(_SEQ), tenant, 0, weight, limiter, quota)
        self._refilling[tenant] = entry
        self._refill_heap().push(entry)

    def _debt_heap(self) -> LazyHeap[Kept]:
        """The debts in the order they lapse, made now if it was not yet."""
        heap = self._debts
        if heap is None:
            heap = self._debts = LazyHeap(self._owed, at=_TENANT)
        return heap

    def _refill_heap(self) -> LazyHeap[Kept]:
        """The refilling buckets in the order they fill, made now if it was not yet."""
        heap = self._refills
        if heap is None:
            heap = self._refills = LazyHeap(self._refilling, at=_TENANT)
        return heap
