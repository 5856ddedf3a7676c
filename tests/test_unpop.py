"""unpop(task): a popped task put back exactly, at no cost, and nothing else put back.

The Queue contract (test_queue_contract.py) checks what every queue with
``unpop`` promises; this file checks what exactly each of taskdist's queues
restores: after ``pop`` then ``unpop`` every observable answer (stats, slack,
lateness, fair-share tags, quota tokens, the order of a full drain) is the
same as in a twin that never popped.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hostile import plain
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    DeadlineScheduler,
    FairScheduler,
    InvalidTypeError,
    ManualClock,
    PriorityQueue,
    Quota,
    Task,
    TaskdistError,
    TaskStateError,
)

quarters = st.integers(min_value=0, max_value=12).map(lambda n: n / 4)
task_specs = st.lists(
    st.tuples(
        st.integers(min_value=-1, max_value=4),  # priority
        quarters,  # cost
        st.none() | quarters.map(lambda q: q + 0.25),  # ttl
        st.none() | quarters.map(lambda q: q + 0.25),  # relative deadline
        st.sampled_from(["a", "b", "c"]),  # tenant
        quarters,  # time before the push
    ),
    min_size=1,
    max_size=12,
)

Make = Callable[[ManualClock], Any]

QUEUES: dict[str, Make] = {
    "PriorityQueue": lambda clock: PriorityQueue(clock, aging_rate=0.5),
    "PriorityQueue-bounded": lambda clock: PriorityQueue(clock, maxsize=8, overflow="drop_lowest"),
    "DeadlineScheduler": lambda clock: DeadlineScheduler(clock),
    "DeadlineScheduler-aging": lambda clock: DeadlineScheduler(clock, aging_rate=0.25),
    "DeadlineScheduler-2-dead_letter": lambda clock: DeadlineScheduler(
        clock, servers=2, on_miss="dead_letter"
    ),
    "FairScheduler-quotas": lambda clock: FairScheduler(
        clock,
        weights={"a": 3.0},
        quotas={"b": Quota(max_concurrent=2), "c": Quota(rate=2, per=4.0)},
    ),
    "FairScheduler-edf-bypass": lambda clock: FairScheduler(
        clock, inner=DeadlineScheduler, critical_bypass=True
    ),
    # Each tenant's own scheduler over priorities: one of them held back by rate.
    "FairScheduler-nested": lambda clock: FairScheduler(
        clock,
        quotas={"c": Quota(rate=2, per=4.0)},
        inner=lambda c, t: FairScheduler(
            c, tenant_of=lambda t: t.priority, quotas={2: Quota(rate=1, per=2.0)}
        ),
    ),
}


def observe(queue: Any, ids: list[object]) -> object:
    """Everything a caller can ask without changing anything, then a full drain.

    It peeks first: a FairScheduler lets in the tenants whose rate quota has
    refilled by now when it is asked, which the pop being undone has done.
    """
    queue.peek()
    seen: list[object] = [len(queue), [i for i in ids if i in queue], queue.next_wakeup()]
    if isinstance(queue, PriorityQueue):
        seen += [queue.stats(), [queue.effective_priority(i) for i in ids if i in queue]]
    elif isinstance(queue, DeadlineScheduler):
        held = [i for i in ids if i in queue]
        seen += [queue.stats(), [(queue.slack(i), queue.is_late(i)) for i in held]]
    else:
        seen += [queue.stats(), [queue.why_waiting(i) for i in ids if i in queue]]
    order = []
    while (task := queue.pop()) is not None:
        order.append(task.id)
    seen.append(order)
    return plain(seen)


def build(make: Make, specs: list[tuple[Any, ...]], pops: int) -> tuple[Any, ManualClock]:
    clock = ManualClock()
    queue = make(clock)
    for i, (priority, cost, ttl, deadline, tenant, gap) in enumerate(specs):
        clock.advance(gap)
        task = Task(
            i,
            priority=priority,
            cost=cost,
            ttl=ttl,
            deadline=None if deadline is None else clock.now() + deadline,
            tenant=tenant,
        )
        with contextlib.suppress(TaskdistError):  # refused by a policy: not this story
            queue.push(task)
    for _ in range(pops):
        queue.pop()
    return queue, clock


@pytest.mark.parametrize("make", QUEUES.values(), ids=QUEUES.keys())
@given(specs=task_specs, pops=st.integers(min_value=0, max_value=4), wait=quarters)
def test_pop_then_unpop_leaves_every_answer_as_a_twin_that_never_popped(
    make: Make, specs: list[tuple[Any, ...]], pops: int, wait: float
) -> None:
    queue, clock = build(make, specs, pops)
    twin, twin_clock = build(make, specs, pops)
    clock.advance(wait)
    twin_clock.advance(wait)
    popped = queue.pop()
    if popped is None:
        return
    queue.unpop(popped)
    ids: list[object] = list(range(len(specs)))
    assert observe(queue, ids) == observe(twin, ids)


def test_putting_a_task_back_costs_the_tenant_no_token_and_no_fair_share() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"a": Quota(rate=1, per=10.0, max_concurrent=1)})
    fair.push(Task("a1", tenant="a", cost=5.0))
    fair.push(Task("b1", tenant="b", cost=1.0))
    before = fair.stats()
    task = fair.pop()
    assert task is not None and task.id == "a1"
    assert fair.stats().tenants["a"].running == 1
    fair.unpop(task)
    assert fair.stats() == before
    # The token came back: it can be taken again at once, and so can the slot.
    assert fair.pop() is task


@pytest.mark.parametrize("make", QUEUES.values(), ids=QUEUES.keys())
def test_anything_but_the_latest_pop_is_refused_and_changes_nothing(make: Make) -> None:
    def fresh() -> Any:
        queue = make(ManualClock())
        for i in range(4):
            queue.push(Task(i, priority=i, tenant="a", deadline=100.0 + i))
        return queue

    refusals: list[tuple[Callable[[Any], object], type[Exception]]] = [
        (lambda q: q.unpop(Task(0, priority=0, tenant="a", deadline=100.0)), TaskStateError),
        (lambda q: q.unpop(None), InvalidTypeError),
    ]
    for call, error in refusals:
        queue, twin = fresh(), fresh()
        with pytest.raises(error):
            call(queue)
        assert observe(queue, list(range(4))) == observe(twin, list(range(4)))
    # A task equal to the popped one but another object is not the one popped.
    queue = fresh()
    popped = queue.pop()
    with pytest.raises(TaskStateError, match="latest pop"):
        queue.unpop(Task(popped.id, priority=popped.priority, deadline=popped.deadline))
    queue.unpop(popped)  # the real one still goes back
    assert popped.id in queue


def test_fair_unpop_needs_an_inner_queue_with_unpop() -> None:
    class Plain(PriorityQueue):
        unpop = None  # type: ignore[assignment]

    fair = FairScheduler(ManualClock(), inner=Plain)
    fair.push(Task("t"))
    task = fair.pop()
    assert task is not None
    with pytest.raises(TaskStateError, match="no unpop"):
        fair.unpop(task)
    assert "t" not in fair and fair.stats().running == 1


@pytest.mark.parametrize("make", QUEUES.values(), ids=QUEUES.keys())
@given(
    specs=task_specs,
    pops=st.integers(min_value=0, max_value=4),
    wait=quarters,
    keep=st.integers(min_value=1, max_value=4),
    stretch=st.sampled_from([1.0, 40.0]),
)
def test_unpop_of_a_filtered_pop_leaves_every_answer_and_the_snapshot_as_a_twin(
    make: Make, specs: list[tuple[Any, ...]], pops: int, wait: float, keep: int, stretch: float
) -> None:
    # A pop(where=...) may take a task from deep inside a heap, where its old entry
    # stays until the heap drops it; putting the task back must not bring that old
    # entry back to life beside the new one (a task held twice). Stretched deadlines
    # leave a DeadlineScheduler's tasks in its back, a heap, where this happens.
    specs = [(p, c, t, None if d is None else d * stretch, n, g) for p, c, t, d, n, g in specs]
    queue, clock = build(make, specs, pops)
    twin, twin_clock = build(make, specs, pops)
    clock.advance(wait)
    twin_clock.advance(wait)
    popped = queue.pop(where=lambda task: task.id % keep == keep - 1)
    if popped is None:
        return
    queue.unpop(popped)
    ids: list[object] = list(range(len(specs)))
    copy = make(ManualClock(clock.now()))
    copy.load_snapshot(json.loads(json.dumps(queue.snapshot())))
    twin_copy = make(ManualClock(clock.now()))
    twin_copy.load_snapshot(json.loads(json.dumps(twin.snapshot())))
    assert observe(copy, ids) == observe(twin_copy, ids)
    assert observe(queue, ids) == observe(twin, ids)


def test_a_task_put_back_from_deep_in_the_back_of_a_deadline_scheduler_is_held_once() -> None:
    # Both tasks wait in the back (far from their deadlines); "b" is not its top.
    edf = DeadlineScheduler(ManualClock())
    edf.push(Task("a", deadline=10.0, cost=1.0))
    edf.push(Task("b", deadline=20.0, cost=1.0))
    edf.unpop(edf.pop(where=lambda task: task.id == "b"))
    assert edf.slack("b") == 18.0  # moves the back into the ordered front
    popped = [edf.pop(), edf.pop(), edf.pop()]
    assert [None if task is None else task.id for task in popped] == ["a", "b", None]
    assert len(edf) == 0


def test_a_tenant_put_back_by_unpop_is_listed_once_among_the_eligible() -> None:
    # Popping "b"'s task files the tenant at a new key while its old entry stays in the
    # heap (not at its top); putting the task back must not bring that entry back too.
    fair = FairScheduler(ManualClock())
    for i, tenant in enumerate(["a", "a", "b", "b", "c"]):
        fair.push(Task(i, tenant=tenant))
    fair.unpop(fair.pop(where=lambda task: task.tenant == "b"))
    tenants = [record.key for _, record in fair._eligible.walk()]
    assert sorted(tenants) == ["a", "b", "c"]
    assert [task.tenant for task in iter(fair.pop, None)] == ["a", "b", "c", "a", "b"]


def test_unpop_keeps_the_wakeup_of_a_tenant_whose_queue_held_a_task_back() -> None:
    # "b"'s own scheduler holds "slow" back by rate: "b" waits for it (a wake-up entry)
    # while "fast" makes it eligible. Undoing the pop of "fast" must keep that wake-up.
    def run(undo: bool) -> tuple[object, float | None]:
        clock = ManualClock()
        fair = FairScheduler(
            clock,
            inner=lambda c, t: FairScheduler(
                c, tenant_of=lambda t: t.key, quotas={"slow": Quota(rate=1, per=2.0)}
            ),
        )
        fair.push(Task("s1", tenant="b", key="slow"))
        fair.push(Task("s2", tenant="b", key="slow"))
        s1 = fair.pop()
        assert s1 is not None
        assert fair.pop() is None  # "slow" spent its token: "b" waits until 2.0
        fair.push(Task("f1", tenant="b", key="fast"))
        fair.release(s1)
        f1 = fair.pop()
        assert f1 is not None
        if undo:
            fair.unpop(f1)
            f1 = fair.pop()
            assert f1 is not None
        return f1.id, fair.next_wakeup()

    assert run(undo=True) == run(undo=False) == ("f1", 2.0)
