"""ThreadSafeDistributor: the Distributor's API behind one lock, and waiting for work."""

from __future__ import annotations

import inspect
import random
import threading
import time
from collections import Counter

import pytest

from taskdist import (
    Distributor,
    Event,
    EventKind,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    MonotonicClock,
    RetryPolicy,
    Task,
    TaskState,
    UnknownTaskError,
    Worker,
)
from taskdist.threaded import ThreadSafeDistributor


def public_members(cls: type) -> dict[str, object]:
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_") or name in ("__len__", "__contains__")
    }


def test_it_has_every_public_method_and_property_of_the_distributor() -> None:
    ours = public_members(ThreadSafeDistributor)
    for name, theirs in public_members(Distributor).items():
        assert name in ours, f"ThreadSafeDistributor lacks {name}"
        if isinstance(theirs, property):
            assert isinstance(ours[name], property), name
        elif isinstance(theirs, classmethod):  # restore: one that makes a wrapped one
            mine = ours[name]
            assert isinstance(mine, classmethod), name
            assert inspect.signature(mine.__func__) == inspect.signature(theirs.__func__), name
        else:
            assert inspect.signature(ours[name]) == inspect.signature(theirs), name  # type: ignore[arg-type]


def test_calls_reach_the_distributor_and_errors_come_back_unchanged() -> None:
    clock = ManualClock()
    shared = ThreadSafeDistributor(Distributor(clock))
    shared.add_worker(Worker("w", capacity=1))
    assert shared.submit(Task("t")).accepted and "t" in shared and len(shared) == 1
    [assignment] = shared.dispatch()
    assert shared.assignment("t") == assignment and shared.leases() == [assignment]
    assert shared.heartbeat("t") == 30.0 and shared.next_wakeup() == 30.0
    assert shared.explain("t").startswith("leased")
    assert shared.complete("t", duration=1.0) is TaskState.COMPLETED
    assert shared.state_of("t") is TaskState.COMPLETED
    assert shared.stats().by_state[TaskState.COMPLETED] == 1
    with pytest.raises(UnknownTaskError):
        shared.cancel("nope")
    assert shared.clock is clock and shared.breaker("w") is None
    assert shared.tracker is shared.distributor.tracker
    shared.close()
    assert shared.closed
    with pytest.raises(InvalidTypeError):
        ThreadSafeDistributor(object())  # type: ignore[arg-type]


def test_a_listener_may_call_back_without_deadlock() -> None:
    clock = ManualClock()
    shared: list[ThreadSafeDistributor] = []

    def follow_up(event: Event) -> None:
        if event.kind is EventKind.COMPLETED and event.task_id == "first":
            shared[0].submit(Task("second"))

    shared.append(ThreadSafeDistributor(Distributor(clock, on_event=follow_up)))
    d = shared[0]
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("first"))
    d.dispatch()
    d.complete("first")
    assert d.state_of("second") is TaskState.QUEUED


def test_wait_for_work_wakes_on_a_submit_from_another_thread() -> None:
    shared = ThreadSafeDistributor(Distributor(MonotonicClock()))
    shared.add_worker(Worker("w", capacity=1))
    shared.dispatch()  # nothing yet; this thread has looked
    timer = threading.Timer(0.05, lambda: shared.submit(Task("t")))
    start = time.monotonic()
    timer.start()
    assert shared.wait_for_work(timeout=5.0) is True
    assert time.monotonic() - start < 2.0
    assert [a.task.id for a in shared.dispatch()] == ["t"]
    timer.join()


def test_wait_for_work_does_not_miss_a_change_made_before_it_waits() -> None:
    shared = ThreadSafeDistributor(Distributor(MonotonicClock()))
    shared.add_worker(Worker("w", capacity=1))
    shared.dispatch()
    other = threading.Thread(target=lambda: shared.submit(Task("t")))
    other.start()
    other.join()  # the submit lands between this thread's dispatch and its wait
    assert shared.wait_for_work(timeout=5.0) is True


@pytest.mark.parametrize("verb", ["submit", "complete", "fail", "cancel"])
def test_a_call_whose_listener_raises_still_wakes_the_waiting_threads(verb: str) -> None:
    # The listener raises once the call's changes are made: they stand, so a thread
    # waiting for work must hear of them.
    def broken(event: Event) -> None:
        if event.task_id == "t" and event.kind is not EventKind.DISPATCHED:
            raise RuntimeError("exporter down")

    shared = ThreadSafeDistributor(Distributor(ManualClock()))
    shared.add_worker(Worker("w", capacity=1))
    if verb != "submit":
        shared.submit(Task("t"))
        shared.dispatch()
    shared.dispatch()  # this thread has looked
    shared.add_listener(broken)
    calls = {
        "submit": lambda: shared.submit(Task("t")),
        "complete": lambda: shared.complete("t"),
        "fail": lambda: shared.fail("t", error="down"),
        "cancel": lambda: shared.cancel("t"),
    }
    with pytest.raises(RuntimeError, match="exporter down"):
        calls[verb]()
    assert shared.state_of("t") is not TaskState.LEASED  # the call was made
    assert shared.wait_for_work(timeout=0.0) is True


def test_wait_for_work_times_out_when_nothing_happens() -> None:
    shared = ThreadSafeDistributor(Distributor(MonotonicClock()))
    shared.dispatch()
    assert shared.wait_for_work(timeout=0.01) is False


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (-1.0, InvalidArgumentError),
        (float("nan"), InvalidArgumentError),
        (float("inf"), InvalidArgumentError),
        ("1", InvalidTypeError),
        (True, InvalidTypeError),
    ],
)
def test_wait_for_work_refuses_a_timeout_that_is_no_time(
    timeout: object, error: type[Exception]
) -> None:
    # These used to return False at once (negative, NaN, True), or raise a bare
    # TypeError or OverflowError from the lock.
    shared = ThreadSafeDistributor(Distributor(MonotonicClock()))
    shared.dispatch()
    with pytest.raises(error, match="timeout"):
        shared.wait_for_work(timeout)  # type: ignore[arg-type]
    shared.wake()
    assert shared.wait_for_work(0.0) is True  # what it remembered is unchanged


def test_wait_for_work_waits_for_a_timer_beyond_what_a_lock_can_wait() -> None:
    # A lease of 3,000 years: the wait until its expiry is longer than a lock's
    # longest timeout, which made the wait raise OverflowError at once.
    shared = ThreadSafeDistributor(Distributor(MonotonicClock(), lease=1e11))
    shared.add_worker(Worker("w", capacity=1))
    shared.submit(Task("t"))
    outcome: list[object] = []

    def wait() -> None:
        try:
            shared.dispatch()
            outcome.append(shared.wait_for_work())
        except Exception as error:
            outcome.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    shared.submit(Task("u"))  # wakes it, whether it waits already or not yet
    waiter.join(5.0)
    assert not waiter.is_alive() and outcome == [True]


def test_wait_for_work_ends_when_a_timer_comes_due() -> None:
    clock = MonotonicClock()
    retry = RetryPolicy(max_attempts=2, base=0.05, cap=0.05, jitter="none")
    shared = ThreadSafeDistributor(Distributor(clock, retry=retry))
    shared.add_worker(Worker("w", capacity=1))
    shared.submit(Task("t"))
    shared.dispatch()
    shared.fail("t", error="flaky")  # retry due in 50 ms
    due = shared.next_wakeup()
    assert due is not None
    shared.dispatch()
    assert shared.wait_for_work(timeout=5.0) is True
    assert clock.now() >= due - 1e-3  # it waited for the timer, not the timeout
    assert [a.attempt for a in shared.dispatch()] == [2]


THREADS = 8
TASKS = 30_000  # about a second alone on a 2-core machine; the benchmark runs 100,000


def test_eight_threads_submitting_dispatching_and_completing_lose_and_duplicate_nothing() -> None:
    retry = RetryPolicy(max_attempts=3, base=0.001, cap=0.001, jitter="none")
    shared = ThreadSafeDistributor(Distributor(MonotonicClock(), retry=retry, lease=None))
    for w in range(8):
        shared.add_worker(Worker(f"w{w}", capacity=4))
    tasks = [Task(i) for i in range(TASKS)]
    flaky = set(random.Random(3).sample(range(TASKS), TASKS // 10))  # fail once each
    runs = Counter[object]()
    running: set[object] = set()
    book = threading.Lock()
    done = threading.Event()
    completed = [0]
    problems: list[str] = []

    def work(index: int) -> None:
        mine = tasks[index::THREADS]
        submitted = 0
        while not done.is_set():
            for task in mine[submitted : submitted + 3]:
                shared.submit(task)
            submitted += 3
            assignments = shared.dispatch(limit=4)
            for assignment in assignments:
                task_id = assignment.task.id
                with book:
                    if task_id in running:
                        problems.append(f"{task_id} held twice")
                    running.add(task_id)
                    runs[task_id] += 1
                    first = runs[task_id] == 1
                if task_id % 16 == 0:
                    time.sleep(0)  # let another thread in while this one holds the task
                with book:
                    running.discard(task_id)  # still leased: no other thread can get it
                if first and task_id in flaky:
                    shared.fail(task_id, error="flaky")
                    continue
                shared.complete(task_id)
                with book:
                    completed[0] += 1
                    if completed[0] == TASKS:
                        done.set()
            if not assignments and submitted >= len(mine):
                shared.wait_for_work(timeout=0.01)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not problems
    assert done.is_set() and len(shared) == 0
    stats = shared.stats()
    assert stats.submitted == TASKS and stats.by_state[TaskState.COMPLETED] == TASKS
    assert stats.failed == len(flaky) and stats.dispatched == TASKS + len(flaky)
    assert all(runs[i] == (2 if i in flaky else 1) for i in range(TASKS))
