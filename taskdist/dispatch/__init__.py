"""Dispatch: the composition that moves tasks from a queue onto workers, and its failure sink.

- :class:`Distributor`: submit, dispatch under leases, complete / fail /
  retry, park what cannot run, dead-letter what cannot finish.
- :class:`DeadLetterQueue`: the tasks that left the normal path, with their
  reason and history, until they are inspected, redriven or purged.
- :class:`Event` and :class:`DistributorStats`: what a distributor shows.
"""

from taskdist.dispatch.dead_letter import (
    DeadLetter,
    DeadLetterQueue,
    DeadLetterStats,
    RedriveReport,
)
from taskdist.dispatch.distributor import BreakerFactory, Distributor, SubmitResult
from taskdist.dispatch.escalation import Escalation
from taskdist.dispatch.events import Event, EventKind, Listener
from taskdist.dispatch.gangs import Gangs
from taskdist.dispatch.intake import (
    ConcurrencyLimit,
    ConcurrencyStrategy,
    Debounce,
    IntakePolicy,
    Throttle,
    Verdict,
)
from taskdist.dispatch.preemption import Preemption
from taskdist.dispatch.reservation import Backfill, Reservation
from taskdist.dispatch.retry_budget import OverBudget, RetryBudget
from taskdist.dispatch.routing import Pool, Route, Step
from taskdist.dispatch.stats import AttemptRecord, DistributorStats, TenantCounts, WorkerCounts

__all__ = [
    "AttemptRecord",
    "Backfill",
    "BreakerFactory",
    "ConcurrencyLimit",
    "ConcurrencyStrategy",
    "DeadLetter",
    "DeadLetterQueue",
    "DeadLetterStats",
    "Debounce",
    "Distributor",
    "DistributorStats",
    "Escalation",
    "Event",
    "EventKind",
    "Gangs",
    "IntakePolicy",
    "Listener",
    "OverBudget",
    "Pool",
    "Preemption",
    "RedriveReport",
    "Reservation",
    "RetryBudget",
    "Route",
    "Step",
    "SubmitResult",
    "TenantCounts",
    "Throttle",
    "Verdict",
    "WorkerCounts",
]
