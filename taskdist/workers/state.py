"""WorkerState: the read-only, live view of one worker, and what a task demands of it.

A :class:`~taskdist.CapacityTracker` owns the views and is the only
writer (through ``object.__setattr__``, as frozen attrs classes do); balancers
and hosts read them.
"""

from __future__ import annotations

import types
from collections.abc import Container, Hashable, Mapping
from typing import Final

from taskdist.task import Task, Worker
from taskdist.workers.health import Health

__all__ = ["WorkerState", "demand_of"]

_DEFAULT_DEMAND: Final[Mapping[str, float]] = types.MappingProxyType({"slots": 1.0})
_NO_DEMAND: Final[Mapping[str, float]] = types.MappingProxyType({})
# Loads are sums of float demands; a placement fits when it overshoots the
# capacity by no more than this fraction (so 0.1 * 10 fits in 1.0).
_TOLERANCE: Final = 1e-9

_set = object.__setattr__


def demand_of(task: Task, tracked: Container[str] | None = None) -> Mapping[str, float]:
    """What ``task`` takes from a worker: ``task.resources``, with ``"slots"`` defaulting to 1.

    A task that names no ``"slots"`` takes one slot; ``resources={"slots": 0}``
    takes none (a task that only uses, say, ``"gpu"``). With ``tracked`` (the
    resources some registered worker's capacity names), a resource outside it
    is left out: it is not the workers' to give (an API's ``"api_calls"`` is a
    gate's business). O(len(resources)).

    >>> dict(demand_of(Task("t"))), dict(demand_of(Task("t", resources={"gpu": 2})))
    ({'slots': 1.0}, {'gpu': 2.0, 'slots': 1.0})
    >>> dict(demand_of(Task("t", resources={"api_calls": 1}), tracked={"slots"}))
    {'slots': 1.0}
    """
    resources = task.resources
    if tracked is None:
        if not resources:
            return _DEFAULT_DEMAND
        if "slots" in resources:
            return resources
        demand = dict(resources)
        demand["slots"] = 1.0
        return demand
    if not resources:
        return _DEFAULT_DEMAND if "slots" in tracked else _NO_DEMAND
    demand = {name: amount for name, amount in resources.items() if name in tracked}
    if "slots" not in resources and "slots" in tracked:
        demand["slots"] = 1.0
    return demand


def _limits(capacity: Mapping[str, float]) -> dict[str, float]:
    return {name: amount + _TOLERANCE * max(1.0, amount) for name, amount in capacity.items()}


def _fits(demand: Mapping[str, float], load: dict[str, float], limit: dict[str, float]) -> bool:
    for name, amount in demand.items():
        if amount and load.get(name, 0.0) + amount > limit.get(name, 0.0):
            return False
    return True


class WorkerState:
    """A read-only, live view of one worker inside a :class:`~taskdist.CapacityTracker`.

    The tracker updates it in place as tasks are assigned and released and
    as health changes, so a balancer may keep a reference; assigning to an
    attribute raises ``AttributeError``. Identity is stable for as long as the
    worker is registered (equality is identity). After ``remove_worker`` the
    view stops changing.

    Attribute reads are plain slot reads (O(1), no computation); ``free``,
    ``fits`` and ``headroom`` are O(number of resources).
    """

    __slots__ = (
        "_derived",
        "_latency_at",
        "_limit",
        "_load",
        "_outcome_at",
        "_readmitted_at",
        "_slow_since",
        "_tasks",
        "_tracked",
        "added_at",
        "capacity",
        "consecutive_failures",
        "cost",
        "effective_weight",
        "ejected_until",
        "ejections",
        "health",
        "host_health",
        "id",
        "in_flight",
        "latency",
        "load",
        "load_ratio",
        "outcomes",
        "seq",
        "skills",
        "success_rate",
        "weight",
        "worker",
        "zone",
    )

    _derived: Health
    # When each average last took a sample: a half-life decays it from there.
    _latency_at: float | None
    _limit: dict[str, float]
    _load: dict[str, float]
    _outcome_at: float | None
    _readmitted_at: float | None
    _slow_since: float | None
    _tasks: dict[Hashable, tuple[Task, Mapping[str, float]]]
    _tracked: Container[str] | None

    id: Hashable
    """The worker's id."""
    worker: Worker
    """The :class:`~taskdist.task.Worker` as last added or updated."""
    seq: int
    """Registration order in its tracker (0, 1, 2, ...): candidates come in this order."""
    capacity: Mapping[str, float]
    """Capacity per resource (``worker.capacity``)."""
    load: Mapping[str, float]
    """Demand of the tasks in flight, per resource (read-only, live)."""
    in_flight: int
    """Tasks assigned and not yet released."""
    load_ratio: float
    """Load over capacity of its busiest resource (0 idle, 1 full; 1 if it has no capacity).

    Resources of capacity 0 are left out; above 1 when capacity was shrunk under load."""
    weight: float
    """The configured weight (``worker.weight``)."""
    effective_weight: float
    """The weight weighted strategies use: ``weight`` scaled down during slow start."""
    health: Health
    """The worst of: what the host set, what outcomes say, ``UNAVAILABLE`` while ejected."""
    host_health: Health
    """What the host last set with ``set_health`` (``HEALTHY`` at first)."""
    ejected_until: float | None
    """When the current outlier ejection ends, or ``None`` if not ejected."""
    ejections: int
    """The ejection multiplier: how many recent ejections lengthen the next one."""
    consecutive_failures: int
    """Failed outcomes in a row since the last success or ejection."""
    latency: float | None
    """EWMA of reported task durations (seconds), ``None`` before the first."""
    success_rate: float
    """EWMA of outcomes (1 success, 0 failure); starts at 1.0."""
    outcomes: int
    """Outcomes reported (``ok`` True or False) since the worker was added."""
    zone: str | None
    skills: frozenset[str]
    cost: float
    added_at: float
    """Clock time of ``add_worker``."""

    def __init__(
        self, worker: Worker, seq: int, now: float, tracked: Container[str] | None = None
    ) -> None:
        # The resources the tracker's workers have named: demand outside them is not ours.
        _set(self, "_tracked", tracked)
        _set(self, "_load", {})
        _set(self, "_tasks", {})
        _set(self, "_derived", Health.HEALTHY)
        _set(self, "_latency_at", None)
        _set(self, "_outcome_at", None)
        _set(self, "_readmitted_at", None)
        _set(self, "_slow_since", None)
        _set(self, "id", worker.id)
        _set(self, "seq", seq)
        _set(self, "added_at", now)
        _set(self, "load", types.MappingProxyType(self._load))
        _set(self, "in_flight", 0)
        _set(self, "host_health", Health.HEALTHY)
        _set(self, "health", Health.HEALTHY)
        _set(self, "ejected_until", None)
        _set(self, "ejections", 0)
        _set(self, "consecutive_failures", 0)
        _set(self, "latency", None)
        _set(self, "success_rate", 1.0)
        _set(self, "outcomes", 0)
        self._describe(worker)

    def _describe(self, worker: Worker) -> None:
        """Take on ``worker``'s static fields (on add and update)."""
        _set(self, "worker", worker)
        _set(self, "capacity", worker.capacity)
        _set(self, "_limit", _limits(worker.capacity))
        _set(self, "weight", worker.weight)
        _set(self, "effective_weight", worker.weight)
        _set(self, "zone", worker.zone)
        _set(self, "skills", worker.skills)
        _set(self, "cost", worker.cost)
        self._update_ratio()

    def _update_ratio(self) -> None:
        load = self._load
        ratio = 0.0
        has_capacity = False
        # A resource of capacity 0 counts as absent (as for candidates), so draining
        # one under load leaves the ratio finite and load_variance a number.
        for name, amount in self.capacity.items():
            if amount > 0:
                has_capacity = True
                ratio = max(ratio, load.get(name, 0.0) / amount)
        _set(self, "load_ratio", ratio if has_capacity else 1.0)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"WorkerState is a read-only view; change worker {self.id!r} "
            f"through its CapacityTracker (cannot set {name!r})"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"WorkerState is a read-only view (cannot delete {name!r})")

    def free(self, resource: str = "slots") -> float:
        """Capacity of ``resource`` not taken by tasks in flight (never below 0). O(1)."""
        return max(0.0, self.capacity.get(resource, 0.0) - self._load.get(resource, 0.0))

    def fits(self, task: Task) -> bool:
        """Whether ``task``'s demand (see :func:`demand_of`) fits in the free capacity now.

        Says nothing about health or skills. O(len(task.resources)).
        """
        return _fits(demand_of(task, self._tracked), self._load, self._limit)

    def headroom(self, task: Task) -> float:
        """How many more tasks like ``task`` fit now (fractional; ``inf`` if it demands nothing).

        The minimum over the resources ``task`` demands of free / demand.
        O(len(task.resources)).
        """
        room = float("inf")
        for name, amount in demand_of(task, self._tracked).items():
            if amount > 0:
                room = min(room, self.free(name) / amount)
        return room

    def __repr__(self) -> str:
        return (
            f"WorkerState({self.id!r}, in_flight={self.in_flight}, load={dict(self._load)!r}, "
            f"health={self.health.value!r})"
        )
