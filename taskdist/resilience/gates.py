"""Admission gates: what may hold a task back from dispatch, behind one protocol.

A distributor asks every gate ``try_acquire(task)`` before dispatching a task
and calls ``release(task)`` when it finishes. A :class:`QueryableGate` also
answers without side effects: ``can_acquire(task)`` (would it admit the task
now?) and ``check(task)`` (could it ever?). The adapters here are all
queryable, and read ``task.resources`` so that rate limiters and resource
pools gate dispatch:

- :class:`RateGate` / :class:`KeyedRateGate`: a :class:`RateLimiter` (one per
  key) charged ``task.resources[resource]``; tokens are spent, not returned.
- :class:`PoolGate`: a :class:`ResourcePool` holding ``task.resources[name]``
  units while the task runs.
- :class:`AllGates`: several gates, all or nothing.

A task that does not name a gate's resource passes it untouched (unless the
gate has a ``default`` demand). Every method that takes a task refuses
anything else with :class:`~taskdist.errors.InvalidTypeError`, changing
nothing.

**Threads.** No gate here is safe to share between threads: a host with
threads drives them through ``taskdist.threaded.ThreadSafeDistributor`` (one
lock around the whole composition) or holds its own lock around every call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from functools import partial
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar, runtime_checkable

from taskdist._call_all import call_all
from taskdist._snapshot import (
    check_header,
    decode_key,
    encode_key,
    header,
    prepare_load,
    refuse,
    snapshot_part,
)
from taskdist._validate import check_number
from taskdist.errors import (
    DuplicateTaskError,
    InvalidArgumentError,
    InvalidTypeError,
    OverReleaseError,
    UnsatisfiableDemandError,
)
from taskdist.resilience.bulkhead import ResourcePool, _exact, _exact_read
from taskdist.resilience.rate_limit import KeyedRateLimiter, RateLimiter
from taskdist.task import Task

__all__ = [
    "AllGates",
    "Gate",
    "KeyedRateGate",
    "PoolGate",
    "QueryableGate",
    "RateGate",
    "ReversibleGate",
]


@runtime_checkable
class Gate(Protocol):
    """Anything that can hold a task back from dispatch.

    - ``try_acquire(task) -> bool``: admit the task now, taking what it needs,
      or refuse it and change nothing. All or nothing.
    - ``release(task)``: the admitted task finished (completed, failed,
      requeued); give back whatever is returned on completion.
    - ``next_wakeup() -> float | None``: the earliest clock time at which a
      task this gate refused may pass, so a host knows when to try again; a
      past time means now. ``None`` when no refusal waits on time (a pool's
      refusals wait on a release, not a clock).

    These three are all a gate needs. A gate that can also answer without
    side effects is a :class:`QueryableGate` (``can_acquire``, ``check``);
    a composition asks one of those inside a ``where=`` predicate, and
    falls back to ``try_acquire`` and an undo for a gate that is not.
    """

    def try_acquire(self, task: Task) -> bool: ...

    def release(self, task: Task) -> None: ...

    def next_wakeup(self) -> float | None: ...


@runtime_checkable
class QueryableGate(Gate, Protocol):
    """A gate that can be asked without side effects.

    - ``can_acquire(task) -> bool``: True exactly when ``try_acquire(task)``
      would return True now. It changes nothing, not even what
      ``next_wakeup`` reports, so it is safe inside a ``where=`` predicate.
      A task that ``try_acquire`` would refuse with an error (a demand that
      could never pass, a task already admitted) gets False.
    - ``check(task) -> None``: raise
      :class:`~taskdist.errors.UnsatisfiableDemandError` when the task's
      demand could never pass however long it waited (more than a limiter's
      burst, more than a pool's size), with a message that names the
      resource, the demand and the limit; otherwise return. A composition
      checks at submit, so such a task is refused (or dead-lettered as
      ``rejected``) at once rather than kept waiting for ever.

    Every gate here also has ``check_together(tasks)``, which the protocol
    does not require: it raises the same error when tasks that must pass at
    one moment (a gang's members) could never all pass, their demands
    adding up to more than a limit; the Distributor asks it, when a gate
    has it, as each gang member arrives.

    Every gate in this module is queryable, each query O(1) (O(g) for
    :class:`AllGates` of g gates).
    """

    def can_acquire(self, task: Task) -> bool: ...

    def check(self, task: Task) -> None: ...


@runtime_checkable
class ReversibleGate(Gate, Protocol):
    """A gate that can undo an admission exactly: ``rollback(task)`` right after a
    ``try_acquire(task)`` that returned ``True`` puts the gate back as it was.

    :class:`AllGates` rolls back with it; a gate without it is rolled back
    with ``release``. Every gate in this module is reversible.
    """

    def rollback(self, task: Task) -> None: ...


def _resource_name(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidTypeError(f"resource must be a resource name (str), got {value!r}")
    if not value:
        raise InvalidArgumentError("resource must be a non-empty resource name, got ''")
    return value


def _check_run(tasks: object, method: str = "rollback_run") -> None:
    """Refuse what is not a sequence of Tasks before anything is read or changed."""
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
        raise InvalidTypeError(f"{method}() takes a sequence of Tasks, got {tasks!r}")
    for task in tasks:
        _check_task(task, method)


def _named(tasks: Sequence[Task]) -> str:
    """Tasks by id, for a message: the first few and how many in all."""
    shown = ", ".join(repr(task.id) for task in tasks[:4])
    return f"tasks {shown}" + (f" and {len(tasks) - 4} more" if len(tasks) > 4 else "")


# Sums of demands within this (relative) of a limit are let through: float rounding
# must not refuse a gang that the limiter, spending member by member, would admit.
_TOGETHER_TOLERANCE: Final = 1e-9


def _check_task(task: object, method: str) -> None:
    """Refuse what is not a Task before anything is read or changed."""
    if task.__class__ is not Task and not isinstance(task, Task):
        raise InvalidTypeError(f"{method}() takes a Task, got {type(task).__name__} {task!r}")


_Limiter = TypeVar("_Limiter", RateLimiter, KeyedRateLimiter)


class _SpendingGate(Generic[_Limiter]):
    """What rate gates share: demand from ``task.resources``, wakeups after refusals,
    and a snapshot of the limiter, the wakeup and the task that may be rolled back.

    Rolling back refunds the units to the limiter; only the task admitted
    last can be rolled back (a rollback is an undo, not a general refund).
    A subclass says how to spend, query, refund and date a demand, and names
    its snapshot's ``kind``.
    """

    __slots__ = ("_burst", "_default", "_last", "_limiter", "_now", "_resource", "_wake")

    _KIND: ClassVar[str]

    def __init__(self, resource: str, default: float, limiter: _Limiter) -> None:
        self._resource = _resource_name(resource)
        self._default = check_number(default, "default", minimum=0.0)
        self._limiter: _Limiter = limiter
        self._burst = limiter.burst
        self._now = limiter.clock.now
        self._wake: float | None = None
        self._last: Hashable | None = None

    @property
    def resource(self) -> str:
        """The ``task.resources`` entry this gate charges."""
        return self._resource

    @property
    def limiter(self) -> _Limiter:
        """The limiter this gate charges."""
        return self._limiter

    def demand(self, task: Task) -> float:
        """Units this gate charges ``task``: ``task.resources[resource]`` or the default. O(1)."""
        _check_task(task, "demand")
        return task.resources.get(self._resource, self._default)

    def try_acquire(self, task: Task) -> bool:
        """Spend the task's demand if the limiter admits it now; all or nothing. O(1).

        Raises:
            UnsatisfiableDemandError: the demand exceeds the limiter's ``burst``
                (it could never pass); nothing changes.
        """
        _check_task(task, "try_acquire")
        amount = self._satisfiable(task)
        admitted = not amount or self._spend(task, amount)  # may raise: nothing changed yet
        if self._wake is not None and self._now() >= self._wake:
            self._wake = None  # the host came back as asked
        if admitted:
            if amount:
                self._last = task.id
            return True
        ready = self._ready_at(task, amount)
        if self._wake is None or ready < self._wake:
            self._wake = ready
        return False

    def can_acquire(self, task: Task) -> bool:
        """Whether :meth:`try_acquire` would admit ``task`` now; changes nothing. O(1).

        False for a demand above ``burst`` (see :meth:`check`).
        """
        _check_task(task, "can_acquire")
        amount = task.resources.get(self._resource, self._default)
        if not amount:
            return True
        return amount <= self._burst and self._can_spend(task, amount)

    def check(self, task: Task) -> None:
        """Return if ``task``'s demand could ever pass; changes nothing. O(1).

        Raises:
            UnsatisfiableDemandError: the demand exceeds the limiter's ``burst``.
        """
        _check_task(task, "check")
        self._satisfiable(task)

    def check_together(self, tasks: Sequence[Task]) -> None:
        """Return if ``tasks`` could ever pass at one moment, as a gang's members must;
        changes nothing. O(k) (each alone is :meth:`check`'s).

        Raises:
            InvalidTypeError: ``tasks`` is not a sequence of Tasks.
            UnsatisfiableDemandError: their demands on one bucket add up to more
                than the limiter's ``burst``.
        """
        _check_run(tasks, "check_together")
        charged: dict[Hashable, list[float]] = {}
        for task in tasks:
            amount = task.resources.get(self._resource, self._default)
            if amount:
                charged.setdefault(self._bucket(task), []).append(amount)
        for bucket, amounts in charged.items():
            total = math.fsum(amounts)
            if total > self._burst * (1.0 + _TOGETHER_TOLERANCE):
                raise UnsatisfiableDemandError(
                    f"{_named(tasks)} demand {total:g} {self._resource!r} together"
                    f"{self._bucket_words(bucket)}, more than the rate limit's burst of "
                    f"{self._burst:g}: they could never pass at once"
                )

    def _bucket(self, task: Task) -> Hashable:
        """The bucket ``task`` draws from (one for a plain limiter)."""
        return None

    def _bucket_words(self, bucket: Hashable) -> str:
        return ""

    def release(self, task: Task) -> None:
        """Nothing: spent units come back with time, not on completion. O(1).

        Raises:
            InvalidTypeError: ``task`` is not a Task.
        """
        _check_task(task, "release")

    def rollback(self, task: Task) -> None:
        """Refund what the ``try_acquire(task)`` just made spent. O(1).

        Raises:
            OverReleaseError: ``task`` is not the task this gate admitted last.
        """
        _check_task(task, "rollback")
        amount = task.resources.get(self._resource, self._default)
        if not amount:
            return
        if self._last is None or self._last != task.id:
            raise OverReleaseError(
                f"rollback({task.id!r}) undoes only the admission just made "
                f"(last admitted: {self._last!r})"
            )
        self._last = None
        self._refund(task, amount)

    def rollback_run(self, tasks: Sequence[Task]) -> None:
        """Refund what ``try_acquire`` spent on each of ``tasks``: admissions made one
        after another just now, the last admitted last (a gang admitted member by
        member). The last of them that this gate charged must be the task it admitted
        last, or that admission was rolled back since (the next member passed this
        gate and another refused it); the caller vouches for the ones before. O(k).

        Raises:
            InvalidTypeError: ``tasks`` is not a sequence of Tasks.
            OverReleaseError: the gate admitted another task after the last charged
                (nothing changes).
        """
        _check_run(tasks)
        charged = [t for t in tasks if t.resources.get(self._resource, self._default)]
        if not charged:
            return
        if self._last is not None and self._last != charged[-1].id:
            raise OverReleaseError(
                f"rollback_run() undoes a run of admissions ending with the one just made "
                f"(last admitted: {self._last!r}, run ending with {charged[-1].id!r})"
            )
        self._last = None
        for task in reversed(charged):
            self._refund(task, task.resources.get(self._resource, self._default))

    def next_wakeup(self) -> float | None:
        """When the soonest refused task could pass (possibly past), or ``None``.

        It stays until the next ``try_acquire`` at or after it. O(1).
        """
        return self._wake

    def snapshot(self) -> dict[str, Any]:
        """Its limiter's schedule (each key's, for a keyed limiter), its wakeup and the
        task it may roll back, as plain data. O(1), O(k) for k keys held. See
        ``docs/persistence.md``.

        Raises:
            SnapshotError: a task id or key that is not plain data.
        """
        return {
            **header(self._KIND),
            "resource": self._resource,
            "limiter": self._limiter.snapshot(),
            "wake": self._wake,
            "last": encode_key(self._last, "a task id"),
        }

    def load_snapshot(self, data: object) -> None:
        """Take on what :meth:`snapshot` wrote, into a gate configured alike. O(1), O(k).

        Raises:
            SnapshotError: not such a snapshot, or another configuration (nothing changes).
        """
        self._prepare_snapshot(data, "gate")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, self._KIND, where)
        if fields.text("resource") != self._resource:
            refuse(f"{where}.resource", f"is not {self._resource!r}")
        load_limiter = self._limiter._prepare_snapshot(fields.value("limiter"), f"{where}.limiter")
        wake = fields.opt_number("wake")
        last = fields.key("last")
        fields.done()

        def load() -> None:
            load_limiter()
            self._wake, self._last = wake, last

        return load

    def _satisfiable(self, task: Task) -> float:
        """The task's demand, or UnsatisfiableDemandError if it is above ``burst``."""
        amount = task.resources.get(self._resource, self._default)
        if amount > self._burst:
            raise UnsatisfiableDemandError(
                f"task {task.id!r} demands {amount:g} {self._resource!r}, more than the "
                f"rate limit's burst of {self._burst:g}: it could never pass"
            )
        return amount

    def _refuses_until(self, task: Task) -> float | None:
        """When this gate would admit ``task`` if nothing more were spent (its limiter's
        ``ready_at``), or ``None`` when it would admit it now or cannot say (no demand,
        one above ``burst``, a key the limiter refuses). O(1)."""
        amount = task.resources.get(self._resource, self._default)
        if not amount or amount > self._burst or self._can_spend(task, amount):
            return None
        try:
            return self._ready_at(task, amount)
        except (InvalidArgumentError, InvalidTypeError):  # a key check() refuses
            return None

    def _spend(self, task: Task, amount: float) -> bool:
        raise NotImplementedError

    def _can_spend(self, task: Task, amount: float) -> bool:
        raise NotImplementedError

    def _ready_at(self, task: Task, amount: float) -> float:
        raise NotImplementedError

    def _refund(self, task: Task, amount: float) -> None:
        raise NotImplementedError


class RateGate(_SpendingGate[RateLimiter]):
    """Gate dispatch on a :class:`RateLimiter` charged ``task.resources[resource]``.

    ``RateGate(RateLimiter(100, per=60.0, burst=10), "api_calls")`` admits a
    task while the limiter has its ``api_calls`` units; a task that does not
    name ``api_calls`` passes untouched (``default=1`` charges it one unit
    instead). Releasing is a no-op: the units are spent. Several limits on
    one task, all or nothing: ``AllGates([RateGate(requests, "api_calls",
    default=1), RateGate(tokens, "llm_tokens")])``. A :class:`QueryableGate`.

    Every operation is O(1).

    >>> from taskdist import ManualClock, Task
    >>> clock = ManualClock()
    >>> api = RateGate(RateLimiter(100, per=60.0, burst=2, clock=clock), "api_calls")
    >>> call = {"api_calls": 1}
    >>> [api.try_acquire(Task(i, resources=call)) for i in "abc"]
    [True, True, False]
    >>> api.can_acquire(Task("d", resources=call)), api.can_acquire(Task("local"))
    (False, True)
    >>> api.try_acquire(Task("local")), api.next_wakeup()
    (True, 0.6)
    """

    __slots__ = ()

    _KIND = "RateGate"

    def __init__(self, limiter: RateLimiter, resource: str, *, default: float = 0.0) -> None:
        """
        Args:
            limiter: the limiter to charge.
            resource: the ``task.resources`` entry to charge it (non-empty str).
            default: units charged to a task that does not name ``resource``
                (>= 0; 0 lets it pass untouched).

        Raises:
            InvalidTypeError: ``limiter`` not a RateLimiter, ``resource`` not a str.
            InvalidArgumentError: ``default`` < 0, NaN or infinite.
        """
        if not isinstance(limiter, RateLimiter):
            raise InvalidTypeError(
                f"limiter must be a RateLimiter, got {type(limiter).__name__}"
                " (use KeyedRateGate for a KeyedRateLimiter)"
            )
        super().__init__(resource, default, limiter)

    def __repr__(self) -> str:
        return f"RateGate({self._limiter!r}, {self._resource!r})"

    def _spend(self, task: Task, amount: float) -> bool:
        return self._limiter.try_acquire(amount)

    def _can_spend(self, task: Task, amount: float) -> bool:
        return self._limiter.can_acquire(amount)

    def _ready_at(self, task: Task, amount: float) -> float:
        return self._limiter.ready_at(amount)

    def _refund(self, task: Task, amount: float) -> None:
        self._limiter.refund(amount)


def _tenant(task: Task) -> Hashable:
    return task.tenant


class KeyedRateGate(_SpendingGate[KeyedRateLimiter]):
    """Gate dispatch on a :class:`KeyedRateLimiter`: one bucket per ``key(task)``.

    By default the key is ``task.tenant`` (tasks without a tenant share the
    ``None`` bucket): ``KeyedRateGate(KeyedRateLimiter(10, per=60.0),
    "api_calls")`` gives every tenant its own 10 calls per minute. A
    :class:`QueryableGate`. A key the limiter refuses (NaN, unhashable) makes
    ``try_acquire`` and ``check`` raise, and ``can_acquire`` answer False.
    :meth:`snapshot` carries every bucket the limiter holds; its keys must be
    plain data, as task ids are.

    Every operation is O(1) amortised (a snapshot O(k) for k keys held).
    """

    __slots__ = ("_key",)

    _KIND = "KeyedRateGate"

    def __init__(
        self,
        limiter: KeyedRateLimiter,
        resource: str,
        *,
        key: Callable[[Task], Hashable] = _tenant,
        default: float = 0.0,
    ) -> None:
        """
        Args:
            limiter: the keyed limiter to charge.
            resource: the ``task.resources`` entry to charge it.
            key: which bucket a task draws from (default: its tenant).
            default: units charged to a task that does not name ``resource``.

        Raises:
            InvalidTypeError: ``limiter`` not a KeyedRateLimiter, ``key`` not
                callable, ``resource`` not a str.
            InvalidArgumentError: ``default`` < 0, NaN or infinite.
        """
        if not isinstance(limiter, KeyedRateLimiter):
            raise InvalidTypeError(
                f"limiter must be a KeyedRateLimiter, got {type(limiter).__name__}"
            )
        if not callable(key):
            raise InvalidTypeError(f"key must be a function of the task, got {key!r}")
        super().__init__(resource, default, limiter)
        self._key = key

    def __repr__(self) -> str:
        return f"KeyedRateGate({self._limiter!r}, {self._resource!r})"

    def key_of(self, task: Task) -> Hashable:
        """The bucket ``task`` draws from: ``key(task)``. Changes nothing. O(1) (the key
        function's cost)."""
        _check_task(task, "key_of")
        return self._key(task)

    def check(self, task: Task) -> None:
        """Return if ``task`` could ever pass; changes nothing. O(1).

        Raises:
            UnsatisfiableDemandError: the demand exceeds the limiter's ``burst``.
            InvalidArgumentError: ``key(task)`` is NaN (each NaN is a key of its own).
            InvalidTypeError: ``key(task)`` is unhashable.
        """
        super().check(task)
        if task.resources.get(self._resource, self._default):
            self._limiter.check_key(self._key(task))

    def _bucket(self, task: Task) -> Hashable:
        key = self._key(task)
        self._limiter.check_key(key)
        return key

    def _bucket_words(self, bucket: Hashable) -> str:
        return f" from the bucket of key {bucket!r}"

    def _spend(self, task: Task, amount: float) -> bool:
        return self._limiter.try_acquire(self._key(task), amount)

    def _can_spend(self, task: Task, amount: float) -> bool:
        key = self._key(task)
        try:
            return self._limiter.can_acquire(key, amount)
        except (InvalidArgumentError, InvalidTypeError):  # a key check() refuses
            return False

    def _ready_at(self, task: Task, amount: float) -> float:
        return self._limiter.ready_at(self._key(task), amount)

    def _refund(self, task: Task, amount: float) -> None:
        self._limiter.refund(self._key(task), amount)


class PoolGate:
    """Gate dispatch on a :class:`ResourcePool`: a task holds ``task.resources[name]``
    units from admission until ``release(task)``.

    ``PoolGate(ResourcePool("db", size=20))`` keeps at most 20 ``db`` units
    in use by running tasks; ``PoolGate(ResourcePool("workflows", 10),
    default=1)`` caps concurrency at 10 tasks whatever they name. The gate
    remembers what each admitted task holds, so releasing a task twice, or
    one it never admitted, raises
    :class:`~taskdist.errors.OverReleaseError` instead of freeing someone
    else's units; admitting a task it already holds raises
    :class:`~taskdist.errors.DuplicateTaskError`. A :class:`QueryableGate`.

    Every operation is O(1).

    >>> from taskdist import Task
    >>> gate = PoolGate(ResourcePool("db", size=2))
    >>> a, b = Task("a", resources={"db": 2}), Task("b", resources={"db": 1})
    >>> gate.try_acquire(a), gate.try_acquire(b)
    (True, False)
    >>> gate.can_acquire(b)
    False
    >>> gate.release(a)
    >>> gate.can_acquire(b), gate.try_acquire(b), gate.pool.in_use
    (True, True, 1.0)
    """

    __slots__ = ("_default", "_held", "_pool", "_resource")

    def __init__(
        self, pool: ResourcePool, resource: str | None = None, *, default: float = 0.0
    ) -> None:
        """
        Args:
            pool: the pool to hold units of.
            resource: the ``task.resources`` entry to read (default: ``pool.name``).
            default: units held by a task that does not name ``resource``
                (>= 0; 0 lets it pass untouched).

        Raises:
            InvalidTypeError: ``pool`` not a ResourcePool, ``resource`` not a str.
            InvalidArgumentError: ``default`` < 0, NaN or infinite.
        """
        if not isinstance(pool, ResourcePool):
            raise InvalidTypeError(f"pool must be a ResourcePool, got {type(pool).__name__}")
        self._pool = pool
        self._resource = pool.name if resource is None else _resource_name(resource)
        self._default = check_number(default, "default", minimum=0.0)
        self._held: dict[Hashable, float] = {}

    @property
    def pool(self) -> ResourcePool:
        """The pool this gate holds units of."""
        return self._pool

    @property
    def resource(self) -> str:
        """The ``task.resources`` entry this gate reads."""
        return self._resource

    def demand(self, task: Task) -> float:
        """Units ``task`` holds while it runs. O(1)."""
        _check_task(task, "demand")
        return task.resources.get(self._resource, self._default)

    def holds(self, task_id: Hashable) -> bool:
        """Whether a task with this id holds units now (never an unhashable one). O(1)."""
        try:
            return task_id in self._held
        except TypeError:
            return False

    def try_acquire(self, task: Task) -> bool:
        """Take the task's units if free; all or nothing. O(1).

        Raises:
            DuplicateTaskError: this task already holds units here.
            UnsatisfiableDemandError: the demand exceeds the pool's size.
        """
        _check_task(task, "try_acquire")
        amount = self._satisfiable(task)
        if not amount:
            return True
        if task.id in self._held:
            raise DuplicateTaskError(
                f"task {task.id!r} already holds {self._held[task.id]:g} units "
                f"of pool {self._pool.name!r}"
            )
        if self._pool.try_acquire(amount):
            self._held[task.id] = amount
            return True
        return False

    def can_acquire(self, task: Task) -> bool:
        """Whether :meth:`try_acquire` would admit ``task`` now; changes nothing. O(1).

        False for a task that already holds units here, or a demand above
        the pool's size (see :meth:`check`).
        """
        _check_task(task, "can_acquire")
        amount = task.resources.get(self._resource, self._default)
        if not amount:
            return True
        pool = self._pool
        return amount <= pool.size and task.id not in self._held and pool.can_acquire(amount)

    def check(self, task: Task) -> None:
        """Return if ``task``'s demand could ever be met; changes nothing. O(1).

        Raises:
            UnsatisfiableDemandError: the demand exceeds the pool's size.
        """
        _check_task(task, "check")
        self._satisfiable(task)

    def check_together(self, tasks: Sequence[Task]) -> None:
        """Return if ``tasks`` could ever hold their units at once, as a gang's members
        must; changes nothing. O(k).

        Raises:
            InvalidTypeError: ``tasks`` is not a sequence of Tasks.
            UnsatisfiableDemandError: their demands add up to more than the pool's size.
        """
        _check_run(tasks, "check_together")
        total = math.fsum(task.resources.get(self._resource, self._default) for task in tasks)
        size = self._pool.size
        if total > size * (1.0 + _TOGETHER_TOLERANCE):
            raise UnsatisfiableDemandError(
                f"{_named(tasks)} demand {total:g} {self._resource!r} together, more than "
                f"pool {self._pool.name!r} holds ({size:g}): they could never run at once"
            )

    def _satisfiable(self, task: Task) -> float:
        """The task's demand, or UnsatisfiableDemandError if it is above the pool's size."""
        amount = task.resources.get(self._resource, self._default)
        if amount > self._pool.size:
            raise UnsatisfiableDemandError(
                f"task {task.id!r} demands {amount:g} {self._resource!r}, more than "
                f"pool {self._pool.name!r} holds ({self._pool.size:g}): it could never be met"
            )
        return amount

    def release(self, task: Task) -> None:
        """Give back the units ``task`` holds (nothing if it needs none). O(1).

        Raises:
            OverReleaseError: ``task`` needs units but holds none here (never
                admitted, or already released); nothing changes.
        """
        _check_task(task, "release")
        amount = self._held.pop(task.id, None)
        if amount is None:
            if task.resources.get(self._resource, self._default):
                raise OverReleaseError(
                    f"task {task.id!r} holds no units of pool {self._pool.name!r}"
                )
            return
        self._pool.release(amount)

    rollback = release

    def next_wakeup(self) -> float | None:
        """Always ``None``: a pool frees units on release, not with time. O(1)."""
        return None

    def snapshot(self) -> dict[str, Any]:
        """Its pool and the units each admitted task holds, as plain data. O(held).
        See ``docs/persistence.md``."""
        return {
            **header("PoolGate"),
            "resource": self._resource,
            "pool": self._pool.snapshot(),
            "held": [[encode_key(k, "a task id"), units] for k, units in self._held.items()],
        }

    def load_snapshot(self, data: object) -> None:
        """Take on what :meth:`snapshot` wrote, into a new gate configured alike. O(held).

        Raises:
            SnapshotError: not such a snapshot, another configuration, or a gate
                that holds units (nothing changes).
        """
        self._prepare_snapshot(data, "gate")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "PoolGate", where)
        if self._held:
            refuse(where, "can be loaded only into a PoolGate that holds nothing")
        if fields.text("resource") != self._resource:
            refuse(f"{where}.resource", f"is not {self._resource!r}")
        pool = fields.value("pool")
        load_pool = self._pool._prepare_snapshot(pool, f"{where}.pool")
        held: dict[Hashable, float] = {}
        for task_id, units in fields.pairs("held"):
            if type(units) not in (int, float) or not 0 < units <= self._pool.size:
                refuse(f"{where}.held", f"gives {task_id!r} {units!r} units")
            held[task_id] = float(units)
        fields.done()
        in_use = _exact_read(pool["in_use"])  # (checked by the pool's prepare)
        assert in_use is not None
        holding = sum(_exact(units) for units in held.values())
        if holding > in_use:
            refuse(
                f"{where}.held",
                f"holds {float(holding):g} units, more than the {float(in_use):g} "
                "its pool has in use",
            )

        def load() -> None:
            load_pool()
            self._held.update(held)

        return load

    def __repr__(self) -> str:
        return f"PoolGate({self._pool!r}, {self._resource!r})"


class AllGates:
    """Several gates as one, all or nothing.

    ``try_acquire`` asks each gate in order; if one refuses (or raises), the
    gates that had admitted the task are rolled back in reverse order
    (``rollback`` where the gate has it, else ``release``) and the task is
    refused with every gate as it was. ``release`` releases every gate.
    ``next_wakeup`` is the soonest of the gates' (a refused task waits on the
    gate that refused it).

    It is itself a :class:`ReversibleGate` and a :class:`QueryableGate`, so
    groups nest. ``can_acquire`` asks each queryable gate's ``can_acquire``;
    only if they all say yes are the gates that are not queryable asked
    with ``try_acquire`` and undone at once (the one case in which it
    touches anything: what such a gate's undo leaves). ``check`` asks each
    queryable gate's ``check``. The gates must draw on separate limiters and
    pools, so that one's answer does not depend on another's: the same
    gate, limiter or pool given twice (also through a nested ``AllGates``)
    is refused at construction. A user gate without ``rollback`` must make
    ``release`` give back what ``try_acquire`` took; if it does not,
    rolling it back only under-admits.

    Every operation is O(g) for g gates, plus theirs.

    >>> from taskdist import ManualClock, Task
    >>> clock = ManualClock()
    >>> requests = RateLimiter(100, per=60.0, burst=10, clock=clock)
    >>> tokens = RateLimiter(40_000, per=60.0, clock=clock)
    >>> gates = AllGates([
    ...     RateGate(requests, "api_calls", default=1),
    ...     RateGate(tokens, "llm_tokens"),
    ... ])
    >>> gates.try_acquire(Task("a", resources={"llm_tokens": 30_000}))
    True
    >>> gates.can_acquire(Task("b", resources={"llm_tokens": 30_000}))
    False
    >>> gates.try_acquire(Task("b", resources={"llm_tokens": 30_000}))
    False
    >>> requests.available()   # b's request was refunded
    9.0
    """

    __slots__ = ("_checks", "_gates", "_held", "_plain", "_queries", "_undo")

    def __init__(self, gates: Iterable[Gate]) -> None:
        """
        Args:
            gates: the gates, asked in this order (cheap or scarce ones first).

        Raises:
            InvalidTypeError: an element is not a :class:`Gate`.
            InvalidArgumentError: the same gate, limiter or pool twice.
        """
        if isinstance(gates, (str, bytes)) or not isinstance(gates, Iterable):
            raise InvalidTypeError(f"gates must be an iterable of Gate, got {gates!r}")
        listed = list(gates)
        for gate in listed:
            if not isinstance(gate, Gate):
                raise InvalidTypeError(
                    f"gates must hold Gate objects (try_acquire, release, next_wakeup), "
                    f"got {type(gate).__name__}"
                )
        _refuse_shared(listed)
        self._gates = tuple(listed)
        self._undo = tuple(
            gate.rollback if isinstance(gate, ReversibleGate) else gate.release for gate in listed
        )
        queryable = [gate for gate in listed if isinstance(gate, QueryableGate)]
        self._queries = tuple(gate.can_acquire for gate in queryable)
        self._checks = tuple(gate.check for gate in queryable)
        # The gates that can only be asked by admitting and undoing, with their undo.
        self._plain = tuple(
            (gate.try_acquire, undo)
            for gate, undo in zip(listed, self._undo, strict=True)
            if not isinstance(gate, QueryableGate)
        )
        self._held: set[Hashable] = set()

    @property
    def gates(self) -> tuple[Gate, ...]:
        """The gates, in the order they are asked."""
        return self._gates

    def try_acquire(self, task: Task) -> bool:
        """Admit ``task`` through every gate, or through none. O(g).

        Raises:
            DuplicateTaskError: this task is already admitted here.
            Whatever a gate raises, after rolling back the gates before it.
        """
        _check_task(task, "try_acquire")
        if task.id in self._held:
            raise DuplicateTaskError(f"task {task.id!r} is already admitted by these gates")
        admitted = 0
        try:
            for gate in self._gates:
                if not gate.try_acquire(task):
                    break
                admitted += 1
            else:
                self._held.add(task.id)
                return True
        except BaseException:
            self._undo_first(admitted, task)
            raise
        self._undo_first(admitted, task)
        return False

    def can_acquire(self, task: Task) -> bool:
        """Whether :meth:`try_acquire` would admit ``task`` now. O(g).

        Changes nothing when every gate is queryable. False for a task
        already admitted here, or one a gate would refuse with an error.
        """
        _check_task(task, "can_acquire")
        if task.id in self._held:
            return False
        for can_acquire in self._queries:
            if not can_acquire(task):
                return False
        return not self._plain or self._probe(task)

    def check(self, task: Task) -> None:
        """Return if every queryable gate could ever admit ``task``; changes nothing. O(g).

        Raises:
            UnsatisfiableDemandError: a gate's limit is below the task's demand.
        """
        _check_task(task, "check")
        for check in self._checks:
            check(task)

    def check_together(self, tasks: Sequence[Task]) -> None:
        """Return if every gate that can tell (has ``check_together``) could ever admit
        ``tasks`` at one moment, as a gang's members must; changes nothing. O(g k).

        Raises:
            InvalidTypeError: ``tasks`` is not a sequence of Tasks.
            UnsatisfiableDemandError: a gate's limit is below their summed demand.
        """
        _check_run(tasks, "check_together")
        for gate in self._gates:
            check_together = getattr(gate, "check_together", None)
            if check_together is not None:
                check_together(tasks)

    def release(self, task: Task) -> None:
        """Release ``task`` from every gate, last first. O(g).

        Every gate is released even if one's ``release`` raises (a user gate's):
        the first error is raised after the others are released.

        Raises:
            OverReleaseError: ``task`` is not admitted here (nothing changes).
        """
        _check_task(task, "release")
        self._forget(task)
        # call_all, inline: the hot path of every lease's end builds no partials.
        failed: BaseException | None = None
        for gate in reversed(self._gates):
            try:
                gate.release(task)
            except BaseException as error:
                if failed is None:
                    failed = error
        if failed is not None:
            raise failed

    def rollback(self, task: Task) -> None:
        """Undo the admission of ``task`` in every gate, last first. O(g).

        Raises:
            OverReleaseError: ``task`` is not admitted here (nothing changes).
        """
        _check_task(task, "rollback")
        self._forget(task)
        self._undo_first(len(self._gates), task)

    def rollback_run(self, tasks: Sequence[Task]) -> None:
        """Undo the admissions of ``tasks``, made one after another just now (the last
        admitted last), in every gate, last first: a gang admitted member by member
        and refused a later member. A rate gate undoes only the admission just made
        with ``rollback``; this undoes the whole run. O(g k) for k tasks.

        Raises:
            InvalidTypeError: an element is not a Task.
            OverReleaseError: one of them is not admitted here (nothing changes).
            Whatever a gate's undo raises (a user gate's), once every gate is undone.
        """
        _check_run(tasks)
        missing = [task.id for task in tasks if task.id not in self._held]
        if missing or len({task.id for task in tasks}) != len(tasks):
            raise OverReleaseError(
                f"rollback_run() undoes tasks admitted here, each once; not admitted: {missing!r}"
            )
        for task in tasks:
            self._held.discard(task.id)
        # Every gate is undone even if one's undo raises (a user gate's): the first error
        # is raised after, so no gate keeps what the run was admitted with.
        undos: list[Callable[[], object]] = []
        for gate, undo in zip(reversed(self._gates), reversed(self._undo), strict=True):
            run = getattr(gate, "rollback_run", None)
            if run is not None:
                undos.append(partial(run, tasks))
            else:
                undos.extend(partial(undo, task) for task in reversed(tasks))
        call_all(undos)

    def next_wakeup(self) -> float | None:
        """The soonest of the gates' wakeups, or ``None``. O(g)."""
        times = [t for gate in self._gates if (t := gate.next_wakeup()) is not None]
        return min(times) if times else None

    def snapshot(self) -> dict[str, Any]:
        """The tasks admitted and every gate's snapshot, as plain data. O(g + held).

        Raises:
            SnapshotError: a gate without snapshot support (named).
        """
        return {
            **header("AllGates"),
            "held": sorted((encode_key(k, "a task id") for k in self._held), key=repr),
            "gates": [snapshot_part(gate, "these gates") for gate in self._gates],
        }

    def load_snapshot(self, data: object) -> None:
        """Take on what :meth:`snapshot` wrote, into new gates configured alike. O(g + held).

        Raises:
            SnapshotError: not such a snapshot, other gates, or gates holding tasks.
        """
        self._prepare_snapshot(data, "gates")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "AllGates", where)
        if self._held:
            refuse(where, "can be loaded only into gates that hold nothing")
        held = {decode_key(k, f"{where}.held") for k in fields.items("held")}
        parts = fields.items("gates")
        if len(parts) != len(self._gates):
            refuse(f"{where}.gates", f"has {len(parts)} gates; these gates are {len(self._gates)}")
        loads = [
            prepare_load(gate, part, f"{where}.gates[{i}]")
            for i, (gate, part) in enumerate(zip(self._gates, parts, strict=True))
        ]
        fields.done()

        def load() -> None:
            for load_gate in loads:
                load_gate()
            self._held.update(held)

        return load

    def __len__(self) -> int:
        """Tasks admitted and not yet released."""
        return len(self._held)

    def __repr__(self) -> str:
        return f"AllGates({list(self._gates)!r})"

    def _forget(self, task: Task) -> None:
        try:
            self._held.remove(task.id)
        except KeyError:
            raise OverReleaseError(f"task {task.id!r} is not admitted by these gates") from None

    def _undo_first(self, count: int, task: Task) -> None:
        # Every gate is undone even if one's undo raises: no gate keeps what the task
        # was admitted with.
        call_all([partial(undo, task) for undo in reversed(self._undo[:count])])

    def _probe(self, task: Task) -> bool:
        """Ask the gates that are not queryable: admit through each, then undo them all
        (every one even if an undo raises, a user gate's: the first error is raised
        after, so no gate keeps what the probe took)."""
        undos: list[Callable[[Task], None]] = []
        try:
            for try_acquire, undo in self._plain:
                if not try_acquire(task):
                    return False
                undos.append(undo)
            return True
        finally:
            call_all([partial(undone, task) for undone in reversed(undos)])


def _drawn_on(gate: Gate) -> list[object]:
    """The gate and what it spends or holds: its limiter or pool, or a group's gates'."""
    if isinstance(gate, (RateGate, KeyedRateGate)):
        return [gate, gate.limiter]
    if isinstance(gate, PoolGate):
        return [gate, gate.pool]
    if isinstance(gate, AllGates):
        return [gate, *(drawn for inner in gate.gates for drawn in _drawn_on(inner))]
    return [gate]


def _refuse_shared(gates: list[Gate]) -> None:
    """Refuse two gates that draw on one gate, limiter or pool (an undo would leak)."""
    seen: dict[int, int] = {}
    for index, gate in enumerate(gates):
        for drawn in _drawn_on(gate):
            first = seen.setdefault(id(drawn), index)
            if first != index:
                raise InvalidArgumentError(
                    f"gates[{index}] and gates[{first}] both draw on {drawn!r}: one bucket or "
                    f"pool would be charged twice and one rollback would undo the other's "
                    f"admission; give each gate, limiter and pool once"
                )
