"""A ``where=`` walk ended from inside leaves a library queue exactly as it was.

The Distributor ends a dispatch walk by raising from its ``where=``
predicate when a shut gate holds back every task left (see
``taskdist/dispatch/_gate_shut.py``): the tasks must stay where they were,
in the order they were, with nothing counted. Each queue configuration the
Distributor does that with is filled by random pushes, pops, releases and
clock steps, then popped with a predicate that passes over some tasks and
raises at the next; afterwards every answer it gives, to a full drain, is
the one its untouched twin gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hostile import plain
from hypothesis import given, settings
from hypothesis import strategies as st

from taskdist import (
    DeadlineScheduler,
    FairScheduler,
    KeyShare,
    ManualClock,
    PriorityQueue,
    Quota,
    Task,
    TaskdistError,
)

QUEUES: dict[str, Callable[[ManualClock], Any]] = {
    "priority": lambda c: PriorityQueue(c),
    "priority, aging": lambda c: PriorityQueue(c, aging_rate=0.5),
    "deadline": lambda c: DeadlineScheduler(c),
    "deadline, 4 servers, dead letter": lambda c: DeadlineScheduler(
        c, servers=4, on_miss="dead_letter"
    ),
    "deadline, aging, reject": lambda c: DeadlineScheduler(c, aging_rate=0.25, on_miss="reject"),
    "fair": lambda c: FairScheduler(c),
    "fair, weights and quotas": lambda c: FairScheduler(
        c, weights={"b": 3.0}, quotas={"a": Quota(max_concurrent=1, rate=2.0)}
    ),
    "fair, critical bypass": lambda c: FairScheduler(c, critical_bypass=True),
    "fair, aging": lambda c: FairScheduler(c, aging_rate=0.5),
    "fair, keys": lambda c: FairScheduler(
        c, inner=KeyShare(weights={"k2": 2.0}, quotas={"k1": Quota(max_concurrent=1)})
    ),
    "fair, deadlines": lambda c: FairScheduler(c, inner=DeadlineScheduler),
    "fair, priority queues": lambda c: FairScheduler(c, inner=PriorityQueue),
    "fair, deadline aware": lambda c: FairScheduler(c, deadline_aware=True),
    "fair, tenant_of": lambda c: FairScheduler(c, tenant_of=lambda t: t.key),
}

operation = st.one_of(
    st.tuples(
        st.just("push"),
        st.integers(0, 4),  # priority
        st.sampled_from(["a", "b", "c", None]),  # tenant
        st.sampled_from(["k1", "k2", None]),  # key
        st.sampled_from([None, 5.0, 40.0, 400.0]),  # deadline, from now
        st.sampled_from([0.5, 2.0, 10.0]),  # cost
        st.sampled_from([None, 3.0]),  # ttl
    ),
    st.tuples(st.just("pop")),
    st.tuples(st.just("release")),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 2.0, 7.0])),
)


class Boom(Exception):
    """The predicate's way out of the walk."""


def build(queue: str, ops: list[tuple[Any, ...]]) -> tuple[Any, ManualClock]:
    """The queue after ``ops``, on its own clock."""
    clock = ManualClock(start=100.0)
    q = QUEUES[queue](clock)
    running: list[Task] = []
    for i, op in enumerate(ops):
        kind = op[0]
        try:
            if kind == "push":
                _, priority, tenant, key, deadline, cost, ttl = op
                task = Task(
                    i,
                    priority=priority,
                    tenant=tenant,
                    key=key,
                    deadline=None if deadline is None else clock.now() + deadline,
                    cost=cost,
                    ttl=ttl,
                )
                q.push(task)
            elif kind == "pop":
                task = q.pop()
                if task is not None:
                    running.append(task)
            elif kind == "release" and running:
                q.release(running.pop(0))
            elif kind == "advance":
                clock.advance(op[1])
                q.expire()
        except TaskdistError:
            pass  # refused alike in both twins
    return q, clock


def observe(q: Any) -> list[object]:
    """What a caller can see of the queue, then a full drain (popping each task)."""
    stats = attrs.asdict(q.stats(), recurse=False)
    seen: list[object] = [len(q), q.next_wakeup(), plain(stats)]
    order = []
    while (task := q.pop()) is not None:
        order.append(task.id)
        q.release(task)
    seen.append(order)
    return seen


@pytest.mark.parametrize("queue", sorted(QUEUES))
@settings(max_examples=60, deadline=None)
@given(ops=st.lists(operation, max_size=40), passed=st.integers(0, 12))
def test_a_walk_ended_from_its_predicate_changes_nothing(
    queue: str, ops: list[tuple[Any, ...]], passed: int
) -> None:
    subject, _ = build(queue, ops)
    twin, _ = build(queue, ops)
    asked: list[Task] = []

    def where(task: Task) -> bool:
        if len(asked) == passed:
            raise Boom
        asked.append(task)
        return False

    try:
        found = subject.pop(where=where)
    except Boom:
        pass
    else:  # the walk ran out before the predicate raised: nothing passed it
        assert found is None and len(asked) <= passed
    assert [t.id for t in asked] == [t.id for t in _walk(twin, len(asked))]
    assert observe(subject) == observe(twin)


def _walk(q: Any, n: int) -> list[Task]:
    """The first ``n`` tasks a predicate is shown (with a peek, which takes nothing)."""
    shown: list[Task] = []

    def where(task: Task) -> bool:
        shown.append(task)
        return False

    if n:
        q.peek(where=where)
    return shown[:n]
