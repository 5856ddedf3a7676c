"""ConsistentHash: a ring of virtual nodes on mmh3, with bounded loads."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Sequence
from operator import attrgetter
from typing import Final

import mmh3

from taskdist._validate import check_hashable, check_id, check_int, check_number
from taskdist.balancing.base import Balancer
from taskdist.errors import DuplicateWorkerError, InvalidTypeError, UnknownWorkerError
from taskdist.task import Task
from taskdist.workers.tracker import WorkerState

__all__ = ["ConsistentHash", "key_hash"]

_id = attrgetter("id")
_in_flight = attrgetter("in_flight")
_weight = attrgetter("weight")
# Caps are ceil(x) of a float product; shaving this relative amount off x
# keeps float rounding from ever granting one task more than the exact cap.
_ROUNDING: Final = 1e-12
# Ring points are 32-bit: an unsigned C int holds one in 4 bytes.
_POINT_TYPECODE: Final = "I"
# At most 2**10 buckets in the directory of the ring (4 KB): bisecting an
# array makes an int per probe, so narrowing the range first pays.
_MAX_BUCKET_BITS: Final = 10


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


def _point_hashes(label: str, start: int, stop: int) -> list[int]:
    """Points ``start`` to ``stop - 1`` of the worker whose id has repr ``label``, sorted."""
    return sorted(int(mmh3.hash(f"{label}#{i}", signed=False)) for i in range(start, stop))


class ConsistentHash(Balancer):
    """Equal keys go to the same worker; a membership change moves only about 1/n of the keys.

    **The ring.** Each worker owns ``round(vnodes * weight)`` points (at
    least one) at ``mmh3("<repr(id)>#<i>")`` on a 32-bit ring; a task's key
    (``task.key``, or its ``id`` when it has none) belongs to the first
    point strictly after ``mmh3(key)``, clockwise (wrapping past the top).
    Equal points of different workers are ordered by ``repr(id)``, then by
    join order, so the ring does not depend on the order workers joined
    unless two ids have the same ``repr``. Adding a worker moves to it
    exactly the keys that fall on its new arcs (≈ 1/(n+1) of them, none
    between old workers); removing one moves only its own keys.
    :meth:`lookup` answers that question alone, without loads. The default
    640 points per unit of weight keep 5 equal workers within max/mean 1.10
    of their share (measured over 30 random name sets). A point costs 12
    bytes (a 4-byte slot in an ``array`` of points, an 8-byte reference in
    the parallel list of owners): about 8 KB per worker at 640 points,
    counting the containers' growth slack. A directory of at most 1024
    buckets (by the top bits of a hash) narrows each bisection.

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
    :meth:`lookup` is O(log V); adding or removing a worker with P points
    O(P log V) in Python plus O(V) of C-level copying (about 6 ms in a
    ring of 1000 workers of 640 points).

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
        "_bucket_shift",
        "_bucket_starts",
        "_labels",
        "_load_factor",
        "_owners",
        "_points",
        "_vnodes",
        "_weights",
    )

    def __init__(self, vnodes: int = 640, load_factor: float | None = 1.25) -> None:
        """
        Args:
            vnodes: ring points per unit of weight (>= 1). A share's relative
                spread is about ``1/sqrt(points)``: the default 640 keeps 5
                workers within max/mean 1.10; with 160 (uhashring's count)
                they land at 1.09 on average over random names, up to 1.17.
                Memory and the cost of a membership change grow linearly with it.
            load_factor: ``c`` >= 1 of the bounded-loads cap, or ``None`` for plain hashing.
        """
        self._vnodes = check_int(vnodes, "vnodes", minimum=1)
        self._load_factor = (
            None if load_factor is None else check_number(load_factor, "load_factor", minimum=1.0)
        )
        # worker id -> the weight its points were made for; the members, in join order.
        self._weights: dict[Hashable, float] = {}
        # worker id -> repr of the id it joined with: its points are hashed from it
        # (an equal id with another repr, such as 1.0 for 1, finds the same points).
        self._labels: dict[Hashable, str] = {}
        # The ring, sorted by (point, repr(owner), join order): its points, 4 bytes each,
        # and their owners' ids in a parallel list (a shared reference, 8 bytes each).
        self._points: array[int]
        self._owners: list[Hashable]
        # Its directory: the points in [b << shift, (b + 1) << shift) sit at
        # indexes bucket_starts[b] to bucket_starts[b + 1] - 1.
        self._bucket_shift: int
        self._bucket_starts: array[int]
        self._store(array(_POINT_TYPECODE), [])

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
        """Put a worker on the ring with ``round(vnodes * weight)`` points (>= 1).

        O(P log V) for its P points, plus O(V) of C-level copying.

        Raises:
            DuplicateWorkerError: it is already on the ring.
            InvalidArgumentError, InvalidTypeError: a bad id or weight (<= 0, NaN).
        """
        check_id(worker_id, "worker_id")
        if worker_id in self._weights:
            raise DuplicateWorkerError(f"worker {worker_id!r} is already on the ring")
        weight = check_number(weight, "weight", positive=True)
        self._weights[worker_id] = weight
        self._labels[worker_id] = label = repr(worker_id)
        self._insert(worker_id, label, _point_hashes(label, 0, self._point_count(weight)))

    def remove(self, worker_id: Hashable) -> None:
        """Take a worker's points off the ring.

        O(P log V) for its P points, plus O(V) of C-level copying.

        Raises:
            UnknownWorkerError: it is not on the ring.
        """
        try:
            weight = self._weights.pop(worker_id)
        except TypeError:
            raise InvalidTypeError(f"worker ids are hashable, got {worker_id!r}") from None
        except KeyError:
            raise UnknownWorkerError(f"worker {worker_id!r} is not on the ring") from None
        label = self._labels.pop(worker_id)
        self._delete(worker_id, _point_hashes(label, 0, self._point_count(weight)))

    def on_worker_added(self, worker: WorkerState) -> None:
        """Put the worker on the ring (weighted by ``worker.weight``) unless it is there."""
        if worker.id not in self._weights:
            self.add(worker.id, worker.weight)

    def on_worker_removed(self, worker_id: Hashable) -> None:
        """Take the worker off the ring if it is there."""
        if worker_id in self._weights:
            self.remove(worker_id)

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, worker_id: object) -> bool:
        try:
            return worker_id in self._weights
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
        # _successor, inlined: a method call would add a quarter to a lookup.
        position = key_hash(key)
        starts = self._bucket_starts
        bucket = position >> self._bucket_shift
        index = bisect_right(points, position, starts[bucket], starts[bucket + 1])
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
        if not by_id.keys() <= self._weights.keys():
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
        owners = self._owners
        size = len(owners)
        start = self._successor(position)
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
            f"workers={len(self._weights)})"
        )

    def _reweighed(self, worker: WorkerState) -> bool:
        """Re-point a worker whose weight changed since it joined; whether its points changed.

        O(1) if its weight did not change. Its first ``min(old, new)`` points
        stay where they are (the same hashes), so only keys on the points
        added or dropped move.
        """
        worker_id, weight = worker.id, worker.weight
        if weight == self._weights[worker_id]:
            return False
        old, new = self._point_count(self._weights[worker_id]), self._point_count(weight)
        self._weights[worker_id] = weight
        label = self._labels[worker_id]
        if new > old:
            self._insert(worker_id, label, _point_hashes(label, old, new))
        elif new < old:
            self._delete(worker_id, _point_hashes(label, new, old))
        return new != old

    def _point_count(self, weight: float) -> int:
        """How many points a worker of this weight owns."""
        return max(1, round(self._vnodes * weight))

    def _insert(self, worker_id: Hashable, label: str, points: list[int]) -> None:
        """Merge a worker's new points (sorted) into the ring, in place of a full re-sort.

        Each point is placed by bisection; the runs of the old ring between
        them are copied as slices (memcpy), so a merge costs O(P log V)
        steps in Python and O(V) in C.
        """
        old_points, old_owners, labels = self._points, self._owners, self._labels
        new_points: array[int] = array(_POINT_TYPECODE)
        new_owners: list[Hashable] = []
        start = 0
        for point in points:
            index = bisect_right(old_points, point, start)
            # Equal points (rare) are ordered by repr(owner), then join order:
            # step back over those whose owner's repr sorts after ours.
            while (
                index > start
                and old_points[index - 1] == point
                and labels[old_owners[index - 1]] > label
            ):
                index -= 1
            new_points += old_points[start:index]
            new_points.append(point)
            new_owners += old_owners[start:index]
            new_owners.append(worker_id)
            start = index
        new_points += old_points[start:]
        new_owners += old_owners[start:]
        self._store(new_points, new_owners)

    def _delete(self, worker_id: Hashable, points: list[int]) -> None:
        """Take the given points (sorted) of one worker off the ring: O(P log V) + O(V) in C."""
        old_points, old_owners = self._points, self._owners
        new_points: array[int] = array(_POINT_TYPECODE)
        new_owners: list[Hashable] = []
        start = 0
        for point in points:
            index = bisect_left(old_points, point, start)
            while old_owners[index] != worker_id:  # an equal point of another worker
                index += 1
            new_points += old_points[start:index]
            new_owners += old_owners[start:index]
            start = index + 1
        new_points += old_points[start:]
        new_owners += old_owners[start:]
        self._store(new_points, new_owners)

    def _store(self, points: array[int], owners: list[Hashable]) -> None:
        """Make ``points`` (sorted) and ``owners`` the ring, and rebuild its directory.

        O(B log V) for B = min(1024, 2**bit_length(V)) buckets.
        """
        bits = min(_MAX_BUCKET_BITS, len(points).bit_length())
        shift = 32 - bits
        starts = array(_POINT_TYPECODE, [bisect_left(points, b << shift) for b in range(1 << bits)])
        starts.append(len(points))
        self._points, self._owners = points, owners
        self._bucket_shift, self._bucket_starts = shift, starts

    def _successor(self, position: int) -> int:
        """The index of the first point strictly after ``position``, clockwise. O(log V).

        The ring must not be empty. Only the points of ``position``'s bucket are bisected.
        """
        points, starts = self._points, self._bucket_starts
        bucket = position >> self._bucket_shift
        index = bisect_right(points, position, starts[bucket], starts[bucket + 1])
        return index if index < len(points) else 0
