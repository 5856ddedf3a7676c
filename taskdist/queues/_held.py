"""Membership shared by the queues that hold expired tasks until ``expire()``, how
``expire()`` hands those over, and how a held task's place is written in their snapshots."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from taskdist._snapshot import refuse
from taskdist.errors import InvalidTypeError, UnknownTaskError
from taskdist.task import Task

__all__ = [
    "HeldTasks",
    "held_data",
    "read_held",
    "reentry_refusal",
    "unpop_refusal",
]


def held_data(seq: float, enqueued: float, task: Task) -> list[Any]:
    """A held task's place as plain data: ``[seq, enqueued_at, task]``."""
    return [seq, enqueued, task.to_data()]


def read_held(data: object, where: str, following: float) -> tuple[float, float, Task]:
    """The ``(seq, enqueued_at, task)`` :func:`held_data` wrote; ``seq`` below ``following``."""
    if type(data) is not list or len(data) != 3:
        refuse(where, "must be [seq, enqueued_at, task]")
    seq, enqueued, task_data = data
    for name, value in (("seq", seq), ("enqueued_at", enqueued)):
        if type(value) not in (int, float) or not math.isfinite(value):
            refuse(f"{where}.{name}", f"must be a finite number, got {value!r}")
    if not 0 <= seq < following:
        refuse(f"{where}.seq", f"must be in [0, next_seq), got {seq!r}")
    return float(seq), float(enqueued), Task.from_data(task_data, f"{where}.task")


class _Expiring(Protocol):
    # What _take_expired assigns; it is typed so because the slots are the queues' own.
    _expired: dict[Hashable, Any]
    _expired_count: int
    _last_pop: Any


class HeldTasks:
    """``len``, ``bool``, ``in`` and removal over live tasks (``_index``) and expired ones
    (``_expired``), and a ``release`` that only checks its argument (these queues do not
    track running tasks).

    An expired task stays counted until ``expire()`` hands it over, so the
    host sees every task leave. All of these are O(1).
    """

    __slots__ = ()

    _index: dict[Hashable, Any]
    _expired: dict[Hashable, Any]
    _expired_count: int
    _last_pop: Any

    def __len__(self) -> int:
        return len(self._index) + len(self._expired)

    def __bool__(self) -> bool:
        return bool(self._index) or bool(self._expired)

    def __contains__(self, task_id: object) -> bool:
        try:
            return task_id in self._index or task_id in self._expired
        except TypeError:  # an unhashable id is in no queue
            return False

    def release(self, task: Task) -> None:
        """Nothing to do: the queue does not track running tasks. O(1).

        Raises:
            InvalidTypeError: ``task`` is not a Task.
        """
        if not isinstance(task, Task):
            raise InvalidTypeError(f"release() takes a Task, got {type(task).__name__} {task!r}")

    def _take_held(self, task_id: Hashable, holder: str) -> tuple[Any, bool]:
        """Take ``task_id`` out of the index or the expired area: (what was stored, live?). O(1).

        Raises:
            UnknownTaskError: neither holds it (nothing changes).
            InvalidTypeError: ``task_id`` is unhashable.
        """
        try:
            return self._index.pop(task_id), True
        except TypeError:
            raise InvalidTypeError(f"task ids are hashable, got {task_id!r}") from None
        except KeyError:
            held = self._expired.pop(task_id, None)
            if held is None:
                raise UnknownTaskError(f"no task with id {task_id!r} in the {holder}") from None
            return held, False

    def _take_expired(self: _Expiring, order: Callable[[Any], Any]) -> list[Any]:
        """Empty the expired area for ``expire()``: what it held, sorted by ``order``, counted
        as expired. O(x log x) for x expired tasks."""
        held = sorted(self._expired.values(), key=order)
        self._expired = {}
        self._last_pop = None
        self._expired_count += len(held)
        return held


def unpop_refusal(task: object, holder: str) -> str:
    """The message of the ``TaskStateError`` an invalid ``unpop(task)`` raises."""
    task_id = getattr(task, "id", task)
    return (
        f"unpop() puts back only the task the latest pop() returned, while nothing else "
        f"has changed the {holder} since; {task_id!r} is not that task, or the {holder} "
        f"changed (nothing was put back)"
    )


def reentry_refusal(call: str, holder: str) -> str:
    """The message of the ``ReentrancyError`` a call from inside a ``where=`` predicate raises."""
    return (
        f"{call}() was called from inside a where= predicate of this {holder}; a predicate "
        f"may look ({holder} len, in, stats) but not change it (nothing changed)"
    )
