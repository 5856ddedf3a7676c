"""A gang member waits for the rest of its gang out of the queue, but is refused at submit
exactly as the queue would refuse it alone: a tenant's quota or plan, an unknown tenant
under ``strict_tenants``, a full queue under ``overflow="reject"``. The queues answer
that with ``check_push``, which changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hostile import assert_refused
from hypothesis import given, settings
from hypothesis import strategies as st

from taskdist import (
    DeadlineScheduler,
    Distributor,
    FairScheduler,
    ManualClock,
    PriorityQueue,
    QueueFullError,
    Quota,
    QuotaExceededError,
    Task,
    TaskdistError,
    TaskState,
    UnknownTenantError,
    Worker,
)

QueueMaker = Callable[[ManualClock], Any]

# name -> (the queue, the tenant of the tasks, what refuses the second task of that tenant)
CASES: dict[str, tuple[QueueMaker, str, type[Exception]]] = {
    "tenant quota": (
        lambda c: FairScheduler(c, quotas={"acme": Quota(max_queued=1)}),
        "acme",
        QuotaExceededError,
    ),
    "tenant plan": (
        lambda c: FairScheduler(
            c, plans={"free": Quota(max_queued=1)}, tenant_plan={"acme": "free"}
        ),
        "acme",
        QuotaExceededError,
    ),
    "default plan": (
        lambda c: FairScheduler(
            c,
            plans={"free": Quota(max_queued=0), "paid": Quota()},
            default_plan="free",
            tenant_plan={"acme": "paid"},
        ),
        "newcomer",
        QuotaExceededError,
    ),
    "unknown tenant": (
        lambda c: FairScheduler(c, strict_tenants=True, weights={"acme": 1.0}),
        "stranger",
        UnknownTenantError,
    ),
    "full priority queue": (lambda c: PriorityQueue(c, maxsize=1), "acme", QueueFullError),
    "full deadline scheduler": (
        lambda c: DeadlineScheduler(c, maxsize=1, overflow="reject"),
        "acme",
        QueueFullError,
    ),
    "full inner queue": (
        lambda c: FairScheduler(c, inner=lambda clock: PriorityQueue(clock, maxsize=1)),
        "acme",
        QueueFullError,
    ),
}


def crowded(case: str) -> Distributor:
    """A member of gang g waiting (of tenant acme, whom every queue takes), then a lone
    task of the case's tenant that fills what the queue allows it (if it takes any)."""
    make, tenant, _ = CASES[case]
    clock = ManualClock()
    d = Distributor(clock, queue=make(clock))
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("m0", tenant="acme", gang="g", gang_size=3))
    if case not in ("unknown tenant", "default plan"):
        d.submit(Task("lone", tenant=tenant))
    return d


def seen(d: Distributor) -> Any:
    explained = {}
    for task_id in ("m0", "lone", "m1"):
        try:
            explained[task_id] = d.explain(task_id)
        except TaskdistError as error:
            explained[task_id] = type(error).__name__
    return d.stats().by_state, explained, len(d.queue), repr(d)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_gang_member_is_refused_as_a_lone_task_would_be(case: str) -> None:
    _, tenant, error = CASES[case]
    member = Task("m1", tenant=tenant, gang="g", gang_size=3)
    alone = Task("m1", tenant=tenant)
    with pytest.raises(error) as as_alone:
        crowded(case).submit(alone)
    assert_refused(lambda: crowded(case), lambda d: d.submit(member), error, seen, match=None)
    with pytest.raises(error) as as_member:
        crowded(case).submit(member)
    assert str(as_member.value) == str(as_alone.value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_members_already_waiting_keep_waiting(case: str) -> None:
    d = crowded(case)
    with pytest.raises(CASES[case][2]):
        d.submit(Task("m1", tenant=CASES[case][1], gang="g", gang_size=3))
    assert d.state_of("m0") is TaskState.PARKED
    assert "gang 'g': 1 of 3" in d.explain("m0")


def test_a_member_the_queue_would_take_still_waits_for_its_gang() -> None:
    d = crowded("tenant quota")
    d.submit(Task("m1", tenant="other", gang="g", gang_size=3))
    assert d.state_of("m1") is TaskState.PARKED
    assert "gang 'g': 2 of 3" in d.explain("m1")


# -- check_push answers what push would, and changes nothing --------------------------

QUEUES: dict[str, QueueMaker] = {
    "priority reject": lambda c: PriorityQueue(c, maxsize=3, aging_rate=0.1),
    "priority drop": lambda c: PriorityQueue(c, maxsize=3, overflow="drop_lowest"),
    "deadline reject": lambda c: DeadlineScheduler(c, maxsize=3),
    "deadline drop": lambda c: DeadlineScheduler(c, maxsize=3, overflow="drop_lowest"),
    "fair": lambda c: FairScheduler(
        c,
        quotas={"a": Quota(max_queued=2)},
        plans={"small": Quota(max_queued=1)},
        tenant_plan={"b": "small"},
        strict_tenants=True,
        weights={"c": 1.0},
        critical_bypass=True,
        inner=lambda clock: PriorityQueue(clock, maxsize=2),
    ),
}

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("push"),
            st.integers(0, 6),
            st.sampled_from(["a", "b", "c", "d"]),
            st.integers(0, 3),
            st.sampled_from([None, 5.0, 50.0]),
        ),
        st.tuples(st.just("pop")),
        st.tuples(st.just("advance")),
    ),
    max_size=25,
)


def picture(queue: Any) -> Any:
    return queue.snapshot(), repr(queue.stats()), len(queue)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(QUEUES)), ops=operations)
def test_check_push_raises_what_push_would_and_changes_nothing(
    name: str, ops: list[tuple[Any, ...]]
) -> None:
    clock = ManualClock()
    queue = QUEUES[name](clock)
    for op in ops:
        if op[0] == "pop":
            queue.pop()
            continue
        if op[0] == "advance":
            clock.advance(10.0)
            continue
        _, i, tenant, priority, deadline = op
        task = Task(i, tenant=tenant, priority=priority, deadline=deadline)
        before = picture(queue)
        refused = outcome(queue.check_push, task)
        assert picture(queue) == before
        assert outcome(queue.push, task) == refused, task


def outcome(call: Callable[[Task], object], task: Task) -> tuple[str, str] | None:
    """The refusal ``call(task)`` raised (its type and message), or ``None``."""
    try:
        call(task)
    except TaskdistError as error:
        return type(error).__name__, str(error)
    return None
