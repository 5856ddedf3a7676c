"""FairScheduler: weighted fair share across tenants, quotas, plans; Quota.

The fairness bounds of the FairScheduler docstring are checked at every step
by Hypothesis properties; a stateful machine compares it with a plain model
(no task lost or duplicated, quota invariants); the seed-004 plans scenario
runs as a small simulation.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable

import pytest
from distributor_support import Without
from fair_support import EPS, LagChecker
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from taskdist import (
    DeadlineScheduler,
    Distributor,
    DuplicateTaskError,
    FairScheduler,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    OverReleaseError,
    Priority,
    PriorityQueue,
    Queue,
    Quota,
    QuotaExceededError,
    Reason,
    Task,
    TaskdistError,
    UnknownPlanError,
    UnknownTaskError,
    WaitingReason,
    jain_index,
)


def make(**kwargs: object) -> tuple[ManualClock, FairScheduler]:
    clock = ManualClock()
    return clock, FairScheduler(clock, **kwargs)  # type: ignore[arg-type]


def state(fair: FairScheduler) -> tuple[object, ...]:
    """Everything observable about a scheduler, to prove a refused call changed nothing."""
    return (len(fair), fair.stats(), fair.next_wakeup(), repr(fair))


def fill(fair: FairScheduler, tenant: Hashable, n: int, cost: float = 1.0, **kw: object) -> None:
    for i in range(n):
        fair.push(Task(f"{tenant}-{i}", tenant=tenant, cost=cost, **kw))  # type: ignore[arg-type]


def drain(fair: FairScheduler, n: int) -> list[Task]:
    out = []
    for _ in range(n):
        task = fair.pop()
        assert task is not None
        out.append(task)
    return out


# -- fair order -------------------------------------------------------------


def test_satisfies_the_queue_protocol() -> None:
    assert isinstance(make()[1], Queue)


def test_weights_split_dispatches_in_proportion() -> None:
    _, fair = make(weights={"a": 3.0, "b": 1.0})
    fill(fair, "a", 400)
    fill(fair, "b", 400)
    served = Counter(task.tenant for task in drain(fair, 400))
    # 3:1 of 400 with a lag of at most one task each way.
    assert abs(served["a"] - 300) <= 1
    assert abs(served["b"] - 100) <= 1


def test_cost_not_count_is_shared() -> None:
    _, fair = make()
    fill(fair, "cheap", 100, cost=1.0)
    fill(fair, "dear", 100, cost=4.0)
    served = Counter(task.tenant for task in drain(fair, 50))
    assert abs(served["cheap"] - 4 * served["dear"]) <= 5


def test_priority_holds_inside_a_tenant() -> None:
    _, fair = make()
    fair.push(Task("a-low", tenant="a", priority=Priority.LOW))
    fair.push(Task("a-high", tenant="a", priority=Priority.HIGH))
    fair.push(Task("b-low", tenant="b", priority=Priority.LOW))
    assert [t.id for t in drain(fair, 3)] == ["a-high", "b-low", "a-low"]


def test_default_inner_queue_ages_a_tenants_low_priority_task() -> None:
    clock, fair = make()
    fair.push(Task("old", tenant="a", priority=Priority.BACKGROUND))
    clock.advance(3 * 600.0)  # three levels at the default 1/600 per second
    fair.push(Task("new", tenant="a", priority=Priority.HIGH))
    assert fair.pop().id == "old"  # type: ignore[union-attr]


def test_custom_inner_queue_factory_orders_inside_a_tenant() -> None:
    made: list[PriorityQueue] = []

    def fifo(clock: ManualClock) -> PriorityQueue:
        queue = PriorityQueue(clock)
        made.append(queue)
        return queue

    _, fair = make(inner=fifo)
    fair.push(Task("x", tenant="a", priority=3))
    fair.push(Task("y", tenant="a", priority=1))
    assert fair.pop().id == "y"  # type: ignore[union-attr]
    assert len(made) == 2  # a probe at construction, then tenant "a"


def test_new_tenant_starts_at_virtual_time_without_credit() -> None:
    _, fair = make()
    fill(fair, "a", 100)
    drain(fair, 50)
    fill(fair, "b", 100)
    order = [t.tenant for t in drain(fair, 20)]
    # b gets no catch-up for the 50 pops it was not there: it alternates with a.
    assert max(len(list(g)) for _, g in itertools.groupby(order)) <= 2
    assert order.count("b") in (9, 10, 11)


def test_idle_tenant_returning_banks_no_credit() -> None:
    _, fair = make()
    fair.push(Task("a0", tenant="a"))
    fill(fair, "b", 100)
    drain(fair, 2)  # a0 and b-0; a is now idle
    drain(fair, 40)  # b alone for 40 pops
    fill(fair, "a", 20)
    order = [t.tenant for t in drain(fair, 10)]
    assert order.count("a") <= 6  # no burst for the time it was away


def test_tenant_idle_after_an_expensive_task_keeps_its_debt() -> None:
    _, fair = make()
    fair.push(Task("a-big", tenant="a", cost=10.0))
    fill(fair, "b", 50)
    assert fair.pop().id == "a-big"  # type: ignore[union-attr]
    drain(fair, 5)  # b, b, ... a is idle
    fill(fair, "a", 5)
    # a's tag is 10, b's reaches 10 only after 10 tasks of cost 1.
    order = [t.tenant for t in drain(fair, 6)]
    assert order == ["b"] * 5 + ["a"]


def test_pop_where_serves_the_fairest_tenant_with_a_matching_task() -> None:
    _, fair = make()
    fair.push(Task("a-gpu", tenant="a", priority=1, requires={"gpu"}))
    fair.push(Task("a-cpu", tenant="a", priority=3))
    fair.push(Task("b-cpu", tenant="b", priority=1))

    def cpu(task: Task) -> bool:
        return not task.requires

    # a is fairest (first in); its best task needs a gpu, its next one does not.
    assert fair.pop(cpu).id == "a-cpu"  # type: ignore[union-attr]
    assert fair.pop(cpu).id == "b-cpu"  # type: ignore[union-attr]
    assert fair.pop(cpu) is None
    assert [t.id for t in drain(fair, 1)] == ["a-gpu"]


def test_pop_where_passes_over_a_tenant_without_moving_its_tasks() -> None:
    _, fair = make()
    fair.push(Task("a-gpu", tenant="a", requires={"gpu"}))
    fill(fair, "b", 3)
    taken = fair.pop(lambda t: not t.requires)
    assert taken is not None and taken.tenant == "b"
    assert "a-gpu" in fair
    assert fair.pop().id == "a-gpu"  # type: ignore[union-attr]


def test_peek_agrees_with_pop_and_changes_nothing() -> None:
    _, fair = make(weights={"a": 2.0})
    fill(fair, "a", 5)
    fill(fair, "b", 5)
    for _ in range(10):
        before = state(fair)
        peeked = fair.peek()
        assert state(fair) == before
        assert fair.pop() is peeked
    assert fair.peek() is None


def test_zero_cost_tasks_are_free_for_fairness() -> None:
    _, fair = make()
    fill(fair, "free", 5, cost=0.0)
    fill(fair, "paid", 5, cost=1.0)
    order = [t.tenant for t in drain(fair, 6)]
    assert order[:6].count("free") == 5


# -- CRITICAL bypass ----------------------------------------------------------


def test_critical_bypass_jumps_the_fair_order_and_is_charged() -> None:
    _, fair = make(critical_bypass=True)
    fill(fair, "a", 5)
    fill(fair, "b", 5)
    drain(fair, 2)
    fair.push(Task("b-urgent", tenant="b", priority=Priority.CRITICAL, cost=3.0))
    assert fair.pop().id == "b-urgent"  # type: ignore[union-attr]
    # b was charged 3: a is served until its tag catches up.
    assert [t.tenant for t in drain(fair, 3)] == ["a", "a", "a"]


def test_without_bypass_a_critical_task_waits_its_tenants_turn() -> None:
    _, fair = make()
    fill(fair, "a", 5)
    fill(fair, "b", 5)
    drain(fair, 2)
    fair.push(Task("b-urgent", tenant="b", priority=Priority.CRITICAL))
    order = [t.id for t in drain(fair, 2)]
    assert order[0].startswith("a-")
    assert order[1] == "b-urgent"  # first inside b, but after a's turn


def test_critical_bypass_still_respects_the_concurrency_quota() -> None:
    _, fair = make(critical_bypass=True, quotas={"b": Quota(max_concurrent=1)})
    fill(fair, "a", 3)
    fair.push(Task("b-0", tenant="b"))
    assert fair.pop().id == "a-0"  # type: ignore[union-attr]
    b0 = fair.pop()
    assert b0 is not None and b0.id == "b-0"
    fair.push(Task("b-urgent", tenant="b", priority=Priority.CRITICAL))
    assert fair.pop().tenant == "a"  # type: ignore[union-attr]
    assert fair.why_waiting("b-urgent").reason is WaitingReason.CONCURRENCY_QUOTA
    fair.release(b0)
    assert fair.pop().id == "b-urgent"  # type: ignore[union-attr]


# -- quotas -------------------------------------------------------------------


def test_tenant_at_concurrency_quota_is_skipped_without_blocking_others() -> None:
    _, fair = make(quotas={"a": Quota(max_concurrent=2)})
    fill(fair, "a", 5)
    fill(fair, "b", 5)
    served = drain(fair, 6)
    assert Counter(t.tenant for t in served) == {"a": 2, "b": 4}
    assert fair.why_waiting("a-2").reason is WaitingReason.CONCURRENCY_QUOTA
    fair.release(next(t for t in served if t.tenant == "a"))
    assert fair.pop().tenant == "a"  # type: ignore[union-attr]


def test_concurrency_quota_holds_until_release_even_when_alone() -> None:
    _, fair = make(quotas={"a": Quota(max_concurrent=1)})
    fill(fair, "a", 2)
    first = fair.pop()
    assert first is not None
    assert fair.pop() is None
    assert fair.peek() is None
    fair.release(first)
    assert fair.pop().id == "a-1"  # type: ignore[union-attr]


def test_rate_quota_lets_a_burst_through_then_refills() -> None:
    clock, fair = make(quotas={"a": Quota(rate=2, per=10.0)})
    fill(fair, "a", 5)
    assert [t.id for t in drain(fair, 2)] == ["a-0", "a-1"]
    assert fair.pop() is None
    waiting = fair.why_waiting("a-2")
    assert waiting.reason is WaitingReason.RATE_QUOTA
    assert waiting.until == pytest.approx(5.0)  # one token per 10/2 s
    assert fair.next_wakeup() == pytest.approx(5.0)
    clock.advance(4.9)
    assert fair.pop() is None
    clock.advance(0.1)
    assert fair.pop().id == "a-2"  # type: ignore[union-attr]
    assert fair.pop() is None


def test_rate_held_tenant_does_not_block_others() -> None:
    _, fair = make(quotas={"a": Quota(rate=1, per=60.0)})
    fill(fair, "a", 3)
    fill(fair, "b", 3)
    assert Counter(t.tenant for t in drain(fair, 4)) == {"a": 1, "b": 3}


def test_peek_takes_no_rate_token() -> None:
    _, fair = make(quotas={"a": Quota(rate=1, per=60.0)})
    fill(fair, "a", 2)
    for _ in range(5):
        assert fair.peek().id == "a-0"  # type: ignore[union-attr]
        assert fair.peek(lambda t: True).id == "a-0"  # type: ignore[union-attr]
    assert fair.pop().id == "a-0"  # type: ignore[union-attr]
    assert fair.pop() is None


def test_pop_where_takes_no_token_from_a_tenant_it_passes_over() -> None:
    _, fair = make(quotas={"a": Quota(rate=1, per=60.0)})
    fair.push(Task("a-gpu", tenant="a", requires={"gpu"}))
    fair.push(Task("b-cpu", tenant="b"))
    assert fair.pop(lambda t: not t.requires).id == "b-cpu"  # type: ignore[union-attr]
    assert fair.pop().id == "a-gpu"  # type: ignore[union-attr]


def test_rate_refill_rejoins_at_the_virtual_time_without_credit() -> None:
    clock, fair = make(quotas={"a": Quota(rate=1, per=10.0)})
    fill(fair, "a", 20)
    fill(fair, "b", 40)
    drain(fair, 12)  # a once, b eleven times while a is held
    clock.advance(10.0)
    order = [t.tenant for t in drain(fair, 4)]
    assert order.count("a") == 1  # one token: no catch-up burst


def test_max_queued_overflow_raises_quota_exceeded_and_changes_nothing() -> None:
    _, fair = make(quotas={"a": Quota(max_queued=2)})
    fill(fair, "a", 2)
    before = state(fair)
    with pytest.raises(QuotaExceededError, match="max_queued"):
        fair.push(Task("a-2", tenant="a"))
    assert state(fair) == before
    assert "a-2" not in fair
    fair.push(Task("b-0", tenant="b"))  # others are not affected


def test_max_queued_zero_refuses_a_new_tenant_without_registering_it() -> None:
    _, fair = make(plans={"suspended": Quota(max_queued=0)}, default_plan="suspended")
    before = state(fair)
    with pytest.raises(QuotaExceededError):
        fair.push(Task("x", tenant="new"))
    assert state(fair) == before
    assert fair.stats().tenants == {}


def test_release_frees_concurrency_and_double_release_is_refused() -> None:
    _, fair = make(quotas={"a": Quota(max_concurrent=1)})
    fill(fair, "a", 2)
    task = fair.pop()
    assert task is not None
    fair.release(task)
    before = state(fair)
    with pytest.raises(OverReleaseError, match="already released"):
        fair.release(task)
    assert state(fair) == before


def test_release_of_a_task_never_handed_out_is_refused() -> None:
    _, fair = make()
    fill(fair, "a", 1)
    before = state(fair)
    with pytest.raises(OverReleaseError):
        fair.release(Task("a-0", tenant="a"))  # queued, not running
    with pytest.raises(OverReleaseError):
        fair.release(Task("stranger"))
    assert state(fair) == before


def test_running_task_cannot_be_pushed_again_until_released() -> None:
    _, fair = make()
    fill(fair, "a", 1)
    task = fair.pop()
    assert task is not None
    before = state(fair)
    with pytest.raises(DuplicateTaskError, match="release"):
        fair.push(task)
    assert state(fair) == before
    fair.release(task)
    fair.push(task, enqueued_at=0.0)
    assert task.id in fair


# -- plans, weights, runtime changes ---------------------------------------


PLANS = {
    "free": Quota(max_concurrent=1, weight=1.0),
    "pro": Quota(max_concurrent=3, weight=2.0),
}


def test_plan_quota_and_weight_apply_to_each_tenant_on_it() -> None:
    _, fair = make(plans=PLANS, tenant_plan={"alice": "free", "bob": "free", "carol": "pro"})
    for tenant in ("alice", "bob", "carol"):
        fill(fair, tenant, 5)
    served = Counter(t.tenant for t in drain(fair, 5))
    assert served == {"alice": 1, "bob": 1, "carol": 3}  # per tenant, not pooled
    stats = fair.stats().tenants
    assert stats["carol"].weight == 2.0
    assert stats["carol"].plan == "pro"


def test_default_plan_covers_unlisted_tenants() -> None:
    _, fair = make(plans=PLANS, default_plan="free")
    fill(fair, "anyone", 3)
    assert fair.pop() is not None
    assert fair.pop() is None
    assert fair.stats().tenants["anyone"].plan == "free"


def test_tenant_weight_overrides_its_plans_weight() -> None:
    _, fair = make(plans=PLANS, tenant_plan={"a": "pro"}, weights={"a": 5.0})
    fill(fair, "a", 1)
    assert fair.stats().tenants["a"].weight == 5.0


def test_own_quota_overrides_the_plans() -> None:
    _, fair = make(plans=PLANS, tenant_plan={"a": "free"}, quotas={"a": Quota(max_concurrent=2)})
    fill(fair, "a", 3)
    assert len(drain(fair, 2)) == 2
    assert fair.pop() is None


def test_set_plan_changes_limits_at_runtime() -> None:
    _, fair = make(plans=PLANS, tenant_plan={"a": "free"})
    fill(fair, "a", 5)
    assert fair.pop() is not None
    assert fair.pop() is None
    fair.set_plan("a", "pro")
    assert len(drain(fair, 2)) == 2
    assert fair.pop() is None
    fair.set_plan("a", None)  # no plan: no limits
    assert len(drain(fair, 2)) == 2


def test_set_quota_at_runtime_holds_a_tenant_then_frees_it() -> None:
    _, fair = make()
    fill(fair, "a", 3)
    fill(fair, "b", 3)
    fair.set_quota("a", Quota(max_concurrent=0))
    assert {t.tenant for t in drain(fair, 3)} == {"b"}
    assert fair.pop() is None
    fair.set_quota("a", None)
    assert fair.pop().tenant == "a"  # type: ignore[union-attr]


def test_set_weight_changes_the_share_at_runtime() -> None:
    _, fair = make()
    fill(fair, "a", 300)
    fill(fair, "b", 300)
    drain(fair, 10)
    fair.set_weight("a", 4.0)
    served = Counter(t.tenant for t in drain(fair, 100))
    assert abs(served["a"] - 80) <= 2
    fair.set_weight("a", None)
    served = Counter(t.tenant for t in drain(fair, 100))
    assert abs(served["a"] - 50) <= 2


def test_set_weight_rescales_a_tenants_lead_to_the_new_weight() -> None:
    _, fair = make()
    fair.push(Task("a-big", tenant="a", cost=10.0))
    fill(fair, "a", 5)
    fill(fair, "b", 20)
    assert fair.pop().id == "a-big"  # type: ignore[union-attr]
    stats = fair.stats()
    assert stats.tenants["a"].virtual_start - stats.virtual_time == 10.0
    fair.set_weight("a", 10.0)
    stats = fair.stats()
    # The same 10 of cost is worth 1 at weight 10: a is served again after one b.
    assert stats.tenants["a"].virtual_start - stats.virtual_time == pytest.approx(1.0)
    assert [t.tenant for t in drain(fair, 2)] == ["b", "a"]


def test_configuring_an_unseen_tenant_applies_when_it_arrives() -> None:
    _, fair = make(plans=PLANS)
    fair.set_plan("later", "free")
    fair.set_weight("later", 3.0)
    assert fair.stats().tenants == {}
    fill(fair, "later", 2)
    stats = fair.stats().tenants["later"]
    assert (stats.plan, stats.weight) == ("free", 3.0)


# -- time: TTL, next_wakeup, why_waiting ------------------------------------


def test_expire_returns_expired_tasks_of_every_tenant_earliest_first() -> None:
    clock, fair = make(critical_bypass=True)
    fair.push(Task("a-late", tenant="a", ttl=5.0))
    fair.push(Task("b-early", tenant="b", ttl=2.0))
    fair.push(Task("c-crit", tenant="c", ttl=3.0, priority=Priority.CRITICAL))
    fair.push(Task("a-keep", tenant="a"))
    assert fair.next_wakeup() == 2.0
    clock.advance(6.0)
    assert fair.why_waiting("b-early").reason is WaitingReason.EXPIRED
    assert len(fair) == 4  # expired tasks count until expire() returns them
    assert [t.id for t in fair.expire()] == ["b-early", "c-crit", "a-late"]
    assert len(fair) == 1
    assert fair.next_wakeup() is None
    assert fair.pop().id == "a-keep"  # type: ignore[union-attr]


def test_expired_task_is_never_dispatched() -> None:
    clock, fair = make()
    fair.push(Task("a0", tenant="a", ttl=1.0))
    fair.push(Task("b0", tenant="b"))
    clock.advance(1.0)
    assert [t.id for t in drain(fair, 1)] == ["b0"]
    assert fair.pop() is None
    assert [t.id for t in fair.expire()] == ["a0"]


@pytest.mark.parametrize(
    ("inner", "late_reason"),
    [
        # A priority queue holds a task past its deadline: its TTL is the reason.
        (None, Reason.TTL_EXPIRED),
        (lambda c, t: FairScheduler(c), Reason.TTL_EXPIRED),
        # A deadline scheduler that expires missed deadlines says which came first.
        (lambda c, t: DeadlineScheduler(c, on_miss="dead_letter"), Reason.DEADLINE_MISSED),
        # A queue that cannot say: the deadline, passed, is the guess.
        (lambda c, t: Without(PriorityQueue(c), "expire_with_reasons"), Reason.DEADLINE_MISSED),
    ],
    ids=["priority", "nested", "deadline", "no-reasons"],
)
def test_expire_with_reasons_gives_each_task_its_tenant_queues_reason(
    inner: Callable[[ManualClock, Hashable], Queue] | None, late_reason: Reason
) -> None:
    clock = ManualClock()
    fair = FairScheduler(clock) if inner is None else FairScheduler(clock, inner=inner)
    fair.push(Task("ttl-first", tenant="a", ttl=2.0, deadline=10.0))
    fair.push(Task("deadline-first", tenant="b", ttl=4.0, deadline=3.0, cost=0.5))
    fair.push(Task("keep", tenant="a"))
    clock.advance(5.0)
    evictions = fair.expire_with_reasons()
    assert [(e.task.id, e.reason) for e in evictions] == [
        ("ttl-first", Reason.TTL_EXPIRED),
        ("deadline-first", late_reason),
    ]
    assert len(fair) == 1 and fair.expire_with_reasons() == []
    assert fair.pop().id == "keep"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "inner",
    [
        lambda c, t: DeadlineScheduler(c, on_miss="dead_letter"),
        DeadlineScheduler,  # its tenant queues share the scheduler's id table
        lambda c, t: FairScheduler(
            c,
            tenant_of=lambda task: task.key,
            inner=lambda c, t: DeadlineScheduler(c, on_miss="dead_letter"),
        ),  # one level down
    ],
    ids=["dead-letter factory", "shared table", "nested"],
)
@pytest.mark.parametrize("popped_first", [False, True])
def test_why_waiting_says_expired_once_a_deadline_queue_would_drop_the_task(
    inner: Callable[..., Queue], popped_first: bool
) -> None:
    # A DeadlineScheduler under dead_letter drops a task whose deadline passed; any
    # drops it at its TTL's end. Until expire() returns it, why_waiting says so (it
    # said TURN: nothing was ahead of it, and pop() gave None).
    clock = ManualClock(100.0)
    fair = FairScheduler(clock, inner=inner)
    deadlined = inner is not DeadlineScheduler  # run_late (the class's default) keeps it
    fair.push(Task("t", tenant="c", deadline=105.0, ttl=None if deadlined else 5.0))
    assert fair.why_waiting("t").reason is WaitingReason.TURN
    clock.advance(5.0)
    if popped_first:
        assert fair.pop() is None  # (the queue has set the task aside by now)
    assert fair.why_waiting("t").reason is WaitingReason.EXPIRED
    assert [e.task.id for e in fair.expire_with_reasons()] == ["t"]


def test_next_wakeup_follows_the_earliest_ttl_still_queued() -> None:
    _, fair = make()
    fair.push(Task("a0", tenant="a", ttl=2.0))
    fair.push(Task("a1", tenant="a", ttl=9.0))
    assert fair.next_wakeup() == 2.0
    fair.remove("a0")
    assert fair.next_wakeup() == 9.0
    fair.pop()
    assert fair.next_wakeup() is None


def test_why_waiting_says_turn_for_an_eligible_tenant() -> None:
    _, fair = make()
    fill(fair, "a", 2)
    waiting = fair.why_waiting("a-1")
    assert (waiting.tenant, waiting.reason, waiting.until) == ("a", WaitingReason.TURN, None)


def test_why_waiting_refuses_running_and_unknown_tasks() -> None:
    _, fair = make()
    fill(fair, "a", 1)
    fair.pop()
    with pytest.raises(UnknownTaskError, match="running"):
        fair.why_waiting("a-0")
    with pytest.raises(UnknownTaskError):
        fair.why_waiting("nope")
    with pytest.raises(InvalidTypeError):
        fair.why_waiting(["unhashable"])


def test_remove_cancels_a_queued_task_and_its_tenant_leaves_the_order() -> None:
    _, fair = make()
    fair.push(Task("a0", tenant="a"))
    fair.push(Task("b0", tenant="b"))
    assert fair.remove("a0").id == "a0"
    assert "a0" not in fair and len(fair) == 1
    assert [t.id for t in drain(fair, 1)] == ["b0"]
    assert fair.pop() is None


def test_tenant_none_is_a_tenant_like_any_other() -> None:
    _, fair = make()
    fill(fair, None, 2)
    fill(fair, "a", 2)
    assert Counter(t.tenant for t in drain(fair, 2)) == {None: 1, "a": 1}


# -- stats --------------------------------------------------------------------


def test_stats_report_shares_entitlements_and_jains_index() -> None:
    _, fair = make(weights={"a": 3.0})
    fill(fair, "a", 10, cost=2.0)
    fill(fair, "b", 10, cost=1.0)
    fill(fair, "idle", 1)
    fair.remove("idle-0")
    served = drain(fair, 8)
    running = served[-1]
    for task in served[:-1]:
        fair.release(task)
    cost = defaultdict(float)
    for task in served:
        cost[task.tenant] += task.cost
    total = sum(cost.values())
    stats = fair.stats()
    assert stats.queued == 12 and stats.running == 1
    for tenant, weight in (("a", 3.0), ("b", 1.0)):
        s = stats.tenants[tenant]
        assert s.dispatched_cost == cost[tenant]
        assert s.share == pytest.approx(cost[tenant] / total)
        assert s.entitled_share == pytest.approx(weight / 4.0)
        assert s.running == (1 if running.tenant == tenant else 0)
    assert "idle" not in stats.tenants  # nothing queued or running: dropped
    assert stats.jain_index == pytest.approx(jain_index([cost["a"] / 3.0, cost["b"] / 1.0]))


# -- bad input ----------------------------------------------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_concurrent": -1}, InvalidArgumentError),
        ({"max_concurrent": 1.5}, InvalidTypeError),
        ({"max_concurrent": True}, InvalidTypeError),
        ({"rate": 0}, InvalidArgumentError),
        ({"rate": -3}, InvalidArgumentError),
        ({"rate": 0.5}, InvalidArgumentError),
        ({"rate": NAN}, InvalidArgumentError),
        ({"rate": INF}, InvalidArgumentError),
        ({"rate": "10"}, InvalidTypeError),
        ({"rate": 1, "per": 0}, InvalidArgumentError),
        ({"rate": 1, "per": -60.0}, InvalidArgumentError),
        ({"rate": 1, "per": NAN}, InvalidArgumentError),
        ({"max_queued": -1}, InvalidArgumentError),
        ({"weight": 0.0}, InvalidArgumentError),
        ({"weight": NAN}, InvalidArgumentError),
    ],
)
def test_quota_refuses_bad_fields(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error, match="Quota"):
        Quota(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"weights": {"a": 0.0}}, InvalidArgumentError),
        ({"weights": {"a": -1.0}}, InvalidArgumentError),
        ({"weights": {"a": NAN}}, InvalidArgumentError),
        ({"weights": {"a": INF}}, InvalidArgumentError),
        ({"weights": {"a": "2"}}, InvalidTypeError),
        ({"weights": [("a", 1.0)]}, InvalidTypeError),
        ({"default_weight": 0}, InvalidArgumentError),
        ({"default_weight": NAN}, InvalidArgumentError),
        ({"quotas": {"a": 3}}, InvalidTypeError),
        ({"plans": {"free": {"max_concurrent": 1}}}, InvalidTypeError),
        ({"plans": PLANS, "tenant_plan": {"a": "gold"}}, UnknownPlanError),
        ({"tenant_plan": {"a": "free"}}, UnknownPlanError),
        ({"plans": PLANS, "default_plan": "gold"}, UnknownPlanError),
        ({"plans": PLANS, "default_plan": ["free"]}, InvalidTypeError),
        ({"inner": 3}, InvalidTypeError),
        ({"inner": lambda clock: object()}, InvalidTypeError),
        ({"critical_bypass": "yes"}, InvalidTypeError),
        ({"clock": object()}, InvalidTypeError),
    ],
)
def test_constructor_refuses_bad_configuration(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        FairScheduler(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, TaskdistError)


def configured() -> FairScheduler:
    fair = FairScheduler(
        ManualClock(), plans=PLANS, tenant_plan={"a": "free"}, quotas={"b": Quota(rate=2)}
    )
    fill(fair, "a", 3)
    fill(fair, "b", 3)
    fair.pop()
    return fair


BAD_CALLS: list[tuple[str, Callable[[FairScheduler], object], type[Exception]]] = [
    ("weight zero", lambda f: f.set_weight("a", 0), InvalidArgumentError),
    ("weight negative", lambda f: f.set_weight("a", -2.0), InvalidArgumentError),
    ("weight nan", lambda f: f.set_weight("a", NAN), InvalidArgumentError),
    ("weight str", lambda f: f.set_weight("a", "2"), InvalidTypeError),
    ("weight tenant unhashable", lambda f: f.set_weight(["a"], 2.0), InvalidTypeError),
    ("unknown plan", lambda f: f.set_plan("a", "gold"), UnknownPlanError),
    ("plan unhashable", lambda f: f.set_plan("a", ["free"]), InvalidTypeError),
    ("quota not a Quota", lambda f: f.set_quota("a", {"max_concurrent": 1}), InvalidTypeError),
    ("push non-task", lambda f: f.push("a-9"), InvalidTypeError),
    ("push duplicate", lambda f: f.push(Task("a-2", tenant="a")), DuplicateTaskError),
    (
        "push from the future",
        lambda f: f.push(Task("new", tenant="a"), enqueued_at=5.0),
        InvalidArgumentError,
    ),
    (
        "push enqueued_at nan",
        lambda f: f.push(Task("new", tenant="a"), enqueued_at=NAN),
        InvalidArgumentError,
    ),
    ("remove unknown", lambda f: f.remove("nope"), UnknownTaskError),
    ("remove unhashable", lambda f: f.remove(["a-1"]), InvalidTypeError),
    ("release non-task", lambda f: f.release("a-0"), InvalidTypeError),
    ("release unknown", lambda f: f.release(Task("nope")), OverReleaseError),
    ("why_waiting unknown", lambda f: f.why_waiting("nope"), UnknownTaskError),
]


@pytest.mark.parametrize(
    ("call", "error"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_bad_calls_raise_specific_errors_and_change_nothing(
    call: Callable[[FairScheduler], object], error: type[Exception]
) -> None:
    fair = configured()
    before = state(fair)
    with pytest.raises(error) as info:
        call(fair)
    assert isinstance(info.value, TaskdistError)
    assert state(fair) == before


# -- the fairness bound, at every step --------------------------------------

weights_st = st.floats(min_value=0.25, max_value=8.0)
costs_st = st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=1, max_size=8)


@given(weights=st.lists(weights_st, min_size=2, max_size=5), data=st.data())
def test_lag_between_backlogged_tenants_is_bounded_at_every_step(
    weights: list[float], data: st.DataObject
) -> None:
    tenants = [f"t{i}" for i in range(len(weights))]
    weight_of = dict(zip(tenants, weights, strict=True))
    fair = FairScheduler(ManualClock(), weights=weight_of)
    checker = LagChecker(fair, weight_of)
    for tenant in tenants:
        costs = data.draw(costs_st, label=f"costs of {tenant}")
        checker.push(
            tenant, [Task(f"{tenant}-{k}", tenant=tenant, cost=c) for k, c in enumerate(costs)]
        )
    while checker.pop() is not None:
        pass


@given(
    weights=st.lists(weights_st, min_size=2, max_size=4),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(0, 3), costs_st),
            st.tuples(st.just("pop"), st.integers(1, 6), st.just([])),
        ),
        max_size=30,
    ),
)
def test_lag_bound_holds_as_tenants_arrive_leave_and_return(
    weights: list[float], ops: list[tuple[str, int, list[float]]]
) -> None:
    tenants = [f"t{i}" for i in range(len(weights))]
    weight_of = dict(zip(tenants, weights, strict=True))
    fair = FairScheduler(ManualClock(), weights=weight_of)
    checker = LagChecker(fair, weight_of)
    ids = itertools.count()
    for op, n, costs in ops:
        if op == "push":
            tenant = tenants[n % len(tenants)]
            checker.push(tenant, [Task(next(ids), tenant=tenant, cost=c) for c in costs])
        else:
            for _ in range(n):
                checker.pop()


@given(
    weights=st.lists(weights_st, min_size=2, max_size=4),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(0, 3), costs_st),
            st.tuples(st.just("pop"), st.integers(1, 6), st.just([])),
        ),
        max_size=30,
    ),
)
def test_pop_with_an_always_true_predicate_serves_as_plain_pop(
    weights: list[float], ops: list[tuple[str, int, list[float]]]
) -> None:
    orders = []
    for where in (None, lambda task: True):
        tenants = [f"t{i}" for i in range(len(weights))]
        fair = FairScheduler(ManualClock(), weights=dict(zip(tenants, weights, strict=True)))
        ids = itertools.count()
        order = []
        for op, n, costs in ops:
            if op == "push":
                tenant = tenants[n % len(tenants)]
                for cost in costs:
                    fair.push(Task(next(ids), tenant=tenant, cost=cost))
            else:
                for _ in range(n):
                    task = fair.pop(where)
                    order.append(None if task is None else task.id)
        orders.append((order, fair.virtual_time))
    assert orders[0] == orders[1]


@settings(max_examples=40)
@given(
    quotas=st.lists(
        st.builds(
            Quota,
            max_concurrent=st.integers(1, 3),
            rate=st.sampled_from([None, 1, 2, 4]),
            per=st.sampled_from([1.0, 2.0, 4.0]),
        ),
        min_size=1,
        max_size=3,
    ),
    weights=st.lists(weights_st, min_size=4, max_size=4),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(0, 3), costs_st),
            st.tuples(st.just("pop"), st.integers(1, 4), st.just([])),
            st.tuples(st.just("release"), st.integers(0, 50), st.just([])),
            st.tuples(st.just("tick"), st.sampled_from([0.25, 0.5, 1, 3]), st.just([])),
        ),
        max_size=50,
    ),
)
def test_no_tenant_gets_ahead_of_a_backlogged_eligible_tenant(
    quotas: list[Quota], weights: list[float], ops: list[tuple[str, float, list[float]]]
) -> None:
    """Guarantee 2: others (quota-held at times) never lead tenant "v" by more than the lag."""
    others = [f"q{i}" for i in range(len(quotas))]
    weight_of = dict(zip(["v", *others], weights[: len(others) + 1], strict=True))
    clock = ManualClock()
    fair = FairScheduler(clock, weights=weight_of, quotas=dict(zip(others, quotas, strict=True)))
    ids = itertools.count()
    queued: Counter[str] = Counter()
    last_cost: dict[str, float] = defaultdict(float)
    running: list[Task] = []
    # While v is backlogged: other -> [D, min D, cmax_other, cmax_v], D = W_o/w_o - W_v/w_v.
    lead: dict[str, list[float]] = {}
    for op, n, costs in ops:
        if op == "push":
            tenant = (["v", *others])[int(n) % (len(others) + 1)]
            if tenant == "v" and not queued["v"]:
                lead = {o: [0.0, 0.0, last_cost[o], last_cost["v"]] for o in others}
            for cost in costs:
                fair.push(Task(next(ids), tenant=tenant, cost=cost))
            queued[tenant] += len(costs)
        elif op == "release" and running:
            fair.release(running.pop(int(n) % len(running)))
        elif op == "tick":
            clock.advance(n)
        elif op == "pop":
            for _ in range(int(n)):
                task = fair.pop()
                if task is None:
                    assert not queued["v"], "v is eligible and backlogged but was not served"
                    break
                running.append(task)
                tenant = str(task.tenant)
                queued[tenant] -= 1
                last_cost[tenant] = task.cost
                for other, entry in lead.items():
                    if tenant == other:
                        entry[0] += task.cost / weight_of[other]
                        entry[2] = max(entry[2], task.cost)
                    elif tenant == "v":
                        entry[0] -= task.cost / weight_of["v"]
                        entry[3] = max(entry[3], task.cost)
                    bound = entry[2] / weight_of[other] + entry[3] / weight_of["v"]
                    assert entry[0] - entry[1] <= bound + EPS, (other, entry, bound)
                    entry[1] = min(entry[1], entry[0])
                if tenant == "v" and not queued["v"]:
                    lead = {}


# -- the stateful machine: no loss, quota invariants ------------------------


TENANTS: list[Hashable] = ["a", "b", "c", None]
quota_st = st.builds(
    Quota,
    max_concurrent=st.sampled_from([None, 0, 1, 2, 3]),
    rate=st.sampled_from([None, 1, 2, 4]),
    per=st.sampled_from([1.0, 2.0, 4.0]),
    max_queued=st.sampled_from([None, 0, 2, 5]),
    weight=st.sampled_from([None, 0.5, 2.0]),
)
PREDICATES: dict[str, Callable[[Task], bool] | None] = {
    "any": None,
    "cheap": lambda task: task.cost <= 1.0,
    "urgent": lambda task: task.priority <= 1,
}


class FairMachine(RuleBasedStateMachine):
    """FairScheduler against a plain model of where every task is."""

    @initialize(
        free=quota_st,
        pro=quota_st,
        own=quota_st,
        bypass=st.booleans(),
        aware=st.booleans(),
    )
    def setup(self, free: Quota, pro: Quota, own: Quota, bypass: bool, aware: bool) -> None:
        self.clock = ManualClock()
        self.plans = {"free": free, "pro": pro}
        self.tenant_plan: dict[Hashable, str] = {"a": "free", "b": "pro"}
        self.quotas: dict[Hashable, Quota] = {"c": own}
        self.fair = FairScheduler(
            self.clock,
            plans=self.plans,
            tenant_plan=self.tenant_plan,
            quotas=self.quotas,
            critical_bypass=bypass,
            deadline_aware=aware,
        )
        self.ids = itertools.count()
        self.queued: dict[Hashable, tuple[Task, float | None]] = {}
        self.running: dict[Hashable, Task] = {}
        self.gone: set[Hashable] = set()  # released, removed or expired ids
        # tenant -> dispatch times since its token bucket was last (re)made
        self.dispatches: dict[Hashable, list[float]] = defaultdict(list)
        self.bucket: dict[Hashable, tuple[float, float] | None] = {}

    # the model's view of the configuration

    def quota(self, tenant: Hashable) -> Quota | None:
        if tenant in self.quotas:
            return self.quotas[tenant]
        plan = self.tenant_plan.get(tenant)
        return None if plan is None else self.plans[plan]

    def max_running(self, tenant: Hashable) -> float:
        quota = self.quota(tenant)
        return math.inf if quota is None or quota.max_concurrent is None else quota.max_concurrent

    def running_of(self, tenant: Hashable) -> int:
        return sum(1 for task in self.running.values() if task.tenant == tenant)

    def queued_of(self, tenant: Hashable) -> int:
        return sum(1 for task, _ in self.queued.values() if task.tenant == tenant)

    def rate_would_overflow(self, tenant: Hashable) -> bool:
        """One more dispatch now would break the token bucket's arrival curve."""
        quota = self.quota(tenant)
        if quota is None or quota.rate is None:
            return False
        now = self.clock.now()
        times = self.dispatches[tenant]
        return any(
            sum(1 for t in times if t >= start) + 1
            > quota.rate + quota.rate * (now - start) / quota.per
            for start in times
        )

    def reconfigured(self, tenant: Hashable) -> None:
        quota = self.quota(tenant)
        bucket = None if quota is None or quota.rate is None else (quota.rate, quota.per)
        if self.bucket.get(tenant) != bucket:
            self.dispatches[tenant] = []
        self.bucket[tenant] = bucket

    def live(self) -> list[Hashable]:
        now = self.clock.now()
        return [tid for tid, (_, exp) in self.queued.items() if exp is None or exp > now]

    def may_queue(self, tenant: Hashable) -> bool:
        quota = self.quota(tenant)
        return (
            quota is None or quota.max_queued is None or self.queued_of(tenant) < quota.max_queued
        )

    # rules

    @rule(
        tenant=st.sampled_from(TENANTS),
        tasks=st.lists(
            st.tuples(
                st.sampled_from([0, 1, 2, 3]),
                st.sampled_from([0.0, 0.5, 1.0, 3.0]),
                st.sampled_from([None, None, 1.0, 5.0]),
                st.sampled_from([None, None, 1.0, 4.0]),
            ),
            min_size=1,
            max_size=3,
        ),
    )
    def push(
        self, tenant: Hashable, tasks: list[tuple[int, float, float | None, float | None]]
    ) -> None:
        for priority, cost, ttl, due in tasks:
            deadline = None if due is None else self.clock.now() + due
            task = Task(
                next(self.ids),
                tenant=tenant,
                priority=priority,
                cost=cost,
                ttl=ttl,
                deadline=deadline,
            )
            if not self.may_queue(tenant):
                before = state(self.fair)
                with pytest.raises(QuotaExceededError):
                    self.fair.push(task)
                assert state(self.fair) == before
                continue
            if tenant not in self.bucket:
                self.reconfigured(tenant)
            self.fair.push(task)
            now = self.clock.now()
            self.queued[task.id] = (task, None if ttl is None else now + ttl)

    @rule(kind=st.sampled_from(sorted(PREDICATES)), times=st.integers(1, 4))
    def pop(self, kind: str, times: int) -> None:
        where = PREDICATES[kind]
        for _ in range(times):
            peeked = self.fair.peek(where)
            task = self.fair.pop(where)
            assert task is peeked
            if task is None:
                if where is None:
                    for tid in self.live():
                        tenant = self.queued[tid][0].tenant
                        assert self.running_of(tenant) >= self.max_running(tenant) or (
                            self.rate_would_overflow(tenant)
                        ), f"{tid!r} could have been dispatched"
                return
            assert task.id in self.live(), "dispatched a task that was not queued and live"
            assert where is None or where(task)
            tenant = task.tenant
            assert self.running_of(tenant) < self.max_running(tenant), "over max_concurrent"
            assert not self.rate_would_overflow(tenant), "over the rate quota"
            self.dispatches[tenant].append(self.clock.now())
            del self.queued[task.id]
            self.running[task.id] = task

    @precondition(lambda self: self.running)
    @rule(data=st.data(), requeue=st.booleans())
    def release(self, data: st.DataObject, requeue: bool) -> None:
        tid = data.draw(st.sampled_from(sorted(self.running, key=repr)))
        task = self.running.pop(tid)
        self.fair.release(task)
        before = state(self.fair)
        with pytest.raises(OverReleaseError):
            self.fair.release(task)
        assert state(self.fair) == before
        if not requeue or not self.may_queue(task.tenant):
            self.gone.add(tid)
            return
        self.fair.push(task)
        now = self.clock.now()
        self.queued[tid] = (task, None if task.ttl is None else now + task.ttl)

    @precondition(lambda self: self.queued)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        tid = data.draw(st.sampled_from(sorted(self.queued, key=repr)))
        assert self.fair.remove(tid).id == tid
        del self.queued[tid]
        self.gone.add(tid)

    @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 3.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule()
    def expire(self) -> None:
        now = self.clock.now()
        due = {tid for tid, (_, exp) in self.queued.items() if exp is not None and exp <= now}
        expired = self.fair.expire()
        assert {t.id for t in expired} == due
        times = [self.queued[t.id][1] for t in expired]
        assert times == sorted(times)  # type: ignore[type-var]
        for tid in due:
            del self.queued[tid]
        self.gone |= due

    @rule(
        tenant=st.sampled_from(TENANTS),
        change=st.one_of(
            st.tuples(st.just("plan"), st.sampled_from([None, "free", "pro"])),
            st.tuples(st.just("quota"), st.one_of(st.none(), quota_st)),
            st.tuples(st.just("weight"), st.sampled_from([None, 0.5, 1.0, 3.0])),
        ),
    )
    def reconfigure(self, tenant: Hashable, change: tuple[str, object]) -> None:
        what, value = change
        if what == "weight":
            self.fair.set_weight(tenant, value)  # type: ignore[arg-type]
            return
        if what == "plan":
            self.fair.set_plan(tenant, value)  # type: ignore[arg-type]
            settings_ = self.tenant_plan
        else:
            self.fair.set_quota(tenant, value)  # type: ignore[arg-type]
            settings_ = self.quotas  # type: ignore[assignment]
        if value is None:
            settings_.pop(tenant, None)
        else:
            settings_[tenant] = value  # type: ignore[assignment]
        if tenant in self.bucket:
            self.reconfigured(tenant)

    # invariants

    @invariant()
    def nothing_lost_or_duplicated(self) -> None:
        fair = self.fair
        assert len(fair) == len(self.queued)
        assert all(tid in fair for tid in self.queued)
        assert not any(tid in fair for tid in self.running)
        assert not any(tid in fair for tid in self.gone - self.queued.keys())
        stats = fair.stats()
        assert stats.queued == len(self.queued) and stats.running == len(self.running)
        for tenant, s in stats.tenants.items():
            assert s.queued == self.queued_of(tenant)
            assert s.running == self.running_of(tenant)

    @invariant()
    def why_waiting_names_what_holds_each_task(self) -> None:
        now = self.clock.now()
        for tid, (task, expires) in self.queued.items():
            waiting = self.fair.why_waiting(tid)
            assert waiting.tenant == task.tenant
            if expires is not None and expires <= now:
                assert waiting.reason is WaitingReason.EXPIRED
            elif self.running_of(task.tenant) >= self.max_running(task.tenant):
                assert waiting.reason is WaitingReason.CONCURRENCY_QUOTA
            elif self.rate_would_overflow(task.tenant):
                assert waiting.reason is WaitingReason.RATE_QUOTA
                assert waiting.until is not None and waiting.until > now
            else:
                assert waiting.reason is WaitingReason.TURN

    @invariant()
    def next_wakeup_is_no_later_than_the_next_expiry(self) -> None:
        expiries = [exp for _, exp in self.queued.values() if exp is not None]
        wakeup = self.fair.next_wakeup()
        if expiries:
            assert wakeup is not None and wakeup <= min(expiries)


TestFairMachine = FairMachine.TestCase


# -- seed 004: plans, and a flooding tenant --------------------------------

SEED_PLANS = {
    "free": Quota(max_concurrent=2, rate=10, per=60.0, max_queued=50, weight=1.0),
    "pro": Quota(max_concurrent=5, rate=60, per=60.0, max_queued=500, weight=2.0),
    "enterprise": Quota(max_concurrent=10, weight=4.0),
}
SLOTS = 10  # the platform's max concurrent workflows
LONGEST = 15.0  # its longest workflow (research), seconds


def platform_arrivals(flood: int) -> list[tuple[float, Task]]:
    """An enterprise tenant floods research work at t=0; a free and a pro user keep arriving."""
    arrivals = [(0.0, Task(f"flood-{i}", tenant="flood", cost=LONGEST)) for i in range(flood)]
    for k in range(20):
        # "exploring" workflows, 0.8 s, well inside alice's free quota
        arrivals.append((7.0 + 30.0 * k, Task(f"alice-{k}", tenant="alice", cost=0.8)))
    for k in range(10):
        for j in range(3):
            arrivals.append((11.0 + 60.0 * k, Task(f"bob-{k}-{j}", tenant="bob", cost=5.0)))
    arrivals.sort(key=lambda pair: pair[0])
    return arrivals


Event = tuple[str, Task]


def simulate(
    clock: ManualClock, queue: Queue, arrivals: list[tuple[float, Task]]
) -> tuple[dict[Hashable, float], list[Event], list[Counter[Hashable]]]:
    """Ten slots; a task runs for its cost. Returns waits, push/pop events, running counts."""
    pending = list(reversed(arrivals))
    busy: list[tuple[float, int, Task]] = []
    seq = itertools.count()
    arrived: dict[Hashable, float] = {}
    waits: dict[Hashable, float] = {}
    events: list[Event] = []
    running_counts: list[Counter[Hashable]] = []
    running: Counter[Hashable] = Counter()
    while pending or busy or len(queue):
        times = [pending[-1][0]] if pending else []
        if busy:
            times.append(busy[0][0])
        wakeup = queue.next_wakeup()
        if wakeup is not None and wakeup > clock.now():
            times.append(wakeup)
        if not times:
            break
        clock.set(max(clock.now(), min(times)))
        while busy and busy[0][0] <= clock.now():
            task = heapq.heappop(busy)[2]
            running[task.tenant] -= 1
            queue.release(task)
        while pending and pending[-1][0] <= clock.now():
            task = pending.pop()[1]
            arrived[task.id] = clock.now()
            queue.push(task)
            events.append(("push", task))
        while len(busy) < SLOTS and (task := queue.pop()) is not None:
            waits[task.id] = clock.now() - arrived[task.id]
            events.append(("pop", task))
            running[task.tenant] += 1
            running_counts.append(Counter(running))
            heapq.heappush(busy, (clock.now() + task.cost, next(seq), task))
    return waits, events, running_counts


def assert_nobody_leads(
    events: list[Event], victim: str, weight: dict[str, float], cost: dict[str, float]
) -> None:
    """Guarantee 2 on a run: while ``victim`` is backlogged, no tenant leads it by more than
    ``cost_o/w_o + cost_v/w_v`` in weighted dispatched cost, over any stretch."""
    backlog = 0
    # other -> [D, min D], D = W_o/w_o - W_v/w_v since the victim's backlog began
    lead: dict[str, list[float]] = {}
    for kind, task in events:
        tenant = str(task.tenant)
        if kind == "push":
            if tenant == victim:
                if not backlog:
                    lead = {other: [0.0, 0.0] for other in weight if other != victim}
                backlog += 1
            continue
        for other, entry in lead.items():
            if tenant == other:
                entry[0] += task.cost / weight[other]
            elif tenant == victim:
                entry[0] -= task.cost / weight[victim]
            bound = cost[other] / weight[other] + cost[victim] / weight[victim]
            assert entry[0] - entry[1] <= bound + EPS, (victim, other, entry, bound)
            entry[1] = min(entry[1], entry[0])
        if tenant == victim:
            backlog -= 1
            if not backlog:
                lead = {}
    assert backlog == 0


def fair_platform() -> tuple[ManualClock, FairScheduler]:
    clock = ManualClock()
    fair = FairScheduler(
        clock,
        plans=SEED_PLANS,
        tenant_plan={"flood": "enterprise", "alice": "free", "bob": "pro"},
    )
    return clock, fair


@pytest.mark.parametrize("flood", [100, 1000])
def test_seed_004_flooding_tenant_cannot_push_others_past_their_fair_bound(flood: int) -> None:
    clock, fair = fair_platform()
    waits, events, running_counts = simulate(clock, fair, platform_arrivals(flood))
    assert len(waits) == flood + 20 + 30  # every task ran, none lost

    # Alice always arrives idle, so she is served before any other tenant's
    # second dispatch (guarantee 3): within three slot openings, and every
    # one of the ten slots frees up within the longest workflow.
    alice = [w for tid, w in waits.items() if str(tid).startswith("alice")]
    assert max(alice) <= LONGEST

    # Nobody leads a backlogged tenant by more than the lag (guarantee 2),
    # whatever the size of the flood.
    weight = {"flood": 4.0, "alice": 1.0, "bob": 2.0}
    cost = {"flood": LONGEST, "alice": 0.8, "bob": 5.0}
    assert_nobody_leads(events, "alice", weight, cost)
    assert_nobody_leads(events, "bob", weight, cost)

    # The plans' concurrency quotas held all along, within the ten slots.
    for counts in running_counts:
        assert counts["alice"] <= 2 and counts["bob"] <= 5
        assert sum(counts.values()) <= SLOTS


def test_seed_004_without_fair_sharing_the_flood_starves_the_others() -> None:
    """The same workload through one FIFO queue: the bound above is not trivial."""
    clock = ManualClock()
    waits, events, _ = simulate(clock, PriorityQueue(clock), platform_arrivals(1000))
    alice = [w for tid, w in waits.items() if str(tid).startswith("alice")]
    assert max(alice) > 10 * LONGEST
    with pytest.raises(AssertionError):
        assert_nobody_leads(
            events,
            "alice",
            {"flood": 4.0, "alice": 1.0, "bob": 2.0},
            {"flood": LONGEST, "alice": 0.8, "bob": 5.0},
        )


def test_seed_004_plans_share_the_slots_by_weight_when_all_are_flooding() -> None:
    clock, fair = fair_platform()
    fair.set_quota("alice", Quota(max_concurrent=10, weight=1.0))
    fair.set_quota("bob", Quota(max_concurrent=10, weight=2.0))
    arrivals = [
        (0.0, Task(f"{tenant}-{i}", tenant=tenant, cost=1.0))
        for tenant in ("flood", "alice", "bob")
        for i in range(200)
    ]
    _, events, _ = simulate(clock, fair, arrivals)
    pops = [task for kind, task in events if kind == "pop"]
    first = Counter(task.tenant for task in pops[:140])
    assert abs(first["flood"] - 80) <= 2
    assert abs(first["bob"] - 40) <= 2
    assert abs(first["alice"] - 20) <= 2


# -- an inner queue that drops what misses its deadline -------------------------------


def test_an_inner_queue_that_drops_missed_deadlines_is_asked_when_they_fall_due() -> None:
    clock, fair = make(inner=lambda c: DeadlineScheduler(c, on_miss="dead_letter"))
    fair.push(Task("soon", tenant="a", deadline=5.0, cost=1.0))
    fair.push(Task("later", tenant="a", deadline=50.0, cost=1.0))
    fair.push(Task("none", tenant="b"))
    assert fair.next_wakeup() == 5.0  # no TTL anywhere: the deadline is what is due
    clock.advance(10.0)
    assert [task.id for task in fair.expire()] == ["soon"]
    assert len(fair) == 2 and "soon" not in fair
    assert fair.next_wakeup() == 50.0
    assert {fair.pop().id, fair.pop().id} == {"later", "none"}  # type: ignore[union-attr]


def test_a_distributor_dead_letters_what_such_an_inner_queue_drops() -> None:
    clock = ManualClock()
    queue = FairScheduler(clock, inner=lambda c: DeadlineScheduler(c, on_miss="dead_letter"))
    d = Distributor(clock, queue=queue)
    d.submit(Task("soon", tenant="a", deadline=5.0, cost=1.0))
    assert d.next_wakeup() == 5.0
    clock.advance(6.0)
    d.tick()
    assert d.stats().by_state["dead"] == 1 and len(queue) == 0
    assert [letter.reason for letter in d.dlq] == [Reason.DEADLINE_MISSED]
