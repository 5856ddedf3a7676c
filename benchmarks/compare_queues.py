"""Print PriorityQueue's push+pop cost as ratios to heapq and queue.PriorityQueue.

    python benchmarks/compare_queues.py [--sizes 1000 10000 100000 1000000] [--repeat 3]

Both patterns of ``bench_priority_queue.py`` (steady at depth n, fill-drain),
every contender run ``repeat`` times, interleaved so that machine noise hits
them alike, keeping each one's best. Prints Markdown tables for
docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import time

from bench_priority_queue import CONTENDERS, STEPS, fill_drain, filled, stream, workload


def timed_steady(contender: str, n: int) -> float:
    tasks = workload(n)
    ops = filled(contender, tasks, n)
    gc.collect()
    start = time.perf_counter()
    stream(ops, tasks, n)
    return (time.perf_counter() - start) / STEPS * 1e6


def timed_fill_drain(contender: str, n: int) -> float:
    tasks = workload(n)[:n]
    gc.collect()
    start = time.perf_counter()
    fill_drain(contender, tasks)
    return (time.perf_counter() - start) / n * 1e6


def table(title: str, rows: list[tuple[int, dict[str, float]]]) -> None:
    print(f"\n{title}\n")
    print(
        "| n | heapq µs | taskdist / heapq | taskdist (aging) / heapq "
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
    (n0, first), (n1, last) = rows[0], rows[-1]
    growth = ", ".join(f"{c} {last[c] / first[c]:.2f}x" for c in CONTENDERS)
    print(f"\nGrowth of the cost per operation from {n0:.0e} to {n1:.0e}: {growth}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for title, measure in (
        (f"Steady: {STEPS} push+pop steps at depth n (µs per step)", timed_steady),
        ("Fill-drain: push n, pop n (µs per task)", timed_fill_drain),
    ):
        rows = []
        for n in args.sizes:
            best = dict.fromkeys(CONTENDERS, float("inf"))
            for _ in range(args.repeat):
                for contender in CONTENDERS:
                    best[contender] = min(best[contender], measure(contender, n))
            rows.append((n, best))
        table(title, rows)


if __name__ == "__main__":
    main()
