"""taskdist: composable, sans-I/O task distribution.

Everything public is importable from here; submodules are implementation.
"""

from taskdist.batch_sizing import AIMDSizing, SizingRule
from taskdist.batching import Batch, BatchOptimizer, BatchReason, BatchStats, GroupBatchStats
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
    WorkerFullError,
    WorkerUnavailableError,
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
    "AIMDSizing",
    "Assignment",
    "Batch",
    "BatchOptimizer",
    "BatchReason",
    "BatchStats",
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
    "GroupBatchStats",
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
    "QueueFullError",
    "QueueStats",
    "QuotaExceededError",
    "RateLimiter",
    "Reason",
    "RecentSamples",
    "SizingRule",
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
    "WorkerFullError",
    "WorkerUnavailableError",
    "__version__",
    "coefficient_of_variation",
    "jain_index",
    "percentile",
]
