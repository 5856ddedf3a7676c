"""The nine-agent platform, wired by hand from taskdist's pieces.

A host loop (here a tiny discrete-event simulation on a ManualClock) composes:
FairScheduler with free/pro/enterprise plans, a CapacityTracker of the nine
agent types, PowerOfTwoChoices, the LLM API's 100 requests/minute as a RateGate,
a CircuitBreaker per agent, a RetryPolicy and a DeadLetterQueue. It checks at
the end that every submitted task either completed or was dead-lettered.

Run: python examples/platform_loop.py
"""

import heapq
import itertools
import random

from taskdist import (
    CapacityTracker,
    CircuitBreaker,
    CircuitState,
    DeadLetterQueue,
    FairScheduler,
    ManualClock,
    PowerOfTwoChoices,
    Quota,
    RateGate,
    RateLimiter,
    Reason,
    RecentSamples,
    RetryPolicy,
    Task,
    Worker,
)

AGENTS = {"conversation": 10, "recorder": 5, "verification": 10, "assumption_scan": 10,
          "consistency_check": 10, "strategic_planner": 3, "reviewer": 3, "research": 2,
          "reference_analysis": 5}  # fmt: skip
INTENTS = {  # intent: (priority, agent, uses the LLM API)
    "brainstorming": (1, "conversation", True), "deciding": (1, "strategic_planner", True),
    "modifying": (1, "recorder", False), "exploring": (2, "conversation", True),
    "reviewing": (3, "reviewer", True), "development": (3, "strategic_planner", True),
    "general": (3, "verification", False), "document_research": (4, "research", True),
    "reference_integration": (4, "reference_analysis", False),
}  # fmt: skip
PLANS = {
    "free": Quota(max_concurrent=2, rate=20, per=60.0, weight=1.0),
    "pro": Quota(max_concurrent=5, rate=60, per=60.0, weight=2.0),
    "enterprise": Quota(max_concurrent=10, weight=4.0),
}

rng = random.Random(7)
clock = ManualClock()
users = {f"free-{i}": "free" for i in range(12)} | {f"pro-{i}": "pro" for i in range(5)}
users |= {"acme": "enterprise"}
queue = FairScheduler(clock, plans=PLANS, tenant_plan=users)
tracker = CapacityTracker(clock)
for agent, slots in AGENTS.items():
    tracker.add_worker(Worker(agent, capacity=slots, skills={agent}))
balancer = PowerOfTwoChoices(rng=random.Random(1))
llm_api = RateGate(RateLimiter(rate=100, per=60.0, burst=10, clock=clock), "api_calls")
breakers = {agent: CircuitBreaker(clock, minimum_calls=5, window_size=20) for agent in AGENTS}
retry = RetryPolicy(max_attempts=3, base=2.0, cap=30.0, jitter="full", rng=random.Random(2))
dead = DeadLetterQueue(clock)

events: list[tuple[float, int, str, object]] = []  # (time, seq, kind, data)
seq = itertools.count()
attempts: dict[object, int] = {}
permits: dict[object, int] = {}
waits = {plan: RecentSamples() for plan in PLANS}
enqueued_at: dict[object, float] = {}
completed = 0

# One hour of traffic; at minute 10 "acme" floods the platform with 400 tasks in 100 s.
for i in range(2500):
    user = rng.choice(list(users))
    intent = rng.choice(list(INTENTS))
    at = rng.uniform(0, 3600)
    heapq.heappush(events, (at, next(seq), "arrive", (f"task-{i}", user, intent)))
for i in range(400):
    heapq.heappush(events, (600.0 + i / 4, next(seq), "arrive", (f"flood-{i}", "acme", "general")))


def submit(task: Task) -> None:
    queue.push(task)
    enqueued_at[task.id] = clock.now()


def can_run(task: Task) -> bool:
    """Side-effect free: pop(where=...) may ask about several tasks."""
    agent = next(iter(task.requires))
    needs_api = "api_calls" in task.resources
    return (
        breakers[agent].state is not CircuitState.OPEN
        and bool(tracker.candidates(task))
        and (not needs_api or llm_api.limiter.can_acquire(1))
    )


def dispatch() -> None:
    while (task := queue.pop(where=can_run)) is not None:
        agent = next(iter(task.requires))
        permit = breakers[agent].acquire()
        if permit is None:  # its half-open probes are all out: try again later
            queue.release(task)
            queue.push(task, enqueued_at=enqueued_at[task.id])
            return
        permits[task.id] = permit
        worker = balancer.choose(task, tracker)
        if worker is None or not llm_api.try_acquire(task):
            raise RuntimeError(f"can_run() said {task.id} could run now")
        tracker.assign(task, worker.id)
        waits[users[task.tenant]].record(clock.now() - enqueued_at.pop(task.id))
        duration = 15.0 if agent == "research" else rng.uniform(0.8, 15.0)
        failed = agent == "research" and rng.random() < 0.4  # a flaky external API
        finish = (task, worker.id, failed, duration)
        heapq.heappush(events, (clock.now() + duration, next(seq), "finish", finish))


def handle(kind: str, data: object) -> None:
    global completed
    if kind == "arrive":
        task_id, user, intent = data
        priority, agent, api = INTENTS[intent]
        resources = {"api_calls": 1} if api else {}
        submit(Task(task_id, priority=priority, tenant=user, requires={agent}, group=intent,
                    resources=resources, cost=15.0 if agent == "research" else 5.0))  # fmt: skip
    elif kind == "finish":
        task, worker_id, failed, duration = data
        tracker.release(task, worker_id, duration=duration, ok=not failed)
        queue.release(task)
        permit = permits.pop(task.id)
        if not failed:
            breakers[worker_id].record_success(duration, permit=permit)
            completed += 1
            return
        breakers[worker_id].record_failure(duration, permit=permit)
        attempts[task.id] = attempt = attempts.get(task.id, 0) + 1
        if retry.should_retry(attempt):
            heapq.heappush(events, (clock.now() + retry.delay(attempt), next(seq), "retry", task))
        else:
            history = [f"attempt {n + 1} failed" for n in range(attempt)]
            dead.add(task, Reason.MAX_ATTEMPTS, history=history)
    elif kind == "retry":
        submit(data)


while events or queue:
    # Sleep until the next event, or until the queue, the rate limit or a
    # breaker has something to say: the components never need polling.
    timers = [queue.next_wakeup(), llm_api.next_wakeup()]
    timers += [breaker.next_wakeup() for breaker in breakers.values()]
    future = [t for t in timers if t is not None and t > clock.now()]
    if events:
        future.append(events[0][0])
    if not future:
        raise SystemExit(f"stuck: {len(queue)} tasks queued and nothing to wait for")
    clock.set(max(min(future), clock.now()))
    while events and events[0][0] <= clock.now():
        _, _, kind, data = heapq.heappop(events)
        handle(kind, data)
    dispatch()

submitted = 2500 + 400
reasons = sorted({d.reason.value for d in dead})
print(f"submitted {submitted}, completed {completed}, dead-lettered {len(dead)} {reasons}")
print(f"still queued {len(queue)}")
assert completed + len(dead) == submitted, "a task was lost"
for plan, samples in waits.items():
    p = samples.percentiles()
    print(f"{plan:>10}: {p.count:4d} dispatches, wait p50 {p.p50:6.1f} s, p95 {p.p95:6.1f} s")
fairness = queue.stats()
print(f"Jain's fairness index over tenants: {fairness.jain_index:.3f}")
not_closed = [agent for agent, b in breakers.items() if b.state is not CircuitState.CLOSED]
print(f"circuit breakers not closed at the end: {not_closed or 'none'}")
