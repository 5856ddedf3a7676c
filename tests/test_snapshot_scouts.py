"""Snapshot and restore of the tasks the gates refused, while their scouts are out.

When a gate opens, the first task of each class of gate-refused tasks (its
scout) goes back to the queue; each keeps its ticket, which orders it among
the tasks refused with it. A snapshot taken while scouts are out must keep
their order among themselves too, or the restored twin sends them back in
another order once the gates refuse them again.
"""

from __future__ import annotations

import json
from typing import Any

from taskdist import (
    Distributor,
    Event,
    ManualClock,
    PoolGate,
    PriorityQueue,
    ResourcePool,
    Task,
    Worker,
)


def _parts(clock: ManualClock) -> dict[str, Any]:
    return {"queue": PriorityQueue(clock), "gates": [PoolGate(ResourcePool("db", size=1))]}


def _seen(events: list[Event], since: int) -> list[tuple[str, Any]]:
    return [(e.kind.value, e.task_id) for e in events[since:]]


def _restored(snapshot: Any, now: float) -> tuple[Distributor, list[Event]]:
    """A twin restored from ``snapshot`` at ``now``, and the events it will emit."""
    clock = ManualClock(start=now)
    events: list[Event] = []
    return Distributor.restore(snapshot, clock, on_event=events.append, **_parts(clock)), events


def test_scouts_out_at_a_snapshot_keep_their_order_among_themselves() -> None:
    clock = ManualClock()
    events: list[Event] = []
    d = Distributor(clock, lease=None, on_event=events.append, **_parts(clock))
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("free"))  # asks nothing of the pool: no walk stops at it as shut
    d.submit(Task("x", resources={"db": 1}))
    d.dispatch()  # x holds the pool's one unit
    d.submit(Task("b", tenant="B", priority=2, resources={"db": 1}))
    d.dispatch()  # b refused first,
    d.submit(Task("a", tenant="A", priority=1, resources={"db": 1}))
    d.dispatch()  # a second: each a class of its own
    d.complete("x")  # the unit back: both classes' scouts go out, b's first
    snapshot = json.loads(json.dumps(d.snapshot()))
    assert [task_id for task_id, _ in snapshot["gate_scouts"]] == ["b", "a"]
    twin, twin_events = _restored(snapshot, clock.now())
    seen = []
    for run, heard in ((d, events), (twin, twin_events)):
        since = len(heard)
        run.submit(Task("y", priority=0, resources={"db": 1}))
        run.dispatch()  # y takes the unit; a (more urgent), then b, refused again
        run.complete("y")  # the unit back: the scouts go out by their tickets, b's first
        seen.append(_seen(heard, since))
    assert seen[0][-3:-1] == [("unparked", "b"), ("unparked", "a")]
    assert seen[1] == seen[0]
    assert json.loads(json.dumps(twin.snapshot())) == json.loads(json.dumps(d.snapshot()))


def test_a_task_refused_after_a_restore_comes_after_the_scouts_out() -> None:
    clock = ManualClock()
    events: list[Event] = []
    d = Distributor(clock, lease=None, on_event=events.append, **_parts(clock))
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("free"))
    d.submit(Task("x", resources={"db": 1}))
    d.dispatch()  # x holds the pool's one unit
    d.submit(Task("s", priority=2, resources={"db": 1}))
    d.dispatch()  # s refused
    d.complete("x")  # the unit back: s goes out as its class's scout, none parked
    snapshot = json.loads(json.dumps(d.snapshot()))
    assert snapshot["gate_scouts"] == [["s", 0]] and snapshot["parked"] == []
    twin, twin_events = _restored(snapshot, clock.now())
    seen = []
    for run, heard in ((d, events), (twin, twin_events)):
        since = len(heard)
        run.submit(Task("y", priority=0, resources={"db": 1}))
        run.submit(Task("n", priority=1, resources={"db": 1}))
        run.dispatch()  # y takes the unit; n refused for the first time, then s again
        run.complete("y")  # the unit back: s was refused first, so its class goes first
        seen.append(_seen(heard, since))
    assert seen[0][-3:-1] == [("unparked", "s"), ("unparked", "n")]
    assert seen[1] == seen[0]
