"""What a Distributor tells its listener: one typed event per state change.

A host passes ``on_event=listener`` and receives an :class:`Event` for every
change the :class:`~taskdist.Distributor` makes: a task submitted, parked,
dispatched, completed, failed, retried, expired, dead-lettered or cancelled; a
worker added, removed, ejected or made healthier; a breaker tripped. Events are
delivered after the call that caused them has finished changing state, in the
order they happened, so a listener may call back into the distributor (submit a
follow-up task on ``completed``, say).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable

import attrs

from taskdist.task import Reason, TaskState

__all__ = ["Event", "EventKind", "Listener"]


class EventKind(str, enum.Enum):
    """What happened. A ``str`` enum: ``EventKind.DISPATCHED == "dispatched"``."""

    # Hash as the string, so a dict keyed by kinds finds "dispatched" too.
    __hash__ = str.__hash__

    SUBMITTED = "submitted"
    """A task was accepted and queued (``state`` says where it went)."""
    DUPLICATE = "duplicate"
    """A submit named a task id that is live or finished within the dedup window."""
    PARKED = "parked"
    """A task no worker or gate can take now left the queue until something changes."""
    UNPARKED = "unparked"
    """A parked task went back to the queue: something changed that may let it run."""
    DISPATCHED = "dispatched"
    """A task was placed on a worker under a lease (``attempt``, ``worker_id``)."""
    COMPLETED = "completed"
    """A task finished successfully."""
    FAILED = "failed"
    """An attempt failed (``detail``: the error)."""
    THROTTLED = "throttled"
    """A dependency refused an attempt for load (HTTP 429 / 503): no attempt spent;
    the task retries at ``at`` (or at once)."""
    RETRY_SCHEDULED = "retry_scheduled"
    """A failed task waits until ``at`` before it queues again."""
    REROUTED = "rerouted"
    """A routed task moved down its fallback chain to the next pool (``detail``: where)."""
    ASSIGNED = "assigned"
    """The host placed a task on a named worker (``Distributor.assign``); a
    ``dispatched`` event follows."""
    ESCALATED = "escalated"
    """A waiting task was raised in priority or sent to a pool (``detail``: how)."""
    PREEMPT = "preempt"
    """Advice: an urgent task waits for room; ``victims`` are the running tasks it
    could displace (the host decides, with ``Distributor.preempt``)."""
    RESERVED = "reserved"
    """A large task that found no room got worker ``worker_id`` reserved for it, due at
    ``at``; other tasks backfill that worker only if they end by then (see ``Backfill``)."""
    GANG_READY = "gang_ready"
    """Every member of a gang arrived; the task named stands in the queue for all of
    them (``detail``: the gang)."""
    PREEMPTED = "preempted"
    """A leased task was given back for a more urgent one, no attempt spent."""
    REQUEUED = "requeued"
    """A task went back to the queue (retry due, worker removed, put back)."""
    LEASE_EXPIRED = "lease_expired"
    """A lease ran out without an outcome; the attempt counts as failed."""
    DEAD_LETTERED = "dead_lettered"
    """A task went to the dead-letter queue (``reason``)."""
    CANCELLED = "cancelled"
    """The host cancelled a task (``worker_id`` set if it was running)."""
    WORKER_ADDED = "worker_added"
    WORKER_REMOVED = "worker_removed"
    WORKER_HEALTH = "worker_health"
    """A worker's health changed (``detail``: the new health)."""
    WORKER_EJECTED = "worker_ejected"
    """Outlier ejection took a worker out until ``at``."""
    BREAKER_OPENED = "breaker_opened"
    """A worker's circuit breaker opened (its tasks go elsewhere until ``at``; ``None``:
    until the host resets it)."""
    BREAKER_CLOSED = "breaker_closed"
    """A worker's circuit breaker closed again."""
    CLOSED = "closed"
    """The distributor stopped taking new tasks."""


@attrs.frozen
class Event:
    """One state change inside a :class:`~taskdist.Distributor`.

    Fields that do not apply to a kind are ``None``. Building one is O(1).
    """

    kind: EventKind
    time: float
    """Clock time it happened."""
    task_id: Hashable | None = None
    worker_id: Hashable | None = None
    state: TaskState | None = None
    """The task's state after the change."""
    attempt: int | None = None
    """The attempt number the event concerns (1 for the first try)."""
    reason: Reason | None = None
    """Why a task was dead-lettered or cancelled."""
    at: float | None = None
    """A time the event announces: a retry's due time, a lease expiry, an ejection's end."""
    detail: str | None = None
    """Plain words: an error's text, a placement's blocker, a health value."""
    victims: tuple[Hashable, ...] = ()
    """For ``preempt``: the running tasks the waiting one could displace, first the best."""


Listener = Callable[[Event], object]
"""Receives every :class:`Event`; its return value is ignored."""
