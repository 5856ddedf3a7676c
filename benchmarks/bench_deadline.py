"""DeadlineScheduler push+pop next to PriorityQueue and a bare heapq EDF.

Each round pushes n tasks with deadlines and pops them all:

- ``PriorityQueue``: the same tasks ordered by priority (no deadlines, no
  admission): the queue a distributor would otherwise take;
- ``heapq-edf``: ``(deadline, priority, seq, task)`` tuples on a bare heap:
  EDF order with nothing else, the floor;
- ``DeadlineScheduler``: EDF with admission control on every push (one
  server, and four servers), ``on_miss="run_late"`` so every task is kept.

Two workloads: ``random`` deadlines (uniform over 1000 s, so pushes land
anywhere in the queue) and ``rising`` deadlines (arrival order, give or take
a few seconds: the usual "deadline = now + SLA" pattern, where pushes land
near the back). Total work is 10 % of the horizon, so almost every task is
feasible; ``overloaded`` has 5x the horizon in work, so most pushes are
infeasible, the case where the multi-server bound must decide.

Smoke sizes by default; ``TASKDIST_BENCH_FULL=1`` for the full ones.
``benchmarks/compare_deadline.py`` prints the same comparison as the ratio
table recorded in docs/performance.md.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from functools import cache

import pytest
from sizing import sizes

from taskdist import DeadlineScheduler, ManualClock, PriorityQueue, Task

SIZES = sizes(full=[1_000, 10_000, 100_000], smoke=[1_000, 10_000])
HORIZON = 1_000.0
WORKLOADS = ("random", "rising", "overloaded")


@cache
def workload(kind: str, n: int) -> list[Task]:
    rng = random.Random(n)
    load = 5.0 if kind == "overloaded" else 0.1
    cost = HORIZON * load / n
    tasks = []
    for i in range(n):
        if kind == "rising":
            deadline = 1.0 + HORIZON * i / n + rng.uniform(0.0, 5.0)
        else:
            deadline = 1.0 + rng.uniform(0.0, HORIZON)
        tasks.append(Task(i, priority=rng.randint(1, 4), deadline=deadline, cost=cost))
    return tasks


def run_priority_queue(tasks: list[Task]) -> int:
    q = PriorityQueue(ManualClock())
    push, pop = q.push, q.pop
    for task in tasks:
        push(task)
    for _ in range(len(tasks)):
        pop()
    return len(q)


def run_heapq_edf(tasks: list[Task]) -> int:
    heap: list[tuple[float, int, int, Task]] = []
    push, pop = heapq.heappush, heapq.heappop
    for seq, task in enumerate(tasks):
        push(heap, (task.deadline, task.priority, seq, task))  # type: ignore[arg-type]
    for _ in range(len(tasks)):
        pop(heap)
    return len(heap)


def run_deadline_scheduler(tasks: list[Task], servers: int = 1) -> int:
    edf = DeadlineScheduler(ManualClock(), servers=servers)
    push, pop = edf.push, edf.pop
    for task in tasks:
        push(task)
    for _ in range(len(tasks)):
        pop()
    return len(edf)


CONTENDERS: dict[str, Callable[[list[Task]], int]] = {
    "heapq-edf": run_heapq_edf,
    "PriorityQueue": run_priority_queue,
    "DeadlineScheduler": run_deadline_scheduler,
    "DeadlineScheduler-4": lambda tasks: run_deadline_scheduler(tasks, servers=4),
}


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", WORKLOADS)
@pytest.mark.parametrize("contender", list(CONTENDERS))
def bench_push_pop(benchmark, contender: str, kind: str, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"deadline push+pop {kind} n={n:.0e}"
    tasks = workload(kind, n)
    rounds = max(1, min(20, 200_000 // n))
    left = benchmark.pedantic(CONTENDERS[contender], args=(tasks,), rounds=rounds, iterations=1)
    assert left == 0


def test_the_scheduler_pops_in_the_heapq_edf_order() -> None:
    for kind in WORKLOADS:
        tasks = workload(kind, 500)
        edf = DeadlineScheduler(ManualClock(), servers=4)
        for task in tasks:
            edf.push(task)
        popped = [edf.pop() for _ in tasks]
        expected = sorted(tasks, key=lambda t: (t.deadline, t.priority, t.id))  # type: ignore[arg-type, return-value]
        assert popped == expected
