"""The public API as users type it, from the package root: every name and call works."""

# ruff: noqa: B018, F405
from __future__ import annotations

import random
from typing import Any

from taskdist import *  # noqa: F403  # the names users type come from the package root


def test_the_design_api_sketch_runs_as_written() -> None:
    clock = ManualClock(start=0.0)
    t = Task(
        "t1",
        priority=Priority.HIGH,
        deadline=12.0,
        tenant="acme",
        key="user-7",
        requires={"research"},
        resources={"api_calls": 1},
        cost=2.5,
        ttl=60.0,
        max_attempts=3,
        group="summarise",
        zone="eu",
        payload={"x": 1},
    )
    w = Worker("w1", capacity=10, weight=1.0, skills={"research"}, zone="eu", cost=0.02)
    q = PriorityQueue(clock, aging_rate=0.1, maxsize=10_000, overflow="reject")
    q.push(t)
    q.pop()
    q.push(t)
    q.pop(where=lambda task: True)
    q.peek()
    q.push(t)
    q.remove("t1")
    assert len(q) == 0
    assert "t1" not in q
    assert q.expire() == []
    assert q.next_wakeup() is None
    q.push(t)
    assert q.effective_priority("t1") == Priority.HIGH
    ds = DeadlineScheduler(clock, servers=4, on_miss="run_late")
    assert ds.feasible(t)
    DeadlineScheduler(clock, servers=4, on_miss="dead_letter")
    fs = FairScheduler(
        clock,
        weights={"acme": 2.0},
        default_weight=1.0,
        quotas={"free-user": Quota(max_concurrent=2, rate=10, per=60.0)},
        plans={"free": Quota(max_concurrent=1), "pro": Quota(max_concurrent=5)},
        tenant_plan={"alice": "free"},
    )
    fs.push(t)
    x = fs.pop()
    assert x is not None
    fs.release(x)
    dlq = DeadLetterQueue()
    dlq.add(t, Reason.MAX_ATTEMPTS, history=["a"])
    dlq.redrive(["t1"], into=PriorityQueue(clock))

    class MyBalancer(Balancer):
        def select(self, task: Any, candidates: Any) -> Any:
            return candidates[0] if candidates else None

    (
        RoundRobin(),
        WeightedRoundRobin(),
        LeastConnections(),
        PowerOfTwoChoices(rng=random.Random(1)),
    )
    RandomBalancer(rng=random.Random(1)), ConsistentHash(vnodes=160, load_factor=1.25)
    (
        CapacityBased(),
        PerformanceBased(),
        MultiFactor(skill=0.4, availability=0.3, performance=0.2, cost=0.1),
        Affinity(fallback=RoundRobin()),
        ZoneAware(inner=RoundRobin()),
    )
    tracker = CapacityTracker(clock, ewma_alpha=0.2)
    tracker.add_worker(w)
    tracker.set_health("w1", Health.DEGRADED)
    tracker.set_health("w1", Health.HEALTHY)
    c = tracker.candidates(t)
    assert [state.id for state in c] == ["w1"]
    tracker.load_variance()
    tracker.utilization()
    tracker.assign(t, "w1")
    tracker.release(t, "w1", duration=None, ok=True)
    b = MyBalancer()
    b.on_assign(t, c[0])
    b.on_release(t, c[0])
    b.on_worker_added(c[0])
    b.on_worker_removed("w1")
    breaker = CircuitBreaker(
        clock,
        failure_rate_threshold=50.0,
        window="count",
        window_size=100,
        minimum_calls=10,
        slow_call_duration=5.0,
        slow_call_rate_threshold=100.0,
        open_duration=30.0,
        half_open_calls=3,
    )
    breaker.allow()
    breaker.record_success(1.0)
    breaker.record_failure(1.0)
    breaker.state
    breaker.call(lambda a: a, 1)

    @breaker
    def f() -> int:
        return 1

    f()
    with breaker:
        pass
    RetryPolicy(max_attempts=5, base=0.1, cap=30.0, jitter="full", rng=random.Random(1)).delay(1)
    rl = RateLimiter(rate=100, per=60.0, burst=10, clock=clock)
    rl.try_acquire(amount=1)
    rl.retry_after(amount=1)
    ResourcePool("db", size=20)
    bo = BatchOptimizer(clock, min_size=1, max_size=32, max_wait=0.05, key=lambda task: task.group)
    bo.add(Task("b1"))
    bo.poll()
    bo.flush()
    bo.next_wakeup()
    assert f() == 1
    assert breaker.state is CircuitState.CLOSED
