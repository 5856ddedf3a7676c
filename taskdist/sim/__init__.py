"""taskdist.sim: try scheduling policies on a workload before deploying them.

A deterministic discrete-event simulator that drives the real
:class:`~taskdist.Distributor` on a :class:`~taskdist.ManualClock`::

    from taskdist.sim import Simulation, scenarios, compare
    report = Simulation(scenarios.platform(load=0.85), policy="priority", seed=1).run()
    print(report)                      # the seed checklist, measured
    compare(["fifo", "priority", "fair"], scenarios.hot_tenant(), seeds=(1, 2, 3))

This package is the simulator's public import path (the package root
``taskdist`` holds the library; capacity planning is ``taskdist.planning``,
re-exported there).
"""

from taskdist.sim import scenarios
from taskdist.sim.compare import Comparison, Win, compare
from taskdist.sim.distributions import (
    Constant,
    Empirical,
    Exponential,
    LogNormal,
    ServiceTime,
    Uniform,
)
from taskdist.sim.faults import (
    AddWorker,
    ErrorBurst,
    Fault,
    LostLeases,
    RemoveWorker,
    Slowdown,
    WorkerCrash,
)
from taskdist.sim.policies import BUILT_IN, Parts, Policy
from taskdist.sim.report import Check, Report, Series, Timing
from taskdist.sim.scenario import GateFactory, Scenario
from taskdist.sim.simulation import Simulation, fair_shares
from taskdist.sim.workloads import (
    MIN_RATE,
    MMPP,
    Arrival,
    Poisson,
    TaskType,
    Tenants,
    Trace,
    TraceError,
    TraceRecord,
    Workload,
    Zipf,
)

__all__ = [
    "BUILT_IN",
    "MIN_RATE",
    "MMPP",
    "AddWorker",
    "Arrival",
    "Check",
    "Comparison",
    "Constant",
    "Empirical",
    "ErrorBurst",
    "Exponential",
    "Fault",
    "GateFactory",
    "LogNormal",
    "LostLeases",
    "Parts",
    "Poisson",
    "Policy",
    "RemoveWorker",
    "Report",
    "Scenario",
    "Series",
    "ServiceTime",
    "Simulation",
    "Slowdown",
    "TaskType",
    "Tenants",
    "Timing",
    "Trace",
    "TraceError",
    "TraceRecord",
    "Uniform",
    "Win",
    "WorkerCrash",
    "Workload",
    "Zipf",
    "compare",
    "fair_shares",
    "scenarios",
]
