"""Print the hosts' throughput side by side: the asyncio host against dramatiq, and threads.

    python benchmarks/compare_hosts.py [--tasks 20000] [--threaded-tasks 100000] [--repeat 3]

Each contender of ``bench_hosts.py`` runs ``repeat`` times, interleaved so
that machine noise hits all of them alike, and keeps its best time. Prints
Markdown tables ready for docs/performance.md: tasks per second, the
asyncio host's rate as a multiple of dramatiq's, and where the host's time
goes (the Distributor alone, what the host adds per task, and the host's
own cost over a distributor that schedules nothing). Beside the
wall-clock rates, the process's CPU time per task (every thread's): on a
shared, loaded machine it moves less than the wall clock does.
"""

from __future__ import annotations

import argparse
import gc
import logging
from collections.abc import Callable

from bench_hosts import (
    Seconds,
    asyncio_host,
    distributor_alone,
    dramatiq_stub,
    host_over_stand_in,
    loop_over_stand_in,
    one_thread,
    threaded,
)


def best(runs: dict[str, Callable[[int], Seconds]], n: int, repeat: int) -> dict[str, Seconds]:
    """Each contender's best wall-clock and best CPU time over ``repeat`` interleaved runs."""
    seconds = dict.fromkeys(runs, (float("inf"), float("inf")))
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            wall, cpu = run(n)
            seconds[name] = (min(seconds[name][0], wall), min(seconds[name][1], cpu))
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
    rate = {name: n / wall for name, (wall, _) in end_to_end.items()}
    cpu_rate = {name: n / cpu for name, (_, cpu) in end_to_end.items()}
    print(f"{n} no-op tasks end to end (best of {args.repeat}, interleaved)\n")
    print("| contender | tasks/s | µs per task | ratio to dramatiq | CPU µs per task | CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, per_second in rate.items():
        ratio = per_second / rate["dramatiq StubBroker"]
        cpu_ratio = cpu_rate[name] / cpu_rate["dramatiq StubBroker"]
        print(
            f"| {name} | {per_second:,.0f} | {1e6 / per_second:.1f} | {ratio:.2f} "
            f"| {1e6 / cpu_rate[name]:.1f} | {cpu_ratio:.2f} |"
        )
    host_us = 1e6 * (end_to_end["asyncio host"][0] - end_to_end["distributor alone"][0]) / n
    host_cpu_us = 1e6 * (end_to_end["asyncio host"][1] - end_to_end["distributor alone"][1]) / n
    print(
        f"\nThe asyncio host adds {host_us:.1f} µs per task ({host_cpu_us:.1f} µs of CPU) "
        f"to the Distributor's {1e6 * end_to_end['distributor alone'][0] / n:.1f} µs."
    )

    own = best(
        {"asyncio host": host_over_stand_in, "plain loop": loop_over_stand_in}, n, args.repeat
    )
    print(f"\nThe host's own cost: {n} no-op tasks over a distributor that schedules nothing\n")
    print("| contender | µs per task | CPU µs per task |")
    print("|---|---:|---:|")
    for name, (wall, cpu) in own.items():
        print(f"| {name} | {1e6 * wall / n:.2f} | {1e6 * cpu / n:.2f} |")
    print(
        f"\nThe host's own cost: {1e6 * (own['asyncio host'][0] - own['plain loop'][0]) / n:.2f} "
        f"µs per task ({1e6 * (own['asyncio host'][1] - own['plain loop'][1]) / n:.2f} µs of CPU)."
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
    single = m / threads["1 thread, Distributor"][0]
    for name, (wall, _) in threads.items():
        print(f"| {name} | {m / wall:,.0f} | {m / wall / single:.2f} |")


if __name__ == "__main__":
    main()
