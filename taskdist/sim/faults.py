"""Fault injection and changing pools: what goes wrong, and when, in a scenario.

Events at a time (the simulation calls the Distributor then):

- :class:`AddWorker` / :class:`RemoveWorker`: the pool changes (scale up,
  scale down, a worker leaves and its leased tasks are requeued).
- :class:`WorkerCrash`: a worker disappears at ``at`` and comes back
  ``down_for`` seconds later (``None``: never).

Conditions over a window, checked when an attempt starts:

- :class:`Slowdown`: attempts on a worker run ``factor`` times longer.
- :class:`LostLeases`: an assignment never reports back (its worker hung);
  only its lease brings the task back, so the scenario needs a ``lease``.
- :class:`ErrorBurst`: attempts fail with a probability (a flaky API), for
  the tasks that use a resource, or all tasks.

All are frozen values, validated when built; checking a condition is O(1).
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import attrs

from taskdist._validate import check_hashable, check_number, check_optional_number
from taskdist.errors import InvalidArgumentError, InvalidTypeError
from taskdist.task import Task, Worker

__all__ = [
    "AddWorker",
    "ErrorBurst",
    "Fault",
    "LostLeases",
    "RemoveWorker",
    "Slowdown",
    "WorkerCrash",
]


def _window(start: float, end: float, name: str) -> None:
    check_number(start, f"{name}.start", minimum=0.0)
    number = isinstance(end, (int, float)) and not isinstance(end, bool)
    if not (number and end == end) or end < start:  # inf (no end) is allowed, NaN is not
        raise InvalidArgumentError(f"{name}.end must be a number >= start ({start:g}), got {end!r}")


@attrs.frozen
class AddWorker:
    """At ``at`` seconds, ``worker`` joins the pool."""

    at: float
    worker: Worker

    def __attrs_post_init__(self) -> None:
        check_number(self.at, "AddWorker.at", minimum=0.0)
        if not isinstance(self.worker, Worker):
            raise InvalidTypeError(f"AddWorker.worker must be a Worker, got {self.worker!r}")


@attrs.frozen
class RemoveWorker:
    """At ``at`` seconds, the worker leaves; its leased tasks go back to the queue."""

    at: float
    worker_id: Hashable

    def __attrs_post_init__(self) -> None:
        check_number(self.at, "RemoveWorker.at", minimum=0.0)
        check_hashable(self.worker_id, "RemoveWorker.worker_id")


@attrs.frozen
class WorkerCrash:
    """At ``at`` seconds the worker is gone; it is back ``down_for`` seconds later (or never)."""

    at: float
    worker_id: Hashable
    down_for: float | None = None

    def __attrs_post_init__(self) -> None:
        check_number(self.at, "WorkerCrash.at", minimum=0.0)
        check_hashable(self.worker_id, "WorkerCrash.worker_id")
        check_optional_number(self.down_for, "WorkerCrash.down_for", positive=True)


@attrs.frozen
class Slowdown:
    """Attempts started on ``worker_id`` between ``start`` and ``end`` run ``factor``
    times longer."""

    worker_id: Hashable
    factor: float
    start: float = 0.0
    end: float = math.inf

    def __attrs_post_init__(self) -> None:
        check_hashable(self.worker_id, "Slowdown.worker_id")
        check_number(self.factor, "Slowdown.factor", positive=True)
        _window(self.start, self.end, "Slowdown")

    def applies(self, worker_id: Hashable, now: float) -> bool:
        """Whether an attempt starting now on ``worker_id`` is slowed. O(1)."""
        return worker_id == self.worker_id and self.start <= now < self.end


@attrs.frozen
class LostLeases:
    """Between ``start`` and ``end``, each assignment never reports back with ``probability``."""

    probability: float
    start: float = 0.0
    end: float = math.inf

    def __attrs_post_init__(self) -> None:
        check_number(self.probability, "LostLeases.probability", minimum=0.0, maximum=1.0)
        _window(self.start, self.end, "LostLeases")

    def active(self, now: float) -> bool:
        """Whether the window is open. O(1)."""
        return self.start <= now < self.end


@attrs.frozen
class ErrorBurst:
    """Between ``start`` and ``end``, attempts fail with ``probability``: all tasks, or
    only those whose ``resources`` name ``resource`` (e.g. ``"api"``: a flaky API)."""

    probability: float
    start: float = 0.0
    end: float = math.inf
    resource: str | None = None

    def __attrs_post_init__(self) -> None:
        check_number(self.probability, "ErrorBurst.probability", minimum=0.0, maximum=1.0)
        _window(self.start, self.end, "ErrorBurst")
        if self.resource is not None and (not isinstance(self.resource, str) or not self.resource):
            raise InvalidTypeError(
                f"ErrorBurst.resource must be a non-empty str or None, got {self.resource!r}"
            )

    def applies(self, task: Task, now: float) -> bool:
        """Whether an attempt of ``task`` starting now is exposed to the burst. O(1)."""
        return self.start <= now < self.end and (
            self.resource is None or self.resource in task.resources
        )


Fault = AddWorker | RemoveWorker | WorkerCrash | Slowdown | LostLeases | ErrorBurst
"""Any of the fault and pool-change events a scenario can hold."""

TIMED = (AddWorker, RemoveWorker, WorkerCrash)
