"""Weighted shares hold when a gate, not the workers, is the bottleneck.

A Distributor takes the tasks its gates refuse out of the queue and puts
them back when a gate may admit more. Each refill of a tight rate limit used
to leave a FairScheduler empty of queued tasks, which ended its busy period:
every tenant started level again, so one task a refill went to tenants in
turn, whatever their weights (a 3:1 split became 1:1). Only a dispatch of
the last queued task ends a busy period now; tasks that leave unserved keep
the tags as they were.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from taskdist import (
    Distributor,
    FairScheduler,
    ManualClock,
    RateGate,
    RateLimiter,
    Task,
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


def gated(weights: dict[str, float], rate: float, burst: int) -> tuple[Distributor, ManualClock]:
    """A fair Distributor with room for everything, behind one rate limit every task uses."""
    clock = ManualClock()
    d = Distributor(
        clock,
        queue=FairScheduler(clock, weights=weights),
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


@settings(max_examples=40, deadline=None)
@given(
    tenants=st.lists(
        st.tuples(st.sampled_from([0.5, 1.0, 2.0, 3.0]), st.sampled_from([0.5, 1.0, 2.5])),
        min_size=2,
        max_size=4,
    ),
    rate=st.sampled_from([0.5, 1.0, 3.0]),
    burst=st.integers(1, 3),
    rounds=st.integers(5, 60),
    step=st.sampled_from([0.3, 1.0, 2.0]),
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
