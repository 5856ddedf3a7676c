"""Memory per queued task, beyond the Task itself: at most 200 bytes in the default queues.

Measured with tracemalloc, not timed. The clock is the real monotonic one, so
every push reads a fresh float, as in a host. The index dict's share of a
task swings with its fill (about 35 to 60 bytes); at 100 000 tasks it is near
its largest. ``benchmarks/compare_memory.py`` prints the whole table.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from taskdist import DeadlineScheduler, MonotonicClock, PriorityQueue, Task

# One way of measuring, shared with the script that prints the whole table.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from compare_memory import bytes_per_task

BUDGET = 200
"""Bytes per queued task beyond the Task object."""


def plain_tasks(n: int) -> list[Task]:
    rng = random.Random(n)
    return [Task(i, priority=rng.randint(1, 4)) for i in range(n)]


def deadlined_tasks(n: int) -> list[Task]:
    rng = random.Random(n)
    return [
        Task(i, priority=rng.randint(1, 4), deadline=1e9 + rng.uniform(0, 1e6), cost=0.001)
        for i in range(n)
    ]


CASES = {
    "PriorityQueue": (lambda: PriorityQueue(MonotonicClock()), plain_tasks),
    "DeadlineScheduler": (lambda: DeadlineScheduler(MonotonicClock()), deadlined_tasks),
    "DeadlineScheduler, 4 servers": (
        lambda: DeadlineScheduler(MonotonicClock(), servers=4),
        deadlined_tasks,
    ),
}


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_a_queued_task_costs_at_most_200_bytes_beyond_itself(case: str) -> None:
    make, tasks = CASES[case]
    assert bytes_per_task(make, tasks(100_000)) <= BUDGET
