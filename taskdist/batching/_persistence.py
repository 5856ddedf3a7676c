"""A BatchOptimizer's state as plain data, and back: its ``snapshot()`` and ``load_snapshot()``.

What it holds: the configuration that is data (checked on load, never
taken: the optimizer given is configured by its constructor); every open
batch with its tasks, when each was added and its TTL started, its totals
and due times, in the order their due times were scheduled; each group's
learned target size, limits, formed and task counts and recent waits and
durations; batches released per reason; the next batch id. Infinite times
are written as ``None``. The key function and a sizing rule are code,
given again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, Final

from taskdist._snapshot import (
    Fields,
    check_header,
    decode_key,
    encode_key,
    header,
    one_of,
    refuse,
)
from taskdist._validate import shown
from taskdist.batching.optimizer import (
    BatchOptimizer,
    BatchReason,
    GroupLimits,
    _GroupRecord,
    _OpenBatch,
)
from taskdist.errors import TaskdistError
from taskdist.task import Task

__all__ = ["prepare", "snapshot_of"]

_KIND: Final = "BatchOptimizer"


def _config(b: BatchOptimizer) -> dict[str, Any]:
    return {
        "min_size": b._min_size,
        "max_size": b._max_size,
        "max_wait": b._max_wait,
        "max_cost": b._max_cost,
        "max_resources": None if b._caps is None else sorted(map(list, b._caps.items())),
        "below_min": "hold" if b._below_min_hold else "release",
        "critical": "close" if b._close_on_critical else "wait",
        "expiry_margin": b._margin,
        "initial": b._initial_target,
        "stats_window": b._stats_window,
    }


def _time(value: float) -> float | None:
    return None if value == math.inf else value


def snapshot_of(b: BatchOptimizer) -> dict[str, Any]:
    """``b``'s state as plain data (see the module docstring)."""
    scheduled = sorted(b._scheduled.values(), key=lambda entry: entry[:2])
    return {
        **header(_KIND),
        "config": _config(b),
        "next_id": b._next_id,
        "open": [_open_data(batch) for batch in b._groups.values()],
        "due_order": [entry[2].id for entry in scheduled],
        "targets": [[encode_key(k, "a group key"), n] for k, n in b._targets.items()],
        "limits": [
            [encode_key(k, "a group key"), limits.max_size, limits.max_wait]
            for k, limits in b._limits.items()
        ],
        "records": [
            [
                encode_key(k, "a group key"),
                record.formed,
                record.tasks,
                record.waits.snapshot(),
                record.durations.snapshot(),
            ]
            for k, record in b._records.items()
        ],
        "by_reason": [[reason.value, n] for reason, n in b._by_reason.items()],
    }


def _open_data(batch: _OpenBatch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "key": encode_key(batch.key, "a group key"),
        "created": batch.created,
        "target": batch.target,
        "tasks": [task.to_data() for task in batch.tasks],
        "added": list(batch.added),
        "since": list(batch.since),
        "cost": batch.cost,
        "resources": sorted(map(list, batch.resources.items())),
        "best": _time(batch.best),
        "wait_due": batch.wait_due,
        "expiry_due": _time(batch.expiry_due),
        "due": _time(batch.due),
        "reason": batch.reason.value,
    }


def prepare(b: BatchOptimizer, data: object, where: str) -> Callable[[], None]:
    """Check ``data`` whole for ``b`` (new, configured alike); what loads it."""
    fields = check_header(data, _KIND, where)
    if b._pending or b._records or b._by_reason or b._next_id or b._targets:
        refuse(where, "cannot be loaded into an optimizer that has seen tasks already")
    config = Fields(fields.value("config"), f"{where}.config")
    for name, mine in _config(b).items():
        config.same(name, mine, "optimizer")
    config.done()
    next_id = fields.integer("next_id", minimum=0)
    reasons = {reason.value: reason for reason in BatchReason}
    opened = [
        _open(item, f"{where}.open[{i}]", reasons) for i, item in enumerate(fields.items("open"))
    ]
    by_id = {batch.id: batch for batch in opened}
    keys = [batch.key for batch in opened]
    if len(by_id) != len(opened) or len(set(keys)) != len(keys):
        refuse(f"{where}.open", "holds a batch id or a group twice")
    if any(batch.id >= next_id for batch in opened):
        refuse(f"{where}.next_id", f"is {next_id}, not after every open batch's id")
    task_ids = [task.id for batch in opened for task in batch.tasks]
    if len(set(task_ids)) != len(task_ids):
        refuse(f"{where}.open", "holds a task twice")
    due_order = fields.items("due_order")
    due = [batch.id for batch in opened if batch.due != math.inf]
    if sorted(due_order, key=repr) != sorted(due, key=repr):
        refuse(f"{where}.due_order", "does not list exactly the open batches with a due time")
    limits: dict[Hashable, GroupLimits] = {}
    for i, item in enumerate(fields.items("limits")):
        if type(item) is not list or len(item) != 3:
            refuse(
                f"{where}.limits[{i}]", f"must be [group, max_size, max_wait], got {shown(item)}"
            )
        group = decode_key(item[0], f"{where}.limits[{i}]")
        try:
            limits[group] = b._check_limits(
                GroupLimits(max_size=item[1], max_wait=item[2]), f"limits for group {group!r}"
            )
        except TaskdistError as error:  # the constructor's own refusal, as the snapshot's
            refuse(f"{where}.limits[{i}]", f"is not valid ({error})")
    starts = b._starts_for(limits)
    # A learned target lies within its group's range, by the limits the snapshot holds.
    targets: dict[Hashable, int] = {}
    for group, n in fields.pairs("targets"):  # (the keys decoded already)
        own = limits.get(group)
        largest = b._max_size if own is None or own.max_size is None else own.max_size
        targets[group] = _size(n, f"{where}.targets[{group!r}]", b._min_size, largest)
    records: dict[Hashable, _GroupRecord] = {}
    loads: list[Callable[[], None]] = []
    for i, item in enumerate(fields.items("records")):
        spot = f"{where}.records[{i}]"
        if (
            type(item) is not list
            or len(item) != 5
            or not all(type(n) is int and n >= 0 for n in item[1:3])
        ):
            refuse(spot, f"must be [group, formed, tasks, waits, durations], got {shown(item)}")
        record = _GroupRecord(b._stats_window)
        record.formed, record.tasks = item[1], item[2]
        loads.append(record.waits._prepare_snapshot(item[3], f"{spot}[3]"))
        loads.append(record.durations._prepare_snapshot(item[4], f"{spot}[4]"))
        records[decode_key(item[0], f"{spot}[0]")] = record
    by_reason = {}
    for i, item in enumerate(fields.items("by_reason")):
        if (
            type(item) is not list
            or len(item) != 2
            or not one_of(item[0], reasons)
            or type(item[1]) is not int
            or item[1] < 0
        ):
            refuse(f"{where}.by_reason[{i}]", f"must be [reason, count], got {shown(item)}")
        by_reason[reasons[item[0]]] = item[1]
    fields.done()

    def load() -> None:
        for part in loads:
            part()
        b._next_id = next_id
        b._targets.update(targets)
        b._limits.clear()
        b._limits.update(limits)
        b._starts.clear()
        b._starts.update(starts)
        b._records.update(records)
        b._by_reason.update(by_reason)
        for batch in opened:
            b._groups[batch.key] = batch
            for task in batch.tasks:
                b._pending[task.id] = batch
        for batch_id in due_order:  # in the order their due times were scheduled
            batch = by_id[batch_id]
            b._due.schedule(batch, batch.due)
        b._wakeup_known = False

    return load


def _size(value: object, where: str, smallest: int, largest: int) -> int:
    if type(value) is not int or not smallest <= value <= largest:
        refuse(where, f"must be a batch size in [{smallest}, {largest}], got {shown(value)}")
    return value


def _number(value: object, where: str, *, infinite: bool = False) -> float:
    """A finite number (``None`` for infinity where ``infinite``)."""
    if value is None and infinite:
        return math.inf
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        refuse(where, f"must be a finite number, got {shown(value)}")
    return float(value)  # type: ignore[arg-type]


def _open(data: object, where: str, reasons: dict[str, Any]) -> _OpenBatch:
    """An open batch as :func:`_open_data` wrote it."""
    fields = Fields(data, where)
    batch = _OpenBatch(
        fields.integer("id", minimum=0),
        fields.key("key"),
        fields.number("created"),
        fields.number("wait_due"),
        fields.integer("target", minimum=1),
    )
    batch.tasks = [
        Task.from_data(t, f"{where}.tasks[{i}]") for i, t in enumerate(fields.items("tasks"))
    ]
    batch.added = [_number(x, f"{where}.added") for x in fields.items("added")]
    batch.since = [_number(x, f"{where}.since") for x in fields.items("since")]
    if not batch.tasks or not len(batch.tasks) == len(batch.added) == len(batch.since):
        refuse(where, "must hold tasks, each with when it was added and its TTL started")
    batch.cost = fields.number("cost")
    resources = fields.items("resources")
    if not all(type(r) is list and len(r) == 2 and type(r[0]) is str for r in resources):
        refuse(f"{where}.resources", f"must be [name, amount] pairs, got {shown(resources)}")
    batch.resources = {name: _number(amount, f"{where}.resources") for name, amount in resources}
    batch.best = _number(fields.value("best"), f"{where}.best", infinite=True)
    batch.expiry_due = _number(fields.value("expiry_due"), f"{where}.expiry_due", infinite=True)
    batch.due = _number(fields.value("due"), f"{where}.due", infinite=True)
    reason = fields.value("reason")
    if not one_of(reason, reasons):
        refuse(f"{where}.reason", f"names no batch reason: {shown(reason)}")
    batch.reason = reasons[reason]
    fields.done()
    return batch
