"""The cost of one assignment through the Distributor, with many tasks queued.

Steady state at 1,000 workers of one slot each, all busy, with N tasks
queued behind them: one cycle completes the oldest lease, dispatches (one
assignment: the freed slot), and submits a new task, so N stays put. Per
cycle we record the time of the whole submit -> dispatch -> complete round.

Variants:
- ``plain``: every task can run on every worker;
- ``half unplaceable``: half the queued tasks need a skill no worker has;
  they are parked the first time dispatch passes them and never looked at
  again, so the cost must not grow with them.

Memory: bytes the Distributor holds per queued task beyond the Task
objects (tracemalloc, after a fill).

With every placement policy on (routes with a fallback step, escalation, a
reservation for urgent work, backfill, gangs, preemption advice) against the
bare Distributor on the same task stream: ``bench_cycle_with_every_policy``
here, and ``benchmarks/compare_policies.py`` for the same-run ratio.

Smoke sizes under plain pytest; ``TASKDIST_BENCH_FULL=1`` for the full
ones. Run as a script (``python benchmarks/bench_distributor.py``) for the
Markdown tables recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections import deque

import pytest
from compare_policies import SLOTS
from compare_policies import Steady as PolicySteady
from sizing import sizes

from taskdist import CapacityTracker, Distributor, ManualClock, PriorityQueue, Task, Worker

WORKERS = 1_000
QUEUED = sizes(full=[1_000, 10_000, 100_000], smoke=[1_000])
CYCLES = sizes(full=[20_000], smoke=[500])[0]


class Steady:
    """A distributor with every worker busy and ``queued`` tasks waiting behind them."""

    def __init__(self, queued: int, *, unplaceable: float = 0.0) -> None:
        self.clock = ManualClock()
        tracker = CapacityTracker(self.clock, health=None, ejection=None)
        self.d = Distributor(
            self.clock,
            queue=PriorityQueue(self.clock),
            tracker=tracker,
            lease=None,
            dedup_window=0.0,
        )
        for i in range(WORKERS):
            self.d.add_worker(Worker(i, capacity=1))
        self.unplaceable = unplaceable
        self.next = 0
        self.running: deque[object] = deque()
        for _ in range(WORKERS):
            self.submit(placeable=True)
        self.running.extend(a.task.id for a in self.d.dispatch())
        for _ in range(queued):
            self.submit()
        # The first pass parks the unplaceable ones: the cost of that is paid once.
        self.cycle()

    def submit(self, placeable: bool | None = None) -> None:
        self.d.submit(self.task(placeable))

    def task(self, placeable: bool | None = True) -> Task:
        """The next task; by default a placeable one, which keeps the steady state: the
        queued tasks that no worker can run stay parked behind, as many as at the start."""
        self.next += 1
        if placeable is None:
            placeable = (self.next * 0.618034) % 1.0 >= self.unplaceable
        return Task(self.next, requires=set() if placeable else {"quantum"})

    def cycle(self, newcomer: Task | None = None) -> None:
        """Complete the oldest lease, dispatch, submit ``newcomer`` (or a new task)."""
        self.d.complete(self.running.popleft())
        for assignment in self.d.dispatch():
            self.running.append(assignment.task.id)
        self.d.submit(self.task() if newcomer is None else newcomer)


def cycle_times(queued: int, unplaceable: float, cycles: int) -> list[float]:
    steady = Steady(queued, unplaceable=unplaceable)
    times = []
    # What setup built is long-lived: move it out of the collector's reach, as a
    # long-running host does after start-up (gc.freeze), so that a full collection
    # does not walk 100,000 queued tasks. The collector still runs during the cycles.
    gc.collect()
    gc.freeze()
    clock = time.perf_counter
    try:
        for _ in range(cycles):
            # The host builds its Task before it submits: what is timed is the
            # Distributor's share, submit -> dispatch -> complete.
            newcomer = steady.task()
            start = clock()
            steady.cycle(newcomer)
            times.append(clock() - start)
    finally:
        gc.unfreeze()
    times.sort()
    return times


def bytes_per_queued_task(queued: int) -> float:
    """What the distributor holds per queued task, beyond the Task objects."""
    tasks = [Task(i) for i in range(queued)]
    clock = ManualClock()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    d = Distributor(clock, lease=None, dedup_window=0.0)
    for task in tasks:
        d.submit(task)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / queued


@pytest.mark.parametrize("queued", QUEUED)
@pytest.mark.parametrize("unplaceable", [0.0, 0.5], ids=["plain", "half-unplaceable"])
def bench_assignment_cycle(benchmark, queued: int, unplaceable: float) -> None:  # type: ignore[no-untyped-def]
    steady = Steady(queued, unplaceable=unplaceable)
    benchmark.group = f"distributor cycle, {WORKERS} workers"
    benchmark(steady.cycle)
    assert len(steady.running) == WORKERS  # every cycle made exactly one assignment


@pytest.mark.parametrize("with_policies", [False, True], ids=["bare", "every-policy"])
def bench_cycle_with_every_policy(benchmark, with_policies: bool) -> None:  # type: ignore[no-untyped-def]
    steady = PolicySteady(QUEUED[-1], with_policies=with_policies)
    benchmark.group = f"distributor cycle, {WORKERS} workers x {SLOTS} slots, policies"
    benchmark(steady.cycle)
    # The reservation keeps a tenth of the slots for urgent work; the rest stay busy.
    busy = len(steady.d.leases())
    assert busy >= WORKERS * SLOTS * (0.9 if with_policies else 1.0) - 2


def bench_memory_per_queued_task() -> None:
    assert bytes_per_queued_task(QUEUED[0]) < 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=CYCLES)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per row; the one with the lowest p99 is shown (the least disturbed "
        "by the rest of the machine: the code's own tail is in every run)",
    )
    args = parser.parse_args()
    queued_sizes = [1_000, 10_000, 100_000]
    print(
        f"| queued | variant | p50 µs | p99 µs | p99 of each run | "
        f"({WORKERS} workers, {args.cycles} cycles) |"
    )
    print("|---:|---|---:|---:|---|---|")
    results = {}
    for unplaceable, name in ((0.0, "plain"), (0.5, "half unplaceable")):
        for queued in queued_sizes:
            runs = []
            for _ in range(args.repeat):
                times = cycle_times(queued, unplaceable, args.cycles)
                p50 = times[len(times) // 2] * 1e6
                p99 = times[int(len(times) * 0.99)] * 1e6
                runs.append((p99, p50))
            p99, p50 = min(runs)
            results[(name, queued)] = p50
            each = ", ".join(f"{run[0]:.1f}" for run in runs)
            print(f"| {queued:,} | {name} | {p50:.1f} | {p99:.1f} | {each} | |")
    for name in ("plain", "half unplaceable"):
        growth = results[(name, 100_000)] / results[(name, 1_000)]
        print(f"\n{name}: p50 grows {growth:.2f}x from 1,000 to 100,000 queued")
    print(f"\nbytes per queued task beyond the Task: {bytes_per_queued_task(100_000):.0f}")


if __name__ == "__main__":
    main()
