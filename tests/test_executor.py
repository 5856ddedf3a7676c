"""ExecutorHost on a thread pool, process pools and a dask.distributed LocalCluster.

Executors run in real time, so these tests keep their tasks and leases short.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from taskdist import (
    Assignment,
    Distributor,
    DuplicateWorkerError,
    Event,
    EventKind,
    Health,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    MonotonicClock,
    Reason,
    RetryPolicy,
    Task,
    TaskState,
    Worker,
)
from taskdist.executor import ExecutorHost, dask_workers
from taskdist.hosts._give_back import give_back_unfinished
from taskdist.hosts._outcome import report

# Module-level jobs: a process pool pickles them by name.


def double(assignment: Assignment) -> int:
    return 2 * int(assignment.task.payload)


def fail_first(assignment: Assignment) -> None:
    if assignment.attempt == 1:
        raise ConnectionError("reset by peer")


def refuse(assignment: Assignment) -> None:
    raise PermissionError("forbidden")


def die_first(assignment: Assignment) -> int:
    """Kill the process running the first attempt, as an out-of-memory killer would."""
    if assignment.task.id == "poison" and assignment.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def where_am_i(assignment: Assignment) -> str:
    from distributed import get_worker

    return str(get_worker().address)


def distributor(lease: float | None = 5.0) -> Distributor:
    retry = RetryPolicy(max_attempts=3, base=0.01, cap=0.01, jitter="none")
    return Distributor(MonotonicClock(), lease=lease, retry=retry, dedup_window=600.0)


def test_an_assignment_travels_to_another_process_intact() -> None:
    task = Task("t", priority=1, resources={"api_calls": 2}, requires={"gpu"}, payload=[1])
    assignment = Assignment(task, "w", 2, 0.0, 30.0)
    assert pickle.loads(pickle.dumps(assignment)) == assignment


def test_a_thread_pool_runs_every_task_and_reports_each_outcome() -> None:
    d = distributor()
    ran: list[object] = []

    def job(assignment: Assignment) -> None:
        ran.append(assignment.task.id)
        if assignment.task.id == "flaky":
            fail_first(assignment)
        if assignment.task.id == "forbidden":
            refuse(assignment)

    for i in range(20):
        d.submit(Task(i))
    d.submit(Task("flaky"))
    d.submit(Task("forbidden"))
    d.close()
    with ThreadPoolExecutor(max_workers=4) as pool:
        host = ExecutorHost(d, job, pool, not_retryable=(PermissionError,))
        host.run()
    assert d.tracker.worker("executor").capacity["slots"] == 4
    assert [d.state_of(i) for i in range(20)] == [TaskState.COMPLETED] * 20
    assert d.state_of("flaky") is TaskState.COMPLETED and ran.count("flaky") == 2
    entry = d.dlq.get("forbidden")
    assert entry is not None and entry.reason is Reason.NOT_RETRYABLE
    assert host.running == 0


def test_each_completed_run_s_result_is_handed_on() -> None:
    d = distributor()
    results: dict[object, object] = {}
    for i in range(10):
        d.submit(Task(i, payload=i))
    d.close()
    with ThreadPoolExecutor(max_workers=3) as pool:
        ExecutorHost(
            d, double, pool, on_result=lambda a, r: results.__setitem__(a.task.id, r)
        ).run()
    assert results == {i: 2 * i for i in range(10)}


def test_an_on_result_that_raises_ends_run_with_its_error_and_loses_no_task() -> None:
    # It used to be logged by concurrent.futures alone, and run() returned as if all
    # was well. The run of a closed, drained distributor must not end before it either.
    d = distributor()
    for i in range(6):
        d.submit(Task(i, payload=i))
    d.close()
    handed: list[object] = []

    def on_result(assignment: Assignment, result: object) -> None:
        if assignment.task.id == 3:
            time.sleep(0.05)  # the last report may be in meanwhile
            raise LookupError("the result store is down")
        handed.append(assignment.task.id)

    with ThreadPoolExecutor(max_workers=1) as pool:
        host = ExecutorHost(d, double, pool, heartbeat=None, on_result=on_result)
        with pytest.raises(LookupError, match="the result store is down"):
            host.run()
    assert host.running == 0 and not d.leases()
    states = {i: d.state_of(i) for i in range(6)}
    assert states[3] is TaskState.COMPLETED  # its report was made before on_result
    assert set(states.values()) <= {TaskState.COMPLETED, TaskState.QUEUED}
    assert all(states[i] is TaskState.COMPLETED for i in handed)


def test_the_executor_is_never_given_more_than_its_workers_capacity() -> None:
    d = distributor()
    running = peak = 0
    book = threading.Lock()

    def job(assignment: Assignment) -> None:
        nonlocal running, peak
        with book:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002)
        with book:
            running -= 1

    for i in range(40):
        d.submit(Task(i))
    d.close()
    with ThreadPoolExecutor(max_workers=8) as pool:
        ExecutorHost(d, job, pool, capacity=3).run()
    assert peak == 3 and d.stats().by_state[TaskState.COMPLETED] == 40


def test_work_submitted_from_another_thread_is_picked_up_and_stop_returns() -> None:
    d = distributor()
    done = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        host = ExecutorHost(d, lambda a: done.set(), pool)
        serving = threading.Thread(target=host.run)
        serving.start()
        host.submit(Task("later"))
        assert done.wait(5.0)
        host.stop()
        serving.join(5.0)
    assert not serving.is_alive() and d.state_of("later") is TaskState.COMPLETED


def test_a_slow_job_keeps_its_lease_by_heartbeats() -> None:
    d = distributor(lease=0.1)
    d.submit(Task("slow"))
    d.close()
    with ThreadPoolExecutor(max_workers=1) as pool:
        ExecutorHost(d, lambda a: time.sleep(0.35), pool, heartbeat=0.5).run()
    assert d.state_of("slow") is TaskState.COMPLETED and d.stats().lease_expiries == 0


def test_a_lease_longer_than_a_lock_can_wait_is_renewed_as_any_other() -> None:
    # Its renewal, due in 1,500 years, used to make run() raise OverflowError.
    d = distributor(lease=1e11)
    d.submit(Task("t"))
    d.close()
    with ThreadPoolExecutor(max_workers=1) as pool:
        ExecutorHost(d, lambda a: time.sleep(0.01), pool).run()
    assert d.state_of("t") is TaskState.COMPLETED


def serve(host: ExecutorHost) -> threading.Thread:
    serving = threading.Thread(target=host.run, daemon=True)
    serving.start()
    return serving


def join_or_stop(host: ExecutorHost, serving: threading.Thread, timeout: float) -> bool:
    """Whether run() returned within ``timeout``; if it did not, stop it anyway."""
    serving.join(timeout)
    hung = serving.is_alive()
    if hung:
        host.stop()
        serving.join(5.0)
    return not hung


@pytest.mark.parametrize("stop", [False, True], ids=["drained", "stopped"])
def test_a_run_whose_task_was_cancelled_meanwhile_still_ends_the_host(stop: bool) -> None:
    d = distributor(lease=None)  # no lease: nothing else would wake the host
    d.submit(Task("t"))
    if not stop:
        d.close()
    started, release = threading.Event(), threading.Event()

    def job(assignment: Assignment) -> None:
        started.set()
        release.wait(5.0)

    with ThreadPoolExecutor(max_workers=1) as pool:
        host = ExecutorHost(d, job, pool)
        serving = serve(host)
        assert started.wait(5.0)
        host.shared.cancel("t")  # the job's report will be stale
        if stop:
            host.stop()
        time.sleep(0.1)  # the host looks, and goes back to waiting for the job
        release.set()
        assert join_or_stop(host, serving, 5.0)
    assert d.state_of("t") is TaskState.CANCELLED and host.running == 0


def test_a_run_that_outlives_its_lease_still_ends_the_host_when_it_ends() -> None:
    d = distributor(lease=0.05)
    d.submit(Task("slow", max_attempts=1))
    d.close()
    with ThreadPoolExecutor(max_workers=1) as pool:
        host = ExecutorHost(d, lambda a: time.sleep(0.5), pool, heartbeat=None)
        serving = serve(host)
        assert join_or_stop(host, serving, 5.0)
    assert d.state_of("slow") is TaskState.DEAD and host.running == 0


@pytest.mark.parametrize("raiser", ["listener", "predicate"])
def test_an_error_raised_while_a_run_is_reported_ends_run_with_it(raiser: str) -> None:
    # The report is made in an executor's thread; what the distributor raises there
    # (a listener of its events, a retry policy's predicate) used to vanish into
    # concurrent.futures' done-callback. run() raises it now, as one raised while
    # dispatching; a task whose report changed nothing goes back without an attempt.
    def listener(event: Event) -> None:
        if event.kind is EventKind.COMPLETED:
            raise LookupError("the listener failed")

    def retryable(error: BaseException) -> bool:
        raise LookupError("the predicate failed")

    if raiser == "listener":
        d = Distributor(MonotonicClock(), lease=30.0, on_event=listener)
        job: Callable[[Assignment], object] = double
    else:
        d = Distributor(MonotonicClock(), lease=30.0, retry=RetryPolicy(retryable=retryable))
        job = refuse
    d.submit(Task("a", payload=1))
    raised: list[BaseException] = []

    def run() -> None:
        try:
            host.run()
        except LookupError as error:
            raised.append(error)

    with ThreadPoolExecutor(max_workers=1) as pool:
        host = ExecutorHost(d, job, pool, heartbeat=None)
        serving = threading.Thread(target=run, daemon=True)
        serving.start()
        assert join_or_stop(host, serving, 5.0)
    assert [str(error) for error in raised] == [f"the {raiser} failed"]
    assert host.running == 0 and not d.leases()
    expected = TaskState.COMPLETED if raiser == "listener" else TaskState.QUEUED
    assert d.state_of("a") is expected and d.stats().failed == 0


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds (checked every 5 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_an_executor_that_refuses_a_job_gives_back_that_task_alone() -> None:
    d = distributor()
    started, release = threading.Event(), threading.Event()
    ran: list[object] = []

    def job(assignment: Assignment) -> None:
        ran.append(assignment.task.id)
        started.set()
        release.wait(5.0)

    pool = ThreadPoolExecutor(max_workers=2)
    host = ExecutorHost(d, job, pool)
    serving = serve(host)
    try:
        host.submit(Task("running"))
        assert started.wait(5.0)
        pool.shutdown(wait=False)  # refuses new jobs; the running one goes on
        host.submit(Task("refused"))

        def unavailable() -> bool:
            with host.shared.lock:
                return d.tracker.worker("executor").health is Health.UNAVAILABLE

        assert wait_until(unavailable)
        # The refused task went back; the running one kept its lease (it used to be
        # given back too, while it ran: its report was then dropped, and it would
        # have run again).
        assert host.shared.state_of("refused") is TaskState.QUEUED
        assert host.shared.state_of("running") is TaskState.LEASED
        release.set()
        assert wait_until(lambda: host.shared.state_of("running") is TaskState.COMPLETED)
    finally:
        release.set()
        host.stop()
        serving.join(5.0)
    assert not serving.is_alive() and host.running == 0
    assert ran == ["running"] and d.stats().failed == 0


def test_a_listener_that_raises_on_a_dispatch_ends_run_and_those_tasks_go_back() -> None:
    d = distributor(lease=None)  # nothing would ever bring a lost lease back
    armed = [True]

    def listener(event: Event) -> None:
        if armed[0] and event.kind is EventKind.DISPATCHED:
            armed[0] = False
            raise LookupError(f"the listener failed on {event.task_id}")

    d.add_listener(listener)
    d.submit(Task("a"))
    d.submit(Task("b"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        host = ExecutorHost(d, lambda a: None, pool)
        with pytest.raises(LookupError, match="failed on a"):
            host.run()
    # The dispatch raised once both were placed: the host never saw them, but they
    # are its own, and went back (they used to stay leased, here for ever).
    assert not d.leases() and host.running == 0
    assert d.state_of("a") is TaskState.QUEUED and d.state_of("b") is TaskState.QUEUED


class RefusesOddly(ThreadPoolExecutor):
    """An executor whose submit raises an error the host does not know."""

    def submit(self, *args: object, **kwargs: object) -> Future[object]:  # type: ignore[override]
        raise ValueError("no such queue")


def test_an_executor_whose_submit_raises_ends_run_and_the_tasks_go_back() -> None:
    d = distributor(lease=None)
    for i in range(3):
        d.submit(Task(i))
    with RefusesOddly(max_workers=3) as pool:
        host = ExecutorHost(d, lambda a: None, pool)
        with pytest.raises(ValueError, match="no such queue"):
            host.run()
    assert not d.leases() and d.stats().by_state[TaskState.QUEUED] == 3


def test_a_stop_before_run_holds_and_a_stopped_host_stays_stopped() -> None:
    d = distributor()
    d.submit(Task("a"))
    with ThreadPoolExecutor(max_workers=1) as pool:
        host = ExecutorHost(d, double, pool)
        host.stop()  # before run() has begun
        for _ in range(2):  # and a stopped host stays stopped
            serving = serve(host)
            assert join_or_stop(host, serving, 5.0)
    assert d.state_of("a") is TaskState.QUEUED and d.stats().dispatched == 0


def test_without_heartbeats_a_run_that_outlives_its_lease_and_reports_first_wins() -> None:
    d = distributor(lease=0.2)
    d.submit(Task("a"))
    d.close()
    second_started, first_won = threading.Event(), threading.Event()
    results: list[object] = []

    def job(assignment: Assignment) -> int:
        if assignment.attempt == 1:
            assert second_started.wait(5.0)  # outlives its lease: dispatched again
        else:
            second_started.set()
            first_won.wait(5.0)  # still running when attempt 1 reports
        return assignment.attempt

    def on_result(assignment: Assignment, result: object) -> None:
        results.append(result)
        first_won.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        host = ExecutorHost(d, job, pool, heartbeat=None, on_result=on_result)
        serving = serve(host)
        assert join_or_stop(host, serving, 10.0)
    # Attempt 1 reported first and completed the task; attempt 2's report was dropped.
    assert results == [1] and d.state_of("a") is TaskState.COMPLETED
    assert d.stats().lease_expiries >= 1 and host.running == 0


def test_stopping_gives_unfinished_tasks_back_without_an_attempt() -> None:
    d = distributor()
    release = threading.Event()
    started = threading.Barrier(3)

    def job(assignment: Assignment) -> None:
        started.wait(5.0)
        release.wait(5.0)

    for i in range(5):
        d.submit(Task(i, max_attempts=1))
    with ThreadPoolExecutor(max_workers=2) as pool:
        host = ExecutorHost(d, job, pool, grace=0)
        serving = threading.Thread(target=host.run)
        serving.start()
        started.wait(5.0)  # two jobs are running
        host.stop()
        serving.join(5.0)
        release.set()
    assert not serving.is_alive()
    stats = d.stats()
    assert stats.by_state[TaskState.QUEUED] == 5 and stats.failed == 0 and not d.leases()
    # The two late finishes were dropped; no attempt was spent on anyone.
    d.close()
    with ThreadPoolExecutor(max_workers=2) as pool:
        ExecutorHost(d, lambda a: None, pool).run()
    assert d.stats().by_state[TaskState.COMPLETED] == 5


def test_a_killed_process_s_task_runs_again_on_another_worker_when_its_lease_expires() -> None:
    d = distributor(lease=0.5)
    context = multiprocessing.get_context("spawn")
    pools = {name: ProcessPoolExecutor(1, mp_context=context) for name in ("a", "b")}
    executors: dict[Worker, Executor] = {Worker(n, capacity=1): p for n, p in pools.items()}
    try:
        d.submit(Task("poison"))
        for i in range(3):
            d.submit(Task(i))
        d.close()
        ExecutorHost(d, die_first, executors).run()
    finally:
        for pool in pools.values():
            pool.shutdown(cancel_futures=True)
    assert d.state_of("poison") is TaskState.COMPLETED
    assert [d.state_of(i) for i in range(3)] == [TaskState.COMPLETED] * 3
    assert d.stats().lease_expiries >= 1
    killed = d.stats().workers
    broken = [w for w, counts in killed.items() if counts.health is Health.UNAVAILABLE]
    assert len(broken) == 1  # the pool whose process died takes no more tasks


def test_bad_settings_are_refused() -> None:
    d = distributor()
    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(InvalidTypeError):
            ExecutorHost(object(), double, pool)  # type: ignore[arg-type]
        with pytest.raises(InvalidTypeError):
            ExecutorHost(d, "job", pool)  # type: ignore[arg-type]
        with pytest.raises(InvalidTypeError):
            ExecutorHost(d, double, {"w": pool})  # type: ignore[dict-item]
        with pytest.raises(InvalidArgumentError):
            ExecutorHost(d, double, {})
        with pytest.raises(InvalidArgumentError):
            ExecutorHost(d, double, pool, capacity=0)
        with pytest.raises(InvalidArgumentError):
            ExecutorHost(d, double, pool, heartbeat=2.0)
    assert len(d.tracker) == 0  # nothing was registered by a refused host


def test_a_map_of_executors_that_cannot_be_meant_is_refused() -> None:
    # Both used to be taken in silence: the second executor of one worker id was
    # never used (the first worker added, the second's executor given its tasks),
    # and the capacity was ignored.
    d = distributor()
    with ThreadPoolExecutor(max_workers=1) as first, ThreadPoolExecutor(max_workers=1) as second:
        twins = {Worker("w", capacity=1): first, Worker("w", capacity=2): second}
        with pytest.raises(DuplicateWorkerError, match="'w'"):
            ExecutorHost(d, double, twins)
        with pytest.raises(InvalidArgumentError, match="capacity"):
            ExecutorHost(d, double, {Worker("w", capacity=1): first}, capacity=4)
    assert len(d.tracker) == 0


def test_dask_runs_each_task_on_the_worker_taskdist_chose() -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        workers = dask_workers(client)
        assert sorted(w.capacity["slots"] for w in workers) == [1.0, 1.0]
        d = distributor()
        where: dict[object, tuple[object, object]] = {}

        def record(assignment: Assignment, address: object) -> None:
            where[assignment.task.id] = (assignment.worker_id, address)

        host = ExecutorHost(d, where_am_i, workers, on_result=record)
        for i in range(10):
            d.submit(Task(i))
        d.close()
        host.run()
    assert d.stats().by_state[TaskState.COMPLETED] == 10
    assert len(where) == 10 and all(chosen == ran for chosen, ran in where.values())
    assert len({chosen for chosen, _ in where.values()}) == 2  # both workers were used


def test_tasks_go_back_even_when_a_listener_fails_on_each_give_back() -> None:
    # A failing event sink: once "fast" ends, every event raises, the requeued ones of
    # the give-back too. Every task the host held still goes back, and the host, done,
    # may run again (it stayed "running" and refused every later run() before).
    d = Distributor(MonotonicClock(), lease=None)
    armed, release = threading.Event(), threading.Event()

    def listener(event: Event) -> None:
        if armed.is_set():
            raise LookupError(f"the sink is down: {event.kind.value}")

    def job(assignment: Assignment) -> int:
        if assignment.task.id == "fast":
            armed.set()
        else:
            release.wait(5.0)
        return 1

    d.add_listener(listener)
    raised: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        host = ExecutorHost(d, job, pool, heartbeat=None)
        for task_id in ("slow1", "slow2", "slow3", "fast"):
            host.submit(Task(task_id))

        def run() -> None:
            try:
                host.run()
            except LookupError as error:
                raised.append(error)

        serving = threading.Thread(target=run, daemon=True)
        serving.start()
        assert join_or_stop(host, serving, 5.0)
        release.set()
    armed.clear()
    assert len(raised) == 1
    assert {t: d.state_of(t) for t in ("slow1", "slow2", "slow3")} == dict.fromkeys(
        ("slow1", "slow2", "slow3"), TaskState.QUEUED
    )
    host.stop()
    host.run()  # returns at once: stopped, and not "already running"


def test_a_hosts_report_of_a_run_from_an_earlier_life_of_the_id_reaches_nothing() -> None:
    # A run hangs past its lease; a retry completes the task and the id is submitted
    # again. When the hung run ends, whatever the host reports for it must leave the
    # new task (attempt 1 again, not yet run) leased as it was.
    clock = ManualClock()
    d = Distributor(clock, lease=10.0, dedup_window=0.0)
    d.add_worker(Worker("a"))
    d.add_worker(Worker("b"))
    d.submit(Task("t"))
    [hung] = d.dispatch()
    clock.advance(10.0)
    [retry] = d.dispatch()
    d.complete("t", lease_id=retry.lease_id)
    d.submit(Task("t"))
    [anew] = d.dispatch()
    assert anew.attempt == hung.attempt
    assert report(d, hung, None, 1.0, ()) is None
    assert report(d, hung, RuntimeError("late"), 1.0, ()) is None
    assert give_back_unfinished(d, [hung]) == []
    assert d.assignment("t") == anew
    assert report(d, anew, None, 1.0, ()) is TaskState.COMPLETED
