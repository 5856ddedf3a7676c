"""Bad, extreme and re-entrant calls on a Distributor: each is refused and changes nothing.

Every row is one call a careless or hostile host could make, and the specific
error it must raise. The call is made on one of two twins built alike
(:func:`twin`: two workers, a pool gate, breakers, and tasks queued, parked,
retrying, leased, completed, dead-lettered and cancelled); afterwards both
twins must answer alike (:func:`observe`: ``stats()`` but its time, the state
of every id, the events, the next wakeup, and what the next ``dispatch()``
makes and leaves). Callbacks that call back into the distributor (a balancer,
a worker filter, a queue, a breaker factory) are refused with
``ReentrancyError``; a listener may call back, and that works.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from distributor_support import Recorded, assignment_view, build, stats_view
from hostile import assert_refused

from taskdist import (
    CapacityError,
    CapacityTracker,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ClosedError,
    DeadLetterQueue,
    DeadlineError,
    DeadlineScheduler,
    Distributor,
    DuplicateWorkerError,
    Event,
    EventKind,
    Eviction,
    FairScheduler,
    Health,
    InvalidArgumentError,
    InvalidTypeError,
    LeastConnections,
    ManualClock,
    PoolGate,
    Predicate,
    PriorityQueue,
    QueueFullError,
    ReentrancyError,
    ResourcePool,
    RetryPolicy,
    Task,
    TaskdistError,
    TaskState,
    TaskStateError,
    UnknownTaskError,
    UnknownWorkerError,
    UnsatisfiableDemandError,
    Worker,
    WorkerFilter,
    WorkerFullError,
    WorkerState,
    WorkerUnavailableError,
)

NAN, INF = math.nan, math.inf
ARG, TYPE, STATE = InvalidArgumentError, InvalidTypeError, TaskStateError
UNKNOWN, REENTRY = UnknownTaskError, ReentrancyError

# The twin's tasks, by the state each is in once it is built.
LEASED_1, LEASED_2, RETRYING, DEAD = "leased-1", "leased-2", "retrying", "dead"
COMPLETED, CANCELLED, PARKED, QUEUED = "completed", "cancelled", "parked", "queued"
IDS = [LEASED_1, LEASED_2, RETRYING, DEAD, COMPLETED, CANCELLED, PARKED, QUEUED, "never"]


class Hook:
    """A callback slot a test arms with one action; it fires once, then disarms."""

    def __init__(self) -> None:
        self.action: Callable[[], object] | None = None

    def fire(self) -> None:
        action, self.action = self.action, None
        if action is not None:
            action()


class HookedBalancer(LeastConnections):
    """LeastConnections whose ``choose`` fires a hook first."""

    def __init__(self, hook: Hook) -> None:
        super().__init__()
        self.hook = hook

    def choose(
        self, task: Task, tracker: CapacityTracker, where: WorkerFilter | None = None
    ) -> WorkerState | None:
        self.hook.fire()
        return super().choose(task, tracker, where)


class HookedQueue(PriorityQueue):
    """A PriorityQueue whose ``push`` and ``pop`` fire a hook first."""

    def __init__(self, clock: ManualClock, hook: Hook) -> None:
        super().__init__(clock)
        self.hook = hook

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Eviction | None:
        self.hook.fire()
        return super().push(task, enqueued_at=enqueued_at)

    def pop(self, where: Predicate | None = None) -> Task | None:
        self.hook.fire()
        return super().pop(where)


class HookedBreaker(CircuitBreaker):
    """A breaker whose ``state`` and ``can_acquire`` (what the distributor's worker filter
    reads) fire a hook."""

    def __init__(self, clock: ManualClock, hook: Hook) -> None:
        super().__init__(clock, minimum_calls=5, window_size=5, open_duration=5.0)
        self.hook = hook

    @property
    def state(self) -> CircuitState:
        self.hook.fire()
        return super().state

    if hasattr(CircuitBreaker, "can_acquire"):  # what the filter asks where breakers have it

        def can_acquire(self) -> bool:
            self.hook.fire()
            return bool(super().can_acquire())  # type: ignore[misc]


class Twin(Recorded):
    """A built twin with its hooks and its breaker factory's mode."""

    balancer_hook: Hook
    queue_hook: Hook
    filter_hook: Hook
    factory_hook: Hook
    factory_makes: list[Any]


def twin(*, close: bool = False, max_queued: int | None = None) -> Twin:
    """A Distributor holding a task in every state, with hooks in its callbacks.

    ``close``: closed at the end; ``max_queued``: that bound, and filled up to it.
    """
    clock = ManualClock()
    balancer_hook, queue_hook, filter_hook, factory_hook = Hook(), Hook(), Hook(), Hook()
    factory_makes: list[Any] = []  # empty: a HookedBreaker; else what to return instead

    def factory(worker_id: Hashable) -> Any:
        factory_hook.fire()
        if factory_makes:
            made = factory_makes[0]
            if isinstance(made, BaseException):
                raise made
            return made
        return HookedBreaker(clock, filter_hook)

    run = build(
        Worker("w1", capacity=2),
        Worker("w2", capacity=1, skills={"gpu"}),
        clock=clock,
        queue=HookedQueue(clock, queue_hook),
        balancer=HookedBalancer(balancer_hook),
        breaker=factory,
        retry=RetryPolicy(max_attempts=3, base=10.0, jitter="none", rng=random.Random(1)),
        gates=[PoolGate(ResourcePool("db", size=2))],
        lease=10.0,
        dedup_window=100.0,
        max_queued=max_queued,
    )
    d = run.d
    for task_id in (COMPLETED, DEAD, RETRYING):
        d.submit(Task(task_id, priority=0, resources={"db": 1} if task_id == DEAD else {}))
    d.submit(Task(PARKED, requires={"rare"}))
    d.submit(Task(LEASED_1, priority=1))
    d.submit(Task(LEASED_2, priority=1))
    d.dispatch()
    d.complete(COMPLETED, duration=1.0)
    d.fail(DEAD, error=ValueError("bad"), retryable=False)
    d.fail(RETRYING, error=TimeoutError("slow"))
    d.dispatch()
    d.submit(Task(CANCELLED))
    d.cancel(CANCELLED)
    clock.set(1.0)
    d.submit(Task(QUEUED, priority=2, resources={"db": 2}))
    for filler in range(len(d) - len(d.leases()), max_queued or 0):
        d.submit(Task(f"filler-{filler}", priority=3))
    if close:
        d.close()
    built = Twin(run.clock, run.d, run.events)
    built.balancer_hook, built.queue_hook = balancer_hook, queue_hook
    built.filter_hook, built.factory_hook = filter_hook, factory_hook
    built.factory_makes = factory_makes
    return built


def _state(d: Distributor, task_id: Hashable) -> object:
    try:
        return d.state_of(task_id)
    except UnknownTaskError:
        return None


def observe(run: Twin) -> Any:
    """Everything a host could tell apart, then what the next dispatch does to it."""
    d = run.d
    seen = {
        "stats": stats_view(d),
        "states": {task_id: _state(d, task_id) for task_id in IDS},
        "leases": assignment_view(d.leases()),
        "wakeup": d.next_wakeup(),
        "events": list(run.events),
        "closed": d.closed,
        "workers": sorted(str(w.id) for w in d.tracker.workers()),
    }
    run.clock.set(2.0)
    seen["dispatched"] = assignment_view(d.dispatch())
    seen["after"] = (stats_view(d), {task_id: _state(d, task_id) for task_id in IDS})
    return seen


def test_the_twin_holds_a_task_in_every_state() -> None:
    d = twin().d
    assert {task_id: _state(d, task_id) for task_id in IDS} == {
        LEASED_1: TaskState.LEASED,
        LEASED_2: TaskState.LEASED,
        RETRYING: TaskState.RETRYING,
        DEAD: TaskState.DEAD,
        COMPLETED: TaskState.COMPLETED,
        CANCELLED: TaskState.CANCELLED,
        PARKED: TaskState.PARKED,
        QUEUED: TaskState.QUEUED,
        "never": None,
    }
    # The next dispatch has work: a refused call that broke something would show there.
    assert observe(twin())["dispatched"] != []


Call = Callable[[Twin], object]


def rows(table: list[tuple[str, Call, type[BaseException]]]) -> Any:
    return [pytest.param(call, error, id=name) for name, call, error in table]


def _arm(hook: Callable[[Twin], Hook], action: Callable[[Twin], object], then: Call) -> Call:
    """A call that arms ``hook`` with ``action`` (on the same twin), then makes ``then``."""

    def call(run: Twin) -> object:
        hook(run).action = lambda: action(run)
        return then(run)

    return call


def _from_balancer(action: Callable[[Twin], object]) -> Call:
    """``action`` made by the balancer while dispatch asks it to choose."""
    return _arm(lambda r: r.balancer_hook, action, lambda r: r.d.dispatch())


def _from_filter(action: Callable[[Twin], object]) -> Call:
    """``action`` made by a breaker while dispatch's worker filter asks it."""
    return _arm(lambda r: r.filter_hook, action, lambda r: r.d.dispatch())


def _from_queue_pop(action: Callable[[Twin], object]) -> Call:
    """``action`` made by the queue while dispatch pops it."""
    return _arm(lambda r: r.queue_hook, action, lambda r: r.d.dispatch())


def _from_queue_push(action: Callable[[Twin], object]) -> Call:
    """``action`` made by the queue while submit pushes a task into it."""
    return _arm(lambda r: r.queue_hook, action, lambda r: r.d.submit(Task("outer")))


def _from_factory(action: Callable[[Twin], object]) -> Call:
    """``action`` made by the breaker factory while add_worker makes a breaker."""
    return _arm(lambda r: r.factory_hook, action, lambda r: r.d.add_worker(Worker("w3")))


def _worker_factory_returns(made: Any) -> Call:
    def call(run: Twin) -> object:
        run.factory_makes.append(made)
        return run.d.add_worker(Worker("w3"))

    return call


class Unhashable:
    __hash__ = None  # type: ignore[assignment]


BAD_CALLS: list[tuple[str, Call, type[BaseException]]] = [
    # Unknown ids, everywhere an id is taken.
    ("complete unknown", lambda r: r.d.complete("never"), UNKNOWN),
    ("fail unknown", lambda r: r.d.fail("never", error="x"), UNKNOWN),
    ("heartbeat unknown", lambda r: r.d.heartbeat("never"), UNKNOWN),
    ("cancel unknown", lambda r: r.d.cancel("never"), UNKNOWN),
    ("state_of unknown", lambda r: r.d.state_of("never"), UNKNOWN),
    ("explain unknown", lambda r: r.d.explain("never"), UNKNOWN),
    ("assignment unknown", lambda r: r.d.assignment("never"), UNKNOWN),
    ("complete a NaN id", lambda r: r.d.complete(NAN), UNKNOWN),
    # Unhashable ids.
    ("complete unhashable", lambda r: r.d.complete(["x"]), TYPE),
    ("fail unhashable", lambda r: r.d.fail({"x": 1}, error="x"), TYPE),
    ("heartbeat unhashable", lambda r: r.d.heartbeat(set()), TYPE),
    ("cancel unhashable", lambda r: r.d.cancel([LEASED_1]), TYPE),
    ("state_of unhashable", lambda r: r.d.state_of(Unhashable()), TYPE),
    ("explain unhashable", lambda r: r.d.explain([]), TYPE),
    ("assignment unhashable", lambda r: r.d.assignment([]), TYPE),
    ("remove_worker unhashable", lambda r: r.d.remove_worker(["w1"]), TYPE),
    ("set_health unhashable", lambda r: r.d.set_health(["w1"], Health.DEGRADED), TYPE),
    ("breaker of unhashable", lambda r: r.d.breaker({}), TYPE),
    ("update_worker unhashable", lambda r: r.d.update_worker([], capacity=3), TYPE),
    # Reports about tasks that are not leased.
    ("complete queued", lambda r: r.d.complete(QUEUED), STATE),
    ("complete parked", lambda r: r.d.complete(PARKED), STATE),
    ("complete retrying", lambda r: r.d.complete(RETRYING), STATE),
    ("complete completed (twice)", lambda r: r.d.complete(COMPLETED), STATE),
    ("complete dead", lambda r: r.d.complete(DEAD), STATE),
    ("complete cancelled", lambda r: r.d.complete(CANCELLED), STATE),
    ("fail queued", lambda r: r.d.fail(QUEUED, error="x"), STATE),
    ("fail parked", lambda r: r.d.fail(PARKED, error="x"), STATE),
    ("fail retrying", lambda r: r.d.fail(RETRYING, error="x"), STATE),
    ("fail completed", lambda r: r.d.fail(COMPLETED, error="x"), STATE),
    ("fail dead", lambda r: r.d.fail(DEAD, error="x"), STATE),
    ("heartbeat queued", lambda r: r.d.heartbeat(QUEUED), STATE),
    ("heartbeat parked", lambda r: r.d.heartbeat(PARKED), STATE),
    ("heartbeat retrying", lambda r: r.d.heartbeat(RETRYING), STATE),
    ("heartbeat completed", lambda r: r.d.heartbeat(COMPLETED), STATE),
    ("heartbeat dead", lambda r: r.d.heartbeat(DEAD), STATE),
    ("heartbeat cancelled", lambda r: r.d.heartbeat(CANCELLED), STATE),
    ("cancel completed", lambda r: r.d.cancel(COMPLETED), STATE),
    ("cancel dead", lambda r: r.d.cancel(DEAD), STATE),
    ("cancel cancelled (twice)", lambda r: r.d.cancel(CANCELLED), STATE),
    ("assignment of a queued task", lambda r: r.d.assignment(QUEUED), STATE),
    (
        "complete a leased task naming another attempt",
        lambda r: r.d.complete(LEASED_1, attempt=2),
        STATE,
    ),
    ("fail a leased task naming another attempt", lambda r: r.d.fail(LEASED_1, attempt=7), STATE),
    # Durations, errors, flags and attempts of the wrong kind or range.
    ("complete duration nan", lambda r: r.d.complete(LEASED_1, duration=NAN), ARG),
    ("complete duration negative", lambda r: r.d.complete(LEASED_1, duration=-1.0), ARG),
    ("complete duration inf", lambda r: r.d.complete(LEASED_1, duration=INF), ARG),
    ("complete duration -inf", lambda r: r.d.complete(LEASED_1, duration=-INF), ARG),
    ("complete duration str", lambda r: r.d.complete(LEASED_1, duration="1"), TYPE),
    ("complete duration bool", lambda r: r.d.complete(LEASED_1, duration=True), TYPE),
    ("complete duration huge int", lambda r: r.d.complete(LEASED_1, duration=10**400), ARG),
    # Past the tracker's 1e12 s: refused before the lease ends, so the task stays leased.
    ("complete duration 1e13", lambda r: r.d.complete(LEASED_1, duration=1e13), ARG),
    ("fail duration 1e13", lambda r: r.d.fail(LEASED_1, duration=1e13), ARG),
    ("fail duration nan", lambda r: r.d.fail(LEASED_1, error="x", duration=NAN), ARG),
    ("fail duration negative", lambda r: r.d.fail(LEASED_1, duration=-0.5), ARG),
    ("fail error int", lambda r: r.d.fail(LEASED_1, error=3), TYPE),
    ("fail error class", lambda r: r.d.fail(LEASED_1, error=ValueError), TYPE),
    ("fail error bytes", lambda r: r.d.fail(LEASED_1, error=b"boom"), TYPE),
    ("fail retryable int", lambda r: r.d.fail(LEASED_1, retryable=1), TYPE),
    ("fail retryable str", lambda r: r.d.fail(LEASED_1, retryable="no"), TYPE),
    ("fail retryable None", lambda r: r.d.fail(LEASED_1, retryable=None), TYPE),
    ("complete attempt 0", lambda r: r.d.complete(LEASED_1, attempt=0), ARG),
    ("complete attempt -1", lambda r: r.d.complete(LEASED_1, attempt=-1), ARG),
    ("complete attempt float", lambda r: r.d.complete(LEASED_1, attempt=1.0), TYPE),
    ("complete attempt bool", lambda r: r.d.complete(LEASED_1, attempt=True), TYPE),
    ("heartbeat extend 0", lambda r: r.d.heartbeat(LEASED_1, extend=0), ARG),
    ("heartbeat extend negative", lambda r: r.d.heartbeat(LEASED_1, extend=-5.0), ARG),
    ("heartbeat extend nan", lambda r: r.d.heartbeat(LEASED_1, extend=NAN), ARG),
    ("heartbeat extend inf", lambda r: r.d.heartbeat(LEASED_1, extend=INF), ARG),
    ("heartbeat extend str", lambda r: r.d.heartbeat(LEASED_1, extend="10"), TYPE),
    # Dispatch limits.
    ("dispatch limit -1", lambda r: r.d.dispatch(-1), ARG),
    ("dispatch limit 1.5", lambda r: r.d.dispatch(1.5), TYPE),  # type: ignore[arg-type]
    ("dispatch limit nan", lambda r: r.d.dispatch(NAN), TYPE),  # type: ignore[arg-type]
    ("dispatch limit str", lambda r: r.d.dispatch("2"), TYPE),  # type: ignore[arg-type]
    ("dispatch limit bool", lambda r: r.d.dispatch(True), TYPE),
    # Workers.
    ("remove unknown worker", lambda r: r.d.remove_worker("w9"), UnknownWorkerError),
    (
        "set_health unknown worker",
        lambda r: r.d.set_health("w9", Health.HEALTHY),
        UnknownWorkerError,
    ),
    ("set_health not a health", lambda r: r.d.set_health("w1", "sick"), ARG),
    ("update unknown worker", lambda r: r.d.update_worker("w9", capacity=3), UnknownWorkerError),
    ("update_worker negative capacity", lambda r: r.d.update_worker("w1", capacity=-1), ARG),
    ("update_worker nan weight", lambda r: r.d.update_worker("w1", weight=NAN), ARG),
    ("update_worker skills not strs", lambda r: r.d.update_worker("w1", skills=[1]), TYPE),
    ("breaker of unknown worker", lambda r: r.d.breaker("w9"), UnknownWorkerError),
    ("add a duplicate worker", lambda r: r.d.add_worker(Worker("w1")), DuplicateWorkerError),
    ("add a non-Worker", lambda r: r.d.add_worker("w3"), TYPE),  # type: ignore[arg-type]
    ("add a worker dict", lambda r: r.d.add_worker({"id": "w3"}), TYPE),  # type: ignore[arg-type]
    ("breaker factory returns a str", _worker_factory_returns("a breaker"), TYPE),
    ("breaker factory returns None", _worker_factory_returns(None), TYPE),
    ("breaker factory raises", _worker_factory_returns(RuntimeError("no breaker")), RuntimeError),
    # Intake.
    ("submit a str", lambda r: r.d.submit("t"), TYPE),  # type: ignore[arg-type]
    ("submit None", lambda r: r.d.submit(None), TYPE),  # type: ignore[arg-type]
    ("submit a dict", lambda r: r.d.submit({"id": "t"}), TYPE),  # type: ignore[arg-type]
    ("submit a past deadline", lambda r: r.d.submit(Task("late", deadline=0.5)), DeadlineError),
    ("submit a deadline of now", lambda r: r.d.submit(Task("now", deadline=1.0)), DeadlineError),
    # Callbacks calling back into the distributor that runs them.
    ("balancer submits", _from_balancer(lambda r: r.d.submit(Task("inner"))), REENTRY),
    ("balancer dispatches", _from_balancer(lambda r: r.d.dispatch()), REENTRY),
    ("balancer completes", _from_balancer(lambda r: r.d.complete(LEASED_1)), REENTRY),
    ("balancer cancels", _from_balancer(lambda r: r.d.cancel(QUEUED)), REENTRY),
    ("balancer removes a worker", _from_balancer(lambda r: r.d.remove_worker("w2")), REENTRY),
    ("balancer ticks", _from_balancer(lambda r: r.d.tick()), REENTRY),
    ("worker filter submits", _from_filter(lambda r: r.d.submit(Task("inner"))), REENTRY),
    ("worker filter heartbeats", _from_filter(lambda r: r.d.heartbeat(LEASED_1)), REENTRY),
    ("queue pop dispatches", _from_queue_pop(lambda r: r.d.dispatch()), REENTRY),
    ("queue pop closes", _from_queue_pop(lambda r: r.d.close()), REENTRY),
    ("queue push submits", _from_queue_push(lambda r: r.d.submit(Task("inner"))), REENTRY),
    (
        "queue push sets health",
        _from_queue_push(lambda r: r.d.set_health("w1", Health.UNAVAILABLE)),
        REENTRY,
    ),
    ("breaker factory submits", _from_factory(lambda r: r.d.submit(Task("inner"))), REENTRY),
    (
        "breaker factory adds a worker",
        _from_factory(lambda r: r.d.add_worker(Worker("w4"))),
        REENTRY,
    ),
]


@pytest.mark.parametrize(("call", "error"), rows(BAD_CALLS))
def test_a_bad_call_is_refused_and_changes_nothing(call: Call, error: type[BaseException]) -> None:
    assert_refused(twin, call, error, observe)


def test_there_are_at_least_sixty_bad_calls() -> None:
    assert len(BAD_CALLS) >= 60


def test_submit_after_close_is_refused_and_changes_nothing() -> None:
    assert_refused(
        lambda: twin(close=True), lambda r: r.d.submit(Task("late")), ClosedError, observe
    )


def test_submit_to_a_full_distributor_is_refused_and_changes_nothing() -> None:
    assert_refused(
        lambda: twin(max_queued=6), lambda r: r.d.submit(Task("one-more")), QueueFullError, observe
    )


@pytest.mark.xfail(
    not hasattr(PoolGate, "check"),
    strict=True,
    reason="needs the gates' side-effect-free check(): without it a demand above the pool's "
    "size is accepted, and only dispatch finds it can never pass",
)
def test_submit_of_a_demand_no_gate_can_ever_grant_is_refused_and_changes_nothing() -> None:
    assert_refused(
        twin,
        lambda r: r.d.submit(Task("greedy", resources={"db": 3})),
        UnsatisfiableDemandError,
        observe,
    )


def test_update_worker_with_an_unknown_field_is_refused_with_a_taskdist_error() -> None:
    assert_refused(twin, lambda r: r.d.update_worker("w1", colour="red"), InvalidTypeError, observe)


def test_a_breaker_listener_that_calls_back_loses_no_task() -> None:
    clock = ManualClock()
    holder: list[Distributor] = []

    def on_change(_: object) -> None:
        holder[0].submit(Task("from-the-breaker-listener"))

    run = build(
        Worker("w"),
        clock=clock,
        breaker=lambda _: CircuitBreaker(
            clock, minimum_calls=1, window_size=1, on_state_change=on_change
        ),
    )
    holder.append(run.d)
    run.d.submit(Task("t"))
    run.d.dispatch()
    with contextlib.suppress(ReentrancyError):  # refusing the inner call is right
        run.d.fail("t", error=RuntimeError("boom"))
    assert run.d.state_of("t") in (TaskState.RETRYING, TaskState.DEAD)
    assert run.d.stats().submitted == sum(run.d.stats().by_state.values())


def test_a_callbacks_error_held_to_the_end_of_a_call_wins_over_a_listeners() -> None:
    # The breaker's listener raises as the failure opens the breaker: that error is held
    # until the books are done, then the events go out, and an event listener raises too.
    clock = ManualClock()

    def on_change(_: object) -> None:
        raise LookupError("breaker listener")

    def on_event(event: Event) -> None:
        if event.kind is EventKind.FAILED:
            raise KeyError("event listener")

    run = build(
        Worker("w"),
        clock=clock,
        on_event=on_event,
        breaker=lambda _: CircuitBreaker(
            clock, minimum_calls=1, window_size=1, on_state_change=on_change
        ),
    )
    run.d.submit(Task("t"))
    run.d.dispatch()
    with pytest.raises(LookupError, match="breaker listener") as raised:
        run.d.fail("t", error=RuntimeError("boom"))
    assert isinstance(raised.value.__context__, KeyError)
    assert run.d.state_of("t") in (TaskState.RETRYING, TaskState.DEAD)


# -- the listener may call back ---------------------------------------------------------


def test_a_listener_may_call_every_method_back() -> None:
    calls: list[str] = []
    distributors: list[Distributor] = []

    def listener(event: Any) -> None:
        if not distributors:
            return  # still being built
        d = distributors[0]
        if event.kind is EventKind.SUBMITTED and event.task_id == "a":
            calls.append(f"dispatched {[x.task.id for x in d.dispatch()]}")
        elif event.kind is EventKind.DISPATCHED and event.task_id == "a":
            d.heartbeat("a")
            calls.append(d.explain("a"))
        elif event.kind is EventKind.COMPLETED and event.task_id == "a":
            d.submit(Task("b"))
            d.cancel("b")
            calls.append(f"stats {d.stats().by_state[TaskState.CANCELLED]}")
            d.add_worker(Worker("w2"))
            d.remove_worker("w2")
            d.close()

    run = build(Worker("w"), on_event=listener)
    distributors.append(run.d)
    run.d.submit(Task("a"))
    run.d.complete("a")
    assert calls == [
        "dispatched ['a']",
        "leased: attempt 1 on worker 'w' since 0, lease until 30",
        "stats 1",
    ]
    assert run.d.closed and run.d.state_of("b") is TaskState.CANCELLED
    kinds = run.kinds()
    assert kinds.index(EventKind.COMPLETED) < kinds.index(EventKind.CANCELLED)


# -- extreme calls that are allowed -------------------------------------------------------


@pytest.mark.parametrize(
    "task_id",
    [0, -1, 2**64, 1.5, ("tenant", 7), frozenset({"a"}), b"id", "x" * 10_000, True],
    ids=["zero", "negative", "big int", "float", "tuple", "frozenset", "bytes", "long", "True"],
)
def test_any_hashable_id_goes_through_the_whole_life(task_id: Hashable) -> None:
    run = build(Worker("w"))
    assert run.d.submit(Task(task_id)).accepted
    [assignment] = run.d.dispatch()
    assert assignment.task.id == task_id
    run.d.heartbeat(task_id)
    assert run.d.complete(task_id) is TaskState.COMPLETED
    assert run.d.submit(Task(task_id)).duplicate


def test_extreme_numbers_inside_their_ranges_are_accepted() -> None:
    run = build(Worker("w", capacity=1e15), lease=1e-9)
    run.d.submit(Task("t", ttl=1e18, cost=1e18, priority=2**53))
    run.d.dispatch(limit=10**30)
    assert run.d.heartbeat("t", extend=1e15) == 1e15
    assert run.d.complete("t", duration=1e12) is TaskState.COMPLETED
    assert run.d.stats().workers["w"].latency == 1e12


# -- the constructor ----------------------------------------------------------------------


CONSTRUCTOR: list[tuple[str, dict[str, Any], type[TaskdistError]]] = [
    ("lease 0", {"lease": 0}, ARG),
    ("lease negative", {"lease": -1.0}, ARG),
    ("lease nan", {"lease": NAN}, ARG),
    ("lease inf", {"lease": INF}, ARG),
    ("lease bool", {"lease": True}, TYPE),
    ("lease str", {"lease": "30"}, TYPE),
    ("dedup_window negative", {"dedup_window": -1}, ARG),
    ("dedup_window nan", {"dedup_window": NAN}, ARG),
    ("dedup_window inf", {"dedup_window": INF}, ARG),
    ("dedup_window None", {"dedup_window": None}, TYPE),
    ("max_queued 0", {"max_queued": 0}, ARG),
    ("max_queued negative", {"max_queued": -5}, ARG),
    ("max_queued float", {"max_queued": 1.5}, TYPE),
    ("max_queued bool", {"max_queued": True}, TYPE),
    ("stats_window 0", {"stats_window": 0}, ARG),
    ("stats_window float", {"stats_window": 10.0}, TYPE),
    ("a dead-letter queue that rejects when full", {"dlq": "rejecting"}, ARG),
    ("dlq not a DeadLetterQueue", {"dlq": []}, TYPE),
    ("queue not a Queue", {"queue": [1, 2]}, TYPE),
    ("tracker not a CapacityTracker", {"tracker": object()}, TYPE),
    ("balancer not a Balancer", {"balancer": lambda task, candidates: None}, TYPE),
    ("breaker factory not callable", {"breaker": 5}, TYPE),
    ("retry not a RetryPolicy", {"retry": 3}, TYPE),
    ("gates a number", {"gates": 3}, TYPE),
    ("gates a str", {"gates": "db"}, TYPE),
    ("gates holding None", {"gates": [None]}, TYPE),
    ("rng not a Random", {"rng": 42}, TYPE),
    ("on_event not callable", {"on_event": "print"}, TYPE),
]


@pytest.mark.parametrize(("options", "error"), [pytest.param(*r[1:], id=r[0]) for r in CONSTRUCTOR])
def test_a_constructor_argument_of_the_wrong_type_or_range_is_refused(
    options: dict[str, Any], error: type[TaskdistError]
) -> None:
    clock = ManualClock()
    if options.get("dlq") == "rejecting":
        options = {"dlq": DeadLetterQueue(clock, maxsize=5, overflow="reject")}
    with pytest.raises(error):
        Distributor(clock, **options)


@pytest.mark.parametrize("clock", [None, 3, object(), "clock"])
def test_a_clock_without_now_is_refused(clock: object) -> None:
    with pytest.raises(InvalidTypeError):
        Distributor(clock)  # type: ignore[arg-type]


def test_a_breaker_factory_that_fails_on_a_prebuilt_trackers_worker_refuses_construction() -> None:
    clock = ManualClock()
    tracker = CapacityTracker(clock)
    tracker.add_worker(Worker("w"))
    with pytest.raises(InvalidTypeError):
        Distributor(clock, tracker=tracker, breaker=lambda _: "not a breaker")  # type: ignore[arg-type, return-value]


def _level_run(**options: Any) -> Distributor:
    """Tasks a, b, c of one priority queued at one instant, a leased on the only slot."""
    seeded = {"rng": random.Random(1), "retry": RetryPolicy(rng=random.Random(2))}
    d = Distributor(ManualClock(), **seeded, **options)
    d.add_worker(Worker("w", capacity=1))
    for task_id in "abc":
        d.submit(Task(task_id, resources={"db": 1} if "gates" in options else {}))
    d.dispatch()
    return d


@pytest.mark.parametrize(
    ("options", "prepare", "call", "error"),
    [
        pytest.param(dict, None, lambda d: d.reprioritize("b", NAN), TYPE, id="bad priority"),
        pytest.param(dict, None, lambda d: d.reprioritize("b", 2**60), ARG, id="huge priority"),
        pytest.param(dict, None, lambda d: d.assign("b", "w"), WorkerFullError, id="worker full"),
        pytest.param(
            dict,
            lambda d: d.set_health("w", Health.UNAVAILABLE),
            lambda d: d.assign("b", "w"),
            WorkerUnavailableError,
            id="worker unavailable",
        ),
        pytest.param(
            lambda: {"gates": [PoolGate(ResourcePool("db", size=1))]},
            lambda d: d.update_worker("w", capacity=2),  # room on the worker, not at the gate
            lambda d: d.assign("b", "w"),
            CapacityError,
            id="gates refuse",
        ),
        pytest.param(
            lambda: {"breaker": lambda worker_id: CircuitBreaker(ManualClock())},
            lambda d: (d.update_worker("w", capacity=2), d.breaker("w").force_open()),  # type: ignore[union-attr]
            lambda d: d.assign("b", "w"),
            CircuitOpenError,
            id="breaker open",
        ),
    ],
)
def test_a_refused_assign_or_reprioritize_keeps_the_task_in_its_place(
    options: Callable[[], dict[str, Any]], prepare: Any, call: Call, error: type[BaseException]
) -> None:
    # Tasks of one rank queued at one instant go first come, first served; a call that
    # is refused must not move the task it names behind the others (it changed nothing).
    runs = [_level_run(**options()), _level_run(**options())]
    for d in runs:
        if prepare is not None:
            prepare(d)
    refused, untouched = runs
    with pytest.raises(error):
        call(refused)  # type: ignore[arg-type]
    # (A gate or breaker that refused counts the refusal in its statistics: leave those.)
    assert refused.snapshot()["queue"] == untouched.snapshot()["queue"]
    for d in runs:
        d.update_worker("w", capacity=3)
        d.set_health("w", Health.HEALTHY)
        d.complete("a")
        if d.breaker("w") is not None:
            d.breaker("w").reset()  # type: ignore[union-attr]
    assert [a.task.id for a in refused.dispatch()] == [a.task.id for a in untouched.dispatch()]


def _twins(
    make_queue: Callable[[ManualClock], Any],
    fill: Callable[[ManualClock, Distributor], object],
    **options: Any,
) -> list[Distributor]:
    """Two distributors built alike, one worker of one slot, filled by ``fill``."""
    runs = []
    for _ in range(2):
        clock = ManualClock()
        d = Distributor(
            clock,
            queue=make_queue(clock),
            rng=random.Random(1),
            retry=RetryPolicy(rng=random.Random(2)),
            **options,
        )
        d.add_worker(Worker("w", capacity=1))
        fill(clock, d)
        runs.append(d)
    return runs


def _three_of_one_rank(clock: ManualClock, d: Distributor) -> None:
    for task_id in "abc":
        d.submit(Task(task_id, tenant="t", key="k"))
    d.dispatch()


@pytest.mark.parametrize(
    "make_queue",
    [
        pytest.param(lambda clock: DeadlineScheduler(clock), id="DeadlineScheduler"),
        pytest.param(lambda clock: FairScheduler(clock), id="FairScheduler"),
        pytest.param(
            lambda clock: FairScheduler(clock, inner=DeadlineScheduler), id="FairScheduler-EDF"
        ),
        pytest.param(
            lambda clock: FairScheduler(
                clock, inner=lambda c, t: FairScheduler(c, tenant_of=lambda t: t.key)
            ),
            id="nested FairScheduler",
        ),
    ],
)
def test_a_refused_reprioritize_keeps_the_task_in_its_place_in_every_queue(
    make_queue: Callable[[ManualClock], Any],
) -> None:
    refused, untouched = _twins(make_queue, _three_of_one_rank)
    with pytest.raises(InvalidTypeError):
        refused.reprioritize("b", NAN)
    assert refused.snapshot()["queue"] == untouched.snapshot()["queue"]
    for d in (refused, untouched):
        d.complete("a")
    assert [a.task.id for a in refused.dispatch()] == [a.task.id for a in untouched.dispatch()]


def _infeasible_by_now(**options: Any) -> tuple[ManualClock, Distributor, list[Any]]:
    """Task a waits in a rejecting deadline scheduler; by now its 5 s of work can no longer
    end by its deadline (not yet passed): the queue would refuse it back."""
    clock = ManualClock()
    events: list[Any] = []
    d = Distributor(
        clock,
        queue=DeadlineScheduler(clock, on_miss="reject"),
        rng=random.Random(1),
        retry=RetryPolicy(rng=random.Random(2)),
        lease=None,
        on_event=events.append,
        **options,
    )
    d.add_worker(Worker("w", capacity=1))
    d.submit(Task("z", deadline=50.0, cost=1.0))
    d.submit(Task("a", deadline=100.0, cost=5.0, priority=3))
    d.dispatch()
    clock.advance(97.0)
    return clock, d, events


def test_a_refused_assign_leaves_a_task_its_queue_would_refuse_back_queued() -> None:
    _, d, _ = _infeasible_by_now()
    with pytest.raises(WorkerFullError):
        d.assign("a", "w")
    assert d.state_of("a") is TaskState.QUEUED and len(d.dlq) == 0


def test_reprioritize_says_so_when_the_queue_refuses_the_task_at_its_new_priority() -> None:
    _, d, _ = _infeasible_by_now()
    with pytest.raises(TaskStateError, match="dead-lettered"):
        d.reprioritize("a", 1)
    assert d.state_of("a") is TaskState.DEAD
    assert [(e.task.id, e.reason.value) for e in d.dlq] == [("a", "deadline_infeasible")]


def test_an_escalation_the_queue_refuses_dead_letters_the_task_and_goes_no_further() -> None:
    from taskdist import Escalation, Pool

    clock, d, events = _infeasible_by_now(
        escalation=Escalation(after=96.0, to=Pool("gpu", skills={"gpu"}))
    )
    d.tick()  # a's escalation: raised, it no longer fits before its deadline
    assert d.state_of("a") is TaskState.DEAD
    assert [e.kind.value for e in events if e.task_id == "a"] == ["submitted", "dead_lettered"]
    snapshot = d.snapshot()
    assert snapshot["sent"] == []  # not sent to the escalation's pool
    clock2 = ManualClock(start=clock.now())
    Distributor.restore(
        snapshot,
        clock2,
        queue=DeadlineScheduler(clock2, on_miss="reject"),
        escalation=Escalation(after=96.0, to=Pool("gpu", skills={"gpu"})),
        retry=RetryPolicy(rng=random.Random(2)),
    )


def _late_after_a(clock: ManualClock, d: Distributor) -> None:
    d.submit(Task("a", deadline=1.0))  # first in every queue's order
    for task_id in "bcd":
        d.submit(Task(task_id, deadline=5.0))
    d.dispatch()
    clock.advance(10.0)  # b, c and d have missed their deadlines; they still wait


@pytest.mark.parametrize(
    "make_queue",
    [
        pytest.param(lambda clock: PriorityQueue(clock), id="PriorityQueue"),
        pytest.param(lambda clock: DeadlineScheduler(clock), id="DeadlineScheduler-run_late"),
        pytest.param(lambda clock: FairScheduler(clock), id="FairScheduler"),
    ],
)
def test_a_refused_call_keeps_a_task_whose_deadline_passed_in_its_place(
    make_queue: Callable[[ManualClock], Any],
) -> None:
    refused, untouched = _twins(make_queue, _late_after_a, lease=None)
    with pytest.raises(WorkerFullError):
        refused.assign("b", "w")
    with pytest.raises(InvalidTypeError):
        refused.reprioritize("b", NAN)
    assert refused.state_of("b") is TaskState.QUEUED
    for d in (refused, untouched):
        d.complete("a")
        d.update_worker("w", capacity=3)
    assert [a.task.id for a in refused.dispatch()] == [a.task.id for a in untouched.dispatch()]
