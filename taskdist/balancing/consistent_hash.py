"""ConsistentHash: a ring of virtual nodes on mmh3, with bounded loads."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Hashable, Iterable, Sequence
from functools import partial
from itertools import repeat
from operator import add, attrgetter
from typing import Final

import mmh3

from taskdist._validate import check_hashable, check_id, check_int, check_number
from taskdist.balancing.base import Balancer, check_candidates, checked_select, trusted
from taskdist.errors import (
    DuplicateWorkerError,
    InvalidArgumentError,
    InvalidTypeError,
    UnknownWorkerError,
)
from taskdist.task import Task
from taskdist.workers._ranges import check_weight
from taskdist.workers.state import CandidateList
from taskdist.workers.tracker import CapacityTracker, WorkerFilter, WorkerState

__all__ = ["ConsistentHash", "key_hash"]

_id = attrgetter("id")
_in_flight = attrgetter("in_flight")
_weight = attrgetter("weight")
# Caps are ceil(x) of a float product; shaving this relative amount off x
# keeps float rounding from ever granting one task more than the exact cap.
_ROUNDING: Final = 1e-12
# A ring point is 32-bit; the ring stores each as one unsigned 64-bit code,
# ``point << 32 | slot`` (the owner's slot in the member list), so the point a
# lookup bisects and its owner are read from the same cache line.
_CODE_TYPECODE: Final = "Q"
_SLOT_MASK: Final = (1 << 32) - 1
# The first point strictly after a position p is the first code >= (p + 1) << 32
# (bisect_left): one shift of a small int, where p << 32 | mask takes twice as long.
# Indexes into the ring (the directory's entries), 4 bytes each.
_INDEX_TYPECODE: Final = "I"
# The directory of the ring has 2**10 buckets, or about one per 16 points in a
# larger ring (4 to 32 between resizes): bisecting an array makes an int per
# probe, and in a large ring each probe is a cache miss, so a bucket's points
# should share a cache line or two.
_MIN_BUCKET_BITS: Final = 10
_POINTS_PER_BUCKET_BITS: Final = 4
# The most points one worker owns (and the most vnodes): a heavy weight costs at
# most 64 Ki points, 512 KB and a few tens of ms to add, never millions.
MAX_POINTS: Final = 1 << 16
# choose() walks the ring past at most this many distinct workers that cannot take
# the task (or are at their cap) before it lists the candidates instead.
_WALK_BUDGET: Final = 32
_UNBOUNDED: Final = float("inf")


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


def _directory_bits(size: int) -> int:
    """How many top bits of a hash pick a bucket in a ring of ``size`` points:
    2**10 buckets, or one per 16 points once that is more (never a shift below 0)."""
    return min(32, max(_MIN_BUCKET_BITS, size.bit_length() - _POINTS_PER_BUCKET_BITS))


def _directory(codes: array[int], shift: int) -> array[int]:
    """The ring's directory, built afresh: entry ``b`` is the index of the first code
    whose point is ``>= b << shift`` (the last entry is ``len(codes)``).

    O(B log V) for B buckets, the bisections run from C through ``map``."""
    bounds = range(0, 1 << 64, 1 << (shift + 32))
    starts = array(_INDEX_TYPECODE, map(partial(bisect_left, codes), bounds))
    starts.append(len(codes))
    return starts


def _moved_directory(starts: array[int], shift: int, points: list[int], step: int) -> array[int]:
    """``starts`` after ``points`` (sorted) were put on the ring (``step`` 1) or taken
    off it (-1): every entry past a point's bucket moves by ``step``.

    O(B + P) for B buckets and P points, the additions run from C through
    ``map``: in a large ring much cheaper than bisecting again per bucket."""
    moved = array(_INDEX_TYPECODE)
    done = 0
    for count, point in enumerate(points):
        end = (point >> shift) + 1
        if end > done:
            run = starts[done:end]
            moved += array(_INDEX_TYPECODE, map(add, run, repeat(count * step))) if count else run
            done = end
    moved += array(_INDEX_TYPECODE, map(add, starts[done:], repeat(len(points) * step)))
    return moved


class ConsistentHash(Balancer):
    """Equal keys go to the same worker; a membership change moves only about 1/n of the keys.

    **The ring.** Each worker owns ``min(round(vnodes * weight), 65536)``
    points (at least one) at ``mmh3("<repr(id)>#<i>")`` on a 32-bit ring; a
    task's key (``task.key``, or its ``id`` when it has none) belongs to the
    first point strictly after ``mmh3(key)``, clockwise (wrapping past the
    top). Equal points of different workers are ordered by ``repr(id)``,
    then by join order, so the ring does not depend on the order workers
    joined unless two ids have the same ``repr``. Adding a worker moves to
    it exactly the keys that fall on its new arcs (≈ 1/(n+1) of them, none
    between old workers); removing one moves only its own keys.
    :meth:`lookup` answers that question alone, without loads. The default
    640 points per unit of weight keep 5 equal workers within max/mean 1.10
    of their share (measured over 30 random name sets). A point costs 8
    bytes: one unsigned 64-bit code in an ``array``, ``point << 32 | slot``,
    where the slot is its owner's place in the ring's member list, so the
    point a lookup lands on and its owner share a cache line; about 5.6 KB
    per worker at 640 points, with the directory. The directory, 1 024
    buckets or about one per 16 points in a larger ring (by the top bits of
    a hash, 4 bytes a bucket), narrows each bisection to a cache line or
    two, so a lookup stays near O(1) memory accesses however large the ring.

    **The cap on points.** No worker owns more than ``MAX_POINTS`` (65 536)
    points, so a huge weight costs at most 512 KB and tens of milliseconds
    to add, not millions of points: shares grow with weight up to ``65536 /
    vnodes`` (102.4 at the default), and all heavier workers own the cap.

    **Bounded loads** (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing
    with Bounded Loads", 2018). With ``load_factor = c`` (>= 1) a worker is
    skipped, clockwise, while it is at its cap::

        cap(w) = ceil(c * (L + 1) * weight(w) / W)

    where, for :meth:`select`, ``L`` is the sum of ``in_flight`` over the
    candidates it is given and ``W`` the sum of their weights; for
    :meth:`choose`, over the tracker's workers that are not
    ``UNAVAILABLE`` (the paper's bins: every worker, whether or not this
    task could use it; kept as counters by the tracker). ``(L + 1) / n`` is
    the mean load counting the task being placed, as in the paper. So the
    chosen worker never ends above ``ceil(c * mean)`` (its weighted share),
    and some worker is always under its cap (the caps sum to more than
    ``L``). ``load_factor=None`` turns the bound off.

    **Membership.** ``select`` follows ``on_worker_added`` /
    ``on_worker_removed``, and adds a candidate the ring has not seen when
    it first meets one, so the ring also works with no hooks called (a
    worker removed without the hook just keeps its points, which are
    skipped while it is not a candidate). ``choose`` keeps the ring equal to
    its tracker's workers: when the tracker's ``membership_version`` moved,
    it adds the workers the ring lacks and removes those the tracker no
    longer has. A worker that is down or full is skipped, and gets its keys
    back when it returns. A worker whose ``weight`` changed since it joined
    (``update_worker``) is re-pointed when ``select`` or ``choose`` next
    meets it (as the key's owner or on the walk past full workers): it
    gains or loses points and only the keys on those points move.

    **Complexity.** :meth:`select` is O(log V) for the ring (V = total
    points), plus the walk past skipped workers, plus O(n) in C over the
    candidates when the preferred worker is busy (the two sums of the
    bound) or when the list differs from the one it was last given (an id
    map, reused while the same list comes back). :meth:`choose` is O(log V
    + r) when the key's owner can take the task, and O(k r) more for the k
    workers passed over on the walk, at most 32 of them; after those it
    lists the candidates, O(n r). :meth:`lookup` is O(log V); adding or
    removing a worker with P points O(P log V) in Python plus O(V) of
    C-level copying, the directory moving with them (about 7 ms in a ring
    of 1 000 workers of 640 points, 55 ms in one of 10 000).

    **Range.** ``vnodes`` from 1 to 65 536; weights from 1e-9 to 1e9;
    ``load_factor`` any finite number >= 1 (beyond the number of workers it
    no longer bounds anything). Not safe to share between threads (see
    :class:`~taskdist.balancing.base.Balancer`).

    >>> from taskdist import CapacityTracker, ManualClock, Task, Worker
    >>> tracker = CapacityTracker(ManualClock())
    >>> for name in ("a", "b", "c"):
    ...     _ = tracker.add_worker(Worker(name, capacity=100))
    >>> ring = ConsistentHash()
    >>> pool = tracker.candidates(Task("t"))
    >>> first = ring.select(Task("t1", key="user-7"), pool).id
    >>> ring.select(Task("t2", key="user-7"), pool).id == first == ring.lookup("user-7")
    True
    >>> ring.choose(Task("t3", key="user-7"), tracker).id == first
    True
    """

    __slots__ = (
        "_bucket_shift",
        "_bucket_starts",
        "_cap_factor",
        "_codes",
        "_free",
        "_labels",
        "_last_by_id",
        "_last_list",
        "_last_version",
        "_load_factor",
        "_members",
        "_own_select",
        "_slot_weights",
        "_slots",
        "_states",
        "_synced",
        "_synced_version",
        "_version",
        "_views",
        "_vnodes",
    )

    def __init__(self, vnodes: int = 640, load_factor: float | None = 1.25) -> None:
        """
        Args:
            vnodes: ring points per unit of weight, 1 to 65 536. A share's
                relative spread is about ``1/sqrt(points)``: the default 640
                keeps 5 workers within max/mean 1.10; with 160 (uhashring's
                count) they land at 1.09 on average over random names, up to
                1.17. Memory and the cost of a membership change grow
                linearly with it.
            load_factor: ``c`` >= 1 (finite) of the bounded-loads cap, or
                ``None`` for plain hashing.

        Raises:
            InvalidTypeError: ``vnodes`` not an int, ``load_factor`` not a number.
            InvalidArgumentError: either out of its range.
        """
        self._vnodes = check_int(vnodes, "vnodes", minimum=1)
        if self._vnodes > MAX_POINTS:
            raise InvalidArgumentError(
                f"vnodes must be at most {MAX_POINTS} (the most points a worker owns), "
                f"got {vnodes!r}"
            )
        factor = (
            None if load_factor is None else check_number(load_factor, "load_factor", minimum=1.0)
        )
        self._load_factor = factor
        # c, shaved by a hair: float rounding must never grant one task more than the
        # exact cap (inf without a bound, so every worker is under it).
        self._cap_factor = _UNBOUNDED if factor is None else factor * (1.0 - _ROUNDING)
        # worker id -> its slot: the members, in join order. A slot is a worker's
        # place in the lists below while it is on the ring (a leaver's is reused).
        self._slots: dict[Hashable, int] = {}
        self._members: list[Hashable | None] = []  # slot -> id (None: a free slot)
        self._slot_weights: list[float] = []  # slot -> the weight its points were made for
        self._free: list[int] = []  # the free slots
        # worker id -> repr of the id it joined with: its points are hashed from it
        # (an equal id with another repr, such as 1.0 for 1, finds the same points).
        self._labels: dict[Hashable, str] = {}
        # The ring, sorted by (point, repr(owner), join order): each point as one
        # 8-byte code ``point << 32 | slot`` of its owner.
        self._codes: array[int] = array(_CODE_TYPECODE)
        # Its directory: the points in [b << shift, (b + 1) << shift) sit at
        # indexes bucket_starts[b] to bucket_starts[b + 1] - 1.
        self._bucket_shift = 32 - _MIN_BUCKET_BITS
        self._bucket_starts = _directory(self._codes, self._bucket_shift)
        self._version = 0  # counts joins and leaves
        # select(): the last candidate list (a copy), its id -> view map, and the
        # ring version when all of them were known to be on the ring.
        self._last_list: list[WorkerState] = []
        self._last_by_id: dict[Hashable, WorkerState] = {}
        self._last_version = -1
        # choose(): the tracker the ring mirrors, its membership version then, and
        # its workers' live views by id (read-only, updated by the tracker in place),
        # and by slot (None for a member the tracker does not have).
        self._synced: CapacityTracker | None = None
        self._synced_version = -1
        # A subclass with a select() of its own is placed by listing (see choose()).
        self._own_select = type(self).select is not ConsistentHash.select
        self._views: dict[Hashable, WorkerState] = {}
        self._states: list[WorkerState | None] = []

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
        """Put a worker on the ring with ``min(round(vnodes * weight), 65536)`` points (>= 1).

        O(P log V) for its P points, plus O(V) of C-level copying.

        Raises:
            DuplicateWorkerError: it is already on the ring.
            InvalidArgumentError, InvalidTypeError: a bad id, or a weight that
                is not a number within [1e-9, 1e9].
        """
        check_id(worker_id, "worker_id")
        if worker_id in self._slots:
            raise DuplicateWorkerError(f"worker {worker_id!r} is already on the ring")
        self._join([(worker_id, check_weight(weight, "weight"))])

    def remove(self, worker_id: Hashable) -> None:
        """Take a worker's points off the ring.

        O(P log V) for its P points, plus O(V) of C-level copying.

        Raises:
            UnknownWorkerError: it is not on the ring.
        """
        try:
            slot = self._slots.pop(worker_id)
        except TypeError:
            raise InvalidTypeError(f"worker ids are hashable, got {worker_id!r}") from None
        except KeyError:
            raise UnknownWorkerError(f"worker {worker_id!r} is not on the ring") from None
        label = self._labels.pop(worker_id)
        self._version += 1
        self._delete(slot, _point_hashes(label, 0, self._point_count(self._slot_weights[slot])))
        self._members[slot] = self._states[slot] = None
        self._free.append(slot)

    def on_worker_added(self, worker: WorkerState) -> None:
        """Put the worker on the ring (weighted by ``worker.weight``) unless it is there."""
        if worker.id not in self._slots:
            self.add(worker.id, worker.weight)

    def on_worker_removed(self, worker_id: Hashable) -> None:
        """Take the worker off the ring if it is there."""
        if worker_id in self._slots:
            self.remove(worker_id)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, worker_id: object) -> bool:
        try:
            return worker_id in self._slots
        except TypeError:
            return False

    # -- choosing ---------------------------------------------------------

    def lookup(self, key: Hashable) -> Hashable | None:
        """The id of the worker owning ``key`` on the ring, ignoring load; ``None`` if empty.

        O(log V).
        """
        codes = self._codes
        if not codes:
            return None
        # _successor, inlined: a method call would add a quarter to a lookup.
        position = key_hash(key)
        starts = self._bucket_starts
        bucket = position >> self._bucket_shift
        index = bisect_left(codes, (position + 1) << 32, starts[bucket], starts[bucket + 1])
        return self._members[codes[index if index < len(codes) else 0] & _SLOT_MASK]

    @trusted
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """The first candidate clockwise from the task's key that is under its cap.

        ``None`` only for an empty list.

        Raises:
            InvalidTypeError: a candidate is not a ``WorkerState``.
        """
        if type(candidates) is not CandidateList or not candidates._vouched:
            candidates = check_candidates(candidates)  # inlined for the tracker's own lists
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        # The id map of the same list as last time (the same views, in order) is reused.
        if self._last_version == self._version and candidates == self._last_list:
            by_id = self._last_by_id
        else:
            by_id = dict(zip(map(_id, candidates), candidates, strict=True))
            if not by_id.keys() <= self._slots.keys():
                self._join([(w.id, w.weight) for w in candidates if w.id not in self._slots])
            self._last_list, self._last_by_id = list(candidates), by_id
            self._last_version = self._version
        key = task.id if task.key is None else task.key
        # key_hash and _successor, inlined: select is a hot path.
        position = mmh3.hash(key, signed=False) if type(key) is str else key_hash(key)
        codes, starts = self._codes, self._bucket_starts
        bucket = position >> self._bucket_shift
        start = bisect_left(codes, (position + 1) << 32, starts[bucket], starts[bucket + 1])
        if start == len(codes):
            start = 0
        slot = codes[start] & _SLOT_MASK
        preferred = by_id.get(self._members[slot])
        if preferred is not None and preferred.weight == self._slot_weights[slot]:
            # The cheap path: an idle worker is always under its cap (every cap is >= 1).
            if self._load_factor is None or preferred.in_flight == 0:
                return preferred
            scale = (
                self._cap_factor
                * (sum(map(_in_flight, candidates)) + 1)
                / sum(map(_weight, candidates))
            )
            if preferred.in_flight < scale * preferred.weight:
                return preferred  # the walk's first step, without setting the walk up
            return self._walk(start, by_id, scale, preferred.id) or self._rewalk(
                position, by_id, scale
            )
        scale = self._scale(sum(map(_in_flight, candidates)), sum(map(_weight, candidates)))
        return self._walk(start, by_id, scale, None) or self._rewalk(position, by_id, scale)

    @trusted
    def choose(
        self, task: Task, tracker: CapacityTracker, where: WorkerFilter | None = None
    ) -> WorkerState | None:
        """A worker for ``task`` among the tracker's candidates, without listing them.

        The ring first follows the tracker's membership (see the class
        docstring). Then, clockwise from the task's key, the first worker
        that is a candidate (``tracker.first_candidate``: healthy, or
        degraded under ``degraded="include"``) and under its cap against
        the tracker's available pool. If none is found among the first 32
        distinct workers met, the candidates are listed and :meth:`select`
        chooses among them (so degraded workers under ``"fallback"``, and
        candidates all at their cap, are still served). O(log V + r) when
        the key's owner can take the task; see the class docstring.

        A subclass that overrides ``select`` gets the listing always, so its
        own choice is the one made.
        """
        if self._own_select:
            return super().choose(task, tracker, where)
        if tracker is not self._synced or self._synced_version != tracker.membership_version:
            self._sync(tracker)
        codes = self._codes
        if not codes:
            return None
        key = task.id if task.key is None else task.key
        # key_hash and _successor, inlined: choose is a hot path.
        position = mmh3.hash(key, signed=False) if type(key) is str else key_hash(key)
        starts = self._bucket_starts
        bucket = position >> self._bucket_shift
        index = bisect_left(codes, (position + 1) << 32, starts[bucket], starts[bucket + 1])
        if index == len(codes):
            index = 0
        # The key's owner first: it takes most tasks. Its cap is looked at on the view
        # the ring keeps by slot (O(1), no id hashed) before the tracker is asked.
        first = codes[index] & _SLOT_MASK
        state = self._states[first]
        if state is not None:
            if state.weight != self._slot_weights[first]:  # re-point it, then start again
                self._reweighed(state)
                return self.choose(task, tracker, where)
            # An idle worker is under any cap (every cap is >= 1): no pool totals needed.
            in_flight = state.in_flight
            if in_flight == 0:
                if tracker.first_candidate(task, (state.id,), where) is not None:
                    return state
            else:
                # _pool_scale, inlined.
                tracker.has_room()  # lifts due ejections: the totals below do not
                weight = tracker.available_weight
                scale = (
                    self._cap_factor * (tracker.available_in_flight + 1) / weight
                    if weight
                    else _UNBOUNDED
                )
                if (
                    in_flight < scale * state.weight
                    and tracker.first_candidate(task, (state.id,), where) is not None
                ):
                    return state
                return self._walk_tracker(task, tracker, where, index, first, scale)
        return self._walk_tracker(task, tracker, where, index, first, None)

    def __repr__(self) -> str:
        return (
            f"ConsistentHash(vnodes={self._vnodes}, load_factor={self._load_factor!r}, "
            f"workers={len(self._slots)})"
        )

    # -- internals --------------------------------------------------------

    def _scale(self, in_flight: int, weight: float) -> float:
        """``c * (L + 1) / W``, shaved by a hair: a worker is under its cap while
        ``in_flight < scale * weight`` (``k < ceil(x)`` is ``k < x`` for an integer
        ``k``); ``inf`` without a bound. (select() and choose() have it inlined.)"""
        return self._cap_factor * (in_flight + 1) / weight

    def _pool_scale(self, tracker: CapacityTracker) -> float:
        """``_scale`` over the tracker's available pool (``inf`` if nothing is available),
        once the tracker has lifted what is due (a worker back from an ejection counts:
        reading its totals lifts nothing; O(1))."""
        tracker.has_room()
        weight = tracker.available_weight
        return self._scale(tracker.available_in_flight, weight) if weight else _UNBOUNDED

    def _walk_tracker(
        self,
        task: Task,
        tracker: CapacityTracker,
        where: WorkerFilter | None,
        start: int,
        first: int,
        scale: float | None,
    ) -> WorkerState | None:
        """choose() past the key's owner (slot ``first``, at ``start``, looked at already):
        clockwise, the first worker under its cap against the pool (``scale``, if
        worked out already) that the tracker says is a candidate, among the first
        ``_WALK_BUDGET`` distinct workers; else ``select`` over the listed candidates."""
        if scale is None:
            scale = self._pool_scale(tracker)
        codes, weights, states = self._codes, self._slot_weights, self._states
        candidate = tracker.first_candidate
        size = len(codes)
        budget = min(len(self._slots), _WALK_BUDGET)
        met = {first}
        index = start
        for _ in range(size - 1):  # clockwise, each distinct worker once, up to the budget
            if len(met) >= budget:
                break
            index = index + 1 if index + 1 < size else 0
            slot = codes[index] & _SLOT_MASK
            if slot in met:
                continue
            met.add(slot)
            state = states[slot]
            if state is None:
                continue  # on the ring, not in the tracker (added by hand)
            if state.weight != weights[slot]:  # re-point it, then walk again from the key
                self._reweighed(state)
                return self.choose(task, tracker, where)
            if state.in_flight < scale * state.weight and candidate(task, (state.id,), where):
                return state
        return checked_select(self, task, tracker.candidates(task, where))

    def _rewalk(
        self, position: int, by_id: dict[Hashable, WorkerState], scale: float
    ) -> WorkerState:
        """Walk from ``position`` again after a re-pointing, until a walk ends well
        (again only after re-pointing another reweighed worker: once per worker at most)."""
        while True:
            chosen = self._walk(self._successor(position), by_id, scale, None)
            if chosen is not None:
                return chosen

    def _walk(
        self,
        start: int,
        by_id: dict[Hashable, WorkerState],
        scale: float,
        seen: Hashable | None,
    ) -> WorkerState | None:
        """The first candidate under its cap clockwise from ``start`` (past ``seen``, the
        worker there if it was looked at already); ``None`` if the ring had to be
        re-pointed for a changed weight on the way (walk again)."""
        codes, members, weights = self._codes, self._members, self._slot_weights
        size = len(codes)
        skipped: set[Hashable] = set() if seen is None else {seen}
        index = start
        for _ in range(size):
            slot = codes[index] & _SLOT_MASK
            owner = members[slot]
            if owner not in skipped:
                candidate = by_id.get(owner)
                if candidate is not None:
                    if candidate.weight != weights[slot] and self._reweighed(candidate):
                        return None
                    if candidate.in_flight < scale * candidate.weight:
                        return candidate
                skipped.add(owner)
            index = index + 1 if index + 1 < size else 0
        # Unreachable: every candidate is on the ring and one is under its cap.
        return min(by_id.values(), key=_in_flight)  # pragma: no cover

    def _sync(self, tracker: CapacityTracker) -> None:
        """Make the ring's members the tracker's workers, and keep their live views.

        O(n), plus the joins and leaves."""
        members = {state.id: state for state in tracker.workers()}
        for worker_id in [w for w in self._slots if w not in members]:
            self.remove(worker_id)
        self._join([(w, state.weight) for w, state in members.items() if w not in self._slots])
        self._views = members
        self._states = [None if w is None else members.get(w) for w in self._members]
        self._synced, self._synced_version = tracker, tracker.membership_version

    def _reweighed(self, worker: WorkerState) -> bool:
        """Re-point a worker whose weight changed since it joined; whether its points changed.

        O(1) if its weight did not change. Its first ``min(old, new)`` points
        stay where they are (the same hashes), so only keys on the points
        added or dropped move.
        """
        slot, weight = self._slots[worker.id], worker.weight
        if weight == self._slot_weights[slot]:
            return False
        old, new = self._point_count(self._slot_weights[slot]), self._point_count(weight)
        self._slot_weights[slot] = weight
        label = self._labels[worker.id]
        if new > old:
            self._insert([point << 32 | slot for point in _point_hashes(label, old, new)])
        elif new < old:
            self._delete(slot, _point_hashes(label, new, old))
        return new != old

    def _point_count(self, weight: float) -> int:
        """How many points a worker of this weight owns."""
        return max(1, min(round(self._vnodes * weight), MAX_POINTS))

    def _join(self, joining: Iterable[tuple[Hashable, float]]) -> None:
        """Put workers on the ring, in this order, with one merge for all of their points.

        Equal points among the newcomers go by ``repr(id)``, then by this
        order, as if they had joined one after another: the newcomers take
        their slots in that order, so sorting their codes (``point << 32 |
        slot``, O(P log P) in C) puts equal points in it too.
        """
        joining = list(joining)
        if not joining:
            return
        labels = [repr(worker_id) for worker_id, _ in joining]
        free, members = self._free, self._members
        taken = min(len(free), len(joining))
        slots = sorted(free[len(free) - taken :])
        del free[len(free) - taken :]
        slots += range(len(members), len(members) + len(joining) - taken)
        grown = len(joining) - taken
        members += [None] * grown
        self._slot_weights += [0.0] * grown
        self._states += [None] * grown
        codes: list[int] = []
        order = sorted(range(len(joining)), key=lambda i: (labels[i], i))
        for slot, at in zip(slots, order, strict=True):
            worker_id, weight = joining[at]
            self._slots[worker_id] = slot
            members[slot] = worker_id
            self._slot_weights[slot] = weight
            self._states[slot] = self._views.get(worker_id)
            self._labels[worker_id] = label = labels[at]
            codes += [
                point << 32 | slot for point in _point_hashes(label, 0, self._point_count(weight))
            ]
        codes.sort()
        self._version += 1
        self._insert(codes)

    def _insert(self, codes: list[int]) -> None:
        """Merge new points into the ring, in place of a full re-sort.

        ``codes`` are the new points as ``point << 32 | slot``, sorted. Into
        an empty ring they go as they are; otherwise each point is placed by
        bisection and the runs of the old ring between them are copied as
        slices (memcpy), so a merge costs O(P log V) steps in Python and O(V)
        in C.
        """
        old, members, labels = self._codes, self._members, self._labels
        if not old:
            self._store(array(_CODE_TYPECODE, codes))
            return
        new: array[int] = array(_CODE_TYPECODE)
        start = 0
        for code in codes:
            point = code >> 32
            label = labels[members[code & _SLOT_MASK]]
            index = bisect_left(old, (point + 1) << 32, start)
            # Equal points (rare) are ordered by repr(owner), then join order:
            # step back over those whose owner's repr sorts after ours.
            while (
                index > start
                and old[index - 1] >> 32 == point
                and labels[members[old[index - 1] & _SLOT_MASK]] > label
            ):
                index -= 1
            new += old[start:index]
            new.append(code)
            start = index
        new += old[start:]
        self._store(new, [code >> 32 for code in codes], 1)

    def _delete(self, slot: int, points: list[int]) -> None:
        """Take the given points (sorted) of one worker off the ring: O(P log V) + O(V) in C."""
        old = self._codes
        new: array[int] = array(_CODE_TYPECODE)
        start = 0
        for point in points:
            index = bisect_left(old, point << 32, start)
            while old[index] & _SLOT_MASK != slot:  # an equal point of another worker
                index += 1
            new += old[start:index]
            start = index + 1
        new += old[start:]
        self._store(new, points, -1)

    def _store(self, codes: array[int], points: list[int] | None = None, step: int = 0) -> None:
        """Make ``codes`` (sorted) the ring, and bring its directory along.

        ``points`` (sorted) were put on the ring (``step`` 1) or taken off it
        (-1) since the directory was made: it moves by them, O(B + P) for B
        buckets. It is built afresh, O(B log V), when ``points`` is ``None``
        or the ring grew or shrank out of its size: B is resized to about one
        bucket per 16 points when that leaves 4 to 32 (at least 1 024 buckets).
        """
        shift = self._bucket_shift
        bits = _directory_bits(len(codes))
        if points is None or abs(bits - (32 - shift)) > 1:
            shift = 32 - bits
            self._bucket_starts = _directory(codes, shift)
            self._bucket_shift = shift
        else:
            self._bucket_starts = _moved_directory(self._bucket_starts, shift, points, step)
        self._codes = codes

    def _successor(self, position: int) -> int:
        """The index of the first point strictly after ``position``, clockwise. O(log V).

        The ring must not be empty. Only the points of ``position``'s bucket are bisected.
        """
        codes, starts = self._codes, self._bucket_starts
        bucket = position >> self._bucket_shift
        index = bisect_left(codes, (position + 1) << 32, starts[bucket], starts[bucket + 1])
        return index if index < len(codes) else 0
