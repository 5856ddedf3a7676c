"""FairScheduler.take_along: tasks that start with a popped one without having waited
in the queue (a gang's other members) are held to their tenants' quotas and charged to
their fair shares, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest
from hostile import assert_refused

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
