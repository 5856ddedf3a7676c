"""Queues: what decides which task goes next.

:class:`PriorityQueue` (priority with aging), :class:`DeadlineScheduler`
(earliest deadline first, with admission control) and :class:`FairScheduler`
(weighted fair share across tenants, limited by :class:`Quota`; with
:class:`KeyShare`, among each tenant's keys too) satisfy the
:class:`Queue` protocol: ``push`` may hand back an :class:`Eviction`, and
``pop(where=...)`` takes a :data:`Predicate`. The dead-letter queue is not a
queue of this kind: it is the failure sink of the composition, in
:mod:`taskdist.dispatch`.
"""

from taskdist.queues.deadline import DeadlineScheduler, DeadlineStats
from taskdist.queues.fair import FairScheduler, FairStats, TenantStats, Waiting, WaitingReason
from taskdist.queues.key_share import KeyShare
from taskdist.queues.priority import PriorityQueue, QueueStats
from taskdist.queues.protocol import Eviction, Predicate, Queue
from taskdist.queues.quota import Quota

__all__ = [
    "DeadlineScheduler",
    "DeadlineStats",
    "Eviction",
    "FairScheduler",
    "FairStats",
    "KeyShare",
    "Predicate",
    "PriorityQueue",
    "Queue",
    "QueueStats",
    "Quota",
    "TenantStats",
    "Waiting",
    "WaitingReason",
]
