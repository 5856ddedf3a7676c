"""A CapacityTracker's snapshot carries its configuration (EWMA, health, ejection, slow
start), and a load refuses a tracker configured otherwise, naming the field, and books
whose load is not what the tasks on a worker demand."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from taskdist import (
    CapacityTracker,
    Distributor,
    HealthPolicy,
    ManualClock,
    OutlierEjection,
    SlowStart,
    SnapshotError,
    Task,
    Worker,
)

CONFIG: dict[str, Any] = {
    "ewma_alpha": 0.3,
    "ewma_half_life": 60.0,
    "health": HealthPolicy(error_rate=0.4, latency=9.0, min_samples=3),
    "ejection": OutlierEjection(consecutive_failures=3, base_ejection_time=10.0),
    "slow_start": SlowStart(window=20.0, min_weight=0.2, aggression=2.0),
}


def busy(clock: ManualClock, **config: Any) -> CapacityTracker:
    tracker = CapacityTracker(clock, **{**CONFIG, **config})
    tracker.add_worker(Worker("a", capacity={"slots": 4, "gpu": 2}))
    tracker.add_worker(Worker("b", capacity=3))
    tracker.assign(Task("t1", resources={"gpu": 1}), "a")
    tracker.assign(Task("t2", resources={"slots": 2, "gpu": 0.5}), "a")
    tracker.assign(Task("t3"), "b")
    tracker.release(Task("t3"), "b", duration=2.0, ok=True)
    tracker.assign(Task("t4", resources={"slots": 0.1}), "b")
    return tracker


def snapshot(**config: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(busy(ManualClock(), **config).snapshot()))
    return data


def test_the_configuration_travels_and_a_tracker_configured_alike_takes_it() -> None:
    data = snapshot()
    assert data["version"] == 2
    assert data["config"]["ejection"]["consecutive_failures"] == 3
    twin = CapacityTracker(ManualClock(), **CONFIG)
    twin.load_snapshot(copy.deepcopy(data))
    assert json.loads(json.dumps(twin.snapshot())) == data


OTHERWISE = [
    ({"ewma_alpha": 0.2}, r"config\.ewma_alpha is 0\.3"),
    ({"ewma_half_life": None}, r"config\.ewma_half_life is 60\.0; this tracker has None"),
    ({"health": HealthPolicy(error_rate=0.4, latency=9.0)}, r"config\.health\.min_samples"),
    ({"health": HealthPolicy(error_rate=0.5, latency=9.0, min_samples=3)}, r"health\.error_rate"),
    ({"health": None}, r"config\.health is .*; this tracker has None"),
    ({"ejection": OutlierEjection(base_ejection_time=10.0)}, r"ejection\.consecutive_failures"),
    ({"ejection": None}, r"config\.ejection is"),
    ({"slow_start": SlowStart(window=20.0, min_weight=0.2)}, r"slow_start\.aggression"),
    ({"slow_start": SlowStart(window=30.0, min_weight=0.2, aggression=2.0)}, r"start\.window"),
    ({"slow_start": None}, r"config\.slow_start is"),
]


@pytest.mark.parametrize(("other", "match"), OTHERWISE)
def test_a_tracker_configured_otherwise_is_refused_by_the_field(
    other: dict[str, Any], match: str
) -> None:
    data = snapshot()
    target = CapacityTracker(ManualClock(), **{**CONFIG, **other})
    before = target.snapshot()
    with pytest.raises(SnapshotError, match=match):
        target.load_snapshot(data)
    assert target.snapshot() == before and len(target) == 0


def test_a_policy_off_in_the_snapshot_and_on_here_is_refused_too() -> None:
    data = snapshot(slow_start=None)
    with pytest.raises(SnapshotError, match=r"config\.slow_start is None; this tracker has"):
        CapacityTracker(ManualClock(), **CONFIG).load_snapshot(data)


def test_restore_refuses_a_tracker_configured_otherwise_and_builds_nothing() -> None:
    clock = ManualClock()
    d = Distributor(clock, tracker=CapacityTracker(clock, ejection=None))
    d.add_worker(Worker("w"))
    d.submit(Task("t"))
    d.dispatch()
    saved = json.loads(json.dumps(d.snapshot()))
    tracker = CapacityTracker(clock)  # with the default ejection
    with pytest.raises(SnapshotError, match=r"snapshot\.tracker\.config\.ejection is None"):
        Distributor.restore(saved, clock, tracker=tracker)
    assert len(tracker) == 0
    back = Distributor.restore(saved, clock, tracker=CapacityTracker(clock, ejection=None))
    assert back.tracker.worker("w").in_flight == 1


BOOKS = [
    (("workers", 0, "load", "gpu"), 2.5, r"load holds 2\.5 of 'gpu'; .* add up to 1\.5"),
    (("workers", 0, "load", "slots"), 3.5, r"load holds 3\.5 of 'slots'"),
    (("workers", 1, "load"), {}, r"workers\[1\]\.load holds 0\.0 of 'slots'"),
    (("workers", 1, "load", "disk"), 1.0, r"holds 1\.0 of 'disk'"),
    (("workers", 0, "tasks", 0, 1), [["gpu", 1.0]], r"holds 3\.0 of 'slots'; .* up to 2\.0"),
    (("workers", 0, "tasks", 0, 1, 0, 1), 2.0, r"not the demand of task 't1'"),
    (("workers", 0, "tasks", 1, 1, 0), ["slots", 3.0], r"tasks\[1\]\[1\] is not the demand"),
    (("workers", 1, "tasks", 0, 1, 0, 0), "floppy", r"not the demand of task 't4'"),
]


@pytest.mark.parametrize(("path", "value", "match"), BOOKS)
def test_a_load_that_is_not_what_the_tasks_demand_is_refused(
    path: tuple[Any, ...], value: Any, match: str
) -> None:
    data = snapshot()
    *head, last = path
    place = data
    for step in head:
        place = place[step]
    place[last] = value
    target = CapacityTracker(ManualClock(), **CONFIG)
    with pytest.raises(SnapshotError, match=match):
        target.load_snapshot(data)
    assert len(target) == 0


def test_rounding_left_by_placements_in_another_order_is_not_a_disagreement() -> None:
    clock = ManualClock()
    tracker = CapacityTracker(clock)
    tracker.add_worker(Worker("w", capacity={"slots": 10, "mem": 1.0}))
    amounts = [0.1, 0.2, 0.3, 0.15, 0.05]
    for i, amount in enumerate(amounts):
        tracker.assign(Task(i, resources={"mem": amount}), "w")
    for i in (1, 3):
        tracker.release(Task(i, resources={"mem": amounts[i]}), "w")
    twin = CapacityTracker(clock)
    twin.load_snapshot(json.loads(json.dumps(tracker.snapshot())))
    assert twin.worker("w").load == tracker.worker("w").load


def test_a_version_1_snapshot_written_before_the_configuration_still_loads() -> None:
    data = snapshot()
    del data["config"]
    data["version"] = 1
    twin = CapacityTracker(ManualClock(), **CONFIG)
    twin.load_snapshot(copy.deepcopy(data))
    assert twin.worker("a").in_flight == 2
    with pytest.raises(SnapshotError, match=r"unknown fields \['config'\]"):
        CapacityTracker(ManualClock(), **CONFIG).load_snapshot({**snapshot(), "version": 1})
