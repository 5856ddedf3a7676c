"""Flow control on the Distributor: pause, throttling, adaptive limits, retry budgets,
concurrency keys, debounce and throttle, and rate limits that never burn an attempt."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import pytest
from hostile import assert_refused
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    AdaptiveConcurrency,
    ConcurrencyLimit,
    Debounce,
    Distributor,
    DuplicateTaskError,
    Event,
    EventKind,
    InvalidArgumentError,
    InvalidTypeError,
    LeastConnections,
    ManualClock,
    Pool,
    RateGate,
    RateLimiter,
    Reason,
    RetryBudget,
    RetryPolicy,
    Task,
    TaskState,
    Throttle,
    Worker,
)


def distributor(clock: ManualClock, workers: int = 1, slots: int = 1, **kwargs: object):  # type: ignore[no-untyped-def]
    events: list[Event] = []
    d = Distributor(clock, lease=None, dedup_window=1e9, on_event=events.append, **kwargs)  # type: ignore[arg-type]
    for i in range(workers):
        d.add_worker(Worker(f"w{i}", capacity=slots))
    return d, events


# -- pause and resume ------------------------------------------------------------------


def test_a_paused_tenant_keeps_its_tasks_in_order_and_others_run() -> None:
    clock = ManualClock()
    d, _ = distributor(clock, workers=1, slots=10)
    d.pause(tenant="acme")
    for i in range(3):
        d.submit(Task(f"acme-{i}", tenant="acme", priority=3 - i))
    d.submit(Task("other", tenant="zeta"))
    assert [a.task.id for a in d.dispatch()] == ["other"]
    assert d.explain("acme-0") == "parked: tenant 'acme' is paused"
    d.resume(tenant="acme")
    assert [a.task.id for a in d.dispatch()] == ["acme-2", "acme-1", "acme-0"]


def test_a_paused_key_holds_only_that_key() -> None:
    d, _ = distributor(ManualClock(), slots=5)
    d.pause(key="repo-1")
    d.submit(Task("a", key="repo-1"))
    d.submit(Task("b", key="repo-2"))
    assert [a.task.id for a in d.dispatch()] == ["b"]
    d.resume(key="repo-1")
    assert [a.task.id for a in d.dispatch()] == ["a"]


def test_a_paused_pool_takes_nothing_new_and_running_work_finishes() -> None:
    d, _ = distributor(ManualClock(), workers=2)
    d.submit(Task("running"))
    d.dispatch()
    d.pause(pool=Pool(workers={"w0", "w1"}))
    d.submit(Task("held"))
    assert d.dispatch() == []
    d.complete("running")
    assert d.dispatch() == []
    d.resume(pool=Pool(workers={"w0", "w1"}))
    assert [a.task.id for a in d.dispatch()] == ["held"]


def test_resuming_what_is_not_paused_is_refused() -> None:
    d, _ = distributor(ManualClock())
    with pytest.raises(InvalidArgumentError):
        d.resume(tenant="nobody")
    with pytest.raises(InvalidArgumentError):
        d.pause()


# -- throttling and adaptive concurrency ----------------------------------------------------


def test_a_throttled_attempt_spends_nothing_and_waits_its_retry_after() -> None:
    clock = ManualClock()
    d, events = distributor(clock)
    d.submit(Task("call", max_attempts=1))
    d.dispatch()
    assert d.fail("call", error="429", throttled=True, retry_after=5.0) is TaskState.RETRYING
    clock.set(4.9)
    assert d.dispatch() == []
    clock.set(5.0)
    [again] = d.dispatch()
    assert again.attempt == 2  # a second dispatch ...
    d.complete("call")  # ... of a task allowed one attempt: the throttle did not count
    assert EventKind.THROTTLED in [e.kind for e in events]
    assert d.stats().workers["w0"].failed == 0


def test_adaptive_concurrency_learns_what_a_changing_api_can_take() -> None:
    clock = ManualClock()
    api = AdaptiveConcurrency(clock.now, initial=4, minimum=1, maximum=50)
    d, _ = distributor(clock, workers=1, slots=100, gates=[api])
    rng = random.Random(4)
    capacity = 20
    limits: list[float] = []
    submitted = 0
    for step in range(3000):
        if step == 1500:
            capacity = 5  # the API degrades
        while len(d) < 80:  # always more work than the API takes
            d.submit(Task(submitted))
            submitted += 1
        leased = d.leases()
        for lease in leased:
            if len(leased) > capacity and rng.random() < 0.5:
                d.fail(lease.task.id, error="429", throttled=True, retry_after=0.1)
            else:
                d.complete(lease.task.id, duration=0.05)
        clock.advance(0.1)
        d.dispatch()
        limits.append(api.limit)
    early = sum(limits[1000:1500]) / 500
    late = sum(limits[2500:]) / 500
    assert 10 <= early <= 40  # near the first capacity
    assert 2 <= late <= 12  # and it came down with the second


def test_one_burst_of_throttles_halves_the_limit_once() -> None:
    # Calls already in flight when the API starts throttling all come back throttled;
    # they are one signal, as TCP takes one window's losses, not one each.
    clock = ManualClock()
    api = AdaptiveConcurrency(clock.now, initial=16, minimum=1, maximum=16)
    d, _ = distributor(clock, workers=1, slots=100, gates=[api])
    for i in range(40):
        d.submit(Task(i))
    running = d.dispatch()
    assert len(running) == 16
    for assignment in running:
        d.fail(assignment.task.id, error="429", throttled=True, retry_after=5.0)
    assert api.limit == 8
    clock.advance(5.0)
    again = d.dispatch()
    assert len(again) == 8
    d.fail(again[0].task.id, error="429", throttled=True, retry_after=5.0)
    assert api.limit == 4  # a throttle after the pause is a new signal


def test_tasks_held_by_a_throttle_pause_run_when_it_ends() -> None:
    # The host sleeps until next_wakeup(); at that time the pause is over, and the
    # gate must still say so, or nothing wakes the tasks parked behind it.
    clock = ManualClock()
    api = AdaptiveConcurrency(clock.now, initial=4, minimum=1)
    d, _ = distributor(clock, workers=1, slots=10, gates=[api])
    d.submit(Task("call"))
    d.dispatch()
    d.fail("call", error="429", throttled=True, retry_after=5.0)
    d.submit(Task("waiting"))
    assert d.dispatch() == []
    assert d.state_of("waiting") is TaskState.PARKED
    while d.state_of("waiting") is not TaskState.LEASED:
        wake = d.next_wakeup()
        assert wake is not None, d.explain("waiting")
        clock.set(wake)
        d.dispatch()
    assert clock.now() == 5.0


@pytest.mark.parametrize("which", ["adaptive", "concurrency_key"])
def test_a_task_held_by_a_gate_stays_parked_when_a_task_the_gate_never_held_ends(
    which: str,
) -> None:
    # A gate that never held the finishing task frees nothing it could be waiting for:
    # waking every gate-parked task on each completion made dispatch re-park them all.
    clock = ManualClock()
    gate = (
        AdaptiveConcurrency(clock.now, initial=1, applies=lambda t: t.group == "api")
        if which == "adaptive"
        else ConcurrencyLimit(key=lambda t: t.key, limit=1)
    )
    d, events = distributor(clock, workers=1, slots=10, gates=[gate])
    held = {"group": "api"} if which == "adaptive" else {"key": "repo"}
    d.submit(Task("first", **held))  # type: ignore[arg-type]
    d.submit(Task("second", **held))  # type: ignore[arg-type]
    d.submit(Task("ungated"))
    assert sorted(a.task.id for a in d.dispatch()) == ["first", "ungated"]
    assert d.state_of("second") is TaskState.PARKED
    d.complete("ungated")
    assert d.state_of("second") is TaskState.PARKED
    assert [e.kind for e in events if e.task_id == "second"].count(EventKind.UNPARKED) == 0
    d.complete("first")  # what it waits for
    assert [a.task.id for a in d.dispatch()] == ["second"]


# -- retry budgets ---------------------------------------------------------------------------


@given(
    seed=st.integers(0, 10_000),
    ratio=st.sampled_from([0.1, 0.3, 1.0]),
    minimum=st.integers(0, 3),
)
def test_retries_start_only_within_the_budget(seed: int, ratio: float, minimum: int) -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=ratio, minimum=minimum)
    d, events = distributor(
        clock,
        workers=4,
        slots=3,
        retry_budget=budget,
        retry=RetryPolicy(max_attempts=4, base=0.5, jitter="none"),
    )
    rng = random.Random(seed)
    starts: list[tuple[int, float]] = []
    for step in range(60):
        d.submit(Task(step))
        for lease in d.leases():
            if rng.random() < 0.6:
                d.fail(lease.task.id, error="down")
            else:
                d.complete(lease.task.id)
        clock.advance(0.5)
        before = {e.task_id for e in events if e.kind is EventKind.REQUEUED}
        d.tick()
        retried = {e.task_id for e in events if e.kind is EventKind.REQUEUED} - before
        if retried:
            starts.append((budget.retries(None), budget.limit(None)))
        d.dispatch()
    assert all(retries <= limit for retries, limit in starts)


def test_a_retry_over_budget_may_be_dead_lettered() -> None:
    clock = ManualClock()
    d, _ = distributor(
        clock,
        workers=1,
        slots=4,
        retry_budget=RetryBudget(ratio=0.1, minimum=0, over="dead_letter"),
    )
    d.submit(Task("t"))
    d.dispatch()
    assert d.fail("t", error="down") is TaskState.DEAD
    assert d.dlq.get("t").reason is Reason.RETRY_BUDGET  # type: ignore[union-attr]


def test_tasks_requeued_from_a_removed_worker_leave_the_budget() -> None:
    budget = RetryBudget(ratio=0.5, minimum=0)
    d, _ = distributor(ManualClock(), workers=2, slots=2, retry_budget=budget)
    for i in range(4):
        d.submit(Task(f"t{i}"))
    d.dispatch()
    assert budget.limit(None) == 2.0
    d.remove_worker("w0")
    assert budget.limit(None) == 1.0  # two tasks leased, on w1
    d.fail(d.leases()[0].task.id, error="down")
    assert d.fail(d.leases()[0].task.id, error="down") is TaskState.RETRYING
    assert budget.limit(None) == 0.0  # nothing leased: no retry may start
    d.tick()
    assert budget.retries(None) == 0


# -- concurrency keys --------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["queue", "cancel_newest", "cancel_running", "latest_queued"])
def test_a_key_never_runs_more_than_its_limit(strategy: str) -> None:
    clock = ManualClock()
    limit = ConcurrencyLimit(key=lambda t: t.key, limit=2, strategy=strategy)  # type: ignore[arg-type]
    d, _ = distributor(clock, workers=3, slots=4, intake=[limit])
    rng = random.Random(strategy)
    for step in range(200):
        d.submit(Task(step, key=f"repo-{rng.randrange(3)}"))
        for lease in d.leases():
            if rng.random() < 0.3:
                d.complete(lease.task.id)
        d.dispatch()
        running = Counter(a.task.key for a in d.leases())
        assert max(running.values(), default=0) <= 2


def test_queue_strategy_lets_other_keys_through_without_spending_attempts() -> None:
    d, _ = distributor(ManualClock(), slots=10, intake=[ConcurrencyLimit(key=lambda t: t.key)])
    d.submit(Task("a1", key="a", max_attempts=1))
    d.submit(Task("a2", key="a", max_attempts=1))
    d.submit(Task("b1", key="b"))
    assert [x.task.id for x in d.dispatch()] == ["a1", "b1"]
    d.complete("a1")
    assert [x.task.id for x in d.dispatch()] == ["a2"]


def test_cancel_running_keeps_the_newest() -> None:
    d, events = distributor(
        ManualClock(),
        slots=10,
        intake=[ConcurrencyLimit(key=lambda t: t.key, strategy="cancel_running")],
    )
    d.submit(Task("v1", key="doc"))
    d.dispatch()
    d.submit(Task("v2", key="doc"))
    assert d.state_of("v1") is TaskState.CANCELLED
    cancelled = [e for e in events if e.kind is EventKind.CANCELLED]
    assert cancelled[0].worker_id == "w0"  # the host learns which run to stop
    assert [x.task.id for x in d.dispatch()] == ["v2"]


def test_cancel_running_cancels_only_what_leaves_the_newest_room_under_its_limit() -> None:
    # With limit=3 a second task of the key cancelled the first: the limit was ignored.
    d, _ = distributor(
        ManualClock(),
        slots=10,
        intake=[ConcurrencyLimit(key=lambda t: t.key, limit=3, strategy="cancel_running")],
    )
    for task_id in ("v1", "v2", "v3"):
        d.submit(Task(task_id, key="doc"))
    d.dispatch()
    assert {d.state_of(i) for i in ("v1", "v2", "v3")} == {TaskState.LEASED}
    d.submit(Task("v4", key="doc"))  # at its limit: the oldest goes
    states = {i: d.state_of(i) for i in ("v1", "v2", "v3", "v4")}
    assert states == {
        "v1": TaskState.CANCELLED,
        "v2": TaskState.LEASED,
        "v3": TaskState.LEASED,
        "v4": TaskState.QUEUED,
    }
    assert [x.task.id for x in d.dispatch()] == ["v4"]


def test_cancel_newest_refuses_the_newcomer() -> None:
    d, _ = distributor(
        ManualClock(),
        slots=10,
        intake=[ConcurrencyLimit(key=lambda t: t.key, strategy="cancel_newest")],
    )
    d.submit(Task("first", key="k"))
    result = d.submit(Task("second", key="k"))
    assert result.accepted and result.state is TaskState.CANCELLED
    assert d.state_of("first") is TaskState.QUEUED


def test_latest_queued_replaces_what_waits_and_lets_the_running_finish() -> None:
    d, _ = distributor(
        ManualClock(),
        slots=10,
        intake=[ConcurrencyLimit(key=lambda t: t.key, strategy="latest_queued")],
    )
    d.submit(Task("v1", key="k"))
    d.dispatch()
    d.submit(Task("v2", key="k"))
    d.submit(Task("v3", key="k"))
    assert d.state_of("v1") is TaskState.LEASED
    assert d.state_of("v2") is TaskState.CANCELLED
    d.complete("v1")
    assert [x.task.id for x in d.dispatch()] == ["v3"]


# -- debounce and throttle ---------------------------------------------------------------------


def test_debounce_replaces_a_queued_task_of_the_same_key_and_can_keep_payloads() -> None:
    clock = ManualClock()
    d, _ = distributor(
        clock, intake=[Debounce(key=lambda t: t.key, window=2.0, keep_payloads=True)]
    )
    d.submit(Task("e1", key="doc", payload="a"))
    clock.set(1.0)
    d.submit(Task("e2", key="doc", payload="b"))
    assert d.state_of("e1") is TaskState.CANCELLED
    [run] = d.dispatch()
    assert run.task.id == "e2" and run.task.payload == ("a", "b")
    clock.set(10.0)
    d.submit(Task("e3", key="doc"))  # outside the window: no replacement
    assert d.state_of("e3") is TaskState.QUEUED


def test_throttle_refuses_a_second_task_of_a_key_within_its_window() -> None:
    clock = ManualClock()
    d, _ = distributor(clock, intake=[Throttle(key=lambda t: t.key, window=60.0)])
    assert d.submit(Task("a", key="user")).accepted
    refused = d.submit(Task("b", key="user"))
    assert not refused.accepted and refused.state is TaskState.QUEUED
    assert "b" not in d
    clock.set(60.0)
    assert d.submit(Task("c", key="user")).accepted


# -- a rate limit never burns an attempt -------------------------------------------------------


@given(seed=st.integers(0, 10_000))
def test_a_gate_refusal_never_spends_an_attempt(seed: int) -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=2, per=1.0, burst=2, clock=clock)
    d, events = distributor(
        clock, workers=2, slots=5, gates=[RateGate(limiter, "api_calls", default=1)]
    )
    rng = random.Random(seed)
    for i in range(30):
        d.submit(Task(i, max_attempts=1))
    for _ in range(200):
        for assignment in d.dispatch():
            assert assignment.attempt == 1
            d.complete(assignment.task.id)
        clock.advance(rng.choice([0.1, 0.3, 0.5]))
    assert d.stats().by_state[TaskState.COMPLETED] == 30
    assert not [e for e in events if e.kind is EventKind.DEAD_LETTERED]


def test_placements_taken_back_after_a_callback_raised_leave_the_retry_budget_as_it_was() -> None:
    class FailsThirdTime(LeastConnections):
        calls = 0

        def choose(self, task, tracker, where=None):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("balancer failed")
            return super().choose(task, tracker, where)

    budget = RetryBudget(ratio=1.0, minimum=0)
    d, _ = distributor(ManualClock(), slots=5, retry_budget=budget, balancer=FailsThirdTime())
    for i in range(3):
        d.submit(Task(f"t{i}"))
    with pytest.raises(RuntimeError):
        d.dispatch()
    assert d.leases() == []
    assert budget.limit(budget.group(Task("probe"))) == 0.0


def _paused_gate() -> tuple[ManualClock, AdaptiveConcurrency]:
    """A gate whose throttle pause has ended: its wakeup is due, not yet taken."""
    clock = ManualClock()
    api = AdaptiveConcurrency(clock.now, initial=4, minimum=1)
    held = Task("held")
    assert api.try_acquire(held)
    api.record(held, ok=False, throttled=True, retry_after=5.0)
    clock.advance(6.0)
    return clock, api


def _gate_view(gate: AdaptiveConcurrency) -> tuple[object, ...]:
    return (gate.limit, gate.in_flight, gate.next_wakeup(), gate.can_acquire(Task("probe")))


def test_adaptive_concurrency_refuses_a_non_task_and_a_second_admission_unchanged() -> None:
    assert_refused(
        lambda: _paused_gate()[1],
        lambda gate: gate.try_acquire("not a task"),  # type: ignore[arg-type]
        InvalidTypeError,
        _gate_view,
    )
    assert_refused(
        lambda: _paused_gate()[1],
        lambda gate: gate.try_acquire(Task("held")),
        DuplicateTaskError,
        _gate_view,
        match="already holds an admission",
    )


# -- a submit refused after an intake policy admitted it -------------------------------


def test_a_throttle_window_opened_by_a_refused_submit_closes_again() -> None:
    from taskdist import QueueFullError

    clock = ManualClock()
    d = Distributor(clock, intake=[Throttle(key=lambda t: t.key, window=60.0)], max_queued=1)
    d.submit(Task("a", key="u"))
    with pytest.raises(QueueFullError):
        d.submit(Task("b", key="v"))  # the throttle admitted it, the distributor did not
    d.cancel("a")
    # No task of key v was ever taken: the next one is not throttled by b.
    assert d.submit(Task("c", key="v")).accepted
    assert d.state_of("c") is TaskState.QUEUED


def test_a_debounce_record_replaced_by_a_refused_submit_is_put_back() -> None:
    from taskdist import DeadlineError

    clock = ManualClock()
    d = Distributor(clock, intake=[Debounce(key=lambda t: t.key, window=60.0)])
    d.submit(Task("q", key="k"))
    clock.advance(10.0)
    with pytest.raises(DeadlineError):
        d.submit(Task("late", key="k", deadline=5.0))  # refused after the debounce took it
    assert d.state_of("q") is TaskState.QUEUED
    # q is still the key's latest: a new task within the window replaces it.
    d.submit(Task("z", key="k"))
    assert d.state_of("q") is TaskState.CANCELLED and d.state_of("z") is TaskState.QUEUED


def test_a_redrive_an_intake_policy_refuses_stays_and_says_why() -> None:
    clock = ManualClock()
    d = Distributor(clock, intake=[Throttle(key=lambda t: t.key, window=60.0)])
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("a", key="k", max_attempts=1))
    d.dispatch()
    d.fail("a", error="boom")
    clock.advance(70.0)
    d.submit(Task("q", key="k"))  # opens the key's window again
    report = d.redrive(["a"])
    [(entry, why)] = report.refused
    assert entry.task.id == "a" and "duplicate of 'q'" in why and "throttled" in why
    assert [e.task.id for e in d.dlq] == ["a"]
    assert d.stats().duplicates == 1  # a refusal of an intake policy, counted as on submit


@pytest.mark.parametrize(
    ("key", "error"),
    [(lambda t: math.nan, InvalidArgumentError), (lambda t: ["repo"], InvalidTypeError)],
)
def test_a_concurrency_key_that_is_nan_or_unhashable_is_refused_before_anything_is_held(
    key: Any, error: type[Exception]
) -> None:
    # A NaN key is never equal to itself: each task would get a key of its own and no
    # limit would apply.
    limit = ConcurrencyLimit(key=key, limit=1)
    with pytest.raises(error, match=r"ConcurrencyLimit.key\(task\)"):
        limit.admit(Task("a"), 0.0, lambda task_id: None)
    with pytest.raises(error, match=r"ConcurrencyLimit.key\(task\)"):
        limit.try_acquire(Task("a"))
    assert limit.snapshot()["live"] == [] and limit.snapshot()["running"] == []
