"""Print the hosts' throughput side by side: the asyncio host against dramatiq, and threads.

    python benchmarks/compare_hosts.py [--tasks 20000] [--threaded-tasks 100000] [--repeat 3]

Each contender of ``bench_hosts.py`` runs ``repeat`` times, interleaved so
that machine noise hits all of them alike, and keeps its best time. Prints
Markdown tables ready for docs/performance.md: tasks per second, the
asyncio host's rate as a multiple of dramatiq's, and where the host's time
goes (the Distributor alone, and what the host adds per task).
"""

from __future__ import annotations

import argparse
import gc
import logging
from collections.abc import Callable

from bench_hosts import asyncio_host, distributor_alone, dramatiq_stub, one_thread, threaded


def best(runs: dict[str, Callable[[int], float]], n: int, repeat: int) -> dict[str, float]:
    seconds = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            seconds[name] = min(seconds[name], run(n))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--threaded-tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # dramatiq's worker logs its start and stop

    n = args.tasks
    end_to_end = best(
        {
            "asyncio host": asyncio_host,
            "distributor alone": distributor_alone,
            "dramatiq StubBroker": dramatiq_stub,
        },
        n,
        args.repeat,
    )
    rate = {name: n / s for name, s in end_to_end.items()}
    print(f"{n} no-op tasks end to end (best of {args.repeat}, interleaved)\n")
    print("| contender | tasks/s | µs per task | ratio to dramatiq |")
    print("|---|---:|---:|---:|")
    for name, per_second in rate.items():
        ratio = per_second / rate["dramatiq StubBroker"]
        print(f"| {name} | {per_second:,.0f} | {1e6 / per_second:.1f} | {ratio:.2f} |")
    host_us = 1e6 * (end_to_end["asyncio host"] - end_to_end["distributor alone"]) / n
    print(
        f"\nThe asyncio host adds {host_us:.1f} µs per task to the Distributor's "
        f"{1e6 * end_to_end['distributor alone'] / n:.1f} µs."
    )

    m = args.threaded_tasks
    threads = best(
        {"8 threads, ThreadSafeDistributor": threaded, "1 thread, Distributor": one_thread},
        m,
        args.repeat,
    )
    print(f"\n{m} tasks submitted, dispatched and completed (best of {args.repeat})\n")
    print("| contender | tasks/s | ratio to one thread |")
    print("|---|---:|---:|")
    single = m / threads["1 thread, Distributor"]
    for name, s in threads.items():
        print(f"| {name} | {m / s:,.0f} | {m / s / single:.2f} |")


if __name__ == "__main__":
    main()
