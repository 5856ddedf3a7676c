"""Shared builders for the balancer tests: trackers with loaded workers, and Hypothesis strategies.

Not a test module (pytest collects ``test_*.py`` only); the balancing tests
import it by name.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from itertools import count

from hypothesis import strategies as st

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

# (capacity, weight, zone, skills, latency or None, cost)
WorkerSpec = tuple[int, float, "str | None", frozenset[str], "float | None", float]

ZONES = ["eu", "us", None]
SKILLS = ["code", "research", "review"]

# Every built-in strategy, fresh, by name; random ones seeded.
STRATEGIES: dict[str, Callable[[], Balancer]] = {
    "RoundRobin": RoundRobin,
    "WeightedRoundRobin": WeightedRoundRobin,
    "LeastConnections": LeastConnections,
    "PowerOfTwoChoices": lambda: PowerOfTwoChoices(random.Random(1)),
    "RandomBalancer": lambda: RandomBalancer(random.Random(2)),
    "RandomBalancer-uniform": lambda: RandomBalancer(random.Random(3), weighted=False),
    "ConsistentHash": ConsistentHash,
    "ConsistentHash-unbounded": lambda: ConsistentHash(vnodes=20, load_factor=None),
    "CapacityBased": CapacityBased,
    "PerformanceBased": PerformanceBased,
    "MultiFactor": MultiFactor,
    "Affinity": Affinity,
    "Affinity-over-hash": lambda: Affinity(fallback=ConsistentHash(vnodes=10)),
    "ZoneAware": ZoneAware,
    "ZoneAware-never": lambda: ZoneAware(spill="never"),
    "ZoneAware-when-loaded": lambda: ZoneAware(
        PowerOfTwoChoices(random.Random(4)), spill="when_loaded"
    ),
}

worker_specs = st.tuples(
    st.integers(1, 5),
    st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    st.sampled_from(ZONES),
    st.frozensets(st.sampled_from(SKILLS), max_size=2),
    st.one_of(st.none(), st.floats(0.1, 20.0)),
    st.sampled_from([0.0, 0.01, 0.05]),
)

_task_ids = count()


def fresh_task(**fields: object) -> Task:
    """A task with a new unique id."""
    return Task(f"task-{next(_task_ids)}", **fields)  # type: ignore[arg-type]


def build_tracker(
    specs: Sequence[WorkerSpec], loads: Sequence[int] = (), clock: ManualClock | None = None
) -> CapacityTracker:
    """A tracker with one worker per spec (ids w0, w1, ...), ``loads[i]`` tasks on worker i.

    Loads are clipped to capacity; a spec's latency, if any, is reported once
    (so the worker has an EWMA latency).
    """
    tracker = CapacityTracker(clock or ManualClock())
    for i, (capacity, weight, zone, skills, latency, cost) in enumerate(specs):
        worker_id = f"w{i}"
        tracker.add_worker(
            Worker(worker_id, capacity=capacity, weight=weight, zone=zone, skills=skills, cost=cost)
        )
        if latency is not None:
            probe = fresh_task()
            tracker.assign(probe, worker_id)
            tracker.release(probe, worker_id, duration=latency)
    for i, load in enumerate(loads[: len(specs)]):
        for _ in range(min(load, specs[i][0])):
            tracker.assign(fresh_task(), f"w{i}")
    return tracker


def uniform_tracker(n: int, capacity: int = 100) -> CapacityTracker:
    """``n`` identical idle workers w0..w{n-1}."""
    return build_tracker([(capacity, 1.0, None, frozenset(), None, 0.0)] * n)


def place(
    tracker: CapacityTracker, balancer: Balancer, task: Task, *, choose: bool = False
) -> tuple[WorkerState | None, list[WorkerState]]:
    """Ask for candidates, select (or ``choose`` from the tracker), and record the
    placement as a distributor would."""
    candidates = tracker.candidates(task)
    chosen = balancer.choose(task, tracker) if choose else balancer.select(task, candidates)
    if chosen is not None:
        tracker.assign(task, chosen.id)
        balancer.on_assign(task, chosen)
    return chosen, candidates
