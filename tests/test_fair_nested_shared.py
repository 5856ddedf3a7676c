"""A nested ``FairScheduler`` keeps one id table for all its levels.

``FairScheduler(clock, inner=lambda c, t: FairScheduler(c, tenant_of=...))``:
the outer scheduler adopts each inner one its factory makes (new, default key
queues, no lane, the same clock), whose key queues
(``OwnedSharedIndexQueue``) file their entries in the outer scheduler's
table; an entry leads to its key queue and the queue to its record, so no
level keeps a table of its own and nothing asks ``tenant_of`` again. With key
queues from a factory (``PriorityQueue`` aging at ``DEFAULT_AGING_RATE``, the
same queues) every level keeps its own table. The two must be
indistinguishable, down to each inner scheduler's answers and snapshot.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule
from test_fair_shared_index import IDS, SharedAgainstOwn, outcome

# One way of measuring memory, shared with the script that prints the whole table.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from compare_memory import CONFIGS, NESTED, bytes_per_task, workload

from taskdist import (
    DeadlineScheduler,
    FairScheduler,
    InvalidArgumentError,
    ManualClock,
    PriorityQueue,
    Quota,
    ReentrancyError,
    Task,
)
from taskdist.queues._shared_index import OwnedSharedIndexQueue
from taskdist.queues.fair import _NOBODY, DEFAULT_AGING_RATE
from taskdist.queues.priority import _NONE_EXPIRED

KEYS = ["x", "y"]


def by_key(task: Task) -> Hashable:
    return task.key


def nested(clock: ManualClock, aware: bool = False, **inner: Any) -> FairScheduler:
    return FairScheduler(
        clock,
        critical_bypass=True,
        deadline_aware=aware,
        inner=lambda c, tenant: FairScheduler(
            c,
            tenant_of=by_key,
            weights={"x": 2.0},
            quotas={"y": Quota(max_concurrent=2, rate=2, per=3.0)},
            deadline_aware=aware,
            **inner,
        ),
    )


def nested_own(clock: ManualClock, aware: bool = False) -> FairScheduler:
    # The same key queues from a factory: every level keeps a table of its own.
    own = partial(PriorityQueue, aging_rate=DEFAULT_AGING_RATE)
    return nested(clock, aware, inner=lambda c: own(c))


def comparable(data: dict[str, Any]) -> dict[str, Any]:
    """A scheduler's or queue's snapshot, its tasks in one order at every level (a table
    lists them in the order they entered it; a shared one moves an expired task to its
    end, where the queue holding it stands for it)."""
    data = dict(data)
    if "held" in data:  # a key queue
        data["held"] = sorted(data["held"], key=lambda item: repr(item[2]))
        # Expired tasks leave sorted by expiry, however they are listed.
        data["expired"] = sorted(data["expired"], key=lambda item: repr(item[2]))
        # Whether its list is in enqueue order: a shared queue lists its tasks oldest
        # first, a queue of its own in its table's order (an unpop puts a task last).
        del data["monotone"]
        return data
    data["queued"] = sorted(data["queued"], key=repr)
    data["tenants"] = [
        {**tenant, "queue": comparable(tenant["queue"])} for tenant in data["tenants"]
    ]
    if data["bypass"] is not None:
        data["bypass"] = comparable(data["bypass"])
    return data


class NestedAgainstOwn(SharedAgainstOwn):
    """Drive a nested scheduler sharing one table and one keeping a table per level alike;
    every answer, the inner schedulers' included, must be the same."""

    def make_shared(self, clock: ManualClock) -> FairScheduler:
        return nested(clock)

    def make_own(self, clock: ManualClock) -> FairScheduler:
        return nested_own(clock)

    @rule(
        task_id=st.sampled_from(IDS),
        tenant=st.sampled_from(["a", "b"]),
        key=st.sampled_from(KEYS),
        priority=st.integers(0, 3),
        ttl=st.none() | st.sampled_from([1.0, 2.5]),
        back=st.none() | st.sampled_from([0.0, 0.5]),
    )
    def push_keyed(
        self,
        task_id: str,
        tenant: str,
        key: str,
        priority: int,
        ttl: float | None,
        back: float | None,
    ) -> None:
        now = self.clock.now()
        task = Task(task_id, tenant=tenant, key=key, priority=priority, ttl=ttl, cost=1.0)
        enqueued = None if back is None else max(0.0, now - back)
        self.both(lambda fair: fair.push(task, enqueued_at=enqueued))
        self.popped = None

    @rule(task_id=st.sampled_from(IDS), call=st.sampled_from(["push", "pop", "remove", "read"]))
    def pop_calling_back(self, task_id: str, call: str) -> None:
        # A where= predicate that calls back in: a change is refused at whichever level
        # it reaches, a read answers as the twin's does.
        def where(fair: FairScheduler) -> Callable[[Task], bool]:
            def predicate(task: Task) -> bool:
                if call == "push":
                    fair.push(Task(task_id, tenant="a", key="x"))
                elif call == "pop":
                    fair.pop()
                elif call == "remove":
                    fair.remove(task_id)
                return task_id in fair and len(fair) > 0

            return predicate

        pair = (self.fair, self.model)
        answers = [outcome(lambda fair=fair: fair.pop(where(fair))) for fair in pair]
        assert answers[0] == answers[1]
        if call != "read":
            assert answers[0] in (ReentrancyError, None)
        elif answers[0] is not None:
            self.running[answers[0]] = Task(answers[0])  # release() reads only the id
        self.popped = None

    @invariant()
    def inner_schedulers_agree(self) -> None:
        assert set(self.fair._tenants) == set(self.model._tenants)
        for key, rec in self.fair._tenants.items():
            inner: Any = rec.inner
            twin: Any = self.model._tenants[key].inner
            assert inner._adopted and inner._index is self.fair._index
            assert not twin._adopted and twin._index is not self.model._index
            assert len(inner) == len(twin)
            for task_id in IDS:
                assert (task_id in inner) == (task_id in twin)
                ask = outcome(partial(inner.why_waiting, task_id))
                assert ask == outcome(partial(twin.why_waiting, task_id))
            assert inner.next_wakeup() == twin.next_wakeup()
            assert inner.stats() == twin.stats()
            assert comparable(inner.snapshot()) == comparable(twin.snapshot())
            for sub_key, sub in inner._tenants.items():
                queue, twin_queue = sub.inner, twin._tenants[sub_key].inner
                assert type(queue) is OwnedSharedIndexQueue and queue.owner is sub
                assert len(queue) == len(twin_queue)
                assert [i for i in IDS if i in queue] == [i for i in IDS if i in twin_queue]
        assert not _NONE_EXPIRED and not _NOBODY  # the shared empties stay empty
        outer = comparable(self.fair.snapshot())
        assert outer["queued"] == comparable(self.model.snapshot())["queued"]


TestNestedAgainstOwn = NestedAgainstOwn.TestCase
TestNestedAgainstOwn.settings = settings(settings.default, max_examples=60)


class AwareNestedAgainstOwn(NestedAgainstOwn):
    """The same, deadline-aware at both levels: urgent tasks taken out of turn."""

    def make_shared(self, clock: ManualClock) -> FairScheduler:
        return nested(clock, aware=True)

    def make_own(self, clock: ManualClock) -> FairScheduler:
        return nested_own(clock, aware=True)


TestAwareNestedAgainstOwn = AwareNestedAgainstOwn.TestCase
TestAwareNestedAgainstOwn.settings = settings(settings.default, max_examples=30)


def test_a_nested_scheduler_files_each_task_once() -> None:
    fair = nested(ManualClock())
    for i in range(20):
        fair.push(Task(i, tenant=i % 3, key=i % 4))
    fair.push(Task("lane", tenant=0, key=0, priority=0))  # the outer lane keeps its own
    assert len(fair._index) == len(fair) == 21
    inner: Any = fair._tenants[0].inner
    assert inner._index is fair._index and not fair._tenants[0].inner._shared
    assert 3 in inner and 4 not in inner  # another tenant's task is not its own
    assert fair.remove(3).id == 3 and 3 not in inner and len(fair._index) == 20


def test_the_inner_tenant_of_is_asked_once_per_push() -> None:
    asked: list[Hashable] = []

    def counting(task: Task) -> Hashable:
        asked.append(task.id)
        return task.key

    fair = FairScheduler(ManualClock(), inner=lambda c, t: FairScheduler(c, tenant_of=counting))
    fair.push(Task("a", tenant=1, key="x"))
    fair.push(Task("b", tenant=1, key="y"))
    assert "a" in fair and fair.why_waiting("b").tenant == 1
    assert fair.remove("a").id == "a"
    assert fair.pop() is not None
    assert asked == ["a", "b"]


@pytest.mark.parametrize(
    "inner",
    [
        lambda c, t: FairScheduler(c, tenant_of=by_key, inner=lambda c: PriorityQueue(c)),
        lambda c, t: FairScheduler(c, tenant_of=by_key, critical_bypass=True),
        lambda c, t: FairScheduler(ManualClock(), tenant_of=by_key),
        lambda c, t: FairScheduler(c, tenant_of=by_key, inner=DeadlineScheduler),
    ],
    ids=["key queues from a factory", "a lane", "another clock", "deadline queues"],
)
def test_other_inner_schedulers_keep_tables_of_their_own(
    inner: Callable[[Any, Hashable], FairScheduler],
) -> None:
    fair = FairScheduler(ManualClock(), inner=inner)
    fair.push(Task("x", tenant="a", key="k"))
    scheduler: Any = fair._tenants["a"].inner
    assert not scheduler._adopted and scheduler._index is not fair._index
    assert list(scheduler._index) == ["x"] or scheduler._shared
    assert fair.pop() is not None


def test_an_outer_scheduler_with_a_tenant_of_adopts_nothing() -> None:
    fair = FairScheduler(
        ManualClock(),
        tenant_of=lambda t: t.tenant,
        inner=lambda c, t: FairScheduler(c, tenant_of=by_key),
    )
    fair.push(Task("x", tenant="a", key="k"))
    scheduler: Any = fair._tenants["a"].inner
    assert not scheduler._adopted and fair._index == {"x": fair._tenants["a"]}


def test_a_scheduler_filing_in_another_table_is_refused_and_one_gone_idle_comes_back() -> None:
    clock = ManualClock()
    made: list[FairScheduler] = []

    def keep(c: Any, tenant: Hashable) -> FairScheduler:
        made.append(FairScheduler(c, tenant_of=by_key))
        return made[-1]

    first = FairScheduler(clock, inner=keep)
    first.push(Task("x", tenant="a", key="k"))
    assert first.pop() is not None
    first.release(Task("x"))  # tenant "a" goes idle: its scheduler is free again
    reused = made[-1]
    second = FairScheduler(clock, inner=lambda c, t: reused)
    second.push(Task("y", tenant="b", key="k"))  # taken over: it files in second's table
    assert reused._index is second._index and list(second._index) == ["y"]
    assert not first._index and "y" not in first
    assert second.pop() is not None  # "y" runs: reused is empty, and in use
    for tenant_of in (None, by_key):  # one that would adopt it, and one that would not
        busy = FairScheduler(
            clock,
            inner=lambda c, t: reused if t == "c" else FairScheduler(c),
            tenant_of=tenant_of,
        )
        with pytest.raises(InvalidArgumentError, match="another scheduler's table"):
            busy.push(Task("z", tenant="c", key="c"))
        assert not busy and not busy._tenants and not busy._index
    assert reused._index is second._index and "y" in second._running


@pytest.mark.parametrize(("tasks", "budget"), [(10_000, 280), (100_000, 200)])
def test_a_nested_scheduler_files_a_task_once_and_small_queues_cost_little(
    tasks: int, budget: int
) -> None:
    # Bytes a queued task beyond the Task, 100 tenants of 7 keys (tracemalloc, as
    # benchmarks/compare_memory.py measures): 274 and 415 with a table per level; 199.8
    # and 278 now. At 1e4 (12 tasks a key queue) what each small queue costs empty
    # weighs most; at 1e5 the one table and the heap entry, which holds its queue where
    # it held the task's id.
    make, options = CONFIGS[NESTED]
    assert bytes_per_task(make, workload(tasks, **options)) <= budget
