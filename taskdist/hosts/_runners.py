"""Runners: a pool of long-lived asyncio tasks that run queued coroutines eagerly.

Starting an asyncio task per job costs a task, a scheduled step and a trip
through the event loop before the job's first line runs; most jobs of a
busy host (a cache hit, a no-op, a quick check) then finish in that first
step. So the pool runs each job's first step at once, inside one of its
runner tasks, as Python 3.12's eager task factory does: a job that finishes
there costs a context and a call. A job that awaits keeps its runner (so
``asyncio.current_task()``, ``asyncio.timeout`` and cancellation all see
one task per running job) and hands the queue to another runner, woken from
the idle ones or created: never more runners than jobs running at once.

Each job runs in its own copy of the context, as it would in its own task,
so a context variable one job sets is not seen by the next.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Hashable
from typing import Any, Final, Generic, TypeVar

J = TypeVar("J", bound=Hashable)


class Withdrawn:
    """The type of :data:`WITHDRAWN`."""


WITHDRAWN: Final = Withdrawn()
"""What ``start`` returns for a job that is not to run after all (not ``None``:
a handler may return ``None``, and that fails, as ``await None`` does)."""

Start = Callable[[J], "Awaitable[object] | Withdrawn"]
"""Makes a job's awaitable, or says the job was withdrawn."""
Finish = Callable[[J, "BaseException | None"], None]
"""Hears how a started job ended: ``None`` (it returned) or what it raised, of any
class. A ``KeyboardInterrupt`` or ``SystemExit`` then goes on out of the runner's
task, as it would out of the job's own task: it stops the event loop."""


class Runners(Generic[J]):
    """Runs queued jobs eagerly on at most as many tasks as run at once.

    ``push`` is O(1) (plus waking one runner when none is awake); a job that
    finishes in its first step costs a context copy, its coroutine and
    ``finish``; one that awaits costs one extra generator step per await.
    ``cancel`` is O(1).
    """

    __slots__ = (
        "_closing",
        "_consumer",
        "_finish",
        "_holding",
        "_idle",
        "_loop",
        "_pending",
        "_start",
        "_tasks",
    )

    def __init__(self, start: Start[J], finish: Finish[J]) -> None:
        self._start = start
        self._finish = finish
        self._pending: deque[J] = deque()
        # The runner that will next look at _pending (woken or created, not yet
        # run); None when nobody needs to: _pending is empty.
        self._consumer: asyncio.Task[None] | None = None
        self._idle: list[tuple[asyncio.Task[None], asyncio.Future[None]]] = []
        self._holding: dict[J, asyncio.Task[None]] = {}  # jobs that awaited -> runner
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    @property
    def runners(self) -> int:
        """Runner tasks alive (idle or not). O(1)."""
        return len(self._tasks)

    def push(self, job: J) -> None:
        """Queue ``job``: a runner starts it once the caller next awaits. O(1)."""
        self._pending.append(job)
        if self._consumer is None:
            self._rouse()

    def cancel(self, job: J) -> bool:
        """Cancel the runner holding ``job`` if the job is awaiting something (it will
        end, ``finish`` hears how); ``False`` if it is not (still queued, or done). O(1)."""
        runner = self._holding.get(job)
        if runner is None:
            return False
        runner.cancel()
        return True

    async def close(self) -> None:
        """Cancel every runner and wait until all have ended; drop the queued jobs.

        A job still running is cancelled with its runner (``finish`` hears it).
        The pool takes no more jobs after: make a new one.
        """
        self._closing = True
        self._pending.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _rouse(self) -> None:
        """Make one runner look at the queue: the last idle one, or a new one."""
        idle = self._idle
        while idle:
            runner, wake = idle.pop()
            if not wake.done():  # a runner cancelled while idle has gone
                wake.set_result(None)
                self._consumer = runner
                return
        loop = self._loop = asyncio.get_running_loop()
        runner = loop.create_task(self._run())
        runner.add_done_callback(self._gone)
        self._tasks.add(runner)
        self._consumer = runner

    def _gone(self, runner: asyncio.Task[None]) -> None:
        """A runner ended (closed, or cancelled from outside, even before it ran):
        if the queue was its to take, another takes it."""
        self._tasks.discard(runner)
        if not runner.cancelled():
            # A runner ends with an error only as a job's KeyboardInterrupt or
            # SystemExit, which has stopped the event loop already: it is seen.
            runner.exception()
        if self._consumer is runner:
            self._consumer = None
            if self._pending and not self._closing:
                self._rouse()

    async def _run(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        pending = self._pending
        start = self._start
        finish = self._finish
        uncancel = getattr(me, "uncancel", None)  # Python 3.11+: cancellations are counted
        error: BaseException | None
        while not self._closing:
            if not pending:
                if self._consumer is me:
                    self._consumer = None
                assert self._loop is not None
                wake = self._loop.create_future()
                self._idle.append((me, wake))
                await wake
                continue
            job = pending.popleft()
            context = contextvars.copy_context()
            try:
                awaitable = context.run(start, job)
            except BaseException as raised:
                # Raised before there was anything to await (StopIteration too:
                # here it is the job's error, not a coroutine returning).
                error = raised
            else:
                coroutine: Coroutine[Any, Any, object]
                if type(awaitable) is types.CoroutineType:
                    coroutine = awaitable
                elif isinstance(awaitable, Withdrawn):
                    continue
                else:  # a future, a generator-based coroutine, or not awaitable at all
                    coroutine = _awaiting(awaitable)
                try:
                    step = context.run(coroutine.send, None)
                except StopIteration:
                    error = None  # finished in its first step
                except BaseException as raised:
                    error = raised
                else:
                    error = await self._hold(me, job, context, coroutine, step)
            finish(job, error)
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise error  # as from any task: it stops the event loop
            if uncancel is not None:
                # A cancellation meant for that job (or that it swallowed) must
                # not count against the next job on this runner.
                while uncancel():
                    pass

    async def _hold(
        self,
        me: asyncio.Task[None],
        job: J,
        context: contextvars.Context,
        coroutine: Coroutine[Any, Any, object],
        step: object,
    ) -> BaseException | None:
        """Run a job that awaited on to its end, on this runner; what it raised."""
        if self._consumer is me:  # this runner now waits: another takes the queue
            self._consumer = None
            if self._pending:
                self._rouse()
        self._holding[job] = me
        try:
            return await _resume(context, coroutine, step)
        finally:
            del self._holding[job]


async def _awaiting(awaitable: Awaitable[object]) -> object:
    return await awaitable


@types.coroutine
def _resume(
    context: contextvars.Context, coroutine: Coroutine[Any, Any, object], step: object
) -> Generator[object, object, BaseException | None]:
    """Go on with a started ``coroutine`` whose last step yielded ``step``, each step
    inside ``context``, as ``await`` would; returns what it raised, or ``None`` once
    it returned.

    What the task running this sends or throws in (a future's result, a
    cancellation) goes on to the coroutine. What the coroutine raises, of any
    class, is its outcome and is returned; only the closing of this generator
    itself (``GeneratorExit`` thrown in) goes on out, after closing the coroutine.
    """
    run = context.run
    while True:
        try:
            sent = yield step
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as thrown:  # passed on, as await does
            try:
                step = run(coroutine.throw, thrown)
            except StopIteration:
                return None
            except BaseException as raised:
                return raised
        else:
            try:
                step = run(coroutine.send, sent)
            except StopIteration:
                return None
            except BaseException as raised:
                return raised
