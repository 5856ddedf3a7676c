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
    "utilization": 0.8605815443611511,
    "offered_load": 0.945354385707698,
    "load_variance": 0.0822861363696852,
    "worker_utilization": {
        "0": 0.9525362504834691,
        "1": 0.9493483185601631,
        "2": 0.917671622722522,
        "3": 0.870243527061229,
        "4": 0.8922404373178981,
        "5": 0.8835486913584922,
        "6": 0.8224879742308179,
        "7": 0.8250393284500328,
        "8": 0.7387243365550388,
        "9": 0.7539749568718485,
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
            ("utilisation", "> 80%", "86.1%", True),
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
            "64f23a3f7c01e1a51a5312d05296e585eecaaebc4510b43383032cdc9195b692",
        ),
        (
            "platform",
            "fair+edf/p2c+cb",
            1,
            "8453119d04cbf71edfb399523052ce42fa08c22af4e1104e5b0f3443e7d61cf1",
        ),
        (
            "hot_tenant",
            "fair",
            2,
            "a0348f223231b6d11f9f0c868d8fb242ddf3f3d7fc483e9d0d7d2d6a537c5b59",
        ),
        (
            "skewed_keys",
            "priority/hash",
            1,
            "a52b9c36f361e22944ff4abf732e8f35219284bc908664aa28b861b3dea75ff6",
        ),
        (
            "slow_worker",
            "fifo/perf",
            1,
            "71ebcd1f12f4b65277bc2cdfdcec42646c580137284f2e8a89711bb53d8a6d49",
        ),
        (
            "flaky_api",
            "edf/rr+cb",
            2,
            "8b3a544fa174586095e2b1ab0906073b9c609c1f430e15fd3710d52e5f68b371",
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
        ("priority", 1, "f3960517d4e8abac32ff28d5355512bcd6168bf3b298c7ce1bd3db367c8311c9"),
        ("fair/random+cb", 2, "106189d72cb646c2b6bc973869b227bd18d90c03d37f8a6ddf91a1db79f89cdb"),
    ],
)
def test_runs_with_every_fault_are_pinned(policy: str, seed: int, expected: str) -> None:
    assert digest(Simulation(faulty(600), policy, seed=seed).run()) == expected
