"""The vocabulary: Task, Priority, Worker, Assignment, task states and reasons.

:class:`Task` and :class:`Worker` are immutable values validated once, at
construction: a bad field raises a specific
:class:`~taskdist.errors.TaskdistError` naming the field and what is allowed,
so nothing downstream re-checks them on the hot path.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any

import attrs

from taskdist._snapshot import Fields, as_snapshot_error, encode_key, refuse
from taskdist._validate import (
    MAX_AMOUNT,
    MAX_CAPACITY,
    MAX_WEIGHT,
    MIN_CAPACITY,
    MIN_WEIGHT,
    check_id,
    check_int,
    check_number,
    check_resources,
    check_skills,
    shown,
)
from taskdist.errors import (
    DeadlineError,
    InvalidArgumentError,
    InvalidTypeError,
    SnapshotError,
    TaskdistError,
)

__all__ = [
    "Assignment",
    "Priority",
    "Reason",
    "Task",
    "TaskState",
    "Worker",
]

_EMPTY: Mapping[str, float] = types.MappingProxyType({})
_NO_SKILLS: frozenset[str] = frozenset()
_EMPTY_COLLECTIONS = (frozenset, set, list, tuple)
# Priorities the queues order exactly: every int in this range is a float
# exactly, so an aging key (priority + rate * time) never merges two levels.
_MAX_PRIORITY = 2**53


class Priority(enum.IntEnum):
    """Named priority levels: lower number = more urgent.

    Any ``int`` from ``-2**53`` to ``2**53`` is a valid priority; these are
    the conventional levels.
    ``CRITICAL`` is the emergency level that schedulers may let jump ahead.
    """

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3
    BACKGROUND = 4


class TaskState(str, enum.Enum):
    """Where a task is in its life inside a :class:`~taskdist.Distributor`: exactly one at a time.

    ``QUEUED``, ``PARKED``, ``RETRYING`` and ``LEASED`` are live; ``COMPLETED``,
    ``DEAD`` and ``CANCELLED`` are final.
    """

    # Hash as the string, so a dict keyed by states finds "queued" too.
    __hash__ = str.__hash__

    QUEUED = "queued"
    """In the queue, waiting for its turn."""
    PARKED = "parked"
    """Out of the queue until something changes: no worker or gate can take it now."""
    RETRYING = "retrying"
    """Failed an attempt; waiting out its retry delay before it queues again."""
    LEASED = "leased"
    """Placed on a worker under a lease."""
    COMPLETED = "completed"
    """Finished successfully."""
    DEAD = "dead"
    """Handed to the dead-letter queue, with its reason."""
    CANCELLED = "cancelled"
    """Withdrawn by the host."""

    @property
    def is_final(self) -> bool:
        """Whether the task's life is over (completed, dead-lettered or cancelled)."""
        return self in _FINAL_STATES


class Reason(str, enum.Enum):
    """Why a task left the normal path (dead-lettered, evicted, expired).

    A ``str`` enum, so ``Reason.TTL_EXPIRED == "ttl_expired"``.
    """

    # Hash as the string, so a dict keyed by reasons finds "ttl_expired" too.
    __hash__ = str.__hash__

    MAX_ATTEMPTS = "max_attempts"
    """It failed on every attempt it was allowed."""
    TTL_EXPIRED = "ttl_expired"
    """It waited in a queue longer than its ``ttl``."""
    DEADLINE_MISSED = "deadline_missed"
    """Its deadline passed while it waited."""
    DEADLINE_INFEASIBLE = "deadline_infeasible"
    """It could not be admitted on time: it would miss its deadline, or make a task
    already admitted miss its own."""
    EVICTED = "evicted"
    """A full queue with ``overflow="drop_lowest"`` dropped it as the least urgent."""
    REJECTED = "rejected"
    """A policy or the host refused it."""
    CANCELLED = "cancelled"
    """The host withdrew it."""
    RETRY_BUDGET = "retry_budget"
    """A retry would have exceeded the retry budget, whose policy is to dead-letter."""
    NOT_RETRYABLE = "not_retryable"
    """It failed with an error the retry policy does not retry (or the host said so)."""
    GANG_TIMEOUT = "gang_timeout"
    """Its gang could not be placed all together within the gang timeout (see ``Gangs``)."""


def _skills(value: Iterable[str]) -> frozenset[str]:
    if not value and type(value) in _EMPTY_COLLECTIONS:
        return _NO_SKILLS  # the usual case, at no cost: needs no skill
    return check_skills(value, "Task.requires")


def _deadline(value: object) -> float:
    try:
        return check_number(value, "Task.deadline")
    except InvalidArgumentError as error:
        raise DeadlineError(str(error)) from None


def _worker_skills(value: Iterable[str]) -> frozenset[str]:
    return check_skills(value, "Worker.skills")


def _task_resources(value: Mapping[str, float]) -> Mapping[str, float]:
    if value is _EMPTY:
        return _EMPTY
    return types.MappingProxyType(check_resources(value, "Task.resources", maximum=MAX_AMOUNT))


def _worker_capacity(value: float | Mapping[str, float]) -> Mapping[str, float]:
    if isinstance(value, Mapping):
        if not value:
            raise InvalidArgumentError("Worker.capacity must name at least one resource, got {}")
        amounts = check_resources(value, "Worker.capacity", maximum=MAX_CAPACITY)
    else:
        amounts = {
            "slots": check_number(value, "Worker.capacity", minimum=0.0, maximum=MAX_CAPACITY)
        }
    for name, amount in amounts.items():
        if 0.0 < amount < MIN_CAPACITY:
            raise InvalidArgumentError(
                f"Worker.capacity[{name!r}] must be 0 or at least {MIN_CAPACITY:g} (below it an "
                f"amount cannot be told from none), got {amount!r}"
            )
    return types.MappingProxyType(amounts)


def _check_zone(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise InvalidTypeError(f"{name} must be a str or None, got {shown(value)}")
    if not value:
        raise InvalidArgumentError(f"{name} must not be empty (None for no zone)")


@attrs.frozen(repr=False, init=False)
class Task:
    """An immutable description of one unit of work.

    Only ``id`` is required. Construction validates every field and raises a
    :class:`~taskdist.errors.TaskdistError` subclass naming the field: an
    :class:`~taskdist.errors.InvalidTypeError` (a ``TypeError``) for a wrong
    type, an :class:`~taskdist.errors.InvalidArgumentError` (a ``ValueError``)
    for a value outside its range. Construction is O(len(requires) +
    len(resources)).

    Accepted values:

    - ``id``, ``tenant``, ``key``, ``group``: hashable, equal to themselves
      (no NaN, nor a tuple holding one), not ``""``; only ``id`` is required.
    - ``priority``: an int with ``-2**53 <= priority <= 2**53``, the range
      every queue orders exactly.
    - ``deadline``: any finite number (a clock time); ``ttl``: ``0 < ttl <=
      1e18``; ``cost`` and each ``resources`` amount: ``0 <= x <= 1e18``.
    - ``max_attempts``: an int ``>= 1``; ``zone``: a non-empty ``str``;
      ``requires``: a collection of non-empty ``str``.
    - ``gang`` (hashable, as ``group``) and ``gang_size`` (an int ``>= 1``):
      both or neither.

    Equality compares every field; the hash is the id's, so a task whose
    ``payload`` is a dict can still be hashed. Immutable, so safe to share
    between threads (its ``payload`` is the host's to guard).

    >>> t = Task("t1", priority=Priority.HIGH, cost=2.5, requires={"research"})
    >>> t.priority, t.cost, sorted(t.requires)
    (<Priority.HIGH: 1>, 2.5, ['research'])
    """

    id: Hashable
    """Unique among live tasks; any hashable, non-empty value."""
    priority: int = Priority.NORMAL
    """Lower number = more urgent; any int within ±2**53 (see :class:`Priority`)."""
    deadline: float | None = None
    """Absolute clock time by which it should finish, or ``None``."""
    tenant: Hashable | None = None
    """Who it is for (user, project): the unit of fairness and quota."""
    key: Hashable | None = None
    """Affinity / consistent-hash key: equal keys prefer the same worker."""
    requires: frozenset[str] = _NO_SKILLS
    """Skills a worker must have to run it."""
    resources: Mapping[str, float] = _EMPTY
    """Demand per named resource, e.g. ``{"slots": 1, "api_calls": 1}`` (read-only)."""
    cost: float = 1.0
    """Estimated duration or size (0 to 1e18): for fair accounting and deadline feasibility."""
    ttl: float | None = None
    """Seconds it may wait in a queue before it expires (> 0, at most 1e18), or ``None``."""
    max_attempts: int | None = None
    """Attempts allowed (>= 1), or ``None`` to let the retry policy decide."""
    group: Hashable | None = None
    """Batching key: tasks of one group may be batched together."""
    zone: str | None = None
    """Preferred zone (region, rack) for zone-aware placement."""
    payload: Any = None
    """Opaque data for the host; taskdist never looks inside."""
    preemptible: bool = True
    """Whether a more urgent task may ask for it to be preempted (see ``Preemption``)."""
    gang: Hashable | None = None
    """Tasks of one gang start together or not at all (see ``Gangs``); needs ``gang_size``."""
    gang_size: int | None = None
    """How many tasks the gang has (>= 1); every member says the same."""

    # Written out, not generated: every Task is built on the host's hot path, and
    # setting each slot through its own descriptor costs about half of a generic
    # setattr per field. Checks run in the order of the fields, as before: the
    # skills and resources first (they are converted), then the rest.
    def __init__(
        self,
        id: Hashable,
        priority: int = Priority.NORMAL,
        deadline: float | None = None,
        tenant: Hashable | None = None,
        key: Hashable | None = None,
        requires: Iterable[str] = _NO_SKILLS,
        resources: Mapping[str, float] = _EMPTY,
        cost: float = 1.0,
        ttl: float | None = None,
        max_attempts: int | None = None,
        group: Hashable | None = None,
        zone: str | None = None,
        payload: Any = None,
        preemptible: bool = True,
        gang: Hashable | None = None,
        gang_size: int | None = None,
    ) -> None:
        if requires is not _NO_SKILLS:  # the defaults need no conversion
            requires = _skills(requires)
        if resources is not _EMPTY:
            resources = _task_resources(resources)
        if preemptible is not True and preemptible is not False:
            raise InvalidTypeError(f"Task.preemptible must be a bool, got {preemptible!r}")
        if not ((id.__class__ is str and id) or id.__class__ is int):  # the usual ids pass
            check_id(id, "Task.id")
        if (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not -_MAX_PRIORITY <= priority <= _MAX_PRIORITY
        ):
            check_int(priority, "Task.priority", minimum=-_MAX_PRIORITY, maximum=_MAX_PRIORITY)
        if deadline is not None:
            deadline = _deadline(deadline)
        if tenant is not None:
            check_id(tenant, "Task.tenant")
        if key is not None:
            check_id(key, "Task.key")
        if type(cost) is not float or not 0.0 <= cost <= MAX_AMOUNT:
            cost = check_number(cost, "Task.cost", minimum=0.0, maximum=MAX_AMOUNT)
        if ttl is not None:
            ttl = check_number(ttl, "Task.ttl", positive=True, maximum=MAX_AMOUNT)
        if max_attempts is not None:
            check_int(max_attempts, "Task.max_attempts", minimum=1)
        if group is not None:
            check_id(group, "Task.group")
        if zone is not None:
            _check_zone(zone, "Task.zone")
        if gang is not None or gang_size is not None:
            _check_gang(gang, gang_size)
        _set_id(self, id)
        _set_priority(self, priority)
        _set_deadline(self, deadline)
        _set_tenant(self, tenant)
        _set_key(self, key)
        _set_requires(self, requires)
        _set_resources(self, resources)
        _set_cost(self, cost)
        _set_ttl(self, ttl)
        _set_max_attempts(self, max_attempts)
        _set_group(self, group)
        _set_zone(self, zone)
        _set_payload(self, payload)
        _set_preemptible(self, preemptible)
        _set_gang(self, gang)
        _set_gang_size(self, gang_size)

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled for process pools and clusters: ``resources`` as a plain dict
        # (a read-only mapping does not pickle); loading validates it again.
        fields = {field.name: getattr(self, field.name) for field in attrs.fields(Task)}
        fields["resources"] = dict(self.resources)
        return (_rebuild_task, (fields,))

    def to_data(self) -> dict[str, Any]:
        """Every field as plain data (JSON when the payload is), for snapshots. O(r).

        ``Task.from_data(task.to_data()) == task``: a :class:`Priority` comes
        back as the same member, ``requires`` and ``resources`` as sets and
        mappings again, ``payload`` as it is. Ids, tenants, keys and groups
        must be ``None``, ``bool``, ``int``, ``float``, ``str``, or tuples and
        frozensets of those.

        Raises:
            SnapshotError: an id, tenant, key or group of another kind.

        >>> t = Task(("job", 7), priority=Priority.HIGH, requires={"gpu"}, payload=[1, 2])
        >>> Task.from_data(t.to_data()) == t
        True
        """
        priority = self.priority
        return {
            "id": encode_key(self.id, "a task id"),
            "priority": priority.name if isinstance(priority, Priority) else priority,
            "deadline": self.deadline,
            "tenant": encode_key(self.tenant, "a tenant"),
            "key": encode_key(self.key, "a key"),
            "requires": sorted(self.requires),
            "resources": dict(self.resources),
            "cost": self.cost,
            "ttl": self.ttl,
            "max_attempts": self.max_attempts,
            "group": encode_key(self.group, "a group"),
            "zone": self.zone,
            "payload": self.payload,
            "preemptible": self.preemptible,
            "gang": encode_key(self.gang, "a gang"),
            "gang_size": self.gang_size,
        }

    @classmethod
    def from_data(cls, data: object, where: str = "task") -> Task:
        """The task :meth:`to_data` wrote, validated as the constructor validates. O(r).

        Raises:
            SnapshotError: a field missing, unknown or of the wrong type, or a
                value ``Task`` refuses (``where`` names the task in the message).
        """
        fields = Fields(data, where)
        priority: Any = fields.value("priority")
        if type(priority) is str:
            if priority not in Priority.__members__:
                refuse(f"{where}.priority", f"names no Priority, got {priority!r}")
            priority = Priority[priority]
        requires = fields.items("requires")
        resources = fields.value("resources")
        if type(resources) is not dict:
            refuse(f"{where}.resources", f"must be a dict, got {shown(resources)}")
        values: dict[str, Any] = {
            "id": fields.key("id"),
            "priority": priority,
            "deadline": fields.opt_number("deadline"),
            "tenant": fields.key("tenant"),
            "key": fields.key("key"),
            "requires": requires or frozenset(),  # the constructor's fast path
            "resources": resources,
            "cost": fields.number("cost"),
            "ttl": fields.opt_number("ttl"),
            "max_attempts": fields.opt_integer("max_attempts"),
            "group": fields.key("group"),
            "zone": fields.opt_text("zone"),
            "payload": fields.value("payload"),
            "preemptible": fields.boolean("preemptible"),
            "gang": fields.key("gang"),
            "gang_size": fields.opt_integer("gang_size"),
        }
        fields.done()
        try:
            return cls(**values)
        except SnapshotError:
            raise
        except TaskdistError as error:
            raise as_snapshot_error(error, where) from None

    def __repr__(self) -> str:
        fields = [f"{self.id!r}", f"priority={self.priority!r}"]
        for name in (
            "deadline",
            "tenant",
            "key",
            "ttl",
            "max_attempts",
            "group",
            "zone",
            "gang",
            "gang_size",
        ):
            value = getattr(self, name)
            if value is not None:
                fields.append(f"{name}={value!r}")
        if self.cost != 1.0:
            fields.append(f"cost={self.cost!r}")
        if self.requires:
            fields.append(f"requires={set(self.requires)!r}")
        if self.resources:
            fields.append(f"resources={dict(self.resources)!r}")
        return f"Task({', '.join(fields)})"


def _slot_setters(cls: type) -> Iterator[Callable[[Any, Any], None]]:
    """The slot setter of each of an attrs class's fields, in field order: the slot's own
    descriptor, which a frozen class's ``__setattr__`` does not reach. A written-out
    ``__init__`` on the hot path sets its fields with them (a generated one calls
    ``object.__setattr__`` by name, about twice the cost per field)."""
    return (cls.__dict__[field.name].__set__ for field in attrs.fields(cls))


(
    _set_id,
    _set_priority,
    _set_deadline,
    _set_tenant,
    _set_key,
    _set_requires,
    _set_resources,
    _set_cost,
    _set_ttl,
    _set_max_attempts,
    _set_group,
    _set_zone,
    _set_payload,
    _set_preemptible,
    _set_gang,
    _set_gang_size,
) = _slot_setters(Task)


def _check_gang(gang: Hashable | None, size: int | None) -> None:
    if gang is None or size is None:
        raise InvalidArgumentError(
            f"Task.gang and Task.gang_size go together (a gang's members all know its "
            f"size), got gang={shown(gang)}, gang_size={shown(size)}"
        )
    check_id(gang, "Task.gang")
    check_int(size, "Task.gang_size", minimum=1)


def _rebuild_task(fields: dict[str, Any]) -> Task:
    return Task(**fields)


@attrs.frozen
class Worker:
    """An immutable description of a place where tasks run (an agent, a process, a pod).

    ``capacity`` is a number of slots or a mapping of resource name to amount;
    it is stored as a read-only mapping (``Worker("w", capacity=10).capacity ==
    {"slots": 10.0}``). Construction validates every field, raising as
    :class:`Task` does, and is O(len(skills) + len(capacity)).

    Accepted values: ``id`` as a task's; ``capacity`` (each amount): 0 or
    ``1e-9 <= x <= 1e15``; ``cost``: ``0 <= x <= 1e18``; ``weight``:
    ``1e-9 <= weight <= 1e9`` (the ranges in which the tracker's sums and
    ratios stay exact);
    ``zone``: a non-empty ``str``; ``skills``: a collection of non-empty
    ``str``.

    >>> w = Worker("w1", capacity=10, skills={"research"}, zone="eu")
    >>> dict(w.capacity), w.weight
    ({'slots': 10.0}, 1.0)
    """

    id: Hashable
    """Unique among registered workers; any hashable, non-empty value."""
    capacity: Mapping[str, float] = attrs.field(default=1.0, converter=_worker_capacity)
    """Slots (a number) or ``{resource: amount}``, each 0 or 1e-9 to 1e15; 0: it takes no work."""
    weight: float = 1.0
    """Relative share of work for weighted strategies (1e-9 to 1e9)."""
    skills: frozenset[str] = attrs.field(default=frozenset(), converter=_worker_skills)
    """What it can do; a task's ``requires`` must be a subset."""
    zone: str | None = None
    """Where it runs (region, rack), for zone-aware placement."""
    cost: float = 0.0
    """Cost per unit of work (0 to 1e18), for cost-aware scoring."""

    def __attrs_post_init__(self) -> None:
        check_id(self.id, "Worker.id")
        weight = check_number(self.weight, "Worker.weight", minimum=MIN_WEIGHT, maximum=MAX_WEIGHT)
        object.__setattr__(self, "weight", weight)
        cost = check_number(self.cost, "Worker.cost", minimum=0.0, maximum=MAX_AMOUNT)
        object.__setattr__(self, "cost", cost)
        if self.zone is not None:
            _check_zone(self.zone, "Worker.zone")

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def slots(self) -> float:
        """Capacity in the default ``"slots"`` resource (0 if it has none)."""
        return self.capacity.get("slots", 0.0)

    def to_data(self) -> dict[str, Any]:
        """Every field as plain data, for snapshots (the id as :meth:`Task.to_data`'s). O(r).

        Raises:
            SnapshotError: an id of another kind than a snapshot carries.

        >>> w = Worker("w1", capacity={"slots": 2, "gpu": 1}, skills={"gpu"})
        >>> Worker.from_data(w.to_data()) == w
        True
        """
        return {
            "id": encode_key(self.id, "a worker id"),
            "capacity": dict(self.capacity),
            "weight": self.weight,
            "skills": sorted(self.skills),
            "zone": self.zone,
            "cost": self.cost,
        }

    @classmethod
    def from_data(cls, data: object, where: str = "worker") -> Worker:
        """The worker :meth:`to_data` wrote, validated as the constructor validates. O(r).

        Raises:
            SnapshotError: a field missing, unknown or of the wrong type, or a
                value ``Worker`` refuses.
        """
        fields = Fields(data, where)
        capacity = fields.value("capacity")
        if type(capacity) is not dict:
            refuse(f"{where}.capacity", f"must be a dict, got {shown(capacity)}")
        values: dict[str, Any] = {
            "id": fields.key("id"),
            "capacity": capacity,
            "weight": fields.number("weight"),
            "skills": fields.items("skills"),
            "zone": fields.opt_text("zone"),
            "cost": fields.number("cost"),
        }
        fields.done()
        try:
            return cls(**values)
        except TaskdistError as error:
            raise as_snapshot_error(error, where) from None


@attrs.frozen(init=False)
class Assignment:
    """A task placed on a worker: which attempt, since when, and until when its lease runs.

    A lease that expires without the host reporting the outcome returns the
    task to its queue, so a dead worker never loses a task. A host reports the
    outcome naming ``lease_id``, so that a report from this run never lands on
    a later lease of the task.
    """

    task: Task
    worker_id: Hashable
    attempt: int
    """Which dispatch of the task this is: 1 for the first, one more for each later one.
    A retry or an expired lease spends an attempt of ``max_attempts``; a re-dispatch
    after a throttle, a preemption, a requeue or a removed worker spends none but still
    counts here. The count starts again at 1 when the id is submitted (or redriven)
    anew, so it names a lease only within one life of the task: ``lease_id`` names it
    always."""
    started_at: float
    lease_expiry: float | None = None
    """Clock time when the lease lapses, or ``None`` for no lease."""
    batch: int | None = None
    """The id of the batch it was dispatched in, or ``None`` when dispatched alone. The
    tasks of one batch share their worker and their lease; each reports on its own."""
    lease_id: int | None = None
    """The number of this lease, which no other lease of the distributor has had
    (``None`` in an assignment made by hand). ``complete``, ``fail``,
    ``heartbeat`` and ``requeue`` take it as ``lease_id=``: a report naming it
    reaches this lease, or this lease's late report, and nothing else."""

    # Written out, as Task's: one is made per dispatch.
    def __init__(
        self,
        task: Task,
        worker_id: Hashable,
        attempt: int,
        started_at: float,
        lease_expiry: float | None = None,
        batch: int | None = None,
        lease_id: int | None = None,
    ) -> None:
        _set_task(self, task)
        _set_worker_id(self, worker_id)
        _set_attempt(self, attempt)
        _set_started_at(self, started_at)
        _set_lease_expiry(self, lease_expiry)
        _set_batch(self, batch)
        _set_lease_id(self, lease_id)

    def __hash__(self) -> int:
        return hash((self.task.id, self.attempt))


(
    _set_task,
    _set_worker_id,
    _set_attempt,
    _set_started_at,
    _set_lease_expiry,
    _set_batch,
    _set_lease_id,
) = _slot_setters(Assignment)


_FINAL_STATES: frozenset[TaskState] = frozenset(
    (TaskState.COMPLETED, TaskState.DEAD, TaskState.CANCELLED)
)
