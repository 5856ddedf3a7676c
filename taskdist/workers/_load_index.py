"""LoadIndex: available workers sorted by load per unit of weight, kept up to date by the tracker.

It lets ``CapacityTracker.least_loaded`` find the least loaded candidate by
walking from the front instead of scanning every worker.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator

from sortedcontainers import SortedList

from taskdist.workers.health import Health
from taskdist.workers.state import WorkerState

__all__ = ["LoadIndex"]

# (load_ratio / effective_weight, load_ratio, seq, state): LeastConnections' order,
# ties broken as its select() breaks them. seq is unique, so state is never compared.
_Entry = tuple[float, float, int, WorkerState]


class LoadIndex:
    """The workers that are not ``UNAVAILABLE``, ascending by ``(load_ratio /
    effective_weight, load_ratio, seq)``: :meth:`healthy` and :meth:`degraded`.

    With ``separate_degraded`` the ``DEGRADED`` workers are filed apart, so a
    walk over the healthy ones never passes over them (drained of new work,
    they would pile up at the front); otherwise :meth:`healthy` holds both.
    The tracker calls :meth:`place` after anything that may change a
    worker's key, health or availability, and :meth:`discard` when it
    leaves. ``place`` and ``discard`` are O(log n) (O(1) when nothing
    changed); iteration yields each next worker in O(1) amortised.
    """

    __slots__ = ("_degraded", "_healthy", "_keys", "_separate")

    def __init__(self, states: Iterable[WorkerState], *, separate_degraded: bool) -> None:
        self._healthy: SortedList[_Entry] = SortedList()
        self._degraded: SortedList[_Entry] = SortedList()
        self._separate = separate_degraded
        # worker id -> (its entry, the list it is filed in)
        self._keys: dict[Hashable, tuple[_Entry, SortedList[_Entry]]] = {}
        for state in states:
            self.place(state)

    def place(self, state: WorkerState) -> None:
        """File ``state`` under its current key, or take it out while it is unavailable."""
        health = state.health
        old = self._keys.get(state.id)
        if health is Health.UNAVAILABLE:
            if old is not None:
                old[1].remove(old[0])
                del self._keys[state.id]
            return
        target = self._degraded if self._separate and health is Health.DEGRADED else self._healthy
        ratio = state.load_ratio
        score = ratio / state.effective_weight
        if old is not None:
            entry, filed = old
            if entry[0] == score and entry[1] == ratio and filed is target and entry[3] is state:
                return
            filed.remove(entry)
        new = (score, ratio, state.seq, state)
        target.add(new)
        self._keys[state.id] = (new, target)

    def discard(self, worker_id: Hashable) -> None:
        """Forget a worker (no-op if it is not filed)."""
        old = self._keys.pop(worker_id, None)
        if old is not None:
            old[1].remove(old[0])

    def healthy(self) -> Iterator[WorkerState]:
        """The healthy workers (and the degraded ones, unless kept apart), least loaded first."""
        for entry in self._healthy:
            yield entry[3]

    def degraded(self) -> Iterator[WorkerState]:
        """The degraded workers kept apart, least loaded first (none unless kept apart)."""
        for entry in self._degraded:
            yield entry[3]

    def __len__(self) -> int:
        return len(self._keys)
