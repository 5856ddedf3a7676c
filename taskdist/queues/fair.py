"""FairScheduler: weighted fair sharing across tenants by virtual time, with quotas and plans."""

from __future__ import annotations

import enum
import functools
import inspect
import math
import weakref
from collections.abc import Callable, Generator, Hashable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar

import attrs

from taskdist._lazy_heap import LazyHeap
from taskdist._validate import (
    MAX_AMOUNT,
    check_enqueued_at,
    check_key,
    check_number,
    shown,
)
from taskdist.clock import Clock, MonotonicClock
from taskdist.errors import (
    DuplicateTaskError,
    InvalidArgumentError,
    InvalidTypeError,
    OverReleaseError,
    QuotaExceededError,
    ReentrancyError,
    TaskStateError,
    UnknownPlanError,
    UnknownTaskError,
    UnknownTenantError,
    UnsatisfiableDemandError,
)
from taskdist.metrics import jain_index
from taskdist.queues._deadline_slack import DeadlineSlack, Taken
from taskdist.queues._fair_snapshot import prepare_fair, snapshot_fair
from taskdist.queues._held import unpop_refusal
from taskdist.queues._idle_tenants import IdleTenants, is_full
from taskdist.queues._shared_index import (
    OwnedSharedIndexQueue,
    SharedIndexDeadlineScheduler,
    SharedIndexQueue,
    queue_holding,
    queued_task,
)
from taskdist.queues._tables import shrink
from taskdist.queues.deadline import DeadlineScheduler
from taskdist.queues.key_share import KeyShare
from taskdist.queues.priority import PriorityQueue, aged_rank
from taskdist.queues.protocol import Eviction, Predicate, Queue, expire_with_reasons
from taskdist.queues.quota import Quota
from taskdist.resilience import RateLimiter
from taskdist.task import Priority, Reason, Task
from taskdist.workers._ranges import check_weight

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

_TAG_BITS: Final = 96
_UNIT: Final = 2**_TAG_BITS
_UNIT_F: Final = float(_UNIT)
VIRTUAL_TIME_RESOLUTION: Final = 2.0**-_TAG_BITS
"""The step of virtual time (about 1.3e-29 cost per unit of weight).

Virtual times and start tags are kept as exact integer multiples of it, so
adding a charge ``cost / weight`` never rounds away against a large virtual
time: after a task of cost 1e16, tasks of cost 1 still move their tenants'
tags exactly. A charge smaller than one step is free, as a cost of 0 is.
"""

InnerQueueFactory = Callable[[Clock], Queue] | Callable[[Clock, Hashable], Queue]
"""Makes one tenant's queue: from the scheduler's clock, e.g. ``lambda c: PriorityQueue(c)``,
or from the clock and the tenant, e.g. ``lambda c, tenant: DeadlineScheduler(c, servers=
slots[tenant])``. It must make a new, empty queue on each call."""

_NO_LIMIT: Final = math.inf
# Every so many tenants dropped, the tables are checked for memory to give back.
_SHRINK_EVERY: Final = 1024
_SHRINK_MASK: Final = _SHRINK_EVERY - 1
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
    """One tenant in a :class:`FairStats` snapshot.

    Counters count from when the tenant's record was made: its first task,
    or its first task after it was last dropped as idle.
    """

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
    """This tenant's fraction of the dispatched cost of the tenants in the snapshot."""
    entitled_share: float
    """Its weight over the weights of every tenant with demand (queued, running or served)."""
    virtual_start: float
    """Its virtual start tag: the virtual time at which its next fair turn falls."""
    urgent: int = 0
    """Of its dispatches, those served ahead of the fair order to meet a deadline."""


@attrs.frozen
class FairStats:
    """A snapshot of a :class:`FairScheduler`."""

    queued: int
    running: int
    virtual_time: float
    tenants: Mapping[Hashable, TenantStats]
    """The tenants with a record: tasks queued or running (idle ones are dropped)."""
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
        "filed",
        "inner",
        "key",
        "limiter",
        "max_queued",
        "max_running",
        "plan",
        "queued",
        "quota",
        "running",
        "scale",
        "stalled",
        "start",
        "timed",
        "urgent",
        "waiting",
        "weight",
    )

    def __init__(self, key: Hashable, inner: Queue, start: int) -> None:
        self.key = key
        self.inner = inner
        # Its queue says when each of its tasks expires (see _TIMED_QUEUES).
        self.timed = type(inner) in _TIMED_QUEUES
        # Its queue files its tasks in the scheduler's id table itself (see _files_itself).
        self.filed = _files_itself(inner)
        if type(inner) is OwnedSharedIndexQueue:
            inner.owner = self  # the table leads from a task to its queue, and so to here
        # Its virtual start tag, in steps of VIRTUAL_TIME_RESOLUTION.
        self.start = start
        # Tasks of this tenant held anywhere (its queue or the bypass lane), and
        # tasks held in its own queue (``len(inner)``, kept here off the hot path).
        self.queued = 0
        self.waiting = 0
        self.running = 0
        self.dispatched = 0
        self.dispatched_cost = 0.0
        # Dispatches ahead of the fair order, to meet a deadline (deadline_aware).
        self.urgent = 0
        # Its queue held tasks but gave none at the last look (see _stall).
        self.stalled = False
        self.weight = 1.0
        # Steps of virtual time per unit of cost: a dispatch charges int(cost * scale).
        self.scale = _UNIT_F
        self.plan: Hashable | None = None
        self.quota: Quota | None = None
        self.limiter: RateLimiter | None = None
        self.max_running: float = _NO_LIMIT
        self.max_queued: float = _NO_LIMIT


_Entry = tuple[int, int, _Tenant]
"""An eligible tenant: (start tag, seq, tenant)."""
_Held = tuple[float, int, _Tenant]
"""A held tenant, or a queue with tasks: (wake-up or expiry time, seq, tenant)."""
_K = TypeVar("_K", int, float)
_A = TypeVar("_A")
_R = TypeVar("_R")

_Dispatch = tuple[
    Task,  # the task
    _Tenant,  # its tenant
    _Tenant,  # the tenant (or bypass lane) whose queue held it
    "float | None",  # its TTL expiry
    int,  # the tenant's start tag before
    float,  # the tenant's dispatched cost before
    int,  # the virtual time before
    int,  # the largest tag before
    "_Entry | None",  # the tenant's entry in the eligible heap before
    "_Held | None",  # its entry in the rate-held heap before
    "Taken | None",  # what the deadline index held of the task
    bool,  # whether it was served ahead of the fair order
]
"""What a pop changed, kept so that ``unpop`` can undo it exactly. A tuple: made on every pop."""


class _TenantHeap(Generic[_K]):
    """Tenants ordered by a number (virtual start, or a wake-up time); O(log T) per change.

    ``members`` maps each tenant in it to its live entry ``(key, seq,
    tenant)``, where ``seq`` makes ties first-come first-served and stops
    comparisons before the tenant; read it for membership (O(1)), change it
    only through the methods. The order is a :class:`LazyHeap` over it: an
    entry replaced or removed is dead and is skipped. A ``lazy`` one makes its
    heap at the first ``set`` (most schedulers never hold a tenant by its rate
    or its expiries, and a nested one has a scheduler per tenant).
    """

    __slots__ = ("_heap", "members", "set", "top")

    set: Callable[[_Tenant, _K], None]
    """``set(tenant, key)``: insert ``tenant`` or move it to ``key``; O(log T)."""
    top: Callable[[], tuple[_K, int, _Tenant] | None]
    """The live entry with the smallest key, or ``None``; O(1) amortised."""

    def __init__(self, *, lazy: bool = False) -> None:
        self.members: dict[_Tenant, tuple[_K, int, _Tenant]] = {}
        self._heap: LazyHeap[tuple[_K, int, _Tenant]] | None = None
        if lazy:
            self.set = self._first_set
            self.top = _nothing
        else:
            self._made()

    def _made(self) -> LazyHeap[tuple[_K, int, _Tenant]]:
        """The heap, made now if it was not yet."""
        heap = self._heap
        if heap is None:
            heap = self._heap = LazyHeap(self.members, at=2)
            self.set = heap.schedule
            self.top = heap.top
        return heap

    def _first_set(self, tenant: _Tenant, key: _K) -> None:
        self._made().schedule(tenant, key)

    def __contains__(self, tenant: _Tenant) -> bool:
        return tenant in self.members

    def key(self, tenant: _Tenant) -> _K | None:
        entry = self.members.get(tenant)
        return None if entry is None else entry[0]

    def discard(self, tenant: _Tenant) -> None:
        """Take ``tenant`` out if it is in; O(1) amortised."""
        if self.members.pop(tenant, None) is not None:
            self._made().compact()

    def restore(self, tenant: _Tenant, entry: tuple[_K, int, _Tenant] | None) -> None:
        """Give ``tenant`` back an entry it had (same key and place among ties), or none."""
        if entry is None:
            self.discard(tenant)
        elif self.members.get(tenant) is not entry:
            # The entry it had may still be in the heap, dead: a new tuple of the same
            # fields keeps it so (entries are live by identity), or it would be twice.
            fresh = (entry[0], entry[1], entry[2])
            self.members[tenant] = fresh
            heap = self._made()
            heap.push(fresh)
            heap.compact()

    def shrink(self) -> None:
        """Give back the memory of a table that held many more tenants. O(1) unless due."""
        shrink(self.members)

    def pop_due(self, now: float) -> list[_Tenant]:
        """Take out every tenant whose key is ``<= now``, smallest first; O(log T) each."""
        if not self.members:
            return []
        return [entry[2] for entry in self._made().pop_until(now)]  # out of members too

    def walk(self) -> Generator[tuple[_K, _Tenant], None, None]:
        """Live entries in key order without moving them: O(log k) per entry yielded.

        It stops as early as the caller does; the heap must not change meanwhile.
        """
        return ((entry[0], entry[2]) for entry in self._made().walk())


def _nothing() -> None:
    """The top of an empty heap not made yet."""


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
    just ran a long task keeps its debt. When the last queued task is
    dispatched, ``V`` moves up to the largest tag given out (the end of a busy
    period, as in SFQ): every tenant starts level in the next one. A task
    that leaves without a dispatch (removed, evicted, expired) ends no busy
    period: it was served nothing, and a distributor removes the tasks a
    rate limit refuses until it refills, so ending one then would start every
    tenant level at each refill and the weights would count for nothing.
    Eligible tenants sit in a
    heap keyed by ``S_i``, so the choice is O(log tenants); a tenant at its
    quota is out of the heap and blocks no one.

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
    ``docs/fairness.md`` has the proof. Tags are exact integers in steps of
    2**-96 (each charge ``cost / w`` rounded down to a step), so the bounds
    hold at any virtual time, however large the costs before. Outside plain
    pops: ``pop(where=p)`` may serve a less fair tenant whose task the caller
    can take; the fairer ones keep their tags and are first in line again.
    With ``critical_bypass=True``, CRITICAL tasks skip the fair order but
    their cost is still charged to their tenant's tag, so the tenant repays
    it in later turns. ``set_weight`` rescales ``S_i - V`` so the invariant
    holds with the new weight. Tasks of cost 0 are free for fairness.

    **Deadlines** (``deadline_aware=True``, opt-in). A pop first finds the
    fair pick, then asks whether serving it now would make a queued task
    with a deadline miss it, in this model: one server, free from now, runs
    the queued tasks with deadlines in deadline order, each for its
    ``cost``. If the fair pick would push one of them past its deadline (and
    deadline order would have met it), the most urgent task is served
    instead, *out of turn*: its tenant is charged as for any dispatch
    (``S_i`` advances by ``cost / w_i`` from ``max(S_i, V)``), so it repays
    the service in later turns. A task that can no longer make it in the
    model is marked late and makes nothing urgent. In that model, with plain
    pops, no quota holding a tenant and no bypass: *if the queued tasks can
    all meet their deadlines in plain EDF order, they all do* (a pop never
    makes a feasible queue infeasible). A tenant is served out of turn only
    while ``S_i - V <= max_lead / w_i``, so bounds 1 and 2 hold with each
    ``c`` replaced by ``c + max_lead`` (the extra term), and the invariant
    with ``V <= S_i <= V + (c_i + max_lead)/w_i``; bound 3 is about turns
    in fair order, which urgent tasks may come before. ``None`` (the
    default) sets no cap: deadlines always come first, and the lag is
    bounded by the service out of turn not yet repaid. Each tenant's inner
    queue may be any; with ``inner=DeadlineScheduler`` the urgent task is at
    the head of its tenant's queue. Costs: about 11 bytes and O(log n) per
    queued task with a deadline (n such tasks queued); a pop adds O(1) when
    all that work ends before the earliest deadline, else O(log n), and with
    ``where`` it looks at the fair pick's tenant twice.

    **Nested fair share.** ``tenant_of`` says what a tenant is for a
    scheduler (``task.tenant`` by default), so a scheduler can be the inner
    queue of another: ``FairScheduler(clock, inner=lambda c, tenant:
    FairScheduler(c, tenant_of=lambda t: t.key))`` shares between tenants by
    their weights, and within each tenant between its keys (users,
    workflows) by theirs. Each level is start-time fair queueing over its
    children with its own virtual time (hierarchical SFQ), so each level's
    bounds hold among siblings over that level's own dispatches, and a
    tenant that spreads its work over a thousand keys gets the share of one
    tenant, not of a thousand. Quotas, plans and weights apply per level.
    A tenant dropped as idle (see *Idle tenants*) whose scheduler still owes
    its keys their turns (a debt: its tasks were taken out unserved, as a
    distributor does while a gate refuses them) or refills a key's rate
    bucket keeps that scheduler until it is used again: the split between
    its keys holds behind a gate too. Its debts lapse (every key starts
    level) once ``V`` passes every tag given out when the tenant left (all
    tenants then ahead were served up to there while it was away) or the
    outer busy period ends, its buckets once full; then it goes, and a
    returning tenant gets a new one from the factory. When the outer
    scheduler reads tenants from ``task.tenant`` and its factory makes a
    ``FairScheduler`` with the default queues, no lane, the
    same clock and no tenant yet, it adopts it, handing it its id table:
    every level then files a queued task once, in that table (about 200
    bytes a task in all at 100 000 tasks, against 274 with a table per
    level), and ``tenant_of`` is still called once per push, never again.
    Every answer is the same either way.

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

    **Accepted ranges.** Weights (``weights``, ``default_weight``,
    ``Quota.weight``) from 1e-9 to 1e9; a task's cost from 0 to 1e18 (as
    :class:`Task` allows). A charge ``cost / w`` is then at most 1e27 and
    tags stay exact however long the scheduler runs. :class:`Quota` states
    its own ranges.

    **Tenants.** Every tenant argument (and every key of ``weights``,
    ``quotas``, ``tenant_plan``, ``plans``) must be hashable and equal to
    itself: NaN is refused. With ``strict_tenants=True`` only *known* tenants
    may push or be configured: those named in ``weights``, ``quotas`` or
    ``tenant_plan``, or added by :meth:`add_tenant` (and not removed by
    :meth:`remove_tenant`); anything else is an
    :class:`~taskdist.errors.UnknownTenantError` that changes nothing.

    **Idle tenants cost nothing.** A tenant with nothing queued or running is
    dropped (its configuration stays): the record, counters and queue go,
    and only what is still in force is kept -- its tag while it is ahead of
    ``V`` (a debt), its rate bucket until it would be full again, a nested
    scheduler of its own that still owes or refills (see *Nested fair
    share*) -- and that too once it lapses. A tenant that comes back starts
    at ``max(S_i, V)`` with the bucket (and scheduler) it left with, exactly
    as if it had been kept.

    **The inner queue factory** ``inner`` is called once per tenant record,
    with the clock, or with the clock and the tenant when it takes two
    positional arguments (so each tenant's queue can differ, by plan say). It
    must return a new, empty :class:`~taskdist.queues.Queue`: a queue that
    another tenant holds, one holding tasks, or a ``FairScheduler`` that
    another scheduler adopted (see *Nested fair share*) and that still holds
    tenants, is refused with :class:`~taskdist.errors.InvalidArgumentError`
    (the push that needed it changes nothing). The bypass lane's queue is made as tenant ``None``'s.
    The queue it makes is the scheduler's: read it if you like, but push to,
    pop from or remove from it only through the scheduler (a nested
    scheduler's inner ones share its id table, see *Nested fair share*).

    **Snapshots.** :meth:`snapshot` writes the state as plain data: the
    virtual time and every start tag (exact integers), each tenant's
    counters, rate bucket and inner queue (through the queue's own
    ``snapshot()``), the bypass lane, the queued and running tasks' tenants
    and TTL expiries, the order of the fair, rate-held and expiry heaps, the
    debts, buckets and nested schedulers kept for idle tenants, and the
    weights, plans, quotas
    and known tenants as they are now. :meth:`load_snapshot` fills a new
    scheduler built with the same configuration (its inner queues made by
    ``inner`` and loaded from their own snapshots, so nested schedulers are
    carried), which then makes the same decisions; a ``deadline_aware``
    scheduler's deadline index is carried too. Inner queues without snapshot
    support are refused with :class:`~taskdist.errors.SnapshotError`.

    **Callbacks** (``where=`` predicates, ``tenant_of``, the ``inner`` factory) may read the
    scheduler (``len``, ``in``, :meth:`why_waiting`, :meth:`stats`) but not
    change it: a call back into ``push``, ``pop``, ``peek``, ``remove``,
    ``unpop``, ``release``, ``expire``, ``next_wakeup`` or the configuration
    is refused with :class:`~taskdist.errors.ReentrancyError` and changes
    nothing. **Threads:** not thread-safe; share it through
    ``taskdist.threaded.ThreadSafeDistributor`` or one lock of your own.

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
                                   at ``max_concurrent`` or drops an idle one
    a nested scheduler kept        plus O(k') when a tenant whose own scheduler
                                   keeps k' of its dropped tenants is dropped
                                   or comes back (``push``, ``release``,
                                   ``remove``, ``expire``)
    ``remove``                     the inner ``remove`` + O(log T)
    ``unpop``                      the inner ``unpop`` + O(log T)
    ``take_along`` (k tasks)       O(k log T) + the inner ``take_along``
    ``check_together`` (k tasks)   O(k) + the inner ``check_together``
    ``expire``,                    O(m log m + d log T): m expired tasks over d
    ``expire_with_reasons``        tenants
    ``next_wakeup``                O(1) amortised
    ``why_waiting``                O(1) per level of nesting
    ``len``, ``in``, ``rank``      O(1)
    ``set_weight/plan/quota``      O(log T)
    ``add_tenant/remove_tenant``   O(log T)
    ``stats``                      O(T)
    ``snapshot``                   O(n + T log T) plus the inner queues' own
    ``load_snapshot``              O(n log n + T log T) plus the inner queues'
    ``deadline_aware``: ``push``,  plus O(log n_d) for a task with a deadline
    ``remove``, ``expire``         (n_d such tasks queued)
    ``deadline_aware``: ``pop``,   plus O(1) when every deadline is further off
    ``peek``                       than all the work with deadlines, else
                                   O(log n_d), and the inner ``pop(where)`` of
                                   the urgent task's tenant when there is one
    nested (``tenant_of``)         each level's cost, one inside the other
    =============================  ==============================================

    Memory is O(tenants with tasks queued or running + tasks held): with
    the default tenant queues or ``inner=DeadlineScheduler`` (the class
    itself), and tenants by ``task.tenant``, a queued task is filed by id
    once, in one table the scheduler and its queues share (about 183 bytes
    a task in all beyond the ``Task``, 171 with ``DeadlineScheduler``
    queues), and so with a nested ``FairScheduler`` as above (about 200);
    with any other ``inner`` factory or a ``tenant_of``, the
    scheduler keeps an id index of its own on top of each queue's (with a
    TTL, an expiry of its own too, only if that queue cannot say when the
    task expires: a ``PriorityQueue`` or ``FairScheduler`` can). An idle
    tenant costs nothing once its debt and bucket have lapsed.

    >>> from taskdist import ManualClock, Task
    >>> fair = FairScheduler(ManualClock(), weights={"big": 2.0})
    >>> for i in range(4):
    ...     fair.push(Task(f"b{i}", tenant="big"))
    ...     fair.push(Task(f"s{i}", tenant="small"))
    >>> [fair.pop().id for _ in range(6)]
    ['b0', 's0', 'b1', 's1', 'b2', 'b3']
    """

    __slots__ = (
        "_adopted",
        "_adopting",
        "_aging_rate",
        "_blocked",
        "_busy",
        "_busy_periods",
        "_bypass",
        "_clock",
        "_deadline_ranked",
        "_default_plan",
        "_default_weight",
        "_eligible",
        "_expires",
        "_expiry",
        "_horizon",
        "_idle",
        "_index",
        "_inner_ids",
        "_known",
        "_last_pop",
        "_make_queue",
        "_max_lead",
        "_now",
        "_own_queues",
        "_plain",
        "_plans",
        "_quotas",
        "_ranked",
        "_retired",
        "_running",
        "_shared",
        "_size",
        "_slack",
        "_strict",
        "_tenant_of",
        "_tenant_plan",
        "_tenants",
        "_virtual",
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
        strict_tenants: bool = False,
        tenant_of: Callable[[Task], Hashable] | None = None,
        deadline_aware: bool = False,
        max_lead: float | None = None,
        aging_rate: float = DEFAULT_AGING_RATE,
    ) -> None:
        """
        Args:
            clock: where time comes from (default: :class:`MonotonicClock`).
            weights: tenant -> share (1e-9 to 1e9); tenants not listed take
                their quota's ``weight``, else ``default_weight``.
            default_weight: the share of a tenant with no weight of its own.
            quotas: tenant -> :class:`Quota`, overriding its plan's.
            plans: plan name -> :class:`Quota` ("free", "pro", "enterprise").
            tenant_plan: tenant -> plan name (a key of ``plans``).
            default_plan: the plan of tenants not in ``tenant_plan``, or ``None``.
            inner: makes each tenant's queue from the clock, or from the clock
                and the tenant (default: a :class:`PriorityQueue` aging at
                :data:`DEFAULT_AGING_RATE`); a :class:`KeyShare` shares each
                tenant's turns among its keys.
            critical_bypass: let ``Priority.CRITICAL`` (and more urgent) tasks
                skip the fair order, still within their tenant's quota.
            strict_tenants: refuse pushes for, and configuration of, tenants
                that are not known (see the class docstring).
            tenant_of: what a task's tenant is for this scheduler (default:
                ``task.tenant``), e.g. ``lambda t: t.key`` for the level of a
                nested fair share (see the class docstring).
            deadline_aware: serve a task ahead of the fair order when its
                deadline needs it (see the class docstring).
            max_lead: with ``deadline_aware``, the most cost a tenant may be
                served ahead of its fair share to meet deadlines (``None``: no
                limit); the lag bounds grow by it.
            aging_rate: priority levels a task gains per second waited in the
                default tenant queues (>= 0; 0 = no aging). With an ``inner=``
                factory, its queues age as it makes them: only the default
                applies.

        Raises:
            InvalidArgumentError: a weight outside 1e-9..1e9, NaN or infinite;
                a tenant or plan name that is NaN; an ``aging_rate`` below 0,
                NaN or infinite, or other than the default beside ``inner``.
            InvalidTypeError: a quota that is not a :class:`Quota`, a factory
                that does not make a ``Queue``, a non-bool ``critical_bypass``,
                ``strict_tenants`` or ``deadline_aware``, a ``tenant_of`` that is
                not callable, an unhashable tenant or plan name, an
                ``aging_rate`` that is not a number.
            UnknownPlanError: ``tenant_plan`` or ``default_plan`` names a plan
                not in ``plans``.
        """
        if clock is None:
            clock = MonotonicClock()
        elif not callable(getattr(clock, "now", None)):
            raise InvalidTypeError(f"clock must have a now() method, got {shown(clock)}")
        default_weight = check_weight(default_weight, "default_weight")
        checked_weights = {
            _check_tenant(tenant, "a key of weights"): check_weight(
                weight, f"weights[{shown(tenant)}]"
            )
            for tenant, weight in _mapping(weights, "weights").items()
        }
        checked_quotas = {
            _check_tenant(tenant, "a key of quotas"): _check_quota(
                quota, f"quotas[{shown(tenant)}]"
            )
            for tenant, quota in _mapping(quotas, "quotas").items()
        }
        checked_plans = {
            check_key(name, "a plan name (a key of plans)"): _check_quota(
                quota, f"plans[{shown(name)}]"
            )
            for name, quota in _mapping(plans, "plans").items()
        }
        checked_tenant_plan = {
            _check_tenant(tenant, "a key of tenant_plan"): _check_plan(
                plan, checked_plans, f"tenant_plan[{shown(tenant)}]"
            )
            for tenant, plan in _mapping(tenant_plan, "tenant_plan").items()
        }
        if default_plan is not None:
            _check_plan(default_plan, checked_plans, "default_plan")
        for flag, name in (
            (critical_bypass, "critical_bypass"),
            (strict_tenants, "strict_tenants"),
            (deadline_aware, "deadline_aware"),
        ):
            if not isinstance(flag, bool):
                raise InvalidTypeError(f"{name} must be a bool, got {shown(flag)}")
        if tenant_of is not None and not callable(tenant_of):
            raise InvalidTypeError(
                f"tenant_of must be a function of a Task returning its tenant, or None; "
                f"got {shown(tenant_of)}"
            )
        if max_lead is not None:
            if not deadline_aware:
                raise InvalidArgumentError(
                    "max_lead bounds how far deadlines may put a tenant ahead; it needs "
                    "deadline_aware=True"
                )
            max_lead = check_number(max_lead, "max_lead", minimum=0.0, maximum=MAX_AMOUNT)
        aging_rate = check_number(aging_rate, "aging_rate", minimum=0.0)
        if inner is not None and aging_rate != DEFAULT_AGING_RATE:
            raise InvalidArgumentError(
                f"aging_rate ({aging_rate!r}) sets how the default tenant queues age; "
                f"with inner= the factory's queues age as it makes them"
            )
        # Queued task id -> its tenant. With the default tenant queues or
        # inner=DeadlineScheduler (and tenants by task.tenant) it is their shared table
        # instead: id -> the task's entry in its queue (see SharedIndexQueue), one
        # index for both; so it is for FairSchedulers it adopts (see _adopt), whose
        # key queues file their entries here, beside the tasks of its other queues.
        self._index: dict[Hashable, Any] = {}
        self._shared = (inner is None or inner is DeadlineScheduler) and tenant_of is None
        # The default tenant queues: a scheduler holding this one may hand it its table.
        self._plain = inner is None
        # Tenant queues that order a task by its key and rank alone: the default ones,
        # or the schedulers of a KeyShare (tenants by key, over default queues).
        self._ranked = inner is None or type(inner) is KeyShare
        # Tenant queues that are DeadlineSchedulers of its own making (under run_late, no
        # aging): a task's rank there is its deadline and priority.
        self._deadline_ranked = inner is DeadlineScheduler
        # Tenant queues of the library's own making (the class given, not a factory):
        # their pop(where) leaves them as they were when the predicate raises.
        self._own_queues = self._ranked or inner in (PriorityQueue, DeadlineScheduler)
        # Whether it files its tasks in the table of the scheduler holding it (see _adopt).
        self._adopted = False
        # What makes the key queues of the schedulers it adopts (one for them all).
        self._adopting: Callable[[Hashable], Queue] | None = None
        self._aging_rate = aging_rate
        make_queue = (
            _shared_maker(clock, self._index, inner, aging_rate)
            if self._shared
            else _queue_maker(inner, clock, aging_rate)
        )

        self._clock = clock
        self._now = clock.now
        self._make_queue = make_queue
        self._busy = False
        self._default_weight = default_weight
        self._weights = checked_weights
        self._quotas = checked_quotas
        self._plans = checked_plans
        self._tenant_plan = checked_tenant_plan
        self._default_plan = default_plan
        self._strict = strict_tenants
        self._tenant_of = tenant_of
        # With deadline_aware: the queued tasks with deadlines, and the lead allowed.
        self._slack = DeadlineSlack() if deadline_aware else None
        self._max_lead = math.inf if max_lead is None else max_lead
        # (Until a tenant is known, the one empty set all schedulers share: see add_tenant.)
        self._known: set[Hashable] = (
            {*checked_weights, *checked_quotas, *checked_tenant_plan}
            if checked_weights or checked_quotas or checked_tenant_plan
            else _NOBODY
        )
        # Virtual time and the largest tag given out, in steps of VIRTUAL_TIME_RESOLUTION.
        self._virtual = 0
        self._horizon = 0
        self._tenants: dict[Hashable, _Tenant] = {}
        # What is still in force of tenants dropped as idle (debts, refilling buckets,
        # nested schedulers), and how many busy periods have ended (a nested scheduler
        # kept for a tenant starts its own tenants level once one has).
        self._idle = IdleTenants(_start_level, _would_hold)
        self._busy_periods = 0
        # The ids of the inner queues in use, to refuse a factory that shares one (the
        # one empty set all schedulers share until a queue of a factory's comes).
        self._inner_ids: set[int] = _NOBODY
        # Eligible backlogged tenants by virtual start; rate-held ones by refill time.
        self._eligible: _TenantHeap[int] = _TenantHeap()
        self._blocked: _TenantHeap[float] = _TenantHeap(lazy=True)
        # Queues holding tasks with a TTL, by (a lower bound of) their next expiry.
        self._expiry: _TenantHeap[float] = _TenantHeap(lazy=True)
        # The TTL expiry of queued tasks whose queue cannot say it.
        self._expires: dict[Hashable, float] = {}
        # Running task id -> (its tenant, the queue that held it).
        self._running: dict[Hashable, tuple[_Tenant, _Tenant]] = {}
        self._size = 0
        self._retired = 0  # tenants dropped so far
        # CRITICAL tasks of every tenant, when they bypass the fair order. The
        # factory is tried once here either way, so a bad one fails at once.
        lane = self._new_queue(None, lane=critical_bypass)
        self._bypass = _Tenant(_BYPASS, lane, 0) if critical_bypass else None
        if self._bypass is not None:
            self._track_queue(lane)
        # What the latest pop changed, while unpop may still undo it.
        self._last_pop: _Dispatch | None = None

    # -- adding -----------------------------------------------------------

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Eviction | None:
        """Queue ``task`` under its tenant; O(log n_t + log T).

        ``enqueued_at`` (default: now, never later) backdates the task, so a
        requeued task keeps its age for aging and TTL. Returns ``None``, or the
        :class:`Eviction` a bounded custom inner queue made.

        Raises:
            InvalidTypeError: ``task`` is not a Task; the ``inner`` factory made
                something that is not a Queue.
            DuplicateTaskError: a task with this id is queued, or running (a
                requeued task must be ``release``-d before it is pushed again).
            QuotaExceededError: the tenant already has ``max_queued`` tasks waiting.
            InvalidArgumentError: ``enqueued_at`` NaN, infinite or in the future;
                the ``inner`` factory made a shared or non-empty queue.
            UnknownTenantError: ``strict_tenants`` and the tenant is not known.
            ReentrancyError: called from a callback of this scheduler.
        """
        if self._busy:
            raise self._reentered("push")
        if not isinstance(task, Task):
            raise InvalidTypeError(f"push() takes a Task, got {type(task).__name__} {shown(task)}")
        task_id = task.id
        index = self._index
        self._check_new(task_id)
        now = self._now()
        enqueued = now if enqueued_at is None else check_enqueued_at(enqueued_at, now)
        tenant = task.tenant if self._tenant_of is None else self._tenant_key(task)
        rec = self._tenants.get(tenant)
        is_new = rec is None
        if rec is None:
            rec = self._arrival(tenant)
        if rec.queued >= rec.max_queued:
            raise self._over_quota(rec.key, rec.queued, task_id)
        bypass = self._bypass
        holder = bypass if bypass is not None and task.priority <= Priority.CRITICAL else rec
        if is_new and self._idle.count:
            if self._last_pop is not None and self._idle.owing_lapsed(
                self._virtual, self._busy_periods
            ):
                # Starting a kept queue's tenants level ends unpop's turn: first let the
                # queue refuse the task if it would, so that a refused push changes nothing.
                self._inner_check(holder.inner, task, None if enqueued_at is None else enqueued)
            self._lapse_kept()
        # Without enqueued_at the inner queue reads the clock itself: a task it
        # received a moment after ``now`` is not a backdated one.
        eviction = holder.inner.push(task, enqueued_at=None if enqueued_at is None else enqueued)
        if eviction is not None and eviction.task is task:
            return eviction
        if is_new:
            self._admit(rec)
        if not holder.filed:
            index[task_id] = rec
        self._last_pop = None
        rec.queued += 1
        holder.waiting += 1
        self._size += 1
        if self._slack is not None and task.deadline is not None:
            self._slack.add(task)
        ttl = task.ttl
        if ttl is not None:
            # An expiry no later than the inner queue's (it may have read the clock later).
            expires = enqueued + ttl
            if not holder.timed:
                self._expires[task_id] = expires
            registered = self._expiry.key(holder)
            if registered is None or expires < registered:
                self._expiry.set(holder, expires)
        elif task.deadline is not None:
            # An inner queue that drops what misses its deadline by itself (a
            # DeadlineScheduler with on_miss="dead_letter") is asked, as for a TTL.
            due = holder.inner.next_wakeup()
            if due is not None:
                registered = self._expiry.key(holder)
                if registered is None or due < registered:
                    self._expiry.set(holder, due)
        if eviction is not None:
            # Only a queue of the user's evicts: its tasks are filed here by tenant.
            evicted = eviction.task
            self._forget_queued(evicted, self._index.pop(evicted.id), now)
        if rec not in self._eligible.members and rec not in self._blocked.members:
            self._place(rec, now)
        return eviction

    # -- taking -----------------------------------------------------------

    def rank(self, task: Task, enqueued_at: float) -> tuple[float, float] | None:
        """The key this scheduler orders ``task`` by among the tasks of its tenant and
        priority (and key, with ``inner=KeyShare(...)``), had it been pushed with
        ``enqueued_at``: ``(aged priority, enqueued_at)`` as its tenant's (or key's)
        :class:`PriorityQueue` ranks it, aging at :attr:`aging_rate` (such tasks go
        first in first out). Changes nothing. O(1).

        With ``inner=DeadlineScheduler`` (tenant queues of its own making, which
        run late tasks and do not age) it is ``(deadline, priority)`` as such a
        scheduler ranks it (no deadline: ``inf``; equal keys in push order).

        ``None`` where the order among such tasks depends on what else is held:
        tenant queues from an ``inner=`` factory (but a :class:`KeyShare`), a
        ``tenant_of`` (two tasks of one ``task.tenant`` may be different tenants
        here), or ``deadline_aware`` (a later task may be served first to meet its
        deadline).

        Which tenant is served next depends on the tenants' virtual start tags,
        ties going to the tenant backlogged first (and so, within a tenant, for its
        keys), so this key orders tasks within a tenant (or key) only.

        Raises:
            InvalidTypeError: ``task`` is not a Task, ``enqueued_at`` not a number.
            InvalidArgumentError: ``enqueued_at`` NaN or infinite; a priority beyond
                ``+-2**53``.
        """
        ranked = aged_rank(task, enqueued_at, self._aging_rate)
        if self._tenant_of is not None or self._slack is not None:
            return None
        if self._deadline_ranked:
            deadline = task.deadline
            return (math.inf if deadline is None else deadline, task.priority)
        if not self._ranked:
            return None
        return ranked

    def check_push(self, task: Task, *, enqueued_at: float | None = None) -> None:
        """Raise what :meth:`push` would raise to refuse ``task`` now (its id, an unknown
        tenant under ``strict_tenants``, the tenant's ``max_queued``), and change
        nothing: no tenant is made, no inner queue asked for. The inner queue that
        would take it is asked too, if it has a ``check_push`` of its own. O(1), plus
        ``tenant_of`` and that inner check.

        ``enqueued_at`` as :meth:`push` takes it; it is passed on to the
        ``check_push`` of an inner ``DeadlineScheduler`` or ``FairScheduler``
        (under ``on_miss="run_late"`` the former keeps a task coming back after
        its deadline), not to a ``check_push`` of the user's (a subclass's
        override included), which is asked with the task alone.

        Raises:
            InvalidTypeError, DuplicateTaskError, UnknownTenantError, QuotaExceededError,
            ReentrancyError: as :meth:`push` would (and what the inner check raises).
            InvalidArgumentError: ``enqueued_at`` NaN, infinite or in the future.
        """
        if self._busy:
            raise self._reentered("check_push")
        if not isinstance(task, Task):
            raise InvalidTypeError(
                f"check_push() takes a Task, got {type(task).__name__} {shown(task)}"
            )
        self._check_new(task.id)
        if enqueued_at is not None:
            enqueued_at = check_enqueued_at(enqueued_at, self._now())
        tenant = task.tenant if self._tenant_of is None else self._tenant_key(task)
        rec = self._tenants.get(tenant)
        if rec is not None:
            queued, limit = rec.queued, rec.max_queued
        else:
            if self._strict and tenant not in self._known:
                raise self._unknown(tenant)
            quota = self._settings(tenant)[1]
            queued = 0
            limit = _NO_LIMIT if quota is None or quota.max_queued is None else quota.max_queued
        if queued >= limit:
            raise self._over_quota(tenant, queued, task.id)
        bypass = self._bypass
        holder = bypass if bypass is not None and task.priority <= Priority.CRITICAL else rec
        if holder is not None:
            self._inner_check(holder.inner, task, enqueued_at)

    def _inner_check(self, inner: Queue, task: Task, enqueued_at: float | None) -> None:
        """Ask an inner queue's ``check_push`` (if it has one) whether it refuses ``task``;
        ``enqueued_at`` goes to the ``check_push`` of this package's schedulers that take
        it (a user's, even a subclass's own, is asked as the protocol has it: with the
        task alone)."""
        check = getattr(inner, "check_push", None)
        if check is None:
            return
        if enqueued_at is not None and getattr(type(inner), "check_push", None) in _AGED_CHECKS:
            check = functools.partial(check, enqueued_at=enqueued_at)
        self._calling(check, task)

    def _check_new(self, task_id: Hashable) -> None:
        """Refuse an id that is queued or running."""
        if task_id in self._index:
            raise DuplicateTaskError(f"a task with id {task_id!r} is already queued")
        if task_id in self._running:
            raise DuplicateTaskError(
                f"a task with id {task_id!r} is running; release() it before pushing it again"
            )

    def _over_quota(self, tenant: Hashable, queued: int, task_id: Hashable) -> QuotaExceededError:
        return QuotaExceededError(
            f"tenant {tenant!r} already has {queued} tasks queued, its quota's "
            f"max_queued; {task_id!r} was not added"
        )

    def _unknown(self, tenant: Hashable) -> UnknownTenantError:
        return UnknownTenantError(
            f"tenant {shown(tenant)} is not known: add_tenant() it, or name it in weights, "
            f"quotas or tenant_plan (strict_tenants is on; nothing changed)"
        )

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
            InvalidTypeError: ``where`` is neither ``None`` nor callable.
            ReentrancyError: called from a callback of this scheduler.
        """
        now = self._taking("pop", where)
        virtual = self._virtual  # as it was, should unpop() put the task back
        bypass = self._bypass
        if bypass is not None and bypass.waiting:
            task = self._from_bypass(where, take=True)
            if task is not None:
                rec = self._record_of(task)
                undo = (virtual, self._eligible.members.get(rec), self._blocked.members.get(rec))
                self._dispatch(rec, bypass, task, now, undo)
                return task
        eligible = self._eligible
        if self._slack:
            # Deadline-aware, with tasks with deadlines queued: the fair pick, or an urgent one.
            chosen = self._aware_choice(where, now, take=True)
            if chosen is None:
                self._last_pop = None
                return None
            rec, task, fairest, urgent = chosen
            undo = (virtual, eligible.members[rec], self._blocked.members.get(rec))
            self._virtual = fairest
            self._dispatch(rec, rec, task, now, undo, urgent=urgent)
            return task
        if where is None:
            while (top := eligible.top()) is not None:
                rec = top[2]
                found = rec.inner.pop()
                if found is not None:
                    self._virtual = top[0]
                    # An eligible tenant is never held by its rate quota, but may wait in
                    # the same heap for its queue (stalled): unpop puts that entry back.
                    undo = (virtual, top, self._blocked.members.get(rec))
                    self._dispatch(rec, rec, found, now, undo)
                    return found
                self._stall(rec, now)
            self._last_pop = None
            return None
        found_in = self._walk(where, take=True)
        if found_in is None:
            self._last_pop = None
            return None
        rec, found, fairest = found_in
        # V follows the smallest start tag among the eligible, even when the
        # predicate passed that tenant over.
        self._virtual = fairest
        undo = (virtual, self._eligible.members[rec], self._blocked.members.get(rec))
        self._dispatch(rec, rec, found, now, undo)
        return found

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
            ReentrancyError: called from a callback of this scheduler.
        """
        if self._busy:
            raise self._reentered("unpop")
        if not isinstance(task, Task):
            raise InvalidTypeError(f"unpop() takes a Task, got {type(task).__name__} {shown(task)}")
        last = self._last_pop
        if last is None or last[0] is not task:
            raise TaskStateError(unpop_refusal(task, "scheduler"))
        _, rec, holder, expires, start, cost, virtual, horizon, eligible, blocked, slack, urgent = (
            last
        )
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
        if not holder.filed:
            self._index[task_id] = rec
        if not self._size:
            self._busy_periods -= 1  # the pop ended one
        rec.queued += 1
        holder.waiting += 1
        self._size += 1
        rec.running -= 1
        rec.dispatched -= 1
        rec.dispatched_cost = cost
        rec.urgent -= urgent
        rec.start = start
        if slack is not None:
            assert self._slack is not None
            self._slack.put_back(slack)
        self._virtual = virtual
        self._horizon = horizon
        if rec.limiter is not None:  # the same one: a new quota ends unpop's turn
            rec.limiter.refund()
        self._eligible.restore(rec, eligible)
        self._blocked.restore(rec, blocked)
        if expires is not None:
            self._expires[task_id] = expires
        elif task.ttl is not None:
            expires = self._held_expiry(holder, task_id)
        if expires is not None:
            registered = self._expiry.key(holder)
            if registered is None or expires < registered:
                self._expiry.set(holder, expires)

    def take_along(self, tasks: Sequence[Task]) -> None:
        """Count ``tasks`` as dispatched now, alongside what the latest pop returned:
        tasks that start with it without having waited here (a gang's other members,
        which wait outside the queue until the whole gang is placed). All or nothing.

        Each is held to its tenant's quotas and charged as a pop charges it: it
        counts as running (``max_concurrent``) until :meth:`release`, takes a token
        of its tenant's rate quota, and its cost moves its tenant's fair-share tag.
        A tenant's own scheduler (``inner=`` one with ``take_along``, as a nested
        ``FairScheduler``) takes its tasks along too. After it, :meth:`unpop` no
        longer applies. O(k log T) for k tasks, plus the inner schedulers'.

        Raises:
            InvalidTypeError: ``tasks`` is not a sequence of Tasks.
            DuplicateTaskError: one of them is queued or running here, or two
                share an id.
            QuotaExceededError: a tenant's ``max_concurrent`` or rate quota has no
                room for all of its tasks now (for a rate quota, its ``ready_at``
                says when it will have).
            UnknownTenantError: ``strict_tenants`` and a tenant is not known.
            ReentrancyError: called from a callback of this scheduler.
            Nothing changes when it raises.
        """
        if self._busy:
            raise self._reentered("take_along")
        plan = self._along_plan(tasks)
        now = self._now()
        self._lapse_kept()
        for rec, is_new, own in plan:
            if is_new:
                self._admit(rec)
            inner_take_along = getattr(rec.inner, "take_along", None)
            if inner_take_along is not None:
                inner_take_along(own)  # checked by _along_plan: it takes them
            for task in own:
                self._running[task.id] = (rec, rec)
                rec.running += 1
                rec.dispatched += 1
                cost = task.cost
                rec.dispatched_cost += cost
                start = rec.start if rec.start >= self._virtual else self._virtual
                rec.start = start = start + int(cost * rec.scale)
                if start > self._horizon:
                    self._horizon = start
                if rec.limiter is not None:
                    taken = rec.limiter.try_acquire()
                    assert taken, "rate quota checked before taking along"
            self._place(rec, now)
        self._last_pop = None
        if not self._size:
            self._end_busy_period()  # they belong to the busy period the pop ended

    def _along_plan(self, tasks: object) -> list[tuple[_Tenant, bool, list[Task]]]:
        """Check ``take_along(tasks)`` whole and change nothing: for each tenant, its
        record (made, not yet registered, for a tenant without one), whether it is
        new, and its tasks. Raises what ``take_along`` raises."""
        plan = []
        for tenant, own in self._by_tenant(tasks, "take_along", new=True).items():
            rec = self._tenants.get(tenant)
            is_new = rec is None
            if rec is None:
                rec = self._arrival(tenant)  # raises for an unknown tenant under strict
            if rec.running + len(own) > rec.max_running:
                raise QuotaExceededError(
                    f"tenant {shown(tenant)} runs {rec.running} tasks of its max_concurrent "
                    f"{rec.max_running:g}: no room to take along {_ids(own)} (nothing changed)"
                )
            limiter = rec.limiter
            if limiter is not None and (
                len(own) > limiter.burst or not limiter.can_acquire(len(own))
            ):
                # With the latest pop theirs, they start with it: should it go back (an
                # unpop refunds its token), all of them at once must fit the burst.
                last = self._last_pop
                together = len(own) + (1 if last is not None and last[1] is rec else 0)
                raise QuotaExceededError(
                    f"tenant {shown(tenant)}'s rate quota has fewer than {len(own)} tokens "
                    f"now (burst {limiter.burst:g}): no room to take along {_ids(own)} "
                    f"(nothing changed)",
                    ready_at=limiter.ready_at(len(own)) if together <= limiter.burst else None,
                )
            inner_plan = getattr(rec.inner, "_along_plan", None)
            if inner_plan is not None:
                inner_plan(own)
            plan.append((rec, is_new, own))
        return plan

    def check_together(self, tasks: Sequence[Task]) -> None:
        """Refuse ``tasks`` that could never start together here, and change nothing: a
        gang's members, which must all start in one dispatch (:meth:`take_along`).

        Their tenants' quotas are read as they stand: more tasks of one tenant than
        its ``max_concurrent``, or than its rate quota's burst (its ``rate``), could
        never run at once, however long they waited. A tenant's own scheduler with a
        ``check_together`` (a nested ``FairScheduler``) is asked about its tasks too;
        for a tenant with none yet, the ``inner=`` factory makes one for the question,
        as a push would, and it is dropped after. Each task alone is
        :meth:`check_push`'s to judge. O(k) for k tasks, plus ``tenant_of``, the
        factory and the inner checks.

        Raises:
            InvalidTypeError: ``tasks`` is not a sequence of Tasks.
            DuplicateTaskError: two of them share an id.
            UnsatisfiableDemandError: a tenant's quota could never take all of its
                tasks at once.
            UnknownTenantError: ``strict_tenants`` and a tenant is not known.
            InvalidArgumentError, InvalidTypeError: the queue the ``inner=`` factory
                made for the question is refused, as a push would refuse it.
            ReentrancyError: called from a callback of this scheduler.
        """
        if self._busy:
            raise self._reentered("check_together")
        # Only a queue from the user's factory may have a check of its own: for a tenant
        # without a record, one is made (and dropped) to ask it, as a push would make it.
        own_factory = not (self._plain or self._shared or self._adopted)
        for tenant, own in self._by_tenant(tasks, "check_together", new=False).items():
            rec = self._tenants.get(tenant)
            if rec is None and own_factory:
                rec = self._arrival(tenant)  # not registered: nothing changes
            quota = rec.quota if rec is not None else self._settings(tenant)[1]
            if quota is not None:
                for limit, name in ((quota.max_concurrent, "max_concurrent"), (quota.rate, "rate")):
                    if limit is not None and len(own) > limit:
                        raise UnsatisfiableDemandError(
                            f"{len(own)} tasks of tenant {shown(tenant)} must start together "
                            f"({_ids(own)}), more than its {name} of {limit:g} allows at once; "
                            f"nothing changed"
                        )
            inner_check = None if rec is None else getattr(rec.inner, "check_together", None)
            if inner_check is not None:
                self._calling(inner_check, own)

    def _by_tenant(self, tasks: object, call: str, *, new: bool) -> dict[Hashable, list[Task]]:
        """``tasks`` (checked to be a sequence of Tasks, with distinct ids, and with ``new``
        none held here) by tenant, in order."""
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
            raise InvalidTypeError(f"{call}() takes a sequence of Tasks, got {shown(tasks)}")
        by_tenant: dict[Hashable, list[Task]] = {}
        seen: set[Hashable] = set()
        for task in tasks:
            if not isinstance(task, Task):
                raise InvalidTypeError(
                    f"{call}() takes Tasks, got {type(task).__name__} {shown(task)}"
                )
            if new:
                self._check_new(task.id)
            if task.id in seen:
                raise DuplicateTaskError(f"{call}() was given {task.id!r} twice")
            seen.add(task.id)
            tenant = task.tenant if self._tenant_of is None else self._tenant_key(task)
            by_tenant.setdefault(tenant, []).append(task)
        return by_tenant

    def peek(self, where: Predicate | None = None) -> Task | None:
        """The task ``pop(where)`` would dispatch, without dispatching it or taking a token.

        Complexity: as :meth:`pop`.

        Raises:
            InvalidTypeError: ``where`` is neither ``None`` nor callable.
            ReentrancyError: called from a callback of this scheduler.
        """
        now = self._taking("peek", where)
        bypass = self._bypass
        if bypass is not None and bypass.waiting:
            task = self._from_bypass(where, take=False)
            if task is not None:
                return task
        if self._slack:
            chosen = self._aware_choice(where, now, take=False)
            return None if chosen is None else chosen[1]
        eligible = self._eligible
        if where is None:
            while (top := eligible.top()) is not None:
                found = top[2].inner.peek()
                if found is not None:
                    return found
                self._stall(top[2], now)
            return None
        found_in = self._walk(where, take=False)
        return None if found_in is None else found_in[1]

    def release(self, task: Task) -> None:
        """Free the concurrency a dispatched ``task`` held (it completed, failed or is requeued).

        Call it once per task ``pop`` handed out, before pushing the task
        again. O(1); O(log T) when it frees a tenant held at ``max_concurrent``
        or drops a tenant left idle.

        Raises:
            InvalidTypeError: ``task`` is not a Task.
            OverReleaseError: this scheduler has no running task with that id
                (never handed out, or already released); nothing changes.
            ReentrancyError: called from a callback of this scheduler.
        """
        if self._busy:
            raise self._reentered("release")
        if not isinstance(task, Task):
            raise InvalidTypeError(
                f"release() takes a Task, got {type(task).__name__} {shown(task)}"
            )
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
        if not rec.running and not rec.queued:
            self._retire(rec, self._now())
        elif rec.running == rec.max_running - 1 or (rec.stalled and rec.queued):
            # Held at its concurrency limit (its bypass-lane tasks too), or its queue
            # gave nothing last time (a queue of its own may wait for this release).
            self._place(rec, self._now())
        if self._idle.count:
            self._idle.settle(self._virtual, self._now(), self._ended_periods())

    def remove(self, task_id: Hashable) -> Task:
        """Take a queued task out (cancel it) and return it; the inner ``remove`` + O(log T).

        Raises:
            UnknownTaskError: no queued task has this id (running ones are not queued).
            InvalidTypeError: ``task_id`` is unhashable.
            ReentrancyError: called from a callback of this scheduler.
        """
        if self._busy:
            raise self._reentered("remove")
        try:
            rec, holder = self._queued(task_id)
        except TypeError:
            raise InvalidTypeError(f"task ids are hashable, got {shown(task_id)}") from None
        except KeyError:
            raise UnknownTaskError(f"no queued task with id {shown(task_id)}") from None
        task = holder.inner.remove(task_id)
        self._last_pop = None
        if not holder.filed:
            del self._index[task_id]
        self._forget_queued(task, rec, self._now())
        return task

    # -- time -------------------------------------------------------------

    def expire(self) -> list[Task]:
        """Remove and return every queued task whose TTL has run out, earliest expiry first,
        and every task its inner queue dropped by itself (one that missed its deadline
        in a ``DeadlineScheduler(on_miss="dead_letter")``).

        Complexity: O(m log m + d log T) for m expired tasks of d tenants.

        Raises:
            ReentrancyError: called from a callback of this scheduler.
        """
        return [eviction.task for _, eviction in self._expire_evictions()]

    def expire_with_reasons(self) -> list[Eviction]:
        """:meth:`expire`, each task with the reason it left, as its tenant's queue
        gives it: ``Reason.TTL_EXPIRED`` from a priority queue (the only limit it
        drops a task for); from a ``DeadlineScheduler``, ``Reason.DEADLINE_MISSED``
        when the deadline came first. An ``inner=`` queue without this method is
        taken at its word for the task and the reason guessed: a deadline not after
        now, missed; otherwise the TTL. Complexity: as :meth:`expire`.

        Raises:
            ReentrancyError: called from a callback of this scheduler.
        """
        return [eviction for _, eviction in self._expire_evictions()]

    def _expire_evictions(self) -> list[tuple[float, Eviction]]:
        """:meth:`expire_with_reasons`, each with its expiry time (for a scheduler
        holding this one)."""
        if self._busy:
            raise self._reentered("expire")
        now = self._now()
        expiry = self._expiry
        due = expiry.pop_due(now)
        expired: list[tuple[float, Eviction]] = []
        touched: dict[_Tenant, None] = {}
        index = self._index
        tenants = self._tenants
        bypass = self._bypass
        expires_of = self._expires
        slack = self._slack
        for holder in due:
            inner: Any = holder.inner
            timed: list[tuple[float, Eviction]]
            if not holder.timed:
                timed = [
                    (expires_of.pop(eviction.task.id, now), eviction)
                    for eviction in expire_with_reasons(inner, now)
                ]
            elif type(inner) is FairScheduler:
                timed = inner._expire_evictions()
            else:  # a priority queue: a TTL is all it drops a task for
                timed = [
                    (expires, Eviction(task, Reason.TTL_EXPIRED))
                    for expires, task in inner._expire_timed()
                ]
            for expires, eviction in timed:
                task = eviction.task
                task_id = task.id
                if not holder.filed:
                    rec = index.pop(task_id)
                elif holder is not bypass:
                    rec = holder
                else:  # a shared lane: the tenant is the task's
                    rec = tenants[task.tenant]
                if slack is not None and task.deadline is not None:
                    slack.take(task)
                rec.queued -= 1
                holder.waiting -= 1
                self._size -= 1
                touched[rec] = None
                expired.append((expires, eviction))
            following = holder.inner.next_wakeup()
            if following is not None:
                expiry.set(holder, following)
        if expired:
            self._last_pop = None
            if not self._size:
                self._emptied()
        for rec in touched:
            self._left_queue(rec, now)
        if self._idle.count and self._last_pop is None:
            self._idle.settle(self._virtual, now, self._ended_periods())
        expired.sort(key=lambda pair: pair[0])
        return expired

    def next_wakeup(self) -> float | None:
        """When to call back: the next TTL expiry or rate-quota refill (maybe past), or ``None``.

        At a past or present expiry, call :meth:`expire`; at a refill, a
        :meth:`pop` may now dispatch a task that was held. Only tenants with
        queued tasks count. O(1) amortised.

        Raises:
            ReentrancyError: called from a callback of this scheduler.
        """
        if self._busy:
            raise self._reentered("next_wakeup")
        if self._last_pop is None and self._idle.count:
            # Nothing to undo: let lapsed debts and buckets of idle tenants go.
            self._idle.settle(self._virtual, self._now(), self._ended_periods())
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
        """Set a tenant's share (1e-9 to 1e9), or ``None`` for its quota's or the default.

        The tenant's lead over the virtual time is rescaled to the new weight,
        so the lag bounds hold with it. O(log T).

        Raises:
            InvalidArgumentError: ``weight`` outside 1e-9..1e9, NaN or
                infinite; ``tenant`` NaN.
            InvalidTypeError: ``tenant`` unhashable, ``weight`` not a number.
            UnknownTenantError: ``strict_tenants`` and the tenant is not known.
            ReentrancyError: called from a callback of this scheduler.
        """
        self._configurable(tenant)
        if weight is None:
            self._weights.pop(tenant, None)
        else:
            self._weights[tenant] = check_weight(weight, "weight")
        self._reconfigure(tenant)

    def set_plan(self, tenant: Hashable, plan: Hashable | None) -> None:
        """Move a tenant to another plan (a key of ``plans``), or ``None`` for the default plan.

        Running tasks stay running; the new limits apply to what is dispatched
        next. O(log T).

        Raises:
            UnknownPlanError: ``plan`` is not a known plan.
            InvalidTypeError: ``tenant`` or ``plan`` unhashable.
            InvalidArgumentError: ``tenant`` NaN.
            UnknownTenantError: ``strict_tenants`` and the tenant is not known.
            ReentrancyError: called from a callback of this scheduler.
        """
        self._configurable(tenant)
        if plan is None:
            self._tenant_plan.pop(tenant, None)
        else:
            self._tenant_plan[tenant] = _check_plan(plan, self._plans, "plan")
        self._reconfigure(tenant)

    def set_quota(self, tenant: Hashable, quota: Quota | None) -> None:
        """Give a tenant its own :class:`Quota` (over its plan's), or ``None`` to drop it. O(log T).

        Raises:
            InvalidTypeError: ``quota`` is not a Quota, ``tenant`` unhashable.
            InvalidArgumentError: ``tenant`` NaN.
            UnknownTenantError: ``strict_tenants`` and the tenant is not known.
            ReentrancyError: called from a callback of this scheduler.
        """
        self._configurable(tenant)
        if quota is None:
            self._quotas.pop(tenant, None)
        else:
            self._quotas[tenant] = _check_quota(quota, "quota")
        self._reconfigure(tenant)

    def add_tenant(
        self,
        tenant: Hashable,
        *,
        weight: float | None = None,
        plan: Hashable | None = None,
        quota: Quota | None = None,
    ) -> None:
        """Make ``tenant`` known (see ``strict_tenants``), with the settings given. O(log T).

        Each setting given replaces the tenant's own; those left ``None``
        keep what it had. Adding a known tenant only applies the settings.

        Raises:
            InvalidArgumentError: ``weight`` outside 1e-9..1e9, ``tenant`` NaN.
            InvalidTypeError: ``tenant`` unhashable, ``quota`` not a Quota,
                ``weight`` not a number.
            UnknownPlanError: ``plan`` is not a known plan.
            ReentrancyError: called from a callback of this scheduler.
        """
        if self._busy:
            raise self._reentered("add_tenant")
        _check_tenant(tenant, "tenant")
        checked_weight = None if weight is None else check_weight(weight, "weight")
        checked_plan = None if plan is None else _check_plan(plan, self._plans, "plan")
        checked_quota = None if quota is None else _check_quota(quota, "quota")
        if self._known is _NOBODY:
            self._known = set()  # its own, before anything is added to it
        self._known.add(tenant)
        if checked_weight is not None:
            self._weights[tenant] = checked_weight
        if checked_plan is not None:
            self._tenant_plan[tenant] = checked_plan
        if checked_quota is not None:
            self._quotas[tenant] = checked_quota
        self._reconfigure(tenant)

    def remove_tenant(self, tenant: Hashable) -> None:
        """Forget ``tenant``: it is no longer known, and its own weight, plan and quota go.

        Its running tasks may still be released; under ``strict_tenants`` it
        may not push again until added back. O(log T).

        Raises:
            UnknownTenantError: ``tenant`` is not known.
            TaskStateError: it has tasks queued (remove them, or let them run, first).
            InvalidTypeError: ``tenant`` unhashable.
            InvalidArgumentError: ``tenant`` NaN.
            ReentrancyError: called from a callback of this scheduler.
        """
        if self._busy:
            raise self._reentered("remove_tenant")
        _check_tenant(tenant, "tenant")
        if tenant not in self._known:
            raise UnknownTenantError(f"tenant {shown(tenant)} is not known: nothing to remove")
        rec = self._tenants.get(tenant)
        if rec is not None and rec.queued:
            raise TaskStateError(
                f"tenant {shown(tenant)} has {rec.queued} tasks queued; remove them (or let "
                f"them run) before removing the tenant (nothing changed)"
            )
        self._known.discard(tenant)
        self._weights.pop(tenant, None)
        self._tenant_plan.pop(tenant, None)
        self._quotas.pop(tenant, None)
        self._reconfigure(tenant)

    # -- looking ----------------------------------------------------------

    def why_waiting(self, task_id: Hashable) -> Waiting:
        """Why a queued task has not been dispatched, and until when. O(1) per level
        of nesting (a tenant queue that is a scheduler is asked too).

        ``EXPIRED`` if its TTL ran out (or, in a tenant queue that is a
        ``DeadlineScheduler`` expiring missed deadlines, at any level of
        nesting, its deadline passed);
        else ``CONCURRENCY_QUOTA`` while its
        tenant has ``max_concurrent`` tasks running (until a release: ``until``
        is ``None``); else ``RATE_QUOTA`` with ``until`` = when the tenant's
        bucket has a token again; else ``TURN`` (fairer tenants or its own
        tenant's more urgent tasks are ahead).

        Raises:
            UnknownTaskError: no queued task has this id.
            InvalidTypeError: ``task_id`` is unhashable.
        """
        try:
            rec, holder = self._queued(task_id)
        except TypeError:
            raise InvalidTypeError(f"task ids are hashable, got {shown(task_id)}") from None
        except KeyError:
            state = "is running, not waiting" if task_id in self._running else "is not queued"
            raise UnknownTaskError(f"task {shown(task_id)} {state}") from None
        now = self._now()
        inner: Any = holder.inner
        expires = (
            inner._expiry_of(task_id)  # (a deadline, per its policy, expires a task too)
            if isinstance(inner, DeadlineScheduler)
            else self._held_expiry(holder, task_id)
        )
        if (expires is not None and expires <= now) or (
            # A tenant's own scheduler knows its deadline queues' expiries too.
            isinstance(inner, FairScheduler)
            and inner.why_waiting(task_id).reason is WaitingReason.EXPIRED
        ):
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

        Covers the tenants with a record (tasks queued or running); idle
        tenants are dropped, with their counters. O(T).
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
                virtual_start=rec.start / _UNIT,
                urgent=rec.urgent,
            )
            for rec in records
        }
        return FairStats(
            queued=self._size,
            running=len(self._running),
            virtual_time=self._virtual / _UNIT,
            tenants=tenants,
            jain_index=jain_index(rec.dispatched_cost / rec.weight for rec in with_demand),
        )

    @property
    def virtual_time(self) -> float:
        """The scheduler's virtual time ``V``: where a newly eligible tenant starts."""
        return self._virtual / _UNIT

    @property
    def aging_rate(self) -> float:
        """Priority levels a task gains per second waited in the default tenant queues."""
        return self._aging_rate

    @property
    def strict_tenants(self) -> bool:
        """Whether only known tenants may push or be configured."""
        return self._strict

    def known_tenants(self) -> frozenset[Hashable]:
        """The known tenants: named in the configuration or added, and not removed. O(K)."""
        return frozenset(self._known)

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __contains__(self, task_id: object) -> bool:
        try:
            if not self._adopted:
                return task_id in self._index
            self._record_filed(task_id)
        except (TypeError, KeyError):
            return False
        return True

    def __repr__(self) -> str:
        return (
            f"FairScheduler(len={self._size}, running={len(self._running)}, "
            f"tenants={len(self._tenants)}, virtual_time={self.virtual_time!r})"
        )

    # -- persistence ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Its whole state as plain data; O(n + T log T) plus each tenant queue's snapshot.

        It holds the virtual time and every tag (exact integers), each
        tenant's counters, rate bucket and queue (through the queue's own
        ``snapshot()``), the weights, plans, quotas and known tenants as they
        are now, running tasks, the order of the heaps, the debts, buckets
        and nested schedulers kept for idle tenants, and (deadline-aware) the deadline
        index with its late marks. :meth:`load_snapshot` on a new
        scheduler built with the same configuration takes it back; see
        ``docs/persistence.md``. The pop :meth:`unpop` could undo is not kept.

        Raises:
            SnapshotError: a tenant's queue without snapshot support; an id or
                tenant a snapshot cannot carry.
        """
        return snapshot_fair(self)

    def load_snapshot(self, data: object) -> None:
        """Take on the state :meth:`snapshot` wrote; the same decisions follow.

        The scheduler must be new, empty and built with the same configuration
        (``default_weight``, ``plans``, ``default_plan``, ``critical_bypass``,
        ``strict_tenants``, ``deadline_aware`` and ``max_lead``, an ``inner``
        factory making queues alike); each
        tenant's queue is made by ``inner`` and loaded from its own snapshot.
        O(n log n + T log T). Everything is checked before anything changes.

        Raises:
            SnapshotError: an unknown format version, a missing, ill-typed or
                inconsistent field, another configuration, an inner queue without
                snapshot support, or a scheduler not new (nothing changes).
        """
        self._prepare_snapshot(data, "scheduler")[0]()

    def _prepare_snapshot(
        self, data: object, where: str
    ) -> tuple[Callable[[], None], dict[Hashable, Task]]:
        """Check ``data`` whole; return what loads it (it cannot fail) and the tasks it
        queues, by id (the very objects its queues will hold)."""
        return prepare_fair(self, data, where)

    # -- internals: tenants coming and going -----------------------------------

    def _arrival(self, key: Hashable) -> _Tenant:
        """A record for a tenant with no record yet, made but not yet registered.

        It resumes from what was kept of it when it was last dropped as idle,
        its queue too when that was kept (before a task goes into that queue,
        :meth:`_lapse_kept`).
        """
        if self._strict and key not in self._known:
            raise self._unknown(key)
        queue = None
        if self._idle.count:
            queue = self._idle.queue_of(key, self._virtual, self._now(), self._busy_periods)
        rec = _Tenant(key, self._new_queue(key) if queue is None else queue, self._virtual)
        kept = self._idle.get(key)
        if kept is not None:
            _, _, _, start, weight, limiter, quota = kept
            rec.start = max(start, self._virtual)
            rec.weight = weight
            # A bucket full again by now is what a new one would be (one not yet let go).
            rec.limiter = None if limiter is None or is_full(limiter, self._now()) else limiter
            rec.quota = quota
        self._configure(rec)
        return rec

    def _tenant_key(self, task: Task) -> Hashable:
        """``tenant_of(task)``, checked: a hashable value equal to itself; it may not call back."""
        assert self._tenant_of is not None
        return check_key(self._calling(self._tenant_of, task), f"tenant_of({task.id!r})")

    def _admit(self, rec: _Tenant) -> None:
        """Register a record :meth:`_arrival` made, now that its first task is in."""
        self._tenants[rec.key] = rec
        self._track_queue(rec.inner)
        if self._idle.count:
            self._idle.take(rec.key)

    def _track_queue(self, queue: Queue) -> None:
        """Note a tenant's queue in use, unless it is one this scheduler made (which no
        factory can hand to another tenant)."""
        if _made_here(queue):
            return
        if self._inner_ids is _NOBODY:
            self._inner_ids = set()  # its own, before anything is added to it
        self._inner_ids.add(id(queue))

    def _retire(self, rec: _Tenant, now: float) -> None:
        """Drop a tenant with nothing queued or running; keep what of it is still in force."""
        del self._tenants[rec.key]
        if not _made_here(rec.inner):
            self._inner_ids.discard(id(rec.inner))
        self._eligible.discard(rec)
        self._blocked.discard(rec)
        self._expiry.discard(rec)
        self._idle.keep(rec.key, rec.start, rec.weight, rec.limiter, rec.quota, self._virtual, now)
        until = _held_until(rec.inner)
        if until is not None:  # a scheduler of its own, with debts or buckets in force
            self._idle.keep_queue(rec.key, rec.inner, until, self._busy_periods, self._horizon)
        self._retired += 1
        if not self._tenants or not self._retired % _SHRINK_EVERY:
            # Give back the memory of tables that held many more tenants and tasks.
            for table in (self._tenants, self._running, self._expires):
                shrink(table)
            if not self._adopted:  # else the table is its holder's to look after
                shrink(self._index)
            shrink(self._inner_ids)
            self._eligible.shrink()
            self._blocked.shrink()
            self._expiry.shrink()
            self._idle.shrink()

    def _end_busy_period(self) -> None:
        """The last queued task was dispatched: the virtual time moves up to the largest
        tag given out.

        Every tenant then starts level in the next busy period, and the debts
        of tenants that left lapse (SFQ's rule at the end of a busy period).
        Only a dispatch ends one: tasks that leave unserved (removed, evicted,
        expired) leave the tags as they were, so that tasks a distributor takes
        out while a gate refuses them, and puts back when it opens, keep their
        tenants' shares. Tags stay within one task of ``V`` either way.
        """
        if self._virtual < self._horizon:
            self._virtual = self._horizon
        self._busy_periods += 1
        self._emptied()

    def _ended_periods(self) -> int:
        """The busy periods ended and past undoing (a pop that :meth:`unpop` may still
        undo and that emptied the scheduler ended one that is not yet)."""
        if self._last_pop is not None and not self._size:
            return self._busy_periods - 1
        return self._busy_periods

    def _lapse_kept(self) -> None:
        """Before a kept queue is used again: the tenants of those whose debts lapsed (a
        busy period ended, or the virtual time passed every tag given out when they were
        kept) start level. A pop :meth:`unpop` could still undo no longer can (it may be
        what made them lapse)."""
        idle = self._idle
        if idle.count and idle.owing_lapsed(self._virtual, self._busy_periods):
            self._last_pop = None
            idle.lapse_owing(self._virtual, self._busy_periods)

    def _held_until(self) -> float | None:
        """As a dropped tenant's queue (empty): when nothing it keeps is in force any
        more (``math.inf`` while a debt is), or ``None`` if nothing is now."""
        idle = self._idle
        if not idle.count:
            return None
        idle.settle(self._virtual, self._now(), self._ended_periods())
        return idle.until()

    def _would_hold(self) -> bool:
        """As a dropped tenant's queue: whether it would hold anything in force once its
        tenants start level (see :meth:`_start_level`); nothing changes."""
        idle = self._idle
        if not idle.count:
            return False
        return idle.in_force(self._level_virtual(), self._now(), self._busy_periods + 1)

    def _start_level(self) -> float | None:
        """As a dropped tenant's queue: its debts lapsed in the scheduler keeping it, so
        every tenant here starts level (SFQ's end of a busy period, one level down).
        Returns :meth:`_held_until`: a finite time or ``None``, as no debt is left."""
        self._last_pop = None
        self._virtual = self._horizon = self._level_virtual()
        self._busy_periods += 1  # what it keeps of its own dropped tenants lapses too
        return self._held_until()

    def _level_virtual(self) -> int:
        """The virtual time at which every tenant here is level: past every tag given out
        and every debt kept (one a weight change moved above the largest tag)."""
        return max(self._virtual, self._horizon, self._idle.max_debt())

    def _emptied(self) -> None:
        """Nothing is queued: give back the tables of a queue that held many tasks (O(1)
        if small)."""
        if not self._adopted:  # else the table holds the tasks of its holder's others
            self._index.clear()
        self._expires.clear()

    def _new_queue(self, tenant: Hashable, *, lane: bool = False) -> Queue:
        """A new, empty queue from the ``inner`` factory, checked; it may not call back.

        A tenant's queue that is a ``FairScheduler`` with the default queues and no
        tenant is adopted: it files its tasks in this scheduler's table (see
        :meth:`_adopt`); one filing in another scheduler's is refused. The ``lane`` is
        never adopted.
        """
        queue = self._calling(self._make_queue, tenant)
        kind = type(queue)
        if kind not in _QUEUE_TYPES:
            if not isinstance(queue, Queue):
                raise InvalidTypeError(
                    f"inner must return a Queue (push, pop, peek, remove, expire, next_wakeup, "
                    f"release, len, in), got {kind.__name__} {shown(queue)}"
                )
            _QUEUE_TYPES.add(kind)
        if id(queue) in self._inner_ids or (self._idle.count and self._idle.holds(queue)):
            raise InvalidArgumentError(
                f"inner must make a new queue for each tenant; it returned one that another "
                f"tenant holds ({kind.__name__}) for tenant {shown(tenant)} (nothing changed)"
            )
        if len(queue):
            raise InvalidArgumentError(
                f"inner must make an empty queue; it returned one holding {len(queue)} tasks "
                f"for tenant {shown(tenant)} (nothing changed)"
            )
        if kind is FairScheduler:
            scheduler: Any = queue
            if not lane and self._tenant_of is None and not self._shared:
                scheduler._adopt(self)
            if scheduler._adopted and scheduler._index is not self._index:
                raise InvalidArgumentError(
                    f"inner must make a new queue for each tenant; it returned a "
                    f"FairScheduler that files its tasks in another scheduler's table, for "
                    f"tenant {shown(tenant)} (nothing changed)"
                )
        return queue

    def _adopt(self, holder: FairScheduler) -> None:
        """File this scheduler's tasks in the id table of ``holder``, whose inner factory
        just made it, if it has the default queues and no lane, reads the clock ``holder``
        reads and holds no tenant (nothing queued or running, so no tenant queue yet);
        else change nothing.

        Its tenant queues (:class:`OwnedSharedIndexQueue`) then file their entries in
        ``holder``'s table; an entry leads to its queue and the queue to its
        record here, so neither scheduler keeps a table of its own (``holder`` reads a
        task's tenant from the task, and nothing calls ``tenant_of`` again). ``holder``
        is a scheduler that keeps its own table (with a factory of the user's) and reads
        tenants from ``task.tenant``; only it clears, shrinks or reorders the table.
        """
        table = holder._index
        if (
            (self._adopted and self._index is table)  # holder's already
            or not self._plain
            or self._bypass is not None
            or self._clock is not holder._clock
            or self._tenants
            # The key queues holder makes for the schedulers it adopts age at the default.
            or self._aging_rate != DEFAULT_AGING_RATE
        ):
            return
        now = holder._now
        make = holder._adopting
        if make is None:
            clock = self._clock
            make = holder._adopting = lambda tenant: OwnedSharedIndexQueue(
                clock, table, aging_rate=DEFAULT_AGING_RATE, now=now
            )
        self._index = table
        self._now = now
        self._shared = False
        self._adopted = True
        self._make_queue = make

    # -- internals: configuration -----------------------------------------------

    def _configurable(self, tenant: Hashable) -> None:
        """Refuse a configuration call from a callback, for a bad or (strict) unknown tenant."""
        if self._busy:
            raise self._reentered("the configuration")
        _check_tenant(tenant, "tenant")
        if self._strict and tenant not in self._known:
            raise UnknownTenantError(
                f"tenant {shown(tenant)} is not known: add_tenant() it first "
                f"(strict_tenants is on; nothing changed)"
            )

    def _configure(self, rec: _Tenant) -> None:
        """(Re)compute a tenant's plan, quota, weight and limits from the configuration."""
        plan, quota, weight = self._settings(rec.key)
        rec.start = self._rescaled(rec.start, rec.weight, weight)
        rec.weight = weight
        rec.scale = _UNIT_F if weight == 1.0 else _UNIT_F / weight  # one float for most
        rec.limiter = self._limiter(rec.limiter, rec.quota, quota)
        rec.quota = quota
        rec.plan = plan
        limits = quota if quota is not None else _UNLIMITED
        rec.max_running = _NO_LIMIT if limits.max_concurrent is None else limits.max_concurrent
        rec.max_queued = _NO_LIMIT if limits.max_queued is None else limits.max_queued

    def _settings(
        self,
        key: Hashable,
        configured: tuple[
            Mapping[Hashable, float], Mapping[Hashable, Quota], Mapping[Hashable, Hashable]
        ]
        | None = None,
    ) -> tuple[Hashable | None, Quota | None, float]:
        """A tenant's plan, quota and weight, as the configuration says now (or as the
        ``configured`` weights, quotas and tenant plans say)."""
        weights, quotas, tenant_plan = (
            (self._weights, self._quotas, self._tenant_plan) if configured is None else configured
        )
        plan = tenant_plan.get(key, self._default_plan)
        quota = quotas.get(key)
        if quota is None and plan is not None:
            quota = self._plans[plan]
        weight = weights.get(key)
        if weight is None:
            weight = quota.weight if quota is not None and quota.weight is not None else None
        if weight is None:
            weight = self._default_weight
        return plan, quota, weight

    def _rescaled(self, start: int, old: float, new: float) -> int:
        """A tag whose lead over the virtual time keeps its worth in cost at a new weight."""
        lead = start - self._virtual
        if new == old or lead <= 0:
            return start
        start = self._virtual + int(lead * (old / new))
        if start > self._horizon:
            self._horizon = start
        return start

    def _limiter(
        self, limiter: RateLimiter | None, old: Quota | None, quota: Quota | None
    ) -> RateLimiter | None:
        """The bucket under a new quota: the same one for the same rate and period."""
        if quota is None or quota.rate is None:
            return None
        if limiter is None or old is None or (old.rate, old.per) != (quota.rate, quota.per):
            return quota.rate_limiter(self._clock)
        return limiter

    def _reconfigure(self, tenant: Hashable) -> None:
        self._last_pop = None  # a new weight or quota: no longer the pop to undo
        rec = self._tenants.get(tenant)
        if rec is not None:
            self._configure(rec)
            self._eligible.discard(rec)
            self._blocked.discard(rec)
            self._place(rec, self._now())
            return
        kept = self._idle.get(tenant)
        if kept is not None:
            # Dropped, with a debt or a bucket in force: it changes as a record would.
            _, _, _, start, weight, limiter, quota = kept
            _, new_quota, new_weight = self._settings(tenant)
            start = self._rescaled(start, weight, new_weight)
            limiter = self._limiter(limiter, quota, new_quota)
            self._idle.take(tenant, queue=False)
            self._idle.keep(
                tenant, start, new_weight, limiter, new_quota, self._virtual, self._now()
            )

    # -- internals: the fair order ------------------------------------------------

    def _place(self, rec: _Tenant, now: float) -> None:
        """Put a tenant where it belongs: eligible (by start tag), held by rate, or out.

        Called whenever something that decides it changed: a dispatch, a
        release at the concurrency limit, a first task, an emptied queue, a
        refill time reached, a new configuration.
        """
        eligible = self._eligible
        blocked = self._blocked
        rec.stalled = False
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

    def _stall(self, rec: _Tenant, now: float) -> None:
        """A tenant's queue holds tasks but gave none: out of the order until it can.

        Its queue may give one later by itself (say at its ``next_wakeup``):
        then it waits for that time like a rate-held tenant; otherwise (only
        expired tasks left) until a push, a release or an ``expire``.
        """
        self._eligible.discard(rec)
        rec.stalled = True
        wakeup = rec.inner.next_wakeup()
        if wakeup is not None and wakeup > now:
            self._blocked.set(rec, wakeup)

    def _wake(self, now: float) -> None:
        """Re-place every tenant whose rate-quota refill (or queue's wake-up) time has come."""
        for rec in self._blocked.pop_due(now):
            self._place(rec, now)

    def _taking(self, call: str, where: Predicate | None) -> float:
        """What ``pop`` and ``peek`` do first: refuse a call back and a ``where`` that is
        not callable, wake the tenants whose rate quota refilled; return now."""
        if self._busy:
            raise self._reentered(call)
        if where is not None and not callable(where):
            raise _not_a_predicate(where)
        now = self._now()
        if self._blocked.members:
            self._wake(now)
        return now

    def _walk(self, where: Predicate, *, take: bool) -> tuple[_Tenant, Task, int] | None:
        """The fairest eligible tenant with a task satisfying ``where``: (tenant, task, the
        smallest tag). The task is taken out of its queue if ``take``; ``where`` may not
        call back."""
        self._busy = True
        try:
            walk = self._eligible.walk()
            fairest = None
            for key, rec in walk:
                if fairest is None:
                    fairest = key
                found = rec.inner.pop(where) if take else rec.inner.peek(where)
                if found is not None:
                    walk.close()
                    return rec, found, fairest
            return None
        finally:
            self._busy = False

    def _aware_choice(
        self, where: Predicate | None, now: float, *, take: bool
    ) -> tuple[_Tenant, Task, int, bool] | None:
        """What a deadline-aware pop serves: ``(tenant, task, smallest tag, urgent)``.

        The fair pick (as a plain pop would serve it) if serving it now is
        safe for every task with a deadline that can still make it; else the
        most urgent such task, if its tenant is eligible and within
        ``max_lead`` (and it satisfies ``where``). The task is taken out of
        its queue if ``take``.
        """
        eligible = self._eligible
        if where is None:
            while (top := eligible.top()) is not None:
                rec = top[2]
                fair = rec.inner.peek()
                if fair is not None:
                    fairest = top[0]
                    break
                self._stall(rec, now)
            else:
                return None
        else:
            found_in = self._walk(where, take=False)
            if found_in is None:
                return None
            rec, fair, fairest = found_in
        slack = self._slack
        assert slack is not None
        slack.settle(now)
        if not slack.is_safe(fair, now):
            urgent = self._urgent(slack.most_urgent(), where, fairest, take=take)
            if urgent is not None:
                return urgent[0], urgent[1], fairest, True
        if take:
            taken = rec.inner.pop() if where is None else self._calling(rec.inner.pop, where)
            if taken is None:  # pragma: no cover - a queue whose pop disagrees with its peek
                return None
            fair = taken
        return rec, fair, fairest, False

    def _urgent(
        self, task: Task | None, where: Predicate | None, fairest: int, *, take: bool
    ) -> tuple[_Tenant, Task] | None:
        """``task`` (the most urgent) or a task of its tenant with an earlier deadline, if
        that tenant may be served out of turn now; taken out of its queue if ``take``."""
        if task is None:
            return None
        rec = self._record_of(task)
        if self._bypass is not None and task.priority <= Priority.CRITICAL:
            return None  # in the bypass lane, which was tried first
        if rec not in self._eligible.members:
            return None  # held by a quota: a deadline does not lift it
        if rec.start - fairest > self._max_lead * rec.scale:
            return None  # it has taken all the lead it may
        deadline = task.deadline
        assert deadline is not None

        def match(candidate: Task) -> bool:
            # The task itself, or one ahead of it in deadline order: serving either
            # delays no task with a deadline that can still make it.
            other = candidate.deadline
            return (candidate is task or (other is not None and other < deadline)) and (
                where is None or where(candidate)
            )

        found = self._calling(rec.inner.pop if take else rec.inner.peek, match)
        return None if found is None else (rec, found)

    def _calling(self, callback: Callable[[_A], _R], argument: _A) -> _R:
        """``callback(argument)`` (a user's function, or an inner queue running one), with
        every call back into this scheduler refused meanwhile."""
        self._busy = True
        try:
            return callback(argument)
        finally:
            self._busy = False

    def _dispatch(
        self,
        rec: _Tenant,
        holder: _Tenant,
        task: Task,
        now: float,
        undo: tuple[int, _Entry | None, _Held | None],
        *,
        urgent: bool = False,
    ) -> None:
        """Account a task leaving the queue for a worker, then re-place its tenant.

        ``undo`` is what this pop changed before dispatching (the virtual time,
        the tenant's entries in the eligible and blocked heaps), kept with what
        this changes for :meth:`unpop`.
        """
        task_id = task.id
        if not holder.filed:
            del self._index[task_id]
        expires = None if task.ttl is None else self._expires.pop(task_id, None)
        slack = self._slack
        held = None if slack is None or task.deadline is None else slack.take(task)
        start = rec.start
        self._last_pop = (
            task,
            rec,
            holder,
            expires,
            start,
            rec.dispatched_cost,
            undo[0],
            self._horizon,
            undo[1],
            undo[2],
            held,
            urgent,
        )
        if urgent:
            rec.urgent += 1
        rec.queued -= 1
        holder.waiting -= 1
        self._size -= 1
        if not self._size & _SHRINK_MASK:
            # Draining past a multiple of 1024: give back what the index no longer needs.
            if not self._adopted:
                shrink(self._index)
            shrink(self._expires)
        self._running[task_id] = (rec, holder)
        rec.running += 1
        rec.dispatched += 1
        cost = task.cost
        rec.dispatched_cost += cost
        # A fair dispatch starts at S (>= V); a bypassing one is charged from V too.
        if start < self._virtual:
            start = self._virtual
        rec.start = start = start + int(cost * rec.scale)
        if start > self._horizon:
            self._horizon = start
        if not self._size:
            self._end_busy_period()
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
        record_of = self._record_of
        blocked = self._blocked

        def admissible(task: Task) -> bool:
            rec = record_of(task)
            return (
                rec.running < rec.max_running
                and rec not in blocked
                and (where is None or where(task))
            )

        return self._calling(bypass.inner.pop if take else bypass.inner.peek, admissible)

    def _forget_queued(self, task: Task, rec: _Tenant, now: float) -> None:
        """Drop a task of ``rec`` that left the queue without being dispatched (removed,
        evicted), out of the id table already."""
        task_id = task.id
        bypass = self._bypass
        holder = bypass if bypass is not None and task.priority <= Priority.CRITICAL else rec
        if task.ttl is not None:
            self._expires.pop(task_id, None)
        if self._slack is not None and task.deadline is not None:
            self._slack.take(task)
        rec.queued -= 1
        self._size -= 1
        holder.waiting -= 1
        if not self._size:
            self._emptied()
        self._left_queue(rec, now)
        if self._idle.count:
            self._idle.settle(self._virtual, now, self._ended_periods())

    def _left_queue(self, rec: _Tenant, now: float) -> None:
        """Tasks of ``rec`` left without a dispatch: re-place it, or drop it if now idle."""
        if not rec.queued and not rec.running:
            self._retire(rec, now)
        elif not rec.waiting or (
            rec not in self._eligible.members and rec not in self._blocked.members
        ):
            self._place(rec, now)

    def _queued(self, task_id: Hashable) -> tuple[_Tenant, _Tenant]:
        """The tenant of the queued task ``task_id``, and the record whose queue holds it. O(1).

        Raises:
            KeyError: no queued task has this id.
            TypeError: ``task_id`` is unhashable.
        """
        bypass = self._bypass
        if self._shared:
            task = queued_task(self._index, task_id)
            rec = self._tenants[task.tenant]
            lane = bypass is not None and task.priority <= Priority.CRITICAL
            return rec, bypass if lane and bypass is not None else rec
        held = self._index[task_id]
        if self._adopted or held.__class__ is not _Tenant:  # filed by the queue holding it
            rec = self._record_filed(task_id)
            return rec, rec
        lane = bypass is not None and task_id in bypass.inner
        return held, bypass if lane and bypass is not None else held

    def _record_filed(self, task_id: Hashable) -> _Tenant:
        """The tenant of a queued task that its queue filed in the table (an adopted
        scheduler's, or one of this scheduler's own when it is adopted). O(1).

        Raises:
            KeyError: no queued task of this scheduler has this id.
        """
        if self._adopted:
            # The table leads to the key queue, the queue to its record: this one's?
            queue = queue_holding(self._index, task_id)
            if type(queue) is not OwnedSharedIndexQueue:  # its holder's lane's, say
                raise KeyError(task_id)
            rec: _Tenant = queue.owner
            if self._tenants.get(rec.key) is not rec:
                raise KeyError(task_id)
            return rec
        # Handed to a scheduler this one adopted: the tenant is the task's.
        return self._tenants[queued_task(self._index, task_id).tenant]

    def _record_of(self, task: Task) -> _Tenant:
        """The tenant of a queued ``task``. O(1)."""
        if self._shared:
            return self._tenants[task.tenant]
        if self._adopted:
            return self._record_filed(task.id)
        held = self._index[task.id]
        return held if held.__class__ is _Tenant else self._record_filed(task.id)

    def _queued_tenants(self) -> list[tuple[Hashable, _Tenant]]:
        """Every queued task id with its tenant, in the order the index holds them. O(n)."""
        index = self._index
        if self._shared:
            tenants = self._tenants
            return [(task_id, tenants[queued_task(index, task_id).tenant]) for task_id in index]
        if not self._adopted:
            return [
                (task_id, held if held.__class__ is _Tenant else self._record_filed(task_id))
                for task_id, held in index.items()
            ]
        mine = set(map(id, self._tenants.values()))
        owners = [
            (task_id, getattr(queue_holding(index, task_id), "owner", None)) for task_id in index
        ]
        return [(task_id, rec) for task_id, rec in owners if rec is not None and id(rec) in mine]

    def _held_expiry(self, holder: _Tenant, task_id: Hashable) -> float | None:
        """When a task ``holder``'s queue holds expires (``None``: no TTL): as the queue
        says, or, for a queue that cannot say, as noted at push (no later than it). O(1)."""
        if holder.timed:
            inner: Any = holder.inner
            return inner._expiry_of(task_id)  # type: ignore[no-any-return]
        return self._expires.get(task_id)

    def _held_task(self, task_id: Hashable) -> Task:
        """The queued task ``task_id``, left where it is: for a scheduler or distributor
        holding this one. O(1) per level of nesting.

        Raises:
            KeyError: no queued task has this id, it is due to expire, or its tenant's
                queue (one of the user's own) cannot say which task it is without
                taking it out.
        """
        if self._shared:
            expires = self._expiry_of(task_id)
            if expires is not None and expires <= self._now():
                raise KeyError(task_id)  # due to expire: not one to take as it is
            return queued_task(self._index, task_id)
        inner = self._queued(task_id)[1].inner
        find = getattr(inner, "_held_task", None)
        if find is None:
            raise KeyError(task_id)
        return find(task_id)  # type: ignore[no-any-return]

    def _expiry_of(self, task_id: Hashable) -> float | None:
        """When the queued task ``task_id`` expires (``None``: no TTL), for a scheduler
        holding this one, and for snapshots. O(1).

        Raises:
            KeyError: no queued task has this id.
        """
        return self._held_expiry(self._queued(task_id)[1], task_id)

    def _reentered(self, what: str) -> ReentrancyError:
        return ReentrancyError(
            f"a callback (a where= predicate or the inner factory) called {what} of the "
            f"FairScheduler running it; callbacks may only read it (len, in, why_waiting, "
            f"stats). The call was refused and changed nothing"
        )


_QUEUE_TYPES: Final[weakref.WeakSet[type]] = weakref.WeakSet()
"""The types of inner queue found to be a ``Queue`` (checked once per type, not per call)."""

_NOBODY: Final[set[Any]] = set()
"""The empty set a scheduler's known tenants and inner queue ids start as, shared; never
added to (a scheduler makes a set of its own first)."""

_BYPASS: Final = object()
"""The key of the pseudo-tenant whose queue holds the CRITICAL tasks that bypass fairness."""

_TIMED_QUEUES: Final = (PriorityQueue, SharedIndexQueue, OwnedSharedIndexQueue, FairScheduler)
"""Inner queues (exactly these types) that say when each task expires (``_expiry_of``,
and ``_expire_timed``, or a scheduler's ``_expire_evictions``), so the scheduler keeps
no expiry per task for them."""


_SHARING_QUEUES: Final = (SharedIndexQueue, OwnedSharedIndexQueue, SharedIndexDeadlineScheduler)
"""Tenant queues (exactly these types) a scheduler makes itself, filing in its table."""


def _files_itself(queue: Queue) -> bool:
    """Whether a tenant's ``queue`` files its tasks in its scheduler's id table itself: a
    queue sharing the table, or a scheduler adopted (see ``FairScheduler._adopt``)."""
    kind = type(queue)
    if kind is FairScheduler:
        return queue._adopted  # type: ignore[attr-defined,no-any-return]
    return kind in _SHARING_QUEUES


def _held_until(queue: Queue) -> float | None:
    """For a dropped tenant's (empty) ``queue``: when nothing it keeps is in force any more,
    or ``None`` if nothing is now (only a scheduler of its own keeps anything)."""
    return queue._held_until() if isinstance(queue, FairScheduler) else None


def _start_level(queue: Queue) -> float | None:
    """A kept scheduler's tenants start level (see ``FairScheduler._start_level``)."""
    assert isinstance(queue, FairScheduler), "only a scheduler of its own is kept"
    return queue._start_level()


def _would_hold(queue: Queue) -> bool:
    """Whether a kept scheduler would hold anything then (``FairScheduler._would_hold``)."""
    assert isinstance(queue, FairScheduler), "only a scheduler of its own is kept"
    return queue._would_hold()


def _made_here(queue: Queue) -> bool:
    """Whether a tenant's ``queue`` is one its scheduler made itself (so no factory can
    hand it to another tenant: its id need not be kept to refuse that)."""
    return type(queue) in _SHARING_QUEUES


def _queue_maker(inner: object, clock: Clock, rate: float) -> Callable[[Hashable], Queue]:
    """``tenant -> a new queue`` from the ``inner`` factory, whichever arguments it takes
    (the default queues aging at ``rate``)."""
    if inner is None:
        return lambda tenant: PriorityQueue(clock, aging_rate=rate)
    if not callable(inner):
        raise InvalidTypeError(
            f"inner must be a callable taking the clock (and the tenant) and returning a "
            f"Queue, got {shown(inner)}"
        )
    make: Callable[..., Queue] = inner  # checked to be a Queue at each call
    if _positional_arity(inner) >= 2:
        return functools.partial(make, clock)
    return lambda tenant: make(clock)


def _shared_maker(
    clock: Clock, table: dict[Hashable, Any], inner: object, rate: float
) -> Callable[[Hashable], Queue]:
    """``tenant -> a new default queue`` (``inner`` ``None``, aging at ``rate``) or
    ``DeadlineScheduler`` filing its tasks in the scheduler's ``table``."""
    now = clock.now  # one bound method for every tenant's queue
    if inner is DeadlineScheduler:
        return lambda tenant: SharedIndexDeadlineScheduler(clock, table, now=now)
    return lambda tenant: SharedIndexQueue(clock, table, aging_rate=rate, now=now)


def _positional_arity(function: Callable[..., object]) -> int:
    """How many named positional parameters ``function`` takes (1 if it cannot be told)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for parameter in parameters if parameter.kind in kinds)


def _ids(tasks: list[Task]) -> str:
    """Tasks by id, for a message."""
    return ", ".join(repr(task.id) for task in tasks)


def _not_a_predicate(where: object) -> InvalidTypeError:
    return InvalidTypeError(
        f"where must be a function of a Task returning bool, or None; got {shown(where)}"
    )


def _mapping(value: object, name: str) -> Mapping[Hashable, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidTypeError(f"{name} must be a mapping, got {shown(value)}")
    return value


def _check_tenant(tenant: object, name: str) -> Hashable:
    return check_key(tenant, name)


def _check_quota(value: object, name: str) -> Quota:
    if not isinstance(value, Quota):
        raise InvalidTypeError(f"{name} must be a Quota, got {type(value).__name__} {shown(value)}")
    return value


def _check_plan(plan: object, plans: Mapping[Hashable, Quota], name: str) -> Hashable:
    try:
        known = plan in plans
    except TypeError:
        raise InvalidTypeError(
            f"{name} must be a plan name (hashable), got {shown(plan)}"
        ) from None
    if not known:
        allowed = ", ".join(repr(p) for p in plans) or "none defined"
        raise UnknownPlanError(f"{name} must be one of the plans ({allowed}), got {shown(plan)}")
    return plan


# The check_push methods that take enqueued_at (a subclass overriding one is asked without).
_AGED_CHECKS: Final = (DeadlineScheduler.check_push, FairScheduler.check_push)
