"""Batching: tasks of one group gathered into batches bounded in size, cost and wait."""

from taskdist.batching.optimizer import (
    Batch,
    BatchOptimizer,
    BatchReason,
    BatchStats,
    GroupBatchStats,
    GroupLimits,
)
from taskdist.batching.sizing import AIMDSizing, SizingRule

__all__ = [
    "AIMDSizing",
    "Batch",
    "BatchOptimizer",
    "BatchReason",
    "BatchStats",
    "GroupBatchStats",
    "GroupLimits",
    "SizingRule",
]
