"""Nested fair share: a FairScheduler whose tenants' queues are FairSchedulers.

``tenant_of`` says what a tenant is at each level (``task.tenant`` at the top,
say ``task.key`` below), so weights apply at every level: each level's share
is split among its children by weight (hierarchical start-time fair
queueing). Checked here: the lag bound at each level among siblings, by a
Hypothesis property; that spreading work over many keys gains a tenant
nothing; three levels; quotas at the inner level; the Queue contract.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from fair_support import PairLag
from hypothesis import given, settings
from hypothesis import strategies as st

from taskdist import (
    FairScheduler,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    Quota,
    ReentrancyError,
    Task,
    WaitingReason,
)


def by_key(
    weights: dict[Hashable, dict[Hashable, float]] | None = None, **kwargs: Any
) -> Callable[[ManualClock, Hashable], FairScheduler]:
    """The inner factory of a two-level share: each tenant's keys, weighted per tenant."""

    def make(clock: ManualClock, tenant: Hashable) -> FairScheduler:
        own = (weights or {}).get(tenant)
        return FairScheduler(clock, tenant_of=lambda t: t.key, weights=own, **kwargs)

    return make


def served(fair: FairScheduler, pops: int, what: Callable[[Task], Hashable]) -> Counter[Hashable]:
    counts: Counter[Hashable] = Counter()
    for _ in range(pops):
        task = fair.pop()
        assert task is not None
        counts[what(task)] += 1
        fair.release(task)
    return counts


def test_spreading_work_over_a_thousand_keys_gains_a_tenant_nothing() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, inner=by_key())
    for i in range(2000):
        fair.push(Task(f"spread-{i}", tenant="spread", key=f"k{i % 1000}"))
        fair.push(Task(f"single-{i}", tenant="single", key="only"))
    counts = served(fair, 2000, lambda t: t.tenant)
    assert abs(counts["spread"] - counts["single"]) <= 1


def test_a_flat_share_by_key_is_what_splitting_games() -> None:
    """The contrast: sharing by key alone hands the thousand-key tenant almost everything."""
    clock = ManualClock()
    fair = FairScheduler(clock, tenant_of=lambda t: t.key)
    for i in range(2000):
        fair.push(Task(f"spread-{i}", tenant="spread", key=f"k{i % 1000}"))
        fair.push(Task(f"single-{i}", tenant="single", key="only"))
    counts = served(fair, 2000, lambda t: t.tenant)
    assert counts["spread"] > 1900


def test_weights_apply_at_each_level() -> None:
    clock = ManualClock()
    fair = FairScheduler(
        clock,
        weights={"acme": 3.0, "solo": 1.0},
        inner=by_key({"acme": {"alice": 2.0, "bob": 1.0}}),
    )
    for i in range(900):
        fair.push(Task(f"alice-{i}", tenant="acme", key="alice"))
        fair.push(Task(f"bob-{i}", tenant="acme", key="bob"))
        fair.push(Task(f"solo-{i}", tenant="solo", key="x"))
    counts = served(fair, 1200, lambda t: (t.tenant, t.key))
    # acme 3/4 of 1200 = 900, split 2:1 between alice and bob; solo 300.
    assert abs(counts["acme", "alice"] - 600) <= 2
    assert abs(counts["acme", "bob"] - 300) <= 2
    assert abs(counts["solo", "x"] - 300) <= 1


def test_three_levels_plan_tenant_user() -> None:
    plan_of = {"acme": "pro", "globex": "pro", "initech": "free"}

    def tenants(clock: ManualClock, plan: Hashable) -> FairScheduler:
        return FairScheduler(clock, inner=by_key())  # tenants of the plan, then their users

    clock = ManualClock()
    fair = FairScheduler(
        clock, tenant_of=lambda t: plan_of[t.tenant], weights={"pro": 2.0}, inner=tenants
    )
    for i in range(600):
        fair.push(Task(f"acme-{i}", tenant="acme", key=f"u{i % 50}"))
        fair.push(Task(f"globex-{i}", tenant="globex", key="g"))
        fair.push(Task(f"initech-{i}", tenant="initech", key=f"u{i % 7}"))
    counts = served(fair, 900, lambda t: t.tenant)
    # pro gets 2/3 (600), split evenly by its two tenants; free 1/3.
    assert abs(counts["acme"] - 300) <= 2 and abs(counts["globex"] - 300) <= 2
    assert abs(counts["initech"] - 300) <= 2
    stats = fair.stats()
    assert set(stats.tenants) == {"pro", "free"}


def test_a_user_at_its_quota_holds_only_itself() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, inner=by_key(quotas={"greedy": Quota(max_concurrent=1)}))
    for i in range(5):
        fair.push(Task(f"greedy-{i}", tenant="acme", key="greedy"))
        fair.push(Task(f"calm-{i}", tenant="acme", key="calm"))
    first = fair.pop()
    assert first is not None
    rest = [fair.pop() for _ in range(5)]
    assert all(t is not None for t in rest)
    keys = Counter(t.key for t in [first, *rest])  # type: ignore[union-attr]
    assert keys["greedy"] == 1 and keys["calm"] == 5
    assert fair.pop() is None  # only greedy's tasks left, and it is at its limit
    fair.release(first)
    assert fair.pop().key == "greedy"  # type: ignore[union-attr]


def test_expiry_and_removal_reach_the_inner_level() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, inner=by_key())
    fair.push(Task("a0", tenant="acme", key="u", ttl=2.0))
    fair.push(Task("a1", tenant="acme", key="v"))
    fair.push(Task("b0", tenant="beta", key="w"))
    assert fair.next_wakeup() == 2.0
    assert fair.remove("a1").id == "a1"
    clock.advance(2.0)
    assert [t.id for t in fair.expire()] == ["a0"]
    assert [t.id for t in (fair.pop(), fair.pop()) if t is not None] == ["b0"]
    assert len(fair) == 0


def test_each_expiry_is_the_inner_queues_own_at_every_level() -> None:
    # The levels keep no expiry per task: why_waiting, expire()'s order, unpop and
    # snapshots all ask the queue that holds the task.
    clock = ManualClock()
    fair = FairScheduler(clock, inner=by_key())
    fair.push(Task("a", tenant="x", key="u", ttl=3.0))
    clock.advance(1.0)
    fair.push(Task("b", tenant="y", key="v", ttl=1.0))  # due at 2.0
    fair.push(Task("c", tenant="x", key="w", ttl=1.5))  # due at 2.5
    assert fair.next_wakeup() == 2.0
    popped = fair.pop()
    assert popped is not None
    fair.unpop(popped)  # back with its expiry
    assert fair.next_wakeup() == 2.0
    clock.advance(1.5)  # 2.5: b and c due, a not
    assert fair.why_waiting("c").reason is WaitingReason.EXPIRED
    assert fair.why_waiting("a").reason is WaitingReason.TURN
    twin = FairScheduler(ManualClock(2.5), inner=by_key())
    twin.load_snapshot(fair.snapshot())
    assert twin.snapshot() == fair.snapshot()
    for scheduler in (fair, twin):
        assert [t.id for t in scheduler.expire()] == ["b", "c"]
        assert scheduler.next_wakeup() == 3.0


# -- lag at every level, as a property --------------------------------------------------------

level_st = st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=2, max_size=3)


@settings(max_examples=100)
@given(
    tenant_weights=level_st,
    user_weights=level_st,
    specs=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2), st.sampled_from([0.5, 1.0, 3.0])),
        min_size=1,
        max_size=40,
    ),
    pops=st.lists(st.integers(1, 5), max_size=12),
)
def test_each_level_keeps_its_lag_bound(
    tenant_weights: list[float],
    user_weights: list[float],
    specs: list[tuple[int, int, float]],
    pops: list[int],
) -> None:
    tenants = [f"t{i}" for i in range(len(tenant_weights))]
    users = [f"u{i}" for i in range(len(user_weights))]
    tenant_w = dict(zip(tenants, tenant_weights, strict=True))
    user_w = dict(zip(users, user_weights, strict=True))
    fair = FairScheduler(
        ManualClock(), weights=tenant_w, inner=by_key(dict.fromkeys(tenants, user_w))
    )
    top = PairLag(tenant_w)
    within = {t: PairLag(user_w) for t in tenants}
    queued: Counter[tuple[str, str]] = Counter()
    ids = itertools.count()

    def backlogged_tenants() -> list[Hashable]:
        return [t for t in tenants if any(queued[t, u] for u in users)]

    def push_all(batch: list[tuple[int, int, float]]) -> None:
        for t_index, u_index, cost in batch:
            tenant = tenants[t_index % len(tenants)]
            user = users[u_index % len(users)]
            if not any(queued[tenant, u] for u in users):
                top.entered(tenant, backlogged_tenants())
            if not queued[tenant, user]:
                within[tenant].entered(user, [u for u in users if queued[tenant, u]])
            queued[tenant, user] += 1
            fair.push(Task(next(ids), tenant=tenant, key=user, cost=cost))

    def pop_one() -> None:
        task = fair.pop()
        if task is None:
            assert not any(queued.values())
            return
        tenant, user = task.tenant, task.key
        top.served(tenant, task.cost)
        within[tenant].served(user, task.cost)  # type: ignore[index]
        queued[tenant, user] -= 1  # type: ignore[index]
        if not queued[tenant, user]:  # type: ignore[index]
            within[tenant].left(user)  # type: ignore[index]
        if not any(queued[tenant, u] for u in users):  # type: ignore[index]
            top.left(tenant)
        fair.release(task)

    half = len(specs) // 2
    push_all(specs[:half])
    for n in pops:
        for _ in range(n):
            pop_one()
    push_all(specs[half:])
    while any(queued.values()):
        pop_one()


# -- callbacks and bad tenant_of results -------------------------------------------------------


def test_tenant_of_results_are_checked_and_refusals_change_nothing() -> None:
    from hostile import assert_refused

    def build(of: Callable[[Task], Hashable]) -> Callable[[], FairScheduler]:
        def make() -> FairScheduler:
            fair = FairScheduler(ManualClock(), tenant_of=of)
            fair.push(Task("ok", key="fine"))
            return fair

        return make

    def observe(fair: FairScheduler) -> object:
        return len(fair), fair.stats(), [t.id for t in iter(fair.pop, None)]

    nan = float("nan")
    cases: list[tuple[Callable[[Task], Hashable], type[BaseException]]] = [
        (lambda t: nan if t.id == "bad" else t.key, InvalidArgumentError),
        (lambda t: [t.key] if t.id == "bad" else t.key, InvalidTypeError),
        (lambda t: (t.key, nan) if t.id == "bad" else t.key, InvalidArgumentError),
        (lambda t: {}[t.id] if t.id == "bad" else t.key, KeyError),
    ]
    for of, error in cases:
        assert_refused(build(of), lambda f: f.push(Task("bad", key="x")), error, observe)


def test_tenant_of_may_not_call_back() -> None:
    holder: list[FairScheduler] = []

    def sneaky(task: Task) -> Hashable:
        if task.id == "bad" and holder:
            holder[0].pop()
        return task.key

    fair = FairScheduler(ManualClock(), tenant_of=sneaky)
    holder.append(fair)
    fair.push(Task("ok", key="fine"))
    with pytest.raises(ReentrancyError):
        fair.push(Task("bad", key="x"))
    assert len(fair) == 1 and "bad" not in fair


def test_tenant_of_must_be_callable() -> None:
    with pytest.raises(InvalidTypeError, match="tenant_of"):
        FairScheduler(tenant_of="key")  # type: ignore[arg-type]
