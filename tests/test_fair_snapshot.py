"""A FairScheduler restored from its snapshot makes the decisions the original makes.

Hypothesis runs random operations (pushes with priorities, costs and TTLs,
pops with and without a predicate, releases, removals, expiries, weight
changes, clock steps) on a FairScheduler with quotas, plans, a rate bucket
and a bypass lane, snapshots it, loads the snapshot (through JSON) into a new
scheduler built alike on its own clock, then runs the same operations on
both: every result, ``stats()``, ``next_wakeup()`` and the snapshots
themselves must agree. Corrupted snapshots are refused with
``SnapshotError`` and leave the new scheduler as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from test_snapshot import as_json, removed, replaced

from taskdist import (
    DeadlineScheduler,
    FairScheduler,
    ManualClock,
    Priority,
    PriorityQueue,
    Quota,
    SnapshotError,
    Task,
    TaskdistError,
)

TENANTS = ("a", "b", "c", ("t", 1), None)
TASK_IDS = tuple(range(12))


def aware(clock: ManualClock, **changes: Any) -> FairScheduler:
    """The deadline-aware configuration, with ``changes`` to it."""
    options: dict[str, Any] = {
        "deadline_aware": True,
        "max_lead": 3.0,
        "weights": {"a": 2.0},
        "quotas": {"b": Quota(max_concurrent=2)},
        "critical_bypass": True,
    }
    return FairScheduler(clock, **{**options, **changes})


CONFIGS: dict[str, Callable[[ManualClock], FairScheduler]] = {
    "quotas": lambda clock: FairScheduler(
        clock,
        weights={"a": 2.0},
        quotas={"b": Quota(max_concurrent=2, rate=2, per=3.0)},
        plans={"free": Quota(rate=1, per=2.0, max_queued=4), "pro": Quota(weight=3.0)},
        tenant_plan={"c": "free", ("t", 1): "pro"},
        critical_bypass=True,
    ),
    "strict": lambda clock: FairScheduler(
        clock,
        weights=dict.fromkeys(TENANTS, 1.0),
        quotas={"a": Quota(max_concurrent=1)},
        strict_tenants=True,
        inner=lambda c: PriorityQueue(c, aging_rate=0.5, maxsize=4, overflow="drop_lowest"),
    ),
    "nested": lambda clock: FairScheduler(
        clock,
        quotas={"a": Quota(rate=1, per=1.0)},
        # Key 0's bucket outlives its tenant's record: kept with its scheduler.
        inner=lambda c, tenant: FairScheduler(
            c, tenant_of=lambda t: t.key, quotas={0: Quota(rate=1, per=2.0)}
        ),
    ),
    "deadline-aware": lambda clock: aware(clock),
    "deadline-aware over EDF": lambda clock: FairScheduler(
        clock,
        deadline_aware=True,
        inner=lambda c: DeadlineScheduler(c, on_miss="run_late"),
    ),
}


def task_of(
    task_id: int,
    tenant: Hashable,
    priority: int,
    cost: float,
    ttl: float | None,
    deadline: float | None = None,
) -> Task:
    return Task(
        task_id,
        tenant=tenant,
        key=task_id % 2,
        priority=Priority(priority),
        cost=cost,
        ttl=ttl,
        deadline=deadline,
        payload={"n": task_id},
    )


def deadline_of(task_id: int, now: float) -> float | None:
    """Two tasks in three have a deadline, some of them tight (for the deadline index)."""
    return None if task_id % 3 == 0 else now + 1.0 + 2.5 * (task_id % 4)


pushes = st.tuples(
    st.just("push"),
    st.sampled_from(TASK_IDS),
    st.sampled_from(TENANTS),
    st.sampled_from([int(p) for p in Priority]),
    st.sampled_from([0.0, 1.0, 2.5, 7.0]),
    st.sampled_from([None, None, 2.0, 5.0]),
)
pops = st.tuples(st.just("pop"), st.sampled_from([None, 0, 1]))
operations = st.one_of(
    pushes,
    pushes,
    pops,
    pops,
    st.tuples(st.just("peek"), st.sampled_from([None, 0, 1])),
    st.tuples(st.just("release"), st.sampled_from(TASK_IDS)),
    st.tuples(st.just("remove"), st.sampled_from(TASK_IDS)),
    st.tuples(st.just("expire")),
    st.tuples(st.just("set_weight"), st.sampled_from(TENANTS), st.sampled_from([None, 0.5, 4.0])),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.5, 1.0, 3.0])),
)


def apply(clock: ManualClock, fair: FairScheduler, handed: dict[Hashable, Task], op: Any) -> Any:
    """Run ``op``; what it returned (tasks as plain values), or the error's type."""
    kind, *args = op
    try:
        if kind == "push":
            task = task_of(*args, deadline=deadline_of(args[0], clock.now()))
            return fair.push(task)
        if kind in ("pop", "peek"):
            key = args[0]
            where = None if key is None else (lambda t: t.key == key)
            task = fair.pop(where) if kind == "pop" else fair.peek(where)
            if task is not None and kind == "pop":
                handed[task.id] = task
            return task
        if kind == "release":
            fair.release(handed.pop(args[0]))
            return None
        if kind == "remove":
            return fair.remove(args[0])
        if kind == "expire":
            return fair.expire()
        if kind == "set_weight":
            fair.set_weight(args[0], args[1])
            return None
        clock.advance(args[0])
        return None
    except (TaskdistError, KeyError) as error:
        return type(error).__name__


# Every tenant busy, some served: tags apart, a debt to keep once a tenant leaves.
WARM_UP = [
    *(("push", i, TENANTS[i % 5], 2, 1.0 + i % 3, None) for i in range(8)),
    *(("pop", None) for _ in range(4)),
    ("release", 3),  # its tenant's only task: the tenant leaves, with a debt
    ("release", 0),
    ("remove", 5),  # "a" leaves unserved: a nested scheduler of its own is kept, owing
]
# Then every queued task dispatched: the busy period ends, what was kept owing lapses.
DRAIN = [("pop", None)] * len(TASK_IDS)


def observed(fair: FairScheduler) -> Any:
    waiting = []
    for task_id in TASK_IDS:
        if task_id in fair:
            waiting.append(fair.why_waiting(task_id))
    return fair.stats(), fair.next_wakeup(), len(fair), waiting, fair.virtual_time


@pytest.mark.parametrize("config", sorted(CONFIGS))
@given(
    before=st.lists(operations, min_size=5, max_size=40),
    after=st.lists(operations, min_size=5, max_size=30),
    warm=st.sampled_from([(), WARM_UP, WARM_UP + DRAIN]),
)
def test_restored_fair_scheduler_makes_the_same_decisions(
    config: str, before: list[Any], after: list[Any], warm: list[Any]
) -> None:
    clock = ManualClock(start=100.0)
    fair = CONFIGS[config](clock)
    handed: dict[Hashable, Task] = {}
    for op in [*warm, *before]:
        apply(clock, fair, handed, op)
    snapshot = as_json(fair.snapshot())
    event(f"snapshot with idle tenants kept: {bool(snapshot['idle'][0] or snapshot['idle'][1])}")
    event(f"snapshot with tasks running: {bool(snapshot['running'])}")
    kept = snapshot.get("idle_queues", [])
    lapsed = fair._idle.owing_lapsed(fair._virtual, fair._busy_periods)
    event(f"nested schedulers kept: {bool(kept)}, to start level: {lapsed}")
    event(f"snapshot with a stalled tenant: {any(t['stalled'] for t in snapshot['tenants'])}")
    if "deadlines" in snapshot:
        held = snapshot["deadlines"]["held"]
        event(f"deadline index: {bool(held)}, a task late: {any(late for _, late in held)}")
    twin_clock = ManualClock(start=clock.now())
    twin = CONFIGS[config](twin_clock)
    twin.load_snapshot(snapshot)
    twin_handed = dict(handed)
    assert as_json(twin.snapshot()) == snapshot  # nothing lost or changed on the way
    assert observed(twin) == observed(fair)
    for op in after:
        assert apply(twin_clock, twin, twin_handed, op) == apply(clock, fair, handed, op), op
        assert observed(twin) == observed(fair), op
    assert as_json(twin.snapshot()) == as_json(fair.snapshot())


# -- refusals ------------------------------------------------------------------------


def busy() -> tuple[dict[str, Any], float]:
    """A snapshot of a scheduler with queued, running, rate-held and idle tenants."""
    clock = ManualClock(start=10.0)
    fair = CONFIGS["quotas"](clock)
    for i, tenant in enumerate(("a", "b", "c", "c", "b", "a", None, "b")):
        critical = 0 if i in (4, 7) else 2
        fair.push(task_of(i, tenant, critical, 3.0 if i == 6 else 1.0, 5.0 if i == 1 else None))
    running = {task.id: task for task in (fair.pop() for _ in range(5)) if task is not None}
    fair.release(running[6])  # tenant None leaves, idle with its debt
    fair.push(task_of(8, "b", 0, 1.0, None))  # b is at max_concurrent: held in the lane
    snapshot = as_json(fair.snapshot())
    assert snapshot["running"] and snapshot["queued"] and snapshot["blocked"]
    assert snapshot["idle"][0] and snapshot["bypass"]["held"]
    return snapshot, clock.now()


CORRUPTIONS = {
    "future version": replaced(("version",), 2),
    "inner queue from the future": replaced(("tenants", 0, "queue", "version"), 99),
    "not a dict": lambda s: s.clear(),
    "unknown field": replaced(("surprise",), 1),
    "field removed": removed(("virtual",)),
    "tenant field removed": removed(("tenants", 0, "start")),
    "inner queue field removed": removed(("tenants", 0, "queue", "next_seq")),
    "wrong type": replaced(("virtual",), "0"),
    "float tag": replaced(("tenants", 0, "start"), 1.5),
    "wrong type deep": replaced(("tenants", 0, "stalled"), 1),
    "horizon behind the virtual time": replaced(("horizon",), -1),
    "another configuration": replaced(("default_weight",), 3.0),
    "another plan": replaced(("plans", 0, 1, "rate"), 5.0),
    "bad weight": replaced(("weights", 0, 1), 0.0),
    "unknown plan": replaced(("tenant_plan", 0, 1), "gold"),
    "queued task no queue holds": replaced(("queued",), []),
    "queued task of another tenant": replaced(("queued", 0, 1), "zzz"),
    "running task also queued": replaced(("running", 0, 0), 1),
    "rate bucket of another rate": replaced(("tenants", 1, "limiter", "rate"), 9.0),
    "heap naming no record": replaced(("eligible", 0, 0), "zzz"),
    "idle tenant with a record": replaced(("idle", 0, 0, 0), "a"),
    "bypass lane missing": replaced(("bypass",), None),
}


def test_the_corruptions_hit_what_they_mean_to() -> None:
    snapshot, _ = busy()
    assert snapshot["tenants"][0]["tenant"] == "a"
    assert snapshot["tenants"][1]["tenant"] == "b" and snapshot["tenants"][1]["limiter"]
    assert snapshot["running"][0][0] != 1 and [1, "b", 15.0] in snapshot["queued"]


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupted_snapshot_is_refused_and_changes_nothing(corruption: str) -> None:
    snapshot, now = busy()
    CORRUPTIONS[corruption](snapshot)
    clock = ManualClock(start=now)
    fresh = CONFIGS["quotas"](clock)
    before = as_json(fresh.snapshot())
    with pytest.raises(SnapshotError, match="cannot restore the snapshot"):
        fresh.load_snapshot(snapshot)
    assert as_json(fresh.snapshot()) == before
    assert fresh.stats() == CONFIGS["quotas"](clock).stats()


def test_the_untouched_snapshot_loads() -> None:
    snapshot, now = busy()
    clock = ManualClock(start=now)
    fair = CONFIGS["quotas"](clock)
    fair.load_snapshot(copy.deepcopy(snapshot))
    assert as_json(fair.snapshot()) == snapshot


def test_only_a_new_scheduler_loads_a_snapshot() -> None:
    snapshot, now = busy()
    clock = ManualClock(start=now)
    fair = CONFIGS["quotas"](clock)
    fair.push(Task("stray"))
    fair.remove("stray")  # empty again, but its virtual time and history moved on
    fair.push(Task("stray"))
    with pytest.raises(SnapshotError, match="new, empty FairScheduler"):
        fair.load_snapshot(snapshot)
    assert len(fair) == 1


def test_an_inner_queue_without_snapshot_support_is_named() -> None:
    class Plain(PriorityQueue):
        snapshot = None  # type: ignore[assignment]

    fair = FairScheduler(ManualClock(), inner=lambda c: Plain(c))
    fair.push(Task(1, tenant="a"))
    with pytest.raises(SnapshotError, match="Plain"):
        fair.snapshot()


def aware_snapshot() -> tuple[dict[str, Any], float]:
    """A deadline-aware scheduler's snapshot, with late and timely tasks in its index."""
    clock = ManualClock(start=10.0)
    fair = CONFIGS["deadline-aware"](clock)
    for i, deadline in enumerate([11.0, 12.0, 11.5, 30.0, 31.0, 32.0]):
        fair.push(task_of(i, "ab"[i % 2], 2, 2.0, None, deadline=deadline))
    fair.pop()
    clock.advance(0.5)
    fair.pop()  # the index settles: the tightest deadlines can no longer be met
    snapshot = as_json(fair.snapshot())
    held = snapshot["deadlines"]["held"]
    assert any(late for _, late in held) and not all(late for _, late in held)
    return snapshot, clock.now()


def test_a_deadline_index_loads_only_into_a_scheduler_configured_alike() -> None:
    snapshot, now = aware_snapshot()
    plain = aware(ManualClock(start=now), deadline_aware=False, max_lead=None)
    with pytest.raises(SnapshotError, match="deadlines is a deadline index"):
        plain.load_snapshot(snapshot)
    other_lead = aware(ManualClock(start=now), max_lead=9.0)
    with pytest.raises(SnapshotError, match="max_lead"):
        other_lead.load_snapshot(snapshot)
    unaware = as_json(aware(ManualClock(), deadline_aware=False, max_lead=None).snapshot())
    expecting = aware(ManualClock(start=now))
    with pytest.raises(SnapshotError, match="no field 'deadlines'"):
        expecting.load_snapshot(unaware)
    for fair in (plain, other_lead, expecting):
        assert len(fair) == 0 and fair.virtual_time == 0


@pytest.mark.parametrize(
    ("corrupt", "named"),
    [
        (lambda held: held.append(held[0]), "not a queued task with a deadline"),
        (lambda held: held.append([99, False]), "not a queued task with a deadline"),
        (lambda held: held[0].__setitem__(1, "yes"), "must be \\[task id, late\\]"),
    ],
)
def test_a_corrupted_deadline_index_is_refused(corrupt: Callable[[Any], None], named: str) -> None:
    snapshot, now = aware_snapshot()
    corrupt(snapshot["deadlines"]["held"])
    fair = CONFIGS["deadline-aware"](ManualClock(start=now))
    with pytest.raises(SnapshotError, match=named):
        fair.load_snapshot(snapshot)
    assert len(fair) == 0
