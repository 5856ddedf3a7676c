"""The ``Queue`` protocol: the seam between queues and whatever drives them.

:class:`~taskdist.queues.PriorityQueue`, ``DeadlineScheduler`` and
``FairScheduler`` all satisfy it, so a distributor (or a host) can take any of
them, and a user can bring their own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Literal, Protocol, runtime_checkable

import attrs

from taskdist.task import Reason, Task

__all__ = ["Eviction", "Overflow", "Predicate", "Queue"]

Predicate = Callable[[Task], bool]
"""``where=`` filters: ``True`` for a task the caller can take now."""

Overflow = Literal["reject", "drop_lowest"]
"""What a bounded queue does with a push when full: refuse it (``QueueFullError``),
or hand back its least urgent task (possibly the pushed one) as an ``Eviction``."""
OVERFLOW_POLICIES: tuple[Overflow, ...] = ("reject", "drop_lowest")


@attrs.frozen
class Eviction:
    """A task a queue handed back instead of keeping, and why.

    ``push`` returns one when the task it was given, or another it held, did
    not stay: evicted by ``overflow="drop_lowest"``, or refused by a deadline
    policy. Nothing is dropped silently: the caller decides where it goes (a
    dead-letter queue, an error to the user).
    """

    task: Task
    reason: Reason


@runtime_checkable
class Queue(Protocol):
    """What a distributor needs of a queue.

    - ``push(task, enqueued_at=None)`` adds a task. ``enqueued_at`` (default:
      now) lets a requeued task keep its original age. Returns an
      :class:`Eviction` when a task had to leave because of this push, else
      ``None``.
    - ``pop(where=None)`` removes and returns the most urgent task (that
      satisfies ``where``), or ``None``. Tasks that fail ``where`` stay in
      place, so a task no free worker can take never blocks the others.
    - ``peek(where=None)`` is ``pop`` without the removal.
    - ``remove(task_id)`` takes a task out (cancel); unknown ids raise
      :class:`~taskdist.errors.UnknownTaskError`.
    - ``expire()`` removes and returns tasks whose time ran out;
      ``next_wakeup()`` says when the next one will (``None``: never).
    - ``release(task)`` tells the queue a task it handed out has finished
      (completed, failed or requeued), for queues that track running work
      (quotas); others ignore it.
    - ``len(q)`` counts held tasks (expired ones until ``expire()`` returns
      them); ``task_id in q`` tests membership by id.

    Optional, not part of the protocol (a composition uses it when present,
    ``callable(getattr(queue, "unpop", None))``):

    - ``unpop(task)`` puts back the task the latest ``pop`` returned, exactly
      as if it had never been popped (same place, age and TTL; for a queue
      with quotas or fair shares, nothing charged). It is valid only while
      nothing else has changed the queue since that pop; anything else
      raises :class:`~taskdist.errors.TaskStateError` and changes nothing.
      ``PriorityQueue``, ``DeadlineScheduler`` and ``FairScheduler`` have it.
    - ``check_push(task)`` raises what ``push(task)`` would raise to refuse the
      task now (a full queue under ``overflow="reject"``, a tenant's quota, an
      unknown tenant, a duplicate id, ...) and changes nothing, counters
      included. A distributor asks it for a task it keeps out of the queue for
      now (a gang member waiting for the rest of its gang), so that the task is
      refused as it would be alone. Whether a task would be admitted on time
      (``DeadlineInfeasibleError``) is the one refusal it may leave to
      ``push``. ``PriorityQueue``, ``DeadlineScheduler`` and
      ``FairScheduler`` have it.

    - ``rank(task, enqueued_at)`` is a sort key that orders ``task`` as ``pop``
      would, had it been pushed with ``enqueued_at``: of two tasks of the same
      tenant and priority, the one with the smaller key pops first (equal keys
      in push order). ``None`` when the queue cannot tell without holding the
      task. It changes nothing. A distributor uses it to keep tasks that wait
      for a gate out of the queue, in order, and to queue only the first of
      each kind when the gate opens (a ``PriorityQueue``'s or a
      ``FairScheduler``'s; a ``DeadlineScheduler`` refuses a task whose
      deadline has passed, so it holds every waiting task instead).
      ``PriorityQueue``, ``DeadlineScheduler`` and ``FairScheduler`` have it
      (a ``FairScheduler`` answers ``None`` with tenant queues of an
      ``inner=`` factory, a ``tenant_of`` or ``deadline_aware``).

    - ``expire_with_reasons()`` is ``expire()``, each task handed back as an
      :class:`Eviction` whose reason says which limit it hit first:
      ``Reason.TTL_EXPIRED`` or ``Reason.DEADLINE_MISSED``. A distributor
      dead-letters an expired task with that reason; without the method it
      guesses from the task (a deadline not after now: missed; otherwise the TTL).
      ``PriorityQueue``, ``DeadlineScheduler`` and ``FairScheduler`` have it.

    ``taskdist.testing`` checks all of this on any queue (see
    ``check_queue`` and ``queue_machine``).
    """

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Eviction | None: ...

    def pop(self, where: Predicate | None = None) -> Task | None: ...

    def peek(self, where: Predicate | None = None) -> Task | None: ...

    def remove(self, task_id: Hashable) -> Task: ...

    def expire(self) -> list[Task]: ...

    def next_wakeup(self) -> float | None: ...

    def release(self, task: Task) -> None: ...

    def __len__(self) -> int: ...

    def __contains__(self, task_id: object) -> bool: ...


def expire_with_reasons(queue: Queue, now: float) -> list[Eviction]:
    """``queue.expire()``, each task with the reason it expired, for a scheduler or
    distributor holding ``queue``: the queue's own ``expire_with_reasons()`` when it
    has one, else a guess from the task (its deadline not after ``now``:
    ``Reason.DEADLINE_MISSED``; otherwise ``Reason.TTL_EXPIRED``). O(what the
    queue's ``expire`` costs).
    """
    with_reasons: Callable[[], list[Eviction]] | None = getattr(queue, "expire_with_reasons", None)
    if with_reasons is not None:
        return with_reasons()
    return [
        Eviction(
            task,
            Reason.DEADLINE_MISSED
            if task.deadline is not None and task.deadline <= now
            else Reason.TTL_EXPIRED,
        )
        for task in queue.expire()
    ]
