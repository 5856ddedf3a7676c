"""PriorityQueue push+pop next to heapq on tuples and queue.PriorityQueue.

Each round pushes n tasks of random priority (0..4) and pops them all; the
three contenders share a group per size so pytest-benchmark shows them side
by side. `benchmarks/compare_queues.py` prints the same comparison as ratios.
"""

from __future__ import annotations

import heapq
import queue
import random
from functools import cache

import pytest
from sizing import sizes

from taskdist import MonotonicClock, PriorityQueue, Task

SIZES = sizes(full=[1_000, 10_000, 100_000, 1_000_000], smoke=[1_000, 10_000])


@cache
def workload(n: int) -> list[Task]:
    rng = random.Random(n)
    return [Task(i, priority=rng.randrange(5)) for i in range(n)]


def run_taskdist(tasks: list[Task], aging_rate: float = 0.0) -> int:
    q = PriorityQueue(MonotonicClock(), aging_rate=aging_rate)
    push, pop = q.push, q.pop
    for task in tasks:
        push(task)
    for _ in range(len(tasks)):
        pop()
    return len(q)


def run_heapq(tasks: list[Task]) -> int:
    heap: list[tuple[int, int, Task]] = []
    push, pop = heapq.heappush, heapq.heappop
    for seq, task in enumerate(tasks):
        push(heap, (task.priority, seq, task))
    for _ in range(len(tasks)):
        pop(heap)
    return len(heap)


def run_queue_priority_queue(tasks: list[Task]) -> int:
    q: queue.PriorityQueue[tuple[int, int, Task]] = queue.PriorityQueue()
    put, get = q.put, q.get
    for seq, task in enumerate(tasks):
        put((task.priority, seq, task))
    for _ in range(len(tasks)):
        get()
    return q.qsize()


CONTENDERS = {
    "taskdist": run_taskdist,
    "taskdist-aging": lambda tasks: run_taskdist(tasks, aging_rate=0.1),
    "heapq": run_heapq,
    "queue.PriorityQueue": run_queue_priority_queue,
}


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("contender", list(CONTENDERS))
def bench_push_pop(benchmark, contender: str, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"push+pop n={n:.0e}"
    tasks = workload(n)
    rounds = max(1, min(20, 200_000 // n))
    left = benchmark.pedantic(CONTENDERS[contender], args=(tasks,), rounds=rounds, iterations=1)
    assert left == 0
