"""The gangs' configuration travels in a Distributor's snapshot (format version 2), and a
snapshot of version 1, written before it did, still loads; a gang's retry timer
travels since version 4."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from distributor_support import as_version
from test_policies_gangs import rate_refused_gang

from taskdist import (
    Distributor,
    FairScheduler,
    Gangs,
    ManualClock,
    Reason,
    SnapshotError,
    Task,
    TaskState,
    Worker,
)
from taskdist.threaded import ThreadSafeDistributor


def snapshot_of(gangs: Gangs | None) -> dict[str, Any]:
    clock = ManualClock()
    d = Distributor(clock, gangs=gangs)
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("t"))
    d.dispatch()
    clock.advance(1.0)
    snapshot: dict[str, Any] = json.loads(json.dumps(d.snapshot()))
    return snapshot


def gang_timeout_of(d: Distributor, clock: ManualClock) -> float:
    """How long a gang that cannot be completed waits before it is dead-lettered."""
    d.submit(Task("g1", gang="g", gang_size=2))
    start = clock.now()
    while d.state_of("g1") is not TaskState.DEAD:
        clock.advance(5.0)
        d.tick()
    assert d.dlq.get("g1").reason is Reason.GANG_TIMEOUT
    return clock.now() - start


def test_the_gangs_timeout_travels_in_the_snapshot() -> None:
    snapshot = snapshot_of(Gangs(timeout=20.0))
    assert snapshot["version"] == 7 and snapshot["gangs"] == {"timeout": 20.0}
    clock = ManualClock(start=1.0)
    d = Distributor.restore(copy.deepcopy(snapshot), clock)
    assert gang_timeout_of(d, clock) == 20.0
    assert d.snapshot()["gangs"] == {"timeout": 20.0}


def test_restore_takes_gangs_configured_alike_and_refuses_others_by_name() -> None:
    snapshot = snapshot_of(Gangs(timeout=20.0))
    clock = ManualClock(start=1.0)
    d = Distributor.restore(copy.deepcopy(snapshot), clock, gangs=Gangs(timeout=20.0))
    assert gang_timeout_of(d, clock) == 20.0
    with pytest.raises(SnapshotError, match=r"snapshot\.gangs\.timeout is 20\.0; .* 45\.0"):
        Distributor.restore(copy.deepcopy(snapshot), clock, gangs=Gangs(timeout=45.0))
    wrapped = ThreadSafeDistributor.restore(snapshot, clock, gangs=Gangs(timeout=20.0))
    assert wrapped.state_of("t") is TaskState.LEASED


def version_1(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot as a taskdist that did not carry the gangs (nor routes, batches
    or the backfill reservation) wrote it."""
    return as_version(snapshot, 1)


def test_a_version_1_snapshot_still_loads_with_the_gangs_given_or_the_default() -> None:
    old = version_1(snapshot_of(Gangs(timeout=20.0)))
    clock = ManualClock(start=1.0)
    d = Distributor.restore(copy.deepcopy(old), clock, gangs=Gangs(timeout=35.0))
    assert d.state_of("t") is TaskState.LEASED
    assert gang_timeout_of(d, clock) == 35.0
    clock = ManualClock(start=1.0)
    d = Distributor.restore(copy.deepcopy(old), clock)
    assert gang_timeout_of(d, clock) == Gangs().timeout


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.pop("gangs"), "has no field 'gangs'"),
        # Version 1 knew none of version 2's fields: the first one read is refused.
        (lambda s: s.update(version=1), r"unknown fields \['(batch|gangs)'"),
        (
            lambda s: s.update(version=8),
            "format version 8; this taskdist reads versions 1, 2, 3, 4, 5, 6, 7",
        ),
        (lambda s: s.update(gangs={"timeout": -1.0}), r"snapshot\.gangs\.timeout is not valid"),
        (lambda s: s.update(gangs={"timeout": "soon"}), r"snapshot\.gangs\.timeout"),
        (lambda s: s.update(gangs={"timeout": 5.0, "size": 2}), "unknown fields"),
        (lambda s: s.update(gangs=[5.0]), "must be a dict"),
    ],
)
def test_a_snapshot_with_a_bad_gangs_part_is_refused(change: Any, match: str) -> None:
    snapshot = snapshot_of(None)
    change(snapshot)
    with pytest.raises(SnapshotError, match=match):
        Distributor.restore(snapshot, ManualClock(start=1.0))


def test_a_gang_retry_timer_in_a_version_3_snapshot_is_refused() -> None:
    # Version 4 added the timer: an older snapshot naming one is not one we wrote.
    d, clock = rate_refused_gang()
    snapshot = json.loads(json.dumps(d.snapshot()))
    assert [t[0] for t in snapshot["timers"]] == ["gang retry", "gang"]
    snapshot = as_version(snapshot, 3)
    with pytest.raises(SnapshotError, match=r"gang retry timer, which version 3 has not"):
        Distributor.restore(snapshot, clock, queue=FairScheduler(clock))
