"""The Distributor's books as plain data, and back: ``snapshot()`` and ``restore()``.

The distributor keeps its persistence here so that ``distributor.py`` stays
about moving tasks. This module reads and writes the distributor's private
books (as ``_records.py`` shares them); nothing else does.

What a snapshot holds: the configuration that is data (lease, dedup
window, ``max_queued``, stats window, the gangs' timeout); every waiting task with its age;
parked tasks by group, in order; every dispatched task's run (attempts,
history, failures, lease and its expiry, retry time); the timers (lease
expiries, retry delays, TTLs of parked tasks, escalations) in the order
they fall due; the dedup window; escalation steps taken; paused tenants
and keys; pins; each routed task's route and step, the pools escalations
sent tasks to, and the paused pools; the gangs still waiting for members
or room; the batches still running, the batch group each live task counts
in and the batcher's own snapshot; the backfill reservation held (the
reservations' holdings follow from the leases); every counter and
recent-sample window of ``stats()``;
and the snapshots of the queue, the tracker, the dead-letter queue, the
retry policy and every balancer (see :mod:`taskdist.balancing._state`:
a balancer's own snapshot, only its random source, or ``None``). The
collaborators
that are code (clock, balancer, listeners, escalation and preemption rules)
are given again to :meth:`Distributor.restore`; a retry budget's counts
follow from the leases and retries, and are told to it again.

Restoring checks everything (each component's part, then the references
between them: a lease for an unknown task, a worker that holds a task no
lease knows, a waiting task in no queue) before anything is loaded, so a
refused snapshot leaves nothing half-built.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Hashable
from itertools import chain
from typing import TYPE_CHECKING, Any, Final

from taskdist._snapshot import (
    SNAPSHOT_VERSION,
    Fields,
    as_snapshot_error,
    check_header,
    decode_key,
    encode_key,
    header,
    one_of,
    prepare_load,
    refuse,
    snapshot_part,
)
from taskdist._validate import shown
from taskdist.balancing._state import prepare_state, state_of
from taskdist.batching.optimizer import Batch, BatchReason
from taskdist.dispatch._parking import GATES
from taskdist.dispatch._records import (
    _BREAKER,
    _ESCALATE,
    _GANG,
    _GANG_RETRY,
    _LEASE,
    _RETRY,
    _STEP,
    _TTL,
    _BreakerTimer,
    _EscalationTimer,
    _Run,
    _RunningBatch,
    _StepTimer,
)
from taskdist.dispatch.gangs import WAITING_FOR_GANG, GangMark, GangRetryTimer, Gangs, GangTimer
from taskdist.dispatch.intake import ConcurrencyLimit
from taskdist.dispatch.reservation import BackfillMark, HeldGroup
from taskdist.dispatch.routing import Pool
from taskdist.dispatch.stats import AttemptRecord
from taskdist.errors import InvalidTypeError, SnapshotError, TaskdistError
from taskdist.resilience.adaptive import AdaptiveConcurrency
from taskdist.resilience.breaker import CircuitBreaker, CircuitState
from taskdist.resilience.gates import AllGates, PoolGate
from taskdist.task import Reason, Task, TaskState

if TYPE_CHECKING:
    from taskdist.dispatch.distributor import Distributor

__all__ = ["restore_into", "snapshot_of", "unsupported"]

_KIND: Final = "Distributor"
_VERSION: Final = 7
"""The Distributor's snapshot format: 2 added ``gangs`` (``Gangs.timeout``),
``waiting_gangs``, ``routed``, ``sent`` and ``paused_pools``, ``batcher``,
``batches``, ``batch_groups`` and each run's ``batch``, and ``backfill``; parked
groups are written by shape. A version 1 snapshot still loads, its gangs'
configuration given to ``restore`` (or the default), with no gang waiting, no task
routed or sent, no pool paused, no batch and no reservation held (version 1 refused
to write them). 3 added ``gate_scouts``: the tasks that went back to the queue first
of their kind when a gate opened (none before), and ``gate_due``, the gates' wakeup
kept since they last refused a task. 4 added the ``gang retry`` timer: when a complete
gang refused by its tenants' rate quotas is tried again (none before). 5 added
``gate_shut``: the least demand each rate or pool gate charged a task taken in, and
whether the last dispatch stopped at a shut gate (before: worked out again from the
tasks the snapshot holds). 6 added each run's breaker ``permit`` (before: none, so
its outcome counted in the breaker's period at restore), ``gate_times``, the time of
each class of gate-refused tasks (before: worked out again at restore), and
``gate_evictions``, the keyed limiters' drops the scouts last saw (before: none seen,
so a restored twin sent every class at its first wakeup). 7 added lease numbers:
``next_lease_id``, each leased run's ``lease_id``, and ``lapsed`` as ``[attempt,
lease_id]`` pairs (before: a list of attempts; the leases such a snapshot holds are
numbered afresh at restore, from 1)."""
_VERSIONS: Final = (SNAPSHOT_VERSION, 2, 3, 4, 5, 6, _VERSION)
_FINAL: Final = {state.value: state for state in TaskState if state.is_final}
_TASK_TIMERS: Final = (_LEASE, _RETRY, _TTL)
_TIMER_KINDS: Final = (*_TASK_TIMERS, _ESCALATE, _STEP, _GANG, _GANG_RETRY, _BREAKER)
_BREAKER_STATES: Final = {state.value: state for state in CircuitState}
_REASONS: Final = {reason.value: reason for reason in Reason}


def unsupported(d: Distributor) -> str | None:
    """What of ``d``'s composition a snapshot cannot carry yet, in words, or ``None``."""
    queue = d._queue
    if not callable(getattr(queue, "snapshot", None)) or not callable(
        getattr(queue, "load_snapshot", None)
    ):
        return (
            f"its queue, a {type(queue).__name__}, has no snapshot()/load_snapshot() "
            "(PriorityQueue, DeadlineScheduler and FairScheduler have them)"
        )
    for policy in d._intake:
        if not callable(getattr(policy, "_prepare_snapshot", None)):
            return f"its intake policy {type(policy).__name__} has no snapshot support yet"
    for gate in d._gate_list:
        if not callable(getattr(gate, "_prepare_snapshot", None)):
            return f"its admission gate {type(gate).__name__} has no snapshot support yet"
    return None


# -- writing -------------------------------------------------------------------


def snapshot_of(d: Distributor) -> dict[str, Any]:
    """``d``'s whole state as plain data (see the module docstring).

    Raises:
        SnapshotError: a part of the composition a snapshot cannot carry, or an
            id of a kind it cannot write.
    """
    why = unsupported(d)
    if why is not None:
        raise SnapshotError(f"cannot snapshot this Distributor: {why}")
    balancers = d._rules.balancers()
    rules = d._rules
    live = [*d._waiting_since, *d._leases]
    pools = _known_pools(d)
    return {
        **header(_KIND, _VERSION),
        "time": d._now(),
        "lease": d._lease,
        "dedup_window": d._dedup_window,
        "max_queued": d._max_queued,
        "gangs": {"timeout": d._gangs.policy.timeout},
        "closed": d._closed,
        "ticked_at": None if d._ticked_at == -math.inf else d._ticked_at,
        "tracker_wake": d._tracker_wake,
        "gate_due": d._gate_due,
        "waiting": [[_id(task_id), since] for task_id, since in d._waiting_since.items()],
        "retrying": [_id(task_id) for task_id in d._retrying],
        "gate_scouts": _scouts_data(d),
        "gate_times": []
        if d._scouts is None
        else [[_id(task_id), due] for task_id, due in d._lot.times(GATES)],
        "gate_evictions": None if d._scouts is None else d._scouts.evictions_seen,
        "gate_shut": _shut_data(d),
        "parked": [
            [_group_data(group, pools), [task.to_data() for task in tasks]]
            for group, tasks in d._lot.parked()
        ],
        "next_lease_id": d._next_lease_id,
        "runs": [
            _run_data(run, balancers, run is d._leases.get(task_id))
            for task_id, run in d._progress.items()
        ],
        "batcher": None if d._batcher is None else d._batcher.snapshot(),
        "batches": [
            [
                batch_id,
                book.started,
                book.ok,
                [_id(t) for t in book.running],
                _batch_data(book.batch),
            ]
            for batch_id, book in d._batches.items()
        ],
        "backfill": _backfill_data(d),
        "batch_groups": [
            [_id(task_id), encode_key(group, "a batch group")]
            for task_id, group in d._batch_group.items()
        ],
        "leases": [_id(task_id) for task_id in d._leases],
        "finished": [
            [_id(task_id), state.value, when] for task_id, (state, when) in d._finished.items()
        ],
        "timers": [_timer_data(kind, key, when) for kind, key, when in d._timers.pending()],
        "escalated": [
            [_id(task_id), steps, _escalated_at(d, task_id, age)]
            for task_id, (steps, age) in d._escalated.items()
        ],
        "advised": sorted((_id(task_id) for task_id in d._advised), key=repr),  # a set
        "paused": [
            [kind, sorted((encode_key(v, f"a paused {kind}") for v in d._paused[kind]), key=repr)]
            for kind in ("tenant", "key")
        ],
        "pins": [
            [_id(task_id), encode_key(rules.pinned(task_id), "a worker id")]
            for task_id in live
            if rules.pinned(task_id) is not None
        ],
        "waiting_gangs": [
            [
                encode_key(gang, "a gang"),
                size,
                due,
                None if leader is None else [m.id for m in members].index(leader),
                [member.to_data() for member in members],
            ]
            for gang, size, due, leader, members in d._gangs.data()
        ],
        "routed": [[_id(task_id), route, step] for task_id, route, step in rules.routed()],
        "sent": [[_id(task_id), _pool_data(pool, pools)] for task_id, pool in rules.sent()],
        "paused_pools": [_pool_data(pool, pools) for pool in rules.closed_pools],
        "counts": list(d._counts.values()),
        "dead_by_reason": [[reason.value, n] for reason, n in d._dead_by_reason.items()],
        "deadlines": [d._deadline_met, d._deadline_missed],
        "tenants": [[encode_key(t, "a tenant"), list(row)] for t, row in d._tenants.items()],
        "worker_counts": [
            [encode_key(worker_id, "a worker id"), list(row)]
            for worker_id, row in d._worker_counts.items()
        ],
        "breakers": [
            [encode_key(worker_id, "a worker id"), breaker.snapshot()]
            for worker_id, breaker in d._breakers.items()
        ],
        "breaker_changes": [
            [encode_key(worker_id, "a worker id"), state.value]
            for worker_id, state in d._breaker_changes
        ],
        "gates": None if d._gates is None else d._gates.snapshot(),
        "intake": [
            None if _gated(d, policy) else snapshot_part(policy, "an intake policy")
            for policy in d._intake
        ],
        "waits": d._waits.snapshot(),
        "end_to_end": d._end_to_end.snapshot(),
        "balancers": [state_of(balancer) for balancer in balancers],
        "queue": d._queue.snapshot(),  # type: ignore[attr-defined]
        "tracker": d._tracker.snapshot(),
        "dlq": d._dlq.snapshot(),
        "retry": d._retry.snapshot(),
    }


def _gated(d: Distributor, policy: object) -> bool:
    """Whether an intake policy is among the gates too (its state goes with them)."""
    return any(policy is gate for gate in d._gate_list)


def _id(task_id: Hashable) -> Any:
    return encode_key(task_id, "a task id")


def _group_data(group: Hashable, pools: list[Pool]) -> Any:
    if group is GATES:
        return {"gates": []}
    return {"group": _shape_data(group, pools)}


def _shape_data(value: object, pools: list[Pool]) -> Any:
    """A parking group (or a part of one) as plain data. Besides plain keys, a group
    may hold a route's pool, a gang's shape, a reservation's mark or the backfill
    reservation's: each is written as a one-key dict naming it."""
    if isinstance(value, Pool):
        return {"pool": _pool_data(value, pools)}
    if isinstance(value, GangMark):
        return {"gang": encode_key(value.shape, "a gang's shape")}
    if isinstance(value, HeldGroup):
        return {"held": value.index}
    if isinstance(value, BackfillMark):
        return {"backfill": _shape_data(value.held, pools)}
    if type(value) is tuple:
        return {"tuple": [_shape_data(item, pools) for item in value]}
    return encode_key(value, "a parking group")


def _known_pools(d: Distributor) -> list[Pool]:
    """The pools the configuration names (each route's steps, then the escalation's),
    which a snapshot names by their place in this list."""
    pools = [step.pool for route in d._rules.routes for step in route.steps]
    if d._escalation is not None and d._escalation.to is not None:
        pools.append(d._escalation.to)
    return pools


def _pool_data(pool: Pool, known: list[Pool]) -> Any:
    """A pool as plain data: its place among the configured pools, or its fields
    when it tests no ``where=`` (code a snapshot cannot carry)."""
    for i, other in enumerate(known):
        if other == pool:
            return {"known": i, "label": pool.label}  # the label: a check on restore
    if pool.where is not None:
        raise SnapshotError(
            f"cannot snapshot this Distributor: the paused pool {pool.label} tests where= "
            f"{pool.where!r}, and is none of the routes' or the escalation's pools "
            "(a snapshot names those by place; a where= test is code, not data)"
        )
    return {
        "pool": {
            "name": pool.name,
            "skills": sorted(pool.skills),
            "zone": pool.zone,
            "workers": None
            if pool.workers is None
            else sorted((encode_key(w, "a worker id") for w in pool.workers), key=repr),
        }
    }


def _timer_data(kind: str, key: Hashable, when: float) -> list[Any]:
    if kind in _TASK_TIMERS:
        return [kind, _id(key), when]
    if kind == _ESCALATE:
        assert isinstance(key, _EscalationTimer)
        return [kind, _id(key.task_id), when]
    if kind == _STEP:
        assert isinstance(key, _StepTimer)
        return [kind, _id(key.task_id), when]
    if kind == _GANG:
        assert isinstance(key, GangTimer)
        return [kind, encode_key(key.gang, "a gang"), when]
    if kind == _GANG_RETRY:
        assert isinstance(key, GangRetryTimer)
        return [kind, encode_key(key.gang, "a gang"), when]
    if kind == _BREAKER:
        assert isinstance(key, _BreakerTimer)
        return [kind, encode_key(key.worker_id, "a worker id"), when]
    raise SnapshotError(f"cannot snapshot this Distributor: a {kind} timer is pending")


def _run_data(run: _Run, balancers: list[Any], leased: bool) -> dict[str, Any]:
    placed_by = next(i for i, balancer in enumerate(balancers) if balancer is run.balancer)
    return {
        "task": run.task.to_data(),
        "submitted_at": run.submitted_at,
        "first_started": run.first_started,
        "worker_id": encode_key(run.worker_id, "a worker id"),
        "attempt": run.attempt,
        "started_at": run.started_at,
        "expiry": run.expiry,
        "balancer": placed_by,
        "popped": run.popped,
        "gated": run.gated,
        "budgeted": run.budgeted,
        "failures": run.failures,
        "waited": run.waited,
        "history": [record.to_data() for record in run.history or ()],
        "last_delay": run.last_delay,
        "last_error": run.last_error,
        "lapsed": None if run.lapsed is None else sorted([a, n] for a, n in run.lapsed.items()),
        "retry_at": run.retry_at,
        "batch": run.batch,
        "permit": run.permit,
        # (a run between leases keeps its last lease's number, which names nothing now)
        "lease_id": run.lease_id if leased else None,
    }


def _backfill_data(d: Distributor) -> list[Any] | None:
    """The backfill reservation held: its task and its worker, or ``None``."""
    held = None if d._holds is None else d._holds.backfill_state()
    if held is None:
        return None
    task, worker_id = held
    return [task.to_data(), encode_key(worker_id, "a worker id")]


def _batch_data(batch: Batch) -> list[Any]:
    return [
        batch.id,
        encode_key(batch.key, "a batch group"),
        [task.to_data() for task in batch.tasks],
        batch.created,
        batch.released,
        batch.reason.value,
    ]


# -- reading -------------------------------------------------------------------


def read_config(data: object, gangs: object = None) -> tuple[Fields, dict[str, Any]]:
    """The header and the configuration that is data: the constructor's numbers, and
    the gangs' configuration (``gangs``, given to ``restore``, must agree with it).

    Raises:
        SnapshotError: a field missing, ill-typed or out of range, or ``gangs`` configured
            otherwise than the snapshot's.
    """
    fields = check_header(data, _KIND, "snapshot", _VERSIONS)
    lease = fields.opt_number("lease")
    if lease is not None and lease <= 0:
        refuse("snapshot.lease", f"must be > 0 or None, got {lease!r}")
    dedup_window = fields.number("dedup_window")
    if dedup_window < 0:
        refuse("snapshot.dedup_window", f"must be >= 0, got {dedup_window!r}")
    window = Fields(fields.value("waits"), "snapshot.waits").integer("window", minimum=1)
    config = {
        "lease": lease,
        "dedup_window": dedup_window,
        "max_queued": fields.opt_integer("max_queued", minimum=1),
        "stats_window": window,
        "gangs": gangs if fields.version < 2 else _gangs(fields.value("gangs"), gangs),
    }
    return fields, config


def _gangs(data: object, given: object) -> object:
    """The gangs' configuration a snapshot holds; ``given`` (a ``Gangs``, checked
    against it) or, without one, a ``Gangs`` made from it."""
    fields = Fields(data, "snapshot.gangs")
    if isinstance(given, Gangs):
        fields.same("timeout", given.timeout, "restore()'s Gangs")
        fields.done()
        return given
    timeout = fields.value("timeout")
    fields.done()
    if given is not None:
        return given  # not a Gangs: the constructor says what is wrong with it
    try:
        return Gangs(timeout=timeout)
    except TaskdistError as error:
        raise as_snapshot_error(error, "snapshot.gangs.timeout") from None


def restore_into(d: Distributor, fields: Fields) -> None:
    """Load the snapshot read by :func:`read_config` into ``d``, new and built with
    its collaborators; check all of it first.

    Raises:
        SnapshotError: anything wrong, before ``d`` or its parts change.
    """
    why = unsupported(d)
    if why is not None:
        refuse("snapshot", f"cannot be restored into this Distributor: {why}")
    taken = fields.number("time")
    now = d._now()
    if now < taken:
        refuse(
            "snapshot",
            f"was taken at t={taken:g}, after the clock's now ({now:g}): restore needs a "
            "clock that goes on from the snapshot's time (a ManualClock set to it, or a "
            "clock whose epoch survives a restart)",
        )
    loads: list[Callable[[], None]] = []
    queue = d._queue
    queue_data = fields.value("queue")
    prepare_queue = getattr(queue, "_prepare_snapshot", None)
    queued: set[Hashable] | None = None
    if prepare_queue is not None:
        load_queue, held = prepare_queue(queue_data, "snapshot.queue")
        loads.append(load_queue)
        queued = set(held)  # the ids of the tasks it will hold
    load_tracker, placed, workers = d._tracker._prepare_snapshot(
        fields.value("tracker"), "snapshot.tracker"
    )
    loads.append(load_tracker)
    dlq_data = fields.value("dlq")
    loads.append(d._dlq._prepare_snapshot(dlq_data, "snapshot.dlq"))
    loads.append(d._retry._prepare_snapshot(fields.value("retry"), "snapshot.retry"))
    loads.append(d._waits._prepare_snapshot(fields.value("waits"), "snapshot.waits"))
    loads.append(d._end_to_end._prepare_snapshot(fields.value("end_to_end"), "snapshot.end_to_end"))
    gates_data = fields.value("gates")
    if (gates_data is None) is not (d._gates is None):
        refuse("snapshot.gates", "does not match the gates given to restore()")
    admitted: set[Hashable] = set()
    if d._gates is not None:
        loads.append(prepare_load(d._gates, gates_data, "snapshot.gates"))
        admitted = {decode_key(k, "snapshot.gates.held") for k in gates_data["held"]}
    batcher_data = fields.value("batcher") if fields.version >= 2 else None
    if batcher_data is not None and d._batcher is None:
        refuse("snapshot.batcher", "holds a batcher's state; give restore() the batcher")
    if batcher_data is None and d._batcher is not None and fields.version >= 2:
        # As with gates: the twin would batch where the original did not.
        refuse("snapshot.batcher", "is None (no batcher); restore() was given one")
    if d._batcher is not None and batcher_data is not None:
        loads.append(prepare_load(d._batcher, batcher_data, "snapshot.batcher"))
    policies = fields.items("intake")
    if len(policies) != len(d._intake):
        refuse(
            "snapshot.intake", f"has {len(policies)} policies; restore() was given {len(d._intake)}"
        )
    for i, (policy, data) in enumerate(zip(d._intake, policies, strict=True)):
        if (data is None) is not _gated(d, policy):
            refuse(f"snapshot.intake[{i}]", "does not match the intake policy given")
        if data is not None:
            loads.append(prepare_load(policy, data, f"snapshot.intake[{i}]"))
    books = _Books(d, fields, placed, workers)
    if prepare_queue is not None:
        books.queued_tasks = held
    books.check_gates(admitted)
    if d._gates is not None:
        books.check_gate_holdings(d._gates, gates_data, "snapshot.gates")
    books.check_dead(dlq_data)
    if queued is not None:
        books.check_queue(queued)
        if queue_data["kind"] == "FairScheduler":  # (checked by its prepare)
            books.check_running(queue_data["running"])
    fields.done()
    if queued is None:  # a queue of the user's own can only be checked once loaded: last
        _load_own_queue(queue, queue_data, books)
    for load in loads:
        load()
    books.load()


def _load_own_queue(queue: Any, data: object, books: _Books) -> None:
    """Load a queue without a prepared load (a queue of the user's own), everything else
    checked already; if it then holds other tasks than the books say, it is emptied again
    before the refusal."""
    queue.load_snapshot(data)
    queued = {task_id for task_id in books.waiting if task_id in queue}
    try:
        books.check_queue(queued, len(queue))
    except SnapshotError:
        for task_id in queued:
            queue.remove(task_id)
        while len(queue) and queue.pop() is not None:
            pass  # tasks the books do not know: out again too
        raise


class _Books:
    """The distributor's own part of a snapshot, read and checked, ready to load."""

    def __init__(
        self,
        d: Distributor,
        fields: Fields,
        placed: dict[Hashable, Hashable],
        workers: list[Hashable],
    ) -> None:
        self.d = d
        self.workers = workers
        # The tasks the queue will hold, by id (the very objects), when it says.
        self.queued_tasks: dict[Hashable, Task] = {}
        balancers = d._rules.balancers()
        pools = _known_pools(d)
        self.closed = fields.boolean("closed")
        ticked = fields.opt_number("ticked_at")
        self.ticked_at = -math.inf if ticked is None else ticked
        self.tracker_wake = fields.opt_number("tracker_wake")
        self.gate_due = fields.opt_number("gate_due") if fields.version >= 3 else None
        self.waiting = {
            task_id: _number(since, f"snapshot.waiting[{task_id!r}]")
            for task_id, since in _unique_pairs(fields, "waiting")
        }
        self.retrying = _unique_ids(fields, "retrying")
        self.scouts: list[tuple[Hashable, int]] = []
        for i, item in enumerate(fields.items("gate_scouts") if fields.version >= 3 else []):
            where = f"snapshot.gate_scouts[{i}]"
            if type(item) is not list or len(item) != 2 or type(item[1]) is not int or item[1] < 0:
                refuse(
                    where, f"must be [task id, tasks of its class ahead of it], got {shown(item)}"
                )
            self.scouts.append((decode_key(item[0], f"{where}[0]"), item[1]))
        if len({task_id for task_id, _ in self.scouts}) != len(self.scouts):
            refuse("snapshot.gate_scouts", "names an id twice")
        self.shut = _shut(fields.value("gate_shut")) if fields.version >= 5 else None
        self.gate_times: list[tuple[Hashable, float | None]] = []
        for i, item in enumerate(fields.items("gate_times") if fields.version >= 6 else []):
            where = f"snapshot.gate_times[{i}]"
            if type(item) is not list or len(item) != 2:
                refuse(where, f"must be [task id, time or null], got {shown(item)}")
            due = None if item[1] is None else _number(item[1], f"{where}[1]")
            self.gate_times.append((decode_key(item[0], f"{where}[0]"), due))
        if len({task_id for task_id, _ in self.gate_times}) != len(self.gate_times):
            refuse("snapshot.gate_times", "names an id twice")
        self.gate_evictions = (
            fields.opt_integer("gate_evictions", minimum=0) if fields.version >= 6 else None
        )
        self.parked: list[tuple[Hashable, list[Task]]] = []
        held = len(d._holds.reservations) if d._holds is not None else 0
        for i, item in enumerate(fields.items("parked")):
            where = f"snapshot.parked[{i}]"
            if type(item) is not list or len(item) != 2 or type(item[1]) is not list:
                refuse(where, "must be [group, [tasks]]")
            tasks = [Task.from_data(t, f"{where}[1][{j}]") for j, t in enumerate(item[1])]
            self.parked.append((_group(item[0], f"{where}[0]", pools, held), tasks))
        self.runs: dict[Hashable, _Run] = {}
        for i, item in enumerate(fields.items("runs")):
            run = _run(item, f"snapshot.runs[{i}]", balancers, fields.version)
            if run.task.id in self.runs:
                refuse(f"snapshot.runs[{i}]", f"repeats task {run.task.id!r}")
            self.runs[run.task.id] = run
        self.leases = _unique_ids(fields, "leases")
        self.next_lease_id = (
            fields.integer("next_lease_id", minimum=1) if fields.version >= 7 else None
        )
        self.finished: dict[Hashable, tuple[TaskState, float]] = {}
        for i, item in enumerate(fields.items("finished")):
            where = f"snapshot.finished[{i}]"
            if type(item) is not list or len(item) != 3 or not one_of(item[1], _FINAL):
                refuse(where, f"must be [task id, a final state, time], got {shown(item)}")
            self.finished[decode_key(item[0], f"{where}[0]")] = (
                _FINAL[item[1]],
                _number(item[2], f"{where}[2]"),
            )
        self.timers: list[tuple[str, Hashable, float]] = []
        for i, item in enumerate(fields.items("timers")):
            where = f"snapshot.timers[{i}]"
            if type(item) is not list or len(item) != 3 or item[0] not in _TIMER_KINDS:
                refuse(where, f"must be [kind, id, time], got {shown(item)}")
            if item[0] == _GANG_RETRY and fields.version < 4:
                refuse(where, f"is a {_GANG_RETRY} timer, which version {fields.version} has not")
            self.timers.append(
                (item[0], decode_key(item[1], f"{where}[1]"), _number(item[2], f"{where}[2]"))
            )
        self.escalated: dict[Hashable, tuple[int, float]] = {}
        for i, item in enumerate(fields.items("escalated")):
            where = f"snapshot.escalated[{i}]"
            if type(item) is not list or len(item) != 3 or type(item[1]) is not int:
                refuse(where, f"must be [task id, steps, since], got {shown(item)}")
            self.escalated[decode_key(item[0], f"{where}[0]")] = (
                item[1],
                _number(item[2], f"{where}[2]"),
            )
        self.advised = _unique_ids(fields, "advised")
        paused = fields.items("paused")
        if (
            len(paused) != 2
            or not all(type(item) is list and len(item) == 2 for item in paused)
            or [kind for kind, _ in paused] != ["tenant", "key"]
            or not all(type(values) is list for _, values in paused)
        ):
            refuse("snapshot.paused", "must be [['tenant', [...]], ['key', [...]]]")
        self.paused = {
            kind: {decode_key(v, f"snapshot.paused.{kind}") for v in values}
            for kind, values in paused
        }
        self.pins = [
            (task_id, decode_key(worker_id, "snapshot.pins"))
            for task_id, worker_id in _unique_pairs(fields, "pins")
        ]
        self._read_routes(fields, pools)
        self._read_gangs(fields)
        self._read_batches(fields)
        self._read_backfill(fields)
        counted = list(d._counts)
        self.counts = dict(zip(counted, fields.counts("counts", len(counted)), strict=True))
        self.dead_by_reason: dict[Reason, int] = {}
        for i, item in enumerate(fields.items("dead_by_reason")):
            if (
                type(item) is not list
                or len(item) != 2
                or not one_of(item[0], _REASONS)
                or type(item[1]) is not int
            ):
                refuse(
                    f"snapshot.dead_by_reason[{i}]", f"must be [reason, count], got {shown(item)}"
                )
            self.dead_by_reason[_REASONS[item[0]]] = item[1]
        deadlines = fields.items("deadlines")
        if len(deadlines) != 2 or not all(type(n) is int and n >= 0 for n in deadlines):
            refuse("snapshot.deadlines", "must be [met, missed], two ints >= 0")
        self.deadlines = deadlines
        self.tenants = {
            tenant: _row(row, 6, f"snapshot.tenants[{tenant!r}]")
            for tenant, row in _unique_pairs(fields, "tenants")
        }
        self.worker_counts = {
            worker_id: [int(n) for n in _row(row, 2, f"snapshot.worker_counts[{worker_id!r}]")]
            for worker_id, row in _unique_pairs(fields, "worker_counts")
        }
        states = fields.items("balancers")
        if len(states) != len(balancers):
            refuse(
                "snapshot.balancers",
                f"has {len(states)} states; restore() was given {len(balancers)} balancers",
            )
        self.balancer_loads = [
            prepare_state(balancer, state, f"snapshot.balancers[{i}]")
            for i, (balancer, state) in enumerate(zip(balancers, states, strict=True))
        ]
        self._read_breakers(fields)
        self._check(placed)
        if fields.version < 6:
            # Written before leases kept their permits: each counts in its breaker's
            # period at restore (a half-open breaker's probe settles it, as it would
            # have), and is dropped if the breaker moves on first. A lease without a
            # permit is a forced one, whose outcome no breaker hears.
            for task_id in self.leases:
                run = self.runs[task_id]
                run.permit = self.breaker_periods.get(run.worker_id)

    def _read_routes(self, fields: Fields, pools: list[Pool]) -> None:
        """Each routed task's route and step, the pools escalations sent tasks to,
        and the paused pools."""
        routes = self.d._rules.routes
        self.routed: list[tuple[Hashable, int, int]] = []
        self.sent: list[tuple[Hashable, Pool]] = []
        self.paused_pools: list[Pool] = []
        if fields.version < 2:  # written before routes were carried: none were live
            return
        for i, item in enumerate(fields.items("routed")):
            where = f"snapshot.routed[{i}]"
            if (
                type(item) is not list
                or len(item) != 3
                or type(item[1]) is not int
                or type(item[2]) is not int
            ):
                refuse(where, f"must be [task id, route, step], got {shown(item)}")
            route, step = item[1], item[2]
            if not 0 <= route < len(routes):
                refuse(where, f"names route {route}; restore() was given {len(routes)} routes")
            if not 0 <= step < len(routes[route].steps):
                refuse(
                    where,
                    f"names step {step} of route {route}, which restore() was given with "
                    f"{len(routes[route].steps)} steps",
                )
            self.routed.append((decode_key(item[0], f"{where}[0]"), route, step))
        if len({task_id for task_id, _, _ in self.routed}) != len(self.routed):
            refuse("snapshot.routed", "names an id twice")
        self.sent = [
            (task_id, _pool(data, f"snapshot.sent[{task_id!r}]", pools))
            for task_id, data in _unique_pairs(fields, "sent")
        ]
        self.paused_pools = [
            _pool(data, f"snapshot.paused_pools[{i}]", pools)
            for i, data in enumerate(fields.items("paused_pools"))
        ]

    def _read_backfill(self, fields: Fields) -> None:
        """The backfill reservation held: its task (waiting) and its worker."""
        self.backfill: tuple[Task, Hashable] | None = None
        data = fields.value("backfill") if fields.version >= 2 else None
        if data is None:
            return
        if type(data) is not list or len(data) != 2:
            refuse("snapshot.backfill", f"must be [task, worker id] or None, got {shown(data)}")
        task = Task.from_data(data[0], "snapshot.backfill[0]")
        if self.d._holds is None:
            refuse("snapshot.backfill", "holds a reservation; give restore() the backfill")
        if task.id not in self.waiting:
            refuse("snapshot.backfill", f"holds a reservation for {task.id!r}, not waiting")
        self.backfill = (task, decode_key(data[1], "snapshot.backfill[1]"))

    def _read_batches(self, fields: Fields) -> None:
        """The batches still running, and the batch group each live task counts in."""
        self.batches: dict[int, _RunningBatch] = {}
        self.batch_groups: dict[Hashable, Hashable] = {}
        if fields.version < 2:  # written before batches were carried: none ran
            return
        reasons = {reason.value: reason for reason in BatchReason}
        for i, item in enumerate(fields.items("batches")):
            where = f"snapshot.batches[{i}]"
            if (
                type(item) is not list
                or len(item) != 5
                or type(item[0]) is not int
                or type(item[2]) is not bool
                or type(item[3]) is not list
                or type(item[4]) is not list
                or len(item[4]) != 6
                or type(item[4][0]) is not int
                or type(item[4][2]) is not list
                or not one_of(item[4][5], reasons)
            ):
                refuse(where, f"must be [id, started, ok, [running], batch], got {shown(item)}")
            raw = item[4]
            tasks = tuple(Task.from_data(t, f"{where}[4][2][{j}]") for j, t in enumerate(raw[2]))
            batch = Batch(
                raw[0],
                decode_key(raw[1], f"{where}[4][1]"),
                tasks,
                _number(raw[3], f"{where}[4][3]"),
                _number(raw[4], f"{where}[4][4]"),
                reasons[raw[5]],
            )
            book = _RunningBatch(batch, _number(item[1], f"{where}[1]"))
            book.ok = item[2]
            running = {decode_key(t, f"{where}[3]") for t in item[3]}
            if item[0] != batch.id or item[0] in self.batches:
                refuse(where, f"names batch {item[0]!r} twice, or not as its batch does")
            if not running or not running <= set(batch.ids):
                refuse(where, "must name some of its batch's tasks as running")
            # In batch order, whatever order the snapshot lists them in (older ones sorted).
            book.running = dict.fromkeys(t for t in batch.ids if t in running)
            self.batches[item[0]] = book
        self.batch_groups = {
            task_id: decode_key(group, f"snapshot.batch_groups[{task_id!r}]")
            for task_id, group in _unique_pairs(fields, "batch_groups")
        }

    def _check_batches(self) -> None:
        """Each lease of a batch is one of its running tasks, and the other way round;
        every task counted in a batch group is live; a batcher when batches ran."""
        leases = self.leases
        running = {t: batch_id for batch_id, b in self.batches.items() for t in b.running}
        for task_id in leases:
            batch_id = self.runs[task_id].batch
            if running.get(task_id) != batch_id:
                refuse(
                    "snapshot.batches",
                    f"do not say what lease {task_id!r} does: batch {batch_id!r}",
                )
        stray = next((t for t in running if t not in leases), None)
        if stray is not None:
            refuse("snapshot.batches", f"run {stray!r}, which is not leased")
        leased = set(leases)
        for task_id, run in self.runs.items():  # (a lease's end clears its batch)
            if run.batch is not None and task_id not in leased:
                refuse(
                    "snapshot.runs", f"gives {task_id!r}, which is not leased, batch {run.batch}"
                )
        for task_id in self.batch_groups:
            if task_id not in self.waiting and task_id not in leases:
                refuse("snapshot.batch_groups", f"names {task_id!r}, which is not live")
        if (self.batches or self.batch_groups) and self.d._batcher is None:
            refuse("snapshot.batches", "hold batches; give restore() the batcher")

    def _read_gangs(self, fields: Fields) -> None:
        """The gangs not placed yet: size, timeout, leader and members."""
        self.gangs: dict[Hashable, tuple[int, float, Hashable, list[Task]]] = {}
        if fields.version < 2:  # written before gangs were carried: none was waiting
            return
        for i, item in enumerate(fields.items("waiting_gangs")):
            where = f"snapshot.waiting_gangs[{i}]"
            if (
                type(item) is not list
                or len(item) != 5
                or type(item[1]) is not int
                or item[1] < 1
                or not (item[3] is None or type(item[3]) is int)
                or type(item[4]) is not list
            ):
                refuse(
                    where,
                    f"must be [gang, size, due, leader's place or None, [members]], "
                    f"got {shown(item)}",
                )
            gang = decode_key(item[0], f"{where}[0]")
            size, leader_at = item[1], item[3]
            due = _number(item[2], f"{where}[2]")
            members = [Task.from_data(t, f"{where}[4][{j}]") for j, t in enumerate(item[4])]
            if gang in self.gangs:
                refuse("snapshot.waiting_gangs", f"names gang {gang!r} twice")
            if not members or len(members) > size:
                refuse(where, f"holds {len(members)} members of a gang of {size}")
            odd = next((t for t in members if t.gang != gang or t.gang_size != size), None)
            if odd is not None:
                refuse(where, f"holds {odd.id!r}, which is not of gang {gang!r} of {size}")
            complete = len(members) == size
            if (leader_at is not None) is not complete or (
                leader_at is not None and not 0 <= leader_at < size
            ):
                refuse(
                    f"{where}[3]",
                    f"must be the leader's place when all {size} members are there, "
                    f"else None; got {shown(leader_at)} with {len(members)}",
                )
            leader = None if leader_at is None else members[leader_at].id
            self.gangs[gang] = (size, due, leader, members)

    def _read_breakers(self, fields: Fields) -> None:
        """Make each worker's breaker with the factory given, and check its snapshot."""
        factory = self.d._breaker_factory
        self.breakers: dict[Hashable, CircuitBreaker] = {}
        self.breaker_loads: list[Callable[[], None]] = []
        # Each breaker's latest period (what a lease's permit may name at most).
        self.breaker_periods: dict[Hashable, int] = {}
        given = _unique_pairs(fields, "breakers")
        if factory is None and given:
            refuse("snapshot.breakers", "holds breakers; give restore() the breaker factory")
        if factory is not None:
            if [worker_id for worker_id, _ in given] != self.workers:
                refuse("snapshot.breakers", "does not hold one breaker per worker, in order")
            for worker_id, data in given:
                made = factory(worker_id)
                if not isinstance(made, CircuitBreaker):
                    raise InvalidTypeError(
                        f"the breaker factory must return a CircuitBreaker, got {made!r}"
                    )
                where = f"snapshot.breakers[{worker_id!r}]"
                self.breaker_loads.append(made._prepare_snapshot(data, where))
                self.breakers[worker_id] = made
                self.breaker_periods[worker_id] = data["permit"]  # (checked by the prepare)
        self.breaker_changes: list[tuple[Hashable, CircuitState]] = []
        for worker_id, state in fields.pairs("breaker_changes"):
            if not one_of(state, _BREAKER_STATES):
                refuse("snapshot.breaker_changes", f"names no breaker state: {state!r}")
            self.breaker_changes.append((worker_id, _BREAKER_STATES[state]))

    def _check(self, placed: dict[Hashable, Hashable]) -> None:
        """The references between the parts: every id where the others say it is."""
        waiting, leases, runs = self.waiting, self.leases, self.runs
        parked = {task.id for _, tasks in self.parked for task in tasks}
        if sum(len(tasks) for _, tasks in self.parked) != len(parked):
            refuse("snapshot.parked", "holds a task twice")
        for name, ids in (("retrying", self.retrying), ("parked", parked)):
            stray = [task_id for task_id in ids if task_id not in waiting]
            if stray:
                refuse(f"snapshot.{name}", f"holds {stray[0]!r}, which is not waiting")
        if set(self.retrying) & parked:
            refuse("snapshot", "has a task both retrying and parked")
        gated = {task.id for group, tasks in self.parked if group is GATES for task in tasks}
        for task_id, _ in self.scouts:
            if task_id not in waiting or task_id in self.retrying or task_id in gated:
                refuse(
                    "snapshot.gate_scouts",
                    f"names {task_id!r}, which is not queued or parked outside the gates",
                )
        for task_id, _ in self.gate_times:
            if task_id not in gated:
                refuse("snapshot.gate_times", f"names {task_id!r}, which the gates do not hold")
        for task_id in leases:
            if task_id in waiting:
                refuse("snapshot.leases", f"holds {task_id!r}, which is also waiting")
            run = runs.get(task_id)
            if run is None:
                refuse("snapshot.leases", f"holds a lease of {task_id!r}, an unknown task")
            if placed.get(task_id, _NOWHERE) != run.worker_id:
                refuse(
                    "snapshot.leases",
                    f"places {task_id!r} on worker {run.worker_id!r}, "
                    "where the tracker does not hold it",
                )
        if len(placed) != len(leases):
            unleased = next(task_id for task_id in placed if task_id not in leases)
            refuse("snapshot.tracker", f"holds task {unleased!r}, which has no lease")
        self._check_lease_ids()
        for task_id in self.retrying:
            run = runs.get(task_id)
            if run is None or run.retry_at is None:
                refuse("snapshot.retrying", f"holds {task_id!r}, which has no retry time")
        for task_id in runs:
            if task_id not in waiting and task_id not in leases:
                refuse("snapshot.runs", f"holds {task_id!r}, which is neither waiting nor leased")
        for task_id in leases:  # a lease's permit names a period its breaker has had
            run = runs[task_id]
            if run.permit is not None and (
                run.permit > self.breaker_periods.get(run.worker_id, -1)
            ):
                refuse(
                    "snapshot.runs",
                    f"gives {task_id!r} the breaker permit {run.permit}, a period worker "
                    f"{run.worker_id!r}'s breaker has not had",
                )
        for task_id in self.finished:
            if task_id in waiting or task_id in leases:
                refuse("snapshot.finished", f"holds {task_id!r}, which is live")
        if list(self.worker_counts) != self.workers:
            refuse("snapshot.worker_counts", "does not name the tracker's workers, in order")
        keys: set[Hashable] = set()
        workers = set(self.workers)
        routed = {task_id for task_id, _, _ in self.routed}
        homes = {
            _LEASE: set(leases),
            _RETRY: set(self.retrying),
            _TTL: parked,
            _BREAKER: workers,
            _STEP: routed & set(waiting),
            _GANG: set(self.gangs),
            # A retry is timed only for a complete gang, whose leader waits in the queue.
            _GANG_RETRY: {g for g, (_, _, leader, _) in self.gangs.items() if leader is not None},
        }
        for kind, ident, _ in self.timers:
            if ident not in homes.get(kind, waiting):
                refuse("snapshot.timers", f"has a {kind} timer for {ident!r}, unknown there")
            key = _timer_key(kind, ident)
            if key in keys:
                refuse("snapshot.timers", f"has two {kind} timers for {ident!r}")
            keys.add(key)
        self._check_gangs()
        self._check_batches()
        for name, known in (("escalated", list(self.escalated)), ("advised", self.advised)):
            for task_id in known:
                if task_id not in waiting and task_id not in leases:
                    refuse(f"snapshot.{name}", f"holds {task_id!r}, which is not live")
        for name, named in (
            ("pins", [task_id for task_id, _ in self.pins]),  # (a pin may name a gone worker)
            ("routed", routed),
            ("sent", [task_id for task_id, _ in self.sent]),
        ):
            for task_id in named:
                if task_id not in waiting and task_id not in leases:
                    refuse(f"snapshot.{name}", f"names {task_id!r}, which is not live")
        for worker_id, _ in self.breaker_changes:
            if worker_id not in workers:
                refuse("snapshot.breaker_changes", f"names {worker_id!r}, no worker")

    def _check_lease_ids(self) -> None:
        """Each lease, current or lapsed, has a number of its own, below the next one;
        a snapshot written before leases were numbered has its leases numbered now."""
        if self.next_lease_id is None:  # (an older version: no run has a number)
            number = 1
            for task_id in self.leases:
                self.runs[task_id].lease_id = number
                number += 1
            for run in self.runs.values():
                lapsed = run.lapsed or {}
                for attempt in sorted(lapsed):
                    lapsed[attempt] = number
                    number += 1
            self.next_lease_id = number
            return
        leased = set(self.leases)
        seen: set[int] = set()
        for task_id, run in self.runs.items():
            if (task_id in leased) != (run.lease_id > 0):
                why = (
                    "a lease_id, though it is not" if run.lease_id else "no lease_id, though it is"
                )
                refuse("snapshot.runs", f"gives {task_id!r} {why} leased")
            numbers = list((run.lapsed or {}).values())
            if run.lease_id:
                numbers.append(run.lease_id)
            for number in numbers:
                if number in seen:
                    refuse("snapshot.runs", f"gives lease number {number} twice")
                if number >= self.next_lease_id:
                    refuse(
                        "snapshot.runs",
                        f"gives {task_id!r} lease number {number}, not below next_lease_id "
                        f"{self.next_lease_id}",
                    )
                seen.add(number)

    def _check_gangs(self) -> None:
        """Members wait (parked for their gang, but for a leader); a timer per gang."""
        members = [m.id for _, _, _, gang in self.gangs.values() for m in gang]
        if len(set(members)) != len(members):
            refuse("snapshot.waiting_gangs", "holds a task in two gangs, or twice")
        stray = next((m for m in members if m not in self.waiting or m in self.retrying), None)
        if stray is not None:
            refuse("snapshot.waiting_gangs", f"holds {stray!r}, which is not waiting")
        leaders = {leader for _, _, leader, _ in self.gangs.values() if leader is not None}
        waiting = {t.id for group, tasks in self.parked if group == WAITING_FOR_GANG for t in tasks}
        if waiting != set(members) - leaders:
            odd = next(iter(waiting ^ (set(members) - leaders)))
            refuse(
                "snapshot.parked",
                f"does not park {odd!r} as its gang says (members wait for their gang, "
                "all but the leader of a complete one)",
            )
        timers = {ident: when for kind, ident, when in self.timers if kind == _GANG}
        for gang, (_, due, _, _) in self.gangs.items():
            if timers.get(gang) != due:
                refuse("snapshot.timers", f"has no timeout at {due!r} for gang {gang!r}")

    def _load_scouts(self) -> bool:
        """The scouts out, each under its class again; False if they cannot be watched
        (a Distributor that keeps no scouts, or a scout in a queue of the user's own,
        which does not list its tasks)."""
        d = self.d
        if not self.scouts:
            return True
        found = {task.id: task for _, tasks in self.parked for task in tasks}
        found.update(self.queued_tasks)
        scouts = d._scouts
        if scouts is None or any(task_id not in found for task_id, _ in self.scouts):
            return False
        spacing = len(self.scouts) + 1  # (the gate-refused tasks' tickets: see load)
        level: dict[int, int] = {}  # scouts listed so far with as many tasks before them
        for task_id, ahead in self.scouts:
            klass = scouts.klass(found[task_id], self.waiting[task_id])[0]
            level[ahead] = nth = level.get(ahead, 0) + 1
            if not scouts.out(klass):  # (a second of a class is only queued)
                # Its ticket falls between those of the gate-refused tasks, as it did,
                # after the scouts listed before it; and a task refused from now on
                # takes a ticket after every scout's, as it would have.
                ticket = spacing * ahead + nth
                scouts.sent(klass, task_id, ticket)
                d._lot.issued(ticket)
        return True

    def check_gates(self, admitted: set[Hashable]) -> None:
        """The gates hold exactly the leased tasks that passed them."""
        gated = {task_id for task_id in self.leases if self.runs[task_id].gated}
        if self.d._gates is not None and admitted != gated:
            odd = next(iter(admitted ^ gated))
            refuse("snapshot.gates", f"do not hold what the leases say: task {odd!r}")

    def check_gate_holdings(self, gates: AllGates, data: Any, where: str) -> None:
        """Each gate that keeps its tasks by id (a pool gate, adaptive concurrency) holds
        exactly the gated leases that take something of it, a pool gate each with the
        units it takes (``data``: the gates' part, checked already): else a lease's end
        would release what its gate does not hold."""
        gated = [self.runs[task_id].task for task_id in self.leases if self.runs[task_id].gated]
        for i, (gate, part) in enumerate(zip(gates.gates, data["gates"], strict=True)):
            here = f"{where}.gates[{i}]"
            if isinstance(gate, AllGates):
                self.check_gate_holdings(gate, part, here)
                continue
            if isinstance(gate, ConcurrencyLimit):
                self._check_limit_holdings(gate, part, gated, here)
                continue
            if isinstance(gate, PoolGate):
                held = {decode_key(k, f"{here}.held"): float(units) for k, units in part["held"]}
            elif isinstance(gate, AdaptiveConcurrency):
                held = dict.fromkeys((decode_key(k, f"{here}.held") for k in part["held"]), 1.0)
            else:
                continue
            taken = {task.id: float(units) for task in gated if (units := gate.demand(task))}
            if held != taken:
                odd = next(
                    task_id
                    for task_id in chain(held, taken)
                    if held.get(task_id) != taken.get(task_id)
                )
                refuse(
                    f"{here}.held",
                    f"does not hold what the leases take of it: task {odd!r} "
                    f"({held.get(odd, 0.0):g} held, {taken.get(odd, 0.0):g} taken)",
                )

    def _check_limit_holdings(
        self, gate: ConcurrencyLimit, part: Any, gated: list[Task], where: str
    ) -> None:
        """A concurrency limit's running tasks are exactly the gated leases with a key.

        The ids come from the snapshot's own ``running`` and ``live``; the key
        function is asked only of a gated lease in neither (a task without a key,
        whose release would ask it anyway)."""
        running = {
            decode_key(task_id, f"{where}.running") for _, ids in part["running"] for task_id in ids
        }
        leased = {task.id for task in gated}
        for task_id in running:
            if task_id not in leased:
                refuse(
                    f"{where}.running",
                    f"holds a slot for task {task_id!r}, which is no lease through the gates",
                )
        keyed = {decode_key(task_id, f"{where}.live") for _, ids in part["live"] for task_id in ids}
        for task in gated:
            if task.id not in running and (task.id in keyed or gate.demand(task)):
                refuse(
                    f"{where}.running",
                    f"holds no slot for task {task.id!r}, leased through the gates with a key",
                )

    def check_running(self, running: list[Any]) -> None:
        """A fair scheduler's running tasks (``running``: its part's, checked already) are
        exactly the leased ones that came from it: it hears each one's release."""
        found = {decode_key(item[0], "snapshot.queue.running") for item in running}
        popped = {task_id for task_id in self.leases if self.runs[task_id].popped}
        if found != popped:
            odd = next(iter(found ^ popped))
            refuse(
                "snapshot.queue.running",
                f"does not hold what the leases say: task {odd!r}",
            )

    def check_dead(self, dlq_data: Any) -> None:
        """No task is both live and in the dead-letter queue (``dlq_data``: its part,
        checked already): a live task's end would find its id taken there."""
        for i, entry in enumerate(dlq_data["entries"]):
            task_id = decode_key(entry["task"]["id"], f"snapshot.dlq.entries[{i}].task.id")
            if task_id in self.waiting or task_id in self.leases:
                refuse(f"snapshot.dlq.entries[{i}]", f"holds {task_id!r}, which is live")

    def check_queue(self, queued: set[Hashable], size: int | None = None) -> None:
        """The queue holds exactly the waiting tasks that are neither parked nor retrying
        (``size``: how many it holds in all, when ``queued`` are only those it holds of
        the waiting tasks)."""
        parked = {task.id for _, tasks in self.parked for task in tasks}
        expected = set(self.waiting) - parked - set(self.retrying)
        if queued != expected:
            odd = next(iter(queued ^ expected))
            refuse("snapshot.queue", f"does not hold what the books say: task {odd!r}")
        if size is not None and size != len(expected):
            refuse(
                "snapshot.queue",
                f"holds {size} tasks; the books say {len(expected)} wait in it",
            )

    def load(self) -> None:
        """Everything in place; the collaborators hear what they would have heard."""
        d = self.d
        tracker = d._tracker
        for state in tracker.workers():
            d._adopt(state, self.breakers.get(state.id), defer=False)
        for load_breaker in self.breaker_loads:
            load_breaker()
        d._breaker_changes.extend(self.breaker_changes)
        d._closed = self.closed
        d._ticked_at = self.ticked_at
        d._tracker_wake = self.tracker_wake
        d._gate_due = self.gate_due
        d._waiting_since.update(self.waiting)
        d._progress.update(self.runs)
        assert self.next_lease_id is not None  # (numbered by _check_lease_ids)
        d._next_lease_id = self.next_lease_id
        d._retrying.update((task_id, self.runs[task_id].task) for task_id in self.retrying)
        budget = d._budget
        for task_id in self.leases:
            run = self.runs[task_id]
            d._leases[task_id] = run
            assert run.balancer is not None
            run.balancer.on_assign(run.task, tracker.worker(run.worker_id))
            if d._holds is not None:  # what the leases hold of each reservation, again
                d._holds.leased(run.task, tracker.worker(run.worker_id))
            if budget is not None:
                budget.leased(run.task)
        if budget is not None:  # its counts follow from the books: told them again
            for run in self.runs.values():
                if run.budgeted:
                    budget.retrying(run.task)
        d._finished.update(self.finished)
        for kind, ident, when in self.timers:
            d._timers.schedule(_timer_key(kind, ident), when, kind)
        d._escalated.update(
            (task_id, (steps, at - _waiting_base(d, task_id)))
            for task_id, (steps, at) in self.escalated.items()
        )
        d._advised.update(self.advised)
        for kind, values in self.paused.items():
            d._paused[kind].update(values)
        rules = d._rules
        for task_id, worker_id in self.pins:
            rules.pin(task_id, worker_id)
        for task_id, route, step in self.routed:
            rules.put_on_step(task_id, route, step)
        for task_id, pool in self.sent:
            rules.send(task_id, pool)
        for pool in self.paused_pools:
            rules.close_pool(pool)
        # Parked once the routes are back: a gate-refused task's class names its step.
        # Gate-refused tasks take every ``spacing``-th ticket in the order listed (their
        # tickets'), so that the scouts' fall between them where theirs did, each
        # after those listed before it (see _scouts_data and _load_scouts).
        spacing = len(self.scouts) + 1
        for group, tasks in self.parked:
            for i, task in enumerate(tasks):
                d._park(task, group, spacing * (i + 1) if group is GATES else None)
        watched = self._load_scouts()
        scouts = d._scouts
        if scouts is not None:  # each class timed as it was (else as worked out again)
            for task_id, due in self.gate_times:
                if d._lot.class_of(task_id) is not None:
                    d._lot.set_time(task_id, due)
            if self.gate_evictions is not None:
                scouts.evictions_seen = self.gate_evictions
        d._batches.update(self.batches)
        d._batch_group.update(self.batch_groups)
        for group in self.batch_groups.values():
            d._group_live[group] += 1
        for book in self.batches.values():
            for task_id in book.running:
                counted = self.batch_groups.get(task_id)
                if counted is not None:
                    d._group_leased[counted] += 1
        # The members as the lot and the queue hold them: the very objects.
        held = {task.id: task for _, tasks in self.parked for task in tasks}
        held.update(self.queued_tasks)
        shut = d._shut
        if shut is not None and self.shut is not None and len(self.shut[0]) == shut.size:
            shut.least = self.shut[0]
            d._shut_walk = self.shut[1]
        elif shut is not None:  # none written, or for other gates: from the tasks held
            for task in chain(held.values(), (run.task for run in self.runs.values())):
                shut.note(task)
            d._shut_walk = bool(self.queued_tasks)  # the gates' wakeup, should they be shut
        for gang, (size, due, leader, members) in self.gangs.items():
            d._gangs.restore(gang, size, due, leader, [held.get(m.id, m) for m in members])
        if self.backfill is not None:  # after the leases, which it must not hear
            assert d._holds is not None
            task, worker_id = self.backfill
            d._holds.restore_backfill(held.get(task.id, task), worker_id)
        d._counts.update(self.counts)
        d._dead_by_reason.update(self.dead_by_reason)
        d._deadline_met, d._deadline_missed = self.deadlines
        d._tenants.update(self.tenants)
        for worker_id, row in self.worker_counts.items():
            d._worker_counts[worker_id][:] = row
        for load_balancer in self.balancer_loads:  # last: over what the hooks above told them
            load_balancer()
        if not watched:  # every gate-refused task back to the queue, as a gate opening does
            d._wake_group(GATES)


_NOWHERE: Final = object()


def _timer_key(kind: str, ident: Hashable) -> Hashable:
    if kind == _ESCALATE:
        return _EscalationTimer(ident)
    if kind == _STEP:
        return _StepTimer(ident)
    if kind == _GANG:
        return GangTimer(ident)
    if kind == _GANG_RETRY:
        return GangRetryTimer(ident)
    if kind == _BREAKER:
        return _BreakerTimer(ident)
    return ident


def _number(value: object, where: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        refuse(where, f"must be a finite number, got {shown(value)}")
    return float(value)  # type: ignore[arg-type]


def _row(value: object, size: int, where: str) -> list[float]:
    if type(value) is not list or len(value) != size:
        refuse(where, f"must be a list of {size} numbers, got {shown(value)}")
    for item in value:
        if type(item) not in (int, float) or not math.isfinite(item) or item < 0:
            refuse(where, f"must be a list of {size} numbers >= 0, got {shown(value)}")
    return value


def _unique_pairs(fields: Fields, name: str) -> list[tuple[Hashable, Any]]:
    pairs = fields.pairs(name)
    if len({key for key, _ in pairs}) != len(pairs):
        refuse(f"snapshot.{name}", "names an id twice")
    return pairs


def _shut_data(d: Distributor) -> dict[str, Any] | None:
    """The least demand of each rate or pool gate that may shut a walk (``None``: no
    task taken in yet), and whether the last walk stopped at one."""
    shut = d._shut
    if shut is None:
        return None
    return {
        "least": [None if least == math.inf else least for least in shut.least],
        "walk": d._shut_walk,
    }


def _shut(data: object) -> tuple[list[float], bool] | None:
    """What ``_shut_data`` wrote, checked."""
    where = "snapshot.gate_shut"
    if data is None:
        return None
    if type(data) is not dict or set(data) != {"least", "walk"}:
        refuse(where, f"must be null or {{'least': [...], 'walk': bool}}, got {shown(data)}")
    least, walk = data["least"], data["walk"]
    if type(walk) is not bool:
        refuse(f"{where}.walk", f"must be a bool, got {shown(walk)}")
    if type(least) is not list:
        refuse(f"{where}.least", f"must be a list, got {shown(least)}")
    values = []
    for i, value in enumerate(least):
        if value is None:
            values.append(math.inf)
        elif type(value) in (int, float) and math.isfinite(value) and value >= 0:
            values.append(float(value))
        else:
            refuse(f"{where}.least[{i}]", f"must be a number >= 0 or null, got {shown(value)}")
    return values, walk


def _scouts_data(d: Distributor) -> list[list[Any]]:
    """Each scout out, with how many of the gate-refused tasks came before it (tickets
    are numbers of this process; their order is what counts)."""
    scouts = d._scouts
    if scouts is None or not len(scouts):
        return []
    lot = d._lot
    parked = sorted(
        ticket for task_id in lot.ids() if (ticket := lot.ticket_of(task_id)) is not None
    )
    # In the order of their tickets, so that scouts with as many before them keep
    # their order among themselves (it decides which goes back first when they are
    # refused again, and ties of rank within a class).
    return [
        [_id(task_id), bisect.bisect_left(parked, scouts.ticket_of(task_id))]
        for task_id in sorted(scouts.ids(), key=scouts.ticket_of)
    ]


def _unique_ids(fields: Fields, name: str) -> list[Hashable]:
    ids = [decode_key(item, f"snapshot.{name}[{i}]") for i, item in enumerate(fields.items(name))]
    if len(set(ids)) != len(ids):
        refuse(f"snapshot.{name}", "names an id twice")
    return ids


def _group(data: object, where: str, pools: list[Pool], held: int) -> Hashable:
    """The parking group :func:`_group_data` wrote (``held``: how many reservations)."""
    if data == {"gates": []}:
        return GATES
    if type(data) is not dict or len(data) != 1 or "group" not in data:
        refuse(where, f"must be {{'gates': []}} or {{'group': ...}}, got {shown(data)}")
    group = _shape(data["group"], where, pools, held)
    # The distributor knows this group by identity: the very object, not an equal one.
    return WAITING_FOR_GANG if group == WAITING_FOR_GANG else group


def _shape(data: object, where: str, pools: list[Pool], held: int) -> Hashable:
    """A part of a parking group as :func:`_shape_data` wrote it."""
    if type(data) is dict and len(data) == 1:
        ((kind, inner),) = data.items()
        if kind == "tuple" and type(inner) is list:
            return tuple(_shape(item, where, pools, held) for item in inner)
        if kind == "pool":
            return _pool(inner, f"{where}.pool", pools)
        if kind == "gang":
            return GangMark(decode_key(inner, where))
        if kind == "held":
            if type(inner) is not int or not 0 <= inner < held:
                refuse(where, f"names reservation {shown(inner)}; restore() was given {held}")
            return HeldGroup(inner)
        if kind == "backfill":
            return BackfillMark(_shape(inner, where, pools, held))
    return decode_key(data, where)


def _pool(data: object, where: str, known: list[Pool]) -> Pool:
    """The pool :func:`_pool_data` wrote."""
    if type(data) is dict and data.keys() == {"known", "label"}:
        place, label = data["known"], data["label"]
        if type(place) is not int or not 0 <= place < len(known):
            refuse(where, f"names pool {shown(place)}; the configuration has {len(known)} pools")
        if known[place].label != label:
            refuse(
                where,
                f"names pool {place}, {shown(label)}, and the configuration given to "
                f"restore() is {known[place].label} there, not {label}",
            )
        return known[place]
    if type(data) is not dict or len(data) != 1 or "pool" not in data:
        refuse(
            where,
            f"must be {{'known': place, 'label': ...}} or {{'pool': {{...}}}}, got {shown(data)}",
        )
    fields = Fields(data["pool"], f"{where}.pool")
    name = fields.opt_text("name")
    skills = fields.items("skills")
    zone = fields.opt_text("zone")
    workers = fields.value("workers")
    fields.done()
    if not all(type(skill) is str for skill in skills):
        refuse(f"{where}.pool.skills", f"must be a list of str, got {shown(skills)}")
    if workers is not None and type(workers) is not list:
        refuse(f"{where}.pool.workers", f"must be None or a list of ids, got {shown(workers)}")
    try:
        return Pool(
            name,
            skills=skills,
            zone=zone,
            workers=None
            if workers is None
            else [decode_key(w, f"{where}.pool.workers") for w in workers],
        )
    except TaskdistError as error:
        raise as_snapshot_error(error, where) from None


def _run(data: object, where: str, balancers: list[Any], version: int) -> _Run:
    fields = Fields(data, where)
    task = Task.from_data(fields.value("task"), f"{where}.task")
    run = _Run(task, fields.number("submitted_at"), fields.number("first_started"))
    run.worker_id = fields.key("worker_id")
    run.attempt = fields.integer("attempt", minimum=1)
    run.started_at = fields.number("started_at")
    run.expiry = fields.opt_number("expiry")
    placed_by = fields.integer("balancer", minimum=0)
    if placed_by >= len(balancers):
        refuse(f"{where}.balancer", f"names balancer {placed_by}; there are {len(balancers)}")
    run.balancer = balancers[placed_by]
    run.popped = fields.boolean("popped")
    run.gated = fields.boolean("gated")
    run.budgeted = fields.boolean("budgeted")
    run.failures = fields.integer("failures", minimum=0)
    run.waited = fields.number("waited")
    history = fields.items("history")
    run.history = [
        AttemptRecord.from_data(record, f"{where}.history[{i}]") for i, record in enumerate(history)
    ] or None
    run.last_delay = fields.opt_number("last_delay")
    run.last_error = fields.opt_text("last_error")
    lapsed = fields.value("lapsed")
    if lapsed is not None:
        if version < 7:  # attempts: their leases are numbered at restore (see _VERSION)
            if type(lapsed) is not list or not all(type(n) is int and n >= 1 for n in lapsed):
                refuse(
                    f"{where}.lapsed", f"must be None or a list of attempts, got {shown(lapsed)}"
                )
            run.lapsed = dict.fromkeys(lapsed, 0)
        else:
            if type(lapsed) is not list or not all(
                type(pair) is list
                and len(pair) == 2
                and all(type(n) is int and n >= 1 for n in pair)
                for pair in lapsed
            ):
                refuse(
                    f"{where}.lapsed",
                    f"must be None or a list of [attempt, lease_id] pairs, got {shown(lapsed)}",
                )
            run.lapsed = dict(lapsed)
            if len(run.lapsed) != len(lapsed):
                refuse(f"{where}.lapsed", "names an attempt twice")
    run.retry_at = fields.opt_number("retry_at")
    run.batch = fields.opt_integer("batch", minimum=0) if version >= 2 else None
    run.permit = fields.opt_integer("permit", minimum=0) if version >= 6 else None
    # 0: no lease numbered (a run between leases, or one numbered at restore)
    run.lease_id = (fields.opt_integer("lease_id", minimum=1) or 0) if version >= 7 else 0
    fields.done()
    return run


def _waiting_base(d: Distributor, task_id: Hashable) -> float:
    """When a live task's waiting age was 0, as the books count it: its waiting_since
    while it waits, the same moment (its start less what it had waited) while leased.
    The snapshot keeps escalation steps as times on that clock (its format since version
    1); the distributor keeps them as ages, so that running is not waiting."""
    since = d._waiting_since.get(task_id)
    if since is not None:
        return since
    run = d._leases[task_id]
    return run.started_at - run.waited


def _escalated_at(d: Distributor, task_id: Hashable, age: float) -> float:
    return _waiting_base(d, task_id) + age
