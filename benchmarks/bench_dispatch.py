"""A placement cycle at 10 .. 10 000 workers: choose(task, tracker) against listing the candidates.

One cycle is what a distributor does per task in steady state: pick a
worker, ``assign`` the task, and ``release`` the oldest task in flight (so
the pool stays about half full). Pickers:

- ``LeastConnections.choose``: the tracker's load index (O(log n));
- ``PowerOfTwoChoices.choose``: two random draws from the tracker (O(1)
  expected while most workers have room);
- ``ConsistentHash.choose``: the key's owner from the ring, checked by the
  tracker, with a walk past workers that cannot take the task or are at
  their cap (O(log V) while the owner can);
- ``... select(candidates)``: ``tracker.candidates(task)`` then ``select``,
  the O(n) way every strategy can be driven.

``fleet_restart`` runs the same cycle while every worker ramps up in slow
start (a fleet-wide restart), the clock moving on between cycles.

``rare_skill`` runs it with every task needing a skill that one worker in a
hundred has (those half full, the rest idle): a walk of the load index
from the front would pass every idle worker; the tracker keeps an index of
the workers with that skill instead.

Both ways give LeastConnections the same answers, so the loads evolve the
same. Smoke sizes by default; ``TASKDIST_BENCH_FULL=1`` for the full ones.
Run as a script (``python benchmarks/bench_dispatch.py``) for the Markdown
table recorded in docs/performance.md.
"""

from __future__ import annotations

import random
import sys
from collections import deque
from collections.abc import Callable

import pytest
from bench_balancing import interleaved_best
from sizing import sizes

from taskdist import (
    Balancer,
    CapacityTracker,
    ConsistentHash,
    LeastConnections,
    ManualClock,
    PowerOfTwoChoices,
    SlowStart,
    Task,
    Worker,
    WorkerState,
)

WORKERS = sizes(full=[10, 100, 1_000, 10_000], smoke=[10, 100])
CYCLES = 500  # placements per round
CAPACITY = 10

Picker = Callable[[Task], "WorkerState | None"]


class Pool:
    """A tracker of n workers, half full, and the tasks in flight oldest first."""

    def __init__(self, n: int, *, ramp: float | None = None, rare_skill: bool = False) -> None:
        rng = random.Random(n)
        self.clock = ManualClock()
        slow_start = None if ramp is None else SlowStart(window=ramp)
        self.tracker = CapacityTracker(
            self.clock, health=None, ejection=None, slow_start=slow_start
        )
        # With rare_skill, one worker in a hundred (at least one) has the skill the
        # tasks need; only those take tasks, the others stay idle at the front.
        skilled = [i for i in range(n) if i % 100 == 99 or i == n - 1] if rare_skill else []
        self.requires = {"gpu"} if rare_skill else set()
        for i in range(n):
            skills = self.requires if i in skilled else set()
            self.tracker.add_worker(
                Worker(i, capacity=CAPACITY, weight=rng.choice([1.0, 2.0]), skills=skills)
            )
        self.running: deque[tuple[Task, object]] = deque()
        self.next_task = 0
        takers = skilled or range(n)
        for _ in range(len(takers) * CAPACITY // 2):
            worker = rng.choice(takers)
            if self.tracker.worker(worker).in_flight < CAPACITY:
                self.place(self.task(), worker)

    def task(self) -> Task:
        self.next_task += 1
        return Task(self.next_task, requires=self.requires)

    def place(self, task: Task, worker_id: object) -> None:
        self.tracker.assign(task, worker_id)
        self.running.append((task, worker_id))

    def picker(self, balancer: Balancer, via: str) -> Picker:
        tracker = self.tracker
        if via == "choose":
            return lambda task: balancer.choose(task, tracker)
        return lambda task: balancer.select(task, tracker.candidates(task))

    def cycles(self, pick: Picker, count: int, tick: float = 0.0) -> int:
        """``count`` placement cycles, the clock moving ``tick`` after each; how many
        found a worker."""
        placed = 0
        assign, release, running = self.tracker.assign, self.tracker.release, self.running
        advance = self.clock.advance
        for _ in range(count):
            if tick:
                advance(tick)
            task = self.task()
            chosen = pick(task)
            if chosen is not None:
                assign(task, chosen.id)
                running.append((task, chosen.id))
                placed += 1
            old, worker_id = running.popleft()
            release(old, worker_id)
        return placed


PICKERS: dict[str, tuple[Callable[[], Balancer], str]] = {
    "LeastConnections.choose": (LeastConnections, "choose"),
    "LeastConnections.select(candidates)": (LeastConnections, "select"),
    "PowerOfTwoChoices.choose": (lambda: PowerOfTwoChoices(random.Random(1)), "choose"),
    "PowerOfTwoChoices.select(candidates)": (lambda: PowerOfTwoChoices(random.Random(1)), "select"),
    "ConsistentHash.choose": (ConsistentHash, "choose"),
    "ConsistentHash.select(candidates)": (ConsistentHash, "select"),
}


@pytest.mark.parametrize("n", WORKERS)
@pytest.mark.parametrize("picker", list(PICKERS))
def bench_placement_cycle(benchmark, picker: str, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"placement cycle, n={n} workers ({CYCLES} cycles)"
    pool = Pool(n)
    make, via = PICKERS[picker]
    pick = pool.picker(make(), via)
    placed = benchmark(pool.cycles, pick, CYCLES)
    assert placed == CYCLES  # half full: there is always room


@pytest.mark.parametrize("n", WORKERS)
def bench_fleet_restart(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    """Every worker ramping up at once; the clock moves a millisecond a cycle."""
    benchmark.group = f"fleet-wide slow start, n={n} workers ({CYCLES} cycles)"
    pool = Pool(n, ramp=3_600.0)
    pick = pool.picker(LeastConnections(), "choose")
    assert benchmark(pool.cycles, pick, CYCLES, 0.001) == CYCLES


@pytest.mark.parametrize("n", WORKERS)
def bench_rare_skill(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    """Every task needs a skill one worker in a hundred has."""
    benchmark.group = f"rare skill, n={n} workers ({CYCLES} cycles)"
    pool = Pool(n, rare_skill=True)
    pick = pool.picker(LeastConnections(), "choose")
    assert benchmark(pool.cycles, pick, CYCLES) == CYCLES


def test_choose_and_select_agree_for_least_connections() -> None:
    """The two LeastConnections pickers make the same placements, cycle after cycle."""
    by_choose, by_select = Pool(50), Pool(50)
    choose = by_choose.picker(LeastConnections(), "choose")
    select = by_select.picker(LeastConnections(), "select")
    for _ in range(300):
        task = by_choose.task()
        by_select.task()
        a, b = choose(task), select(task)
        assert a is not None and b is not None and a.id == b.id
        by_choose.cycles(lambda _t, w=a: w, 1)
        by_select.cycles(lambda _t, w=b: w, 1)


# -- as a script: the table for docs/performance.md -------------------------------------


def main(repeat: int = 5) -> None:
    workers = [10, 100, 1_000, 10_000]
    columns = " | ".join(f"{n} workers" for n in workers)
    print(f"| µs per placement cycle | {columns} |")
    print(f"|---|{'---:|' * len(workers)}")
    cycle: dict[str, list[str]] = {name: [] for name in PICKERS}
    for n in workers:
        runs: dict[str, Callable[[], object]] = {}
        for name, (make, via) in PICKERS.items():
            pool = Pool(n)
            pick = pool.picker(make(), via)
            pool.cycles(pick, CYCLES)  # warm up (builds the load index, the ring)
            runs[name] = lambda p=pool, f=pick: p.cycles(f, CYCLES)
        for name, seconds in interleaved_best(runs, repeat).items():
            cycle[name].append(f"{seconds / CYCLES * 1e6:.2f}")
    for name, cells in cycle.items():
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"\n| LeastConnections.choose, µs per cycle | {columns} |")
    print(f"|---|{'---:|' * len(workers)}")
    ramps: dict[str, list[str]] = {
        "no slow start": [],
        "every worker ramping (slow start)": [],
        "every task needs a skill 1 worker in 100 has": [],
    }
    for n in workers:
        runs = {}
        for label, ramp, rare in zip(
            ramps, (None, 3_600.0, None), (False, False, True), strict=True
        ):
            pool = Pool(n, ramp=ramp, rare_skill=rare)
            pick = pool.picker(LeastConnections(), "choose")
            pool.cycles(pick, CYCLES, 0.001)
            runs[label] = lambda p=pool, f=pick: p.cycles(f, CYCLES, 0.001)
        for label, seconds in interleaved_best(runs, repeat).items():
            ramps[label].append(f"{seconds / CYCLES * 1e6:.2f}")
    for label, cells in ramps.items():
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
