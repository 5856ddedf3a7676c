"""``rank(task, enqueued_at)``: the queues' own order, told without holding the task.

Among tasks of one tenant and priority, popping must follow the rank (equal
ranks in push order), whatever order they were pushed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from fair_support import UNRANKED_FAIR
from hostile import assert_refused
from hypothesis import given, settings
from hypothesis import strategies as st

from taskdist import (
    DeadlineScheduler,
    FairScheduler,
    InvalidArgumentError,
    InvalidTypeError,
    KeyShare,
    ManualClock,
    PriorityQueue,
    Task,
)

QUEUES: dict[str, Callable[[ManualClock], Any]] = {
    "priority": lambda clock: PriorityQueue(clock),
    "aging": lambda clock: PriorityQueue(clock, aging_rate=0.3),
    "deadline": lambda clock: DeadlineScheduler(clock, servers=3),
    "deadline aging": lambda clock: DeadlineScheduler(clock, aging_rate=0.2),
    "fair": lambda clock: FairScheduler(clock, weights={"t": 2.0}),
    "fair aging": lambda clock: FairScheduler(clock, aging_rate=0.3),
    "fair, bypass": lambda clock: FairScheduler(clock, critical_bypass=True),
    "fair, keys": lambda clock: FairScheduler(clock, inner=KeyShare(weights={None: 2.0})),
}

task_specs = st.lists(
    st.tuples(
        st.integers(0, 20),  # enqueued_at, back from now
        st.one_of(st.none(), st.integers(0, 30)),  # deadline, from now
    ),
    min_size=1,
    max_size=25,
)


@pytest.mark.parametrize("name", sorted(QUEUES))
@pytest.mark.parametrize("priority", [0, 1, 3])
@settings(max_examples=80, deadline=None)
@given(specs=task_specs)
def test_pop_follows_rank_among_tasks_of_one_tenant_and_priority(
    name: str, priority: int, specs: list[tuple[int, int | None]]
) -> None:
    clock = ManualClock(start=100.0)
    queue = QUEUES[name](clock)
    keys = []
    for i, (back, ahead) in enumerate(specs):
        task = Task(
            i,
            priority=priority,
            tenant="t",
            deadline=None if ahead is None else clock.now() + 1 + ahead,
        )
        enqueued = clock.now() - back
        rank = queue.rank(task, enqueued)
        assert rank is not None
        before = len(queue)
        queue.push(task, enqueued_at=enqueued)
        assert len(queue) == before + 1
        assert queue.rank(task, enqueued) == rank  # changes nothing, same answer
        keys.append((rank, i))
    popped = []
    while (task := queue.pop()) is not None:
        popped.append(task.id)
    assert popped == [i for _, i in sorted(keys)]


@pytest.mark.parametrize("name", sorted(UNRANKED_FAIR))
def test_a_fair_scheduler_whose_order_within_a_tenant_depends_on_what_it_holds_does_not_rank(
    name: str,
) -> None:
    queue = UNRANKED_FAIR[name](ManualClock())
    assert queue.rank(Task("x", priority=2, key="k"), 1.0) is None
    with pytest.raises(InvalidTypeError):  # what it takes is still checked
        queue.rank("x", 1.0)  # type: ignore[arg-type]


def held(queue: Any) -> list[Hashable]:
    """Drain the queue: what it held, in pop order."""
    return [task.id for task in iter(queue.pop, None)]


def filled(name: str) -> Callable[[], Any]:
    def build() -> Any:
        queue = QUEUES[name](ManualClock(start=10.0))
        for i in range(4):
            queue.push(Task(i, priority=1 + i % 2, deadline=50.0 + i))
        return queue

    return build


@pytest.mark.parametrize("name", sorted(QUEUES))
@pytest.mark.parametrize(
    ("task", "enqueued_at", "error"),
    [
        ("not a task", 1.0, InvalidTypeError),
        (7, 1.0, InvalidTypeError),
        (Task("x"), math.nan, InvalidArgumentError),
        (Task("x"), math.inf, InvalidArgumentError),
        (Task("x"), -math.inf, InvalidArgumentError),
        (Task("x"), "1.0", InvalidTypeError),
        (Task("x"), None, InvalidTypeError),
    ],
)
def test_rank_refuses_what_is_not_a_task_or_a_time_and_changes_nothing(
    name: str, task: object, enqueued_at: object, error: type[Exception]
) -> None:
    assert_refused(filled(name), lambda q: q.rank(task, enqueued_at), error, held)
