"""Snapshots of a Distributor: plain data, cheap to take, safe to keep."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import attrs

from taskdist._snapshot import Fields, encode_key
from taskdist.metrics import Percentiles
from taskdist.resilience.breaker import CircuitState
from taskdist.task import Reason, TaskState
from taskdist.workers.health import Health

__all__ = ["AttemptRecord", "DistributorStats", "TenantCounts", "WorkerCounts"]


@attrs.frozen
class AttemptRecord:
    """One try of a task: where and when it ran and how it ended.

    The dead-letter queue keeps a task's records as its ``history``.
    """

    attempt: int
    """1 for the first try."""
    worker_id: Hashable
    started_at: float
    ended_at: float
    outcome: str
    """``"failed"``, ``"lease_expired"``, ``"requeued"`` (its worker left) or ``"preempted"``."""
    error: str | None = None
    """The error as ``"TypeName: message"``, if one was reported."""

    def to_data(self) -> dict[str, Any]:
        """The record as plain data, for snapshots. O(1).

        Raises:
            SnapshotError: a worker id a snapshot cannot carry.
        """
        return {
            "attempt": self.attempt,
            "worker_id": encode_key(self.worker_id, "a worker id"),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "error": self.error,
        }

    @classmethod
    def from_data(cls, data: object, where: str = "record") -> AttemptRecord:
        """The record :meth:`to_data` wrote. O(1).

        Raises:
            SnapshotError: a field missing, unknown or of the wrong type.
        """
        fields = Fields(data, where)
        record = cls(
            fields.integer("attempt", minimum=1),
            fields.key("worker_id"),
            fields.number("started_at"),
            fields.number("ended_at"),
            fields.text("outcome"),
            fields.opt_text("error"),
        )
        fields.done()
        return record


@attrs.frozen
class TenantCounts:
    """One tenant's tasks in a :class:`DistributorStats` (counts since construction)."""

    tenant: Hashable
    submitted: int
    live: int
    """Submitted and not yet completed, dead-lettered or cancelled."""
    completed: int
    dead_lettered: int
    cancelled: int
    mean_wait: float
    """Mean seconds from (re)queueing to dispatch over its dispatches (NaN before the first)."""


@attrs.frozen
class WorkerCounts:
    """One worker in a :class:`DistributorStats`."""

    worker_id: Hashable
    in_flight: int
    load_ratio: float
    health: Health
    breaker: CircuitState | None
    """Its circuit breaker's state as ``CircuitBreaker.peek_state()`` reads it (an
    elapsed OPEN reads HALF_OPEN, and is not moved), or ``None`` without breakers."""
    completed: int
    failed: int
    """Attempts that failed or whose lease expired on it."""
    latency: float | None
    """EWMA of reported durations (seconds)."""


@attrs.frozen
class DistributorStats:
    """What a :class:`~taskdist.Distributor` holds and has done, at ``time``.

    Every task ever submitted is counted in exactly one state of ``by_state``:
    ``submitted == sum(by_state.values())``.
    """

    time: float
    by_state: dict[TaskState, int]
    """Tasks in each state now (final states: since construction)."""
    submitted: int
    """Tasks accepted (duplicates excluded)."""
    duplicates: int
    dispatched: int
    """Assignments made (retries and requeues dispatch again)."""
    failed: int
    """Attempts reported failed."""
    lease_expiries: int
    retries: int
    """Retries scheduled."""
    dead_by_reason: dict[Reason, int]
    wait: Percentiles
    """Seconds from (re)queueing to dispatch, over recent dispatches."""
    end_to_end: Percentiles
    """Seconds from submit to completion, over recent completions."""
    oldest_waiting_age: float
    """Seconds the longest-waiting live task (queued, parked or retrying) has waited."""
    utilization: float
    load_variance: float
    """Coefficient of variation of the workers' load ratios."""
    completion_rate: float
    """Completed over completed + dead-lettered (1.0 before either)."""
    deadline_hit_rate: float
    """Of the tasks with a deadline that finished, the share completed by it (1.0 before any)."""
    tenants: dict[Hashable, TenantCounts]
    workers: dict[Hashable, WorkerCounts]
