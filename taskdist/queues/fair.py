"""FairScheduler: weighted fair sharing across tenants by virtual time, with quotas and plans."""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable, Generator, Hashable, Mapping
from typing import Final

import attrs

from taskdist._lazy_heap import LazyHeap
from taskdist._validate import check_enqueued_at, check_hashable, check_number
from taskdist.clock import Clock, MonotonicClock
from taskdist.errors import (
    DuplicateTaskError,
    InvalidTypeError,
    OverReleaseError,
    QuotaExceededError,
    ReentrancyError,
    TaskStateError,
    UnknownPlanError,
    UnknownTaskError,
)
from taskdist.metrics import jain_index
from taskdist.queues._held import reentry_refusal, unpop_refusal
from taskdist.queues.priority import PriorityQueue
from taskdist.queues.protocol import Eviction, Predicate, Queue
from taskdist.queues.quota import Quota
from taskdist.resilience import RateLimiter
from taskdist.task import Priority, Task

__all__ = [
    "FairScheduler",
    "FairStats",
    "InnerQueueFactory",
    "TenantStats",
    "Waiting",
    "WaitingReason",
]

DEFAULT_AGING_RATE: Final = 1 / 600
"""Aging of the default per-tenant queue: one priority level per 10 minutes waited.

It is the platform scenario's starvation rule ("waited over 10 min: one level
more urgent"), applied continuously.
"""

InnerQueueFactory = Callable[[Clock], Queue]
"""Makes one tenant's queue from the scheduler's clock, e.g. ``lambda c: PriorityQueue(c)``."""

_NO_LIMIT: Final = math.inf
_UNLIMITED: Final = Quota()


class WaitingReason(str, enum.Enum):
    """Why a queued task has not been dispatched yet (see :meth:`FairScheduler.why_waiting`)."""

    TURN = "turn"
    """Its tenant is eligible: fairer tenants, or its own tenant's more urgent tasks, go first."""
    CONCURRENCY_QUOTA = "concurrency_quota"
    """Its tenant has ``max_concurrent`` tasks running; it waits for a ``release``."""
    RATE_QUOTA = "rate_quota"
    """Its tenant's rate quota is spent; it refills at ``until``."""
    EXPIRED = "expired"
    """Its TTL ran out; ``expire()`` will return it."""


@attrs.frozen
class Waiting:
    """What holds a queued task back, and until when (``None``: not known in advance)."""

    task_id: Hashable
    tenant: Hashable
    reason: WaitingReason
    until: float | None = None
    """For ``RATE_QUOTA``, the clock time the tenant may dispatch again; otherwise ``None``."""


@attrs.frozen
class TenantStats:
    """One tenant in a :class:`FairStats` snapshot. Costs and counts are since construction."""

    tenant: Hashable
    plan: Hashable | None
    weight: float
    quota: Quota | None
    queued: int
    """Tasks waiting now (including expired ones ``expire()`` has not yet returned)."""
    running: int
    """Tasks handed out by ``pop`` and not yet ``release``-d."""
    dispatched: int
    """Tasks handed out so far."""
    dispatched_cost: float
    """Sum of the ``cost`` of the tasks handed out so far."""
    share: float
    """This tenant's fraction of all dispatched cost (0 when nothing was dispatched)."""
    entitled_share: float
    """Its weight over the weights of every tenant with demand (queued, running or served)."""
    virtual_start: float
    """Its virtual start tag: the virtual time at which its next fair turn falls."""


@attrs.frozen
class FairStats:
    """A snapshot of a :class:`FairScheduler`."""

    queued: int
    running: int
    virtual_time: float
    tenants: Mapping[Hashable, TenantStats]
    jain_index: float
    """Jain's index over ``dispatched_cost / weight`` of the tenants with demand (1 = fair).

    Meaningful for tenants that were backlogged over the same period: a tenant
    that wanted less than its share lowers it without any unfairness.
    """


class _Tenant:
    """One tenant's queue, configuration and fair-share state."""

    __slots__ = (
        "dispatched",
        "dispatched_cost",
        "inner",
        "key",
        "limiter",
        "max_queued",
        "max_running",
        "plan",
        "queued",
        "quota",
        "running",
        "start",
        "waiting",
        "weight",
    )

    def __init__(self, key: Hashable, inner: Queue, start: float) -> None:
        self.key = key
        self.inner = inner
        self.start = start
        # Tasks of this tenant held anywhere (its queue or the bypass lane), and
        # tasks held in its own queue (``len(inner)``, kept here off the hot path).
        self.queued = 0
        self.waiting = 0
        self.running = 0
        self.dispatched = 0
        self.dispatched_cost = 0.0
        self.weight = 1.0
        self.plan: Hashable | None = None
        self.quota: Quota | None = None
        self.limiter: RateLimiter | None = None
        self.max_running: float = _NO_LIMIT
        self.max_queued: float = _NO_LIMIT


_Entry = tuple[float, int, _Tenant]

_Undo = tuple[float, "_Entry | None", "_Entry | None"]
_Dispatch = tuple[
    Task, _Tenant, _Tenant, tuple[_Tenant, _Tenant, "float | None"], float, float, _Undo
]
"""What a pop changed, kept so that ``unpop`` can undo it exactly: the task, its tenant,
the tenant (or bypass lane) whose queue held it, its index entry, the tenant's start tag
and dispatched cost before, and the virtual time and the tenant's entries in the
eligible and blocked heaps (or ``None``) before. A tuple: made on every pop."""


class _TenantHeap:
    """Tenants ordered by a float key (virtual start, or a wake-up time); O(log T) per change.

    ``members`` maps each tenant in it to its live entry ``(key, seq,
    tenant)``, where ``seq`` makes ties first-come first-served and stops
    comparisons before the tenant; read it for membership (O(1)), change it
    only through the methods. The order is a :class:`LazyHeap` over it: an
    entry replaced or removed is dead and is skipped.
    """

    __slots__ = ("_heap", "members", "set", "top")

    set: Callable[[_Tenant, float], None]
    """``set(tenant, key)``: insert ``tenant`` or move it to ``key``; O(log T)."""
    top: Callable[[], _Entry | None]
    """The live entry with the smallest key, or ``None``; O(1) amortised."""

    def __init__(self) -> None:
        self.members: dict[_Tenant, _Entry] = {}
        self._heap: LazyHeap[_Entry] = LazyHeap(self.members, at=2)
        self.set = self._heap.schedule
        self.top = self._heap.top

    def __contains__(self, tenant: _Tenant) -> bool:
        return tenant in self.members

    def key(self, tenant: _Tenant) -> float | None:
        entry = self.members.get(tenant)
        return None if entry is None else entry[0]

    def discard(self, tenant: _Tenant) -> None:
        """Take ``tenant`` out if it is in; O(1) amortised."""
        if self.members.pop(tenant, None) is not None:
            self._heap.compact()

    def restore(self, tenant: _Tenant, entry: _Entry | None) -> None:
        """Give ``tenant`` back an entry it had (same key and place among ties), or none."""
        if entry is None:
            self.discard(tenant)
        elif self.members.get(tenant) is not entry:
            self.members[tenant] = entry
            self._heap.push(entry)
            self._heap.compact()

    def pop_due(self, now: float) -> list[_Tenant]:
        """Take out every tenant whose key is ``<= now``, smallest first; O(log T) each."""
        return [entry[2] for entry in self._heap.pop_until(now)]  # out of members too

    def walk(self) -> Generator[tuple[float, _Tenant], None, None]:
        """Live entries in key order without moving them: O(log k) per entry yielded.

        It stops as early as the caller does; the heap must not change meanwhile.
        """
        return ((entry[0], entry[2]) for entry in self._heap.walk())


class FairScheduler:
    """Weighted fair sharing of dispatches across tenants, with quotas and plans.

    Satisfies the :class:`~taskdist.queues.Queue` protocol. Each tenant
    (``task.tenant``; ``None`` is a tenant too) has its own inner queue
    (:class:`PriorityQueue` with aging by default), so priority holds inside a
    tenant; *between* tenants the scheduler shares dispatched ``cost`` in
    proportion to their weights.

    **Algorithm: start-time fair queueing** (Goyal, Vin & Cheng, 1996), with
    tags kept per tenant. Each tenant ``i`` has a virtual start tag ``S_i``;
    the scheduler keeps a virtual time ``V``. A pop serves the tenant with the
    smallest ``S_i`` among those *eligible* (backlogged and within their
    quotas; ties go to the one that became eligible first), sets ``V`` to that
    ``S_i`` and advances ``S_i`` by ``task.cost / w_i``. A tenant that becomes
    eligible (new, back from idle, or released by a quota) starts at
    ``max(S_i, V)``: an idle or quota-held tenant banks no credit, and one that
    just ran a long task keeps its debt. Eligible tenants sit in a heap keyed by
    ``S_i``, so the choice is O(log tenants); a tenant at its quota is out of
    the heap and blocks no one.

    **Guarantees.** Write ``W_i`` for the cost dispatched to tenant ``i`` over
    a stretch of plain pops (``where=None``) without weight changes, and
    ``c_i`` for the largest cost of a task ``i`` was served in that stretch or
    last before it.

    1. *Pairwise lag* (the SFQ bound): if tenants ``i`` and ``j`` stay
       backlogged and eligible throughout, ``|W_i/w_i - W_j/w_j| <= c_i/w_i +
       c_j/w_j``.
    2. *Nobody gets ahead of a waiting tenant*: if ``j`` stays backlogged and
       eligible, every other tenant ``i`` -- even one that is sometimes held by
       its own quota -- has ``W_i/w_i - W_j/w_j <= c_i/w_i + c_j/w_j``. So a
       flooding tenant cannot push another tenant's wait past that lag.
    3. *Prompt entry*: a tenant that becomes eligible with ``S_i <= V`` is
       served before any other tenant gets a second dispatch of a task with
       positive cost -- at most one dispatch per other eligible tenant.

    They follow from the invariant ``V <= S_i <= V + c_i/w_i`` for every
    eligible tenant (``c_i`` its last dispatched cost), which a pop preserves;
    ``docs/fairness.md`` has the proof. Outside plain pops: ``pop(where=p)``
    may serve a less fair tenant whose task the caller can take; the fairer
    ones keep their tags and are first in line again. With
    ``critical_bypass=True``, CRITICAL tasks skip the fair order but their
    cost is still charged to their tenant's tag, so the tenant repays it in
    later turns. ``set_weight`` rescales ``S_i - V`` so the invariant holds
    with the new weight. Tasks of cost 0 are free for fairness.

    **Quotas and plans.** A tenant's :class:`Quota` is ``quotas[tenant]`` if
    set, else that of its plan (``tenant_plan[tenant]``, else
    ``default_plan``), else none. Its weight is ``weights[tenant]``, else the
    quota's ``weight``, else ``default_weight``. ``max_concurrent`` counts
    tasks popped and not yet :meth:`release`-d; ``rate`` is a GCRA token
    bucket (one token per task, burst ``rate``) consumed only when a task is
    actually dispatched -- ``peek`` and tenants passed over take none;
    ``max_queued`` refuses a push with :class:`QuotaExceededError`. Weights,
    plans and quotas can change at runtime (:meth:`set_weight`,
    :meth:`set_plan`, :meth:`set_quota`); a new ``rate``/``per`` starts a
    fresh, full bucket.

    **Complexity** (T = tenants, n_t = one tenant's tasks):

    =============================  ==============================================
    ``push``                       O(log n_t + log T)
    ``pop()`` / ``peek()``         O(log n_t + log T) amortised, plus O(log T)
                                   for each tenant whose rate quota refilled
    ``pop(where=p)`` / ``peek``    O(k log k) for the k eligible tenants fairer
                                   than the one served, plus the inner
                                   ``pop(where=p)`` of each of them
    ``critical_bypass`` lane       the lane's ``pop(where)`` over CRITICAL tasks,
                                   skipping those whose tenant is at quota
    ``release``                    O(1); O(log T) when it frees a tenant held
                                   at ``max_concurrent``
    ``remove``                     the inner ``remove`` + O(log T)
    ``unpop``                      the inner ``unpop`` + O(log T)
    ``expire``                     O(m log m + d log T): m expired tasks over d
                                   tenants
    ``next_wakeup``                O(1) amortised
    ``why_waiting``, ``len``, in   O(1)
    ``set_weight/plan/quota``      O(log T)
    ``stats``                      O(T)
    =============================  ==============================================

    Memory is O(T + tasks held); a tenant's record (tag, token bucket,
    counters) is kept once seen.

    >>> from taskdist import ManualClock, Task
    >>> fair = FairScheduler(ManualClock(), weights={"big": 2.0})
    >>> for i in range(4):
    ...     fair.push(Task(f"b{i}", tenant="big"))
    ...     fair.push(Task(f"s{i}", tenant="small"))
    >>> [fair.pop().id for _ in range(6)]
    ['b0', 's0', 'b1', 's1', 'b2', 'b3']
    """

    __slots__ = (
        "_blocked",
        "_bypass",
        "_clock",
        "_default_plan",
        "_default_weight",
        "_eligible",
        "_expiry",
        "_index",
        "_inner",
        "_last_pop",
        "_now",
        "_plans",
        "_quotas",
        "_running",
        "_size",
        "_tenant_plan",
        "_tenants",
        "_virtual",
        "_walking",
        "_weights",
    )

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        weights: Mapping[Hashable, float] | None = None,
        default_weight: float = 1.0,
        quotas: Mapping[Hashable, Quota] | None = None,
        plans: Mapping[Hashable, Quota] | None = None,
        tenant_plan: Mapping[Hashable, Hashable] | None = None,
        default_plan: Hashable | None = None,
        inner: InnerQueueFactory | None = None,
        critical_bypass: bool = False,
    ) -> None:
        """
        Args:
            clock: where time comes from (default: :class:`MonotonicClock`).
            weights: tenant -> share (> 0); tenants not listed take their
                quota's ``weight``, else ``default_weight``.
            default_weight: the share of a tenant with no weight of its own (> 0).
            quotas: tenant -> :class:`Quota`, overriding its plan's.
            plans: plan name -> :class:`Quota` ("free", "pro", "enterprise").
            tenant_plan: tenant -> plan name (a key of ``plans``).
            default_plan: the plan of tenants not in ``tenant_plan``, or ``None``.
            inner: makes each tenant's queue from the clock (default: a
                :class:`PriorityQueue` aging at :data:`DEFAULT_AGING_RATE`).
            critical_bypass: let ``Priority.CRITICAL`` (and more urgent) tasks
                skip the fair order, still within their tenant's quota.

        Raises:
            InvalidArgumentError: a weight <= 0, NaN or infinite.
            InvalidTypeError: a quota that is not a :class:`Quota`, a factory
                that does not make a ``Queue``, a non-bool ``critical_bypass``.
            UnknownPlanError: ``tenant_plan`` or ``default_plan`` names a plan
                not in ``plans``.
        """
        if clock is None:
            clock = MonotonicClock()
        elif not callable(getattr(clock, "now", None)):
            raise InvalidTypeError(f"clock must have a now() method, got {clock!r}")
        default_weight = check_number(default_weight, "default_weight", positive=True)
        checked_weights = {
            tenant: check_number(weight, f"weights[{tenant!r}]", positive=True)
            for tenant, weight in _mapping(weights, "weights").items()
        }
        checked_quotas = {
            tenant: _check_quota(quota, f"quotas[{tenant!r}]")
            for tenant, quota in _mapping(quotas, "quotas").items()
        }
        checked_plans = {
            name: _check_quota(quota, f"plans[{name!r}]")
            for name, quota in _mapping(plans, "plans").items()
        }
        checked_tenant_plan = {
            tenant: _check_plan(plan, checked_plans, f"tenant_plan[{tenant!r}]")
            for tenant, plan in _mapping(tenant_plan, "tenant_plan").items()
        }
        if default_plan is not None:
            _check_plan(default_plan, checked_plans, "default_plan")
        if inner is None:
            inner = functools.partial(PriorityQueue, aging_rate=DEFAULT_AGING_RATE)
        elif not callable(inner):
            raise InvalidTypeError(
                f"inner must be a callable taking the clock and returning a Queue, got {inner!r}"
            )
        probe = inner(clock)
        if not isinstance(probe, Queue):
            raise InvalidTypeError(
                f"inner must return a Queue (push, pop, peek, remove, expire, next_wakeup, "
                f"release, len, in), got {type(probe).__name__} {probe!r}"
            )
        if not isinstance(critical_bypass, bool):
            raise InvalidTypeError(f"critical_bypass must be a bool, got {critical_bypass!r}")

        self._clock = clock
        self._now = clock.now
        self._inner = inner
        self._default_weight = default_weight
        self._weights = checked_weights
        self._quotas = checked_quotas
        self._plans = checked_plans
        self._tenant_plan = checked_tenant_plan
        self._default_plan = default_plan
        self._virtual = 0.0
        self._tenants: dict[Hashable, _Tenant] = {}
        # Eligible backlogged tenants by virtual start; rate-held ones by refill time.
        self._eligible = _TenantHeap()
        self._blocked = _TenantHeap()
        # Queues holding tasks with a TTL, by (a lower bound of) their next expiry.
        self._expiry = _TenantHeap()
        # Queued task id -> (its tenant, the queue holding it, its expiry or None).
        self._index: dict[Hashable, tuple[_Tenant, _Tenant, float | None]] = {}
        # Running task id -> (its tenant, the queue that held it).
        self._running: dict[Hashable, tuple[_Tenant, _Tenant]] = {}
        self._size = 0
        # CRITICAL tasks of every tenant, when they bypass the fair order.
        self._bypass = _Tenant(_BYPASS, probe, 0.0) if critical_bypass else None
        # What the latest pop changed, while unpop may still undo it.
        self._last_pop: _Dispatch | None = None
        # Set while a where= predicate runs: any call back in is refused.
        self._walking = False

    # -- adding -----------------------------------------------------------

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Eviction | None:
        """Queue ``task`` under its tenant; O(log n_t + log T).

        ``enqueued_at`` (default: now, never later) backdates the task, so a
        requeued task keeps its age for aging and TTL. Returns ``None``, or the
        :class:`Eviction` a bounded custom inner queue made.

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            DuplicateTaskError: a task with this id is queued, or running (a
                requeued task must be ``release``-d before it is pushed again).
            QuotaExceededError: the tenant already has ``max_queued`` tasks waiting.
            InvalidArgumentError: ``enqueued_at`` NaN, infinite or in the future.
        """
        if self._walking:
            raise ReentrancyError(reentry_refusal("push", "scheduler"))
        if not isinstance(task, Task):
            raise InvalidTypeError(f"push() takes a Task, got {type(task).__name__} {task!r}")
        task_id = task.id
        if task_id in self._index:
            raise DuplicateTaskError(f"a task with id {task_id!r} is already queued")
        if task_id in self._running:
            raise DuplicateTaskError(
                f"a task with id {task_id!r} is running; release() it before pushing it again"
            )
        now = self._now()
        enqueued = now if enqueued_at is None else check_enqueued_at(enqueued_at, now)
        rec = self._tenants.get(task.tenant)
        is_new = rec is None
        if rec is None:
            rec = self._new_tenant(task.tenant)
        if rec.queued >= rec.max_queued:
            raise QuotaExceededError(
                f"tenant {rec.key!r} already has {rec.queued} tasks queued, its quota's "
                f"max_queued; {task_id!r} was not added"
            )
        bypass = self._bypass
        holder = bypass if bypass is not None and task.priority <= Priority.CRITICAL else rec
        # Without enqueued_at the inner queue reads the clock itself: a task it
        # received a moment after ``now`` is not a backdated one.
        eviction = holder.inner.push(task, enqueued_at=None if enqueued_at is None else enqueued)
        if eviction is not None and eviction.task is task:
            return eviction
        if is_new:
            self._tenants[rec.key] = rec
        ttl = task.ttl
        # An expiry no later than the inner queue's (it may have read the clock later).
        expires = None if ttl is None else enqueued + ttl
        self._index[task_id] = (rec, holder, expires)
        self._last_pop = None
        rec.queued += 1
        holder.waiting += 1
        self._size += 1
        if expires is not None:
            registered = self._expiry.key(holder)
            if registered is None or expires < registered:
                self._expiry.set(holder, expires)
        if eviction is not None:
            self._forget_queued(eviction.task.id, now)
        if rec not in self._eligible.members and rec not in self._blocked.members:
            self._place(rec, now)
        return eviction

    # -- taking -----------------------------------------------------------

    def pop(self, where: Predicate | None = None) -> Task | None:
        """Dispatch the next task by fair share (that satisfies ``where``), or ``None``.

        Serves the eligible tenant with the smallest virtual start, taking its
        inner queue's best task; with ``where``, the fairest eligible tenant
        that has a task satisfying it, and its best such task (tasks that fail
        stay in place). Counts the task as running until :meth:`release`, and
        takes one token of its tenant's rate quota.

        Complexity: O(log n_t + log T) amortised; with ``where``, O(k log k)
        plus the inner ``pop(where)`` of the k tenants fairer than the result.

        Raises:
            InvalidTypeError: ``where`` is not callable.
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        if self._walking or (where is not None and not callable(where)):
            self._check_call("pop", where)
        now = self._now()
        if self._blocked.members:
            self._wake(now)
        virtual = self._virtual  # as it was, should unpop() put the task back
        bypass = self._bypass
        if bypass is not None and bypass.waiting:
            task = self._from_bypass(where, take=True)
            if task is not None:
                rec = self._index[task.id][0]
                undo = (virtual, self._eligible.members.get(rec), self._blocked.members.get(rec))
                self._dispatch(rec, task, now, undo)
                return task
        eligible = self._eligible
        if where is None:
            while (top := eligible.top()) is not None:
                rec = top[2]
                found = rec.inner.pop()
                if found is not None:
                    self._virtual = top[0]
                    # An eligible tenant is never also held by its rate quota.
                    self._dispatch(rec, found, now, (virtual, top, None))
                    return found
                eligible.discard(rec)  # only expired tasks left: out until a push
            self._last_pop = None
            return None
        walk = eligible.walk()
        fairest = None
        for key, rec in walk:
            if fairest is None:
                fairest = key
            found = self._walking_through(rec.inner.pop, where)
            if found is not None:
                walk.close()
                # V follows the smallest start tag among the eligible, even when
                # the predicate passed that tenant over.
                self._virtual = fairest
                self._dispatch(rec, found, now, (virtual, self._eligible.members[rec], None))
                return found
        self._last_pop = None
        return None

    def unpop(self, task: Task) -> None:
        """Put back the task the latest :meth:`pop` dispatched, as if it had never gone.

        Valid only while nothing else has changed the scheduler since that
        pop (a push, another pop, a release, a remove, an expiry returned, a
        new weight, plan or quota). The task goes back to its place in its
        tenant's queue, and putting it back costs the tenant nothing: its
        virtual start tag and the virtual time are restored, its rate token
        is refunded and its running count drops, so no fair-share charge and
        no quota is spent. A composition uses it when it popped a task and
        then could not place it. The tenant's inner queue must have ``unpop``
        (taskdist's queues do). O(log n_t + log T).

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            TaskStateError: ``task`` is not what the latest pop returned, the
                scheduler changed since, or the inner queue has no ``unpop``
                (nothing changes).
        """
        self._check_call("unpop")
        if not isinstance(task, Task):
            raise InvalidTypeError(f"unpop() takes a Task, got {type(task).__name__} {task!r}")
        last = self._last_pop
        if last is None or last[0] is not task:
            raise TaskStateError(unpop_refusal(task, "scheduler"))
        _, rec, holder, indexed, start, dispatched_cost, (virtual, eligible, blocked) = last
        inner_unpop = getattr(holder.inner, "unpop", None)
        if not callable(inner_unpop):
            raise TaskStateError(
                f"cannot put {task.id!r} back: its tenant's queue "
                f"({type(holder.inner).__name__}) has no unpop() (nothing changed)"
            )
        inner_unpop(task)
        self._last_pop = None
        task_id = task.id
        del self._running[task_id]
        self._index[task_id] = indexed
        rec.queued += 1
        holder.waiting += 1
        self._size += 1
        rec.running -= 1
        rec.dispatched -= 1
        rec.dispatched_cost = dispatched_cost
        rec.start = start
        self._virtual = virtual
        if rec.limiter is not None:  # the same one: a new quota ends unpop's turn
            rec.limiter.refund()
        self._eligible.restore(rec, eligible)
        self._blocked.restore(rec, blocked)
        expires = indexed[2]
        if expires is not None:
            registered = self._expiry.key(holder)
            if registered is None or expires < registered:
                self._expiry.set(holder, expires)

    def peek(self, where: Predicate | None = None) -> Task | None:
        """The task ``pop(where)`` would dispatch, without dispatching it or taking a token.

        Complexity: as :meth:`pop`.

        Raises:
            InvalidTypeError: ``where`` is not callable.
            ReentrancyError: called from inside a ``where=`` predicate.
        """
        self._check_call("peek", where)
        now = self._now()
        if self._blocked.members:
            self._wake(now)
        bypass = self._bypass
        if bypass is not None and bypass.waiting:
            task = self._from_bypass(where, take=False)
            if task is not None:
                return task
        eligible = self._eligible
        if where is None:
            while True:
                top = eligible.top()
                if top is None:
                    return None
                found = top[2].inner.peek()
                if found is not None:
                    return found
                eligible.discard(top[2])
        for _, rec in eligible.walk():
            found = self._walking_through(rec.inner.peek, where)
            if found is not None:
                return found
        return None

    def release(self, task: Task) -> None:
        """Free the concurrency a dispatched ``task`` held (it completed, failed or is requeued).

        Call it once per task ``pop`` handed out, before pushing the task
        again. O(1); O(log T) when it frees a tenant held at ``max_concurrent``.

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            OverReleaseError: this scheduler has no running task with that id
                (never handed out, or already released); nothing changes.
        """
        self._check_call("release")
        if not isinstance(task, Task):
            raise InvalidTypeError(f"release() takes a Task, got {type(task).__name__} {task!r}")
        try:
            rec, holder = self._running.pop(task.id)
        except KeyError:
            raise OverReleaseError(
                f"task {task.id!r} is not running here: it was not handed out by this "
                f"scheduler, or was already released"
            ) from None
        holder.inner.release(task)
        self._last_pop = None
        rec.running -= 1
        if rec.running == rec.max_running - 1:
            self._place(rec, self._now())

    def remove(self, task_id: Hashable) -> Task:
        """Take a queued task out (cancel it) and return it; the inner ``remove`` + O(log T).

        Raises:
            UnknownTaskError: no queued task has this id (running ones are not queued).
            InvalidTypeError: ``task_id`` is unhashable.
        """
        self._check_call("remove")
        try:
            holder = self._index[task_id][1]
        except TypeError:
            raise InvalidTypeError(f"task ids are hashable, got {task_id!r}") from None
        except KeyError:
            raise UnknownTaskError(f"no queued task with id {task_id!r}") from None
        task = holder.inner.remove(task_id)
        self._last_pop = None
        self._forget_queued(task_id, self._now())
        return task

    # -- time -------------------------------------------------------------

    def expire(self) -> list[Task]:
        """Remove and return every queued task whose TTL has run out, earliest expiry first.

        Complexity: O(m log m + d log T) for m expired tasks of d tenants.
        """
        self._check_call("expire")
        now = self._now()
        expiry = self._expiry
        due = expiry.pop_due(now)
        expired: list[tuple[float, Task]] = []
        touched: dict[_Tenant, None] = {}
        index = self._index
        for holder in due:
            for task in holder.inner.expire():
                rec, _, expires = index.pop(task.id)
                rec.queued -= 1
                holder.waiting -= 1
                self._size -= 1
                touched[rec] = None
                expired.append((now if expires is None else expires, task))
            following = holder.inner.next_wakeup()
            if following is not None:
                expiry.set(holder, following)
        for rec in touched:
            self._place(rec, now)
        if expired:
            self._last_pop = None
        expired.sort(key=lambda pair: pair[0])
        return [task for _, task in expired]

    def next_wakeup(self) -> float | None:
        """When to call back: the next TTL expiry or rate-quota refill (maybe past), or ``None``.

        At a past or present expiry, call :meth:`expire`; at a refill, a
        :meth:`pop` may now dispatch a task that was held. Only tenants with
        queued tasks count. O(1) amortised.
        """
        self._check_call("next_wakeup")
        expiry = self._expiry
        while (top := expiry.top()) is not None:
            holder = top[2]
            actual = holder.inner.next_wakeup()
            if actual == top[0]:
                break
            # Tasks popped or removed since registration: refresh from the queue.
            if actual is None:
                expiry.discard(holder)
            else:
                expiry.set(holder, actual)
        refill = self._blocked.top()
        if top is None:
            return None if refill is None else refill[0]
        return top[0] if refill is None else min(top[0], refill[0])

    # -- configuration ------------------------------------------------------

    def set_weight(self, tenant: Hashable, weight: float | None) -> None:
        """Set a tenant's share (> 0), or ``None`` to fall back to its quota's or the default.

        The tenant's lead over the virtual time is rescaled to the new weight,
        so the lag bounds hold with it. O(log T).

        Raises:
            InvalidArgumentError: ``weight`` <= 0, NaN or infinite.
            InvalidTypeError: ``tenant`` unhashable, ``weight`` not a number.
        """
        self._check_call("set_weight")
        check_hashable(tenant, "tenant")
        if weight is None:
            self._weights.pop(tenant, None)
        else:
            self._weights[tenant] = check_number(weight, "weight", positive=True)
        self._reconfigure(tenant)

    def set_plan(self, tenant: Hashable, plan: Hashable | None) -> None:
        """Move a tenant to another plan (a key of ``plans``), or ``None`` for the default plan.

        Running tasks stay running; the new limits apply to what is dispatched
        next. O(log T).

        Raises:
            UnknownPlanError: ``plan`` is not a known plan.
            InvalidTypeError: ``tenant`` unhashable.
        """
        self._check_call("set_plan")
        check_hashable(tenant, "tenant")
        if plan is None:
            self._tenant_plan.pop(tenant, None)
        else:
            self._tenant_plan[tenant] = _check_plan(plan, self._plans, "plan")
        self._reconfigure(tenant)

    def set_quota(self, tenant: Hashable, quota: Quota | None) -> None:
        """Give a tenant its own :class:`Quota` (over its plan's), or ``None`` to drop it. O(log T).

        Raises:
            InvalidTypeError: ``quota`` is not a Quota, ``tenant`` unhashable.
        """
        self._check_call("set_quota")
        check_hashable(tenant, "tenant")
        if quota is None:
            self._quotas.pop(tenant, None)
        else:
            self._quotas[tenant] = _check_quota(quota, "quota")
        self._reconfigure(tenant)

    # -- looking ----------------------------------------------------------

    def why_waiting(self, task_id: Hashable) -> Waiting:
        """Why a queued task has not been dispatched, and until when. O(1).

        ``EXPIRED`` if its TTL ran out; else ``CONCURRENCY_QUOTA`` while its
        tenant has ``max_concurrent`` tasks running (until a release: ``until``
        is ``None``); else ``RATE_QUOTA`` with ``until`` = when the tenant's
        bucket has a token again; else ``TURN`` (fairer tenants or its own
        tenant's more urgent tasks are ahead).

        Raises:
            UnknownTaskError: no queued task has this id.
            InvalidTypeError: ``task_id`` is unhashable.
        """
        try:
            rec, _, expires = self._index[task_id]
        except TypeError:
            raise InvalidTypeError(f"task ids are hashable, got {task_id!r}") from None
        except KeyError:
            state = "is running, not waiting" if task_id in self._running else "is not queued"
            raise UnknownTaskError(f"task {task_id!r} {state}") from None
        now = self._now()
        if expires is not None and expires <= now:
            return Waiting(task_id, rec.key, WaitingReason.EXPIRED)
        if rec.running >= rec.max_running:
            return Waiting(task_id, rec.key, WaitingReason.CONCURRENCY_QUOTA)
        if rec.limiter is not None:
            wait = rec.limiter.retry_after()
            if wait > 0:
                return Waiting(task_id, rec.key, WaitingReason.RATE_QUOTA, now + wait)
        return Waiting(task_id, rec.key, WaitingReason.TURN)

    def stats(self) -> FairStats:
        """Per-tenant queued, running, dispatched cost, share vs entitled share, and Jain's index.

        O(T).
        """
        records = list(self._tenants.values())
        total_cost = math.fsum(rec.dispatched_cost for rec in records)
        with_demand = [rec for rec in records if rec.queued or rec.running or rec.dispatched]
        total_weight = math.fsum(rec.weight for rec in with_demand)
        tenants = {
            rec.key: TenantStats(
                tenant=rec.key,
                plan=rec.plan,
                weight=rec.weight,
                quota=rec.quota,
                queued=rec.queued,
                running=rec.running,
                dispatched=rec.dispatched,
                dispatched_cost=rec.dispatched_cost,
                share=rec.dispatched_cost / total_cost if total_cost else 0.0,
                entitled_share=(
                    rec.weight / total_weight
                    if total_weight and (rec.queued or rec.running or rec.dispatched)
                    else 0.0
                ),
                virtual_start=rec.start,
            )
            for rec in records
        }
        return FairStats(
            queued=self._size,
            running=len(self._running),
            virtual_time=self._virtual,
            tenants=tenants,
            jain_index=jain_index(rec.dispatched_cost / rec.weight for rec in with_demand),
        )

    @property
    def virtual_time(self) -> float:
        """The scheduler's virtual time ``V``: where a newly eligible tenant starts."""
        return self._virtual

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __contains__(self, task_id: object) -> bool:
        try:
            return task_id in self._index
        except TypeError:
            return False

    def __repr__(self) -> str:
        return (
            f"FairScheduler(len={self._size}, running={len(self._running)}, "
            f"tenants={len(self._tenants)}, virtual_time={self._virtual!r})"
        )

    # -- internals --------------------------------------------------------

    def _new_tenant(self, key: Hashable) -> _Tenant:
        rec = _Tenant(key, self._inner(self._clock), self._virtual)
        self._configure(rec)
        return rec

    def _configure(self, rec: _Tenant) -> None:
        """(Re)compute a tenant's plan, quota, weight and limits from the configuration."""
        key = rec.key
        plan = self._tenant_plan.get(key, self._default_plan)
        quota = self._quotas.get(key)
        if quota is None and plan is not None:
            quota = self._plans[plan]
        weight = self._weights.get(key)
        if weight is None:
            weight = quota.weight if quota is not None and quota.weight is not None else None
        if weight is None:
            weight = self._default_weight
        if weight != rec.weight and rec.start > self._virtual:
            # Keep the lead (S - V) worth the same cost at the new weight.
            rec.start = self._virtual + (rec.start - self._virtual) * rec.weight / weight
        rec.weight = weight
        old = rec.quota
        if quota is None or quota.rate is None:
            rec.limiter = None
        elif old is None or (old.rate, old.per) != (quota.rate, quota.per) or rec.limiter is None:
            rec.limiter = quota.rate_limiter(self._clock)
        rec.quota = quota
        rec.plan = plan
        limits = quota if quota is not None else _UNLIMITED
        rec.max_running = _NO_LIMIT if limits.max_concurrent is None else limits.max_concurrent
        rec.max_queued = _NO_LIMIT if limits.max_queued is None else limits.max_queued

    def _reconfigure(self, tenant: Hashable) -> None:
        self._last_pop = None  # a new weight or quota: no longer the pop to undo
        rec = self._tenants.get(tenant)
        if rec is None:
            return  # configured when its first task arrives
        self._configure(rec)
        self._eligible.discard(rec)
        self._blocked.discard(rec)
        self._place(rec, self._now())

    def _place(self, rec: _Tenant, now: float) -> None:
        """Put a tenant where it belongs: eligible (by start tag), held by rate, or out.

        Called whenever something that decides it changed: a dispatch, a
        release at the concurrency limit, a first task, an emptied queue, a
        refill time reached, a new configuration.
        """
        eligible = self._eligible
        blocked = self._blocked
        if not rec.queued or rec.running >= rec.max_running:
            # Idle, or held until a release: nothing to wake up for.
            eligible.discard(rec)
            blocked.discard(rec)
            return
        limiter = rec.limiter
        if limiter is not None:
            if rec in blocked:
                return  # its refill time is already set
            wait = limiter.retry_after()
            if wait > 0:
                eligible.discard(rec)
                until = now + wait
                # A refill so close that it rounds to now must still be in the future.
                blocked.set(rec, until if until > now else math.nextafter(now, math.inf))
                return
        if not rec.waiting:
            eligible.discard(rec)  # only bypass-lane tasks: nothing for the fair order
            return
        if rec.start < self._virtual:
            rec.start = self._virtual  # no credit banked while away
        if eligible.key(rec) != rec.start:
            eligible.set(rec, rec.start)

    def _wake(self, now: float) -> None:
        """Re-place every tenant whose rate-quota refill time has come."""
        for rec in self._blocked.pop_due(now):
            self._place(rec, now)

    def _dispatch(self, rec: _Tenant, task: Task, now: float, undo: _Undo) -> None:
        """Account a task leaving the queue for a worker, then re-place its tenant.

        ``undo`` is what this pop changed before dispatching (the virtual time,
        the tenant's entries in the eligible and blocked heaps), kept with what
        this changes for :meth:`unpop`.
        """
        task_id = task.id
        indexed = self._index.pop(task_id)
        holder = indexed[1]
        self._last_pop = (task, rec, holder, indexed, rec.start, rec.dispatched_cost, undo)
        rec.queued -= 1
        holder.waiting -= 1
        self._size -= 1
        self._running[task_id] = (rec, holder)
        rec.running += 1
        rec.dispatched += 1
        cost = task.cost
        rec.dispatched_cost += cost
        # A fair dispatch starts at S (>= V); a bypassing one is charged from V too.
        start = rec.start
        if start < self._virtual:
            start = self._virtual
        rec.start = start = start + cost / rec.weight
        limiter = rec.limiter
        if limiter is not None:
            # Cannot fail: the tenant was eligible, and tokens only refill as time passes.
            taken = limiter.try_acquire()
            assert taken, "rate quota checked before dispatch"
        elif rec.waiting and rec.running < rec.max_running:
            self._eligible.set(rec, start)  # still eligible: on to its next turn
            return
        self._place(rec, now)

    def _from_bypass(self, where: Predicate | None, *, take: bool) -> Task | None:
        """The best CRITICAL task whose tenant is within its quotas (and that passes ``where``)."""
        bypass = self._bypass
        assert bypass is not None
        index = self._index
        blocked = self._blocked

        def admissible(task: Task) -> bool:
            rec = index[task.id][0]
            return (
                rec.running < rec.max_running
                and rec not in blocked
                and (where is None or where(task))
            )

        inner = bypass.inner
        if where is None:
            return inner.pop(admissible) if take else inner.peek(admissible)
        return self._walking_through(inner.pop if take else inner.peek, admissible)

    def _walking_through(
        self, find: Callable[[Predicate], Task | None], where: Predicate
    ) -> Task | None:
        """``find(where)``, with every call back into the scheduler refused meanwhile."""
        self._walking = True
        try:
            return find(where)
        finally:
            self._walking = False

    def _check_call(self, call: str, where: object = None) -> None:
        """Refuse a call from inside a ``where=`` predicate, and a ``where`` not callable."""
        if self._walking:
            raise ReentrancyError(reentry_refusal(call, "scheduler"))
        if where is not None and not callable(where):
            raise InvalidTypeError(f"where= takes a function of a Task, got {where!r}")

    def _forget_queued(self, task_id: Hashable, now: float) -> None:
        """Drop a task that left the queue without being dispatched (removed, evicted)."""
        rec, holder, _ = self._index.pop(task_id)
        rec.queued -= 1
        self._size -= 1
        holder.waiting -= 1
        if not rec.queued or not rec.waiting:
            self._place(rec, now)


_BYPASS: Final = object()
"""The key of the pseudo-tenant whose queue holds the CRITICAL tasks that bypass fairness."""


def _mapping(value: object, name: str) -> Mapping[Hashable, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidTypeError(f"{name} must be a mapping, got {value!r}")
    return value


def _check_quota(value: object, name: str) -> Quota:
    if not isinstance(value, Quota):
        raise InvalidTypeError(f"{name} must be a Quota, got {type(value).__name__} {value!r}")
    return value


def _check_plan(plan: object, plans: Mapping[Hashable, Quota], name: str) -> Hashable:
    try:
        known = plan in plans
    except TypeError:
        raise InvalidTypeError(f"{name} must be a plan name (hashable), got {plan!r}") from None
    if not known:
        allowed = ", ".join(repr(p) for p in plans) or "none defined"
        raise UnknownPlanError(f"{name} must be one of the plans ({allowed}), got {plan!r}")
    return plan
