"""RetryPolicy: capped exponential backoff, the AWS jitters, stop/wait composition, bad input."""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    InvalidArgumentError,
    InvalidTypeError,
    RetryPolicy,
    StopAfterAttempt,
    StopAfterDelay,
    StopAll,
    StopAny,
    StopNever,
    TaskdistError,
    UnknownPolicyError,
    WaitDecorrelatedJitter,
    WaitEqualJitter,
    WaitExponential,
    WaitFixed,
    WaitFullJitter,
    WaitRandom,
    WaitSum,
)

bases = st.floats(0.001, 10.0)
multipliers = st.floats(1.0, 10.0)
attempts = st.integers(1, 5_000)  # far past the cap and past float overflow of multiplier**n
seeds = st.integers(0, 2**32 - 1)


@st.composite
def backoffs(draw: st.DrawFn) -> tuple[float, float, float]:
    base = draw(bases)
    return base, draw(multipliers), base * draw(st.floats(1.0, 1_000.0))


def policy(jitter: str, base: float, multiplier: float, cap: float, seed: int) -> RetryPolicy:
    return RetryPolicy(
        base=base,
        multiplier=multiplier,
        cap=cap,
        jitter=jitter,  # type: ignore[arg-type]
        rng=random.Random(seed),
    )


def ceiling(base: float, multiplier: float, cap: float, attempt: int) -> float:
    """The un-jittered delay, computed by repeated multiplication (not the code's closed form)."""
    value = base
    for _ in range(attempt - 1):
        if value >= cap:
            break
        value *= multiplier
    return min(cap, value)


# -- the exponential ceiling ------------------------------------------------------------


def test_no_jitter_doubles_from_base_until_the_cap() -> None:
    p = RetryPolicy(base=0.1, multiplier=2.0, cap=1.0, jitter="none")
    assert [p.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_defaults_are_five_attempts_full_jitter_from_a_tenth_of_a_second() -> None:
    p = RetryPolicy(rng=random.Random(1))
    assert p.stop == StopAfterAttempt(5)
    assert p.wait == WaitFullJitter(base=0.1, multiplier=2.0, cap=30.0)
    assert [p.should_retry(n) for n in range(1, 6)] == [True, True, True, True, False]


@given(backoff=backoffs(), attempt=attempts)
def test_no_jitter_is_the_capped_exponential(
    backoff: tuple[float, float, float], attempt: int
) -> None:
    base, multiplier, cap = backoff
    delay = policy("none", base, multiplier, cap, 0).delay(attempt)
    assert delay == pytest.approx(ceiling(base, multiplier, cap, attempt), rel=1e-9)
    assert delay <= cap


# -- jitter: documented bounds (property) and distributions (seeded samples) -------------


@given(backoff=backoffs(), attempt=attempts, seed=seeds)
def test_full_jitter_stays_between_zero_and_the_ceiling(
    backoff: tuple[float, float, float], attempt: int, seed: int
) -> None:
    base, multiplier, cap = backoff
    delay = policy("full", base, multiplier, cap, seed).delay(attempt)
    assert (
        0.0 <= delay <= ceiling(base, multiplier, cap, attempt) * (1 + 1e-12) <= cap * (1 + 1e-12)
    )
    assert delay <= cap


@given(backoff=backoffs(), attempt=attempts, seed=seeds)
def test_equal_jitter_stays_between_half_the_ceiling_and_the_ceiling(
    backoff: tuple[float, float, float], attempt: int, seed: int
) -> None:
    base, multiplier, cap = backoff
    top = ceiling(base, multiplier, cap, attempt)
    delay = policy("equal", base, multiplier, cap, seed).delay(attempt)
    assert top / 2 * (1 - 1e-12) <= delay <= top * (1 + 1e-12)
    assert delay <= cap


@given(
    backoff=backoffs(),
    attempt=attempts,
    seed=seeds,
    previous=st.none() | st.floats(0.0, 1e6),
)
def test_decorrelated_jitter_stays_between_base_and_three_times_the_previous_delay(
    backoff: tuple[float, float, float], attempt: int, seed: int, previous: float | None
) -> None:
    base, multiplier, cap = backoff
    delay = policy("decorrelated", base, multiplier, cap, seed).delay(attempt, previous)
    grown_from = base if previous is None else previous
    assert base <= delay <= min(cap, max(base, 3 * grown_from))


@given(backoff=backoffs(), seed=seeds, jitter=st.sampled_from(["none", "full", "equal"]))
def test_a_chain_of_delays_never_exceeds_the_cap(
    backoff: tuple[float, float, float], seed: int, jitter: str
) -> None:
    base, multiplier, cap = backoff
    p = RetryPolicy(
        max_attempts=60,
        base=base,
        multiplier=multiplier,
        cap=cap,
        jitter=jitter,  # type: ignore[arg-type]
        rng=random.Random(seed),
    )
    delays = list(p.delays())
    assert len(delays) == 59
    assert max(delays) <= cap


@given(backoff=backoffs(), seed=seeds)
def test_a_decorrelated_chain_grows_at_most_threefold_and_stays_in_base_to_cap(
    backoff: tuple[float, float, float], seed: int
) -> None:
    base, multiplier, cap = backoff
    delays = list(policy("decorrelated", base, multiplier, cap, seed).delays())
    previous = base
    for delay in delays:
        assert base <= delay <= min(cap, 3 * previous)
        previous = delay


SAMPLES = 4_000


def samples(jitter: str, attempt: int, previous: float | None = None) -> list[float]:
    p = RetryPolicy(base=1.0, multiplier=2.0, cap=100.0, jitter=jitter, rng=random.Random(7))  # type: ignore[arg-type]
    return [p.delay(attempt, previous) for _ in range(SAMPLES)]


def assert_uniform(values: list[float], low: float, high: float) -> None:
    """Mean, spread and both halves of a uniform distribution on [low, high]."""
    width = high - low
    tolerance = 5 * width / math.sqrt(12 * SAMPLES)  # five standard errors of the mean
    assert min(values) >= low and max(values) <= high
    assert statistics.fmean(values) == pytest.approx((low + high) / 2, abs=tolerance)
    assert min(values) < low + 0.01 * width and max(values) > high - 0.01 * width
    below_middle = sum(v < (low + high) / 2 for v in values) / SAMPLES
    assert below_middle == pytest.approx(0.5, abs=0.05)


def test_full_jitter_is_uniform_on_zero_to_the_ceiling() -> None:
    assert_uniform(samples("full", attempt=4), 0.0, 8.0)


def test_equal_jitter_is_uniform_on_half_the_ceiling_to_the_ceiling() -> None:
    assert_uniform(samples("equal", attempt=4), 4.0, 8.0)


def test_decorrelated_jitter_is_uniform_on_base_to_three_times_previous() -> None:
    assert_uniform(samples("decorrelated", attempt=9, previous=5.0), 1.0, 15.0)
    assert_uniform(samples("decorrelated", attempt=1), 1.0, 3.0)  # first retry: from base


def test_the_same_seed_replays_the_same_delays() -> None:
    def run(seed: int) -> list[float]:
        return list(
            RetryPolicy(max_attempts=8, jitter="decorrelated", rng=random.Random(seed)).delays()
        )

    assert run(3) == run(3)
    assert run(3) != run(4)


# -- should_retry ------------------------------------------------------------------------


def test_should_retry_until_max_attempts_have_been_made() -> None:
    p = RetryPolicy(max_attempts=3)
    assert [p.should_retry(n, ValueError()) for n in (1, 2, 3, 4)] == [True, True, False, False]


def test_a_non_retryable_error_is_not_retried() -> None:
    p = RetryPolicy(max_attempts=10, retryable=lambda error: not isinstance(error, PermissionError))
    assert p.should_retry(1, TimeoutError())
    assert not p.should_retry(1, PermissionError())


def test_cancellation_and_interrupts_are_never_retried_by_default() -> None:
    p = RetryPolicy(max_attempts=10)
    assert not p.should_retry(1, KeyboardInterrupt())
    assert p.should_retry(1, RuntimeError())


def test_stop_after_delay_uses_the_elapsed_time_the_host_reports() -> None:
    p = RetryPolicy(stop=StopAfterDelay(10.0))
    assert p.should_retry(50, elapsed=9.99)
    assert not p.should_retry(2, elapsed=10.0)


# -- composition -----------------------------------------------------------------------


def test_or_stops_when_either_strategy_stops_and_and_when_both_do() -> None:
    either = StopAfterAttempt(3) | StopAfterDelay(10.0)
    both = StopAfterAttempt(3) & StopAfterDelay(10.0)
    assert isinstance(either, StopAny) and isinstance(both, StopAll)
    table = [(2, 5.0), (3, 5.0), (2, 10.0), (3, 10.0)]
    assert [either(a, e) for a, e in table] == [False, True, True, True]
    assert [both(a, e) for a, e in table] == [False, False, False, True]
    assert not StopNever()(10**9, 1e9)


def test_plus_adds_waits_and_the_sum_is_the_policy_delay() -> None:
    wait = WaitFixed(1.0) + WaitExponential(base=0.5, multiplier=3.0, cap=100.0) + WaitFixed(0.25)
    assert isinstance(wait, WaitSum)
    p = RetryPolicy(wait=wait)
    assert [p.delay(n) for n in (1, 2, 3)] == [1.75, 2.75, 5.75]


@given(seed=seeds, attempt=attempts)
def test_fixed_plus_random_stays_in_the_sum_of_the_ranges(seed: int, attempt: int) -> None:
    p = RetryPolicy(wait=WaitFixed(2.0) + WaitRandom(0.5, 1.5), rng=random.Random(seed))
    assert 2.5 <= p.delay(attempt) <= 3.5


def test_jittered_waits_compose_as_strategies() -> None:
    p = RetryPolicy(
        stop=StopAfterAttempt(20) | StopAfterDelay(30.0),
        wait=WaitFullJitter(base=1.0, cap=4.0) + WaitEqualJitter(base=1.0, cap=2.0),
        rng=random.Random(0),
    )
    delays = list(p.delays())
    # full jitter in [0, 4] plus equal jitter in [0.5, 2] (its ceiling is 1 then 2)
    assert all(0.5 <= d <= 6.0 for d in delays)
    stopped_by_time = sum(delays[:-1]) < 30.0 <= sum(delays)
    assert stopped_by_time or len(delays) == 19


def test_decorrelated_strategy_ignores_the_attempt_number() -> None:
    wait = WaitDecorrelatedJitter(base=1.0, cap=50.0)
    assert wait(1, 4.0, random.Random(5)) == wait(99, 4.0, random.Random(5))


@pytest.mark.parametrize(
    "combine",
    [
        lambda: StopAfterAttempt(2) | 3,
        lambda: StopAfterAttempt(2) & "x",
        lambda: WaitFixed(1.0) + 1.0,
    ],
)
def test_combining_with_something_that_is_not_a_strategy_is_a_type_error(combine: Any) -> None:
    with pytest.raises(TypeError):
        combine()


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_attempts": 0}, InvalidArgumentError, "max_attempts must be >= 1"),
        ({"max_attempts": 2.0}, InvalidTypeError, "max_attempts must be an int"),
        ({"base": 0.0}, InvalidArgumentError, "base must be > 0"),
        ({"base": -1.0}, InvalidArgumentError, "base must be > 0"),
        ({"base": math.nan}, InvalidArgumentError, "base must be a finite number"),
        ({"multiplier": 0.5}, InvalidArgumentError, "multiplier must be >= 1"),
        ({"multiplier": math.inf}, InvalidArgumentError, "multiplier must be a finite"),
        ({"cap": 0.01}, InvalidArgumentError, "cap must be >= base"),
        ({"cap": math.inf}, InvalidArgumentError, "cap must be a finite"),
        ({"jitter": "gaussian"}, UnknownPolicyError, "jitter must be one of 'none', 'full'"),
        ({"rng": 42}, InvalidTypeError, "rng must be a random.Random"),
        ({"retryable": True}, InvalidTypeError, "retryable must be callable"),
        ({"stop": 3}, InvalidTypeError, "stop must be a StopStrategy"),
        ({"wait": 0.5}, InvalidTypeError, "wait must be a WaitStrategy"),
        ({"stop": StopNever(), "max_attempts": 3}, InvalidArgumentError, "not both"),
        ({"wait": WaitFixed(1.0), "cap": 3.0}, InvalidArgumentError, "give cap or wait"),
        ({"wait": WaitFixed(1.0), "jitter": "full"}, InvalidArgumentError, "give jitter or wait"),
    ],
)
def test_bad_options_are_refused_with_a_specific_error(
    options: dict[str, Any], error: type[TaskdistError], message: str
) -> None:
    with pytest.raises(error, match=message):
        RetryPolicy(**options)


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: StopAfterAttempt(0), InvalidArgumentError),
        (lambda: StopAfterDelay(-1.0), InvalidArgumentError),
        (lambda: WaitFixed(math.nan), InvalidArgumentError),
        (lambda: WaitRandom(2.0, 1.0), InvalidArgumentError),
        (lambda: WaitExponential(base=2.0, cap=1.0), InvalidArgumentError),
        (lambda: WaitDecorrelatedJitter(base=-1.0), InvalidArgumentError),
        (lambda: StopAny(()), InvalidArgumentError),
        (lambda: StopAll((StopNever(), 3)), InvalidTypeError),
        (lambda: WaitSum((WaitFixed(1.0), "x")), InvalidTypeError),
    ],
)
def test_bad_strategies_are_refused(build: Any, error: type[TaskdistError]) -> None:
    with pytest.raises(error):
        build()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda p: p.delay(0), InvalidArgumentError),
        (lambda p: p.delay(1.5), InvalidTypeError),
        (lambda p: p.delay(True), InvalidTypeError),
        (lambda p: p.delay(1, previous=-0.5), InvalidArgumentError),
        (lambda p: p.delay(1, previous=math.nan), InvalidArgumentError),
        (lambda p: p.should_retry(0), InvalidArgumentError),
        (lambda p: p.should_retry(1, elapsed=-1.0), InvalidArgumentError),
        (lambda p: p.should_retry(1, elapsed=math.inf), InvalidArgumentError),
        (lambda p: p.should_retry(1, "timeout"), InvalidTypeError),
    ],
)
def test_bad_calls_raise_and_leave_the_random_source_untouched(call: Any, error: type) -> None:
    rng = random.Random(11)
    p = RetryPolicy(jitter="decorrelated", rng=rng)
    before = rng.getstate()
    with pytest.raises(error):
        call(p)
    assert rng.getstate() == before
