"""LoadIndex: the available workers sorted by a key a balancing strategy gives.

It lets :meth:`CapacityTracker.lowest <taskdist.CapacityTracker.lowest>`
find the candidate with the lowest key by walking from the front instead of
scanning every worker. The index knows nothing of what the key means:
``LeastConnections`` gives "load per unit of weight", another strategy
may give another order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from taskdist._lazy_heap import LazyHeap
from taskdist.workers.health import Health
from taskdist.workers.state import WorkerState

__all__ = ["PURE_KEYS", "LoadIndex", "LoadKey"]

LoadKey = Callable[[WorkerState], Any]
"""A worker's place in an order (lowest first): a float or a tuple of floats, never NaN.

It must depend only on the worker's view (its load, weights, capacity, health,
averages): the tracker refiles a worker after each change it makes to it."""

_UNAVAILABLE: Final = Health.UNAVAILABLE
_HEALTHY: Final = Health.HEALTHY

PURE_KEYS: set[object] = set()
"""Keys known to call nothing back into the tracker (the built-in strategies' own):
an index kept only in such orders is refiled without the tracker's re-entry guard."""

# (*key(state), seq, state), flat so that comparisons stay in C and shallow (a
# float key is one field); seq is unique, so state is never compared.
_Entry = tuple[Any, ...]


class LoadIndex:
    """The workers that are not ``UNAVAILABLE``, ascending by ``(key(worker), seq)``:
    :meth:`healthy` and :meth:`degraded`.

    With ``separate_degraded`` the ``DEGRADED`` workers are filed apart, so a
    walk over the healthy ones never passes over them (drained of new work,
    they would pile up at the front); otherwise :meth:`healthy` holds both.
    The tracker calls :meth:`place` after anything that may change a
    worker's key, health or availability, and :meth:`discard` when it
    leaves. ``place`` and ``discard`` are O(log n) plus one call of the key
    (O(1) when nothing changed); the walks yield the first worker in O(1)
    amortised and each next one in O(log k) for the k yielded.

    Each order is a heap with lazy deletion: a worker filed anew pushes one
    entry (a C-level push) and leaves its old one dead, where a sorted list
    would pay a removal and an insertion in Python. Placement reads from the
    front only, which a heap gives as cheaply.
    """

    __slots__ = ("_degraded", "_degraded_live", "_healthy", "_healthy_live", "_key", "_separate")

    def __init__(
        self, key: LoadKey, states: Iterable[WorkerState], *, separate_degraded: bool
    ) -> None:
        self._key = key
        # Each heap's live entries by worker: an entry is live while it is its worker's,
        # and it holds the key it was filed under.
        self._healthy_live: dict[WorkerState, _Entry] = {}
        self._degraded_live: dict[WorkerState, _Entry] = {}
        self._healthy: LazyHeap[_Entry] = LazyHeap(self._healthy_live, at=-1)
        self._degraded: LazyHeap[_Entry] = LazyHeap(self._degraded_live, at=-1)
        self._separate = separate_degraded
        for state in states:
            self.place(state)

    @property
    def key(self) -> LoadKey:
        """The order the index keeps."""
        return self._key

    def place(self, state: WorkerState) -> None:
        """File ``state`` under its current key, or take it out while it is unavailable."""
        health = state.health
        if health is _HEALTHY:  # the usual worker, first
            heap, live, elsewhere = self._healthy, self._healthy_live, self._degraded_live
        elif health is _UNAVAILABLE:
            self.discard(state)
            return
        elif self._separate:  # DEGRADED, filed apart
            heap, live, elsewhere = self._degraded, self._degraded_live, self._healthy_live
        else:
            heap, live, elsewhere = self._healthy, self._healthy_live, self._degraded_live
        key = self._key(state)
        # Concatenated: (*key, ...) would build a list on the way.
        own = (state.seq, state)
        entry = key + own if type(key) is tuple else (key, state.seq, state)
        old = live.get(state)
        if old is None:
            if elsewhere and state in elsewhere:  # its health moved it to the other heap
                self.discard(state)
        elif old == entry:  # the same key: seq and state are its own
            return
        live[state] = entry  # an old entry in this heap is dead from here on
        heap.swap(old, entry)

    def discard(self, state: WorkerState) -> None:
        """Forget a worker (no-op if it is not filed)."""
        if self._healthy_live.pop(state, None) is not None:
            self._healthy.compact()
        elif self._degraded_live.pop(state, None) is not None:
            self._degraded.compact()

    def top_healthy(self) -> WorkerState | None:
        """The first of :meth:`healthy`, without a walk. O(1) amortised."""
        entry = self._healthy.top()
        return None if entry is None else entry[-1]

    def healthy(self) -> Iterator[WorkerState]:
        """The healthy workers (and the degraded ones, unless kept apart), lowest key first."""
        return _states(self._healthy)

    def degraded(self) -> Iterator[WorkerState]:
        """The degraded workers kept apart, lowest key first (none unless kept apart)."""
        return _states(self._degraded)

    def __len__(self) -> int:
        return len(self._healthy_live) + len(self._degraded_live)


def _states(heap: LazyHeap[_Entry]) -> Iterator[WorkerState]:
    """The live workers of ``heap`` in order."""
    return (entry[-1] for entry in heap.walk())
