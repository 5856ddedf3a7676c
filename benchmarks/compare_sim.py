"""Print the simulator's cost per task next to a bare SimPy model's, and where it goes.

    python benchmarks/compare_sim.py [--customers 50000] [--repeat 3] [--platform 100000] [--cpu]

Runs the M/M/10 of ``bench_sim.py`` in SimPy and in taskdist (default and
FIFO policies), interleaved so machine noise hits all alike, keeping each
one's best time, and splits the taskdist run's time between the
Distributor's calls and the simulator's own work; counts the Distributor
calls the simulator makes per task; then one platform run of ``--platform``
tasks; then a cProfile of the taskdist M/M/c run, its time split by package
(the Distributor's layers, the simulator, the rest). Prints the load
average and Markdown tables for docs/performance.md. ``--cpu`` times the
contenders by the process's CPU time instead of the wall clock (steadier on
a loaded machine, where waiting for a core adds wall time to all alike but
not evenly), and splits that time by the run's own share of wall time
spent in Distributor calls.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import os
import pstats
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench_sim import platform, simpy_mmc, taskdist_mmc
from timing import best_of

from taskdist import Distributor
from taskdist.sim import Simulation, scenarios

CALLS = ("submit", "dispatch", "complete", "fail", "heartbeat", "tick", "next_wakeup", "__len__")

CONTENDERS: dict[str, Callable[[int], float]] = {
    "SimPy (bare model)": simpy_mmc,
    "taskdist, policy priority": taskdist_mmc,
    "taskdist, policy fifo/p2c": lambda n: taskdist_mmc(n, policy="fifo/p2c"),
}

LAYERS = (
    ("dispatch/", "Distributor (dispatch/)"),
    ("queues/", "queues/"),
    ("workers/", "workers/ (tracker)"),
    ("balancing/", "balancing/"),
    ("resilience/", "resilience/"),
    ("taskdist/sim/", "the simulator (sim/)"),
    ("taskdist/", "vocabulary (task, metrics, clock, _validate)"),
)


def layer_of(filename: str) -> str:
    for fragment, name in LAYERS:
        if fragment in filename:
            return name
    return "Python (heapq, random, builtins)"


@contextmanager
def counting(counts: Counter[str]) -> Iterator[None]:
    """Count the calls of the Distributor's host-facing methods while inside."""
    originals = {name: getattr(Distributor, name) for name in CALLS}

    def counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return method(*args, **kwargs)

        return call

    for name, method in originals.items():
        setattr(Distributor, name, counted(name, method))
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(Distributor, name, method)


def calls(n: int) -> None:
    counts: Counter[str] = Counter()
    with counting(counts):
        Simulation(scenarios.mm_c(8.0, 1.0, 10, tasks=n), seed=1).run()
    print(f"\nDistributor calls per customer (M/M/10, {n:,} customers):\n")
    print("| call | per customer |")
    print("|---|---|")
    for name in CALLS:
        if counts[name]:
            shown = "len()" if name == "__len__" else f"{name}()"
            print(f"| `{shown}` | {counts[name] / n:.2f} |")


def profile(n: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    taskdist_mmc(n)
    profiler.disable()
    stats = pstats.Stats(profiler)
    by_layer: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_layer[layer_of(filename)] += own
        total += own
    print(f"\nWhere the time goes (cProfile, own time, M/M/10, {n:,} tasks):\n")
    print("| part | share |")
    print("|---|---|")
    for name, own in sorted(by_layer.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {own / total:.0%} |")
    print("\nTop functions by own time:\n")
    print("| function | calls | own µs per task |")
    print("|---|---|---|")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]  # type: ignore[attr-defined]
    for (filename, line, name), (_, calls, own, _, _) in rows:
        short = filename.split("taskdist/")[-1] if "taskdist/" in filename else filename
        print(f"| `{short}:{line}({name})` | {calls:,} | {own / n * 1e6:.2f} |")


def cpu_time(run: Callable[[], object]) -> float:
    """The CPU time of one run of ``run()``, in seconds (garbage collected before)."""
    gc.collect()
    began = time.process_time()
    run()
    return time.process_time() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--platform", type=int, default=100_000)
    parser.add_argument("--cpu", action="store_true", help="time by CPU time, not wall time")
    args = parser.parse_args()
    n = args.customers
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the start: {load:.2f}\n")
    best = {name: float("inf") for name in CONTENDERS}
    for _ in range(args.repeat):
        for name, run in CONTENDERS.items():
            once = functools.partial(run, n)
            seconds = cpu_time(once) if args.cpu else best_of(1, once)
            best[name] = min(best[name], seconds)
    simpy = best["SimPy (bare model)"]
    clock = "CPU" if args.cpu else "wall"
    print(f"M/M/10 at 80 %, {n:,} customers, best of {args.repeat} ({clock} time):\n")
    print("| model | µs per customer | ratio to SimPy |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds / n * 1e6:.1f} | {seconds / simpy:.2f}x |")
    split = min(
        (
            Simulation(scenarios.mm_c(8.0, 1.0, 10, tasks=n), seed=1).run()
            for _ in range(args.repeat)
        ),
        key=lambda report: report.timing.wall_seconds,
    )
    share = split.timing.distributor_seconds / split.timing.wall_seconds
    whole = best["taskdist, policy priority"] / n * 1e6
    inside = whole * share
    print(
        f"\nof the taskdist run's {whole:.1f} µs per customer, {inside:.1f} µs "
        f"({share:.0%}) are spent inside Distributor calls (submit, dispatch, "
        f"complete, tick, next_wakeup) and {whole - inside:.1f} µs in the simulator's own "
        f"loop, sampling and measurements"
    )
    calls(min(n, 20_000))
    began = time.perf_counter()
    utilization = platform(args.platform)
    wall = time.perf_counter() - began
    print(
        f"\nplatform at 85 %: {args.platform:,} tasks in {wall:.1f} s "
        f"({wall / args.platform * 1e6:.0f} µs per task; utilisation {utilization:.1%})"
    )
    profile(min(n, 20_000))


if __name__ == "__main__":
    main()
