"""PriorityQueue push+pop next to heapq on tuples and queue.PriorityQueue.

Two patterns, each at n = 1e3 .. 1e6 tasks of random priority (0..4):

- *steady*: the queue holds n tasks and each step pushes one and pops one,
  the life of a busy queue: the cost of a push+pop at depth n (the fill is
  set-up, not timed).
- *fill-drain*: push n tasks, then pop them all: the cost per task.

The contenders share a group per pattern and size, so pytest-benchmark shows
them side by side; ``benchmarks/compare_queues.py`` prints both as ratios.
"""

from __future__ import annotations

import heapq
import queue
import random
from collections.abc import Callable
from functools import cache, partial

import pytest
from sizing import sizes

from taskdist import MonotonicClock, PriorityQueue, Task

SIZES = sizes(full=[1_000, 10_000, 100_000, 1_000_000], smoke=[1_000, 10_000])
STEPS = sizes(full=[200_000], smoke=[2_000])[0]
"""Push+pop steps timed in the steady pattern."""

CONTENDERS = ["taskdist", "taskdist-aging", "heapq", "queue.PriorityQueue"]

# push(task, seq) and pop() of one contender's fresh queue, and its length.
Ops = tuple[Callable[[Task, int], object], Callable[[], object], Callable[[], int]]


@cache
def workload(n: int) -> list[Task]:
    """n + STEPS tasks: the first n fill the queue, the rest stream through."""
    rng = random.Random(n)
    return [Task(i, priority=rng.randrange(5)) for i in range(n + STEPS)]


def new_queue(contender: str) -> Ops:
    if contender == "heapq":
        heap: list[tuple[int, int, Task]] = []
        return (
            lambda task, seq: heapq.heappush(heap, (task.priority, seq, task)),
            partial(heapq.heappop, heap),
            heap.__len__,
        )
    if contender == "queue.PriorityQueue":
        qpq: queue.PriorityQueue[tuple[int, int, Task]] = queue.PriorityQueue()
        return (lambda task, seq: qpq.put((task.priority, seq, task)), qpq.get, qpq.qsize)
    q = PriorityQueue(MonotonicClock(), aging_rate=0.1 if contender == "taskdist-aging" else 0.0)
    push = q.push
    return (lambda task, seq: push(task)), q.pop, q.__len__


def filled(contender: str, tasks: list[Task], n: int) -> Ops:
    ops = new_queue(contender)
    push = ops[0]
    for seq in range(n):
        push(tasks[seq], seq)
    return ops


def stream(ops: Ops, tasks: list[Task], n: int) -> int:
    """Push the tasks after the first n one by one, popping one after each."""
    push, pop, size = ops
    for seq in range(n, len(tasks)):
        push(tasks[seq], seq)
        pop()
    return size()


def fill_drain(contender: str, tasks: list[Task]) -> int:
    push, pop, size = new_queue(contender)
    for seq, task in enumerate(tasks):
        push(task, seq)
    for _ in range(len(tasks)):
        pop()
    return size()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("contender", CONTENDERS)
def bench_steady_push_pop(benchmark, contender: str, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"steady push+pop at depth {n:.0e}"
    tasks = workload(n)

    def setup() -> tuple[tuple[Ops, list[Task], int], dict[str, object]]:
        return (filled(contender, tasks, n), tasks, n), {}

    left = benchmark.pedantic(stream, setup=setup, rounds=3, iterations=1)
    assert left == n


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("contender", CONTENDERS)
def bench_fill_drain(benchmark, contender: str, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"fill-drain n={n:.0e}"
    tasks = workload(n)[:n]
    rounds = max(1, min(20, 200_000 // n))
    left = benchmark.pedantic(fill_drain, args=(contender, tasks), rounds=rounds, iterations=1)
    assert left == 0
