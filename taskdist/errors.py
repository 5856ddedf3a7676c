"""The exceptions taskdist raises.

Every error is a :class:`TaskdistError`, so ``except TaskdistError`` catches
anything the library refuses. Each one is also the builtin exception it is a
kind of (``ValueError``, ``TypeError``, ``KeyError``, ``LookupError``), so code
written against the builtins keeps working.

A method that raises leaves its object exactly as it was: validation happens
before any state changes.

The hierarchy::

    TaskdistError
    ├── InvalidArgumentError (ValueError)   a value outside what is allowed
    │   ├── ClockError                      time moving backwards, NaN, inf
    │   ├── DeadlineError                   a deadline NaN, inf or already past
    │   ├── UnknownPolicyError              a policy name that is not one of the choices
    │   ├── UnsatisfiableDemandError        a demand no gate, pool or worker could ever grant
    │   └── SnapshotError                   a snapshot of an unknown version, or corrupted
    ├── InvalidTypeError (TypeError)        a value of the wrong type, an unhashable id
    ├── DuplicateError (ValueError)
    │   ├── DuplicateTaskError              a task id already live in the object
    │   └── DuplicateWorkerError            a worker id already registered
    ├── UnknownError (KeyError)
    │   ├── UnknownTaskError                no live task with that id
    │   ├── UnknownWorkerError              no worker with that id
    │   ├── UnknownTenantError              no tenant with that name
    │   └── UnknownPlanError                no quota plan with that name
    ├── CapacityError                       a bounded thing is full
    │   ├── QueueFullError                  a bounded queue refused a push
    │   ├── QuotaExceededError              a tenant quota refused a push
    │   └── WorkerFullError                 a task's demand does not fit a worker's free capacity
    ├── DeadlineInfeasibleError             a task cannot be admitted on time
    ├── OverReleaseError (ValueError)       more released than was acquired
    ├── TaskStateError (RuntimeError)       the task is not in a state that allows the call
    ├── ClosedError (RuntimeError)          the object was closed and takes no new work
    ├── ReentrancyError (RuntimeError)      a callback called back into the object running it
    ├── WorkerUnavailableError              a worker is down or ejected and takes no tasks
    └── CircuitOpenError                    a circuit breaker refused a call
"""

from __future__ import annotations

__all__ = [
    "CapacityError",
    "CircuitOpenError",
    "ClockError",
    "ClosedError",
    "DeadlineError",
    "DeadlineInfeasibleError",
    "DuplicateError",
    "DuplicateTaskError",
    "DuplicateWorkerError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "OverReleaseError",
    "QueueFullError",
    "QuotaExceededError",
    "ReentrancyError",
    "SnapshotError",
    "TaskStateError",
    "TaskdistError",
    "UnknownError",
    "UnknownPlanError",
    "UnknownPolicyError",
    "UnknownTaskError",
    "UnknownTenantError",
    "UnknownWorkerError",
    "UnsatisfiableDemandError",
    "WorkerFullError",
    "WorkerUnavailableError",
]


class TaskdistError(Exception):
    """Base class of every error taskdist raises."""


class InvalidArgumentError(TaskdistError, ValueError):
    """A value is outside what is allowed (NaN, infinite, negative, zero, empty...)."""


class ClockError(InvalidArgumentError):
    """A clock was asked to move backwards, or to a NaN or infinite time, or a host's
    clock read a NaN or infinite time."""


class DeadlineError(InvalidArgumentError):
    """A deadline is NaN, infinite, or already in the past where that is refused."""


class UnknownPolicyError(InvalidArgumentError):
    """A policy name (overflow, on_miss, jitter, ...) is not one of the choices."""


class UnsatisfiableDemandError(InvalidArgumentError):
    """A task demands more than a gate, pool or worker could ever grant (above a
    limiter's burst, a pool's size, every worker's capacity): waiting would not help."""


class SnapshotError(InvalidArgumentError):
    """A snapshot cannot be restored (an unknown format version, a missing field, a wrong
    type, references that disagree), or ``snapshot()`` meets a part it cannot carry."""


class InvalidTypeError(TaskdistError, TypeError):
    """A value has the wrong type: an unhashable id or key, a non-Task pushed, ..."""


class DuplicateError(TaskdistError, ValueError):
    """Something with this id is already there."""


class DuplicateTaskError(DuplicateError):
    """A task with this id is already live in the queue, scheduler or distributor."""


class DuplicateWorkerError(DuplicateError):
    """A worker with this id is already registered."""


class UnknownError(TaskdistError, KeyError):
    """Nothing with this id is there.

    ``KeyError`` quotes its message when printed; this class prints it as
    written.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class UnknownTaskError(UnknownError):
    """No live task has this id."""


class UnknownWorkerError(UnknownError):
    """No worker has this id."""


class UnknownTenantError(UnknownError):
    """No tenant has this name."""


class UnknownPlanError(UnknownError):
    """No quota plan has this name."""


class CapacityError(TaskdistError):
    """A bounded container or quota is full; the call changed nothing."""


class QueueFullError(CapacityError):
    """A bounded queue with ``overflow="reject"`` is at ``maxsize``."""


class QuotaExceededError(CapacityError):
    """A tenant's quota refuses another task (its ``max_queued``), or tasks to start now
    (its ``max_concurrent`` or rate quota, when a ``FairScheduler`` takes tasks along)."""

    ready_at: float | None
    """When the quota that refused will have room, if nothing else takes it, when time
    alone brings it (a rate quota refilling); ``None`` otherwise (a release brings it)."""

    def __init__(self, *args: object, ready_at: float | None = None) -> None:
        super().__init__(*args)
        self.ready_at = ready_at


class WorkerFullError(CapacityError):
    """A task's demand does not fit a worker's free capacity in some resource."""


class WorkerUnavailableError(TaskdistError):
    """A worker is ``UNAVAILABLE`` (marked down or ejected as an outlier) and takes no tasks."""


class DeadlineInfeasibleError(TaskdistError):
    """A task cannot be admitted on time (it would miss its deadline, or make a task
    already admitted miss its own) and the policy is to refuse it."""


class OverReleaseError(TaskdistError, ValueError):
    """More was released than had been acquired."""


class CircuitOpenError(TaskdistError):
    """A circuit breaker is open (or its half-open probes are taken): the call was not made."""


class TaskStateError(TaskdistError, RuntimeError):
    """The task is known but not in a state that allows the call (completing a task that
    is not leased, heartbeating a finished one, cancelling a completed one)."""


class ClosedError(TaskdistError, RuntimeError):
    """The object was closed and takes no new work (a submit after ``close()``)."""


class ReentrancyError(TaskdistError, RuntimeError):
    """A callback (a ``where=`` predicate, a selector, a worker filter) called back into
    the object that is running it; the inner call was refused and changed nothing."""
