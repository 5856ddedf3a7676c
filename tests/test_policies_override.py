"""Manual overrides, escalation and preemption on the Distributor."""

from __future__ import annotations

import pytest
from distributor_support import with_a_probe_out
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    CapacityError,
    CircuitBreaker,
    CircuitState,
    DeadlineScheduler,
    Distributor,
    Escalation,
    Event,
    EventKind,
    ManualClock,
    Pool,
    PoolGate,
    Preemption,
    Priority,
    ResourcePool,
    RetryPolicy,
    Task,
    TaskState,
    TaskStateError,
    UnknownWorkerError,
    Worker,
    WorkerFullError,
)


def two_workers(clock: ManualClock, **kwargs: object) -> tuple[Distributor, list[Event]]:
    events: list[Event] = []
    d = Distributor(clock, lease=None, dedup_window=1e9, on_event=events.append, **kwargs)  # type: ignore[arg-type]
    d.add_worker(Worker("a", capacity=1))
    d.add_worker(Worker("b", capacity=1))
    return d, events


# -- assign, pin, reprioritize -------------------------------------------------------


def test_assign_places_a_queued_task_on_the_named_worker_out_of_turn() -> None:
    d, events = two_workers(ManualClock())
    d.submit(Task("first", priority=1))
    d.submit(Task("second", priority=3))
    assignment = d.assign("second", "b")
    assert (assignment.task.id, assignment.worker_id, assignment.attempt) == ("second", "b", 1)
    assert d.state_of("second") is TaskState.LEASED
    assert [a.task.id for a in d.dispatch()] == ["first"]
    kinds = [e.kind for e in events if e.task_id == "second"]
    assert kinds == [EventKind.SUBMITTED, EventKind.ASSIGNED, EventKind.DISPATCHED]


def test_assign_keeps_capacity_and_the_gates_unless_forced() -> None:
    pool = ResourcePool("db", size=1)
    d, _ = two_workers(ManualClock(), gates=[PoolGate(pool)])
    d.submit(Task("x", resources={"db": 1}))
    d.submit(Task("y", resources={"db": 1}))
    d.submit(Task("z"))
    d.assign("x", "a")
    with pytest.raises(WorkerFullError):
        d.assign("z", "a")  # a is full: capacity holds even when forced
    with pytest.raises(WorkerFullError):
        d.assign("z", "a", force=True)
    with pytest.raises(CapacityError):
        d.assign("y", "b")  # the db pool is spent
    assert d.state_of("y") is TaskState.QUEUED
    d.assign("y", "b", force=True)
    assert pool.in_use == 1  # the forced one took nothing from the pool
    d.complete("y")
    d.complete("x")
    assert pool.in_use == 0


@pytest.mark.parametrize("give_back", ["requeue", "preempt", "cancel"])
def test_a_forced_assignment_given_back_frees_no_half_open_probe(give_back: str) -> None:
    # force=True takes no permit from the worker's breaker: giving its lease back must
    # not free the probe another task holds, or a second probe goes out meanwhile.
    d = with_a_probe_out(ManualClock(), "forced", "later")
    d.assign("forced", "w", force=True)
    getattr(d, give_back)("forced")
    assert [a.task.id for a in d.dispatch()] == []  # the probe is still out
    d.complete("probe")  # the probe succeeded: the breaker closes
    assert "later" in [a.task.id for a in d.dispatch()]


@pytest.mark.parametrize("outcome", ["complete", "fail"])
def test_a_forced_task_is_no_probe_of_a_half_open_breaker(outcome: str) -> None:
    # Its outcome must not decide for the probe: a forced success closing the breaker
    # while the probe is out, or a forced failure opening it again.
    d = with_a_probe_out(ManualClock(), "forced")
    d.assign("forced", "w", force=True)
    if outcome == "complete":
        d.complete("forced")
    else:
        d.fail("forced", error="down", retryable=False)
    assert d.breaker("w").state is CircuitState.HALF_OPEN  # the probe still decides
    d.complete("probe")
    assert d.breaker("w").state is CircuitState.CLOSED


def test_a_task_forced_onto_a_closed_breaker_counts_toward_it() -> None:
    clock = ManualClock()
    d = Distributor(
        clock, lease=None, breaker=lambda _: CircuitBreaker(clock, minimum_calls=1, window_size=1)
    )
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("forced"))
    d.assign("forced", "w", force=True)
    d.fail("forced", error="down", retryable=False)
    assert d.breaker("w").state is CircuitState.OPEN


def _move(breaker: CircuitBreaker, clock: ManualClock, how: str) -> None:
    """End the breaker's closed period ``how``, leaving it CLOSED again."""
    if how == "reset":
        breaker.reset()  # from CLOSED: no listener hears it, but a period ends
    elif how == "tripped, reset":
        breaker.record_failure()
        breaker.reset()
    elif how == "forced open, reset":
        breaker.force_open()
        breaker.reset()
    elif how == "disabled, reset":
        breaker.disable()
        breaker.reset()
    else:  # tripped, then closed by its probe
        breaker.record_failure()
        clock.advance(5.0)
        breaker.record_success(permit=breaker.acquire())
    assert breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize("forced", [False, True], ids=["dispatched", "forced"])
@pytest.mark.parametrize(
    "how",
    ["reset", "tripped, reset", "forced open, reset", "disabled, reset", "tripped, closed"],
)
def test_an_outcome_from_an_ended_closed_period_is_dropped_forced_or_not(
    forced: bool, how: str
) -> None:
    # A task that started while the breaker was CLOSED holds that closed period's
    # permit, whether dispatched or forced. When the period has ended by the time its
    # outcome comes back -- by a reset (even of a closed breaker), or a trip -- the
    # breaker is closed again but in another period: a failure there would trip it
    # at once (one call, 100 %), so it must be dropped, and alike for both. (Within
    # its period it counts: test_a_task_forced_onto_a_closed_breaker_counts_toward_it.)
    clock = ManualClock()
    d = Distributor(
        clock,
        lease=None,
        breaker=lambda _: CircuitBreaker(
            clock, minimum_calls=1, window_size=1, open_duration=5.0, half_open_calls=1
        ),
    )
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("t"))
    if forced:
        d.assign("t", "w", force=True)
    else:
        assert [a.task.id for a in d.dispatch()] == ["t"]
    breaker = d.breaker("w")
    assert breaker is not None
    _move(breaker, clock, how)
    trips = breaker.metrics().trips
    d.fail("t", error="down", retryable=False)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.calls, metrics.trips) == (CircuitState.CLOSED, 0, trips)


def test_assign_refuses_what_is_not_waiting_or_not_there() -> None:
    d, _ = two_workers(ManualClock())
    d.submit(Task("t"))
    with pytest.raises(UnknownWorkerError):
        d.assign("t", "nobody")
    d.assign("t", "a")
    with pytest.raises(TaskStateError):
        d.assign("t", "b")
    assert d.assignment("t").worker_id == "a"


def test_a_pinned_task_waits_for_its_worker() -> None:
    clock = ManualClock()
    d, _ = two_workers(clock)
    d.submit(Task("busy"))
    d.submit(Task("pinned"))
    d.pin("pinned", "a")
    assert [(x.task.id, x.worker_id) for x in d.dispatch()] == [("busy", "a")]
    assert d.state_of("pinned") is TaskState.PARKED
    assert "pinned to worker 'a'" in d.explain("pinned")
    d.complete("busy")
    assert [(x.task.id, x.worker_id) for x in d.dispatch()] == [("pinned", "a")]


def test_unpinning_a_parked_task_lets_it_run_elsewhere() -> None:
    d, _ = two_workers(ManualClock())
    d.submit(Task("busy"))
    d.submit(Task("pinned"))
    d.pin("pinned", "a")
    d.dispatch()
    d.pin("pinned", None)
    assert [(x.task.id, x.worker_id) for x in d.dispatch()] == [("pinned", "b")]


def test_reprioritize_moves_a_queued_task_keeping_its_age() -> None:
    clock = ManualClock()
    d, _ = two_workers(clock)
    d.remove_worker("b")
    d.submit(Task("blocker"))
    d.dispatch()
    d.submit(Task("low", priority=4))
    clock.set(5.0)
    d.submit(Task("high", priority=1))
    changed = d.reprioritize("low", 0)
    assert changed.priority == 0 and changed.id == "low"
    d.complete("blocker")
    assert [x.task.id for x in d.dispatch()] == ["low"]
    assert d.stats().wait.max == pytest.approx(5.0)  # its age was kept


def test_reprioritize_of_a_leased_task_is_refused() -> None:
    d, _ = two_workers(ManualClock())
    d.submit(Task("t"))
    d.dispatch()
    with pytest.raises(TaskStateError):
        d.reprioritize("t", 0)


# -- escalation ------------------------------------------------------------------------


def test_a_waiting_task_is_raised_when_it_crosses_its_threshold() -> None:
    clock = ManualClock()
    d, events = two_workers(clock, escalation=Escalation(after={3: 60.0, 2: 30.0}))
    d.remove_worker("b")
    d.submit(Task("hog"))
    d.dispatch()
    d.submit(Task("t", priority=3))
    assert d.next_wakeup() == 60.0
    clock.set(59.9)
    d.tick()
    assert not [e for e in events if e.kind is EventKind.ESCALATED]
    clock.set(60.0)
    d.tick()
    clock.set(90.0)
    d.tick()
    clock.set(1000.0)
    d.tick()
    steps = [(e.time, e.detail) for e in events if e.kind is EventKind.ESCALATED]
    assert steps == [(60.0, "priority 3 -> 2"), (90.0, "priority 2 -> 1")]  # HIGH is the ceiling


def test_escalation_can_send_a_task_to_a_pool() -> None:
    clock = ManualClock()
    rule = Escalation(after=10.0, to=Pool("reserve", workers={"b"}))
    d, _ = two_workers(clock, escalation=rule)
    d.remove_worker("b")
    d.add_worker(Worker("b", capacity=1, skills={"spare"}))
    d.submit(Task("hog", requires={"spare"}))
    d.dispatch()  # hog on b
    d.submit(Task("t", priority=3))
    d.submit(Task("u", priority=3))
    d.dispatch()  # t on a, u waits
    clock.set(10.0)
    d.tick()
    assert "escalated to pool 'reserve'" in d.explain("u")
    d.complete("t")
    assert d.dispatch() == []  # a is free, but u may now run only in the reserve pool
    d.complete("hog")
    assert [(x.task.id, x.worker_id) for x in d.dispatch()] == [("u", "b")]


def test_an_escalation_to_a_pool_is_said_before_the_move_that_ends_the_task() -> None:
    clock = ManualClock()
    events: list[Event] = []
    rule = Escalation(after=5.0, to=Pool("reserve", workers={"b"}))
    queue = DeadlineScheduler(clock, on_miss="dead_letter")
    d = Distributor(clock, queue=queue, lease=None, escalation=rule, on_event=events.append)
    d.add_worker(Worker("a", capacity=1))
    d.submit(Task("t", priority=4, deadline=5.0, requires={"gpu"}))
    d.dispatch()  # parked: no worker has the skill
    clock.set(5.0)
    d.tick()  # escalated, sent to its pool: the queue refuses it back, its deadline passed
    said = [(e.kind, e.state) for e in events if e.task_id == "t"][-2:]
    assert said == [
        (EventKind.ESCALATED, TaskState.PARKED),
        (EventKind.DEAD_LETTERED, TaskState.DEAD),
    ]


def test_a_parked_task_made_critical_gets_preemption_advice() -> None:
    # Parked while its pool is full (other workers have room), at a priority that calls
    # for no preemption: made CRITICAL, it is asked again, and its victims are named.
    clock = ManualClock()
    advice: list[tuple[object, tuple[object, ...]]] = []
    d = Distributor(
        clock,
        lease=None,
        preemption=Preemption(),
        on_event=lambda e: (
            advice.append((e.task_id, e.victims)) if e.kind is EventKind.PREEMPT else None
        ),
    )
    d.add_worker(Worker("gpu", capacity=1, skills={"gpu"}))
    d.add_worker(Worker("cpu", capacity=4))
    d.submit(Task("batch", priority=4, requires={"gpu"}))
    d.dispatch()
    d.submit(Task("page", priority=3, requires={"gpu"}))
    assert d.dispatch() == [] and d.state_of("page") is TaskState.PARKED
    assert advice == []
    d.reprioritize("page", Priority.CRITICAL)
    assert d.dispatch() == []
    assert advice == [("page", ("batch",))]


def test_a_task_dispatched_before_its_threshold_does_not_escalate() -> None:
    clock = ManualClock()
    d, events = two_workers(clock, escalation=Escalation(after=5.0))
    d.submit(Task("t", priority=3))
    clock.set(1.0)
    d.dispatch()
    clock.set(100.0)
    d.tick()
    assert not [e for e in events if e.kind is EventKind.ESCALATED]


def stepped_then_failed(
    escalation: Escalation, priority: int, delay: float, times: tuple[float, float, float]
) -> tuple[Distributor, ManualClock, list[Event]]:
    """Task "a" waits until ``times[0]`` (a tick: its step), runs from ``times[1]`` and
    fails at ``times[2]`` (a retry ``delay`` later); "busy" then holds the one worker."""
    clock = ManualClock()
    events: list[Event] = []
    d = Distributor(
        clock,
        lease=None,
        retry=RetryPolicy(max_attempts=5, base=delay, cap=max(delay, 1.0), jitter="none"),
        escalation=escalation,
        on_event=events.append,
    )
    d.submit(Task("a", priority=priority))
    stepped, started, failed = times
    clock.set(stepped)
    d.tick()
    clock.set(started)
    d.add_worker(Worker("w"))
    d.dispatch()
    clock.set(failed)
    d.fail("a", error="boom")
    d.submit(Task("busy", priority=0))
    return d, clock, events


def test_time_spent_running_after_an_escalation_is_not_waiting() -> None:
    # Raised 4 -> 3 at 3 s, it ran from 3.5 s to 50 s and failed: the next step was timed
    # from the first step's time, so it came at once when it waited again, after 0.5 s
    # of waiting at priority 3 where 5 s are allowed.
    rule = Escalation(after={4: 3.0, 3: 5.0})
    d, clock, events = stepped_then_failed(rule, 4, 1.0, (3.0, 3.5, 50.0))
    clock.set(51.0)  # its retry, the worker busy
    d.tick()
    assert [a.task.id for a in d.dispatch()] == ["busy"]
    escalated = [(e.time, e.detail) for e in events if e.kind is EventKind.ESCALATED]
    assert escalated == [(3.0, "priority 4 -> 3")]
    # 0.5 s waited at priority 3 before the run, 1 s of retry delay (waiting too): the
    # 3.5 s left of its 5 s end at 54.5 s.
    assert d.next_wakeup() == 54.5
    clock.set(54.5)
    d.tick()
    escalated = [(e.time, e.detail) for e in events if e.kind is EventKind.ESCALATED]
    assert escalated[-1] == (54.5, "priority 3 -> 2")


@pytest.mark.parametrize("delay", [1.0, 5.0, 8.0])
def test_a_retry_delay_counts_as_waiting_whenever_it_ends(delay: float) -> None:
    # Stepped at 10 s of waiting, run from 13 s to 17 s, failed: its next step is 7 s of
    # waiting later, at 24 s, whether its retry comes before then or not (the step was
    # timed 25 to 30 s by a retry that ended first, 24 s by one that did not).
    rule = Escalation(after=10.0, ceiling=0)
    d, clock, events = stepped_then_failed(rule, 6, delay, (10.0, 13.0, 17.0))
    d.dispatch()
    while (wake := d.next_wakeup()) is not None and wake <= 30.0:
        clock.set(wake)
        d.tick()
    assert [e.time for e in events if e.kind is EventKind.ESCALATED] == [10.0, 24.0]


def test_reprioritize_times_escalation_for_the_new_priority() -> None:
    # Made CRITICAL by the host, a task still took its old step ("priority 0 -> 0"), and
    # with `to=` was confined to the on-call pool; made background, it never escalated.
    clock = ManualClock()
    events: list[Event] = []
    oncall = Pool("oncall", skills={"oncall"})
    d = Distributor(
        clock,
        lease=None,
        escalation=Escalation(after={4: 3.0, 3: 5.0}, to=oncall),
        on_event=events.append,
    )
    d.submit(Task("a", priority=4))
    d.submit(Task("b", priority=2))
    clock.set(1.0)
    d.reprioritize("a", Priority.CRITICAL)
    d.reprioritize("b", 4)
    assert d.next_wakeup() == 4.0  # b: 3 s at priority 4, from the change
    clock.set(4.0)
    d.tick()
    escalated = [(e.time, e.task_id, e.detail) for e in events if e.kind is EventKind.ESCALATED]
    assert escalated == [(4.0, "b", "priority 4 -> 3")]
    d.add_worker(Worker("w", capacity=2))
    assert [a.task.id for a in d.dispatch()] == ["a"]  # a runs anywhere; b is on call


@given(
    priority=st.integers(2, 6),
    waits=st.lists(st.floats(1.0, 50.0), min_size=1, max_size=6),
)
def test_escalation_steps_happen_once_each_exactly_at_the_threshold(
    priority: int, waits: list[float]
) -> None:
    clock = ManualClock()
    thresholds = {p: 10.0 * p for p in range(2, 7)}
    d, events = two_workers(clock, escalation=Escalation(after=thresholds))
    d.remove_worker("a")
    d.remove_worker("b")
    d.submit(Task("t", priority=priority))
    for wait in waits:
        until = clock.now() + wait
        # A host: awake at every next_wakeup() on the way, and at the end.
        while (wake := d.next_wakeup()) is not None and wake <= until:
            clock.set(wake)
            d.tick()
        clock.set(until)
        d.tick()
    steps = [e for e in events if e.kind is EventKind.ESCALATED]
    expected, at, level = [], 0.0, priority
    while level > Priority.HIGH and at + thresholds[level] <= clock.now():
        at += thresholds[level]
        expected.append((at, f"priority {level} -> {level - 1}"))
        level -= 1
    assert [(e.time, e.detail) for e in steps] == [
        (pytest.approx(t), detail) for t, detail in expected
    ]


# -- preemption ------------------------------------------------------------------------


def test_a_critical_task_that_finds_no_room_names_victims() -> None:
    clock = ManualClock()
    d, events = two_workers(clock, preemption=Preemption())
    d.submit(Task("report", priority=3))
    d.submit(Task("batch", priority=4))
    d.dispatch()
    clock.set(2.0)
    d.submit(Task("page", priority=Priority.CRITICAL))
    d.dispatch()
    advice = [e for e in events if e.kind is EventKind.PREEMPT]
    assert len(advice) == 1 and advice[0].task_id == "page"
    assert advice[0].victims == ("batch", "report")
    d.preempt("batch")
    assert [(x.task.id, x.worker_id) for x in d.dispatch()] == [("page", "b")]
    assert d.state_of("batch") is TaskState.QUEUED  # back, waiting for room
    assert EventKind.PREEMPTED in [e.kind for e in events]


def test_preempting_spends_no_attempt_and_keeps_the_age() -> None:
    clock = ManualClock()
    d, _ = two_workers(clock, preemption=Preemption())
    d.submit(Task("victim", priority=4, max_attempts=1))
    d.dispatch()
    d.preempt("victim")
    d.dispatch()
    d.fail("victim", error="real")  # its one attempt is still there to spend
    assert d.state_of("victim") is TaskState.DEAD


def test_non_preemptible_and_critical_tasks_are_never_offered() -> None:
    clock = ManualClock()
    d, events = two_workers(clock, preemption=Preemption())
    d.submit(Task("keep", priority=4, preemptible=False))
    d.submit(Task("also critical", priority=Priority.CRITICAL))
    d.dispatch()
    d.submit(Task("page", priority=Priority.CRITICAL))
    d.dispatch()
    assert not [e for e in events if e.kind is EventKind.PREEMPT]


def test_with_a_deadline_scheduler_its_advice_decides() -> None:
    clock = ManualClock()
    queue = DeadlineScheduler(clock, servers=2)
    d, events = two_workers(clock, queue=queue, preemption=Preemption())
    d.submit(Task("slow", priority=3, cost=100.0, deadline=1000.0))
    d.submit(Task("other", priority=3, cost=100.0, deadline=1000.0))
    d.dispatch()
    d.submit(Task("urgent", priority=2, cost=5.0, deadline=20.0))
    d.dispatch()
    advice = [e for e in events if e.kind is EventKind.PREEMPT]
    assert advice and set(advice[0].victims) <= {"slow", "other"}


def test_a_breaker_does_not_hide_the_urgent_task() -> None:
    clock = ManualClock()
    d, events = two_workers(clock, preemption=Preemption(), breaker=lambda _: CircuitBreaker(clock))
    d.submit(Task("low", priority=4))
    d.dispatch()
    clock.set(1.0)
    d.submit(Task("low2", priority=4))
    d.dispatch()
    d.submit(Task("page", priority=0))
    d.dispatch()
    assert [e.victims for e in events if e.kind is EventKind.PREEMPT] == [("low2", "low")]


def test_an_escalation_due_after_a_queued_task_missed_its_deadline_runs_it_late() -> None:
    # Escalating a queued task takes it out of the queue and puts it back with its age;
    # under run_late the deadline scheduler keeps it, late, as it kept it while it waited
    # (it used to refuse it back and the task was dead-lettered).
    clock = ManualClock()
    queue = DeadlineScheduler(clock)
    d = Distributor(clock, queue=queue, escalation=Escalation(after=10.0))
    d.submit(Task("late", priority=3, deadline=5.0))
    clock.advance(11.0)
    d.tick()
    assert d.state_of("late") is TaskState.QUEUED and queue.is_late("late")
    assert not d.dlq
    d.add_worker(Worker("w"))
    [placed] = d.dispatch()
    assert placed.task.id == "late" and placed.task.priority < 3


def test_reprioritizing_a_task_whose_deadline_passed_while_queued_keeps_it_late() -> None:
    # Under run_late the task waits on, late, at its new priority (the scheduler used to
    # refuse it back, and raising a late task's priority dead-lettered it).
    clock = ManualClock()
    queue = DeadlineScheduler(clock)
    d = Distributor(clock, queue=queue)
    d.submit(Task("late", priority=3, deadline=5.0))
    clock.advance(6.0)
    assert d.reprioritize("late", 1).priority == 1
    assert d.state_of("late") is TaskState.QUEUED and queue.is_late("late")
    assert not d.dlq


def test_reprioritizing_a_task_whose_deadline_passed_while_queued_is_refused() -> None:
    # Under dead_letter the scheduler has the task due to expire: it refuses it back.
    clock = ManualClock()
    d = Distributor(clock, queue=DeadlineScheduler(clock, on_miss="dead_letter"))
    d.submit(Task("late", priority=3, deadline=5.0))
    clock.advance(6.0)
    with pytest.raises(TaskStateError, match="dead-lettered"):
        d.reprioritize("late", 1)
    assert d.state_of("late") is TaskState.DEAD
