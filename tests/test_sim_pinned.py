"""The simulator's decisions and measures, pinned: a change that makes it faster must
leave every figure of a report as it was.

The values below were produced by the simulator before its event loop was made
cheaper; a run of the same scenario, policy and seed must reproduce them exactly
(wall-clock figures aside). One small M/M/c report is pinned figure by figure; the
other runs, which cover gates, tenants, deadlines, retries, breakers, lost leases,
crashes, slowdowns and error bursts, are pinned as a digest of their figures and
series (queue depth samples, every wait in dispatch order).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from taskdist import Worker
from taskdist.sim import (
    AddWorker,
    Constant,
    ErrorBurst,
    Exponential,
    LogNormal,
    LostLeases,
    Poisson,
    RemoveWorker,
    Report,
    Scenario,
    Simulation,
    Slowdown,
    TaskType,
    WorkerCrash,
    Workload,
    scenarios,
)


def figures(report: Report) -> dict[str, Any]:
    """``to_dict()`` without what the wall clock decides (timings, the latency check)."""
    data = report.to_dict()
    del data["timing"]
    data["checklist"] = [c for c in data["checklist"] if c["name"] != "distribution latency"]
    return data


def digest(report: Report) -> str:
    series = report.series
    data = {
        "figures": figures(report),
        "depth": [list(sample) for sample in series.queue_depth],
        "waits": {str(p): list(w) for p, w in sorted(series.waits_by_priority.items())},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def faulty(tasks: int) -> Scenario:
    """Every fault at once, on workers with two skill sets, a lease and an intake bound."""
    workers = [Worker(f"w{i}", capacity=3, skills={"a", "b"} if i % 2 else {"a"}) for i in range(6)]
    return Scenario(
        name="faulty",
        workers=workers,
        workload=Workload(
            Poisson(8.0),
            (
                TaskType(
                    "short",
                    Exponential(0.5),
                    share=3,
                    priority=1,
                    deadline=20.0,
                    requires={"a"},
                    failure=0.05,
                    max_attempts=3,
                ),
                TaskType("long", LogNormal(12.0, 0.7), share=1, priority=3, requires={"b"}),
                TaskType("fixed", Constant(1.0), share=1, priority=2, ttl=30.0),
            ),
        ),
        tasks=tasks,
        lease=15.0,
        max_queued=200,
        faults=(
            WorkerCrash(40.0, "w1", down_for=30.0),
            RemoveWorker(80.0, "w2"),
            AddWorker(100.0, Worker("w9", capacity=2, skills={"a", "b"})),
            Slowdown("w3", 3.0, 20.0, 90.0),
            LostLeases(0.05, 30.0, 60.0),
            ErrorBurst(0.3, 50.0, 70.0),
        ),
    )


_WAIT = {
    "count": 300,
    "mean": 0.7106144024751773,
    "p50": 0.18828494433648846,
    "p95": 2.734189226970535,
    "p99": 3.188313653539861,
    "max": 3.364945077157472,
}

MM_C_300_SEED_1 = {
    "scenario": "mm_c",
    "policy": "priority",
    "seed": 1,
    "tasks": 300,
    "accepted": 300,
    "refused": 0,
    "completed": 300,
    "dead": 0,
    "stranded": 0,
    "dispatches": 300,
    "retries": 0,
    "lease_expiries": 0,
    "makespan": 41.06216209276746,
    "window": 33.02731508860128,
    "throughput": 7.3059961947995165,
    "wait": _WAIT,
    "end_to_end": {
        "count": 300,
        "mean": 1.751242070694373,
        "p50": 1.2650994157669526,
        "p95": 4.638249001195499,
        "p99": 6.552324153350361,
        "max": 8.854472775885412,
    },
    "wait_by_priority": {"2": _WAIT},
    "deadlines": 0,
    "deadlines_met": 0,
    "deadline_hit_rate": 1.0,
    "completion_rate": 1.0,
    "utilization": 0.8604799168111076,
    "offered_load": 0.9452427471874766,
    "load_variance": 0.08228613636968521,
    "worker_utilization": {
        "0": 0.9524237638445231,
        "1": 0.9492362083895634,
        "2": 0.9175632533072436,
        "3": 0.870140758511083,
        "4": 0.8921350711149062,
        "5": 0.8834443515786826,
        "6": 0.8223908452157827,
        "7": 0.8249418981412033,
        "8": 0.7386370993315897,
        "9": 0.7538859186764988,
    },
    "jain_index": 1.0,
    "tenant_fairness": {},
    "priority_inversions": 0,
    "dead_by_reason": {},
    "evicted": 0,
    "checklist": [
        dict(zip(("name", "target", "measured", "passed"), check, strict=True))
        for check in (
            ("load variance", "< 10%", "8.2%", True),
            ("completion", "> 99%", "100.00%", True),
            ("priority respected", "100%", "100.00% (0 inversions)", True),
            ("deadlines met", "> 95%", "100.00%", True),
            ("utilisation", "> 80%", "86.0%", True),
            ("no queue overflow", "0 refused", "0 refused or evicted", True),
            ("fairness", "Jain >= 0.9", "Jain 1.000", True),
        )
    ],
}


def test_a_small_mmc_report_is_pinned_figure_by_figure() -> None:
    report = Simulation(scenarios.mm_c(8.0, 1.0, 10, tasks=300), seed=1).run()
    assert figures(report) == MM_C_300_SEED_1


@pytest.mark.parametrize(
    ("name", "policy", "seed", "expected"),
    [
        (
            "platform",
            "priority",
            3,
            "e3d7dee815265ad692bf2558d7effa020f0d8b6517cdc0d888cc3e36405f8c5f",
        ),
        (
            "platform",
            "fair+edf/p2c+cb",
            1,
            "f3fbe809b753aef80e24eadf777a0514a420b04088cdab083c036ec6315ed449",
        ),
        (
            "hot_tenant",
            "fair",
            2,
            "8bc0d2de5cfdf265ff09c51dd161b03d72a1c1c8e70c645cc9afbdcfa857b6b8",
        ),
        (
            "skewed_keys",
            "priority/hash",
            1,
            "399ab085495fe1080907b385fd39924aa753f7979be517f1db27bf11ea9736a5",
        ),
        (
            "slow_worker",
            "fifo/perf",
            1,
            "05ee6494c04c14674082578d5e8d15448bdf1b49d5f781377f5ce6f6a809b93f",
        ),
        (
            "flaky_api",
            "edf/rr+cb",
            2,
            "3418a881d4e0ab9eff0cab724bcc4290ab7a29339cb1bf30750ec7c7aa88b4da",
        ),
    ],
)
def test_built_in_scenario_runs_are_pinned(
    name: str, policy: str, seed: int, expected: str
) -> None:
    report = Simulation(scenarios.by_name(name, tasks=600), policy, seed=seed).run()
    assert digest(report) == expected


@pytest.mark.parametrize(
    ("policy", "seed", "expected"),
    [
        ("priority", 1, "f129a094a940c0efd8502b411f8e78d66e9df575869371f9ea396b6cb0b7ab07"),
        ("fair/random+cb", 2, "280b38798092455fd4af4873c95a7b9d0bdbba083429bd7b8a0fbd5a569d4c4b"),
    ],
)
def test_runs_with_every_fault_are_pinned(policy: str, seed: int, expected: str) -> None:
    assert digest(Simulation(faulty(600), policy, seed=seed).run()) == expected
