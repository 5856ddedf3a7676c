"""The Balancer contract, for every built-in strategy and for a user subclass.

- ``select`` returns one of the candidate objects, or ``None`` only for an
  empty list (``ZoneAware(spill="never")`` alone may refuse a non-empty one);
- the hooks are optional: the base versions do nothing, delegating
  balancers forward them;
- driven like a distributor drives it (a state machine), no task is lost.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

import pytest
from balancing_support import STRATEGIES, build_tracker, place, worker_specs
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from taskdist import (
    Affinity,
    Balancer,
    CapacityTracker,
    DelegatingBalancer,
    Health,
    InvalidTypeError,
    ManualClock,
    RandomBalancer,
    ScoringBalancer,
    Task,
    Worker,
    WorkerState,
    ZoneAware,
)
from taskdist.balancing.base import best_of


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_empty_candidates_give_none_not_an_exception(name: str) -> None:
    balancer = STRATEGIES[name]()
    assert balancer.select(Task("t", key="k", zone="eu"), []) is None
    assert balancer.select(Task("t"), ()) is None


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_single_candidate_is_chosen(name: str) -> None:
    tracker = build_tracker([(1, 1.0, "us", frozenset(), None, 0.0)])
    only = tracker.candidates(Task("t"))
    assert STRATEGIES[name]().select(Task("t", key="k"), only) is only[0]


def draw_task(data: st.DataObject, task_id: str) -> Task:
    """A task with a random key, zone and required skill."""
    return Task(
        task_id,
        key=data.draw(st.sampled_from([None, "k1", "k2", 7])),
        zone=data.draw(st.sampled_from(["eu", "us", None])),
        requires=data.draw(st.frozensets(st.sampled_from(["code", "research"]), max_size=1)),
    )


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(max_examples=max(10, settings.default.max_examples // 3))  # x 17 strategies
@given(
    specs=st.lists(worker_specs, min_size=1, max_size=8),
    loads=st.lists(st.integers(0, 5), max_size=8),
    data=st.data(),
)
def test_never_selects_outside_candidates(
    name: str, specs: list[tuple], loads: list[int], data: st.DataObject
) -> None:
    tracker = build_tracker(specs, loads)
    balancer = STRATEGIES[name]()
    for i in range(6):
        task = draw_task(data, f"t{i}")
        pool = tracker.candidates(task)
        # The host may filter further (breakers) and reorder: any sub-list will do.
        subset = data.draw(st.permutations(pool).flatmap(lambda p: st.sampled_from([p, p[1:]])))
        chosen = balancer.select(task, subset)
        if chosen is None:
            assert not subset or name == "ZoneAware-never"
            continue
        assert any(chosen is worker for worker in subset)
        tracker.assign(task, chosen.id)
        balancer.on_assign(task, chosen)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(max_examples=max(10, settings.default.max_examples // 3))  # x 17 strategies
@given(
    specs=st.lists(worker_specs, min_size=1, max_size=8),
    loads=st.lists(st.integers(0, 5), max_size=8),
    banned=st.sets(st.integers(0, 7)),
    data=st.data(),
)
def test_choose_never_picks_outside_the_filtered_candidates(
    name: str, specs: list[tuple], loads: list[int], banned: set[int], data: st.DataObject
) -> None:
    tracker = build_tracker(specs, loads)
    balancer = STRATEGIES[name]()
    banned_ids = {f"w{i}" for i in banned}

    def where(worker: WorkerState) -> bool:
        return worker.id not in banned_ids

    for i in range(6):
        task = draw_task(data, f"t{i}")
        pool = tracker.candidates(task, where)
        chosen = balancer.choose(task, tracker, where)
        if chosen is None:
            assert not pool or name == "ZoneAware-never"
            continue
        assert any(chosen is worker for worker in pool)
        tracker.assign(task, chosen.id)
        balancer.on_assign(task, chosen)


def test_a_subclass_choose_is_select_over_the_candidates() -> None:
    tracker = build_tracker([(2, 1.0, None, frozenset(), None, 0.0)] * 3, loads=[1, 0, 2])
    seen: list[list[object]] = []

    class Spy(FewestInFlight):
        def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
            seen.append([worker.id for worker in candidates])
            return super().select(task, candidates)

    chosen = Spy().choose(Task("t"), tracker, lambda worker: worker.id != "w1")
    assert seen == [["w0"]]  # w1 filtered out, w2 full
    assert chosen is tracker.worker("w0")


def test_zone_aware_never_may_refuse_a_non_empty_list() -> None:
    tracker = build_tracker([(1, 1.0, "us", frozenset(), None, 0.0)])
    balancer = ZoneAware(spill="never")
    assert balancer.select(Task("t", zone="eu"), tracker.candidates(Task("t"))) is None


class FewestInFlight(Balancer):
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        return min(candidates, key=lambda w: w.in_flight, default=None)


def test_a_subclass_needs_only_select_and_inherits_no_op_hooks() -> None:
    tracker = build_tracker([(2, 1.0, None, frozenset(), None, 0.0)] * 2)
    balancer = FewestInFlight()
    first, _ = place(tracker, balancer, Task(1))
    second, _ = place(tracker, balancer, Task(2))
    assert first is not None and second is not None and first is not second
    assert balancer.on_release(Task(1), first) is None
    assert balancer.on_worker_added(first) is None
    assert balancer.on_worker_removed("w0") is None
    assert repr(balancer) == "FewestInFlight()"


def test_balancer_and_scoring_balancer_are_abstract() -> None:
    with pytest.raises(TypeError):
        Balancer()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        ScoringBalancer()  # type: ignore[abstract]


class Recorder(Balancer):
    """Selects the first candidate and records every hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Hashable]] = []

    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        return candidates[0] if candidates else None

    def on_assign(self, task: Task, worker: WorkerState) -> None:
        self.calls.append(("assign", task.id))

    def on_release(self, task: Task, worker: WorkerState) -> None:
        self.calls.append(("release", task.id))

    def on_worker_added(self, worker: WorkerState) -> None:
        self.calls.append(("added", worker.id))

    def on_worker_removed(self, worker_id: Hashable) -> None:
        self.calls.append(("removed", worker_id))


@pytest.mark.parametrize(
    "wrap", [lambda inner: Affinity(fallback=inner), lambda inner: ZoneAware(inner=inner)]
)
def test_delegating_balancers_forward_every_hook(wrap: object) -> None:
    inner = Recorder()
    outer = wrap(inner)  # type: ignore[operator]
    assert isinstance(outer, DelegatingBalancer)
    tracker = CapacityTracker(ManualClock())
    worker = tracker.add_worker(Worker("w"))
    outer.on_worker_added(worker)
    outer.on_assign(Task(1), worker)
    outer.on_release(Task(1), worker)
    outer.on_worker_removed("w")
    assert inner.calls == [("added", "w"), ("assign", 1), ("release", 1), ("removed", "w")]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Affinity(fallback="LeastConnections"),
        lambda: ZoneAware(inner=object()),
        lambda: RandomBalancer(rng=42),
        lambda: RandomBalancer(weighted="yes"),
    ],
)
def test_compositions_refuse_non_balancers_and_bad_rngs(make: object) -> None:
    with pytest.raises(InvalidTypeError):
        make()  # type: ignore[operator]


class FirstOfInner(DelegatingBalancer):
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        return candidates[0] if candidates else None


def test_a_delegating_subclass_refuses_non_balancers() -> None:
    with pytest.raises(InvalidTypeError, match=r"delegates\[1\]"):
        FirstOfInner(RandomBalancer(), None)  # type: ignore[arg-type]


def test_best_of_breaks_ties_by_load_ratio_then_order() -> None:
    tracker = build_tracker([(4, 1.0, None, frozenset(), None, 0.0)] * 3, loads=[2, 1, 1])
    pool = tracker.candidates(Task("t"))
    assert best_of([0.0, 0.0, 0.0], pool) is pool[1]  # w1, w2 least loaded; w1 first
    assert best_of([1.0, 2.0, 2.0], pool, highest=True) is pool[1]
    assert best_of([3.0, 1.0, 2.0], pool) is pool[1]


class DispatchMachine(RuleBasedStateMachine):
    """A balancer driven as a distributor drives it: hooks called, outcomes reported.

    Each example draws one strategy. Every placement must be one of the
    candidates offered, must fit, and no task may be lost or duplicated
    through joins, removals, health changes and completions.
    """

    @initialize(
        name=st.sampled_from(sorted(STRATEGIES)), seed=st.integers(0, 2**16), choose=st.booleans()
    )
    def setup(self, name: str, seed: int, choose: bool) -> None:
        self.name = name
        self.choose = choose  # place through choose(task, tracker), else select(task, list)
        self.balancer = STRATEGIES[name]()
        self.tracker = CapacityTracker(ManualClock())
        self.rng = random.Random(seed)
        self.running: dict[Hashable, tuple[Task, Hashable]] = {}
        self.lost: list[Task] = []
        self.next_worker = 0
        self.next_task = 0

    @rule(capacity=st.integers(0, 3), zone=st.sampled_from(["eu", "us", None]))
    def join(self, capacity: int, zone: str | None) -> None:
        worker = Worker(f"w{self.next_worker}", capacity=capacity, zone=zone)
        self.next_worker += 1
        self.balancer.on_worker_added(self.tracker.add_worker(worker))

    @precondition(lambda self: len(self.tracker) > 0)
    @rule(pick=st.integers(0, 10**6))
    def leave(self, pick: int) -> None:
        workers = self.tracker.workers()
        worker_id = workers[pick % len(workers)].id
        for task in self.tracker.remove_worker(worker_id):
            assert self.running.pop(task.id)[1] == worker_id
            self.lost.append(task)  # to be requeued: placed again below
        self.balancer.on_worker_removed(worker_id)

    @rule(key=st.sampled_from([None, "a", "b", "c"]), zone=st.sampled_from(["eu", None]))
    def submit(self, key: str | None, zone: str | None) -> None:
        if self.lost:
            task = self.lost.pop()
        else:
            task = Task(f"t{self.next_task}", key=key, zone=zone)
            self.next_task += 1
        chosen, candidates = place(self.tracker, self.balancer, task, choose=self.choose)
        if chosen is None:
            assert not candidates or self.name == "ZoneAware-never"
            self.lost.append(task)
        else:
            assert any(chosen is worker for worker in candidates)
            self.running[task.id] = (task, chosen.id)

    @precondition(lambda self: bool(self.running))
    @rule(ok=st.booleans(), duration=st.floats(0.0, 5.0))
    def complete(self, ok: bool, duration: float) -> None:
        task_id = self.rng.choice(sorted(self.running, key=str))
        task, worker_id = self.running.pop(task_id)
        state = self.tracker.release(task, worker_id, duration=duration, ok=ok)
        self.balancer.on_release(task, state)

    @precondition(lambda self: len(self.tracker) > 0)
    @rule(pick=st.integers(0, 10**6), health=st.sampled_from(list(Health)))
    def set_health(self, pick: int, health: Health) -> None:
        workers = self.tracker.workers()
        self.tracker.set_health(workers[pick % len(workers)].id, health)

    @invariant()
    def every_task_is_running_once_or_waiting(self) -> None:
        on_workers = {
            task.id: state.id
            for state in self.tracker.workers()
            for task in self.tracker.tasks_on(state.id)
        }
        assert on_workers == {task_id: where for task_id, (_, where) in self.running.items()}
        assert not set(on_workers) & {task.id for task in self.lost}

    @invariant()
    def no_worker_is_over_capacity(self) -> None:
        for state in self.tracker.workers():
            assert state.load.get("slots", 0.0) <= state.capacity["slots"]


TestDispatchMachine = DispatchMachine.TestCase
