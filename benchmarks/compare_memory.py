"""Print the memory a queued task costs beyond the Task itself, per queue configuration.

    python benchmarks/compare_memory.py [--sizes 10000 100000 1000000] [--tables]

tracemalloc around the pushes, with the real monotonic clock (each push reads
a fresh float, as in a host). The index dict's share swings with its fill
(about 35 to 60 bytes a task), hence several sizes. Prints a Markdown table
for docs/performance.md; ``tests/test_queue_memory.py`` holds the
configurations that meet it to 200 bytes, and a FairScheduler's TTLs to no
second timer. ``--tables`` prints instead what each level's id tables cost in the
nested configuration (``sys.getsizeof``, bytes a task; a table the levels share, as
they do now, counts once, at the outer level).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

from taskdist import DeadlineScheduler, FairScheduler, MonotonicClock, PriorityQueue, Quota, Task


def bytes_per_task(make: Callable[[], object], tasks: list[Task]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        queue = make()
        before = tracemalloc.get_traced_memory()[0]
        push = queue.push  # type: ignore[attr-defined]
        for task in tasks:
            push(task)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / len(tasks)


def workload(
    n: int,
    *,
    deadline: bool = False,
    ttl: bool = False,
    mixed_ttl: bool = False,
    tenants: int | None = None,
    tenant_each: bool = False,
) -> list[Task]:
    """``n`` tasks; with ``ttl`` each has the same TTL (expiries in push order), with
    ``mixed_ttl`` one drawn from 1e5 to 1e6 seconds (expiries out of order); spread
    over ``tenants``, or with ``tenant_each`` each of a tenant of its own."""
    if tenant_each:
        tenants = n
    rng = random.Random(n)
    return [
        Task(
            i,
            priority=rng.randint(1, 4),
            deadline=1e9 + rng.uniform(0, 1e6) if deadline else None,
            cost=0.001,
            ttl=1e6 if ttl else rng.uniform(1e5, 1e6) if mixed_ttl else None,
            tenant=None if tenants is None else i % tenants,
            key=None if tenants is None else i % 7,
        )
        for i in range(n)
    ]


NESTED = "FairScheduler nested (tenant, then 7 keys), 100 tenants"


def nested(clock: MonotonicClock) -> FairScheduler:
    return FairScheduler(clock, inner=lambda c, t: FairScheduler(c, tenant_of=lambda t: t.key))


CONFIGS: dict[str, tuple[Callable[[], object], dict[str, Any]]] = {
    "PriorityQueue()": (lambda: PriorityQueue(MonotonicClock()), {}),
    "PriorityQueue(aging_rate=0.1)": (lambda: PriorityQueue(MonotonicClock(), aging_rate=0.1), {}),
    "PriorityQueue(), every task with a TTL": (
        lambda: PriorityQueue(MonotonicClock()),
        {"ttl": True},
    ),
    "PriorityQueue(), TTLs of mixed lengths": (
        lambda: PriorityQueue(MonotonicClock()),
        {"mixed_ttl": True},
    ),
    "PriorityQueue(maxsize, drop_lowest)": (
        lambda: PriorityQueue(MonotonicClock(), maxsize=10**8, overflow="drop_lowest"),
        {},
    ),
    "DeadlineScheduler()": (lambda: DeadlineScheduler(MonotonicClock()), {"deadline": True}),
    "DeadlineScheduler(servers=4)": (
        lambda: DeadlineScheduler(MonotonicClock(), servers=4),
        {"deadline": True},
    ),
    "DeadlineScheduler(on_miss='dead_letter')": (
        lambda: DeadlineScheduler(MonotonicClock(), on_miss="dead_letter"),
        {"deadline": True},
    ),
    "DeadlineScheduler(), every task with a TTL": (
        lambda: DeadlineScheduler(MonotonicClock()),
        {"deadline": True, "ttl": True},
    ),
    "DeadlineScheduler(on_miss='dead_letter'), every task with a TTL": (
        lambda: DeadlineScheduler(MonotonicClock(), on_miss="dead_letter"),
        {"deadline": True, "ttl": True},
    ),
    "DeadlineScheduler(aging_rate=0.1, on_miss='dead_letter')": (
        lambda: DeadlineScheduler(MonotonicClock(), aging_rate=0.1, on_miss="dead_letter"),
        {"deadline": True},
    ),
    "FairScheduler(), 100 tenants": (lambda: FairScheduler(MonotonicClock()), {"tenants": 100}),
    "FairScheduler(), a tenant per task": (
        lambda: FairScheduler(MonotonicClock()),
        {"tenant_each": True},
    ),
    "FairScheduler(), 100 tenants, every task with a TTL": (
        lambda: FairScheduler(MonotonicClock()),
        {"tenants": 100, "ttl": True},
    ),
    "FairScheduler(critical_bypass, plans), 100 tenants": (
        lambda: FairScheduler(
            MonotonicClock(),
            critical_bypass=True,
            plans={"free": Quota(max_concurrent=5, rate=10, per=60.0)},
            default_plan="free",
        ),
        {"tenants": 100},
    ),
    "FairScheduler(deadline_aware), 100 tenants, every task with a deadline": (
        lambda: FairScheduler(MonotonicClock(), deadline_aware=True),
        {"tenants": 100, "deadline": True},
    ),
    "FairScheduler(inner=DeadlineScheduler), 100 tenants, deadlines": (
        lambda: FairScheduler(MonotonicClock(), inner=DeadlineScheduler),
        {"tenants": 100, "deadline": True},
    ),
    NESTED: (lambda: nested(MonotonicClock()), {"tenants": 100}),
}


def id_table_bytes(n: int) -> dict[str, float]:
    """Bytes a task of each level's id tables in the nested configuration, once ``n``
    tasks are queued. Reads the schedulers' private fields: a breakdown, not an API."""
    make, options = CONFIGS[NESTED]
    outer: Any = make()
    for task in workload(n, **options):
        outer.push(task)
    inner = [rec.inner for rec in outer._tenants.values()]
    keys = [rec.inner for scheduler in inner for rec in scheduler._tenants.values()]
    counted: set[int] = set()

    def tables(holders: list[Any]) -> float:
        """Bytes a task of the tables these hold that no level before holds (a table the
        levels share counts once, at the outer one)."""
        new = {id(h._index): h._index for h in holders if id(h._index) not in counted}
        counted.update(new)
        return sum(sys.getsizeof(table) for table in new.values()) / n

    return {
        "outer scheduler (id -> tenant, or the one table)": tables([outer]),
        "inner schedulers (id -> key)": tables(inner),
        "key queues (id -> heap entry)": tables(keys),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--tables", action="store_true", help="the nested id tables only")
    args = parser.parse_args()
    if args.tables:
        print("| id tables, nested | " + " | ".join(f"{n:.0e} tasks" for n in args.sizes) + " |")
        print("|---|" + "---:|" * len(args.sizes))
        rows = [id_table_bytes(n) for n in args.sizes]
        for name in rows[0]:
            print(f"| {name} | " + " | ".join(f"{row[name]:.0f}" for row in rows) + " |")
        return
    print("| configuration | " + " | ".join(f"{n:.0e} tasks" for n in args.sizes) + " |")
    print("|---|" + "---:|" * len(args.sizes))
    for name, (make, options) in CONFIGS.items():
        cells = [f"{bytes_per_task(make, workload(n, **options)):.0f}" for n in args.sizes]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
