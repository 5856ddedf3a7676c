"""Print the FairScheduler's cost per dispatch side by side, configuration by configuration.

    PYTHONPATH=. python benchmarks/compare_fair.py [--tenants 10 1000 100000] [--rounds 9]
        [--cases FairScheduler ...] [--cycles-only]

A steady cycle on a backlogged scheduler: ``pop()``, ``release()`` the task,
``push()`` it back, so every tenant keeps 2 tasks and nothing goes idle. The
cases take turns, one round of each at a time, and each keeps its best round,
so noise on a shared machine hits them alike (CPU time of the process, not
wall time):

- ``FairScheduler``: the default (a ``PriorityQueue`` with aging per tenant);
- ``deadline_aware``: every task has a deadline far enough ahead that none is
  ever urgent: the price of the check on every pop;
- ``inner=DeadlineScheduler``: each tenant's queue a ``DeadlineScheduler``, every
  task with a deadline far ahead;
- ``nested, 4 keys``: each tenant's queue a ``FairScheduler`` over 4 keys;
- ``linear scan``: start-time fair queueing done the obvious way, a FIFO per
  tenant and a scan of every tenant per pop (``bench_fair.LinearScanFair``);
- ``PriorityQueue``: the same tasks in one queue, the floor of no fairness.

Then a batch with deadlines on one server: tenants flood plain work while
some tasks carry deadlines that plain EDF over all of them meets (tight:
built from EDF's own completion times plus a little slack). Each scheduler
takes the whole batch and serves it, the clock advancing by each task's
cost; the table gives µs per task (push, pop, release) and the share of
deadlines met: ``DeadlineScheduler`` (plain EDF), ``FairScheduler`` (fair
order only), and the deadline-aware ones.

Last, what 100 000 tenants seen once leave behind once idle (tracemalloc):
each pushes one task, which is popped and released; then the clock moves
past their rate buckets' refill.

Prints Markdown tables for docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from bench_fair import LinearScanFair

from taskdist import DeadlineScheduler, FairScheduler, ManualClock, PriorityQueue, Quota, Task

BACKLOG = 2


def workload(tenants: int, *, deadline: float | None = None, keys: int = 1) -> list[Task]:
    rng = random.Random(tenants)
    return [
        Task(
            (t, k),
            tenant=t,
            key=k % keys,
            cost=rng.uniform(0.5, 2.0),
            priority=rng.randrange(1, 4),
            deadline=None if deadline is None else rng.uniform(deadline, 2 * deadline),
        )
        for k in range(BACKLOG * keys)
        for t in range(tenants)
    ]


def fair_cycle(fair: FairScheduler, tasks: list[Task], clock: ManualClock) -> Callable[[int], None]:
    for task in tasks:
        fair.push(task)
    pop, release, push = fair.pop, fair.release, fair.push

    def cycle(n: int) -> None:
        for _ in range(n):
            task = pop()
            assert task is not None
            clock.advance(0.001)
            release(task)
            push(task)

    return cycle


def plain_fair(tenants: int) -> Callable[[int], None]:
    clock = ManualClock()
    return fair_cycle(FairScheduler(clock), workload(tenants), clock)


def aware(tenants: int, *, due: float) -> Callable[[int], None]:
    clock = ManualClock()
    tasks = workload(tenants, deadline=due)
    return fair_cycle(FairScheduler(clock, deadline_aware=True), tasks, clock)


def edf_tenants(tenants: int) -> Callable[[int], None]:
    clock = ManualClock()
    tasks = workload(tenants, deadline=1e9)
    return fair_cycle(FairScheduler(clock, inner=DeadlineScheduler), tasks, clock)


def nested(tenants: int) -> Callable[[int], None]:
    clock = ManualClock()
    fair = FairScheduler(clock, inner=lambda c, tenant: FairScheduler(c, tenant_of=lambda t: t.key))
    return fair_cycle(fair, workload(tenants, keys=4), clock)


def linear_scan(tenants: int) -> Callable[[int], None]:
    scan = LinearScanFair()
    for task in workload(tenants):
        scan.push(task)

    def cycle(n: int) -> None:
        for _ in range(n):
            task = scan.pop()
            assert task is not None
            scan.push(task)

    return cycle


def priority_queue(tenants: int) -> Callable[[int], None]:
    queue = PriorityQueue(ManualClock())
    for task in workload(tenants):
        queue.push(task)

    def cycle(n: int) -> None:
        for _ in range(n):
            task = queue.pop()
            assert task is not None
            queue.push(task)

    return cycle


CASES: dict[str, Callable[[int], Callable[[int], None]]] = {
    "FairScheduler": plain_fair,
    "deadline_aware": lambda tenants: aware(tenants, due=1e9),
    "inner=DeadlineScheduler": edf_tenants,
    "nested, 4 keys": nested,
    "linear scan": linear_scan,
    "PriorityQueue": priority_queue,
}


def measure(tenants: int, rounds: int, cases: list[str]) -> dict[str, float]:
    ops = 2000 if tenants < 10_000 else 500
    cycles: dict[str, Any] = {}
    for name in cases:
        make = CASES[name]
        if name == "linear scan" and tenants > 10_000:
            continue  # O(tenants) per pop: seconds per round
        if name.startswith("nested") and tenants > 10_000:
            continue  # a scheduler per tenant and a queue per key: gigabytes
        cycles[name] = make(tenants)
    best = dict.fromkeys(cycles, float("inf"))
    for _ in range(rounds):
        for name, cycle in cycles.items():
            gc.collect()
            start = time.process_time()
            cycle(ops)
            best[name] = min(best[name], (time.process_time() - start) / ops * 1e6)
    return best


def deadline_batch(tenants: int, size: int) -> list[Task]:
    """``size`` tasks over ``tenants``, a third with deadlines plain EDF meets on one server."""
    rng = random.Random(size)
    specs = [
        (rng.randrange(tenants), rng.uniform(0.5, 2.0), rng.random() < 0.3) for _ in range(size)
    ]
    deadlined = [i for i, spec in enumerate(specs) if spec[2]]
    rng.shuffle(deadlined)
    deadline_of: dict[int, float] = {}
    end = previous = 0.0
    for i in deadlined:
        end += specs[i][1]
        previous = max(previous, end + rng.uniform(0.0, 0.2 * size))
        deadline_of[i] = previous
    return [
        Task(i, tenant=t, cost=cost, deadline=deadline_of.get(i))
        for i, (t, cost, _) in enumerate(specs)
    ]


BATCH: dict[str, Callable[[ManualClock], Any]] = {
    "DeadlineScheduler (plain EDF)": lambda clock: DeadlineScheduler(clock),
    "FairScheduler": lambda clock: FairScheduler(clock),
    "FairScheduler(deadline_aware=True)": lambda clock: FairScheduler(clock, deadline_aware=True),
    "FairScheduler(deadline_aware=True, inner=DeadlineScheduler)": lambda clock: FairScheduler(
        clock, deadline_aware=True, inner=DeadlineScheduler
    ),
}


def serve_batch(make: Callable[[ManualClock], Any], tasks: list[Task]) -> tuple[float, float]:
    """(µs per task, share of deadlines met) serving ``tasks`` on one server."""
    clock = ManualClock()
    queue = make(clock)
    gc.collect()
    start = time.process_time()
    for task in tasks:
        queue.push(task)
    met = judged = 0
    while (task := queue.pop()) is not None:
        clock.advance(task.cost)
        queue.release(task)
        if task.deadline is not None:
            judged += 1
            met += clock.now() <= task.deadline
    elapsed = time.process_time() - start
    return elapsed / len(tasks) * 1e6, met / judged if judged else 1.0


def idle_tenants_held(tenants: int) -> tuple[float, float]:
    """(MB while they wait, MB held once they are idle) for ``tenants`` seen once."""
    clock = ManualClock()
    tasks = [Task(i, tenant=f"user-{i}") for i in range(tenants)]
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fair = FairScheduler(clock, default_plan="free", plans={"free": Quota(rate=5, per=10.0)})
        for task in tasks:
            fair.push(task)
        waiting = tracemalloc.get_traced_memory()[0] - before
        while (task := fair.pop()) is not None:
            fair.release(task)
        clock.advance(10.0)
        fair.next_wakeup()
        gc.collect()
        idle = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    return waiting / 1e6, idle / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, nargs="+", default=[10, 1_000, 100_000])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--cycles-only", action="store_true", help="skip the batch and memory")
    args = parser.parse_args()
    print("| µs per cycle | " + " | ".join(f"{n:,} tenants" for n in args.tenants) + " |")
    print("|---|" + "---:|" * len(args.tenants))
    results = [measure(n, args.rounds, args.cases) for n in args.tenants]
    for name in args.cases:
        cells = [f"{r[name]:.2f}" if name in r else "-" for r in results]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.cycles_only:
        return
    print()
    print("| a batch of 20 000 tasks over 100 tenants | µs per task | deadlines met |")
    print("|---|---:|---:|")
    tasks = deadline_batch(100, 20_000)
    for name, make in BATCH.items():
        best = min(serve_batch(make, tasks) for _ in range(max(1, args.rounds // 3)))
        print(f"| {name} | {best[0]:.2f} | {100 * best[1]:.1f} % |")
    print()
    waiting, idle = idle_tenants_held(100_000)
    print(f"100 000 tenants seen once: {waiting:.1f} MB while queued, {idle:.2f} MB once idle")


if __name__ == "__main__":
    main()
