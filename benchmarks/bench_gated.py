"""The cost of a placement when many tasks wait behind a rate limit.

Every task is charged one unit of a ``RateGate`` that refills one unit every
0.6 s (100 a minute, burst 1), and the workers have room for all of them: the
gate alone holds N tasks back. One step moves the clock to the Distributor's
``next_wakeup()``, dispatches (one task passes the gate) and completes what
was placed. Once a task has passed, the gate has less left than any task
asks for: it holds back every task, so dispatch stops at the first refusal
and the tasks stay queued, and a placement costs one look into the queue
whatever N. Where the walk cannot be ended so (a factory of the user's makes
the tenant queues), the tasks the gates refuse are parked in classes of
tasks that every placement check treats alike, and at a refill the first of
each class goes back to the queue (with a factory that ranks no task, every
refused task). The first dispatch is left out of the timing. Six queues: a
``PriorityQueue``; a ``FairScheduler`` over 10 tenants; one sharing each
tenant's turns among 5 keys (``inner=KeyShare()``); the same two levels from
a factory of the user's; a ``DeadlineScheduler``; and a ``FairScheduler``
over 10 tenants of ``inner=DeadlineScheduler`` (tasks with far deadlines).
``--tenants`` runs a ``FairScheduler`` over that many tenants instead, every
task of priority 2. ``--buckets`` gives instead each of that many tenants a
bucket of its own (a ``KeyedRateGate`` of one task a minute), the tenants
coming in a moment apart so that their buckets refill a moment apart, three
tasks each: each refill lets one tenant's next task through, and the other
tenants' tasks stay parked (with a ``PriorityQueue``, a ``FairScheduler``, a
``DeadlineScheduler`` and ``FairScheduler(inner=DeadlineScheduler)``).

Smoke sizes under plain pytest; ``TASKDIST_BENCH_FULL=1`` for the full ones.
Run as a script (``python benchmarks/bench_gated.py``) for the Markdown
table recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import time

import pytest
from sizing import sizes

from taskdist import (
    DeadlineScheduler,
    Distributor,
    FairScheduler,
    KeyedRateGate,
    KeyedRateLimiter,
    KeyShare,
    ManualClock,
    PriorityQueue,
    RateGate,
    RateLimiter,
    Task,
    Worker,
)

QUEUES = (
    "PriorityQueue",
    "FairScheduler",
    "KeyShare",
    "nested factory",
    "DeadlineScheduler",
    "deadlines per tenant",
)
# The queues whose tasks carry deadlines (far off, so that every one is on time).
DEADLINED = ("DeadlineScheduler", "deadlines per tenant")
# The queues ``--buckets`` runs.
BUCKET_QUEUES = ("PriorityQueue", "FairScheduler", "DeadlineScheduler", "deadlines per tenant")


def make_queue(queue: str, clock: ManualClock) -> PriorityQueue | FairScheduler | DeadlineScheduler:
    """The queue named in ``QUEUES``, on ``clock``."""
    if queue == "PriorityQueue":
        return PriorityQueue(clock)
    if queue == "FairScheduler":
        return FairScheduler(clock)
    if queue == "KeyShare":
        return FairScheduler(clock, inner=KeyShare())
    if queue == "DeadlineScheduler":
        return DeadlineScheduler(clock)
    if queue == "deadlines per tenant":
        return FairScheduler(clock, inner=DeadlineScheduler)
    # The same two levels from a factory of the user's: the Distributor cannot rank its
    # tasks without holding them, so every refused task goes back at each refill.
    return FairScheduler(clock, inner=lambda c, t: FairScheduler(c, tenant_of=lambda t: t.key))


def behind(
    gate: RateGate | KeyedRateGate, queue: str, clock: ManualClock, capacity: int
) -> Distributor:
    """A Distributor over the queue named in ``QUEUES`` behind ``gate``, with 20 workers
    of ``capacity`` slots each (room for every task: the gate alone holds them back)."""
    d = Distributor(clock, queue=make_queue(queue, clock), gates=[gate])
    for i in range(20):
        d.add_worker(Worker(i, capacity=capacity))
    return d


def gated(waiting: int, queue: str = "PriorityQueue", tenants: int | None = None) -> Distributor:
    """A Distributor with ``waiting`` tasks queued behind a gate of 100 a minute (over
    10 tenants with a ``FairScheduler``, and 5 keys each with two levels; ``tenants``:
    over that many, every task of priority 2, so one class a tenant)."""
    clock = ManualClock()
    limiter = RateLimiter(100, per=60.0, burst=1, clock=clock)
    d = behind(RateGate(limiter, "api", default=1), queue, clock, capacity=waiting)
    if tenants is not None:
        for i in range(waiting):
            d.submit(Task(i, priority=2, tenant=i % tenants))
        return d
    tenants = 1 if queue in ("PriorityQueue", "DeadlineScheduler") else 10
    keys = 5 if queue in ("KeyShare", "nested factory") else 1
    for i in range(waiting):
        deadline = 1e6 + i if queue in DEADLINED else None
        d.submit(
            Task(
                i,
                priority=i % 4,
                tenant=i % tenants,
                key=i // tenants % keys,
                deadline=deadline,
                cost=0.01,
            )
        )
    return d


def bucketed(tenants: int, queue: str) -> Distributor:
    """A Distributor whose ``tenants`` each have a bucket of one task a minute, come in
    ``60 / tenants`` seconds apart with three tasks each, the first of each placed."""
    clock = ManualClock()
    limiter = KeyedRateLimiter(1, per=60.0, burst=1, clock=clock)
    d = behind(KeyedRateGate(limiter, "api", default=1), queue, clock, capacity=3 * tenants)
    for tenant in range(tenants):
        clock.set(tenant * 60.0 / tenants)
        for i in range(3):
            deadline = 1e6 + tenant if queue in DEADLINED else None
            d.submit(Task((tenant, i), priority=2, tenant=tenant, deadline=deadline, cost=0.01))
        for assignment in d.dispatch():
            d.complete(assignment.task.id)
    return d


def place(d: Distributor, clock: ManualClock, placements: int) -> int:
    """Run until ``placements`` tasks are placed (or none is left); return the dispatch
    calls made."""
    placed = calls = 0
    while placed < placements and len(d):
        wake = d.next_wakeup()
        if wake is not None:
            clock.set(wake)
        made = d.dispatch()
        calls += 1
        placed += len(made)
        for assignment in made:
            d.complete(assignment.task.id)
    return calls


@pytest.mark.parametrize("queue", QUEUES)
@pytest.mark.parametrize("waiting", sizes([100, 1_000, 10_000], [100]))
def bench_placement_behind_a_rate_gate(benchmark, waiting: int, queue: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"placement behind a rate gate, {waiting} waiting"
    d = gated(waiting, queue)
    clock = d.clock
    assert isinstance(clock, ManualClock)
    benchmark(place, d, clock, 5)
    assert len(d) < waiting  # placements happened


@pytest.mark.parametrize("queue", BUCKET_QUEUES)
@pytest.mark.parametrize("tenants", sizes([100, 1_000, 3_000], [100]))
def bench_placement_behind_a_bucket_per_tenant(benchmark, tenants: int, queue: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"placement behind a bucket per tenant, {tenants} tenants"
    d = bucketed(tenants, queue)
    clock = d.clock
    assert isinstance(clock, ManualClock)
    benchmark(place, d, clock, 5)
    assert len(d) < 2 * tenants  # placements happened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--placements", type=int, default=50)
    parser.add_argument(
        "--tenants",
        type=int,
        nargs="+",
        help="instead: a FairScheduler over this many tenants, one class each",
    )
    parser.add_argument(
        "--buckets",
        type=int,
        nargs="+",
        help="instead: this many tenants, each with a bucket of its own",
    )
    args = parser.parse_args()
    if args.buckets:
        print("| tenants, a bucket each | " + " | ".join(BUCKET_QUEUES) + " |")
        print("|---:|" + "---:|" * len(BUCKET_QUEUES))
        for tenants in args.buckets:
            cells = []
            for queue in BUCKET_QUEUES:
                d = bucketed(tenants, queue)
                clock = d.clock
                assert isinstance(clock, ManualClock)
                began = time.thread_time()
                place(d, clock, args.placements)
                cells.append(f"{(time.thread_time() - began) / args.placements * 1e3:.3f}")
            print(f"| {tenants:,} | " + " | ".join(cells) + " |")
        return
    if args.tenants:
        print("| tenants (classes) | " + " | ".join(f"{w:,} waiting" for w in args.waiting) + " |")
        print("|---:|" + "---:|" * len(args.waiting))
        for tenants in args.tenants:
            cells = []
            for waiting in args.waiting:
                d = gated(waiting, "FairScheduler", tenants)
                clock = d.clock
                assert isinstance(clock, ManualClock)
                place(d, clock, 1)
                began = time.thread_time()
                place(d, clock, args.placements)
                cells.append(f"{(time.thread_time() - began) / args.placements * 1e3:.2f}")
            print(f"| {tenants:,} | " + " | ".join(cells) + " |")
        return
    print("| tasks waiting behind the gate | " + " | ".join(QUEUES) + " |")
    print("|---:|" + "---:|" * len(QUEUES))
    for waiting in args.waiting:
        if args.placements >= waiting:
            parser.error(f"--placements must be fewer than the {waiting} tasks waiting")
        cells = []
        for queue in QUEUES:
            d = gated(waiting, queue)
            clock = d.clock
            assert isinstance(clock, ManualClock)
            place(d, clock, 1)  # the first dispatch parks all but one: once, not per placement
            began = time.thread_time()
            place(d, clock, args.placements)
            spent = time.thread_time() - began
            cells.append(f"{spent / args.placements * 1e3:.3f}")
        print(f"| {waiting:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
