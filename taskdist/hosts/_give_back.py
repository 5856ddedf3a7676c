"""Give leased tasks back to the queue without spending an attempt.

A host that stops with work unfinished must not lose it, and must not make
it pay an attempt either: the task did not fail, its host left. The
Distributor does exactly that for the tasks of a worker that is removed, so
a host gives its tasks back by removing the workers that hold them and
adding them again as they were (the same ``Worker``, the health the host
had set). What a re-added worker starts afresh: its latency average, its
outcome window, its circuit breaker and its per-worker counts in
``stats()``. A host owns the workers it gives back: every task leased on
them goes back, so no other host may be running tasks on them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from taskdist.dispatch import Distributor
from taskdist.errors import TaskStateError, UnknownTaskError
from taskdist.task import Assignment, Task
from taskdist.workers.health import Health


def give_back(distributor: Distributor, worker_ids: Iterable[Hashable]) -> list[Task]:
    """Requeue every task leased on these workers (no attempt spent); keep the workers.

    Returns the requeued tasks. O(workers + tasks requeued) distributor calls.
    """
    requeued: list[Task] = []
    for worker_id in dict.fromkeys(worker_ids):
        if worker_id not in distributor.tracker:
            continue
        state = distributor.tracker.worker(worker_id)
        worker, health = state.worker, state.host_health
        requeued += distributor.remove_worker(worker_id)
        distributor.add_worker(worker)
        if health is not Health.HEALTHY:
            distributor.set_health(worker_id, health)
    return requeued


def give_back_unfinished(distributor: Distributor, runs: Iterable[Assignment]) -> list[Task]:
    """Give back the tasks of the runs whose assignment is still the task's lease (the
    others reported, or lost their lease, meanwhile). O(runs) plus :func:`give_back`."""
    holders = []
    for assignment in runs:
        try:
            current = distributor.assignment(assignment.task.id)
        except (TaskStateError, UnknownTaskError):
            continue
        if current.attempt == assignment.attempt:
            holders.append(assignment.worker_id)
    return give_back(distributor, holders) if holders else []
