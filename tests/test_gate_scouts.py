"""Tasks waiting for a gate: only the first of each class goes back when it opens.

The Distributor used to put every task the gates refused back in the queue
each time a gate might admit more, so that the queue's order chose who
passes. It now keeps them in classes of tasks that every placement check
treats alike, and sends only the first of each class back; the next follows
when that one is placed or leaves. These tests hold the new way to the old
one: the same operations on a Distributor that scouts and on one that wakes
every refused task make the same assignments, in the same order, and
dead-letter the same tasks for the same reasons. Waking all is done two ways:
in the order the tasks were refused last (the scouts switched off), and in
the order each was first refused (every task a class of its own), the order
that decides a FairScheduler's ties between tenants.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from distributor_support import as_version
from fair_support import UNRANKED_FAIR
from hypothesis import example, given, settings
from hypothesis import strategies as st

from taskdist import (
    AdaptiveConcurrency,
    DeadlineScheduler,
    Distributor,
    FairScheduler,
    KeyedRateGate,
    KeyedRateLimiter,
    KeyShare,
    LeastConnections,
    ManualClock,
    Pool,
    PoolGate,
    Preemption,
    PriorityQueue,
    Quota,
    RateGate,
    RateLimiter,
    Reason,
    ResourcePool,
    Route,
    Step,
    Task,
    TaskdistError,
    TaskState,
    Worker,
)
from taskdist.dispatch._gate_scouts import GateScouts
from taskdist.dispatch._parking import GATES, ParkingLot

QUEUES: dict[str, Callable[[ManualClock], Any]] = {
    "priority": lambda clock: PriorityQueue(clock),
    "aging": lambda clock: PriorityQueue(clock, aging_rate=0.5),
    # Keeps every task pushed back, late or not: its order is its rank's.
    "deadline": lambda clock: DeadlineScheduler(clock),
    "deadline, two servers and aging": lambda clock: DeadlineScheduler(
        clock, servers=2, aging_rate=0.5
    ),
    "fair": lambda clock: FairScheduler(clock),
    # (No max_queued: waking all would push more than it allows back at once; see the
    # test of bounded queues below.)
    "fair, weights and quotas": lambda clock: FairScheduler(
        clock, weights={"b": 3.0}, quotas={"a": Quota(max_concurrent=1, rate=2.0)}
    ),
    "fair, critical bypass": lambda clock: FairScheduler(clock, critical_bypass=True),
    "fair, aging": lambda clock: FairScheduler(clock, aging_rate=0.5),
    # Each tenant's tasks earliest deadline first (a DeadlineScheduler that runs late).
    "fair, deadlines": lambda clock: FairScheduler(
        clock, weights={"b": 3.0}, critical_bypass=True, inner=DeadlineScheduler
    ),
    # Each tenant's turns shared among its keys (a second level of fair share).
    "fair, keys": lambda clock: FairScheduler(clock, inner=KeyShare()),
    "fair, keys weighted and capped": lambda clock: FairScheduler(
        clock,
        weights={"b": 3.0},
        critical_bypass=True,
        inner=KeyShare(weights={"k2": 2.0}, quotas={"k1": Quota(max_concurrent=1)}),
    ),
}
# Which tenant a FairScheduler serves next depends on when each became backlogged
# (ties to the first), so the order refused tasks go back in decides ties: these are
# held to waking every refused task in the order each was first refused.
IN_ORDER_ONLY = frozenset(name for name in QUEUES if name.startswith("fair"))
# A DeadlineScheduler serves tasks of equal keys in push order (its rank says so), so
# the order refused tasks go back in decides ties there too: these are held to waking
# every refused task in the order each was first refused, as the fair schedulers are.
PUSH_ORDER_TIES = frozenset(name for name in QUEUES if name.startswith("deadline"))


def gates(clock: ManualClock) -> list[Any]:
    """The gates ``build`` gives, on ``clock``."""
    return [
        RateGate(RateLimiter(3, per=1.0, burst=2, clock=clock), "api", default=1),
        KeyedRateGate(KeyedRateLimiter(2, per=1.0, burst=2, clock=clock), "api"),
        PoolGate(ResourcePool("db", size=2)),
        # Counts urgent tasks only, and learns from their outcomes.
        AdaptiveConcurrency(clock.now, initial=2, maximum=4, applies=lambda t: t.priority <= 2),
    ]


def build(
    queue: str,
    clock: ManualClock,
    *,
    scouting: bool,
    in_order: bool = False,
    shut: bool = True,
    timed: bool = True,
) -> Distributor:
    """A Distributor behind a rate gate, a keyed rate gate and a pool gate.

    Without ``scouting``, every refused task goes back when a gate opens: in the
    order refused last, or, ``in_order``, in the order each was first refused (every
    task a class of its own, so each is its own scout). Without ``shut``, a walk
    goes on past a refusal even when a shut gate holds back every task left.
    Without ``timed``, a class a rate gate refuses until a time goes back at every
    wakeup of the gates all the same.
    """
    d = Distributor(
        clock,
        queue=QUEUES[queue](clock),
        gates=gates(clock),
        lease=None,
        rng=random.Random(5),
    )
    assert d._scouts is not None and d._shut is not None
    if not shut:
        d._shut = None
    if not timed:
        d._scouts._timed = ()
    if in_order:
        wake_all_in_order(d)
    elif not scouting:
        d._scouts = None
    return d


def restored(
    snapshot: dict[str, Any], at: float, queue: str, **parts: Any
) -> tuple[Distributor, ManualClock]:
    """A twin restored from a copy of ``snapshot`` on a clock at ``at``, over a fresh
    queue named in ``QUEUES`` behind fresh ``gates``, with its clock."""
    clock = ManualClock(start=at)
    twin = Distributor.restore(
        copy.deepcopy(snapshot), clock, queue=QUEUES[queue](clock), gates=gates(clock), **parts
    )
    return twin, clock


def wake_all_in_order(d: Distributor) -> None:
    """Make ``d`` send every refused task back when a gate opens, in the order each was
    first refused: scouts that rank no task, so that each is a class of its own."""
    d._scouts = GateScouts(lambda task, since: None, d._rules, (), ())


def one_a_second(clock: ManualClock) -> RateGate:
    """A gate of one unit a second, burst 1, charging every task a unit by default."""
    return RateGate(RateLimiter(1, per=1.0, burst=1, clock=clock), "api", default=1)


def leasing_nothing_behind_one_a_second(clock: ManualClock, capacity: int) -> Distributor:
    """A Distributor without leases behind ``one_a_second``, with one worker "w"."""
    d = Distributor(clock, gates=[one_a_second(clock)], lease=None)
    d.add_worker(Worker("w", capacity=capacity))
    return d


operation = st.one_of(
    st.tuples(
        st.just("submit"),
        st.integers(1, 4),  # priority
        st.sampled_from(["a", "b", None]),  # tenant
        # ({"api": 0.0}: no gate charges it, so it can run while the others wait.)
        st.sampled_from([{}, {"api": 0.0}, {"api": 2.0}, {"db": 1.0}, {"api": 1.0, "db": 1.0}]),
        st.sampled_from([frozenset(), frozenset({"gpu"})]),
        st.floats(0.5, 20.0),  # deadline, from now
        st.sampled_from([None, 3.0]),  # ttl
        st.sampled_from(["k1", "k2", None]),  # key
    ),
    st.tuples(st.just("dispatch"), st.sampled_from([None, 1, 2])),
    st.tuples(st.just("finish"), st.integers(0, 10), st.sampled_from(["ok", "fail", "429"])),
    st.tuples(st.just("advance"), st.floats(0.05, 1.5)),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("pause"), st.sampled_from(["a", "b"]), st.booleans()),
    st.tuples(st.just("worker"), st.sampled_from([frozenset(), frozenset({"gpu"})])),
    st.tuples(st.just("reprioritize"), st.integers(0, 40), st.integers(1, 4)),
    # A gang of two: its leader may end a dispatch's round for want of room.
    st.tuples(
        st.just("gang"),
        st.integers(1, 4),  # priority
        st.sampled_from(["a", "b", None]),  # tenant
        st.sampled_from([{}, {"api": 0.0}, {"db": 1.0}]),
    ),
)


def run(
    queue: str,
    ops: list[tuple[Any, ...]],
    *,
    scouting: bool,
    in_order: bool = False,
    shut: bool = True,
    timed: bool = True,
) -> list[Any]:
    """What a Distributor did under ``ops``: each call's answer, in order."""
    clock = ManualClock(start=100.0)
    d = build(queue, clock, scouting=scouting, in_order=in_order, shut=shut, timed=timed)
    d.add_worker(Worker("w0", capacity=2))
    trace: list[Any] = []
    submitted: list[Hashable] = []
    workers = 1
    paused: set[str] = set()
    for op in ops:
        try:
            step(d, clock, op, trace, submitted, paused)
        except TaskdistError as error:  # refused alike by both, or the traces differ
            trace.append(("refused", type(error).__name__))
        if op[0] == "worker":
            d.add_worker(Worker(f"w{workers}", capacity=1, skills=op[1]))
            workers += 1
    return finish(d, clock, trace, paused)


def step(
    d: Distributor,
    clock: ManualClock,
    op: tuple[Any, ...],
    trace: list[Any],
    submitted: list[Hashable],
    paused: set[str],
) -> None:
    """Apply one operation, recording what the Distributor answered."""
    kind = op[0]
    if kind == "submit":
        # Distinct arrival times. Among tasks enqueued at one instant, the queue
        # breaks ties by push order: waking every refused task pushed them again
        # after any task that arrived meanwhile, which then went first; scouts keep
        # them in the order they were first refused (see the test of ties below).
        clock.advance(0.001)
        _, priority, tenant, resources, requires, deadline, ttl, key = op
        task = Task(
            f"t{len(submitted)}",
            priority=priority,
            tenant=tenant,
            resources=resources,
            requires=requires,
            deadline=clock.now() + deadline + len(submitted) * 1e-6,
            ttl=ttl,
            key=key,
        )
        submitted.append(task.id)
        trace.append(("submit", d.submit(task).state))
    elif kind == "gang":
        clock.advance(0.001)
        gang = f"g{len(submitted)}"
        for member in range(2):
            task = Task(
                f"{gang}m{member}",
                priority=op[1],
                tenant=op[2],
                resources=op[3],
                gang=gang,
                gang_size=2,
            )
            submitted.append(task.id)
            trace.append(("submit", d.submit(task).state))
    elif kind == "dispatch":
        trace.append(("dispatch", [(a.task.id, a.worker_id) for a in d.dispatch(op[1])]))
    elif kind == "finish":
        leases = sorted(d.leases(), key=lambda a: str(a.task.id))
        if leases:
            lease = leases[op[1] % len(leases)]
            if op[2] == "ok":
                d.complete(lease.task.id)
            elif op[2] == "fail":
                d.fail(lease.task.id, error="boom")
            else:
                d.fail(lease.task.id, error="429", throttled=True, retry_after=0.7)
            trace.append(("finish", lease.task.id))
    elif kind == "advance":
        clock.advance(op[1])
        d.tick()
    elif kind == "cancel" and submitted:
        task_id = submitted[op[1] % len(submitted)]
        if d.state_of(task_id) in (TaskState.QUEUED, TaskState.PARKED, TaskState.RETRYING):
            trace.append(("cancel", d.cancel(task_id).id))
    elif kind == "pause":
        if op[2] and op[1] not in paused:
            d.pause(tenant=op[1])
            paused.add(op[1])
        elif not op[2] and op[1] in paused:
            d.resume(tenant=op[1])
            paused.discard(op[1])
    elif kind == "reprioritize" and submitted:
        task_id = submitted[op[1] % len(submitted)]
        if d.state_of(task_id) in (TaskState.QUEUED, TaskState.PARKED):
            trace.append(("reprioritize", d.reprioritize(task_id, op[2]).id))


def finish(d: Distributor, clock: ManualClock, trace: list[Any], paused: set[str]) -> list[Any]:
    """Run until everything that can run has, recording the placements."""
    # Then until everything that can run has: the same order of placements to the end.
    d.add_worker(Worker("last", capacity=8, skills={"gpu"}))
    for tenant in sorted(paused):
        d.resume(tenant=tenant)
    # Fixed steps, not next_wakeup(): a distributor that woke every refused task
    # has them queued, not parked, so it may name a later wakeup; the decisions
    # are compared at the same instants.
    for _ in range(400):
        if not len(d):
            break
        made = d.dispatch()
        if made:
            trace.append(("dispatch", [(a.task.id, a.worker_id) for a in made]))
        for assignment in made:
            d.complete(assignment.task.id)
        clock.advance(0.1)
    trace.append(("left", len(d)))
    trace.append(("dead", sorted((e.task.id, e.reason.value) for e in d.dlq)))
    return trace


# Tenant a busy and backlogged again, b new, both at one virtual start: the tie goes
# to a, whose tasks the gates refused first (waking all in the order refused last, b's
# task, refused first at the last refusal, went first).
_TIE = [
    *[("submit", 1, "a", {}, frozenset(), 1.0, None, None)] * 2,
    ("dispatch", None),
    *[("submit", 1, "a", {}, frozenset(), 1.0, None, None)] * 3,
    ("worker", frozenset()),
    ("dispatch", None),
    ("submit", 1, "b", {}, frozenset(), 1.0, None, None),
    ("submit", 1, "a", {}, frozenset(), 1.0, None, None),
    ("finish", 0, "ok"),
]


@pytest.mark.parametrize("shut", [True, False], ids=["shut", "walking on"])
@pytest.mark.parametrize("queue", sorted(QUEUES))
@settings(max_examples=60, deadline=None)
@given(ops=st.lists(operation, max_size=60))
@example(ops=_TIE)
def test_scouts_make_the_placements_waking_every_refused_task_makes(
    queue: str, shut: bool, ops: list[tuple[Any, ...]]
) -> None:
    # A class a rate gate refuses until a time stays parked until then. A priority
    # queue's order does not depend on which refused tasks left it and came back, so
    # that changes no placement; a fair scheduler's busy periods do (one ends when a
    # dispatch empties it, and the refused tasks that waking all put back kept it
    # from emptying), so there the scouts are held to waking all with that switched
    # off (see the stateful tests for it switched on).
    timed = queue not in IN_ORDER_ONLY
    scouted = run(queue, ops, scouting=True, shut=shut, timed=timed)
    assert scouted == run(queue, ops, scouting=False, in_order=True, shut=shut)
    if queue not in IN_ORDER_ONLY | PUSH_ORDER_TIES:
        assert scouted == run(queue, ops, scouting=False, shut=shut)


@pytest.mark.parametrize("queue", sorted(set(QUEUES) - IN_ORDER_ONLY - PUSH_ORDER_TIES))
@settings(max_examples=60, deadline=None)
@given(ops=st.lists(operation, max_size=60))
def test_a_walk_a_shut_gate_ends_makes_the_placements_walking_on_makes(
    queue: str, ops: list[tuple[Any, ...]]
) -> None:
    # A priority queue's order does not depend on which refused tasks left it and came
    # back, so stopping at a shut gate changes no placement and no dead letter.
    assert run(queue, ops, scouting=True) == run(queue, ops, scouting=True, shut=False)


@pytest.mark.parametrize("queue", ["priority", "deadline", "fair", "fair, deadlines", "fair, keys"])
@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(operation, max_size=40), more=st.lists(operation, max_size=20), at=st.floats(0, 1)
)
def test_a_restored_distributor_stops_its_walks_where_the_original_does(
    queue: str, ops: list[tuple[Any, ...]], more: list[tuple[Any, ...]], at: float
) -> None:
    # The least demand of each gate (which may come from tasks long gone) and the
    # last walk's stop travel in the snapshot: the twin decides as the original.
    clock = ManualClock(start=100.0)
    d = build(queue, clock, scouting=True)
    d.add_worker(Worker("w0", capacity=2))
    split = int(at * len(ops))
    trace: list[Any] = []
    submitted: list[Hashable] = []
    for op in ops[:split]:
        with contextlib.suppress(TaskdistError):
            step(d, clock, op, trace, submitted, set())
    snapshot = d.snapshot()
    twin, twin_clock = restored(snapshot, clock.now(), queue, rng=random.Random(5))
    assert twin.snapshot() == snapshot
    assert twin.next_wakeup() == d.next_wakeup()
    traces = []
    for clk, dist in ((clock, d), (twin_clock, twin)):
        later: list[Any] = []
        ids = list(submitted)
        for op in ops[split:] + more:
            if op[0] == "worker":
                continue  # (the twin would need the same workers added alike)
            try:
                step(dist, clk, op, later, ids, set())
            except TaskdistError as error:
                later.append(("refused", type(error).__name__))
        traces.append(finish(dist, clk, later, set()))
    assert traces[0] == traces[1]


def queued(d: Distributor, n: int) -> list[int]:
    return [i for i in range(n) if d.state_of(i) is TaskState.QUEUED]


def test_a_fair_scheduler_of_its_own_tenant_queues_or_key_shares_sends_scouts() -> None:
    clock = ManualClock()
    for queue in (
        FairScheduler(clock),
        FairScheduler(clock, weights={"a": 2.0}, critical_bypass=True, strict_tenants=False),
        FairScheduler(clock, inner=KeyShare({"u": 2.0}), critical_bypass=True),
    ):
        assert Distributor(clock, queue=queue, gates=gates(clock))._scouts is not None


@pytest.mark.parametrize("name", sorted(UNRANKED_FAIR))
def test_a_fair_scheduler_that_cannot_rank_keeps_every_refused_task_going_back(
    name: str,
) -> None:
    clock = ManualClock()
    queue = UNRANKED_FAIR[name](clock)
    assert Distributor(clock, queue=queue, gates=gates(clock))._scouts is None


def test_tenants_behind_a_gate_share_it_by_weight_in_the_order_first_refused() -> None:
    # Two tenants, 3 to 1, behind one token a second: scouts place what waking every
    # refused task in the order first refused places.
    runs = []
    for scouting in (True, False):
        clock = ManualClock(start=100.0)
        limiter = RateLimiter(1, per=1.0, burst=1, clock=clock)
        d = Distributor(
            clock,
            queue=FairScheduler(clock, weights={"big": 3.0}),
            gates=[RateGate(limiter, "api", default=1)],
        )
        if not scouting:
            wake_all_in_order(d)
        d.add_worker(Worker("w", capacity=100))
        for i in range(12):
            clock.advance(0.001)
            d.submit(Task(f"s{i}", tenant="small"))
            d.submit(Task(f"b{i}", tenant="big"))
        runs.append(placements(d, clock, steps=8))
    assert runs[0] == runs[1]
    # The first submitted took the one token there was; then 3 to 1, each tenant's
    # tasks first in first out.
    assert runs[0] == ["s0", "b0", "b1", "b2", "b3", "s1", "b4", "b5"]


def test_a_deadline_scheduler_that_refuses_late_tasks_keeps_every_refused_task_going_back() -> None:
    # It refuses a task whose deadline has passed, and keeps (late) one it holds:
    # whether a task is held when its deadline passes decides its fate. Under run_late
    # it keeps both, and scouts go.
    clock = ManualClock()
    for on_miss in ("dead_letter", "reject"):
        queue = DeadlineScheduler(clock, on_miss=on_miss)  # type: ignore[arg-type]
        assert Distributor(clock, queue=queue, gates=gates(clock))._scouts is None
    queue = DeadlineScheduler(clock, on_miss="run_late")
    assert Distributor(clock, queue=queue, gates=gates(clock))._scouts is not None


def test_a_refill_sends_one_task_of_each_class_not_all() -> None:
    clock = ManualClock()
    d = Distributor(clock, gates=[one_a_second(clock)])
    d.add_worker(Worker("w", capacity=1000))
    # A task the gate does not charge: it could pass a spent bucket, so every refusal is
    # a refusal of that task alone, and the walk goes on.
    d.submit(Task("local", priority=4, resources={"api": 0.0}))
    for i in range(300):
        clock.advance(0.001)
        d.submit(Task(i, priority=1 + i % 3))
    # The one unit, and the task that needs none; the rest are refused.
    assert [a.task.id for a in d.dispatch()] == [0, "local"]
    assert len(d.queue) == 0 and len(queued(d, 300)) == 0
    clock.advance(1.0)
    d.tick()
    # One task of each priority went back to the queue: the oldest of each.
    assert queued(d, 300) == [1, 2, 3]
    placed = [a.task.id for a in d.dispatch()]
    assert placed == [3]  # the best of the three: priority 1 (i % 3 == 0)
    # The other two, and the next of priority 1 sent after task 3, met an empty
    # bucket: back in their classes, nothing queued, until the next refill.
    assert queued(d, 300) == []
    assert sum(d.state_of(i) is TaskState.PARKED for i in range(300)) == 298


def test_a_shut_gate_keeps_every_task_in_the_queue_and_a_refill_places_the_best() -> None:
    clock = ManualClock()
    d = Distributor(clock, gates=[one_a_second(clock)])
    d.add_worker(Worker("w", capacity=1000))
    for i in range(300):
        clock.advance(0.001)
        d.submit(Task(i, priority=1 + i % 3))
    # The one unit; then the bucket is spent and every task charges one: the walk ends
    # at the first refusal, and nothing leaves the queue.
    assert [a.task.id for a in d.dispatch()] == [0]
    assert len(d.queue) == 299 and not any(d.state_of(i) is TaskState.PARKED for i in range(300))
    assert d.next_wakeup() == pytest.approx(1.3)  # the next unit (submits took 0.3 s)
    assert d.dispatch() == []  # before it: nothing, and nothing moves
    assert len(d.queue) == 299
    clock.set(d.next_wakeup())  # type: ignore[arg-type]
    assert [a.task.id for a in d.dispatch()] == [3]  # the best: priority 1, the oldest
    assert len(d.queue) == 298


def test_a_gate_with_less_left_than_one_task_asks_does_not_end_the_walk() -> None:
    clock = ManualClock()
    d = Distributor(
        clock, gates=[RateGate(RateLimiter(1, per=1.0, burst=2, clock=clock), "api", default=1)]
    )
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("x", priority=1))
    assert [a.task.id for a in d.dispatch()] == ["x"]  # one unit left
    d.submit(Task("big", priority=1, resources={"api": 2.0}))
    d.submit(Task("small", priority=2))
    # "big" asks for two units: refused; "small" asks for one, which is left.
    assert [a.task.id for a in d.dispatch()] == ["small"]
    assert d.state_of("big") is TaskState.PARKED  # refused, with the walk going on
    # Now the bucket is empty, below what any task asks for: the walk ends at "late".
    d.submit(Task("late", priority=1))
    assert d.dispatch() == [] and d.state_of("late") is TaskState.QUEUED


def shut_or_not(clock: ManualClock) -> Distributor:
    """Behind a rate gate of burst 1: a task that asks nothing of it came and went, so
    the gate never shuts; then three tasks that each ask a unit, one placed."""
    d = Distributor(clock, gates=[one_a_second(clock)])
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("free", resources={"api": 0.0}))
    assert [a.task.id for a in d.dispatch()] == ["free"]
    d.complete("free")
    for name in "abc":
        clock.advance(0.001)
        d.submit(Task(name))
    assert [a.task.id for a in d.dispatch()] == ["a"]
    return d


def test_a_snapshot_carries_what_each_gate_may_be_asked_for_at_least() -> None:
    clock = ManualClock()
    d = shut_or_not(clock)
    assert d._shut is not None and d._shut.least == [0.0]
    assert [d.state_of(t) for t in "bc"] == [TaskState.PARKED] * 2  # the walk went on
    snapshot = d.snapshot()
    assert snapshot["gate_shut"] == {"least": [0.0], "walk": False}
    twin_clock = ManualClock(start=clock.now())
    twin = Distributor.restore(
        copy.deepcopy(snapshot),
        twin_clock,
        gates=[one_a_second(twin_clock)],
    )
    # "free" is gone, yet the twin knows a task may ask nothing: it walks on as well.
    assert twin._shut is not None and twin._shut.least == [0.0]
    assert twin.snapshot() == snapshot
    for clk, dist in ((clock, d), (twin_clock, twin)):
        clk.advance(1.0)
        dist.submit(Task("d"))
        assert [a.task.id for a in dist.dispatch()] == ["b"]
        assert dist.state_of("c") is TaskState.PARKED


def test_a_version_4_snapshot_works_out_each_gates_least_demand_from_its_tasks() -> None:
    clock = ManualClock()
    old = as_version(shut_or_not(clock).snapshot(), 4)
    twin_clock = ManualClock(start=clock.now())
    twin = Distributor.restore(
        old,
        twin_clock,
        gates=[one_a_second(twin_clock)],
    )
    # From the tasks it holds ("free" is not one of them): each asks a unit.
    assert twin._shut is not None and twin._shut.least == [1.0]
    assert twin.next_wakeup() == pytest.approx(1.003)  # the rate gate's refill


def test_thousands_of_tenants_behind_a_spent_limit_wait_in_the_queue_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One task each from 2,000 tenants behind a limit of one a second: each refill
    # places the next tenant's task in fair order, and nothing is taken out of the
    # queue and pushed again (a refill used to send every tenant's task back).
    clock = ManualClock()
    d = Distributor(
        clock,
        queue=FairScheduler(clock),
        gates=[one_a_second(clock)],
    )
    d.add_worker(Worker("w", capacity=10_000))
    for i in range(2_000):
        d.submit(Task(i, tenant=i))
    pushes = 0
    push = FairScheduler.push

    def counted(self: FairScheduler, task: Task, **kwargs: Any) -> Any:
        nonlocal pushes
        pushes += 1
        return push(self, task, **kwargs)

    monkeypatch.setattr(FairScheduler, "push", counted)
    placed = []
    for _ in range(50):
        for assignment in d.dispatch():
            placed.append(assignment.task.id)
            d.complete(assignment.task.id)
        clock.set(d.next_wakeup())  # type: ignore[arg-type]
    assert placed == list(range(50)) and pushes == 0
    assert len(d.queue) == 1_950 and not d._parked


def per_tenant_limit(clock: ManualClock, **limits: Any) -> KeyedRateGate:
    """A bucket for each tenant of one unit a minute, charging every task a unit."""
    limiter = KeyedRateLimiter(1, per=60.0, burst=1, clock=clock, **limits)
    return KeyedRateGate(limiter, "api", default=1)


@pytest.mark.parametrize("queue", ["priority", "fair"])
def test_a_refill_of_one_tenants_bucket_sends_that_tenants_task_alone(
    queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2,000 tenants, each with its own bucket of one task a minute, come in a moment
    # apart, so their buckets refill a moment apart. Each refill places that tenant's
    # next task; the other tenants' tasks stay parked (a refill used to send one task
    # of every tenant to the queue, to be refused again: 2,000 pushes a placement).
    clock = ManualClock()
    d = Distributor(clock, queue=QUEUES[queue](clock), gates=[per_tenant_limit(clock)], lease=None)
    d.add_worker(Worker("w", capacity=10_000))
    for tenant in range(2_000):
        clock.set(tenant * 0.01)
        for i in range(3):
            d.submit(Task((tenant, i), tenant=tenant))
        assert [a.task.id for a in d.dispatch()] == [(tenant, 0)]
    pushes = 0
    push = type(d.queue).push

    def counted(self: Any, task: Task, **kwargs: Any) -> Any:
        nonlocal pushes
        pushes += 1
        return push(self, task, **kwargs)

    monkeypatch.setattr(type(d.queue), "push", counted)
    placed = []
    for _ in range(50):
        clock.set(d.next_wakeup())  # type: ignore[arg-type]
        placed += [a.task.id for a in d.dispatch()]
    # Each refill at its bucket's time, in the order the tenants came: the task placed,
    # and the next of its class, refused by the bucket just spent.
    assert placed == [(tenant, 1) for tenant in range(50)]
    assert clock.now() == pytest.approx(60.0 + 49 * 0.01)
    assert pushes == 2 * 50
    assert d.state_of((50, 1)) is TaskState.PARKED and d.next_wakeup() == pytest.approx(60.5)


def two_a_second_a_tenant(clock: ManualClock) -> KeyedRateGate:
    """A bucket for each tenant of burst 2, refilling a unit a second, one unit a task
    by default."""
    return KeyedRateGate(KeyedRateLimiter(1, per=1.0, burst=2, clock=clock), "api", default=1)


def test_a_class_whose_bucket_another_class_spent_waits_for_the_later_refill() -> None:
    # "y" (two units) is parked until 2.0, when "a"'s bucket would hold two. At 1.0 "z"
    # (one unit, same bucket) passes and spends it: "y" can pass at 3.0 only. The host
    # is told 3.0, and a restored twin, which works the time out afresh, agrees.
    clock = ManualClock()
    d = Distributor(clock, gates=[two_a_second_a_tenant(clock)], lease=None)
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("x", tenant="a", resources={"api": 2}, priority=1))
    assert [a.task.id for a in d.dispatch()] == ["x"]
    d.submit(Task("y", tenant="a", resources={"api": 2}, priority=2))
    d.submit(Task("z", tenant="a", priority=3))
    assert d.dispatch() == [] and d.next_wakeup() == 1.0
    clock.set(1.0)
    assert [a.task.id for a in d.dispatch()] == ["z"]
    assert d.next_wakeup() == 3.0
    twin_clock = ManualClock(start=1.0)
    twin = Distributor.restore(d.snapshot(), twin_clock, gates=[two_a_second_a_tenant(twin_clock)])
    assert twin.next_wakeup() == 3.0
    # Woken at 2.0 all the same (a host's own tick), "y" is not sent to be refused.
    events: list[Any] = []
    d.add_listener(events.append)
    clock.set(2.0)
    assert d.dispatch() == [] and not events and d.state_of("y") is TaskState.PARKED
    clock.set(3.0)
    assert [a.task.id for a in d.dispatch()] == ["y"]


def test_a_class_woken_at_its_refill_goes_behind_an_equal_scout_sent_before() -> None:
    # T and X, of one priority, enqueued at one instant: T refused first (its bucket
    # refills at 60), X next (the pool's one unit is held). The pool frees at 2 while
    # the worker is busy: X goes to the queue and waits there. At 60 T goes too, behind
    # X. (Waking all sent T at 2 as well, ahead of X, refused first: T went first.)
    clock = ManualClock()
    d = Distributor(
        clock,
        gates=[per_tenant_limit(clock), PoolGate(ResourcePool("db", size=1))],
        lease=None,
    )
    d.add_worker(Worker("w", capacity=1))
    d.add_worker(Worker("side", capacity=1, skills={"s"}))
    d.submit(Task("H", tenant="h", resources={"db": 1}, requires={"s"}))
    d.submit(Task("T0", tenant="a"))
    assert [a.task.id for a in d.dispatch()] == ["H", "T0"]
    d.update_worker("side", capacity=0)
    d.complete("T0")
    clock.set(1.0)
    d.submit(Task("T", tenant="a"))
    d.submit(Task("X", tenant="x", resources={"db": 1}))
    assert d.dispatch() == []
    d.submit(Task("F", tenant="f"))
    assert [a.task.id for a in d.dispatch()] == ["F"]
    clock.set(2.0)
    d.complete("H")
    assert d.dispatch() == [] and d.state_of("X") is TaskState.QUEUED
    assert d.state_of("T") is TaskState.PARKED and d.next_wakeup() == 60.0
    clock.set(60.0)
    d.complete("F")
    assert [a.task.id for a in d.dispatch()] == ["X"]


@pytest.mark.parametrize("scouting", [True, False], ids=["scouts", "waking all"])
def test_a_gangs_leader_a_rate_limit_refused_goes_back_at_every_wakeup(scouting: bool) -> None:
    # The gang's leader waits for the bucket (two units at 10.0). A pool's release at
    # 1.0 wakes the gates: the leader goes back to the queue, as waking all sends it,
    # and a dispatch with room for one task ends its round at the leader, whose gang
    # needs two, before the gates are asked; L behind it waits for the next dispatch.
    clock = ManualClock()
    d = Distributor(
        clock,
        gates=[
            RateGate(RateLimiter(2, per=10.0, burst=2, clock=clock), "api", default=1),
            PoolGate(ResourcePool("db", size=1)),
        ],
        lease=None,
    )
    if not scouting:
        d._scouts = None
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("x", resources={"api": 2, "db": 1}))
    assert [a.task.id for a in d.dispatch()] == ["x"]
    d.submit(Task("g0", priority=1, gang="G", gang_size=2))
    d.submit(Task("g1", priority=1, gang="G", gang_size=2))
    assert d.dispatch() == []
    clock.set(1.0)
    d.complete("x")
    d.submit(Task("L", priority=2, resources={"api": 0.0}))
    assert d.dispatch(1) == []
    assert [a.task.id for a in d.dispatch()] == ["L"]
    clock.set(10.0)
    assert sorted(a.task.id for a in d.dispatch()) == ["g0", "g1"]


class MovingClock:
    """A clock that moves a microsecond at every read, as a real one may between two,
    and refuses to be read more than ``reads`` times (a loop that waits for it to
    stand still fails instead of spinning)."""

    def __init__(self, reads: int = 10_000) -> None:
        self.time = 0.0
        self.reads = reads

    def now(self) -> float:
        self.reads -= 1
        if self.reads < 0:
            raise RuntimeError("the clock was read too often")
        self.time += 1e-6
        return self.time


def test_a_class_whose_time_passed_on_a_moving_clock_is_woken_not_timed_again() -> None:
    # On a clock that moves between reads, "when could it pass" asked just after its
    # time came answered "now", a hair later than the now it was asked at: taken as
    # a later time, each answer moved the class on, and next_wakeup() never returned.
    clock = MovingClock()
    limiter = KeyedRateLimiter(1, per=1.0, burst=1, clock=clock)
    d = Distributor(clock, gates=[KeyedRateGate(limiter, "api", default=1)], lease=None)
    d.add_worker(Worker("w", capacity=10))
    for tenant in "ab":
        d.submit(Task(f"{tenant}1", tenant=tenant))
        d.submit(Task(f"{tenant}2", tenant=tenant))
    assert sorted(a.task.id for a in d.dispatch()) == ["a1", "b1"]
    assert 1.0 < d.next_wakeup() < 1.001  # type: ignore[operator]
    clock.time = 2.0
    assert 2.0 < d.next_wakeup() < 2.001  # type: ignore[operator]
    assert sorted(a.task.id for a in d.dispatch()) == ["a2", "b2"]


def test_a_task_parked_for_its_tenants_bucket_is_explained_by_that_buckets_refill() -> None:
    clock = ManualClock()
    d = Distributor(clock, gates=[per_tenant_limit(clock)], lease=None)
    d.add_worker(Worker("w", capacity=10))
    for tenant, at in (("a", 0.0), ("b", 10.0)):
        clock.set(at)
        d.submit(Task(f"{tenant}1", tenant=tenant))
        d.submit(Task(f"{tenant}2", tenant=tenant))
        assert [x.task.id for x in d.dispatch()] == [f"{tenant}1"]
    # The gate's soonest wakeup is "a"'s refill at 60; "b2" waits for "b"'s, at 70.
    assert d.next_wakeup() == 60.0
    assert d.explain("b2") == "parked: held by the 'api' rate limit, next slot at 70"
    assert d.explain("a2") == "parked: held by the 'api' rate limit, next slot at 60"


def test_a_bucket_a_full_limiter_dropped_lets_its_tasks_pass_at_the_next_wakeup() -> None:
    # A limiter capped at one key drops "a"'s spent bucket when "b" comes: "a" may take
    # a unit again at once. Its parked task waited for its bucket's refill at 60; it goes
    # at the next wakeup of the gates instead (another gate's, at 5), as it did when
    # every refused task went back at each wakeup.
    clock = ManualClock()
    other = RateGate(RateLimiter(1, per=5.0, burst=1, clock=clock), "other")
    keyed = per_tenant_limit(clock, max_keys=1)
    d = Distributor(clock, gates=[keyed, other], lease=None)
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("a1", tenant="a"))
    d.submit(Task("a2", tenant="a"))
    d.submit(Task("x1", tenant="x", resources={"api": 0.0, "other": 1}))
    d.submit(Task("x2", tenant="x", resources={"api": 0.0, "other": 1}))
    assert sorted(a.task.id for a in d.dispatch()) == ["a1", "x1"]
    assert d.next_wakeup() == 5.0
    clock.set(1.0)
    d.submit(Task("b1", tenant="b"))
    assert [a.task.id for a in d.dispatch()] == ["b1"]
    assert keyed.limiter.evicted_active == 1
    clock.set(5.0)
    assert sorted(a.task.id for a in d.dispatch()) == ["a2", "x2"]


def test_a_dispatch_that_pops_nothing_keeps_the_host_hearing_of_the_shut_gates_refill() -> None:
    # The walk stopped at the spent gate; a dispatch with no room, or dispatch(0), looks
    # at no task, and the tasks still wait behind the gate: its refill stays the host's.
    clock = ManualClock()
    d = leasing_nothing_behind_one_a_second(clock, capacity=1)
    for i in range(3):
        d.submit(Task(i))
    assert [a.task.id for a in d.dispatch()] == [0]
    d.add_worker(Worker("v", capacity=1))
    assert d.dispatch() == [] and d._shut_walk
    assert d.next_wakeup() == 1.0
    assert d.dispatch(0) == [] and d.next_wakeup() == 1.0
    d.update_worker("v", capacity=0)
    assert d.dispatch() == [] and d.next_wakeup() == 1.0
    clock.set(1.0)
    d.update_worker("v", capacity=1)
    assert [a.task.id for a in d.dispatch()] == [1]


def test_the_host_hears_when_a_shut_gate_opens_though_another_refused_first() -> None:
    # The pool is asked first and refuses "big"; the rate gate, spent, is never asked,
    # yet it is the one that holds every task back: next_wakeup() is its refill, not
    # the lease of the task holding the pool's unit.
    clock = ManualClock()
    d = Distributor(
        clock,
        gates=[
            PoolGate(ResourcePool("db", size=2)),
            one_a_second(clock),
        ],
    )
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("long", resources={"db": 1}))
    assert [a.task.id for a in d.dispatch()] == ["long"]  # its lease ends at 30 s
    d.submit(Task("big", priority=1, resources={"db": 2}))
    d.submit(Task("small", priority=2, resources={"db": 1}))
    assert d.dispatch() == [] and d.next_wakeup() == 1.0
    clock.set(1.0)
    assert [a.task.id for a in d.dispatch()] == ["small"]


def deadlines_behind_a_spent_limit(clock: ManualClock, on_miss: str) -> Distributor:
    """A DeadlineScheduler behind a limit of one task a second: "first" passes, and
    "soon" (due in 0.5 s) and "later" wait behind the spent limit."""
    d = Distributor(
        clock,
        queue=DeadlineScheduler(clock, on_miss=on_miss),  # type: ignore[arg-type]
        gates=[one_a_second(clock)],
    )
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("first", deadline=10.0, cost=0.1))
    d.submit(Task("later", deadline=50.0, cost=0.1))
    d.submit(Task("soon", deadline=0.5, cost=0.1))
    assert [a.task.id for a in d.dispatch()] == ["soon"]  # earliest deadline first
    assert [d.state_of(t) for t in ("first", "later")] == [TaskState.QUEUED] * 2
    d.submit(Task("due", deadline=0.8, cost=0.1))
    return d


def test_a_task_whose_deadline_passes_behind_a_shut_gate_runs_late_under_run_late() -> None:
    # It never left the queue: it is late there, as a task waiting for a worker would
    # be, and goes first when the gate opens (before, it was taken out, and pushing it
    # back after its deadline dead-lettered it).
    clock = ManualClock()
    d = deadlines_behind_a_spent_limit(clock, "run_late")
    assert d.next_wakeup() == 1.0
    clock.set(1.0)
    assert [a.task.id for a in d.dispatch()] == ["due"]  # 0.2 s late
    assert not d.dlq


def test_a_task_whose_deadline_passes_behind_a_shut_gate_is_dead_lettered_on_time() -> None:
    # Under dead_letter the scheduler hands it back at its deadline, while it waits.
    clock = ManualClock()
    d = deadlines_behind_a_spent_limit(clock, "dead_letter")
    assert d.next_wakeup() == 0.8
    clock.set(0.8)
    d.tick()
    assert d.dlq.get("due").reason is Reason.DEADLINE_MISSED
    clock.set(1.0)
    assert [a.task.id for a in d.dispatch()] == ["first"]


def test_a_gate_wakeup_that_passed_unheeded_hides_no_later_one() -> None:
    # b waits behind the spent gate, due to open at 1.0; no worker has room when that
    # time passes, so nothing takes the wakeup up. Later the gate is spent again: the
    # host must hear of its next refill, not of the one that passed.
    clock = ManualClock()
    d = leasing_nothing_behind_one_a_second(clock, 2)
    d.submit(Task("a"))
    d.submit(Task("b"))
    assert [x.task.id for x in d.dispatch()] == ["a"] and d.next_wakeup() == 1.0
    clock.set(0.5)
    d.remove_worker("w")  # a goes back to the queue
    assert d.dispatch() == []  # no room: no walk
    clock.set(1.5)
    d.tick()
    clock.set(1.6)
    d.add_worker(Worker("v", capacity=2))
    assert len(d.dispatch()) == 1  # the one unit; the other task waits again
    assert d.next_wakeup() == pytest.approx(2.6)


def test_a_parked_task_is_woken_though_a_wakeup_before_it_passed_unheeded() -> None:
    # The gate cannot shut (a task that asks nothing of it came in), so refused tasks
    # are parked. b, parked, is cancelled before the gate's wakeup at 1.0, which then
    # passes with nothing parked for it; d, parked later, must be woken at 2.5 (the
    # wakeup kept from b's refusal hid it, and the host was told of none).
    clock = ManualClock()
    d = leasing_nothing_behind_one_a_second(clock, 5)
    d.submit(Task("free", resources={"api": 0.0}))
    d.submit(Task("a"))
    d.submit(Task("b"))
    assert [x.task.id for x in d.dispatch()] == ["free", "a"] and d.next_wakeup() == 1.0
    d.cancel("b")
    clock.set(1.5)
    d.tick()
    d.submit(Task("c"))
    d.submit(Task("d"))
    assert [x.task.id for x in d.dispatch()] == ["c"]
    assert d.state_of("d") is TaskState.PARKED and d.next_wakeup() == 2.5
    clock.set(2.5)
    assert [x.task.id for x in d.dispatch()] == ["d"]


def test_a_gate_not_asked_since_its_wakeup_passed_hides_no_other_gates_wakeup() -> None:
    # The gates are asked in order and stop at the first refusal: "a"'s gate, not asked
    # since its wakeup at 1.0 passed, still reports it. B1, refused by "b"'s gate until
    # 5.0, must be woken then (the passed 1.0 was the gates' soonest, and was dropped).
    clock = ManualClock()
    gate_b = RateGate(RateLimiter(1, per=5.0, burst=1, clock=clock), "b")
    gate_a = RateGate(RateLimiter(1, per=1.0, burst=1, clock=clock), "a")
    d = Distributor(clock, gates=[gate_b, gate_a], lease=None)
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("A1", resources={"a": 1}))
    d.submit(Task("A2", resources={"a": 1}))
    d.submit(Task("Bx", resources={"b": 1}))
    assert sorted(x.task.id for x in d.dispatch()) == ["A1", "Bx"]
    clock.set(0.5)
    d.cancel("A2")
    clock.set(2.0)
    d.submit(Task("B1", resources={"b": 1}))
    assert d.dispatch() == [] and d.state_of("B1") is TaskState.PARKED
    assert (gate_a.next_wakeup(), d.next_wakeup()) == (1.0, 5.0)
    clock.set(5.0)
    assert [x.task.id for x in d.dispatch()] == ["B1"]


def test_every_task_behind_a_gate_runs_in_priority_order() -> None:
    clock = ManualClock()
    d = Distributor(
        clock, gates=[RateGate(RateLimiter(5, per=1.0, burst=2, clock=clock), "api", default=1)]
    )
    d.add_worker(Worker("w", capacity=1000))
    rng = random.Random(3)
    priorities = {}
    for i in range(200):
        clock.advance(0.001)
        priorities[i] = rng.randint(1, 4)
        d.submit(Task(i, priority=priorities[i]))
    order: list[int] = []
    while len(d):
        for assignment in d.dispatch():
            order.append(assignment.task.id)
            d.complete(assignment.task.id)
        wake = d.next_wakeup()
        assert wake is not None or not len(d)
        if wake is not None:
            clock.set(wake)
    assert sorted(order) == list(range(200))
    # All were waiting from the start: after the first burst, best priority, then oldest.
    later = order[2:]
    assert later == sorted(later, key=lambda i: (priorities[i], i))


def scout_out(clock: ManualClock, queue: str = "priority") -> Distributor:
    """Five tasks of one class behind a spent rate limit, which has just refilled: the
    first of them back in the queue, the scout of its class. (Walking on past a shut
    gate, which would keep them all in the queue.)"""
    d = build(queue, clock, scouting=True, shut=False)
    d.add_worker(Worker("w", capacity=10))
    for i in range(6):
        clock.advance(0.001)
        d.submit(Task(i, priority=2, resources={"api": 2.0}))
    assert [a.task.id for a in d.dispatch()] == [0]  # burst 2 spent; the rest refused
    d.complete(0)
    clock.advance(1.0)
    d.tick()
    assert d._scouts is not None and len(d._scouts) == 1
    assert [d.state_of(i) for i in range(1, 6)] == [TaskState.QUEUED] + [TaskState.PARKED] * 4
    return d


@pytest.mark.parametrize("queue", ["priority", "fair", "fair, keys"])
def test_a_snapshot_carries_the_scouts_out(queue: str) -> None:
    clock = ManualClock()
    d = scout_out(clock, queue)
    assert d._scouts is not None
    snapshot = d.snapshot()
    assert d._scouts.ids() == [1]
    assert snapshot["gate_scouts"] == [[1, 0]]  # no gate-refused task came before it
    twin, twin_clock = restored(snapshot, clock.now(), queue)
    twin._shut = None  # walking on, as the original does
    assert twin.snapshot() == snapshot
    assert twin._scouts is not None and twin._scouts.ids() == [1]
    runs = []
    for clk, dist in ((clock, d), (twin_clock, twin)):
        placed = []
        for _ in range(40):
            for a in dist.dispatch():
                placed.append(a.task.id)
                dist.complete(a.task.id)
            clk.advance(0.5)
            dist.tick()
        assert len(dist) == 0
        runs.append(placed)
    assert runs[0] == runs[1] == [1, 2, 3, 4, 5]


def test_a_distributor_that_keeps_no_scouts_wakes_all_on_restore() -> None:
    clock = ManualClock()
    snapshot = scout_out(clock).snapshot()
    twin_clock = ManualClock(start=clock.now())
    # Preemption advice depends on more than a task's class: this one wakes them all.
    twin = Distributor.restore(
        copy.deepcopy(snapshot),
        twin_clock,
        queue=PriorityQueue(twin_clock),
        preemption=Preemption(),
        gates=gates(twin_clock),
    )
    assert twin._scouts is None
    assert all(twin.state_of(i) is TaskState.QUEUED for i in range(1, 6))


def one_token_a_second(
    clock: ManualClock, queue: str = "priority"
) -> Callable[[bool], Distributor]:
    """Makes a Distributor behind a rate limit of one task a second (scouting or not),
    walking on past a shut gate (which would keep the refused tasks in the queue)."""

    def make(scouting: bool) -> Distributor:
        d = Distributor(
            clock,
            queue=QUEUES[queue](clock),
            gates=[one_a_second(clock)],
            lease=None,
            rng=random.Random(5),
        )
        d._shut = None
        if not scouting:
            d._scouts = None
        d.add_worker(Worker("w", capacity=100))
        return d

    return make


def placements(d: Distributor, clock: ManualClock, steps: int = 20) -> list[Hashable]:
    """Dispatch and complete once a second; what was placed, in order."""
    order: list[Hashable] = []
    for _ in range(steps):
        for assignment in d.dispatch():
            order.append(assignment.task.id)
            d.complete(assignment.task.id)
        clock.advance(1.0)
        d.tick()
    return order


@pytest.mark.parametrize("scouting", [True, False])
def test_a_task_moved_to_another_class_behind_a_scout_is_not_forgotten(scouting: bool) -> None:
    # t2 waits behind its class's scout t1; an urgent task takes the refilled token
    # (clearing the gate's wakeup); t2 is given another priority, so another class.
    clock = ManualClock(start=100.0)
    d = one_token_a_second(clock)(scouting)
    for i in range(3):
        clock.advance(0.001)
        d.submit(Task(f"t{i}", priority=3))
    assert [a.task.id for a in d.dispatch()] == ["t0"]
    clock.advance(1.0)
    d.submit(Task("x", priority=1))
    assert [a.task.id for a in d.dispatch(1)] == ["x"]
    d.reprioritize("t2", 2)
    assert placements(d, clock) == ["t2", "t1"]
    assert d.state_of("t2") is TaskState.COMPLETED


@pytest.mark.parametrize("queue", ["priority", "aging", "fair", "fair, keys"])
def test_tasks_of_one_rank_behind_a_gate_keep_the_order_they_came_in(queue: str) -> None:
    clock = ManualClock(start=100.0)
    make = one_token_a_second(clock, queue)
    runs = []
    for scouting in (True, False):
        d = make(scouting)
        for name in ("a", "b"):  # two classes, all submitted at one instant
            for i in range(3):
                d.submit(Task(f"{name}{i}", priority=1 if name == "a" else 2))
        runs.append(placements(d, clock))
    assert runs[0] == runs[1] == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_a_restored_distributor_sends_scouts_in_the_order_the_original_does() -> None:
    # Tasks of one rank in two classes; the first of one class cancelled, so that the
    # classes' own order differs from the order their tasks were refused in.
    def refused(clock: ManualClock) -> Distributor:
        d = one_token_a_second(clock)(True)
        for task_id, tenant in (("t0", "x"), ("b1", "b"), ("a1", "a"), ("b2", "b")):
            d.submit(Task(task_id, priority=1, tenant=tenant))
        assert [a.task.id for a in d.dispatch()] == ["t0"]
        d.cancel("b1")
        return d

    clock = ManualClock(start=100.0)
    d = refused(clock)
    twin_clock = ManualClock(start=clock.now())
    twin = Distributor.restore(
        copy.deepcopy(d.snapshot()),
        twin_clock,
        gates=[one_a_second(twin_clock)],
        rng=random.Random(5),
    )
    twin._shut = None  # walking on past a shut gate, as the original does
    assert twin.snapshot() == d.snapshot()
    assert placements(d, clock, 4) == placements(twin, twin_clock, 4) == ["a1", "b2"]


def test_routes_that_move_tasks_on_after_a_wait_keep_every_refused_task_going_back() -> None:
    # A task parked for want of a worker starts its step's timer; a class waiting
    # behind its scout would not, and would reach the next pool one step at a time.
    clock = ManualClock()
    first, second = Pool("first", zone="a"), Pool("second", zone="b")
    routed = Distributor(
        clock, gates=gates(clock), routes=[Route([first, Step(second, after=2.0)])]
    )
    assert routed._scouts is None
    single = Distributor(clock, gates=gates(clock), routes=[Route(first)])
    assert single._scouts is not None


def drain(d: Distributor, clock: ManualClock) -> list[Hashable]:
    """Run as a host does (dispatch, complete, sleep until next_wakeup); what was placed."""
    placed: list[Hashable] = []
    for _ in range(50):
        made = d.dispatch()
        for assignment in made:
            placed.append(assignment.task.id)
            d.complete(assignment.task.id)
        wake = d.next_wakeup()
        if wake is not None:
            clock.set(wake)
        elif not made:
            break  # nothing placed, nothing due: the host would sleep for good
    return placed


@pytest.mark.parametrize("scouting", [True, False])
def test_an_assign_that_makes_the_gate_forget_its_wakeup_strands_no_refused_task(
    scouting: bool,
) -> None:
    clock = ManualClock()
    d = one_token_a_second(clock)(scouting)
    for name in "abc":
        d.submit(Task(name))
    assert [a.task.id for a in d.dispatch()] == ["a"]  # b and c refused; the gate: t=1
    clock.advance(1.0)
    d.assign("c", "w")  # takes the refilled token: the gate forgets its wakeup
    assert d.state_of("b") is TaskState.PARKED
    # (Explained by when the rate limit could pass it, not as a pool's hold.)
    assert d.explain("b") == "parked: held by the 'api' rate limit, next slot at 2"
    assert drain(d, clock) == ["b"]  # (c runs under the host's own assign)
    assert d.state_of("b") is TaskState.COMPLETED


class RaisesOnce(LeastConnections):
    """Raises the first time it is asked to place task ``x``."""

    raised = False

    def choose(self, task: Task, tracker: Any, where: Any = None) -> Any:
        if task.id == "x" and not self.raised:
            self.raised = True
            raise RuntimeError("balancer broke")
        return super().choose(task, tracker, where)


def test_units_a_failed_dispatch_gives_back_wake_the_tasks_refused_for_them() -> None:
    clock = ManualClock()
    d = Distributor(clock, gates=[PoolGate(ResourcePool("db", size=1))], balancer=RaisesOnce())
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("p1", priority=1, resources={"db": 1}))
    d.submit(Task("p2", priority=2, resources={"db": 1}))
    d.submit(Task("y", priority=3))
    d.submit(Task("x", priority=4))
    with pytest.raises(RuntimeError):
        # p1 placed; p2 refused for the unit p1 holds, parked as y is placed; x raises.
        d.dispatch()
    # p1's placement was taken back, and its unit with it: p2 may pass now.
    assert d.state_of("p1") is TaskState.QUEUED
    assert d.state_of("p2") is TaskState.QUEUED
    assert sorted(drain(d, clock)) == ["p1", "p2", "x", "y"]


# -- the lot's classes ------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["park", "back", "remove", "first", "take", "wake"]),
            st.integers(0, 30),
        ),
        max_size=120,
    )
)
def test_the_lot_gives_each_class_in_rank_order_and_forgets_what_left(
    ops: list[tuple[str, int]],
) -> None:
    lot = ParkingLot()
    model: dict[Hashable, tuple[int, int, int]] = {}  # id -> (class, rank, ticket)
    taken: dict[Hashable, int] = {}  # id -> the ticket it held when taken first
    due: dict[int, float | None] = {}  # class -> its time (None: woken at every wakeup)
    for verb, n in ops:
        klass, rank = n % 3, (n * 7) % 5
        when = None if n % 4 == 0 else float(n % 5)  # the latest park of a class says
        if verb == "park" and n not in model:
            ticket = lot.park(Task(n), GATES, klass, rank, due=when)
            assert all(ticket > t for _, _, t in model.values())  # after every other
            model[n] = (klass, rank, ticket)
            taken.pop(n, None)
            due[klass] = when
        elif verb == "back" and n in taken and n not in model:  # at the ticket it held
            assert lot.park(Task(n), GATES, klass, rank, taken[n], when) == taken[n]
            model[n] = (klass, rank, taken.pop(n))
            due[klass] = when
        elif verb == "remove" and n in model:
            assert lot.remove(n).id == n
            del model[n]
        elif verb == "first":
            mine = sorted((r, t, i) for i, (k, r, t) in model.items() if k == klass)
            got = lot.take_first(GATES, klass)
            if not mine:
                assert got is None
            else:
                assert got is not None and (got[0].id, got[1]) == (mine[0][2], mine[0][1])
                del model[got[0].id]
                taken[got[0].id] = got[1]
        elif verb == "take":
            assert sorted(t.id for t in lot.take(GATES)) == sorted(model)
            model.clear()
        assert len(lot) == len(model)
        # Classes by the ticket of their first task; the lot's tasks by ticket.
        firsts = {}
        for i, (k, r, t) in model.items():
            firsts[k] = min(firsts.get(k, (r, t, i)), (r, t, i))
        for k in set(due) - set(firsts):
            del due[k]  # a class with no task left goes, and its time with it
        times = [d for d in due.values() if d is not None]
        assert lot.next_due() == (min(times) if times else None)
        now = float(n % 5) if verb == "wake" else -1.0  # (before every time: a look)
        woken = lot.wakeable(GATES, now)
        expected = [k for k in firsts if due[k] is None or due[k] <= now]  # type: ignore[operator]
        assert woken == sorted(expected, key=lambda k: firsts[k][1])
        for k in expected:
            due[k] = None  # woken: untimed from now on
        listed = [t.id for _, tasks in lot.parked() for t in tasks]
        assert listed == sorted(model, key=lambda i: model[i][2])
        for i, (k, _, t) in model.items():
            assert lot.class_of(i) == k and lot.ticket_of(i) == t
        # Stale entries stay bounded by the live ones.
        for key, heap in lot._classes.items():
            assert len(heap) <= 2 * lot._live[key] + 17


@pytest.mark.parametrize("scouting", [True, False], ids=["scouts", "waking all"])
@pytest.mark.parametrize(
    "bounded",
    [
        lambda clock: PriorityQueue(clock, maxsize=2),
        lambda clock: FairScheduler(clock, quotas={None: Quota(max_queued=2)}),
    ],
    ids=["maxsize", "max_queued"],
)
def test_a_bounded_queue_rejects_no_refused_task_when_scouts_go_back(
    scouting: bool, bounded: Callable[[ManualClock], Any]
) -> None:
    # Six tasks behind a gate of one a second, a queue (or a tenant's quota) of two:
    # waking all pushed every refused task back at each refill and the full queue
    # rejected some; one scout a class leaves room.
    clock = ManualClock(start=100.0)
    limiter = RateLimiter(1, per=1.0, burst=1, clock=clock)
    d = Distributor(
        clock,
        queue=bounded(clock),
        gates=[RateGate(limiter, "api", default=1)],
        lease=None,
    )
    d._shut = None  # a walk that stops at the shut gate keeps them queued, within bounds
    if not scouting:
        d._scouts = None
    d.add_worker(Worker("w", capacity=100))
    placed = []
    for r in range(3):
        for i in range(2):
            clock.advance(0.001)
            d.submit(Task(f"a{r}{i}"))
        placed += [a.task.id for a in d.dispatch()]
    for _ in range(6):
        clock.advance(1.0)
        d.tick()
        for assignment in d.dispatch():
            placed.append(assignment.task.id)
            d.complete(assignment.task.id)
    rejected = sorted(e.task.id for e in d.dlq if e.reason is Reason.REJECTED)
    if scouting:
        assert rejected == [] and sorted(placed) == ["a00", "a01", "a10", "a11", "a20", "a21"]
    else:
        assert rejected != [] and len(placed) + len(rejected) == 6


def twins_after(
    steps: Callable[[Distributor], None], gates_of: Callable[[ManualClock], list[Any]]
) -> tuple[Distributor, Distributor]:
    """A Distributor over ``gates_of(clock)`` and one worker, taken through ``steps``,
    and its twin restored from its snapshot (through JSON, as a file keeps it)."""
    clock = ManualClock()
    d = Distributor(clock, lease=None, gates=gates_of(clock))
    d.add_worker(Worker("w", capacity=10))
    steps(d)
    twin_clock = ManualClock(start=clock.now())
    snapshot = json.loads(json.dumps(d.snapshot()))
    return d, Distributor.restore(snapshot, twin_clock, gates=gates_of(twin_clock))


def test_a_class_untimed_when_refused_stays_untimed_in_a_restored_twin() -> None:
    # "b" was refused by the pool while the rate gate had a unit: its class waits for
    # any wakeup. "x" has spent that unit since, so a class parked now would wait for
    # the refill; the twin keeps the class as it was, and a release sends "b" back in
    # both (before, only the original did, and their events differed).
    def gates_of(clock: ManualClock) -> list[Any]:
        limiter = RateLimiter(1, per=1.0, burst=2, clock=clock)
        return [PoolGate(ResourcePool("db", size=1)), RateGate(limiter, "api")]

    def steps(d: Distributor) -> None:
        for task_id in ("a", "free", "b", "free2"):  # (the free ones keep walks going)
            d.submit(Task(task_id, resources={"db": 1, "api": 1} if len(task_id) == 1 else {}))
            d.dispatch()
        assert d.explain("b") == "parked: held by the 'db' pool, until a task holding it finishes"
        d.submit(Task("x", resources={"api": 1}))
        assert [a.task.id for a in d.dispatch()] == ["x"]

    d, twin = twins_after(steps, gates_of)
    for each in (d, twin):
        each.complete("a")
        assert each.state_of("b") is TaskState.QUEUED


def test_a_restored_twin_knows_which_bucket_drops_the_original_has_acted_on() -> None:
    # A keyed limiter capped at one key dropped t1's spent bucket; the release after
    # it sent every class back ("q" too, refused again by the other rate gate until
    # 10). A twin restored then does not take the drop for a new one: the next release
    # leaves "q" parked in both (before, the twin sent every class again).
    def gates_of(clock: ManualClock) -> list[Any]:
        keyed = KeyedRateLimiter(1, per=10.0, burst=1, clock=clock, max_keys=1)
        return [
            PoolGate(ResourcePool("db", size=2)),
            RateGate(RateLimiter(1, per=10.0, burst=1, clock=clock), "api"),
            KeyedRateGate(keyed, "calls", key=lambda task: task.tenant),
        ]

    def steps(d: Distributor) -> None:
        for task_id, needs in (("a", "db"), ("a2", "db"), ("p", "api"), ("q", "api")):
            d.submit(Task(task_id, resources={needs: 1}))
        assert [a.task.id for a in d.dispatch()] == ["a", "a2", "p"]
        d.submit(Task("c1", tenant="t1", resources={"calls": 1}))
        d.submit(Task("c2", tenant="t2", resources={"calls": 1}))  # drops t1's bucket
        assert [a.task.id for a in d.dispatch()] == ["c1", "c2"]
        d.complete("a2")
        assert d.dispatch() == []
        assert d.explain("q") == "parked: held by the 'api' rate limit, next slot at 10"

    d, twin = twins_after(steps, gates_of)
    for each in (d, twin):
        each.complete("a")
        assert each.state_of("q") is TaskState.PARKED
