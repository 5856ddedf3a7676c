"""FairScheduler.take_along: tasks that start with a popped one without having waited
in the queue (a gang's other members) are held to their tenants' quotas and charged to
their fair shares, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest
from hostile import assert_refused
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    DuplicateTaskError,
    FairScheduler,
    InvalidTypeError,
    ManualClock,
    Quota,
    QuotaExceededError,
    Task,
    TaskStateError,
    UnknownTenantError,
    UnsatisfiableDemandError,
)


def scheduler() -> FairScheduler:
    """alice may run two at a time and has one running; bob has two tokens a minute."""
    clock = ManualClock()
    fair = FairScheduler(
        clock,
        quotas={"alice": Quota(max_concurrent=2), "bob": Quota(rate=2, per=60.0)},
        weights={"carol": 2.0},
    )
    for i in range(3):
        fair.push(Task(f"queued-{i}", tenant=("alice", "bob", "carol")[i]))
    assert fair.pop() is not None  # alice's: one of her two running
    return fair


def view(fair: FairScheduler) -> tuple[Any, ...]:
    stats = fair.stats()
    tenants = {
        key: (t.queued, t.running, t.dispatched, t.dispatched_cost, t.virtual_start)
        for key, t in stats.tenants.items()
    }
    drained = []
    while (task := fair.pop()) is not None:
        drained.append(task.id)
    return stats.queued, stats.running, stats.virtual_time, tenants, drained


def test_tasks_taken_along_run_under_their_tenants_and_are_released_as_popped_ones() -> None:
    fair = scheduler()
    along = [
        Task("a1", tenant="alice", cost=2.0),
        Task("b1", tenant="bob"),
        Task("d1", tenant="dan"),
    ]
    fair.take_along(along)
    stats = fair.stats()
    assert stats.running == 4
    assert stats.tenants["alice"].running == 2 and stats.tenants["alice"].dispatched_cost == 3.0
    assert stats.tenants["dan"].running == 1 and stats.tenants["dan"].queued == 0
    # alice is at her max_concurrent: her queued task... she has none; bob's waits its turn.
    for task in along:
        fair.release(task)
    assert "dan" not in fair.stats().tenants  # idle again: dropped
    with pytest.raises(TaskStateError):
        fair.unpop(Task("queued-0", tenant="alice"))  # taking along ends unpop's turn


def test_a_tenant_at_its_concurrency_limit_holds_its_queued_tasks_until_a_release() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"alice": Quota(max_concurrent=2)})
    fair.push(Task("first", tenant="alice"))
    fair.push(Task("second", tenant="alice"))
    popped = fair.pop()
    assert popped is not None
    fair.take_along([Task("along", tenant="alice")])
    assert fair.pop() is None  # two running: "second" waits
    fair.release(Task("along", tenant="alice"))
    assert fair.pop() is not None


def test_each_member_taken_along_moves_its_tenants_fair_share() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock)
    for i in range(6):
        fair.push(Task(f"a{i}", tenant="alice"))
        fair.push(Task(f"b{i}", tenant="bob"))
    first = fair.pop()
    assert first is not None and first.tenant == "alice"
    fair.take_along([Task(f"along-{i}", tenant="alice") for i in range(3)])
    # alice was charged four turns: bob has the next four.
    assert [t.tenant for t in (fair.pop() for _ in range(5)) if t] == ["bob"] * 4 + ["alice"]


@pytest.mark.parametrize(
    ("tasks", "error", "match"),
    [
        (
            [Task("a1", tenant="alice"), Task("a2", tenant="alice")],
            QuotaExceededError,
            "max_concurrent",
        ),
        ([Task(f"b{i}", tenant="bob") for i in range(3)], QuotaExceededError, "rate quota"),
        ([Task("ok", tenant="dan"), Task("queued-1", tenant="bob")], DuplicateTaskError, "queued"),
        ([Task("queued-0", tenant="alice")], DuplicateTaskError, "running"),
        ([Task("twice", tenant="dan"), Task("twice", tenant="dan")], DuplicateTaskError, "twice"),
        ("abc", InvalidTypeError, "sequence of Tasks"),
        ([Task("ok", tenant="dan"), "not a task"], InvalidTypeError, "takes Tasks"),
        (Task("alone"), InvalidTypeError, "sequence of Tasks"),
    ],
)
def test_a_refused_take_along_changes_nothing(tasks: Any, error: type, match: str) -> None:
    assert_refused(scheduler, lambda fair: fair.take_along(tasks), error, view, match=match)


def test_an_unknown_tenant_is_refused_under_strict_tenants() -> None:
    def strict() -> FairScheduler:
        fair = FairScheduler(ManualClock(), strict_tenants=True, weights={"known": 1.0})
        fair.push(Task("t", tenant="known"))
        return fair

    assert_refused(
        strict,
        lambda fair: fair.take_along([Task("x", tenant="known"), Task("y", tenant="stranger")]),
        UnknownTenantError,
        view,
    )


def test_a_nested_scheduler_takes_them_along_at_its_own_level_too() -> None:
    clock = ManualClock()
    fair = FairScheduler(
        clock,
        inner=lambda c, tenant: FairScheduler(
            c, tenant_of=lambda t: t.key, quotas={"k": Quota(max_concurrent=1)}
        ),
    )
    fair.push(Task("queued", tenant="acme", key="k"))
    with pytest.raises(QuotaExceededError, match="max_concurrent"):
        fair.take_along([Task("x", tenant="acme", key="k"), Task("y", tenant="acme", key="k")])
    assert fair.stats().running == 0
    fair.take_along([Task("x", tenant="acme", key="k")])
    assert fair.pop() is None  # key "k" runs one at a time, inside acme
    fair.release(Task("x", tenant="acme", key="k"))
    popped = fair.pop()
    assert popped is not None and popped.id == "queued"


def test_tasks_taken_along_survive_a_snapshot() -> None:
    fair = scheduler()
    fair.take_along([Task("a1", tenant="alice"), Task("d1", tenant="dan")])
    twin = FairScheduler(
        ManualClock(),
        quotas={"alice": Quota(max_concurrent=2), "bob": Quota(rate=2, per=60.0)},
        weights={"carol": 2.0},
    )
    twin.load_snapshot(fair.snapshot())
    for q in (fair, twin):
        q.release(Task("d1", tenant="dan"))
        q.release(Task("a1", tenant="alice"))
    assert view(twin) == view(fair)


# -- check_together: tasks that could never start together ---------------------------------


@pytest.mark.parametrize(
    ("tasks", "error", "match"),
    [
        (
            [Task(f"a{i}", tenant="alice") for i in range(3)],
            UnsatisfiableDemandError,
            "3 tasks of tenant 'alice' .* max_concurrent of 2",
        ),
        (
            [Task(f"b{i}", tenant="bob") for i in range(3)],
            UnsatisfiableDemandError,
            "3 tasks of tenant 'bob' .* rate of 2",
        ),
        (  # a tenant with no record yet: its plan's quota
            [Task(f"e{i}", tenant="erin") for i in range(2)],
            UnsatisfiableDemandError,
            "tenant 'erin' .* max_concurrent of 1",
        ),
        ([Task("twice", tenant="dan"), Task("twice", tenant="dan")], DuplicateTaskError, "twice"),
        ("abc", InvalidTypeError, "check_together\\(\\) takes a sequence of Tasks"),
        ([Task("ok", tenant="dan"), 7], InvalidTypeError, "takes Tasks"),
    ],
)
def test_check_together_refuses_what_could_never_start_at_once(
    tasks: Any, error: type, match: str
) -> None:
    def with_plans() -> FairScheduler:
        clock = ManualClock()
        fair = FairScheduler(
            clock,
            quotas={"alice": Quota(max_concurrent=2), "bob": Quota(rate=2, per=60.0)},
            plans={"solo": Quota(max_concurrent=1)},
            tenant_plan={"erin": "solo"},
        )
        for i in range(3):
            fair.push(Task(f"queued-{i}", tenant=("alice", "bob", "carol")[i]))
        assert fair.pop() is not None
        return fair

    assert_refused(with_plans, lambda fair: fair.check_together(tasks), error, view, match=match)


def test_check_together_counts_tasks_not_what_is_running_now() -> None:
    # alice runs one of her two: a gang of two of hers must wait, but it can start later.
    fair = scheduler()
    fair.check_together([Task("a1", tenant="alice"), Task("a2", tenant="alice")])
    fair.check_together([Task("b1", tenant="bob"), Task("b2", tenant="bob"), Task("c")])
    assert fair.stats().running == 1 and fair.stats().queued == 2


def test_check_together_asks_a_tenants_own_scheduler() -> None:
    fair = FairScheduler(
        ManualClock(),
        inner=lambda c, tenant: FairScheduler(
            c, tenant_of=lambda t: t.key, quotas={"k": Quota(max_concurrent=1)}
        ),
    )
    pair = [Task("x", tenant="acme", key="k"), Task("y", tenant="acme", key="k")]
    # acme has no scheduler yet: one is made to ask, and dropped.
    with pytest.raises(UnsatisfiableDemandError, match=r"tenant 'k' .* max_concurrent of 1"):
        fair.check_together(pair)
    assert len(fair) == 0 and fair.stats().tenants == {}
    fair.push(Task("queued", tenant="acme", key="other"))
    with pytest.raises(UnsatisfiableDemandError, match=r"tenant 'k' .* max_concurrent of 1"):
        fair.check_together(pair)
    fair.check_together([pair[0], Task("z", tenant="acme", key="j")])
    assert len(fair) == 1 and fair.stats().running == 0


@given(
    limits=st.dictionaries(
        st.sampled_from("abc"),
        st.tuples(st.none() | st.integers(1, 4), st.none() | st.integers(1, 4)),
    ),
    tenants=st.lists(st.sampled_from("abcd"), min_size=1, max_size=8),
)
def test_check_together_refuses_exactly_what_an_idle_scheduler_could_not_start(
    limits: dict[str, tuple[int | None, int | None]], tenants: list[str]
) -> None:
    # On an idle scheduler a group starts when its first task pops and the rest are
    # taken along; check_together must refuse exactly the groups for which that fails.
    def fresh() -> FairScheduler:
        quotas = {
            t: Quota(max_concurrent=most, rate=rate, per=60.0) for t, (most, rate) in limits.items()
        }
        return FairScheduler(ManualClock(), quotas=quotas)

    tasks = [Task(i, tenant=tenant) for i, tenant in enumerate(tenants)]
    try:
        fresh().check_together(tasks)
        refused = False
    except UnsatisfiableDemandError:
        refused = True
    fair = fresh()
    fair.push(tasks[0])
    assert fair.pop() is tasks[0]
    try:
        fair.take_along(tasks[1:])
        started = True
    except QuotaExceededError:
        started = False
    assert refused is not started


def test_a_rate_refusal_says_when_the_quota_will_have_room() -> None:
    fair = scheduler()  # bob: two tokens a minute (one each 30 s), two at most
    fair.take_along([Task("b0", tenant="bob")])  # one of the two
    with pytest.raises(QuotaExceededError) as refused:
        fair.take_along([Task("b1", tenant="bob"), Task("b2", tenant="bob")])
    assert refused.value.ready_at == pytest.approx(30.0)  # one more token, 30 s on
    with pytest.raises(QuotaExceededError) as refused:
        fair.take_along([Task("a1", tenant="alice"), Task("a2", tenant="alice")])
    assert refused.value.ready_at is None  # a release brings room, not time


def test_a_rate_refusal_that_no_refill_could_lift_names_no_time() -> None:
    # A popped task of bob's and the ones taken along with it start together: when
    # they are more than his burst, no refill lets them (an unpop refunds its token).
    for rate, along, ready in [(2, 2, None), (3, 2, 20.0)]:
        fair = scheduler()
        fair.set_quota("bob", Quota(rate=rate, per=60.0))  # a fresh bucket: full
        fair.push(Task("b0", tenant="bob"))
        fair.push(Task("b00", tenant="bob"))
        for task_id in ("b00", "b0"):
            popped = fair.pop(where=lambda t, i=task_id: t.id == i)
            assert popped is not None and popped.id == task_id
        with pytest.raises(QuotaExceededError) as refused:
            fair.take_along([Task(f"b{i}", tenant="bob") for i in range(1, along + 1)])
        assert refused.value.ready_at == (None if ready is None else pytest.approx(ready))
