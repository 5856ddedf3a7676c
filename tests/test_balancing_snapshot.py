"""A balancer's state in a snapshot: a loaded twin makes the next choices the original makes.

Each balancer that keeps state between calls (a position, running weights,
bindings, a random source) is used for a while, snapshotted through JSON
and loaded into a new one built alike (random ones seeded otherwise): the
twin's next choices are the original's. A state that does not fit (another
class, another configuration, a field missing) is refused with
``SnapshotError`` naming what was wrong, and nothing changes. Through a
``Distributor``, a state that does not fit the balancer given to
``restore`` is refused the same way, and a balancer of the user's own
without ``snapshot()`` keeps what it had before: its random source.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    Affinity,
    Balancer,
    CapacityTracker,
    Distributor,
    LeastConnections,
    ManualClock,
    PowerOfTwoChoices,
    RandomBalancer,
    RoundRobin,
    SnapshotError,
    Task,
    WeightedRoundRobin,
    Worker,
    WorkerState,
    ZoneAware,
)

# Each: a maker taking a seed (for the random ones; a twin gets another).
STATEFUL: dict[str, Callable[[int], Any]] = {
    "round_robin": lambda _: RoundRobin(),
    "weighted": lambda _: WeightedRoundRobin(),
    "p2c": lambda seed: PowerOfTwoChoices(rng=random.Random(seed)),
    "random": lambda seed: RandomBalancer(rng=random.Random(seed)),
    "affinity": lambda seed: Affinity(PowerOfTwoChoices(rng=random.Random(seed)), max_keys=3),
    "zone": lambda _: ZoneAware(WeightedRoundRobin(), zone="eu"),
    "affinity over zone": lambda _: Affinity(ZoneAware(RoundRobin()), max_keys=2),
}


def pool() -> CapacityTracker:
    tracker = CapacityTracker(ManualClock())
    for i, (weight, zone) in enumerate([(3.0, "eu"), (1.0, "eu"), (2.0, "us"), (0.5, "eu")]):
        tracker.add_worker(Worker(f"w{i}", capacity=100, weight=weight, zone=zone))
    return tracker


def as_json(data: object) -> Any:
    return json.loads(json.dumps(data))


def tasks(count: int, start: int) -> list[Task]:
    """Tasks with a few keys (some without), placed in turn."""
    keys = [None, "a", "b", "c", "d", "a"]
    return [Task(i, key=keys[i % len(keys)]) for i in range(start, start + count)]


def place(balancer: Balancer, tracker: CapacityTracker, batch: Sequence[Task]) -> list[Any]:
    """Each task placed (through ``choose``, as the Distributor does) and assigned."""
    chosen = []
    for task in batch:
        worker: WorkerState | None = balancer.choose(task, tracker)
        assert worker is not None
        tracker.assign(task, worker.id)
        balancer.on_assign(task, worker)
        chosen.append(worker.id)
    return chosen


@pytest.mark.parametrize("name", sorted(STATEFUL))
@given(seed=st.integers(0, 2**16), before=st.integers(1, 12))
def test_a_loaded_twin_makes_the_next_choices_the_original_makes(
    name: str, seed: int, before: int
) -> None:
    tracker = pool()
    used = STATEFUL[name](seed)
    first = place(used, tracker, tasks(before, 0))
    snapshot = as_json(used.snapshot())
    twin = STATEFUL[name](seed + 1)
    twin.load_snapshot(snapshot)
    assert as_json(twin.snapshot()) == snapshot
    # Both go on over the same tracker: the twin first, then the original from the same load.
    twin_tracker, next_batch = pool(), tasks(8, before)
    for task, worker_id in zip(tasks(before, 0), first, strict=True):
        twin_tracker.assign(task, worker_id)
    assert place(twin, twin_tracker, next_batch) == place(used, tracker, next_batch)


def test_the_state_is_what_the_next_choices_depend_on() -> None:
    """Without it, a new balancer starts over (what a restore did before)."""
    tracker = pool()
    rr, wrr = RoundRobin(), WeightedRoundRobin()
    place(rr, tracker, tasks(2, 0))
    place(wrr, tracker, tasks(2, 2))
    probe = Task("probe")
    candidates = tracker.candidates(probe)
    assert RoundRobin().select(probe, candidates) is not rr.select(probe, candidates)
    assert WeightedRoundRobin().select(probe, candidates) is not wrr.select(probe, candidates)


def test_affinity_keeps_its_bindings_in_least_recently_used_order() -> None:
    tracker = pool()
    sticky = Affinity(RoundRobin(), max_keys=2)
    place(sticky, tracker, [Task(1, key="a"), Task(2, key="b"), Task(3, key="a")])
    twin = Affinity(RoundRobin(), max_keys=2)
    twin.load_snapshot(as_json(sticky.snapshot()))
    assert [twin.preferred(key) for key in "ab"] == [sticky.preferred(key) for key in "ab"]
    for balancer in (twin, sticky):  # "b" is the least recently used: "c" pushes it out
        place(balancer, pool(), [Task(4, key="c")])
    assert twin.preferred("b") is None and sticky.preferred("b") is None
    assert twin.preferred("a") == sticky.preferred("a") is not None
    twin.on_worker_removed(twin.preferred("a"))  # the loaded bindings are indexed by worker
    assert twin.preferred("a") is None


# -- refusals ----------------------------------------------------------------------------


def used_snapshot(name: str) -> dict[str, Any]:
    balancer = STATEFUL[name](1)
    place(balancer, pool(), tasks(5, 0))
    data: dict[str, Any] = as_json(balancer.snapshot())
    return data


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_a_snapshot_missing_a_field_is_refused_and_nothing_changes(name: str) -> None:
    snapshot = used_snapshot(name)
    for field in snapshot:
        target = STATEFUL[name](7)
        before = as_json(target.snapshot())
        broken = {key: value for key, value in snapshot.items() if key != field}
        with pytest.raises(SnapshotError, match=field):
            target.load_snapshot(broken)
        assert as_json(target.snapshot()) == before
    with pytest.raises(SnapshotError, match="version"):
        STATEFUL[name](7).load_snapshot({**snapshot, "version": 2})
    with pytest.raises(SnapshotError, match="unknown fields"):
        STATEFUL[name](7).load_snapshot({**snapshot, "extra": 1})


MISFITS: dict[str, tuple[str, Callable[[], Any], str]] = {
    "another class": ("round_robin", WeightedRoundRobin, "RoundRobin, not of a WeightedRoundRobin"),
    "a random one of another class": (
        "p2c",
        lambda: RandomBalancer(rng=random.Random(1)),
        "PowerOfTwoChoices, not of a RandomBalancer",
    ),
    "another weighting": (
        "random",
        lambda: RandomBalancer(rng=random.Random(1), weighted=False),
        "weighted",
    ),
    "a fallback of another class": (
        "affinity",
        lambda: Affinity(RoundRobin(), max_keys=3),
        r"delegates\[0\] is a snapshot of a PowerOfTwoChoices, not of a RoundRobin",
    ),
    "a fallback without snapshot support": (
        "affinity",
        lambda: Affinity(LeastConnections(), max_keys=3),
        "state of a PowerOfTwoChoices; the balancer given, a LeastConnections",
    ),
    "a balancer nested deeper without snapshot support": (
        "affinity over zone",
        lambda: Affinity(ZoneAware(LeastConnections()), max_keys=2),
        r"delegates\[0\].delegates\[0\] is the state of a RoundRobin; the balancer given, a "
        "LeastConnections",
    ),
    "another max_keys": ("affinity", lambda: Affinity(PowerOfTwoChoices(), max_keys=4), "max_keys"),
}


@pytest.mark.parametrize("misfit", sorted(MISFITS))
def test_a_state_that_does_not_fit_is_refused_naming_both(misfit: str) -> None:
    name, make, message = MISFITS[misfit]
    target = make()
    before = as_json(target.snapshot())
    with pytest.raises(SnapshotError, match=message):
        target.load_snapshot(used_snapshot(name))
    assert as_json(target.snapshot()) == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("position", -1, "position must be an int >= 0"),
        ("current", [["w0", float("nan")]], "finite"),
        ("current", [["w0", 1.0], ["w0", 2.0]], "twice"),
        ("bound", [["a", "w0"], ["a", "w1"]], "second time"),
        ("bound", [["a", None]], "worker_id must not be None"),
        ("bound", [[k, "w0"] for k in "abcd"], "max_keys is 3"),
        ("rng", [3, [1, 2], None], "random generator"),
    ],
)
def test_a_wrong_value_is_refused(field: str, value: Any, message: str) -> None:
    name = {"position": "round_robin", "current": "weighted", "rng": "p2c"}.get(field, "affinity")
    target = STATEFUL[name](7)
    before = as_json(target.snapshot())
    with pytest.raises(SnapshotError, match=message):
        target.load_snapshot({**used_snapshot(name), field: value})
    assert as_json(target.snapshot()) == before


# -- through a Distributor ---------------------------------------------------------------


class OwnRandom(Balancer):
    """A balancer of the user's own, without snapshot(): only its random source travels."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        return self.rng.choice(candidates) if candidates else None


class OwnPlain(Balancer):
    """Nor a random source: nothing of it travels, and it works as before."""

    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        return candidates[-1] if candidates else None


def distributor_with(balancer: Balancer) -> tuple[Distributor, ManualClock]:
    clock = ManualClock()
    d = Distributor(clock, balancer=balancer)
    for i in range(3):
        d.add_worker(Worker(f"w{i}", capacity=10))
    for i in range(4):
        d.submit(Task(i))
    d.dispatch()
    return d, clock


@pytest.mark.parametrize(
    "make",
    [RoundRobin, lambda: Affinity(RoundRobin()), lambda: OwnRandom(5), OwnPlain],
    ids=["round_robin", "affinity", "own random", "own plain"],
)
def test_a_restored_distributor_places_the_next_tasks_as_the_original(
    make: Callable[[], Balancer],
) -> None:
    balancer = make()
    if isinstance(balancer, OwnRandom):
        balancer.rng = random.Random(5)
    d, clock = distributor_with(balancer)
    twin_balancer = make()
    if isinstance(twin_balancer, OwnRandom):
        twin_balancer.rng = random.Random(99)  # its state comes from the snapshot
    twin = Distributor.restore(
        as_json(d.snapshot()), ManualClock(start=clock.now()), balancer=twin_balancer
    )
    for i in range(4, 10):
        d.submit(Task(i))
        twin.submit(Task(i))
    placed = [(a.task.id, a.worker_id) for a in d.dispatch()]
    assert [(a.task.id, a.worker_id) for a in twin.dispatch()] == placed


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            WeightedRoundRobin,
            r"balancers\[0\] is a snapshot of a RoundRobin, not of a WeightedRoundRobin",
        ),
        (LeastConnections, "state of a RoundRobin; the balancer given, a LeastConnections"),
        (lambda: OwnRandom(1), "state of a RoundRobin; the balancer given, a OwnRandom"),
    ],
    ids=["another class", "one without snapshot()", "one with only a random source"],
)
def test_restore_refuses_a_balancer_state_that_does_not_fit(
    given: Callable[[], Balancer], message: str
) -> None:
    d, clock = distributor_with(RoundRobin())
    with pytest.raises(SnapshotError, match=message):
        Distributor.restore(as_json(d.snapshot()), ManualClock(start=clock.now()), balancer=given())


def test_restore_refuses_a_balancer_with_state_for_a_snapshot_without() -> None:
    d, clock = distributor_with(LeastConnections())
    with pytest.raises(SnapshotError, match="not the state of a RoundRobin"):
        Distributor.restore(
            as_json(d.snapshot()), ManualClock(start=clock.now()), balancer=RoundRobin()
        )
    with pytest.raises(SnapshotError, match="OwnRandom"):
        Distributor.restore(
            as_json(d.snapshot()), ManualClock(start=clock.now()), balancer=OwnRandom(1)
        )
