"""taskdist: composable, sans-I/O task distribution.

Everything public is importable from here; submodules are implementation.
"""

from taskdist.clock import Clock, ManualClock, MonotonicClock
from taskdist.errors import (
    CapacityError,
    CircuitOpenError,
    ClockError,
    DeadlineError,
    DeadlineInfeasibleError,
    DuplicateError,
    DuplicateTaskError,
    DuplicateWorkerError,
    InvalidArgumentError,
    InvalidTypeError,
    OverReleaseError,
    QueueFullError,
    QuotaExceededError,
    TaskdistError,
    UnknownError,
    UnknownPlanError,
    UnknownPolicyError,
    UnknownTaskError,
    UnknownTenantError,
    UnknownWorkerError,
)
from taskdist.metrics import (
    Percentiles,
    RecentSamples,
    coefficient_of_variation,
    jain_index,
    percentile,
)
from taskdist.queues import Eviction, Predicate, PriorityQueue, Queue, QueueStats
from taskdist.resilience import RateLimiter
from taskdist.task import Assignment, Priority, Reason, Task, TaskState, Worker

__version__ = "0.1.0.dev0"

__all__ = [
    "Assignment",
    "CapacityError",
    "CircuitOpenError",
    "Clock",
    "ClockError",
    "DeadlineError",
    "DeadlineInfeasibleError",
    "DuplicateError",
    "DuplicateTaskError",
    "DuplicateWorkerError",
    "Eviction",
    "InvalidArgumentError",
    "InvalidTypeError",
    "ManualClock",
    "MonotonicClock",
    "OverReleaseError",
    "Percentiles",
    "Predicate",
    "Priority",
    "PriorityQueue",
    "Queue",
    "RateLimiter",
    "QueueFullError",
    "QueueStats",
    "QuotaExceededError",
    "Reason",
    "RecentSamples",
    "Task",
    "TaskState",
    "TaskdistError",
    "UnknownError",
    "UnknownPlanError",
    "UnknownPolicyError",
    "UnknownTaskError",
    "UnknownTenantError",
    "UnknownWorkerError",
    "Worker",
    "__version__",
    "coefficient_of_variation",
    "jain_index",
    "percentile",
]
