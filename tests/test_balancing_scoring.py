"""MultiFactor: a weighted sum of skill, availability, performance, cost and custom factors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from balancing_support import build_tracker, worker_specs
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    CapacityTracker,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    MultiFactor,
    Task,
    Worker,
    WorkerState,
    availability,
    cost_efficiency,
    performance,
    skill_match,
)


def reference_scores(
    task: Task,
    specs: list[tuple],
    loads: list[int],
    pool: Sequence[WorkerState],
    weights: tuple[float, float, float, float],
) -> list[float]:
    """The documented formulas, from the specs and loads placed."""
    index = {f"w{i}": i for i in range(len(specs))}
    rows = [specs[index[w.id]] for w in pool]
    used = [min(loads[index[w.id]], specs[index[w.id]][0]) for w in pool]
    latencies = [row[4] for row in rows if row[4]]
    fastest = min(latencies) if latencies else 0.0
    costs = [row[5] for row in rows]
    scores = []
    for row, load in zip(rows, used, strict=True):
        capacity, _, _, skills, latency, cost = row
        requires = task.requires
        skill = len(requires & skills) / len(requires | skills) if requires else 1.0
        free = 1.0 - load / capacity
        speed = fastest / latency if latency else 1.0
        cheap = 1.0 if max(costs) == min(costs) else (max(costs) - cost) / (max(costs) - min(costs))
        scores.append(
            weights[0] * skill + weights[1] * free + weights[2] * speed + weights[3] * cheap
        )
    return scores


@given(
    specs=st.lists(worker_specs, min_size=1, max_size=8),
    loads=st.lists(st.integers(0, 5), min_size=8, max_size=8),
    requires=st.frozensets(st.sampled_from(["code", "research"]), max_size=1),
    weights=st.tuples(*[st.sampled_from([0.0, 0.1, 0.4, 1.0])] * 4).filter(any),
)
def test_multifactor_scores_follow_the_documented_formulas(
    specs: list[tuple],
    loads: list[int],
    requires: frozenset[str],
    weights: tuple[float, float, float, float],
) -> None:
    tracker = build_tracker(specs, loads)
    task = Task("t", requires=requires)
    pool = tracker.candidates(task)
    if not pool:
        return
    balancer = MultiFactor(*weights)
    expected = reference_scores(task, specs, loads, pool, weights)
    assert balancer.scores(task, pool) == pytest.approx(expected)
    chosen = balancer.select(task, pool)
    assert chosen is not None
    assert math.isclose(expected[pool.index(chosen)], max(expected), rel_tol=1e-9)


def test_default_weights_are_the_specifications() -> None:
    assert MultiFactor().weights == {
        "skill": 0.4,
        "availability": 0.3,
        "performance": 0.2,
        "cost": 0.1,
    }
    assert repr(MultiFactor(cost=0)) == "MultiFactor(skill=0.4, availability=0.3, performance=0.2)"


def test_best_fit_keeps_the_generalist_free() -> None:
    tracker = CapacityTracker(ManualClock())
    tracker.add_worker(Worker("generalist", capacity=5, skills={"code", "research", "review"}))
    tracker.add_worker(Worker("specialist", capacity=5, skills={"code"}))
    task = Task("t", requires={"code"})
    assert MultiFactor().select(task, tracker.candidates(task)).id == "specialist"
    assert skill_match(task, tracker.candidates(task)) == [pytest.approx(1 / 3), 1.0]


def test_factors_stay_in_the_unit_interval() -> None:
    tracker = build_tracker(
        [
            (2, 1.0, None, frozenset({"code"}), 2.0, 0.05),
            (4, 1.0, None, frozenset(), None, 0.0),
            (3, 1.0, None, frozenset({"code", "review"}), 8.0, 0.01),
        ],
        loads=[1, 3, 0],
    )
    pool = tracker.candidates(Task("t"))
    for factor in (skill_match, availability, performance, cost_efficiency):
        values = factor(Task("t", requires={"code"}), pool)
        assert all(0.0 <= v <= 1.0 for v in values), factor.__name__
    assert cost_efficiency(Task("t"), pool) == [0.0, 1.0, pytest.approx(0.8)]
    assert performance(Task("t"), pool) == [1.0, 1.0, 0.25]


def test_custom_factor_plugs_in() -> None:
    tracker = build_tracker(
        [(5, 1.0, "us", frozenset(), None, 0.0), (5, 1.0, "eu", frozenset(), None, 0.0)]
    )
    pool = tracker.candidates(Task("t"))

    def same_zone(task: Task, workers: Sequence[WorkerState]) -> list[float]:
        return [1.0 if w.zone == task.zone else 0.0 for w in workers]

    balancer = MultiFactor(factors={"zone": (0.5, same_zone)})
    assert balancer.select(Task("t", zone="eu"), pool).zone == "eu"
    assert balancer.select(Task("t", zone="us"), pool).zone == "us"
    assert balancer.weights["zone"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"skill": -0.1}, InvalidArgumentError),
        ({"cost": math.nan}, InvalidArgumentError),
        ({"performance": math.inf}, InvalidArgumentError),
        ({"skill": 0, "availability": 0, "performance": 0, "cost": 0}, InvalidArgumentError),
        ({"factors": {"cost": (1.0, availability)}}, InvalidArgumentError),
        ({"factors": {"x": availability}}, InvalidTypeError),
        ({"factors": {"x": (1.0, "not callable")}}, InvalidTypeError),
        ({"factors": {"x": (-1.0, availability)}}, InvalidArgumentError),
        ({"skill": "high"}, InvalidTypeError),
    ],
)
def test_constructor_refuses_bad_weights_and_factors(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        MultiFactor(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("factor", "message"),
    [
        (lambda task, ws: [0.5], "returned 1 scores for 2"),
        (lambda task, ws: [0.5, math.nan], "NaN or infinite"),
        (lambda task, ws: [math.inf, 0.0], "NaN or infinite"),
    ],
)
def test_a_misbehaving_custom_factor_is_named(factor: object, message: str) -> None:
    tracker = build_tracker([(5, 1.0, None, frozenset(), None, 0.0)] * 2)
    balancer = MultiFactor(factors={"broken": (1.0, factor)})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match=message) as caught:
        balancer.select(Task("t"), tracker.candidates(Task("t")))
    assert "'broken'" in str(caught.value)
