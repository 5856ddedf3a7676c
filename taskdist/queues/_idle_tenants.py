"""IdleTenants: what a FairScheduler keeps of a tenant that left while its state still counts.

A tenant with nothing queued or running costs its scheduler nothing: the
scheduler drops its record (queue, counters, heap entries). Three things must
outlive the record for a while, or leaving and coming back would be a way to
cheat:

- a *debt*: its virtual start tag while the tag is ahead of the virtual time
  (it was served just before it left, and has not yet waited for it);
- a *rate bucket* that is not full again: a fresh one would let a new burst
  through at once;
- its *queue*, when that is a fair scheduler of its own (nested fair share)
  still holding debts or buckets of its tenants: a fresh one would start
  them level, so a tenant whose tasks a distributor takes out each time a
  gate refuses them would lose its inner split at every refill.

Each lapses by itself, the debt once the virtual time reaches the tag, the
bucket at the time it would be full. A queue's debts lapse (its tenants
start level) once this scheduler has moved on past every tag it had given
out when the queue was kept (the virtual time beyond that largest tag: every
tenant then ahead has been served up to there while this one was away), or
at the end of this scheduler's busy period, when every tenant starts level;
its buckets once full. Then nothing of the tenant is left. A tenant that
comes back resumes from what is kept here, which is what a new tenant would
get once all have lapsed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Final

from taskdist._lazy_heap import LazyHeap
from taskdist.queues._tables import shrink

if TYPE_CHECKING:
    from taskdist.queues.protocol import Queue
    from taskdist.queues.quota import Quota
    from taskdist.resilience import RateLimiter

__all__ = ["IdleTenants", "Kept", "full_at", "is_full"]

Kept = tuple[float, int, Hashable, int, float, "RateLimiter | None", "Quota | None"]
"""``(due, seq, tenant, start, weight, limiter, quota)``: due is the tag (a debt) or the
time the bucket is full (a refill); start, weight, limiter and quota are what the tenant
resumes with."""

Held = tuple[float, int, Hashable, "Queue"]
"""``(mark, seq, tenant, queue)``: a dropped tenant's queue. Owing (it keeps debts): the
mark is the largest tag given out when it was kept, and it is kept until the virtual
time passes that or the busy period ends. Else: the mark is the time its buckets are
all full, when it lapses."""

StartLevel = Callable[["Queue"], "float | None"]
"""``queue -> until``: the debts of a queue kept for a tenant lapse, so its tenants start
level; then when it holds nothing in force any more (a finite time: its buckets full),
or ``None`` if it holds nothing now."""

InForce = Callable[["Queue"], bool]
"""``queue -> bool``: whether a queue kept for a tenant would hold anything in force once
its tenants start level (as :data:`StartLevel` would leave it, without changing it)."""

_TENANT: Final = 2
# The tables of kept queues until a queue is first kept (most schedulers never keep
# one, and each of a nested one's inner schedulers has its own): shared, never written.
_NO_QUEUES: Final[dict[Hashable, Held]] = {}
_NO_IDS: Final[set[int]] = set()
# Tie-breakers, increasing, shared by every instance: equal dues lapse in the order filed.
_SEQ = itertools.count()


def is_full(limiter: RateLimiter, now: float) -> bool:
    """Whether ``limiter``'s bucket holds its whole burst at ``now``. O(1)."""
    return full_at(limiter, now) is None


def full_at(limiter: RateLimiter, now: float) -> float | None:
    """When ``limiter``'s bucket is full again (its whole burst), or ``None`` if it is. O(1)."""
    missing = limiter.burst - limiter.available()
    if missing <= 0:
        return None
    return max(now + missing * limiter.interval, math.nextafter(now, math.inf))


class IdleTenants:
    """Dropped tenants whose debt, rate bucket or queue is still in force, until it lapses.

    ``keep`` files a tenant by the first thing still in force: its debt
    (keyed by its tag, lapsing when the virtual time reaches it), else its
    bucket (keyed by the time it is full). ``keep_queue`` files its queue
    apart (owing: by the largest tag given out then; else by the time its
    buckets are full). ``settle`` and :meth:`lapse_owing` let time, the
    virtual time and the end of busy periods move them on and forget those
    with nothing left.

    Complexity (k tenants kept): ``keep``, ``keep_queue``, ``take`` O(log k);
    ``get``, ``holds`` and ``len`` O(1); ``queue_of`` O(1), but O(k') for a
    queue whose debts lapsed (k' what it keeps); ``settle`` O(1) when nothing
    lapsed, else O(log k) per tenant moved on or forgotten, plus starting the
    tenants of each lapsed queue level.
    """

    __slots__ = (
        "_debts",
        "_held",
        "_held_ids",
        "_holding",
        "_owed",
        "_owes",
        "_owing",
        "_owing_since",
        "_refilling",
        "_refills",
        "_start_level",
        "_would_hold",
        "count",
    )

    def __init__(self, start_level: StartLevel, would_hold: InForce) -> None:
        """
        Args:
            start_level: what a queue kept for a tenant does when its debts lapse.
            would_hold: whether it would still hold anything then.
        """
        self._owed: dict[Hashable, Kept] = {}
        self._refilling: dict[Hashable, Kept] = {}
        # The heaps, made when a tenant is first kept: most schedulers, and each of a
        # nested one's inner schedulers, keep none (an empty pair weighs about 700 bytes).
        self._debts: LazyHeap[Kept] | None = None
        self._refills: LazyHeap[Kept] | None = None
        # Queues kept for their tenants, apart from the tenants' own debts and buckets
        # (either may lapse first): those with debts (by the largest tag given out when
        # kept, or until the busy period they were kept in ends: every one kept in
        # ``_owing_since``, as older ones lapse before a newer one is kept), those with
        # buckets only (by the time they are full), and the ids of both (a factory may
        # not hand one to another tenant).
        self._start_level = start_level
        self._would_hold = would_hold
        self._owing = _NO_QUEUES
        self._owes: LazyHeap[Held] | None = None
        self._owing_since = 0
        self._holding = _NO_QUEUES
        self._held: LazyHeap[Held] | None = None
        self._held_ids = _NO_IDS
        self.count = 0
        """How many things are kept (read it; never set it): ``len`` without a call. A
        tenant's debt or bucket and its queue count apart."""

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
        self._count()

    def keep_queue(
        self, tenant: Hashable, queue: Queue, until: float, periods: int, horizon: int
    ) -> None:
        """Keep the queue of a tenant that just left: until ``until`` (its buckets full),
        or if it owes (``until`` infinite) until the virtual time passes ``horizon`` (the
        largest tag given out now) or a busy period ends, ``periods`` having ended.
        O(log k), plus what lapses first."""
        if self._owing and self._owing_since != periods:
            self._lapse(list(self._owing.values()))
        self._owing_since = periods
        owes = until == math.inf
        self._file_queue(tenant, queue, horizon if owes else until, owes=owes)
        if self._held_ids is _NO_IDS:
            self._held_ids = set()
        self._held_ids.add(id(queue))
        self._count()

    def get(self, tenant: Hashable) -> Kept | None:
        """What is kept of ``tenant``'s tags and bucket, or ``None``. O(1)."""
        return self._owed.get(tenant) or self._refilling.get(tenant)

    def queue_of(self, tenant: Hashable, virtual: int, now: float, periods: int) -> Queue | None:
        """The queue kept for ``tenant`` if it still holds anything in force at ``virtual``
        and ``now``, ``periods`` busy periods having ended, or ``None``; nothing changes
        (one that lapsed since is, the same, what a new queue would be; one whose tenants
        are to start level is returned as it is: :meth:`lapse_owing` before it is used).
        O(1), but O(k') for a queue whose debts lapsed (k' what it keeps)."""
        held = self._owing.get(tenant)
        if held is not None:
            if not self._owed_lapsed(held, virtual, periods) or self._would_hold(held[3]):
                return held[3]
            return None
        held = self._holding.get(tenant)
        return None if held is None or held[0] <= now else held[3]

    def in_force(self, virtual: int, now: float, periods: int) -> bool:
        """Whether anything kept is still in force at the virtual time ``virtual`` and
        ``now``, ``periods`` busy periods having ended; nothing changes. O(k)."""
        for due, _, _, _, _, limiter, _ in self._owed.values():
            if due > virtual or (limiter is not None and not is_full(limiter, now)):
                return True
        if any(entry[0] > now for entry in self._refilling.values()):
            return True
        if any(held[0] > now for held in self._holding.values()):
            return True
        return any(
            not self._owed_lapsed(held, virtual, periods) or self._would_hold(held[3])
            for held in self._owing.values()
        )

    def max_debt(self) -> int:
        """The largest tag kept as a debt (0 if none). O(k)."""
        return max((entry[0] for entry in self._owed.values()), default=0)  # type: ignore[return-value]

    def holds(self, queue: Queue) -> bool:
        """Whether ``queue`` is kept for a tenant. O(1)."""
        return id(queue) in self._held_ids

    def take(self, tenant: Hashable, *, queue: bool = True) -> None:
        """Forget ``tenant`` (its tags and bucket; its queue too unless ``queue=False``): it
        came back, its new record carries what was kept. O(1) amortised."""
        if self._owed.pop(tenant, None) is not None:
            self._debt_heap().compact()
        elif self._refilling.pop(tenant, None) is not None:
            self._refill_heap().compact()
        if queue:
            held = self._owing.pop(tenant, None)
            if held is not None:
                self._owes_heap().compact()
            elif (held := self._holding.pop(tenant, None)) is not None:
                self._held_heap().compact()
            if held is not None:
                self._held_ids.discard(id(held[3]))
        self._release_emptied()

    def settle(self, virtual: int, now: float, periods: int) -> None:
        """Debts the virtual time has reached, buckets full by ``now``, and the debts of
        queues kept before the last of ``periods`` busy periods ended or owing no more
        than ``virtual``, lapse."""
        self.lapse_owing(virtual, periods)
        if self._owed:
            for _, _, tenant, _, weight, limiter, quota in self._debt_heap().pop_until(virtual):
                if limiter is not None:
                    self._file_refill(tenant, weight, limiter, quota, now)
        if self._refilling:
            for _, _, tenant, _, weight, limiter, quota in self._refill_heap().pop_until(now):
                assert limiter is not None  # only tenants with a bucket wait for a refill
                self._file_refill(tenant, weight, limiter, quota, now)
        if self._holding:
            for held in self._held_heap().pop_until(now):
                self._held_ids.discard(id(held[3]))
        self._release_emptied()

    def owing_lapsed(self, virtual: int, periods: int) -> bool:
        """Whether a queue with debts is kept whose debts lapsed at ``virtual``, ``periods``
        busy periods having ended (its tenants are to start level before it is used).
        O(1) amortised."""
        if not self._owing:
            return False
        top = self._owes_heap().top()
        return self._owing_since != periods or (top is not None and top[0] < virtual)

    def lapse_owing(self, virtual: int, periods: int) -> None:
        """The queues whose debts lapsed at ``virtual`` (``periods`` busy periods having
        ended) start their tenants level. O(q log k) for q such queues, each once."""
        if not self._owing:
            return
        if self._owing_since != periods:
            self._lapse(list(self._owing.values()))
        else:
            # Marks are exact integers: "past the mark" is "at most virtual - 1".
            self._lapse(self._owes_heap().pop_until(virtual - 1))

    def _owed_lapsed(self, held: Held, virtual: int, periods: int) -> bool:
        return self._owing_since != periods or held[0] < virtual

    def _lapse(self, lapsed: list[Held]) -> None:
        """The debts of the ``lapsed`` queues lapse: re-filed by their buckets, or let go."""
        for _, _, tenant, queue in lapsed:
            self._owing.pop(tenant, None)
            until = self._start_level(queue)
            if until is None:
                self._held_ids.discard(id(queue))
            else:  # its debts gone, its buckets refill
                self._file_queue(tenant, queue, until, owes=False)
        if lapsed:
            if self._owing:
                self._owes_heap().compact()
            self._release_emptied()

    def until(self) -> float | None:
        """When nothing kept here is in force any more (``math.inf`` while a debt is), or
        ``None`` if nothing is kept: what this scheduler holds, kept as a tenant's queue.
        O(k)."""
        if self._owed or self._owing:
            return math.inf
        dues = [entry[0] for entry in self._refilling.values()]
        dues += [held[0] for held in self._holding.values()]
        return max(dues, default=None)

    def queues(
        self, virtual: int, now: float, periods: int
    ) -> list[tuple[Hashable, Queue, int | None]]:
        """The queues kept, as :meth:`settle` would leave them but for their tenants
        starting level: ``(tenant, queue, mark)``, where ``mark`` is the largest tag given
        out when it was kept for one that owes, ``-1`` for one whose debts lapsed (its
        tenants are to start level), ``None`` for one that only refills (each queue's
        snapshot says when). O(k)."""
        owing = [
            (held[2], held[3], -1 if self._owed_lapsed(held, virtual, periods) else int(held[0]))
            for held in self._owing.values()
        ]
        holding = self._holding.values()
        return owing + [(held[2], held[3], None) for held in holding if held[0] > now]

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
        self._count()

    def clear(self) -> None:
        """Forget every tenant. O(k)."""
        self._owed.clear()
        self._refilling.clear()
        self._owing = self._holding = _NO_QUEUES
        self._held_ids = _NO_IDS
        self._owes = None
        self._debts = self._refills = self._held = None
        self.count = 0

    def shrink(self) -> None:
        """Give back the memory of tables that held many more tenants. O(1) unless due."""
        shrink(self._owed)
        shrink(self._refilling)
        shrink(self._holding)

    def _count(self) -> None:
        self.count = len(self._owed) + len(self._refilling) + len(self._owing) + len(self._holding)

    def _release_emptied(self) -> None:
        """Count what is kept; give back the tables of a dict emptied key by key."""
        self._count()
        if not self._owed:
            self._owed.clear()
            self._debts = None
        if not self._refilling:
            self._refilling.clear()
            self._refills = None
        if not self._holding:
            self._holding = _NO_QUEUES
            self._held = None
        if not self._owing:
            self._owing = _NO_QUEUES
            self._owes = None
            if not self._holding:
                self._held_ids = _NO_IDS

    def _file_queue(self, tenant: Hashable, queue: Queue, mark: float, *, owes: bool) -> None:
        held: Held = (mark, next(_SEQ), tenant, queue)
        if owes:
            if self._owing is _NO_QUEUES:
                self._owing = {}
            self._owing[tenant] = held
            self._owes_heap().push(held)
        else:
            if self._holding is _NO_QUEUES:
                self._holding = {}
            self._holding[tenant] = held
            self._held_heap().push(held)

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

    def _owes_heap(self) -> LazyHeap[Held]:
        """The queues kept owing, by the largest tag given out when kept, made now if it
        was not yet."""
        heap = self._owes
        if heap is None:
            heap = self._owes = LazyHeap(self._owing, at=_TENANT)
        return heap

    def _held_heap(self) -> LazyHeap[Held]:
        """The queues kept for their buckets, in the order they lapse, made now if it was
        not yet."""
        heap = self._held
        if heap is None:
            heap = self._held = LazyHeap(self._holding, at=_TENANT)
        return heap

    def _refill_heap(self) -> LazyHeap[Kept]:
        """The refilling buckets in the order they fill, made now if it was not yet."""
        heap = self._refills
        if heap is None:
            heap = self._refills = LazyHeap(self._refilling, at=_TENANT)
        return heap
