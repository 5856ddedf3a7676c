"""Load-aware strategies: LeastConnections, CapacityBased, PerformanceBased.

Each is a :class:`~taskdist.balancing.base.ScoringBalancer`: it only says how
to score a candidate; the lowest score wins and ties go to the least loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from taskdist.balancing.base import ScoringBalancer, trusted
from taskdist.task import Task
from taskdist.workers._load_index import PURE_KEYS
from taskdist.workers.tracker import CapacityTracker, WorkerFilter, WorkerState, demand_of

__all__ = ["CapacityBased", "LeastConnections", "PerformanceBased"]

# A worker whose every task fails is treated as this reliable, not infinitely slow,
# so scores stay finite and comparable.
_MIN_SUCCESS: Final = 0.01


class LeastConnections(ScoringBalancer):
    """The candidate with the lowest load ratio per unit of weight.

    Score: ``load_ratio / effective_weight`` (see
    :func:`~taskdist.balancing.base.load_per_weight`), where ``load_ratio`` is
    the load over capacity of the worker's busiest resource. Capacity is
    respected (5 of 10 slots is less loaded than 2 of 3), and so are weights
    (a weight-2 worker carries twice the ratio before it counts as equally
    loaded); during slow start the lower effective weight holds a new worker
    back. ``select`` is one O(n) pass over the candidates; :meth:`choose`
    gets the same answer from the tracker's load index in O(log n) per
    placement: it gives :meth:`CapacityTracker.lowest
    <taskdist.workers.tracker.CapacityTracker.lowest>` this strategy's order
    (``(load_ratio / effective_weight, load_ratio)``, ties to the earliest
    registered).

    **Threads.** Not safe to share between threads (it reads the tracker's live views):
    drive it from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.

    >>> from taskdist import CapacityTracker, ManualClock, Task, Worker
    >>> tracker = CapacityTracker(ManualClock())
    >>> _ = tracker.add_worker(Worker("big", capacity=10))
    >>> _ = tracker.add_worker(Worker("small", capacity=3))
    >>> for i in range(5):
    ...     _ = tracker.assign(Task(i), "big")
    >>> for i in range(5, 7):
    ...     _ = tracker.assign(Task(i), "small")
    >>> LeastConnections().select(Task("t"), tracker.candidates(Task("t"))).id
    'big'
    """

    __slots__ = ()

    @trusted
    def scores(self, task: Task, candidates: Sequence[WorkerState]) -> list[float]:
        """``load_ratio / effective_weight`` per candidate. O(n)."""
        # load_per_weight, inlined: no call per worker (about 1.3x faster at 1000 workers).
        return [worker.load_ratio / worker.effective_weight for worker in candidates]

    @trusted
    def choose(
        self, task: Task, tracker: CapacityTracker, where: WorkerFilter | None = None
    ) -> WorkerState | None:
        """``select``'s answer over ``tracker.candidates(task, where)``, from the load index.

        O(1 + k (r + log k)) for the k workers passed over at the front of the index,
        plus O(log n) per later change to a worker (the index's upkeep). A
        subclass that overrides ``scores`` or ``select`` gets the listing
        instead (O(n r)), so its own choice is the one made.
        """
        cls = type(self)
        if cls.scores is not LeastConnections.scores or cls.select is not ScoringBalancer.select:
            return super().choose(task, tracker, where)
        return tracker.lowest(task, _load_order, where)


class CapacityBased(ScoringBalancer):
    """The candidate with the most room for tasks like this one.

    Score: minus :meth:`~taskdist.workers.tracker.WorkerState.headroom`, the number of
    further tasks of this task's demand that would fit (the minimum over the
    resources it demands of free / demand). Unlike ``LeastConnections``,
    which balances ratios, this fills the biggest free space first: 5 free
    slots of 10 beat 2 free of 2. Ignores weights. ``select`` is O(n r).

    **Threads.** Not safe to share between threads (it reads the tracker's live views):
    drive it from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.
    """

    __slots__ = ()

    @trusted
    def scores(self, task: Task, candidates: Sequence[WorkerState]) -> list[float]:
        """Minus the headroom per candidate. O(n r)."""
        demand = [(name, amount) for name, amount in demand_of(task).items() if amount > 0]
        if len(demand) == 1:  # the usual case (slots only): minus free / demand, inlined
            name, amount = demand[0]
            return [
                (worker.load.get(name, 0.0) - worker.capacity.get(name, 0.0)) / amount
                for worker in candidates
            ]
        return [-worker.headroom(task) for worker in candidates]


class PerformanceBased(ScoringBalancer):
    """The candidate expected to complete the task soonest, from its EWMA latency and success.

    Expected completion time on a worker with ``c`` slots (``c`` = its slot
    capacity, at least 1 for the formula), ``k`` tasks in flight, EWMA
    latency ``d`` and success rate ``p``::

        (1 + max(0, k + 1 - c) / c) * d / max(p, 0.01)

    the wait for a free slot (none while ``k < c``, as for candidates with
    room) plus the service time, divided by ``p`` because a task that fails
    with probability ``1 - p`` runs ``1 / p`` times on average. A worker with
    no latency yet is assumed to have the mean of those that do (all tie,
    hence least-loaded first, when none does). It sends work to the fastest
    reliable workers first, trading some balance for latency.
    ``select`` is O(n).

    **Threads.** Not safe to share between threads (it reads the tracker's live views):
    drive it from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.
    """

    __slots__ = ()

    @trusted
    def scores(self, task: Task, candidates: Sequence[WorkerState]) -> list[float]:
        """Expected completion time per candidate. O(n)."""
        known = [worker.latency for worker in candidates if worker.latency is not None]
        prior = math.fsum(known) / len(known) if known else 1.0
        scores = []
        for worker in candidates:
            latency = worker.latency
            success = worker.success_rate
            expected = (prior if latency is None else latency) / (
                success if success > _MIN_SUCCESS else _MIN_SUCCESS
            )
            parallel = worker.capacity.get("slots", 0.0)
            if parallel < 1.0:
                parallel = 1.0
            queued = worker.in_flight + 1 - parallel
            scores.append(expected * (1.0 + queued / parallel) if queued > 0 else expected)
        return scores


def _load_order(worker: WorkerState) -> tuple[float, float]:
    """LeastConnections' order for the tracker's index: its score, then its tie-break.

    One module-level function, so every LeastConnections shares one index."""
    ratio = worker.load_ratio
    return (ratio / worker.effective_weight, ratio)


PURE_KEYS.add(_load_order)  # it reads the view and nothing else
