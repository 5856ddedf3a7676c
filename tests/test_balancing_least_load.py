"""LeastConnections, CapacityBased, PerformanceBased: each picks the best by its own measure.

The reference scores are computed here from the worker specs and the loads
placed, not read back from the balancer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from balancing_support import build_tracker, worker_specs
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    CapacityBased,
    CapacityTracker,
    LeastConnections,
    ManualClock,
    PerformanceBased,
    SlowStart,
    Task,
    Worker,
    WorkerState,
)

specs_and_loads = st.lists(worker_specs, min_size=1, max_size=8).flatmap(
    lambda specs: st.tuples(
        st.just(specs), st.lists(st.integers(0, 5), min_size=len(specs), max_size=len(specs))
    )
)


def first_best(keys: list[tuple[float, ...]]) -> int:
    """Index of the smallest key; the first one among equals."""
    return min(range(len(keys)), key=keys.__getitem__)


@given(specs_and_loads)
def test_least_connections_picks_lowest_load_ratio_per_weight(case: tuple) -> None:
    specs, loads = case
    tracker = build_tracker(specs, loads)
    pool = tracker.candidates(Task("t"))
    if not pool:
        return
    index = {f"w{i}": i for i in range(len(specs))}
    keys = []
    for worker in pool:
        capacity, weight = specs[index[worker.id]][:2]
        ratio = min(loads[index[worker.id]], capacity) / capacity
        keys.append((ratio / weight, ratio))
    chosen = LeastConnections().select(Task("t"), pool)
    assert chosen is pool[first_best(keys)]


def test_least_connections_balances_ratios_not_counts() -> None:
    tracker = CapacityTracker(ManualClock())
    tracker.add_worker(Worker("big", capacity=10))
    tracker.add_worker(Worker("small", capacity=2))
    balancer = LeastConnections()
    for i in range(6):
        pool = tracker.candidates(Task(i))
        tracker.assign(Task(i), balancer.select(Task(i), pool).id)
    assert tracker.worker("big").in_flight == 5 and tracker.worker("small").in_flight == 1
    assert tracker.load_variance() == 0.0


def test_least_connections_gives_a_heavier_worker_more() -> None:
    tracker = build_tracker(
        [(100, 3.0, None, frozenset(), None, 0.0), (100, 1.0, None, frozenset(), None, 0.0)]
    )
    balancer = LeastConnections()
    for i in range(40):
        tracker.assign(Task(i), balancer.select(Task(i), tracker.candidates(Task(i))).id)
    assert (tracker.worker("w0").in_flight, tracker.worker("w1").in_flight) == (30, 10)


def test_least_connections_holds_back_a_worker_in_slow_start() -> None:
    clock = ManualClock()
    tracker = CapacityTracker(clock, slow_start=SlowStart(window=60.0, min_weight=0.5))
    tracker.add_worker(Worker("old", capacity=100))
    clock.advance(60.0)
    tracker.add_worker(Worker("new", capacity=100))
    balancer = LeastConnections()
    for i in range(30):
        tracker.assign(Task(i), balancer.select(Task(i), tracker.candidates(Task(i))).id)
    assert (tracker.worker("old").in_flight, tracker.worker("new").in_flight) == (20, 10)


@given(specs_and_loads)
def test_capacity_based_picks_most_free_slots(case: tuple) -> None:
    specs, loads = case
    tracker = build_tracker(specs, loads)
    pool = tracker.candidates(Task("t"))
    if not pool:
        return
    index = {f"w{i}": i for i in range(len(specs))}
    free = []
    for worker in pool:
        capacity = specs[index[worker.id]][0]
        used = min(loads[index[worker.id]], capacity)
        free.append((-(capacity - used), used / capacity))
    assert CapacityBased().select(Task("t"), pool) is pool[first_best(free)]


def test_capacity_based_measures_room_in_the_scarcest_demanded_resource() -> None:
    tracker = CapacityTracker(ManualClock())
    tracker.add_worker(Worker("many-slots", capacity={"slots": 10, "gpu": 1}))
    tracker.add_worker(Worker("many-gpus", capacity={"slots": 4, "gpu": 4}))
    gpu_task = Task("g", resources={"gpu": 1})
    pool = tracker.candidates(gpu_task)
    assert CapacityBased().select(gpu_task, pool).id == "many-gpus"  # room for 4, not 1
    assert CapacityBased().select(Task("plain"), pool).id == "many-slots"
    assert [round(-s, 6) for s in CapacityBased().scores(gpu_task, pool)] == [1.0, 4.0]


def expected_completion(latency: float, success: float, slots: float, in_flight: int) -> float:
    parallel = max(slots, 1.0)
    queued = max(0.0, in_flight + 1 - parallel)
    return (1.0 + queued / parallel) * latency / max(success, 0.01)


@given(specs_and_loads)
def test_performance_based_picks_least_expected_completion(case: tuple) -> None:
    specs, loads = case
    tracker = build_tracker(specs, loads)
    pool = tracker.candidates(Task("t"))
    if not pool:
        return
    index = {f"w{i}": i for i in range(len(specs))}
    known = [specs[index[w.id]][4] for w in pool if specs[index[w.id]][4] is not None]
    prior = math.fsum(known) / len(known) if known else 1.0
    keys = []
    for worker in pool:
        capacity, _, _, _, latency, _ = specs[index[worker.id]]
        used = min(loads[index[worker.id]], capacity)
        ect = expected_completion(prior if latency is None else latency, 1.0, capacity, used)
        keys.append((ect, used / capacity))
    chosen = PerformanceBased().select(Task("t"), pool)
    assert chosen is not None
    assert chosen is pool[first_best(keys)] or math.isclose(
        keys[pool.index(chosen)][0], min(keys)[0], rel_tol=1e-12
    )


def test_performance_based_prefers_fast_reliable_workers() -> None:
    tracker = CapacityTracker(ManualClock(), health=None, ejection=None)
    for name in ("slow", "fast", "flaky"):
        tracker.add_worker(Worker(name, capacity=5))
    for name, duration, ok in (("slow", 4.0, True), ("fast", 1.0, True), ("flaky", 1.0, False)):
        for i in range(10):
            task = Task((name, i))
            tracker.assign(task, name)
            tracker.release(task, name, duration=duration, ok=ok)
    balancer = PerformanceBased()
    pool = tracker.candidates(Task("t"))
    assert balancer.select(Task("t"), pool).id == "fast"
    scores = dict(zip([w.id for w in pool], balancer.scores(Task("t"), pool), strict=True))
    assert scores["flaky"] > scores["slow"] > scores["fast"]  # 1 / 0.107 > 4 > 1


def test_performance_based_fills_the_fastest_then_moves_on() -> None:
    tracker = build_tracker(
        [(2, 1.0, None, frozenset(), 1.0, 0.0), (2, 1.0, None, frozenset(), 3.0, 0.0)]
    )
    balancer = PerformanceBased()
    order = []
    for i in range(4):
        chosen = balancer.select(Task(i), tracker.candidates(Task(i)))
        tracker.assign(Task(i), chosen.id)
        order.append(chosen.id)
    assert order == ["w0", "w0", "w1", "w1"]


def test_performance_based_treats_unknown_workers_as_average() -> None:
    tracker = build_tracker(
        [
            (5, 1.0, None, frozenset(), 1.0, 0.0),
            (5, 1.0, None, frozenset(), 5.0, 0.0),
            (5, 1.0, None, frozenset(), None, 0.0),
        ]
    )
    pool = tracker.candidates(Task("t"))
    assert PerformanceBased().scores(Task("t"), pool) == [1.0, 5.0, 3.0]


def test_a_subclass_that_rescores_gets_its_own_choice_from_choose() -> None:
    class Cheapest(LeastConnections):
        def scores(self, task: Task, candidates: Sequence[WorkerState]) -> list[float]:
            return [worker.cost for worker in candidates]

    tracker = CapacityTracker(ManualClock())
    tracker.add_worker(Worker("pricey", capacity=10, cost=5.0))
    tracker.add_worker(Worker("cheap", capacity=10, cost=1.0))
    tracker.assign(Task(1), "cheap")
    assert LeastConnections().choose(Task("t"), tracker).id == "pricey"
    assert Cheapest().choose(Task("t"), tracker).id == "cheap"
