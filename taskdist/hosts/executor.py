"""ExecutorHost: taskdist decides, a ``concurrent.futures`` executor runs.

Each executor (a thread pool, a process pool, one dask.distributed worker
through its client) is a taskdist :class:`~taskdist.Worker`: the
distributor chooses which task goes next and on which worker, the host
submits it to that worker's executor, and each future's outcome becomes
``complete`` or ``fail``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import BrokenExecutor, Executor, Future
from typing import Any

from taskdist._validate import check_int, check_optional_number
from taskdist.dispatch import Distributor, SubmitResult
from taskdist.errors import (
    DuplicateWorkerError,
    InvalidArgumentError,
    InvalidTypeError,
    ReentrancyError,
    TaskStateError,
    UnknownTaskError,
)
from taskdist.hosts._give_back import give_back_unfinished, give_back_unseen
from taskdist.hosts._outcome import check_not_retryable, report
from taskdist.hosts._renewals import Renewals, check_heartbeat
from taskdist.hosts.threaded import ThreadSafeDistributor
from taskdist.task import Assignment, Task, TaskState, Worker
from taskdist.workers import Health

__all__ = ["ExecutorHost", "Job", "ResultHandler", "dask_workers"]

Job = Callable[[Assignment], object]
"""What an :class:`ExecutorHost` runs in an executor: a function of the
:class:`~taskdist.Assignment` (for a process pool or a cluster, a picklable,
module-level function). Returning completes the task; raising fails the attempt."""

ResultHandler = Callable[[Assignment, object], None]
"""Receives each completed run's assignment and what its job returned, in the
thread that saw the future end (an executor's), after the task was completed."""


class _Run:
    """One assignment submitted to an executor."""

    __slots__ = ("abandoned", "assignment", "future")

    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment
        self.future: Future[object] | None = None
        self.abandoned = False


class ExecutorHost:
    """Runs a :class:`~taskdist.Distributor`'s assignments on ``concurrent.futures`` executors.

    ``executors`` maps each taskdist :class:`~taskdist.Worker` to the
    executor that runs its tasks (:func:`dask_workers` builds that map for
    a dask.distributed cluster, one entry per dask worker), or is a single
    executor: one worker, ``worker_id``, with ``capacity`` slots (by default
    the pool's ``max_workers``). The host adds the workers the distributor
    does not have yet. ``run()`` then loops in the calling thread:
    ``dispatch()``, ``executor.submit(job, assignment)`` on the chosen
    worker's executor, and wait (``wait_for_work``) until a future ends, a
    task is submitted, a lease is due for renewal or a timer is due.

    **Outcomes.** A future that returns completes its attempt; one that
    raises fails it, retryably unless the exception is one of
    ``not_retryable``. A ``BrokenExecutor`` (a process pool whose process
    was killed) is not the task's failure and says nothing of whether it
    ran: the host marks that worker ``UNAVAILABLE`` and reports nothing, so
    each task it held comes back when its lease expires (an attempt spent)
    and runs again on another worker. An error the distributor raises while
    a run is reported (an ``on_event`` listener, a retry policy's predicate)
    ends :meth:`run` as one raised while dispatching does: the futures still
    going are cancelled where the executor can, the tasks still held go back
    (that run's too, if its report changed nothing), and ``run`` raises it.
    So does what ``on_result`` raises (a run counts as running until its
    ``on_result`` returns), a listener that raises on a ``dispatched`` event
    (the tasks of that dispatch the host never saw go back too), and an
    executor whose ``submit`` raises anything but a refusal (below).

    **Leases.** While a future is not done its lease is renewed once
    ``heartbeat`` of it has passed (``None``: never, which makes the lease
    the run's time limit: a run still going when it expires is run again
    elsewhere, and the first report wins: a late completion ends the newer
    run's lease and its report is dropped, a late failure changes nothing;
    a run the executor had not started yet is cancelled instead).

    **Stopping.** :meth:`stop` (from any thread) stops dispatching; futures
    get ``grace`` seconds to finish (``None``: as long as they take), then
    are cancelled where the executor can, and their tasks go back to the
    queue without spending an attempt. A run the executor cannot cancel may
    still finish later: its report is then dropped, and the task runs again
    (at least once). A stopped host stays stopped: a :meth:`stop` before
    :meth:`run` makes it return at once, as does any later ``run``. ``run``
    also returns once the distributor is closed and has no live task (and a
    host that returned so may run again). A task goes back with
    ``Distributor.requeue`` naming its run's lease (``lease_id=``; see
    ``AsyncHost``).

    An executor that refuses a job (``RuntimeError``: shut down;
    ``BrokenExecutor``) is out of service: the host marks its worker
    ``UNAVAILABLE`` and gives that task back at no cost. The jobs it runs
    already go on, and report as usual.

    The distributor is wrapped in a :class:`ThreadSafeDistributor` (or used
    as is, if it is one): futures report from the executors' threads. Use
    :attr:`shared` (or :meth:`submit`) to reach it while the host runs.

    Costs per assignment: the distributor's dispatch and complete, the
    executor's submit, and O(log r) for lease renewals (r runs).
    """

    __slots__ = (
        "_error",
        "_executors",
        "_grace",
        "_handing",
        "_job",
        "_not_retryable",
        "_older",
        "_on_result",
        "_renewals",
        "_runs",
        "_serving",
        "_shared",
        "_stop_at",
        "_stopping",
        "_unreported",
    )

    def __init__(
        self,
        distributor: Distributor | ThreadSafeDistributor,
        job: Job,
        executors: Executor | Mapping[Worker, Executor],
        *,
        capacity: int | None = None,
        worker_id: Hashable = "executor",
        heartbeat: float | None = 0.5,
        not_retryable: Iterable[type[BaseException]] = (),
        grace: float | None = None,
        on_result: ResultHandler | None = None,
    ) -> None:
        """
        Args:
            distributor: what to run (its clock should be a ``MonotonicClock``:
                executors run in real time).
            job: the function each assignment runs, as ``job(assignment)``.
            executors: a map from each worker to its executor, or one executor.
            capacity: with one executor, its slots (>= 1; default: its
                ``max_workers``, when it has one).
            worker_id: with one executor, the id of its worker.
            heartbeat: the fraction of a lease (0 < heartbeat < 1) after which a
                running future's lease is renewed; ``None``: never.
            not_retryable: exception classes whose failures are not retried.
            grace: seconds futures get to finish once stopping (>= 0), or
                ``None`` to wait for them all.
            on_result: receives ``(assignment, result)`` for each run whose
                report completed its task (a late or dropped report gives none),
                in the executor's thread; what it raises ends :meth:`run` with it.

        Raises:
            InvalidTypeError: not a Distributor, ``job`` or ``on_result`` not
                callable, an entry that is not a Worker and an Executor.
            InvalidArgumentError: no executor, a capacity that cannot be found,
                a ``capacity`` with a map, a bad ``heartbeat`` or ``grace``.
            DuplicateWorkerError: a map that names one worker id twice.
        """
        if isinstance(distributor, Distributor):
            distributor = ThreadSafeDistributor(distributor)
        elif not isinstance(distributor, ThreadSafeDistributor):
            raise InvalidTypeError(f"ExecutorHost drives a Distributor, got {distributor!r}")
        if not callable(job):
            raise InvalidTypeError(f"job must be callable, got {job!r}")
        if on_result is not None and not callable(on_result):
            raise InvalidTypeError(f"on_result must be callable or None, got {on_result!r}")
        heartbeat = check_heartbeat(heartbeat)
        workers = _workers(executors, capacity, worker_id)
        self._shared = distributor
        self._job = job
        self._on_result = on_result
        self._not_retryable = check_not_retryable(not_retryable)
        self._grace = check_optional_number(grace, "grace", minimum=0.0)
        self._renewals = None if heartbeat is None else Renewals(heartbeat)
        self._executors = {worker.id: executor for worker, executor in workers.items()}
        # The newest run of each task id; older runs of a task whose lease expired
        # while they ran (the distributor dispatched it again) wait in _older.
        self._runs: dict[Hashable, _Run] = {}
        self._older: set[_Run] = set()
        self._serving = False
        self._stopping = False
        self._stop_at: float | None = None
        # What the distributor raised while a run was reported, in an executor's
        # thread (the first such error; run() raises it), and those runs' assignments.
        self._error: Exception | None = None
        # Completed runs whose result on_result is being handed, outside the lock.
        self._handing = 0
        self._unreported: list[Assignment] = []
        with distributor.lock:
            for worker in workers:
                if worker.id not in distributor.tracker:
                    distributor.add_worker(worker)

    @property
    def shared(self) -> ThreadSafeDistributor:
        """The distributor, as the thread-safe wrapper every thread must use."""
        return self._shared

    @property
    def running(self) -> int:
        """Futures submitted and not yet reported, or whose result ``on_result`` is
        still being handed. O(1)."""
        return len(self._runs) + len(self._older) + self._handing

    def submit(self, task: Task) -> SubmitResult:
        """Submit ``task`` (from any thread); the host picks it up at once."""
        return self._shared.submit(task)

    def stop(self) -> None:
        """Stop dispatching (from any thread); see the class docstring. Called before
        :meth:`run`, it makes ``run`` return at once; a stopped host stays stopped.
        Idempotent. O(1)."""
        with self._shared.lock:
            self._stopping = True
            self._shared.wake()

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        """Run in this thread until stopped, or closed and drained.

        Raises:
            ReentrancyError: this host is already running.
            Exception: what the distributor raised while the host dispatched or
                reported a run (an ``on_event`` listener, a retry policy's predicate).
        """
        shared = self._shared
        with shared.lock:
            if self._serving:
                raise ReentrancyError("this ExecutorHost is already running")
            self._serving = True
            self._stop_at = None  # a stop() before this run holds: it returns at once
            self._error = None
        try:
            while True:
                with shared.lock:
                    done, timeout = self._step()
                if done:
                    return
                shared.wait_for_work(timeout)
        finally:
            with shared.lock:
                try:
                    self._abandon_the_rest()
                finally:
                    self._serving = False

    def _step(self) -> tuple[bool, float | None]:
        """One look (under the lock): renew, dispatch; say whether the host is done, and
        else how long to wait at most."""
        shared = self._shared
        error = self._error
        if error is not None:  # raised while a run was reported, in an executor's thread
            self._error = None
            raise error
        distributor = shared.distributor
        now = distributor.clock.now()
        renewals = self._renewals
        if renewals:
            self._renew_due(now)
        if self._stopping:
            if not self.running:
                return True, None
            if self._stop_at is None and self._grace is not None:
                self._stop_at = now + self._grace
            if self._stop_at is not None and now >= self._stop_at:
                return True, None
            shared.dispatch(0)  # due timers only; and wait_for_work counts from here
        else:
            try:
                for assignment in shared.dispatch():
                    self._start(assignment)
            except BaseException:
                # A listener raised on its events once the placements were made, or
                # an executor's submit raised: the tasks the host did not start are
                # its own all the same.
                give_back_unseen(distributor, now, self._holds)
                raise
            if distributor.closed and not len(distributor) and not self.running:
                return True, None
        wake = None if renewals is None else renewals.next_due(self._live)
        if self._stop_at is not None and (wake is None or self._stop_at < wake):
            wake = self._stop_at
        return False, None if wake is None else max(wake - now, 0.0)

    def _start(self, assignment: Assignment) -> None:
        task_id = assignment.task.id
        run = _Run(assignment)
        earlier = self._runs.pop(task_id, None)
        # An earlier run's lease expired and the task runs again. If the executor
        # has not started it, it never will; if it runs, it may still report
        # first, and that report counts (the first report wins).
        if earlier is not None and earlier.future is not None and not earlier.future.cancel():
            self._older.add(earlier)
        worker_id = assignment.worker_id
        try:
            future = self._executors[worker_id].submit(self._job, assignment)
        except (BrokenExecutor, RuntimeError):
            # The executor is broken or shut down: this task never started, so it goes
            # back at no cost, and the worker takes no more. Only this one: the jobs
            # it runs already may still finish (a pool shut down lets them) and report.
            shared = self._shared
            try:
                shared.set_health(worker_id, Health.UNAVAILABLE)
            finally:
                give_back_unfinished(shared.distributor, [assignment])
            return
        self._runs[task_id] = run
        run.future = future
        expiry = assignment.lease_expiry
        if expiry is not None and self._renewals is not None:
            self._renewals.add(task_id, assignment.attempt, assignment.started_at, expiry)
        future.add_done_callback(lambda done: self._finished(run, done))

    def _holds(self, assignment: Assignment) -> bool:
        """Whether ``assignment`` is the one of a run the host has submitted."""
        run = self._runs.get(assignment.task.id)
        return run is not None and run.assignment.lease_id == assignment.lease_id

    def _live(self, task_id: Hashable, attempt: int) -> bool:
        run = self._runs.get(task_id)
        return (
            run is not None
            and run.assignment.attempt == attempt
            and not run.abandoned
            and run.future is not None
            and not run.future.done()
        )

    def _renew_due(self, now: float) -> None:
        renewals = self._renewals
        assert renewals is not None
        distributor = self._shared.distributor
        for task_id, attempt in renewals.due(now):
            if not self._live(task_id, attempt):
                continue
            try:
                expiry = distributor.heartbeat(
                    task_id, lease_id=self._runs[task_id].assignment.lease_id
                )
            except (TaskStateError, UnknownTaskError):
                run = self._runs[task_id]
                run.abandoned = True  # cancelled, or its lease ran out: let the run go
                if run.future is not None:
                    run.future.cancel()
                continue
            if expiry is not None:
                renewals.add(task_id, attempt, now, expiry)

    def _finished(self, run: _Run, future: Future[object]) -> None:
        """A future ended (in an executor's thread): report it under the lock, then hand
        the result on, outside it. What ``on_result`` raises ends :meth:`run` with it;
        the run counts as running until ``on_result`` returns, so that ``run`` cannot
        finish without it."""
        if self._report(run, future) is not TaskState.COMPLETED or self._on_result is None:
            return
        shared = self._shared
        try:
            self._on_result(run.assignment, future.result())
        except Exception as raised:
            with shared.lock:
                if self._error is None:
                    self._error = raised
        finally:
            with shared.lock:
                self._handing -= 1
                shared.wake()

    def _report(self, run: _Run, future: Future[object]) -> TaskState | None:
        shared = self._shared
        with shared.lock:
            task_id = run.assignment.task.id
            runs = self._runs
            if runs.get(task_id) is run:
                del runs[task_id]
            else:
                self._older.discard(run)
            try:
                if run.abandoned or future.cancelled():
                    return None
                error = future.exception()
                if isinstance(error, BrokenExecutor):
                    # The executor lost the task: whether it ran is unknown. Take the
                    # worker out of placement and let the lease bring the task back.
                    worker_id = run.assignment.worker_id
                    if worker_id in shared.tracker:
                        shared.set_health(worker_id, Health.UNAVAILABLE)
                    return None
                clock = shared.clock
                try:
                    state = report(
                        shared,
                        run.assignment,
                        error,
                        clock.now() - run.assignment.started_at,
                        self._not_retryable,
                    )
                except Exception as raised:
                    # The distributor raised (an on_event listener, a retry policy's
                    # predicate): the run is over all the same, and run() raises it.
                    self._unreported.append(run.assignment)
                    if self._error is None:
                        self._error = raised
                    return None
                newer = runs.get(task_id)
                if state is TaskState.COMPLETED and newer is not None:
                    # A late completion won: the distributor ended the newer lease,
                    # so whatever the newer run reports is dropped.
                    newer.abandoned = True
                    if newer.future is not None:
                        newer.future.cancel()
                if state is TaskState.COMPLETED and self._on_result is not None:
                    self._handing += 1  # until on_result returns (see _finished)
                return state
            finally:
                # A run ended, whatever its report did (a stale one changes nothing in
                # the distributor): the loop must look again, as it may now be
                # drained, or done stopping.
                shared.wake()

    def _abandon_the_rest(self) -> None:
        """Cancel the futures still going and give their tasks back (under the lock)."""
        left = [*self._runs.values(), *self._older]
        self._runs.clear()
        self._older.clear()
        if self._renewals is not None:
            self._renewals.clear()
        for run in left:
            run.abandoned = True
            if run.future is not None:
                run.future.cancel()
        unfinished = [*self._unreported, *(run.assignment for run in left)]
        self._unreported.clear()
        if give_back_unfinished(self._shared.distributor, unfinished):
            self._shared.wake()


def _workers(
    executors: Executor | Mapping[Worker, Executor], capacity: int | None, worker_id: Hashable
) -> dict[Worker, Executor]:
    if isinstance(executors, Executor):
        if capacity is None:
            capacity = getattr(executors, "_max_workers", None)
            if capacity is None:
                raise InvalidArgumentError(
                    f"cannot tell how many tasks {executors!r} runs at once: give capacity="
                )
        capacity = check_int(capacity, "capacity", minimum=1)
        return {Worker(worker_id, capacity=capacity): executors}
    if not isinstance(executors, Mapping):
        raise InvalidTypeError(
            f"executors must be an Executor or a mapping from Worker to Executor, got {executors!r}"
        )
    if not executors:
        raise InvalidArgumentError("executors must name at least one worker, got an empty map")
    if capacity is not None:
        raise InvalidArgumentError(
            f"capacity is for a single executor; with a map, give each Worker its own "
            f"capacity (got capacity={capacity!r})"
        )
    ids: set[Hashable] = set()
    for worker, executor in executors.items():
        if not isinstance(worker, Worker) or not isinstance(executor, Executor):
            raise InvalidTypeError(
                f"executors maps a Worker to an Executor, got {worker!r}: {executor!r}"
            )
        if worker.id in ids:
            raise DuplicateWorkerError(
                f"executors names worker {worker.id!r} twice: one executor per worker id"
            )
        ids.add(worker.id)
    return dict(executors)


def dask_workers(client: Any, **submit_options: Any) -> dict[Worker, Executor]:
    """One taskdist :class:`~taskdist.Worker` per worker of a dask.distributed cluster.

    Each worker's id is its dask address and its capacity its thread count;
    its executor is ``client.get_executor(workers=[address],
    allow_other_workers=False, pure=False)``, so a task runs on the worker
    taskdist placed it on. ``submit_options`` are passed on to
    ``get_executor`` (``resources=``, ``retries=``, ...). O(dask workers).

    Raises:
        InvalidArgumentError: the cluster has no worker.
    """
    nthreads: Mapping[str, int] = client.nthreads()
    if not nthreads:
        raise InvalidArgumentError("the dask cluster has no worker yet (wait_for_workers first)")
    options = {"allow_other_workers": False, "pure": False, **submit_options}
    return {
        Worker(address, capacity=threads): client.get_executor(workers=[address], **options)
        for address, threads in nthreads.items()
    }
