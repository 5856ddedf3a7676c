"""Affinity and ZoneAware: balancers that wrap another one."""

from __future__ import annotations

import pytest
from balancing_support import build_tracker, uniform_tracker
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from taskdist import (
    Affinity,
    CapacityTracker,
    ConsistentHash,
    DegradedPolicy,
    Health,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    RoundRobin,
    Spill,
    Task,
    UnknownError,
    UnknownPolicyError,
    Worker,
    WorkerState,
    ZoneAware,
)

# -- Affinity ---------------------------------------------------------------------


class AffinityMachine(RuleBasedStateMachine):
    """Keys stay on their worker while it is a candidate, through any other activity.

    The fallback is round-robin, so without affinity consecutive tasks of a
    key would move around.
    """

    @initialize()
    def setup(self) -> None:
        self.tracker = uniform_tracker(4, capacity=3)
        self.balancer = Affinity(fallback=RoundRobin())
        self.home: dict[str, str] = {}
        self.running: list[tuple[Task, str]] = []
        self.next_task = 0

    @rule(key=st.sampled_from(["a", "b", "c", "d", "e"]))
    def submit(self, key: str) -> None:
        task = Task(self.next_task, key=key)
        self.next_task += 1
        pool = self.tracker.candidates(task)
        chosen = self.balancer.select(task, pool)
        if key in self.home and any(w.id == self.home[key] for w in pool):
            assert chosen is not None and chosen.id == self.home[key]
        if chosen is None:
            return
        self.home.setdefault(key, chosen.id)  # the first placement binds
        self.tracker.assign(task, chosen.id)
        self.running.append((task, chosen.id))

    @rule(pick=st.integers(0, 100))
    def complete(self, pick: int) -> None:
        if self.running:
            task, worker_id = self.running.pop(pick % len(self.running))
            self.tracker.release(task, worker_id)

    @rule(worker=st.sampled_from(["w0", "w1", "w2", "w3"]), health=st.sampled_from(list(Health)))
    def set_health(self, worker: str, health: Health) -> None:
        self.tracker.set_health(worker, health)

    @invariant()
    def bindings_never_move_while_workers_stay(self) -> None:
        for key, home in self.home.items():
            assert self.balancer.preferred(key) == home


TestAffinityMachine = AffinityMachine.TestCase


def test_affinity_falls_back_without_rebinding_and_returns_home() -> None:
    tracker = uniform_tracker(3, capacity=1)
    sticky = Affinity(fallback=RoundRobin())
    home = sticky.select(Task(1, key="k"), tracker.candidates(Task(1))).id
    tracker.assign(Task(1), home)  # home is now full
    elsewhere = sticky.select(Task(2, key="k"), tracker.candidates(Task(2)))
    assert elsewhere.id != home and sticky.preferred("k") == home
    tracker.release(Task(1), home)
    assert sticky.select(Task(3, key="k"), tracker.candidates(Task(3))).id == home


def test_affinity_forgets_keys_of_a_removed_worker() -> None:
    tracker = uniform_tracker(2)
    sticky = Affinity()
    home = sticky.select(Task(1, key="k"), tracker.candidates(Task(1))).id
    sticky.on_worker_removed(home)
    assert sticky.preferred("k") is None and len(sticky) == 0


def test_affinity_keeps_at_most_max_keys_least_recently_used_first() -> None:
    tracker = uniform_tracker(2)
    sticky = Affinity(max_keys=2)
    pool = tracker.candidates(Task("t"))
    for key in ("a", "b"):
        sticky.select(Task(key, key=key), pool)
    sticky.select(Task("a2", key="a"), pool)  # "a" is used again: "b" is now oldest
    sticky.select(Task("c", key="c"), pool)
    assert len(sticky) == 2
    assert sticky.preferred("b") is None
    assert sticky.preferred("a") is not None and sticky.preferred("c") is not None


def test_affinity_manual_bind_and_unbind() -> None:
    tracker = uniform_tracker(3)
    sticky = Affinity(fallback=ConsistentHash())
    sticky.bind("vip", "w2")
    assert sticky.select(Task(1, key="vip"), tracker.candidates(Task(1))).id == "w2"
    assert sticky.unbind("vip") == "w2"
    with pytest.raises(UnknownError):
        sticky.unbind("vip")
    with pytest.raises(InvalidArgumentError):
        sticky.bind("vip", None)
    with pytest.raises(InvalidTypeError):
        sticky.bind(["unhashable"], "w1")
    assert sticky.preferred("vip") is None
    assert "Affinity(fallback=ConsistentHash(" in repr(sticky)


def test_affinity_without_a_key_is_the_fallback() -> None:
    tracker = uniform_tracker(3)
    sticky = Affinity(fallback=RoundRobin())
    pool = tracker.candidates(Task("t"))
    assert [sticky.select(Task(i), pool).id for i in range(3)] == ["w0", "w1", "w2"]
    assert len(sticky) == 0 and isinstance(sticky.fallback, RoundRobin)


def test_affinity_refuses_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError):
        Affinity(max_keys=0)


# -- ZoneAware ------------------------------------------------------------------------


def zoned_tracker(eu_loads: tuple[int, ...] = (0, 0)) -> CapacityTracker:
    specs = [(10, 1.0, "eu", frozenset(), None, 0.0)] * len(eu_loads)
    specs += [(10, 1.0, "us", frozenset(), None, 0.0)] * 2
    return build_tracker(specs, list(eu_loads))


@given(st.lists(st.integers(0, 10), min_size=1, max_size=4), st.sampled_from(["eu", "us", "ap"]))
def test_zone_aware_stays_local_while_a_local_worker_has_room(
    eu_loads: list[int], zone: str
) -> None:
    tracker = zoned_tracker(tuple(eu_loads))
    task = Task("t", zone=zone)
    pool = tracker.candidates(task)
    chosen = ZoneAware().select(task, pool)
    local = [w for w in pool if w.zone == zone]
    assert chosen is not None
    assert (chosen.zone == zone) == bool(local)


def test_zone_aware_when_loaded_spills_before_the_zone_is_full() -> None:
    tracker = zoned_tracker((8, 9))  # eu at 80 % and 90 %
    task = Task("t", zone="eu")
    pool = tracker.candidates(task)
    assert ZoneAware().select(task, pool).zone == "eu"
    assert ZoneAware(spill="when_loaded", threshold=0.8).select(task, pool).zone == "us"
    assert ZoneAware(spill="when_loaded", threshold=0.85).select(task, pool).id == "w0"


def test_zone_aware_never_leaves_the_zone() -> None:
    tracker = zoned_tracker((10, 10))
    task = Task("t", zone="eu")
    assert ZoneAware(spill="never").select(task, tracker.candidates(task)) is None
    assert ZoneAware().select(task, tracker.candidates(task)).zone == "us"


def test_zone_aware_uses_its_own_zone_for_tasks_without_one() -> None:
    tracker = zoned_tracker()
    pool = tracker.candidates(Task("t"))
    assert ZoneAware(zone="us").select(Task("t"), pool).zone == "us"
    assert ZoneAware().select(Task("t"), pool).id == "w0"  # no zone anywhere: all workers
    assert ZoneAware(zone="us").select(Task("t", zone="eu"), pool).zone == "eu"


def test_zone_aware_refuses_bad_arguments() -> None:
    with pytest.raises(UnknownPolicyError):
        ZoneAware(spill="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        ZoneAware(threshold=1.5)
    with pytest.raises(TypeError):
        ZoneAware(zone=3)  # type: ignore[arg-type]
    assert "spill='when_empty'" in repr(ZoneAware())
    tracker = CapacityTracker(ManualClock())
    tracker.add_worker(Worker("w"))
    assert isinstance(ZoneAware(inner=RoundRobin()).inner, RoundRobin)


@settings(max_examples=max(20, settings.default.max_examples // 2))
@given(
    workers=st.lists(
        st.tuples(
            st.sampled_from(["eu", "us", None]),
            st.sampled_from(list(Health)),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=10,
    ),
    policy=st.sampled_from(["fallback", "include", "exclude"]),
    spill=st.sampled_from(["when_empty", "when_loaded", "never"]),
    banned=st.sets(st.integers(0, 9)),
    zones=st.lists(st.sampled_from(["eu", "us", None]), min_size=1, max_size=12),
)
def test_zone_aware_choose_is_select_over_the_candidates(
    workers: list[tuple[str | None, Health, int]],
    policy: DegradedPolicy,
    spill: Spill,
    banned: set[int],
    zones: list[str | None],
) -> None:
    tracker = CapacityTracker(ManualClock(), degraded=policy)
    for i, (zone, health, _) in enumerate(workers):
        tracker.add_worker(Worker(i, capacity=3, zone=zone))
        tracker.set_health(i, health)
    for i, (_, health, load) in enumerate(workers):
        for j in range(load if health is not Health.UNAVAILABLE else 0):
            tracker.assign(Task((i, j)), i)
    balancer = ZoneAware(spill=spill)

    def where(worker: WorkerState) -> bool:
        return worker.id not in banned

    for n, zone in enumerate(zones):
        task = Task(("t", n), zone=zone)
        expected = balancer.select(task, tracker.candidates(task, where))
        assert balancer.choose(task, tracker, where) is expected
        if expected is not None:
            tracker.assign(task, expected.id)


@settings(max_examples=max(20, settings.default.max_examples // 2))
@given(
    workers=st.lists(
        st.tuples(st.sampled_from(list(Health)), st.integers(0, 3)), min_size=1, max_size=8
    ),
    policy=st.sampled_from(["fallback", "include", "exclude"]),
    banned=st.sets(st.integers(0, 7)),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["k1", "k2", "k3", None]),
            st.integers(0, 7),
            st.sampled_from([None, *Health]),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_affinity_choose_is_select_over_the_candidates(
    workers: list[tuple[Health, int]],
    policy: DegradedPolicy,
    banned: set[int],
    steps: list[tuple[str | None, int, Health | None]],
) -> None:
    tracker = CapacityTracker(ManualClock(), degraded=policy)
    for i, (health, load) in enumerate(workers):
        tracker.add_worker(Worker(i, capacity=4))
        for j in range(load):
            tracker.assign(Task((i, j)), i)
        tracker.set_health(i, health)
    by_select, by_choose = Affinity(max_keys=2), Affinity(max_keys=2)

    def where(worker: WorkerState) -> bool:
        return worker.id not in banned

    for n, (key, worker, health) in enumerate(steps):
        if health is not None and worker < len(workers):
            tracker.set_health(worker, health)  # the bound worker may go down or come back
        task = Task(("t", n), key=key)
        expected = by_select.select(task, tracker.candidates(task, where))
        assert by_choose.choose(task, tracker, where) is expected
        assert list(by_choose._bound.items()) == list(by_select._bound.items())
        if expected is not None:
            tracker.assign(task, expected.id)


@pytest.mark.parametrize(("policy", "home"), [("fallback", False), ("include", True)])
def test_affinity_choose_leaves_a_degraded_home_only_while_a_healthy_worker_can_run_it(
    policy: DegradedPolicy, home: bool
) -> None:
    tracker = CapacityTracker(ManualClock(), degraded=policy)
    tracker.add_worker(Worker("a", capacity=4))
    tracker.add_worker(Worker("b", capacity=4))
    sticky = Affinity()
    bound = sticky.choose(Task(1, key="k"), tracker)
    assert bound is not None
    tracker.set_health(bound.id, Health.DEGRADED)
    chosen = sticky.choose(Task(2, key="k"), tracker)
    assert (chosen is bound) is home
    tracker.set_health("b" if bound.id == "a" else "a", Health.UNAVAILABLE)
    assert sticky.choose(Task(3, key="k"), tracker) is bound  # no healthy one left
