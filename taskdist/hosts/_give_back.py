"""Give leased tasks back to the queue without spending an attempt.

A host that stops with work unfinished must not lose it, and must not make
it pay an attempt either: the task did not fail, its host left.
``Distributor.requeue`` does exactly that for one lease.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from taskdist.dispatch import Distributor
from taskdist.errors import TaskStateError, UnknownTaskError
from taskdist.task import Assignment, Task


def give_back_unfinished(distributor: Distributor, runs: Iterable[Assignment]) -> list[Task]:
    """Give back the tasks of the runs whose assignment is still the task's lease (the
    others reported, or lost their lease, meanwhile). O(runs) distributor calls.

    Every task is given back even if the distributor raises for one (an ``on_event``
    listener failing on its ``requeued`` event, once the requeue is made); the first
    such error is raised after the last.
    """
    requeued: list[Task] = []
    failed: Exception | None = None
    for assignment in runs:
        try:
            requeued.append(
                distributor.requeue(
                    assignment.task.id, attempt=assignment.attempt, lease_id=assignment.lease_id
                )
            )
        except (TaskStateError, UnknownTaskError):
            continue
        except Exception as error:  # a listener's: the requeue itself was made
            if failed is None:
                failed = error
    if failed is not None:
        raise failed
    return requeued


def give_back_unseen(
    distributor: Distributor, since: float, held: Callable[[Assignment], bool]
) -> None:
    """After a ``dispatch()`` that raised, or whose assignments the host could not all
    start: give back the leases it made that the host does not hold.

    An ``on_event`` listener that raises on a ``dispatched`` event does so once
    the placements are made: ``dispatch()`` raises, and the host never sees
    those assignments. They are the leases started at or after ``since`` (the
    time read before the dispatch) for which ``held`` is false. What the
    give-back raises is dropped: the error to raise is the one that got here.
    O(leases) distributor calls.
    """
    unseen = [
        assignment
        for assignment in distributor.leases()
        if assignment.started_at >= since and not held(assignment)
    ]
    with contextlib.suppress(Exception):
        give_back_unfinished(distributor, unseen)
