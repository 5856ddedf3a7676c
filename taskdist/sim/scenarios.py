"""Built-in scenarios: the nine-agent platform, M/M/c, and one per policy trade-off.

- :func:`platform`: nine agent types with their concurrency, an API rate
  limit, a database pool, a cap on concurrent workflows, intents at
  priorities 1-4 and users on free / pro / enterprise plans.
- :func:`mm_c`: the textbook M/M/c queue, for checking against Erlang C.
- :func:`skewed_keys`: a few keys get most of the traffic, and a worker that
  saw a key recently runs it faster (a warm cache): consistent hashing keeps
  caches warm but piles the hot keys on a few workers.
- :func:`hot_tenant`: one tenant sends most of the work into an overloaded
  pool: FIFO lets it crowd the others out, fair sharing does not.
- :func:`slow_worker`: one worker runs five times slower: blind rotation
  keeps feeding it, load-aware balancers do not.
- :func:`flaky_api`: the API fails half the calls for a while and some
  workers hang (their leases run out): retries, dead letters and breakers.

Each takes the offered ``load`` (busy slots over slots, 1.0 = exactly the
pool's capacity; from :data:`MIN_LOAD`, 1e-6, to :data:`MAX_LOAD`, 100) and
the number of ``tasks`` to simulate. O(workers + types)
to build.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Final

from taskdist._validate import check_int, check_number
from taskdist.clock import Clock
from taskdist.errors import InvalidArgumentError
from taskdist.queues.quota import Quota
from taskdist.resilience.bulkhead import ResourcePool
from taskdist.resilience.gates import Gate, PoolGate, RateGate
from taskdist.resilience.rate_limit import RateLimiter
from taskdist.sim.distributions import Exponential, LogNormal
from taskdist.sim.faults import ErrorBurst, LostLeases, Slowdown
from taskdist.sim.scenario import Scenario
from taskdist.sim.workloads import Poisson, TaskType, Tenants, Workload, Zipf, check_rate
from taskdist.task import Worker

__all__ = [
    "AGENT_CONCURRENCY",
    "INTENT_PRIORITY",
    "MAX_LOAD",
    "MIN_LOAD",
    "NAMES",
    "by_name",
    "flaky_api",
    "hot_tenant",
    "mm_c",
    "platform",
    "skewed_keys",
    "slow_worker",
]

AGENT_CONCURRENCY: Final = {
    "conversation": 10,
    "recorder": 5,
    "verification": 10,
    "assumption_scan": 10,
    "consistency_check": 10,
    "strategic_planner": 3,
    "reviewer": 3,
    "research": 2,
    "reference_analysis": 5,
}
"""The platform's agent types and how many tasks each runs at once."""

INTENT_PRIORITY: Final = {
    "brainstorming": 1,
    "deciding": 1,
    "modifying": 1,
    "exploring": 2,
    "reviewing": 3,
    "development": 3,
    "general": 3,
    "document_research": 4,
    "reference_integration": 4,
}
"""The platform's intents and their priorities (1 = most urgent)."""

# Which agents a workflow of each intent calls (one task per agent call).
_INTENT_AGENTS: Final = {
    "brainstorming": ("conversation", "recorder", "assumption_scan"),
    "deciding": ("conversation", "recorder", "consistency_check"),
    "modifying": ("conversation", "recorder", "verification"),
    "exploring": ("conversation",),
    "reviewing": ("reviewer", "verification", "consistency_check"),
    "development": ("strategic_planner", "verification"),
    "general": ("conversation", "recorder"),
    "document_research": ("research", "reference_analysis"),
    "reference_integration": ("reference_analysis", "recorder"),
}

# Mean seconds per call: from 0.8 s (an exploring reply) to 15 s (research).
_AGENT_SECONDS: Final = {
    "conversation": 2.0,
    "recorder": 1.0,
    "verification": 3.0,
    "assumption_scan": 3.0,
    "consistency_check": 3.0,
    "strategic_planner": 8.0,
    "reviewer": 6.0,
    "research": 15.0,
    "reference_analysis": 5.0,
}
_EXPLORING_SECONDS: Final = 0.8

_API_AGENTS: Final = frozenset({"strategic_planner", "reviewer", "research"})
_DB_AGENTS: Final = frozenset({"recorder", "reference_analysis", "consistency_check"})
# Seconds a workflow's user waits for an answer, by priority.
_DEADLINE_BY_PRIORITY: Final = {1: 60.0, 2: 120.0, 3: 300.0, 4: 900.0}

PLATFORM_PLANS: Final[Mapping[Hashable, Quota]] = {
    "free": Quota(max_concurrent=3, weight=1.0),
    "pro": Quota(max_concurrent=6, weight=2.0),
    "enterprise": Quota(max_concurrent=12, weight=4.0),
}
"""The platform's plans: tasks each user may run at once, and their fair-share weight."""

_PLAN_USERS: Final = (("free", 28, 1.0), ("pro", 10, 2.0), ("enterprise", 2, 4.0))


MIN_LOAD: Final = 1e-6
"""The lowest offered load a built-in scenario takes: lower, arrivals come so rarely
that their times (and the deadlines and fault windows timed from them) overflow."""
MAX_LOAD: Final = 100.0
"""The highest offered load a built-in scenario takes."""


def _check_load(load: float) -> float:
    return check_number(load, "load", minimum=MIN_LOAD, maximum=MAX_LOAD)


def _platform_gates(clock: Clock) -> Sequence[Gate]:
    return (
        RateGate(RateLimiter(100, per=60.0, burst=10, clock=clock), "api"),
        PoolGate(ResourcePool("db", size=20)),
        PoolGate(ResourcePool("workflows", size=10)),
    )


def platform(load: float = 0.85, *, tasks: int = 20_000, failure: float = 0.01) -> Scenario:
    """The nine-agent platform at the offered ``load`` (0.85: 85 % of every agent's slots).

    Each task is one call of a workflow to one agent (the agent's skill,
    one of its slots). Every agent type is one worker with its concurrency
    as slots, and gets ``load`` times its slots of work on average: the
    intents that call it share it equally. Calls take a log-normal time
    (coefficient of variation 0.5) with the agent's mean, 0.8 s for an
    exploring reply up to 15 s for research. Limits: the API admits 100
    calls a minute (bursts of 10) to the planner, reviewer and research
    agents; the database pool of 20 serves the recorder, reference analysis
    and consistency check; a conversation call holds one of the 10
    workflow slots. 40 users: 28 free, 10 pro, 2 enterprise, submitting in
    the ratio 1 : 2 : 4 and running at most 3, 6, 12 tasks at once;
    enterprise tasks are one level more urgent. A task must finish within
    60, 120, 300 or 900 s of arriving at priority 1, 2, 3, 4. API calls fail
    with probability ``failure`` (retried). Priorities age one level per 10
    minutes waited.
    """
    load = _check_load(load)
    check_int(tasks, "tasks", minimum=1)
    check_number(failure, "failure", minimum=0.0, maximum=1.0)
    users: list[str] = []
    shares: list[float] = []
    plans: dict[Hashable, Hashable] = {}
    for plan, count, share in _PLAN_USERS:
        for number in range(count):
            name = f"{plan}-{number + 1}"
            users.append(name)
            shares.append(share)
            plans[name] = plan
    callers: dict[str, list[str]] = {agent: [] for agent in AGENT_CONCURRENCY}
    for intent, agents in _INTENT_AGENTS.items():
        for agent in agents:
            callers[agent].append(intent)
    types = []
    for agent, slots in AGENT_CONCURRENCY.items():
        work = load * slots / len(callers[agent])  # busy slots each intent brings
        for intent in callers[agent]:
            seconds = _EXPLORING_SECONDS if intent == "exploring" else _AGENT_SECONDS[agent]
            priority = INTENT_PRIORITY[intent]
            resources = {}
            if agent in _API_AGENTS:
                resources["api"] = 1.0
            if agent in _DB_AGENTS:
                resources["db"] = 1.0
            if agent == "conversation":
                resources["workflows"] = 1.0
            types.append(
                TaskType(
                    f"{intent}:{agent}",
                    LogNormal(seconds, 0.5),
                    share=work / seconds,
                    priority=priority,
                    deadline=_DEADLINE_BY_PRIORITY[priority],
                    requires={agent},
                    resources=resources,
                    failure=failure if agent in _API_AGENTS else 0.0,
                )
            )
    rate = math.fsum(t.share for t in types)  # shares are arrivals per second
    workers = [
        Worker(agent, capacity=slots, skills={agent}) for agent, slots in AGENT_CONCURRENCY.items()
    ]
    return Scenario(
        name="platform",
        workers=workers,
        workload=Workload(
            Poisson(rate),
            types,
            Tenants(
                users,
                shares,
                plans={str(k): str(v) for k, v in plans.items()},
                boost={"enterprise": 1},
            ),
        ),
        tasks=tasks,
        gates=_platform_gates,
        plans=PLATFORM_PLANS,
        tenant_plan=plans,
        aging_rate=1 / 600,
        description=f"the nine-agent platform at {load:.0%} offered load",
    )


def mm_c(arrival_rate: float, service_rate: float, servers: int, tasks: int = 10_000) -> Scenario:
    """The M/M/c queue: Poisson arrivals, exponential service, ``servers`` one-slot workers.

    ``arrival_rate`` is arrivals a second, at least ``MIN_RATE`` (1e-6);
    ``service_rate`` is services a second per server, at least 1e-12 (a mean
    service time of at most 1e12 seconds, the longest a distribution takes).

    >>> mm_c(8.0, 1.0, 10).pool_loads()[0].offered_load
    8.0
    """
    arrival_rate = check_rate(arrival_rate, "arrival_rate")
    # Named here, not by the Exponential built from it (whose mean is its inverse).
    service_rate = check_number(service_rate, "service_rate", minimum=1e-12)
    servers = check_int(servers, "servers", minimum=1, maximum=100_000)
    check_int(tasks, "tasks", minimum=1)
    return Scenario(
        name="mm_c",
        workers=[Worker(i, capacity=1) for i in range(servers)],
        workload=Workload(Poisson(arrival_rate), TaskType("job", Exponential(1.0 / service_rate))),
        tasks=tasks,
        description=(
            f"M/M/{servers}: arrivals {arrival_rate:g}/s, service {service_rate:g}/s per server "
            f"(utilisation {arrival_rate / (servers * service_rate):.0%})"
        ),
    )


def _pool(count: int, slots: int, prefix: str = "w") -> list[Worker]:
    return [Worker(f"{prefix}{i}", capacity=slots) for i in range(count)]


def skewed_keys(load: float = 0.8, *, tasks: int = 10_000) -> Scenario:
    """8 workers of 4 slots; keys drawn Zipf(1.1) over 1,000 keys; a task whose key ran
    last on the same worker runs in half the time (a warm cache; exponential, mean 1 s cold).
    """
    load = _check_load(load)
    workers = _pool(8, 4)
    return Scenario(
        name="skewed_keys",
        workers=workers,
        workload=Workload(
            Poisson(load * 32 / 1.0),
            TaskType("lookup", Exponential(1.0), keys=Zipf(1_000, 1.1), deadline=10.0),
        ),
        tasks=tasks,
        cache_speedup=0.5,
        description=f"Zipf-skewed keys with warm caches at {load:.0%} offered load",
    )


def hot_tenant(load: float = 1.2, *, tasks: int = 10_000) -> Scenario:
    """4 workers of 5 slots, 20 tenants; one sends 60 % of the tasks. At the default
    load of 1.2 the pool is overloaded: who gets served is the question. Tasks take
    1 s (exponential) and should finish within 30 s.
    """
    load = _check_load(load)
    names = [f"tenant-{i}" for i in range(20)]
    shares = [0.6] + [0.4 / 19] * 19
    return Scenario(
        name="hot_tenant",
        workers=_pool(4, 5),
        workload=Workload(
            Poisson(load * 20 / 1.0),
            TaskType("job", Exponential(1.0), deadline=30.0),
            Tenants(names, shares),
        ),
        tasks=tasks,
        description=f"one tenant sends 60 % of the work at {load:.0%} offered load",
    )


def slow_worker(load: float = 0.8, *, tasks: int = 10_000) -> Scenario:
    """8 workers of 4 slots, one of which (``w0``) runs every task 5 times slower.
    Tasks take 1 s (log-normal) on a healthy worker and should finish within 10 s.
    """
    load = _check_load(load)
    # Capacity in healthy-worker equivalents: 7 workers + one at a fifth of the speed.
    capacity = (7 + 1 / 5) * 4
    return Scenario(
        name="slow_worker",
        workers=_pool(8, 4),
        workload=Workload(
            Poisson(load * capacity / 1.0),
            TaskType("job", LogNormal(1.0, 0.5), deadline=10.0),
        ),
        tasks=tasks,
        faults=(Slowdown("w0", 5.0),),
        description=f"one of 8 workers is 5x slower, at {load:.0%} offered load",
    )


def flaky_api(load: float = 0.7, *, tasks: int = 10_000) -> Scenario:
    """6 workers of 5 slots calling an API (2 s per call, log-normal). For the middle
    fifth of the run the API fails half the calls and 5 % of the assignments hang
    (their 20 s lease runs out); before and after, 1 % of calls fail. Each task
    may take 4 attempts and should finish within 120 s. The burst is placed for a run
    of ``tasks`` arrivals: build the scenario with the count you will simulate.
    """
    load = _check_load(load)
    rate = load * 30 / 2.0
    horizon = tasks / rate
    start, end = 0.4 * horizon, 0.6 * horizon
    return Scenario(
        name="flaky_api",
        workers=_pool(6, 5),
        workload=Workload(
            Poisson(rate),
            TaskType(
                "call",
                LogNormal(2.0, 0.5),
                deadline=120.0,
                failure=0.01,
                max_attempts=4,
                resources={"api": 1.0},
            ),
        ),
        tasks=tasks,
        lease=20.0,
        faults=(
            ErrorBurst(0.5, start, end, resource="api"),
            LostLeases(0.05, start, end),
        ),
        description=(
            f"the API fails half the calls from {start:.0f} s to {end:.0f} s, "
            f"at {load:.0%} offered load"
        ),
    )


NAMES: Final = ("platform", "mm_c", "skewed_keys", "hot_tenant", "slow_worker", "flaky_api")
"""The built-in scenarios by name (``--scenario``)."""


def by_name(name: str, *, load: float | None = None, tasks: int | None = None) -> Scenario:
    """A built-in scenario by name, at ``load`` (default: its own) with ``tasks`` arrivals.

    ``mm_c`` by name is M/M/10 at 80 % (``load`` sets the utilisation).

    Raises:
        InvalidArgumentError: no built-in scenario has this name.
    """
    builders = {
        "platform": platform,
        "skewed_keys": skewed_keys,
        "hot_tenant": hot_tenant,
        "slow_worker": slow_worker,
        "flaky_api": flaky_api,
    }
    key = name.replace("-", "_") if isinstance(name, str) else name
    if key == "mm_c":
        scenario = mm_c(10 * (0.8 if load is None else _check_load(load)), 1.0, 10)
        return scenario if tasks is None else scenario.with_tasks(tasks)
    builder = builders.get(key)
    if builder is None:
        raise InvalidArgumentError(f"no built-in scenario {name!r}; they are {', '.join(NAMES)}")
    kwargs = {} if tasks is None else {"tasks": tasks}
    return builder(**kwargs) if load is None else builder(load, **kwargs)
