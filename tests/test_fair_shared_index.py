"""The default tenant queues share the scheduler's id table (``SharedIndexQueue``).

A ``FairScheduler`` with its default tenant queues keeps one id table for
itself and them; with an ``inner`` factory making the same queues
(``PriorityQueue`` aging at ``DEFAULT_AGING_RATE``) each keeps its own index
and the scheduler a third. The two must be indistinguishable: the second is
the exact model of the first. Plus what sharing must not cost: a tenant's
heap is compacted against its own tasks, not the table's.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from taskdist import FairScheduler, ManualClock, PriorityQueue, Task, TaskdistError
from taskdist._lazy_heap import COMPACT_SLACK
from taskdist.queues._shared_index import SharedIndexQueue
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

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.model_clock = ManualClock()
        self.fair = shared(self.clock)
        self.model = own(self.model_clock)
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
    )
    def push(
        self, task_id: str, tenant: str, priority: int, ttl: float | None, back: float | None
    ) -> None:
        task = Task(task_id, tenant=tenant, priority=priority, ttl=ttl)
        now = self.clock.now()
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
        restored = shared(self.clock)
        restored.load_snapshot(self.fair.snapshot())
        self.fair = restored
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


def test_a_tenant_expiries_are_compacted_against_its_own_tasks_not_the_table() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock)
    for i in range(5_000):
        fair.push(Task(f"big{i}", tenant="big"))
    for i in range(300):
        fair.push(Task(f"small{i}", tenant="small", ttl=60.0, priority=300 - i))
    for _ in range(290):
        assert fair.pop(where=lambda task: task.tenant == "small") is not None
    small = fair._tenants["small"].inner
    assert len(small._expiry) <= 2 * 10 + COMPACT_SLACK


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
