"""Tenant queues share the scheduler's id table (``SharedIndexQueue``,
``SharedIndexDeadlineScheduler``).

A ``FairScheduler`` with its default tenant queues, or with
``inner=DeadlineScheduler``, keeps one id table for itself and them; with an
``inner`` factory making the same queues (``PriorityQueue`` aging at
``DEFAULT_AGING_RATE``, ``DeadlineScheduler(c)``) each keeps its own index and
the scheduler a third. The two must be indistinguishable: the second is the
exact model of the first, down to each tenant queue's answers, statistics and
snapshot. Plus what sharing must not cost: a tenant's heaps are compacted
against its own tasks, not the table's.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import partial
from operator import methodcaller
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from taskdist import (
    DeadlineScheduler,
    FairScheduler,
    ManualClock,
    PriorityQueue,
    SnapshotError,
    Task,
    TaskdistError,
)
from taskdist._lazy_heap import COMPACT_SLACK
from taskdist.queues._shared_index import SharedIndexDeadlineScheduler, SharedIndexQueue
from taskdist.queues.fair import DEFAULT_AGING_RATE

IDS = [f"t{i}" for i in range(12)]
TENANTS = ["a", "b", "c"]


def shared(clock: ManualClock) -> FairScheduler:
    return FairScheduler(clock, critical_bypass=True)


def own(clock: ManualClock) -> FairScheduler:
    return FairScheduler(
        clock,
        critical_bypass=True,
        inner=lambda c: PriorityQueue(c, aging_rate=DEFAULT_AGING_RATE),
    )


def outcome(call: Callable[[], Any]) -> Any:
    """What a call answered, or the kind of error it raised."""
    try:
        answer = call()
    except TaskdistError as error:
        return type(error)
    if isinstance(answer, Task):
        return answer.id
    if isinstance(answer, list):
        return [task.id for task in answer]
    return answer


class SharedAgainstOwn(RuleBasedStateMachine):
    """Drive both schedulers alike; every answer must be the same."""

    def make_shared(self, clock: ManualClock) -> FairScheduler:
        return shared(clock)

    def make_own(self, clock: ManualClock) -> FairScheduler:
        return own(clock)

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.model_clock = ManualClock()
        self.fair = self.make_shared(self.clock)
        self.model = self.make_own(self.model_clock)
        assert not self.model._shared
        self.running: dict[Hashable, Task] = {}
        # What the latest pop gave each (a restored scheduler holds copies of the tasks).
        self.popped: tuple[Task, Task] | None = None

    def both(self, call: Callable[[FairScheduler], Any]) -> Any:
        answer = outcome(lambda: call(self.fair))
        assert answer == outcome(lambda: call(self.model))
        return answer

    @rule(
        task_id=st.sampled_from(IDS),
        tenant=st.sampled_from(TENANTS),
        priority=st.integers(0, 3),
        ttl=st.none() | st.sampled_from([1.0, 2.5, 4.0]),
        back=st.none() | st.sampled_from([0.0, 0.5]),
        due=st.none() | st.sampled_from([-1.0, 1.0, 3.0, 6.0]),
        cost=st.sampled_from([0.0, 0.5, 2.0]),
    )
    def push(
        self,
        task_id: str,
        tenant: str,
        priority: int,
        ttl: float | None,
        back: float | None,
        due: float | None,
        cost: float,
    ) -> None:
        now = self.clock.now()
        deadline = None if due is None else now + due
        task = Task(
            task_id, tenant=tenant, priority=priority, ttl=ttl, deadline=deadline, cost=cost
        )
        enqueued = None if back is None else max(0.0, now - back)
        self.both(lambda fair: fair.push(task, enqueued_at=enqueued))
        self.popped = None

    @rule(filtered=st.booleans())
    def pop(self, filtered: bool) -> None:
        where = (lambda task: task.priority != 2) if filtered else None
        tasks: dict[int, Task | None] = {}
        for fair in (self.fair, self.model):
            tasks[id(fair)] = fair.pop(where)
        task, twin = tasks[id(self.fair)], tasks[id(self.model)]
        assert (None if task is None else task.id) == (None if twin is None else twin.id)
        if task is not None and twin is not None:
            self.running[task.id] = task
            self.popped = (task, twin)
        else:
            self.popped = None

    @precondition(lambda self: self.popped is not None)
    @rule()
    def unpop(self) -> None:
        assert self.popped is not None
        task, twin = self.popped
        self.fair.unpop(task)
        self.model.unpop(twin)
        del self.running[task.id]
        self.popped = None

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.running)))
        task = self.running.pop(task_id)
        self.both(lambda fair: fair.release(task))
        self.popped = None

    @rule(task_id=st.sampled_from(IDS))
    def remove(self, task_id: str) -> None:
        self.both(lambda fair: fair.remove(task_id))
        self.popped = None

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model_clock.advance(seconds)

    @rule()
    def expire(self) -> None:
        self.both(lambda fair: fair.expire())
        self.popped = None

    @rule()
    def peek(self) -> None:
        self.both(lambda fair: fair.peek())

    @rule()
    def restore(self) -> None:
        # A snapshot of the shared table, expired tasks and all, loads back alike.
        restored = self.make_shared(self.clock)
        restored.load_snapshot(self.fair.snapshot())
        self.fair = restored
        self.popped = None

    @rule()
    def trade_snapshots(self) -> None:
        # Each loads the other's snapshot: they write the same state, in the same format.
        fair = self.make_shared(self.clock)
        fair.load_snapshot(self.model.snapshot())
        model = self.make_own(self.model_clock)
        model.load_snapshot(self.fair.snapshot())
        self.fair, self.model = fair, model
        self.popped = None

    @invariant()
    def answers_agree(self) -> None:
        assert len(self.fair) == len(self.model) == len(self.fair._index)  # one entry a task
        self.both(lambda fair: fair.next_wakeup())
        for task_id in IDS:
            assert (task_id in self.fair) == (task_id in self.model)
            self.both(lambda fair, task_id=task_id: fair.why_waiting(task_id))
        queued = {key: tenant.queued for key, tenant in self.fair.stats().tenants.items()}
        assert queued == {key: tenant.queued for key, tenant in self.model.stats().tenants.items()}


TestSharedAgainstOwn = SharedAgainstOwn.TestCase
# Two schedulers and a dozen ids checked at every step: fewer runs keep it cheap.
TestSharedAgainstOwn.settings = settings(settings.default, max_examples=60)


def shared_deadlines(clock: ManualClock) -> FairScheduler:
    return FairScheduler(clock, critical_bypass=True, inner=DeadlineScheduler)


def own_deadlines(clock: ManualClock) -> FairScheduler:
    # The same queues, from a factory the scheduler does not recognise: tables of their own.
    return FairScheduler(clock, critical_bypass=True, inner=lambda c: DeadlineScheduler(c))


def inner_snapshot(queue: Any) -> dict[str, Any]:
    """A tenant queue's snapshot, its live tasks in push order (a table of its own lists
    them in the order they entered it, which an unpop changes)."""
    data = dict(queue.snapshot())
    data["held"] = sorted(data["held"], key=lambda item: item[0])
    data["late"] = sorted(data["late"], key=repr)
    return data


class SharedDeadlinesAgainstOwn(SharedAgainstOwn):
    """The same, with ``inner=DeadlineScheduler``, and each tenant's queue asked directly
    too."""

    def make_shared(self, clock: ManualClock) -> FairScheduler:
        return shared_deadlines(clock)

    def make_own(self, clock: ManualClock) -> FairScheduler:
        return own_deadlines(clock)

    @rule(question=st.sampled_from(["is_late", "slack"]))
    def ask_the_tenant_queues(self, question: str) -> None:
        probe = Task("probe", deadline=self.clock.now() + 3.0, cost=1.0)
        for queue, twin in self.inner_pairs():
            for task_id in IDS:
                assert (task_id in queue) == (task_id in twin)
                if task_id in twin:
                    ask = methodcaller(question, task_id)
                    assert outcome(partial(ask, queue)) == outcome(partial(ask, twin))
            assert queue.feasible(probe) == twin.feasible(probe)

    def inner_pairs(self) -> list[tuple[Any, Any]]:
        """Each tenant's queue in both schedulers, the bypass lane's first."""
        assert set(self.fair._tenants) == set(self.model._tenants)
        assert self.fair._bypass is not None and self.model._bypass is not None
        pairs = [(self.fair._bypass.inner, self.model._bypass.inner)]
        for key, rec in self.fair._tenants.items():
            pairs.append((rec.inner, self.model._tenants[key].inner))
        return pairs

    @invariant()
    def tenant_queues_agree(self) -> None:
        for queue, twin in self.inner_pairs():
            assert isinstance(queue, SharedIndexDeadlineScheduler)
            assert queue._index is self.fair._index
            assert twin._index is not self.model._index
            assert len(queue) == len(twin)
            assert bool(queue) == bool(twin)
            assert repr(queue.stats()) == repr(twin.stats())  # NaN percentiles when empty
            assert inner_snapshot(queue) == inner_snapshot(twin)
            self.both(lambda fair, q=queue, t=twin: (q if fair is self.fair else t).next_wakeup())


TestSharedDeadlinesAgainstOwn = SharedDeadlinesAgainstOwn.TestCase
TestSharedDeadlinesAgainstOwn.settings = settings(settings.default, max_examples=60)


class AwareSharedDeadlinesAgainstOwn(SharedDeadlinesAgainstOwn):
    """The same, deadline-aware: urgent tasks taken out of turn, by ``pop(where)``."""

    def make_shared(self, clock: ManualClock) -> FairScheduler:
        return FairScheduler(
            clock, critical_bypass=True, deadline_aware=True, inner=DeadlineScheduler
        )

    def make_own(self, clock: ManualClock) -> FairScheduler:
        return FairScheduler(
            clock, critical_bypass=True, deadline_aware=True, inner=lambda c: DeadlineScheduler(c)
        )


TestAwareSharedDeadlinesAgainstOwn = AwareSharedDeadlinesAgainstOwn.TestCase
TestAwareSharedDeadlinesAgainstOwn.settings = settings(settings.default, max_examples=30)


def test_the_default_tenant_queues_share_the_scheduler_table() -> None:
    fair = FairScheduler(ManualClock())
    fair.push(Task("x", tenant="a"))
    inner = fair._tenants["a"].inner
    assert isinstance(inner, SharedIndexQueue)
    assert inner._index is fair._index


def test_a_tenant_heap_is_compacted_against_its_own_tasks_not_the_table() -> None:
    fair = FairScheduler(ManualClock())
    for i in range(5_000):
        fair.push(Task(f"big{i}", tenant="big"))
    for i in range(300):
        fair.push(Task(f"small{i}", tenant="small"))
    for i in range(290):
        fair.remove(f"small{i}")
    small = fair._tenants["small"].inner
    assert len(small) == 10
    assert len(small._order) <= 2 * 10 + COMPACT_SLACK


@pytest.mark.parametrize(
    ("make", "expiries"),
    [(shared, "_expiry"), (shared_deadlines, "_timers")],
    ids=["PriorityQueue", "DeadlineScheduler"],
)
def test_a_tenant_expiries_are_compacted_against_its_own_tasks_not_the_table(
    make: Callable[[ManualClock], FairScheduler], expiries: str
) -> None:
    fair = make(ManualClock())
    for i in range(500):  # the table's size would allow 1 084 expiries: the tenant's own, 84
        fair.push(Task(f"big{i}", tenant="big"))
    for i in range(300):
        fair.push(Task(f"small{i}", tenant="small", ttl=60.0, priority=300 - i))
    for _ in range(290):
        assert fair.pop(where=lambda task: task.tenant == "small") is not None
    small = fair._tenants["small"].inner
    assert len(small) == 10
    assert len(getattr(small, expiries)) <= 2 * 10 + COMPACT_SLACK


def test_an_expired_task_stays_findable_until_expire_returns_it() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock)
    fair.push(Task("old", tenant="a", ttl=1.0))
    fair.push(Task("new", tenant="a"))
    clock.advance(2.0)
    assert fair.pop().id == "new"  # the pop set the expired one aside
    assert "old" in fair and len(fair) == 1
    assert fair.why_waiting("old").reason == "expired"
    assert [task.id for task in fair.expire()] == ["old"]
    assert "old" not in fair and not fair._index


def test_inner_deadline_scheduler_queues_share_the_scheduler_table() -> None:
    fair = shared_deadlines(ManualClock())
    fair.push(Task("x", tenant="a", deadline=10.0))
    fair.push(Task("y", tenant="b", priority=0))  # the bypass lane's
    assert fair._bypass is not None
    for queue in (fair._tenants["a"].inner, fair._bypass.inner):
        assert isinstance(queue, SharedIndexDeadlineScheduler)
        assert queue._index is fair._index
    assert len(fair._index) == 2


@pytest.mark.parametrize(
    "options",
    [
        {"inner": lambda c: DeadlineScheduler(c)},
        {"inner": lambda c, tenant: DeadlineScheduler(c, servers=2)},
        {"inner": DeadlineScheduler, "tenant_of": lambda task: task.key},
    ],
    ids=["a factory", "a factory with arguments", "tenants by tenant_of"],
)
def test_other_deadline_queues_keep_tables_of_their_own(options: dict[str, Any]) -> None:
    fair = FairScheduler(ManualClock(), **options)
    fair.push(Task("x", tenant="a", key="a", deadline=10.0))
    queue = fair._tenants["a"].inner
    assert type(queue) is DeadlineScheduler
    assert queue._index is not fair._index


def test_a_deadline_tenant_heap_is_compacted_against_its_own_tasks_not_the_table() -> None:
    fair = shared_deadlines(ManualClock())
    for i in range(500):
        fair.push(Task(f"big{i}", tenant="big", deadline=1e6, cost=0.001))
    for i in range(300):
        fair.push(Task(f"small{i}", tenant="small", deadline=1e6 + i, cost=0.001))
    small = fair._tenants["small"].inner
    assert len(small._back) == 300  # the far deadlines wait in the back heap
    for i in range(290):
        fair.remove(f"small{i}")
    assert len(small) == 10
    assert len(small._back) <= 2 * 10 + COMPACT_SLACK


def test_an_expired_deadline_task_stays_findable_until_expire_returns_it() -> None:
    clock = ManualClock()
    fair = shared_deadlines(clock)
    fair.push(Task("old", tenant="a", ttl=1.0, deadline=50.0))
    fair.push(Task("new", tenant="a"))
    clock.advance(2.0)
    assert fair.pop().id == "new"  # the pop set the expired one aside
    queue = fair._tenants["a"].inner
    assert fair._index["old"] is queue  # the table leads to the queue holding it
    assert "old" in fair and "old" in queue and len(fair) == len(queue) == 1
    assert fair.why_waiting("old").reason == "expired"
    assert queue.is_late("old") is False and queue.slack("old") == 47.0  # 50 - (2 + cost 1)
    assert [task.id for task in fair.expire()] == ["old"]
    assert "old" not in fair and not fair._index


def test_a_snapshot_whose_counts_do_not_add_up_is_refused_and_changes_nothing() -> None:
    clock = ManualClock()
    fair = shared_deadlines(clock)
    fair.push(Task("x", tenant="a", deadline=10.0))
    data = fair.snapshot()
    data["tenants"][0]["queue"]["counts"][0] += 1  # one push more than the tasks held
    fresh = shared_deadlines(clock)
    with pytest.raises(SnapshotError, match="add up"):
        fresh.load_snapshot(data)
    assert not fresh and not fresh._index and not fresh._tenants
    fresh.load_snapshot(fair.snapshot())  # still new: the true one loads
    assert [task.id for task in (fresh.pop(), fresh.pop()) if task] == ["x"]
