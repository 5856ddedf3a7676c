"""Print DeadlineScheduler's push+pop cost as ratios to PriorityQueue and a bare heapq EDF.

    python benchmarks/compare_deadline.py [--sizes 1000 10000 100000] [--repeat 5]
        [--workloads random rising overloaded] [--cpu]

Each workload and size runs every contender ``repeat`` times, interleaved so
that machine noise hits all of them alike, and keeps each one's best time.
``--cpu`` times the CPU the measuring thread used (``time.thread_time``)
rather than the wall clock, so that other processes sharing the cores count
less. Prints a Markdown table ready for docs/performance.md. It measures the
``taskdist`` of the checkout it sits in (whatever else is installed).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # after benchmarks/

from bench_deadline import CONTENDERS, WORKLOADS, workload

from taskdist import Task


def per_task(
    run: Callable[[list[Task]], int], tasks: list[Task], clock: Callable[[], float]
) -> float:
    """Microseconds per task (one push + one pop) of one run, by ``clock``."""
    gc.collect()
    start = clock()
    run(tasks)
    return (clock() - start) / len(tasks) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--cpu", action="store_true", help="time CPU use, not the wall clock")
    args = parser.parse_args()
    clock = time.thread_time if args.cpu else time.perf_counter
    print(
        "| workload | n | PriorityQueue µs/task | DeadlineScheduler / PriorityQueue "
        "| 4 servers / PriorityQueue | DeadlineScheduler / heapq EDF |"
    )
    print("|---|---|---|---|---|---|")
    for kind in args.workloads:
        for n in args.sizes:
            tasks = workload(kind, n)
            best = dict.fromkeys(CONTENDERS, float("inf"))
            for _ in range(args.repeat):  # interleaved, so noise hits all alike
                for name, run in CONTENDERS.items():
                    best[name] = min(best[name], per_task(run, tasks, clock))
            pq = best["PriorityQueue"]
            print(
                f"| {kind} | {n:.0e} | {pq:.2f} | {best['DeadlineScheduler'] / pq:.2f} "
                f"| {best['DeadlineScheduler-4'] / pq:.2f} "
                f"| {best['DeadlineScheduler'] / best['heapq-edf']:.2f} |"
            )


if __name__ == "__main__":
    main()
