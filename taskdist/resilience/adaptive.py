"""AdaptiveConcurrency: a gate that learns how many calls a dependency can take at once.

An API behind a rate limit says so by throttling (HTTP 429 or 503, often with
a ``Retry-After``). This gate holds the number of tasks in flight under a
limit it adjusts from outcomes, as TCP does with its window: additive increase
while calls succeed (within a latency target, if one is set), multiplicative
decrease on a throttle, and no admission at all until the ``retry_after`` the
dependency asked for has passed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from taskdist._snapshot import check_header, decode_key, encode_key, header, refuse
from taskdist._validate import check_number, check_optional_number
from taskdist.errors import (
    DuplicateTaskError,
    InvalidArgumentError,
    InvalidTypeError,
    OverReleaseError,
    UnsatisfiableDemandError,
)
from taskdist.resilience.gates import _check_run
from taskdist.task import Task

__all__ = ["AdaptiveConcurrency"]


def _all(_task: Task) -> bool:
    return True


class AdaptiveConcurrency:
    """A :class:`~taskdist.QueryableGate` whose limit on tasks in flight follows outcomes.

    - ``applies``: which tasks it gates (default: every task); others pass.
    - The limit starts at ``initial`` and stays within ``[minimum, maximum]``.
    - A success (``record(task, ok=True, duration=...)``) adds ``increase /
      limit`` (so about ``increase`` per full window of successes), unless
      ``duration`` is above ``latency_target``: then it counts as a sign of
      saturation and halves the gain.
    - A throttle (``record(task, ok=False, throttled=True, retry_after=s)``)
      multiplies the limit by ``decrease`` and admits nothing until ``s``
      seconds have passed (``next_wakeup`` says when). Throttles heard while
      that pause lasts come from calls sent before it: they extend the pause
      but do not decrease the limit again. A plain failure changes nothing:
      it says nothing about capacity.

    What it learned (the limit, the tasks in flight, the pause) goes into
    :meth:`snapshot`; :meth:`load_snapshot` takes it into a new gate built
    with the same bounds, ``increase``, ``decrease`` and ``latency_target``.

    Every operation is O(1) (a snapshot O(f log f) for f tasks in flight).
    Not safe to share between threads (the Distributor drives it; a host
    with threads uses ``taskdist.threaded.ThreadSafeDistributor``).

    >>> from taskdist import ManualClock, Task
    >>> clock = ManualClock()
    >>> api = AdaptiveConcurrency(clock.now, initial=2, minimum=1, maximum=8)
    >>> [api.try_acquire(Task(i)) for i in range(3)]
    [True, True, False]
    >>> api.record(Task(0), ok=False, throttled=True, retry_after=5.0)
    >>> api.limit, api.next_wakeup()
    (1.0, 5.0)
    """

    __slots__ = (
        "_applies",
        "_decrease",
        "_held",
        "_in_flight",
        "_increase",
        "_limit",
        "_maximum",
        "_minimum",
        "_now",
        "_paused_until",
        "_target",
        "_wake",
    )

    def __init__(
        self,
        now: Callable[[], float],
        *,
        initial: float = 10.0,
        minimum: float = 1.0,
        maximum: float = 1_000.0,
        increase: float = 1.0,
        decrease: float = 0.5,
        latency_target: float | None = None,
        applies: Callable[[Task], bool] | None = None,
    ) -> None:
        """
        Args:
            now: the clock's ``now`` (e.g. ``clock.now``).
            initial, minimum, maximum: the limit's start and bounds (1 <= minimum
                <= initial <= maximum <= 1e9).
            increase: the limit's growth per window of successes (> 0).
            decrease: the factor a throttle multiplies it by, in (0, 1).
            latency_target: seconds above which a success counts as saturation.
            applies: which tasks it gates (default: all).

        Raises:
            InvalidArgumentError: a bound out of range or out of order.
            InvalidTypeError: ``now`` or ``applies`` not callable.
        """
        if not callable(now):
            raise InvalidTypeError(f"now must be the clock's now, got {now!r}")
        minimum = check_number(minimum, "minimum", minimum=1.0, maximum=1e9)
        maximum = check_number(maximum, "maximum", minimum=1.0, maximum=1e9)
        initial = check_number(initial, "initial", minimum=1.0, maximum=1e9)
        if not minimum <= initial <= maximum:
            raise InvalidArgumentError(
                f"need minimum <= initial <= maximum, got {minimum:g}, {initial:g}, {maximum:g}"
            )
        self._increase = check_number(increase, "increase", positive=True, maximum=1e9)
        self._decrease = check_number(decrease, "decrease", positive=True)
        if self._decrease >= 1.0:
            raise InvalidArgumentError(f"decrease must be in (0, 1), got {decrease!r}")
        self._target = check_optional_number(latency_target, "latency_target", positive=True)
        if applies is not None and not callable(applies):
            raise InvalidTypeError(f"applies must be callable, got {applies!r}")
        self._now = now
        self._applies = _all if applies is None else applies
        self._minimum = minimum
        self._maximum = maximum
        self._limit = initial
        self._in_flight = 0
        self._held: set[Hashable] = set()
        self._paused_until = -math.inf
        # The end of the last pause, until a try_acquire at or after it: a host
        # that wakes then must still hear that the pause is over.
        self._wake: float | None = None

    @property
    def limit(self) -> float:
        """The current limit on tasks in flight (admission while ``in_flight < limit``)."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Tasks admitted and not yet released."""
        return self._in_flight

    def demand(self, task: Task) -> float:
        """What ``task`` takes of the limit: 1 if the gate applies to it, else 0. O(1).

        A release of a task it does not apply to frees nothing, so the
        Distributor wakes no task parked behind this gate for it.
        """
        _check_task(task)
        return 1.0 if self._applies(task) else 0.0

    def can_acquire(self, task: Task) -> bool:
        """Whether ``try_acquire(task)`` would admit it now; changes nothing. O(1)."""
        _check_task(task)
        if not self._applies(task):
            return True
        return self._now() >= self._paused_until and self._in_flight + 1 <= self._limit

    def check(self, task: Task) -> None:
        """Nothing: any task can pass once the limit allows one more. O(1)."""
        _check_task(task)

    def check_together(self, tasks: Sequence[Task]) -> None:
        """Return if ``tasks`` could ever be admitted at one moment, as a gang's members
        must: those it applies to are at most ``maximum``; changes nothing. O(k).

        Raises:
            InvalidTypeError: ``tasks`` is not a sequence of Tasks.
            UnsatisfiableDemandError: more of them than the limit could ever reach.
        """
        _check_run(tasks, "check_together")
        count = sum(1 for task in tasks if self._applies(task))
        if count > self._maximum:
            raise UnsatisfiableDemandError(
                f"{count} tasks must be admitted together, more than the adaptive "
                f"limit's maximum of {self._maximum:g}: they could never pass at once"
            )

    def try_acquire(self, task: Task) -> bool:
        """Admit ``task`` if it passes (or is not gated); all or nothing. O(1).

        Raises:
            InvalidTypeError: ``task`` is not a Task (nothing changes).
            DuplicateTaskError: this task holds an admission here already.
        """
        _check_task(task)  # first: a refused call changes nothing, its wakeup included
        if task.id in self._held:
            raise DuplicateTaskError(f"task {task.id!r} already holds an admission of this gate")
        if self._wake is not None and self._now() >= self._wake:
            self._wake = None
        if not self.can_acquire(task):
            return False
        if self._applies(task):
            self._in_flight += 1
            self._held.add(task.id)
        return True

    def release(self, task: Task) -> None:
        """The admitted ``task`` finished. O(1).

        Raises:
            OverReleaseError: it holds no admission here.
        """
        _check_task(task)
        if not self._applies(task):
            return
        if task.id not in self._held:
            raise OverReleaseError(f"task {task.id!r} holds no admission of this gate")
        self._held.discard(task.id)
        self._in_flight -= 1

    def rollback(self, task: Task) -> None:
        """Undo the admission just made (as :meth:`release`). O(1)."""
        self.release(task)

    def next_wakeup(self) -> float | None:
        """When the last throttle's pause ends, or ``None``. O(1).

        A past time means now: it stays until the next ``try_acquire`` at or
        after it (as the rate gates' wakeups do), so a host that wakes when the
        pause ends still hears it, and wakes what waited for it.
        """
        return self._wake

    def record(
        self,
        task: Task,
        *,
        ok: bool,
        duration: float | None = None,
        throttled: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """Learn from one outcome of ``task`` (see the class docstring). O(1).

        Raises:
            InvalidArgumentError: ``duration`` or ``retry_after`` negative or NaN.
        """
        _check_task(task)
        duration = check_optional_number(duration, "duration", minimum=0.0)
        retry_after = check_optional_number(retry_after, "retry_after", minimum=0.0)
        if not self._applies(task):
            return
        if throttled:
            if self._now() >= self._paused_until:
                # Throttles heard during a pause come from calls sent before it: one
                # signal, one decrease (as TCP takes one window's losses).
                self._limit = max(self._minimum, self._limit * self._decrease)
            if retry_after:
                self._paused_until = max(self._paused_until, self._now() + retry_after)
                self._wake = self._paused_until
            return
        if not ok:
            return
        gain = self._increase / self._limit
        if self._target is not None and duration is not None and duration > self._target:
            gain /= 2
        self._limit = min(self._maximum, self._limit + gain)

    def snapshot(self) -> dict[str, Any]:
        """What its next decisions depend on, as plain data: the learned limit, the
        tasks in flight, when the last throttle's pause ends and the wakeup it
        owes, with the configuration they were learned under. O(f log f) for
        f tasks in flight. See ``docs/persistence.md``.

        Raises:
            SnapshotError: a task id in flight that is not plain data.
        """
        return {
            **header("AdaptiveConcurrency"),
            **self._configuration(),
            "limit": self._limit,
            "in_flight": self._in_flight,
            "held": sorted((encode_key(k, "a task id") for k in self._held), key=repr),
            "paused_until": None if self._paused_until == -math.inf else self._paused_until,
            "wake": self._wake,
        }

    def load_snapshot(self, data: object) -> None:
        """Take on what :meth:`snapshot` wrote, in place of what it learned. O(f).

        ``initial`` is not checked: the learned limit replaces it.

        Raises:
            SnapshotError: not such a snapshot, or one made under another
                configuration (the field named); nothing changes.
        """
        self._prepare_snapshot(data, "gate")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "AdaptiveConcurrency", where)
        for name, mine in self._configuration().items():
            fields.same(name, mine, "gate")
        limit = fields.number("limit")
        if not self._minimum <= limit <= self._maximum:
            refuse(
                f"{where}.limit",
                f"is {limit:g}, outside [minimum, maximum] "
                f"= [{self._minimum:g}, {self._maximum:g}]",
            )
        in_flight = fields.integer("in_flight", minimum=0)
        held: set[Hashable] = set()
        for i, item in enumerate(fields.items("held")):
            task_id = decode_key(item, f"{where}.held[{i}]")
            if task_id in held:
                refuse(f"{where}.held[{i}]", f"holds task {task_id!r} twice")
            held.add(task_id)
        # in_flight counts admissions and held the tasks: a task admitted twice is held once.
        if in_flight < len(held):
            refuse(f"{where}.in_flight", f"is {in_flight}, fewer than the {len(held)} tasks held")
        paused_until = fields.opt_number("paused_until")
        wake = fields.opt_number("wake")
        fields.done()

        def load() -> None:
            self._limit, self._in_flight, self._held = limit, in_flight, held
            self._paused_until = -math.inf if paused_until is None else paused_until
            self._wake = wake

        return load

    def _configuration(self) -> dict[str, float | None]:
        """The settings that are data: a snapshot loads only under the same."""
        return {
            "minimum": self._minimum,
            "maximum": self._maximum,
            "increase": self._increase,
            "decrease": self._decrease,
            "latency_target": self._target,
        }

    def __repr__(self) -> str:
        return f"AdaptiveConcurrency(limit={self._limit:g}, in_flight={self._in_flight})"


def _check_task(task: object) -> None:
    if not isinstance(task, Task):
        raise InvalidTypeError(f"a gate takes a Task, got {type(task).__name__} {task!r}")
