"""LoadIndex: the available workers sorted by a key a balancing strategy gives.

It lets :meth:`CapacityTracker.lowest <taskdist.CapacityTracker.lowest>`
find the candidate with the lowest key by walking from the front instead of
scanning every worker. The index knows nothing of what the key means:
``LeastConnections`` gives "load per unit of weight", another strategy
may give another order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sortedcontainers import SortedList

from taskdist.workers.health import Health
from taskdist.workers.state import WorkerState

__all__ = ["PURE_KEYS", "LoadIndex", "LoadKey"]

LoadKey = Callable[[WorkerState], Any]
"""A worker's place in an order (lowest first): a float or a tuple of floats, never NaN.

It must depend only on the worker's view (its load, weights, capacity, health,
averages): the tracker refiles a worker after each change it makes to it."""

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
    (O(1) when nothing changed); iteration yields each next worker in O(1)
    amortised.
    """

    __slots__ = ("_degraded", "_filed", "_healthy", "_key", "_separate")

    def __init__(
        self, key: LoadKey, states: Iterable[WorkerState], *, separate_degraded: bool
    ) -> None:
        self._key = key
        self._healthy: SortedList[_Entry] = SortedList()
        self._degraded: SortedList[_Entry] = SortedList()
        self._separate = separate_degraded
        # worker -> (its entry, the list it is filed in, its key then)
        self._filed: dict[WorkerState, tuple[_Entry, SortedList[_Entry], Any]] = {}
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
        if health is Health.UNAVAILABLE:
            if old is not None:
                old[1].remove(old[0])
                del self._filed[state]
            return
        target = self._degraded if self._separate and health is Health.DEGRADED else self._healthy
        key = self._key(state)
        if old is not None:
            entry, filed, filed_key = old
            if filed is target and filed_key == key:
                return
            filed.remove(entry)
        new = (*key, state.seq, state) if type(key) is tuple else (key, state.seq, state)
        target.add(new)
        self._filed[state] = (new, target, key)

    def discard(self, state: WorkerState) -> None:
        """Forget a worker (no-op if it is not filed)."""
        old = self._filed.pop(state, None)
        if old is not None:
            old[1].remove(old[0])

    def healthy(self) -> Iterator[WorkerState]:
        """The healthy workers (and the degraded ones, unless kept apart), lowest key first."""
        for entry in self._healthy:
            yield entry[-1]

    def degraded(self) -> Iterator[WorkerState]:
        """The degraded workers kept apart, lowest key first (none unless kept apart)."""
        for entry in self._degraded:
            yield entry[-1]

    def __len__(self) -> int:
        return len(self._filed)
