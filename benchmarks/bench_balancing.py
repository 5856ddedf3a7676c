"""Balancer select() at 10 / 100 / 1000 workers, and ConsistentHash next to uhashring.

- ``bench_select``: every built-in strategy choosing among n candidates with
  uneven loads (and ``CapacityTracker.candidates`` itself, which builds the
  list a distributor hands to ``select``), per call;
- ``bench_ring_lookup``: ``ConsistentHash.lookup`` (the default 640 points
  per node, and 160 as uhashring) against ``uhashring.HashRing.get_node``
  over the same keys and 5 nodes, with the max/mean keys per node in
  ``extra_info``;
- ``bench_ring_place``: ``ConsistentHash.select`` (over the 5 workers'
  candidate list) and ``ConsistentHash.choose`` (from the tracker), idle or
  with tasks in flight, on the same keys as ``get_node``;
- ``bench_ring_choose_growth``: ``ConsistentHash.choose`` at 10 .. 10 000
  workers, against ``select(tracker.candidates(task))``;
- ``bench_bounded_placement``: ``ConsistentHash(load_factor=1.1).select`` +
  ``assign`` for the same keys held at once: max/mean <= 1.10 by construction.

Memory per worker and the cost of a join or a leave are in ``compare_ring.py``.

Smoke sizes by default; ``TASKDIST_BENCH_FULL=1`` for the full ones. Run as a
script (``python benchmarks/bench_balancing.py [repeat]``) to print the Markdown
tables recorded in docs/performance.md; ``python benchmarks/bench_balancing.py
15 ring`` prints only ConsistentHash's placement and growth tables (CPU time:
what the process spent, not the time it waited for a core).
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import cache

import pytest
from sizing import sizes
from timing import best_of
from uhashring import HashRing

from taskdist import (
    Affinity,
    Balancer,
    CapacityBased,
    CapacityTracker,
    ConsistentHash,
    LeastConnections,
    ManualClock,
    MultiFactor,
    PerformanceBased,
    PowerOfTwoChoices,
    RandomBalancer,
    RoundRobin,
    Task,
    WeightedRoundRobin,
    Worker,
    WorkerState,
    ZoneAware,
)

WORKERS = sizes(full=[10, 100, 1_000], smoke=[10, 100])
KEYS = sizes(full=[100_000], smoke=[2_000])[0]
NODES = [f"node-{i}" for i in range(5)]
CALLS = 200  # select() calls per round

STRATEGIES: dict[str, Callable[[], Balancer]] = {
    "RoundRobin": RoundRobin,
    "WeightedRoundRobin": WeightedRoundRobin,
    "LeastConnections": LeastConnections,
    "PowerOfTwoChoices": lambda: PowerOfTwoChoices(random.Random(1)),
    "RandomBalancer": lambda: RandomBalancer(random.Random(1)),
    "ConsistentHash": ConsistentHash,
    "CapacityBased": CapacityBased,
    "PerformanceBased": PerformanceBased,
    "MultiFactor": MultiFactor,
    "Affinity": Affinity,
    "ZoneAware": ZoneAware,
}


@cache
def loaded_tracker(n: int) -> CapacityTracker:
    """n workers of 100 slots, uneven weights, zones, latencies and loads (seeded)."""
    rng = random.Random(n)
    tracker = CapacityTracker(ManualClock(), health=None, ejection=None)
    for i in range(n):
        tracker.add_worker(
            Worker(i, capacity=100, weight=rng.choice([1.0, 2.0]), zone=rng.choice(["eu", "us"]))
        )
        probe = Task(("probe", i))
        tracker.assign(probe, i)
        tracker.release(probe, i, duration=rng.uniform(0.5, 5.0))
        for j in range(rng.randrange(90)):
            tracker.assign(Task((i, j)), i)
    return tracker


@cache
def tasks(count: int) -> list[Task]:
    return [Task(i, key=f"user-{i % 97}", zone="eu") for i in range(count)]


def run_select(balancer: Balancer, pool: list[WorkerState], batch: list[Task]) -> int:
    select = balancer.select
    chosen = 0
    for task in batch:
        chosen += select(task, pool) is not None
    return chosen


def run_candidates(tracker: CapacityTracker, batch: list[Task]) -> int:
    candidates = tracker.candidates
    return sum(len(candidates(task)) > 0 for task in batch)


@pytest.mark.parametrize("n", WORKERS)
@pytest.mark.parametrize("strategy", [*STRATEGIES, "tracker.candidates"])
def bench_select(benchmark, strategy: str, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"select n={n} workers ({CALLS} calls)"
    tracker = loaded_tracker(n)
    batch = tasks(CALLS)
    if strategy == "tracker.candidates":
        placed = benchmark(run_candidates, tracker, batch)
    else:
        pool = tracker.candidates(batch[0])
        assert len(pool) == n
        placed = benchmark(run_select, STRATEGIES[strategy](), pool, batch)
    assert placed == CALLS


# -- ConsistentHash against uhashring ---------------------------------------------------


def taskdist_ring(nodes: list[str], vnodes: int | None = None) -> ConsistentHash:
    """A plain ring (no load bound) over ``nodes``; ``vnodes=None``: the default points."""
    ring = ConsistentHash(load_factor=None) if vnodes is None else ConsistentHash(vnodes, None)
    for node in nodes:
        ring.add(node)
    return ring


def run_lookups(lookup: Callable[[str], object], keys: list[str]) -> Counter[object]:
    return Counter(map(lookup, keys))


# name -> (node names -> lookup function); the default ring has 640 points per node,
# what a plain ring needs for max/mean <= 1.10 at 5 nodes; uhashring has 160.
RINGS: dict[str, Callable[[list[str]], Callable[[str], object]]] = {
    "taskdist ConsistentHash().lookup (640 points)": lambda nodes: taskdist_ring(nodes).lookup,
    "taskdist ConsistentHash(vnodes=160).lookup": lambda nodes: taskdist_ring(nodes, 160).lookup,
    "uhashring get_node (160 points)": lambda nodes: HashRing(nodes=nodes).get_node,
}


def max_over_mean(counts: Counter[object]) -> float:
    return max(counts.values()) / (sum(counts.values()) / len(NODES))


@pytest.mark.parametrize("ring", list(RINGS))
def bench_ring_lookup(benchmark, ring: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"ring lookup, {KEYS} keys / {len(NODES)} nodes"
    keys = [f"user-{i}" for i in range(KEYS)]
    counts = benchmark(run_lookups, RINGS[ring](NODES), keys)
    assert sum(counts.values()) == KEYS and set(counts) == set(NODES)
    benchmark.extra_info["max/mean"] = round(max_over_mean(counts), 4)


@cache
def ring_pool(workers: int, busy: bool) -> tuple[ConsistentHash, CapacityTracker]:
    """The default bounded ring (640 points, 1.25) over ``workers`` workers of 10 slots.

    Busy: a seeded 0-5 tasks in flight on each, so the preferred worker is
    seldom idle and the bound is worked out on every call. Built once (the
    ring of 10 000 workers takes seconds to hash).
    """
    rng = random.Random(workers)
    tracker = CapacityTracker(ManualClock(), health=None, ejection=None)
    names = NODES if workers == len(NODES) else [f"node-{i}" for i in range(workers)]
    for name in names:
        tracker.add_worker(Worker(name, capacity=10))
        for j in range(rng.randrange(6) if busy else 0):
            tracker.assign(Task((name, j)), name)
    ring = ConsistentHash()
    ring.choose(Task("warm-up"), tracker)  # the ring learns the workers
    return ring, tracker


@cache
def keyed_tasks(count: int) -> list[Task]:
    return [Task(i, key=f"user-{i}") for i in range(count)]


def run_selects(ring: ConsistentHash, pool: list[WorkerState], batch: list[Task]) -> int:
    select = ring.select
    return sum(select(task, pool) is not None for task in batch)


def run_get_node(ring: HashRing, keys: list[str]) -> int:
    get_node = ring.get_node
    return sum(get_node(key) is not None for key in keys)


def run_chooses(ring: ConsistentHash, tracker: CapacityTracker, batch: list[Task]) -> int:
    choose = ring.choose
    return sum(choose(task, tracker) is not None for task in batch)


def run_listed_selects(ring: ConsistentHash, tracker: CapacityTracker, batch: list[Task]) -> int:
    select, candidates = ring.select, tracker.candidates
    return sum(select(task, candidates(task)) is not None for task in batch)


@pytest.mark.parametrize("busy", [False, True])
@pytest.mark.parametrize("how", ["select", "choose"])
def bench_ring_place(benchmark, how: str, busy: bool) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"ring placement, {KEYS} keys / {len(NODES)} nodes"
    ring, tracker = ring_pool(len(NODES), busy)
    batch = keyed_tasks(KEYS)
    if how == "select":
        placed = benchmark(run_selects, ring, tracker.candidates(Task("probe")), batch)
    else:
        placed = benchmark(run_chooses, ring, tracker, batch)
    assert placed == KEYS


GROWTH = sizes(full=[10, 100, 1_000, 10_000], smoke=[10, 100])


@pytest.mark.parametrize("n", GROWTH)
def bench_ring_choose_growth(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"ConsistentHash.choose, n={n} busy workers ({CALLS} calls)"
    ring, tracker = ring_pool(n, True)
    assert benchmark(run_chooses, ring, tracker, keyed_tasks(CALLS)) == CALLS


def run_bounded(load_factor: float, keys: list[str]) -> list[int]:
    tracker = CapacityTracker(ManualClock(), health=None, ejection=None)
    for node in NODES:
        tracker.add_worker(Worker(node, capacity=len(keys)))
    ring = ConsistentHash(load_factor=load_factor)
    pool = tracker.candidates(Task("probe"))  # live views: stays valid as loads grow
    select, assign = ring.select, tracker.assign
    for i, key in enumerate(keys):
        task = Task(i, key=key)
        assign(task, select(task, pool).id)
    return [worker.in_flight for worker in pool]


def bench_bounded_placement(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"bounded placement, {KEYS} keys / {len(NODES)} nodes"
    keys = [f"user-{i}" for i in range(KEYS)]
    loads = benchmark.pedantic(run_bounded, args=(1.1, keys), rounds=3, iterations=1)
    assert sum(loads) == KEYS
    ratio = max(loads) / (KEYS / len(NODES))
    assert ratio <= 1.1 + len(NODES) / KEYS  # ceil() rounding
    benchmark.extra_info["max/mean"] = round(ratio, 4)


# -- as a script: the tables for docs/performance.md ------------------------------------


def wall_seconds(run: Callable[[], object]) -> float:
    """The wall-clock time of one ``run()`` (garbage collected before)."""
    return best_of(1, run)


def cpu_seconds(run: Callable[[], object]) -> float:
    """The CPU time of one ``run()`` in this process (garbage collected before): time
    spent waiting for a core on a busy machine is not counted, cache misses are."""
    gc.collect()
    start = time.process_time()
    run()
    return time.process_time() - start


def interleaved_best(
    runs: dict[str, Callable[[], object]],
    repeat: int,
    timer: Callable[[Callable[[], object]], float] = wall_seconds,
) -> dict[str, float]:
    """The best of ``repeat`` runs of each, in seconds, the contenders taking turns so
    that noise on a shared machine hits them alike (a slow spell costs each one run)."""
    return {name: min(times) for name, times in interleaved_times(runs, repeat, timer).items()}


def interleaved_times(
    runs: dict[str, Callable[[], object]],
    repeat: int,
    timer: Callable[[Callable[[], object]], float],
) -> dict[str, list[float]]:
    """``repeat`` timings of each, in seconds, round after round (the contenders take turns)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            times[name].append(timer(run))
    return times


def main(repeat: int = 7, ring_only: bool = False) -> None:
    """Print the tables; ``ring_only``: only ConsistentHash's placement and growth."""
    if ring_only:
        print_ring_placement(repeat, [f"user-{i}" for i in range(100_000)])
        return
    workers = [10, 100, 1_000]
    batch = tasks(CALLS)
    print(f"| strategy | {' | '.join(f'{n} workers (µs)' for n in workers)} | 1000 / 10 |")
    print(f"|---|{'---:|' * len(workers)}---:|")
    per_call: dict[str, list[float]] = {name: [] for name in [*STRATEGIES, "tracker.candidates"]}
    for n in workers:
        tracker = loaded_tracker(n)
        pool = tracker.candidates(batch[0])
        balancers = {name: make() for name, make in STRATEGIES.items()}
        runs: dict[str, Callable[[], object]] = {
            name: lambda b=balancer, p=pool: run_select(b, p, batch)
            for name, balancer in balancers.items()
        }
        runs["tracker.candidates"] = lambda t=tracker: run_candidates(t, batch)
        for name, seconds in interleaved_best(runs, repeat).items():
            per_call[name].append(seconds / CALLS * 1e6)
    for name, cells in per_call.items():
        shown = " | ".join(f"{us:.2f}" for us in cells)
        print(f"| {name} | {shown} | {cells[-1] / cells[0]:.0f}x |")
    keys = [f"user-{i}" for i in range(100_000)]
    print("\n| 100k keys / 5 nodes | µs per key | ratio to uhashring | max/mean |")
    print("|---|---:|---:|---:|")
    timed = {}
    for name, make in RINGS.items():
        lookup = make(NODES)
        timed[name] = best_of(repeat, lambda f=lookup: run_lookups(f, keys)) / len(keys) * 1e6
    base = timed["uhashring get_node (160 points)"]
    for name, make in RINGS.items():
        spread = max_over_mean(run_lookups(make(NODES), keys))
        print(f"| {name} | {timed[name]:.3f} | {timed[name] / base:.2f} | {spread:.3f} |")
    bounded = best_of(3, lambda: run_bounded(1.1, keys)) / len(keys) * 1e6
    spread = max(run_bounded(1.1, keys)) / (len(keys) / len(NODES))
    print(f"| taskdist select+assign, load_factor=1.1 | {bounded:.3f} | - | {spread:.3f} |")
    print_ring_placement(repeat, keys)
    print("\n| plain ring, 30 sets of 5 node names | mean max/mean | worst | sets <= 1.10 |")
    print("|---|---:|---:|---:|")
    for name, make in RINGS.items():
        spreads = [
            max_over_mean(run_lookups(make([f"node-{s}-{i}" for i in range(5)]), keys))
            for s in range(30)
        ]
        fits = sum(spread <= 1.10 for spread in spreads)
        print(f"| {name} | {sum(spreads) / 30:.3f} | {max(spreads):.3f} | {fits} / 30 |")


def print_ring_placement(repeat: int, keys: list[str]) -> None:
    """select / choose on 5 nodes next to get_node (same keys, all interleaved), then
    choose as the pool grows."""
    batch = keyed_tasks(len(keys))
    uhashring = HashRing(nodes=NODES)
    runs: dict[str, Callable[[], object]] = {
        "uhashring get_node (160 points)": lambda: run_get_node(uhashring, keys),
    }
    for busy in (False, True):
        ring, tracker = ring_pool(len(NODES), busy)
        pool = tracker.candidates(Task("probe"))
        state = "busy" if busy else "idle"
        runs[f"taskdist select, {state} workers"] = lambda r=ring, p=pool: run_selects(r, p, batch)
        runs[f"taskdist choose, {state} workers"] = lambda r=ring, t=tracker: run_chooses(
            r, t, batch
        )
    best = interleaved_best(runs, repeat, cpu_seconds)
    base = best["uhashring get_node (160 points)"]
    print("\n| 100k keys / 5 nodes (bounded 1.25) | µs per key | ratio to get_node |")
    print("|---|---:|---:|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds / len(keys) * 1e6:.3f} | {seconds / base:.2f} |")
    print_choose_growth(max(repeat, 15))


def print_choose_growth(repeat: int) -> None:
    """choose at 10 .. 10 000 busy workers, the sizes taking turns round after round
    (CPU time, best of ``repeat`` rounds of 2 000 calls), with the growth from 10 to
    10 000 workers per round; then select over the listed candidates."""
    sizes_ = [10, 100, 1_000, 10_000]
    calls = keyed_tasks(2_000)
    pools = {n: ring_pool(n, True) for n in sizes_}
    runs: dict[str, Callable[[], object]] = {
        str(n): lambda r=ring, t=tracker: run_chooses(r, t, calls)
        for n, (ring, tracker) in pools.items()
    }
    times = interleaved_times(runs, repeat, cpu_seconds)
    listed = [
        best_of(3, lambda r=ring, t=tracker: run_listed_selects(r, t, calls[:200])) / 200 * 1e6
        for ring, tracker in pools.values()
    ]
    print(f"\n| µs per call, busy workers | {' | '.join(f'{n} workers' for n in sizes_)} |")
    print(f"|---|{'---:|' * len(sizes_)}")
    chosen = [min(times[str(n)]) / len(calls) * 1e6 for n in sizes_]
    print(f"| choose(task, tracker) | {' | '.join(f'{us:.2f}' for us in chosen)} |")
    print(f"| select(task, candidates(task)) | {' | '.join(f'{us:.1f}' for us in listed)} |")
    rounds = sorted(large / small for small, large in zip(times["10"], times["10000"], strict=True))
    print(
        f"\nchoose, 10 000 workers / 10: {chosen[-1] / chosen[0]:.2f}x best against best; "
        f"per round {rounds[0]:.2f}x to {rounds[-1]:.2f}x, median "
        f"{statistics.median(rounds):.2f}x ({repeat} rounds)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7, sys.argv[2:] == ["ring"])
