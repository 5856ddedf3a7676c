"""Lazy deletion over an owner's live dict: LazyHeap, the binary heap every queue and timer
heap shares, and two orders over a queue's own entries, LazyMaxHeap and Expiries.

Taking an entry out of the middle of a heap is O(n); marking it dead is O(1).
A :class:`LazyHeap` holds tuple entries ordered as the tuples compare (so the
leading fields should be numbers and a unique sequence number should settle
ties before a comparison can reach anything else: comparisons stay in C). It
never decides membership itself: its owner keeps a dict ``live``, and an
entry is *live* while ``live[entry[at]] is entry`` (for entries that hold a
task at ``at``, ``live[entry[at].id] is entry``: the id needs no field of its
own). Any other entry still in the heap is dead and is skipped as it reaches
the top, or dropped when the dead entries outnumber the live ones
(compaction), so memory stays O(live) and ``len`` of the owner stays exact.

A *side* heap orders the same live entries another way (by expiry time, by
least urgency): its entries are ``(..., entry, ...)`` tuples that carry the
owner's entry at position ``via``, and are live while that entry is. Where a
side order costs less kept apart, two structures follow the same rule over
the owner's entries themselves, one pointer each: :class:`LazyMaxHeap`
(largest first, for a queue's least urgent task) and :class:`Expiries` (TTL
expiries, in FIFO runs: one while they come in order).

Complexity (n = entries held, dead included; the owner keeps n = O(live)):
``push`` O(log n); ``top`` O(1) amortised; ``pop`` O(log n) amortised;
``schedule`` and ``swap`` O(log n); ``drop_top`` O(log n); ``find`` and ``walk`` O(k log k)
for the k entries up to the result; ``compact`` O(1) amortised over the
deletions that made it due.

>>> live = {}
>>> heap = LazyHeap(live, at=2)
>>> for key, name in [(3, "c"), (1, "a"), (2, "b")]:
...     live[name] = entry = (key, len(live), name)
...     heap.push(entry)
>>> del live["a"]  # dead: skipped from now on
>>> heap.top()
(2, 2, 'b')
>>> heap.find(lambda name: name == "c", item=2)
(3, 0, 'c')
>>> heap.pop(), sorted(live)  # pop takes it out of ``live`` too
((2, 2, 'b'), ['c'])
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterator, MutableMapping
from heapq import heapify, heappop, heappush, heapreplace
from typing import Any, Final, Generic, TypeVar

__all__ = ["COMPACT_SLACK", "Expiries", "LazyHeap", "LazyMaxHeap"]

COMPACT_SLACK: Final = 64
"""A heap is compacted once its dead entries outnumber its live ones by this many,
so tiny heaps never churn and large ones stay within twice their live size."""

_E = TypeVar("_E", bound=tuple[Any, ...])

# Tie-breakers for schedule(): increasing, so equal keys go first come, first served.
_SEQ = itertools.count()


class LazyHeap(Generic[_E]):
    """Tuple entries in heap order; the owner's ``live`` dict says which are still in.

    ``push`` adds an entry (an owner on a hot path calls ``heapq.heappush`` on
    :attr:`entries` itself, a C-level call with no method in between); the rest
    skip dead entries as they meet them. The owner adds an entry to
    ``live`` and pushes it (or lets :meth:`schedule` do both), deletes it from
    ``live`` to drop it (:meth:`pop` and :meth:`pop_until` do that
    themselves), and calls :meth:`compact` after deletions. The heap must not
    change while a :meth:`find` or :meth:`walk` is under way (its owner
    refuses re-entry).
    """

    __slots__ = ("_at", "_live", "_task", "_via", "entries")

    entries: list[_E]
    """The entries, dead ones included, in heap order: one list for the heap's life (never
    rebound), so an owner on a hot path may keep it and call ``heapq.heappush`` on it
    directly, as :meth:`push` does, or ``heapq.heappop`` when it knows every entry held
    is live (none dead since the heap was last empty or compact)."""

    def __init__(
        self,
        live: MutableMapping[Any, Any],
        at: int,
        *,
        via: int | None = None,
        task: bool = False,
    ) -> None:
        """
        Args:
            live: the owner's membership: ``live[ident]`` is the live entry of ``ident``.
            at: where an (owner's) entry holds its ``ident`` (with ``task``, the task
                whose ``id`` it is).
            via: for a side heap, where its entries hold the owner's entry; ``None``
                when the entries are the owner's own.
            task: the field at ``at`` is a task and its ``id`` the ``ident``: an entry
                costs no field for its id. (Each look reads ``entry[at].id if task
                else entry[at]`` inline: as fast as ``entry[at]``, where a reader
                function chosen at construction costs a call, about 60 % more.)
        """
        self.entries: list[_E] = []
        self._live = live
        self._at = at
        self._task = task
        self._via = via

    def __len__(self) -> int:
        """Entries held, dead ones included. O(1)."""
        return len(self.entries)

    def push(self, entry: _E) -> None:
        """Add an entry (the owner makes it live). O(log n)."""
        heappush(self.entries, entry)

    def top(self) -> _E | None:
        """The smallest live entry, or ``None``; drops the dead ones above it. O(1) amortised."""
        entries = self.entries
        live = self._live
        at = self._at
        task = self._task
        via = self._via
        if via is None:
            while entries:
                entry = entries[0]
                if live.get(entry[at].id if task else entry[at]) is entry:
                    return entry
                heappop(entries)
        else:
            while entries:
                ref = entries[0][via]
                if live.get(ref[at].id if task else ref[at]) is ref:
                    return entries[0]
                heappop(entries)
        return None

    def pop(self) -> _E | None:
        """Take out and return the smallest live entry, or ``None``; it leaves ``live`` too.

        For a side heap, the owner's entry it carries leaves ``live``.
        O(log n) amortised.
        """
        entries = self.entries
        live = self._live
        at = self._at
        task = self._task
        if self._via is None:
            while entries:
                entry = heappop(entries)
                ident = entry[at].id if task else entry[at]
                if live.get(ident) is entry:
                    del live[ident]
                    return entry
            return None
        via = self._via
        while entries:
            entry = heappop(entries)
            ref = entry[via]
            ident = ref[at].id if task else ref[at]
            if live.get(ident) is ref:
                del live[ident]
                return entry
        return None

    def pop_until(self, limit: float) -> list[_E]:
        """Take out every live entry whose leading field is ``<= limit``, smallest first.

        They leave ``live`` too (for a side heap, the owner's entries they
        carry). O(k log n) for k entries taken, plus the dead ones met; O(1)
        when none is due.
        """
        entries = self.entries
        live = self._live
        at = self._at
        task = self._task
        via = self._via
        taken = []
        while entries:
            entry = entries[0]
            ref = entry if via is None else entry[via]
            ident = ref[at].id if task else ref[at]
            if live.get(ident) is ref:
                if entry[0] > limit:
                    break
                del live[ident]
                taken.append(entry)
            heappop(entries)
        return taken

    def drop_top(self, entry: _E) -> bool:
        """Take ``entry`` (just made dead by the owner) out now if it is at the top, and say
        whether it was. O(log n).

        An entry anywhere else stays until it surfaces or a compaction drops it.
        """
        entries = self.entries
        if entries and entries[0] is entry:
            heappop(entries)
            return True
        return False

    def swap(self, old: _E | None, entry: _E) -> None:
        """Hold ``entry``, which the owner just made live in place of ``old`` (``None``:
        of nothing). O(log n).

        When ``old`` is at the top (the smallest, just served and filed anew) one
        ``heapreplace`` takes it out and puts ``entry`` in, leaving nothing dead;
        otherwise ``entry`` is pushed, ``old`` stays dead until it surfaces or a
        compaction drops it.
        """
        entries = self.entries
        if old is not None and entries and entries[0] is old:
            heapreplace(entries, entry)
            return
        heappush(entries, entry)
        if old is not None:
            self.compact()

    def schedule(self, ident: Hashable, key: float) -> None:
        """Make ``(key, seq, ident)`` the live entry of ``ident``, replacing any other. O(log n).

        For a heap of ``(key, seq, ident)`` entries (``at=2``): ``seq``, from
        a counter shared by every heap, makes equal keys first come, first
        served. When the entry it replaces is at the top (an item served and
        rescheduled), one ``heapreplace`` takes it out and puts the new one in.
        """
        entry: Any = (key, next(_SEQ), ident)
        live = self._live
        old = live.get(ident)
        live[ident] = entry
        self.swap(old, entry)

    def find(self, match: Callable[[Any], bool], item: int) -> _E | None:
        """The smallest live entry whose ``entry[item]`` ``match`` accepts, or ``None``.

        It moves nothing: a best-first walk of the heap array (a node's
        children are never smaller than it) looks at the k entries up to the
        result only, O(k log k). For an owner's heap (not a side heap). Dead
        entries at the top are dropped first, so entries the owner removed
        after a walk passed them (a caller that takes out what it refused) are
        not walked again.
        """
        top = self.top()
        if top is None or match(top[item]):
            return top  # the usual answer, without the walk's frontier
        walk = self.walk()
        next(walk)  # the top again, refused already: asked once only
        for entry in walk:
            if match(entry[item]):
                return entry
        return None

    def walk(self) -> Iterator[_E]:
        """The live entries in order, without moving them: O(log k) per entry yielded.

        It stops as early as the caller does; the heap must not change meanwhile.
        Dead entries at the top are dropped first, and the top is yielded before
        any frontier is built (most walks stop there).
        """
        top = self.top()
        if top is None:
            return
        yield top
        entries = self.entries
        size = len(entries)
        live = self._live
        at = self._at
        task = self._task
        via = self._via
        frontier: list[tuple[_E, int]] = [(entries[c], c) for c in (1, 2) if c < size]
        if len(frontier) == 2 and frontier[1] < frontier[0]:
            frontier.reverse()  # a heap of two
        while frontier:
            entry, position = heappop(frontier)
            ref = entry if via is None else entry[via]
            if live.get(ref[at].id if task else ref[at]) is ref:
                yield entry
            child = 2 * position + 1
            if child < size:
                heappush(frontier, (entries[child], child))
                if child + 1 < size:
                    heappush(frontier, (entries[child + 1], child + 1))

    def live_entries(self) -> list[_E]:
        """Every live entry, in no particular order. O(n)."""
        live = self._live
        at = self._at
        task = self._task
        via = self._via
        if via is None:
            return [
                entry
                for entry in self.entries
                if live.get(entry[at].id if task else entry[at]) is entry
            ]
        return [
            entry
            for entry in self.entries
            if live.get(entry[via][at].id if task else entry[via][at]) is entry[via]
        ]

    def compact(self) -> None:
        """Drop the dead entries once they outnumber the live ones by ``COMPACT_SLACK``.

        O(1) when not due; O(n) when due, which is at most once per n / 2
        deletions: O(1) amortised. The entry list is rebuilt in place.
        """
        entries = self.entries
        if len(entries) > 2 * len(self._live) + COMPACT_SLACK:
            entries[:] = self.live_entries()
            heapify(entries)

    def reset(self, entries: list[_E]) -> None:
        """Hold exactly ``entries`` (the owner makes them live). O(len(entries))."""
        self.entries[:] = entries
        heapify(self.entries)

    def clear(self) -> None:
        """Hold nothing. O(n)."""
        self.entries.clear()


class LazyMaxHeap(Generic[_E]):
    """The owner's own entries, *largest* live one first; otherwise as :class:`LazyHeap`.

    It holds the entries themselves, one pointer each, where a min-heap would
    need a negated copy of every entry (a tuple and a float or two). Its sifts
    are Python-level (``heapq`` has no public max-heap before Python 3.14):
    ``push`` O(log n), a few hundred nanoseconds more than a C push; ``top``
    O(1) amortised; ``drop_top`` O(log n); ``compact`` O(1) amortised.
    """

    __slots__ = ("_at", "_entries", "_live", "_task")

    def __init__(self, live: MutableMapping[Any, Any], at: int, *, task: bool = False) -> None:
        """
        Args:
            live: the owner's membership: ``live[ident]`` is the live entry of ``ident``.
            at: where an entry holds its ``ident`` (with ``task``, the task whose ``id`` it is).
            task: as for :class:`LazyHeap`.
        """
        self._entries: list[_E] = []
        self._live = live
        self._at = at
        self._task = task

    def __len__(self) -> int:
        """Entries held, dead ones included. O(1)."""
        return len(self._entries)

    def push(self, entry: _E) -> None:
        """Add an entry (the owner makes it live). O(log n)."""
        entries = self._entries
        entries.append(entry)
        _sift_up_max(entries, len(entries) - 1)

    def top(self) -> _E | None:
        """The largest live entry, or ``None``; drops the dead ones above it. O(1) amortised."""
        entries = self._entries
        live = self._live
        at = self._at
        task = self._task
        while entries:
            entry = entries[0]
            if live.get(entry[at].id if task else entry[at]) is entry:
                return entry
            _pop_max(entries)
        return None

    def drop_top(self, entry: _E) -> bool:
        """Take ``entry`` (just made dead by the owner) out now if it is at the top, and say
        whether it was. O(log n)."""
        entries = self._entries
        if entries and entries[0] is entry:
            _pop_max(entries)
            return True
        return False

    def compact(self) -> None:
        """Drop the dead entries once they outnumber the live ones by ``COMPACT_SLACK``.

        O(1) when not due; O(n) when due, at most once per n / 2 deletions.
        """
        entries = self._entries
        live = self._live
        if len(entries) > 2 * len(live) + COMPACT_SLACK:
            at = self._at
            task = self._task
            entries[:] = [
                entry for entry in entries if live.get(entry[at].id if task else entry[at]) is entry
            ]
            for position in reversed(range(len(entries) // 2)):
                _sift_down_max(entries, position)


class Expiries(Generic[_E]):
    """The expiry times of a queue's live entries, earliest first.

    The entries are kept in *runs*, lists in which expiries never decrease,
    one pointer per entry: no timer tuple and no stored time (an entry's time
    is computed from the entry when needed, the same float each time). Most
    queues see expiries in the order they file them (one TTL for every task,
    pushed as time goes on): an entry expiring no earlier than the last one
    filed joins the first run, a FIFO, at the cost of one comparison. Any
    other entry joins the further run whose last expiry is the latest one not
    after its own (patience sorting), or a new run when it expires before
    every further run's last. TTLs of mixed lengths in random order make
    about ``2 * sqrt(n)`` runs for n entries, a few bytes a task in all;
    should the further runs ever outnumber an eighth of their entries
    (expiries filed mostly in falling order), they are merged into one. A heap of
    ``(expiry, run)`` holds the front of each further run that holds
    entries; the earliest expiry is the smaller of its top and the first
    run's front. An entry is live while ``live[entry[at]] is entry`` (or its task's id), as for
    :class:`LazyHeap`.

    Complexity (n = entries filed, dead included; k = runs, k <= n; the owner
    keeps n = O(live)): ``add`` O(1) for an expiry in order, else O(log k),
    O(log n) amortised with the merges; ``first`` O(1) amortised, plus
    O(log k) per further run whose front died; ``pop_until`` O((m + d) log
    k + m log m) for m entries taken and d dead ones met (it returns the
    FIFO's entries in their order, then the others in ``(expiry, entry)``
    order); ``compact`` O(1) amortised.
    """

    __slots__ = ("_at", "_expires", "_fifo", "_head", "_last", "_live", "_more", "_task")

    def __init__(
        self,
        live: MutableMapping[Any, Any],
        at: int,
        expires: Callable[[_E], float],
        *,
        task: bool = False,
    ) -> None:
        """
        Args:
            live: the owner's membership: ``live[ident]`` is the live entry of ``ident``.
            at: where an entry holds its ``ident`` (with ``task``, the task whose ``id`` it is).
            task: as for :class:`LazyHeap`.
            expires: an entry's expiry time (the float :meth:`add` was given for it).
        """
        self._live = live
        self._at = at
        self._task = task
        self._expires = expires
        # The first run is a list read from _head on, not a deque: an empty deque costs
        # about 760 bytes, and a FairScheduler keeps one queue (so one of these) per
        # tenant. The taken front is cut off once it is half the list: O(1) amortised.
        self._fifo: list[_E] = []
        self._head = 0
        # The latest expiry in the FIFO: an entry expiring no earlier joins it.
        self._last = -math.inf
        # The further runs, made at the first expiry out of order.
        self._more: _Runs[_E] | None = None

    def __len__(self) -> int:
        """Entries filed, dead ones included, plus the further runs holding them: what
        compaction weighs. O(1)."""
        more = self._more
        size = len(self._fifo) - self._head
        return size if more is None else size + more.size + len(more.runs)

    def add(self, entry: _E, expires: float) -> None:
        """File a live ``entry`` that expires at ``expires``. O(1) in order, else O(log k)."""
        if expires >= self._last:
            self._fifo.append(entry)
            self._last = expires
            return
        more = self._more
        if more is None:
            more = self._more = _Runs()
        elif not more.add(entry, expires):
            return
        runs = len(more.runs)
        if runs > COMPACT_SLACK and 8 * runs > more.size:
            # Mostly falling expiries: merge the further runs first (O(n log n) once
            # per n / 8 runs made, each by an add: O(log n) amortised).
            more.merge(self._live, self._at, self._task, self._expires)
            if not more.add(entry, expires):
                return
        more.start(entry, expires)

    def _advance(self, head: int) -> None:
        """The FIFO's front moved to ``head``: keep it, or cut the taken front off."""
        fifo = self._fifo
        if head >= len(fifo):
            fifo.clear()
            self._head = 0
            self._last = -math.inf
        elif head > COMPACT_SLACK and 2 * head > len(fifo):
            del fifo[:head]
            self._head = 0
        else:
            self._head = head

    def first(self) -> float:
        """The earliest expiry of a live entry (``inf`` if none); drops dead ones in front.

        O(1) amortised, plus O(log k) per further run whose front died.
        """
        live = self._live
        at = self._at
        task = self._task
        fifo = self._fifo
        head = self._head
        size = len(fifo)
        while (
            head < size
            and live.get(fifo[head][at].id if task else fifo[head][at]) is not fifo[head]
        ):
            head += 1
        if head != self._head or head == size:
            self._advance(head)
            head = self._head
        earliest = self._expires(fifo[head]) if fifo else math.inf
        more = self._more
        if more is None:
            return earliest
        return min(earliest, more.first(live, at, task, self._expires))

    def pop_until(self, limit: float) -> list[_E]:
        """Take out every live entry that expires by ``limit``: the FIFO's in their order,
        then the others by ``(expiry, entry)`` (the order an owner keeps its expired in).

        They leave ``live`` too. O((m + d) log k + m log m) for m entries taken and
        d dead ones met; O(1) when none is due.
        """
        live = self._live
        at = self._at
        task = self._task
        expires = self._expires
        taken: list[_E] = []
        fifo = self._fifo
        head = _take_due(fifo, self._head, limit, live, at, task, expires, taken)
        if head != self._head or head == len(fifo):
            self._advance(head)
        if self._more is not None:
            # In (expiry, entry) order, as a heap of (expiry, entry) would give them.
            more = self._more.pop_until(limit, live, at, task, expires)
            timed = sorted([(expires(entry), entry) for entry in more])
            taken += [entry for _, entry in timed]
        return taken

    def compact(self) -> None:
        """Drop the dead entries (and emptied runs) once they outnumber the live entries by
        ``COMPACT_SLACK``.

        O(1) when not due; O(n) when due (O(n log n) when it merges thinned runs), at
        most once per n / 2 deletions.
        """
        live = self._live
        if len(self) <= 2 * len(live) + COMPACT_SLACK:
            return
        at = self._at
        task = self._task
        fifo = self._fifo
        fifo[:] = [
            entry
            for entry in fifo[self._head :]
            if live.get(entry[at].id if task else entry[at]) is entry
        ]
        self._head = 0
        if not fifo:
            self._last = -math.inf
        more = self._more
        if more is None:
            return
        if not more.keep_live(live, at, task, self._expires):
            self._more = None
        elif len(more.runs) > COMPACT_SLACK and 8 * len(more.runs) > more.size:
            # Runs thinned to a few entries each (expiries filed mostly in falling order,
            # then deleted): merged, or they would count in the next compaction's weight
            # and bring it due after a few deletions, O(n) each time.
            more.merge(live, at, task, self._expires)


class _Runs(Generic[_E]):
    """The further runs of an :class:`Expiries` (see there), with the heap of their fronts."""

    __slots__ = ("fronts", "heads", "runs", "size", "tails")

    def __init__(self) -> None:
        # Run i holds its entries from heads[i] on; its taken front is cut off once it
        # is half the run.
        self.runs: list[list[_E]] = []
        self.heads: list[int] = []
        # Minus each run's last expiry, ascending: a new run (expiring before every
        # last) goes at the end.
        self.tails: list[float] = []
        # (expiry of run i's front entry, i) for each run that holds entries.
        self.fronts: list[tuple[float, int]] = []
        # Entries filed, dead ones included.
        self.size = 0

    def add(self, entry: _E, expires: float) -> bool:
        """File ``entry`` in the run with the latest last not after ``expires``; ``True``
        if there is none (then it needs a run of its own, :meth:`start`). O(log k)."""
        tails = self.tails
        key = -expires
        i = bisect_left(tails, key)
        if i == len(tails):
            return True
        run = self.runs[i]
        if not run:
            heappush(self.fronts, (expires, i))
        run.append(entry)
        tails[i] = key
        self.size += 1
        return False

    def start(self, entry: _E, expires: float) -> None:
        """File ``entry`` in a new run (it expires before every run's last). O(log k)."""
        heappush(self.fronts, (expires, len(self.runs)))
        self.runs.append([entry])
        self.heads.append(0)
        self.tails.append(-expires)
        self.size += 1

    def _settle(self, i: int, head: int, expires: Callable[[_E], float]) -> None:
        """Run ``i``, at the top of the fronts, moved its front to ``head`` (a live entry,
        or the end): file its new front."""
        run = self.runs[i]
        size = len(run)
        self.size -= head - self.heads[i]
        if head >= size:
            heappop(self.fronts)
            run.clear()
            self.heads[i] = 0
            return
        heapreplace(self.fronts, (expires(run[head]), i))
        if head > COMPACT_SLACK and 2 * head > size:
            del run[:head]
            head = 0
        self.heads[i] = head

    def first(
        self, live: MutableMapping[Any, Any], at: int, task: bool, expires: Callable[[_E], float]
    ) -> float:
        """The earliest expiry of a live entry in these runs (``inf`` if none)."""
        fronts = self.fronts
        runs = self.runs
        heads = self.heads
        while fronts:
            when, i = fronts[0]
            run = runs[i]
            head = heads[i]
            if live.get(run[head][at].id if task else run[head][at]) is run[head]:
                return when
            size = len(run)
            head += 1
            while (
                head < size
                and live.get(run[head][at].id if task else run[head][at]) is not run[head]
            ):
                head += 1
            self._settle(i, head, expires)
        return math.inf

    def pop_until(
        self,
        limit: float,
        live: MutableMapping[Any, Any],
        at: int,
        task: bool,
        expires: Callable[[_E], float],
    ) -> list[_E]:
        """Take out every live entry of these runs that expires by ``limit`` (run by run),
        out of ``live`` too."""
        taken: list[_E] = []
        fronts = self.fronts
        runs = self.runs
        heads = self.heads
        while fronts and fronts[0][0] <= limit:
            i = fronts[0][1]
            head = _take_due(runs[i], heads[i], limit, live, at, task, expires, taken)
            self._settle(i, head, expires)
        return taken

    def merge(
        self, live: MutableMapping[Any, Any], at: int, task: bool, expires: Callable[[_E], float]
    ) -> None:
        """Put every live entry in one run, in expiry order. O(n log n)."""
        entries = [
            entry
            for run, head in zip(self.runs, self.heads, strict=True)
            for entry in run[head:]
            if live.get(entry[at].id if task else entry[at]) is entry
        ]
        entries.sort(key=expires)
        self.runs = [entries] if entries else []
        self.heads = [0] * len(self.runs)
        self.tails = [-expires(entries[-1])] if entries else []
        self.fronts = [(expires(entries[0]), 0)] if entries else []
        self.size = len(entries)

    def keep_live(
        self, live: MutableMapping[Any, Any], at: int, task: bool, expires: Callable[[_E], float]
    ) -> bool:
        """Keep only the live entries, in the runs that still hold some, in their order;
        whether any is left. O(n)."""
        runs: list[list[_E]] = []
        tails: list[float] = []
        for run, head, tail in zip(self.runs, self.heads, self.tails, strict=True):
            kept = [
                entry
                for entry in run[head:]
                if live.get(entry[at].id if task else entry[at]) is entry
            ]
            if kept:
                runs.append(kept)
                tails.append(tail)
        self.runs = runs
        self.tails = tails
        self.heads = [0] * len(runs)
        self.fronts = [(expires(run[0]), i) for i, run in enumerate(runs)]
        heapify(self.fronts)
        self.size = sum(map(len, runs))
        return bool(runs)


def _take_due(
    run: list[_E],
    head: int,
    limit: float,
    live: MutableMapping[Any, Any],
    at: int,
    task: bool,
    expires: Callable[[_E], float],
    taken: list[_E],
) -> int:
    """Move the live entries of ``run`` (in expiry order from ``head`` on) that expire by
    ``limit`` to ``taken``, out of ``live``; return where the run now starts (at a live
    entry not due, or its end), the dead entries met on the way skipped."""
    size = len(run)
    while head < size:
        entry = run[head]
        ident = entry[at].id if task else entry[at]
        if live.get(ident) is entry:
            if expires(entry) > limit:
                break
            del live[ident]
            taken.append(entry)
        head += 1
    return head


def _sift_up_max(entries: list[Any], position: int) -> None:
    """Move ``entries[position]`` up past every smaller parent."""
    entry = entries[position]
    while position:
        parent = (position - 1) >> 1
        above = entries[parent]
        if not above < entry:
            break
        entries[position] = above
        position = parent
    entries[position] = entry


def _sift_down_max(entries: list[Any], position: int) -> None:
    """Move ``entries[position]`` down below every larger child."""
    size = len(entries)
    entry = entries[position]
    while (child := 2 * position + 1) < size:
        if child + 1 < size and entries[child] < entries[child + 1]:
            child += 1
        if not entry < entries[child]:
            break
        entries[position] = entries[child]
        position = child
    entries[position] = entry


def _pop_max(entries: list[Any]) -> None:
    """Take the largest entry out. O(log n)."""
    last = entries.pop()
    if entries:
        entries[0] = last
        _sift_down_max(entries, 0)
