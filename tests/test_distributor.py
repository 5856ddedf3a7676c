"""The Distributor, one behaviour per test: what its docs and its issue promise.

Each test names the behaviour it pins and drives a Distributor on a
ManualClock through the public API only (``tests/distributor_support.py``
records the events and spies on the seams). A test marked ``xfail`` shows a
behaviour the code does not have yet; its reason says what is wrong.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from collections.abc import Callable, Hashable
from typing import Any

import attrs
import pytest
from distributor_support import (
    Recorded,
    SpyBalancer,
    SpyQueue,
    assignment_view,
    build,
    comparable,
    final_events,
    stats_view,
)
from hypothesis import event, example, given, target
from hypothesis import strategies as st

from taskdist import (
    AttemptRecord,
    CapacityTracker,
    CircuitBreaker,
    CircuitState,
    ClosedError,
    DeadLetterQueue,
    DeadlineError,
    DeadlineScheduler,
    Distributor,
    Event,
    EventKind,
    FairScheduler,
    Health,
    InvalidArgumentError,
    InvalidTypeError,
    LeastConnections,
    ManualClock,
    OutlierEjection,
    PoolGate,
    PowerOfTwoChoices,
    PriorityQueue,
    QueueFullError,
    Quota,
    RateGate,
    RateLimiter,
    Reason,
    ReentrancyError,
    ResourcePool,
    RetryPolicy,
    SnapshotError,
    SubmitResult,
    Task,
    TaskState,
    TaskStateError,
    UnknownTaskError,
    UnsatisfiableDemandError,
    Worker,
    WorkerState,
)

QUEUED, PARKED, RETRYING, LEASED = (
    TaskState.QUEUED,
    TaskState.PARKED,
    TaskState.RETRYING,
    TaskState.LEASED,
)
COMPLETED, DEAD, CANCELLED = TaskState.COMPLETED, TaskState.DEAD, TaskState.CANCELLED

# Side-effect-free queries of the components, which some behaviours need (their tests
# are expected to fail where the components do not have them yet).


def no_jitter(max_attempts: int = 3, base: float = 1.0) -> RetryPolicy:
    """A retry policy whose delays are exact: base, 2 base, 4 base, ..."""
    return RetryPolicy(max_attempts=max_attempts, base=base, cap=100.0, jitter="none")


def breaker_factory(clock: ManualClock, **options: float) -> Callable[[Hashable], CircuitBreaker]:
    """Breakers that open on the first failure, for 5 s, with one half-open probe."""
    settings = {"minimum_calls": 1, "window_size": 1, "open_duration": 5.0, "half_open_calls": 1}
    settings.update(options)
    return lambda _: CircuitBreaker(clock, **settings)  # type: ignore[arg-type]


def trip_a_breaker(run: Recorded, tenant: Hashable = None) -> Hashable:
    """Run one task and fail it for good, which opens its worker's breaker (see
    ``breaker_factory``); return that worker's id."""
    run.d.submit(Task("bad", tenant=tenant))
    [assignment] = run.d.dispatch()
    run.d.fail("bad", error=RuntimeError("boom"), retryable=False)
    return assignment.worker_id


# -- defaults --------------------------------------------------------------------------


def test_the_five_line_host_runs_a_task_with_every_default() -> None:
    clock = ManualClock()
    d = Distributor(clock)
    d.add_worker(Worker("agent-1", capacity=2))
    assert d.submit(Task("summarise-42")) == SubmitResult("summarise-42", True, QUEUED)
    [assignment] = d.dispatch()
    assert d.complete(assignment.task.id, duration=1.2) is COMPLETED
    assert d.explain("summarise-42") == "completed at 0"
    assert d.stats().by_state[COMPLETED] == 1


def test_defaults_are_a_priority_queue_least_connections_and_a_thirty_second_lease() -> None:
    clock = ManualClock()
    d = Distributor(clock)
    assert isinstance(d.queue, PriorityQueue)
    assert isinstance(d.tracker, CapacityTracker)
    assert isinstance(d.balancer, LeastConnections)
    assert isinstance(d.dlq, DeadLetterQueue) and d.dlq.maxsize is None
    d.add_worker(Worker("w", capacity=1))
    assert d.breaker("w") is None
    d.submit(Task("t"))
    [assignment] = d.dispatch()
    assert (assignment.attempt, assignment.started_at, assignment.lease_expiry) == (1, 0.0, 30.0)


def test_the_default_retry_policy_allows_three_attempts() -> None:
    run = build(Worker("w", capacity=1))
    run.d.submit(Task("t"))
    states = []
    for _ in range(3):
        while not run.d.dispatch():
            run.clock.set(run.d.next_wakeup() or run.clock.now())
        states.append(run.d.fail("t", error=RuntimeError("no")))
    assert states == [RETRYING, RETRYING, DEAD]
    assert run.d.dlq["t"].reason is Reason.MAX_ATTEMPTS


def test_finished_ids_are_remembered_for_sixty_seconds_by_default() -> None:
    run = build(Worker("w"))
    run.d.submit(Task("t"))
    run.d.dispatch()
    run.d.complete("t")
    run.clock.advance(59.9)
    assert run.d.submit(Task("t")).duplicate
    run.clock.advance(0.1)
    assert run.d.submit(Task("t")).accepted


# -- intake ----------------------------------------------------------------------------


def test_submit_accepts_a_new_task_into_the_queue_and_says_so() -> None:
    run = build()
    result = run.d.submit(Task("t"))
    assert result and result.accepted and not result.duplicate
    assert result.state is QUEUED and "t" in run.d.queue and "t" in run.d
    assert run.kinds("t") == [EventKind.SUBMITTED]
    assert run.d.stats().submitted == 1


def _task_in(state: TaskState) -> tuple[Recorded, Hashable]:
    """A distributor holding task ``"t"`` in ``state`` (a live one or a final one)."""
    run = build(
        Worker("w", capacity=1),
        retry=no_jitter(base=10.0),
        dedup_window=100.0,
        gates=[PoolGate(ResourcePool("db", size=1))],
    )
    d = run.d
    if state is PARKED:
        d.submit(Task("t", requires={"gpu"}))
        d.dispatch()
    else:
        d.submit(Task("t"))
    if state in (LEASED, RETRYING, COMPLETED, DEAD):
        d.dispatch()
    if state is RETRYING:
        d.fail("t", error="slow")
    elif state is COMPLETED:
        d.complete("t")
    elif state is DEAD:
        d.fail("t", retryable=False)
    elif state is CANCELLED:
        d.cancel("t")
    assert d.state_of("t") is state
    return run, "t"


@pytest.mark.parametrize("state", [QUEUED, PARKED, RETRYING, LEASED])
def test_resubmitting_a_live_task_is_a_duplicate_that_changes_nothing(state: TaskState) -> None:
    run, task_id = _task_in(state)
    before = stats_view(run.d)
    result = run.d.submit(Task(task_id, priority=0))
    assert result == SubmitResult(task_id, False, state) and result.duplicate and not result
    assert run.d.state_of(task_id) is state
    after = stats_view(run.d)
    assert after.pop("duplicates") == before.pop("duplicates") + 1
    assert after == before
    assert run.events[-1].kind is EventKind.DUPLICATE and run.events[-1].state is state


@pytest.mark.parametrize("state", [COMPLETED, DEAD, CANCELLED])
def test_resubmitting_within_the_dedup_window_after_it_finished_is_a_duplicate(
    state: TaskState,
) -> None:
    run, task_id = _task_in(state)
    run.clock.advance(99.0)
    assert run.d.submit(Task(task_id)) == SubmitResult(task_id, False, state)


@pytest.mark.parametrize("state", [COMPLETED, CANCELLED])
def test_resubmitting_after_the_dedup_window_is_accepted_as_a_new_task(state: TaskState) -> None:
    run, task_id = _task_in(state)
    run.clock.advance(100.0)
    run.d.tick()
    with pytest.raises(UnknownTaskError):
        run.d.state_of(task_id)
    assert run.d.submit(Task(task_id)) == SubmitResult(task_id, True, QUEUED)
    assert run.d.stats().submitted == 2


def test_a_dead_lettered_id_stays_a_duplicate_while_it_is_in_the_dlq() -> None:
    run, task_id = _task_in(DEAD)
    run.clock.advance(1000.0)
    run.d.tick()
    assert run.d.submit(Task(task_id)) == SubmitResult(task_id, False, DEAD)
    run.d.dlq.purge([task_id])
    assert run.d.submit(Task(task_id)).accepted


def _three_dead(**options: Any) -> Recorded:
    run = build(Worker("w", capacity=1), **options)
    for task_id in "abc":
        run.d.submit(Task(task_id, max_attempts=1, priority=2))
        run.d.dispatch()
        run.d.fail(task_id, error=RuntimeError("boom"))
    return run


def test_redrive_submits_dead_tasks_again_as_new_work() -> None:
    run = _three_dead()
    d = run.d
    report = d.redrive(["c", "a"])
    assert [entry.task.id for entry in report.redriven] == ["c", "a"]  # in the order given
    assert report.refused == () and report.displaced == ()
    assert [entry.redriven_at for entry in report.redriven] == [run.clock.now()] * 2
    assert [entry.task.id for entry in d.dlq] == ["b"] and d.dlq.stats().redriven == 2
    assert run.states(["a", "b", "c"]) == {"a": QUEUED, "b": DEAD, "c": QUEUED}
    stats = d.stats()
    # Each redriven task is a new incarnation: the dead one stays counted.
    assert stats.submitted == 5 and stats.by_state[DEAD] == 3 and stats.by_state[QUEUED] == 2
    assert sum(stats.by_state.values()) == stats.submitted
    [first] = d.dispatch()
    assert first.task.id == "c" and first.attempt == 1  # attempts from the first
    d.complete("c")
    assert d.redrive(lambda entry: entry.reason is Reason.MAX_ATTEMPTS).redriven[0].task.id == "b"
    assert len(d.dlq) == 0


def test_a_task_the_distributor_refuses_stays_in_the_dlq_where_it_was() -> None:
    run = _three_dead(max_queued=1)
    d = run.d
    before = [entry.task.id for entry in d.dlq]
    report = d.redrive(["b", "a", "c"])
    assert [entry.task.id for entry in report.redriven] == ["b"]
    assert [(entry.task.id, why.split(":")[0]) for entry, why in report.refused] == [
        ("a", "QueueFullError"),
        ("c", "QueueFullError"),
    ]
    assert [entry.task.id for entry in d.dlq] == [t for t in before if t != "b"]
    assert d.dlq["a"].reason is Reason.MAX_ATTEMPTS and d.state_of("a") is DEAD


def test_a_redriven_task_evicted_straight_back_is_dead_lettered_anew_and_displaced() -> None:
    clock = ManualClock()
    queue = PriorityQueue(clock, maxsize=1, overflow="drop_lowest")
    run = _three_dead(clock=clock, queue=queue)
    d = run.d
    d.submit(Task("urgent", priority=0))  # fills the queue with a more urgent task
    report = d.redrive(["a"])
    assert [entry.task.id for entry in report.redriven] == ["a"] and report.refused == ()
    assert [(e.task.id, e.reason) for e in report.displaced] == [("a", Reason.EVICTED)]
    assert d.dlq["a"].reason is Reason.EVICTED and d.state_of("a") is DEAD
    books = d.dlq.stats()  # its old entry went by the redrive, the new one was added
    assert (books.added, books.depth, books.redriven) == (4, 3, 1)
    assert books.added == books.depth + books.redriven + books.purged + books.evicted
    assert d.stats().submitted == sum(d.stats().by_state.values()) == 5


def test_a_bounded_dlq_drops_no_entry_while_a_redrive_displaces_tasks() -> None:
    clock = ManualClock()
    queue = PriorityQueue(clock, maxsize=1, overflow="drop_lowest")
    run = _three_dead(clock=clock, queue=queue, dlq=DeadLetterQueue(clock, maxsize=3))
    d = run.d
    d.submit(Task("low", priority=4))
    # The DLQ is full: a displaces low, whose entry may not push out an entry still
    # held (a's own, or b's); b and c, no more urgent than a, are evicted straight back.
    report = d.redrive(lambda entry: True)
    assert [entry.task.id for entry in report.redriven] == ["a", "b", "c"]
    assert [e.task.id for e in report.displaced] == ["low", "b", "c"]
    assert [entry.task.id for entry in d.dlq] == ["low", "b", "c"] and "a" in d.queue
    books = d.dlq.stats()
    assert books.evicted == 0 and books.redriven == 3
    assert books.added == books.depth + books.redriven + books.purged + books.evicted


def test_intake_policies_are_asked_about_a_redriven_task() -> None:
    from taskdist import ConcurrencyLimit

    limit = ConcurrencyLimit(key=lambda t: "k", limit=1, strategy="cancel_newest")
    run = _three_dead(intake=[limit])
    d = run.d
    report = d.redrive(["a", "b"])  # one live task of key k at most: b comes in cancelled
    assert [entry.task.id for entry in report.redriven] == ["a", "b"]
    assert run.states(["a", "b"]) == {"a": QUEUED, "b": CANCELLED}
    # The policy knows of a, live again: a new task of its key is cancelled too.
    assert d.submit(Task("x")) == SubmitResult("x", True, CANCELLED)


def test_a_redriven_task_displacing_a_queued_one_reports_it() -> None:
    clock = ManualClock()
    queue = PriorityQueue(clock, maxsize=1, overflow="drop_lowest")
    run = _three_dead(clock=clock, queue=queue)
    d = run.d
    d.submit(Task("low", priority=4))
    report = d.redrive(["a"])  # priority 2 evicts the priority-4 task
    assert [entry.task.id for entry in report.redriven] == ["a"]
    assert [(e.task.id, e.reason) for e in report.displaced] == [("low", Reason.EVICTED)]
    assert d.state_of("low") is DEAD and d.dlq["low"].reason is Reason.EVICTED


def test_redrive_refusals_change_nothing() -> None:
    run = _three_dead()
    d = run.d

    def calls_back(entry: Any) -> bool:
        d.submit(Task("sneaky"))
        return True

    for selector, error in [
        (["nope"], UnknownTaskError),
        ("a", InvalidTypeError),
        (calls_back, ReentrancyError),
    ]:
        with pytest.raises(error):
            d.redrive(selector)
        assert [entry.task.id for entry in d.dlq] == ["a", "b", "c"]
        assert d.stats().submitted == 3
    with pytest.raises(InvalidArgumentError, match=r"Distributor\.redrive"):
        d.dlq.redrive(["a"], into=d.queue)  # it would not know of the task
    assert len(d.dlq) == 3 and len(d.queue) == 0
    d.close()
    with pytest.raises(ClosedError):
        d.redrive(["a"])
    assert len(d.dlq) == 3


def test_max_queued_refuses_with_queue_full_error_and_changes_nothing() -> None:
    run = build(max_queued=2)
    run.d.submit(Task("a"))
    run.d.submit(Task("b"))
    before, events = stats_view(run.d), len(run.events)
    with pytest.raises(QueueFullError, match="max_queued"):
        run.d.submit(Task("c"))
    assert stats_view(run.d) == before and len(run.events) == events
    assert "c" not in run.d.queue
    with pytest.raises(UnknownTaskError):
        run.d.state_of("c")


def test_max_queued_counts_parked_and_retrying_tasks_but_not_leased_ones() -> None:
    run = build(Worker("w", capacity=2), max_queued=2, retry=no_jitter())
    run.d.submit(Task("leased"))
    run.d.dispatch()
    run.d.submit(Task("parked", requires={"gpu"}))
    run.d.submit(Task("queued"))
    with pytest.raises(QueueFullError):
        run.d.submit(Task("one-more"))
    run.d.dispatch(limit=0)  # (does what is due, places nothing)
    assert run.states(["leased", "parked"]) == {"leased": LEASED, "parked": QUEUED}
    run.d.dispatch()
    assert run.states(["parked", "queued"]) == {"parked": PARKED, "queued": LEASED}
    run.d.submit(Task("queued-2"))
    with pytest.raises(QueueFullError):  # parked and queued: two waiting
        run.d.submit(Task("one-more"))
    run.d.fail("leased", error="x")  # now retrying, parked and queued wait: still full
    with pytest.raises(QueueFullError):
        run.d.submit(Task("one-more"))


def test_a_deadline_already_past_is_refused_at_the_door() -> None:
    run = build()
    run.clock.set(10.0)
    for deadline in (10.0, 5.0):
        with pytest.raises(DeadlineError):
            run.d.submit(Task(f"late-{deadline}", deadline=deadline))
    assert run.d.stats().submitted == 0 and not run.events
    assert run.d.submit(Task("in-time", deadline=10.5)).accepted


def test_a_demand_no_gate_could_ever_grant_is_refused_at_the_door() -> None:
    run = build(Worker("w"), gates=[PoolGate(ResourcePool("db", size=2))])
    with pytest.raises(UnsatisfiableDemandError):
        run.d.submit(Task("big", resources={"db": 5}))
    assert run.d.stats().submitted == 0


class ExplodingGate:
    """A user's gate that raises on a task it can never admit (and has no ``check``)."""

    def try_acquire(self, task: Task) -> bool:
        if task.resources.get("db", 0) > 2:
            raise InvalidArgumentError("more db than the pool will ever have")
        return True

    def release(self, task: Task) -> None:
        pass

    def next_wakeup(self) -> float | None:
        return None


def test_a_task_a_gate_refuses_with_an_error_is_not_lost_and_blocks_no_other() -> None:
    run = build(Worker("w"), gates=[ExplodingGate()])
    run.d.submit(Task("big", priority=0, resources={"db": 5}))
    run.d.submit(Task("small", priority=1))
    for _ in range(2):
        with contextlib.suppress(InvalidArgumentError):  # raising once is fine
            run.d.dispatch()
    state = run.d.state_of("big")
    # Wherever it is, the books must hold it: queued means in the queue, dead means in the DLQ.
    assert (state is QUEUED and "big" in run.d.queue) or (
        state is DEAD and run.d.dlq["big"].reason is Reason.REJECTED
    )
    assert run.d.state_of("small") is LEASED


# -- dispatch order --------------------------------------------------------------------


def test_dispatch_takes_the_most_urgent_priority_first_and_equal_ones_in_order() -> None:
    run = build(Worker("w", capacity=5))
    for task_id, priority in [("c", 3), ("a1", 1), ("b", 2), ("a2", 1), ("z", 0)]:
        run.d.submit(Task(task_id, priority=priority))
    assert run.dispatch_ids() == ["z", "a1", "a2", "b", "c"]


def test_dispatch_stops_at_its_limit_and_the_rest_stays_queued() -> None:
    run = build(Worker("w", capacity=5))
    for i in range(4):
        run.d.submit(Task(i))
    assert run.dispatch_ids(limit=3) == [0, 1, 2]
    assert run.d.dispatch(limit=0) == []
    assert run.d.state_of(3) is QUEUED


def test_dispatch_follows_earliest_deadline_first_with_a_deadline_scheduler() -> None:
    clock = ManualClock()
    run = build(Worker("w", capacity=4), clock=clock, queue=DeadlineScheduler(clock, servers=4))
    for task_id, deadline in [("late", 30.0), ("soon", 10.0), ("none", None), ("mid", 20.0)]:
        run.d.submit(Task(task_id, deadline=deadline, cost=1.0))
    assert run.dispatch_ids() == ["soon", "mid", "late", "none"]


def test_dispatch_follows_fair_share_with_a_fair_scheduler() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, weights={"big": 2.0})
    run = build(Worker("w", capacity=6), clock=clock, queue=fair)
    for i in range(4):
        run.d.submit(Task(f"b{i}", tenant="big"))
        run.d.submit(Task(f"s{i}", tenant="small"))
    assert run.dispatch_ids() == ["b0", "s0", "b1", "s1", "b2", "b3"]


def test_a_fair_schedulers_concurrency_quota_holds_and_frees_on_completion() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"alice": Quota(max_concurrent=1)})
    run = build(Worker("w", capacity=4), clock=clock, queue=fair)
    for task_id in ("a1", "a2", "b1"):
        run.d.submit(Task(task_id, tenant="alice" if task_id[0] == "a" else "bob"))
    assert sorted(run.dispatch_ids()) == ["a1", "b1"]
    assert run.d.explain("a2").startswith("waiting: tenant 'alice' at its quota")
    run.d.complete("a1")
    assert run.dispatch_ids() == ["a2"]


# -- parking ---------------------------------------------------------------------------


def test_a_task_no_worker_can_take_is_parked_and_does_not_block_the_ones_behind_it() -> None:
    run = build(Worker("cpu", capacity=2))
    run.d.submit(Task("render", priority=0, requires={"gpu"}))
    run.d.submit(Task("a"))
    run.d.submit(Task("b"))
    assert run.dispatch_ids() == ["a", "b"]
    assert run.d.state_of("render") is PARKED and "render" not in run.d.queue
    [parked] = run.of(EventKind.PARKED)
    assert (parked.task_id, parked.state) == ("render", PARKED)
    assert run.d.explain("render") == "parked: no worker has skill 'gpu'"


def test_a_parked_task_is_not_looked_at_by_later_dispatches() -> None:
    clock = ManualClock()
    queue, balancer = SpyQueue(clock), SpyBalancer()
    run = build(Worker("cpu", capacity=1), clock=clock, queue=queue, balancer=balancer)
    run.d.submit(Task("render", priority=0, requires={"gpu"}))
    run.d.submit(Task("render-2", priority=0, requires={"gpu"}))
    run.d.dispatch()
    assert run.states(["render", "render-2"]) == {"render": PARKED, "render-2": PARKED}
    asked, chosen = dict(queue.asked), dict(balancer.chosen_for)
    for i in range(5):  # work comes and goes on the cpu worker: nothing that concerns gpu
        run.d.submit(Task(f"job-{i}"))
        [done] = run.d.dispatch()
        run.clock.advance(1.0)
        run.d.complete(done.task.id)
        run.d.tick()
    assert (queue.asked["render"], queue.asked["render-2"]) == (asked["render"], asked["render-2"])
    assert balancer.chosen_for["render"] == chosen["render"]
    # One balancer question stood for the whole signature.
    assert chosen.get("render-2", 0) == 0


def test_a_task_parked_behind_one_signature_does_not_park_other_signatures() -> None:
    run = build(Worker("cpu", capacity=1), Worker("eu", capacity=1, zone="eu"))
    run.d.submit(Task("gpu", requires={"gpu"}))
    run.d.submit(Task("plain"))
    run.d.submit(Task("zoned", zone="eu"))
    assert sorted(run.dispatch_ids()) == ["plain", "zoned"]
    assert run.d.state_of("gpu") is PARKED


def test_dispatch_returns_at_once_without_looking_at_the_queue_when_every_worker_is_busy() -> None:
    clock = ManualClock()
    queue = SpyQueue(clock)
    run = build(Worker("w", capacity=1), clock=clock, queue=queue)
    for i in range(3):
        run.d.submit(Task(i))
    assert run.dispatch_ids() == [0]
    pops = queue.pops
    assert run.d.dispatch() == []
    assert queue.pops == pops and run.states([1, 2]) == {1: QUEUED, 2: QUEUED}


def test_a_woken_task_keeps_its_place_among_tasks_of_equal_priority() -> None:
    run = build(Worker("gpu", skills={"gpu"}), Worker("cpu"))
    run.d.submit(Task("first", requires={"gpu"}))
    run.d.submit(Task("older", requires={"gpu"}))
    run.d.dispatch()  # "older" is parked: the only gpu worker is full (the cpu one is idle)
    assert run.d.state_of("older") is PARKED
    run.clock.advance(1.0)
    run.d.submit(Task("younger", requires={"gpu"}))
    run.d.complete("first")
    assert run.dispatch_ids() == ["older"]


# -- waking parked tasks ---------------------------------------------------------------


def _unparked(run: Recorded, task_id: Hashable) -> bool:
    return run.d.state_of(task_id) is QUEUED and EventKind.UNPARKED in run.kinds(task_id)


def _wakes_at(run: Recorded, when: float, task_id: Hashable) -> None:
    """The parked task wakes at ``when``, the time next_wakeup() gave, and is then placed."""
    assert run.d.state_of(task_id) is PARKED
    assert run.d.next_wakeup() == when
    run.clock.set(when)
    run.d.tick()
    assert _unparked(run, task_id)
    assert run.dispatch_ids() == [task_id]


def test_adding_a_worker_that_can_take_it_wakes_a_parked_task() -> None:
    run = build(Worker("cpu"))
    run.d.submit(Task("render", requires={"gpu"}))
    run.d.dispatch()
    run.d.add_worker(Worker("cpu-2"))
    assert run.d.state_of("render") is PARKED  # a worker without the skill changes nothing
    run.d.add_worker(Worker("gpu", skills={"gpu"}))
    assert _unparked(run, "render")
    assert assignment_view(run.d.dispatch()) == [("render", "gpu", 1, 30.0)]


def test_freeing_capacity_wakes_a_task_parked_because_its_workers_were_full() -> None:
    run = build(Worker("gpu", skills={"gpu"}), Worker("cpu"))
    run.d.submit(Task("a", requires={"gpu"}))
    run.d.submit(Task("b", requires={"gpu"}))
    run.d.dispatch()
    assert run.d.explain("b") == "parked: every worker that can run it is full (1 of them)"
    run.d.complete("a")
    assert _unparked(run, "b")
    assert run.dispatch_ids() == ["b"]


def test_a_worker_made_healthier_wakes_a_task_parked_behind_its_unavailability() -> None:
    run = build(Worker("w", skills={"gpu"}), Worker("cpu"))
    run.d.set_health("w", Health.UNAVAILABLE)
    run.d.submit(Task("t", requires={"gpu"}))
    run.d.dispatch()
    assert run.d.explain("t") == (
        "parked: every worker that can run it is unavailable (down or ejected)"
    )
    run.d.set_health("w", Health.DEGRADED)
    assert _unparked(run, "t")
    assert run.dispatch_ids() == ["t"]


def test_the_end_of_an_ejection_wakes_a_parked_task() -> None:
    clock = ManualClock()
    ejection = OutlierEjection(
        consecutive_failures=1, base_ejection_time=10.0, max_ejection_percent=100.0
    )
    tracker = CapacityTracker(clock, ejection=ejection, health=None)
    run = build(
        Worker("w", capacity=2, skills={"gpu"}),
        Worker("cpu"),
        clock=clock,
        tracker=tracker,
        retry=no_jitter(base=50),
    )
    run.d.submit(Task("bad", requires={"gpu"}))
    run.d.submit(Task("next", requires={"gpu"}))
    run.d.dispatch(limit=1)
    run.d.fail("bad", error="boom")
    [ejected] = run.of(EventKind.WORKER_EJECTED)
    assert (ejected.worker_id, ejected.at) == ("w", 10.0)
    run.d.dispatch()
    _wakes_at(run, 10.0, "next")


def test_the_end_of_an_ejection_wakes_a_host_while_a_task_waits_queued() -> None:
    # Every other worker busy, the ejected one the only room: the task the dispatch found
    # no room for stays queued (not parked), and next_wakeup() did not say when the
    # ejection ends, so a host sleeping on it left the task waiting beside an idle worker.
    clock = ManualClock()
    ejection = OutlierEjection(
        consecutive_failures=1, base_ejection_time=10.0, max_ejection_percent=100.0
    )
    tracker = CapacityTracker(clock, ejection=ejection, health=None)
    run = build(Worker("a"), Worker("b"), clock=clock, tracker=tracker, lease=None)
    run.d.submit(Task("bad", max_attempts=1))
    assert run.dispatch_ids() == ["bad"]
    run.d.fail("bad", error="boom")
    [ejected] = run.of(EventKind.WORKER_EJECTED)
    run.d.submit(Task("long"))
    assert run.dispatch_ids() == ["long"]  # on the other worker
    run.d.submit(Task("x"))
    assert run.dispatch_ids() == [] and run.d.state_of("x") is TaskState.QUEUED
    assert run.d.next_wakeup() == ejected.at == 10.0
    clock.set(10.0)
    run.d.tick()
    assert [(a.task.id, a.worker_id) for a in run.d.dispatch()] == [("x", ejected.worker_id)]


def test_a_breaker_half_opening_wakes_a_task_parked_behind_it() -> None:
    clock = ManualClock()
    run = build(Worker("w", capacity=2), clock=clock, breaker=breaker_factory(clock))
    trip_a_breaker(run)
    [opened] = run.of(EventKind.BREAKER_OPENED)
    assert (opened.worker_id, opened.at) == ("w", 5.0)
    run.d.submit(Task("t"))
    run.d.dispatch()
    assert run.d.explain("t") == (
        "parked: the circuit breakers of every worker that can run it are open until 5"
    )
    _wakes_at(run, 5.0, "t")
    assert run.d.breaker("w").state is CircuitState.HALF_OPEN  # type: ignore[union-attr]


def test_a_removed_workers_breaker_leaves_nothing_behind_in_the_books() -> None:
    # A transition heard but not yet acted on (reading an open breaker past its
    # open time half-opens it), then the worker removed: the snapshot names no
    # breaker of a worker gone, and the breaker, kept by the host, tells no one.
    clock = ManualClock()
    run = build(Worker("w", capacity=2), clock=clock, breaker=breaker_factory(clock))
    trip_a_breaker(run)
    clock.set(6.0)
    breaker = run.d.breaker("w")
    assert breaker is not None and breaker.state is CircuitState.HALF_OPEN
    run.d.remove_worker("w")
    restored = Distributor.restore(
        run.d.snapshot(), ManualClock(start=6.0), breaker=breaker_factory(clock)
    )
    run.d.add_worker(Worker("w", capacity=2))  # a new breaker, closed
    breaker.force_open()  # the old one: not the worker's any more
    for twin in (run.d, restored):
        twin.submit(Task("t"))
    assert [a.worker_id for a in run.d.dispatch()] == ["w"]
    assert run.d.breaker("w").state is CircuitState.CLOSED  # type: ignore[union-attr]
    assert len(run.of(EventKind.BREAKER_OPENED)) == 1  # the first trip's, no other


@pytest.mark.parametrize("outcome", ["complete", "throttle"])
def test_a_restored_lease_reports_to_the_breaker_period_that_granted_it(outcome: str) -> None:
    # "old" was leased while w's breaker was closed; it opened and half-opened since.
    # Its outcome belongs to the closed period: it neither closes the breaker nor
    # gives back the one probe's place, in the original and in a restored twin alike
    # (the twin's lease had lost its permit, so its outcome counted as a probe's).
    def parts(clock: ManualClock) -> dict[str, Any]:
        return {
            "retry": RetryPolicy(max_attempts=3, base=0.1, cap=0.1),
            "breaker": lambda _: CircuitBreaker(
                clock, minimum_calls=2, window_size=4, open_duration=7.0, half_open_calls=1
            ),
        }

    clock = ManualClock()
    d = Distributor(clock, lease=None, **parts(clock))
    d.add_worker(Worker("w", capacity=3))
    for task_id in ("a", "b", "old"):
        d.submit(Task(task_id))
    d.dispatch()
    d.fail("a")
    d.fail("b")  # the breaker opens
    clock.advance(8.0)
    d.tick()  # half-open: one probe
    twin_clock = ManualClock(start=clock.now())
    snapshot = json.loads(json.dumps(d.snapshot()))
    twin = Distributor.restore(snapshot, twin_clock, **parts(twin_clock))
    for each in (d, twin):
        assert len(each.dispatch()) == 1  # the probe
        if outcome == "complete":
            each.complete("old")
        else:
            each.fail("old", error="429", throttled=True, retry_after=0.5)
        assert each.breaker("w").state is CircuitState.HALF_OPEN  # type: ignore[union-attr]
        assert each.dispatch() == []  # still one probe at a time


def test_a_snapshot_whose_lease_names_a_breaker_period_yet_to_come_is_refused() -> None:
    clock = ManualClock()
    run = build(Worker("w", capacity=2), clock=clock, breaker=breaker_factory(clock))
    run.d.submit(Task("t"))
    run.d.dispatch()
    snapshot = json.loads(json.dumps(run.d.snapshot()))
    [leased] = [r for r in snapshot["runs"] if r["task"]["id"] == "t"]
    assert leased["permit"] == snapshot["breakers"][0][1]["permit"] == 0
    leased["permit"] = 1  # a period the breaker has not had
    with pytest.raises(SnapshotError, match="breaker permit 1"):
        Distributor.restore(snapshot, ManualClock(), breaker=breaker_factory(clock))


def test_a_rate_gate_refilling_wakes_a_task_parked_by_the_gate() -> None:
    clock = ManualClock()
    limiter = RateLimiter(1, per=10.0, burst=1, clock=clock)
    run = build(Worker("w", capacity=5), clock=clock, gates=[RateGate(limiter, "api")])
    run.d.submit(Task("a", resources={"api": 1}))
    run.d.submit(Task("b", resources={"api": 1}))
    run.d.submit(Task("local"))
    assert run.dispatch_ids() == ["a", "local"]
    _wakes_at(run, 10.0, "b")


def test_a_task_a_full_pool_holds_back_waits_in_the_queue_until_a_release() -> None:
    # Every task asks the pool for a unit: with none left, dispatch stops at the first
    # refusal and the rest stay queued (nothing parked, nothing moved).
    pool = ResourcePool("db", size=1)
    run = build(Worker("w", capacity=5), gates=[PoolGate(pool)])
    run.d.submit(Task("a", resources={"db": 1}))
    run.d.submit(Task("b", resources={"db": 1}))
    assert run.dispatch_ids() == ["a"]
    assert run.d.state_of("b") is QUEUED and EventKind.PARKED not in run.kinds("b")
    assert run.d.next_wakeup() == 30.0  # a's lease: a pool frees on a release, not with time
    run.d.complete("a")
    assert pool.in_use == 0
    assert run.dispatch_ids() == ["b"] and pool.in_use == 1


def test_a_pool_release_wakes_a_task_parked_by_the_pool() -> None:
    # A task that holds no unit of the pool ("c") may pass it whatever is left, so a
    # refusal does not end the walk: the refused task is parked, and a release wakes it.
    pool = ResourcePool("db", size=1)
    run = build(Worker("w", capacity=5), gates=[PoolGate(pool)])
    run.d.submit(Task("a", resources={"db": 1}))
    run.d.submit(Task("b", resources={"db": 1}))
    run.d.submit(Task("c"))
    assert run.dispatch_ids() == ["a", "c"]
    assert run.d.state_of("b") is PARKED
    run.d.complete("a")
    assert _unparked(run, "b") and pool.in_use == 0
    assert run.dispatch_ids() == ["b"] and pool.in_use == 1


def test_giving_a_worker_the_missing_skill_wakes_a_parked_task() -> None:
    run = build(Worker("w"))
    run.d.submit(Task("render", requires={"gpu"}))
    run.d.dispatch()
    run.d.update_worker("w", skills={"gpu"})
    assert _unparked(run, "render")


def test_a_half_open_breaker_with_its_probe_out_does_not_keep_tasks_off_other_workers() -> None:
    clock = ManualClock()
    run = build(
        Worker("big", capacity=10),
        Worker("small", capacity=2),
        clock=clock,
        breaker=breaker_factory(clock),
    )
    assert trip_a_breaker(run) == "big"  # it opens for 5 s
    run.d.submit(Task("on-small"))
    run.d.dispatch()
    run.clock.set(5.0)
    run.d.submit(Task("probe"))
    assert assignment_view(run.d.dispatch()) == [("probe", "big", 1, 35.0)]
    run.d.submit(Task("next"))
    # "big" takes no more until its probe reports; "small" has a free slot.
    assert assignment_view(run.d.dispatch()) == [("next", "small", 1, 35.0)]


# -- the balancer ----------------------------------------------------------------------


def test_the_balancer_hooks_are_called_once_per_event() -> None:
    balancer = SpyBalancer()
    run = build(Worker("w1", capacity=2), Worker("w2", capacity=2), balancer=balancer)
    assert balancer.hooks == [("added", None, "w1"), ("added", None, "w2")]
    del balancer.hooks[:]
    for task_id in ("done", "failed", "cancelled", "expired", "moved"):
        run.d.submit(Task(task_id))
    placed = {a.task.id: a.worker_id for a in run.d.dispatch(limit=4)}
    assert sorted(balancer.hooks) == sorted(("assign", t, w) for t, w in placed.items())
    del balancer.hooks[:]
    run.d.complete("done")
    run.d.fail("failed", error="x")
    run.d.cancel("cancelled")
    assert balancer.hooks == [
        ("release", "done", placed["done"]),
        ("release", "failed", placed["failed"]),
        ("release", "cancelled", placed["cancelled"]),
    ]
    del balancer.hooks[:]
    run.clock.advance(30.0)
    run.d.tick()  # "expired" loses its lease
    assert balancer.hooks == [("release", "expired", placed["expired"])]
    del balancer.hooks[:]
    run.d.remove_worker("w1")
    assert balancer.hooks == [("removed", None, "w1")]


class Stubborn(LeastConnections):
    """A user's balancer that picks one worker by name, candidate or not."""

    def __init__(self, worker_id: Hashable) -> None:
        super().__init__()
        self.worker_id = worker_id

    def choose(self, task: Task, tracker: CapacityTracker, where: object = None) -> WorkerState:
        return tracker.worker(self.worker_id)


def test_a_balancer_choosing_a_worker_that_is_not_a_candidate_is_refused_and_nothing_placed() -> (
    None
):
    run = build(Worker("cpu", capacity=2), Worker("gpu", skills={"gpu"}), balancer=Stubborn("cpu"))
    run.d.submit(Task("render", requires={"gpu"}))
    before = stats_view(run.d)
    with pytest.raises(InvalidArgumentError, match="not one of its candidates"):
        run.d.dispatch()
    assert run.d.state_of("render") is QUEUED and "render" in run.d.queue
    assert stats_view(run.d) == before and run.d.leases() == []
    assert run.d.tracker.worker("cpu").in_flight == 0


class FailsOnSecondTask(LeastConnections):
    """A user's balancer that raises the second time it is asked, once armed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.armed = False

    def choose(self, task: Task, tracker: CapacityTracker, where: object = None) -> object:
        self.calls += 1
        if self.armed and self.calls == 2:
            self.armed = False
            raise RuntimeError("the balancer broke")
        return super().choose(task, tracker, where)  # type: ignore[arg-type]


def test_a_balancer_error_mid_dispatch_leaves_no_assignment_the_host_never_saw() -> None:
    balancer = FailsOnSecondTask()
    run = build(Worker("w", capacity=5), balancer=balancer)
    for i in range(3):
        run.d.submit(Task(i))
    balancer.armed = True
    with pytest.raises(RuntimeError):
        run.d.dispatch()
    assert run.d.leases() == []
    assert run.states(range(3)) == {0: QUEUED, 1: QUEUED, 2: QUEUED}


def test_a_callback_error_mid_dispatch_does_not_park_tasks_on_a_later_dispatch() -> None:
    balancer = FailsOnSecondTask()
    run = build(Worker("w", capacity=3), balancer=balancer)
    run.d.submit(Task("needs-x", priority=0, requires={"x"}))
    run.d.submit(Task("plain", priority=1))
    balancer.armed = True
    with pytest.raises(RuntimeError):
        run.d.dispatch()  # "needs-x" passed over (no worker has x), then the balancer broke
    run.d.add_worker(Worker("x", capacity=10, skills={"x"}))
    run.d.submit(Task("urgent", priority=-1))
    run.d.dispatch()
    assert run.d.state_of("needs-x") is LEASED, run.d.explain("needs-x")


# -- gates -----------------------------------------------------------------------------


def test_gates_admit_all_or_nothing() -> None:
    clock = ManualClock()
    pool = ResourcePool("db", size=1)
    limiter = RateLimiter(10, per=10.0, burst=10, clock=clock)
    run = build(
        Worker("w", capacity=5),
        clock=clock,
        gates=[RateGate(limiter, "api"), PoolGate(pool)],
    )
    run.d.submit(Task("a", resources={"api": 1, "db": 1}))
    run.d.submit(Task("b", resources={"api": 3, "db": 1}))
    assert run.dispatch_ids() == ["a"]
    # b passed the rate gate and was refused by the pool: its api units came back.
    assert run.d.state_of("b") is QUEUED
    assert limiter.available() == 9.0 and pool.in_use == 1


def _end(run: Recorded, task_id: Hashable, how: str) -> None:
    if how == "complete":
        run.d.complete(task_id)
    elif how == "fail":
        run.d.fail(task_id, error="x")
    elif how == "cancel":
        run.d.cancel(task_id)
    elif how == "expire":
        run.clock.advance(30.0)
        run.d.tick()
    else:
        run.d.remove_worker("w")


@pytest.mark.parametrize("how", ["complete", "fail", "cancel", "expire", "remove_worker"])
def test_gates_are_released_whichever_way_a_lease_ends(how: str) -> None:
    pool = ResourcePool("db", size=2)
    run = build(Worker("w", capacity=5), gates=[PoolGate(pool)], retry=no_jitter(base=100))
    run.d.submit(Task("t", resources={"db": 2}))
    run.d.dispatch()
    assert pool.in_use == 2
    _end(run, "t", how)
    assert pool.in_use == 0


def test_a_gate_refusal_after_the_pop_costs_the_tenant_no_quota_token() -> None:
    clock = ManualClock()
    pool = ResourcePool("db", size=1)
    fair = FairScheduler(clock, quotas={"alice": Quota(rate=1, per=100.0)})
    run = build(Worker("w", capacity=5), clock=clock, queue=fair, gates=[PoolGate(pool)])
    run.d.submit(Task("holder", tenant="bob", resources={"db": 1}))
    run.d.dispatch()
    run.d.submit(Task("alice-1", tenant="alice", resources={"db": 1}))
    assert run.d.dispatch() == []
    run.d.complete("holder")
    assert run.dispatch_ids() == ["alice-1"], run.d.explain("alice-1")


def test_a_breaker_refusal_after_the_pop_costs_the_tenant_no_quota_token() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"alice": Quota(rate=1, per=100.0)})
    run = build(Worker("w", capacity=5), clock=clock, queue=fair, breaker=breaker_factory(clock))
    trip_a_breaker(run, tenant="bob")
    run.clock.set(5.0)
    run.d.submit(Task("probe", tenant="bob"))
    run.d.dispatch()  # the probe is out: the breaker refuses every other task for now
    run.d.submit(Task("alice-1", tenant="alice"))
    assert run.d.dispatch() == []
    run.d.complete("probe")  # the breaker closes
    assert run.dispatch_ids() == ["alice-1"], run.d.explain("alice-1")


# -- breakers --------------------------------------------------------------------------


class PermitLog(CircuitBreaker):
    """A circuit breaker that logs the permits it hands out and gets back."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock, minimum_calls=100)
        self.log: list[tuple[str, int | None]] = []

    def acquire(self) -> int | None:
        permit = super().acquire()
        self.log.append(("acquire", permit))
        return permit

    def record_success(self, duration: float = 0.0, *, permit: int | None = None) -> None:
        self.log.append(("success", permit))
        super().record_success(duration, permit=permit)

    def record_failure(self, duration: float = 0.0, *, permit: int | None = None) -> None:
        self.log.append(("failure", permit))
        super().record_failure(duration, permit=permit)

    def record_error(
        self, error: BaseException, duration: float = 0.0, *, permit: int | None = None
    ) -> None:
        self.log.append(("error", permit))
        super().record_error(error, duration, permit=permit)

    def release(self, permit: int | None = None) -> None:
        self.log.append(("release", permit))
        super().release(permit)


def test_the_permit_a_dispatch_took_is_passed_back_to_the_breaker_with_the_outcome() -> None:
    clock = ManualClock()
    made: dict[Hashable, PermitLog] = {}

    def factory(worker_id: Hashable) -> PermitLog:
        made[worker_id] = PermitLog(clock)
        return made[worker_id]

    run = build(Worker("w", capacity=4), clock=clock, breaker=factory, retry=no_jitter(base=100))
    for task_id in ("ok", "bad", "text", "gone"):
        run.d.submit(Task(task_id))
    run.d.dispatch()
    permit = made["w"].log[0][1]
    assert permit is not None
    assert made["w"].log == [("acquire", permit)] * 4
    run.d.complete("ok", duration=1.0)
    run.d.fail("bad", error=ValueError("x"))
    run.d.fail("text", error="a description")
    run.d.cancel("gone")
    assert made["w"].log[4:] == [
        ("success", permit),
        ("error", permit),
        ("failure", permit),
        ("release", permit),
    ]


def test_an_open_breakers_worker_gets_no_tasks() -> None:
    clock = ManualClock()
    run = build(
        Worker("a", capacity=5),
        Worker("b", capacity=5),
        clock=clock,
        breaker=breaker_factory(clock),
    )
    tripped = trip_a_breaker(run)
    assert run.d.breaker(tripped).state is CircuitState.OPEN  # type: ignore[union-attr]
    for i in range(4):
        run.d.submit(Task(i))
    other = "b" if tripped == "a" else "a"
    assert {a.worker_id for a in run.d.dispatch()} == {other}
    assert run.d.stats().workers[tripped].breaker is CircuitState.OPEN


def test_tasks_wait_for_an_open_breaker_then_go_to_the_half_open_worker_one_probe_first() -> None:
    clock = ManualClock()
    run = build(Worker("w", capacity=5), clock=clock, breaker=breaker_factory(clock))
    trip_a_breaker(run)
    run.d.submit(Task("t1"))
    run.d.submit(Task("t2"))
    assert run.d.dispatch() == []
    assert run.states(["t1", "t2"]) == {"t1": PARKED, "t2": PARKED}
    run.clock.set(5.0)
    assert run.dispatch_ids() == ["t1"]  # the one probe a half-open breaker allows
    assert run.d.state_of("t2") is not LEASED
    run.d.complete("t1")  # the probe succeeded: the breaker closes
    assert run.d.breaker("w").state is CircuitState.CLOSED  # type: ignore[union-attr]
    assert run.dispatch_ids() == ["t2"]


# -- leases ----------------------------------------------------------------------------


def test_heartbeat_extends_the_lease() -> None:
    run = build(Worker("w"), lease=30.0)
    run.d.submit(Task("t"))
    run.d.dispatch()
    run.clock.set(20.0)
    assert run.d.heartbeat("t") == 50.0
    assert run.d.assignment("t").lease_expiry == 50.0
    assert run.d.next_wakeup() == 50.0
    run.clock.set(49.0)
    run.d.tick()
    assert run.d.state_of("t") is LEASED
    assert run.d.heartbeat("t", extend=5.0) == 54.0
    run.clock.set(54.0)
    run.d.tick()
    assert run.kinds("t")[-2:] == [EventKind.LEASE_EXPIRED, EventKind.REQUEUED]


def test_expired_lease_requeues_with_its_age_and_counts_an_attempt() -> None:
    clock = ManualClock()
    queue = PriorityQueue(clock, aging_rate=1.0)
    run = build(Worker("w"), clock=clock, queue=queue, lease=10.0)
    run.d.submit(Task("t", priority=20))
    run.clock.set(4.0)
    run.d.dispatch()  # waited 4 s
    run.clock.set(14.0)
    run.d.tick()
    [expired] = run.of(EventKind.LEASE_EXPIRED)
    assert (expired.task_id, expired.worker_id, expired.attempt) == ("t", "w", 1)
    assert run.d.state_of("t") is QUEUED
    assert queue.effective_priority("t") == 16.0  # aged by the 4 s it waited, not the 10 it ran
    stats = run.d.stats()
    assert stats.oldest_waiting_age == 4.0
    assert (stats.lease_expiries, stats.workers["w"].failed) == (1, 1)
    [again] = run.d.dispatch()
    assert again.attempt == 2


def test_expired_leases_dead_letter_once_the_attempts_run_out() -> None:
    run = build(Worker("w"), lease=10.0)
    run.d.submit(Task("t", max_attempts=2))
    for _ in range(2):
        run.d.dispatch()
        run.clock.advance(10.0)
        run.d.tick()
    assert run.d.state_of("t") is DEAD
    entry = run.d.dlq["t"]
    assert entry.reason is Reason.MAX_ATTEMPTS
    assert [record.outcome for record in entry.history] == ["lease_expired", "lease_expired"]


def test_a_late_complete_after_the_lease_expired_wins_once() -> None:
    run = build(Worker("w"), lease=10.0)
    run.d.submit(Task("t"))
    run.d.dispatch()
    run.clock.set(10.0)
    run.d.tick()
    assert run.d.state_of("t") is QUEUED
    assert run.d.complete("t", attempt=1) is COMPLETED
    assert run.events[-1].detail == "a late report of an expired lease"
    assert "t" not in run.d.queue and run.d.stats().by_state[COMPLETED] == 1
    with pytest.raises(TaskStateError):
        run.d.complete("t", attempt=1)
    assert final_events(run.events) == {"t": 1}


def test_a_late_complete_ends_the_newer_lease_and_frees_its_worker() -> None:
    run = build(Worker("w"), lease=10.0)
    run.d.submit(Task("t"))
    run.d.dispatch()
    run.clock.set(10.0)
    [second] = run.d.dispatch()
    assert second.attempt == 2
    assert run.d.complete("t", attempt=1) is COMPLETED
    assert run.d.leases() == [] and run.d.tracker.worker("w").in_flight == 0
    with pytest.raises(TaskStateError):
        run.d.complete("t", attempt=2)


def test_a_late_fail_after_the_lease_expired_changes_nothing() -> None:
    run = build(Worker("w"), lease=10.0)
    run.d.submit(Task("t"))
    run.d.dispatch()
    run.clock.set(10.0)
    run.d.tick()
    before, events = stats_view(run.d), len(run.events)
    assert run.d.fail("t", error="late", attempt=1) is QUEUED
    assert stats_view(run.d) == before and len(run.events) == events
    with pytest.raises(TaskStateError):
        run.d.fail("t", error="later still", attempt=1)
    with pytest.raises(TaskStateError):
        run.d.complete("t", attempt=1)


def test_a_second_report_of_an_attempt_is_refused() -> None:
    run = build(Worker("w"), retry=no_jitter())
    run.d.submit(Task("t"))
    run.d.dispatch()
    run.d.complete("t")
    for report in (
        lambda: run.d.complete("t"),
        lambda: run.d.fail("t", error="x"),
        lambda: run.d.heartbeat("t"),
        lambda: run.d.complete("t", attempt=1),
    ):
        with pytest.raises(TaskStateError):
            report()
    assert final_events(run.events) == {"t": 1}


def test_a_late_complete_of_an_earlier_expired_attempt_is_accepted() -> None:
    run = build(Worker("w"), lease=10.0, retry=no_jitter(max_attempts=5))
    run.d.submit(Task("t"))
    for _ in range(3):
        run.d.dispatch()
        run.clock.advance(10.0)
    assert run.d.assignment("t").attempt == 3  # attempts 1 and 2 expired
    assert run.d.complete("t", attempt=1) is COMPLETED


def test_each_lease_has_a_number_of_its_own_across_attempts_and_lives_of_an_id() -> None:
    run = build(Worker("w", capacity=2), lease=10.0, dedup_window=0.0)
    run.d.submit(Task("t"))
    run.d.submit(Task("u"))
    first, other = run.d.dispatch()
    run.clock.advance(10.0)
    second, other_again = run.d.dispatch()
    run.d.complete("t", lease_id=second.lease_id)
    run.d.complete("u", lease_id=other_again.lease_id)
    run.d.submit(Task("t"))
    [anew] = run.d.dispatch()
    numbers = [a.lease_id for a in (first, other, second, other_again, anew)]
    assert numbers == [1, 2, 3, 4, 5]
    assert anew.attempt == first.attempt == 1  # attempts count again in a new life
    assert run.d.assignment("t") == anew and run.d.leases() == [anew]


def test_a_late_report_of_an_earlier_life_of_the_id_reaches_nothing() -> None:
    # The run of the first task "t" hangs; its lease expires, a retry completes it, and
    # "t" is submitted again. The hung run's report, naming its lease, must not complete
    # the new task, which has not run.
    run = build(Worker("a"), Worker("b"), lease=10.0, dedup_window=0.0)
    run.d.submit(Task("t"))
    [hung] = run.d.dispatch()
    run.clock.advance(10.0)
    [retry] = run.d.dispatch()
    run.d.complete("t", lease_id=retry.lease_id)
    run.d.submit(Task("t"))
    [anew] = run.d.dispatch()
    assert anew.attempt == hung.attempt
    before, events = stats_view(run.d), len(run.events)
    for report in (
        lambda: run.d.complete("t", lease_id=hung.lease_id),
        lambda: run.d.complete("t", attempt=hung.attempt, lease_id=hung.lease_id),
        lambda: run.d.fail("t", error="late", lease_id=hung.lease_id),
        lambda: run.d.heartbeat("t", lease_id=hung.lease_id),
        lambda: run.d.requeue("t", lease_id=hung.lease_id),
        lambda: run.d.complete("t", lease_id=retry.lease_id),
    ):
        with pytest.raises(TaskStateError, match="lease"):
            report()
    assert stats_view(run.d) == before and len(run.events) == events
    assert run.d.state_of("t") is LEASED and run.d.assignment("t") == anew
    assert run.d.complete("t", lease_id=anew.lease_id) is COMPLETED


def test_a_late_report_names_its_expired_lease_by_number() -> None:
    run = build(Worker("w"), lease=10.0, retry=no_jitter(max_attempts=5))
    run.d.submit(Task("t"))
    leases = []
    for _ in range(3):
        [assignment] = run.d.dispatch()
        leases.append(assignment)
        run.clock.advance(10.0)
    # Leases 1 and 2 expired; lease 3 runs. A number and an attempt that disagree
    # name no lease.
    with pytest.raises(TaskStateError, match="no expired lease 1 of attempt 2"):
        run.d.fail("t", error="x", attempt=2, lease_id=leases[0].lease_id)
    with pytest.raises(TaskStateError, match="no expired lease 1 of attempt 3"):
        run.d.complete("t", attempt=3, lease_id=leases[0].lease_id)
    assert run.d.state_of("t") is LEASED
    assert run.d.fail("t", error="late", lease_id=leases[1].lease_id) is LEASED
    with pytest.raises(TaskStateError, match="no expired lease 2 awaits"):
        run.d.complete("t", lease_id=leases[1].lease_id)  # its late report came
    assert run.d.complete("t", lease_id=leases[0].lease_id) is COMPLETED
    assert run.d.leases() == [] and run.d.tracker.worker("w").in_flight == 0


def test_a_heartbeat_naming_a_lapsed_lease_does_not_keep_the_new_one_alive() -> None:
    run = build(Worker("a"), Worker("b"), lease=10.0)
    run.d.submit(Task("t"))
    [hung] = run.d.dispatch()
    run.clock.advance(10.0)
    [retry] = run.d.dispatch()
    with pytest.raises(TaskStateError, match="lease 1 is not its lease \\(lease 2 is\\)"):
        run.d.heartbeat("t", 60.0, lease_id=hung.lease_id)
    assert run.d.assignment("t").lease_expiry == retry.lease_expiry == 20.0
    assert run.d.heartbeat("t", 60.0, lease_id=retry.lease_id) == 70.0


@pytest.mark.parametrize("bad", [0, -1, 1.0, "1", True])
def test_a_bad_lease_number_is_refused_before_anything_changes(bad: object) -> None:
    run = build(Worker("w"), lease=10.0)
    run.d.submit(Task("t"))
    run.d.dispatch()
    before = stats_view(run.d)
    for call in (run.d.complete, run.d.fail, run.d.heartbeat, run.d.requeue):
        with pytest.raises((InvalidArgumentError, InvalidTypeError), match="lease_id"):
            call("t", lease_id=bad)
    assert stats_view(run.d) == before and run.d.state_of("t") is LEASED


def test_a_dispatch_taken_back_gives_its_lease_numbers_back() -> None:
    balancer = FailsOnSecondTask()
    run = build(Worker("w", capacity=3), lease=10.0, balancer=balancer)
    for name in "tuv":
        run.d.submit(Task(name))
    balancer.armed = True
    with pytest.raises(RuntimeError):
        run.d.dispatch()  # the lease of "t" was made, then taken back
    assert [a.lease_id for a in run.d.dispatch()] == [1, 2, 3]


def test_leases_that_never_expire_with_lease_none() -> None:
    run = build(Worker("w"), lease=None)
    run.d.submit(Task("t"))
    [assignment] = run.d.dispatch()
    assert assignment.lease_expiry is None and run.d.next_wakeup() is None
    assert run.d.heartbeat("t") is None
    run.clock.advance(1e9)
    run.d.tick()
    assert run.d.state_of("t") is LEASED


# -- retries ---------------------------------------------------------------------------


def test_a_failed_task_waits_out_the_policy_delay_in_a_timer_and_is_not_dispatched_early() -> None:
    run = build(Worker("w", capacity=2), retry=no_jitter(max_attempts=3, base=2.0))
    run.d.submit(Task("t"))
    run.d.dispatch()
    run.clock.set(1.0)
    assert run.d.fail("t", error=TimeoutError("slow")) is RETRYING
    scheduled = run.events[-1]
    assert (scheduled.kind, scheduled.at, scheduled.attempt) == (
        EventKind.RETRY_SCHEDULED,
        3.0,
        1,
    )
    assert run.d.explain("t") == "retry 2 of 3 at 3 after TimeoutError: slow on 'w'"
    assert run.d.next_wakeup() == 3.0
    run.clock.set(2.999)
    assert run.d.dispatch() == [] and run.d.state_of("t") is RETRYING
    run.clock.set(3.0)
    [again] = run.d.dispatch()
    assert again.attempt == 2
    run.d.fail("t", error="slow again")
    assert run.events[-1].at == 3.0 + 4.0  # the second delay doubles


def test_the_tasks_own_max_attempts_wins_over_the_policys() -> None:
    def failures_until_dead(task: Task) -> int:
        run = build(Worker("w"), retry=no_jitter(max_attempts=3, base=0.5))
        run.d.submit(task)
        failures = 0
        while run.d.state_of(task.id) is not DEAD:
            while not run.d.dispatch():
                run.clock.set(run.d.next_wakeup() or run.clock.now())
            run.d.fail(task.id, error="no")
            failures += 1
        return failures

    assert failures_until_dead(Task("fewer", max_attempts=1)) == 1
    assert failures_until_dead(Task("more", max_attempts=5)) == 5
    assert failures_until_dead(Task("policy")) == 3


def test_a_not_retryable_failure_dead_letters_at_once_as_not_retryable() -> None:
    policy = RetryPolicy(max_attempts=5, retryable=lambda e: not isinstance(e, ValueError))
    run = build(Worker("w", capacity=3), retry=policy)
    for task_id in ("refused", "flagged", "retried"):
        run.d.submit(Task(task_id))
    run.d.dispatch()
    assert run.d.fail("refused", error=ValueError("bad input")) is DEAD
    assert run.d.fail("flagged", error="no", retryable=False) is DEAD
    assert run.d.fail("retried", error=KeyError("x")) is RETRYING
    for task_id in ("refused", "flagged"):
        assert run.d.dlq[task_id].reason is Reason.NOT_RETRYABLE
    assert run.d.dlq["refused"].error == "ValueError: bad input"
    assert run.d.stats().dead_by_reason == {Reason.NOT_RETRYABLE: 2}


def test_out_of_attempts_dead_letters_as_max_attempts_with_the_attempt_history() -> None:
    run = build(Worker("w"), lease=10.0, retry=no_jitter(max_attempts=3, base=1.0))
    run.d.submit(Task("t"))
    run.d.dispatch()
    run.clock.set(1.0)
    run.d.fail("t", error=TimeoutError("slow"))
    run.clock.set(2.0)
    run.d.dispatch()
    run.clock.set(12.0)
    run.d.dispatch()  # the lease of attempt 2 expires, attempt 3 starts
    run.clock.set(13.0)
    assert run.d.fail("t", error="boom") is DEAD
    entry = run.d.dlq["t"]
    assert entry.reason is Reason.MAX_ATTEMPTS and entry.error == "boom"
    assert entry.history == (
        AttemptRecord(1, "w", 0.0, 1.0, "failed", "TimeoutError: slow"),
        AttemptRecord(2, "w", 2.0, 12.0, "lease_expired", None),
        AttemptRecord(3, "w", 12.0, 13.0, "failed", "boom"),
    )
    [dead] = run.of(EventKind.DEAD_LETTERED)
    assert (dead.task_id, dead.reason, dead.state) == ("t", Reason.MAX_ATTEMPTS, DEAD)
    assert run.d.explain("t") == "dead-lettered: max_attempts (boom) at 13"


# -- workers leaving, cancel, close ----------------------------------------------------


def test_remove_worker_requeues_its_tasks_without_spending_an_attempt() -> None:
    run = build(Worker("w1", capacity=2), Worker("w2", capacity=2), lease=10.0)
    run.d.submit(Task("t", max_attempts=1))
    [first] = run.d.dispatch()
    run.clock.set(3.0)
    returned = run.d.remove_worker(first.worker_id)
    assert [task.id for task in returned] == ["t"]
    assert run.d.state_of("t") is QUEUED
    requeued = run.events[-1]
    assert (requeued.kind, requeued.worker_id) == (EventKind.REQUEUED, first.worker_id)
    assert run.d.stats().failed == 0 and run.d.next_wakeup() is None  # its lease is gone
    [second] = run.d.dispatch()
    assert second.worker_id != first.worker_id
    # max_attempts=1 and still a live attempt: the removal did not spend it.
    assert run.d.fail("t", error="x") is DEAD
    history = run.d.dlq["t"].history
    assert [(r.worker_id, r.outcome) for r in history] == [
        (first.worker_id, "requeued"),
        (second.worker_id, "failed"),
    ]


@pytest.mark.parametrize("state", [QUEUED, PARKED, RETRYING, LEASED])
def test_cancel_withdraws_a_task_from_every_live_state(state: TaskState) -> None:
    run, task_id = _task_in(state)
    task = run.d.cancel(task_id)
    assert task.id == task_id and run.d.state_of(task_id) is CANCELLED
    cancelled = run.events[-1]
    assert (cancelled.kind, cancelled.reason) == (EventKind.CANCELLED, Reason.CANCELLED)
    assert cancelled.worker_id == ("w" if state is LEASED else None)
    assert task_id not in run.d and task_id not in run.d.queue
    assert run.d.tracker.worker("w").in_flight == 0 and run.d.leases() == []
    assert run.d.next_wakeup() is None  # its lease or retry timer went with it
    assert run.d.stats().by_state[CANCELLED] == 1 and len(run.d) == 0


@pytest.mark.parametrize("state", [COMPLETED, DEAD, CANCELLED])
def test_cancel_of_a_finished_task_is_refused(state: TaskState) -> None:
    run, task_id = _task_in(state)
    with pytest.raises(TaskStateError, match="cannot be cancelled"):
        run.d.cancel(task_id)
    with pytest.raises(UnknownTaskError):
        run.d.cancel("never-submitted")


def test_close_stops_intake_while_queued_and_leased_work_finishes() -> None:
    run = build(Worker("w"))
    run.d.submit(Task("running"))
    run.d.submit(Task("waiting"))
    run.d.dispatch()
    run.d.close()
    run.d.close()  # idempotent
    assert run.d.closed and run.kinds().count(EventKind.CLOSED) == 1
    with pytest.raises(ClosedError):
        run.d.submit(Task("late"))
    with pytest.raises(ClosedError):
        run.d.submit(Task("running"))  # closed first, before any duplicate check
    run.d.complete("running")
    assert run.dispatch_ids() == ["waiting"]
    run.d.complete("waiting")
    assert len(run.d) == 0 and run.d.stats().by_state[COMPLETED] == 2


# -- expiry and eviction ---------------------------------------------------------------


def test_a_queued_task_past_its_ttl_is_dead_lettered_as_ttl_expired() -> None:
    run = build()
    run.d.submit(Task("t", ttl=5.0))
    assert run.d.next_wakeup() == 5.0
    run.clock.set(5.0)
    run.d.tick()
    assert run.d.state_of("t") is DEAD and run.d.dlq["t"].reason is Reason.TTL_EXPIRED
    assert run.events[-1].reason is Reason.TTL_EXPIRED


def test_a_queued_task_past_its_ttl_and_deadline_is_ttl_expired_as_a_parked_one_is() -> None:
    # A PriorityQueue drops a task for its TTL only (it holds one past its deadline):
    # the reason is the TTL, as for the same task parked, not a guess from the deadline.
    run = build()
    run.d.submit(Task("t", ttl=5.0, deadline=2.0))
    run.clock.set(5.0)
    run.d.tick()
    assert run.d.dlq["t"].reason is Reason.TTL_EXPIRED


def test_a_fair_queued_task_past_its_ttl_and_deadline_is_ttl_expired() -> None:
    # A FairScheduler says why its tenant queue dropped the task: the Distributor no
    # longer guesses deadline_missed from the deadline that also passed.
    run = build(queue=FairScheduler(clock := ManualClock()), clock=clock)
    run.d.submit(Task("t", tenant="a", ttl=5.0, deadline=2.0))
    run.clock.set(5.0)
    run.d.tick()
    assert run.d.dlq["t"].reason is Reason.TTL_EXPIRED


def test_a_parked_task_past_its_ttl_is_dead_lettered_as_ttl_expired() -> None:
    run = build(Worker("cpu"))
    run.d.submit(Task("render", requires={"gpu"}, ttl=5.0))
    run.clock.set(1.0)
    run.d.dispatch()
    assert run.d.state_of("render") is PARKED and run.d.next_wakeup() == 5.0
    run.clock.set(5.0)
    run.d.tick()
    assert run.d.dlq["render"].reason is Reason.TTL_EXPIRED


def test_a_missed_deadline_under_on_miss_dead_letter_is_dead_lettered_as_deadline_missed() -> None:
    clock = ManualClock()
    run = build(clock=clock, queue=DeadlineScheduler(clock, on_miss="dead_letter"))
    run.d.submit(Task("t", deadline=10.0, cost=1.0))
    assert run.d.next_wakeup() == 10.0
    run.clock.set(10.0)
    run.d.tick()
    assert run.d.dlq["t"].reason is Reason.DEADLINE_MISSED
    assert run.d.stats().deadline_hit_rate == 0.0


def test_an_infeasible_deadline_under_on_miss_dead_letter_is_dead_lettered_at_submit() -> None:
    clock = ManualClock()
    run = build(clock=clock, queue=DeadlineScheduler(clock, on_miss="dead_letter"))
    assert run.d.submit(Task("t", deadline=1.0, cost=5.0)) == SubmitResult("t", True, DEAD)
    assert run.d.dlq["t"].reason is Reason.DEADLINE_INFEASIBLE
    assert run.kinds("t") == [EventKind.SUBMITTED, EventKind.DEAD_LETTERED]


def test_a_bounded_queues_eviction_dead_letters_as_evicted() -> None:
    clock = ManualClock()
    run = build(clock=clock, queue=PriorityQueue(clock, maxsize=1, overflow="drop_lowest"))
    run.d.submit(Task("low", priority=3))
    assert run.d.submit(Task("high", priority=1)) == SubmitResult("high", True, QUEUED)
    assert run.d.dlq["low"].reason is Reason.EVICTED
    assert run.d.submit(Task("lower", priority=5)) == SubmitResult("lower", True, DEAD)
    assert run.d.stats().dead_by_reason == {Reason.EVICTED: 2}
    assert run.d.stats().by_state[DEAD] == 2


# -- time ------------------------------------------------------------------------------


def test_next_wakeup_is_never_in_the_past() -> None:
    run = build(Worker("w"), lease=10.0)
    assert run.d.next_wakeup() is None
    run.d.submit(Task("t"))
    run.d.dispatch()
    assert run.d.next_wakeup() == 10.0
    run.clock.set(25.0)  # the host overslept: the expiry is due now, not at 10
    assert run.d.next_wakeup() == 25.0
    run.d.tick()
    assert run.d.next_wakeup() is None  # the task is queued again; nothing waits on time


def test_tick_does_everything_that_is_due() -> None:
    clock = ManualClock()
    limiter = RateLimiter(1, per=10.0, burst=1, clock=clock)
    run = build(
        Worker("w", capacity=5),
        clock=clock,
        lease=10.0,
        retry=no_jitter(base=10.0),
        gates=[RateGate(limiter, "api")],
    )
    run.d.submit(Task("expires", ttl=10.0, requires={"gpu"}))
    run.d.submit(Task("silent"))
    run.d.submit(Task("failing"))
    run.d.dispatch()
    run.d.fail("failing", error="x")
    run.d.submit(Task("api-1", resources={"api": 1}))
    run.d.submit(Task("api-2", resources={"api": 1}))
    run.d.dispatch()
    assert run.states(["expires", "silent", "failing", "api-1", "api-2"]) == {
        "expires": PARKED,
        "silent": LEASED,
        "failing": RETRYING,
        "api-1": LEASED,
        "api-2": PARKED,
    }
    assert run.d.next_wakeup() == 10.0
    seen = len(run.events)
    run.clock.set(10.0)
    run.d.tick()
    happened = {(e.kind, e.task_id) for e in run.events[seen:]}
    assert happened >= {
        (EventKind.DEAD_LETTERED, "expires"),
        (EventKind.LEASE_EXPIRED, "silent"),
        (EventKind.LEASE_EXPIRED, "api-1"),
        (EventKind.REQUEUED, "failing"),
        (EventKind.UNPARKED, "api-2"),
    }
    assert run.d.next_wakeup() is None  # everything due was done; nothing else waits on time


def test_a_task_parked_by_a_rate_limit_is_not_woken_by_an_unrelated_completion() -> None:
    clock = ManualClock()
    limiter = RateLimiter(1, per=100.0, burst=1, clock=clock)
    queue = SpyQueue(clock)
    run = build(Worker("w", capacity=5), clock=clock, queue=queue, gates=[RateGate(limiter, "api")])
    run.d.submit(Task("api-1", resources={"api": 1}))
    run.d.submit(Task("api-2", resources={"api": 1}))
    run.d.dispatch()
    assert run.d.state_of("api-2") is PARKED
    asked = queue.asked["api-2"]
    for i in range(3):
        run.d.submit(Task(i))
        run.d.dispatch()
        run.d.complete(i)
    assert run.d.state_of("api-2") is PARKED and queue.asked["api-2"] == asked


def _host_loop(seed: int) -> list[str]:
    """Run a host that sleeps until ``next_wakeup()`` or its own next outcome; return what
    went wrong: a wake that found nothing to do, or a timer a tick found due before the wake."""
    rng = random.Random(seed)
    clock = ManualClock()
    limiter = RateLimiter(2, per=10.0, burst=2, clock=clock)
    run = build(
        Worker("w1", capacity=2),
        Worker("w2", capacity=2),
        clock=clock,
        seed=seed,
        lease=8.0,
        retry=RetryPolicy(max_attempts=3, base=1.0, cap=20.0, rng=random.Random(seed)),
        tracker=CapacityTracker(clock, ejection=None, health=None),
        gates=[RateGate(limiter, "api")],
    )
    d = run.d
    for i in range(40):
        d.submit(
            Task(
                i,
                priority=rng.randrange(3),
                ttl=rng.choice([None, None, 15.0, 40.0]),
                requires={"gpu"} if rng.random() < 0.1 else set(),
                resources={"api": 1} if rng.random() < 0.3 else {},
            )
        )
    outcomes: list[tuple[float, int, Hashable, str]] = []  # (when, attempt, task id, outcome)
    problems: list[str] = []
    made = d.dispatch()
    for _ in range(2000):
        for a in made:
            fate = rng.random()
            if fate < 0.6:
                outcomes.append((clock.now() + rng.uniform(0.5, 6.0), a.attempt, a.task.id, "ok"))
            elif fate < 0.85:
                outcomes.append((clock.now() + rng.uniform(0.5, 6.0), a.attempt, a.task.id, "fail"))
            # else: the worker never reports; the lease expires
        outcomes.sort(key=lambda o: o[0])
        wake = d.next_wakeup()
        assert wake is None or wake >= clock.now()
        host = outcomes[0][0] if outcomes else None
        if wake is None and host is None:
            break
        soonest = min(t for t in (wake, host) if t is not None)
        for early in ((clock.now() + soonest) / 2, math.nextafter(soonest, -math.inf)):
            if early <= clock.now():
                continue
            # Before the wake nothing is due: a tick does nothing.
            seen = len(run.events)
            clock.set(early)
            d.tick()
            if len(run.events) != seen:
                problems.append(f"due before the wake at {soonest}: {run.events[seen:]}")
        clock.set(soonest)
        seen = len(run.events)
        while outcomes and outcomes[0][0] <= clock.now():
            _, attempt, task_id, outcome = outcomes.pop(0)
            lease = d.assignment(task_id) if d.state_of(task_id) is LEASED else None
            if lease is None or lease.attempt != attempt:
                continue  # that lease expired; its late report is another test's business
            if outcome == "ok":
                d.complete(task_id)
            else:
                d.fail(task_id, error="no")
        made = d.dispatch()
        if (host is None or host > soonest) and len(run.events) == seen:
            problems.append(f"woke at {clock.now()} for nothing")
    assert len(d) == 0 or all(d.state_of(i) is PARKED for i in range(40) if i in d)
    return problems


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_host_sleeping_until_next_wakeup_never_wakes_for_nothing_and_never_misses_a_timer(
    seed: int,
) -> None:
    assert _host_loop(seed) == []


# -- events ----------------------------------------------------------------------------

POLICY_EVENT_KINDS = {
    EventKind.REROUTED,
    EventKind.ASSIGNED,
    EventKind.ESCALATED,
    EventKind.PREEMPT,
    EventKind.PREEMPTED,
    EventKind.THROTTLED,
    EventKind.RESERVED,
    EventKind.GANG_READY,
}


def test_every_event_kind_is_emitted_when_its_change_happens_in_order() -> None:
    clock = ManualClock()
    ejection = OutlierEjection(
        consecutive_failures=1, base_ejection_time=10.0, max_ejection_percent=100.0
    )
    run = build(
        clock=clock,
        tracker=CapacityTracker(clock, ejection=ejection, health=None),
        breaker=breaker_factory(clock),
        retry=no_jitter(max_attempts=3, base=1.0),
        lease=10.0,
    )
    d = run.d
    d.add_worker(Worker("w", capacity=2))
    d.submit(Task("a"))
    d.submit(Task("a"))
    d.submit(Task("gpu-job", requires={"gpu"}))
    d.dispatch()
    d.fail("a", error=TimeoutError("slow"))
    d.add_worker(Worker("g", skills={"gpu"}))
    d.set_health("g", Health.DEGRADED)
    clock.set(1.0)
    d.tick()
    d.dispatch()
    d.cancel("a")
    d.submit(Task("late"))
    clock.set(11.0)
    d.tick()
    d.dispatch()
    d.complete("gpu-job")
    d.fail("late", error="no", retryable=False)
    clock.set(21.0)  # g's breaker is half-open, its ejection over: a probe closes the breaker
    d.submit(Task("probe", requires={"gpu"}))
    d.dispatch()
    d.complete("probe")
    d.remove_worker("w")
    d.close()
    happened = [(e.kind.value, e.task_id, e.worker_id, e.time) for e in run.events]
    # Not pinned: a breaker closing (an event kind newer than this test), and "a" parked at
    # 1.0 (with every worker out or full, a tracker that says so keeps it queued instead).
    loose = [("breaker_closed", None, "g", 21.0), ("parked", "a", None, 1.0)]
    assert [event for event in happened if event not in loose] == [
        ("worker_added", None, "w", 0.0),
        ("submitted", "a", None, 0.0),
        ("duplicate", "a", None, 0.0),
        ("submitted", "gpu-job", None, 0.0),
        ("dispatched", "a", "w", 0.0),
        ("parked", "gpu-job", None, 0.0),
        ("failed", "a", "w", 0.0),
        ("worker_ejected", None, "w", 0.0),  # one failure in a row ejects, for 10 s
        ("breaker_opened", None, "w", 0.0),  # one failure opens it, for 5 s
        ("retry_scheduled", "a", None, 0.0),
        ("worker_added", None, "g", 0.0),
        ("unparked", "gpu-job", None, 0.0),
        ("worker_health", None, "g", 0.0),
        ("requeued", "a", None, 1.0),
        ("dispatched", "gpu-job", "g", 1.0),
        ("cancelled", "a", None, 1.0),
        ("submitted", "late", None, 1.0),
        ("lease_expired", "gpu-job", "g", 11.0),
        ("worker_ejected", None, "g", 11.0),
        ("breaker_opened", None, "g", 11.0),
        ("requeued", "gpu-job", None, 11.0),
        ("dispatched", "late", "w", 11.0),  # w is back: the ejection ended, the breaker half-open
        ("parked", "gpu-job", None, 11.0),
        ("completed", "gpu-job", None, 11.0),  # a late report of the expired lease wins
        ("failed", "late", "w", 11.0),
        ("worker_ejected", None, "w", 11.0),
        ("breaker_opened", None, "w", 11.0),
        ("dead_lettered", "late", None, 11.0),
        ("submitted", "probe", None, 21.0),
        ("dispatched", "probe", "g", 21.0),
        ("completed", "probe", None, 21.0),
        ("worker_removed", None, "w", 21.0),
        ("closed", None, None, 21.0),
    ]
    # The kinds of the placement and flow-control policies have tests of their own.
    assert set(run.kinds()) == set(EventKind) - POLICY_EVENT_KINDS
    assert run.d.breaker("g").state is CircuitState.CLOSED  # type: ignore[union-attr]
    by_kind = {e.kind: e for e in run.events}
    assert by_kind[EventKind.RETRY_SCHEDULED].at == 1.0
    assert by_kind[EventKind.WORKER_HEALTH].detail == "degraded"
    assert by_kind[EventKind.DEAD_LETTERED].reason is Reason.NOT_RETRYABLE
    assert by_kind[EventKind.DISPATCHED].attempt == 1 and by_kind[EventKind.DISPATCHED].at == 31.0


def test_events_are_delivered_after_the_call_that_made_them() -> None:
    seen: list[tuple[Hashable, int, int]] = []

    def listener(event: object) -> None:
        if getattr(event, "kind", None) is EventKind.DISPATCHED:
            d = run.d
            seen.append((getattr(event, "task_id", None), len(d.leases()), len(d.queue)))

    run = build(Worker("w", capacity=3), on_event=listener)
    for i in range(3):
        run.d.submit(Task(i))
    run.d.dispatch()
    # Every dispatch of the call was done before the first event was heard.
    assert seen == [(0, 3, 0), (1, 3, 0), (2, 3, 0)]


def test_a_listener_may_submit_and_dispatch_a_follow_up_task_from_completed() -> None:
    follow_ups: list[list[Hashable]] = []

    def listener(event: object) -> None:
        if getattr(event, "kind", None) is EventKind.COMPLETED:
            task_id = getattr(event, "task_id", None)
            if task_id == "step-1":
                run.d.submit(Task("step-2"))
                follow_ups.append(run.dispatch_ids())

    run = build(Worker("w"), on_event=listener)
    run.d.submit(Task("step-1"))
    run.d.dispatch()
    run.d.complete("step-1")
    assert follow_ups == [["step-2"]]
    assert run.d.state_of("step-2") is LEASED
    assert run.kinds()[-3:] == [EventKind.COMPLETED, EventKind.SUBMITTED, EventKind.DISPATCHED]


def test_a_listener_that_raises_keeps_no_event_from_the_others() -> None:
    heard: list[tuple[EventKind, Hashable]] = []

    def broken(event: Event) -> None:
        if event.kind is EventKind.DISPATCHED:
            raise RuntimeError(f"exporter down at {event.task_id}")

    run = build(Worker("w", capacity=3), lease=10.0, on_event=broken)
    run.d.add_listener(lambda event: heard.append((event.kind, event.task_id)))
    for name in "tuv":
        run.d.submit(Task(name))
    heard.clear()
    with pytest.raises(RuntimeError, match="exporter down at t"):  # the first error
        run.d.dispatch()
    # Every event of the dispatch reached the other listener (and the recorder), and
    # the placements stand: the caller finds them among the leases.
    assert heard == [(EventKind.DISPATCHED, name) for name in "tuv"]
    assert [e.task_id for e in run.events if e.kind is EventKind.DISPATCHED] == list("tuv")
    assert [a.task.id for a in run.d.leases()] == list("tuv")


def test_stats_is_a_read_it_changes_no_later_decision() -> None:
    # The only worker's breaker opened until t=5; at t=6 a parked task's TTL is due. A
    # stats() before the tick must not move the breaker to half-open ahead of the tick.
    def run(read_first: bool) -> tuple[list[tuple[EventKind, Hashable]], Any]:
        clock = ManualClock()
        events: list[Event] = []
        d = Distributor(
            clock,
            lease=None,
            on_event=events.append,
            retry=RetryPolicy(max_attempts=1, rng=random.Random(1)),
            breaker=lambda _: CircuitBreaker(clock, minimum_calls=1, open_duration=5.0),
        )
        d.add_worker(Worker("w", capacity=1))
        d.submit(Task("a"))
        d.dispatch()
        d.fail("a", error="boom")  # the breaker opens until t=5
        d.submit(Task("p", ttl=4.0))
        d.dispatch()  # parked: the only worker's breaker is open
        clock.set(6.0)
        if read_first:
            assert d.stats().workers["w"].breaker is CircuitState.HALF_OPEN  # as it reads
        d.tick()
        return [(e.kind, e.task_id) for e in events], d.snapshot()

    assert run(read_first=True) == run(read_first=False)


class ObservedTwins:
    """Two distributors driven alike, on clocks of their own set alike; the second is
    asked ``explain()`` of every task it knows, and ``stats()``, after each step.
    ``step`` checks that both then answered, did, told and hold the same."""

    def __init__(self, capacities: tuple[int, ...]) -> None:
        self.clocks = (ManualClock(), ManualClock())
        self.events: tuple[list[Event], list[Event]] = ([], [])
        self.ds = tuple(
            Distributor(
                clock,
                lease=None,
                dedup_window=1e9,  # every task stays known, to be explained
                on_event=events.append,
                rng=random.Random(7),
                breaker=breaker_factory(clock, max_wait_in_half_open=2.0),
            )
            for clock, events in zip(self.clocks, self.events, strict=True)
        )
        self.ids: list[Hashable] = []
        for d in self.ds:
            for i, capacity in enumerate(capacities):
                d.add_worker(Worker(f"w{i}", capacity=capacity))

    def step(self, act: Callable[[Distributor, ManualClock], Any]) -> None:
        seen = []
        for d, clock, events in zip(self.ds, self.clocks, self.events, strict=True):
            try:
                made = act(d, clock)
            except Exception as error:  # a refusal is a decision too: both must make it
                made = type(error).__name__
            if isinstance(made, list):
                made = assignment_view(made)
            elif attrs.has(type(made)):
                made = comparable(made)
            if d is self.ds[1]:  # the observed one: every read it has, at every step
                for task_id in self.ids:
                    d.explain(task_id)
                d.stats()
            seen.append((made, list(events), d.next_wakeup(), d.snapshot()))
        (made, events, wakeup, snapshot), (made_too, events_too, wakeup_too, snapshot_too) = seen
        assert (made, events, wakeup) == (made_too, events_too, wakeup_too)
        differ = {key for key in snapshot if snapshot[key] != snapshot_too.get(key)}
        assert {key: snapshot_too[key] for key in differ} == {key: snapshot[key] for key in differ}

    def submit(self, task_id: str) -> None:
        self.ids.append(task_id)
        self.step(lambda d, _: d.submit(Task(task_id)))


def test_explain_is_a_read_it_changes_no_later_decision() -> None:
    # A breaker through OPEN, HALF_OPEN with its probe out, past the probe's deadline
    # (re-opened then, not yet observed), HALF_OPEN again and CLOSED; then opened by
    # the host behind the distributor's back. explain() of the tasks parked behind it,
    # at every step, must neither make the breaker's transitions nor set its timer.
    twins = ObservedTwins(capacities=(2,))
    twins.submit("broken")
    twins.step(lambda d, _: d.dispatch())
    twins.step(lambda d, _: d.fail("broken", error="down", retryable=False))  # open until 5
    twins.submit("p")
    twins.step(lambda d, _: d.dispatch())  # parked behind the open breaker
    twins.step(lambda d, clock: clock.set(5.0))
    twins.step(lambda d, _: d.tick())
    twins.step(lambda d, _: d.dispatch())  # p is the probe: its deadline is 7
    twins.submit("q")
    twins.step(lambda d, _: d.dispatch())  # parked behind the probe
    twins.step(lambda d, clock: clock.set(8.0))  # re-opened at 7, until 12: not yet seen
    twins.step(lambda d, _: d.breaker("w0").peek_next_wakeup())
    twins.step(lambda d, _: d.tick())
    twins.step(lambda d, clock: clock.set(12.0))
    twins.step(lambda d, _: d.tick())
    twins.step(lambda d, _: d.dispatch())  # q is the probe now
    twins.step(lambda d, _: d.complete("q"))  # closed; the late p is dropped
    twins.step(lambda d, _: d.complete("p"))
    twins.submit("r")
    twins.ids.append("s")
    twins.step(lambda d, _: d.submit(Task("s", resources={"slots": 2})))
    twins.step(lambda d, _: d.dispatch())  # r runs; s is parked, too big for the room left
    twins.step(lambda d, _: d.breaker("w0").record_failure())  # the host opens it, until 17
    twins.step(lambda d, _: d.complete("r"))
    twins.step(lambda d, clock: clock.set(20.0))
    twins.step(lambda d, _: d.tick())
    twins.step(lambda d, _: d.dispatch())
    assert [d.state_of("s") for d in twins.ds] == [TaskState.LEASED] * 2


_WAITING = (TaskState.QUEUED, TaskState.PARKED, TaskState.RETRYING)
_TWIN_STEPS = st.lists(
    st.sampled_from(
        [
            ("submit", 1),
            ("submit", 2),  # a task that needs 2 slots: it parks on a part-full worker
            ("dispatch", 0),
            ("tick", 0),
            ("advance", 1.0),
            ("advance", 3.0),
            ("advance", 5.0),
            ("complete", 0),  # the oldest lease
            ("fail", 0),
            ("assign", 0),  # the newest waiting task, forced onto the worker
            ("trip", 0),  # the host records a failure: the breaker opens
            ("reset", 0),
        ]
    ),
    max_size=30,
)


def _twin_step(twins: ObservedTwins, kind: str, arg: Any) -> None:
    d = twins.ds[0]  # (the twins are alike so far: what is true of one is of both)
    if kind == "submit":
        task_id = f"t{len(twins.ids)}"
        twins.ids.append(task_id)
        twins.step(lambda d, _: d.submit(Task(task_id, resources={"slots": arg})))
    elif kind == "advance":
        twins.step(lambda d, clock: clock.advance(arg))
    elif kind == "trip":
        twins.step(lambda d, _: d.breaker("w0").record_failure())
    elif kind == "reset":
        twins.step(lambda d, _: d.breaker("w0").reset())
    elif kind in ("dispatch", "tick"):
        twins.step(lambda d, _: getattr(d, kind)())
    elif kind in ("complete", "fail") and d.leases():
        task_id = d.leases()[0].task.id
        if kind == "complete":
            twins.step(lambda d, _: d.complete(task_id))
        else:
            twins.step(lambda d, _: d.fail(task_id, error="down", retryable=False))
    elif kind == "assign":
        waiting = [t for t in twins.ids if d.state_of(t) in _WAITING]
        if waiting:
            twins.step(lambda d, _: d.assign(waiting[-1], "w0", force=True))


@given(steps=_TWIN_STEPS)
# The two ways explain() moved things: a breaker re-opened at its probe's deadline (t=7)
# made to say so, and a timer set for a breaker the host tripped behind the distributor.
@example(
    [("submit", 1), ("submit", 1), ("trip", 0), ("advance", 5), ("dispatch", 0), ("advance", 3)]
)
@example([("submit", 2), ("submit", 2), ("dispatch", 0), ("trip", 0)])
def test_explain_and_stats_change_no_decision_whatever_the_steps(
    steps: list[tuple[str, Any]],
) -> None:
    # As above, over random runs: a breaker that trips on a failure and gives up on
    # a probe after 2 s, tasks forced past it, a host that trips and resets it.
    twins = ObservedTwins(capacities=(3,))
    for kind, arg in steps:
        _twin_step(twins, kind, arg)


# -- stats -----------------------------------------------------------------------------


def _stats_run() -> Recorded:
    """Two tenants on two workers: two completions, a dead letter, a cancel, one queued."""
    run = build(Worker("a", capacity=2), Worker("b", capacity=2))
    d, clock = run.d, run.clock
    d.submit(Task("a1", tenant="alice"))
    d.submit(Task("a2", tenant="alice", deadline=100.0))
    d.submit(Task("b1", tenant="bob"))
    d.submit(Task("b2", tenant="bob"))
    d.submit(Task("b2", tenant="bob"))  # a duplicate
    clock.set(2.0)
    placed = {a.task.id: a.worker_id for a in d.dispatch()}
    assert placed == {"a1": "a", "a2": "b", "b1": "a", "b2": "b"}
    clock.set(5.0)
    d.complete("a1", duration=3.0)
    clock.set(6.0)
    d.complete("a2", duration=4.0)
    clock.set(7.0)
    d.fail("b1", error="no", retryable=False)
    d.cancel("b2")
    d.submit(Task("b3", tenant="bob"))
    clock.set(8.0)
    return run


def test_stats_counts_every_task_in_exactly_one_state_and_every_change() -> None:
    stats = _stats_run().d.stats()
    assert stats.time == 8.0
    assert stats.by_state == {
        QUEUED: 1,
        PARKED: 0,
        RETRYING: 0,
        LEASED: 0,
        COMPLETED: 2,
        DEAD: 1,
        CANCELLED: 1,
    }
    assert stats.submitted == sum(stats.by_state.values()) == 5
    assert (stats.duplicates, stats.dispatched, stats.failed) == (1, 4, 1)
    assert (stats.lease_expiries, stats.retries) == (0, 0)
    assert stats.dead_by_reason == {Reason.NOT_RETRYABLE: 1}


def test_stats_latencies_and_rates() -> None:
    run = _stats_run()
    stats = run.d.stats()
    assert (stats.wait.count, stats.wait.p50, stats.wait.max) == (4, 2.0, 2.0)
    assert (stats.end_to_end.count, stats.end_to_end.p50, stats.end_to_end.max) == (2, 5.5, 6.0)
    assert stats.oldest_waiting_age == 1.0  # b3, queued at 7
    assert stats.completion_rate == pytest.approx(2 / 3)
    assert stats.deadline_hit_rate == 1.0  # a2 finished at 6, before 100
    assert stats.utilization == 0.0 and stats.load_variance == 0.0
    run.d.dispatch()
    assert run.d.stats().utilization == pytest.approx(1 / 4)


def test_stats_per_tenant_and_per_worker() -> None:
    stats = _stats_run().d.stats()
    alice, bob = stats.tenants["alice"], stats.tenants["bob"]
    assert (alice.submitted, alice.live, alice.completed, alice.dead_lettered) == (2, 0, 2, 0)
    assert (alice.cancelled, alice.mean_wait) == (0, 2.0)
    assert (bob.submitted, bob.live, bob.completed, bob.dead_lettered) == (3, 1, 0, 1)
    assert (bob.cancelled, bob.mean_wait) == (1, 2.0)
    a, b = stats.workers["a"], stats.workers["b"]
    assert (a.in_flight, a.load_ratio, a.health, a.breaker) == (0, 0.0, Health.HEALTHY, None)
    assert (a.completed, a.failed, a.latency) == (1, 1, 3.0)
    assert (b.completed, b.failed, b.latency) == (1, 0, 4.0)


def test_stats_before_anything_happened_are_empty_not_errors() -> None:
    stats = Distributor(ManualClock()).stats()
    assert stats.submitted == 0 and sum(stats.by_state.values()) == 0
    assert stats.completion_rate == 1.0 and stats.deadline_hit_rate == 1.0
    assert stats.oldest_waiting_age == 0.0 and stats.wait.count == 0
    assert math.isnan(stats.wait.p50) and stats.tenants == {} and stats.workers == {}


# -- explain ---------------------------------------------------------------------------


def test_explain_of_a_queued_task_says_how_long_it_has_waited() -> None:
    run = build(Worker("w"))
    run.d.submit(Task("t"))
    run.clock.set(3.0)
    assert run.d.explain("t") == (
        "waiting: queued 3 s; tasks ahead of it in the queue's order go first"
    )


def test_explain_of_a_task_held_by_its_tenants_quotas() -> None:
    clock = ManualClock()
    quotas = {"alice": Quota(max_concurrent=1), "bob": Quota(rate=1, per=100.0)}
    run = build(Worker("w", capacity=5), clock=clock, queue=FairScheduler(clock, quotas=quotas))
    for task_id, tenant in [("a1", "alice"), ("a2", "alice"), ("b1", "bob"), ("b2", "bob")]:
        run.d.submit(Task(task_id, tenant=tenant))
    run.d.dispatch()
    assert run.d.explain("a2") == (
        "waiting: tenant 'alice' at its quota of running tasks, until one finishes (queued 0 s)"
    )
    assert run.d.explain("b2") == "waiting: tenant 'bob' at its rate quota, until 100"


@pytest.mark.parametrize(
    ("workers", "task", "expected"),
    [
        ([Worker("w")], Task("t", requires={"gpu"}), "parked: no worker has skill 'gpu'"),
        (
            [Worker("w", skills={"a"})],
            Task("t", requires={"b", "a", "c"}),
            "parked: no worker has skills 'a', 'b', 'c'",
        ),
    ],
    ids=["missing skill", "missing skills"],
)
def test_explain_of_a_task_parked_because_no_worker_qualifies(
    workers: list[Worker], task: Task, expected: str
) -> None:
    run = build(*workers)
    run.d.submit(task)
    run.d.dispatch()
    assert run.d.explain(task.id) == expected


def test_explain_says_when_no_worker_is_registered() -> None:
    run = build()
    run.d.submit(Task("t"))
    run.d.dispatch()
    assert "no worker is registered" in run.d.explain("t")


def test_explain_of_a_task_held_by_a_gate_names_the_gate() -> None:
    clock = ManualClock()
    limiter = RateLimiter(1, per=10.0, burst=1, clock=clock)
    pool = ResourcePool("db", size=1)
    run = build(
        Worker("w", capacity=5), clock=clock, gates=[RateGate(limiter, "api"), PoolGate(pool)]
    )
    for task_id, resources in [("api-1", {"api": 1}), ("api-2", {"api": 1})]:
        run.d.submit(Task(task_id, resources=resources))
    for task_id in ("db-1", "db-2"):
        run.d.submit(Task(task_id, resources={"db": 1}))
    run.d.dispatch()
    assert run.d.explain("api-2") == "parked: held by the 'api' rate limit, next slot at 10"
    assert run.d.explain("db-2") == (
        "parked: held by the 'db' pool, until a task holding it finishes"
    )


def test_explain_of_a_leased_a_retrying_and_a_finished_task() -> None:
    run = build(Worker("cpu", capacity=3), retry=no_jitter(base=5.0))
    for task_id in ("running", "failing", "done", "dead", "gone"):
        run.d.submit(Task(task_id))
    run.clock.set(1.0)
    run.d.dispatch()
    run.clock.set(2.0)
    run.d.fail("failing", error=TimeoutError("no answer"))
    run.d.complete("done")
    run.d.dispatch()
    run.d.fail("dead", error=KeyError("k"), retryable=False)
    run.d.cancel("gone")
    assert run.d.explain("running") == "leased: attempt 1 on worker 'cpu' since 1, lease until 31"
    assert run.d.explain("failing") == "retry 2 of 3 at 7 after TimeoutError: no answer on 'cpu'"
    assert run.d.explain("done") == "completed at 2"
    assert run.d.explain("dead") == "dead-lettered: not_retryable (KeyError: 'k') at 2"
    assert run.d.explain("gone") == "cancelled at 2"
    with pytest.raises(UnknownTaskError):
        run.d.explain("never")


# -- determinism -----------------------------------------------------------------------


def _seeded_run(seed: int) -> tuple[list[object], list[object]]:
    rng = random.Random(seed)
    clock = ManualClock()
    run = build(
        *(Worker(f"w{i}", capacity=2) for i in range(4)),
        clock=clock,
        seed=seed,
        balancer=PowerOfTwoChoices(rng=random.Random(seed)),
        retry=RetryPolicy(max_attempts=3, base=1.0, rng=random.Random(seed)),
        lease=5.0,
    )
    made: list[object] = []
    for step in range(60):
        run.d.submit(Task(step, priority=rng.randrange(3)))
        for a in run.d.dispatch():
            made.append(assignment_view([a]))
            fate = rng.random()
            if fate < 0.6:
                run.d.complete(a.task.id)
            elif fate < 0.8:
                run.d.fail(a.task.id, error="x")
        clock.advance(rng.uniform(0.1, 2.0))
    return made, list(run.events)


def test_the_same_seed_and_manual_clock_give_the_same_assignments_and_events() -> None:
    first, second = _seeded_run(11), _seeded_run(11)
    assert first == second
    assert len(first[0]) > 50 and len(first[1]) > 200
    assert _seeded_run(12) != first  # the seed does matter


class CountingTracker(CapacityTracker):
    """A tracker of a user's own: the Distributor must go through its overrides."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.calls: list[tuple[str, object]] = []

    def assign(self, task: Task, worker_id: Hashable) -> WorkerState:
        self.calls.append(("assign", task.id))
        return super().assign(task, worker_id)

    def release(
        self,
        task: Task,
        worker_id: Hashable,
        duration: float | None = None,
        ok: bool | None = True,
    ) -> WorkerState:
        self.calls.append(("release", task.id))
        return super().release(task, worker_id, duration, ok)

    def has_room(self) -> bool:
        self.calls.append(("has_room", None))
        return super().has_room()


def test_a_tracker_subclass_hears_every_assign_release_and_room_query() -> None:
    clock = ManualClock()
    tracker = CountingTracker(clock)
    d = Distributor(clock, tracker=tracker, lease=None)
    d.add_worker(Worker("w", capacity=2))
    d.submit(Task(1))
    d.submit(Task(2))
    d.submit(Task(3))
    placed = [a.task.id for a in d.dispatch()]
    assert placed == [1, 2]
    d.complete(1)
    d.fail(2, retryable=False)
    assert tracker.calls == [
        ("has_room", None),
        ("assign", 1),
        ("has_room", None),
        ("assign", 2),
        ("has_room", None),  # full: dispatch stops here, task 3 waits
        ("release", 1),
        ("release", 2),
    ]


bound_steps = st.lists(
    st.one_of(
        *[st.tuples(st.just("submit"), st.integers(1, 4), st.booleans())] * 3,
        st.tuples(st.just("dispatch")),
        *[st.tuples(st.just("fail"), st.integers(0, 9))] * 2,
        st.tuples(st.just("complete"), st.integers(0, 9)),
        st.tuples(st.just("gpu"), st.booleans()),
        st.tuples(st.just("time"), st.floats(0.0, 3.0)),
    ),
    min_size=10,
    max_size=60,
)


@given(steps=bound_steps, maxsize=st.sampled_from([7, 8, 5]))
def test_a_queue_sized_max_queued_plus_the_slots_refuses_no_return(
    steps: list[tuple[Any, ...]], maxsize: int
) -> None:
    # As docs/distributor.md sizes it: a queue maxsize of max_queued (4) plus the most
    # tasks leased at once (3 slots) never rejects a task coming back from being
    # parked, retrying or leased; a smaller one may.
    max_queued, slots = 4, 3
    clock = ManualClock()
    queue = PriorityQueue(clock, maxsize=maxsize)
    d = Distributor(
        clock,
        queue=queue,
        max_queued=max_queued,
        lease=None,
        retry=RetryPolicy(max_attempts=50, base=0.5, cap=1.0, rng=random.Random(1)),
    )
    d.add_worker(Worker("cpu", capacity=2))
    d.add_worker(Worker("gpu", capacity=1, skills={"gpu"}))
    fullest = 0
    for serial, step in enumerate(steps):
        name = step[0]
        if name == "submit":
            with contextlib.suppress(QueueFullError):
                d.submit(Task(serial, priority=step[1], requires={"gpu"} if step[2] else set()))
        elif name == "dispatch":
            d.dispatch()
        elif name in ("fail", "complete"):
            leases = d.leases()
            if leases:
                task_id = leases[step[1] % len(leases)].task.id
                d.fail(task_id, error="x") if name == "fail" else d.complete(task_id)
        elif name == "gpu":
            d.set_health("gpu", Health.UNAVAILABLE if step[1] else Health.HEALTHY)
        else:
            clock.advance(step[1])
            d.tick()
        fullest = max(fullest, len(queue) + len(d.leases()))
    target(fullest, label="tasks in the queue and leased at once")
    rejected = [entry.task.id for entry in d.dlq if entry.reason is Reason.REJECTED]
    if maxsize >= max_queued + slots:
        assert rejected == []
    else:
        event(f"a queue two short rejected a return: {bool(rejected)}")


def test_a_distributor_that_failed_to_build_leaves_its_dlq_free() -> None:
    clock = ManualClock()
    dlq = DeadLetterQueue(clock)
    dlq.add(Task("a"), Reason.MAX_ATTEMPTS)
    queue = PriorityQueue(clock)
    with pytest.raises(InvalidArgumentError):
        Distributor(clock, queue=queue, dlq=dlq, stats_window=0)
    # No distributor holds that queue: the DLQ may redrive into it as into any queue.
    assert [e.task.id for e in dlq.redrive(["a"], into=queue).redriven] == ["a"]
