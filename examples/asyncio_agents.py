"""The nine-agent platform, run by the asyncio host on real coroutines, 90 times faster.

Nine agent types (their concurrency: conversation 10, recorder 5, verification
10, assumption scan 10, consistency check 10, strategic planner 3, reviewer 3,
research 2, reference analysis 5) share an LLM API allowed 100 requests a
minute and a database pool of 20 connections. Users on free, pro and
enterprise plans send 450 requests over three minutes; each is one agent step
of 0.8 to 15 seconds, and the research agent's external API fails 30 % of
the time. One `Distributor` decides (fair sharing by plan, priorities, the
API's rate, the pool, retries, leases of 10 s that the host renews), and
`taskdist.aio.AsyncHost` runs every step as a coroutine that sleeps for its
duration. The event loop and the distributor share a clock that runs 90
times faster than the wall clock, so the platform's minutes (the research and
planning backlogs outlast the arrivals) take a few seconds. At the end it
prints what happened and checks that no request was lost and no limit was
exceeded.

Run: python examples/asyncio_agents.py
"""

import asyncio
import random
import selectors
import time
from collections import Counter, deque

from taskdist import (
    Assignment,
    CircuitBreaker,
    Distributor,
    FairScheduler,
    MonotonicClock,
    PoolGate,
    Quota,
    RateGate,
    RateLimiter,
    ResourcePool,
    RetryPolicy,
    Task,
    TaskState,
    Worker,
)
from taskdist.aio import AsyncHost

SPEED = 90.0  # platform seconds per wall-clock second

AGENTS = {"conversation": 10, "recorder": 5, "verification": 10, "assumption_scan": 10,
          "consistency_check": 10, "strategic_planner": 3, "reviewer": 3, "research": 2,
          "reference_analysis": 5}  # fmt: skip
# intent: (priority, agent, uses the LLM API, uses the database, duration range in s)
INTENTS = {
    "brainstorming": (1, "conversation", True, False, (2.0, 8.0)),
    "deciding": (1, "strategic_planner", True, True, (3.0, 10.0)),
    "modifying": (1, "recorder", False, True, (0.8, 3.0)),
    "exploring": (2, "conversation", True, False, (0.8, 2.0)),
    "assumption_check": (2, "assumption_scan", False, False, (1.0, 3.0)),
    "consistency": (2, "consistency_check", False, True, (1.0, 3.0)),
    "reviewing": (3, "reviewer", True, False, (4.0, 12.0)),
    "development": (3, "strategic_planner", True, True, (5.0, 12.0)),
    "general": (3, "verification", False, False, (1.0, 4.0)),
    "document_research": (4, "research", True, False, (8.0, 15.0)),
    "reference_integration": (4, "reference_analysis", False, True, (3.0, 10.0)),
}
PLANS = {
    "free": Quota(max_concurrent=3, weight=1.0),
    "pro": Quota(max_concurrent=6, weight=2.0),
    "enterprise": Quota(max_concurrent=12, weight=4.0),
}
USERS = {f"free-{i}": "free" for i in range(12)} | {f"pro-{i}": "pro" for i in range(4)}
USERS["acme"] = "enterprise"


class SpedUpClock:
    """Platform time: the monotonic clock, running SPEED times faster."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._wall = MonotonicClock()
        self._origin = self._wall.now()

    def now(self) -> float:
        return (self._wall.now() - self._origin) * self.speed


class SpedUpLoop(asyncio.SelectorEventLoop):
    """An event loop on platform time: its sleeps are SPEED times shorter on the wall."""

    def __init__(self, clock: SpedUpClock) -> None:
        class Selector(selectors.DefaultSelector):  # type: ignore[misc, valid-type]
            def select(self, timeout=None):  # type: ignore[no-untyped-def]
                return super().select(None if timeout is None else timeout / clock.speed)

        super().__init__(Selector())
        self._platform = clock

    def time(self) -> float:
        return self._platform.now()


rng = random.Random(4)
clock = SpedUpClock(SPEED)
distributor = Distributor(
    clock,
    queue=FairScheduler(clock, plans=PLANS, tenant_plan=USERS),
    breaker=lambda agent: CircuitBreaker(clock, minimum_calls=20, window_size=40),
    retry=RetryPolicy(max_attempts=3, base=2.0, cap=20.0, rng=random.Random(2)),
    gates=[
        RateGate(RateLimiter(rate=100, per=60.0, burst=10, clock=clock), "api_calls"),
        PoolGate(ResourcePool("db", size=20)),
    ],
    lease=10.0,
    dedup_window=3600.0,
    rng=random.Random(7),
)
for agent, slots in AGENTS.items():
    distributor.add_worker(Worker(agent, capacity=slots, skills={agent}))

running = Counter[str]()
peak = Counter[str]()
api_starts: deque[float] = deque()
busiest_api_minute = 0
waits: dict[str, list[float]] = {plan: [] for plan in PLANS}
submitted_at: dict[str, float] = {}


async def agent_step(assignment: Assignment) -> None:
    """One agent step: hold the agent (and the database) for its duration."""
    global busiest_api_minute
    task = assignment.task
    agent = assignment.worker_id
    now = clock.now()
    if assignment.attempt == 1:
        waits[USERS[task.tenant]].append(now - submitted_at[task.id])
    running[agent] += 1
    running["db"] += int("db" in task.resources)
    for key, count in running.items():
        peak[key] = max(peak[key], count)
    if "api_calls" in task.resources:
        api_starts.append(now)
        while api_starts[0] <= now - 60.0:
            api_starts.popleft()
        busiest_api_minute = max(busiest_api_minute, len(api_starts))
    try:
        await asyncio.sleep(task.cost)
        if agent == "research" and rng.random() < 0.3:
            raise ConnectionError("the search API reset the connection")
    finally:
        running[agent] -= 1
        running["db"] -= int("db" in task.resources)


async def users(host: AsyncHost) -> None:
    """450 requests over three platform minutes, then no more."""
    arrivals = sorted(rng.uniform(0.0, 180.0) for _ in range(450))
    for number, at in enumerate(arrivals):
        await asyncio.sleep(max(0.0, at - clock.now()))
        intent = rng.choice(list(INTENTS))
        priority, agent, api, db, (low, high) = INTENTS[intent]
        task_id = f"{intent}-{number}"
        submitted_at[task_id] = clock.now()
        resources = {"api_calls": 1} if api else {}
        if db:
            resources["db"] = 1
        tenant = rng.choice(list(USERS))
        host.submit(Task(task_id, priority=priority, tenant=tenant, requires={agent},
                         resources=resources, cost=rng.uniform(low, high)))  # fmt: skip
    distributor.close()  # the host drains what is left, then returns


async def main() -> None:
    host = AsyncHost(distributor, agent_step, not_retryable=(PermissionError,))
    await asyncio.gather(host.run(), users(host))


wall = time.perf_counter()
loop = SpedUpLoop(clock)
loop.run_until_complete(main())
loop.close()
wall = time.perf_counter() - wall

stats = distributor.stats()
done = stats.by_state[TaskState.COMPLETED]
dead = stats.by_state[TaskState.DEAD]
print(f"{stats.submitted} requests in {clock.now() / 60:.1f} platform minutes "
      f"({wall:.1f} s on the wall clock, {SPEED:g}x)")  # fmt: skip
print(f"completed {done}, dead-lettered {dead} "
      f"{ {r.value: n for r, n in stats.dead_by_reason.items()} }, "
      f"retries {stats.retries}, lease expiries {stats.lease_expiries}")  # fmt: skip
for plan, samples in waits.items():
    samples.sort()
    p50 = samples[len(samples) // 2] if samples else 0.0
    p95 = samples[int(len(samples) * 0.95)] if samples else 0.0
    print(f"{plan:>10}: {len(samples):3d} requests, wait p50 {p50:5.1f} s, p95 {p95:5.1f} s")
print("agents at their busiest (of their concurrency): "
      + ", ".join(f"{agent} {peak[agent]}/{slots}" for agent, slots in AGENTS.items()))  # fmt: skip
print(f"LLM API: at most {busiest_api_minute} calls started in any minute (limit 100 + burst 10)")
print(f"database: at most {peak['db']} connections held (pool of 20)")

assert done + dead == stats.submitted == 450, "a request was lost"
assert all(peak[agent] <= slots for agent, slots in AGENTS.items())
assert busiest_api_minute <= 110
assert peak["db"] <= 20
