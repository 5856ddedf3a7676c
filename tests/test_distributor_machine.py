"""The Distributor under any sequence of operations: no task is ever lost or duplicated.

A Hypothesis state machine drives a Distributor (a fair scheduler with a
concurrency quota, skills, a pool gate, a rate gate, breakers, retries, TTLs,
leases) through submits, dispatches, completions, failures, heartbeats,
cancels, time, and workers added, removed and degraded. A model follows the
events the distributor emits; after every step the invariants say:

- every task ever submitted is in exactly one state, the one the events say,
  and the distributor's own books (queue, parked, retrying, leased) agree;
- no task is on two workers; the workers' in-flight tasks are the leased ones;
- no worker above its capacity, no pool above its size, no tenant above its
  ``max_concurrent`` quota;
- no task has more failed attempts than it is allowed;
- ``stats()`` counts every submitted task once.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable
from typing import Any

import attrs
import pytest
from distributor_support import stats_view
from hypothesis import assume, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from taskdist import (
    AdaptiveConcurrency,
    Backfill,
    BatchOptimizer,
    CapacityTracker,
    CircuitBreaker,
    ConcurrencyLimit,
    DeadlineScheduler,
    Debounce,
    Distributor,
    Escalation,
    Event,
    EventKind,
    FairScheduler,
    Gangs,
    Health,
    KeyedRateGate,
    KeyedRateLimiter,
    KeyShare,
    ManualClock,
    Pool,
    PoolGate,
    Preemption,
    PriorityQueue,
    Quota,
    RateGate,
    RateLimiter,
    Reason,
    Reservation,
    ResourcePool,
    RetryBudget,
    RetryPolicy,
    Route,
    Step,
    Task,
    TaskState,
    TaskStateError,
    Throttle,
    UnknownTaskError,
    UnsatisfiableDemandError,
    Worker,
)
from taskdist.dispatch._parking import GATES

TASK_IDS = [f"t{i}" for i in range(24)]
WORKER_IDS = ["w0", "w1", "w2", "w3"]
TENANTS = ["alice", "bob", "carol"]
QUOTA = 2  # alice's max_concurrent


class CallbackFailed(RuntimeError):
    """What a user's callback raised in the middle of a dispatch."""


MAX_ATTEMPTS = 3

# What each event kind says the task's state is now (None: not a state change).
EVENT_STATE = {
    EventKind.SUBMITTED: TaskState.QUEUED,
    EventKind.PARKED: TaskState.PARKED,
    EventKind.UNPARKED: TaskState.QUEUED,
    EventKind.DISPATCHED: TaskState.LEASED,
    EventKind.COMPLETED: TaskState.COMPLETED,
    EventKind.RETRY_SCHEDULED: TaskState.RETRYING,
    EventKind.REQUEUED: TaskState.QUEUED,
    EventKind.DEAD_LETTERED: TaskState.DEAD,
    EventKind.CANCELLED: TaskState.CANCELLED,
    EventKind.PREEMPTED: TaskState.QUEUED,
}

tasks = st.builds(
    lambda i, tenant, skill, db, api, ttl, attempts, cost: Task(
        TASK_IDS[i],
        tenant=tenant,
        requires={skill} if skill else set(),
        resources={**({"db": 1} if db else {}), **({"api_calls": 1} if api else {})},
        ttl=ttl,
        max_attempts=attempts,
        cost=cost,
    ),
    st.integers(0, len(TASK_IDS) - 1),
    st.sampled_from(TENANTS),
    st.sampled_from([None, None, "gpu", "rare"]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, None, 5.0, 40.0]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from([0.5, 1.0, 3.0]),
)


class DistributorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.pool = ResourcePool("db", size=2)
        self.limiter = RateLimiter(rate=2, per=1.0, burst=2, clock=self.clock)
        self.events: list[Event] = []
        self.distributor = Distributor(self.clock, **self.options(), **self.policies())
        self.model: dict[Hashable, TaskState] = {}
        self.allowed: dict[Hashable, int] = {}
        self.failures: Counter[Hashable] = Counter()
        # Tasks whose last lease expired: one late report of it may still come.
        self.lapsed: dict[Hashable, int] = {}
        self.workers: set[str] = set()
        self.seen = 0  # events applied so far
        # Calls of the flaky callback to go before it raises, once (None: it never does).
        self.fails_in: int | None = None
        # Dead tasks being redriven (each may be submitted again), and how many were: an
        # earlier incarnation stays counted dead in the stats.
        self.redriving: set[Hashable] = set()
        self.incarnations_dead = 0
        # The lease numbers of each task's life so far (attempt -> number), those of its
        # earlier lives, and every number given out: no two leases share one.
        self.lease_ids: dict[Hashable, dict[int, int]] = {}
        self.past_leases: dict[Hashable, list[int]] = {}
        self.every_lease_id: set[int] = set()

    def options(self) -> dict[str, Any]:
        """The Distributor's keyword arguments (a variant adds its policies)."""
        return {
            "queue": FairScheduler(self.clock, quotas={"alice": Quota(max_concurrent=QUOTA)}),
            "tracker": CapacityTracker(self.clock),
            "breaker": lambda _: CircuitBreaker(
                self.clock, minimum_calls=2, window_size=4, open_duration=7.0
            ),
            "retry": RetryPolicy(
                max_attempts=MAX_ATTEMPTS, base=0.5, cap=4.0, rng=random.Random(3)
            ),
            "gates": [PoolGate(self.pool), RateGate(self.limiter, "api_calls"), self.flaky()],
            "lease": 10.0,
            # Remember every finished id, so the model can ask about all.
            "dedup_window": 1e9,
            "rng": random.Random(7),
            "on_event": self.events.append,
        }

    def policies(self) -> dict[str, Any]:
        """Placement policies switched on (none here; a variant below adds some)."""
        return {}

    def flaky(self) -> KeyedRateGate:
        """A gate that never refuses, whose key function (a user's callback, asked at
        every admission of a task using the database) raises once when the dispatch
        rule below arms it."""

        def key(task: Task) -> Hashable:
            if self.fails_in is not None:
                if not self.fails_in:
                    self.fails_in = None
                    raise CallbackFailed(f"the key function failed on {task.id!r}")
                self.fails_in -= 1
            return "everyone"

        limiter = KeyedRateLimiter(rate=10_000, per=1.0, burst=10_000, clock=self.clock)
        return KeyedRateGate(limiter, "db", key=key)

    # -- following the events ------------------------------------------------

    def apply_events(self) -> None:
        for event in self.events[self.seen :]:
            self.follow(event)
        self.seen = len(self.events)

    def follow(self, event: Event) -> None:
        """Check one event against the model, then apply it."""
        state = EVENT_STATE.get(event.kind)
        if event.kind is EventKind.SUBMITTED:
            if event.task_id in self.redriving:
                assert self.model[event.task_id] is TaskState.DEAD, "redrove a live task"
                self.redriving.discard(event.task_id)
                self.incarnations_dead += 1
                earlier = self.lease_ids.pop(event.task_id, {}).values()
                if earlier:
                    self.past_leases.setdefault(event.task_id, []).extend(earlier)
                self.failures[event.task_id] = 0  # its attempts start from the first
            else:
                assert event.task_id not in self.model, "submitted twice"
        elif state is not None:
            before = self.model[event.task_id]
            assert not before.is_final, f"{event.task_id} left final state {before}"
            if event.kind is EventKind.UNPARKED:
                assert before is TaskState.PARKED
            if event.kind is EventKind.DISPATCHED:
                assert before is TaskState.QUEUED
        if event.kind in (EventKind.FAILED, EventKind.LEASE_EXPIRED):
            assert self.model[event.task_id] is TaskState.LEASED
            self.failures[event.task_id] += 1
        if event.kind is EventKind.LEASE_EXPIRED:
            assert event.attempt is not None
            self.lapsed[event.task_id] = event.attempt
        if state is not None:
            self.model[event.task_id] = state
            if state.is_final:
                self.lapsed.pop(event.task_id, None)

    def leased(self) -> list[Hashable]:
        return sorted(i for i, s in self.model.items() if s is TaskState.LEASED)

    def live(self) -> list[Hashable]:
        return sorted(i for i, s in self.model.items() if not s.is_final)

    # -- rules -----------------------------------------------------------------

    @precondition(lambda self: len(self.workers) < len(WORKER_IDS))
    @rule(data=st.data(), slots=st.integers(0, 3), gpu=st.booleans())
    def add_worker(self, data: st.DataObject, slots: int, gpu: bool) -> None:
        worker_id = data.draw(st.sampled_from([w for w in WORKER_IDS if w not in self.workers]))
        self.distributor.add_worker(
            Worker(worker_id, capacity=slots, skills={"gpu"} if gpu else set())
        )
        self.workers.add(worker_id)
        self.apply_events()

    @precondition(lambda self: self.workers)
    @rule(data=st.data())
    def remove_worker(self, data: st.DataObject) -> None:
        worker_id = data.draw(st.sampled_from(sorted(self.workers)))
        on_it = set(self.distributor.tracker.tasks_on(worker_id))
        returned = self.distributor.remove_worker(worker_id)
        self.workers.discard(worker_id)
        assert set(returned) == on_it
        self.apply_events()
        for task in returned:
            assert self.model[task.id] in (TaskState.QUEUED, TaskState.DEAD)

    @precondition(lambda self: self.workers)
    @rule(data=st.data(), health=st.sampled_from(list(Health)))
    def set_health(self, data: st.DataObject, health: Health) -> None:
        worker_id = data.draw(st.sampled_from(sorted(self.workers)))
        self.distributor.set_health(worker_id, health)
        self.apply_events()

    @rule(task=tasks)
    def submit(self, task: Task) -> None:
        known = task.id in self.model
        result = self.distributor.submit(task)
        assert result.accepted is not known
        if known:
            assert result.state is self.model[task.id]
        else:
            self.allowed[task.id] = task.max_attempts or MAX_ATTEMPTS
        self.apply_events()

    @rule(limit=st.sampled_from([None, 1, 2]))
    def dispatch(self, limit: int | None) -> None:
        before = dict(self.model)
        made = self.distributor.dispatch(limit)
        self.apply_events()
        assert limit is None or len(made) <= limit
        ids = [a.task.id for a in made]
        assert len(ids) == len(set(ids)), "a task dispatched twice in one call"
        for assignment in made:
            assert before.get(assignment.task.id) is not TaskState.LEASED
            assert self.model[assignment.task.id] is TaskState.LEASED
            assert assignment.worker_id in self.workers
            assert assignment.lease_id is not None
            assert assignment.lease_id not in self.every_lease_id, "a lease number given twice"
            self.every_lease_id.add(assignment.lease_id)
            lives = self.lease_ids.setdefault(assignment.task.id, {})
            lives[assignment.attempt] = assignment.lease_id

    @rule(after=st.integers(0, 8))
    def dispatch_while_a_callback_fails_once(self, after: int) -> None:
        """A user's callback raises after ``after`` calls: the dispatch raises it, and
        every placement it made before is taken back, as if never made. (A dispatch
        the callback lets through is checked as the dispatch rule checks it.)"""
        leased = set(self.leased())
        self.fails_in = after
        try:
            self.dispatch(None)
        except CallbackFailed:
            self.fails_in = None
            self.apply_events()
            assert set(self.leased()) <= leased, "a failed dispatch placed a task"
        finally:
            self.fails_in = None

    @precondition(lambda self: any(s is TaskState.LEASED for s in self.model.values()))
    @rule(data=st.data(), duration=st.sampled_from([None, 0.0, 2.0]))
    def complete(self, data: st.DataObject, duration: float | None) -> None:
        task_id = data.draw(st.sampled_from(self.leased()))
        assert self.distributor.complete(task_id, duration=duration) is TaskState.COMPLETED
        self.apply_events()
        assert self.model[task_id] is TaskState.COMPLETED

    @precondition(lambda self: any(s is TaskState.LEASED for s in self.model.values()))
    @rule(data=st.data(), retryable=st.booleans())
    def fail(self, data: st.DataObject, retryable: bool) -> None:
        task_id = data.draw(st.sampled_from(self.leased()))
        state = self.distributor.fail(task_id, error=TimeoutError("slow"), retryable=retryable)
        self.apply_events()
        assert self.model[task_id] is state
        assert state in (TaskState.RETRYING, TaskState.DEAD)
        if not retryable:
            assert state is TaskState.DEAD

    @precondition(lambda self: any(s is TaskState.LEASED for s in self.model.values()))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.leased()))
        expiry = self.distributor.heartbeat(task_id)
        assert expiry == self.clock.now() + 10.0

    @precondition(lambda self: any(not s.is_final for s in self.model.values()))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.live()))
        self.distributor.cancel(task_id)
        self.apply_events()
        assert self.model[task_id] is TaskState.CANCELLED

    @rule(dt=st.sampled_from([0.1, 0.7, 3.0, 11.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)
        self.distributor.tick()
        self.apply_events()
        wake = self.distributor.next_wakeup()
        assert wake is None or wake > self.clock.now(), "after a tick, nothing is due now"

    @precondition(lambda self: self.lapsed)
    @rule(data=st.data(), complete=st.booleans(), by_number=st.booleans())
    def late_report_of_an_expired_lease(
        self, data: st.DataObject, complete: bool, by_number: bool
    ) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.lapsed, key=str)))
        attempt = self.lapsed.pop(task_id)
        before = self.model[task_id]
        # Named by its attempt, or by its number (a lease made by dispatch has one).
        number = self.lease_ids.get(task_id, {}).get(attempt) if by_number else None
        named: dict[str, int] = {"attempt": attempt} if number is None else {"lease_id": number}
        if complete:
            assert self.distributor.complete(task_id, **named) is TaskState.COMPLETED
        else:
            assert self.distributor.fail(task_id, error="late", **named) is before
        self.apply_events()
        assert self.model[task_id] is (TaskState.COMPLETED if complete else before)
        assert (task_id in self.distributor) is not complete
        # A second late report is refused.
        with pytest.raises(TaskStateError):
            self.distributor.fail(task_id, error="later still", attempt=attempt)

    @precondition(
        lambda self: any(not self.model[task_id].is_final for task_id in self.past_leases)
    )
    @rule(data=st.data(), verb=st.sampled_from(["complete", "fail", "heartbeat", "requeue"]))
    def report_of_an_earlier_life(self, data: st.DataObject, verb: str) -> None:
        """A run of a redriven task's earlier life reports, naming its lease: it reaches
        nothing, whatever the task's new life is doing (leased, under the same attempt
        number, or not)."""
        self.dispatch(None)  # (so that the new life is leased, as a rule)
        live = [t for t in self.past_leases if not self.model[t].is_final]
        assume(live)
        task_id = data.draw(st.sampled_from(sorted(live, key=str)))
        number = data.draw(st.sampled_from(self.past_leases[task_id]))
        d = self.distributor
        note_event(f"a report of an earlier life, the new one {self.model[task_id].value}")
        calls = {
            "complete": lambda: d.complete(task_id, lease_id=number),
            "fail": lambda: d.fail(task_id, error="late", lease_id=number),
            "heartbeat": lambda: d.heartbeat(task_id, lease_id=number),
            "requeue": lambda: d.requeue(task_id, lease_id=number),
        }
        before, events = stats_view(d), len(self.events)
        with pytest.raises(TaskStateError):
            calls[verb]()
        assert stats_view(d) == before and len(self.events) == events

    @precondition(lambda self: len(self.distributor.dlq) > 0)
    @rule(data=st.data())
    def redrive(self, data: st.DataObject) -> None:
        """Dead tasks submitted again: each leaves the DLQ for the queue, or stays there."""
        d = self.distributor
        held = [entry.task.id for entry in d.dlq]
        chosen = data.draw(st.lists(st.sampled_from(held), unique=True, min_size=1, max_size=3))
        # A gang member takes the members of its gang in the DLQ along.
        for task_id in list(chosen):
            gang = d.dlq[task_id].task.gang
            if gang is not None:
                chosen += [
                    e.task.id for e in d.dlq if e.task.gang == gang and e.task.id not in chosen
                ]
        self.redriving = set(chosen)
        try:
            report = d.redrive(chosen)
            self.apply_events()
        finally:
            self.redriving = set()
        taken = [entry.task.id for entry in report.redriven]
        stayed = [entry.task.id for entry, _ in report.refused]
        assert sorted(taken + stayed, key=str) == sorted(chosen, key=str)
        for task_id in taken:
            assert task_id not in d.dlq or self.model[task_id] is TaskState.DEAD
        for task_id in stayed:
            assert task_id in d.dlq and self.model[task_id] is TaskState.DEAD

    @rule(task_id=st.sampled_from(TASK_IDS))
    def bad_completion_changes_nothing(self, task_id: str) -> None:
        state = self.model.get(task_id)
        assume(state is not TaskState.LEASED and task_id not in self.lapsed)
        before = self.distributor.stats()
        error = UnknownTaskError if state is None else TaskStateError
        with pytest.raises(error):
            self.distributor.complete(task_id)
        after = self.distributor.stats()
        assert after.by_state == before.by_state and after.dispatched == before.dispatched

    def teardown(self) -> None:
        """Liveness: with a worker that can run anything, every task ends, none stays stuck."""
        d = self.distributor
        d.add_worker(Worker("any", capacity=4, skills={"gpu", "rare"}))
        for worker_id in self.workers:
            d.set_health(worker_id, Health.HEALTHY)
        for _ in range(400):
            if not len(d):
                break
            for assignment in d.dispatch():
                d.complete(assignment.task.id)
            wake = d.next_wakeup()
            self.clock.set(max(self.clock.now(), wake if wake is not None else 0.0) + 0.5)
        self.apply_events()
        stuck = {i: d.explain(i) for i in self.live()}
        assert not stuck, f"tasks never finished: {stuck}"

    # -- invariants --------------------------------------------------------------

    @invariant()
    def every_task_is_in_exactly_the_state_the_events_say(self) -> None:
        d = self.distributor
        for task_id, state in self.model.items():
            assert d.state_of(task_id) is state, task_id
        counts = Counter(self.model.values())
        counts[TaskState.DEAD] += self.incarnations_dead  # redriven: counted dead before
        stats = d.stats()
        assert stats.submitted == len(self.model) + self.incarnations_dead
        assert sum(stats.by_state.values()) == stats.submitted
        for state in TaskState:
            assert stats.by_state[state] == counts[state], state
        assert len(d.queue) == counts[TaskState.QUEUED]
        assert len(d) == sum(1 for s in self.model.values() if not s.is_final)

    @invariant()
    def leased_tasks_are_each_on_one_worker_within_capacity(self) -> None:
        tracker = self.distributor.tracker
        on_workers: list[Hashable] = []
        for state in tracker.workers():
            on_it = tracker.tasks_on(state.id)
            on_workers += [t.id for t in on_it]
            for name, amount in state.load.items():
                assert amount <= state.capacity.get(name, 0.0) + 1e-9
            # Its load is exactly what its tasks demand: nothing leaked on any path.
            assert state.in_flight == len(on_it)
            slots = sum(t.resources.get("slots", 1.0) for t in on_it)
            assert state.load.get("slots", 0.0) == pytest.approx(slots, abs=1e-9)
        assert sorted(on_workers) == self.leased()
        assert sorted(a.task.id for a in self.distributor.leases()) == self.leased()

    @invariant()
    def gates_and_quotas_are_never_exceeded(self) -> None:
        leased = [a.task for a in self.distributor.leases()]
        using_db = sum(1 for t in leased if "db" in t.resources)
        assert using_db <= 2
        assert self.pool.in_use == using_db
        assert sum(1 for t in leased if t.tenant == "alice") <= QUOTA
        queue = self.distributor.queue
        # A fair scheduler's quota books follow the leases exactly (a gang's members
        # other than its leader too: the scheduler takes them along).
        if isinstance(queue, FairScheduler):
            running = Counter(t.tenant for t in leased)
            tenants = queue.stats().tenants
            assert {k: v.running for k, v in tenants.items() if v.running} == dict(running)

    @invariant()
    def no_task_fails_more_often_than_allowed(self) -> None:
        for task_id, failed in self.failures.items():
            assert failed <= self.allowed[task_id]


DistributorMachine.TestCase.settings = settings(DistributorMachine.TestCase.settings)
TestDistributorMachine = DistributorMachine.TestCase


class ScoutingDistributorMachine(DistributorMachine):
    """The machine above over a ``PriorityQueue``, which ranks tasks: the tasks the
    gates refuse wait in classes, and a gate opening sends only the first of each
    back to the queue (its scout). The invariants above hold (but the tenant quota,
    which a ``PriorityQueue`` does not keep), no task is left waiting at the end,
    and the books of the classes agree with the lot.
    """

    def options(self) -> dict[str, Any]:
        options = super().options()
        options["queue"] = PriorityQueue(self.clock, aging_rate=0.2)
        # A tighter rate limit, so that many tasks wait on it in a few classes.
        self.limiter = RateLimiter(rate=0.5, per=1.0, burst=1, clock=self.clock)
        options["gates"] = [PoolGate(self.pool), RateGate(self.limiter, "api_calls"), self.flaky()]
        return options

    @rule(
        first=st.integers(0, len(TASK_IDS) - 1),
        count=st.integers(2, 6),
        priority=st.sampled_from([1, 2]),
        tenant=st.sampled_from(TENANTS[:2]),
        db=st.booleans(),
        key=st.sampled_from([None, "k1", "k2"]),
    )
    def submit_a_class(
        self, first: int, count: int, priority: int, tenant: str, db: bool, key: str | None
    ) -> None:
        """Several tasks alike (one class behind the gates), a moment apart."""
        for i in range(count):
            task_id = TASK_IDS[(first + i) % len(TASK_IDS)]
            if task_id in self.model:
                continue
            resources = {"api_calls": 1, **({"db": 1} if db else {})}
            self.distributor.submit(
                Task(task_id, priority=priority, tenant=tenant, resources=resources, key=key)
            )
            self.allowed[task_id] = MAX_ATTEMPTS
            self.clock.advance(0.01)
        self.apply_events()

    @invariant()
    def gates_and_quotas_are_never_exceeded(self) -> None:
        leased = [a.task for a in self.distributor.leases()]
        assert self.pool.in_use == sum(1 for t in leased if "db" in t.resources) <= 2

    @invariant()
    def scouts_wait_outside_their_class_and_gated_tasks_in_one(self) -> None:
        d = self.distributor
        scouts = d._scouts
        assert scouts is not None
        lot = d._lot
        for task_id in scouts.ids():
            assert d.state_of(task_id) in (TaskState.QUEUED, TaskState.PARKED), task_id
            assert lot.group_of(task_id) is not GATES, task_id
        for task_id in lot.ids():
            gated = lot.group_of(task_id) is GATES
            assert (lot.class_of(task_id) is not None) == gated, task_id


ScoutingDistributorMachine.TestCase.settings = settings(
    ScoutingDistributorMachine.TestCase.settings
)
TestScoutingDistributorMachine = ScoutingDistributorMachine.TestCase


def weighted_fair(clock: ManualClock, **options: Any) -> FairScheduler:
    """A ``FairScheduler`` with bob weighted 2 and alice capped at ``QUOTA`` running
    (and ``options``)."""
    return FairScheduler(
        clock, weights={TENANTS[1]: 2.0}, quotas={"alice": Quota(max_concurrent=QUOTA)}, **options
    )


class OverWeightedFair(DistributorMachine):
    """A machine's Distributor over ``weighted_fair``, its tenant quota an invariant
    (put first among a machine's bases, ahead of the machine it varies)."""

    def options(self) -> dict[str, Any]:
        options = super().options()
        options["queue"] = weighted_fair(self.clock)
        return options

    @invariant()
    def gates_and_quotas_are_never_exceeded(self) -> None:
        DistributorMachine.gates_and_quotas_are_never_exceeded(self)


class FairScoutingDistributorMachine(OverWeightedFair, ScoutingDistributorMachine):
    """The scouting machine over a ``FairScheduler`` of its own tenant queues, which
    ranks tasks within a tenant: scouts go back by class, tenants are served by
    weight, and the tenant quota holds, as every invariant above says.
    """


FairScoutingDistributorMachine.TestCase.settings = settings(
    FairScoutingDistributorMachine.TestCase.settings
)
TestFairScoutingDistributorMachine = FairScoutingDistributorMachine.TestCase


class KeyShareScoutingDistributorMachine(FairScoutingDistributorMachine):
    """The fair scouting machine with each tenant's turns shared among its keys
    (``inner=KeyShare(...)``), which still ranks tasks: scouts go back by class (the
    key is part of it), and the keys' quota holds as the tenant's does."""

    def options(self) -> dict[str, Any]:
        options = super().options()
        # Every key of a tenant runs one task at a time (None is a key too).
        keys = KeyShare(
            weights={"k2": 3.0}, plans={"one": Quota(max_concurrent=1)}, default_plan="one"
        )
        options["queue"] = weighted_fair(self.clock, inner=keys)
        return options

    @rule(task=tasks, key=st.sampled_from(["k1", "k2"]))
    def submit_with_a_key(self, task: Task, key: str) -> None:
        self.submit(attrs.evolve(task, key=key))

    @invariant()
    def each_key_of_a_tenant_runs_one_task_at_most(self) -> None:
        leased = [a.task for a in self.distributor.leases()]
        assert max(Counter((t.tenant, t.key) for t in leased).values(), default=0) <= 1


KeyShareScoutingDistributorMachine.TestCase.settings = settings(
    KeyShareScoutingDistributorMachine.TestCase.settings
)
TestKeyShareScoutingDistributorMachine = KeyShareScoutingDistributorMachine.TestCase


class KeyedScoutingDistributorMachine(ScoutingDistributorMachine):
    """The scouting machine with a bucket of its own for each tenant as well: a class
    a rate gate refuses stays parked until that gate would admit it (its bucket
    refills), and is woken then, not at every other refill. The invariants above
    hold, every task still ends, a class kept parked until a time still ahead is one
    the gates refuse now, and the host hears of the soonest such time.
    """

    def options(self) -> dict[str, Any]:
        options = super().options()
        # Burst 2 in both, so that a task may ask two units.
        self.limiter = RateLimiter(rate=0.5, per=1.0, burst=2, clock=self.clock)
        self.buckets = KeyedRateLimiter(rate=0.3, per=1.0, burst=2, clock=self.clock)
        options["gates"] = [
            PoolGate(self.pool),
            RateGate(self.limiter, "api_calls"),
            KeyedRateGate(self.buckets, "api_calls"),
            self.flaky(),
        ]
        return options

    @rule(
        i=st.integers(0, len(TASK_IDS) - 1),
        tenant=st.sampled_from(TENANTS),
        api=st.sampled_from([1, 2]),
    )
    def submit_to_a_bucket(self, i: int, tenant: str, api: int) -> None:
        """A task asking one or two units of its tenant's bucket (and the shared one)."""
        self.submit(Task(TASK_IDS[i], tenant=tenant, resources={"api_calls": api}))

    @invariant()
    def a_class_parked_until_a_time_would_be_refused_until_then(self) -> None:
        d = self.distributor
        lot = d._lot
        gates = d._gates
        assert gates is not None
        now = self.clock.now()
        member = {
            lot._class_of[task_id][0]: task_id
            for task_id in lot.ids()
            if lot.class_of(task_id) is not None
        }
        armed, self.fails_in = self.fails_in, None  # the flaky key asked, not failing
        try:
            for key, (due, _) in lot._due.items():
                task = lot.get(member[key])
                assert task is not None
                # A limiter admits a hair early, where only float rounding makes its time
                # later than now (clocks advanced in steps of 0.1 land there): not a wait.
                if due > now + 1e-9 * (1.0 + abs(now)):
                    assert not gates.can_acquire(task), f"{task.id!r} parked until {due}, passes"
        finally:
            self.fails_in = armed
        if lot._due:
            note_event("a class parked until its bucket refills")
            wake = d.next_wakeup()
            assert wake is not None and wake <= max(min(due for due, _ in lot._due.values()), now)


KeyedScoutingDistributorMachine.TestCase.settings = settings(
    KeyedScoutingDistributorMachine.TestCase.settings
)
TestKeyedScoutingDistributorMachine = KeyedScoutingDistributorMachine.TestCase


class FairKeyedScoutingDistributorMachine(OverWeightedFair, KeyedScoutingDistributorMachine):
    """The machine above over a ``FairScheduler`` with a weight and a tenant quota:
    a tenant whose tasks wait for its bucket is out of the scheduler until it
    refills, and the quota still holds."""


FairKeyedScoutingDistributorMachine.TestCase.settings = settings(
    FairKeyedScoutingDistributorMachine.TestCase.settings
)
TestFairKeyedScoutingDistributorMachine = FairKeyedScoutingDistributorMachine.TestCase


class ShutGateDistributorMachine(ScoutingDistributorMachine):
    """The scouting machine behind a rate gate and a pool that charge every task a
    unit: once either has less left than that, a dispatch stops at the first task the
    gates refuse and the rest stay queued. The invariants above hold, every task
    still ends (the gates' wakeup is the host's), and a dispatch stops so only when
    the gates would admit no task left in the queue.
    """

    def options(self) -> dict[str, Any]:
        options = super().options()
        # Burst 2, so that a task asking for 2 units may be refused while one asking
        # for 1 passes: only a gate with less left than every task asks for shuts.
        self.limiter = RateLimiter(rate=0.5, per=1.0, burst=2, clock=self.clock)
        options["gates"] = [
            PoolGate(self.pool, default=1),
            RateGate(self.limiter, "api_calls", default=1),
            self.flaky(),
        ]
        return options

    @rule(
        i=st.integers(0, len(TASK_IDS) - 1),
        api=st.sampled_from([1, 2]),
        db=st.sampled_from([1, 2]),
        priority=st.sampled_from([1, 2, 3]),
    )
    def submit_heavy(self, i: int, api: int, db: int, priority: int) -> None:
        """A task asking for one or two units of each gate."""
        self.submit(Task(TASK_IDS[i], priority=priority, resources={"api_calls": api, "db": db}))

    @rule(limit=st.sampled_from([None, 1, 2]))
    def dispatch(self, limit: int | None) -> None:
        d = self.distributor
        # A dispatch with no worker that has room walks nothing, and leaves the word of
        # the last walk (which may have stopped at a gate since refilled) as it was.
        walks = d.tracker.has_room()
        super().dispatch(limit)
        assert d._shut is not None
        if not walks or not d._shut_walk:
            return
        note_event("a walk stopped at a shut gate")
        gates = d._gates
        assert gates is not None
        armed, self.fails_in = self.fails_in, None  # the flaky key asked, not failing
        try:
            admitted = d.queue.peek(where=gates.can_acquire)
        finally:
            self.fails_in = armed
        assert admitted is None, f"the walk stopped before {admitted!r}, which could pass"
        least = d._shut.least[1]  # what any task asks of the rate gate, at least
        if not self.limiter.can_acquire(least):  # spent: the host hears when it refills
            wake = d.next_wakeup()
            assert wake is not None and wake <= self.limiter.ready_at(least)

    @invariant()
    def gates_and_quotas_are_never_exceeded(self) -> None:
        leased = [a.task for a in self.distributor.leases()]
        assert self.pool.in_use == sum(t.resources.get("db", 1) for t in leased) <= 2


ShutGateDistributorMachine.TestCase.settings = settings(
    ShutGateDistributorMachine.TestCase.settings
)
TestShutGateDistributorMachine = ShutGateDistributorMachine.TestCase


class FairShutGateDistributorMachine(OverWeightedFair, ShutGateDistributorMachine):
    """The machine above over a ``FairScheduler`` with a weight and a tenant quota,
    which keep holding while tasks wait in it behind shut gates."""

    @invariant()
    def gates_and_quotas_are_never_exceeded(self) -> None:
        ShutGateDistributorMachine.gates_and_quotas_are_never_exceeded(self)
        leased = [a.task for a in self.distributor.leases()]
        assert sum(1 for t in leased if t.tenant == "alice") <= QUOTA


FairShutGateDistributorMachine.TestCase.settings = settings(
    FairShutGateDistributorMachine.TestCase.settings
)
TestFairShutGateDistributorMachine = FairShutGateDistributorMachine.TestCase


class DeadlineShutGateDistributorMachine(ShutGateDistributorMachine):
    """The machine above over a ``DeadlineScheduler`` on two servers that dead-letters
    a task once it cannot make its deadline: tasks with deadlines wait in it behind
    shut gates, and those whose deadline passes there leave for the dead-letter queue
    (each event still says so, and every other task still ends)."""

    def options(self) -> dict[str, Any]:
        options = super().options()
        options["queue"] = DeadlineScheduler(self.clock, servers=2, on_miss="dead_letter")
        return options

    @rule(
        i=st.integers(0, len(TASK_IDS) - 1),
        due=st.sampled_from([0.5, 2.0, 30.0]),
        priority=st.sampled_from([1, 2, 3]),
    )
    def submit_with_a_deadline(self, i: int, due: float, priority: int) -> None:
        """A task due ``due`` seconds from now."""
        self.submit(Task(TASK_IDS[i], priority=priority, deadline=self.clock.now() + due))

    @invariant()
    def gates_and_quotas_are_never_exceeded(self) -> None:
        ShutGateDistributorMachine.gates_and_quotas_are_never_exceeded(self)

    @invariant()
    def scouts_wait_outside_their_class_and_gated_tasks_in_one(self) -> None:
        # No scouts here (when a task goes back decides its deadline's fate): a task
        # the gates refused without shutting waits in the lot, under the gates.
        d = self.distributor
        assert d._scouts is None
        assert all(d._lot.class_of(task_id) is None for task_id in d._lot.ids())


DeadlineShutGateDistributorMachine.TestCase.settings = settings(
    DeadlineShutGateDistributorMachine.TestCase.settings
)
TestDeadlineShutGateDistributorMachine = DeadlineShutGateDistributorMachine.TestCase


class RunLateDeadlineDistributorMachine(DeadlineShutGateDistributorMachine):
    """The machine above with a ``DeadlineScheduler`` that runs late tasks: a task whose
    deadline passes while it is out of the scheduler (leased, retrying, parked, taken
    back) comes back late, as one that waited there does, and none is ever
    dead-lettered for its deadline. It keeps every task pushed back, so tasks the
    gates refused wait behind scouts, as with a ``PriorityQueue``."""

    def options(self) -> dict[str, Any]:
        options = super().options()
        options["queue"] = DeadlineScheduler(self.clock, servers=2, on_miss="run_late")
        return options

    @invariant()
    def scouts_wait_outside_their_class_and_gated_tasks_in_one(self) -> None:
        ScoutingDistributorMachine.scouts_wait_outside_their_class_and_gated_tasks_in_one(self)

    @invariant()
    def no_task_is_dead_lettered_for_its_deadline(self) -> None:
        reasons = {letter.reason for letter in self.distributor.dlq}
        assert Reason.DEADLINE_MISSED not in reasons
        assert Reason.DEADLINE_INFEASIBLE not in reasons


RunLateDeadlineDistributorMachine.TestCase.settings = settings(
    RunLateDeadlineDistributorMachine.TestCase.settings
)
TestRunLateDeadlineDistributorMachine = RunLateDeadlineDistributorMachine.TestCase


class FairDeadlineScoutingDistributorMachine(ShutGateDistributorMachine):
    """The shut-gate machine over a ``FairScheduler`` whose tenants' queues are
    ``DeadlineScheduler``s (run late), with a weight and a tenant quota: tasks the
    gates refused wait behind scouts, each tenant's earliest deadline first, the
    quota holds, and none is dead-lettered for its deadline."""

    def options(self) -> dict[str, Any]:
        options = super().options()
        options["queue"] = weighted_fair(self.clock, inner=DeadlineScheduler)
        return options

    @rule(
        i=st.integers(0, len(TASK_IDS) - 1),
        due=st.sampled_from([0.5, 2.0, 30.0]),
        priority=st.sampled_from([1, 2, 3]),
        tenant=st.sampled_from(TENANTS),
    )
    def submit_with_a_deadline(self, i: int, due: float, priority: int, tenant: str) -> None:
        """A task of ``tenant`` due ``due`` seconds from now."""
        deadline = self.clock.now() + due
        self.submit(Task(TASK_IDS[i], priority=priority, tenant=tenant, deadline=deadline))

    @invariant()
    def gates_and_quotas_are_never_exceeded(self) -> None:
        ShutGateDistributorMachine.gates_and_quotas_are_never_exceeded(self)
        leased = [a.task for a in self.distributor.leases()]
        assert sum(1 for t in leased if t.tenant == "alice") <= QUOTA

    @invariant()
    def no_task_is_dead_lettered_for_its_deadline(self) -> None:
        RunLateDeadlineDistributorMachine.no_task_is_dead_lettered_for_its_deadline(self)


FairDeadlineScoutingDistributorMachine.TestCase.settings = settings(
    FairDeadlineScoutingDistributorMachine.TestCase.settings
)
TestFairDeadlineScoutingDistributorMachine = FairDeadlineScoutingDistributorMachine.TestCase


class PolicyDistributorMachine(DistributorMachine):
    """The same machine with capacity reserved for urgent work, backfill for large
    tasks and gangs: the invariants above hold, and no gang is ever partly placed
    (a gang's members start in one dispatch, all of them, or none does)."""

    def __init__(self) -> None:
        super().__init__()
        # gang -> (size, members submitted); gangs still waiting: gang -> member ids.
        self.gangs: dict[str, tuple[int, list[str]]] = {}
        self.waiting_gangs: dict[str, set[str]] = {}
        self.tenant_of: dict[str, str | None] = {}  # a gang member's tenant

    def policies(self) -> dict[str, Any]:
        return {
            "reservations": [Reservation(priority_at_most=1, share=0.25)],
            "backfill": Backfill(),
            "gangs": Gangs(timeout=30.0),
        }

    @rule(
        priority=st.sampled_from([0, 1, 3]), slots=st.sampled_from([1, 2, 3]), i=st.integers(0, 5)
    )
    def submit_urgent_or_large(self, priority: int, slots: int, i: int) -> None:
        task = Task(f"p{i}", priority=priority, resources={"slots": slots}, cost=float(slots))
        known = task.id in self.model
        assert self.distributor.submit(task).accepted is not known
        if not known:
            self.allowed[task.id] = MAX_ATTEMPTS
        self.apply_events()

    @rule(data=st.data())
    def submit_gang_member(self, data: st.DataObject) -> None:
        open_gangs = sorted(g for g, (size, ids) in self.gangs.items() if len(ids) < size)
        if open_gangs and data.draw(st.booleans()):
            gang = data.draw(st.sampled_from(open_gangs))
        else:
            gang = f"g{len(self.gangs)}"
            self.gangs[gang] = (data.draw(st.integers(1, 3)), [])
        size, ids = self.gangs[gang]
        task_id = f"{gang}-{len(ids)}"
        tenant = data.draw(st.sampled_from([None, "alice"]))
        task = Task(task_id, gang=gang, gang_size=size, cost=2.0, tenant=tenant)
        waiting = self.waiting_gangs.get(gang, set())
        alices = sum(1 for i in waiting if self.tenant_of[i] == "alice") + (tenant == "alice")
        if alices > QUOTA:
            # alice runs at most QUOTA at once: this member would make its gang unable to
            # start ever, and is refused, changing nothing.
            with pytest.raises(UnsatisfiableDemandError, match="max_concurrent"):
                self.distributor.submit(task)
            assert task_id not in self.distributor
            return
        ids.append(task_id)
        self.tenant_of[task_id] = tenant
        self.distributor.submit(task)
        self.allowed[task_id] = MAX_ATTEMPTS
        self.waiting_gangs.setdefault(gang, set()).add(task_id)
        self.apply_events()

    def apply_events(self) -> None:
        start = self.seen
        super().apply_events()
        # Gang members that left before their gang started no longer hold it back.
        for event in self.events[start:]:
            if event.kind in (EventKind.CANCELLED, EventKind.DEAD_LETTERED):
                for members in self.waiting_gangs.values():
                    members.discard(event.task_id)

    @precondition(
        lambda self: any(s in (TaskState.QUEUED, TaskState.PARKED) for s in self.model.values())
    )
    @rule(data=st.data())
    def pin(self, data: st.DataObject) -> None:
        """Pin a waiting task (a gang member waiting for its gang among them) to a worker,
        or unpin it: where it waits and what it is counted as stay the events' word."""
        waiting = sorted(
            i for i, s in self.model.items() if s in (TaskState.QUEUED, TaskState.PARKED)
        )
        task_id = data.draw(st.sampled_from(waiting))
        worker_id = data.draw(st.sampled_from([None, *sorted(self.workers)]))
        self.distributor.pin(task_id, worker_id)
        self.apply_events()

    def teardown(self) -> None:
        for task_id in self.live():  # a task pinned to a worker removed since would wait
            if self.model[task_id] in (TaskState.QUEUED, TaskState.PARKED, TaskState.RETRYING):
                self.distributor.pin(task_id, None)
        super().teardown()

    @rule(limit=st.sampled_from([None, 1, 2, 3]))
    def dispatch(self, limit: int | None) -> None:
        waiting = {gang: set(ids) for gang, ids in self.waiting_gangs.items()}
        super().dispatch(limit)
        started = {a.task.id for a in self.distributor.leases()}
        for gang, members in waiting.items():
            placed = members & started
            if placed:
                assert placed == members, f"gang {gang} partly placed: {placed} of {members}"
                assert len(members) == self.gangs[gang][0]
                del self.waiting_gangs[gang]


PolicyDistributorMachine.TestCase.settings = settings(PolicyDistributorMachine.TestCase.settings)
TestPolicyDistributorMachine = PolicyDistributorMachine.TestCase


# -- the same machine with flow control and the placement policies on --------------------

# bob's tasks start on w0 or w1 and spill over to any worker after 2 s; gpu tasks stay
# on gpu workers. Keys "k0", "k1" run one task at a time; chat tasks of a key debounce,
# index tasks of a key are throttled.
ROUTES = [
    Route(
        when=lambda t: t.tenant == "bob",
        name="bob",
        to=[Pool("first", workers={"w0", "w1"}), Step(Pool("any"), after=2.0)],
    ),
    Route(when=lambda t: "gpu" in t.requires, name="gpu", to=Pool("gpu", skills={"gpu"})),
]
PAUSABLE_POOL = Pool("w2 only", workers={"w2"})
API_LIMIT = 3
BUDGET_RATIO, BUDGET_MINIMUM = 0.5, 1

flow_tasks = st.builds(
    lambda task, priority, key, group, deadline: (
        attrs.evolve(task, priority=priority, key=key, group=group),
        deadline,
    ),
    tasks,
    st.integers(1, 4),
    st.sampled_from([None, None, "k0", "k1"]),
    st.sampled_from([None, None, "chat", "index"]),
    st.sampled_from([None, None, 4.0, 30.0]),
)


class FlowControlMachine(DistributorMachine):
    """The machine above with routes and a fallback step, escalation, preemption, pauses,
    throttled failures, an adaptive API limit, a retry budget and the intake rules on.

    More invariants: a task's spent attempts are its failures and expired leases
    only (throttles, preemptions, pauses and gate refusals spend none), a task
    dead-lettered for its attempts spent exactly what it was allowed; no retry
    starts beyond the budget; the adaptive limit, the keys' limit and the pauses
    hold; the adaptive gate's books agree with the leases.
    """

    api: AdaptiveConcurrency  # made with the other options, on the machine's clock
    budget: RetryBudget  # likewise; its counts must follow the model's leases and retries

    def __init__(self) -> None:
        super().__init__()
        self.paused_tenants: set[str] = set()
        self.pool_paused = False
        self.budgeted: set[Hashable] = set()  # retries in progress, as the budget counts

    def options(self) -> dict[str, Any]:
        self.api = AdaptiveConcurrency(
            self.clock.now,
            initial=API_LIMIT,
            maximum=API_LIMIT,
            applies=lambda t: "api_calls" in t.resources,
        )
        self.budget = RetryBudget(ratio=BUDGET_RATIO, minimum=BUDGET_MINIMUM)
        options = super().options()
        options["gates"] = [*options["gates"], self.api]
        return {
            **options,
            "routes": ROUTES,
            "escalation": Escalation(after={4: 3.0, 3: 5.0}, slack=0.5),
            "preemption": Preemption(),
            "intake": [
                ConcurrencyLimit(key=lambda t: t.key, limit=1),
                Debounce(key=lambda t: t.key if t.group == "chat" else None, window=2.0),
                Throttle(key=lambda t: t.key if t.group == "index" else None, window=5.0),
            ],
            "retry_budget": self.budget,
        }

    def follow(self, event: Event) -> None:
        task_id = event.task_id
        before = self.model.get(task_id)
        if (
            event.kind is EventKind.REQUEUED
            and before is TaskState.RETRYING
            and task_id not in self.budgeted
        ):
            self.budgeted.add(task_id)  # a retry starts: it must fit the budget
            leased = sum(1 for s in self.model.values() if s is TaskState.LEASED)
            assert len(self.budgeted) <= max(BUDGET_MINIMUM, BUDGET_RATIO * leased)
        if event.kind is EventKind.DISPATCHED:
            assert event.attempt is not None
        super().follow(event)
        if event.kind is EventKind.DEAD_LETTERED and event.reason is Reason.MAX_ATTEMPTS:
            assert self.failures[task_id] == self.allowed[task_id], "an attempt not spent"
        if task_id is not None and self.model.get(task_id, TaskState.QUEUED).is_final:
            self.budgeted.discard(task_id)

    @initialize()
    def start_with_two_workers(self) -> None:
        """Work runs from the first steps, so the rules on leased tasks come into play."""
        for worker_id, gpu in (("w0", False), ("w1", True)):
            self.distributor.add_worker(
                Worker(worker_id, capacity=2, skills={"gpu"} if gpu else set())
            )
            self.workers.add(worker_id)
        self.apply_events()

    @rule(task_and_deadline=flow_tasks)
    def submit(self, task_and_deadline: tuple[Task, float | None]) -> None:  # type: ignore[override]
        task, deadline = task_and_deadline
        if deadline is not None:
            task = attrs.evolve(task, deadline=self.clock.now() + deadline)
        known = task.id in self.model
        result = self.distributor.submit(task)
        self.apply_events()
        if known:
            assert not result.accepted and result.state is self.model[task.id]
        elif result.accepted:
            self.allowed[task.id] = task.max_attempts or MAX_ATTEMPTS
        else:  # throttled: another task of its key came within the window
            assert task.group == "index" and task.id not in self.model

    @rule(limit=st.sampled_from([None, 1, 2]))
    def dispatch(self, limit: int | None) -> None:
        seen = len(self.events)
        super().dispatch(limit)
        made = [e for e in self.events[seen:] if e.kind is EventKind.DISPATCHED]
        api_tasks = [a.task for a in self.distributor.leases() if "api_calls" in a.task.resources]
        if any(e.task_id in {t.id for t in api_tasks} for e in made):
            assert self.api.in_flight <= self.api.limit
        for event in made:
            task = self.distributor.assignment(event.task_id).task
            assert task.tenant not in self.paused_tenants
            assert not (self.pool_paused and event.worker_id == "w2")

    @precondition(lambda self: any(s is TaskState.LEASED for s in self.model.values()))
    @rule(data=st.data(), retry_after=st.sampled_from([None, 0.5, 3.0]))
    def throttle(self, data: st.DataObject, retry_after: float | None) -> None:
        task_id = data.draw(st.sampled_from(self.leased()))
        spent = self.failures[task_id]
        state = self.distributor.fail(task_id, error="429", throttled=True, retry_after=retry_after)
        self.apply_events()
        assert self.model[task_id] is state
        assert state in (TaskState.QUEUED, TaskState.RETRYING, TaskState.DEAD)
        assert self.failures[task_id] == spent, "a throttle spent an attempt"

    @precondition(lambda self: any(s is TaskState.LEASED for s in self.model.values()))
    @rule(data=st.data())
    def preempt(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.leased()))
        spent = self.failures[task_id]
        self.distributor.preempt(task_id)
        self.apply_events()
        assert self.model[task_id] in (TaskState.QUEUED, TaskState.DEAD)
        assert self.failures[task_id] == spent

    @rule(tenant=st.sampled_from(TENANTS))
    def pause_or_resume_tenant(self, tenant: str) -> None:
        if tenant in self.paused_tenants:
            self.distributor.resume(tenant=tenant)
            self.paused_tenants.discard(tenant)
        else:
            self.distributor.pause(tenant=tenant)
            self.paused_tenants.add(tenant)
        self.apply_events()

    @rule()
    def pause_or_resume_pool(self) -> None:
        if self.pool_paused:
            self.distributor.resume(pool=PAUSABLE_POOL)
        else:
            self.distributor.pause(pool=PAUSABLE_POOL)
        self.pool_paused = not self.pool_paused
        self.apply_events()

    def teardown(self) -> None:
        for tenant in sorted(self.paused_tenants):
            self.distributor.resume(tenant=tenant)
        if self.pool_paused:
            self.distributor.resume(pool=PAUSABLE_POOL)
        self.paused_tenants.clear()
        self.pool_paused = False
        super().teardown()

    @invariant()
    def flow_control_limits_hold(self) -> None:
        leased = [a.task for a in self.distributor.leases()]
        assert self.api.in_flight == sum(1 for t in leased if "api_calls" in t.resources)
        keys = Counter(t.key for t in leased if t.key is not None)
        assert all(count <= 1 for count in keys.values()), keys
        budget = self.budget
        assert budget.limit(None) == max(BUDGET_MINIMUM, BUDGET_RATIO * len(leased))
        assert budget.retries(None) == len(self.budgeted)


FlowControlMachine.TestCase.settings = settings(DistributorMachine.TestCase.settings)
TestFlowControlMachine = FlowControlMachine.TestCase


# -- the same machine with batches in dispatch --------------------------------------------


class BatchDistributorMachine(DistributorMachine):
    """The same machine with a batcher: tasks of a group go out together. The invariants
    above hold, and every batch running shares one worker and one group, within its size."""

    BATCH_SIZE = 3

    def policies(self) -> dict[str, Any]:
        return {"batcher": BatchOptimizer(self.clock, max_size=self.BATCH_SIZE)}

    @rule(task=tasks, group=st.sampled_from(["embed", "embed", "rank"]))
    def submit_grouped(self, task: Task, group: str) -> None:
        self.submit(attrs.evolve(task, group=group))

    @invariant()
    def each_running_batch_is_one_group_on_one_worker_within_its_size(self) -> None:
        batches: dict[int, list[Any]] = {}
        for lease in self.distributor.leases():
            if lease.batch is not None:
                batches.setdefault(lease.batch, []).append(lease)
        for members in batches.values():
            assert len(members) <= self.BATCH_SIZE
            assert len({m.worker_id for m in members}) == 1
            assert len({m.task.group for m in members}) == 1
            assert members[0].task.group is not None


BatchDistributorMachine.TestCase.settings = settings(DistributorMachine.TestCase.settings)
TestBatchDistributorMachine = BatchDistributorMachine.TestCase
