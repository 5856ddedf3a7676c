"""Workers: the live view of where tasks run.

:class:`CapacityTracker` records placements and answers candidate queries;
:class:`WorkerState` is the read-only view of one worker a balancer sees;
:mod:`~taskdist.workers.health` holds the health vocabulary and the policies
(EWMA thresholds, outlier ejection, slow start), and the private
``_outcomes`` module the bookkeeping that applies them; ``_load_index``
keeps workers sorted by an order a balancing strategy gives.
"""

from taskdist.workers.health import Health, HealthPolicy, OutlierEjection, SlowStart
from taskdist.workers.state import WorkerState, demand_of
from taskdist.workers.tracker import CapacityTracker, DegradedPolicy, LoadKey, WorkerFilter

__all__ = [
    "CapacityTracker",
    "DegradedPolicy",
    "Health",
    "HealthPolicy",
    "LoadKey",
    "OutlierEjection",
    "SlowStart",
    "WorkerFilter",
    "WorkerState",
    "demand_of",
]
