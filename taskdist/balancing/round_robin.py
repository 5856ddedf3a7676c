"""RoundRobin and smooth WeightedRoundRobin: deterministic rotation."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from taskdist._snapshot import Fields, encode_key, refuse
from taskdist.balancing._state import Snapshotted
from taskdist.balancing.base import Balancer, check_candidates, trusted
from taskdist.task import Task
from taskdist.workers.state import CandidateList
from taskdist.workers.tracker import WorkerState

__all__ = ["RoundRobin", "WeightedRoundRobin"]


class RoundRobin(Snapshotted, Balancer):
    """Each candidate in turn: the i-th call picks ``candidates[i mod n]``.

    Over any ``n`` consecutive calls with the same ``n`` candidates, each is
    picked exactly once. When the list changes between calls (a worker fills
    up or comes back) the rotation carries on from the same position modulo
    the new length; the exact-turns guarantee is for an unchanged list.
    Ignores weights and load. ``select`` is O(1).

    **Snapshot.** :meth:`snapshot` holds the position,
    ``{"kind": "RoundRobin", "version": 1, "position": int}``, and
    :meth:`load_snapshot` sets it on a new ``RoundRobin``, which goes on
    with the next turn. O(1).

    **Threads.** Not safe to share between threads (it keeps its position): drive it
    from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.

    >>> from taskdist import CapacityTracker, ManualClock, Task, Worker
    >>> tracker = CapacityTracker(ManualClock())
    >>> for name in "abc":
    ...     _ = tracker.add_worker(Worker(name, capacity=10))
    >>> rr, pool = RoundRobin(), tracker.candidates(Task("t"))
    >>> [rr.select(Task("t"), pool).id for _ in range(4)]
    ['a', 'b', 'c', 'a']
    """

    __slots__ = ("_position",)

    def __init__(self) -> None:
        self._position = 0

    @trusted
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """The next candidate in rotation, or ``None`` for an empty list. O(1)."""
        if type(candidates) is not CandidateList or not candidates._vouched:
            candidates = check_candidates(candidates)  # inlined for the tracker's own lists
        count = len(candidates)
        if not count:
            return None
        position = self._position % count
        self._position = position + 1
        return candidates[position]

    def _fields(self) -> dict[str, Any]:
        return {"position": self._position}

    def _read_fields(self, fields: Fields, where: str) -> Callable[[], None]:
        position = fields.integer("position", minimum=0)

        def load() -> None:
            self._position = position

        return load


class WeightedRoundRobin(Snapshotted, Balancer):
    """Smooth weighted round-robin (nginx's): picks in proportion to weight, evenly spread.

    Each call adds every candidate's weight to its running *current* value,
    picks the highest (ties: the earliest candidate) and takes the total
    weight ``W`` off the winner. With the same candidates throughout:

    - **exact proportions:** with integer weights, every ``W`` consecutive
      calls from the start pick each worker exactly ``weight`` times;
    - **smoothness:** after ``t`` calls no worker is ever ``(n-1)/n`` or more
      picks *ahead* of its share ``t * w / W`` (its current value never drops
      below ``-W (n-1)/n``), so a heavy worker's picks are interleaved with
      the others' rather than bunched (weights 5, 1, 1 give a a b a c a a).

    A worker that leaves the candidate list keeps its current value and
    resumes from it; ``on_worker_removed`` forgets it. ``select`` is O(n).

    **Snapshot.** :meth:`snapshot` holds every worker's current value,
    ``{"kind": "WeightedRoundRobin", "version": 1, "current": [[worker id,
    float], ...]}``, and :meth:`load_snapshot` sets them on a new
    ``WeightedRoundRobin``, so the picks go on as before. O(n).

    **Threads.** Not safe to share between threads (it keeps running weights): drive it
    from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.

    >>> from taskdist import CapacityTracker, ManualClock, Task, Worker
    >>> tracker = CapacityTracker(ManualClock())
    >>> for name, weight in (("a", 5), ("b", 1), ("c", 1)):
    ...     _ = tracker.add_worker(Worker(name, capacity=10, weight=weight))
    >>> wrr, pool = WeightedRoundRobin(), tracker.candidates(Task("t"))
    >>> "".join(wrr.select(Task("t"), pool).id for _ in range(7))
    'aabacaa'
    """

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[Hashable, float] = {}

    @trusted
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """The candidate whose running weight is highest, or ``None`` for an empty list. O(n)."""
        candidates = check_candidates(candidates)
        if not candidates:
            return None
        current = self._current
        total = 0.0
        best = candidates[0]
        best_value = float("-inf")
        for worker in candidates:
            weight = worker.effective_weight
            value = current.get(worker.id, 0.0) + weight
            current[worker.id] = value
            total += weight
            if value > best_value:
                best, best_value = worker, value
        current[best.id] = best_value - total
        return best

    def on_worker_removed(self, worker_id: Hashable) -> None:
        """Forget the worker's running weight. O(1)."""
        self._current.pop(worker_id, None)

    def _fields(self) -> dict[str, Any]:
        return {
            "current": [
                [encode_key(worker_id, "a worker id"), value]
                for worker_id, value in self._current.items()
            ]
        }

    def _read_fields(self, fields: Fields, where: str) -> Callable[[], None]:
        current: dict[Hashable, float] = {}
        for worker_id, value in fields.pairs("current"):
            if type(value) not in (int, float) or not math.isfinite(value):
                refuse(f"{where}.current", f"must hold finite numbers, got {value!r}")
            if worker_id in current:
                refuse(f"{where}.current", f"names worker {worker_id!r} twice")
            current[worker_id] = float(value)

        def load() -> None:
            self._current = current

        return load
