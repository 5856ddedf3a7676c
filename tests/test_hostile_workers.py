"""Red team for the workers and balancing layers: bad, extreme and re-entrant calls.

Each case builds a world (a tracker with four workers, some tasks in flight,
one worker degraded, and one balancer), makes one hostile call, and checks
with :func:`hostile.assert_refused` that it raised the specific error and
that the world answers afterwards exactly as an untouched twin does: every
worker's load, health and weights, the candidates for a few probe tasks,
``has_room`` and the pool totals, and the next placements the balancer
makes (which also shows that a balancer's own memory was not touched).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hostile import assert_refused

from taskdist import (
    Affinity,
    Balancer,
    CapacityBased,
    CapacityTracker,
    ConsistentHash,
    DuplicateTaskError,
    DuplicateWorkerError,
    Health,
    HealthPolicy,
    InvalidArgumentError,
    InvalidTypeError,
    LeastConnections,
    ManualClock,
    MultiFactor,
    OutlierEjection,
    PerformanceBased,
    PowerOfTwoChoices,
    RandomBalancer,
    ReentrancyError,
    RoundRobin,
    ScoringBalancer,
    SlowStart,
    Task,
    UnknownError,
    UnknownPolicyError,
    UnknownTaskError,
    UnknownWorkerError,
    WeightedRoundRobin,
    Worker,
    WorkerFullError,
    WorkerState,
    WorkerUnavailableError,
    ZoneAware,
)
from taskdist.balancing.base import check_scores
from taskdist.balancing.least_load import _load_order as load_order

# -- user balancers that break the contract -------------------------------------------------


class ReturnsAString(Balancer):
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> Any:
        return "a"


class ReturnsAStranger(Balancer):
    """Returns a view from another tracker: a WorkerState, but not a candidate."""

    def __init__(self) -> None:
        other = CapacityTracker(ManualClock())
        self.stranger = other.add_worker(Worker("a", capacity=4))

    def select(self, task: Task, candidates: Sequence[WorkerState]) -> Any:
        return self.stranger


class ChoosesAStranger(LeastConnections):
    """Overrides choose() (so nothing checks it from inside) to return a non-candidate."""

    def choose(self, task: Task, tracker: CapacityTracker, where: Any = None) -> Any:
        return ReturnsAStranger().stranger


class ChoosesAFullWorker(LeastConnections):
    def choose(self, task: Task, tracker: CapacityTracker, where: Any = None) -> Any:
        return tracker.worker("d")  # full: not a candidate


class Scores(ScoringBalancer):
    """A scoring balancer whose scores() returns what it was built with."""

    def __init__(self, make: Callable[[int], object]) -> None:
        self.make = make

    def scores(self, task: Task, candidates: Sequence[WorkerState]) -> Any:
        return self.make(len(candidates))


def factor_returning(make: Callable[[int], object]) -> MultiFactor:
    return MultiFactor(factors={"custom": (1.0, lambda task, ws: make(len(ws)))})


# -- the world ------------------------------------------------------------------------------

BALANCERS: dict[str, Callable[[], Balancer]] = {
    "RoundRobin": RoundRobin,
    "WeightedRoundRobin": WeightedRoundRobin,
    "LeastConnections": LeastConnections,
    "CapacityBased": CapacityBased,
    "PerformanceBased": PerformanceBased,
    "RandomBalancer": lambda: RandomBalancer(random.Random(5)),
    "PowerOfTwoChoices": lambda: PowerOfTwoChoices(random.Random(6)),
    "ConsistentHash": lambda: ConsistentHash(vnodes=32),
    "MultiFactor": MultiFactor,
    "Affinity": Affinity,
    "ZoneAware": lambda: ZoneAware(zone="eu"),
}


@dataclass
class World:
    clock: ManualClock
    tracker: CapacityTracker
    balancer: Balancer


def world_of(make: Callable[[], Balancer], *, warm_up: bool = True) -> Callable[[], World]:
    """A builder of identical worlds around the balancer ``make`` builds (which, if
    ``warm_up``, has placed one task already, so it remembers something)."""

    def build() -> World:
        clock = ManualClock()
        tracker = CapacityTracker(
            clock,
            health=HealthPolicy(error_rate=0.5, min_samples=2),
            ejection=OutlierEjection(consecutive_failures=3),
            slow_start=SlowStart(window=10.0),
        )
        tracker.add_worker(Worker("a", capacity=4, zone="eu"))
        tracker.add_worker(Worker("b", capacity={"slots": 4, "gpu": 1}, skills={"gpu"}))
        tracker.add_worker(Worker("c", capacity=2, weight=2.0, zone="eu"))
        tracker.add_worker(Worker("d", capacity=1, zone="us"))
        tracker.add_worker(Worker("e", capacity=8))
        tracker.set_health("e", Health.UNAVAILABLE)
        tracker.assign(Task("held", key="k0"), "a")
        tracker.assign(Task("gpu-job", resources={"gpu": 1}), "b")
        tracker.assign(Task("d-job"), "d")
        tracker.release(Task("d-job"), "d", duration=1.0)
        tracker.assign(Task("d-job-2"), "d")  # d is full again
        tracker.set_health("c", Health.DEGRADED)
        clock.advance(3.0)  # slow start part way
        balancer = make()
        if warm_up:
            balancer.choose(Task("warm", key="k1"), tracker)
        return World(clock, tracker, balancer)

    return build


PROBES = [
    Task("probe"),
    Task("probe", requires={"gpu"}),
    Task("probe", resources={"gpu": 1}),
    Task("probe", zone="eu"),
]


def observe(world: World) -> object:
    """Everything the twins must agree on; then six placements by the balancer."""
    tracker = world.tracker
    workers = [
        (
            w.id,
            dict(w.load),
            w.in_flight,
            w.health,
            w.host_health,
            w.weight,
            w.effective_weight,
            w.latency,
            w.success_rate,
            w.ejected_until,
            w.capacity,
            tuple(t.id for t in tracker.tasks_on(w.id)),
        )
        for w in tracker.workers()
    ]
    listed = [[w.id for w in tracker.candidates(probe)] for probe in PROBES]
    rng = getattr(world.balancer, "rng", None)
    drawn = None if rng is None else rng.getstate()
    pool = (tracker.has_room(), tracker.available_in_flight, tracker.available_weight)
    placed = []
    for i in range(6):
        task = Task(f"next-{i}", key=f"k{i % 3}", zone="eu" if i % 2 else None)
        chosen = world.balancer.choose(task, tracker)
        placed.append(None if chosen is None else chosen.id)
        if chosen is not None:
            tracker.assign(task, chosen.id)
    world.clock.advance(1.0)
    selected = []
    for i in range(4):
        task = Task(f"later-{i}", key=f"k{i}")
        chosen = world.balancer.select(task, tracker.candidates(task))
        selected.append(None if chosen is None else chosen.id)
    return workers, listed, pool, drawn, placed, selected, repr(world.balancer), repr(tracker)


# -- the cases --------------------------------------------------------------------------------

Call = Callable[[World], object]


def reenter(query: Callable[[World, Callable[[WorkerState], bool]], object], inner: Call) -> Call:
    """A call whose where= filter calls back into the tracker (``inner``)."""

    def call(world: World) -> object:
        def where(state: WorkerState) -> bool:
            inner(world)
            return True

        return query(world, where)

    return call


def appended_junk(world: World) -> list[WorkerState]:
    pool = world.tracker.candidates(Task("t"))
    pool.append("junk")  # type: ignore[arg-type]
    return pool


def a_stranger(world: World) -> list[WorkerState]:
    return [*world.tracker.candidates(Task("t")), ReturnsAStranger().stranger]


T = Task("t", key="k1")
HELD = Task("held", key="k0")

# (name, balancer, call, error)
CASES: list[tuple[str, str, Call, type[Exception]]] = [
    # CapacityTracker: membership
    ("add a non-worker", "LeastConnections", lambda w: w.tracker.add_worker("f"), InvalidTypeError),
    (
        "add a duplicate id",
        "LeastConnections",
        lambda w: w.tracker.add_worker(Worker("a")),
        DuplicateWorkerError,
    ),
    (
        "add weight 1e308",
        "WeightedRoundRobin",
        lambda w: w.tracker.add_worker(Worker("f", weight=1e308)),
        InvalidArgumentError,
    ),
    (
        "add weight 1e-12",
        "LeastConnections",
        lambda w: w.tracker.add_worker(Worker("f", weight=1e-12)),
        InvalidArgumentError,
    ),
    (
        "add capacity 1e300",
        "CapacityBased",
        lambda w: w.tracker.add_worker(Worker("f", capacity=1e300)),
        InvalidArgumentError,
    ),
    (
        "add capacity 1e-12",
        "LeastConnections",
        lambda w: w.tracker.add_worker(Worker("f", capacity={"slots": 1, "gpu": 1e-12})),
        InvalidArgumentError,
    ),
    (
        "add a NaN weight",
        "LeastConnections",
        lambda w: w.tracker.add_worker(Worker("f", weight=math.nan)),
        InvalidArgumentError,
    ),
    (
        "remove an unknown id",
        "ConsistentHash",
        lambda w: w.tracker.remove_worker("zz"),
        UnknownWorkerError,
    ),
    (
        "remove an unhashable id",
        "LeastConnections",
        lambda w: w.tracker.remove_worker(["a"]),
        InvalidTypeError,
    ),
    (
        "reweigh to 0",
        "WeightedRoundRobin",
        lambda w: w.tracker.update_worker("a", weight=0),
        InvalidArgumentError,
    ),
    (
        "reweigh to 1e10",
        "ConsistentHash",
        lambda w: w.tracker.update_worker("a", weight=1e10),
        InvalidArgumentError,
    ),
    (
        "reweigh to infinity",
        "WeightedRoundRobin",
        lambda w: w.tracker.update_worker("a", weight=math.inf),
        InvalidArgumentError,
    ),
    (
        "resize negative",
        "LeastConnections",
        lambda w: w.tracker.update_worker("a", capacity=-1),
        InvalidArgumentError,
    ),
    (
        "resize to 1e16",
        "CapacityBased",
        lambda w: w.tracker.update_worker("a", capacity=1e16),
        InvalidArgumentError,
    ),
    (
        "skills as one str",
        "LeastConnections",
        lambda w: w.tracker.update_worker("a", skills="gpu"),
        InvalidTypeError,
    ),
    (
        "update an unknown id",
        "LeastConnections",
        lambda w: w.tracker.update_worker("zz", weight=2.0),
        UnknownWorkerError,
    ),
    # CapacityTracker: health
    (
        "health not a policy",
        "LeastConnections",
        lambda w: w.tracker.set_health("a", "sick"),
        InvalidArgumentError,
    ),
    ("health an int", "LeastConnections", lambda w: w.tracker.set_health("a", 3), InvalidTypeError),
    (
        "health empty",
        "LeastConnections",
        lambda w: w.tracker.set_health("a", ""),
        InvalidArgumentError,
    ),
    (
        "health of nobody",
        "LeastConnections",
        lambda w: w.tracker.set_health("zz", Health.HEALTHY),
        UnknownWorkerError,
    ),
    ("reinstate nobody", "RoundRobin", lambda w: w.tracker.reinstate("zz"), UnknownWorkerError),
    # CapacityTracker: placements
    (
        "assign a non-task",
        "LeastConnections",
        lambda w: w.tracker.assign("t", "a"),
        InvalidTypeError,
    ),
    (
        "assign to nobody",
        "LeastConnections",
        lambda w: w.tracker.assign(T, "zz"),
        UnknownWorkerError,
    ),
    (
        "assign a held task again",
        "LeastConnections",
        lambda w: w.tracker.assign(HELD, "b"),
        DuplicateTaskError,
    ),
    ("assign to a full worker", "RoundRobin", lambda w: w.tracker.assign(T, "d"), WorkerFullError),
    (
        "assign 1e17 slots",
        "CapacityBased",
        lambda w: w.tracker.assign(Task("big", resources={"slots": 1e17}), "a"),
        WorkerFullError,
    ),
    (
        "assign a GPU task to a worker without GPUs",
        "LeastConnections",
        lambda w: w.tracker.assign(Task("g", resources={"gpu": 1}), "a"),
        WorkerFullError,
    ),
    (
        "assign to a down worker",
        "LeastConnections",
        lambda w: w.tracker.assign(T, "e"),
        WorkerUnavailableError,
    ),
    (
        "release a task not held",
        "LeastConnections",
        lambda w: w.tracker.release(T, "a"),
        UnknownTaskError,
    ),
    (
        "release from the wrong worker",
        "Affinity",
        lambda w: w.tracker.release(HELD, "b"),
        UnknownTaskError,
    ),
    (
        "release a non-task",
        "LeastConnections",
        lambda w: w.tracker.release("held", "a"),
        InvalidTypeError,
    ),
    (
        "release with a negative duration",
        "PerformanceBased",
        lambda w: w.tracker.release(HELD, "a", duration=-1.0),
        InvalidArgumentError,
    ),
    (
        "release with a NaN duration",
        "PerformanceBased",
        lambda w: w.tracker.release(HELD, "a", duration=math.nan),
        InvalidArgumentError,
    ),
    (
        "release with an infinite duration",
        "PerformanceBased",
        lambda w: w.tracker.release(HELD, "a", duration=math.inf),
        InvalidArgumentError,
    ),
    (
        "release with a duration of 1e13 s",
        "PerformanceBased",
        lambda w: w.tracker.release(HELD, "a", duration=1e13),
        InvalidArgumentError,
    ),
    (
        "release with ok='yes'",
        "LeastConnections",
        lambda w: w.tracker.release(HELD, "a", ok="yes"),
        InvalidTypeError,
    ),
    # CapacityTracker: queries
    ("candidates of a str", "RoundRobin", lambda w: w.tracker.candidates("t"), InvalidTypeError),
    (
        "candidates where=5",
        "RoundRobin",
        lambda w: w.tracker.candidates(T, where=5),
        InvalidTypeError,
    ),
    (
        "is_candidate where='x'",
        "Affinity",
        lambda w: w.tracker.is_candidate(T, "a", where="x"),
        InvalidTypeError,
    ),
    (
        "lowest with a key that is no function",
        "LeastConnections",
        lambda w: w.tracker.lowest(T, 5),
        InvalidTypeError,
    ),
    (
        "lowest of a non-task",
        "LeastConnections",
        lambda w: w.tracker.lowest(None, load_order),
        InvalidTypeError,
    ),
    (
        "sample a negative count",
        "PowerOfTwoChoices",
        lambda w: w.tracker.sample(T, -1, random.Random(0)),
        InvalidArgumentError,
    ),
    (
        "sample 1.5",
        "PowerOfTwoChoices",
        lambda w: w.tracker.sample(T, 1.5, random.Random(0)),
        InvalidTypeError,
    ),
    (
        "sample with rng=7",
        "PowerOfTwoChoices",
        lambda w: w.tracker.sample(T, 2, 7),
        InvalidTypeError,
    ),
    (
        "first_candidate of a non-task",
        "ConsistentHash",
        lambda w: w.tracker.first_candidate("t", ["a"]),
        InvalidTypeError,
    ),
    (
        "first_candidate where=1",
        "ConsistentHash",
        lambda w: w.tracker.first_candidate(T, ["a"], where=1),
        InvalidTypeError,
    ),
    (
        "utilization of ''",
        "LeastConnections",
        lambda w: w.tracker.utilization(""),
        InvalidArgumentError,
    ),
    (
        "utilization of 3",
        "LeastConnections",
        lambda w: w.tracker.utilization(3),
        InvalidTypeError,
    ),
    ("worker nobody", "LeastConnections", lambda w: w.tracker.worker("zz"), UnknownWorkerError),
    ("tasks on nobody", "LeastConnections", lambda w: w.tracker.tasks_on("zz"), UnknownWorkerError),
    # re-entrant filters: the tracker refuses the call back
    *(
        (f"a filter of {query} that {inner_name}s", balancer, reenter(q, inner), ReentrancyError)
        for query, balancer, q in (
            ("candidates", "RoundRobin", lambda w, f: w.tracker.candidates(T, f)),
            ("is_candidate", "Affinity", lambda w, f: w.tracker.is_candidate(T, "a", f)),
            ("lowest", "LeastConnections", lambda w, f: w.tracker.lowest(T, load_order, f)),
            (
                "sample",
                "PowerOfTwoChoices",
                lambda w, f: w.tracker.sample(T, 1, random.Random(1), f),
            ),
            (
                "first_candidate",
                "ConsistentHash",
                lambda w, f: w.tracker.first_candidate(T, "ab", f),
            ),
        )
        for inner_name, inner in (
            ("assign", lambda w: w.tracker.assign(Task("inner"), "a")),
            ("release", lambda w: w.tracker.release(HELD, "a")),
            ("add_worker", lambda w: w.tracker.add_worker(Worker("f"))),
            ("remove_worker", lambda w: w.tracker.remove_worker("b")),
        )
    ),
    # re-entrant filters handed to a balancer's choose()
    *(
        (f"{name}.choose with a filter that assigns", name, reenter(q, inner), ReentrancyError)
        # A random strategy keeps the draws made before the filter raised (documented):
        # its twin is compared on everything but them.
        for name in ("LeastConnections", "PowerOfTwoChoices-draws", "ConsistentHash", "ZoneAware")
        for q in (lambda w, f: w.balancer.choose(T, w.tracker, f),)
        for inner in (lambda w: w.tracker.assign(Task("inner"), "b"),)
    ),
    (
        "Affinity.choose of a bound key with a filter that removes",
        "Affinity",
        reenter(
            lambda w, f: w.balancer.choose(Task("t", key="k1"), w.tracker, f),
            lambda w: w.tracker.remove_worker("a"),
        ),
        ReentrancyError,
    ),
    (
        "a load key that adds a worker",
        "LeastConnections",
        lambda w: w.tracker.lowest(T, lambda s: (w.tracker.add_worker(Worker("f")), 0.0)[1]),
        ReentrancyError,
    ),
    # every balancer's select refuses candidates that are not WorkerStates
    *(
        (
            f"{name}.select of ids",
            name,
            lambda w: w.balancer.select(T, ["a", "b"]),
            InvalidTypeError,
        )
        for name in BALANCERS
    ),
    *(
        (
            f"{name}.select with junk appended",
            name,
            lambda w: w.balancer.select(T, appended_junk(w)),
            InvalidTypeError,
        )
        for name in ("RoundRobin", "PowerOfTwoChoices", "ConsistentHash", "Affinity")
    ),
    (
        "select of a str",
        "WeightedRoundRobin",
        lambda w: w.balancer.select(T, "ab"),
        InvalidTypeError,
    ),
    ("select of an int", "LeastConnections", lambda w: w.balancer.select(T, 5), InvalidTypeError),
    (
        "select of Workers",
        "MultiFactor",
        lambda w: w.balancer.select(T, [Worker("a"), Worker("b")]),
        InvalidTypeError,
    ),
    # what a balancer returns is checked where the library calls it
    (
        "choose over a select that returns a str",
        "ReturnsAString",
        lambda w: w.balancer.choose(T, w.tracker),
        InvalidTypeError,
    ),
    (
        "choose over a select that returns a stranger",
        "ReturnsAStranger",
        lambda w: w.balancer.choose(T, w.tracker),
        InvalidArgumentError,
    ),
    (
        "Affinity over a fallback select that returns a stranger",
        "Affinity-stranger",
        lambda w: w.balancer.select(Task("t", key="new"), w.tracker.candidates(T)),
        InvalidArgumentError,
    ),
    (
        "Affinity over a fallback choose that returns a stranger",
        "Affinity-choose-stranger",
        lambda w: w.balancer.choose(Task("t", key="new"), w.tracker),
        InvalidArgumentError,
    ),
    (
        "ZoneAware over an inner select that returns a str",
        "ZoneAware-string",
        lambda w: w.balancer.select(T, w.tracker.candidates(T)),
        InvalidTypeError,
    ),
    (
        "ZoneAware over an inner choose that returns a full worker",
        "ZoneAware-full",
        lambda w: w.balancer.choose(T, w.tracker),
        InvalidArgumentError,
    ),
    (
        "choose with a filter over a select that returns a stranger",
        "ReturnsAStranger",
        lambda w: w.balancer.choose(T, w.tracker, where=lambda s: s.id != "zz"),
        InvalidArgumentError,
    ),
    # scores that break the contract
    (
        "scores with a NaN",
        "Scores-nan",
        lambda w: w.balancer.select(T, w.tracker.candidates(T)),
        InvalidArgumentError,
    ),
    (
        "scores one short",
        "Scores-short",
        lambda w: w.balancer.select(T, w.tracker.candidates(T)),
        InvalidArgumentError,
    ),
    (
        "scores of strings",
        "Scores-str",
        lambda w: w.balancer.select(T, w.tracker.candidates(T)),
        InvalidTypeError,
    ),
    (
        "scores None",
        "Scores-none",
        lambda w: w.balancer.choose(T, w.tracker),
        InvalidTypeError,
    ),
    (
        "a factor of 1.5",
        "Factor-big",
        lambda w: w.balancer.select(T, w.tracker.candidates(T)),
        InvalidArgumentError,
    ),
    (
        "a factor of -inf",
        "Factor-inf",
        lambda w: w.balancer.choose(T, w.tracker),
        InvalidArgumentError,
    ),
    (
        "a factor of text",
        "Factor-str",
        lambda w: w.balancer.select(T, w.tracker.candidates(T)),
        InvalidTypeError,
    ),
    # the ring's own membership and the affinity table
    (
        "ring add weight 1e10",
        "ConsistentHash",
        lambda w: w.balancer.add("f", 1e10),
        InvalidArgumentError,
    ),
    (
        "ring add weight NaN",
        "ConsistentHash",
        lambda w: w.balancer.add("f", math.nan),
        InvalidArgumentError,
    ),
    (
        "ring add weight 'heavy'",
        "ConsistentHash",
        lambda w: w.balancer.add("f", "heavy"),
        InvalidTypeError,
    ),
    (
        "ring add a member again",
        "ConsistentHash",
        lambda w: w.balancer.add("a"),
        DuplicateWorkerError,
    ),
    ("ring add None", "ConsistentHash", lambda w: w.balancer.add(None), InvalidArgumentError),
    ("ring remove nobody", "ConsistentHash", lambda w: w.balancer.remove("zz"), UnknownWorkerError),
    ("ring remove a list", "ConsistentHash", lambda w: w.balancer.remove(["a"]), InvalidTypeError),
    ("bind an unhashable key", "Affinity", lambda w: w.balancer.bind(["k"], "a"), InvalidTypeError),
    ("bind to None", "Affinity", lambda w: w.balancer.bind("k", None), InvalidArgumentError),
    ("unbind a key never bound", "Affinity", lambda w: w.balancer.unbind("never"), UnknownError),
    # constructors: refused before anything exists (the world is untouched)
    (
        "tracker ewma_alpha=0",
        "RoundRobin",
        lambda w: CapacityTracker(ewma_alpha=0),
        InvalidArgumentError,
    ),
    (
        "tracker ewma_alpha=nan",
        "RoundRobin",
        lambda w: CapacityTracker(ewma_alpha=math.nan),
        InvalidArgumentError,
    ),
    (
        "tracker ewma_half_life=-1",
        "RoundRobin",
        lambda w: CapacityTracker(ewma_half_life=-1.0),
        InvalidArgumentError,
    ),
    (
        "tracker degraded='sometimes'",
        "RoundRobin",
        lambda w: CapacityTracker(degraded="sometimes"),
        UnknownPolicyError,
    ),
    ("tracker degraded=3", "RoundRobin", lambda w: CapacityTracker(degraded=3), InvalidTypeError),
    (
        "tracker strict_zones='yes'",
        "RoundRobin",
        lambda w: CapacityTracker(strict_zones="yes"),
        InvalidTypeError,
    ),
    (
        "health error_rate=2",
        "RoundRobin",
        lambda w: HealthPolicy(error_rate=2.0),
        InvalidArgumentError,
    ),
    (
        "ejection of 1e13 s",
        "RoundRobin",
        lambda w: OutlierEjection(base_ejection_time=1e13, max_ejection_time=1e13),
        InvalidArgumentError,
    ),
    ("slow start window=0", "RoundRobin", lambda w: SlowStart(window=0.0), InvalidArgumentError),
    (
        "slow start min_weight=1e-9",
        "RoundRobin",
        lambda w: SlowStart(window=1.0, min_weight=1e-9),
        InvalidArgumentError,
    ),
    ("ring vnodes=0", "RoundRobin", lambda w: ConsistentHash(vnodes=0), InvalidArgumentError),
    (
        "ring vnodes=2**20",
        "RoundRobin",
        lambda w: ConsistentHash(vnodes=2**20),
        InvalidArgumentError,
    ),
    ("ring vnodes=1.5", "RoundRobin", lambda w: ConsistentHash(vnodes=1.5), InvalidTypeError),
    (
        "ring load_factor=0.5",
        "RoundRobin",
        lambda w: ConsistentHash(load_factor=0.5),
        InvalidArgumentError,
    ),
    (
        "ring load_factor=inf",
        "RoundRobin",
        lambda w: ConsistentHash(load_factor=math.inf),
        InvalidArgumentError,
    ),
    (
        "multi-factor weight 1e10",
        "RoundRobin",
        lambda w: MultiFactor(skill=1e10),
        InvalidArgumentError,
    ),
    (
        "multi-factor factors as a list",
        "RoundRobin",
        lambda w: MultiFactor(factors=[("x", 1.0)]),
        InvalidTypeError,
    ),
    (
        "multi-factor with an empty factor name",
        "RoundRobin",
        lambda w: MultiFactor(factors={"": (1.0, len)}),
        InvalidArgumentError,
    ),
    ("zone ''", "RoundRobin", lambda w: ZoneAware(zone=""), InvalidArgumentError),
    ("spill=3", "RoundRobin", lambda w: ZoneAware(spill=3), InvalidTypeError),
    ("spill='maybe'", "RoundRobin", lambda w: ZoneAware(spill="maybe"), UnknownPolicyError),
    ("zone threshold=2", "RoundRobin", lambda w: ZoneAware(threshold=2.0), InvalidArgumentError),
    ("affinity max_keys=0", "RoundRobin", lambda w: Affinity(max_keys=0), InvalidArgumentError),
    ("affinity fallback='lc'", "RoundRobin", lambda w: Affinity(fallback="lc"), InvalidTypeError),
    ("random weighted=1", "RoundRobin", lambda w: RandomBalancer(weighted=1), InvalidTypeError),
    ("p2c rng=5", "RoundRobin", lambda w: PowerOfTwoChoices(rng=5), InvalidTypeError),
]

BALANCERS.update(
    {
        "PowerOfTwoChoices-draws": lambda: PowerOfTwoChoices(random.Random(6)),
        "ReturnsAString": ReturnsAString,
        "ReturnsAStranger": ReturnsAStranger,
        "Affinity-stranger": lambda: Affinity(fallback=ReturnsAStranger()),
        "Affinity-choose-stranger": lambda: Affinity(fallback=ChoosesAStranger()),
        "ZoneAware-string": lambda: ZoneAware(inner=ReturnsAString(), zone="eu"),
        "ZoneAware-full": lambda: ZoneAware(inner=ChoosesAFullWorker(), zone="eu"),
        "Scores-nan": lambda: Scores(lambda n: [0.0] * (n - 1) + [math.nan]),
        "Scores-short": lambda: Scores(lambda n: [0.0] * (n - 1)),
        "Scores-str": lambda: Scores(lambda n: ["low"] * n),
        "Scores-none": lambda: Scores(lambda n: None),
        "Factor-big": lambda: factor_returning(lambda n: [1.5] * n),
        "Factor-inf": lambda: factor_returning(lambda n: [-math.inf] * n),
        "Factor-str": lambda: factor_returning(lambda n: ["x"] * n),
    }
)


CONTRACT_KEEPERS = {
    "RoundRobin",
    "WeightedRoundRobin",
    "LeastConnections",
    "CapacityBased",
    "PerformanceBased",
    "RandomBalancer",
    "PowerOfTwoChoices",
    "ConsistentHash",
    "MultiFactor",
    "Affinity",
    "ZoneAware",
}


def test_there_are_at_least_eighty_cases_with_distinct_names() -> None:
    names = [name for name, *_ in CASES]
    assert len(names) >= 80 and len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("balancer", "call", "error"),
    [pytest.param(b, c, e, id=name) for name, b, c, e in CASES],
)
def test_a_hostile_call_is_refused_and_changes_nothing(
    balancer: str, call: Call, error: type[Exception]
) -> None:
    keeps_contract = balancer in CONTRACT_KEEPERS
    build = world_of(BALANCERS[balancer], warm_up=keeps_contract)
    # A balancer that breaks the contract on purpose cannot place the next tasks:
    # a well-behaved one does, after what the broken one remembers is noted.
    assert_refused(build, call, error, observe if keeps_contract else observe_tracker)


def observe_tracker(world: World) -> object:
    """``observe``, with the placements made by a fresh LeastConnections (the world's own
    balancer breaks the contract on purpose), plus what the world's balancer remembers."""
    remembered = (
        (len(world.balancer), sorted(map(str, world.balancer._bound)))
        if isinstance(world.balancer, Affinity)
        else None
    )
    world.balancer = LeastConnections()
    return observe(world), remembered


# -- extreme but valid: inside the ranges, things behave -------------------------------------


def test_weighted_round_robin_at_the_top_of_the_weight_range_stays_exact() -> None:
    tracker = CapacityTracker(ManualClock())
    for i, weight in enumerate([1e9, 1e9, 5e8, 1e-9]):
        tracker.add_worker(Worker(i, capacity=10, weight=weight))
    wrr, pool = WeightedRoundRobin(), tracker.candidates(Task("t"))
    picks = [wrr.select(Task("t"), pool).id for _ in range(10_000)]
    assert all(math.isfinite(value) for value in wrr._current.values())
    assert picks.count(0) == picks.count(1) == 4_000 and picks.count(2) == 2_000


def test_least_connections_scores_stay_finite_at_the_ends_of_the_ranges() -> None:
    clock = ManualClock()
    tracker = CapacityTracker(clock, slow_start=SlowStart(window=1e12, min_weight=1e-6))
    tracker.add_worker(Worker("tiny", capacity=1e-9, weight=1e-9))
    tracker.add_worker(Worker("huge", capacity=1e15, weight=1e9))
    tracker.assign(Task("speck", resources={"slots": 1e-9}), "tiny")
    tracker.update_worker("tiny", capacity={"slots": 1e-9})
    scores = LeastConnections().scores(Task("t"), tracker.workers())
    assert all(math.isfinite(score) for score in scores)
    assert LeastConnections().choose(Task("t"), tracker).id == "huge"
    assert math.isfinite(tracker.load_variance())


def test_a_huge_ring_weight_is_capped_not_hung() -> None:
    ring = ConsistentHash(vnodes=65_536, load_factor=2.0)
    ring.add("heavy", 1e9)
    assert len(ring._codes) == 65_536


def test_a_large_load_factor_bounds_nothing_and_overflows_nothing() -> None:
    tracker = CapacityTracker(ManualClock())
    for name in "ab":
        tracker.add_worker(Worker(name, capacity=100, weight=1e-9))
    ring = ConsistentHash(vnodes=8, load_factor=1e300)
    for i in range(50):
        task = Task(i, key="hot")
        tracker.assign(task, ring.choose(task, tracker).id)
    assert sorted(w.in_flight for w in tracker.workers()) == [0, 50]


def test_a_score_too_large_for_a_float_is_a_score_and_a_nan_still_is_not() -> None:
    # A huge int is a finite number: it ranks, it does not overflow the check.
    assert list(check_scores([10**400, 0], 2, "scores()")) == [10**400, 0]
    with pytest.raises(InvalidArgumentError, match="NaN"):
        check_scores([10**400, math.nan], 2, "scores()")
    with pytest.raises(InvalidArgumentError, match="too large"):
        check_scores([10**400, 0], 2, "scores()", unit=True)
