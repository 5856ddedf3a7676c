"""Time two checkouts of taskdist side by side: the placement cycle and select().

    git archive <old commit> | tar -x -C /tmp/before      # an older tree, anywhere
    python benchmarks/compare_revisions.py /tmp/before . [--rounds 13]

Each tree runs in a process of its own (its ``taskdist`` and its
``benchmarks/`` first on the path); the two take turns, one round of each
case at a time, and each keeps its best, so noise on a shared machine hits
them alike. Cases are the placement cycle of ``bench_dispatch.py`` (``cycle``),
``CapacityTracker.candidates`` and ``select()`` of ``bench_balancing.py``
(``candidates``, ``select``), and the cycle while every worker ramps up in
slow start (``ramp``, written here so that it runs on trees from before
``bench_dispatch`` could do it). Two more cases time the whole Distributor,
written here too so that any tree runs them: ``distributor`` is its bare
task cycle on n one-slot workers under the simulator's default parts (a
``PriorityQueue``, ``LeastConnections``, the default tracker and retry
policy; no lease), one prebuilt task at a time (the same ones each run):
``submit``, ``next_wakeup``, ``dispatch``, the clock a millisecond on,
``complete``, ``next_wakeup``;
``sim`` is the simulator's M/M/n at 80 % (``scenarios.mm_c``), per customer,
the task building included. ``--cpu`` times by the process's CPU time
instead of the wall clock (steadier on a loaded machine). Prints a Markdown
table of µs per operation and the ratio of the second tree to the first.

    python benchmarks/compare_revisions.py /tmp/before . --cpu --rounds 9 \
        --cases distributor:-:10 sim:-:10
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable

CASES = [
    "cycle:LeastConnections.choose:10",
    "cycle:LeastConnections.choose:1000",
    "cycle:LeastConnections.choose:10000",
    "cycle:LeastConnections.select(candidates):1000",
    "cycle:PowerOfTwoChoices.choose:10",
    "cycle:PowerOfTwoChoices.choose:10000",
    "cycle:PowerOfTwoChoices.select(candidates):1000",
    "candidates:-:10",
    "candidates:-:1000",
    *(
        f"select:{name}:1000"
        for name in (
            "RoundRobin",
            "WeightedRoundRobin",
            "LeastConnections",
            "PowerOfTwoChoices",
            "RandomBalancer",
            "ConsistentHash",
            "CapacityBased",
            "PerformanceBased",
            "MultiFactor",
            "Affinity",
            "ZoneAware",
        )
    ),
    "select:ConsistentHash:10",
    "ramp:-:1000",
    "distributor:-:10",
    "sim:-:10",
]

# Tasks per run of the ``distributor`` and ``sim`` cases.
WHOLE = 20_000


def ramp_cycles(n: int, cycles: int) -> Callable[[], object]:
    """``bench_dispatch``'s cycle on n workers all in slow start (a 1 h window), the
    clock moving a millisecond a cycle."""
    from taskdist import CapacityTracker, LeastConnections, ManualClock, SlowStart, Task, Worker

    rng = random.Random(n)
    clock = ManualClock()
    tracker = CapacityTracker(clock, health=None, ejection=None, slow_start=SlowStart(3_600.0))
    for i in range(n):
        tracker.add_worker(Worker(i, capacity=10, weight=rng.choice([1.0, 2.0])))
    running: deque[tuple[Task, object]] = deque()
    made = iter(range(10**12))
    for _ in range(n * 5):
        worker = rng.randrange(n)
        if tracker.worker(worker).in_flight < 10:
            task = Task(next(made))
            tracker.assign(task, worker)
            running.append((task, worker))
    balancer = LeastConnections()

    def run() -> None:
        for _ in range(cycles):
            clock.advance(0.001)
            task = Task(next(made))
            chosen = balancer.choose(task, tracker)
            if chosen is not None:
                tracker.assign(task, chosen.id)
                running.append((task, chosen.id))
            old, worker = running.popleft()
            tracker.release(old, worker)

    run()  # warm up: the load index is built
    return run


def distributor_cycles(n: int, cycles: int) -> Callable[[], object]:
    """The Distributor's bare task cycle on n one-slot workers, ``cycles`` prebuilt tasks
    a run (see the module docs)."""
    from taskdist import Distributor, ManualClock, Task
    from taskdist.sim import scenarios
    from taskdist.sim.policies import Policy

    clock = ManualClock()
    rng = random.Random(n)
    scenario = scenarios.mm_c(0.8 * n, 1.0, n)
    parts = Policy().build(scenario, clock, rng)
    d = Distributor(
        clock,
        queue=parts.queue,
        tracker=parts.tracker,
        balancer=parts.balancer,
        retry=parts.retry,
        lease=None,
        dedup_window=0.0,
        rng=rng,
    )
    for worker in scenario.workers:
        d.add_worker(worker)
    # dedup_window=0: a finished id is forgotten, so every run submits the same tasks.
    tasks = [Task(i) for i in range(cycles)]

    def run() -> None:
        submit, dispatch, complete, wakeup = d.submit, d.dispatch, d.complete, d.next_wakeup
        advance = clock.advance
        for task in tasks:
            submit(task)
            wakeup()
            for assignment in dispatch():
                advance(0.001)
                complete(assignment.task.id)
            wakeup()

    run()  # warm up
    return run


def sim_customers(n: int, customers: int) -> Callable[[], object]:
    """The simulator's M/M/n at 80 % for ``customers`` customers (see the module docs)."""
    from taskdist.sim import Simulation, scenarios

    scenario = scenarios.mm_c(0.8 * n, 1.0, n, tasks=customers)
    return lambda: Simulation(scenario, seed=1).run()


def serve(timer: Callable[[], float]) -> None:
    """Answer case names on stdin with µs per operation of one run (timed by ``timer``),
    on stdout."""
    from bench_balancing import CALLS, STRATEGIES, loaded_tracker, run_candidates, run_select, tasks
    from bench_dispatch import CYCLES, PICKERS, Pool

    made: dict[str, tuple[Callable[[], object], int]] = {}
    for line in sys.stdin:
        case = line.strip()
        if case not in made:
            kind, name, size = case.split(":")
            n = int(size)
            if kind == "cycle":
                make, via = PICKERS[name]
                pool = Pool(n)
                pick = pool.picker(make(), via)
                pool.cycles(pick, CYCLES)
                made[case] = (lambda p=pool, f=pick: p.cycles(f, CYCLES), CYCLES)
            elif kind == "ramp":
                made[case] = (ramp_cycles(n, CYCLES), CYCLES)
            elif kind == "distributor":
                made[case] = (distributor_cycles(n, WHOLE), WHOLE)
            elif kind == "sim":
                made[case] = (sim_customers(n, WHOLE), WHOLE)
            else:
                tracker = loaded_tracker(n)
                batch = tasks(CALLS)
                if kind == "candidates":
                    made[case] = (lambda t=tracker, b=batch: run_candidates(t, b), CALLS)
                else:
                    pool_ = tracker.candidates(batch[0])
                    balancer = STRATEGIES[name]()
                    made[case] = (lambda s=balancer, p=pool_, b=batch: run_select(s, p, b), CALLS)
        run, unit = made[case]
        gc.collect()
        start = timer()
        run()
        print((timer() - start) / unit * 1e6, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("first", help="the tree timed first (an older checkout)")
    parser.add_argument("second", help="the tree compared with it")
    parser.add_argument("--rounds", type=int, default=13)
    parser.add_argument("--cases", nargs="+", default=CASES)
    parser.add_argument("--cpu", action="store_true", help="time by CPU time, not wall time")
    args = parser.parse_args()
    trees = [os.path.abspath(args.first), os.path.abspath(args.second)]
    workers = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve-cpu" if args.cpu else "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tree,
            env={**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree}/benchmarks"},
        )
        for tree in trees
    ]
    best = {(case, i): float("inf") for case in args.cases for i in range(2)}
    for _ in range(args.rounds):
        for case in args.cases:
            for i, worker in enumerate(workers):
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write(case + "\n")
                worker.stdin.flush()
                best[case, i] = min(best[case, i], float(worker.stdout.readline()))
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.close()
        worker.wait()
    print(f"| µs per operation | {args.first} | {args.second} | second / first |")
    print("|---|---:|---:|---:|")
    for case in args.cases:
        first, second = best[case, 0], best[case, 1]
        print(f"| {case} | {first:.2f} | {second:.2f} | {second / first:.2f} |")


if __name__ == "__main__":
    if sys.argv[1:] in (["--serve"], ["--serve-cpu"]):
        sys.path.pop(0)  # this file's folder: the tree's own benchmarks come from PYTHONPATH
        serve(time.process_time if sys.argv[1] == "--serve-cpu" else time.perf_counter)
    else:
        main()
