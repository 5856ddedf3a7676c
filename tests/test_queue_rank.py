"""``rank(task, enqueued_at)``: the queues' own order, told without holding the task.

Among tasks of one tenant and priority, popping must follow the rank (equal
ranks in push order), whatever order they were pushed in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskdist import DeadlineScheduler, FairScheduler, ManualClock, PriorityQueue, Task

QUEUES: dict[str, Callable[[ManualClock], Any]] = {
    "priority": lambda clock: PriorityQueue(clock),
    "aging": lambda clock: PriorityQueue(clock, aging_rate=0.3),
    "deadline": lambda clock: DeadlineScheduler(clock, servers=3),
    "deadline aging": lambda clock: DeadlineScheduler(clock, aging_rate=0.2),
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
@pytest.mark.parametrize("priority", [1, 3])
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


def test_a_fair_scheduler_does_not_rank() -> None:
    # Which tenant it serves depends on what it holds: it must hold every waiting task.
    assert not hasattr(FairScheduler(ManualClock()), "rank")
