"""Queues: what decides which task goes next.

All of them satisfy the :class:`Queue` protocol.
"""

from taskdist.queues.priority import PriorityQueue, QueueStats
from taskdist.queues.protocol import Eviction, Predicate, Queue

__all__ = [
    "Eviction",
    "Predicate",
    "PriorityQueue",
    "Queue",
    "QueueStats",
]
