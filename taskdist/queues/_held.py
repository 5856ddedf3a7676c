"""Membership shared by the queues that hold expired tasks until ``expire()``."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from taskdist.errors import InvalidTypeError, UnknownTaskError

__all__ = ["HeldTasks", "reentry_refusal", "unpop_refusal"]


class HeldTasks:
    """``len``, ``bool``, ``in`` and removal over live tasks (``_index``) and expired ones
    (``_expired``).

    An expired task stays counted until ``expire()`` hands it over, so the
    host sees every task leave. All of these are O(1).
    """

    __slots__ = ()

    _index: dict[Hashable, Any]
    _expired: dict[Hashable, Any]

    def __len__(self) -> int:
        return len(self._index) + len(self._expired)

    def __bool__(self) -> bool:
        return bool(self._index) or bool(self._expired)

    def __contains__(self, task_id: object) -> bool:
        try:
            return task_id in self._index or task_id in self._expired
        except TypeError:  # an unhashable id is in no queue
            return False

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
