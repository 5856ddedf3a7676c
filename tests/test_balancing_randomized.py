"""RandomBalancer and PowerOfTwoChoices: injectable randomness, weights, the two-choices rule."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

from balancing_support import build_tracker, uniform_tracker, worker_specs
from hypothesis import given
from hypothesis import strategies as st

from taskdist import PowerOfTwoChoices, RandomBalancer, Task, WorkerState, load_per_weight


@given(st.lists(worker_specs, min_size=2, max_size=8), st.integers(0, 2**32))
def test_same_seed_same_choices(specs: list[tuple], seed: int) -> None:
    pool = build_tracker(specs).candidates(Task("t"))
    for make in (
        lambda rng: RandomBalancer(rng),
        lambda rng: RandomBalancer(rng, weighted=False),
        lambda rng: PowerOfTwoChoices(rng),
    ):
        one, two = make(random.Random(seed)), make(random.Random(seed))
        assert [one.select(Task("t"), pool) for _ in range(20)] == [
            two.select(Task("t"), pool) for _ in range(20)
        ]


def test_weighted_random_follows_weights() -> None:
    weights = [1.0, 2.0, 3.0, 0.5]
    tracker = build_tracker([(10, w, None, frozenset(), None, 0.0) for w in weights])
    pool = tracker.candidates(Task("t"))
    draws = 40_000
    balancer = RandomBalancer(random.Random(5))
    counts = Counter(balancer.select(Task("t"), pool).id for _ in range(draws))
    for i, weight in enumerate(weights):
        p = weight / sum(weights)
        sigma = math.sqrt(draws * p * (1 - p))
        assert abs(counts[f"w{i}"] - draws * p) < 5 * sigma


def test_unweighted_random_ignores_weights() -> None:
    tracker = build_tracker([(10, w, None, frozenset(), None, 0.0) for w in (1.0, 9.0)])
    pool = tracker.candidates(Task("t"))
    draws = 20_000
    balancer = RandomBalancer(random.Random(6), weighted=False)
    counts = Counter(balancer.select(Task("t"), pool).id for _ in range(draws))
    assert abs(counts["w0"] - draws / 2) < 5 * math.sqrt(draws / 4)
    assert repr(balancer) == "RandomBalancer(weighted=False)"


@given(
    st.lists(worker_specs, min_size=2, max_size=8),
    st.lists(st.integers(0, 5), max_size=8),
    st.integers(0, 2**32),
)
def test_two_choices_picks_the_less_loaded_of_the_two_drawn(
    specs: list[tuple], loads: list[int], seed: int
) -> None:
    pool = build_tracker(specs, loads).candidates(Task("t"))
    if len(pool) < 2:
        return
    shadow = random.Random(seed)  # replays the two draws
    balancer = PowerOfTwoChoices(random.Random(seed))
    for _ in range(10):
        first = shadow.randrange(len(pool))
        second = shadow.randrange(len(pool) - 1)
        second += second >= first
        a, b = pool[first], pool[second]
        expected = b if load_per_weight(b) < load_per_weight(a) else a
        assert balancer.select(Task("t"), pool) is expected
    # O(1): exactly two draws per choice, so both generators are in step.
    assert balancer.rng.getstate() == shadow.getstate()


@given(st.lists(st.integers(0, 9), min_size=2, max_size=10), st.integers(0, 2**32))
def test_two_choices_never_picks_the_unique_most_loaded(loads: list[int], seed: int) -> None:
    tracker = build_tracker([(10, 1.0, None, frozenset(), None, 0.0)] * len(loads), loads)
    pool = tracker.candidates(Task("t"))
    heaviest = max(loads)
    if loads.count(heaviest) > 1 or len(pool) < 2:
        return
    balancer = PowerOfTwoChoices(random.Random(seed))
    for _ in range(20):
        assert balancer.select(Task("t"), pool).id != f"w{loads.index(heaviest)}"


def test_two_choices_balances_far_better_than_one() -> None:
    n = 200
    max_load = {}
    for name, balancer in (
        ("one", RandomBalancer(random.Random(9), weighted=False)),
        ("two", PowerOfTwoChoices(random.Random(9))),
    ):
        tracker = uniform_tracker(n, capacity=1000)
        for i in range(n * 5):
            chosen = balancer.select(Task(i), tracker.candidates(Task(i)))
            tracker.assign(Task(i), chosen.id)
        max_load[name] = max(w.in_flight for w in tracker.workers())
    # Mean load 5. Two choices: ln ln n / ln 2 + O(1) above it; one: ~ ln n / ln ln n.
    assert max_load["two"] <= 5 + math.log(math.log(n)) / math.log(2) + 2
    assert max_load["two"] < max_load["one"]


def test_a_subclass_that_reselects_gets_its_own_choice_from_choose() -> None:
    class LastOne(PowerOfTwoChoices):
        def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
            return candidates[-1] if candidates else None

    tracker = build_tracker([(3, 1.0, None, frozenset(), None, 0.0)] * 5)
    assert all(
        LastOne(random.Random(seed)).choose(Task("t"), tracker).id == "w4" for seed in range(20)
    )
