"""Workers: the live view of where tasks run.

:class:`CapacityTracker` records placements and answers candidate queries;
:class:`WorkerState` is the read-only view of one worker a balancer sees;
:mod:`~taskdist.workers.health` holds the health vocabulary and the policies
(EWMA thresholds, outlier ejection, slow start).
"""

from taskdist.workers.health import Health, HealthPolicy, OutlierEjection, SlowStart
from taskdist.workers.state import WorkerState, demand_of
from taskdist.workers.tracker import CapacityTracker, DegradedPolicy, WorkerFilter

__all__ = [
    "CapacityTracker",
    "DegradedPolicy",
    "Health",
    "HealthPolicy",
    "OutlierEjection",
    "SlowStart",
    "WorkerFilter",
    "WorkerState",
    "demand_of",
]
