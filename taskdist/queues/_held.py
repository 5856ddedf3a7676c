"""Membership shared by the queues that hold expired tasks until ``expire()``."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = ["HeldTasks"]


class HeldTasks:
    """``len``, ``bool`` and ``in`` over live tasks (``_index``) and expired ones (``_expired``).

    An expired task stays counted until ``expire()`` hands it over, so the
    host sees every task leave. All three are O(1).
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
