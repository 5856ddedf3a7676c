"""The asyncio host, in virtual time: exact sleeps, outcomes, leases, shutdown.

Every test runs on a VirtualTimeLoop over a ManualClock, so hours of
handler sleeps, leases and retry delays take milliseconds, and every time
asserted is exact.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    Assignment,
    Distributor,
    Event,
    EventKind,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    Reason,
    ReentrancyError,
    RetryPolicy,
    Task,
    TaskState,
    Worker,
)
from taskdist.aio import AsyncHost, VirtualTimeLoop, run, run_virtual


def distributor(
    clock: ManualClock, *, capacity: int = 1, lease: float | None = 30.0, attempts: int = 3
) -> Distributor:
    d = Distributor(
        clock,
        lease=lease,
        dedup_window=1e9,  # remember every finished task, to look at it after the run
        retry=RetryPolicy(max_attempts=attempts, base=5.0, cap=5.0, jitter="none"),
    )
    d.add_worker(Worker("w", capacity=capacity))
    return d


def sleeper(log: list[tuple[object, int, float]] | None = None) -> Callable[..., object]:
    """A handler that sleeps the task's cost and logs (id, attempt, start)."""

    async def handler(assignment: Assignment) -> None:
        if log is not None:
            log.append((assignment.task.id, assignment.attempt, assignment.started_at))
        await asyncio.sleep(assignment.task.cost)

    return handler


# -- exact sleeps -------------------------------------------------------------------


def test_the_host_wakes_only_when_a_run_ends() -> None:
    clock = ManualClock()
    d = distributor(clock)
    d.submit(Task("a", cost=10.0))
    d.close()
    host = AsyncHost(d, sleeper())
    run_virtual(host.run(), clock)
    assert clock.now() == 10.0
    assert d.state_of("a") is TaskState.COMPLETED
    # Once to dispatch at 0, once when the run ended at 10: no renewal was due
    # (half the 30 s lease is 15 s), and nothing else.
    assert host.wakeups == 2


def test_a_retry_starts_exactly_when_its_delay_ends() -> None:
    clock = ManualClock()
    d = distributor(clock)
    log: list[tuple[object, int, float]] = []

    async def flaky(assignment: Assignment) -> None:
        log.append((assignment.task.id, assignment.attempt, clock.now()))
        await asyncio.sleep(10.0)
        if assignment.attempt == 1:
            raise TimeoutError("no answer")

    d.submit(Task("a"))
    d.close()
    host = AsyncHost(d, flaky)
    run_virtual(host.run(), clock)
    assert log == [("a", 1, 0.0), ("a", 2, 15.0)]  # failed at 10, retry delay 5
    assert clock.now() == 25.0
    assert host.wakeups == 4  # dispatch, failure, retry due, completion


def test_work_submitted_through_the_host_starts_at_once() -> None:
    clock = ManualClock()
    d = distributor(clock)
    log: list[tuple[object, int, float]] = []
    host = AsyncHost(d, sleeper(log))

    async def main() -> None:
        serving = asyncio.create_task(host.run())
        await asyncio.sleep(5.0)
        host.submit(Task("late", cost=1.0))
        await asyncio.sleep(3.0)
        d.submit(Task("direct", cost=1.0))  # the host is not told ...
        await asyncio.sleep(3.0)
        assert [entry[0] for entry in log] == ["late"]
        host.wake()  # ... until woken
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        host.stop()
        await serving

    run_virtual(main(), clock)
    assert log == [("late", 1, 5.0), ("direct", 1, 11.0)]


# -- outcomes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "not_retryable", "reason", "calls", "ended_at"),
    [
        # Retried after 5 s twice, then out of attempts.
        (ValueError("bad input"), (), Reason.MAX_ATTEMPTS, 3, 10.0),
        # Marked not retryable: dead at once.
        (PermissionError("forbidden"), (PermissionError,), Reason.NOT_RETRYABLE, 1, 0.0),
    ],
)
def test_a_handler_that_raises_is_retried_then_dead_lettered(
    error: Exception,
    not_retryable: tuple[type[Exception], ...],
    reason: Reason,
    calls: int,
    ended_at: float,
) -> None:
    clock = ManualClock()
    d = distributor(clock, attempts=3)
    made = Counter[object]()

    async def broken(assignment: Assignment) -> None:
        made[assignment.task.id] += 1
        raise error

    d.submit(Task("a"))
    d.close()
    run_virtual(run(d, broken, not_retryable=not_retryable), clock)
    entry = d.dlq.get("a")
    assert made["a"] == calls and entry is not None and entry.reason is reason
    text = f"{type(error).__name__}: {error}"
    assert [record.error for record in entry.history] == [text] * calls
    assert clock.now() == ended_at


def test_concurrency_bounds_the_handlers_running_at_once() -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=10)
    running = peak = 0

    async def handler(assignment: Assignment) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(1.0)
        running -= 1

    for i in range(9):
        d.submit(Task(i))
    d.close()
    run_virtual(run(d, handler, concurrency=3), clock)
    assert peak == 3 and clock.now() == 3.0


# -- how handlers run ---------------------------------------------------------------


def test_handlers_that_never_await_finish_at_once_on_one_runner() -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=50)
    seen: set[asyncio.Task[object] | None] = set()

    async def no_await(assignment: Assignment) -> None:
        seen.add(asyncio.current_task())

    for i in range(200):
        d.submit(Task(i))
    d.close()
    host = AsyncHost(d, no_await)
    run_virtual(host.run(), clock)
    assert d.stats().by_state[TaskState.COMPLETED] == 200 and clock.now() == 0.0
    # One runner task ran them all, never the host's own task.
    assert len(seen) == 1 and None not in seen
    # A dispatch of 50, then a wakeup per batch of 50 ended.
    assert host.wakeups == 5


def test_handlers_that_await_and_handlers_that_do_not_mix() -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=4, attempts=2)
    tasks: dict[tuple[object, int], asyncio.Task[object] | None] = {}

    async def handler(assignment: Assignment) -> None:
        run_id = (assignment.task.id, assignment.attempt)
        tasks[run_id] = asyncio.current_task()
        if assignment.task.cost:
            await asyncio.sleep(assignment.task.cost)
        if str(run_id[0]).startswith("bad") and assignment.attempt == 1:
            raise RuntimeError("flaky")  # at once, or after awaiting
        assert asyncio.current_task() is tasks[run_id]

    costs = {"a": 0.0, "b": 3.0, "bad-now": 0.0, "c": 1.0, "bad-later": 2.0, "d": 0.0}
    for task_id, cost in costs.items():
        d.submit(Task(task_id, cost=cost))
    d.close()
    run_virtual(run(d, handler), clock)
    assert all(d.state_of(task_id) is TaskState.COMPLETED for task_id in costs)
    assert d.stats().retries == 2
    # The ones that awaited at the same time each had a task of their own.
    awaiting_at_once = [tasks[task_id, 1] for task_id in ("b", "c", "bad-later")]
    assert len(set(awaiting_at_once)) == 3 and None not in awaiting_at_once


def test_a_handler_may_return_any_awaitable() -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=2)

    def handler(assignment: Assignment) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        if assignment.task.id == "fails":
            future.set_exception(LookupError("gone"))
        else:
            asyncio.get_running_loop().call_later(4.0, future.set_result, None)
        return future

    d.submit(Task("ok"))
    d.submit(Task("fails", max_attempts=1))
    d.close()
    run_virtual(run(d, handler), clock)
    assert d.state_of("ok") is TaskState.COMPLETED and clock.now() == 4.0
    assert d.state_of("fails") is TaskState.DEAD


def test_a_handler_that_returns_no_awaitable_fails_its_run() -> None:
    clock = ManualClock()
    d = distributor(clock, attempts=2)
    calls: list[int] = []

    def forgot_async(assignment: Assignment) -> None:
        calls.append(assignment.attempt)

    d.submit(Task("a"))
    d.close()
    run_virtual(run(d, forgot_async), clock)  # type: ignore[arg-type]
    entry = d.dlq.get("a")
    assert calls == [1, 2] and entry is not None and entry.reason is Reason.MAX_ATTEMPTS
    assert "TypeError" in str(entry.history[-1].error)


def test_a_plain_handler_that_raises_stop_iteration_fails_its_run() -> None:
    clock = ManualClock()
    d = distributor(clock, attempts=1)

    def handler(assignment: Assignment) -> Awaitable[object]:
        return next(iter([]))  # a bug in the handler: StopIteration

    d.submit(Task("a"))
    d.close()
    run_virtual(run(d, handler), clock)
    entry = d.dlq.get("a")
    assert d.state_of("a") is TaskState.DEAD and entry is not None
    assert str(entry.history[-1].error).startswith("StopIteration")


class Abort(BaseException):
    """An exception outside the ``Exception`` tree, as some libraries raise."""


@pytest.mark.parametrize("error", [GeneratorExit, Abort])
@pytest.mark.parametrize("awaits", [False, True])
def test_a_handler_that_raises_a_base_exception_fails_its_run(
    error: type[BaseException], awaits: bool
) -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=2)

    async def handler(assignment: Assignment) -> None:
        if awaits:
            await asyncio.sleep(1.0)
        if assignment.task.id == "bad":
            raise error()

    d.submit(Task("bad"))
    d.submit(Task("good"))
    d.close()
    host = AsyncHost(d, handler, grace=0)
    # It used to end the runner's task instead: the run was never reported, its
    # lease was renewed forever, and the host never drained.
    run_virtual(asyncio.wait_for(host.run(), 1000.0), clock)
    entry = d.dlq.get("bad")  # the retry policy retries Exceptions only
    assert entry is not None and entry.reason is Reason.NOT_RETRYABLE
    assert error.__name__ in str(entry.history[-1].error)
    assert d.state_of("good") is TaskState.COMPLETED
    assert host.running == 0 and not d.leases() and clock.now() == (1.0 if awaits else 0.0)


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_a_handler_interrupted_by_keyboard_interrupt_stops_the_loop_and_loses_nothing(
    error: type[BaseException],
) -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=2, attempts=1)

    async def handler(assignment: Assignment) -> None:
        await asyncio.sleep(assignment.task.cost)
        if assignment.task.id == "interrupted":
            raise error()

    d.submit(Task("interrupted", cost=1.0))
    d.submit(Task("other", cost=5.0))
    host = AsyncHost(d, handler, grace=10.0)
    with pytest.raises(error):
        run_virtual(host.run(), clock)
    # The exception stopped the loop at once, as from any task; closing the loop
    # cancelled the host and the other handler. Neither run failed: both tasks
    # went back without spending an attempt. (The interrupted run used to stay
    # the host's forever, and the other, cancelled, was dead-lettered.)
    assert clock.now() == 1.0 and host.running == 0 and not d.leases()
    assert d.state_of("interrupted") is TaskState.QUEUED
    assert d.state_of("other") is TaskState.QUEUED
    assert d.stats().failed == 0 and len(d.dlq) == 0


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tasks say they were cancelled from 3.11")
def test_handlers_cancelled_as_the_event_loop_closes_give_their_tasks_back() -> None:
    clock = ManualClock()
    d = long_jobs(clock, 4, capacity=4)

    async def main() -> None:
        serving = asyncio.create_task(run(d, sleeper()))
        await asyncio.sleep(1.0)
        assert len(d.leases()) == 4 and not serving.done()  # left running

    # Closing the loop cancels every task left, the handlers' own among them:
    # they did not fail (they used to be dead-lettered as not retryable).
    run_virtual(main(), clock)
    assert d.stats().by_state[TaskState.QUEUED] == 4
    assert d.stats().failed == 0 and len(d.dlq) == 0 and not d.leases()


def test_a_cancelled_error_from_inside_a_handler_still_fails_its_run() -> None:
    clock = ManualClock()
    d = distributor(clock, attempts=1)

    async def handler(assignment: Assignment) -> None:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(1.0, future.cancel)
        await future  # cancelled by someone else: its task was not

    d.submit(Task("a"))
    d.close()
    run_virtual(run(d, handler), clock)
    entry = d.dlq.get("a")
    assert entry is not None and entry.reason is Reason.NOT_RETRYABLE


def test_a_timeout_inside_a_handler_fails_that_run_only() -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=2, attempts=1)

    async def handler(assignment: Assignment) -> None:
        await asyncio.wait_for(asyncio.sleep(assignment.task.cost), timeout=5.0)

    d.submit(Task("slow", cost=60.0))
    d.submit(Task("quick", cost=1.0))
    d.submit(Task("next", cost=1.0))
    d.close()
    host = AsyncHost(d, handler)
    run_virtual(host.run(), clock)
    assert d.state_of("slow") is TaskState.DEAD and clock.now() == 5.0
    assert d.state_of("quick") is TaskState.COMPLETED
    assert d.state_of("next") is TaskState.COMPLETED


def test_cancelled_while_runs_wait_on_the_runners_nothing_is_lost() -> None:
    clock = ManualClock()
    d = long_jobs(clock, 6, capacity=4)
    started: list[object] = []

    async def handler(assignment: Assignment) -> None:
        started.append(assignment.task.id)
        await asyncio.sleep(100.0)

    async def main() -> None:
        serving = asyncio.create_task(run(d, handler, grace=0))
        await asyncio.sleep(0)  # the host dispatched 4 and queued them on a runner
        assert len(d.leases()) == 4
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving

    run_virtual(main(), clock)
    # The runner ran before the host heard of the cancellation: it started the
    # first run, which awaited and handed the queue to a new runner; the host
    # then gave back all four, and the three still queued never started.
    assert started == [0]
    assert d.stats().by_state[TaskState.QUEUED] == 6 and not d.leases()
    d.close()
    run_virtual(run(d, sleeper()), clock)  # no attempt was spent (max_attempts=1)
    assert d.stats().by_state[TaskState.COMPLETED] == 6


def test_cancelled_while_runners_hold_runs_the_finished_stay_done_and_the_rest_go_back() -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=6, attempts=1)
    for i in range(6):
        d.submit(Task(i, cost=0.0 if i % 2 else 100.0, max_attempts=1))
    cancel_after(50.0, d, clock)
    by_state = d.stats().by_state
    assert [d.state_of(i) for i in range(6)] == [TaskState.QUEUED, TaskState.COMPLETED] * 3
    assert by_state[TaskState.QUEUED] == 3 and not d.leases() and d.stats().failed == 0


# -- leases ------------------------------------------------------------------------


def test_heartbeats_keep_a_slow_handler_s_lease() -> None:
    clock = ManualClock()
    d = distributor(clock, lease=30.0)
    expiries: list[float | None] = []

    async def slow(assignment: Assignment) -> None:
        for _ in range(9):
            await asyncio.sleep(11.0)  # off the renewal times, so no two coincide
            expiries.append(d.assignment(assignment.task.id).lease_expiry)
        await asyncio.sleep(1.0)

    d.submit(Task("slow"))
    d.close()
    host = AsyncHost(d, slow, heartbeat=0.5)
    run_virtual(host.run(), clock)
    assert d.state_of("slow") is TaskState.COMPLETED and clock.now() == 100.0
    assert d.stats().lease_expiries == 0
    # Renewed every 15 s (half of the lease), each time to 30 s ahead.
    assert expiries == [30.0, 45.0, 60.0, 60.0, 75.0, 90.0, 105.0, 105.0, 120.0]
    assert host.wakeups == 1 + 6 + 1  # dispatch, renewals at 15..90, the end


def test_one_dispatch_s_runs_are_renewed_together_and_only_while_one_runs() -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=5, lease=30.0)
    expiries: list[float | None] = []

    async def handler(assignment: Assignment) -> None:
        if assignment.task.id != "long":
            await asyncio.sleep(10.0)
            return
        for _ in range(3):
            await asyncio.sleep(13.0)  # at 13, 26, 39: off the renewal times
            expiries.append(d.assignment("long").lease_expiry)
        await asyncio.sleep(1.0)

    for i in range(4):
        d.submit(Task(i))
    d.submit(Task("long"))
    d.close()
    host = AsyncHost(d, handler)
    run_virtual(host.run(), clock)
    assert d.stats().by_state[TaskState.COMPLETED] == 5 and clock.now() == 40.0
    assert expiries == [30.0, 45.0, 60.0]  # renewed at 15 and 30
    # The four short runs left their batch at 10, so the host woke at 0, 10, 15,
    # 30 and 40: for the dispatch, the four ends, two renewals and the last end.
    assert host.wakeups == 5


def test_a_batch_whose_runs_all_ended_never_wakes_the_host() -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=5, lease=30.0)
    host = AsyncHost(d, sleeper())
    for i in range(4):
        d.submit(Task(i, cost=10.0))

    async def main() -> None:
        serving = asyncio.create_task(host.run())
        await asyncio.sleep(12.0)
        host.submit(Task("late", cost=20.0))
        await asyncio.sleep(25.0)
        host.stop()
        await serving

    run_virtual(main(), clock)
    assert d.stats().by_state[TaskState.COMPLETED] == 5 and clock.now() == 37.0
    # Woken at 0 (dispatch), 10 (four ends), 12 (submit), 27 (renewal of "late"),
    # 32 (its end) and 37 (stop): never at 15, when the first batch came due.
    assert host.wakeups == 6


def test_without_heartbeats_a_slow_run_loses_its_lease_and_the_first_report_wins() -> None:
    clock = ManualClock()
    d = distributor(clock, lease=10.0)
    log: list[tuple[object, int, float]] = []
    cancelled: list[int] = []

    async def handler(assignment: Assignment) -> None:
        log.append((assignment.task.id, assignment.attempt, clock.now()))
        try:
            await asyncio.sleep(15.0)
        except asyncio.CancelledError:
            cancelled.append(assignment.attempt)
            raise

    d.submit(Task("a"))
    d.close()
    run_virtual(run(d, handler, heartbeat=None), clock)
    # Attempt 1's lease ran out at 10 and the task ran again; attempt 1 then
    # reported at 15 and won, so the host stopped attempt 2.
    assert log == [("a", 1, 0.0), ("a", 2, 10.0)]
    assert cancelled == [2]
    assert d.state_of("a") is TaskState.COMPLETED and clock.now() == 15.0


class ListenerFailed(Exception):
    pass


@pytest.mark.parametrize("heartbeat", [0.5, None])
def test_a_listener_that_raises_on_a_report_ends_run_with_its_error(
    heartbeat: float | None,
) -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=2)

    def listener(event: Event) -> None:
        if event.kind is EventKind.COMPLETED:
            raise ListenerFailed(event.task_id)

    d.add_listener(listener)
    d.submit(Task("quick", cost=1.0))
    d.submit(Task("slow", cost=100.0))
    d.close()
    host = AsyncHost(d, sleeper(), heartbeat=heartbeat)
    with pytest.raises(ListenerFailed, match="quick"):
        run_virtual(asyncio.wait_for(host.run(), 1000.0), clock)
    # The run was over (its task completed before the listener heard of it); the
    # host ended at once, cancelled the other run and gave its task back.
    assert clock.now() == 1.0 and host.running == 0
    assert d.state_of("quick") is TaskState.COMPLETED
    assert d.state_of("slow") is TaskState.QUEUED and not d.leases()


@pytest.mark.parametrize("lease", [30.0, None])
def test_a_listener_that_raises_on_a_dispatch_ends_run_and_those_tasks_go_back(
    lease: float | None,
) -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=3, lease=lease)
    d.submit(Task("first", cost=10.0))
    armed = [False]

    def listener(event: Event) -> None:
        if armed[0] and event.kind is EventKind.DISPATCHED:
            armed[0] = False
            raise ListenerFailed(event.task_id)

    d.add_listener(listener)

    async def main() -> None:
        host = AsyncHost(d, sleeper())
        serving = asyncio.create_task(host.run())
        await asyncio.sleep(1.0)
        armed[0] = True
        host.submit(Task("second", cost=10.0))
        host.submit(Task("third", cost=10.0))
        with pytest.raises(ListenerFailed, match="second"):
            await serving
        assert host.running == 0

    run_virtual(main(), clock)
    # The dispatch raised once both were placed: the host never saw them, but they
    # are its own and went back with the one it ran (they used to stay leased).
    assert not d.leases() and d.stats().failed == 0 and clock.now() == 1.0
    assert [d.state_of(t) for t in ("first", "second", "third")] == [TaskState.QUEUED] * 3


def test_every_task_goes_back_even_when_the_listener_fails_on_each_give_back() -> None:
    # Once "quick" completes, every event raises, the give-back's requeued ones too:
    # the three slow tasks all go back (the give-back stopped at the first before).
    clock = ManualClock()
    d = distributor(clock, capacity=4)
    armed = [False]

    def listener(event: Event) -> None:
        if event.kind is EventKind.COMPLETED:
            armed[0] = True
        if armed[0]:
            raise ListenerFailed(event.kind.value)

    d.add_listener(listener)
    d.submit(Task("quick", cost=1.0))
    for i in range(3):
        d.submit(Task(f"slow{i}", cost=100.0))
    host = AsyncHost(d, sleeper())
    with pytest.raises(ListenerFailed):
        run_virtual(asyncio.wait_for(host.run(), 1000.0), clock)
    armed[0] = False
    assert host.running == 0 and not d.leases()
    assert [d.state_of(f"slow{i}") for i in range(3)] == [TaskState.QUEUED] * 3


def test_a_retry_predicate_that_raises_ends_run_and_the_task_goes_back() -> None:
    clock = ManualClock()

    def retryable(error: BaseException) -> bool:
        raise LookupError("the predicate failed")

    d = Distributor(clock, lease=30.0, retry=RetryPolicy(max_attempts=1, retryable=retryable))
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("a"))
    d.close()

    async def handler(assignment: Assignment) -> None:
        await asyncio.sleep(1.0)
        raise ValueError("bad input")

    host = AsyncHost(d, handler, heartbeat=None)
    with pytest.raises(LookupError, match="predicate"):
        run_virtual(asyncio.wait_for(host.run(), 1000.0), clock)
    # fail() changed nothing; the host gave the task back, without an attempt.
    assert clock.now() == 1.0 and host.running == 0
    assert d.state_of("a") is TaskState.QUEUED and not d.leases() and not len(d.dlq)


def test_a_late_failure_of_an_expired_run_leaves_the_newer_run_going() -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=2, lease=5.0)
    log: list[tuple[int, str, float]] = []

    async def handler(assignment: Assignment) -> None:
        try:
            if assignment.attempt == 1:
                await asyncio.sleep(7.0)  # outlives its lease: dispatched again at 5
                raise RuntimeError("attempt 1 fails late")
            await asyncio.sleep(4.0)
        except asyncio.CancelledError:
            log.append((assignment.attempt, "cancelled", clock.now()))
            raise
        log.append((assignment.attempt, "done", clock.now()))

    d.submit(Task("a"))
    d.close()
    run_virtual(run(d, handler, heartbeat=None), clock)
    # The late failure at 7 changed nothing: attempt 2 kept its lease and won.
    assert log == [(2, "done", 9.0)]
    assert d.state_of("a") is TaskState.COMPLETED and clock.now() == 9.0


def test_a_task_cancelled_while_running_stops_at_its_next_renewal() -> None:
    clock = ManualClock()
    d = distributor(clock, lease=30.0)
    stopped_at: list[float] = []

    async def handler(assignment: Assignment) -> None:
        try:
            await asyncio.sleep(100.0)
        except asyncio.CancelledError:
            stopped_at.append(clock.now())
            raise

    host = AsyncHost(d, handler)

    async def main() -> None:
        serving = asyncio.create_task(host.run())
        host.submit(Task("a"))
        await asyncio.sleep(5.0)
        d.cancel("a")
        d.close()
        await serving

    run_virtual(main(), clock)
    assert stopped_at == [15.0]
    assert d.state_of("a") is TaskState.CANCELLED and host.running == 0


# -- stopping ---------------------------------------------------------------------


def long_jobs(clock: ManualClock, count: int, capacity: int) -> Distributor:
    d = distributor(clock, capacity=capacity, attempts=1)
    for i in range(count):
        d.submit(Task(i, cost=100.0, max_attempts=1))
    return d


def cancel_after(seconds: float, d: Distributor, clock: ManualClock) -> None:
    """Run a host with no grace, and cancel the task running it after ``seconds``."""

    async def main() -> None:
        serving = asyncio.create_task(run(d, sleeper(), grace=0))
        await asyncio.sleep(seconds)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving

    run_virtual(main(), clock)


def stop_after(seconds: float, host: AsyncHost, clock: ManualClock) -> None:
    """Run ``host`` and call its stop() after ``seconds``."""

    async def main() -> None:
        serving = asyncio.create_task(host.run())
        await asyncio.sleep(seconds)
        host.stop()
        await serving

    run_virtual(main(), clock)


def test_cancelling_the_host_mid_run_gives_every_leased_task_back() -> None:
    clock = ManualClock()
    d = long_jobs(clock, 10, capacity=4)
    cancel_after(50.0, d, clock)
    assert clock.now() == 50.0
    assert d.stats().by_state[TaskState.QUEUED] == 10 and not d.leases()
    assert d.stats().failed == 0 and not len(d.dlq)
    # No attempt was spent: with max_attempts=1 every task still completes.
    d.close()
    run_virtual(run(d, sleeper()), clock)
    assert d.stats().by_state[TaskState.COMPLETED] == 10 and not len(d.dlq)


def test_stop_lets_running_handlers_finish_by_default() -> None:
    clock = ManualClock()
    d = long_jobs(clock, 10, capacity=4)
    stop_after(50.0, AsyncHost(d, sleeper()), clock)
    assert clock.now() == 100.0
    by_state = d.stats().by_state
    assert by_state[TaskState.COMPLETED] == 4 and by_state[TaskState.QUEUED] == 6


def test_stop_cancels_what_is_still_running_when_the_grace_ends() -> None:
    clock = ManualClock()
    d = long_jobs(clock, 3, capacity=4)
    d.submit(Task("short", cost=60.0))
    stop_after(50.0, AsyncHost(d, sleeper(), grace=20.0), clock)
    assert clock.now() == 70.0
    assert d.state_of("short") is TaskState.COMPLETED
    assert [d.state_of(i) for i in range(3)] == [TaskState.QUEUED] * 3
    assert d.tracker.worker("w").in_flight == 0


def test_a_stop_before_run_starts_holds_and_a_stopped_host_stays_stopped() -> None:
    clock = ManualClock()
    d = distributor(clock)
    d.submit(Task("a", cost=1.0))
    host = AsyncHost(d, sleeper())

    async def main() -> None:
        serving = asyncio.create_task(host.run())
        host.stop()  # before run() has begun
        await asyncio.wait_for(serving, 100.0)
        await asyncio.wait_for(host.run(), 100.0)  # stopped: returns at once again

    run_virtual(main(), clock)
    assert clock.now() == 0.0 and host.stopping
    assert d.state_of("a") is TaskState.QUEUED and d.stats().dispatched == 0


def test_a_given_back_worker_keeps_the_health_the_host_set() -> None:
    clock = ManualClock()
    d = long_jobs(clock, 2, capacity=4)
    d.set_health("w", "degraded")
    cancel_after(1.0, d, clock)
    assert d.tracker.worker("w").host_health.value == "degraded"
    assert d.stats().by_state[TaskState.QUEUED] == 2


# -- refusals ------------------------------------------------------------------------


def test_a_clock_that_is_not_the_loop_s_time_is_refused() -> None:
    clock = ManualClock(start=1e6)
    d = distributor(clock)
    with pytest.raises(InvalidArgumentError, match="VirtualTimeLoop"):
        asyncio.run(run(d, sleeper()))


def test_running_one_host_twice_at_once_is_refused() -> None:
    clock = ManualClock()
    host = AsyncHost(distributor(clock), sleeper())

    async def main() -> None:
        serving = asyncio.create_task(host.run())
        await asyncio.sleep(1.0)
        with pytest.raises(ReentrancyError):
            await host.run()
        host.stop()
        await serving

    run_virtual(main(), clock)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"concurrency": 0}, InvalidArgumentError),
        ({"concurrency": 1.5}, InvalidTypeError),
        ({"heartbeat": 1.0}, InvalidArgumentError),
        ({"heartbeat": 0.0}, InvalidArgumentError),
        ({"heartbeat": float("nan")}, InvalidArgumentError),
        ({"grace": -1.0}, InvalidArgumentError),
        ({"not_retryable": [int]}, InvalidTypeError),
        ({"not_retryable": 3}, InvalidTypeError),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        AsyncHost(distributor(ManualClock()), sleeper(), **kwargs)  # type: ignore[arg-type]


def test_a_host_needs_a_distributor_and_a_callable() -> None:
    with pytest.raises(InvalidTypeError):
        AsyncHost(object(), sleeper())  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        AsyncHost(distributor(ManualClock()), "handler")  # type: ignore[arg-type]


def test_the_virtual_loop_needs_a_manual_clock() -> None:
    with pytest.raises(InvalidTypeError):
        VirtualTimeLoop(object())  # type: ignore[arg-type]


def test_run_virtual_needs_a_coroutine() -> None:
    # A coroutine function, not called: it used to be asyncio's bare TypeError.
    with pytest.raises(InvalidTypeError, match="coroutine"):
        run_virtual(asyncio.sleep, ManualClock())  # type: ignore[arg-type]


# -- the model ---------------------------------------------------------------------

jobs = st.lists(
    # (duration, failures before success); a run of 0 never awaits
    st.tuples(st.integers(0, 40), st.integers(0, 3)),
    min_size=1,
    max_size=12,
)


@given(
    jobs=jobs,
    capacity=st.integers(1, 4),
    concurrency=st.none() | st.integers(1, 4),
    lease=st.none() | st.sampled_from([7.0, 30.0]),
)
def test_every_task_ends_as_the_model_says_and_the_host_never_spins(
    jobs: list[tuple[int, int]], capacity: int, concurrency: int | None, lease: float | None
) -> None:
    clock = ManualClock()
    d = distributor(clock, capacity=capacity, lease=lease, attempts=3)
    calls = Counter[object]()
    running = peak = 0

    async def handler(assignment: Assignment) -> None:
        nonlocal running, peak
        task_id = assignment.task.id
        calls[task_id] += 1
        running += 1
        peak = max(peak, running)
        try:
            if assignment.task.cost:
                await asyncio.sleep(assignment.task.cost)
        finally:
            running -= 1
        if calls[task_id] <= jobs[task_id][1]:
            raise RuntimeError("flaky")

    for i, (duration, _) in enumerate(jobs):
        d.submit(Task(i, cost=float(duration)))
    d.close()
    host = AsyncHost(d, handler, concurrency=concurrency)
    run_virtual(host.run(), clock)
    for i, (_, failures) in enumerate(jobs):
        expected = TaskState.DEAD if failures >= 3 else TaskState.COMPLETED
        assert d.state_of(i) is expected
        assert calls[i] == min(failures + 1, 3)
    assert peak <= min(capacity, concurrency or capacity)
    assert d.stats().lease_expiries == 0  # heartbeats kept every lease
    # Every wakeup was for something: a dispatch at the start, a run ending,
    # a retry coming due, or a lease renewal.
    runs = sum(calls.values())
    retries = d.stats().retries
    renewals = 0 if lease is None else sum(int(d // (lease / 2)) for d, _ in jobs) * 3
    assert host.wakeups <= 1 + runs + retries + renewals
