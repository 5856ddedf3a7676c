"""Distributor.snapshot() and Distributor.restore() at 1 000 .. 100 000 tasks.

- ``bench_snapshot``: the whole state of a distributor holding n tasks (all
  but 200 queued, 200 leased on 20 workers) as plain data;
- ``bench_snapshot_json``: the same, written by ``json.dumps``;
- ``bench_restore``: rebuilt from the JSON-loaded snapshot, every check
  included (n log n for the queue's pushes).

Smoke sizes by default; ``TASKDIST_BENCH_FULL=1`` for the full ones. Run as a
script (``python benchmarks/bench_snapshot.py``) to print microseconds per
task and bytes of JSON per task, the numbers quoted in docs/persistence.md.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
from sizing import sizes

from taskdist import Distributor, ManualClock, PriorityQueue, Task, Worker

SIZES = sizes([1_000, 10_000, 100_000], [1_000])


def busy(n: int) -> tuple[ManualClock, Distributor]:
    """A distributor holding ``n`` tasks: 200 leased on 20 workers, the rest queued."""
    clock = ManualClock()
    d = Distributor(clock, queue=PriorityQueue(clock, aging_rate=0.1), rng=random.Random(1))
    for i in range(20):
        d.add_worker(Worker(f"w{i}", capacity=10))
    for i in range(n):
        d.submit(Task(i, priority=i % 5, tenant=f"t{i % 10}", payload={"n": i}))
        clock.advance(0.001)
    d.dispatch()
    return clock, d


def restore(clock: ManualClock, data: Any) -> Distributor:
    later = ManualClock(start=clock.now())
    return Distributor.restore(data, later, queue=PriorityQueue(later, aging_rate=0.1))


@pytest.mark.parametrize("n", SIZES)
def bench_snapshot(benchmark: Any, n: int) -> None:
    benchmark.group = f"snapshot, {n} tasks"
    _, d = busy(n)
    assert len(benchmark(d.snapshot)["waiting"]) == n - 200


@pytest.mark.parametrize("n", SIZES)
def bench_snapshot_json(benchmark: Any, n: int) -> None:
    benchmark.group = f"snapshot, {n} tasks"
    _, d = busy(n)
    assert benchmark(lambda: json.dumps(d.snapshot()))


@pytest.mark.parametrize("n", SIZES)
def bench_restore(benchmark: Any, n: int) -> None:
    benchmark.group = f"restore, {n} tasks"
    clock, d = busy(n)
    data = json.loads(json.dumps(d.snapshot()))
    assert len(benchmark(lambda: restore(clock, data))) == n


def main() -> None:
    print("| tasks | snapshot µs/task | json.dumps µs/task | restore µs/task | JSON bytes/task |")
    print("|---:|---:|---:|---:|---:|")
    for n in (1_000, 10_000, 100_000):
        clock, d = busy(n)
        start = time.perf_counter()
        data = d.snapshot()
        taken = time.perf_counter()
        text = json.dumps(data)
        written = time.perf_counter()
        loaded = json.loads(text)
        begin = time.perf_counter()
        restore(clock, loaded)
        done = time.perf_counter()
        per = 1e6 / n
        print(
            f"| {n:,} | {(taken - start) * per:.1f} | {(written - taken) * per:.1f} "
            f"| {(done - begin) * per:.1f} | {len(text) / n:.0f} |"
        )


if __name__ == "__main__":
    main()
