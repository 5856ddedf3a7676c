"""Print BatchOptimizer's add and stream cost as ratios to a hand-rolled batcher.

    python benchmarks/compare_batching.py [--tasks 20000] [--groups 10 100 1000] [--repeat 5]

Runs the two workloads of ``bench_batching.py``. Each contender runs
``repeat`` times, interleaved so machine noise hits both alike, and keeps its
best time. Prints Markdown tables ready for docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import time

from bench_batching import ADD_GROUPS, CONTENDERS, run_add, run_stream, tasks_over


def best_per_task(run, contender, tasks, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        released = run(contender, tasks)
        best = min(best, time.perf_counter() - start)
        assert released == len(tasks)
    return best / len(tasks) * 1e6


def measure(run, tasks, repeat: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    times = dict.fromkeys(CONTENDERS, float("inf"))
    for _ in range(repeat):  # interleave contenders
        for contender in CONTENDERS:
            times[contender] = min(times[contender], best_per_task(run, contender, tasks, 1))
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--groups", type=int, nargs="+", default=[10, 100, 1_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    print(f"add: {args.tasks} tasks over {ADD_GROUPS} groups, released full")
    print()
    print("| taskdist µs/task | hand-rolled µs/task | taskdist / hand-rolled |")
    print("|---|---|---|")
    t = measure(run_add, tasks_over(args.tasks, ADD_GROUPS), args.repeat)
    print(
        f"| {t['taskdist']:.2f} | {t['hand-rolled']:.2f} | {t['taskdist'] / t['hand-rolled']:.2f} |"
    )
    print()
    print(f"stream: {args.tasks} tasks, polled at every next_wakeup()")
    print()
    print("| groups | taskdist µs/task | hand-rolled µs/task | hand-rolled / taskdist |")
    print("|---|---|---|---|")
    for groups in args.groups:
        t = measure(run_stream, tasks_over(args.tasks, groups), args.repeat)
        print(
            f"| {groups} | {t['taskdist']:.2f} | {t['hand-rolled']:.2f} "
            f"| {t['hand-rolled'] / t['taskdist']:.2f} |"
        )


if __name__ == "__main__":
    main()
