"""A FairScheduler's state as plain data, and back: its ``snapshot()`` and ``load_snapshot()``.

Kept apart so that ``fair.py`` stays about the fair order. This module reads
and writes the scheduler's private state; nothing else does.

What a snapshot holds: the configuration that is data (default weight,
plans, the bypass and strict flags, to check against the loading instance;
the weights, quotas, plans and known tenants as they are now, set at run time
included); the virtual time and the largest tag given out (exact integers);
each tenant record (start tag, counters, whether its queue gave nothing, its
rate bucket, and its queue through the queue's own snapshot); the bypass
lane's queue; every queued task's tenant and TTL expiry; every running task's
tenant; the tenants in the eligible, rate-held and expiry heaps, in heap
order (so ties fall as before); and what is kept of idle tenants (debts and
refilling buckets, in the order they lapse; the nested schedulers kept for
them, each through its own snapshot with the largest tag given out when it
was kept if it owes, written only when there are any, and as it will be when
next used: one whose tenants are to start level, because its debts lapsed
since it was kept, is written as if they had); and, for a deadline-aware
scheduler, its deadline index (the queued tasks with a deadline in deadline
order, each with its late mark, and ``max_lead`` to check). Running and
queued counts follow from the tasks and are not written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Final

from taskdist._snapshot import (
    Fields,
    as_snapshot_error,
    check_header,
    decode_key,
    encode_key,
    header,
    prepare_load,
    refuse,
    snapshot_part,
)
from taskdist._validate import shown
from taskdist.errors import TaskdistError
from taskdist.queues._idle_tenants import Kept
from taskdist.queues.quota import Quota
from taskdist.workers._ranges import check_weight

if TYPE_CHECKING:
    from taskdist.queues.fair import FairScheduler, _Tenant
    from taskdist.resilience import RateLimiter
    from taskdist.task import Task

__all__ = ["prepare_fair", "snapshot_fair"]

_KIND: Final = "FairScheduler"
_QUOTA_FIELDS: Final = ("max_concurrent", "rate", "per", "max_queued", "weight")


def snapshot_fair(fair: FairScheduler, *, level: bool = False) -> dict[str, Any]:
    """``fair``'s state as plain data (see the module). O(n + T log T).

    ``level``: as it will be once its tenants start level (a scheduler kept for a
    dropped tenant, once its debts lapsed there); nothing changes.

    Raises:
        SnapshotError: a tenant's queue without snapshot support; an id or
            tenant a snapshot cannot carry.
    """

    def tenant(key: Hashable) -> Any:
        return encode_key(key, "tenant")

    def heap(members: dict[Any, tuple[Any, int, _Tenant]]) -> list[list[Any]]:
        return [
            [None, key, True] if rec is bypass else [tenant(rec.key), key, False]
            for key, _, rec in sorted(members.values())
        ]

    bypass = fair._bypass
    now = fair._now()
    virtual = fair._level_virtual() if level else fair._virtual
    debts, refills = fair._idle.listed(virtual, now)
    kept_queues = []
    for key, queue, mark in fair._idle.queues(virtual, now, fair._busy_periods + level):
        lapsed = mark == -1
        kept = snapshot_fair(queue, level=lapsed)  # type: ignore[arg-type]  # a scheduler
        if _keeps_anything(kept):
            kept_queues.append([tenant(key), kept, None if lapsed else mark])
    # Written only when there are any: older snapshots have no such field.
    idle_queues = {"idle_queues": kept_queues} if kept_queues else {}
    deadlines = {}
    if fair._slack is not None:  # written only then: older snapshots have no such field
        deadlines["deadlines"] = {
            "max_lead": None if fair._max_lead == math.inf else fair._max_lead,
            "held": [[encode_key(task.id, "task id"), late] for task, late in fair._slack.listed()],
        }
    return {
        **header(_KIND),
        **deadlines,
        **idle_queues,
        "default_weight": fair._default_weight,
        "critical_bypass": bypass is not None,
        "strict_tenants": fair._strict,
        "default_plan": _key_or_none(fair._default_plan),
        "plans": _encode_quotas(fair._plans),
        "weights": [[tenant(key), weight] for key, weight in fair._weights.items()],
        "quotas": _encode_quotas(fair._quotas),
        "tenant_plan": [
            [tenant(key), encode_key(p, "plan")] for key, p in fair._tenant_plan.items()
        ],
        "known": sorted((tenant(key) for key in fair._known), key=repr),  # a set: in one order
        "virtual": virtual,
        "horizon": virtual if level else fair._horizon,
        "retired": fair._retired,
        "tenants": [
            {
                "tenant": tenant(rec.key),
                "start": rec.start,
                "dispatched": rec.dispatched,
                "dispatched_cost": rec.dispatched_cost,
                "urgent": rec.urgent,
                "stalled": rec.stalled,
                "limiter": None if rec.limiter is None else rec.limiter.snapshot(),
                "queue": snapshot_part(rec.inner, f"the queue of tenant {rec.key!r}"),
            }
            for rec in fair._tenants.values()
        ],
        "bypass": None if bypass is None else snapshot_part(bypass.inner, "the bypass lane"),
        "queued": [
            [encode_key(task_id, "task id"), tenant(rec.key), fair._expiry_of(task_id)]
            for task_id, rec in fair._queued_tenants()
        ],
        "running": [
            [encode_key(task_id, "task id"), tenant(rec.key), holder is bypass]
            for task_id, (rec, holder) in fair._running.items()
        ],
        "eligible": heap(fair._eligible.members),
        "blocked": heap(fair._blocked.members),
        "expiry": heap(fair._expiry.members),
        "idle": [[_kept(entry) for entry in debts], [_kept(entry) for entry in refills]],
    }


def prepare_fair(
    fair: FairScheduler, data: object, where: str
) -> tuple[Callable[[], None], dict[Hashable, Task]]:
    """Check ``data`` whole for ``fair`` (new and empty); what loads it and the tasks it
    queues, by id."""
    from taskdist.queues.fair import FairScheduler, _Tenant

    fields = check_header(data, _KIND, where)
    if fair._size or fair._tenants or fair._running or fair._idle.count or fair._virtual:
        refuse(where, "can be loaded only into a new, empty FairScheduler")
    fields.same("default_weight", fair._default_weight, "scheduler")
    fields.same("critical_bypass", fair._bypass is not None, "scheduler")
    fields.same("strict_tenants", fair._strict, "scheduler")
    fields.same("default_plan", _key_or_none(fair._default_plan), "scheduler")
    fields.same("plans", _encode_quotas(fair._plans), "scheduler")
    weights = {
        key: _checked(check_weight, value, f"{where}.weights")
        for key, value in fields.pairs("weights")
    }
    quotas = {key: _quota(value, f"{where}.quotas") for key, value in fields.pairs("quotas")}
    tenant_plan = {}
    for key, plan in fields.pairs("tenant_plan"):
        plan = decode_key(plan, f"{where}.tenant_plan")
        if plan not in fair._plans:
            refuse(f"{where}.tenant_plan", f"names plan {shown(plan)}, not one of the plans")
        tenant_plan[key] = plan
    known = {decode_key(key, f"{where}.known") for key in fields.items("known")}
    configured = (weights, quotas, tenant_plan)
    virtual = fields.integer("virtual", minimum=0)
    horizon = fields.integer("horizon", minimum=virtual)
    retired = fields.integer("retired", minimum=0)
    loads: list[Callable[[], None]] = []
    inner_ids: set[int] = set()
    tasks: dict[Hashable, Task] = {}  # what the queues will hold, by id

    def inner_queue(key: Hashable, queue_data: object, at: str) -> tuple[Any, dict[Hashable, Task]]:
        try:
            queue = fair._new_queue(key) if key is not _LANE else fair._bypass.inner  # type: ignore[union-attr]
        except TaskdistError as error:
            raise as_snapshot_error(error, at) from None
        if id(queue) in inner_ids:
            refuse(at, "needs a new queue, and the inner factory gave one already in use")
        inner_ids.add(id(queue))
        prepare = getattr(queue, "_prepare_snapshot", None)
        if not callable(prepare):
            refuse(at, f"cannot be loaded into a {type(queue).__name__} (no snapshot support)")
        load, ids = prepare(queue_data, at)
        loads.append(load)
        tasks.update(ids)
        return queue, ids

    def limiter(key: Hashable, quota: Quota | None, limiter_data: object, at: str) -> Any:
        made: RateLimiter | None = None if quota is None else quota.rate_limiter(fair._clock)
        if made is None:
            if limiter_data is not None:
                refuse(at, f"is a rate bucket, but tenant {shown(key)} has no rate quota")
            return None
        loads.append(prepare_load(made, limiter_data, at))
        return made

    records: dict[Hashable, _Tenant] = {}
    holders: dict[Hashable, _Tenant] = {}  # queued task id -> the record whose queue holds it
    for i, item in enumerate(fields.items("tenants")):
        at = f"{where}.tenants[{i}]"
        part = Fields(item, at)
        key = part.key("tenant")
        if key in records:
            refuse(at, f"repeats tenant {shown(key)}")
        queue, ids = inner_queue(key, part.value("queue"), f"{at}.queue")
        rec = _Tenant(key, queue, part.integer("start", minimum=0))
        rec.dispatched = part.integer("dispatched", minimum=0)
        rec.dispatched_cost = part.number("dispatched_cost")
        rec.urgent = part.integer("urgent", minimum=0)
        rec.stalled = part.boolean("stalled")
        rec.plan, rec.quota, rec.weight = fair._settings(key, configured)
        rec.limiter = limiter(key, rec.quota, part.value("limiter"), f"{at}.limiter")
        part.done()
        records[key] = rec
        holders.update(dict.fromkeys(ids, rec))
    lane = fair._bypass
    lane_data = fields.value("bypass")
    if lane is not None:
        _, ids = inner_queue(_LANE, lane_data, f"{where}.bypass")
        for task_id in ids:
            if task_id in holders:
                refuse(f"{where}.bypass", f"holds task {task_id!r}, which a tenant holds too")
            holders[task_id] = lane
    elif lane_data is not None:
        refuse(f"{where}.bypass", "is a bypass lane, but this scheduler has none")

    def record(data: object, at: str) -> _Tenant:
        key = decode_key(data, at)
        if key not in records:
            refuse(at, f"names tenant {shown(key)}, which has no record")
        return records[key]

    index: dict[Hashable, _Tenant] = {}
    expires: dict[Hashable, float] = {}
    for i, item in enumerate(fields.items("queued")):
        at = f"{where}.queued[{i}]"
        task_id, rec, expiry = _triple(item, at)
        task_id = decode_key(task_id, f"{at}[0]")
        rec = record(rec, f"{at}[1]")
        holder = holders.get(task_id)
        if task_id in index or holder is None or (holder is not rec and holder is not lane):
            refuse(at, f"task {task_id!r} is not held once, by its tenant's queue or the lane")
        by_task = fair._shared or (holder.filed and not fair._adopted)
        if by_task and records.get(tasks[task_id].tenant) is not rec:
            refuse(at, f"task {task_id!r} is queued under a tenant that is not its own")
        index[task_id] = rec
        if expiry is not None:
            expiry = _time(expiry, f"{at}[2]")
            if not holder.timed:  # else its queue's own snapshot carries it
                expires[task_id] = expiry
    if set(index) != set(holders):
        refuse(f"{where}.queued", "does not list every task the queues hold")
    deadlines = _deadlines(fair, data, fields, index, tasks, where)
    running: dict[Hashable, tuple[_Tenant, _Tenant]] = {}
    for i, item in enumerate(fields.items("running")):
        at = f"{where}.running[{i}]"
        task_id, rec, in_lane = _triple(item, at)
        task_id = decode_key(task_id, f"{at}[0]")
        rec = record(rec, f"{at}[1]")
        if task_id in running or task_id in index or type(in_lane) is not bool:
            refuse(at, f"task {task_id!r} is queued or running already, or no [id, tenant, bool]")
        if in_lane and lane is None:
            refuse(at, "ran from a bypass lane, but this scheduler has none")
        running[task_id] = (rec, lane if in_lane and lane is not None else rec)
    for rec in index.values():
        rec.queued += 1
    for holder in holders.values():
        if holder is not lane:  # the lane's count is set as it loads: it is in use already
            holder.waiting += 1
    in_lane_count = len(holders) - sum(rec.waiting for rec in records.values())
    for rec, _ in running.values():
        rec.running += 1
    for key, rec in records.items():
        if not rec.queued and not rec.running:
            refuse(f"{where}.tenants", f"has tenant {shown(key)} with nothing queued or running")

    def heap(name: str, number: Callable[[object, str], Any]) -> list[tuple[_Tenant, Any]]:
        placed: list[tuple[_Tenant, Any]] = []
        for i, item in enumerate(fields.items(name)):
            at = f"{where}.{name}[{i}]"
            key, value, in_lane = _triple(item, at)
            if in_lane is True and lane is not None and name == "expiry":
                rec = lane
            elif in_lane is False:
                rec = record(key, f"{at}[0]")
            else:
                refuse(f"{at}[2]", "must be false (true only for the lane's expiry)")
            placed.append((rec, number(value, f"{at}[1]")))
        if len({id(rec) for rec, _ in placed}) != len(placed):
            refuse(f"{where}.{name}", "lists a tenant twice")
        return placed

    eligible = heap("eligible", _tag)
    blocked = heap("blocked", _time)
    expiry = heap("expiry", _time)
    kept_lists = fields.items("idle")
    if len(kept_lists) != 2:
        refuse(f"{where}.idle", "must be [debts, refills]")
    idle: list[list[Kept]] = []
    for name, entries in zip(("debts", "refills"), kept_lists, strict=True):
        at = f"{where}.idle.{name}"
        if type(entries) is not list:
            refuse(at, f"must be a list, got {shown(entries)}")
        kept: list[Kept] = []
        for i, item in enumerate(entries):
            if type(item) is not list or len(item) != 5:
                refuse(f"{at}[{i}]", "must be [tenant, due, start, weight, limiter]")
            key = decode_key(item[0], f"{at}[{i}][0]")
            if key in records:
                refuse(f"{at}[{i}]", f"keeps tenant {shown(key)}, which has a record")
            _, quota, _ = fair._settings(key, configured)
            due = _tag(item[1], f"{at}[{i}][1]") if name == "debts" else _time(item[1], at)
            kept.append(
                (
                    due,
                    0,
                    key,
                    _tag(item[2], f"{at}[{i}][2]"),
                    _checked(check_weight, item[3], f"{at}[{i}][3]"),
                    limiter(key, quota, item[4], f"{at}[{i}][4]"),
                    quota,
                )
            )
        idle.append(kept)
    if len({entry[2] for entries in idle for entry in entries}) != len(idle[0]) + len(idle[1]):
        refuse(f"{where}.idle", "keeps a tenant twice")
    kept_queues: list[tuple[Hashable, FairScheduler, int]] = []
    if isinstance(data, dict) and "idle_queues" in data:
        for i, item in enumerate(fields.items("idle_queues")):
            at = f"{where}.idle_queues[{i}]"
            if type(item) is not list or len(item) != 3:
                refuse(at, "must be [tenant, queue, mark]")
            key = decode_key(item[0], f"{at}[0]")
            if key in records or any(key == other for other, _, _ in kept_queues):
                refuse(at, f"keeps a queue for tenant {shown(key)}, which has one already")
            if not _keeps_anything(item[1]):
                refuse(f"{at}[1]", "keeps nothing in force: a queue is kept only while it does")
            owes = _owes(item[1])
            mark = item[2]
            if owes and (type(mark) is not int or not 0 <= mark <= horizon):
                refuse(f"{at}[2]", "must be the largest tag given out when it was kept")
            if not owes and mark is not None:
                refuse(f"{at}[2]", "must be None: the queue owes nothing")
            queue, ids = inner_queue(key, item[1], f"{at}[1]")
            idle_part = item[1]
            if (
                ids
                or not isinstance(queue, FairScheduler)
                or idle_part.get("running")
                or idle_part.get("tenants")
            ):
                refuse(
                    f"{at}[1]",
                    "must be that of a FairScheduler with nothing queued or running, "
                    "as a kept queue is",
                )
            kept_queues.append((key, queue, horizon if mark is None else mark))
    fields.done()

    def load() -> None:
        fair._weights = weights
        fair._quotas = quotas
        fair._tenant_plan = tenant_plan
        fair._known = known
        fair._virtual = virtual
        fair._horizon = horizon
        fair._retired = retired
        for rec in records.values():
            fair._configure(rec)  # its plan, quota, weight and bucket are the configured ones
            fair._tenants[rec.key] = rec
            fair._track_queue(rec.inner)
        ids = fair._index
        # The tasks of queues that do not file them (the others file theirs as they load).
        ids.update((task_id, rec) for task_id, rec in index.items() if not holders[task_id].filed)
        fair._expires.update(expires)
        fair._running.update(running)
        fair._size = len(index)
        if lane is not None:
            lane.waiting = in_lane_count
        for table, placed in ((fair._eligible, eligible), (fair._blocked, blocked)):
            for rec, value in placed:
                table.set(rec, value)
        for rec, value in expiry:
            fair._expiry.set(rec, value)
        fair._idle.load(*idle)
        for load_part in loads:
            load_part()
        for key, queue, mark in kept_queues:
            until = queue._held_until()  # None if its buckets filled since the snapshot
            if until is not None:
                fair._idle.keep_queue(key, queue, until, fair._busy_periods, mark)
        if not fair._adopted and any(holder.filed for holder in holders.values()):
            # The table in the snapshot's order, as a table of the scheduler's own is (a
            # scheduler it adopted leaves that to it: the table holds others' tasks too).
            ordered = [(task_id, ids[task_id]) for task_id in index]
            ids.clear()
            ids.update(ordered)
        if fair._slack is not None:
            fair._slack.load(deadlines)

    return load, {task_id: tasks[task_id] for task_id in index}


def _deadlines(
    fair: FairScheduler,
    data: object,
    fields: Fields,
    index: dict[Hashable, _Tenant],
    tasks: dict[Hashable, Task],
    where: str,
) -> list[tuple[Task, bool]]:
    """A deadline-aware scheduler's deadline index: the queued tasks with a deadline in
    deadline order, each with its late mark (``[]`` for a scheduler that is not aware)."""
    if fair._slack is None:
        if isinstance(data, dict) and "deadlines" in data:
            refuse(
                f"{where}.deadlines", "is a deadline index; this scheduler is not deadline_aware"
            )
        return []
    at = f"{where}.deadlines"
    part = Fields(fields.value("deadlines"), at)
    part.same("max_lead", None if fair._max_lead == math.inf else fair._max_lead, "scheduler")
    held: list[tuple[Task, bool]] = []
    seen: set[Hashable] = set()
    for i, item in enumerate(part.items("held")):
        if type(item) is not list or len(item) != 2 or type(item[1]) is not bool:
            refuse(f"{at}.held[{i}]", f"must be [task id, late], got {shown(item)}")
        task_id = decode_key(item[0], f"{at}.held[{i}][0]")
        task = tasks.get(task_id)
        if task_id in seen or task_id not in index or task is None or task.deadline is None:
            refuse(f"{at}.held[{i}]", f"task {task_id!r} is not a queued task with a deadline")
        seen.add(task_id)
        held.append((task, item[1]))
    part.done()
    return held


_LANE: Final = object()
"""The key :func:`prepare_fair` asks a queue for when it wants the bypass lane's."""


def _key_or_none(key: Hashable | None) -> Any:
    return None if key is None else encode_key(key, "plan")


def _encode_quotas(quotas: dict[Hashable, Quota]) -> list[list[Any]]:
    return [
        [encode_key(key, "tenant or plan"), {name: getattr(q, name) for name in _QUOTA_FIELDS}]
        for key, q in quotas.items()
    ]


def _quota(data: object, where: str) -> Quota:
    fields = Fields(data, where)
    values = {
        "max_concurrent": fields.opt_integer("max_concurrent", minimum=0),
        "rate": fields.opt_number("rate"),
        "per": fields.number("per"),
        "max_queued": fields.opt_integer("max_queued", minimum=0),
        "weight": fields.opt_number("weight"),
    }
    fields.done()
    try:
        return Quota(**values)  # type: ignore[arg-type]
    except TaskdistError as error:
        raise as_snapshot_error(error, where) from None


def _kept(entry: Kept) -> list[Any]:
    due, _, key, start, weight, limiter, _ = entry
    return [
        encode_key(key, "tenant"),
        due,
        start,
        weight,
        None if limiter is None else limiter.snapshot(),
    ]


def _keeps_anything(data: object) -> bool:
    """Whether a scheduler's snapshot ``data`` keeps a dropped tenant's debt, bucket or
    queue (so that, kept for a tenant of its own, it is in force)."""
    if not isinstance(data, dict):
        return True  # the loading queue's own check names what is wrong
    idle = data.get("idle")
    return bool(data.get("idle_queues")) or not (
        type(idle) is list and all(type(kept) is list and not kept for kept in idle)
    )


def _owes(data: object) -> bool:
    """Whether a scheduler's snapshot ``data`` (checked by :func:`_keeps_anything`)
    keeps a debt, its own or a kept queue's."""
    if not isinstance(data, dict):
        return False  # the loading queue's own check names what is wrong
    idle = data.get("idle")
    kept = data.get("idle_queues") or []
    return bool(type(idle) is list and idle and idle[0]) or any(
        type(item) is list and len(item) == 3 and item[2] is not None for item in kept
    )


def _checked(check: Callable[[object, str], float], value: object, where: str) -> float:
    try:
        return check(value, "weight")
    except TaskdistError as error:
        raise as_snapshot_error(error, where) from None


def _triple(item: object, where: str) -> list[Any]:
    if type(item) is not list or len(item) != 3:
        refuse(where, f"must be a list of 3 items, got {shown(item)}")
    return item


def _tag(value: object, where: str) -> int:
    if type(value) is not int or value < 0:
        refuse(where, f"must be a virtual time tag (an int >= 0), got {shown(value)}")
    return value


def _time(value: object, where: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        refuse(where, f"must be a finite time, got {shown(value)}")
    return float(value)  # type: ignore[arg-type]
