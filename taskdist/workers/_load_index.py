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
_DEGRADED: Final = Health.DEGRADED

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

    __slots__ = ("_degraded", "_filed", "_healthy", "_key", "_live", "_separate")

    def __init__(
        self, key: LoadKey, states: Iterable[WorkerState], *, separate_degraded: bool
    ) -> None:
        self._key = key
        # Each heap's live entries by worker: an entry is live while it is its worker's.
        healthy: dict[WorkerState, _Entry] = {}
        degraded: dict[WorkerState, _Entry] = {}
        self._healthy: LazyHeap[_Entry] = LazyHeap(healthy, at=-1)
        self._degraded: LazyHeap[_Entry] = LazyHeap(degraded, at=-1)
        self._live = {self._healthy: healthy, self._degraded: degraded}
        self._separate = separate_degraded
        # worker -> (the heap it is filed in, its key then); its entry is in that heap's live
        self._filed: dict[WorkerState, tuple[LazyHeap[_Entry], Any]] = {}
        for state in states:
            self.place(state)

    @property
    def key(self) -> LoadKey:
        """The order the index keeps."""
        return self._key

    def place(self, state: WorkerState) -> None:
        """File ``state`` under its current key, or take it out while it is unavailable."""
        health = state.health
        old = self._filed.get(state)
        if health is _UNAVAILABLE:
            if old is not None:
                self.discard(state)
            return
        target = self._degraded if self._separate and health is _DEGRADED else self._healthy
        key = self._key(state)
        filed = None
        if old is not None:
            filed, filed_key = old
            if filed is target and filed_key == key:
                return
            if filed is not target:
                del self._live[filed][state]
        entry = (*key, state.seq, state) if type(key) is tuple else (key, state.seq, state)
        self._live[target][state] = entry  # an old entry in the same heap is dead from here on
        target.push(entry)
        self._filed[state] = (target, key)
        if filed is not None:
            filed.compact()  # it holds the old entry, dead

    def discard(self, state: WorkerState) -> None:
        """Forget a worker (no-op if it is not filed)."""
        old = self._filed.pop(state, None)
        if old is not None:
            heap = old[0]
            del self._live[heap][state]
            heap.compact()

    def healthy(self) -> Iterator[WorkerState]:
        """The healthy workers (and the degraded ones, unless kept apart), lowest key first."""
        return _states(self._healthy)

    def degraded(self) -> Iterator[WorkerState]:
        """The degraded workers kept apart, lowest key first (none unless kept apart)."""
        return _states(self._degraded)

    def __len__(self) -> int:
        return len(self._filed)


def _states(heap: LazyHeap[_Entry]) -> Iterator[WorkerState]:
    """The live workers of ``heap`` in order."""
    return (entry[-1] for entry in heap.walk())
