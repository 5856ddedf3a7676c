"""ConsistentHash: a ring of virtual nodes on mmh3, with bounded loads."""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Hashable, Sequence
from operator import attrgetter
from typing import Final

import mmh3

from taskdist._validate import check_hashable, check_id, check_int, check_number
from taskdist.balancing.base import Balancer
from taskdist.capacity import WorkerState
from taskdist.errors import DuplicateWorkerError, InvalidTypeError, UnknownWorkerError
from taskdist.task import Task

__all__ = ["ConsistentHash", "key_hash"]

_id = attrgetter("id")
_in_flight = attrgetter("in_flight")
_weight = attrgetter("weight")
# Caps are ceil(x) of a float product; shaving this relative amount off x
# keeps float rounding from ever granting one task more than the exact cap.
_ROUNDING: Final = 1e-12


def key_hash(key: Hashable) -> int:
    """The ring position of ``key``: 32-bit unsigned mmh3 of a str or bytes, else of its repr().

    Keys of other types must be hashable and should have a stable ``repr``
    (ints, tuples of strs...): one that shows a memory address maps
    consistently only within a run. O(len(key)).

    >>> key_hash("user-7") == key_hash("user-7")
    True
    """
    if isinstance(key, (str, bytes)):
        return int(mmh3.hash(key, signed=False))
    check_hashable(key, "key")
    return int(mmh3.hash(repr(key), signed=False))


class ConsistentHash(Balancer):
    """Equal keys go to the same worker; a membership change moves only about 1/n of the keys.

    **The ring.** Each worker owns ``round(vnodes * weight)`` points (at
    least one) at ``mmh3("<repr(id)>#<i>")`` on a 32-bit ring; a task's key
    (``task.key``, or its ``id`` when it has none) belongs to the first
    point at or after ``mmh3(key)``, clockwise. Adding a worker moves to it
    exactly the keys that fall on its new arcs (≈ 1/(n+1) of them, none
    between old workers); removing one moves only its own keys.
    :meth:`lookup` answers that question alone, without loads.

    **Bounded loads** (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing
    with Bounded Loads", 2018). With ``load_factor = c`` (>= 1) a candidate
    is skipped, clockwise, while it is at its cap::

        cap(w) = ceil(c * (L + 1) * weight(w) / W)

    where ``L`` is the sum of ``in_flight`` over the candidates passed to
    :meth:`select` and ``W`` the sum of their weights: ``(L + 1) / n`` is the
    mean load counting the task being placed, as in the paper. So the
    chosen worker never ends above ``ceil(c * mean)`` (its weighted share),
    and some candidate is always under its cap (the caps sum to more than
    ``L``). ``load_factor=None`` turns the bound off.

    **Membership** follows ``on_worker_added`` / ``on_worker_removed``; a
    candidate the ring has not seen is added when first met, so the ring
    also works with no hooks called (a worker removed without the hook just
    keeps its points, which are skipped while it is not a candidate). A
    worker that is down or full is skipped too, and gets its keys back
    when it returns. A candidate whose ``weight`` changed since it joined
    (``update_worker``) is re-pointed when ``select`` next meets it (as the
    key's owner or on the walk past full workers): it gains or loses points
    and only the keys on those points move.

    **Complexity.** ``select`` is O(n) in C over the candidates (a map from
    id to worker, and the two sums when the bound is checked) plus O(log V)
    for the ring, V = total points, and the walk past skipped workers;
    :meth:`lookup` is O(log V); adding or removing a worker O(V log V).

    >>> from taskdist import CapacityTracker, ManualClock, Task, Worker
    >>> tracker = CapacityTracker(ManualClock())
    >>> for name in ("a", "b", "c"):
    ...     _ = tracker.add_worker(Worker(name, capacity=100))
    >>> ring = ConsistentHash()
    >>> pool = tracker.candidates(Task("t"))
    >>> first = ring.select(Task("t1", key="user-7"), pool).id
    >>> ring.select(Task("t2", key="user-7"), pool).id == first == ring.lookup("user-7")
    True
    """

    __slots__ = (
        "_entries",
        "_joined",
        "_load_factor",
        "_members",
        "_owners",
        "_points",
        "_vnodes",
        "_weights",
    )

    def __init__(self, vnodes: int = 160, load_factor: float | None = 1.25) -> None:
        """
        Args:
            vnodes: ring points per unit of weight (>= 1). A share's relative
                spread is about ``1/sqrt(points)``: 640 keeps 5 workers within
                max/mean 1.10, 160 (as uhashring) within about 1.17.
            load_factor: ``c`` >= 1 of the bounded-loads cap, or ``None`` for plain hashing.
        """
        self._vnodes = check_int(vnodes, "vnodes", minimum=1)
        self._load_factor = (
            None if load_factor is None else check_number(load_factor, "load_factor", minimum=1.0)
        )
        # worker id -> its join number (breaks ties between identical ring points).
        self._members: dict[Hashable, int] = {}
        # worker id -> the weight its points were made for.
        self._weights: dict[Hashable, float] = {}
        # (point, label, join number, worker id), sorted; points/owners are its columns.
        self._entries: list[tuple[int, str, int, Hashable]] = []
        self._points: list[int] = []
        self._owners: list[Hashable] = []
        self._joined = itertools.count()

    @property
    def vnodes(self) -> int:
        """Ring points per unit of weight."""
        return self._vnodes

    @property
    def load_factor(self) -> float | None:
        """``c`` of the bounded-loads cap, or ``None``."""
        return self._load_factor

    # -- membership -------------------------------------------------------

    def add(self, worker_id: Hashable, weight: float = 1.0) -> None:
        """Put a worker on the ring with ``round(vnodes * weight)`` points (>= 1). O(V log V).

        Raises:
            DuplicateWorkerError: it is already on the ring.
            InvalidArgumentError, InvalidTypeError: a bad id or weight (<= 0, NaN).
        """
        check_id(worker_id, "worker_id")
        if worker_id in self._members:
            raise DuplicateWorkerError(f"worker {worker_id!r} is already on the ring")
        weight = check_number(weight, "weight", positive=True)
        label = repr(worker_id)
        joined = next(self._joined)
        self._members[worker_id] = joined
        self._weights[worker_id] = weight
        count = max(1, round(self._vnodes * weight))
        self._entries.extend(
            (int(mmh3.hash(f"{label}#{i}", signed=False)), label, joined, worker_id)
            for i in range(count)
        )
        self._entries.sort()  # two sorted runs: Timsort merges them in O(V)
        self._reindex()

    def remove(self, worker_id: Hashable) -> None:
        """Take a worker's points off the ring. O(V).

        Raises:
            UnknownWorkerError: it is not on the ring.
        """
        try:
            joined = self._members.pop(worker_id)
        except TypeError:
            raise InvalidTypeError(f"worker ids are hashable, got {worker_id!r}") from None
        except KeyError:
            raise UnknownWorkerError(f"worker {worker_id!r} is not on the ring") from None
        del self._weights[worker_id]
        self._entries = [entry for entry in self._entries if entry[2] != joined]
        self._reindex()

    def on_worker_added(self, worker: WorkerState) -> None:
        """Put the worker on the ring (weighted by ``worker.weight``) unless it is there."""
        if worker.id not in self._members:
            self.add(worker.id, worker.weight)

    def on_worker_removed(self, worker_id: Hashable) -> None:
        """Take the worker off the ring if it is there."""
        if worker_id in self._members:
            self.remove(worker_id)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, worker_id: object) -> bool:
        try:
            return worker_id in self._members
        except TypeError:
            return False

    # -- choosing ---------------------------------------------------------

    def lookup(self, key: Hashable) -> Hashable | None:
        """The id of the worker owning ``key`` on the ring, ignoring load; ``None`` if empty.

        O(log V).
        """
        points = self._points
        if not points:
            return None
        index = bisect_right(points, key_hash(key))
        return self._owners[index if index < len(points) else 0]

    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """The first candidate clockwise from the task's key that is under its cap.

        ``None`` only for an empty list.
        """
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        by_id: dict[Hashable, WorkerState] = dict(
            zip(map(_id, candidates), candidates, strict=True)
        )
        if not by_id.keys() <= self._members.keys():
            for worker in candidates:
                self.on_worker_added(worker)
        position = key_hash(task.id if task.key is None else task.key)
        while True:  # again only after re-pointing a reweighed worker: once per worker at most
            chosen = self._walk(position, by_id, candidates)
            if chosen is not None:
                return chosen

    def _walk(
        self, position: int, by_id: dict[Hashable, WorkerState], candidates: Sequence[WorkerState]
    ) -> WorkerState | None:
        """The first candidate under its cap clockwise from ``position``; ``None`` if the
        ring had to be re-pointed for a changed weight on the way (walk again)."""
        points = self._points
        owners = self._owners
        size = len(points)
        start = bisect_right(points, position)
        if start == size:
            start = 0
        load_factor = self._load_factor
        preferred = by_id.get(owners[start])
        if preferred is not None and self._reweighed(preferred):
            return None
        # The cheap path: an idle worker is always under its cap (every cap is >= 1).
        if preferred is not None and (load_factor is None or preferred.in_flight == 0):
            return preferred
        scale = 0.0
        if load_factor is not None:
            total = sum(map(_in_flight, candidates)) + 1
            scale = load_factor * total / sum(map(_weight, candidates)) * (1.0 - _ROUNDING)
        skipped: set[Hashable] = set()
        index = start
        for _ in range(size):
            owner = owners[index]
            if owner not in skipped:
                candidate = by_id.get(owner)
                if candidate is not None:
                    if self._reweighed(candidate):
                        return None
                    if load_factor is None or candidate.in_flight < math.ceil(
                        scale * candidate.weight
                    ):
                        return candidate
                skipped.add(owner)
            index = index + 1 if index + 1 < size else 0
        # Unreachable: every candidate is on the ring and one is under its cap.
        return min(candidates, key=_in_flight)  # pragma: no cover

    def __repr__(self) -> str:
        return (
            f"ConsistentHash(vnodes={self._vnodes}, load_factor={self._load_factor!r}, "
            f"workers={len(self._members)})"
        )

    def _reweighed(self, worker: WorkerState) -> bool:
        """Re-point a worker whose weight changed since it joined; whether it was. O(1) if not.

        Its first ``min(old, new)`` points are the same hashes, so only keys on
        the points added or dropped move.
        """
        if worker.weight == self._weights[worker.id]:
            return False
        self.remove(worker.id)
        self.add(worker.id, worker.weight)
        return True

    def _reindex(self) -> None:
        self._points = [entry[0] for entry in self._entries]
        self._owners = [entry[3] for entry in self._entries]
