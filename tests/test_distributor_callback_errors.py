"""A user's callback that raises in the middle of a dispatch loses no task.

A dispatch calls the host's code: a balancer's ``choose`` and ``on_assign``,
a keyed rate gate's ``key``, a fair scheduler's ``tenant_of``. When one of them
raises, the dispatch raises it, every placement it made is taken back (the host
never saw them), and every task is left in exactly one place: queued, parked,
leased or dead-lettered with a reason. These tests each used to strand a task,
counted as waiting by the Distributor but held nowhere, or leak a gate's unit.
(``tests/test_distributor_machine.py`` arms such a failure at random points of
random runs.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import pytest
from distributor_support import with_a_probe_out

from taskdist import (
    CapacityTracker,
    CircuitBreaker,
    DeadlineScheduler,
    Distributor,
    Escalation,
    Eviction,
    FairScheduler,
    Gangs,
    InvalidArgumentError,
    InvalidTypeError,
    KeyedRateGate,
    KeyedRateLimiter,
    LeastConnections,
    ManualClock,
    PoolGate,
    PriorityQueue,
    RateGate,
    RateLimiter,
    Reason,
    ResourcePool,
    RetryBudget,
    RetryPolicy,
    Task,
    TaskState,
    Worker,
    WorkerFullError,
)

QUEUED, PARKED, LEASED = TaskState.QUEUED, TaskState.PARKED, TaskState.LEASED


class Broken(RuntimeError):
    """What the host's callback raised."""


class FailingKey:
    """A keyed gate's key function that raises for one task id while armed."""

    def __init__(self, task_id: Hashable) -> None:
        self.task_id = task_id
        self.armed = False

    def __call__(self, task: Task) -> Hashable:
        if self.armed and task.id == self.task_id:
            raise Broken(f"no key for {task.id!r}")
        return "all"


def keyed_gate(key: FailingKey, clock: ManualClock, resource: str = "k") -> KeyedRateGate:
    return KeyedRateGate(
        KeyedRateLimiter(1000, per=1.0, burst=1000, clock=clock), resource, key=key
    )


def drain(d: Distributor, clock: ManualClock) -> list[Hashable]:
    """Run everything that can run; the ids completed, in order."""
    done: list[Hashable] = []
    for _ in range(100):
        if not len(d):
            break
        for assignment in d.dispatch():
            done.append(assignment.task.id)
            d.complete(assignment.task.id)
        clock.advance(1.0)
    assert len(d) == 0, {t: d.explain(t) for t in ("a2", "a3", "x", "y")}
    return done


def test_a_scout_placed_before_the_error_takes_its_place_back_from_its_successor() -> None:
    # A bounded queue, full: the scout's successor, sent when the scout was placed,
    # took the place the scout left. Taking the scout back used to overflow the queue,
    # which evicted a task no one heard of.
    clock = ManualClock()
    key = FailingKey("x")
    queue = PriorityQueue(clock, maxsize=3, overflow="drop_lowest")
    d = Distributor(
        clock,
        queue=queue,
        lease=None,
        gates=[
            RateGate(RateLimiter(1, per=1.0, burst=1, clock=clock), "api"),
            keyed_gate(key, clock),
        ],
    )
    assert d._scouts is not None
    d._shut = None  # walking on past a shut gate: a2 and a3 wait as scouts do
    d.add_worker(Worker("w", capacity=100))
    for i in (1, 2, 3):
        clock.advance(0.001)
        d.submit(Task(f"a{i}", priority=2, resources={"api": 1}))
    assert [a.task.id for a in d.dispatch()] == ["a1"]  # a2, a3 wait for a token
    d.complete("a1")
    clock.advance(0.001)
    d.submit(Task("x", priority=3, resources={"k": 1}))
    clock.advance(0.001)
    d.submit(Task("y", priority=3, resources={"k": 1}))
    clock.advance(1.0)
    d.tick()  # a token: a2, the scout of its class, goes back to the queue
    assert [d.state_of(t) for t in ("a2", "a3", "x", "y")] == [QUEUED, PARKED, QUEUED, QUEUED]
    key.armed = True
    with pytest.raises(Broken):
        d.dispatch()  # a2 placed, a3 sent in its place; a3 refused; x's key raises
    key.armed = False
    # As before the call: a2 queued (the scout again), a3 back in its class.
    assert [d.state_of(t) for t in ("a2", "a3", "x", "y")] == [QUEUED, PARKED, QUEUED, QUEUED]
    assert len(queue) == 3 and list(d.dlq) == []
    assert d._scouts.ids() == ["a2"]
    assert sorted(map(str, drain(d, clock))) == ["a2", "a3", "x", "y"]


def _deadline_passes_during_a_failed_dispatch(on_miss: Any) -> Distributor:
    """``soon`` (deadline 3) is placed, then the host's balancer takes 5 s and raises."""

    class SlowThenBroken(LeastConnections):
        calls = 0

        def choose(self, task: Task, tracker: Any, where: Any = None) -> Any:
            self.calls += 1
            if self.calls == 2:
                clock.advance(5.0)  # the host's code took its time...
                raise Broken("...and failed")
            return super().choose(task, tracker, where)

    clock = ManualClock()
    queue = DeadlineScheduler(clock, on_miss=on_miss)
    d = Distributor(clock, queue=queue, balancer=SlowThenBroken(), lease=None)
    d.add_worker(Worker("w", capacity=5))
    d.submit(Task("soon", deadline=3.0, cost=0.1))
    d.submit(Task("later", deadline=100.0, cost=0.1))
    with pytest.raises(Broken):
        d.dispatch()
    return d


def test_a_task_taken_back_after_its_deadline_passed_runs_late_under_run_late() -> None:
    # Taken back after its deadline passed, it is late where it waits, as a task that
    # waited in the queue all along would be (it used to be dead-lettered).
    d = _deadline_passes_during_a_failed_dispatch("run_late")
    assert d.state_of("soon") is QUEUED and d.state_of("later") is QUEUED
    assert list(d.dlq) == [] and d.queue.is_late("soon")  # type: ignore[attr-defined]
    assert [a.task.id for a in d.dispatch()] == ["soon", "later"]


def test_a_task_taken_back_past_its_deadline_is_dead_lettered_under_dead_letter() -> None:
    # The scheduler refuses it back: it used to be left out of every place, and the
    # refusal hid the callback's error.
    d = _deadline_passes_during_a_failed_dispatch("dead_letter")
    assert d.state_of("soon") is TaskState.DEAD
    assert [(e.task.id, e.reason) for e in d.dlq] == [("soon", Reason.DEADLINE_MISSED)]
    assert d.state_of("later") is QUEUED and len(d) == 1


def test_a_gate_key_that_raises_for_the_task_in_hand_puts_it_back() -> None:
    # Popped, passed by the pool gate, then the keyed gate's key raised: the task was
    # counted as running by the queue and waiting by the Distributor, held by neither.
    clock = ManualClock()
    asked: list[Hashable] = []

    def key(task: Task) -> Hashable:
        # Asked when the dispatch looks (can the gates admit it?), then when they
        # admit it: it fails the second time only.
        asked.append(task.id)
        if len(asked) == 2:
            raise Broken("the key failed")
        return "all"

    pool = ResourcePool("db", size=1)
    limiter = KeyedRateLimiter(1000, per=1.0, burst=1000, clock=clock)
    d = Distributor(
        clock,
        queue=FairScheduler(clock),
        lease=None,
        gates=[PoolGate(pool), KeyedRateGate(limiter, "db", key=key)],
    )
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("t", resources={"db": 1}))  # (asks the key too)
    asked.clear()
    with pytest.raises(Broken):
        d.dispatch()
    assert asked == ["t", "t"]
    assert d.state_of("t") is QUEUED and "t" in d.queue
    assert pool.in_use == 0  # the pool gate's unit was given back
    assert [a.task.id for a in d.dispatch()] == ["t"]


class OnAssignBreaks(LeastConnections):
    """A balancer whose ``on_assign`` hook raises for task ``bad``."""

    def on_assign(self, task: Task, worker: Any) -> None:
        if task.id == "bad":
            raise Broken("on_assign failed")
        super().on_assign(task, worker)


def test_a_balancer_hook_that_raises_after_the_lease_takes_the_lease_back() -> None:
    clock = ManualClock()
    pool = ResourcePool("db", size=5)
    d = Distributor(clock, balancer=OnAssignBreaks(), lease=None, gates=[PoolGate(pool)])
    d.add_worker(Worker("w", capacity=5))
    d.submit(Task("good", priority=1, resources={"db": 1}))
    d.submit(Task("bad", priority=2, resources={"db": 1}))
    with pytest.raises(Broken):
        d.dispatch()
    assert d.leases() == []
    assert d.state_of("good") is QUEUED and d.state_of("bad") is QUEUED
    assert pool.in_use == 0 and d.tracker.worker("w").in_flight == 0


def test_assign_whose_balancer_hook_raises_leaves_the_task_waiting() -> None:
    clock = ManualClock()
    d = Distributor(clock, balancer=OnAssignBreaks(), lease=None)
    d.add_worker(Worker("w", capacity=5))
    d.submit(Task("bad"))
    with pytest.raises(Broken):
        d.assign("bad", "w")
    assert d.leases() == [] and d.state_of("bad") is QUEUED
    assert d.tracker.worker("w").in_flight == 0


def test_a_forced_assign_whose_balancer_hook_raises_gives_back_no_gate_unit() -> None:
    # force=True skips the gates: the lease taken back holds none of their units, so
    # none is given back (a release the gates refused used to lose the task).
    clock = ManualClock()
    pool = ResourcePool("db", size=1)
    d = Distributor(clock, balancer=OnAssignBreaks(), lease=None, gates=[PoolGate(pool)])
    d.add_worker(Worker("w", capacity=5))
    d.submit(Task("holder", resources={"db": 1}))
    assert [a.task.id for a in d.dispatch()] == ["holder"]
    d.submit(Task("bad", resources={"db": 1}))
    with pytest.raises(Broken):
        d.assign("bad", "w", force=True)
    assert d.state_of("bad") is QUEUED and d.state_of("holder") is LEASED
    assert pool.in_use == 1 and d.tracker.worker("w").in_flight == 1


def test_a_forced_assign_whose_balancer_hook_raises_frees_no_half_open_probe() -> None:
    d = with_a_probe_out(ManualClock(), "bad", "later", balancer=OnAssignBreaks())
    with pytest.raises(Broken):
        d.assign("bad", "w", force=True)
    assert d.state_of("bad") is QUEUED
    assert d.dispatch() == []  # the probe is still out: no second one


def test_a_gang_whose_balancer_hook_raises_is_taken_back_whole() -> None:
    clock = ManualClock()
    pool = ResourcePool("db", size=4)
    d = Distributor(
        clock, balancer=OnAssignBreaks(), lease=None, gates=[PoolGate(pool)], gangs=Gangs()
    )
    d.add_worker(Worker("w", capacity=5))
    for member in ("ok", "bad", "fine"):
        d.submit(Task(member, gang="g", gang_size=3, resources={"db": 1}))
    with pytest.raises(Broken):
        d.dispatch()
    assert d.leases() == [] and pool.in_use == 0
    assert d.tracker.worker("w").in_flight == 0
    assert {d.state_of(m) for m in ("ok", "bad", "fine")} <= {QUEUED, PARKED}
    assert len(d) == 3


class RefusesALease(CapacityTracker):
    """A tracker that refuses task ``bad`` its second ``assign``: the one of its lease,
    after the gang's plan tried it there (the first) and undid it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.armed = True

    def assign(self, task: Task, worker_id: Hashable) -> Any:
        if task.id == "bad":
            self.calls += 1
            if self.armed and self.calls == 2:
                raise WorkerFullError("no room for 'bad' after all")
        return super().assign(task, worker_id)


def gang_on(tracker: CapacityTracker, members: tuple[str, ...], *, capacity: int) -> Distributor:
    """A gang of ``members`` submitted to a distributor over ``tracker``,
    with one worker "w" of ``capacity``."""
    d = Distributor(ManualClock(), tracker=tracker, lease=None, gangs=Gangs(timeout=100))
    d.add_worker(Worker("w", capacity=capacity))
    for member in members:
        d.submit(Task(member, gang="g", gang_size=len(members)))
    return d


def test_a_gang_member_the_tracker_refuses_at_its_lease_waits_parked_again() -> None:
    # "bad" left the lot of waiting members for its lease, which the tracker refused:
    # it used to be left out of every place (queued by the books, in no queue), and
    # the next placement of its gang failed on a KeyError.
    tracker = RefusesALease()
    d = gang_on(tracker, ("ok", "bad", "last"), capacity=5)
    with pytest.raises(WorkerFullError):
        d.dispatch()
    assert d.leases() == [] and d.tracker.worker("w").in_flight == 0
    assert [d.state_of(m) for m in ("ok", "bad", "last")] == [PARKED, PARKED, QUEUED]
    assert "last" in d.queue and "bad" not in d.queue
    tracker.armed = False
    assert sorted(a.task.id for a in d.dispatch()) == ["bad", "last", "ok"]


def test_a_gang_member_the_tracker_refuses_at_its_lease_keeps_no_unit_or_quota() -> None:
    # Its gates had admitted it and the fair scheduler had taken it along (counted
    # running): both used to keep it, the pool short a unit and the next take_along
    # refused with DuplicateTaskError.
    clock = ManualClock()
    tracker = RefusesALease()
    pool = ResourcePool("db", size=5)
    queue = FairScheduler(clock)
    d = Distributor(
        clock,
        queue=queue,
        tracker=tracker,
        lease=None,
        gates=[PoolGate(pool)],
        gangs=Gangs(timeout=100),
    )
    d.add_worker(Worker("w", capacity=5))
    for member in ("ok", "bad", "last"):
        d.submit(Task(member, gang="g", gang_size=3, resources={"db": 1}))
    with pytest.raises(WorkerFullError):
        d.dispatch()
    assert d.leases() == [] and pool.in_use == 0 and queue.stats().running == 0
    assert [d.state_of(m) for m in ("ok", "bad", "last")] == [PARKED, PARKED, QUEUED]
    tracker.armed = False
    assert sorted(a.task.id for a in d.dispatch()) == ["bad", "last", "ok"]
    assert pool.in_use == 3 and queue.stats().running == 3


def test_a_gang_whose_leader_the_tracker_refuses_at_its_lease_spends_no_rate() -> None:
    # No member was leased: their rate gate admissions are undone, as a single task's
    # whose lease failed. They used to be released, the tokens spent for no run and the
    # gang held back until the limiter refilled.
    clock = ManualClock()
    limiter = RateLimiter(3.0, per=10.0, burst=3.0, clock=clock)
    d = Distributor(
        clock,
        tracker=RefusesALease(),
        lease=None,
        gates=[RateGate(limiter, "api")],
        gangs=Gangs(timeout=100),
    )
    d.add_worker(Worker("w", capacity=5))
    for member in ("a", "c", "bad"):  # the last to come leads the gang
        d.submit(Task(member, gang="g", gang_size=3, resources={"api": 1}))
    with pytest.raises(WorkerFullError):
        d.dispatch()
    assert d.leases() == [] and limiter.available() == 3.0
    assert isinstance(d.tracker, RefusesALease)
    d.tracker.armed = False
    assert sorted(a.task.id for a in d.dispatch()) == ["a", "bad", "c"]
    assert limiter.available() == 0.0


class RollbackRunBreaks:
    """A user gate that refuses the third gang member it is asked about, and whose
    ``rollback_run`` then raises (having undone its own admissions)."""

    def __init__(self) -> None:
        self.held: set[Hashable] = set()
        self.asked = 0
        self.armed = True

    def try_acquire(self, task: Task) -> bool:
        self.asked += 1
        if self.armed and self.asked == 3:
            return False
        self.held.add(task.id)
        return True

    def release(self, task: Task) -> None:
        self.held.remove(task.id)

    def rollback_run(self, tasks: Any) -> None:
        for task in tasks:
            self.held.remove(task.id)
        if self.armed:
            raise Broken("rollback_run failed")

    def next_wakeup(self) -> float | None:
        return None


def test_a_gang_whose_user_gate_rollback_run_raises_leaves_no_unit_in_the_other_gates() -> None:
    # The gates are undone last first: the user's raised, and the pool gate before it
    # used to keep the units of the members it had admitted, refusing them forever after.
    clock = ManualClock()
    pool = ResourcePool("db", size=5)
    user = RollbackRunBreaks()
    d = Distributor(clock, lease=None, gates=[PoolGate(pool), user], gangs=Gangs(timeout=100))
    d.add_worker(Worker("w", capacity=5))
    for member in ("a", "b", "c"):
        d.submit(Task(member, gang="g", gang_size=3, resources={"db": 1}))
    with pytest.raises(Broken):
        d.dispatch()
    assert pool.in_use == 0 and user.held == set() and d.leases() == []
    assert {d.state_of(m) for m in ("a", "b", "c")} <= {QUEUED, PARKED} and len(d) == 3
    user.armed = False
    assert sorted(a.task.id for a in d.dispatch()) == ["a", "b", "c"]
    assert pool.in_use == 3 and user.held == {"a", "b", "c"}


class ReleaseBreaksOnce(CapacityTracker):
    """A tracker whose ``release`` raises once, when armed, after releasing."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def release(self, task: Task, worker_id: Hashable, *args: Any, **kwargs: Any) -> Any:
        state = super().release(task, worker_id, *args, **kwargs)
        if self.armed:
            self.armed = False
            raise Broken(f"release of {task.id!r} failed")
        return state


def test_a_gang_tried_on_a_tracker_whose_release_raises_leaves_no_member_on_it() -> None:
    # Planning a gang tries each member on the tracker, then undoes them: the first
    # undo raised, and the members after it stayed assigned with no lease, the
    # worker full and the next try refused with DuplicateTaskError.
    tracker = ReleaseBreaksOnce()
    d = gang_on(tracker, ("a", "b", "c"), capacity=3)
    tracker.armed = True
    with pytest.raises(Broken):
        d.dispatch()
    assert d.leases() == [] and d.tracker.worker("w").in_flight == 0
    assert {d.state_of(m) for m in ("a", "b", "c")} <= {QUEUED, PARKED} and len(d) == 3
    assert sorted(a.task.id for a in d.dispatch()) == ["a", "b", "c"]


class AcquireBreaks(CircuitBreaker):
    """A breaker whose ``acquire`` raises on its second call once ``armed``."""

    armed = False
    calls = 0

    def acquire(self) -> int | None:
        if self.armed:
            self.calls += 1
            if self.calls == 2:
                raise Broken("acquire failed")
        return super().acquire()


def test_a_gang_whose_breaker_acquire_raises_leaves_no_unit_in_the_gates() -> None:
    # The second member's breaker raised after the gates had admitted it and the
    # first member: their units used to stay taken, every later try of the gang
    # refused with DuplicateTaskError.
    clock = ManualClock()
    pool = ResourcePool("db", size=5)
    breaker = AcquireBreaks(clock)
    d = Distributor(
        clock,
        lease=None,
        gates=[PoolGate(pool)],
        gangs=Gangs(timeout=100),
        breaker=lambda _: breaker,
    )
    d.add_worker(Worker("w", capacity=5))
    for member in ("a", "b", "c"):
        d.submit(Task(member, gang="g", gang_size=3, resources={"db": 1}))
    breaker.armed = True
    with pytest.raises(Broken):
        d.dispatch()
    breaker.armed = False
    assert pool.in_use == 0 and d.leases() == []
    assert {d.state_of(m) for m in ("a", "b", "c")} <= {QUEUED, PARKED} and len(d) == 3
    assert sorted(a.task.id for a in d.dispatch()) == ["a", "b", "c"]


def test_a_queue_that_raises_on_a_push_back_dead_letters_the_task_and_says_why() -> None:
    # A fair scheduler asks the host's tenant_of on every push: when it fails for a
    # task put back after a retry delay, that task goes to the dead-letter queue with
    # the error (it was out of every other place), and the call raises the error.
    clock = ManualClock()
    failing: set[Hashable] = set()

    def tenant_of(task: Task) -> Hashable:
        if task.id in failing:
            raise Broken(f"no tenant for {task.id!r}")
        return task.tenant

    d = Distributor(clock, queue=FairScheduler(clock, tenant_of=tenant_of), lease=None)
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("r", max_attempts=3))
    d.submit(Task("other"))
    assert [a.task.id for a in d.dispatch(1)] == ["r"]
    d.fail("r", error="flaky")  # retried after a delay
    failing.add("r")
    clock.advance(60.0)
    with pytest.raises(Broken):
        d.dispatch()  # the retry comes due, its push fails: no assignment returned
    assert d.state_of("r") is TaskState.DEAD
    [letter] = list(d.dlq)
    assert letter.reason is Reason.REJECTED and "no tenant" in str(letter.error)
    assert d.leases() == [] and d.state_of("other") is QUEUED
    assert [a.task.id for a in d.dispatch()] == ["other"]


def test_a_task_taken_back_escalates_on_time_as_before() -> None:
    # Its lease cancelled its escalation timer; taken back, it used to wait at its
    # priority for ever.
    class Breaks(LeastConnections):
        armed = True

        def on_assign(self, task: Task, worker: Any) -> None:
            if self.armed:
                self.armed = False
                raise Broken("on_assign failed")
            super().on_assign(task, worker)

    clock = ManualClock()
    d = Distributor(clock, balancer=Breaks(), lease=None, escalation=Escalation(after=10.0))
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("t", priority=3))
    with pytest.raises(Broken):
        d.dispatch()
    d.remove_worker("w")  # nothing runs it: it waits
    clock.advance(10.0)
    d.tick()
    assert d.state_of("t") is QUEUED
    assert d.queue.peek().priority == 2  # type: ignore[union-attr]


def test_a_retry_predicate_that_raises_leaves_the_lease_as_it_was() -> None:
    # fail() asks the retry policy's predicate before it changes anything: the error
    # propagates, the task is still leased (it used to be held nowhere, counted by no
    # state), and a fail() once the predicate works ends the attempt as usual.
    armed = [True]

    def retryable(error: BaseException) -> bool:
        if armed[0]:
            raise Broken("the predicate failed")
        return True

    clock = ManualClock()
    d = Distributor(clock, retry=RetryPolicy(retryable=retryable))
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("t"))
    d.dispatch()
    before = d.stats()
    with pytest.raises(Broken):
        d.fail("t", error=ValueError("boom"))
    assert d.state_of("t") is LEASED and [a.task.id for a in d.leases()] == ["t"]
    after = d.stats()
    assert (after.by_state, after.failed) == (before.by_state, before.failed)
    armed[0] = False
    assert d.fail("t", error=ValueError("boom")) is TaskState.RETRYING
    assert d.stats().failed == 1


class ShrinksTheWorker(PoolGate):
    """A pool gate whose admission, while armed, sets worker "w"'s capacity through the
    tracker itself (behind the distributor's back, as no host should)."""

    def __init__(self, pool: ResourcePool, capacity: float) -> None:
        super().__init__(pool)
        self.capacity = capacity
        self.distributor: Distributor | None = None

    def try_acquire(self, task: Task) -> bool:
        admitted = super().try_acquire(task)
        if self.distributor is not None:
            self.distributor.tracker.update_worker("w", capacity=self.capacity)
        return admitted


def shrinking(capacity: float, **options: Any) -> tuple[Distributor, ShrinksTheWorker]:
    pool = ResourcePool("db", size=5)
    gate = ShrinksTheWorker(pool, capacity)
    d = Distributor(ManualClock(), lease=None, gates=[gate], **options)
    d.add_worker(Worker("w", capacity=2))
    return d, gate


def run_after_restoring(d: Distributor, gate: ShrinksTheWorker, ids: list[str]) -> None:
    gate.distributor = None
    assert gate.pool.in_use == 0 and d.tracker.worker("w").in_flight == 0
    d.tracker.update_worker("w", capacity=2)
    assert sorted(a.task.id for a in d.dispatch()) == ids
    assert gate.pool.in_use == len(ids)


def test_assign_to_a_worker_a_gate_filled_meanwhile_leaves_the_task_waiting() -> None:
    d, gate = shrinking(0)
    d.submit(Task("t", resources={"db": 1}))
    gate.distributor = d
    with pytest.raises(WorkerFullError, match="'t'"):
        d.assign("t", "w")
    assert d.state_of("t") is QUEUED
    run_after_restoring(d, gate, ["t"])


def test_a_dispatch_onto_a_worker_a_gate_filled_meanwhile_gives_back_the_gate_unit() -> None:
    d, gate = shrinking(0)
    d.submit(Task("t", resources={"db": 1}))
    gate.distributor = d
    with pytest.raises(WorkerFullError, match="'t'"):
        d.dispatch()
    assert d.state_of("t") is QUEUED
    run_after_restoring(d, gate, ["t"])


@pytest.mark.parametrize("capacity", [0, 1])
def test_a_gang_onto_a_worker_a_gate_shrank_meanwhile_is_placed_nowhere(capacity: int) -> None:
    d, gate = shrinking(capacity, gangs=Gangs(timeout=100))
    for member in ("a", "b"):
        d.submit(Task(member, resources={"db": 1}, gang="g", gang_size=2))
    gate.distributor = d
    with pytest.raises(WorkerFullError):
        d.dispatch()
    assert d.leases() == [] and {d.state_of("a"), d.state_of("b")} <= {QUEUED, PARKED}
    run_after_restoring(d, gate, ["a", "b"])


def test_checking_a_gang_on_the_tracker_leaves_the_workers_loads_bit_for_bit() -> None:
    # Assigning and releasing the members to check them would leave the float residue
    # of the sums in the load of "b": then tied with "a" no more, it would take "e".
    d = Distributor(ManualClock(), lease=None, gangs=Gangs(timeout=100))
    d.add_worker(Worker("a", capacity={"slots": 100, "cpu": 2.0}))
    d.add_worker(Worker("b", capacity={"slots": 100, "cpu": 2.0}, skills={"g"}))

    def put(task_id: str, cpu: float, worker_id: str) -> None:
        d.submit(Task(task_id, resources={"cpu": cpu}))
        d.assign(task_id, worker_id)

    # Into "a", the sums a gang's placement makes in "b": planned (tried and undone),
    # then leased.
    for task_id, cpu in [("a1", 0.7), ("a2", 0.2), ("a3", 0.15)]:
        put(task_id, cpu, "a")
    d.cancel("a3")
    d.cancel("a2")
    put("a4", 0.2, "a")
    put("a5", 0.15, "a")
    put("b1", 0.7, "b")
    for member, cpu in [("m0", 0.15), ("m1", 0.2)]:
        d.submit(Task(member, resources={"cpu": cpu}, requires={"g"}, gang="g", gang_size=2))
    assert {a.worker_id for a in d.dispatch()} == {"b"}
    assert d.tracker.worker("b").load == d.tracker.worker("a").load
    d.submit(Task("e", resources={"cpu": 0.1}))
    assert [a.worker_id for a in d.dispatch()] == ["a"]  # the tie goes to the first


class BothHooksBreak(OnAssignBreaks):
    """``on_assign`` raises for task ``bad``, and ``on_release`` for any task."""

    def on_release(self, task: Task, worker: Any) -> None:
        super().on_release(task, worker)
        raise RuntimeError(f"on_release failed for {task.id!r}")


def test_a_hook_raising_while_a_dispatch_is_taken_back_leaves_the_cause_raised() -> None:
    d = Distributor(ManualClock(), balancer=BothHooksBreak(), lease=None)
    d.add_worker(Worker("w", capacity=5))
    d.submit(Task("good", priority=1))
    d.submit(Task("bad", priority=2))
    with pytest.raises(Broken, match="on_assign failed") as raised:
        d.dispatch()
    if sys.version_info >= (3, 11):
        assert any("on_release failed" in note for note in raised.value.__notes__)
    assert d.leases() == [] and d.state_of("good") is QUEUED and d.state_of("bad") is QUEUED


def test_a_hook_raising_while_an_assign_is_taken_back_leaves_the_cause_raised() -> None:
    d = Distributor(ManualClock(), balancer=BothHooksBreak(), lease=None)
    d.add_worker(Worker("w", capacity=5))
    d.submit(Task("bad"))
    with pytest.raises(Broken, match="on_assign failed"):
        d.assign("bad", "w")
    assert d.leases() == [] and d.state_of("bad") is QUEUED


class ReleaseOfOldBreaks(OnAssignBreaks):
    """``on_assign`` raises for task ``bad``, and ``on_release`` for task ``old``."""

    def on_release(self, task: Task, worker: Any) -> None:
        super().on_release(task, worker)
        if task.id == "old":
            raise RuntimeError("on_release failed for 'old'")


def test_a_hook_error_from_before_the_dispatch_failed_is_still_raised_first() -> None:
    # The lease of "old" expires as the dispatch starts, and its on_release raises:
    # that error came first, not from taking the dispatch back, and is not a note.
    clock = ManualClock()
    d = Distributor(clock, balancer=ReleaseOfOldBreaks(), lease=10.0)
    d.add_worker(Worker("w", capacity=2))
    d.submit(Task("old"))
    d.dispatch()
    clock.advance(11)
    d.submit(Task("bad"))
    with pytest.raises(RuntimeError, match="on_release failed for 'old'") as raised:
        d.dispatch()
    assert isinstance(raised.value.__context__, Broken)
    assert not getattr(raised.value.__context__, "__notes__", None)
    assert d.state_of("old") is QUEUED and d.state_of("bad") is QUEUED


class RefusingTracker(CapacityTracker):
    """A tracker of the host's own that refuses task "t" while armed, for reasons of its own."""

    armed = False

    def assign(self, task: Task, worker_id: Hashable) -> Any:
        if self.armed and task.id == "t":
            raise WorkerFullError(f"no room for {task.id!r} on {worker_id!r} by local rule")
        return super().assign(task, worker_id)


def test_assign_that_a_tracker_of_the_hosts_own_refuses_leaves_the_task_waiting() -> None:
    clock = ManualClock()
    tracker = RefusingTracker(clock)
    pool = ResourcePool("db", size=1)
    d = Distributor(clock, tracker=tracker, lease=None, gates=[PoolGate(pool)])
    d.add_worker(Worker("w"))
    d.submit(Task("t", resources={"db": 1}))
    tracker.armed = True
    with pytest.raises(WorkerFullError, match="by local rule"):
        d.assign("t", "w")
    assert d.state_of("t") is QUEUED and pool.in_use == 0
    tracker.armed = False
    assert [a.task.id for a in d.dispatch()] == ["t"]


class Misbehaving(PriorityQueue):
    """A priority queue whose ``pop``, once armed, returns what it should not."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.armed: str | None = None
        self.leased: Task | None = None

    def pop(self, where: Any = None) -> Any:
        armed, self.armed = self.armed, None
        if armed == "a stranger":
            return Task("stranger")
        if armed == "a leased task":
            return self.leased
        if armed == "a task it still holds":
            return self.peek(where)
        if armed == "not a task":
            return "b"
        return super().pop(where)


_Q = TypeVar("_Q", bound=PriorityQueue)


def abc_behind(make: Callable[[ManualClock], _Q], *, capacity: int) -> tuple[Distributor, _Q]:
    """Tasks "a", "b" and "c" submitted to a distributor over the queue ``make`` builds,
    with one worker "w" of ``capacity``."""
    clock = ManualClock()
    queue = make(clock)
    d = Distributor(clock, queue=queue, lease=None)
    d.add_worker(Worker("w", capacity=capacity))
    for task_id in "abc":
        d.submit(Task(task_id))
    return d, queue


@pytest.mark.parametrize(
    ("returns", "error", "where"),
    [
        ("a stranger", InvalidArgumentError, "unknown to this distributor"),
        ("a leased task", InvalidArgumentError, "it is leased"),
        ("a task it still holds", InvalidArgumentError, "still in the queue"),
        ("not a task", InvalidTypeError, "not a Task"),
    ],
)
def test_a_queue_whose_pop_returns_no_task_that_left_it_places_nothing(
    returns: str, error: type[Exception], where: str
) -> None:
    # A pop returning a task the books do not have waiting out of every place used to
    # be placed all the same: a KeyError, with the worker's slot held for ever by a
    # task with no lease (or the task leased twice).
    d, queue = abc_behind(Misbehaving, capacity=2)
    [first] = d.dispatch(1)
    queue.leased = first.task
    queue.armed = returns
    with pytest.raises(error, match=where):
        d.dispatch()
    assert [a.task.id for a in d.leases()] == ["a"]
    assert d.tracker.worker("w").in_flight == 1
    assert d.state_of("b") is QUEUED and d.state_of("c") is QUEUED and len(d) == 3
    assert sorted(a.task.id for a in d.dispatch()) == ["b"]
    for task_id in "abc":
        if d.state_of(task_id) is LEASED:
            d.complete(task_id)
    assert [a.task.id for a in d.dispatch()] == ["c"]


class HandsBack(PriorityQueue):
    """A priority queue that, once armed, hands back (on a push or an expiry) a task
    it does not hold, or something that is not an eviction."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.armed: tuple[str, object] | None = None

    def _hand_back(self, when: str) -> object:
        if self.armed is None or self.armed[0] != when:
            return None
        what, self.armed = self.armed[1], None
        return what if isinstance(what, str) else Eviction(what, Reason.REJECTED)

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Any:
        evicted = super().push(task, enqueued_at=enqueued_at)
        return self._hand_back("push") or evicted

    def next_wakeup(self) -> float | None:
        return 0.0 if self.armed is not None and self.armed[0] == "expire" else None

    def expire_with_reasons(self) -> list[Eviction]:
        handed = self._hand_back("expire")
        return [handed] if isinstance(handed, Eviction) else super().expire_with_reasons()


@pytest.mark.parametrize(
    ("when", "what", "error", "where"),
    [
        ("push", "a", InvalidArgumentError, "it is leased"),
        ("push", "b", InvalidArgumentError, "still in the queue"),
        ("push", "stranger", InvalidArgumentError, "unknown to this distributor"),
        ("push", "not an eviction", InvalidTypeError, "not an Eviction"),
        ("expire", "a", InvalidArgumentError, "it is leased"),
        ("expire", "stranger", InvalidArgumentError, "unknown to this distributor"),
    ],
)
def test_a_queue_that_hands_back_a_task_it_did_not_hold_dead_letters_nothing(
    when: str, what: str, error: type[Exception], where: str
) -> None:
    # A leased task handed back was dead-lettered while leased (in two places), one
    # still queued was put in the dead-letter queue and dispatched from the queue, and a
    # stranger joined the dead-letter queue though never submitted.
    d, queue = abc_behind(HandsBack, capacity=1)
    [first] = d.dispatch()
    handed: object = {"a": first.task, "b": Task("b"), "stranger": Task("stranger")}.get(what, what)
    queue.armed = (when, handed)
    call = (lambda: d.submit(Task("d"))) if when == "push" else d.tick
    with pytest.raises(error, match=where):
        call()
    assert queue.armed is None and len(d.dlq) == 0
    assert [a.task.id for a in d.leases()] == ["a"] and d.state_of("b") is QUEUED
    assert d.tracker.worker("w").in_flight == 1
    done = []
    while len(d):
        for assignment in d.dispatch():
            d.complete(assignment.task.id)
            done.append(assignment.task.id)
        if d.leases():
            d.complete("a")
            done.append("a")
    assert sorted(done) == (["a", "b", "c", "d"] if when == "push" else ["a", "b", "c"])


class OwnEviction:
    """An eviction of the host's own making: not an ``Eviction``, but naming a task."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.reason = Reason.EVICTED


class DropsNewcomers(PriorityQueue):
    """Holds two tasks; a push beyond drops the newcomer, handing it back in an
    eviction of its own making."""

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Any:
        if len(self) >= 2:
            return OwnEviction(task)
        return super().push(task, enqueued_at=enqueued_at)


def test_a_task_the_queue_let_go_of_in_no_eviction_of_its_own_is_not_lost() -> None:
    # The hand-back, not an Eviction, was ignored: the task it named, which the queue
    # had let go of, stayed queued in the books, in no queue, never dispatched.
    clock = ManualClock()
    d = Distributor(clock, queue=DropsNewcomers(clock), lease=None)
    d.submit(Task("a"))
    d.submit(Task("b"))
    with pytest.raises(InvalidTypeError, match=r"not an Eviction.*'c'.*dead-lettered"):
        d.submit(Task("c"))
    assert d.state_of("c") is TaskState.DEAD and len(d) == 2
    [letter] = list(d.dlq)
    assert letter.task.id == "c" and letter.reason is Reason.REJECTED
    d.add_worker(Worker("w", capacity=3))
    assert sorted(a.task.id for a in d.dispatch()) == ["a", "b"]


class Plain:
    """A gate of the host's own without ``can_acquire``, counting what it holds; once
    armed, its ``release`` raises (after giving back)."""

    def __init__(self) -> None:
        self.held: list[Hashable] = []
        self.armed = False

    def try_acquire(self, task: Task) -> bool:
        self.held.append(task.id)
        return True

    def release(self, task: Task) -> None:
        self.held.remove(task.id)
        if self.armed:
            self.armed = False
            raise Broken("release failed")

    def next_wakeup(self) -> float | None:
        return None


def test_a_gate_whose_undo_raises_while_probed_leaves_no_other_gate_holding() -> None:
    # Gates without can_acquire are asked by admitting the task and undoing it; an undo
    # that raised skipped the undo of the gates before it, which held the task's unit
    # with no lease for ever.
    first, second = Plain(), Plain()
    d = Distributor(ManualClock(), gates=[first, second], lease=None)
    d.add_worker(Worker("w", capacity=2))
    for task_id in "ab":
        d.submit(Task(task_id))
    second.armed = True
    with pytest.raises(Broken, match="release failed"):
        d.dispatch()
    assert first.held == [] and second.held == [] and d.leases() == []
    assert d.state_of("a") is QUEUED and d.state_of("b") is QUEUED
    assert sorted(a.task.id for a in d.dispatch()) == ["a", "b"]
    assert first.held == second.held == ["a", "b"]


class LookAlike(LeastConnections):
    """A user's balancer that answers with a view of another tracker's worker of the same
    id (or, with ``other=None``, with something that is no worker at all)."""

    def __init__(self, other: CapacityTracker | None) -> None:
        super().__init__()
        self.other = other

    def choose(self, task: Task, tracker: Any, where: Any = None) -> Any:
        return 5 if self.other is None else self.other.worker("w")


@pytest.mark.parametrize("gang", [False, True])
@pytest.mark.parametrize("foreign", [True, False])
def test_a_balancer_answering_with_no_view_of_this_tracker_is_refused(
    foreign: bool, gang: bool
) -> None:
    other = CapacityTracker(ManualClock())
    other.add_worker(Worker("w", capacity=4))
    clock = ManualClock()
    balancer = LookAlike(other if foreign else None)
    d = Distributor(clock, balancer=balancer, lease=None)
    d.add_worker(Worker("w", capacity=4))
    ids = ["a", "b"]
    for task_id in ids:
        d.submit(Task(task_id, gang="g", gang_size=2) if gang else Task(task_id))
    before = {task_id: d.state_of(task_id) for task_id in ids}
    error = InvalidArgumentError if foreign else InvalidTypeError
    with pytest.raises(error, match="nothing was placed"):
        d.dispatch()
    assert {task_id: d.state_of(task_id) for task_id in ids} == before
    assert d.leases() == [] and d.tracker.worker("w").in_flight == 0
    assert other.worker("w").in_flight == 0  # nothing was recorded on the other tracker
    balancer.choose = LeastConnections().choose  # type: ignore[method-assign]
    assert sorted(a.task.id for a in d.dispatch()) == ids


@pytest.mark.parametrize(
    ("group", "error"), [(["x"], InvalidTypeError), (float("nan"), InvalidArgumentError)]
)
def test_a_retry_budget_group_that_is_no_key_puts_every_task_back(
    group: object, error: type[Exception]
) -> None:
    answer: list[object] = ["g"]
    budget = RetryBudget(per=lambda task: answer[0], minimum=1)
    d = Distributor(ManualClock(), lease=None, retry_budget=budget)
    d.add_worker(Worker("w", capacity=3))
    for task_id in "abc":
        d.submit(Task(task_id))
    answer[0] = group
    with pytest.raises(error, match="RetryBudget per"):
        d.dispatch()
    assert {t: d.state_of(t) for t in "abc"} == dict.fromkeys("abc", QUEUED)
    assert d.tracker.worker("w").in_flight == 0 and d.leases() == []
    answer[0] = "g"
    assert sorted(a.task.id for a in d.dispatch()) == ["a", "b", "c"]
    for task_id in "abc":
        d.complete(task_id)
    assert len(d) == 0
