"""BatchOptimizer: batches grouped by key, bounded in size, cost and wait, released on time."""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, Literal

import attrs

from taskdist._lazy_heap import LazyHeap
from taskdist._validate import (
    check_choice,
    check_enqueued_at,
    check_hashable,
    check_int,
    check_number,
    check_optional_number,
    check_resources,
)
from taskdist.batching.sizing import SizingRule
from taskdist.clock import Clock, check_clock
from taskdist.errors import (
    DuplicateTaskError,
    InvalidArgumentError,
    InvalidTypeError,
    ReentrancyError,
    UnknownTaskError,
)
from taskdist.metrics import Percentiles, RecentSamples
from taskdist.task import Priority, Task

__all__ = [
    "Batch",
    "BatchOptimizer",
    "BatchReason",
    "BatchStats",
    "GroupBatchStats",
    "GroupLimits",
]

BelowMinPolicy = Literal["release", "hold"]
CriticalPolicy = Literal["close", "wait"]
_BELOW_MIN_POLICIES: tuple[BelowMinPolicy, ...] = ("release", "hold")
_CRITICAL_POLICIES: tuple[CriticalPolicy, ...] = ("close", "wait")

_INF = math.inf
_CRITICAL = int(Priority.CRITICAL)
_NO_SAMPLES = RecentSamples(1).percentiles()


class BatchReason(str, enum.Enum):
    """Why a batch was released. A ``str`` enum: ``BatchReason.FULL == "full"``."""

    FULL = "full"
    """It reached its target size, or the next task would not fit (cost, resources)."""
    MAX_WAIT = "max_wait"
    """Its oldest task had waited ``max_wait``."""
    CRITICAL = "critical"
    """A CRITICAL task joined it (``critical="close"``)."""
    DEADLINE = "deadline"
    """A task's TTL or deadline, less ``expiry_margin``, came first."""
    FLUSH = "flush"
    """The host called :meth:`BatchOptimizer.flush`."""

    # Hash as the string it equals (Enum hashes the member name, in Python):
    # ``{BatchReason.FULL: 1}["full"]`` works, and counting per reason stays in C.
    __hash__ = str.__hash__


@attrs.frozen
class Batch:
    """A released batch: tasks of one group, in the order they were added.

    ``created`` is when its first task was added, ``released`` when the
    optimizer handed it out. Iterating a batch iterates its tasks.
    """

    id: int
    """Unique within its optimizer, in order of creation."""
    key: Hashable
    """The group every task in it belongs to."""
    tasks: tuple[Task, ...]
    """Its tasks, in the order they were added (never empty; at most its group's
    ``max_size``); the Task objects themselves, as given to :meth:`BatchOptimizer.add`."""
    created: float
    """When its first task was added (clock time)."""
    released: float
    """When the optimizer handed it out (clock time)."""
    reason: BatchReason
    """Why it was released then."""

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    @property
    def priority(self) -> int:
        """The most urgent (lowest) priority among its tasks. O(len)."""
        return min(task.priority for task in self.tasks)

    @property
    def cost(self) -> float:
        """The total ``cost`` of its tasks. O(len)."""
        return math.fsum(task.cost for task in self.tasks)

    @property
    def ids(self) -> tuple[Hashable, ...]:
        """Its task ids, in order. O(len)."""
        return tuple(task.id for task in self.tasks)


@attrs.frozen
class GroupLimits:
    """One group's own batch size and wait, over the optimizer's defaults.

    ``None`` keeps the default (``max_size`` / ``max_wait`` of the
    :class:`BatchOptimizer`). Validated when built.

    >>> GroupLimits(max_size=4, max_wait=0.5)
    GroupLimits(max_size=4, max_wait=0.5)
    """

    max_size: int | None = None
    """The group's largest batch (>= 1, and >= the optimizer's ``min_size``)."""
    max_wait: float | None = None
    """Seconds the group's batch may wait for more tasks after its first (>= 0)."""

    def __attrs_post_init__(self) -> None:
        if self.max_size is not None:
            check_int(self.max_size, "GroupLimits.max_size", minimum=1)
        if self.max_wait is not None:
            object.__setattr__(
                self, "max_wait", check_number(self.max_wait, "GroupLimits.max_wait", minimum=0.0)
            )


@attrs.frozen
class GroupBatchStats:
    """What one group's batches have looked like."""

    formed: int
    """Batches released."""
    mean_size: float
    """Tasks per released batch (NaN before the first)."""
    wait: Percentiles
    """Per task: seconds from ``add`` to release, over the most recent released tasks."""
    duration: Percentiles
    """Per batch: seconds reported by ``record``, over the most recent reports."""
    pending: int
    """Tasks waiting in its open batch now."""
    target_size: int
    """Size at which its next batch is full."""


@attrs.frozen
class BatchStats:
    """A snapshot of a :class:`BatchOptimizer`: totals and one entry per group seen."""

    formed: int
    """Batches released."""
    mean_size: float
    """Tasks per released batch (NaN before the first)."""
    pending: int
    """Tasks waiting in open batches now."""
    open_batches: int
    by_reason: dict[BatchReason, int]
    """Batches released per reason."""
    groups: dict[Hashable, GroupBatchStats]


class _OpenBatch:
    """A batch still filling: the one per group that takes that group's next task."""

    __slots__ = (
        "added",
        "best",
        "cost",
        "created",
        "due",
        "expiry_due",
        "id",
        "key",
        "reason",
        "resources",
        "since",
        "target",
        "tasks",
        "wait_due",
    )

    def __init__(
        self, batch_id: int, key: Hashable, now: float, wait_due: float, target: int
    ) -> None:
        self.id = batch_id
        self.key = key
        self.created = now
        self.target = target
        self.tasks: list[Task] = []
        self.added: list[float] = []
        # When each task's TTL started: its enqueued_at if it came with one, else added.
        self.since: list[float] = []
        self.cost = 0.0
        self.resources: dict[str, float] = {}
        self.best = _INF  # most urgent priority held
        self.wait_due = wait_due  # created + max_wait, computed once
        self.expiry_due = _INF  # earliest TTL / deadline less the margin
        self.due = _INF  # when it is released: the earliest of the above that applies
        self.reason = BatchReason.MAX_WAIT


_DueEntry = tuple[float, int, _OpenBatch]


class _GroupRecord:
    __slots__ = ("durations", "formed", "tasks", "waits")

    def __init__(self, window: int) -> None:
        self.formed = 0
        self.tasks = 0
        self.waits = RecentSamples(window)
        self.durations = RecentSamples(window)


class BatchOptimizer:
    """Collects tasks into batches per group and says when each batch must go.

    Tasks are grouped by ``key(task)`` (default: ``task.group``; tasks with no
    group form the group ``None``). Each group has at most one *open* batch,
    which takes all of that group's tasks in the order they are added. A
    batch is released:

    - by :meth:`add`, as soon as it is **full**: it holds its target size
      (its group's ``max_size``, or the group's dynamic target), or the next task would
      push its total ``cost`` past ``max_cost`` or a resource past
      ``max_resources`` (that task then opens the next batch);
    - by :meth:`add`, at once, when a CRITICAL task (priority <=
      ``Priority.CRITICAL``) joins it (``critical="close"``, the default) or
      its due time (below) has already come;
    - by :meth:`poll`, once ``clock.now() >=`` its **due time**: the earliest
      of ``created + max_wait`` (the group's) and, for each task, ``since +
      ttl - expiry_margin`` and ``deadline - expiry_margin``, where
      ``since`` is the ``enqueued_at`` the task was added with (when it
      waited elsewhere first), else when it was added. With
      ``below_min="hold"`` the ``max_wait`` term applies only once the batch
      holds ``min_size`` tasks;
    - by :meth:`flush`, all of them.

    :meth:`add` returns at most one batch. In the rare case where it closes a
    batch because the new task did not fit *and* the new task's batch is due
    at once, the second one stays due: :meth:`next_wakeup` returns ``now`` (or,
    when the new task's TTL or deadline margin had already passed, that earlier
    time) and the next :meth:`poll` releases it.

    **Per-group limits.** A group can have its own ``max_size`` and
    ``max_wait`` (:class:`GroupLimits`, given as ``groups=`` or with
    :meth:`set_group`); the others use the defaults. A dynamic target never
    exceeds its group's ``max_size``.

    **Callbacks and threads.** The ``key`` function and a sizing rule may
    look at the optimizer (``len``, ``in``, :meth:`stats`,
    :meth:`target_size`); any other call from inside them is refused with
    :class:`~taskdist.errors.ReentrancyError` and changes nothing, and the
    refusal propagates out of the outer call, which changes nothing either.
    An optimizer is not safe to share between threads: a host with threads
    wraps the composition in ``taskdist.threaded.ThreadSafeDistributor``, or
    holds its own lock around every call.

    **Guarantees** (what the stateful test checks after every step):

    - every task added is in exactly one released batch, still pending, or
      was removed; none is lost or duplicated; a batch lists its tasks in
      add order;
    - a batch never mixes groups, never holds more than its group's ``max_size`` tasks,
      and its cost and resource totals (summed in add order) never exceed
      ``max_cost`` / ``max_resources``;
    - a host that calls :meth:`poll` whenever ``clock.now() >=``
      :meth:`next_wakeup` releases every task by ``added + max_wait`` (with
      the default ``below_min="release"``) and by ``since + ttl -
      expiry_margin`` and ``deadline - expiry_margin`` (or at once if that
      has already passed). Due times are computed once and compared as the
      same floats, so "by" means ``released <= added + max_wait`` exactly,
      with no drift;
    - when several batches are due, :meth:`poll` and :meth:`flush` return the
      most urgent first: by their most urgent task's priority, then due time,
      then creation order.

    **Complexity** (G = open batches, k = batches released, n = tasks in them):

    ==================  ==========================================================
    ``add``             O(log G) amortised; O(1) when the batch's due time
                        does not move (no TTL/deadline tightening it)
    ``poll``            O(k log G + k log k + n), O(1) when nothing is due
    ``next_wakeup``     O(1) amortised (lazy deletion from a heap of due times)
    ``flush``           O(G log G + n)
    ``remove``          O(batch size + log G)
    ``record``          O(1)
    ``target_size``     O(1)
    ``set_group``       O(1)
    ``len``, ``in``     O(1)
    ``stats``           O(groups * w log w) for the stats window w
    ==================  ==========================================================

    >>> from taskdist import ManualClock, Task
    >>> clock = ManualClock()
    >>> batcher = BatchOptimizer(clock, max_size=2, max_wait=1.0)
    >>> batcher.add(Task("r1", group="research")) is None
    True
    >>> batcher.add(Task("v1", group="review")), batcher.next_wakeup()
    (None, 1.0)
    >>> batch = batcher.add(Task("r2", group="research"))
    >>> batch.key, batch.ids, batch.reason.value
    ('research', ('r1', 'r2'), 'full')
    >>> clock.advance(1.0)
    1.0
    >>> [(b.key, b.ids, b.reason.value) for b in batcher.poll()]
    [('review', ('v1',), 'max_wait')]
    """

    __slots__ = (
        "_below_min_hold",
        "_bounded",
        "_by_reason",
        "_caps",
        "_clock",
        "_close_on_critical",
        "_due",
        "_groups",
        "_initial_target",
        "_key",
        "_limits",
        "_margin",
        "_max_cost",
        "_max_size",
        "_max_wait",
        "_min_size",
        "_next_id",
        "_now",
        "_pending",
        "_records",
        "_scheduled",
        "_sizing",
        "_starts",
        "_stats_window",
        "_targets",
        "_wakeup",
        "_wakeup_known",
        "_walking",
    )

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        min_size: int = 1,
        max_size: int = 32,
        max_wait: float = 0.05,
        key: Callable[[Task], Hashable] | None = None,
        max_cost: float | None = None,
        max_resources: Mapping[str, float] | None = None,
        below_min: BelowMinPolicy = "release",
        critical: CriticalPolicy = "close",
        expiry_margin: float | None = None,
        sizing: SizingRule | None = None,
        stats_window: int = 1_000,
        groups: Mapping[Hashable, GroupLimits] | None = None,
    ) -> None:
        """
        Args:
            clock: where time comes from (default: :class:`MonotonicClock`).
            min_size: the smallest batch worth sending (>= 1); only
                ``below_min="hold"`` and dynamic sizing look at it.
            max_size: the largest batch (>= min_size).
            max_wait: seconds a batch may wait for more tasks after its first (>= 0).
            key: the group of a task (default: ``task.group``); must return a hashable.
            max_cost: most total ``task.cost`` per batch (> 0), or ``None``.
            max_resources: most total demand per resource per batch, e.g.
                ``{"tokens": 8000}``, or ``None``.
            below_min: at ``max_wait``, ``"release"`` a batch below ``min_size``
                anyway, or ``"hold"`` it until it reaches ``min_size`` (or a
                TTL/deadline, a critical task or :meth:`flush` releases it).
            critical: ``"close"``: a CRITICAL task releases its batch at once;
                ``"wait"``: it waits like any other.
            expiry_margin: seconds before a task's TTL runs out or its deadline
                passes by which its batch is released (>= 0; default: ``max_wait``,
                so whatever runs the batch gets at least as long as batching may take).
            sizing: a :class:`~taskdist.batching.sizing.SizingRule` (e.g.
                :class:`~taskdist.batching.sizing.AIMDSizing`) that adapts each
                group's target size from :meth:`record`; ``None``: always ``max_size``.
            stats_window: how many recent waits and durations per group
                :meth:`stats` computes percentiles over (>= 1).
            groups: group key -> :class:`GroupLimits`, the groups with a
                ``max_size`` or ``max_wait`` of their own (see :meth:`set_group`).

        Raises:
            InvalidArgumentError: a number out of range, NaN or infinite, or
                ``min_size > max_size``.
            InvalidTypeError: a value of the wrong type.
            UnknownPolicyError: ``below_min`` or ``critical`` not one of the choices.
        """
        clock = check_clock(clock)
        min_size = check_int(min_size, "min_size", minimum=1)
        max_size = check_int(max_size, "max_size", minimum=1)
        if min_size > max_size:
            raise InvalidArgumentError(
                f"min_size must be <= max_size ({max_size}), got min_size={min_size}"
            )
        wait = check_number(max_wait, "max_wait", minimum=0.0)
        if key is not None and not callable(key):
            raise InvalidTypeError(f"key must be a function of a Task, got {key!r}")
        cost_cap = check_optional_number(max_cost, "max_cost", positive=True)
        caps = None if max_resources is None else check_resources(max_resources, "max_resources")
        hold = check_choice(below_min, "below_min", _BELOW_MIN_POLICIES) == "hold"
        close = check_choice(critical, "critical", _CRITICAL_POLICIES) == "close"
        margin = check_optional_number(expiry_margin, "expiry_margin", minimum=0.0)
        if sizing is not None and not isinstance(sizing, SizingRule):
            raise InvalidTypeError(
                f"sizing must have initial() and adjust() (a SizingRule), got {sizing!r}"
            )
        window = check_int(stats_window, "stats_window", minimum=1)
        if groups is not None and not isinstance(groups, Mapping):
            raise InvalidTypeError(
                f"groups must be a mapping of group keys to GroupLimits, got {groups!r}"
            )
        initial = max_size if sizing is None else sizing.initial(min_size, max_size)
        self._clock = clock
        self._now = clock.now
        self._min_size = min_size
        self._max_size = max_size
        self._max_wait = wait
        self._key = key
        self._max_cost = cost_cap
        self._caps = caps or None
        self._bounded = cost_cap is not None or self._caps is not None
        self._below_min_hold = hold
        self._close_on_critical = close
        self._margin = wait if margin is None else margin
        self._sizing = sizing
        self._initial_target = self._clamp(initial, "sizing.initial()")
        self._stats_window = window
        self._groups: dict[Hashable, _OpenBatch] = {}
        self._pending: dict[Hashable, _OpenBatch] = {}
        # Open batches with a due time -> their live (due, seq, batch) entry in _due.
        self._scheduled: dict[_OpenBatch, _DueEntry] = {}
        self._due: LazyHeap[_DueEntry] = LazyHeap(self._scheduled, at=2)
        # next_wakeup()'s answer, kept while no due time changes.
        self._wakeup: float | None = None
        self._wakeup_known = True
        self._next_id = 0  # the id of the next batch opened
        self._targets: dict[Hashable, int] = {}
        self._records: dict[Hashable, _GroupRecord] = {}
        self._by_reason: Counter[BatchReason] = Counter()
        # Set while the key function or a sizing rule runs: any call back in is refused.
        self._walking = False
        self._limits: dict[Hashable, GroupLimits] = {
            group: self._check_limits(limits, f"groups[{group!r}]")
            for group, limits in (groups or {}).items()
        }
        # With a sizing rule, where the target of a group with a max_size of its own
        # starts (the rule's initial() over that group's range); the others start at
        # the default's. Without one every group starts at its max_size.
        self._starts: dict[Hashable, int] = self._starts_for(self._limits)

    # -- adding -----------------------------------------------------------

    def add(
        self, task: Task, *, enqueued_at: float | None = None, timed: bool = True
    ) -> Batch | None:
        """Add ``task`` to its group's open batch; return a batch if one is released now.

        The returned batch is the task's own (full, closed by a CRITICAL task,
        or already due) or, if the task did not fit, the group's previous
        batch (full); see the class docstring. ``enqueued_at`` (default: now,
        never later than now) is when the task first entered the system, for
        a task that waited elsewhere (a queue) before it was batched: its TTL
        counts from then. ``timed=False`` is for a caller that sends the batch
        at once whatever happens (a Distributor filling a batch as it
        dispatches): a due time (``max_wait``, a task's deadline or TTL) that
        has come does not release it then; its size, cost, resources and a
        CRITICAL task still do, and :meth:`flush` releases it.

        Complexity: O(log G) amortised, O(1) when no due time moves.

        Raises:
            InvalidTypeError: ``task`` is not a Task, or ``key(task)`` is unhashable.
            DuplicateTaskError: a task with this id is pending.
            InvalidArgumentError: the task alone exceeds ``max_cost`` or ``max_resources``;
                ``enqueued_at`` NaN, infinite or in the future.
            ReentrancyError: called from inside the ``key`` function or a sizing rule.
        """
        if self._walking:
            raise ReentrancyError(_reentered("add"))
        if not isinstance(task, Task):
            raise InvalidTypeError(f"add() takes a Task, got {type(task).__name__} {task!r}")
        task_id = task.id
        pending = self._pending
        if task_id in pending:
            raise DuplicateTaskError(f"a task with id {task_id!r} is already pending")
        now = self._now()
        since = now if enqueued_at is None else check_enqueued_at(enqueued_at, now)
        key = task.group if self._key is None else self._group_of(task)
        bounded = self._bounded
        if bounded:
            self._check_fits_alone(task)

        released = None
        batch = self._groups.get(key)
        if batch is not None and (
            len(batch.tasks) >= batch.target or (bounded and not self._fits(batch, task))
        ):
            released = self._release(batch, now, BatchReason.FULL)
            batch = None
        if batch is None:
            batch = self._open(key, now)

        tasks = batch.tasks
        tasks.append(task)
        batch.added.append(now)
        batch.since.append(since)
        pending[task_id] = batch
        if bounded:
            self._charge(batch, task)
        priority = task.priority
        if priority < batch.best:
            batch.best = priority

        due = batch.due
        reason = batch.reason
        if task.ttl is not None or task.deadline is not None:
            expiry = self._expiry_due(task, since)
            if expiry < batch.expiry_due:
                batch.expiry_due = expiry
                if expiry < due:
                    due, reason = expiry, BatchReason.DEADLINE
        size = len(tasks)
        if batch.wait_due < due and (not self._below_min_hold or size >= self._min_size):
            due, reason = batch.wait_due, BatchReason.MAX_WAIT

        closing = None
        if size >= batch.target:
            closing = BatchReason.FULL
        elif priority <= _CRITICAL and self._close_on_critical:
            closing = BatchReason.CRITICAL
        if closing is not None or (timed and due <= now):
            if released is None:
                return self._release(batch, now, closing or reason)
            if closing is not None and now < due:
                # add() returns the batch this task did not fit in; this one goes at the next
                # poll. It is the only task: the next add() to the group or remove() ends it.
                due, reason = now, closing
        if due != batch.due:
            self._schedule(batch, due, reason)
        return released

    def remove(self, task_id: Hashable) -> Task:
        """Take a pending task out of its batch (cancel it) and return it.

        The batch's due time is recomputed from the tasks left (it never
        moves earlier). Complexity: O(batch size + log G).

        Raises:
            UnknownTaskError: no pending task has this id (nothing changes).
            InvalidTypeError: ``task_id`` is unhashable.
            ReentrancyError: called from inside the ``key`` function or a sizing rule.
        """
        if self._walking:
            raise ReentrancyError(_reentered("remove"))
        try:
            batch = self._pending.pop(task_id)
        except TypeError:
            raise InvalidTypeError(f"task ids are hashable, got {task_id!r}") from None
        except KeyError:
            raise UnknownTaskError(f"no pending task with id {task_id!r}") from None
        tasks = batch.tasks
        position = next(i for i, task in enumerate(tasks) if task.id == task_id)
        task = tasks.pop(position)
        batch.added.pop(position)
        batch.since.pop(position)
        if not tasks:
            del self._groups[batch.key]
            self._unschedule(batch)
            return task
        self._recompute(batch)
        return task

    # -- releasing --------------------------------------------------------

    def poll(self) -> list[Batch]:
        """Release every batch due by now (``now >= due time``), most urgent first.

        Complexity: O(k log G + k log k + n) for k batches of n tasks; O(1)
        when nothing is due.

        Raises:
            ReentrancyError: called from inside the ``key`` function or a sizing rule.
        """
        if self._walking:
            raise ReentrancyError(_reentered("poll"))
        now = self._now()
        due = [entry[2] for entry in self._due.pop_until(now)]  # out of _scheduled too
        if not due:
            return []
        self._wakeup_known = False
        if len(due) > 1:
            due.sort(key=_urgency)
        return [self._release(batch, now, batch.reason) for batch in due]

    def flush(self) -> list[Batch]:
        """Release every open batch now, most urgent first (reason ``flush``).

        Complexity: O(G log G + n).

        Raises:
            ReentrancyError: called from inside the ``key`` function or a sizing rule.
        """
        if self._walking:
            raise ReentrancyError(_reentered("flush"))
        now = self._now()
        batches = sorted(self._groups.values(), key=_urgency)
        released = [self._release(batch, now, BatchReason.FLUSH) for batch in batches]
        self._scheduled.clear()
        self._due.clear()
        self._wakeup_known = False
        return released

    def next_wakeup(self) -> float | None:
        """The earliest due time of an open batch (possibly already past), or ``None``.

        Call :meth:`poll` once ``clock.now() >=`` this value: that is exactly
        when the batch is due. ``None`` means nothing is pending, or (with
        ``below_min="hold"``) only held batches with no TTL or deadline are.
        Complexity: O(1) amortised (kept until a due time changes).

        Raises:
            ReentrancyError: called from inside the ``key`` function or a sizing rule.
        """
        if self._walking:
            raise ReentrancyError(_reentered("next_wakeup"))
        if not self._wakeup_known:
            top = self._due.top()
            self._wakeup = None if top is None else top[0]
            self._wakeup_known = True
        return self._wakeup

    # -- dynamic sizing -----------------------------------------------------

    def record(self, batch: Batch, duration: float) -> None:
        """Report that ``batch`` took ``duration`` seconds to run.

        Feeds the group's duration statistics and, with ``sizing=``, moves the
        group's target size (clamped to ``[min_size, the group's max_size]``);
        batches opened afterwards use the new target. O(1).

        Raises:
            InvalidTypeError: ``batch`` is not a Batch, its ``key`` is unhashable, or the
                rule returned a non-int.
            InvalidArgumentError: ``duration`` negative, NaN or infinite.
            ReentrancyError: called from inside the ``key`` function or a sizing rule.
        """
        if self._walking:
            raise ReentrancyError(_reentered("record"))
        if not isinstance(batch, Batch):
            raise InvalidTypeError(f"record() takes a Batch, got {type(batch).__name__} {batch!r}")
        duration = check_number(duration, "duration", minimum=0.0)
        key = check_hashable(batch.key, "batch.key")
        if self._sizing is not None:
            current = self.target_size(key)
            largest = self._largest(key)
            self._walking = True
            try:
                proposed = self._sizing.adjust(
                    current, len(batch.tasks), duration, self._min_size, largest
                )
            finally:
                self._walking = False
            self._targets[key] = self._clamp(proposed, "sizing.adjust()", largest)
        self._record_for(key).durations.record(duration)

    def target_size(self, key: Hashable) -> int:
        """The size at which the group's next batch is full. O(1)."""
        try:
            return self._target_of(key)
        except TypeError:
            raise InvalidTypeError(f"group keys are hashable, got {key!r}") from None

    # -- per-group limits ---------------------------------------------------

    def set_group(self, key: Hashable, limits: GroupLimits | None) -> None:
        """Give a group its own ``max_size`` / ``max_wait`` (``None``: back to the defaults).

        Batches of the group opened afterwards use them; one open now keeps
        its own. O(1).

        Raises:
            InvalidTypeError: ``limits`` is not a GroupLimits; ``key`` unhashable.
            InvalidArgumentError: its ``max_size`` is below ``min_size``.
            ReentrancyError: called from inside the ``key`` function or a sizing rule.
        """
        if self._walking:
            raise ReentrancyError(_reentered("set_group"))
        check_hashable(key, "group key")
        if limits is None:
            new = {}
        else:
            checked = self._check_limits(limits, f"limits for group {key!r}")
            new = {key: checked}
        starts = self._starts_for(new)  # the sizing rule may refuse: nothing changed yet
        if limits is None:
            self._limits.pop(key, None)
        else:
            self._limits[key] = checked
        self._starts.pop(key, None)
        self._starts.update(starts)
        # A learned target never exceeds the group's max_size, whichever that is now.
        target = self._targets.get(key)
        if target is not None and target > self._largest(key):
            self._targets[key] = self._largest(key)

    def group(self, key: Hashable) -> GroupLimits:
        """The limits a group's next batch gets (its own, or the defaults). O(1).

        Raises:
            InvalidTypeError: ``key`` is unhashable.
        """
        check_hashable(key, "group key")
        return GroupLimits(self._largest(key), self._wait_of(key))

    # -- looking ----------------------------------------------------------

    def __len__(self) -> int:
        """Tasks pending in open batches."""
        return len(self._pending)

    def __bool__(self) -> bool:
        return bool(self._pending)

    def __contains__(self, task_id: object) -> bool:
        try:
            return task_id in self._pending
        except TypeError:
            return False

    @property
    def min_size(self) -> int:
        """The smallest batch worth sending."""
        return self._min_size

    @property
    def max_size(self) -> int:
        """The largest batch."""
        return self._max_size

    @property
    def max_wait(self) -> float:
        """Seconds a batch may wait for more tasks after its first."""
        return self._max_wait

    @property
    def expiry_margin(self) -> float:
        """Seconds before a TTL or deadline by which its batch is released."""
        return self._margin

    def stats(self) -> BatchStats:
        """Totals and per-group sizes, waits and durations. O(groups * w log w)."""
        groups: dict[Hashable, GroupBatchStats] = {}
        for key in self._records.keys() | self._groups.keys():
            record = self._records.get(key)
            open_batch = self._groups.get(key)
            groups[key] = GroupBatchStats(
                formed=record.formed if record else 0,
                mean_size=record.tasks / record.formed if record and record.formed else math.nan,
                wait=record.waits.percentiles() if record else _NO_SAMPLES,
                duration=record.durations.percentiles() if record else _NO_SAMPLES,
                pending=len(open_batch.tasks) if open_batch else 0,
                target_size=self.target_size(key),
            )
        formed = sum(self._by_reason.values())
        released_tasks = sum(record.tasks for record in self._records.values())
        return BatchStats(
            formed=formed,
            mean_size=released_tasks / formed if formed else math.nan,
            pending=len(self._pending),
            open_batches=len(self._groups),
            by_reason=dict(self._by_reason),
            groups=groups,
        )

    # -- persistence ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain data (see ``docs/persistence.md``): open batches
        with their tasks and due times, each group's learned target, statistics and
        limits, the counters. O(tasks held + groups * stats window).

        Raises:
            SnapshotError: a group key or task id that is not plain data.
        """
        from taskdist.batching import _persistence  # it reads this module's classes

        return _persistence.snapshot_of(self)

    def load_snapshot(self, data: object) -> None:
        """Take on the state :meth:`snapshot` wrote, into a new optimizer configured
        alike. O(size of the snapshot).

        Raises:
            SnapshotError: not such a snapshot, another configuration (named), or
                an optimizer that has seen tasks already (nothing changes).
        """
        self._prepare_snapshot(data, "batcher")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        from taskdist.batching import _persistence

        return _persistence.prepare(self, data, where)

    def __repr__(self) -> str:
        return (
            f"BatchOptimizer(pending={len(self._pending)}, open_batches={len(self._groups)}, "
            f"min_size={self._min_size}, max_size={self._max_size}, max_wait={self._max_wait!r})"
        )

    # -- internals --------------------------------------------------------

    def _open(self, key: Hashable, now: float) -> _OpenBatch:
        if self._limits:
            target = self._target_of(key)
            wait = self._wait_of(key)
        else:
            target = self._targets.get(key, self._initial_target)
            wait = self._max_wait
        batch = _OpenBatch(self._next_id, key, now, now + wait, target)
        self._next_id += 1
        self._groups[key] = batch
        return batch

    def _target_of(self, key: Hashable) -> int:
        """The group's target: learned, else where it starts; never above its max_size."""
        largest = self._largest(key)
        target = self._targets.get(key)
        if target is None:
            if self._sizing is None:
                return largest
            target = self._starts.get(key, self._initial_target)
        return min(target, largest)

    def _starts_for(self, limits: Mapping[Hashable, GroupLimits]) -> dict[Hashable, int]:
        """Where the targets of these groups start, for those with a ``max_size`` of their
        own under a sizing rule: the rule's ``initial()`` over the group's range."""
        sizing = self._sizing
        if sizing is None:
            return {}
        starts: dict[Hashable, int] = {}
        for key, group in limits.items():
            largest = group.max_size
            if largest is None:
                continue
            walking, self._walking = self._walking, True
            try:
                proposed = sizing.initial(self._min_size, largest)
            finally:
                self._walking = walking
            starts[key] = self._clamp(proposed, "sizing.initial()", largest)
        return starts

    def _largest(self, key: Hashable) -> int:
        """A group's ``max_size``: its own, else the default."""
        limits = self._limits.get(key)
        if limits is None or limits.max_size is None:
            return self._max_size
        return limits.max_size

    def _wait_of(self, key: Hashable) -> float:
        """A group's ``max_wait``: its own, else the default."""
        limits = self._limits.get(key)
        if limits is None or limits.max_wait is None:
            return self._max_wait
        return limits.max_wait

    def _check_limits(self, limits: object, name: str) -> GroupLimits:
        if not isinstance(limits, GroupLimits):
            raise InvalidTypeError(
                f"{name} must be a GroupLimits, got {type(limits).__name__} {limits!r}"
            )
        if limits.max_size is not None and limits.max_size < self._min_size:
            raise InvalidArgumentError(
                f"{name}: max_size must be >= min_size ({self._min_size}), got {limits.max_size}"
            )
        return limits

    def group_of(self, task: Task) -> Hashable:
        """The group ``task`` belongs to: ``key(task)``, or ``task.group`` by default.

        O(1) plus the key function.

        Raises:
            InvalidTypeError: ``task`` is not a Task; ``key(task)`` is unhashable.
            ReentrancyError: called from inside the ``key`` function or a sizing rule.
        """
        if self._walking:
            raise ReentrancyError(_reentered("group_of"))
        if not isinstance(task, Task):
            raise InvalidTypeError(f"group_of() takes a Task, got {type(task).__name__} {task!r}")
        return task.group if self._key is None else self._group_of(task)

    def _group_of(self, task: Task) -> Hashable:
        """``key(task)``, checked, with re-entry refused while it runs."""
        assert self._key is not None
        self._walking = True
        try:
            key = self._key(task)
        finally:
            self._walking = False
        return check_hashable(key, "key(task)")

    def _fits(self, batch: _OpenBatch, task: Task) -> bool:
        """Whether ``task`` can join ``batch`` without passing ``max_cost`` or ``max_resources``."""
        if self._max_cost is not None and batch.cost + task.cost > self._max_cost:
            return False
        if self._caps is not None:
            totals = batch.resources
            for resource, cap in self._caps.items():
                if totals.get(resource, 0.0) + task.resources.get(resource, 0.0) > cap:
                    return False
        return True

    def _charge(self, batch: _OpenBatch, task: Task) -> None:
        """Add ``task``'s cost and resources to ``batch``'s totals (in add order)."""
        batch.cost += task.cost
        if self._caps is not None:
            totals = batch.resources
            for resource, amount in task.resources.items():
                totals[resource] = totals.get(resource, 0.0) + amount

    def _check_fits_alone(self, task: Task) -> None:
        """Refuse a task that could never fit in any batch."""
        if self._max_cost is not None and task.cost > self._max_cost:
            raise InvalidArgumentError(
                f"task {task.id!r} has cost {task.cost!r}, more than max_cost "
                f"{self._max_cost!r}: it could never fit in a batch"
            )
        if self._caps is None:
            return
        for resource, cap in self._caps.items():
            amount = task.resources.get(resource, 0.0)
            if amount > cap:
                raise InvalidArgumentError(
                    f"task {task.id!r} needs {amount!r} of {resource!r}, more than "
                    f"max_resources[{resource!r}] = {cap!r}: it could never fit in a batch"
                )

    def _expiry_due(self, task: Task, since: float) -> float:
        """When ``task``'s TTL (counted from ``since``) or deadline forces its batch out."""
        due = _INF
        if task.ttl is not None:
            due = since + task.ttl - self._margin
        if task.deadline is not None:
            due = min(due, task.deadline - self._margin)
        return due

    def _recompute(self, batch: _OpenBatch) -> None:
        """Rebuild a batch's totals and due time from the tasks it still holds."""
        cost = 0.0
        totals: dict[str, float] = {}
        expiry = _INF
        for task, since in zip(batch.tasks, batch.since, strict=True):
            cost += task.cost  # in add order, as add() sums it
            for resource, amount in task.resources.items():
                totals[resource] = totals.get(resource, 0.0) + amount
            if task.ttl is not None or task.deadline is not None:
                expiry = min(expiry, self._expiry_due(task, since))
        batch.cost = cost
        batch.resources = totals
        batch.best = min(task.priority for task in batch.tasks)
        batch.expiry_due = expiry
        # A batch due at once by FULL or CRITICAL never gets here: it holds one task.
        due, reason = _INF, BatchReason.MAX_WAIT
        if expiry < due:
            due, reason = expiry, BatchReason.DEADLINE
        if batch.wait_due < due and (
            not self._below_min_hold or len(batch.tasks) >= self._min_size
        ):
            due, reason = batch.wait_due, BatchReason.MAX_WAIT
        if due != batch.due or reason != batch.reason:
            self._schedule(batch, due, reason)

    def _schedule(self, batch: _OpenBatch, due: float, reason: BatchReason) -> None:
        """Give ``batch`` a new due time; its previous heap entry becomes dead."""
        batch.due = due
        batch.reason = reason
        if due == _INF:
            self._unschedule(batch)
            return
        self._due.schedule(batch, due)
        self._wakeup_known = False

    def _unschedule(self, batch: _OpenBatch) -> None:
        """Drop ``batch``'s due time, if it has one; its heap entry becomes dead."""
        if self._scheduled.pop(batch, None) is not None:
            self._wakeup_known = False
            self._due.compact()

    def _release(self, batch: _OpenBatch, now: float, reason: BatchReason) -> Batch:
        key = batch.key
        del self._groups[key]
        self._unschedule(batch)
        tasks = batch.tasks
        pending = self._pending
        for task in tasks:
            del pending[task.id]
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _GroupRecord(self._stats_window)
        record.formed += 1
        record.tasks += len(tasks)
        # Straight into the window's deque: one C-level extend per batch, not a call per task.
        record.waits.extend([now - added for added in batch.added])
        self._by_reason[reason] += 1
        return Batch(batch.id, key, tuple(tasks), batch.created, now, reason)

    def _record_for(self, key: Hashable) -> _GroupRecord:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _GroupRecord(self._stats_window)
        return record

    def _clamp(self, size: object, source: str, largest: int | None = None) -> int:
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidTypeError(f"{source} must return an int batch size, got {size!r}")
        return min(self._max_size if largest is None else largest, max(self._min_size, size))


def _reentered(call: str) -> str:
    return (
        f"{call}() was called from inside the key function or a sizing rule of this "
        f"optimizer; they may look at it (len, in, stats, target_size) but not change it "
        f"(nothing changed)"
    )


def _urgency(batch: _OpenBatch) -> tuple[float, float, int]:
    """Most urgent first: best priority, then due time, then creation order."""
    return (batch.best, batch.due, batch.id)
