"""Queues: what decides which task goes next.

All of them satisfy the :class:`Queue` protocol.
"""

from taskdist.queues.deadline import DeadlineScheduler, DeadlineStats
from taskdist.queues.fair import FairScheduler, FairStats, TenantStats, Waiting, WaitingReason
from taskdist.queues.priority import PriorityQueue, QueueStats
from taskdist.queues.protocol import Eviction, Predicate, Queue
from taskdist.queues.quota import Quota

__all__ = [
    "DeadlineScheduler",
    "DeadlineStats",
    "Eviction",
    "FairScheduler",
    "FairStats",
    "Predicate",
    "PriorityQueue",
    "Queue",
    "QueueStats",
    "Quota",
    "TenantStats",
    "Waiting",
    "WaitingReason",
]
