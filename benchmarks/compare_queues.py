"""Print PriorityQueue's push+pop cost as ratios to heapq and queue.PriorityQueue.

    python benchmarks/compare_queues.py [--sizes 1000 10000 100000 1000000] [--repeat 5]

Each size runs every contender ``repeat`` times, interleaved so that machine
noise hits all of them alike, and keeps each one's best time. Prints a
Markdown table (per-operation microseconds, ratios, growth from the smallest
size) ready for docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import time

from bench_priority_queue import CONTENDERS, workload


def best_per_task(run, tasks, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        run(tasks)
        best = min(best, time.perf_counter() - start)
    return best / len(tasks) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        tasks = workload(n)
        repeat = args.repeat if n < 1_000_000 else max(2, args.repeat // 2)
        times = dict.fromkeys(CONTENDERS, float("inf"))
        for _ in range(repeat):  # interleave contenders
            for name, run in CONTENDERS.items():
                times[name] = min(times[name], best_per_task(run, tasks, 1))
        rows.append((n, times))
    print(
        "| n | heapq µs/task | taskdist / heapq | taskdist (aging) / heapq "
        "| queue.PriorityQueue / heapq | taskdist / queue.PriorityQueue |"
    )
    print("|---|---|---|---|---|---|")
    for n, t in rows:
        print(
            f"| {n:.0e} | {t['heapq']:.2f} | {t['taskdist'] / t['heapq']:.2f} "
            f"| {t['taskdist-aging'] / t['heapq']:.2f} "
            f"| {t['queue.PriorityQueue'] / t['heapq']:.2f} "
            f"| {t['taskdist'] / t['queue.PriorityQueue']:.2f} |"
        )
    first, last = rows[0][1], rows[-1][1]
    print(
        f"\nGrowth of per-task cost from {rows[0][0]:.0e} to {rows[-1][0]:.0e}: "
        f"taskdist {last['taskdist'] / first['taskdist']:.2f}x, "
        f"heapq {last['heapq'] / first['heapq']:.2f}x, "
        f"queue.PriorityQueue {last['queue.PriorityQueue'] / first['queue.PriorityQueue']:.2f}x"
    )


if __name__ == "__main__":
    main()
