"""Snapshot and restore: a restored Distributor makes the decisions the original makes.

Hypothesis runs random operations on a Distributor (aging priority queue
with TTLs and a bound, skills, slow start and outlier ejection, seeded
jittered retries, a balancer that keeps state (a seeded ``PowerOfTwoChoices``,
``RoundRobin``, ``WeightedRoundRobin`` or ``Affinity`` over a seeded
``PowerOfTwoChoices``), gates (a pool, a rate limit, a rate limit per tenant
under a cap on keys, adaptive concurrency fed by throttles), escalation,
preemption advice, leases, a dedup window), snapshots it, restores the snapshot (through JSON)
into a fresh distributor on its own clock, then runs the same random
operations on both: every result, every event and ``stats()`` must agree,
and so must their snapshots at the end. Corrupted snapshots are refused
with ``SnapshotError`` and build nothing; a lease outlives its dead host.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import attrs
import pytest
from distributor_support import (
    as_version,
    assignment_view,
    comparable,
    one_probe_breakers,
    stats_view,
    with_a_probe_out,
)
from gate_support import CountingGate
from hypothesis import event, given
from hypothesis import strategies as st
from test_distributor_machine import TASK_IDS, TENANTS, WORKER_IDS

from taskdist import (
    AdaptiveConcurrency,
    Affinity,
    AIMDSizing,
    AllGates,
    AttemptRecord,
    Backfill,
    BatchOptimizer,
    CapacityTracker,
    CircuitBreaker,
    CircuitState,
    ConcurrencyLimit,
    DeadLetterQueue,
    DeadlineScheduler,
    Debounce,
    Distributor,
    Escalation,
    Event,
    EventKind,
    FairScheduler,
    Gangs,
    Health,
    KeyedRateGate,
    KeyedRateLimiter,
    KeyShare,
    ManualClock,
    Pool,
    PoolGate,
    PowerOfTwoChoices,
    Preemption,
    Priority,
    PriorityQueue,
    Quota,
    RateGate,
    RateLimiter,
    Reason,
    Reservation,
    ResourcePool,
    RetryBudget,
    RetryPolicy,
    RoundRobin,
    Route,
    SlowStart,
    SnapshotError,
    Step,
    Task,
    TaskdistError,
    TaskState,
    TaskStateError,
    Throttle,
    WeightedRoundRobin,
    Worker,
)
from taskdist.threaded import ThreadSafeDistributor

LEASE = 10.0


QUEUES: dict[str, Callable[[ManualClock], Any]] = {
    "priority": lambda clock: PriorityQueue(
        clock, aging_rate=0.05, maxsize=12, overflow="drop_lowest"
    ),
    "deadline": lambda clock: DeadlineScheduler(
        clock, servers=2, on_miss="dead_letter", aging_rate=0.5, maxsize=12
    ),
    "fair": lambda clock: FairScheduler(
        clock,
        weights={TENANTS[0]: 2.0},
        quotas={TENANTS[1]: Quota(max_concurrent=1, rate=2, per=3.0)},
        critical_bypass=True,
        inner=lambda c: PriorityQueue(c, aging_rate=0.05),
    ),
    # Each tenant's turns shared among its keys (a scheduler per tenant, restored too).
    "fair, keys": lambda clock: FairScheduler(
        clock,
        weights={TENANTS[0]: 2.0},
        critical_bypass=True,
        inner=KeyShare({"k": 2.0}, quotas={"j": Quota(max_concurrent=1, rate=2, per=3.0)}),
    ),
}


# Each keeps state of its own: a random source, a position, current weights, bindings
# (over a fallback with a random source: a balancer's state nested in another's).
BALANCERS: dict[str, Callable[[int], Any]] = {
    "p2c": lambda seed: PowerOfTwoChoices(rng=random.Random(seed)),
    "round_robin": lambda _: RoundRobin(),
    "weighted": lambda _: WeightedRoundRobin(),
    "affinity": lambda seed: Affinity(PowerOfTwoChoices(rng=random.Random(seed)), max_keys=2),
}


def parts(
    clock: ManualClock, seed: int = 3, queue: str = "priority", balancer: str = "p2c"
) -> dict[str, Any]:
    """Fresh collaborators, configured alike each time (what restore is given again)."""
    return {
        "queue": QUEUES[queue](clock),
        "tracker": CapacityTracker(clock, slow_start=SlowStart(window=6.0)),
        "balancer": BALANCERS[balancer](seed),
        "breaker": lambda _: CircuitBreaker(
            clock, minimum_calls=2, window_size=4, open_duration=7.0
        ),
        "retry": RetryPolicy(max_attempts=3, base=2.0, cap=8.0, rng=random.Random(seed + 1)),
        "dlq": DeadLetterQueue(clock),
        "gates": [
            PoolGate(ResourcePool("db", size=2)),
            RateGate(RateLimiter(rate=2, per=1.0, burst=2, clock=clock), "api_calls"),
            # Three tenants over two keys: the cap evicts, and the order of keys counts.
            KeyedRateGate(
                KeyedRateLimiter(rate=1, per=6.0, burst=1, clock=clock, max_keys=2), "api_calls"
            ),
            AdaptiveConcurrency(clock.now, initial=3, maximum=4, latency_target=2.0),
        ],
        "escalation": Escalation(after=4.0),
        "preemption": Preemption(),
        "retry_budget": RetryBudget(ratio=0.5, minimum=1),
        "intake": [
            ConcurrencyLimit(key=lambda task: task.key, limit=1, strategy="latest_queued"),
            Throttle(key=lambda task: task.group, window=3.0),
            Debounce(key=lambda task: task.zone, window=2.0, keep_payloads=True),
        ],
    }


def original(
    seed: int, queue: str = "priority", balancer: str = "p2c"
) -> tuple[ManualClock, Distributor, list[Event]]:
    clock = ManualClock()
    events: list[Event] = []
    d = Distributor(
        clock,
        **parts(clock, seed, queue, balancer),
        lease=LEASE,
        dedup_window=5.0,
        max_queued=20,
        stats_window=8,
        on_event=events.append,
    )
    d.add_worker(Worker("w0", capacity=2, weight=2.0))
    d.add_worker(Worker("w1", capacity=1, skills={"gpu"}))
    return clock, d, events


def restored(
    snapshot: object, now: float, queue: str = "priority", balancer: str = "p2c"
) -> tuple[ManualClock, Distributor, list[Event]]:
    """The snapshot restored with collaborators seeded otherwise: what is random
    continues from the snapshot's state, or the decisions part."""
    clock = ManualClock(start=now)
    events: list[Event] = []
    given = parts(clock, seed=99, queue=queue, balancer=balancer)
    d = Distributor.restore(snapshot, clock, **given, on_event=events.append)
    return clock, d, events


# -- random operations -----------------------------------------------------------------

task_ids = st.sampled_from(TASK_IDS[:10])
worker_ids = st.sampled_from(WORKER_IDS)

submits = st.builds(
    lambda i, priority, tenant, skill, ttl, attempts, deadline, resources, tag: (
        "submit",
        Task(
            i,
            priority=priority,
            tenant=tenant,
            key=tag if tag in ("k", "j", "h") else None,
            group=tag if tag == "g" else None,
            zone=tag if tag == "z" else None,
            payload=i,
            requires={skill} if skill else set(),
            resources=resources,
            ttl=ttl,
            max_attempts=attempts,
            deadline=deadline,
        ),
    ),
    task_ids,
    st.integers(0, 4),
    st.sampled_from(TENANTS),
    st.sampled_from([None, None, "gpu"]),
    st.sampled_from([None, None, 6.0]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from([None, None, 9.0, 30.0, 1e6]),
    st.sampled_from([{}, {}, {"db": 1}, {"api_calls": 1}]),
    st.sampled_from([None, None, "k", "j", "h", "g", "z"]),
)
dispatches = st.tuples(st.just("dispatch"), st.sampled_from([None, None, 1]))
# A leased task, by its place among the leases (or an id, to try the refusals too).
leased = st.one_of(st.integers(0, 5), task_ids)
completes = st.tuples(st.just("complete"), leased, st.sampled_from([None, 0.5, 3.0]))
fails = st.tuples(st.just("fail"), leased, st.booleans())
throttles = st.tuples(st.just("throttle"), leased, st.sampled_from([None, 1.0, 5.0]))
# The life of tasks three times out of four; the rest: workers, time, the host's overrides.
lifecycle = st.one_of(
    submits,
    dispatches,
    completes,
    fails,
    throttles,
    st.tuples(st.just("advance"), st.sampled_from([0.3, 1.0, 4.0, 12.0])),
)
overrides = st.one_of(
    st.tuples(st.just("heartbeat"), leased),
    st.tuples(st.just("cancel"), task_ids),
    st.tuples(st.just("requeue"), leased),
    st.tuples(st.just("reprioritize"), task_ids, st.integers(0, 4)),
    st.tuples(st.just("tick")),
    st.tuples(st.just("add_worker"), worker_ids, st.integers(0, 2), st.booleans()),
    st.tuples(st.just("remove_worker"), worker_ids),
    st.tuples(st.just("set_health"), worker_ids, st.sampled_from(list(Health))),
    st.tuples(st.just("pause"), st.sampled_from(TENANTS)),
    st.tuples(st.just("resume"), st.sampled_from(TENANTS)),
    st.tuples(st.just("pin"), task_ids, worker_ids),
)
operations = st.integers(0, 3).flatmap(lambda i: overrides if i == 0 else lifecycle)


LEASE_OPERATIONS = ("complete", "fail", "throttle", "heartbeat", "requeue")


def apply(clock: ManualClock, d: Distributor, op: tuple[Any, ...]) -> Any:
    """Run one operation; what it returned (as a host sees it) or what it raised."""
    name, *args = op
    if name in LEASE_OPERATIONS and type(args[0]) is int:  # the k-th lease, if any
        leases = d.leases()
        args[0] = leases[args[0] % len(leases)].task.id if leases else "none"
    calls: dict[str, Callable[..., Any]] = {
        "submit": lambda task: d.submit(task),
        "dispatch": lambda limit: assignment_view(d.dispatch(limit)),
        "complete": lambda task_id, duration: d.complete(task_id, duration=duration),
        "fail": lambda task_id, retryable: d.fail(task_id, error="boom", retryable=retryable),
        "throttle": lambda task_id, retry_after: d.fail(
            task_id, error="429", throttled=True, retry_after=retry_after
        ),
        "heartbeat": lambda task_id: d.heartbeat(task_id),
        "cancel": lambda task_id: d.cancel(task_id),
        "requeue": lambda task_id: d.requeue(task_id),
        "reprioritize": lambda task_id, priority: d.reprioritize(task_id, priority),
        "advance": lambda dt: clock.advance(dt),
        "tick": lambda: d.tick(),
        "add_worker": lambda worker_id, slots, gpu: (
            d.add_worker(Worker(worker_id, capacity=slots, skills={"gpu"} if gpu else set())).id
        ),
        "remove_worker": lambda worker_id: [t.id for t in d.remove_worker(worker_id)],
        "set_health": lambda worker_id, health: d.set_health(worker_id, health).health,
        "pause": lambda tenant: d.pause(tenant=tenant),
        "resume": lambda tenant: d.resume(tenant=tenant),
        "pin": lambda task_id, worker_id: d.pin(task_id, worker_id),
    }
    try:
        return comparable(calls[name](*args))
    except TaskdistError as error:
        return (type(error).__name__, str(error))


def observed(d: Distributor) -> Any:
    """What a host can see of a distributor between calls."""
    return (
        stats_view(d),
        d.next_wakeup(),
        {task_id: _explained(d, task_id) for task_id in TASK_IDS[:10]},
    )


def _explained(d: Distributor, task_id: Hashable) -> str | None:
    try:
        return d.explain(task_id)
    except TaskdistError:
        return None


def as_json(snapshot: object) -> Any:
    return json.loads(json.dumps(snapshot))


@pytest.mark.parametrize(
    ("queue", "balancer"),
    [
        *((queue, "p2c") for queue in sorted(QUEUES)),
        ("deadline", "round_robin"),
        ("fair", "weighted"),
        ("priority", "affinity"),
    ],
)
@given(
    seed=st.integers(0, 2**16),
    before=st.lists(operations, min_size=10, max_size=40),
    after=st.lists(operations, min_size=5, max_size=25),
    submit_and_dispatch_last=st.booleans(),
)
def test_restored_distributor_makes_the_same_decisions(
    queue: str,
    balancer: str,
    seed: int,
    before: list[tuple[Any, ...]],
    after: list[tuple[Any, ...]],
    submit_and_dispatch_last: bool,
) -> None:
    clock, d, events = original(seed, queue, balancer)
    d.add_worker(Worker("w2", capacity=2, weight=0.5))  # rotations and weights to keep
    if submit_and_dispatch_last:  # snapshot with tasks running, most of the time
        before = [*before, ("submit", Task("last")), ("dispatch", None)]
    for op in before:
        apply(clock, d, op)
    snapshot = as_json(d.snapshot())
    for part in ("leases", "retrying", "parked", "escalated", "pins", "finished"):
        event(f"snapshot with {part}: {bool(snapshot[part])}")
    tripped = any(breaker["state"] != "closed" for _, breaker in snapshot["breakers"])
    event(f"snapshot with a breaker not closed: {tripped}")
    event(f"snapshot with tasks held by gates: {bool(snapshot['gates']['held'])}")
    keyed, adaptive = snapshot["gates"]["gates"][2:4]
    event(f"snapshot with rate limit keys: {len(keyed['limiter']['buckets'])}")
    event(f"snapshot with a throttle pause: {adaptive['paused_until'] is not None}")
    twin_clock, twin, twin_events = restored(snapshot, clock.now(), queue, balancer)
    assert as_json(twin.snapshot()) == snapshot  # nothing lost or changed on the way
    assert observed(twin) == observed(d)
    seen = len(events)
    for op in after:
        assert apply(twin_clock, twin, op) == apply(clock, d, op), op
        assert observed(twin) == observed(d), op
    assert comparable(twin_events) == comparable(events[seen:])
    assert as_json(twin.snapshot()) == as_json(d.snapshot())


# -- routes, escalation to a pool, paused pools ------------------------------------------


def _heavy(worker: Any) -> bool:
    """A pool's where= test: module-level, so the restored configuration names the same."""
    return bool(worker.weight >= 1.0)


# The pools a host pauses: a route's (named by place), one that is data, an escalation's.
PAUSABLE = [Pool("gpu", skills={"gpu"}), Pool(zone="z"), Pool("escalated", workers={"w1", "w2"})]


def routed_parts(clock: ManualClock, seed: int) -> dict[str, Any]:
    given = parts(clock, seed)
    given["routes"] = [
        Route(
            when=lambda t: "gpu" in t.requires,
            name="gpu",
            to=[Pool("gpu", skills={"gpu"}), Step(Pool("any"), after=3.0)],
        ),
        Route(
            when=lambda t: t.tenant == TENANTS[1],
            name="tenant",
            to=[Pool("w0", workers={"w0"}), Step(Pool("heavy", where=_heavy), after=2.0)],
        ),
    ]
    given["escalation"] = Escalation(after=4.0, to=PAUSABLE[2])
    return given


pool_operations = st.one_of(
    st.tuples(st.just("pause_pool"), st.integers(0, len(PAUSABLE) - 1)),
    st.tuples(st.just("resume_pool"), st.integers(0, len(PAUSABLE) - 1)),
)
routed_operations = st.integers(0, 5).flatmap(
    lambda i: pool_operations if i == 0 else overrides if i == 1 else lifecycle
)


def apply_routed(clock: ManualClock, d: Distributor, op: tuple[Any, ...]) -> Any:
    name, *args = op
    if name == "pause_pool":
        return d.pause(pool=PAUSABLE[args[0]])
    if name == "resume_pool":
        try:
            return d.resume(pool=PAUSABLE[args[0]])
        except TaskdistError as error:
            return (type(error).__name__, str(error))
    return apply(clock, d, op)


@given(
    seed=st.integers(0, 2**16),
    before=st.lists(routed_operations, min_size=10, max_size=40),
    after=st.lists(routed_operations, min_size=5, max_size=25),
)
def test_routes_escalations_and_paused_pools_survive_a_restore(
    seed: int, before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    clock = ManualClock()
    events: list[Event] = []
    d = Distributor(
        clock, **routed_parts(clock, seed), lease=LEASE, dedup_window=5.0, on_event=events.append
    )
    d.add_worker(Worker("w0", capacity=2, weight=2.0))
    d.add_worker(Worker("w1", capacity=1, skills={"gpu"}, zone="z"))
    for op in before:
        apply_routed(clock, d, op)
    snapshot = as_json(d.snapshot())
    for part in ("routed", "sent", "paused_pools"):
        event(f"snapshot with {part}: {bool(snapshot[part])}")
    event(f"a step timer pending: {any(t[0] == 'step' for t in snapshot['timers'])}")
    twin_clock = ManualClock(start=clock.now())
    twin_events: list[Event] = []
    twin = Distributor.restore(
        snapshot, twin_clock, **routed_parts(twin_clock, 99), on_event=twin_events.append
    )
    assert as_json(twin.snapshot()) == snapshot
    assert observed(twin) == observed(d)
    seen = len(events)
    for op in after:
        assert apply_routed(twin_clock, twin, op) == apply_routed(clock, d, op), op
        assert observed(twin) == observed(d), op
    assert comparable(twin_events) == comparable(events[seen:])


def test_a_paused_pool_that_tests_code_of_its_own_is_refused_by_name() -> None:
    clock = ManualClock()
    d = Distributor(clock)
    d.pause(pool=Pool("odd", where=lambda worker: True))
    with pytest.raises(SnapshotError, match="'odd' tests where="):
        d.snapshot()


def test_a_snapshot_naming_a_route_or_pool_restore_was_not_given_is_refused() -> None:
    clock = ManualClock()
    d = Distributor(clock, **routed_parts(clock, 1), lease=LEASE)
    d.add_worker(Worker("w0", capacity=1))
    d.submit(Task("t", requires={"gpu"}))
    d.dispatch()  # parked: no worker has the skill; it waits on the gpu route's step 0
    d.pause(pool=PAUSABLE[2])
    snapshot = as_json(d.snapshot())
    assert snapshot["routed"] == [["t", 0, 0]]
    assert snapshot["paused_pools"] == [{"known": 4, "label": "'escalated'"}]
    for path, value, match in [
        (("routed", 0, 1), 5, r"names route 5; restore\(\) was given 2 routes"),
        (("routed", 0, 2), 2, "names step 2 of route 0"),
        (("paused_pools", 0, "known"), 9, "names pool 9"),
        (("paused_pools", 0, "known"), 0, "is 'gpu' there, not 'escalated'"),
        (("paused_pools", 0), {"pool": {"name": 1}}, "paused_pools"),
    ]:
        broken = copy.deepcopy(snapshot)
        replaced(path, value)(broken)
        fresh = ManualClock(start=clock.now())
        with pytest.raises(SnapshotError, match=match):
            Distributor.restore(broken, fresh, **routed_parts(fresh, 1))
    fresh = ManualClock(start=clock.now())
    given = routed_parts(fresh, 1)
    given["routes"] = given["routes"][:1]  # a route fewer: the escalation's pool moves up
    with pytest.raises(SnapshotError, match="names pool 4"):
        Distributor.restore(snapshot, fresh, **given)
    fresh = ManualClock(start=clock.now())
    twin = Distributor.restore(snapshot, fresh, **routed_parts(fresh, 1))
    assert twin.explain("t") == d.explain("t")


# -- gangs waiting for members or room ----------------------------------------------------

GANG_MEMBERS = [f"m{i}" for i in range(8)]

gang_submits = st.builds(
    lambda i, gang, gpu, tenant: (
        "submit",
        Task(
            GANG_MEMBERS[i],
            gang=gang,
            gang_size=2 if gang == "pair" else 3,
            requires={"gpu"} if gpu else set(),
            tenant=tenant,
        ),
    ),
    st.integers(0, len(GANG_MEMBERS) - 1),
    st.sampled_from(["pair", "trio"]),
    st.booleans(),
    # Under the fair queue bob may run one at a time, two a three seconds: a gang with
    # two of his is refused at submit, one with one may wait for his rate quota.
    st.sampled_from([None, *TENANTS]),
)
gang_operations = st.integers(0, 4).flatmap(
    lambda i: gang_submits if i < 2 else overrides if i == 2 else lifecycle
)


def observed_with_members(d: Distributor) -> Any:
    return (observed(d), {m: _explained(d, m) for m in GANG_MEMBERS})


@pytest.mark.parametrize("queue", ["priority", "fair"])
@given(
    seed=st.integers(0, 2**16),
    before=st.lists(gang_operations, min_size=10, max_size=40),
    after=st.lists(gang_operations, min_size=5, max_size=25),
)
def test_gangs_waiting_for_members_or_room_survive_a_restore(
    queue: str, seed: int, before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    clock = ManualClock()
    events: list[Event] = []
    gangs = Gangs(timeout=15.0)
    d = Distributor(
        clock, **parts(clock, seed, queue), gangs=gangs, lease=LEASE, on_event=events.append
    )
    d.add_worker(Worker("w0", capacity=2))
    d.add_worker(Worker("w1", capacity=1, skills={"gpu"}))
    for op in before:
        apply(clock, d, op)
    snapshot = as_json(d.snapshot())
    event(f"snapshot with a gang waiting: {bool(snapshot['waiting_gangs'])}")
    event(
        "snapshot with a complete gang waiting for room: "
        f"{any(g[3] is not None for g in snapshot['waiting_gangs'])}"
    )
    twin_clock = ManualClock(start=clock.now())
    twin_events: list[Event] = []
    twin = Distributor.restore(
        snapshot,
        twin_clock,
        **parts(twin_clock, 99, queue),
        gangs=gangs,
        on_event=twin_events.append,
    )
    assert as_json(twin.snapshot()) == snapshot
    assert observed_with_members(twin) == observed_with_members(d)
    seen = len(events)
    for op in after:
        assert apply(twin_clock, twin, op) == apply(clock, d, op), op
        assert observed_with_members(twin) == observed_with_members(d), op
    assert comparable(twin_events) == comparable(events[seen:])


def test_a_snapshot_whose_gangs_disagree_with_its_books_is_refused() -> None:
    clock = ManualClock()
    d = Distributor(clock, lease=LEASE)
    d.add_worker(Worker("w0", capacity=1))
    d.submit(Task("a", gang="g", gang_size=3))
    d.submit(Task("b", gang="g", gang_size=3))
    snapshot = as_json(d.snapshot())
    assert [g[0] for g in snapshot["waiting_gangs"]] == ["g"]
    for path, value, match in [
        (("waiting_gangs", 0, 1), 2, "not of gang 'g' of 2"),
        (("waiting_gangs", 0, 3), 0, "leader's place"),
        (("waiting_gangs", 0, 4), [], "holds 0 members"),
        (("waiting_gangs", 0, 2), 99.0, "no timeout at 99.0 for gang 'g'"),
        (("waiting_gangs", 0, 0), "h", "not of gang 'h'"),
    ]:
        broken = copy.deepcopy(snapshot)
        replaced(path, value)(broken)
        fresh = ManualClock(start=clock.now())
        with pytest.raises(SnapshotError, match=match):
            Distributor.restore(broken, fresh)
    broken = copy.deepcopy(snapshot)
    broken["waiting_gangs"] = []
    fresh = ManualClock(start=clock.now())
    with pytest.raises(SnapshotError, match=r"gang timer|does not park '.' as its gang says"):
        Distributor.restore(broken, fresh)


# -- batches running, and what the batcher learned -----------------------------------------

batch_submits = st.builds(
    lambda i, group: ("submit", Task(f"b{i}", group=group, payload=i)),
    st.integers(0, 9),
    st.sampled_from(["g", "h"]),
)
batch_operations = st.integers(0, 3).flatmap(
    lambda i: batch_submits if i == 0 else overrides if i == 1 else lifecycle
)


def batcher(clock: ManualClock) -> BatchOptimizer:
    return BatchOptimizer(
        clock,
        max_size=3,
        max_wait=0.5,
        sizing=AIMDSizing(target_latency=2.0, initial_size=2),
        stats_window=4,
    )


def observed_with_batches(d: Distributor) -> Any:
    return (observed(d), {f"b{i}": _explained(d, f"b{i}") for i in range(10)})


@given(
    seed=st.integers(0, 2**16),
    before=st.lists(batch_operations, min_size=10, max_size=40),
    after=st.lists(batch_operations, min_size=5, max_size=25),
)
def test_running_batches_and_the_batchers_learning_survive_a_restore(
    seed: int, before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    clock = ManualClock()
    events: list[Event] = []
    d = Distributor(
        clock, **parts(clock, seed), batcher=batcher(clock), lease=LEASE, on_event=events.append
    )
    d.add_worker(Worker("w0", capacity=3))
    d.add_worker(Worker("w1", capacity=2, skills={"gpu"}))
    for op in before:
        apply(clock, d, op)
    snapshot = as_json(d.snapshot())
    event(f"snapshot with a batch running: {bool(snapshot['batches'])}")
    event(f"snapshot with a batch size learned: {bool(snapshot['batcher']['targets'])}")
    twin_clock = ManualClock(start=clock.now())
    twin_events: list[Event] = []
    twin = Distributor.restore(
        snapshot,
        twin_clock,
        **parts(twin_clock, 99),
        batcher=batcher(twin_clock),
        on_event=twin_events.append,
    )
    assert as_json(twin.snapshot()) == snapshot
    assert observed_with_batches(twin) == observed_with_batches(d)
    # The counts that tell the joiner whether more of a group waits (derived on restore).
    assert (twin._group_live, twin._group_leased) == (d._group_live, d._group_leased)
    seen = len(events)
    for op in after:
        assert apply(twin_clock, twin, op) == apply(clock, d, op), op
        assert observed_with_batches(twin) == observed_with_batches(d), op
    assert comparable(twin_events) == comparable(events[seen:])


def test_a_snapshot_with_batches_needs_a_batcher_and_agreeing_leases() -> None:
    clock = ManualClock()
    d = Distributor(clock, batcher=batcher(clock), lease=LEASE)
    d.add_worker(Worker("w0", capacity=3))
    for i in range(2):  # the batcher's first target size: one batch of two
        d.submit(Task(f"b{i}", group="g"))
    assert [a.batch for a in d.dispatch()] == [0, 0]
    snapshot = as_json(d.snapshot())
    fresh = ManualClock(start=clock.now())
    with pytest.raises(SnapshotError, match="give restore\\(\\) the batcher"):
        Distributor.restore(copy.deepcopy(snapshot), fresh)
    broken = copy.deepcopy(snapshot)
    broken["runs"][0]["batch"] = None
    with pytest.raises(SnapshotError, match="do not say what lease"):
        Distributor.restore(broken, fresh, batcher=batcher(fresh))
    broken = copy.deepcopy(snapshot)
    broken["batches"][0][3] = ["nobody"]
    with pytest.raises(SnapshotError, match="running"):
        Distributor.restore(broken, fresh, batcher=batcher(fresh))


def test_a_snapshot_without_a_batcher_refuses_one_given_to_restore() -> None:
    # As with gates: the twin would batch where the original did not.
    clock = ManualClock()
    d = Distributor(clock, lease=LEASE)
    d.add_worker(Worker("w0", capacity=3))
    d.submit(Task("b0", group="g"))
    snapshot = as_json(d.snapshot())
    fresh = ManualClock(start=clock.now())
    given = batcher(fresh)
    with pytest.raises(SnapshotError, match=r"no batcher.*restore\(\) was given one"):
        Distributor.restore(copy.deepcopy(snapshot), fresh, batcher=given)
    assert given.snapshot() == batcher(fresh).snapshot()  # untouched
    # A snapshot of format 1, written before batchers were carried, takes one.
    Distributor.restore(as_version(snapshot, 1), fresh, batcher=given)


def test_batch_groups_that_are_tuples_survive_a_restore() -> None:
    def keyed(clock: ManualClock) -> BatchOptimizer:
        return BatchOptimizer(clock, max_size=2, max_wait=1.0, key=lambda t: (t.tenant, t.group))

    clock = ManualClock()
    d = Distributor(clock, batcher=keyed(clock), lease=LEASE)
    d.add_worker(Worker("w0", capacity=4))
    for task_id in ("a", "b", "c"):
        d.submit(Task(task_id, tenant="acme", group="g"))
    first = assignment_view(d.dispatch())  # a batch of two runs; c waits in its group
    snapshot = as_json(d.snapshot())
    assert snapshot["batch_groups"][0][1] == {"tuple": ["acme", "g"]}
    twin_clock = ManualClock(start=clock.now())
    twin = Distributor.restore(snapshot, twin_clock, batcher=keyed(twin_clock))
    assert as_json(twin.snapshot()) == snapshot
    assert (twin._group_live, twin._group_leased) == (d._group_live, d._group_leased)
    for run, run_clock in ((d, clock), (twin, twin_clock)):
        run.complete(first[0][0])
        run_clock.advance(2.0)
    assert assignment_view(twin.dispatch()) == assignment_view(d.dispatch())


# -- capacity held for urgent work, and a worker reserved for a large task -------------------

large_submits = st.builds(
    lambda i, priority, slots: (
        "submit",
        Task(f"r{i}", priority=priority, resources={"slots": slots}, cost=float(slots)),
    ),
    st.integers(0, 9),
    st.integers(0, 4),
    st.sampled_from([1, 2, 3]),
)
held_operations = st.integers(0, 4).flatmap(
    lambda i: large_submits if i < 2 else overrides if i == 2 else lifecycle
)


def held_parts(clock: ManualClock, seed: int) -> dict[str, Any]:
    given = parts(clock, seed)
    given["reservations"] = [
        Reservation(priority_at_most=1, share=0.25),
        Reservation(priority_at_most=0, share=0.5, pool=Pool(skills={"gpu"})),
    ]
    given["backfill"] = Backfill()
    return given


def observed_with_held(d: Distributor) -> Any:
    return (observed(d), {f"r{i}": _explained(d, f"r{i}") for i in range(10)})


@given(
    seed=st.integers(0, 2**16),
    before=st.lists(held_operations, min_size=10, max_size=40),
    after=st.lists(held_operations, min_size=5, max_size=25),
)
def test_reservations_and_the_backfill_reservation_survive_a_restore(
    seed: int, before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    clock = ManualClock()
    events: list[Event] = []
    d = Distributor(clock, **held_parts(clock, seed), lease=LEASE, on_event=events.append)
    d.add_worker(Worker("w0", capacity=3))
    d.add_worker(Worker("w1", capacity=2, skills={"gpu"}))
    for op in before:
        apply(clock, d, op)
    snapshot = as_json(d.snapshot())
    event(f"snapshot with a backfill reservation: {snapshot['backfill'] is not None}")
    event(
        "snapshot with tasks held for a reservation: "
        f"{any('held' in json.dumps(group) for group, _ in snapshot['parked'])}"
    )
    twin_clock = ManualClock(start=clock.now())
    twin_events: list[Event] = []
    twin = Distributor.restore(
        snapshot, twin_clock, **held_parts(twin_clock, 99), on_event=twin_events.append
    )
    assert as_json(twin.snapshot()) == snapshot
    assert observed_with_held(twin) == observed_with_held(d)
    seen = len(events)
    for op in after:
        assert apply(twin_clock, twin, op) == apply(clock, d, op), op
        assert observed_with_held(twin) == observed_with_held(d), op
    assert comparable(twin_events) == comparable(events[seen:])


def test_a_backfill_reservation_in_force_carries_on_after_a_restore() -> None:
    clock = ManualClock()
    d = Distributor(clock, backfill=Backfill(), lease=LEASE)
    d.add_worker(Worker("w0", capacity=4))
    for i in range(3):
        d.submit(Task(f"small{i}", cost=5.0 + i))
    d.dispatch()
    d.submit(Task("large", resources={"slots": 3}, cost=2.0))
    assert d.dispatch() == []  # no room: it parks, and w0 is reserved for it
    snapshot = as_json(d.snapshot())
    assert snapshot["backfill"] is not None and snapshot["backfill"][1] == "w0"
    twin_clock = ManualClock(start=clock.now())
    twin = Distributor.restore(snapshot, twin_clock, backfill=Backfill())
    assert twin.explain("large") == d.explain("large")
    assert "reserved for it" in twin.explain("large")
    for run, run_clock in ((d, clock), (twin, twin_clock)):
        run.submit(Task("filler", cost=1.0))  # ends before the large task is due: backfilled
        run.submit(Task("blocker", cost=60.0))  # would delay it: kept off w0
        run_clock.advance(1.0)
    assert assignment_view(twin.dispatch()) == assignment_view(d.dispatch())
    assert twin.explain("blocker") == d.explain("blocker")
    assert as_json(twin.snapshot()) == as_json(d.snapshot())


def test_a_backfill_reservation_for_a_reprioritized_task_holds_it_as_it_is_now() -> None:
    clock = ManualClock()
    d = Distributor(clock, backfill=Backfill(), lease=LEASE)
    d.add_worker(Worker("w0", capacity=2))
    d.submit(Task("small", cost=5.0))
    d.dispatch()
    d.submit(Task("large", resources={"slots": 2}, priority=3))
    assert d.dispatch() == []  # no room: it parks, and w0 is reserved for it
    d.reprioritize("large", 1)
    snapshot = as_json(d.snapshot())
    # The reservation's task is the task as it waits, at its new priority (it held the
    # task as it was when parked, so a restored twin's snapshot differed from this).
    assert snapshot["backfill"][0]["priority"] == 1
    twin_clock = ManualClock(start=clock.now())
    twin = Distributor.restore(snapshot, twin_clock, backfill=Backfill())
    assert as_json(twin.snapshot()) == snapshot


# -- a lease outlives its host ---------------------------------------------------------


def test_tasks_running_when_the_host_died_come_back_when_their_lease_runs_out() -> None:
    clock, d, _ = original(seed=1)  # workers w0 (2 slots) and w1 (1 slot)
    for task_id in ("a", "b"):
        d.submit(Task(task_id))
    running = assignment_view(d.dispatch())
    assert [(task_id, attempt) for task_id, _, attempt, _ in running] == [("a", 1), ("b", 1)]
    kept = json.dumps(d.snapshot())  # the host writes it down, then dies

    later = ManualClock(start=clock.now() + 4.0)  # it comes back 4 s later
    events: list[Event] = []
    revived = Distributor.restore(json.loads(kept), later, **parts(later), on_event=events.append)
    assert revived.state_of("a") is TaskState.LEASED
    assert [a.lease_expiry for a in revived.leases()] == [LEASE, LEASE]  # still running
    assert revived.dispatch() == []  # their workers are still busy with them
    later.set(LEASE)
    again = assignment_view(revived.dispatch())
    assert [(task_id, attempt) for task_id, _, attempt, _ in again] == [("a", 2), ("b", 2)]
    assert revived.stats().lease_expiries == 2
    assert [e.task_id for e in events if e.kind is EventKind.LEASE_EXPIRED] == ["a", "b"]
    # A late report from the dead host's run still counts once.
    assert revived.complete("a", attempt=1) is TaskState.COMPLETED


def test_lease_numbers_live_through_a_snapshot() -> None:
    clock, d, _ = original(seed=1)  # workers w0 (2 slots) and w1 (1 slot)
    for task_id in ("a", "b"):
        d.submit(Task(task_id))
    first = {a.task.id: a for a in d.dispatch()}
    clock.set(LEASE)
    d.tick()  # both leases lapse, their late reports awaited
    second = {a.task.id: a for a in d.dispatch()}
    kept = as_json(d.snapshot())
    assert kept["next_lease_id"] == 5
    assert sorted(run["lapsed"] for run in kept["runs"]) == [[[1, 1]], [[1, 2]]]

    later = ManualClock(start=clock.now())
    revived = Distributor.restore(copy.deepcopy(kept), later, **parts(later))
    assert revived.leases() == d.leases()
    for twin in (d, revived):
        with pytest.raises(TaskStateError, match="lease"):
            twin.complete("a", lease_id=first["b"].lease_id)  # b's lease, not a's
        assert twin.complete("a", lease_id=first["a"].lease_id) is TaskState.COMPLETED
        assert twin.complete("b", lease_id=second["b"].lease_id) is TaskState.COMPLETED
        twin.submit(Task("c"))
        [third] = twin.dispatch()
        assert third.lease_id == 5
    assert as_json(revived.snapshot()) == as_json(d.snapshot())


def test_a_snapshot_from_before_lease_numbers_has_its_leases_numbered_at_restore() -> None:
    clock, d, _ = original(seed=1)
    for task_id in ("a", "b"):
        d.submit(Task(task_id))
    d.dispatch()
    clock.set(LEASE)
    d.tick()
    d.dispatch()  # a and b run again, each with a lapsed lease
    old = as_version(as_json(d.snapshot()), 6)
    later = ManualClock(start=clock.now())
    revived = Distributor.restore(old, later, **parts(later))
    current = sorted(a.lease_id for a in revived.leases())
    assert current == [1, 2]  # the current leases first, in the order leased
    kept = as_json(revived.snapshot())
    assert sorted(run["lapsed"] for run in kept["runs"]) == [[[1, 3]], [[1, 4]]]
    assert kept["next_lease_id"] == 5
    assert revived.complete("a", attempt=1) is TaskState.COMPLETED  # a late report, by attempt


@pytest.mark.parametrize("outcome", ["complete", "fail"])
def test_a_half_open_probe_of_a_snapshot_from_before_permits_still_decides(
    outcome: str,
) -> None:
    # A version 5 snapshot keeps no lease's permit: its lease's outcome counts in the
    # breaker's period at restore. The probe a half-open breaker sent must settle it,
    # or the breaker waits for it for good and its worker takes no task again.
    clock = ManualClock()
    d = with_a_probe_out(clock, "later")
    old = as_version(as_json(d.snapshot()), 5)
    revived = Distributor.restore(old, clock, breaker=one_probe_breakers(clock))
    if outcome == "complete":
        revived.complete("probe")
        assert revived.breaker("w").state is CircuitState.CLOSED
        assert [a.task.id for a in revived.dispatch()] == ["later"]
    else:
        revived.fail("probe", error="down", retryable=False)
        assert revived.breaker("w").state is CircuitState.OPEN


def test_the_format_notes_name_the_version_snapshots_are_written_in() -> None:
    version = Distributor(ManualClock()).snapshot()["version"]
    notes = (Path(__file__).resolve().parent.parent / "docs" / "persistence.md").read_text()
    said = re.search(r"The `Distributor`'s is at version (\d+)", " ".join(notes.split()))
    assert said is not None and int(said.group(1)) == version


# -- refusals -------------------------------------------------------------------------


def busy_snapshot() -> tuple[dict[str, Any], float]:
    clock, d, _ = original(seed=5)
    for i, task in enumerate(
        [
            Task("a"),
            Task("b", ttl=30.0),
            Task("c", requires={"tpu"}),
            Task("d"),
            Task("e"),
            Task("f", priority=4),
        ]
    ):
        d.submit(task)
        clock.advance(0.5 * i)
    d.dispatch()
    d.fail("a", error="boom")
    clock.advance(1.0)
    d.dispatch()
    d.complete("b", duration=1.0)
    snapshot = as_json(d.snapshot())
    assert snapshot["leases"] and snapshot["parked"] and snapshot["runs"]
    assert snapshot["queue"]["held"] and snapshot["timers"] and snapshot["finished"]
    return snapshot, clock.now()


def removed(path: tuple[Any, ...]) -> Callable[[Any], None]:
    def change(snapshot: Any) -> None:
        *head, last = path
        for step in head:
            snapshot = snapshot[step]
        del snapshot[last]

    return change


def replaced(path: tuple[Any, ...], value: Any) -> Callable[[Any], None]:
    def change(snapshot: Any) -> None:
        *head, last = path
        for step in head:
            snapshot = snapshot[step]
        snapshot[last] = value

    return change


CORRUPTIONS = {
    "future version": replaced(("version",), 8),
    "component from the future": replaced(("tracker", "version"), 99),
    "not a dict": lambda s: s.clear(),
    "unknown field": replaced(("surprise",), 1),
    "field removed": removed(("leases",)),
    "queue field removed": removed(("queue", "next_seq")),
    "tracker field removed": removed(("tracker", "workers", 0, "load")),
    "task field removed": removed(("runs", 0, "task", "priority")),
    "wrong type": replaced(("lease",), "ten"),
    "wrong type deep": replaced(("runs", 0, "attempt"), "1"),
    "bad task value": replaced(("runs", 0, "task", "cost"), -1.0),
    "lease of an unknown task": replaced(("leases",), ["nobody"]),
    "worker holds an unleased task": replaced(("leases",), []),
    "waiting task in no queue": replaced(("queue", "held"), []),
    "queued task not waiting": replaced(("waiting",), []),
    "timer for an unknown task": replaced(("timers", 0, 1), "nobody"),
    "pin of an unknown task": replaced(("pins",), [["nobody", "w0"]]),
    "bad random state": replaced(("retry", "rng"), [3, [1, 2], None]),
    "another configuration": replaced(("queue", "aging_rate"), 0.5),
    "taken after the clock's now": replaced(("time",), 1e9),
    "gates holding an unleased task": replaced(("gates", "held"), ["nobody"]),
    "another rate limit": replaced(("gates", "gates", 1, "limiter", "rate"), 5.0),
    "another cap on keys": replaced(("gates", "gates", 2, "limiter", "max_keys"), 3),
    "adaptive limit NaN": replaced(("gates", "gates", 3, "limit"), float("nan")),
    "adaptive gate of another maximum": replaced(("gates", "gates", 3, "maximum"), 8.0),
    "breaker of a missing worker": removed(("breakers", 0)),
    "breaker window corrupted": replaced(("breakers", 0, 1, "window"), ["x"]),
    "gate_shut not a dict": replaced(("gate_shut",), 5),
    "gate_shut least below 0": replaced(("gate_shut",), {"least": [-1.0], "walk": False}),
    "gate_shut walk not a bool": replaced(("gate_shut",), {"least": [None], "walk": 1}),
    # Values of another type where a name or a number is read: unhashable ones (a
    # list or a dict where a state's name goes), numbers out of a random state's range.
    "random state word beyond 32 bits": replaced(("retry", "rng", 1, 0), 10**20),
    "random state word below 0": replaced(("retry", "rng", 1, 0), -1),
    "random state gauss not a number": replaced(("retry", "rng", 2), "x"),
    "balancer random state word beyond 32 bits": replaced(("balancers", 0, "rng", 1, 0), 2**40),
    "finished state a list": replaced(("finished", 0, 1), ["completed"]),
    "dead reason a list": replaced(("dead_by_reason",), [[["max_attempts"], 1]]),
    "breaker change a list": replaced(("breaker_changes",), [["w0", ["open"]]]),
    "worker health a dict": replaced(("tracker", "workers", 0, "state", 0), {"h": 1}),
    "worker host health a list": replaced(("tracker", "workers", 0, "state", 1), ["healthy"]),
    "worker books health a list": replaced(("tracker", "workers", 0, "books", 0), ["healthy"]),
    "resource name a list": replaced(("tracker", "named"), [["slots"]]),
    "paused not pairs": replaced(("paused",), [["tenant"], ["key", []]]),
    "paused not lists": replaced(("paused",), [1.0, 2.0]),
    # Accepted, and a later call raised: two workers of one seq (it orders them: a
    # placement raised TypeError), an effective weight of 0 (ZeroDivisionError).
    "two workers of one seq": lambda s: s["tracker"]["workers"][1].update(
        seq=s["tracker"]["workers"][0]["seq"]
    ),
    "worker effective weight 0": replaced(("tracker", "workers", 0, "state", 8), 0),
    "worker effective weight above its weight": replaced(
        ("tracker", "workers", 0, "state", 8), 1e6
    ),
    "worker success rate above 1": replaced(("tracker", "workers", 0, "state", 6), 1.5),
    # A batch named by a run that is not leased (a lease's end clears it): accepted, and
    # the report of the task's next attempt failed on that batch.
    "batch of a run not leased": lambda s: next(
        run for run in s["runs"] if run["task"]["id"] not in s["leases"]
    ).update(batch=0),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupted_snapshot_is_refused_and_nothing_is_built(corruption: str) -> None:
    snapshot, now = busy_snapshot()
    CORRUPTIONS[corruption](snapshot)
    clock = ManualClock(start=now)
    given = parts(clock)
    state_before = given["retry"].snapshot()
    with pytest.raises(SnapshotError, match="cannot restore the snapshot"):
        Distributor.restore(snapshot, clock, **given)
    # The collaborators are as they were given: new and empty.
    assert len(given["queue"]) == 0 and given["queue"].stats().popped == 0
    assert len(given["tracker"]) == 0
    assert len(given["dlq"]) == 0
    assert given["retry"].snapshot() == state_before


def numbered_snapshot() -> tuple[dict[str, Any], float]:
    """A snapshot with a leased run ("a": lease 2, lease 1 lapsed), one retrying ("r")
    and a task that waits ("b")."""
    clock, d, _ = original(seed=1)
    d.submit(Task("a"))
    d.submit(Task("b", requires={"tpu"}))  # waits: no worker has it
    d.dispatch()
    clock.set(LEASE)
    d.tick()
    d.submit(Task("c"))
    d.submit(Task("r"))
    d.dispatch()  # a takes lease 2, c 3, r 4
    d.complete("c")
    d.fail("r", error="boom")
    snapshot = as_json(d.snapshot())
    runs = {run["task"]["id"]: run for run in snapshot["runs"]}
    assert (runs["a"]["lease_id"], runs["a"]["lapsed"], snapshot["next_lease_id"]) == (
        2,
        [[1, 1]],
        5,
    )
    assert runs["r"]["lease_id"] is None and "r" in snapshot["retrying"]
    return snapshot, clock.now()


def on_run(task_id: str, field: str, value: Any) -> Callable[[Any], None]:
    def change(snapshot: Any) -> None:
        (run,) = (run for run in snapshot["runs"] if run["task"]["id"] == task_id)
        run[field] = value

    return change


LEASE_NUMBER_CORRUPTIONS = {
    "next number not above a lease": (replaced(("next_lease_id",), 2), "not below next_lease_id"),
    "next number zero": (replaced(("next_lease_id",), 0), "next_lease_id"),
    "next number missing": (removed(("next_lease_id",)), "next_lease_id"),
    "leased run without a number": (on_run("a", "lease_id", None), "no lease_id"),
    "number on a run not leased": (on_run("r", "lease_id", 4), "though it is not leased"),
    "a number twice": (on_run("a", "lapsed", [[1, 2]]), "lease number 2 twice"),
    "lapsed as attempts": (on_run("a", "lapsed", [1]), "pairs"),
    "lapsed attempt twice": (on_run("a", "lapsed", [[1, 1], [1, 3]]), "an attempt twice"),
    "lapsed number zero": (on_run("a", "lapsed", [[1, 0]]), "pairs"),
    "number not an int": (on_run("a", "lease_id", "2"), "lease_id"),
}


@pytest.mark.parametrize("corruption", sorted(LEASE_NUMBER_CORRUPTIONS))
def test_a_snapshot_with_bad_lease_numbers_is_refused(corruption: str) -> None:
    snapshot, now = numbered_snapshot()
    change, match = LEASE_NUMBER_CORRUPTIONS[corruption]
    change(snapshot)
    clock = ManualClock(start=now)
    given = parts(clock)
    with pytest.raises(SnapshotError, match=match):
        Distributor.restore(snapshot, clock, **given)
    assert len(given["queue"]) == 0 and len(given["tracker"]) == 0


def test_the_untouched_snapshot_restores() -> None:
    snapshot, now = busy_snapshot()
    clock = ManualClock(start=now)
    d = Distributor.restore(copy.deepcopy(snapshot), clock, **parts(clock))
    assert as_json(d.snapshot()) == snapshot


def test_restore_refuses_collaborators_that_hold_state() -> None:
    snapshot, now = busy_snapshot()
    clock = ManualClock(start=now)
    given = parts(clock)
    given["queue"].push(Task("stray"))
    with pytest.raises(SnapshotError, match="empty queue"):
        Distributor.restore(snapshot, clock, **given)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"queue": "fair over a queue of its own"}, "OwnQueue"),
        ({"own gate": True}, "CountingGate"),
    ],
)
def test_parts_without_snapshot_support_are_named(options: dict[str, Any], named: str) -> None:
    clock = ManualClock()
    kwargs: dict[str, Any] = {}
    if options.get("queue") == "fair over a queue of its own":

        class OwnQueue(PriorityQueue):
            snapshot = None  # type: ignore[assignment]

        kwargs["queue"] = FairScheduler(clock, inner=lambda c: OwnQueue(c))
    if options.get("own gate"):
        kwargs["gates"] = [CountingGate(capacity=1)]
    d = Distributor(clock, **kwargs)
    d.submit(Task("queued"))  # a tenant with a queue, for the fair scheduler
    with pytest.raises(SnapshotError, match=named):
        d.snapshot()


def test_an_id_that_is_not_plain_data_is_refused_by_name() -> None:
    clock = ManualClock()
    d = Distributor(clock)

    class Ident:
        def __hash__(self) -> int:
            return 1

    d.submit(Task(Ident()))
    with pytest.raises(SnapshotError, match="Ident"):
        d.snapshot()


# -- components alone -----------------------------------------------------------------


def test_task_round_trips_every_field() -> None:
    task = Task(
        ("job", 7),
        priority=3,
        deadline=12.5,
        tenant="acme",
        key=frozenset({"k", 1}),
        requires={"research", "gpu"},
        resources={"slots": 2, "api_calls": 1},
        cost=2.5,
        ttl=60.0,
        max_attempts=3,
        group="summarise",
        zone="eu",
        payload={"prompt": "hi", "n": [1, 2]},
        preemptible=False,
        gang=("batch", 1),
        gang_size=2,
    )
    data = task.to_data()
    assert set(data) == {field.name for field in attrs.fields(Task)}  # none left out
    back = Task.from_data(as_json(data))
    assert back == task
    assert back.id == ("job", 7) and back.key == frozenset({"k", 1})
    named = Task.from_data(as_json(Task("t", priority=Priority.HIGH).to_data()))
    assert named.priority is Priority.HIGH


def test_worker_round_trips_every_field() -> None:
    worker = Worker(
        3, capacity={"slots": 4, "gpu": 1}, weight=2.0, skills={"x"}, zone="eu", cost=0.5
    )
    assert Worker.from_data(as_json(worker.to_data())) == worker


def test_priority_queue_continues_where_its_snapshot_left_off() -> None:
    clock = ManualClock()
    queue = PriorityQueue(clock, aging_rate=0.1)
    for i in range(5):
        queue.push(Task(i, priority=4 - i % 3, ttl=3.0 if i == 2 else None))
        clock.advance(1.0)
    queue.pop()
    twin = PriorityQueue(clock, aging_rate=0.1)
    twin.load_snapshot(as_json(queue.snapshot()))
    clock.advance(0.5)
    assert twin.stats() == queue.stats()
    assert [t.id for t in twin.expire()] == [t.id for t in queue.expire()] == [2]
    twin.push(Task("new", priority=0))
    queue.push(Task("new", priority=0))
    assert [twin.pop().id for _ in range(4)] == [queue.pop().id for _ in range(4)]  # type: ignore[union-attr]


def test_dead_letter_queue_round_trips() -> None:
    clock = ManualClock()
    d = Distributor(clock, retry=RetryPolicy(max_attempts=1))
    d.add_worker(Worker("w"))
    d.submit(Task("t"))
    d.dispatch()
    d.fail("t", error=ValueError("bad"))
    twin = DeadLetterQueue(clock)
    twin.load_snapshot(as_json(d.dlq.snapshot()))
    assert list(twin) == list(d.dlq)
    assert twin.stats() == d.dlq.stats()


@pytest.mark.parametrize("running", [[["zz", "x", False]], []])
def test_a_fair_scheduler_running_other_tasks_than_the_leases_is_refused(
    running: list[Any],
) -> None:
    # Its books decide what each release gives back: they must follow the leases.
    clock = ManualClock()
    d = Distributor(clock, queue=FairScheduler(clock))
    d.add_worker(Worker("w", capacity=2))
    d.submit(Task("b", tenant="x"))
    d.submit(Task("c", tenant="x"))
    d.dispatch(1)
    broken = as_json(d.snapshot())
    assert broken["queue"]["running"] == [["b", "x", False]]
    broken["queue"]["running"] = running
    fresh = ManualClock(start=clock.now())
    queue = FairScheduler(fresh)
    with pytest.raises(SnapshotError, match=r"queue.running does not hold what the leases say"):
        Distributor.restore(broken, fresh, queue=queue)
    assert len(queue) == 0


def _gates_in_use() -> tuple[dict[str, Any], float]:
    """A snapshot with task "t" leased through a pool gate and an adaptive limit."""
    clock = ManualClock()
    gates = [PoolGate(ResourcePool("db", size=2)), AdaptiveConcurrency(clock.now, initial=3)]
    d = Distributor(clock, gates=gates)
    d.add_worker(Worker("w", capacity=2))
    d.submit(Task("t", resources={"db": 1}))
    d.dispatch()
    return as_json(d.snapshot()), clock.now()


@pytest.mark.parametrize(
    ("gate", "field", "value", "message"),
    [
        (0, "held", [["x", 1.0]], r"gates\[0\].held does not hold what the leases take"),
        (0, "held", [], r"gates\[0\].held does not hold what the leases take"),
        (0, "units", [["t", 2.0]], r"task 't' \(2 held, 1 taken\)"),
        (1, "held", ["x"], r"gates\[1\].held does not hold what the leases take"),
        (1, "held", [], r"gates\[1\].held does not hold what the leases take"),
        (0, "pool", None, r"held holds 1 units, more than the 0 its pool has in use"),
    ],
)
def test_a_gate_holding_other_tasks_than_the_leases_is_refused(
    gate: int, field: str, value: Any, message: str
) -> None:
    # A lease's end releases its task from each gate: each must hold it, and no other.
    broken, now = _gates_in_use()
    part = broken["gates"]["gates"][gate]
    if field == "pool":
        part["pool"]["in_use"] = [0, 1]
    elif field == "units":  # more units than it takes, the pool agreeing
        part["held"] = value
        part["pool"]["in_use"] = part["pool"]["peak"] = [2, 1]
    else:
        part[field] = value
    fresh = ManualClock(start=now)
    pool = ResourcePool("db", size=2)
    with pytest.raises(SnapshotError, match=message):
        Distributor.restore(
            broken, fresh, gates=[PoolGate(pool), AdaptiveConcurrency(fresh.now, initial=3)]
        )
    assert pool.in_use == 0


def _limit_in_use() -> tuple[dict[str, Any], float]:
    """A snapshot with "t" (key "k") and "u" (no key) leased through a concurrency limit."""
    clock = ManualClock()
    d = Distributor(clock, gates=[ConcurrencyLimit(key=lambda t: t.key, limit=2)])
    d.add_worker(Worker("w", capacity=3))
    d.submit(Task("t", key="k"))
    d.submit(Task("u"))
    d.dispatch()
    return as_json(d.snapshot()), clock.now()


@pytest.mark.parametrize(
    ("running", "message"),
    [
        ([["k", ["t", "x"]]], r"running holds a slot for task 'x', which is no lease"),
        ([], r"running holds no slot for task 't', leased through the gates with a key"),
        ([["j", ["u"]]], r"holds no slot for task 't'"),
    ],
)
def test_a_concurrency_limit_gate_holding_other_tasks_than_the_keyed_leases_is_refused(
    running: list[Any], message: str
) -> None:
    # A lease's end releases the slot of its key: the limit must hold each keyed lease.
    broken, now = _limit_in_use()
    assert broken["gates"]["gates"][0]["running"] == [["k", ["t"]]]
    broken["gates"]["gates"][0]["running"] = running
    fresh = ManualClock(start=now)
    limit = ConcurrencyLimit(key=lambda t: t.key, limit=2)
    with pytest.raises(SnapshotError, match=message):
        Distributor.restore(broken, fresh, gates=[limit])
    assert limit.running("k") == 0


def test_a_concurrency_limit_gate_restores_and_releases_its_slots() -> None:
    snap, now = _limit_in_use()
    fresh = ManualClock(start=now)
    limit = ConcurrencyLimit(key=lambda t: t.key, limit=2)
    d = Distributor.restore(snap, fresh, gates=[limit])
    assert limit.running("k") == 1
    d.complete("t")
    d.complete("u")
    assert limit.running("k") == 0


def test_a_dead_letter_of_a_live_task_is_refused() -> None:
    # A task both dead-lettered and running: its own end would find its id taken.
    clock = ManualClock()
    d = Distributor(clock, retry=RetryPolicy(max_attempts=1))
    d.add_worker(Worker("w"))
    d.submit(Task("dead"))
    d.dispatch()
    d.fail("dead", error="boom")
    d.submit(Task("live"))
    d.dispatch()
    broken = as_json(d.snapshot())
    broken["dlq"]["entries"][0]["task"]["id"] = "live"
    fresh = ManualClock(start=clock.now())
    dlq = DeadLetterQueue(fresh)
    with pytest.raises(SnapshotError, match=r"dlq.entries\[0\] holds 'live', which is live"):
        Distributor.restore(broken, fresh, dlq=dlq)
    assert len(dlq) == 0


def test_a_snapshot_taken_from_a_callback_is_refused() -> None:
    clock = ManualClock()
    refused: list[Exception] = []

    class Peeking(PowerOfTwoChoices):
        def select(self, task: Task, candidates: Any) -> Any:
            try:
                d.snapshot()
            except TaskdistError as error:
                refused.append(error)
            return super().select(task, candidates)

    d = Distributor(clock, balancer=Peeking(rng=random.Random(1)))
    d.add_worker(Worker("w"))
    d.submit(Task("t"))
    d.dispatch()
    assert refused and type(refused[0]).__name__ == "ReentrancyError"


def test_the_thread_safe_wrapper_snapshots_under_its_lock_and_restores_wrapped() -> None:
    clock, d, _ = original(seed=2)
    shared = ThreadSafeDistributor(d)
    shared.submit(Task("a"))
    shared.dispatch()
    snapshot = as_json(shared.snapshot())
    later = ManualClock(start=clock.now())
    twin = ThreadSafeDistributor.restore(snapshot, later, **parts(later))
    assert isinstance(twin, ThreadSafeDistributor)
    assert twin.leases() == shared.leases()
    assert as_json(twin.snapshot()) == snapshot


def test_deadline_scheduler_continues_where_its_snapshot_left_off() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, servers=1, aging_rate=0.5)
    for i, (deadline, cost) in enumerate(
        [(10.0, 4.0), (5.0, 2.0), (6.0, 3.0), (None, 1.0), (3.0, 5.0)]
    ):
        edf.push(Task(i, deadline=deadline, cost=cost, ttl=20.0 if i == 3 else None))
    clock.advance(1.0)
    assert edf.is_late(4)  # admitted late (run_late): 5 s of work cannot end by 3
    twin = DeadlineScheduler(clock, servers=1, aging_rate=0.5)
    twin.load_snapshot(as_json(edf.snapshot()))
    probe = Task("probe", deadline=9.0, cost=1.5)
    assert twin.feasible(probe) == edf.feasible(probe)
    assert [twin.slack(i) for i in (0, 1)] == [edf.slack(i) for i in (0, 1)]
    assert twin.is_late(4) and twin.next_wakeup() == edf.next_wakeup()
    assert comparable(twin.stats()) == comparable(edf.stats())
    assert [t.id for t in iter(twin.pop, None)] == [t.id for t in iter(edf.pop, None)]


# -- every component: a snapshot missing any field is refused, and nothing changes ------


def used_parts() -> dict[str, tuple[Any, Callable[[], Any]]]:
    """Each component with state in it, and a maker of a new one configured alike."""
    clock = ManualClock(start=5.0)
    queue = PriorityQueue(clock, aging_rate=0.1)
    edf = DeadlineScheduler(clock, servers=2)
    tracker = CapacityTracker(clock)
    dlq = DeadLetterQueue(clock)
    breaker = CircuitBreaker(clock, minimum_calls=1, window_size=2)
    limiter = RateLimiter(rate=1, per=1.0, burst=2, clock=clock)
    pool = ResourcePool("db", size=3)
    gates = AllGates(
        [PoolGate(ResourcePool("db", 2)), RateGate(RateLimiter(1, clock=clock), "api", default=1)]
    )
    limit = ConcurrencyLimit(key=lambda task: task.key, limit=2)
    debounce = Debounce(key=lambda task: task.key, window=2.0, keep_payloads=True)
    throttle = Throttle(key=lambda task: task.key, window=2.0)
    retry = RetryPolicy(rng=random.Random(4))
    task = Task("t", key="k", deadline=50.0, resources={"db": 1}, payload=[1])
    queue.push(task)
    edf.push(task)
    tracker.add_worker(Worker("w", capacity=2))
    tracker.assign(task, "w")
    dlq.add(task, Reason.MAX_ATTEMPTS, history=[AttemptRecord(1, "w", 0.0, 1.0, "failed")])
    breaker.record_failure(permit=breaker.acquire())
    limiter.try_acquire()
    pool.try_acquire(2)
    gates.try_acquire(task)
    limit.admit(task, 5.0, lambda _: None)
    limit.try_acquire(task)
    debounce.admit(task, 5.0, lambda _: None)
    throttle.admit(task, 5.0, lambda _: None)
    retry.delay(1)
    return {
        "queue": (queue, lambda: PriorityQueue(clock, aging_rate=0.1)),
        "edf": (edf, lambda: DeadlineScheduler(clock, servers=2)),
        "tracker": (tracker, lambda: CapacityTracker(clock)),
        "dlq": (dlq, lambda: DeadLetterQueue(clock)),
        "breaker": (breaker, lambda: CircuitBreaker(clock, minimum_calls=1, window_size=2)),
        "limiter": (limiter, lambda: RateLimiter(rate=1, per=1.0, burst=2, clock=clock)),
        "pool": (pool, lambda: ResourcePool("db", size=3)),
        "gates": (
            gates,
            lambda: AllGates(
                [
                    PoolGate(ResourcePool("db", 2)),
                    RateGate(RateLimiter(1, clock=clock), "api", default=1),
                ]
            ),
        ),
        "limit": (limit, lambda: ConcurrencyLimit(key=lambda task: task.key, limit=2)),
        "debounce": (
            debounce,
            lambda: Debounce(key=lambda t: t.key, window=2.0, keep_payloads=True),
        ),
        "throttle": (throttle, lambda: Throttle(key=lambda task: task.key, window=2.0)),
        "retry": (retry, lambda: RetryPolicy(rng=random.Random(0))),
    }


@pytest.mark.parametrize("name", sorted(used_parts()))
def test_each_component_round_trips_and_refuses_any_field_missing(name: str) -> None:
    used, fresh = used_parts()[name]
    snapshot = as_json(used.snapshot())
    twin = fresh()
    twin.load_snapshot(snapshot)
    assert as_json(twin.snapshot()) == snapshot
    for field in snapshot:
        broken = {key: value for key, value in snapshot.items() if key != field}
        target = fresh()
        before = as_json(target.snapshot())
        with pytest.raises(SnapshotError, match=field):
            target.load_snapshot(broken)
        assert as_json(target.snapshot()) == before, field
    with pytest.raises(SnapshotError, match="version"):
        fresh().load_snapshot({**snapshot, "version": 99})
    with pytest.raises(SnapshotError, match="unknown fields"):
        fresh().load_snapshot({**snapshot, "extra": 1})
