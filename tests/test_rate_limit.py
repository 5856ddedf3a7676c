"""RateLimiter, MultiLimiter and KeyedRateLimiter: bursts, the window bound, steady callers,
all-or-nothing combinations, bounded keyed memory and bad input."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

from taskdist import (
    InvalidArgumentError,
    InvalidTypeError,
    KeyedRateLimiter,
    ManualClock,
    MultiLimiter,
    RateLimiter,
)

rates = st.floats(min_value=0.1, max_value=1000.0)
periods = st.floats(min_value=0.01, max_value=100.0)
bursts = st.floats(min_value=1.0, max_value=50.0) | st.integers(min_value=1, max_value=50)
starts = st.floats(min_value=-1e3, max_value=1e6)


def state(limiter: RateLimiter) -> tuple[float, ...]:
    """What a caller can observe of a limiter now."""
    probes = [a for a in (0.5, 1.0, limiter.burst) if a <= limiter.burst]
    return (limiter.available(), *(limiter.ready_at(a) for a in probes))


# -- bursts and pacing -------------------------------------------------------


@pytest.mark.parametrize("burst", [1, 2, 3, 10, 25])
def test_exactly_burst_pass_at_once_from_idle(burst: int) -> None:
    limiter = RateLimiter(rate=100, per=60.0, burst=burst, clock=ManualClock(5.0))
    admitted = [limiter.try_acquire() for _ in range(burst + 5)]
    assert admitted == [True] * burst + [False] * 5


@pytest.mark.parametrize(
    ("rate", "start"), [(1e9, 1e6), (1e8, 1e7), (2e6, 1e9)]
)  # high rates (bytes/s) on a clock far from 0 (a long uptime, a long simulation)
@pytest.mark.parametrize("burst", [1, 10])
def test_float_rounding_slack_never_admits_a_whole_unit_beyond_burst(
    rate: float, start: float, burst: int
) -> None:
    # The slack for float rounding was 2**-50 of the times' magnitude: at t = 1e6
    # that is more than one unit's interval at 1e9/s, so burst + 1 passed.
    limiter = RateLimiter(rate=rate, per=1.0, burst=burst, clock=ManualClock(start))
    assert limiter.try_acquire(burst)
    assert not limiter.try_acquire()
    assert not limiter.try_acquire(0.5)


def test_default_burst_is_the_rate() -> None:
    limiter = RateLimiter(rate=10, per=60.0, clock=ManualClock())
    assert sum(limiter.try_acquire() for _ in range(20)) == 10


def test_default_burst_is_at_least_one_unit_for_slow_rates() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=0.5, per=1.0, clock=clock)  # one unit every 2 s
    assert limiter.burst == 1.0
    assert [limiter.try_acquire(), limiter.try_acquire()] == [True, False]
    assert limiter.retry_after() == 2.0


def test_after_the_burst_one_unit_passes_per_interval() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=100, per=60.0, burst=10, clock=clock)  # seed-004: 100/min
    assert sum(limiter.try_acquire() for _ in range(10)) == 10
    assert limiter.retry_after() == pytest.approx(0.6)
    clock.advance(0.59)
    assert not limiter.try_acquire()
    clock.advance(0.01)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()


def test_weighted_amounts_draw_tokens_not_requests() -> None:
    clock = ManualClock()
    tokens = RateLimiter(rate=40_000, per=60.0, clock=clock)
    assert tokens.try_acquire(30_000)
    assert not tokens.try_acquire(20_000)
    assert tokens.try_acquire(10_000)
    # 40k/min refills 20k in 30 s.
    assert tokens.retry_after(20_000) == pytest.approx(30.0)


def test_ready_at_is_the_exact_time_to_come_back() -> None:
    clock = ManualClock(0.1)
    limiter = RateLimiter(rate=3, per=1.0, burst=1, clock=clock)
    assert limiter.try_acquire()
    ready = limiter.ready_at()
    assert ready > clock.now()
    assert not limiter.try_acquire()
    clock.set(ready)
    assert limiter.ready_at() == clock.now()
    assert limiter.try_acquire()


def test_next_wakeup_is_none_while_a_unit_is_available() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=2, per=1.0, burst=2, clock=clock)
    assert limiter.next_wakeup() is None
    limiter.try_acquire()
    assert limiter.next_wakeup() is None
    limiter.try_acquire()
    assert limiter.next_wakeup() == 0.5
    clock.set(0.5)
    assert limiter.next_wakeup() is None


def test_available_counts_fractional_units_up_to_burst() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=4, per=1.0, burst=4, clock=clock)
    assert limiter.available() == 4.0
    limiter.try_acquire(4)
    assert limiter.available() == 0.0
    clock.advance(0.125)
    assert limiter.available() == pytest.approx(0.5)
    clock.advance(100.0)
    assert limiter.available() == 4.0


def test_can_acquire_takes_nothing() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=1, per=1.0, burst=1, clock=clock)
    assert limiter.can_acquire()
    assert limiter.can_acquire()
    assert limiter.try_acquire()
    assert not limiter.can_acquire()


def test_refund_gives_back_unused_units_but_never_beyond_burst() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=10, per=1.0, burst=10, clock=clock)
    assert limiter.try_acquire(8)
    limiter.refund(5)
    assert limiter.available() == pytest.approx(7.0)
    limiter.refund(100)
    assert limiter.available() == 10.0
    assert sum(limiter.try_acquire() for _ in range(12)) == 10


def test_refusal_changes_nothing() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=5, per=1.0, burst=3, clock=clock)
    limiter.try_acquire(3)
    clock.advance(0.1)
    before = state(limiter)
    assert not limiter.try_acquire(2)
    assert state(limiter) == before


def test_settings_are_read_only_properties() -> None:
    limiter = RateLimiter(rate=100, per=60.0, burst=10)
    assert (limiter.rate, limiter.per, limiter.burst, limiter.interval) == (100, 60, 10, 0.6)
    with pytest.raises(AttributeError):
        limiter.rate = 5  # type: ignore[misc]
    assert repr(limiter) == "RateLimiter(rate=100, per=60, burst=10)"


def test_default_clock_is_monotonic() -> None:
    limiter = RateLimiter(rate=1000)
    assert limiter.try_acquire()
    assert type(limiter.clock).__name__ == "MonotonicClock"


# -- properties -------------------------------------------------------------


@given(
    rate=rates,
    per=periods,
    burst=bursts,
    start=starts,
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=2.0), st.floats(0.01, 1.0)),
        min_size=1,
        max_size=80,
    ),
)
def test_no_window_admits_more_than_rate_times_window_plus_burst(
    rate: float, per: float, burst: float, start: float, steps: list[tuple[float, float]]
) -> None:
    clock = ManualClock(start)
    limiter = RateLimiter(rate, per, burst, clock=clock)
    admitted: list[tuple[float, float]] = []
    for dt_fraction, amount_fraction in steps:
        clock.advance(dt_fraction * per / rate * burst)
        amount = max(amount_fraction * burst, 1e-6)
        if limiter.try_acquire(amount):
            admitted.append((clock.now(), amount))
    for i, (t_i, _) in enumerate(admitted):
        total = 0.0
        for t_j, amount in admitted[i:]:
            total += amount
            # A few ulps of slack: times within float rounding count as one.
            slack = 1e-9 * (burst + total) + rate / per * 1e-13 * (abs(t_j) + abs(t_i))
            assert total <= rate * (t_j - t_i) / per + burst + slack, (t_i, t_j, total)


@given(
    rate=rates,
    per=periods,
    burst=bursts,
    start=starts,
    amount_fraction=st.floats(min_value=0.05, max_value=1.0),
    n=st.integers(min_value=1, max_value=60),
    use_retry_after=st.booleans(),
)
def test_a_caller_paced_by_ready_at_is_never_refused_nor_held_back(
    rate: float,
    per: float,
    burst: float,
    start: float,
    amount_fraction: float,
    n: int,
    use_retry_after: bool,
) -> None:
    clock = ManualClock(start)
    limiter = RateLimiter(rate, per, burst, clock=clock)
    amount = amount_fraction * burst
    interval = per / rate
    for k in range(1, n + 1):
        if use_retry_after:
            clock.advance(limiter.retry_after(amount))
        else:
            clock.set(limiter.ready_at(amount))
        assert limiter.try_acquire(amount), k
        # From idle the k-th acquisition is due when k * amount - burst units
        # have refilled: the caller gets the full rate, no later.
        due = start + max(0.0, k * amount - burst) * interval
        assert clock.now() == pytest.approx(due, rel=1e-9, abs=1e-9 * interval)


schedules: dict[str, Callable[[float, int, float, float, float], float]] = {
    "k*a*per/rate": lambda t0, k, a, per, rate: t0 + k * a * per / rate,
    "k*a*(per/rate)": lambda t0, k, a, per, rate: t0 + k * a * (per / rate),
    "(k*a)*per/rate": lambda t0, k, a, per, rate: t0 + (k * a) * per / rate,
    "k*(a*per)/rate": lambda t0, k, a, per, rate: t0 + k * (a * per) / rate,
}


@given(
    rate=rates,
    per=periods,
    start=starts,
    amount=st.sampled_from([1, 2, 0.5, 1.5, 3]),
    extra_burst=st.sampled_from([0, 0, 1, 0.25]),
    schedule=st.sampled_from(sorted(schedules)),
)
def test_a_steady_caller_on_its_own_schedule_is_never_refused(
    rate: float, per: float, start: float, amount: float, extra_burst: float, schedule: str
) -> None:
    burst = max(1.0, amount) + extra_burst
    clock = ManualClock(start)
    limiter = RateLimiter(rate, per, burst, clock=clock)
    at = schedules[schedule]
    for k in range(300):
        t = at(start, k, amount, per, rate)
        assume(t >= clock.now())  # the caller's own rounding went backwards: not a schedule
        clock.set(t)
        assert limiter.try_acquire(amount), (k, t)


def test_steady_pacing_at_burst_one_survives_a_long_run() -> None:
    # The old TAT-accumulating form refused this caller within a few steps.
    clock = ManualClock(1000.1)
    limiter = RateLimiter(rate=7, per=1.0, burst=1, clock=clock)
    refused = 0
    for k in range(20_000):
        clock.set(1000.1 + k * 1.0 / 7)
        refused += not limiter.try_acquire()
    assert refused == 0


@given(
    rate=rates,
    per=periods,
    burst=bursts,
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=1.0), st.floats(0.05, 1.0)), max_size=30
    ),
)
def test_a_refused_acquire_leaves_the_limiter_as_it_was(
    rate: float, per: float, burst: float, steps: list[tuple[float, float]]
) -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate, per, burst, clock=clock)
    refusals = 0
    for dt, fraction in steps:
        clock.advance(dt * per / rate)
        before = state(limiter)
        if not limiter.try_acquire(fraction * burst):
            refusals += 1
            assert state(limiter) == before
    note(f"refusals: {refusals}")


# -- bad input --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"rate": 0}, InvalidArgumentError),
        ({"rate": -1}, InvalidArgumentError),
        ({"rate": math.nan}, InvalidArgumentError),
        ({"rate": math.inf}, InvalidArgumentError),
        ({"rate": "10"}, InvalidTypeError),
        ({"rate": True}, InvalidTypeError),
        ({"rate": 1, "per": 0}, InvalidArgumentError),
        ({"rate": 1, "per": -60}, InvalidArgumentError),
        ({"rate": 1, "per": math.nan}, InvalidArgumentError),
        ({"rate": 1, "burst": 0.5}, InvalidArgumentError),
        ({"rate": 1, "burst": 0}, InvalidArgumentError),
        ({"rate": 1, "burst": math.nan}, InvalidArgumentError),
        ({"rate": 1, "burst": math.inf}, InvalidArgumentError),
        ({"rate": 1e-300, "per": 1e300}, InvalidArgumentError),  # interval overflows
        ({"rate": 1e300, "per": 1e-300}, InvalidArgumentError),  # interval underflows to 0
        ({"rate": 1, "clock": object()}, InvalidTypeError),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        RateLimiter(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        (0, InvalidArgumentError),
        (-1, InvalidArgumentError),
        (math.nan, InvalidArgumentError),
        (math.inf, InvalidArgumentError),
        (11, InvalidArgumentError),  # more than burst: could never pass
        (True, InvalidTypeError),
        ("1", InvalidTypeError),
        (None, InvalidTypeError),
    ],
)
@pytest.mark.parametrize("method", ["try_acquire", "can_acquire", "ready_at", "retry_after"])
def test_bad_amounts_are_refused_and_change_nothing(
    amount: object, error: type[Exception], method: str
) -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=10, per=1.0, burst=10, clock=clock)
    limiter.try_acquire(4)
    before = state(limiter)
    with pytest.raises(error):
        getattr(limiter, method)(amount)
    assert state(limiter) == before


@pytest.mark.parametrize("amount", [0, -1, math.nan, math.inf, "1"])
def test_bad_refunds_are_refused_and_change_nothing(amount: object) -> None:
    limiter = RateLimiter(rate=10, per=1.0, burst=10, clock=ManualClock())
    limiter.try_acquire(4)
    before = state(limiter)
    with pytest.raises((InvalidArgumentError, InvalidTypeError)):
        limiter.refund(amount)  # type: ignore[arg-type]
    assert state(limiter) == before


# -- several limits at once -------------------------------------------------


def seed_limits(clock: ManualClock) -> MultiLimiter:
    return MultiLimiter(
        {
            "requests": RateLimiter(100, per=60.0, burst=10, clock=clock),
            "tokens": RateLimiter(40_000, per=60.0, clock=clock),
        }
    )


def test_several_limits_are_acquired_all_or_nothing() -> None:
    clock = ManualClock()
    limits = seed_limits(clock)
    assert limits.try_acquire({"requests": 1, "tokens": 25_000})
    before = limits.available()
    # Requests would admit; tokens refuse; so neither is charged.
    assert not limits.try_acquire({"requests": 1, "tokens": 20_000})
    assert limits.available() == before
    assert limits.try_acquire({"requests": 1, "tokens": 15_000})
    assert limits.available()["requests"] == 8.0


def test_a_number_draws_from_every_limit() -> None:
    clock = ManualClock()
    windows = MultiLimiter(
        {
            "per_second": RateLimiter(2, per=1.0, clock=clock),
            "per_minute": RateLimiter(3, per=60.0, clock=clock),
        }
    )
    assert [windows.try_acquire() for _ in range(3)] == [True, True, False]
    clock.advance(1.0)
    assert [windows.try_acquire() for _ in range(2)] == [True, False]  # minute window binds
    assert windows.retry_after() == pytest.approx(19.0)  # 20 s per unit, 1 s gone


def test_combined_retry_after_and_ready_at_are_the_latest_of_the_limits() -> None:
    clock = ManualClock()
    limits = seed_limits(clock)
    limits.try_acquire({"requests": 10, "tokens": 40_000})
    want = {"requests": 1, "tokens": 10_000}
    per_limit = [
        limits.limits["requests"].retry_after(1),
        limits.limits["tokens"].retry_after(10_000),
    ]
    assert limits.retry_after(want) == max(per_limit) == pytest.approx(15.0)
    clock.set(limits.ready_at(want))
    assert limits.try_acquire(want)


def test_combined_next_wakeup_waits_for_every_limit() -> None:
    clock = ManualClock()
    limits = seed_limits(clock)
    assert limits.next_wakeup() is None
    limits.try_acquire({"requests": 10})
    assert limits.next_wakeup() == pytest.approx(0.6)
    limits.try_acquire({"tokens": 40_000})
    assert limits.next_wakeup() == pytest.approx(0.6)  # tokens refill one unit in 1.5 ms


def test_zero_or_missing_amounts_draw_nothing_from_that_limit() -> None:
    clock = ManualClock()
    limits = seed_limits(clock)
    assert limits.try_acquire({"requests": 0, "tokens": 1000})
    assert limits.try_acquire({})
    assert limits.available()["requests"] == 10.0


def test_combined_refund_gives_back_to_each_limit() -> None:
    clock = ManualClock()
    limits = seed_limits(clock)
    limits.try_acquire({"requests": 1, "tokens": 30_000})
    limits.refund({"tokens": 20_000})
    assert limits.available() == pytest.approx({"requests": 9.0, "tokens": 30_000.0})


@given(
    requests=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=3.0),
            st.dictionaries(
                st.sampled_from(["a", "b", "c"]), st.floats(min_value=0.0, max_value=4.0)
            ),
        ),
        max_size=40,
    )
)
def test_a_combination_behaves_as_checking_every_limit_then_taking_from_all(
    requests: list[tuple[float, dict[str, float]]],
) -> None:
    settings = {"a": (2.0, 1.0, 4.0), "b": (5.0, 2.0, 4.0), "c": (1.0, 0.5, 4.0)}
    clock = ManualClock()
    combined = MultiLimiter(
        {n: RateLimiter(r, p, b, clock=clock) for n, (r, p, b) in settings.items()}
    )
    model = {n: RateLimiter(r, p, b, clock=clock) for n, (r, p, b) in settings.items()}
    for dt, amounts in requests:
        clock.advance(dt)
        wanted = {n: a for n, a in amounts.items() if a > 0}
        expected = all(model[n].can_acquire(a) for n, a in wanted.items())
        if expected:
            for n, a in wanted.items():
                assert model[n].try_acquire(a)
        assert combined.try_acquire(amounts) is expected
        assert combined.available() == {n: model[n].available() for n in settings}


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        ({}, InvalidArgumentError),
        ([("a", RateLimiter(1))], InvalidTypeError),
        ({"a": 5}, InvalidTypeError),
        ({"": RateLimiter(1)}, InvalidArgumentError),  # empty: a value, not a type
        ({1: RateLimiter(1)}, InvalidTypeError),
    ],
)
def test_bad_limit_sets_are_refused(limits: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        MultiLimiter(limits)  # type: ignore[arg-type]


def test_one_limiter_under_two_names_is_refused() -> None:
    shared = RateLimiter(1)
    with pytest.raises(InvalidArgumentError, match="same RateLimiter"):
        MultiLimiter({"a": shared, "b": shared})


@pytest.mark.parametrize(
    ("amounts", "error"),
    [
        ({"nope": 1}, InvalidArgumentError),
        ({"requests": -1}, InvalidArgumentError),
        ({"requests": math.nan}, InvalidArgumentError),
        ({"requests": 11}, InvalidArgumentError),  # above that limit's burst
        ({"requests": 1, "tokens": "many"}, InvalidTypeError),
        (11, InvalidArgumentError),
        ("1", InvalidTypeError),
    ],
)
def test_bad_combined_amounts_are_refused_and_change_nothing(
    amounts: object, error: type[Exception]
) -> None:
    clock = ManualClock()
    limits = seed_limits(clock)
    limits.try_acquire({"requests": 2, "tokens": 100})
    before = limits.available()
    with pytest.raises(error):
        limits.try_acquire(amounts)  # type: ignore[arg-type]
    assert limits.available() == before


# -- one bucket per key -----------------------------------------------------


def test_each_key_has_its_own_bucket() -> None:
    clock = ManualClock()
    per_tenant = KeyedRateLimiter(rate=2, per=1.0, clock=clock)
    assert [per_tenant.try_acquire("acme") for _ in range(3)] == [True, True, False]
    assert [per_tenant.try_acquire("globex") for _ in range(3)] == [True, True, False]
    assert per_tenant.retry_after("acme") == 0.5
    assert per_tenant.retry_after("initech") == 0.0
    assert per_tenant.available("initech") == 2.0
    assert per_tenant.next_wakeup("acme") == 0.5
    assert per_tenant.next_wakeup("initech") is None


def test_keyed_refund_and_can_acquire() -> None:
    clock = ManualClock()
    per_tenant = KeyedRateLimiter(rate=2, per=1.0, clock=clock)
    per_tenant.try_acquire("acme", 2)
    assert not per_tenant.can_acquire("acme")
    per_tenant.refund("acme", 1)
    assert per_tenant.can_acquire("acme")
    per_tenant.refund("unknown", 1)  # a key not held is full already
    assert "unknown" not in per_tenant


def test_buckets_full_again_are_forgotten_when_a_new_key_arrives() -> None:
    clock = ManualClock()
    per_key = KeyedRateLimiter(rate=1, per=1.0, burst=2, clock=clock)  # full 2 s after use
    for key in ("a", "b", "c"):
        per_key.try_acquire(key, 2)
        clock.advance(0.5)
    clock.set(2.6)  # a (used at 0) and b (at 0.5) are full again; c (at 1.0) is not
    per_key.try_acquire("d")
    assert sorted(per_key) == ["c", "d"]
    assert per_key.evicted_idle == 2
    assert per_key.evicted_active == 0


def test_max_keys_caps_memory_and_counts_early_evictions() -> None:
    clock = ManualClock()
    per_key = KeyedRateLimiter(rate=1, per=60.0, burst=1, clock=clock, max_keys=3)
    for key in range(10):
        assert per_key.try_acquire(key)
        assert len(per_key) <= 3
    assert per_key.evicted_active == 7
    assert list(per_key) == [7, 8, 9]
    # Key 0 was evicted before it was full: it gets a fresh burst (documented).
    assert per_key.try_acquire(0)


@given(
    ops=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=1.5), st.integers(0, 7), st.floats(0.1, 2.0)),
        max_size=60,
    )
)
def test_forgetting_full_buckets_changes_no_decision_and_bounds_memory(
    ops: list[tuple[float, int, float]],
) -> None:
    rate, per, burst = 2.0, 1.0, 2.0
    bound = burst * per / rate
    clock = ManualClock()
    keyed = KeyedRateLimiter(rate, per, burst, clock=clock)
    model: dict[int, RateLimiter] = {}  # never forgets anything
    last_success: dict[int, float] = {}
    for dt, key, amount in ops:
        clock.advance(dt)
        is_new = key not in keyed
        expected = model.setdefault(key, RateLimiter(rate, per, burst, clock=clock)).try_acquire(
            amount
        )
        assert keyed.try_acquire(key, amount) is expected
        if expected:
            last_success[key] = clock.now()
        if is_new:
            recent = {k for k, t in last_success.items() if clock.now() - t < bound}
            assert set(keyed) <= recent


def test_keyed_bad_input_is_refused_and_changes_nothing() -> None:
    clock = ManualClock()
    keyed = KeyedRateLimiter(rate=2, per=1.0, clock=clock)
    keyed.try_acquire("a")
    with pytest.raises(InvalidTypeError):
        keyed.try_acquire(["unhashable"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        keyed.try_acquire("b", 3)  # above burst
    with pytest.raises(InvalidArgumentError):
        keyed.try_acquire("a", math.nan)
    with pytest.raises(InvalidArgumentError):
        keyed.refund("b", -1)
    with pytest.raises(InvalidArgumentError):
        KeyedRateLimiter(rate=2, max_keys=0)
    with pytest.raises(InvalidArgumentError):
        KeyedRateLimiter(rate=-2)
    assert list(keyed) == ["a"]
    assert keyed.available("a") == 1.0
    assert ["unhashable"] not in keyed
