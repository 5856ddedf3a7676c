"""Queues: what decides which task goes next.

All of them satisfy the :class:`Queue` protocol.
"""

from taskdist.queues.dead_letter import DeadLetter, DeadLetterQueue, DeadLetterStats, RedriveReport
from taskdist.queues.deadline import DeadlineScheduler, DeadlineStats
from taskdist.queues.fair import FairScheduler, FairStats, TenantStats, Waiting, WaitingReason
from taskdist.queues.priority import PriorityQueue, QueueStats
from taskdist.queues.protocol import Eviction, Predicate, Queue
from taskdist.queues.quota import Quota

__all__ = [
    "DeadLetter",
    "DeadLetterQueue",
    "DeadLetterStats",
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
    "RedriveReport",
    "TenantStats",
    "Waiting",
    "WaitingReason",
]
