"""How a host turns the outcome of one run into ``complete`` or ``fail``.

Shared by the hosts so that they agree: a run that returned completes its
attempt; one that raised fails it, retryably unless its exception is one of
the host's ``not_retryable`` classes (the retry policy's own predicate still
applies); a report the distributor no longer wants (the task was cancelled,
or finished by an earlier report) is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from taskdist.dispatch import Distributor
from taskdist.errors import InvalidTypeError, TaskStateError, UnknownTaskError
from taskdist.hosts.threaded import ThreadSafeDistributor
from taskdist.task import Assignment, TaskState

ExceptionClasses = tuple[type[BaseException], ...]


def check_not_retryable(classes: Iterable[type[BaseException]]) -> ExceptionClasses:
    """``not_retryable`` as a tuple of exception classes, or InvalidTypeError."""
    try:
        found: tuple[object, ...] = (classes,) if isinstance(classes, type) else tuple(classes)
    except TypeError:
        raise InvalidTypeError(
            f"not_retryable must be exception classes, got {classes!r}"
        ) from None
    checked = []
    for cls in found:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise InvalidTypeError(f"not_retryable must be exception classes, got {cls!r}")
        checked.append(cls)
    return tuple(checked)


def report(
    distributor: Distributor | ThreadSafeDistributor,
    assignment: Assignment,
    error: BaseException | None,
    duration: float,
    not_retryable: ExceptionClasses,
) -> TaskState | None:
    """Report one run's outcome for its lease; ``None`` if the report was stale.

    O(the distributor's complete / fail).
    """
    task_id = assignment.task.id
    duration = max(duration, 0.0)
    try:
        if error is None:
            return distributor.complete(
                task_id,
                duration=duration,
                attempt=assignment.attempt,
                lease_id=assignment.lease_id,
            )
        return distributor.fail(
            task_id,
            error=error,
            retryable=not isinstance(error, not_retryable),
            duration=duration,
            attempt=assignment.attempt,
            lease_id=assignment.lease_id,
        )
    except (TaskStateError, UnknownTaskError):
        return None  # cancelled meanwhile, or a late report after another one won
