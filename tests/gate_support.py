"""A user's own gate for the gate tests: only the three ``Gate`` methods."""

from __future__ import annotations

from taskdist import Task


class CountingGate:
    """At most ``capacity`` tasks at once; no ``rollback``, no queries. Counts what it is asked."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.running: set[object] = set()
        self.asked = 0

    def try_acquire(self, task: Task) -> bool:
        self.asked += 1
        if len(self.running) >= self.capacity:
            return False
        self.running.add(task.id)
        return True

    def release(self, task: Task) -> None:
        self.running.discard(task.id)

    def next_wakeup(self) -> float | None:
        return None
