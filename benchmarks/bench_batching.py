"""BatchOptimizer add/poll throughput next to a hand-rolled dict-of-lists batcher.

Two workloads, each run by both contenders on the same tasks:

- ``add``: n tasks over 16 groups, every batch released full by ``add``
  (size 32); the cost of the bookkeeping (due times, urgency, stats) over
  plain list appends.
- ``stream``: n tasks arriving one per millisecond over g groups, with a
  host that polls exactly at every ``next_wakeup()`` before the next arrival;
  batches close by size (8) or by ``max_wait`` (250 ms, so up to about 250
  groups are open at once). The hand-rolled batcher finds the next due group
  by scanning every open group, O(G) per look; BatchOptimizer keeps due
  times in a heap, O(log G).

``benchmarks/compare_batching.py`` prints the same comparison as ratios.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from functools import cache

import pytest
from sizing import sizes

from taskdist import BatchOptimizer, ManualClock, Task

ADD_SIZES = sizes(full=[10_000, 100_000], smoke=[2_000])
STREAM_GROUPS = sizes(full=[10, 100, 1_000], smoke=[10, 100])
STREAM_TASKS = sizes(full=[20_000], smoke=[2_000])[0]

ADD_GROUPS = 16
ADD_MAX_SIZE = 32
STREAM_MAX_SIZE = 8
STREAM_MAX_WAIT = 0.25
STREAM_GAP = 0.001


class HandRolledBatcher:
    """What one writes without a library: a dict of lists and a scan for what is due.

    Same release rule as BatchOptimizer's defaults (full at ``max_size``, or
    ``max_wait`` after a group's first task); no priorities, TTLs, cost
    bounds or stats.
    """

    def __init__(self, clock: ManualClock, max_size: int, max_wait: float) -> None:
        self.clock = clock
        self.max_size = max_size
        self.max_wait = max_wait
        self.groups: dict[Hashable, tuple[float, list[Task]]] = {}

    def add(self, task: Task) -> list[Task] | None:
        group = self.groups.get(task.group)
        if group is None:
            group = self.groups[task.group] = (self.clock.now() + self.max_wait, [])
        group[1].append(task)
        if len(group[1]) >= self.max_size:
            del self.groups[task.group]
            return group[1]
        return None

    def next_wakeup(self) -> float | None:
        return min((due for due, _ in self.groups.values()), default=None)

    def poll(self) -> list[list[Task]]:
        now = self.clock.now()
        due = [key for key, (at, _) in self.groups.items() if at <= now]
        return [self.groups.pop(key)[1] for key in due]

    def flush(self) -> list[list[Task]]:
        batches = [tasks for _, tasks in self.groups.values()]
        self.groups.clear()
        return batches


Batcher = BatchOptimizer | HandRolledBatcher


def make(contender: str, clock: ManualClock, max_size: int, max_wait: float) -> Batcher:
    if contender == "taskdist":
        return BatchOptimizer(clock, max_size=max_size, max_wait=max_wait)
    return HandRolledBatcher(clock, max_size, max_wait)


@cache
def tasks_over(n: int, groups: int) -> list[Task]:
    rng = random.Random(n * 1_000 + groups)
    return [Task(i, group=rng.randrange(groups)) for i in range(n)]


def run_add(contender: str, tasks: list[Task]) -> int:
    """Add every task (time stands still: batches close by size); tasks released."""
    batcher = make(contender, ManualClock(), ADD_MAX_SIZE, 1.0)
    add = batcher.add
    released = 0
    for task in tasks:
        batch = add(task)
        if batch is not None:
            released += len(batch)
    return released + sum(len(batch) for batch in batcher.flush())


def run_stream(contender: str, tasks: list[Task]) -> int:
    """One arrival per STREAM_GAP; the host polls at every wakeup in between; tasks released."""
    clock = ManualClock()
    batcher = make(contender, clock, STREAM_MAX_SIZE, STREAM_MAX_WAIT)
    add, poll, next_wakeup = batcher.add, batcher.poll, batcher.next_wakeup
    released = 0
    for i, task in enumerate(tasks):
        arrival = i * STREAM_GAP
        wake = next_wakeup()
        while wake is not None and wake <= arrival:
            clock.set(max(wake, clock.now()))
            released += sum(len(batch) for batch in poll())
            wake = next_wakeup()
        clock.set(arrival)
        batch = add(task)
        if batch is not None:
            released += len(batch)
    return released + sum(len(batch) for batch in batcher.flush())


CONTENDERS = ["taskdist", "hand-rolled"]
RUNNERS: dict[str, Callable[[str, list[Task]], int]] = {"add": run_add, "stream": run_stream}


@pytest.mark.parametrize("n", ADD_SIZES)
@pytest.mark.parametrize("contender", CONTENDERS)
def bench_add(benchmark, contender: str, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"batching add n={n:.0e}"
    tasks = tasks_over(n, ADD_GROUPS)
    rounds = max(1, min(10, 200_000 // n))
    released = benchmark.pedantic(run_add, args=(contender, tasks), rounds=rounds, iterations=1)
    assert released == n


@pytest.mark.parametrize("groups", STREAM_GROUPS)
@pytest.mark.parametrize("contender", CONTENDERS)
def bench_stream(benchmark, contender: str, groups: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"batching stream groups={groups}"
    tasks = tasks_over(STREAM_TASKS, groups)
    released = benchmark.pedantic(run_stream, args=(contender, tasks), rounds=3, iterations=1)
    assert released == STREAM_TASKS
