"""FairScheduler: a steady pop + release + push cycle at 10, 1e3 and 1e5 backlogged tenants.

Side by side with the obvious alternative, a fair queue that scans every
backlogged tenant for the smallest virtual start on each pop (what a
round-robin loop over tenants amounts to: O(tenants) per pop), and with a
plain ``PriorityQueue`` holding the same tasks, which is the floor: the cost
of a queue with no fairness at all.

Each round dispatches ``OPS`` tasks; every dispatched task is released and
pushed straight back, so the backlog stays at ``BACKLOG`` tasks per tenant.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from sizing import sizes

from taskdist import FairScheduler, ManualClock, PriorityQueue, Task

TENANTS = sizes(full=[10, 1_000, 100_000], smoke=[10, 100])
BACKLOG = 2
OPS = 500


def workload(tenants: int, *, deadline: float | None = None) -> list[Task]:
    rng = random.Random(tenants)
    return [
        Task(
            (t, k),
            tenant=t,
            key=k % 2,
            cost=rng.uniform(0.5, 2.0),
            priority=rng.randrange(4),
            deadline=deadline,
        )
        for k in range(BACKLOG)
        for t in range(tenants)
    ]


class LinearScanFair:
    """Start-time fair queueing by a scan: per-tenant FIFO deques, smallest tag found in O(T)."""

    def __init__(self) -> None:
        self.queues: dict[Hashable, deque[Task]] = {}
        self.start: dict[Hashable, float] = {}
        self.virtual = 0.0

    def push(self, task: Task) -> None:
        queue = self.queues.get(task.tenant)
        if queue is None:
            queue = self.queues[task.tenant] = deque()
        if not queue:
            self.start[task.tenant] = max(self.start.get(task.tenant, 0.0), self.virtual)
        queue.append(task)

    def pop(self) -> Task | None:
        best = None
        best_start = 0.0
        for tenant, queue in self.queues.items():
            if queue and (best is None or self.start[tenant] < best_start):
                best, best_start = tenant, self.start[tenant]
        if best is None:
            return None
        task = self.queues[best].popleft()
        self.virtual = best_start
        self.start[best] = best_start + task.cost
        return task


def fair_cycle(tenants: int, **options: Any) -> Callable[[], Any]:
    """The cycle on ``FairScheduler(**options)``; with ``deadline_aware``, every task has a
    deadline far ahead (the check runs on every pop, nothing is ever urgent)."""
    fair = FairScheduler(ManualClock(), **options)
    deadline = 1e12 if options.get("deadline_aware") else None
    for task in workload(tenants, deadline=deadline):
        fair.push(task)

    def cycle() -> None:
        pop, release, push = fair.pop, fair.release, fair.push
        for _ in range(OPS):
            task = pop()
            assert task is not None
            release(task)
            push(task)

    return cycle


def scan_cycle(tenants: int) -> Callable[[], Any]:
    scan = LinearScanFair()
    for task in workload(tenants):
        scan.push(task)

    def cycle() -> None:
        for _ in range(OPS):
            task = scan.pop()
            assert task is not None
            scan.push(task)

    return cycle


def priority_cycle(tenants: int) -> Callable[[], Any]:
    queue = PriorityQueue(ManualClock())
    for task in workload(tenants):
        queue.push(task)

    def cycle() -> None:
        for _ in range(OPS):
            task = queue.pop()
            assert task is not None
            queue.push(task)

    return cycle


def aware_cycle(tenants: int) -> Callable[[], Any]:
    return fair_cycle(tenants, deadline_aware=True)


def nested_cycle(tenants: int) -> Callable[[], Any]:
    """Each tenant's queue a FairScheduler over its tasks' keys (2 keys a tenant)."""
    if tenants > 10_000:
        pytest.skip("a scheduler per tenant and a queue per key: gigabytes at 1e5 tenants")
    return fair_cycle(
        tenants, inner=lambda clock, tenant: FairScheduler(clock, tenant_of=lambda t: t.key)
    )


@pytest.mark.parametrize("tenants", TENANTS)
@pytest.mark.parametrize(
    "make",
    [fair_cycle, aware_cycle, nested_cycle, scan_cycle, priority_cycle],
    ids=["FairScheduler", "deadline-aware", "nested", "linear-scan", "PriorityQueue"],
)
def test_pop_release_push_cycle(
    benchmark: Any, make: Callable[[int], Callable[[], Any]], tenants: int
) -> None:
    benchmark.group = f"fair pop, {tenants} tenants"
    benchmark(make(tenants))


def test_fair_and_scan_serve_the_same_shares() -> None:
    """The alternative is a faithful one: both split 300 dispatches evenly over 3 tenants."""
    fair = FairScheduler(ManualClock())
    scan = LinearScanFair()
    for task in workload(3):
        fair.push(task)
        scan.push(task)
    for queue in (fair, scan):
        served: dict[Hashable, float] = {}
        for _ in range(300):
            task = queue.pop()
            assert task is not None
            served[task.tenant] = served.get(task.tenant, 0.0) + task.cost
            if queue is fair:
                fair.release(task)
            queue.push(task)
        assert max(served.values()) - min(served.values()) <= 2 * 2.0  # the lag bound
