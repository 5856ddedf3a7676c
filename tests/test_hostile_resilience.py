"""Red team for the resilience components: bad, extreme and re-entrant calls.

Each refused call runs against an untouched twin (``tests/hostile.py``): both
are built the same way, the call is refused on one with its specific error,
then everything observable is compared — state, metrics, and what the next
acquisitions and releases answer, after the clock has moved on. The second
half checks that extreme values inside the accepted ranges behave: finite
answers, no overflow, no gigabytes, no hang.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hostile import assert_refused

from taskdist import (
    AllGates,
    BreakerMetrics,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    DuplicateTaskError,
    Gate,
    InvalidArgumentError,
    InvalidTypeError,
    KeyedRateGate,
    KeyedRateLimiter,
    ManualClock,
    MultiLimiter,
    OverReleaseError,
    PoolGate,
    RateGate,
    RateLimiter,
    ResourcePool,
    RetryPolicy,
    Task,
    UnsatisfiableDemandError,
    WaitFixed,
)


class Boom(Exception):
    """What a user's callback raises."""


def boom(*_: object) -> Any:
    raise Boom


@attrs.define
class World:
    """A subject, its clock, and how to read everything it answers."""

    subject: Any
    clock: ManualClock
    looks: Callable[[World], Any]

    def observe(self) -> Any:
        return self.looks(self)


# -- the worlds: each built with some history, so a refused call has state to spoil ------


def breaker_world(**options: Any) -> World:
    """A breaker half-open with one of its two probes out, and a half-open deadline."""
    clock = ManualClock()
    breaker = CircuitBreaker(
        clock,
        window_size=4,
        minimum_calls=2,
        open_duration=10.0,
        half_open_calls=2,
        max_wait_in_half_open=5.0,
        name="api",
        **options,
    )
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(10.0)
    assert breaker.acquire() is not None
    return World(breaker, clock, look_at_breaker)


def look_at_breaker(world: World) -> Any:
    breaker = world.subject
    seen = [breaker.metrics(), breaker.next_wakeup(), breaker.can_acquire()]
    seen.append([breaker.acquire() is not None for _ in range(3)])
    breaker.record_success(0.5)
    world.clock.advance(6.0)  # past the half-open deadline, into the re-opened period
    seen += [breaker.metrics(), breaker.next_wakeup()]
    world.clock.advance(100.0)
    seen.append([breaker.allow() for _ in range(3)])
    return seen


def forced_world() -> World:
    world = breaker_world()
    world.subject.force_open()
    world.looks = look_at_refusing_breaker
    return world


def open_world() -> World:
    world = breaker_world()
    world.subject.record_failure()  # the probe out fails, and so does the second: open again
    assert world.subject.acquire() is not None
    world.subject.record_failure()
    assert world.subject.state is CircuitState.OPEN
    world.looks = look_at_refusing_breaker
    return world


def look_at_refusing_breaker(world: World) -> Any:
    """As :func:`look_at_breaker`, but a refused call is counted as not permitted: that
    count is what a refusal changes, by design, so it is left out."""
    return [
        attrs.evolve(seen, not_permitted_calls=0) if isinstance(seen, BreakerMetrics) else seen
        for seen in look_at_breaker(world)
    ]


def retry_world(**options: Any) -> World:
    policy = RetryPolicy(max_attempts=4, base=0.5, cap=8.0, rng=random.Random(7), **options)
    return World(policy, ManualClock(), look_at_retry)


def look_at_retry(world: World) -> Any:
    policy = world.subject
    return [policy.delay(n) for n in range(1, 8)], [policy.should_retry(n) for n in range(1, 6)]


def limiter_world() -> World:
    clock = ManualClock()
    limiter = RateLimiter(2, per=1.0, burst=4, clock=clock)
    assert limiter.try_acquire(3)
    return World(limiter, clock, look_at_limiter)


def look_at_limiter(world: World) -> Any:
    limiter = world.subject
    seen = [limiter.available(), limiter.next_wakeup(), limiter.ready_at(2)]
    seen.append([limiter.try_acquire(1) for _ in range(3)])
    world.clock.advance(1.25)
    seen.append([limiter.try_acquire(0.5) for _ in range(4)])
    return seen


def multi_world() -> World:
    clock = ManualClock()
    limits = MultiLimiter(
        {
            "requests": RateLimiter(10, per=60.0, burst=3, clock=clock),
            "tokens": RateLimiter(1000, per=60.0, burst=1000, clock=clock),
        }
    )
    assert limits.try_acquire({"requests": 1, "tokens": 600})
    return World(limits, clock, look_at_multi)


def look_at_multi(world: World) -> Any:
    limits = world.subject
    seen = [limits.available(), limits.next_wakeup(), limits.retry_after({"tokens": 500})]
    seen.append([limits.try_acquire({"requests": 1, "tokens": 200}) for _ in range(3)])
    world.clock.advance(30.0)
    seen.append([limits.try_acquire(1) for _ in range(3)])
    return seen


def keyed_world() -> World:
    clock = ManualClock()
    keyed = KeyedRateLimiter(1, per=1.0, burst=2, clock=clock, max_keys=3)
    assert keyed.try_acquire("a", 2) and keyed.try_acquire("b")
    return World(keyed, clock, look_at_keyed)


def look_at_keyed(world: World) -> Any:
    keyed = world.subject
    seen = [len(keyed), list(keyed), keyed.evicted_idle, keyed.evicted_active]
    seen.append([(keyed.available(k), keyed.ready_at(k)) for k in ("a", "b", "c")])
    seen.append([keyed.try_acquire(k) for k in ("a", "b", "c", "d", "b")])
    world.clock.advance(1.5)
    seen.append([keyed.try_acquire(k, 2) for k in ("a", "b", "c", "e")])
    seen.append((len(keyed), list(keyed)))
    return seen


def pool_world() -> World:
    pool = ResourcePool("db", size=10)
    assert pool.try_acquire(4) and pool.try_acquire(2.5)
    return World(pool, ManualClock(), look_at_pool)


def look_at_pool(world: World) -> Any:
    pool = world.subject
    seen = [pool.stats()]
    seen.append([pool.try_acquire(n) for n in (3, 1, 0.5)])
    pool.release(4)
    seen.append([pool.stats(), pool.can_acquire(4.5)])
    return seen


def rate_gate_world() -> World:
    clock = ManualClock()
    gate = RateGate(RateLimiter(1, per=1.0, burst=3, clock=clock), "api_calls")
    assert gate.try_acquire(Task("first", resources={"api_calls": 2}))
    assert not gate.try_acquire(Task("refused", resources={"api_calls": 2}))
    clock.advance(1.5)  # the wakeup it asked for is due, and stays until a try_acquire
    return World(gate, clock, look_at_gate)


def keyed_gate_world(key: Callable[[Task], Any] | None = None) -> World:
    clock = ManualClock()
    options = {} if key is None else {"key": key}
    gate = KeyedRateGate(KeyedRateLimiter(1, per=1.0, burst=3, clock=clock), "api_calls", **options)
    return World(gate, clock, look_at_gate)


def pool_gate_world() -> World:
    gate = PoolGate(ResourcePool("api_calls", size=3))
    assert gate.try_acquire(Task("first", resources={"api_calls": 2}))
    return World(gate, ManualClock(), look_at_gate)


class RaisingGate:
    """A user's gate whose try_acquire raises for task "one": AllGates must undo the
    gates before it."""

    def try_acquire(self, task: Task) -> bool:
        if task.id == "one":
            raise Boom
        return True

    def release(self, task: Task) -> None:
        pass

    def next_wakeup(self) -> float | None:
        return None


def all_gates_world(*extra: Gate) -> World:
    clock = ManualClock()
    pool = ResourcePool("api_calls", size=3)
    gates = AllGates(
        [
            PoolGate(pool),
            RateGate(RateLimiter(1, per=1.0, burst=3, clock=clock), "api_calls"),
            *extra,
        ]
    )
    assert gates.try_acquire(Task("first", resources={"api_calls": 1}))
    return World(gates, clock, look_at_gate)


def answer(ask: Callable[[], object]) -> object:
    """What a call returns, or the kind of error it raises (some worlds always raise)."""
    try:
        return ask()
    except Exception as error:
        return type(error).__name__


def look_at_gate(world: World) -> Any:
    gate = world.subject
    tasks = [Task(f"t{i}", tenant="x", resources={"api_calls": 1}) for i in range(3)]
    seen = [gate.next_wakeup(), [answer(lambda t=t: gate.can_acquire(t)) for t in tasks]]
    seen.append([answer(lambda t=t: gate.try_acquire(t)) for t in tasks])
    world.clock.advance(2.0)
    seen.append([answer(lambda t=t: gate.can_acquire(t)) for t in tasks[:1]])
    seen.append(gate.next_wakeup())
    if isinstance(gate, (PoolGate, AllGates)):
        for t in tasks:
            again = Task(f"again-{t.id}", resources={"api_calls": 1})
            if answer(lambda again=again: gate.try_acquire(again)) is True:
                gate.release(again)
        seen.append(len(gate) if isinstance(gate, AllGates) else gate.pool.stats())
    return seen


def gate_parts_world() -> World:
    """Gates not yet grouped: refusing to group them must leave each as it was."""
    clock = ManualClock()
    limiter = RateLimiter(1, per=1.0, burst=3, clock=clock)
    pool = ResourcePool("db", 4)
    parts = {"rate": RateGate(limiter, "api_calls"), "pool": PoolGate(pool), "limiter": limiter}
    assert parts["rate"].try_acquire(Task("a", resources={"api_calls": 1}))
    assert parts["pool"].try_acquire(Task("a", resources={"db": 1}))

    def looks(world: World) -> Any:
        rate, gate_pool = world.subject["rate"], world.subject["pool"]
        task = Task("b", resources={"api_calls": 2, "db": 3})
        return [
            limiter.available(),
            pool.stats(),
            rate.can_acquire(task),
            gate_pool.can_acquire(task),
            AllGates([rate, gate_pool]).try_acquire(task),
            pool.stats(),
        ]

    return World(parts, clock, looks)


BUILDS: dict[str, Callable[[], World]] = {
    "breaker": breaker_world,
    "forced": forced_world,
    "open": open_world,
    "raising-predicate": lambda: breaker_world(is_failure=boom),
    "retry": retry_world,
    "raising-retryable": lambda: retry_world(retryable=boom),
    "limiter": limiter_world,
    "multi": multi_world,
    "keyed": keyed_world,
    "pool": pool_world,
    "rate-gate": rate_gate_world,
    "keyed-gate": keyed_gate_world,
    "nan-key-gate": lambda: keyed_gate_world(key=lambda t: math.nan),
    "list-key-gate": lambda: keyed_gate_world(key=lambda t: [t.tenant]),
    "raising-key-gate": lambda: keyed_gate_world(key=boom),
    "pool-gate": pool_gate_world,
    "all-gates": all_gates_world,
    "all-gates-raising": lambda: all_gates_world(RaisingGate()),
    "gate-parts": gate_parts_world,
}

IAE, ITE = InvalidArgumentError, InvalidTypeError
USDE = UnsatisfiableDemandError

big = Task("big", resources={"api_calls": 5})
one = Task("one", resources={"api_calls": 1})
nan = math.nan

CASES: list[tuple[str, Callable[[Any], object], type[BaseException]]] = [
    # CircuitBreaker: outcomes, permits, listeners, wrappers, callbacks
    ("breaker", lambda b: b.record_success(-1.0), IAE),
    ("breaker", lambda b: b.record_failure(nan), IAE),
    ("breaker", lambda b: b.record_failure(math.inf), IAE),
    ("breaker", lambda b: b.record_success(10**400), IAE),
    ("breaker", lambda b: b.record_success("1"), ITE),
    ("breaker", lambda b: b.record_success(True), ITE),
    ("breaker", lambda b: b.record_success(None), ITE),
    ("breaker", lambda b: b.record_success(1.0, permit="p"), ITE),
    ("breaker", lambda b: b.record_success(1.0, permit=-3), ITE),
    ("breaker", lambda b: b.record_failure(1.0, permit=1.5), ITE),
    ("breaker", lambda b: b.record_failure(permit=None, duration=-0.0 - 1e-300), IAE),
    ("breaker", lambda b: b.record_error("boom"), ITE),
    ("breaker", lambda b: b.record_error(ValueError), ITE),
    ("breaker", lambda b: b.record_error(Boom(), -2.0), IAE),
    ("breaker", lambda b: b.record_error(Boom(), nan), IAE),
    ("breaker", lambda b: b.release(permit=True), ITE),
    ("breaker", lambda b: b.release(permit="0"), ITE),
    ("breaker", lambda b: b.add_listener(None), ITE),
    ("breaker", lambda b: b.add_listener("print"), ITE),
    ("breaker", lambda b: b.remove_listener(print), IAE),
    ("breaker", lambda b: b.__exit__(None, None, None), RuntimeError),
    ("breaker", lambda b: b.call(42), ITE),
    ("breaker", lambda b: b.call(None), ITE),
    ("forced", lambda b: b.call(print), CircuitOpenError),
    ("forced", lambda b: b.__enter__(), CircuitOpenError),
    ("open", lambda b: b.call(print), CircuitOpenError),
    ("open", lambda b: b.__enter__(), CircuitOpenError),
    ("raising-predicate", lambda b: b.record_error(ValueError()), Boom),
    ("raising-predicate", lambda b: b.record_error(ValueError(), permit=0), Boom),
    # RetryPolicy: attempts, previous delays, elapsed times, a raising predicate
    ("retry", lambda p: p.delay(0), IAE),
    ("retry", lambda p: p.delay(-(10**400)), IAE),
    ("retry", lambda p: p.delay(1.5), ITE),
    ("retry", lambda p: p.delay(True), ITE),
    ("retry", lambda p: p.delay("2"), ITE),
    ("retry", lambda p: p.delay(1, previous=-1.0), IAE),
    ("retry", lambda p: p.delay(1, previous=nan), IAE),
    ("retry", lambda p: p.delay(1, previous=1e10), IAE),
    ("retry", lambda p: p.delay(1, previous="0.5"), ITE),
    ("retry", lambda p: p.should_retry(0), IAE),
    ("retry", lambda p: p.should_retry(1, "error"), ITE),
    ("retry", lambda p: p.should_retry(1, elapsed=nan), IAE),
    ("retry", lambda p: p.should_retry(1, elapsed=-1.0), IAE),
    ("retry", lambda p: p.should_retry(1, ValueError(), elapsed=math.inf), IAE),
    ("raising-retryable", lambda p: p.should_retry(1, ValueError()), Boom),
    # RateLimiter
    ("limiter", lambda r: r.try_acquire(0), IAE),
    ("limiter", lambda r: r.try_acquire(-1), IAE),
    ("limiter", lambda r: r.try_acquire(nan), IAE),
    ("limiter", lambda r: r.try_acquire(math.inf), IAE),
    ("limiter", lambda r: r.try_acquire(10**400), IAE),
    ("limiter", lambda r: r.try_acquire("1"), ITE),
    ("limiter", lambda r: r.try_acquire(True), ITE),
    ("limiter", lambda r: r.try_acquire(5), USDE),
    ("limiter", lambda r: r.can_acquire(0), IAE),
    ("limiter", lambda r: r.can_acquire(4.000001), USDE),
    ("limiter", lambda r: r.ready_at(8), USDE),
    ("limiter", lambda r: r.retry_after(-1), IAE),
    ("limiter", lambda r: r.refund(0), IAE),
    ("limiter", lambda r: r.refund(nan), IAE),
    ("limiter", lambda r: r.refund("x"), ITE),
    # MultiLimiter: every amount checked before anything is taken
    ("multi", lambda m: m.try_acquire({"unknown": 1}), IAE),
    ("multi", lambda m: m.try_acquire({"requests": -1}), IAE),
    ("multi", lambda m: m.try_acquire({"requests": 1, "tokens": nan}), IAE),
    ("multi", lambda m: m.try_acquire({"requests": "1"}), ITE),
    ("multi", lambda m: m.try_acquire({"requests": 1, "tokens": 10**6}), USDE),
    ("multi", lambda m: m.try_acquire(5), USDE),
    ("multi", lambda m: m.try_acquire({1: 1}), IAE),
    ("multi", lambda m: m.try_acquire(None), ITE),
    ("multi", lambda m: m.can_acquire({"nope": 1}), IAE),
    ("multi", lambda m: m.ready_at({"requests": math.inf}), IAE),
    ("multi", lambda m: m.retry_after([1]), ITE),
    ("multi", lambda m: m.refund({"requests": -1}), IAE),
    # KeyedRateLimiter: NaN and unhashable keys, bad amounts for new and held keys
    ("keyed", lambda k: k.try_acquire(nan), IAE),
    ("keyed", lambda k: k.try_acquire(float("nan")), IAE),
    ("keyed", lambda k: k.try_acquire(("tenant", nan)), IAE),
    ("keyed", lambda k: k.try_acquire(frozenset({nan})), IAE),
    ("keyed", lambda k: k.try_acquire([1]), ITE),
    ("keyed", lambda k: k.try_acquire({}), ITE),
    ("keyed", lambda k: k.try_acquire("a", 0), IAE),
    ("keyed", lambda k: k.try_acquire("b", 3), USDE),
    ("keyed", lambda k: k.try_acquire("new", nan), IAE),
    ("keyed", lambda k: k.try_acquire("new", 3), USDE),
    ("keyed", lambda k: k.can_acquire(nan), IAE),
    ("keyed", lambda k: k.ready_at([1]), ITE),
    ("keyed", lambda k: k.refund(nan), IAE),
    ("keyed", lambda k: k.refund("a", -1), IAE),
    ("keyed", lambda k: k.available(nan), IAE),
    ("keyed", lambda k: k.next_wakeup({}), ITE),
    ("keyed", lambda k: k.check_key((1, [2])), ITE),
    # ResourcePool
    ("pool", lambda p: p.try_acquire(0), IAE),
    ("pool", lambda p: p.try_acquire(-1), IAE),
    ("pool", lambda p: p.try_acquire(nan), IAE),
    ("pool", lambda p: p.try_acquire(10**400), IAE),
    ("pool", lambda p: p.try_acquire("1"), ITE),
    ("pool", lambda p: p.try_acquire(10.5), USDE),
    ("pool", lambda p: p.can_acquire(11), USDE),
    ("pool", lambda p: p.release(7), OverReleaseError),
    ("pool", lambda p: p.release(0), IAE),
    ("pool", lambda p: p.release(nan), IAE),
    ("pool", lambda p: p.hold(11).__enter__(), USDE),
    # RateGate, KeyedRateGate: what is not a Task, demands above the burst, bad keys
    ("rate-gate", lambda g: g.try_acquire("task"), ITE),
    ("rate-gate", lambda g: g.try_acquire(None), ITE),
    ("rate-gate", lambda g: g.can_acquire(5), ITE),
    ("rate-gate", lambda g: g.check(object()), ITE),
    ("rate-gate", lambda g: g.release("first"), ITE),
    ("rate-gate", lambda g: g.rollback({"id": "first"}), ITE),
    ("rate-gate", lambda g: g.demand("first"), ITE),
    ("rate-gate", lambda g: g.rollback(one), OverReleaseError),
    ("rate-gate", lambda g: g.try_acquire(big), USDE),
    ("rate-gate", lambda g: g.check(big), USDE),
    ("keyed-gate", lambda g: g.try_acquire(one.id), ITE),
    ("keyed-gate", lambda g: g.check(big), USDE),
    ("nan-key-gate", lambda g: g.try_acquire(one), IAE),
    ("nan-key-gate", lambda g: g.check(one), IAE),
    ("list-key-gate", lambda g: g.try_acquire(one), ITE),
    ("list-key-gate", lambda g: g.check(one), ITE),
    ("raising-key-gate", lambda g: g.try_acquire(one), Boom),
    ("raising-key-gate", lambda g: g.can_acquire(one), Boom),
    # PoolGate
    ("pool-gate", lambda g: g.try_acquire("first"), ITE),
    ("pool-gate", lambda g: g.can_acquire(None), ITE),
    ("pool-gate", lambda g: g.release(3), ITE),
    (
        "pool-gate",
        lambda g: g.try_acquire(Task("first", resources={"api_calls": 1})),
        DuplicateTaskError,
    ),
    ("pool-gate", lambda g: g.release(one), OverReleaseError),
    ("pool-gate", lambda g: g.rollback(one), OverReleaseError),
    ("pool-gate", lambda g: g.try_acquire(big), USDE),
    ("pool-gate", lambda g: g.check(big), USDE),
    # AllGates: refusals leave every member as it was
    ("all-gates", lambda g: g.try_acquire("t"), ITE),
    ("all-gates", lambda g: g.can_acquire(5), ITE),
    ("all-gates", lambda g: g.check(None), ITE),
    ("all-gates", lambda g: g.release(["first"]), ITE),
    ("all-gates", lambda g: g.try_acquire(Task("first")), DuplicateTaskError),
    ("all-gates", lambda g: g.release(one), OverReleaseError),
    ("all-gates", lambda g: g.rollback(one), OverReleaseError),
    ("all-gates", lambda g: g.try_acquire(big), USDE),
    ("all-gates", lambda g: g.check(big), USDE),
    ("all-gates-raising", lambda g: g.try_acquire(one), Boom),
    ("gate-parts", lambda p: AllGates([p["rate"], p["rate"]]), IAE),
    ("gate-parts", lambda p: AllGates([p["pool"], AllGates([p["pool"]])]), IAE),
    ("gate-parts", lambda p: AllGates([p["rate"], RateGate(p["limiter"], "other")]), IAE),
    ("gate-parts", lambda p: AllGates([p["rate"], p["limiter"]]), ITE),
    ("gate-parts", lambda p: AllGates(p["rate"]), ITE),
]


@pytest.mark.parametrize(
    ("build", "call", "error"),
    CASES,
    ids=[f"{build}-{i}" for i, (build, _, _) in enumerate(CASES)],
)
def test_a_refused_call_leaves_everything_as_its_twin(
    build: str, call: Callable[[Any], object], error: type[BaseException]
) -> None:
    assert_refused(
        BUILDS[build],
        lambda world: call(world.subject),
        error,
        lambda world: world.observe(),
    )


def test_the_red_team_is_large_and_covers_every_component() -> None:
    assert len(CASES) >= 80
    assert set(BUILDS) == {build for build, _, _ in CASES}


# -- refused at construction ------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: CircuitBreaker(ManualClock(), window_size=10**9), IAE),
        (lambda: CircuitBreaker(ManualClock(), window="time", window_size=10**9), IAE),
        (lambda: CircuitBreaker(ManualClock(), window_size=10**400), IAE),
        (lambda: CircuitBreaker(ManualClock(), open_duration=1e308), IAE),
        (lambda: CircuitBreaker(ManualClock(), open_duration=10**400), IAE),
        (lambda: CircuitBreaker(ManualClock(), max_wait_in_half_open=-1.0), IAE),
        (lambda: CircuitBreaker(ManualClock(), open_duration_multiplier=math.inf), IAE),
        (lambda: CircuitBreaker(ManualClock(), half_open_calls=2.0), ITE),
        (lambda: RetryPolicy(base=1e300, cap=1e300), IAE),
        (lambda: RetryPolicy(cap=math.inf), IAE),
        (lambda: RetryPolicy(multiplier=math.inf, cap=1.0), IAE),
        (lambda: RetryPolicy(max_attempts=0), IAE),
        (lambda: RetryPolicy(wait=WaitFixed(1e10)), IAE),
        (lambda: RetryPolicy(stop=5), ITE),  # type: ignore[arg-type]
        (lambda: RateLimiter(1e308), IAE),  # the default burst, the rate, is above 2**40
        (lambda: RateLimiter(10, burst=10**18), IAE),
        (lambda: RateLimiter(1e-300, per=1e300), IAE),
        (lambda: RateLimiter(1e300, per=1e-300), IAE),
        (lambda: RateLimiter(1, burst=0.5), IAE),
        (lambda: KeyedRateLimiter(1, max_keys=0), IAE),
        (lambda: MultiLimiter({"": RateLimiter(1)}), IAE),
        (lambda: ResourcePool("", 1), IAE),
        (lambda: ResourcePool("db", math.inf), IAE),
        (lambda: RateGate(RateLimiter(1), ""), IAE),
        (lambda: PoolGate(ResourcePool("db", 1), ""), IAE),
    ],
)
def test_values_outside_the_accepted_ranges_are_refused_at_construction(
    build: Callable[[], object], error: type[BaseException]
) -> None:
    with pytest.raises(error):
        build()


# -- extreme but accepted: finite answers, exact counts, no overflow ----------------------


def test_rates_near_the_ends_of_the_float_range_give_finite_answers() -> None:
    clock = ManualClock()
    fast = RateLimiter(1e308, burst=10, clock=clock)
    assert [fast.try_acquire() for _ in range(11)] == [True] * 10 + [False]
    assert fast.next_wakeup() is not None and math.isfinite(fast.next_wakeup() or 0.0)
    slow = RateLimiter(1e-300, clock=clock)
    assert slow.try_acquire() and not slow.try_acquire()
    assert math.isfinite(slow.ready_at()) and slow.ready_at() > 1e299
    assert 0.0 <= slow.available() <= 1.0


def test_a_bucket_busy_for_far_more_than_2_to_the_53_units_still_counts_every_unit() -> None:
    """At 2**40 units a second for two hours, a float count would stop adding single
    units; the schedule is re-anchored instead, and the window bound still holds."""
    clock = ManualClock()
    limiter = RateLimiter(2**40, per=1.0, burst=2**40, clock=clock)
    admitted = 0.0
    for _ in range(8_300):
        while limiter.try_acquire(2**40):
            admitted += 2**40
        clock.set(limiter.ready_at(2**40))
    assert admitted > 2**53
    assert admitted <= 2**40 * clock.now() + 2**40  # rate * time + burst
    before = limiter.available()
    assert limiter.try_acquire(1) is (before >= 1)
    assert limiter.available() == pytest.approx(before - 1, abs=1e-3)


@pytest.mark.parametrize("jitter", ["none", "full", "equal", "decorrelated"])
@pytest.mark.parametrize("attempt", [1, 64, 1075, 10**6, 10**400])
@pytest.mark.parametrize("multiplier", [1.0, 1.0000001, 2.0, 1e308])
def test_retry_delays_stay_finite_and_capped_for_any_attempt(
    jitter: str, attempt: int, multiplier: float
) -> None:
    policy = RetryPolicy(
        max_attempts=10**6,
        base=0.5,
        multiplier=multiplier,
        cap=1e9,
        jitter=jitter,  # type: ignore[arg-type]
        rng=random.Random(attempt),
    )
    delay = policy.delay(attempt, previous=1e9)
    assert 0.0 <= delay <= 1e9
    assert policy.should_retry(attempt % 10**6 or 1) is (attempt % 10**6 < 10**6 - 1)
    if jitter == "none":
        expected = 0.5 if multiplier == 1.0 or attempt == 1 else None
        assert expected is None or delay == expected


def test_breaker_durations_at_the_top_of_their_range_stay_finite() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(
        clock,
        window_size=1,
        minimum_calls=1,
        open_duration=1e9,
        open_duration_multiplier=1e308,
        open_duration_max=1e9,
        half_open_calls=10**9,
        max_wait_in_half_open=1e9,
    )
    for _ in range(5):
        breaker.record_failure()
        wakeup = breaker.next_wakeup()
        assert wakeup is not None and math.isfinite(wakeup)
        clock.set(wakeup)
        assert breaker.allow()  # a probe
        assert breaker.next_wakeup() == clock.now() + 1e9
        clock.advance(1e9)
        assert breaker.state is CircuitState.OPEN  # its probe never came back
        clock.set(breaker.next_wakeup() or 0.0)
        breaker.reset()
    assert breaker.metrics().consecutive_opens == 0


def test_pools_of_extreme_sizes_count_exactly() -> None:
    huge = ResourcePool("huge", 1e308)
    assert huge.try_acquire(1e308) and not huge.try_acquire(1e-300)
    huge.release(1e308)
    assert huge.in_use == 0.0
    tiny = ResourcePool("tiny", 1e-300)
    assert tiny.try_acquire(5e-301) and tiny.try_acquire(5e-301) is (5e-301 * 2 <= 1e-300)
    assert tiny.in_use <= tiny.size


def test_keyed_limits_with_a_huge_key_cap_stay_bounded_by_activity() -> None:
    clock = ManualClock()
    keyed = KeyedRateLimiter(1, per=1.0, burst=1, clock=clock, max_keys=10**18)
    for i in range(1000):
        assert keyed.try_acquire(i)
        clock.advance(0.01)
    clock.advance(2.0)
    keyed.try_acquire("late")
    assert len(keyed) == 1  # the idle buckets were dropped as the new key came


# -- re-entrant callbacks that are allowed: they see a consistent breaker ---------------


def test_a_listener_may_drive_the_breaker_it_listens_to() -> None:
    clock = ManualClock()
    heard: list[CircuitState] = []
    breaker = CircuitBreaker(clock, window_size=2, minimum_calls=2, open_duration=1.0)

    def listener(change: Any) -> None:
        heard.append(change.current)
        if change.current is CircuitState.OPEN:
            breaker.force_open()  # an operator's rule: no automatic recovery

    breaker.add_listener(listener)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(5.0)
    assert heard == [CircuitState.OPEN, CircuitState.FORCED_OPEN]
    assert breaker.state is CircuitState.FORCED_OPEN and not breaker.can_acquire()


def test_a_predicate_may_read_the_breaker_and_a_raising_one_frees_its_probe() -> None:
    clock = ManualClock()
    seen: list[int] = []
    raising = False

    def is_failure(error: BaseException) -> bool:
        seen.append(breaker.metrics().probes_in_flight)
        if raising:
            raise Boom
        return True

    breaker = CircuitBreaker(
        clock,
        window_size=1,
        minimum_calls=1,
        open_duration=1.0,
        half_open_calls=1,
        is_failure=is_failure,
        record=(),
    )
    breaker.record_error(ValueError())
    clock.advance(1.0)
    raising = True
    with pytest.raises(Boom):
        breaker.call(boom)
    assert seen == [0, 1]
    assert breaker.can_acquire()  # the probe came back when the predicate raised
