"""The Distributor's books: one record per dispatched task, timer keys, and the
small pure helpers its parts share (grouping, gate questions, words for explain).

Private to the dispatch package: the names keep their leading underscore."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Final

import attrs

from taskdist.balancing.base import Balancer
from taskdist.batching.optimizer import Batch
from taskdist.dispatch._parking import GATES, signature
from taskdist.dispatch.intake import Verdict
from taskdist.dispatch.stats import AttemptRecord
from taskdist.errors import (
    InvalidTypeError,
)
from taskdist.resilience.breaker import CircuitState
from taskdist.resilience.gates import AllGates, Gate, KeyedRateGate, RateGate
from taskdist.resilience.retry import RetryPolicy
from taskdist.task import Assignment, Task, TaskState
from taskdist.workers.health import Health

_LEASE: Final = "lease"
_RETRY: Final = "retry"
_TTL: Final = "ttl"
_BREAKER: Final = "breaker"
_STEP: Final = "step"
_ESCALATE: Final = "escalate"
_GANG: Final = "gang"
_GANG_RETRY: Final = "gang retry"
_WAITING: Final = frozenset((TaskState.QUEUED, TaskState.PARKED, TaskState.RETRYING))
_REFUSING: Final = frozenset((CircuitState.OPEN, CircuitState.FORCED_OPEN))
_WORKER_FIELDS: Final = frozenset(("capacity", "weight", "skills", "zone", "cost"))
# The column of a tenant's counters row that counts each final state.
_TENANT_COLUMN: Final = {TaskState.COMPLETED: 1, TaskState.DEAD: 2, TaskState.CANCELLED: 3}
_HEALTH_RANK: Final = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNAVAILABLE: 2}


@attrs.frozen
class _BreakerTimer:
    """The timer key of a worker's breaker (never equal to a task id)."""

    worker_id: Hashable


@attrs.frozen
class _StepTimer:
    """The timer key of a routed task's move to its next fallback step."""

    task_id: Hashable


@attrs.frozen
class _EscalationTimer:
    """The timer key of a waiting task's next escalation step."""

    task_id: Hashable


@attrs.frozen
class _Refused:
    """The group of a task a gate refused with an error: it is dead-lettered, not parked."""

    error: BaseException


class _Refusal(Exception):
    """An intake policy refused an arriving task (carries its verdict to the caller)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


class _Run:
    """One task's life on workers, from its first dispatch until it finishes.

    The lease fields (``worker_id``, ``attempt``, ``started_at``, ``expiry``,
    ``permit``) describe the current or last lease; the rest carries over
    between attempts. One object per dispatched task, reused by each attempt.
    """

    __slots__ = (
        "attempt",
        "balancer",
        "batch",
        "budgeted",
        "expiry",
        "failures",
        "first_started",
        "gated",
        "history",
        "lapsed",
        "last_delay",
        "last_error",
        "lease_id",
        "permit",
        "popped",
        "retry_at",
        "started_at",
        "submitted_at",
        "task",
        "waited",
        "worker_id",
    )

    def __init__(
        self,
        task: Task,
        submitted_at: float,
        now: float,
        worker_id: Hashable = None,
        balancer: Balancer | None = None,
        permit: int | None = None,
        waited: float = 0.0,
        expiry: float | None = None,
        attempt: int = 0,
        lease_id: int = 0,
    ) -> None:
        """A record started at ``now``; a first lease passes its fields here (set once)."""
        self.task = task
        self.submitted_at = submitted_at
        self.first_started = now
        # The current (or last) lease; attempt counts dispatches.
        self.worker_id = worker_id
        self.attempt = attempt
        # The current lease's number, which no other lease of the distributor has had.
        self.lease_id = lease_id
        self.started_at = now
        self.expiry = expiry
        self.permit = permit
        # The id of the batch the current lease belongs to, if any.
        self.batch: int | None = None
        # The balancer that placed the current lease (it hears on_release).
        self.balancer = balancer
        # Whether the current lease came from a queue pop (the queue hears release)
        # and passed the gates (they hear release): a manual assign may skip either.
        self.popped = True
        self.gated = True
        # Whether it counts against the retry budget (it has started a retry).
        self.budgeted = False
        self.failures = 0
        # Seconds spent waiting (queued, parked, retrying) before the current lease.
        self.waited = waited
        self.history: list[AttemptRecord] | None = None
        self.last_delay: float | None = None
        self.last_error: str | None = None
        # Attempts whose lease expired, while a late report of each may still come:
        # attempt -> the lease's number.
        self.lapsed: dict[int, int] | None = None
        self.retry_at: float | None = None


def _error_text(error: object) -> str | None:
    if error is None or isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}"


def _assignment(lease: _Run) -> Assignment:
    return Assignment(
        lease.task,
        lease.worker_id,
        lease.attempt,
        lease.started_at,
        lease.expiry,
        lease.batch,
        lease.lease_id,
    )


class _RunningBatch:
    """A batch while any of its tasks still runs under its lease."""

    __slots__ = ("batch", "ok", "running", "started")

    def __init__(self, batch: Batch, started: float) -> None:
        self.batch = batch
        self.started = started
        # Ids of its tasks still leased under it, in batch order (an ordered dict, not a
        # set: what is done to each in turn, such as timing its lease, must not depend
        # on the process's hash seed).
        self.running: dict[Hashable, None] = dict.fromkeys(batch.ids)
        # Whether every task that left it so far completed.
        self.ok = True


def _is_pause(group: Hashable) -> bool:
    return type(group) is tuple and len(group) == 3 and group[0] == "paused"


def _held_by(paused: dict[str, set[Hashable]], task: Task) -> Hashable | None:
    """The parking group of a task whose tenant or key is paused, or ``None``."""
    if task.tenant in paused["tenant"]:
        return ("paused", "tenant", task.tenant)
    if task.key is not None and task.key in paused["key"]:
        return ("paused", "key", task.key)
    return None


def _group(task: Task, placement: Hashable) -> Hashable:
    """The parking group of a task that no worker can take: its signature, and its
    route step and pin when it has them (they change which workers could)."""
    base = signature(task)
    return base if placement is None else (base, placement)


def _lookup(leases: dict[Hashable, _Run], task_id: Hashable) -> _Run | None:
    try:
        return leases.get(task_id)
    except TypeError:  # unhashable: no such lease (the caller says why)
        return None


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _gate_list(gates: Gate | Iterable[Gate]) -> list[Gate]:
    if isinstance(gates, Gate):
        listed = [gates]
    else:
        try:
            listed = list(gates)
        except TypeError:
            raise InvalidTypeError(
                f"gates must be a Gate or an iterable of gates, got {gates!r}"
            ) from None
    for gate in listed:
        if not isinstance(gate, Gate):
            raise InvalidTypeError(
                f"every gate must have try_acquire, release and next_wakeup, got {gate!r}"
            )
    return listed


def _check_gates(gates: Sequence[Gate], task: Task) -> None:
    for gate in gates:
        check = getattr(gate, "check", None)
        if check is not None:
            check(task)


def _gate_admits(gate: Gate, task: Task) -> bool:
    can = getattr(gate, "can_acquire", None)
    return True if can is None else bool(can(task))


def _gates_admit(gates: AllGates, task: Task) -> bool:
    """Would the gates admit ``task`` now? Side-effect free (``AllGates`` asks a gate
    that cannot be asked by admitting and undoing at once).

    A refusal is also told to the gates (a refused ``try_acquire``), so their
    ``next_wakeup`` says when it may pass.
    """
    if gates.can_acquire(task):
        return True
    if gates.try_acquire(task):  # cannot happen if can_acquire is exact; undo to be safe
        gates.rollback(task)
        return True
    return False


def _frees_on_release(gates: Sequence[Gate], task: Task) -> bool:
    """Whether releasing ``task`` gives a gate back something a parked task may wait for:
    a pool's units do; a rate limit's spent units come back with time, not on release."""
    for gate in gates:
        if isinstance(gate, (RateGate, KeyedRateGate)):
            continue
        demand = getattr(gate, "demand", None)
        if demand is None or demand(task):
            return True
    return False


def _gate_words(gate: Gate, task: Task) -> str:
    resource = getattr(gate, "resource", None)
    if resource is None:
        return repr(gate)
    if isinstance(gate, (RateGate, KeyedRateGate)):
        # When it could pass (its own bucket's refill, for a keyed gate), else the
        # gate's soonest wakeup.
        wake = gate._refuses_until(task)
        if wake is None:
            wake = gate.next_wakeup()
        if wake is None:
            return f"the {resource!r} rate limit"
        return f"the {resource!r} rate limit, next slot at {wake:g}"
    wake = gate.next_wakeup()
    if wake is not None:
        return f"the {resource!r} rate limit, next slot at {wake:g}"
    return f"the {resource!r} pool, until a task holding it finishes"


def _group_words(group: Hashable) -> str:
    if group is GATES:
        return "an admission gate refused it"
    if _is_pause(group):
        assert isinstance(group, tuple)
        return f"its {group[1]} is paused"
    return "no worker can take it now"


def _policy_limit(retry: RetryPolicy) -> int | None:
    return getattr(retry.stop, "max_attempts", None)
