"""AsyncHost: runs a Distributor's assignments as asyncio coroutines.

The host is the loop every asyncio user would otherwise write around a
:class:`~taskdist.Distributor`: dispatch, start one coroutine per
assignment, renew the leases of long runs, report each outcome, and sleep
until exactly the next thing that can change the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Final

from taskdist._validate import check_int, check_optional_number
from taskdist.dispatch import Distributor, SubmitResult
from taskdist.errors import (
    InvalidArgumentError,
    InvalidTypeError,
    ReentrancyError,
    TaskStateError,
    UnknownTaskError,
)
from taskdist.hosts._give_back import give_back_unfinished, give_back_unseen
from taskdist.hosts._outcome import check_not_retryable, report
from taskdist.hosts._renewal_batches import RenewalBatch, RenewalBatches
from taskdist.hosts._renewals import check_heartbeat
from taskdist.hosts._runners import WITHDRAWN, Runners, Withdrawn
from taskdist.task import Assignment, Task, TaskState

__all__ = ["AsyncHost", "Handler", "run"]

Handler = Callable[[Assignment], Awaitable[object]]
"""What an :class:`AsyncHost` runs: a coroutine function taking an
:class:`~taskdist.Assignment`. Returning completes the task; raising fails
the attempt."""

# The event loop's time and the distributor's clock must agree to within this
# (seconds): the host sleeps on the loop's timers until the clock's times.
_CLOCK_SKEW: Final = 0.1


class _Run:
    """One assignment being run, and how the host ended it."""

    __slots__ = ("abandoned", "assignment", "batch")

    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment
        # The host cancelled it (shutdown, or the distributor no longer leases it):
        # an error it ends with (the cancellation, say) is not reported. A handler
        # that swallows the cancellation and returns is reported as done, and the
        # distributor takes or drops that completion as it does any late report.
        self.abandoned = False
        # Its renewal batch while it wants its lease renewed; None once it does not.
        self.batch: RenewalBatch[_Run] | None = None


class AsyncHost:
    """Runs a :class:`~taskdist.Distributor`'s assignments as asyncio coroutines.

    ``await host.run()`` loops: ``dispatch()`` (at most ``concurrency``
    runs at once; ``None``: as many as the workers take), run
    ``handler(assignment)`` for each assignment, and sleep until the first
    of: the distributor's ``next_wakeup()``, a lease due for renewal, a run
    finishing, a :meth:`submit` or :meth:`wake`, or :meth:`stop`. It sleeps
    on one ``asyncio.Event`` and one timer: it never polls, and never wakes
    before something is due.

    **Runs.** Each handler runs in an asyncio task of its own while it
    runs, in its own copy of the context, as if started with
    ``create_task``: ``asyncio.current_task()``, ``asyncio.timeout`` and
    context variables behave as usual. The tasks are a pool of runners
    that live as long as :meth:`run`, never more than the handlers running
    at once; a runner starts its next handler at once, as Python 3.12's
    eager tasks do, so a handler that returns without awaiting (a cache
    hit, a no-op) costs no task and no turn of the event loop. A runner's
    task is a handler's own only while that handler runs.

    **Outcomes.** A handler that returns completes its attempt; one that
    raises fails it, retryably unless the exception is an instance of one
    of ``not_retryable`` (the distributor's retry policy then decides:
    retry after its delay, or dead-letter). A handler interrupted is not
    failed: its task goes back to the queue without spending an attempt.
    That is one that raises ``KeyboardInterrupt`` or ``SystemExit`` (which
    then stops the event loop, as from any task), or whose task is
    cancelled by someone other than the host (on Python 3.11 and later), as
    when the event loop closes with the host still running. A report the
    distributor no longer wants (the task was cancelled, or a late report
    of another attempt already won) is dropped, and that run's handler is
    cancelled.
    An error the distributor raises while a run is reported (an
    ``on_event`` listener, a retry policy's predicate) ends :meth:`run` as
    one raised while dispatching does: the other runs are cancelled, the
    tasks still held go back (that run's too, if its report changed
    nothing), and ``run`` raises it. A listener that raises on a
    ``dispatched`` event makes ``dispatch()`` raise once its placements are
    made: the host gives those tasks, which it never saw, back as well.

    **Leases.** A run whose assignment has a lease is renewed
    (``heartbeat``) once ``heartbeat`` of the lease has passed (0.5: half
    way), so a slow handler keeps its task; ``heartbeat=None`` never renews,
    which makes the lease the run's time limit. If a lease expires anyway
    (the loop was blocked), the distributor runs the task again; the first
    report wins: a late completion ends the newer run, a late failure
    changes nothing and the newer run goes on.

    **Stopping.** :meth:`stop`, or cancelling the task running :meth:`run`,
    stops dispatching; running handlers get ``grace`` seconds to finish
    (``None``: as long as they take; ``0``: none), then are cancelled, and
    the tasks they held go back to the queue with their age, without
    spending an attempt. Nothing leased is lost. A stopped host stays
    stopped: a :meth:`stop` before :meth:`run` makes it return at once, as
    does any later ``run``. ``run`` also returns, after the last run ends,
    once the distributor is closed and has no live task:
    ``distributor.close()`` then ``await host.run()`` drains it (and a host
    that returned so may run again).

    **Time.** The event loop's ``time()`` must be the distributor's clock:
    a ``MonotonicClock`` with any standard loop, or a ``ManualClock`` with
    :class:`VirtualTimeLoop` (tests and simulations in virtual time).

    **Giving back.** A task goes back with ``Distributor.requeue`` naming
    the run's lease (``lease_id=``, as every report and renewal of the host
    does): its worker stays as it was (health included), and a task whose
    lease the run no longer held is left alone, even one submitted again
    under the same id. Run one host per
    distributor: the host dispatches, and takes every assignment as its own.

    Costs per assignment: the distributor's dispatch and complete, and
    O(1) for the host: a queue slot, a context, the handler's coroutine,
    and a place in the renewal batch of its dispatch (one heap entry per
    batch, O(log b) for b batches; a run that ends before its renewal is
    due costs the heap nothing). A handler that awaits adds one generator
    step per await, and a runner woken or created when it first awaits.
    Per wakeup: one ``next_wakeup()`` and one timer. ``submit`` is the
    distributor's.

    >>> import asyncio
    >>> from taskdist import Distributor, ManualClock, Task, Worker
    >>> from taskdist.aio import AsyncHost, run_virtual
    >>> clock = ManualClock()
    >>> d = Distributor(clock, lease=10.0)
    >>> _ = d.add_worker(Worker("agent", capacity=2))
    >>> async def handler(assignment):
    ...     await asyncio.sleep(assignment.task.cost)
    >>> for i in range(4):
    ...     _ = d.submit(Task(f"job-{i}", cost=30.0))
    >>> d.close()
    >>> host = AsyncHost(d, handler)
    >>> run_virtual(host.run(), clock)
    >>> d.stats().by_state["completed"], clock.now()
    (4, 60.0)
    """

    __slots__ = (
        "_distributor",
        "_error",
        "_event",
        "_grace",
        "_handler",
        "_limit",
        "_not_retryable",
        "_now",
        "_older",
        "_renewals",
        "_runners",
        "_runs",
        "_serving",
        "_stop_at",
        "_stopping",
        "_unreported",
        "_wakeups",
    )

    def __init__(
        self,
        distributor: Distributor,
        handler: Handler,
        *,
        concurrency: int | None = None,
        heartbeat: float | None = 0.5,
        not_retryable: Iterable[type[BaseException]] = (),
        grace: float | None = None,
    ) -> None:
        """
        Args:
            distributor: what to run; its clock must be the event loop's time.
            handler: ``async def handler(assignment)``, run once per assignment.
            concurrency: most handlers running at once (>= 1), or ``None``: as
                many as the distributor's workers take.
            heartbeat: the fraction of a lease (0 < heartbeat < 1) after which a
                running handler's lease is renewed; ``None``: never renewed.
            not_retryable: exception classes whose failures are not retried.
            grace: seconds that running handlers get to finish once stopping
                (>= 0), or ``None`` to wait for them all.

        Raises:
            InvalidTypeError: not a Distributor, a handler that is not callable,
                ``not_retryable`` not exception classes.
            InvalidArgumentError: ``concurrency`` < 1, ``heartbeat`` outside
                (0, 1), ``grace`` < 0 or NaN.
        """
        if not isinstance(distributor, Distributor):
            raise InvalidTypeError(f"AsyncHost drives a Distributor, got {distributor!r}")
        if not callable(handler):
            raise InvalidTypeError(f"handler must be an async callable, got {handler!r}")
        if concurrency is not None:
            concurrency = check_int(concurrency, "concurrency", minimum=1)
        heartbeat = check_heartbeat(heartbeat)
        self._distributor = distributor
        self._now = distributor.clock.now
        self._handler = handler
        self._limit = concurrency
        self._not_retryable = check_not_retryable(not_retryable)
        self._grace = check_optional_number(grace, "grace", minimum=0.0)
        self._event = asyncio.Event()
        # The newest run of each task id; older runs of a task whose lease expired
        # while they ran (the distributor dispatched it again) wait in _older.
        self._runs: dict[Hashable, _Run] = {}
        self._older: set[_Run] = set()
        self._renewals: RenewalBatches[_Run] | None = (
            None if heartbeat is None else RenewalBatches(heartbeat)
        )
        self._runners: Runners[_Run] = Runners(self._begin, self._end)
        self._serving = False
        self._stopping = False
        self._stop_at: float | None = None
        self._wakeups = 0
        # What the distributor raised while a run was reported (the first such
        # error; run() raises it), and the assignments whose report raised.
        self._error: Exception | None = None
        self._unreported: list[Assignment] = []

    # -- what others call --------------------------------------------------------

    @property
    def distributor(self) -> Distributor:
        """The distributor this host runs."""
        return self._distributor

    @property
    def running(self) -> int:
        """Handlers running now. O(1)."""
        return len(self._runs) + len(self._older)

    @property
    def wakeups(self) -> int:
        """How many times the host's loop has woken (a host that spun would show it)."""
        return self._wakeups

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (or :meth:`run` cancelled) and the host is
        finishing or has finished."""
        return self._stopping

    def submit(self, task: Task) -> SubmitResult:
        """Submit ``task`` to the distributor and wake the host. O(the distributor's submit).

        Raises what ``Distributor.submit`` raises.
        """
        result = self._distributor.submit(task)
        self._event.set()
        return result

    def wake(self) -> None:
        """Make the host look again now: call it after changing the distributor
        directly (a submit, a worker added) while the host sleeps. O(1)."""
        self._event.set()

    def stop(self) -> None:
        """Stop dispatching; let running handlers finish within ``grace``, then cancel
        them and give their tasks back. :meth:`run` returns when that is done.
        Called before :meth:`run`, it makes ``run`` return at once. A stopped
        host stays stopped: a later ``run`` returns at once too (make a new
        host to serve again). Idempotent. O(1)."""
        self._stopping = True
        self._event.set()

    # -- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stopped, cancelled, or closed and drained (see the class docstring).

        Raises:
            ReentrancyError: this host is already running.
            InvalidArgumentError: the event loop's time is not the distributor's clock.
            Exception: what the distributor raised while the host dispatched or
                reported a run (an ``on_event`` listener, a retry policy's predicate).
        """
        if self._serving:
            raise ReentrancyError("this AsyncHost is already running; run() it once at a time")
        loop = asyncio.get_running_loop()
        skew = loop.time() - self._distributor.clock.now()
        if abs(skew) > _CLOCK_SKEW:
            raise InvalidArgumentError(
                f"the event loop's time and the distributor's clock differ by {skew:g} s; "
                "the host sleeps on the loop until the clock's times: use a "
                "MonotonicClock with a standard loop, or a ManualClock with VirtualTimeLoop"
            )
        self._serving = True
        self._event = asyncio.Event()  # bound to this loop, not to an earlier one
        self._runners = Runners(self._begin, self._end)
        self._stop_at = None  # a stop() before this run holds: it returns at once
        self._error = None
        try:
            try:
                await self._serve(loop)
            except asyncio.CancelledError:
                # Cancelled: stop as stop() does, within the grace period.
                self._stopping = True
                with contextlib.suppress(asyncio.CancelledError):
                    await self._serve(loop)
                raise
            finally:
                await self._abandon_the_rest()
            self._raise_report_error()  # a run that ended while the rest were cancelled
        finally:
            self._serving = False

    def _raise_report_error(self) -> None:
        error = self._error
        if error is not None:
            self._error = None
            raise error

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        distributor = self._distributor
        now_of = distributor.clock.now
        event = self._event
        limit = self._limit
        while True:
            event.clear()
            self._wakeups += 1
            self._raise_report_error()
            if self._renewals is not None:
                self._renew_due(now_of())
            if self._stopping:
                if not self.running:
                    return
                stop_at = self._stop_at
                if stop_at is None and self._grace is not None:
                    stop_at = self._stop_at = now_of() + self._grace
                if stop_at is not None and now_of() >= stop_at:
                    return
                distributor.tick()
            else:
                free = None if limit is None else limit - self.running
                since = now_of()
                try:
                    assignments = distributor.dispatch(free)
                except BaseException:
                    # A listener raised on its events, once the placements were made:
                    # those tasks are the host's, though it never saw them.
                    give_back_unseen(distributor, since, self._holds)
                    raise
                if assignments:
                    self._start(assignments)
                if distributor.closed and not len(distributor) and not self.running:
                    return
            wake = self._next_wake()
            if wake is None:
                await event.wait()
                continue
            timer = loop.call_at(wake, event.set)
            try:
                await event.wait()
            finally:
                timer.cancel()

    def _next_wake(self) -> float | None:
        """The earliest of: the distributor's next timer, a renewal due, the end of grace."""
        wake = self._distributor.next_wakeup()
        if self._renewals is not None:
            due = self._renewals.next_due()
            if due is not None and (wake is None or due < wake):
                wake = due
        stop_at = self._stop_at
        if stop_at is not None and (wake is None or stop_at < wake):
            wake = stop_at
        return wake

    # -- one run ------------------------------------------------------------------------

    def _start(self, assignments: list[Assignment]) -> None:
        """Queue a run of each assignment on the runners; file its lease for renewal."""
        runs = self._runs
        renewals = self._renewals
        push = self._runners.push
        # One dispatch's leases share their start and (most often) their expiry,
        # hence their renewal batch: look it up once per distinct expiry.
        batch: RenewalBatch[_Run] | None = None
        batch_since = batch_expiry = 0.0
        for assignment in assignments:
            task_id = assignment.task.id
            run = _Run(assignment)
            earlier = runs.get(task_id)
            if earlier is not None:
                # Its lease expired and the task runs again; the earlier run may
                # still report first, but its lease is no longer its own to renew.
                if earlier.batch is not None:
                    earlier.batch.live -= 1
                    earlier.batch = None
                self._older.add(earlier)
            runs[task_id] = run
            expiry = assignment.lease_expiry
            if expiry is not None and renewals is not None:
                since = assignment.started_at
                if batch is None or expiry != batch_expiry or since != batch_since:
                    batch = renewals.batch(since, expiry)
                    batch_since, batch_expiry = since, expiry
                batch.members.append(run)
                batch.live += 1
                run.batch = batch
            push(run)

    def _holds(self, assignment: Assignment) -> bool:
        """Whether ``assignment`` is the one of a run the host has going."""
        run = self._runs.get(assignment.task.id)
        return run is not None and run.assignment.lease_id == assignment.lease_id

    def _begin(self, run: _Run) -> Awaitable[object] | Withdrawn:
        """The runners start ``run``: its handler's awaitable (WITHDRAWN if the host
        abandoned it while it was queued)."""
        if run.abandoned:
            return WITHDRAWN
        return self._handler(run.assignment)

    def _end(self, run: _Run, error: BaseException | None) -> None:
        """The runners say how ``run`` ended: report it, unless the host ended it or
        it was interrupted (then its task goes back)."""
        if run.abandoned and error is not None:
            self._forget(run)  # ended by the host: given back, not reported
            return
        if error is not None and _interrupted(error):
            # Not the task's failure: the program is going down (the runner raises
            # it on, out of the event loop), or the task running the handler was
            # cancelled from outside (the event loop shutting down cancels them
            # all). The task goes back to the queue, no attempt spent.
            self._forget(run)
            try:
                give_back_unfinished(self._distributor, [run.assignment])
            except Exception as raised:  # a listener's, once the task went back
                if self._error is None:
                    self._error = raised
            return
        assignment = run.assignment
        try:
            state = report(
                self._distributor,
                assignment,
                error,
                self._now() - assignment.started_at,
                self._not_retryable,
            )
        except Exception as raised:
            # The distributor raised (an on_event listener, a retry policy's
            # predicate): the run is over all the same, and run() raises it.
            self._unreported.append(assignment)
            if self._error is None:
                self._error = raised
            return
        finally:
            self._forget(run)
        if state is TaskState.COMPLETED:
            newer = self._runs.get(assignment.task.id)
            if newer is not None:
                # This late completion won: the distributor ended the newer lease.
                # (A late failure changes nothing: the newer run goes on.)
                self._abandon(newer)

    def _forget(self, run: _Run) -> None:
        """Drop ``run`` from the runs going (and from its renewal batch); wake the loop."""
        task_id = run.assignment.task.id
        runs = self._runs
        if runs.get(task_id) is run:
            del runs[task_id]
        else:
            self._older.discard(run)
        batch = run.batch
        if batch is not None:
            batch.live -= 1
            run.batch = None
        self._event.set()

    def _abandon(self, run: _Run) -> None:
        """End ``run``: cancel its handler if it is awaiting (what it raises then is not
        reported; see ``_Run.abandoned``); forget it now if it was still queued (the
        runners will skip it)."""
        if run.abandoned:
            return
        run.abandoned = True
        batch = run.batch
        if batch is not None:  # its lease is not to be renewed while it winds down
            batch.live -= 1
            run.batch = None
        if not self._runners.cancel(run):
            self._forget(run)

    def _renew_due(self, now: float) -> None:
        renewals = self._renewals
        assert renewals is not None
        distributor = self._distributor
        for batch in renewals.due(now):
            for run in batch.members:
                if run.batch is not batch:
                    continue  # ended, abandoned, or its lease was taken over
                run.batch = None
                try:
                    expiry = distributor.heartbeat(
                        run.assignment.task.id, lease_id=run.assignment.lease_id
                    )
                except (TaskStateError, UnknownTaskError):
                    self._abandon(run)  # cancelled, or its lease ran out
                    continue
                if expiry is not None:
                    run.batch = renewals.add(run, now, expiry)

    async def _abandon_the_rest(self) -> None:
        """Cancel the runs still going, wait for them, and give their tasks back."""
        left = [*self._runs.values(), *self._older]
        try:
            for run in left:
                self._abandon(run)
            await self._runners.close()
        finally:
            unfinished = [*self._unreported, *(run.assignment for run in left)]
            self._unreported.clear()
            self._runs.clear()
            self._older.clear()
            if self._renewals is not None:
                self._renewals.clear()
            give_back_unfinished(self._distributor, unfinished)


def _interrupted(error: BaseException) -> bool:
    """Whether a handler that raised ``error`` was interrupted rather than failed: a
    ``KeyboardInterrupt`` or ``SystemExit``, or the ``CancelledError`` of a cancel of
    the task it runs in (asked for by someone other than the host, which marks its
    own cancels as abandoned). Asked in that task, as the runners finish the run.

    Python 3.10's tasks do not say whether they were cancelled: there a
    ``CancelledError`` is the handler's failure.
    """
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return True
    if not isinstance(error, asyncio.CancelledError):
        return False
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return cancelling is not None and cancelling() > 0


async def run(
    distributor: Distributor,
    handler: Handler,
    *,
    concurrency: int | None = None,
    heartbeat: float | None = 0.5,
    not_retryable: Iterable[type[BaseException]] = (),
    grace: float | None = None,
) -> None:
    """Run ``distributor``'s assignments with ``handler`` until cancelled, or until the
    distributor is closed and drained: ``await AsyncHost(...).run()`` (see
    :class:`AsyncHost` for the arguments and what they mean).

    Raises what ``AsyncHost`` and ``AsyncHost.run`` raise.
    """
    host = AsyncHost(
        distributor,
        handler,
        concurrency=concurrency,
        heartbeat=heartbeat,
        not_retryable=not_retryable,
        grace=grace,
    )
    await host.run()
