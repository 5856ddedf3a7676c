"""Weighted shares hold when a gate, not the workers, is the bottleneck.

A Distributor takes the tasks its gates refuse out of the queue and puts
them back when a gate may admit more. Each refill of a tight rate limit used
to leave a FairScheduler empty of queued tasks, which ended its busy period:
every tenant started level again, so one task a refill went to tenants in
turn, whatever their weights (a 3:1 split became 1:1). Only a dispatch of
the last queued task ends a busy period now; tasks that leave unserved keep
the tags as they were.

The same holds one level down. A tenant whose queue is a scheduler of its
own (nested fair share) is dropped once its tasks are all taken out; its
scheduler is kept with what it owes, so the split between its keys holds
too. The kept scheduler's debts lapse when the outer busy period ends, as
the outer ones do.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskdist import (
    DeadlineError,
    DeadlineScheduler,
    Distributor,
    FairScheduler,
    InvalidArgumentError,
    ManualClock,
    Priority,
    PriorityQueue,
    Queue,
    Quota,
    RateGate,
    RateLimiter,
    SnapshotError,
    Task,
    UnknownTenantError,
    Worker,
)


def test_removing_the_last_queued_task_ends_no_busy_period() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, weights={"a": 1.0, "b": 1.0})
    fair.push(Task("a1", tenant="a", cost=2.0))
    fair.push(Task("a2", tenant="a", cost=2.0))
    fair.push(Task("b1", tenant="b", cost=2.0))
    first = fair.pop()
    assert first is not None and first.id == "a1"
    fair.release(first)
    before = fair.stats()
    fair.remove("a2")
    fair.remove("b1")
    assert len(fair) == 0
    # The tags are as they were: "a" owes the cost it was served, "b" nothing.
    assert fair.virtual_time == before.virtual_time == 0.0
    fair.push(Task("a3", tenant="a", cost=2.0))
    fair.push(Task("b2", tenant="b", cost=2.0))
    assert fair.pop().id == "b2"  # type: ignore[union-attr]


def test_expiring_the_last_queued_task_ends_no_busy_period() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock)
    fair.push(Task("a1", tenant="a"))
    fair.push(Task("a2", tenant="a", ttl=1.0))
    fair.push(Task("b1", tenant="b", ttl=1.0))
    assert fair.pop().id == "a1"  # type: ignore[union-attr]
    clock.advance(2.0)
    assert sorted(task.id for task in fair.expire()) == ["a2", "b1"]
    fair.push(Task("a3", tenant="a"))
    fair.push(Task("b2", tenant="b"))
    assert fair.pop().id == "b2"  # type: ignore[union-attr]


def test_dispatching_the_last_queued_task_ends_the_busy_period() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock)
    fair.push(Task("a1", tenant="a", cost=2.0))
    assert fair.pop().id == "a1"  # type: ignore[union-attr]
    # Nothing queued: every tenant starts level, "a"'s debt lapsed.
    assert fair.virtual_time == 2.0
    fair.push(Task("a2", tenant="a"))
    fair.push(Task("b1", tenant="b"))
    assert fair.pop().id == "a2"  # type: ignore[union-attr]


def by_key(clock: ManualClock, **options: object) -> FairScheduler:
    """Tenants each with a fair scheduler of their own over their tasks' keys."""
    return FairScheduler(
        clock, inner=lambda c, tenant: FairScheduler(c, tenant_of=lambda t: t.key, **options)
    )


def test_a_nested_scheduler_keeps_its_tags_when_its_tenant_leaves_unserved() -> None:
    clock = ManualClock()
    fair = by_key(clock)
    for task in (Task("x1", tenant="t", key="x"), Task("x2", tenant="t", key="x")):
        fair.push(task)
    fair.push(Task("y1", tenant="t", key="y"))
    first = fair.pop()
    assert first is not None and first.id == "x1"
    fair.release(first)
    fair.remove("x2")
    fair.remove("y1")  # the tenant has nothing left: dropped, its scheduler kept
    fair.push(Task("x3", tenant="t", key="x"))
    fair.push(Task("y2", tenant="t", key="y"))
    assert fair.pop().id == "y2"  # type: ignore[union-attr]  # "x" owes its turn


def left_owing_beside_another() -> FairScheduler:
    """ "t" served on key "x" and dropped with the rest taken out (its scheduler kept,
    "x" owing), and "other" with one task queued: the last."""
    fair = by_key(ManualClock())
    fair.push(Task("x1", tenant="t", key="x"))
    fair.push(Task("x2", tenant="t", key="x"))
    fair.push(Task("y1", tenant="t", key="y"))
    fair.push(Task("o1", tenant="other"))
    x1 = fair.pop()
    assert x1 is not None and x1.id == "x1"
    fair.release(x1)
    fair.remove("x2")
    fair.remove("y1")
    return fair


def test_a_kept_scheduler_lapses_when_the_outer_busy_period_ends() -> None:
    fair = left_owing_beside_another()
    assert fair.pop().id == "o1"  # type: ignore[union-attr]  # the last: the busy period ends
    fair.push(Task("x3", tenant="t", key="x"))
    fair.push(Task("y2", tenant="t", key="y"))
    assert fair.pop().id == "x3"  # type: ignore[union-attr]  # level again: first come


def test_undoing_the_pop_that_ended_the_busy_period_keeps_the_scheduler_owing() -> None:
    fair = left_owing_beside_another()
    o1 = fair.pop()
    assert o1 is not None and o1.id == "o1"
    fair.unpop(o1)  # the busy period did not end after all
    fair.push(Task("x3", tenant="t", key="x"))
    fair.push(Task("y2", tenant="t", key="y"))
    assert [fair.pop().id for _ in range(3)] == ["o1", "y2", "x3"]  # type: ignore[union-attr]


def test_a_kept_scheduler_keeps_its_keys_rate_buckets() -> None:
    clock = ManualClock()
    fair = by_key(clock, quotas={"x": Quota(rate=1, per=10.0)})
    fair.push(Task("x1", tenant="t", key="x"))
    fair.push(Task("x2", tenant="t", key="x"))
    x1 = fair.pop()
    assert x1 is not None
    fair.release(x1)
    fair.remove("x2")  # leaving and coming back would give "x" a fresh bucket
    fair.push(Task("x3", tenant="t", key="x"))
    assert fair.pop() is None
    assert fair.next_wakeup() == 10.0
    clock.advance(10.0)
    assert fair.pop().id == "x3"  # type: ignore[union-attr]


def test_a_kept_scheduler_is_let_go_once_nothing_of_it_is_in_force() -> None:
    clock = ManualClock()
    fair = by_key(clock, quotas={"x": Quota(rate=1, per=10.0)})
    fair.push(Task("x1", tenant="t", key="x", cost=0.0))  # free: "x" owes nothing
    fair.push(Task("x2", tenant="t", key="x"))
    x1 = fair.pop()
    assert x1 is not None
    fair.release(x1)
    kept = fair._tenants["t"].inner
    fair.remove("x2")
    assert fair._idle.holds(kept)
    clock.advance(10.0)  # the bucket is full again: nothing of "t" is in force
    fair.next_wakeup()
    assert not fair._idle.count


def test_a_tenant_whose_scheduler_owes_nothing_leaves_nothing_behind() -> None:
    clock = ManualClock()
    fair = by_key(clock)
    fair.push(Task("x1", tenant="t", key="x"))
    x1 = fair.pop()  # its last task dispatched: the nested busy period ends, no debt
    assert x1 is not None
    fair.release(x1)
    assert not fair._idle.count


def test_a_scheduler_serving_others_lets_go_of_tenants_that_left_owing() -> None:
    clock = ManualClock()
    fair = by_key(clock)
    for i in range(3):
        fair.push(Task(f"bg{i}", tenant="bg", key="k"))
    served = 3
    for n in range(200):  # tenants seen once, each leaving with key "x" owed a turn
        fair.push(Task(f"{n}x", tenant=n, key="x"))
        fair.push(Task(f"{n}y", tenant=n, key="y"))
        seen = set()
        while seen != {"bg", n}:  # "bg" is served too: the virtual time moves on
            task = fair.pop()
            assert task is not None
            fair.release(task)
            seen.add(task.tenant)
            if task.tenant == "bg":
                fair.push(Task(f"bg{served}", tenant="bg", key="k"))  # still backlogged
                served += 1
        fair.remove(f"{n}y")
    fair.next_wakeup()
    # It moved past what each owed: only the last few are kept, not all 200.
    assert fair._idle.count <= 4


def test_a_snapshot_restored_after_a_kept_schedulers_buckets_filled_loads() -> None:
    clock = ManualClock()
    fair = by_key(clock, quotas={"x": Quota(rate=1, per=10.0)})
    fair.push(Task("x1", tenant="t", key="x", cost=0.0))
    fair.push(Task("x2", tenant="t", key="x"))
    x1 = fair.pop()
    assert x1 is not None
    fair.release(x1)
    fair.remove("x2")  # kept while "x"'s bucket refills
    saved = fair.snapshot()
    assert saved["idle_queues"]
    later = ManualClock(start=clock.now() + 20.0)  # back up with the bucket full
    twin = by_key(later, quotas={"x": Quota(rate=1, per=10.0)})
    twin.load_snapshot(saved)
    assert not twin._idle.count
    twin.push(Task("x3", tenant="t", key="x"))
    assert twin.pop().id == "x3"  # type: ignore[union-attr]


def t_left_owing(fair: FairScheduler) -> Task:
    """Tenant "t" (a scheduler by key) served "x1", then dropped with its scheduler kept
    owing "y" a turn; the pop of the last queued task ("o1", returned, running) ends the
    busy period, so the debt lapses."""
    for task_id, tenant, key in (("x1", "t", "x"), ("x2", "t", "x"), ("y1", "t", "y")):
        fair.push(Task(task_id, tenant=tenant, key=key))
    fair.push(Task("o1", tenant="other", key="x"))
    x1 = fair.pop()
    assert x1 is not None
    fair.release(x1)
    fair.remove("x2")
    fair.remove("y1")
    o1 = fair.pop()
    assert o1 is not None and o1.id == "o1"
    return o1


def test_a_push_its_kept_scheduler_refuses_leaves_the_latest_pop_undoable() -> None:
    clock = ManualClock()
    fair = FairScheduler(
        clock,
        inner=lambda c, t: FairScheduler(
            c, tenant_of=lambda t: t.key, strict_tenants=True, weights={"x": 1.0, "y": 1.0}
        ),
    )
    o1 = t_left_owing(fair)
    with pytest.raises(UnknownTenantError):
        fair.push(Task("z1", tenant="t", key="z"))  # "z" is unknown to t's scheduler
    fair.unpop(o1)  # the refused push changed nothing
    assert fair.pop() is o1


def test_a_late_task_coming_back_past_a_lapsed_kept_scheduler_runs_late() -> None:
    # The CRITICAL lane is a DeadlineScheduler (run_late); tenant "t"'s kept scheduler owes
    # a turn that the latest pop made lapse. Before the push starts it level, the lane is
    # asked whether it refuses the task: it must be asked with the task's age, as its
    # push is, so a task coming back after its deadline runs late instead of being refused.
    def make(clock: ManualClock, tenant: object) -> Queue:
        if tenant is None:
            return DeadlineScheduler(clock)
        return FairScheduler(clock, tenant_of=lambda t: t.key)

    clock = ManualClock()
    fair = FairScheduler(clock, inner=make, critical_bypass=True)  # type: ignore[arg-type]
    t_left_owing(fair)
    clock.advance(10.0)
    back = Task("c1", tenant="t", key="x", priority=Priority.CRITICAL, deadline=5.0, cost=1.0)
    assert fair.push(back, enqueued_at=1.0) is None
    lane = fair._bypass
    assert lane is not None and isinstance(lane.inner, DeadlineScheduler)
    assert lane.inner.is_late("c1") and fair.pop() is back


def test_check_push_passes_the_age_to_inner_schedulers_only() -> None:
    clock = ManualClock(start=10.0)
    fair = FairScheduler(clock, inner=DeadlineScheduler)
    fair.push(Task("a1", tenant="a", deadline=50.0))
    back = Task("a2", tenant="a", deadline=5.0)
    with pytest.raises(DeadlineError):
        fair.check_push(back)
    fair.check_push(back, enqueued_at=2.0)
    with pytest.raises(InvalidArgumentError, match="enqueued_at"):
        fair.check_push(back, enqueued_at=11.0)  # in the future
    # A queue of the user's is asked as the protocol has it: with the task alone.
    asked: list[Task] = []

    class Checked(PriorityQueue):
        def check_push(self, task: Task) -> None:  # type: ignore[override]
            asked.append(task)

    class CheckedDeadlines(DeadlineScheduler):  # its own check_push, without enqueued_at
        def check_push(self, task: Task) -> None:  # type: ignore[override]
            asked.append(task)

    mine = FairScheduler(clock, inner=lambda c, t: Checked(c))
    mine.push(Task("b1", tenant="b"))
    mine.check_push(Task("b2", tenant="b"), enqueued_at=2.0)
    theirs = FairScheduler(clock, inner=lambda c, t: CheckedDeadlines(c))
    theirs.push(Task("c1", tenant="c", deadline=50.0))
    theirs.check_push(Task("c2", tenant="c", deadline=5.0), enqueued_at=2.0)
    assert [task.id for task in asked] == ["b2", "c2"]
    assert len(fair) == len(mine) == len(theirs) == 1


def test_a_snapshot_whose_kept_scheduler_runs_a_task_is_refused() -> None:
    def left_owing(fair: FairScheduler, running: bool) -> None:
        for task_id, key in (("x1", "x"), ("x2", "x"), ("y1", "y"), ("y2", "y")):
            fair.push(Task(task_id, tenant="t", key=key))
        x1 = fair.pop()
        assert x1 is not None
        fair.release(x1)
        if running:
            assert fair.pop() is not None  # y1 runs
        for task_id in ("x2", "y1", "y2"):
            if task_id in fair:
                fair.remove(task_id)

    clock = ManualClock()
    fair = by_key(clock)
    left_owing(fair, running=False)
    saved = fair.snapshot()
    other = by_key(clock)
    left_owing(other, running=True)  # "t" holds a record: its scheduler runs "y1"
    saved["idle_queues"][0][1] = other.snapshot()["tenants"][0]["queue"]
    twin = by_key(ManualClock(start=clock.now()))
    with pytest.raises(SnapshotError, match="nothing queued or running"):
        twin.load_snapshot(saved)
    assert len(twin) == 0 and not twin._idle.count


def test_a_factory_may_not_hand_a_kept_scheduler_to_another_tenant() -> None:
    clock = ManualClock()
    shared = FairScheduler(clock, tenant_of=lambda t: t.key)
    fair = FairScheduler(clock, inner=lambda c, tenant: shared)
    fair.push(Task("x1", tenant="a", key="x"))
    fair.push(Task("y1", tenant="a", key="y"))
    x1 = fair.pop()
    assert x1 is not None
    fair.release(x1)
    fair.remove("y1")  # "a" dropped, owing: its scheduler is kept for it
    with pytest.raises(InvalidArgumentError, match="another tenant holds"):
        fair.push(Task("b1", tenant="b", key="x"))
    assert len(fair) == 0 and "b1" not in fair
    fair.push(Task("y2", tenant="a", key="y"))  # "a" gets it back
    assert fair.pop().id == "y2"  # type: ignore[union-attr]


def gated(
    weights: dict[str, float], rate: float, burst: int, *, nested: dict[str, float] | None = None
) -> tuple[Distributor, ManualClock]:
    """A fair Distributor with room for everything, behind one rate limit every task uses
    (with ``nested``, each tenant shares by key with those weights)."""
    clock = ManualClock()
    if nested is None:
        queue = FairScheduler(clock, weights=weights)
    else:
        keys = nested
        queue = FairScheduler(
            clock,
            weights=weights,
            inner=lambda c, tenant: FairScheduler(c, tenant_of=lambda t: t.key, weights=keys),
        )
    d = Distributor(
        clock,
        queue=queue,
        gates=[RateGate(RateLimiter(rate, per=1.0, burst=burst, clock=clock), "api", default=1)],
    )
    d.add_worker(Worker("w", capacity=10_000))
    return d, clock


def test_weights_hold_behind_a_rate_limit() -> None:
    d, clock = gated({"a": 3.0, "b": 1.0}, rate=1.0, burst=1)
    for i in range(200):
        d.submit(Task(f"a{i}", tenant="a"))
        d.submit(Task(f"b{i}", tenant="b"))
    served: Counter[object] = Counter()
    for _ in range(80):  # one token a second: one task a round
        for assignment in d.dispatch():
            served[assignment.task.tenant] += 1
            d.complete(assignment.task.id)
        clock.advance(1.0)
    assert served == {"a": 60, "b": 20}


def test_a_tenants_split_by_key_holds_behind_a_rate_limit() -> None:
    d, clock = gated({}, rate=1.0, burst=1, nested={"x": 3.0, "y": 1.0})
    for i in range(200):
        d.submit(Task(f"x{i}", tenant="t", key="x"))
        d.submit(Task(f"y{i}", tenant="t", key="y"))
    served: Counter[object] = Counter()
    for _ in range(80):
        for assignment in d.dispatch():
            served[assignment.task.key] += 1
            d.complete(assignment.task.id)
        clock.advance(1.0)
    assert served == {"x": 60, "y": 20}


# (weight, cost of each task) of two to four tenants or keys; the gate's rate a second;
# the seconds between rounds.
SHARES = st.lists(
    st.tuples(st.sampled_from([0.5, 1.0, 2.0, 3.0]), st.sampled_from([0.5, 1.0, 2.5])),
    min_size=2,
    max_size=4,
)
RATES = st.sampled_from([0.5, 1.0, 3.0])
STEPS = st.sampled_from([0.3, 1.0, 2.0])


@settings(max_examples=40, deadline=None)
@given(
    tenants=SHARES,
    rate=RATES,
    burst=st.integers(1, 3),
    rounds=st.integers(5, 60),
    step=STEPS,
)
def test_backlogged_tenants_behind_a_rate_limit_keep_the_fair_lag_bound(
    tenants: list[tuple[float, float]], rate: float, burst: int, rounds: int, step: float
) -> None:
    # Every task takes one token, so the gate admits or refuses them alike and the
    # fair order alone picks who passes: the SFQ bound holds between any two
    # tenants that stay backlogged, |W_i/w_i - W_j/w_j| <= c_i/w_i + c_j/w_j.
    names = [f"t{i}" for i in range(len(tenants))]
    weight = {name: w for name, (w, _) in zip(names, tenants, strict=True)}
    cost = {name: c for name, (_, c) in zip(names, tenants, strict=True)}
    d, clock = gated(weight, rate, burst)
    per_tenant = int(rounds * rate * step) + burst + 2  # never runs out
    for i in range(per_tenant):
        for name in names:
            d.submit(Task(f"{name}-{i}", tenant=name, cost=cost[name]))
    served = dict.fromkeys(names, 0.0)
    for _ in range(rounds):
        for assignment in d.dispatch():
            task = assignment.task
            served[task.tenant] += task.cost  # type: ignore[index]
            d.complete(task.id)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                lag = abs(served[a] / weight[a] - served[b] / weight[b])
                assert lag <= cost[a] / weight[a] + cost[b] / weight[b] + 1e-9
        clock.advance(step)
    assert sum(served.values()) > 0


@settings(max_examples=40, deadline=None)
@given(
    keys=SHARES,
    tenants=st.integers(1, 3),
    rate=RATES,
    burst=st.integers(1, 3),
    rounds=st.integers(5, 60),
    step=STEPS,
)
def test_backlogged_keys_behind_a_rate_limit_keep_the_fair_lag_bound_in_each_tenant(
    keys: list[tuple[float, float]],
    tenants: int,
    rate: float,
    burst: int,
    rounds: int,
    step: float,
) -> None:
    # One level down, within each tenant: the SFQ bound between any two of its keys
    # that stay backlogged, although every refill takes the tenant's tasks out.
    names = [f"k{i}" for i in range(len(keys))]
    weight = {name: w for name, (w, _) in zip(names, keys, strict=True)}
    cost = {name: c for name, (_, c) in zip(names, keys, strict=True)}
    d, clock = gated({}, rate, burst, nested=weight)
    per_key = int(rounds * rate * step) + burst + 2  # never runs out
    for t in range(tenants):
        for i in range(per_key):
            for name in names:
                d.submit(Task(f"{t}-{name}-{i}", tenant=t, key=name, cost=cost[name]))
    served = {(t, name): 0.0 for t in range(tenants) for name in names}
    for _ in range(rounds):
        for assignment in d.dispatch():
            task = assignment.task
            served[task.tenant, task.key] += task.cost  # type: ignore[index]
            d.complete(task.id)
        for t in range(tenants):
            for i, a in enumerate(names):
                for b in names[i + 1 :]:
                    lag = abs(served[t, a] / weight[a] - served[t, b] / weight[b])
                    assert lag <= cost[a] / weight[a] + cost[b] / weight[b] + 1e-9
        clock.advance(step)
    assert sum(served.values()) > 0
