"""Memory per queued task, beyond the Task itself: at most 200 bytes in the queues that meet it.

Measured with tracemalloc, not timed, with the configurations, tasks and
function of ``benchmarks/compare_memory.py`` (which prints the whole table).
The clock is the real monotonic one, so every push reads a fresh float, as in
a host. The index dict's share of a task swings with its fill (about 35 to 60
bytes); at 100 000 tasks it is near its largest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# One way of measuring, shared with the script that prints the whole table.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from compare_memory import CONFIGS, bytes_per_task, workload

from taskdist import FairScheduler, MonotonicClock, PriorityQueue
from taskdist.queues.fair import DEFAULT_AGING_RATE

BUDGET = 200
"""Bytes per queued task beyond the Task object."""

WITHIN_BUDGET = [
    "PriorityQueue()",
    "PriorityQueue(aging_rate=0.1)",
    "PriorityQueue(), every task with a TTL",
    "PriorityQueue(), TTLs of mixed lengths",
    "PriorityQueue(maxsize, drop_lowest)",
    "DeadlineScheduler()",
    "DeadlineScheduler(servers=4)",
    "DeadlineScheduler(on_miss='dead_letter')",
    "DeadlineScheduler(), every task with a TTL",
    "DeadlineScheduler(on_miss='dead_letter'), every task with a TTL",
    "DeadlineScheduler(aging_rate=0.1, on_miss='dead_letter')",
    "FairScheduler(), 100 tenants",
    "FairScheduler(critical_bypass, plans), 100 tenants",
    "FairScheduler(deadline_aware), 100 tenants, every task with a deadline",
    "FairScheduler(inner=DeadlineScheduler), 100 tenants, deadlines",
    "FairScheduler nested (tenant, then 7 keys), 100 tenants",
]


def measured(name: str) -> float:
    make, options = CONFIGS[name]
    return bytes_per_task(make, workload(100_000, **options))


@pytest.mark.parametrize("name", WITHIN_BUDGET)
def test_a_queued_task_costs_at_most_200_bytes_beyond_itself(name: str) -> None:
    assert measured(name) <= BUDGET


def test_a_ttl_costs_a_fair_scheduler_no_second_timer() -> None:
    # One expiry per task, its inner queue's, and that one a pointer in a FIFO
    # while TTLs come in order: no timer tuple, no float, no second table.
    plain = measured("FairScheduler(), 100 tenants")
    with_ttl = measured("FairScheduler(), 100 tenants, every task with a TTL")
    assert with_ttl - plain <= 16


def test_a_deadline_scheduler_task_costs_a_priority_queue_task_and_one_pointer() -> None:
    # Its entry has one more field than a PriorityQueue's; its sequence number is its
    # enqueue time's float when pushes come in time order (a float more: 24 bytes).
    assert measured("DeadlineScheduler()") - measured("PriorityQueue()") <= 12


def test_deadlines_that_expire_tasks_cost_a_deadline_scheduler_no_timer() -> None:
    # Under dead_letter (or reject) a deadline passing expires a task; without
    # aging it is found in the scheduler's own deadline order: no timer a task.
    plain = measured("DeadlineScheduler()")
    assert measured("DeadlineScheduler(on_miss='dead_letter')") - plain <= 4


def test_a_ttl_costs_a_deadline_scheduler_one_pointer_while_ttls_come_in_order() -> None:
    # A FIFO of the entries themselves, no timer tuple and no stored time (it was
    # a (due, seq, entry) timer and its heap slot: 96 bytes).
    plain = measured("DeadlineScheduler()")
    assert measured("DeadlineScheduler(), every task with a TTL") - plain <= 12


def test_a_fair_scheduler_keeps_one_id_index_for_itself_and_its_tenant_queues() -> None:
    # The same tasks in one PriorityQueue: the
    # scheduler adds its fair-share state per tenant, and no id index of its own
    # (a second index over the same ids is 35 to 60 bytes a task).
    make, options = CONFIGS["FairScheduler(), 100 tenants"]
    tasks = workload(100_000, **options)
    fair = bytes_per_task(make, tasks)
    aging = DEFAULT_AGING_RATE  # as a tenant's queue ages
    queue = bytes_per_task(lambda: PriorityQueue(MonotonicClock(), aging_rate=aging), tasks)
    assert fair - queue <= 16


def test_tenant_queues_with_ttls_cost_little_while_they_hold_few_tasks() -> None:
    # 100 tasks a tenant: what a tenant's queue costs beside its tasks weighs per
    # task (a deque for its TTL FIFO alone was 7.6 bytes a task here: 203 in all).
    make, options = CONFIGS["FairScheduler(), 100 tenants, every task with a TTL"]
    assert bytes_per_task(make, workload(10_000, **options)) <= BUDGET


def test_the_deadline_index_holds_a_task_in_its_list_slot_alone() -> None:
    # The same tasks without deadline_aware: what the deadline index adds is the task's
    # slot in the sorted list (a pointer and the list's growth: about 10 at 1e5). The
    # list reads costs and deadlines from the tasks (parallel lists of them were 19
    # more), and keeps no item of its own (a tuple was 64 more), no table by id and no
    # sequence number of its own (those were 80 more).
    make, options = CONFIGS[
        "FairScheduler(deadline_aware), 100 tenants, every task with a deadline"
    ]
    tasks = workload(100_000, **options)
    aware = bytes_per_task(make, tasks)
    plain = bytes_per_task(lambda: FairScheduler(MonotonicClock()), tasks)
    assert aware - plain <= 12


def test_small_key_queues_cost_no_bound_methods() -> None:
    # 14 tasks a key queue: what each key queue costs beside its tasks weighs per task
    # (two bound partials per queue made this 278).
    make, options = CONFIGS["FairScheduler nested (tenant, then 7 keys), 100 tenants"]
    assert bytes_per_task(make, workload(10_000, **options)) <= 250


def test_a_tenant_queue_shares_what_it_does_not_need_yet() -> None:
    # A tenant per task: the tenant's record and queue weigh on each task (about 750
    # bytes: the queue object 280, the record 184, ...). Until it needs them, a queue
    # makes no sequence counter (56 bytes) and no holding area of expired tasks of its
    # own (64): 1 053 bytes a task when each queue made both at once.
    make, options = CONFIGS["FairScheduler(), a tenant per task"]
    assert bytes_per_task(make, workload(10_000, **options)) <= 1_000
