"""Time the queues of two checkouts of taskdist side by side: PriorityQueue, FairScheduler
and DeadlineScheduler.

    git archive <old commit> | tar -x -C /tmp/before      # an older tree, anywhere
    python benchmarks/compare_queue_revisions.py /tmp/before . [--pairs 5] [--only TEXT]

Each tree runs in a process of its own (its ``taskdist`` first on the path);
the two take turns, one process each per pair, and each process keeps the
best of 3 runs of every workload (CPU time), so noise on a shared machine
hits them alike. Workloads: a PriorityQueue filled with 100 000 tasks and
drained (plain, with aging, every task with a TTL, TTLs of mixed lengths
from 1e5 to 1e6 seconds, bounded with ``drop_lowest``), a steady 200 000
pop+push at depth 100 000, and a
FairScheduler cycle (``pop``, ``release``, ``push``) of 100 000 over 1 000
tenants with 2 tasks each (plain, with TTLs, nested over 4 keys), and a
DeadlineScheduler filled with 100 000 tasks with deadlines and drained
(every task with a TTL; ``on_miss="dead_letter"``, where a deadline passing
expires a task, with and without TTLs; and every deadline passed, then
``expire()``). ``--only`` times the workloads whose name holds that text.
Prints a Markdown table: the median time of each tree and the median and
range of the paired second/first ratios.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

N = 100_000
CYCLES = 100_000


def workloads() -> dict[str, Callable[[], None]]:
    """The workloads, timed in the child process (its ``taskdist`` imported by then)."""
    from taskdist import (
        DeadlineScheduler,
        FairScheduler,
        ManualClock,
        MonotonicClock,
        PriorityQueue,
        Task,
    )

    def tasks(
        n: int, ttl: float | None = None, tenants: int | None = None, deadline: bool = False
    ) -> list[Any]:
        rng = random.Random(n)
        return [
            Task(
                i,
                priority=rng.randint(1, 4),
                deadline=1e9 + rng.uniform(0, 1e6) if deadline else None,
                cost=0.001,
                ttl=ttl,
                tenant=None if tenants is None else i % tenants,
                key=i % 4,
            )
            for i in range(n)
        ]

    def fill_drain(make: Callable[[], Any], batch: list[Any]) -> Callable[[], None]:
        def run() -> None:
            queue = make()
            for task in batch:
                queue.push(task)
            for _ in batch:
                queue.pop()

        return run

    def steady(batch: list[Any]) -> Callable[[], None]:
        def run() -> None:
            queue = PriorityQueue(MonotonicClock())
            for task in batch[:N]:
                queue.push(task)
            for task in batch[N:]:
                queue.pop()
                queue.push(task)

        return run

    def cycle(make: Callable[[], Any], batch: list[Any]) -> Callable[[], None]:
        def run() -> None:
            fair = make()
            for task in batch:
                fair.push(task)
            for _ in range(CYCLES):
                task = fair.pop()
                fair.release(task)
                fair.push(task)

        return run

    def expire_all(batch: list[Any]) -> Callable[[], None]:
        def run() -> None:
            clock = ManualClock()
            edf = DeadlineScheduler(clock, on_miss="dead_letter")
            for task in batch:
                edf.push(task)
            clock.advance(2e9)  # past every deadline
            edf.expire()

        return run

    plain, with_ttl = tasks(N), tasks(N, ttl=1e6)
    deadlines, deadlines_ttl = tasks(N, deadline=True), tasks(N, ttl=1e6, deadline=True)
    rng = random.Random(N)
    mixed_ttl = [Task(t.id, priority=t.priority, ttl=rng.uniform(1e5, 1e6)) for t in plain]
    tenants, tenants_ttl = tasks(2_000, tenants=1_000), tasks(2_000, ttl=1e6, tenants=1_000)

    def nested() -> Any:
        return FairScheduler(
            MonotonicClock(), inner=lambda c, t: FairScheduler(c, tenant_of=lambda t: t.key)
        )

    return {
        "PriorityQueue fill-drain 1e5": fill_drain(lambda: PriorityQueue(MonotonicClock()), plain),
        "the same, aging_rate=0.1": fill_drain(
            lambda: PriorityQueue(MonotonicClock(), aging_rate=0.1), plain
        ),
        "the same, every task with a TTL": fill_drain(
            lambda: PriorityQueue(MonotonicClock()), with_ttl
        ),
        "the same, TTLs of mixed lengths": fill_drain(
            lambda: PriorityQueue(MonotonicClock()), mixed_ttl
        ),
        "the same, maxsize with drop_lowest (never full)": fill_drain(
            lambda: PriorityQueue(MonotonicClock(), maxsize=10**8, overflow="drop_lowest"), plain
        ),
        "PriorityQueue steady 2e5 pop+push at 1e5": steady(tasks(3 * N)),
        "FairScheduler cycle, 1 000 tenants": cycle(
            lambda: FairScheduler(MonotonicClock()), tenants
        ),
        "FairScheduler cycle, every task with a TTL": cycle(
            lambda: FairScheduler(MonotonicClock()), tenants_ttl
        ),
        "the same, nested over 4 keys": cycle(nested, tenants),
        "DeadlineScheduler fill-drain 1e5, every task with a TTL": fill_drain(
            lambda: DeadlineScheduler(MonotonicClock()), deadlines_ttl
        ),
        "DeadlineScheduler(on_miss='dead_letter'), the same": fill_drain(
            lambda: DeadlineScheduler(MonotonicClock(), on_miss="dead_letter"), deadlines_ttl
        ),
        "DeadlineScheduler(on_miss='dead_letter'), the same without TTLs": fill_drain(
            lambda: DeadlineScheduler(MonotonicClock(), on_miss="dead_letter"), deadlines
        ),
        "DeadlineScheduler(on_miss='dead_letter') 1e5, every deadline passed: expire()": (
            expire_all(deadlines)
        ),
    }


def child(only: str) -> None:
    import taskdist

    tree = Path(os.environ["PYTHONPATH"])
    assert Path(taskdist.__file__).is_relative_to(tree), f"{taskdist.__file__} not in {tree}"
    for name, run in workloads().items():
        if only not in name:
            continue
        best = float("inf")
        for _ in range(3):
            gc.collect()
            start = time.process_time()
            run()
            best = min(best, time.process_time() - start)
        print(f"{name}\t{best}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--only", default="", help="time only the workloads whose name holds it")
    args = parser.parse_args()
    times: dict[str, tuple[list[float], list[float]]] = {}
    for _ in range(args.pairs):
        for side, tree in enumerate((args.first, args.second)):
            out = subprocess.run(
                [sys.executable, __file__, "--child", args.only],
                env={"PYTHONPATH": str(tree.resolve())},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for line in out.splitlines():
                name, seconds = line.split("\t")
                times.setdefault(name, ([], []))[side].append(float(seconds))
    print("| workload | first ms | second ms | second / first (median) | range |")
    print("|---|---:|---:|---:|---|")
    for name, (first, second) in times.items():
        ratios = [b / a for a, b in zip(first, second, strict=True)]
        print(
            f"| {name} | {statistics.median(first) * 1e3:.0f} | "
            f"{statistics.median(second) * 1e3:.0f} | {statistics.median(ratios):.2f} | "
            f"{min(ratios):.2f} to {max(ratios):.2f} |"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        main()
