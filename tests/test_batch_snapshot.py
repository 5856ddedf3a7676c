"""A BatchOptimizer's snapshot: a twin loaded from it answers every later call alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hostile import assert_refused
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    AIMDSizing,
    Batch,
    BatchOptimizer,
    GroupLimits,
    ManualClock,
    Priority,
    SnapshotError,
    Task,
    TaskdistError,
)

GROUPS = ["a", "b", None]


def optimizer(clock: ManualClock) -> BatchOptimizer:
    return BatchOptimizer(
        clock,
        min_size=1,
        max_size=4,
        max_wait=2.0,
        max_cost=6.0,
        max_resources={"gpu": 2},
        sizing=AIMDSizing(target_latency=1.5, initial_size=3),
        stats_window=5,
        groups={"b": GroupLimits(max_size=2)},
    )


def view(batches: list[Batch] | Batch | None) -> Any:
    if batches is None:
        return None
    if isinstance(batches, Batch):
        batches = [batches]
    return [(b.id, b.key, b.ids, b.created, b.released, b.reason.value) for b in batches]


def observed(b: BatchOptimizer) -> Any:
    stats = b.stats()
    return (len(b), b.next_wakeup(), [b.target_size(g) for g in GROUPS], repr(stats))


operations = st.one_of(
    st.tuples(
        st.just("add"),
        st.integers(0, 30),
        st.sampled_from(GROUPS),
        st.sampled_from([1.0, 2.5]),
        st.sampled_from([None, 3.0]),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(st.just("poll")),
    st.tuples(st.just("flush")),
    st.tuples(st.just("remove"), st.integers(0, 30)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 2.5])),
    st.tuples(st.just("set_group"), st.sampled_from(GROUPS), st.sampled_from([None, 1, 3, 6])),
)


class Run:
    """An optimizer and the batches it released (to report durations of)."""

    def __init__(self, clock: ManualClock, b: BatchOptimizer) -> None:
        self.clock, self.b, self.released = clock, b, []

    def apply(self, op: tuple[Any, ...]) -> Any:
        name, *args = op
        b = self.b
        try:
            if name == "add":
                i, group, cost, ttl, gpu, critical = args
                task = Task(
                    f"t{i}",
                    group=group,
                    cost=cost,
                    ttl=ttl,
                    resources={"gpu": 1} if gpu else {},
                    priority=Priority.CRITICAL if critical else Priority.NORMAL,
                )
                out = b.add(task)
            elif name == "poll":
                out = b.poll()
            elif name == "flush":
                out = b.flush()
            elif name == "remove":
                return b.remove(f"t{args[0]}").id
            elif name == "advance":
                return self.clock.advance(args[0])
            else:
                group, size = args
                return b.set_group(group, None if size is None else GroupLimits(max_size=size))
        except TaskdistError as error:
            return (type(error).__name__, str(error))
        released = [out] if isinstance(out, Batch) else (out or [])
        for batch in released:  # every released batch reports a duration: sizing learns
            b.record(batch, 0.5 * len(batch))
        return view(out)


@given(before=st.lists(operations, max_size=40), after=st.lists(operations, max_size=30))
def test_a_loaded_twin_makes_the_same_batches(
    before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    clock = ManualClock()
    original = Run(clock, optimizer(clock))
    for op in before:
        original.apply(op)
    snapshot = json.loads(json.dumps(original.b.snapshot()))
    twin_clock = ManualClock(start=clock.now())
    twin = Run(twin_clock, optimizer(twin_clock))
    twin.b.load_snapshot(snapshot)
    assert json.loads(json.dumps(twin.b.snapshot())) == snapshot
    assert observed(twin.b) == observed(original.b)
    for op in after:
        assert twin.apply(op) == original.apply(op), op
        assert observed(twin.b) == observed(original.b), op


def test_groups_that_are_tuples_keep_their_learned_sizes() -> None:
    def keyed(clock: ManualClock) -> BatchOptimizer:
        return BatchOptimizer(
            clock,
            max_size=4,
            max_wait=1.0,
            key=lambda t: (t.tenant, t.group),
            sizing=AIMDSizing(target_latency=1.5, initial_size=2),
        )

    clock = ManualClock()
    b = keyed(clock)
    for i in range(2):
        released = b.add(Task(f"t{i}", tenant="acme", group="g"))
    assert isinstance(released, Batch)
    b.record(released, 0.5)  # fast: the group's target grows
    assert b.target_size(("acme", "g")) == 3
    snapshot = json.loads(json.dumps(b.snapshot()))
    twin = keyed(ManualClock(start=clock.now()))
    twin.load_snapshot(snapshot)  # (the keys were decoded twice: a tuple refused)
    assert twin.target_size(("acme", "g")) == 3
    assert json.loads(json.dumps(twin.snapshot())) == snapshot


def busy() -> tuple[ManualClock, BatchOptimizer]:
    clock = ManualClock()
    b = optimizer(clock)
    b.add(Task("x", group="a", ttl=3.0))
    b.add(Task("y", group="b"))
    clock.advance(0.5)
    return clock, b


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s["config"].update(max_size=8), r"config\.max_size is 8; this optimizer has 4"),
        (lambda s: s.update(version=9), "version 9"),
        (lambda s: s.pop("targets"), "targets"),
        (lambda s: s.update(next_id=0), "next_id is 0"),
        (lambda s: s["open"][0].update(due=float("nan")), "due must be a finite number"),
        (lambda s: s["open"][0].update(tasks=[]), "must hold tasks"),
        (lambda s: s["open"][0].update(reason="soon"), "names no batch reason"),
        (lambda s: s["open"][0].update(reason=["max_wait"]), "names no batch reason"),
        (lambda s: s.update(by_reason=[[["full"], 1]]), r"by_reason\[0\]"),
        (lambda s: s.update(due_order=[]), "due_order"),
        (lambda s: s.update(limits=[["b", 0, None]]), r"limits\[0\] is not valid"),
        (lambda s: s.update(by_reason=[["full", -1]]), r"by_reason\[0\]"),
        (lambda s: s.update(surprise=1), "unknown field"),
    ],
)
def test_a_corrupted_snapshot_is_refused_and_loads_nothing(change: Any, match: str) -> None:
    _, b = busy()
    snapshot = json.loads(json.dumps(b.snapshot()))
    change(snapshot)
    assert_refused(
        lambda: optimizer(ManualClock(start=0.5)),
        lambda fresh: fresh.load_snapshot(snapshot),
        SnapshotError,
        lambda fresh: (len(fresh), fresh.next_wakeup(), repr(fresh.stats())),
        match=match,
    )


def test_an_optimizer_that_has_seen_tasks_refuses_a_snapshot() -> None:
    _, b = busy()
    snapshot = b.snapshot()
    with pytest.raises(SnapshotError, match="seen tasks already"):
        b.load_snapshot(snapshot)


def test_a_target_learned_above_the_default_max_size_restores() -> None:
    # A group's own max_size (10) above the default (4): its learned target (5) is in range.
    def make(clock: ManualClock) -> BatchOptimizer:
        return BatchOptimizer(
            clock,
            max_size=4,
            sizing=AIMDSizing(target_latency=1.0, initial_size=4),
            groups={"g": GroupLimits(max_size=10)},
        )

    clock = ManualClock()
    b = make(clock)
    batch = None
    for i in range(4):
        batch = b.add(Task(f"t{i}", group="g"))
    assert batch is not None
    b.record(batch, 0.1)
    assert b.target_size("g") == 5
    twin = make(ManualClock())
    twin.load_snapshot(json.loads(json.dumps(b.snapshot())))
    assert twin.target_size("g") == 5 and twin.snapshot() == b.snapshot()
    bad = b.snapshot()
    bad["targets"] = [["g", 11]]  # beyond the group's own range
    with pytest.raises(SnapshotError, match=r"targets\['g'\] must be a batch size in \[1, 10\]"):
        make(ManualClock()).load_snapshot(bad)
