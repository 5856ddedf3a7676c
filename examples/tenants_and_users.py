"""Organisations and their users sharing one rate-limited LLM API, fairly at both levels.

    python examples/tenants_and_users.py

Three organisations send requests to an API that takes 100 a minute:

- ``acme`` has one user who queues 600 requests at once;
- ``globex`` has 50 users who queue 12 requests each (the same 600);
- ``initech`` pays for twice the share and has 5 users who queue 600 in all.

The queue is a ``FairScheduler`` over organisations (``initech`` weighted 2)
whose ``inner=KeyShare(...)`` shares each organisation's turns among its
users (``task.key``), each user at most 2 requests in flight. The gate holds
back most of the 1,800 requests; a ``Distributor`` keeps them parked in
classes (organisation, user, priority) and sends one of each class back to
the queue when the limit refills, so a placement costs the same however many
wait (about 56 classes here: a refill costs one queue round trip for each).

After ten simulated minutes: ``initech`` has had about half the calls and
the other two a quarter each, though ``acme``'s one user asked as much as
all of ``globex``'s 50; inside ``globex`` no user is more than one call
ahead of another. Every request is accounted for.
"""

from __future__ import annotations

import time
from collections import Counter

from taskdist import (
    Distributor,
    FairScheduler,
    KeyShare,
    ManualClock,
    Quota,
    RateGate,
    RateLimiter,
    Task,
    Worker,
)

CALL_SECONDS = 2.0  # how long the API takes to answer one request
MINUTES = 10


def requests() -> list[Task]:
    """What each organisation's users queue at the start."""
    tasks = [Task(f"acme-{i}", tenant="acme", key="bulk-user") for i in range(600)]
    tasks += [
        Task(f"globex-{u}-{i}", tenant="globex", key=f"user-{u}")
        for i in range(12)
        for u in range(50)
    ]
    tasks += [Task(f"initech-{i}", tenant="initech", key=f"analyst-{i % 5}") for i in range(600)]
    return tasks


def main() -> None:
    clock = ManualClock()
    users = KeyShare(plans={"user": Quota(max_concurrent=2)}, default_plan="user")
    queue = FairScheduler(clock, weights={"initech": 2.0}, inner=users)
    api = RateGate(RateLimiter(100, per=60.0, burst=10, clock=clock), "api", default=1)
    d = Distributor(clock, queue=queue, gates=[api], lease=None)
    d.add_worker(Worker("llm-client", capacity=50))
    submitted = requests()
    for task in submitted:
        d.submit(task)

    served: Counter[tuple[str, str]] = Counter()
    answers: list[tuple[float, str]] = []  # (when, task id) of calls in flight
    dispatching = 0.0
    calls = completed = 0
    while clock.now() < MINUTES * 60:
        began = time.process_time()
        made = d.dispatch()
        dispatching += time.process_time() - began
        calls += 1
        for assignment in made:
            task = assignment.task
            served[str(task.tenant), str(task.key)] += 1
            answers.append((clock.now() + CALL_SECONDS, str(task.id)))
        answers.sort()
        wake = [t for t in (d.next_wakeup(), answers[0][0] if answers else None) if t]
        clock.set(min(wake) if wake else MINUTES * 60)
        while answers and answers[0][0] <= clock.now():
            d.complete(answers.pop(0)[1])
            completed += 1

    total = sum(served.values())
    by_tenant = Counter(dict.fromkeys(("acme", "globex", "initech"), 0))
    for (tenant, _), count in served.items():
        by_tenant[tenant] += count
    print(f"{total} calls in {MINUTES} minutes (the API takes 100 a minute, burst 10):")
    for tenant, count in by_tenant.items():
        print(f"  {tenant:8} {count:4}  {count / total:6.1%}")
    globex = [served["globex", f"user-{u}"] for u in range(50)]
    print(f"globex's 50 users: each served {min(globex)} to {max(globex)} times")

    stats = d.stats()
    parked, queued = stats.by_state["parked"], stats.by_state["queued"]
    print(
        f"{completed} answered, {len(answers)} in flight, {parked + queued} still waiting "
        f"({parked} parked behind the gate); dispatch took {dispatching / calls * 1e3:.2f} ms "
        f"a call on average"
    )

    # Initech's share is twice each other's (within a few calls), acme's lone user gets
    # no more than globex's 50, and no globex user runs ahead of another by more than one.
    assert abs(by_tenant["initech"] - 2 * by_tenant["acme"]) <= 10
    assert abs(by_tenant["acme"] - by_tenant["globex"]) <= 5
    assert max(globex) - min(globex) <= 1
    assert completed + len(answers) == total
    assert completed + len(answers) + parked + queued == len(submitted)  # none lost


if __name__ == "__main__":
    main()
