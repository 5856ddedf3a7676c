"""RoundRobin and smooth WeightedRoundRobin: exact turns, exact proportions, bounded deviation."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

from balancing_support import build_tracker
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    CapacityTracker,
    ManualClock,
    RoundRobin,
    SlowStart,
    Task,
    WeightedRoundRobin,
    Worker,
    WorkerState,
)


def weighted_pool(weights: list[float]) -> list[WorkerState]:
    tracker = build_tracker([(100, w, None, frozenset(), None, 0.0) for w in weights])
    return tracker.candidates(Task("probe"))


@given(n=st.integers(1, 12), warmup=st.integers(0, 30))
def test_round_robin_picks_each_candidate_exactly_once_per_cycle(n: int, warmup: int) -> None:
    pool = weighted_pool([1.0] * n)
    rr = RoundRobin()
    for _ in range(warmup):
        rr.select(Task("t"), pool)
    for _ in range(3):
        cycle = [rr.select(Task("t"), pool) for _ in range(n)]
        assert sorted(w.id for w in cycle if w) == sorted(w.id for w in pool)


def test_round_robin_continues_from_its_position_when_the_list_shrinks() -> None:
    pool = weighted_pool([1.0] * 4)
    rr = RoundRobin()
    assert [rr.select(Task("t"), pool).id for _ in range(2)] == ["w0", "w1"]
    assert rr.select(Task("t"), pool[1:]).id == "w3"  # position 2 of [w1, w2, w3]


@given(st.lists(st.integers(1, 6), min_size=1, max_size=7), st.integers(1, 3))
def test_smooth_wrr_gives_exact_proportions_over_every_cycle(
    weights: list[int], cycles: int
) -> None:
    pool = weighted_pool([float(w) for w in weights])
    wrr = WeightedRoundRobin()
    total = sum(weights)
    for _ in range(cycles):
        picks = Counter(wrr.select(Task("t"), pool).id for _ in range(total))
        assert picks == {f"w{i}": w for i, w in enumerate(weights)}


@given(
    st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.5, 10.0]), min_size=1, max_size=8),
    st.integers(1, 80),
)
def test_smooth_wrr_is_never_a_full_pick_ahead_of_its_share(
    weights: list[float], steps: int
) -> None:
    """count_i(t) - t * w_i / W < (n-1)/n for every worker and every prefix t.

    Proof: the winner holds the largest running value, at least the mean W/n,
    so after subtracting W it is >= W/n - W; the others only grow. Hence
    current_i >= -W (n-1)/n, and current_i = t w_i - W count_i. The other side
    follows from the values summing to 0: current_i <= (n-1)^2 W / n.
    """
    pool = weighted_pool(weights)
    wrr = WeightedRoundRobin()
    n = len(weights)
    total = sum(Fraction(w) for w in weights)
    counts: Counter[str] = Counter()
    for t in range(1, steps + 1):
        counts[wrr.select(Task("t"), pool).id] += 1
        for i, weight in enumerate(weights):
            deviation = counts[f"w{i}"] - t * Fraction(weight) / total
            assert deviation < Fraction(n - 1, n) + Fraction(1, 10**9)
            assert deviation >= -Fraction((n - 1) ** 2, n) - Fraction(1, 10**9)


def test_smooth_wrr_interleaves_like_nginx() -> None:
    pool = weighted_pool([5.0, 1.0, 1.0])
    wrr = WeightedRoundRobin()
    assert "".join(wrr.select(Task("t"), pool).id[1] for _ in range(14)) == "00102000010200"


def test_wrr_uses_effective_weight_during_slow_start() -> None:
    clock = ManualClock()
    tracker = CapacityTracker(clock, slow_start=SlowStart(window=10.0, min_weight=0.25))
    tracker.add_worker(Worker("old", capacity=100))
    clock.advance(10.0)
    tracker.add_worker(Worker("new", capacity=100))  # effective weight 0.25 for now
    wrr = WeightedRoundRobin()
    picks = Counter(wrr.select(Task("t"), tracker.candidates(Task("t"))).id for _ in range(5))
    assert picks == {"old": 4, "new": 1}


def test_wrr_forgets_a_removed_worker() -> None:
    pool = weighted_pool([1.0, 3.0])
    remembering, forgetting = WeightedRoundRobin(), WeightedRoundRobin()
    for wrr in (remembering, forgetting):
        assert wrr.select(Task("t"), pool).id == "w1"  # running values: w0 1, w1 -1
    forgetting.on_worker_removed("w0")
    forgetting.on_worker_removed("never-seen")
    assert remembering.select(Task("t"), pool).id == "w0"  # 2 vs 2: the first wins
    assert forgetting.select(Task("t"), pool).id == "w1"  # w0 restarts from 0: 1 vs 2
    assert repr(forgetting) == "WeightedRoundRobin()"
