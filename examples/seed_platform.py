"""The seed platform end to end: an hour of traffic, one tenant flooding, every policy on.

Nine agent types, each a pool of workers, serve 40 tenants on free, pro and
enterprise plans. A host loop on a ManualClock (a small discrete-event
simulation: arrivals, dispatch, completions after sampled durations) drives
one Distributor wired with:

- a FairScheduler over tenants: plans with weights 1 / 2 / 4 and quotas;
- routes with fallback steps: summarisation and translation spill over to
  the writers after a minute without room;
- escalation of work that waits too long, preemption advice for urgent work;
- the LLM API at 100 requests a minute (RateGate) with an AdaptiveConcurrency
  gate that learns from its 429s, and a database pool of 20 (PoolGate);
- a RetryBudget, and intake rules: chat messages debounced per conversation,
  re-indexing throttled per document, code tasks limited per repository;
- an operator pausing the translation pool for a deploy.

Then it prints the seed's checklist, measured, and exits with status 1 if a
target is missed.

Run: python examples/seed_platform.py [--minutes 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Hashable

from taskdist import (
    AdaptiveConcurrency,
    CircuitBreaker,
    ConcurrencyLimit,
    Debounce,
    Distributor,
    Escalation,
    Event,
    EventKind,
    FairScheduler,
    ManualClock,
    Pool,
    PoolGate,
    PowerOfTwoChoices,
    Preemption,
    PriorityQueue,
    QueueFullError,
    Quota,
    QuotaExceededError,
    RateGate,
    RateLimiter,
    Reason,
    ResourcePool,
    RetryBudget,
    RetryPolicy,
    Route,
    Step,
    Task,
    TaskState,
    Throttle,
    Worker,
    coefficient_of_variation,
    jain_index,
    percentile,
)
from taskdist.sim import Check, fair_shares

# -- the platform ------------------------------------------------------------------------

AGENTS = {  # agent: (workers, slots each, mean seconds, calls the LLM API)
    "research": (4, 2, 80.0, True),
    "code": (4, 2, 60.0, False),
    "data-analysis": (4, 4, 50.0, False),
    "writing": (4, 3, 30.0, True),
    "review": (3, 2, 40.0, True),
    "planning": (2, 2, 60.0, True),
    "translation": (3, 3, 20.0, False),
    "summarisation": (4, 3, 16.0, False),
    "customer-support": (4, 4, 12.0, False),
}
# Writers can also summarise and translate: the fallback for those two pools.
EXTRA_SKILLS = {"writing": {"summarisation", "translation"}}
INTENTS = {  # intent: (priority, seconds to a deadline or None, agents it calls)
    "incident": (1, 300.0, ("customer-support", "code", "research")),
    "chat": (1, 120.0, ("customer-support", "translation")),
    "deciding": (2, 600.0, ("planning", "review", "data-analysis")),
    "drafting": (2, 600.0, ("writing", "translation", "summarisation")),
    "analysis": (3, 1800.0, ("data-analysis", "research", "code")),
    "reviewing": (3, None, ("review", "code", "writing")),
    "reporting": (4, None, ("summarisation", "writing", "data-analysis")),
    "indexing": (4, None, ("summarisation", "translation", "research")),
}
USES_DATABASE = {"data-analysis", "code"}  # a connection from the pool of 20 per task
PLANS = {
    "free": Quota(max_concurrent=4, rate=30, per=60.0, max_queued=200, weight=1.0),
    "pro": Quota(max_concurrent=10, max_queued=1_000, weight=2.0),
    "enterprise": Quota(max_concurrent=24, max_queued=5_000, weight=4.0),
}
TENANTS = (
    {f"free-{i}": "free" for i in range(28)}
    | {f"pro-{i}": "pro" for i in range(10)}
    | {"acme": "enterprise", "globex": "enterprise"}
)
SENDS = {"free": 1.0, "pro": 2.0, "enterprise": 4.0}  # how much each user sends, by plan
LOAD = 0.85  # busy slots over slots that the regular traffic asks for, per pool
AGING = 1 / 600  # within a tenant, a task gains one priority level per 10 minutes waited
FAILURE = 0.02  # attempts that fail for a transient reason (retried)
API_CAPACITY = (40, 12)  # calls the API takes at once: normally, and while degraded
# Phases, as shares of the run: acme floods, the API degrades, translation is paused.
FLOOD, DEGRADED, PAUSED = (0.25, 0.4), (0.35, 0.45), (0.6, 0.63)
FLOOD_RATE = 0.75  # acme's bulk tasks per second during its flood
BULK = (4, None, ("summarisation", "translation"))  # the flood: background, no deadline
# Waiting too long: priority 4 after 15 minutes, priority 3 after 10, or a deadline-bound
# task once it has used half its slack, rises one level (never above 1).
ESCALATION = Escalation(after={4: 900.0, 3: 600.0}, slack=0.5)

TARGETS = {  # the seed's checklist
    "latency_ms": 50.0,
    "load_variance": 0.10,
    "completion": 0.99,
    "deadlines": 0.95,
    "utilisation": 0.80,
    "fairness": 0.90,
}


def agent_of(task: Task) -> str:
    return next(iter(task.requires))


def pool_of(agent: str) -> Pool:
    """The workers of one agent type."""
    workers, _, _, _ = AGENTS[agent]
    return Pool(agent, workers={f"{agent}-{i}" for i in range(workers)})


def build(clock: ManualClock, seed: int) -> tuple[Distributor, AdaptiveConcurrency]:
    """The Distributor with every policy on, and its API gate (the report reads it)."""
    api = AdaptiveConcurrency(
        clock.now,
        initial=API_CAPACITY[0],
        maximum=API_CAPACITY[0],
        minimum=2,
        applies=lambda t: "api" in t.resources,
    )
    database = ResourcePool("db", size=20)
    # At most two code tasks at once per repository; the others wait their turn.
    per_repository = ConcurrencyLimit(
        key=lambda t: t.key if "code" in t.requires else None, limit=2, strategy="queue"
    )
    # Summarisation and translation spill over to the writers after a minute without room.
    spill_over = [
        Route(
            when=lambda t, agent=agent: agent in t.requires,
            name=agent,
            to=[pool_of(agent), Step(Pool(f"{agent} or writing", skills={agent}), after=60.0)],
        )
        for agent in ("summarisation", "translation")
    ]
    d = Distributor(
        clock,
        # Fair share across tenants by plan weight and quota; within a tenant, priority
        # with aging.
        queue=FairScheduler(
            clock,
            plans=PLANS,
            tenant_plan=TENANTS,
            inner=lambda clock: PriorityQueue(clock, aging_rate=AGING),
        ),
        balancer=PowerOfTwoChoices(rng=random.Random(seed)),  # evens the load in a pool
        breaker=lambda _: CircuitBreaker(clock, minimum_calls=20, open_duration=30.0),
        retry=RetryPolicy(max_attempts=4, base=2.0, cap=60.0, rng=random.Random(seed)),
        gates=[  # all or nothing: a task runs once every gate it needs admits it
            RateGate(RateLimiter(rate=100, per=60.0, burst=10, clock=clock), "api"),
            api,
            PoolGate(database),
        ],
        routes=spill_over,
        escalation=ESCALATION,
        preemption=Preemption(when=lambda t: t.priority <= 1),  # critical work only
        intake=[  # rules by key on arrival; a ConcurrencyLimit also gates dispatch
            per_repository,
            Debounce(key=lambda t: t.key if t.group == "chat" else None, window=3.0),
            Throttle(key=lambda t: t.key if t.group == "indexing" else None, window=300.0),
        ],
        retry_budget=RetryBudget(ratio=0.2, minimum=5, over="delay"),  # no retry storms
        lease=900.0,  # a run that never reports back is retried after 15 minutes
        max_queued=20_000,  # beyond it, submit() refuses: an overflow
        rng=random.Random(seed),
    )
    for agent, (workers, slots, _, _) in AGENTS.items():
        skills = {agent} | EXTRA_SKILLS.get(agent, set())
        for i in range(workers):
            d.add_worker(Worker(f"{agent}-{i}", capacity=slots, skills=skills))
    return d, api


# -- the traffic -------------------------------------------------------------------------


def duration(rng: random.Random, mean: float) -> float:
    """Log-normal, coefficient of variation 0.5."""
    sigma2 = math.log(1.25)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))


def resources_of(agent: str) -> dict[str, float]:
    """What a task of ``agent`` holds while it runs: an API call, a connection, or none."""
    if AGENTS[agent][3]:
        return {"api": 1}
    return {"db": 1} if agent in USES_DATABASE else {}


def key_of(agent: str, intent: str, tenant: str, rng: random.Random) -> str | None:
    """The key intake rules read: a repository, a conversation, a document."""
    if agent == "code":
        return f"repo-{rng.randrange(12)}"
    if intent == "chat":
        return f"{tenant}/conversation-{rng.randrange(3)}"
    if intent == "indexing":
        return f"doc-{rng.randrange(400)}"
    return None


def traffic(rng: random.Random, seconds: float) -> list[tuple[float, Task, float]]:
    """Every arrival of the run: (time, task, how long it really runs), in time order."""
    tenants = list(TENANTS)
    sends = [SENDS[TENANTS[t]] for t in tenants]
    callers = {a: [i for i, (_, _, called) in INTENTS.items() if a in called] for a in AGENTS}
    arrivals: list[tuple[float, str, str, str]] = []  # (time, tenant, intent, agent)
    for agent, (workers, slots, mean, _) in AGENTS.items():
        rate = LOAD * workers * slots / mean
        at = rng.expovariate(rate)
        while at < seconds:
            tenant = rng.choices(tenants, sends)[0]
            intent = rng.choice(callers[agent])
            arrivals.append((at, tenant, intent, agent))
            if intent == "chat" and rng.random() < 0.2:  # a second message, typed quickly
                arrivals.append((at + rng.uniform(0.5, 2.0), tenant, intent, agent))
            at += rng.expovariate(rate)
    at = FLOOD[0] * seconds
    while at < FLOOD[1] * seconds:  # acme's bulk job: archive summaries and translations
        arrivals.append((at, "acme", "bulk", rng.choice(BULK[2])))
        at += rng.expovariate(FLOOD_RATE)
    arrivals.sort()
    made = []
    for n, (at, tenant, intent, agent) in enumerate(arrivals):
        priority, due, _ = INTENTS.get(intent, BULK)
        key = key_of(agent, intent, tenant, rng)
        mean = AGENTS[agent][2]
        task = Task(
            n,
            priority=priority,
            deadline=None if due is None else at + due,
            tenant=tenant,
            key=key,
            requires={agent},
            resources=resources_of(agent),
            cost=mean,
            group=intent,
        )
        made.append((at, task, duration(rng, mean)))
    return made


# -- measuring priority ------------------------------------------------------------------


class PriorityWatch:
    """Counts priority inversions: a dispatch of task B on worker w while a task A of the
    same tenant, waiting in the queue for its first dispatch, ranked ahead of B and
    could have run on w.

    - *Ranked ahead*: by the platform's rule, priority aging one level per
      ``1 / AGING`` seconds waited: A's ``priority + AGING * submitted_at`` is
      below B's (priorities as they are now, escalations included; B's age
      counted from its submission, the most it can have).
    - *In the queue*: at the moment B was dispatched (followed from the events,
      in order), A was queued, not parked: a parked task is held by a gate, a
      pause, its concurrency key or its route, or was passed over because no
      worker of its pool had room.
    - *Could have run on w*: w serves A's agent type, or A has spilled over to
      the pool w is in.

    Across tenants, fair share decides on purpose (a flooding tenant's urgent work
    waits for its turn), so only a tenant's own order is priority's promise.
    """

    def __init__(self, d: Distributor, escalation: Escalation, agents: dict[Hashable, str]) -> None:
        self.d = d
        self.escalation = escalation
        self.agents = agents  # worker id -> the agent type of its pool
        # (tenant, agent) -> priority -> [(submitted at, id)], oldest first
        self.waiting: dict[tuple[Hashable, str], dict[int, list[tuple[float, int]]]] = {}
        self.tasks: dict[Hashable, tuple[Task, float]] = {}  # waiting id -> (task now, at)
        self.queued: set[Hashable] = set()
        self.spilled: set[Hashable] = set()
        self.submitted_at: dict[Hashable, float] = {}
        self.count = 0

    def _line(self, task: Task) -> list[tuple[float, int]]:
        levels = self.waiting.setdefault((task.tenant, agent_of(task)), {})
        return levels.setdefault(task.priority, [])

    def submitted(self, task: Task, at: float) -> None:
        self.submitted_at[task.id] = at
        self.tasks[task.id] = (task, at)
        bisect.insort(self._line(task), (at, task.id))

    def gone(self, task_id: Hashable) -> None:
        """Dispatched for the first time, refused, cancelled or dead-lettered."""
        entry = self.tasks.pop(task_id, None)
        if entry is not None:
            task, at = entry
            line = self._line(task)
            del line[bisect.bisect_left(line, (at, task_id))]
            self.queued.discard(task_id)
            self.spilled.discard(task_id)

    def on_event(self, event: Event) -> None:
        kind, task_id = event.kind, event.task_id
        if task_id not in self.tasks and kind is not EventKind.DISPATCHED:
            return
        if kind in (EventKind.SUBMITTED, EventKind.UNPARKED):
            self.queued.add(task_id)
        elif kind is EventKind.PARKED:
            self.queued.discard(task_id)
        elif kind is EventKind.REROUTED:
            self.spilled.add(task_id)
        elif kind is EventKind.ESCALATED:
            task, at = self.tasks[task_id]
            queued = task_id in self.queued
            self.gone(task_id)
            raised = Task(task_id, priority=self.escalation.raised(task), tenant=task.tenant,
                          requires=task.requires)  # fmt: skip
            self.submitted(raised, at)
            if queued:
                self.queued.add(task_id)
        elif kind is EventKind.DISPATCHED:
            self.dispatched(task_id, event.worker_id)
        elif kind in (EventKind.CANCELLED, EventKind.DEAD_LETTERED):
            self.gone(task_id)

    def dispatched(self, task_id: Hashable, worker_id: Hashable) -> None:
        """Task B went to worker w: was a task ranked ahead of it passed over?"""
        self.gone(task_id)
        task = self.d.assignment(task_id).task
        rank = task.priority + AGING * self.submitted_at[task_id]
        agent = self.agents[worker_id]
        for skill in self.d.tracker.worker(worker_id).skills:
            levels = self.waiting.get((task.tenant, skill), {})
            for priority, line in levels.items():
                if priority >= task.priority:
                    continue
                for at, other in line:
                    if priority + AGING * at >= rank:
                        break  # the rest of the line ranks after B
                    could_run_here = skill == agent or other in self.spilled
                    if could_run_here and other in self.queued:
                        self.count += 1
                        return


# -- the host ----------------------------------------------------------------------------


class Platform:
    """Plays the world around the Distributor: users, workers, the API, an operator."""

    def __init__(self, minutes: float, seed: int) -> None:
        self.seconds = minutes * 60.0
        self.rng = random.Random(seed)
        self.clock = ManualClock()
        self.kinds: Counter[EventKind] = Counter()
        self.advice: list[tuple[Hashable, ...]] = []
        self.d, self.api = build(self.clock, seed)
        self.agents = {w: a for a in AGENTS for w in pool_of(a).workers or ()}
        self.watch = PriorityWatch(self.d, ESCALATION, self.agents)
        self.d.add_listener(self.on_event)
        self.workers = {w.id: Worker(w.id, capacity=w.capacity, skills=w.skills)
                        for w in self.d.tracker.workers()}  # fmt: skip
        self.timeline: list[tuple[float, int, str, object]] = []  # (time, seq, what, data)
        self.sequence = itertools.count()
        # task id -> (run token, worker, started at); the token tells a stale report
        self.running: dict[Hashable, tuple[object, Hashable, float]] = {}
        self.api_calls = 0
        self.tasks: dict[Hashable, tuple[Task, float, float]] = {}  # id -> (task, at, runs for)
        self.cancelled: set[Hashable] = set()
        self.refused = self.duplicates = self.completed = self.deadlines_met = 0
        self.busy: Counter[Hashable] = Counter()  # worker -> busy slot-seconds in the run
        self.served: Counter[Hashable] = Counter()  # tenant -> the same
        self.latencies: list[float] = []
        self.api_limit_low = float(API_CAPACITY[0])

    # -- what the Distributor says --------------------------------------------------

    def on_event(self, event: Event) -> None:
        self.kinds[event.kind] += 1
        self.watch.on_event(event)
        if event.kind is EventKind.PREEMPT:
            self.advice.append(event.victims)
        elif event.kind is EventKind.CANCELLED:
            self.cancelled.add(event.task_id)

    # -- the world ----------------------------------------------------------------------

    def later(self, at: float, what: str, data: object = None) -> None:
        heapq.heappush(self.timeline, (at, next(self.sequence), what, data))

    def api_capacity(self, now: float) -> int:
        degraded = DEGRADED[0] * self.seconds <= now < DEGRADED[1] * self.seconds
        return API_CAPACITY[1] if degraded else API_CAPACITY[0]

    def arrive(self, task: Task, runs_for: float) -> None:
        now = self.clock.now()
        self.watch.submitted(task, now)  # before submit: its events arrive during the call
        try:
            result = self.d.submit(task)
        except (QueueFullError, QuotaExceededError):
            self.refused += 1  # overflow: the target is none
            self.watch.gone(task.id)
            return
        if not result.accepted:
            self.duplicates += 1  # throttled at intake: the same document within 5 minutes
            self.watch.gone(task.id)
            return
        self.tasks[task.id] = (task, now, runs_for)

    def dispatch(self) -> None:
        while True:
            began = time.perf_counter()
            made = self.d.dispatch()
            if made:
                self.latencies.append(time.perf_counter() - began)
            for assignment in made:
                self.start(assignment.task, assignment.worker_id)
            if not self.preempt():
                return

    def preempt(self) -> bool:
        """The host's side of preemption: give back background work only."""
        freed = False
        for victims in self.advice:
            for victim in victims:
                if victim in self.running and self.tasks[victim][0].priority >= 4:
                    self.d.preempt(victim)
                    self.stop(victim)
                    freed = True
                    break
        self.advice.clear()
        return freed

    def start(self, task: Task, worker_id: Hashable) -> None:
        now = self.clock.now()
        runs_for = self.tasks[task.id][2]
        token = object()
        self.running[task.id] = (token, worker_id, now)
        if "api" in task.resources:
            self.api_calls += 1
            if self.api_calls > self.api_capacity(now):
                self.later(now + 1.0, "429", (task.id, token))
                return
        if self.rng.random() < FAILURE:
            self.later(now + runs_for / 2, "failed", (task.id, token))
        else:
            self.later(now + runs_for, "done", (task.id, token))

    def stop(self, task_id: Hashable) -> float:
        """The run of ``task_id`` ends now: account its busy time; how long it ran."""
        _, worker_id, started = self.running.pop(task_id)
        task = self.tasks[task_id][0]
        now = self.clock.now()
        if "api" in task.resources:
            self.api_calls -= 1
        in_window = max(0.0, min(now, self.seconds) - started)
        self.busy[worker_id] += in_window
        self.served[task.tenant] += in_window
        return now - started

    def report(self, what: str, data: object) -> None:
        task_id, token = data  # type: ignore[misc]
        if self.running.get(task_id, (None,))[0] is not token:
            return  # preempted since: that run was stopped
        ran = self.stop(task_id)
        if what == "done":
            self.d.complete(task_id, duration=ran)
            self.completed += 1
            deadline = self.tasks[task_id][0].deadline
            if deadline is not None and self.clock.now() <= deadline:
                self.deadlines_met += 1
        elif what == "failed":
            self.d.fail(task_id, error="TransientError: the agent crashed", duration=ran)
        else:
            self.d.fail(task_id, error="429 Too Many Requests", throttled=True, retry_after=15.0)
            self.api_limit_low = min(self.api_limit_low, self.api.limit)

    def operate(self, what: str, data: object) -> None:
        """The operator: pause the translation pool for a deploy, then resume it."""
        if what == "pause":
            self.d.pause(pool=pool_of("translation"))
        else:
            self.d.resume(pool=pool_of("translation"))

    # -- the run --------------------------------------------------------------------------

    def run(self) -> None:
        clock, d = self.clock, self.d
        arrivals = traffic(self.rng, self.seconds)
        self.later(PAUSED[0] * self.seconds, "pause")
        self.later(PAUSED[1] * self.seconds, "resume")
        next_arrival = 0
        while True:
            due = [d.next_wakeup()]
            if self.timeline:
                due.append(self.timeline[0][0])
            if next_arrival < len(arrivals):
                due.append(arrivals[next_arrival][0])
            soonest = min((t for t in due if t is not None), default=None)
            if soonest is None:
                break
            clock.set(max(clock.now(), soonest))
            now = clock.now()
            while next_arrival < len(arrivals) and arrivals[next_arrival][0] <= now:
                _, task, runs_for = arrivals[next_arrival]
                self.arrive(task, runs_for)
                next_arrival += 1
            while self.timeline and self.timeline[0][0] <= now:
                _, _, what, data = heapq.heappop(self.timeline)
                if what in ("pause", "resume"):
                    self.operate(what, data)
                else:
                    self.report(what, data)
            self.dispatch()
        if len(d):
            sys.exit(f"stuck: {len(d)} tasks left, e.g. {d.explain(next(iter(self.watch.tasks)))}")

    # -- the checklist --------------------------------------------------------------------

    def checklist(self) -> list[Check]:
        accepted = len(self.tasks) - len(self.cancelled)  # a debounced chat message merges
        completion = self.completed / accepted
        with_deadline = [t for t, _, _ in self.tasks.values()
                         if t.deadline is not None and t.id not in self.cancelled]  # fmt: skip
        deadlines = self.deadlines_met / len(with_deadline) if with_deadline else 1.0
        slots = {w.id: w.slots for w in self.workers.values()}
        utilisation = sum(self.busy.values()) / (sum(slots.values()) * self.seconds)
        spread = {}
        for agent in AGENTS:
            ids = sorted(pool_of(agent).workers or ())
            spread[agent] = coefficient_of_variation(
                [self.busy[w] / (slots[w] * self.seconds) for w in ids]
            )
        worst = max(spread, key=spread.__getitem__)
        demand: Counter[Hashable] = Counter()
        for task, _, runs_for in self.tasks.values():
            if task.id not in self.cancelled:
                demand[task.tenant] += runs_for
        weights = {t: PLANS[plan].weight or 1.0 for t, plan in TENANTS.items()}
        shares = fair_shares(dict(demand), weights, sum(self.served.values()))
        fairness = jain_index([self.served[t] / s for t, s in shares.items() if s > 0])
        p99_ms = percentile(sorted(self.latencies), 99) * 1e3
        overflow = self.refused + self.d.stats().dead_by_reason.get(Reason.EVICTED, 0)
        inversions = self.watch.count
        return [
            Check("distribution latency", f"< {TARGETS['latency_ms']:g} ms",
                  f"p99 {p99_ms:.2f} ms per dispatch() call", p99_ms < TARGETS["latency_ms"]),
            Check("load variance", f"< {TARGETS['load_variance']:.0%}",
                  f"{spread[worst]:.1%} (worst pool: {worst})",
                  spread[worst] < TARGETS["load_variance"]),
            Check("task completion", f"> {TARGETS['completion']:.0%}",
                  f"{completion:.2%} of {accepted}", completion > TARGETS["completion"]),
            Check("priority respected", "100%",
                  f"{1 - inversions / self.d.stats().dispatched:.2%} ({inversions} inversions)",
                  inversions == 0),
            Check("deadlines met", f"> {TARGETS['deadlines']:.0%}",
                  f"{deadlines:.2%} of {len(with_deadline)}", deadlines > TARGETS["deadlines"]),
            Check("utilisation", f"> {TARGETS['utilisation']:.0%}", f"{utilisation:.1%}",
                  utilisation > TARGETS["utilisation"]),
            Check("no queue overflow", "0 refused", f"{overflow} refused", overflow == 0),
            Check("fairness", f"Jain >= {TARGETS['fairness']}",
                  f"{fairness:.3f} (served / fair share)", fairness >= TARGETS["fairness"]),
        ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated minutes of traffic")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    platform = Platform(args.minutes, args.seed)
    platform.run()
    wall = time.perf_counter() - began
    stats = platform.d.stats()
    k = platform.kinds
    print(
        f"{args.minutes:g} simulated minutes in {wall:.1f} s: {len(platform.tasks)} tasks accepted "
        f"from {len(TENANTS)} tenants on {len(platform.workers)} workers; acme floods"
    )
    print(
        f"  flow control: {k[EventKind.THROTTLED]} throttled by the API (429), adaptive "
        f"limit down to {platform.api_limit_low:.1f}; {platform.duplicates} re-indexings "
        f"throttled; {len(platform.cancelled)} chat messages debounced; "
        f"{k[EventKind.PARKED]} parks"
    )
    print(
        f"  placement: {k[EventKind.REROUTED]} spilled over to the writers, "
        f"{k[EventKind.ESCALATED]} escalations, {k[EventKind.PREEMPT]} preempt advices, "
        f"{k[EventKind.PREEMPTED]} preempted; {stats.retries} retries, "
        f"{stats.by_state[TaskState.DEAD]} dead-lettered"
    )
    checks = platform.checklist()
    for check in checks:
        print(f"  {check.verdict:4}  {check.name:22} {check.target:12} {check.measured}")
    missed = [c.name for c in checks if not c.passed]
    print("every target met" if not missed else f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
