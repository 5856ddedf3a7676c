"""Routing rules and fallback chains: which pool a task may use, and when it moves on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    CircuitBreaker,
    Distributor,
    Event,
    EventKind,
    InvalidArgumentError,
    InvalidTypeError,
    LeastConnections,
    ManualClock,
    Pool,
    RoundRobin,
    Route,
    Step,
    Task,
    TaskState,
    Worker,
    WorkerState,
)


def gpu_first(clock: ManualClock, **kwargs: object) -> Distributor:
    routes = [
        Route(
            when=lambda t: t.group == "render",
            to=[Pool("gpu", skills={"gpu"}), Step(Pool("cpu", skills={"cpu"}), after=30.0)],
            name="render",
        ),
        Route(Pool("cpu", skills={"cpu"}), name="default"),
    ]
    d = Distributor(clock, routes=routes, lease=None, **kwargs)  # type: ignore[arg-type]
    d.add_worker(Worker("gpu-1", capacity=1, skills={"gpu"}))
    d.add_worker(Worker("cpu-1", capacity=2, skills={"cpu"}))
    return d


def test_the_first_matching_route_decides_the_pool() -> None:
    d = gpu_first(ManualClock())
    d.submit(Task("r", group="render"))
    d.submit(Task("plain"))
    placed = {a.task.id: a.worker_id for a in d.dispatch()}
    assert placed == {"r": "gpu-1", "plain": "cpu-1"}


def test_a_task_no_route_matches_may_use_any_worker() -> None:
    clock = ManualClock()
    d = Distributor(clock, routes=[Route(Pool(skills={"gpu"}), when=lambda t: t.group == "r")])
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("free"))
    assert [a.worker_id for a in d.dispatch()] == ["w"]


def test_explain_names_the_rule_and_the_pool() -> None:
    clock = ManualClock()
    d = gpu_first(clock)
    d.submit(Task("r1", group="render"))
    d.submit(Task("r2", group="render"))
    d.dispatch()
    said = d.explain("r2")
    assert said.startswith("parked:")
    assert "route 'render', pool 'gpu'" in said
    assert "full (1 of them)" in said
    assert "falls back to its next pool at 30" in said
    assert "route 'render'" in d.explain("r1")


def test_a_route_balancer_places_its_tasks() -> None:
    clock = ManualClock()
    spread = RoundRobin()
    d = Distributor(clock, routes=[Route(Pool(), balancer=spread, name="all")])
    for name in "abc":
        d.add_worker(Worker(name, capacity=3))
    for i in range(3):
        d.submit(Task(i))
    assert sorted(a.worker_id for a in d.dispatch()) == ["a", "b", "c"]


def test_a_task_falls_back_after_the_step_wait_and_not_before() -> None:
    clock = ManualClock()
    events: list[Event] = []
    d = gpu_first(clock, on_event=events.append)
    d.submit(Task("r1", group="render"))
    d.submit(Task("r2", group="render"))
    d.dispatch()
    assert d.state_of("r2") is TaskState.PARKED
    clock.set(29.9)
    assert d.dispatch() == []
    assert d.next_wakeup() == 30.0
    clock.set(30.0)
    placed = d.dispatch()
    assert [(a.task.id, a.worker_id) for a in placed] == [("r2", "cpu-1")]
    # A listener that follows state changes by kind sees the task leave the lot.
    assert [e.kind for e in events if e.task_id == "r2"] == [
        EventKind.SUBMITTED,
        EventKind.PARKED,
        EventKind.UNPARKED,
        EventKind.REROUTED,
        EventKind.DISPATCHED,
    ]


def test_a_task_that_finds_room_before_the_wait_stays_in_its_pool() -> None:
    clock = ManualClock()
    d = gpu_first(clock)
    d.submit(Task("r1", group="render"))
    d.submit(Task("r2", group="render"))
    d.dispatch()
    clock.set(10.0)
    d.complete("r1")
    assert [(a.task.id, a.worker_id) for a in d.dispatch()] == [("r2", "gpu-1")]
    clock.set(40.0)
    d.tick()
    assert d.assignment("r2").worker_id == "gpu-1"


def test_a_pool_whose_breakers_are_all_open_is_left_at_once() -> None:
    clock = ManualClock()
    d = gpu_first(clock, breaker=lambda _: CircuitBreaker(clock, minimum_calls=1, window_size=1))
    d.submit(Task("r0", group="render"))
    d.dispatch()
    d.fail("r0", error="boom", retryable=False)  # gpu-1's breaker opens
    assert d.breaker("gpu-1").state.value == "open"  # type: ignore[union-attr]
    d.submit(Task("r1", group="render"))
    d.dispatch()  # parked: gpu-1 has room, behind an open breaker
    placed = d.dispatch()  # the step timer is due at once
    assert [(a.task.id, a.worker_id) for a in placed] == [("r1", "cpu-1")]


def test_routes_refuse_what_they_cannot_use() -> None:
    with pytest.raises(InvalidTypeError):
        Route(to="gpu")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        Route(to=[])
    with pytest.raises(InvalidTypeError):
        Pool(skills="gpu")
    with pytest.raises(InvalidArgumentError):
        Step(Pool(), after=-1.0)
    with pytest.raises(InvalidTypeError):
        Distributor(ManualClock(), routes=[Pool()])  # type: ignore[list-item]


@given(
    arrivals=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=25),
    work=st.floats(1.0, 80.0),
    wait=st.sampled_from([0.0, 5.0, 30.0]),
)
def test_no_task_sits_in_a_full_pool_longer_than_its_step_wait(
    arrivals: list[float], work: float, wait: float
) -> None:
    """Fallback's promise: a task parked in a pool without room moves on by its wait."""
    clock = ManualClock()
    routes = [Route([Pool("small", workers={"s"}), Step(Pool("big", workers={"b"}), after=wait)])]
    d = Distributor(clock, routes=routes, lease=None, dedup_window=1e9)
    d.add_worker(Worker("s", capacity=1))
    d.add_worker(Worker("b", capacity=100))
    parked_at: dict[object, float] = {}
    finishes: list[tuple[float, object]] = []
    pending = sorted(arrivals)
    submitted = 0
    while pending or finishes or len(d):
        moments = [m for m in (pending[:1] + [f for f, _ in finishes[:1]]) if m is not None]
        wake = d.next_wakeup()
        if wake is not None:
            moments.append(wake)
        if not moments:
            break
        clock.set(max(clock.now(), min(moments)))
        moment = clock.now()
        while finishes and finishes[0][0] <= moment:
            d.complete(finishes.pop(0)[1])
        while pending and pending[0] <= moment:
            pending.pop(0)
            d.submit(Task(submitted))
            submitted += 1
        for assignment in d.dispatch():
            finishes.append((moment + work, assignment.task.id))
            finishes.sort(key=lambda pair: pair[0])
            parked_at.pop(assignment.task.id, None)
        for task_id in range(submitted):
            if d.state_of(task_id) is TaskState.PARKED:
                parked_at.setdefault(task_id, moment)
                # A parked task leaves its full pool by its step's wait (at the
                # dispatch at that moment, which the host makes at next_wakeup).
                assert moment - parked_at[task_id] <= wait + 1e-9


class RefusesOnGpu(LeastConnections):
    """A balancer whose ``on_assign`` hook raises when a task lands on ``gpu-1``."""

    def on_assign(self, task: Task, worker: WorkerState) -> None:
        if worker.id == "gpu-1":
            raise RuntimeError("on_assign failed")
        super().on_assign(task, worker)


def test_a_lease_taken_back_keeps_its_tasks_step_timed_as_before() -> None:
    # r2 waits in the gpu pool until 30, then falls back to cpu. Leased on the gpu at
    # 10 and taken back (the hook raised), it still falls back at 30, not 30 s after
    # it is parked again.
    clock = ManualClock()
    d = gpu_first(clock, balancer=RefusesOnGpu())
    d.submit(Task("r2", group="render"))
    d.update_worker("gpu-1", capacity=0)
    assert d.dispatch() == [] and d.state_of("r2") is TaskState.PARKED
    assert d.next_wakeup() == 30.0
    clock.set(10.0)
    d.update_worker("gpu-1", capacity=1)
    with pytest.raises(RuntimeError, match="on_assign failed"):
        d.dispatch()
    assert d.state_of("r2") is TaskState.QUEUED
    assert d.next_wakeup() == 30.0
    clock.set(30.0)
    d.update_worker("gpu-1", capacity=0)  # (the hook would raise again there)
    assert [(a.task.id, a.worker_id) for a in d.dispatch()] == [("r2", "cpu-1")]
