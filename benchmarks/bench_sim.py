"""The simulator driving the real Distributor, next to a bare SimPy model of the same M/M/c.

Both serve ``n`` customers of an M/M/10 queue at 80 % utilisation (arrivals
8/s, service 1 s exponential): SimPy with a ``Resource`` of 10 and one
process per customer (the textbook model, nothing else), taskdist with
``Simulation(scenarios.mm_c(8, 1, 10, n))`` under the default policy (a
``PriorityQueue``, ``LeastConnections``, the Distributor's tracker, retry
policy, event heap and measurements). ``platform`` runs the nine-agent
platform scenario at 85 % load. ``benchmarks/compare_sim.py`` prints the
ratio table, the 100k-task platform run and where the time goes.
"""

from __future__ import annotations

import random

import pytest
from sizing import sizes

from taskdist.sim import Simulation, scenarios

SIZES = sizes(full=[50_000], smoke=[300])


def simpy_mmc(n: int, seed: int = 1, arrival_rate: float = 8.0, servers: int = 10) -> float:
    """A bare SimPy M/M/c: returns the mean wait of ``n`` customers."""
    simpy = pytest.importorskip("simpy")
    rng = random.Random(seed)
    env = simpy.Environment()
    desk = simpy.Resource(env, capacity=servers)
    total = [0.0]

    def customer(env: object) -> object:
        arrived = env.now  # type: ignore[attr-defined]
        with desk.request() as request:
            yield request
            total[0] += env.now - arrived  # type: ignore[attr-defined]
            yield env.timeout(rng.expovariate(1.0))  # type: ignore[attr-defined]

    def source(env: object) -> object:
        for _ in range(n):
            yield env.timeout(rng.expovariate(arrival_rate))  # type: ignore[attr-defined]
            env.process(customer(env))  # type: ignore[attr-defined]

    env.process(source(env))
    env.run()
    return total[0] / n


def taskdist_mmc(n: int, seed: int = 1, policy: str = "priority") -> float:
    """The same M/M/c through the real Distributor: returns the mean wait."""
    return Simulation(scenarios.mm_c(8.0, 1.0, 10, tasks=n), policy, seed=seed).run().wait.mean


def platform(n: int, seed: int = 1) -> float:
    """The platform scenario at 85 % load: returns the utilisation."""
    return Simulation(scenarios.platform(0.85, tasks=n), seed=seed).run().utilization


@pytest.mark.parametrize("n", SIZES)
def bench_mmc_simpy(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"mmc-{n}"
    assert benchmark(simpy_mmc, n) > 0


@pytest.mark.parametrize("n", SIZES)
def bench_mmc_taskdist(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"mmc-{n}"
    assert benchmark(taskdist_mmc, n) > 0


@pytest.mark.parametrize("n", SIZES)
def bench_platform(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"platform-{n}"
    assert 0 < benchmark(platform, n) <= 1
