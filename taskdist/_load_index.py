"""LoadIndex: available workers sorted by load per unit of weight, kept up to date by the tracker.

It lets ``CapacityTracker.least_loaded`` find the least loaded candidate by
walking from the front instead of scanning every worker.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator

from sortedcontainers import SortedList

from taskdist.health import Health
from taskdist.worker_state import WorkerState

__all__ = ["LoadIndex"]

# (load_ratio / effective_weight, load_ratio, seq, state): LeastConnections' order,
# ties broken as its select() breaks them. seq is unique, so state is never compared.
_Entry = tuple[float, float, int, WorkerState]


class LoadIndex:
    """The workers that are not ``UNAVAILABLE``, ascending by ``(load_ratio /
    effective_weight, load_ratio, seq)``.

    The tracker calls :meth:`place` after anything that may change a worker's
    key or availability, and :meth:`discard` when it leaves. ``place`` and
    ``discard`` are O(log n); iteration yields the next worker in O(1)
    amortised.
    """

    __slots__ = ("_entries", "_keys")

    def __init__(self, states: Iterable[WorkerState] = ()) -> None:
        self._entries: SortedList[_Entry] = SortedList()
        self._keys: dict[Hashable, _Entry] = {}
        for state in states:
            self.place(state)

    def place(self, state: WorkerState) -> None:
        """File ``state`` under its current key, or take it out while it is unavailable."""
        old = self._keys.get(state.id)
        if state.health is Health.UNAVAILABLE:
            if old is not None:
                self._entries.remove(old)
                del self._keys[state.id]
            return
        ratio = state.load_ratio
        score = ratio / state.effective_weight
        if old is not None:
            if old[0] == score and old[1] == ratio and old[3] is state:
                return
            self._entries.remove(old)
        new = (score, ratio, state.seq, state)
        self._entries.add(new)
        self._keys[state.id] = new

    def discard(self, worker_id: Hashable) -> None:
        """Forget a worker (no-op if it is not filed)."""
        old = self._keys.pop(worker_id, None)
        if old is not None:
            self._entries.remove(old)

    def __iter__(self) -> Iterator[WorkerState]:
        for entry in self._entries:
            yield entry[3]

    def __len__(self) -> int:
        return len(self._keys)
