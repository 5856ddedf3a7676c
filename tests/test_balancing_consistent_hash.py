"""ConsistentHash: stable keys, minimal remapping, bounded loads, membership without hooks.

The ring's speed against uhashring is measured in benchmarks/bench_balancing.py.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import pytest
from balancing_support import uniform_tracker
from hypothesis import given, settings
from hypothesis import strategies as st

from taskdist import (
    CapacityTracker,
    ConsistentHash,
    DuplicateWorkerError,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    Task,
    UnknownWorkerError,
    Worker,
)
from taskdist.balancing import key_hash

worker_names = st.lists(
    st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=8),
    min_size=1,
    max_size=8,
    unique=True,
)


def ring_of(names: list[str], vnodes: int = 160) -> ConsistentHash:
    ring = ConsistentHash(vnodes=vnodes, load_factor=None)
    for name in names:
        ring.add(name)
    return ring


KEYS = [f"key-{i}" for i in range(2_000)]


@settings(max_examples=max(10, settings.default.max_examples // 3))
@given(worker_names, st.text(alphabet="klmnop", min_size=1, max_size=6))
def test_adding_a_worker_moves_about_one_nth_of_keys_and_only_to_it(
    names: list[str], newcomer: str
) -> None:
    """Moved keys all go to the newcomer; their share is 1/(n+1) within +-50 %.

    With 160 points per worker a worker's arc share has a relative standard
    deviation near 1/sqrt(160) = 8 %, and 2000 keys add about 5 % of sampling
    noise, so +-50 % is over five standard deviations.
    """
    ring = ring_of(names)
    before = {key: ring.lookup(key) for key in KEYS}
    ring.add(newcomer)
    moved = [key for key in KEYS if ring.lookup(key) != before[key]]
    assert all(ring.lookup(key) == newcomer for key in moved)
    expected = len(KEYS) / (len(names) + 1)
    assert 0.5 * expected <= len(moved) <= 1.5 * expected


@settings(max_examples=max(10, settings.default.max_examples // 3))
@given(worker_names.filter(lambda names: len(names) >= 2), st.data())
def test_removing_a_worker_moves_only_its_keys(names: list[str], data: st.DataObject) -> None:
    ring = ring_of(names, vnodes=40)
    gone = data.draw(st.sampled_from(names))
    before = {key: ring.lookup(key) for key in KEYS[:500]}
    ring.remove(gone)
    for key, owner in before.items():
        if owner != gone:
            assert ring.lookup(key) == owner
        else:
            assert ring.lookup(key) in set(names) - {gone}


def test_the_ring_ignores_join_order() -> None:
    names = [f"w{i}" for i in range(6)]
    forward, backward = ring_of(names), ring_of(names[::-1])
    assert all(forward.lookup(key) == backward.lookup(key) for key in KEYS)


def test_weight_scales_a_workers_share_of_the_ring() -> None:
    ring = ConsistentHash(load_factor=None)
    ring.add("heavy", weight=3.0)
    ring.add("light", weight=1.0)
    share = Counter(ring.lookup(key) for key in KEYS)["heavy"] / len(KEYS)
    assert 0.65 <= share <= 0.85


def test_a_weight_changed_at_runtime_reshapes_the_ring_moving_keys_only_to_it() -> None:
    tracker = uniform_tracker(3)
    ring = ConsistentHash(vnodes=100, load_factor=None)
    pool = tracker.candidates(Task("t"))
    keyed = [Task(i, key=key) for i, key in enumerate(KEYS)]
    before = {task.key: ring.select(task, pool).id for task in keyed}
    tracker.update_worker("w1", weight=3.0)
    after = {task.key: ring.select(task, pool).id for task in keyed}
    moved = [key for key in KEYS if after[key] != before[key]]
    assert moved and all(after[key] == "w1" for key in moved)
    share = Counter(after.values())["w1"] / len(KEYS)
    assert 0.5 <= share <= 0.7  # 3 / 5 = 0.6 of the ring
    assert all(ring.lookup(key) == after[key] for key in KEYS)


def test_plain_ring_spreads_keys_roughly_evenly() -> None:
    """160 points per worker: each share is within about 8 % (one sigma) of 1/n.

    For these names 100k keys land at max/mean 1.17; the bound below is three
    sigma. Bounded loads are what make a tight guarantee (next test).
    """
    ring = ring_of([f"worker-{i}" for i in range(5)])
    counts = Counter(ring.lookup(f"user-{i}") for i in range(100_000))
    assert max(counts.values()) / (100_000 / 5) <= 1.25
    assert min(counts.values()) / (100_000 / 5) >= 0.75


def test_bounded_ring_holds_max_over_mean_to_the_load_factor() -> None:
    tracker = uniform_tracker(5, capacity=10_000)
    ring = ConsistentHash(load_factor=1.1)
    for i in range(5_000):
        task = Task(i, key=f"user-{i}")
        tracker.assign(task, ring.select(task, tracker.candidates(task)).id)
    loads = [w.in_flight for w in tracker.workers()]
    assert max(loads) <= math.ceil(1.1 * 5_000 / 5)


def test_same_key_goes_to_the_same_worker_and_matches_lookup() -> None:
    tracker = uniform_tracker(5)
    ring = ConsistentHash()
    pool = tracker.candidates(Task("t"))
    homes = {ring.select(Task(i, key=f"user-{i % 7}"), pool).id for i in range(0, 70, 7)}
    assert homes == {ring.lookup("user-0")}
    assert ring.select(Task("no-key"), pool).id == ring.lookup("no-key")  # id as the key


def cap(load_factor: float, pool: list, weight: float) -> int:
    """ceil(c * (L + 1) * w / W), exactly, over the candidates offered."""
    total = sum(worker.in_flight for worker in pool) + 1
    weights = sum(Fraction(worker.weight) for worker in pool)
    return math.ceil(Fraction(load_factor) * total * Fraction(weight) / weights)


@given(
    workers=st.lists(st.sampled_from([1.0, 1.0, 2.0, 0.5]), min_size=1, max_size=6),
    load_factor=st.sampled_from([1.0, 1.1, 1.25, 2.0]),
    steps=st.lists(st.tuples(st.booleans(), st.sampled_from(["hot", "a", "b", None])), max_size=60),
)
def test_bounded_ring_never_places_above_the_cap(
    workers: list[float], load_factor: float, steps: list[tuple[bool, str | None]]
) -> None:
    tracker = CapacityTracker(ManualClock())
    for i, weight in enumerate(workers):
        tracker.add_worker(Worker(f"w{i}", capacity=1_000, weight=weight))
    ring = ConsistentHash(vnodes=20, load_factor=load_factor)
    running: list[tuple[Task, str]] = []
    for n, (add, key) in enumerate(steps):
        if add or not running:
            task = Task(n, key=key)
            pool = tracker.candidates(task)
            chosen = ring.select(task, pool)
            assert chosen is not None
            assert chosen.in_flight + 1 <= cap(load_factor, pool, chosen.weight)
            tracker.assign(task, chosen.id)
            running.append((task, chosen.id))
        else:
            task, worker_id = running.pop(n % len(running))
            tracker.release(task, worker_id)


def test_a_hot_key_spills_over_under_the_bound() -> None:
    tracker = uniform_tracker(4)
    ring = ConsistentHash(load_factor=1.25)
    for i in range(40):
        task = Task(i, key="hot")
        tracker.assign(task, ring.select(task, tracker.candidates(task)).id)
    loads = sorted(w.in_flight for w in tracker.workers())
    assert sum(loads) == 40 and loads[-1] <= math.ceil(1.25 * 40 / 4)  # 13
    assert loads[-2] > 0  # the hot key spilled over to a second worker at least
    unbounded = ConsistentHash(load_factor=None)
    pool = tracker.candidates(Task("x"))
    assert len({unbounded.select(Task(i, key="hot"), pool).id for i in range(10)}) == 1


def test_a_down_worker_is_skipped_and_gets_its_keys_back() -> None:
    tracker = uniform_tracker(4)
    ring = ConsistentHash(load_factor=None)
    for worker in tracker.workers():
        ring.on_worker_added(worker)
    home = ring.lookup("user-1")
    tracker.set_health(home, "unavailable")
    elsewhere = ring.select(Task(1, key="user-1"), tracker.candidates(Task(1)))
    assert elsewhere.id != home
    tracker.set_health(home, "healthy")
    assert ring.select(Task(2, key="user-1"), tracker.candidates(Task(2))).id == home


def test_membership_is_learned_without_hooks_and_hooks_are_idempotent() -> None:
    tracker = uniform_tracker(3)
    ring = ConsistentHash()
    ring.select(Task("t", key="k"), tracker.candidates(Task("t")))
    assert len(ring) == 3 and "w0" in ring and [] not in ring
    ring.on_worker_added(tracker.worker("w0"))  # already there: no error
    ring.on_worker_removed("w0")
    ring.on_worker_removed("w0")  # gone already: no error
    assert "w0" not in ring and len(ring) == 2
    assert "workers=2" in repr(ring)


def test_empty_ring_looks_up_nothing() -> None:
    assert ConsistentHash().lookup("k") is None


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: ConsistentHash(vnodes=0), InvalidArgumentError),
        (lambda: ConsistentHash(vnodes=1.5), InvalidTypeError),
        (lambda: ConsistentHash(load_factor=0.9), InvalidArgumentError),
        (lambda: ConsistentHash(load_factor=math.nan), InvalidArgumentError),
        (lambda: ConsistentHash(load_factor=math.inf), InvalidArgumentError),
    ],
)
def test_constructor_refuses_bad_arguments(make: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        make()  # type: ignore[operator]


def test_membership_refusals_leave_the_ring_unchanged() -> None:
    ring = ring_of(["a", "b"])
    before = [ring.lookup(key) for key in KEYS[:200]]
    with pytest.raises(DuplicateWorkerError):
        ring.add("a")
    for weight in (0.0, -1.0, math.nan):
        with pytest.raises(InvalidArgumentError):
            ring.add("c", weight=weight)
    with pytest.raises(UnknownWorkerError):
        ring.remove("c")
    with pytest.raises(InvalidTypeError):
        ring.remove(["a"])
    with pytest.raises(InvalidArgumentError):
        ring.add(None)
    assert [ring.lookup(key) for key in KEYS[:200]] == before and len(ring) == 2


def test_keys_hash_stably_and_unhashable_keys_are_refused() -> None:
    assert key_hash("user-7") == key_hash("user-7") != key_hash("user-8")
    assert key_hash(("tenant", 7)) == key_hash(("tenant", 7))
    assert 0 <= key_hash(b"bytes") < 2**32
    with pytest.raises(InvalidTypeError):
        key_hash(["not", "hashable"])  # type: ignore[arg-type]
