"""ThreadSafeDistributor: one Distributor shared by threads, behind one lock."""

from __future__ import annotations

import random
import threading
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

from taskdist._validate import check_optional_number
from taskdist.balancing import Balancer
from taskdist.batching import BatchOptimizer
from taskdist.clock import Clock
from taskdist.dispatch import (
    Backfill,
    DeadLetterQueue,
    Distributor,
    DistributorStats,
    Escalation,
    Gangs,
    IntakePolicy,
    Listener,
    Pool,
    Preemption,
    RedriveReport,
    Reservation,
    RetryBudget,
    Route,
    SubmitResult,
)
from taskdist.dispatch.dead_letter import Selector
from taskdist.dispatch.distributor import BreakerFactory
from taskdist.errors import InvalidTypeError
from taskdist.queues import Queue
from taskdist.resilience import CircuitBreaker, Gate, RetryPolicy
from taskdist.task import Assignment, Task, TaskState, Worker
from taskdist.workers import CapacityTracker, Health, WorkerState

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ThreadSafeDistributor"]


class ThreadSafeDistributor:
    """A :class:`~taskdist.Distributor` that threads may share: every call holds one lock.

    It has the Distributor's whole API (every method and property, with the
    same arguments, results and errors), each call made under one
    re-entrant lock, so an ``on_event`` listener may call back. Worker
    threads wait for something to do with :meth:`wait_for_work`::

        while not shared.closed or len(shared):
            for assignment in shared.dispatch(limit=1):
                run(assignment)            # then complete() or fail()
            shared.wait_for_work(timeout=1.0)

    Calls that can make work dispatchable (``submit``, ``complete``,
    ``fail``, ``requeue``, ``cancel``, ``tick``, ``close``, ``redrive``,
    ``resume``, the worker changes and the manual overrides) wake the
    waiting threads, even when they raise: an ``on_event`` listener raises
    once the call's changes are made, and they stand.

    The objects the properties return (``queue``, ``tracker``, ``dlq``,
    ...) are the distributor's own and are *not* locked: read them inside
    ``with shared.lock:``. So is :attr:`distributor`, for a series of calls
    that must not interleave with other threads'.

    Each call costs the Distributor's, plus taking the lock (about 0.1 µs
    uncontended) and, for the calls that wake waiters, an O(waiters)
    notify.

    >>> from taskdist import Distributor, ManualClock, Task, Worker
    >>> shared = ThreadSafeDistributor(Distributor(ManualClock()))
    >>> _ = shared.add_worker(Worker("w", capacity=1))
    >>> shared.submit(Task("t")).accepted
    True
    >>> [a.task.id for a in shared.dispatch()]
    ['t']
    """

    __slots__ = ("_changes", "_changing", "_condition", "_distributor", "_lock", "_seen")

    def __init__(self, distributor: Distributor) -> None:
        """
        Raises:
            InvalidTypeError: ``distributor`` is not a Distributor.
        """
        if not isinstance(distributor, Distributor):
            raise InvalidTypeError(
                f"ThreadSafeDistributor wraps a Distributor, got {distributor!r}"
            )
        self._distributor = distributor
        self._lock = threading.RLock()
        self._condition = threading.Condition(self._lock)
        # Counts the calls that may have made work; each thread remembers the
        # count its last dispatch saw, so a change between its dispatch and its
        # wait is never missed.
        self._changes = 0
        self._seen = threading.local()
        self._changing = _Changing(self)

    # -- the lock and the waiting ---------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """The lock every call holds; hold it to read the distributor's parts."""
        return self._lock

    @property
    def distributor(self) -> Distributor:
        """The wrapped distributor: call it only while holding :attr:`lock`."""
        return self._distributor

    def wake(self) -> None:
        """Wake every thread in :meth:`wait_for_work` (to tell them to look again, or to
        stop). O(waiters)."""
        with self._condition:
            self._changed()

    def _changed(self) -> None:
        # Called whether the call returned or raised: what raised may have changed
        # things first (a listener raises after the call's changes), and a needless
        # wake costs a waiting thread one look.
        self._changes += 1
        self._condition.notify_all()

    def wait_for_work(self, timeout: float | None = None) -> bool:
        """Block until there may be work to dispatch; say whether there may be.

        Returns ``True`` at once if a call that can make work came since this
        thread's last :meth:`dispatch`; else waits for such a call, or until the
        distributor's ``next_wakeup()`` (read as seconds from now: right for a
        ``MonotonicClock``; with a ``ManualClock``, give a ``timeout`` and move
        the clock yourself), returning ``True`` then, or until ``timeout``
        seconds pass, returning ``False``. O(1) plus ``next_wakeup``.

        Raises:
            InvalidTypeError / InvalidArgumentError: ``timeout`` not a number, or
                negative, NaN or infinite (``None`` waits without a limit).
        """
        timeout = check_optional_number(timeout, "timeout", minimum=0.0)
        with self._condition:
            seen = getattr(self._seen, "changes", None)
            if seen is not None and seen != self._changes:
                return True
            changes = self._changes
            distributor = self._distributor
            wake = distributor.next_wakeup()
            wait = timeout
            if wake is not None:
                until = wake - distributor.clock.now()
                if until <= 0:
                    return True
                if wait is None or until < wait:
                    wait = until
                    timeout = None  # the timer ends the wait, not the timeout
            if wait is not None and wait > threading.TIMEOUT_MAX:
                wait = threading.TIMEOUT_MAX  # longer, and the wait would not even start
            self._condition.wait(wait)
            return self._changes != changes or timeout is None

    # -- properties --------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock everything here reads."""
        return self._distributor.clock

    @property
    def queue(self) -> Queue:
        """The queue (read it under :attr:`lock`)."""
        return self._distributor.queue

    @property
    def tracker(self) -> CapacityTracker:
        """The capacity tracker (read it under :attr:`lock`)."""
        return self._distributor.tracker

    @property
    def balancer(self) -> Balancer:
        """The balancer that places tasks."""
        return self._distributor.balancer

    @property
    def dlq(self) -> DeadLetterQueue:
        """The dead-letter queue (read it under :attr:`lock`)."""
        return self._distributor.dlq

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        with self._lock:
            return self._distributor.closed

    # -- calls that may make work -------------------------------------------------------

    def add_worker(self, worker: Worker) -> WorkerState:
        """``Distributor.add_worker``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.add_worker(worker)

    def remove_worker(self, worker_id: Hashable) -> list[Task]:
        """``Distributor.remove_worker``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.remove_worker(worker_id)

    def set_health(self, worker_id: Hashable, health: Health | str) -> WorkerState:
        """``Distributor.set_health``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.set_health(worker_id, health)

    def update_worker(self, worker_id: Hashable, **changes: Any) -> WorkerState:
        """``Distributor.update_worker``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.update_worker(worker_id, **changes)

    def submit(self, task: Task) -> SubmitResult:
        """``Distributor.submit``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.submit(task)

    def close(self) -> None:
        """``Distributor.close``, locked; wakes waiting threads (so they can see it)."""
        with self._changing:
            self._distributor.close()

    def complete(
        self,
        task_id: Hashable,
        *,
        duration: float | None = None,
        attempt: int | None = None,
        lease_id: int | None = None,
    ) -> TaskState:
        """``Distributor.complete``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.complete(
                task_id, duration=duration, attempt=attempt, lease_id=lease_id
            )

    def fail(
        self,
        task_id: Hashable,
        *,
        error: BaseException | str | None = None,
        retryable: bool = True,
        duration: float | None = None,
        attempt: int | None = None,
        throttled: bool = False,
        retry_after: float | None = None,
        lease_id: int | None = None,
    ) -> TaskState:
        """``Distributor.fail``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.fail(
                task_id,
                error=error,
                retryable=retryable,
                duration=duration,
                attempt=attempt,
                throttled=throttled,
                retry_after=retry_after,
                lease_id=lease_id,
            )

    def pause(
        self, *, tenant: Hashable = None, key: Hashable = None, pool: Pool | None = None
    ) -> None:
        """``Distributor.pause``, locked."""
        with self._lock:
            self._distributor.pause(tenant=tenant, key=key, pool=pool)

    def resume(
        self, *, tenant: Hashable = None, key: Hashable = None, pool: Pool | None = None
    ) -> None:
        """``Distributor.resume``, locked; wakes waiting threads."""
        with self._changing:
            self._distributor.resume(tenant=tenant, key=key, pool=pool)

    def requeue(
        self, task_id: Hashable, *, attempt: int | None = None, lease_id: int | None = None
    ) -> Task:
        """``Distributor.requeue``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.requeue(task_id, attempt=attempt, lease_id=lease_id)

    def pin(self, task_id: Hashable, worker_id: Hashable | None) -> None:
        """``Distributor.pin``, locked; wakes waiting threads."""
        with self._changing:
            self._distributor.pin(task_id, worker_id)

    def assign(self, task_id: Hashable, worker_id: Hashable, *, force: bool = False) -> Assignment:
        """``Distributor.assign``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.assign(task_id, worker_id, force=force)

    def reprioritize(self, task_id: Hashable, priority: int) -> Task:
        """``Distributor.reprioritize``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.reprioritize(task_id, priority)

    def preempt(self, task_id: Hashable) -> Task:
        """``Distributor.preempt``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.preempt(task_id)

    def redrive(self, ids_or_predicate: Selector) -> RedriveReport:
        """``Distributor.redrive``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.redrive(ids_or_predicate)

    def cancel(self, task_id: Hashable) -> Task:
        """``Distributor.cancel``, locked; wakes waiting threads."""
        with self._changing:
            return self._distributor.cancel(task_id)

    def tick(self) -> None:
        """``Distributor.tick``, locked; wakes waiting threads."""
        with self._changing:
            self._distributor.tick()

    # -- the other calls ------------------------------------------------------------------

    def dispatch(self, limit: int | None = None) -> list[Assignment]:
        """``Distributor.dispatch``, locked (and remembered for :meth:`wait_for_work`)."""
        with self._lock:
            self._seen.changes = self._changes
            return self._distributor.dispatch(limit)

    def heartbeat(
        self, task_id: Hashable, extend: float | None = None, *, lease_id: int | None = None
    ) -> float | None:
        """``Distributor.heartbeat``, locked."""
        with self._lock:
            return self._distributor.heartbeat(task_id, extend, lease_id=lease_id)

    def next_wakeup(self) -> float | None:
        """``Distributor.next_wakeup``, locked."""
        with self._lock:
            return self._distributor.next_wakeup()

    def add_listener(self, listener: Listener) -> None:
        """``Distributor.add_listener``, locked (the listener runs under the lock)."""
        with self._lock:
            self._distributor.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        """``Distributor.remove_listener``, locked."""
        with self._lock:
            self._distributor.remove_listener(listener)

    def breaker(self, worker_id: Hashable) -> CircuitBreaker | None:
        """``Distributor.breaker``, locked."""
        with self._lock:
            return self._distributor.breaker(worker_id)

    def state_of(self, task_id: Hashable) -> TaskState:
        """``Distributor.state_of``, locked."""
        with self._lock:
            return self._distributor.state_of(task_id)

    def assignment(self, task_id: Hashable) -> Assignment:
        """``Distributor.assignment``, locked."""
        with self._lock:
            return self._distributor.assignment(task_id)

    def leases(self) -> list[Assignment]:
        """``Distributor.leases``, locked."""
        with self._lock:
            return self._distributor.leases()

    def explain(self, task_id: Hashable) -> str:
        """``Distributor.explain``, locked."""
        with self._lock:
            return self._distributor.explain(task_id)

    def stats(self) -> DistributorStats:
        """``Distributor.stats``, locked."""
        with self._lock:
            return self._distributor.stats()

    def snapshot(self) -> dict[str, Any]:
        """``Distributor.snapshot``, locked: a consistent picture while threads work."""
        with self._lock:
            return self._distributor.snapshot()

    @classmethod
    def restore(
        cls,
        snapshot: object,
        clock: Clock,
        *,
        queue: Queue | None = None,
        tracker: CapacityTracker | None = None,
        balancer: Balancer | None = None,
        breaker: BreakerFactory | None = None,
        retry: RetryPolicy | None = None,
        dlq: DeadLetterQueue | None = None,
        gates: Gate | Iterable[Gate] = (),
        routes: Iterable[Route] | None = None,
        escalation: Escalation | None = None,
        preemption: Preemption | None = None,
        gangs: Gangs | None = None,
        reservations: Reservation | Iterable[Reservation] = (),
        backfill: Backfill | None = None,
        batcher: BatchOptimizer | None = None,
        intake: Iterable[IntakePolicy] = (),
        retry_budget: RetryBudget | None = None,
        rng: random.Random | None = None,
        on_event: Listener | None = None,
    ) -> Self:
        """``Distributor.restore``, wrapped for threads."""
        return cls(
            Distributor.restore(
                snapshot,
                clock,
                queue=queue,
                tracker=tracker,
                balancer=balancer,
                breaker=breaker,
                retry=retry,
                dlq=dlq,
                gates=gates,
                routes=routes,
                escalation=escalation,
                preemption=preemption,
                gangs=gangs,
                reservations=reservations,
                backfill=backfill,
                batcher=batcher,
                intake=intake,
                retry_budget=retry_budget,
                rng=rng,
                on_event=on_event,
            )
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._distributor)

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            return task_id in self._distributor

    def __repr__(self) -> str:
        with self._lock:
            return f"ThreadSafeDistributor({self._distributor!r})"


class _Changing:
    """``with`` it around a call that may make work: the call holds the lock, and the
    waiting threads are woken as it ends, whether it returned or raised (a listener
    raises once the call's changes are made). O(waiters)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: ThreadSafeDistributor) -> None:
        self._owner = owner

    def __enter__(self) -> None:
        self._owner._lock.acquire()

    def __exit__(self, *raised: object) -> None:
        owner = self._owner
        try:
            owner._changed()
        finally:
            owner._lock.release()
