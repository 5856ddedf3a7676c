"""CircuitBreaker: the resilience4j state machine, its windows, its wrappers and its threads."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import math
import threading
import time
import tracemalloc
from typing import Any
from unittest import mock

import attrs
import pybreaker
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from taskdist import (
    BreakerMetrics,
    BreakerStateChange,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    TaskdistError,
    UnknownPolicyError,
)

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
FORCED_OPEN, DISABLED = CircuitState.FORCED_OPEN, CircuitState.DISABLED


def at_least(examples: int, steps: int = 0) -> settings:
    """The loaded profile, with at least this many examples (and stateful steps)."""
    profile = settings.default
    return settings(
        max_examples=max(examples, profile.max_examples),
        stateful_step_count=max(steps, profile.stateful_step_count),
    )


class Fault(Exception):
    """A failure of the protected dependency."""


class BusinessError(Exception):
    """An error of the caller's own making: says nothing about the dependency's health."""


class Interrupted(BaseException):
    """Not an ``Exception``, like cancellation: the call neither failed nor succeeded."""


def record(breaker: CircuitBreaker, outcomes: str, duration: float = 0.0) -> None:
    """Record outcomes written as a string: ``S`` success, ``F`` failure."""
    for outcome in outcomes:
        if outcome == "S":
            breaker.record_success(duration)
        else:
            breaker.record_failure(duration)


def small(clock: ManualClock, **options: Any) -> CircuitBreaker:
    defaults: dict[str, Any] = {
        "window_size": 4,
        "minimum_calls": 4,
        "open_duration": 10.0,
        "half_open_calls": 2,
    }
    return CircuitBreaker(clock, **{**defaults, **options})


# -- CLOSED: the sliding windows and the thresholds -----------------------------------


def test_trips_when_failure_rate_reaches_threshold_once_minimum_calls_are_in() -> None:
    clock = ManualClock()
    breaker = small(clock, window_size=10, minimum_calls=4)
    record(breaker, "FSS")
    assert breaker.state is CLOSED  # 1/3 failed, but fewer than minimum_calls
    record(breaker, "F")  # 2/4 = 50% >= 50%
    assert breaker.state is OPEN
    assert not breaker.allow()


def test_does_not_trip_below_minimum_calls_even_when_every_call_fails() -> None:
    breaker = small(ManualClock(), window_size=10, minimum_calls=5)
    record(breaker, "FFFF")
    assert breaker.state is CLOSED
    record(breaker, "F")
    assert breaker.state is OPEN


def test_failure_rate_just_below_threshold_does_not_trip() -> None:
    breaker = small(ManualClock(), window_size=3, minimum_calls=3, failure_rate_threshold=66.7)
    record(breaker, "FSF")  # 66.66...% < 66.7%
    assert breaker.state is CLOSED


@pytest.mark.parametrize(("failures", "calls"), [(1, 3), (2, 3), (1, 7), (3, 7), (1, 10)])
def test_a_rate_that_metrics_shows_equal_to_its_threshold_trips(failures: int, calls: int) -> None:
    # 100/3 as a float is a hair above one third: an exact rational comparison kept
    # the breaker CLOSED while metrics() showed failure_rate == failure_rate_threshold.
    threshold = 100 * failures / calls
    breaker = small(
        ManualClock(), window_size=calls, minimum_calls=calls, failure_rate_threshold=threshold
    )
    record(breaker, "S" * (calls - failures - 1) + "F" * failures)
    record(breaker, "S")
    assert breaker.state is OPEN
    assert breaker.metrics().failure_rate == threshold


def test_count_window_forgets_calls_older_than_window_size() -> None:
    breaker = small(ManualClock(), window_size=4, minimum_calls=4)
    record(breaker, "FSSS")  # 25%
    record(breaker, "S")  # the failure leaves the window
    assert breaker.metrics().failed_calls == 0
    record(breaker, "F")  # window S S S F: 25%
    assert breaker.state is CLOSED
    record(breaker, "F")  # window S S F F: 50%
    assert breaker.state is OPEN


def test_count_window_caps_minimum_calls_at_its_size() -> None:
    breaker = small(ManualClock(), window_size=3, minimum_calls=50)
    record(breaker, "FFF")
    assert breaker.state is OPEN


def test_slow_calls_trip_on_slow_call_rate() -> None:
    changes: list[BreakerStateChange] = []
    breaker = small(
        ManualClock(),
        slow_call_duration=1.0,
        slow_call_rate_threshold=50.0,
        on_state_change=changes.append,
    )
    record(breaker, "SS", duration=1.0)  # exactly the limit: not slow (slow means above it)
    record(breaker, "S", duration=1.5)
    assert breaker.state is CLOSED  # 1/4 slow after the next one at most
    record(breaker, "S", duration=2.0)  # 2/4 slow
    assert breaker.state is OPEN
    assert [c.reason for c in changes] == ["slow_call_rate"]
    assert breaker.metrics().slow_calls == 2


def test_slow_call_detection_can_be_disabled() -> None:
    breaker = small(ManualClock(), slow_call_duration=None, slow_call_rate_threshold=1.0)
    record(breaker, "SSSS", duration=1e9)
    assert breaker.state is CLOSED
    assert breaker.metrics().slow_calls == 0


def test_time_window_counts_only_the_last_window_size_seconds() -> None:
    clock = ManualClock(start=0.5)
    breaker = small(clock, window="time", window_size=10, minimum_calls=2)
    record(breaker, "F")
    clock.set(10.0)  # floor(10.0) - floor(0.5) = 10: the first failure has left the window
    record(breaker, "F")
    assert breaker.state is CLOSED
    assert breaker.metrics().calls == 1
    clock.set(19.99)  # floor 19 - 10 = 9 < 10: still in the window
    record(breaker, "F")
    assert breaker.state is OPEN


def test_time_window_trips_on_a_success_when_old_successes_have_left() -> None:
    clock = ManualClock()
    breaker = small(clock, window="time", window_size=10, minimum_calls=2)
    record(breaker, "SSS")
    clock.set(5.0)
    record(breaker, "FF")  # 2/5 = 40%
    assert breaker.state is CLOSED
    clock.set(10.5)  # the three successes of second 0 leave
    record(breaker, "S")  # window F F S: 66%, though this record is a success
    assert breaker.state is OPEN


def test_time_window_eviction_seen_by_metrics_still_makes_the_next_record_judge() -> None:
    clock = ManualClock()
    breaker = small(clock, window="time", window_size=10, minimum_calls=2)
    record(breaker, "SSS")
    clock.set(5.0)
    record(breaker, "FF")
    clock.set(10.5)
    assert breaker.metrics().calls == 2  # metrics() evicted second 0
    record(breaker, "S")
    assert breaker.state is OPEN


def test_time_window_forgets_everything_after_a_long_idle_gap() -> None:
    clock = ManualClock()
    breaker = small(
        clock, window="time", window_size=3, minimum_calls=1, failure_rate_threshold=100
    )
    record(breaker, "S")
    clock.set(1000.0)
    assert breaker.metrics().calls == 0
    record(breaker, "F")
    assert breaker.state is OPEN
    assert breaker.metrics().calls == 1


@at_least(1000)  # cheap examples; rare orders of evictions need many
@given(
    window=st.sampled_from(["count", "time"]),
    size=st.integers(1, 6),
    minimum=st.integers(1, 6),
    threshold=st.sampled_from([20.0, 33.3, 50.0, 75.0, 100.0]),
    calls=st.lists(
        st.tuples(st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.0, 4.0]), st.booleans()), max_size=40
    ),
)
# Found by the thorough profile against a breaker that judged only on failures: the
# successes of seconds 0-1 leave, and the closing success finds the window at 75%.
@example(
    window="time",
    size=5,
    minimum=1,
    threshold=75.0,
    calls=[(0.0, False), (0.5, False), (1.0, True), (1.0, True), (2.0, True), (0.5, False)],
)
def test_trips_at_the_first_record_after_which_the_window_reaches_the_threshold(
    window: str, size: int, minimum: int, threshold: float, calls: list[tuple[float, bool]]
) -> None:
    """Brute force over any timed run of outcomes: the window is exactly what the docs say."""
    clock = ManualClock()
    breaker = CircuitBreaker(
        clock,
        window=window,  # type: ignore[arg-type]
        window_size=size,
        minimum_calls=minimum,
        failure_rate_threshold=threshold,
        slow_call_duration=None,
    )
    history: list[tuple[float, bool]] = []
    for gap, failed in calls:
        clock.advance(gap)
        (breaker.record_failure if failed else breaker.record_success)()
        history.append((clock.now(), failed))
        if window == "count":
            in_window = history[-size:]
            judged = len(in_window) >= min(minimum, size)
        else:
            in_window = [c for c in history if math.floor(clock.now()) - math.floor(c[0]) < size]
            judged = len(in_window) >= minimum
        failures = sum(failed for _, failed in in_window)
        expected = judged and 100 * failures / len(in_window) >= threshold
        assert breaker.state is (OPEN if expected else CLOSED)
        if expected:
            break


# -- OPEN and HALF_OPEN ---------------------------------------------------------------


def test_open_refuses_until_open_duration_has_elapsed_then_half_opens() -> None:
    clock = ManualClock()
    breaker = small(clock, open_duration=10.0)
    record(breaker, "FFFF")
    assert breaker.next_wakeup() == 10.0
    clock.set(9.999)
    assert not breaker.allow()
    assert breaker.state is OPEN
    clock.set(10.0)
    assert breaker.state is HALF_OPEN
    assert breaker.next_wakeup() is None
    assert breaker.metrics().not_permitted_calls == 1


def test_half_open_permits_exactly_half_open_calls_and_refuses_the_rest() -> None:
    clock = ManualClock()
    breaker = small(clock, half_open_calls=3)
    record(breaker, "FFFF")
    clock.advance(10.0)
    assert [breaker.allow() for _ in range(5)] == [True, True, True, False, False]
    assert breaker.metrics().probes_in_flight == 3
    with pytest.raises(CircuitOpenError, match="probe"):
        breaker.call(lambda: None)


def test_half_open_closes_when_probe_failure_rate_is_below_threshold() -> None:
    clock = ManualClock()
    breaker = small(clock, half_open_calls=3)
    record(breaker, "FFFF")
    clock.advance(10.0)
    for _ in range(3):
        assert breaker.allow()
    record(breaker, "SF")
    assert breaker.state is HALF_OPEN  # waits for all three probes
    record(breaker, "S")  # 1/3 < 50%
    assert breaker.state is CLOSED
    assert breaker.metrics().calls == 0  # a fresh window


def test_half_open_reopens_when_probe_failure_rate_reaches_threshold() -> None:
    clock = ManualClock()
    breaker = small(clock, half_open_calls=2)
    record(breaker, "FFFF")
    clock.advance(10.0)
    assert breaker.allow() and breaker.allow()
    record(breaker, "SF")  # 50%
    assert breaker.state is OPEN
    assert breaker.next_wakeup() == clock.now() + 10.0


def test_open_duration_grows_on_consecutive_trips_up_to_its_max_and_resets_on_close() -> None:
    clock = ManualClock()
    breaker = small(
        clock,
        half_open_calls=1,
        open_duration=10.0,
        open_duration_multiplier=2.0,
        open_duration_max=25.0,
    )
    record(breaker, "FFFF")
    durations = []
    for _ in range(4):
        wakeup = breaker.next_wakeup()
        assert wakeup is not None
        durations.append(wakeup - clock.now())
        clock.set(wakeup)
        assert breaker.allow()
        breaker.record_failure()  # the probe fails: re-open, longer
    assert durations == [10.0, 20.0, 25.0, 25.0]
    clock.set(breaker.next_wakeup() or 0.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CLOSED
    record(breaker, "FFFF")
    assert breaker.next_wakeup() == clock.now() + 10.0


def test_release_gives_a_half_open_probe_back() -> None:
    clock = ManualClock()
    breaker = small(clock, half_open_calls=1)
    record(breaker, "FFFF")
    clock.advance(10.0)
    permit = breaker.acquire()
    assert permit is not None and breaker.acquire() is None
    breaker.release(permit)
    assert breaker.metrics().probes_in_flight == 0
    assert breaker.acquire() is not None


def test_outcome_of_a_call_permitted_before_a_state_change_is_dropped() -> None:
    clock = ManualClock()
    breaker = small(clock, half_open_calls=1)
    stale = breaker.acquire()  # a long task dispatched while CLOSED
    assert stale is not None
    record(breaker, "FFFF")
    clock.advance(10.0)
    probe = breaker.acquire()
    assert probe is not None
    breaker.record_success(permit=stale)  # finishes late: not a probe
    assert breaker.state is HALF_OPEN
    assert breaker.metrics().probes_in_flight == 1
    breaker.record_success(permit=probe)
    assert breaker.state is CLOSED


def test_record_without_permit_in_half_open_counts_only_while_a_probe_is_in_flight() -> None:
    clock = ManualClock()
    breaker = small(clock, half_open_calls=1)
    record(breaker, "FFFF")
    clock.advance(10.0)
    assert breaker.state is HALF_OPEN
    breaker.record_failure()  # no probe permitted: dropped
    assert breaker.state is HALF_OPEN
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is OPEN


def test_reset_closes_with_an_empty_window_and_makes_outstanding_permits_stale() -> None:
    clock = ManualClock()
    changes: list[BreakerStateChange] = []
    breaker = small(clock, on_state_change=changes.append)
    permit = breaker.acquire()
    record(breaker, "FFFF")
    breaker.reset()
    assert breaker.state is CLOSED
    assert breaker.metrics().calls == 0
    breaker.record_failure(permit=permit)
    assert breaker.metrics().calls == 0
    breaker.reset()  # already CLOSED: nothing to announce
    assert [(c.previous, c.current, c.reason) for c in changes] == [
        (CLOSED, OPEN, "failure_rate"),
        (OPEN, CLOSED, "reset"),
    ]


# -- half-open deadline, forced open, disabled, asking without taking -----------------


def test_a_probe_that_never_returns_reopens_the_breaker_after_max_wait_in_half_open() -> None:
    clock = ManualClock()
    changes: list[BreakerStateChange] = []
    breaker = small(
        clock, half_open_calls=2, max_wait_in_half_open=5.0, on_state_change=changes.append
    )
    record(breaker, "FFFF")
    clock.set(20.0)
    assert breaker.state is HALF_OPEN
    assert breaker.next_wakeup() is None  # no probe yet: nothing to wait for
    lost = breaker.acquire()  # a probe whose outcome never comes back
    assert breaker.next_wakeup() == 25.0
    clock.set(24.999)
    assert breaker.state is HALF_OPEN
    clock.set(25.0)
    assert breaker.state is OPEN
    assert breaker.next_wakeup() == 35.0  # re-opened at the deadline, for the open duration
    breaker.record_success(permit=lost)  # too late: dropped
    assert (changes[-1].previous, changes[-1].current, changes[-1].at) == (HALF_OPEN, OPEN, 25.0)
    assert changes[-1].reason == "half_open_timeout"
    assert breaker.metrics().trips == 2


def test_a_half_open_deadline_long_past_is_observed_in_order_and_dated_exactly() -> None:
    clock = ManualClock()
    changes: list[BreakerStateChange] = []
    breaker = small(clock, max_wait_in_half_open=5.0, on_state_change=changes.append)
    record(breaker, "FFFF")
    clock.set(10.0)
    assert breaker.allow()
    clock.set(1000.0)
    assert breaker.can_acquire()  # re-opened at 15, half-open again at 25: a probe is free
    assert changes[-1].current is HALF_OPEN  # ...and asking changed nothing
    assert breaker.allow()
    assert [(c.current, c.at, c.reason) for c in changes[-2:]] == [
        (OPEN, 15.0, "half_open_timeout"),
        (HALF_OPEN, 25.0, "open_duration_elapsed"),
    ]


def test_peek_next_wakeup_answers_as_next_wakeup_and_moves_nothing() -> None:
    # A half-open breaker past its probe's deadline re-opened then: peek_next_wakeup
    # says when that re-opening ends, as next_wakeup would, but leaves the breaker
    # half-open with its probe out until something observes it.
    clock = ManualClock()
    changes: list[BreakerStateChange] = []
    breaker = small(clock, max_wait_in_half_open=5.0, on_state_change=changes.append)
    record(breaker, "FFFF")
    assert breaker.peek_next_wakeup() == 10.0  # OPEN: its end
    clock.set(10.0)
    assert breaker.peek_next_wakeup() is None  # HALF_OPEN without a probe: no deadline
    probe = breaker.acquire()
    assert breaker.peek_next_wakeup() == 15.0  # the probe's deadline
    clock.set(16.0)
    before = breaker.snapshot()
    heard = len(changes)
    assert (breaker.peek_state(), breaker.peek_next_wakeup()) == (OPEN, 25.0)
    assert breaker.snapshot() == before and len(changes) == heard  # nothing moved
    clock.set(30.0)  # the re-opening is over too: HALF_OPEN again, no probe, no deadline
    assert (breaker.peek_state(), breaker.peek_next_wakeup()) == (HALF_OPEN, None)
    assert breaker.snapshot() == before and len(changes) == heard
    assert breaker.next_wakeup() is None  # now it moves: re-opened at 15, half-open at 25
    assert [(c.current, c.at) for c in changes[heard:]] == [(OPEN, 15.0), (HALF_OPEN, 25.0)]
    breaker.record_success(permit=probe)  # the probe of a period gone: dropped
    assert breaker.metrics().calls == 0
    breaker.reset()
    assert breaker.peek_next_wakeup() is None  # CLOSED: only a call changes it


def test_forced_open_refuses_every_call_until_reset() -> None:
    clock = ManualClock()
    breaker = small(clock, name="db")
    permit = breaker.acquire()
    breaker.force_open()
    assert breaker.state is FORCED_OPEN
    assert not breaker.allow() and not breaker.can_acquire()
    with pytest.raises(CircuitOpenError, match="'db' is forced open"):
        breaker.call(lambda: None)
    breaker.record_failure(permit=permit)  # stale
    breaker.record_failure()  # nothing is recorded while forced open
    clock.advance(10**6)
    assert breaker.state is FORCED_OPEN and breaker.next_wakeup() is None
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.not_permitted_calls, metrics.trips) == (0, 2, 0)
    breaker.reset()
    assert breaker.state is CLOSED and breaker.allow()


def test_disabled_permits_every_call_and_records_nothing() -> None:
    clock = ManualClock()
    changes: list[BreakerStateChange] = []
    breaker = small(clock, on_state_change=changes.append)
    record(breaker, "FFFF")
    breaker.disable()
    breaker.disable()  # already disabled: nothing to hear
    assert breaker.state is DISABLED
    for _ in range(10):
        with pytest.raises(Fault):
            breaker.call(lambda: (_ for _ in ()).throw(Fault()))
    record(breaker, "FFFFFFFF")
    assert breaker.state is DISABLED and breaker.can_acquire()
    assert breaker.metrics().calls == 0
    breaker.force_open()
    breaker.reset()
    assert [(c.previous, c.current, c.reason) for c in changes] == [
        (CLOSED, OPEN, "failure_rate"),
        (OPEN, DISABLED, "disabled"),
        (DISABLED, FORCED_OPEN, "forced_open"),
        (FORCED_OPEN, CLOSED, "reset"),
    ]


def test_can_acquire_takes_no_probe_counts_no_refusal_and_makes_no_transition() -> None:
    clock = ManualClock()
    changes: list[BreakerStateChange] = []
    breaker = small(clock, half_open_calls=1, on_state_change=changes.append)
    assert breaker.can_acquire()
    record(breaker, "FFFF")
    assert not breaker.can_acquire()
    clock.advance(10.0)
    heard = len(changes)
    assert [breaker.can_acquire() for _ in range(3)] == [True, True, True]
    assert len(changes) == heard  # the lazy OPEN -> HALF_OPEN is left to acquire
    assert breaker.acquire() is not None
    assert not breaker.can_acquire()  # the one probe is out
    assert breaker.metrics().not_permitted_calls == 0


def test_a_window_of_a_million_allocates_nothing_up_front_and_a_billion_is_refused() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        breakers = [
            CircuitBreaker(ManualClock(), window=kind, window_size=1_000_000)
            for kind in ("count", "time")
        ]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 20_000, grown
    assert all(b.allow() for b in breakers)
    for kind in ("count", "time"):
        with pytest.raises(InvalidArgumentError, match="at most 1,000,000"):
            CircuitBreaker(ManualClock(), window=kind, window_size=10**9)


def test_a_time_window_evicts_by_bucket_however_far_the_clock_jumps() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(clock, window="time", window_size=1_000_000, minimum_calls=2)
    breaker.record_failure()
    clock.set(999_999.5)  # still inside the window: the failure counts
    breaker.record_success()
    assert breaker.state is OPEN
    breaker.reset()
    breaker.record_failure()
    clock.advance(10.0**15)  # far past it: evicted in one step, not one per second
    breaker.record_success()
    breaker.record_success()
    assert breaker.state is CLOSED
    assert breaker.metrics().calls == 2


# -- listeners and metrics -------------------------------------------------------------


def test_listeners_hear_each_transition_with_its_time_and_reason() -> None:
    clock = ManualClock(start=100.0)
    heard: list[BreakerStateChange] = []
    breaker = small(clock, half_open_calls=1, name="agent-3", on_state_change=heard.append)
    also: list[BreakerStateChange] = []
    breaker.add_listener(also.append)
    record(breaker, "FFFF")
    clock.advance(25.0)  # the open duration ended at 110, observed at 125
    assert breaker.allow()
    breaker.record_success()
    assert heard == also
    assert [(c.name, c.previous, c.current, c.at, c.reason) for c in heard] == [
        ("agent-3", CLOSED, OPEN, 100.0, "failure_rate"),
        ("agent-3", OPEN, HALF_OPEN, 110.0, "open_duration_elapsed"),
        ("agent-3", HALF_OPEN, CLOSED, 125.0, "probes_passed"),
    ]
    breaker.remove_listener(also.append)
    record(breaker, "FFFF")
    assert len(heard) == 4 and len(also) == 3


def test_listener_may_read_the_breaker_without_deadlock() -> None:
    seen: list[CircuitState] = []
    breaker = small(ManualClock())
    breaker.add_listener(lambda change: seen.append(breaker.state))
    record(breaker, "FFFF")
    assert seen == [OPEN]


def test_listener_error_propagates_after_the_state_has_changed() -> None:
    def broken(change: BreakerStateChange) -> None:
        raise RuntimeError("listener bug")

    breaker = small(ManualClock(), on_state_change=broken)
    record(breaker, "FFF")
    with pytest.raises(RuntimeError, match="listener bug"):
        breaker.record_failure()
    assert breaker.state is OPEN


def test_metrics_report_rates_counts_and_time_in_state() -> None:
    clock = ManualClock()
    breaker = small(clock, window_size=10, minimum_calls=10, slow_call_duration=1.0, name="db")
    record(breaker, "SSS", duration=0.5)
    record(breaker, "F", duration=2.0)
    clock.advance(7.0)
    metrics = breaker.metrics()
    assert metrics == BreakerMetrics(
        name="db",
        state=CLOSED,
        failure_rate=25.0,
        slow_call_rate=25.0,
        calls=4,
        failed_calls=1,
        slow_calls=1,
        not_permitted_calls=0,
        probes_in_flight=0,
        time_in_state=7.0,
        open_until=None,
        consecutive_opens=0,
        trips=0,
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        metrics.calls = 0  # type: ignore[misc]
    empty = small(clock).metrics()
    assert (empty.failure_rate, empty.slow_call_rate) == (None, None)


def test_metrics_in_open_show_the_window_that_tripped_it() -> None:
    clock = ManualClock()
    breaker = small(clock)
    record(breaker, "SFSF")
    clock.advance(3.0)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.calls, metrics.failed_calls, metrics.failure_rate) == (
        OPEN,
        4,
        2,
        50.0,
    )
    assert (metrics.open_until, metrics.time_in_state, metrics.trips) == (10.0, 3.0, 1)


# -- call(), decorator, context managers, async -----------------------------------------


def test_call_returns_the_result_and_times_the_call_with_the_clock() -> None:
    clock = ManualClock()
    breaker = small(clock, slow_call_duration=1.0, slow_call_rate_threshold=100.0)

    def slow_add(a: int, b: int) -> int:
        clock.advance(1.5)
        return a + b

    assert breaker.call(slow_add, 2, b=3) == 5
    assert breaker.metrics().slow_calls == 1


def test_call_refused_by_an_open_breaker_raises_without_calling() -> None:
    clock = ManualClock()
    breaker = small(clock, name="search-api")
    record(breaker, "FFFF")
    called = []
    with pytest.raises(CircuitOpenError, match="'search-api' is open until t=10") as info:
        breaker.call(called.append, 1)
    assert isinstance(info.value, TaskdistError)
    assert called == []


def test_call_records_an_exception_as_failure_and_reraises_it() -> None:
    breaker = small(ManualClock())

    def fail() -> None:
        raise Fault("down")

    for _ in range(4):
        with pytest.raises(Fault):
            breaker.call(fail)
    assert breaker.state is OPEN


def test_record_ignore_and_predicate_decide_what_counts_as_failure() -> None:
    breaker = small(
        ManualClock(),
        window_size=10,
        minimum_calls=10,
        record=(Fault,),
        ignore=(KeyError,),
        is_failure=lambda error: "fatal" in str(error),
    )
    for error in (Fault(), BusinessError(), KeyError("k"), BusinessError("fatal"), ValueError()):
        breaker.record_error(error)
    metrics = breaker.metrics()
    # Fault: failure (record); BusinessError: success; KeyError: ignored;
    # BusinessError("fatal"): failure (predicate); ValueError: success.
    assert (metrics.calls, metrics.failed_calls) == (4, 2)


def test_by_default_every_exception_is_a_failure() -> None:
    breaker = small(ManualClock(), window_size=10, minimum_calls=10)
    breaker.record_error(BusinessError())
    breaker.record_error(ValueError())
    assert breaker.metrics().failed_calls == 2


def test_predicate_alone_replaces_the_default_record_list() -> None:
    breaker = small(ManualClock(), window_size=10, minimum_calls=10, is_failure=lambda e: False)
    breaker.record_error(Fault())
    assert (breaker.metrics().calls, breaker.metrics().failed_calls) == (1, 0)


def test_ignored_error_or_interrupt_gives_the_half_open_probe_back() -> None:
    clock = ManualClock()
    breaker = small(clock, half_open_calls=1, ignore=(BusinessError,))
    record(breaker, "FFFF")
    clock.advance(10.0)

    def business() -> None:
        raise BusinessError

    def interrupted() -> None:
        raise Interrupted

    with pytest.raises(BusinessError):
        breaker.call(business)
    with pytest.raises(Interrupted):
        breaker.call(interrupted)
    assert breaker.metrics().probes_in_flight == 0
    assert breaker.state is HALF_OPEN
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state is CLOSED


def test_decorator_guards_each_call_and_keeps_the_function_identity() -> None:
    breaker = small(ManualClock())

    @breaker
    def fetch(x: int) -> int:
        """Fetch x."""
        if x < 0:
            raise Fault
        return x * 2

    assert fetch.__name__ == "fetch" and fetch.__doc__ == "Fetch x."
    assert fetch(4) == 8
    for _ in range(3):
        with pytest.raises(Fault):
            fetch(-1)
    # window S F F F: 75% >= 50%
    with pytest.raises(CircuitOpenError):
        fetch(1)


def test_context_manager_records_the_block_and_refuses_when_open() -> None:
    clock = ManualClock()
    breaker = small(clock, slow_call_duration=1.0, window_size=10, minimum_calls=10)
    with breaker:
        clock.advance(2.0)
    with pytest.raises(Fault), breaker:
        raise Fault
    with breaker, breaker:  # nested blocks of one breaker each record once
        pass
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls, metrics.slow_calls) == (4, 1, 1)
    breaker.reset()
    record(breaker, "FFFFFFFFFF")
    with pytest.raises(CircuitOpenError), breaker:
        pytest.fail("the block must not run")


def test_exit_without_enter_is_refused() -> None:
    with pytest.raises(RuntimeError, match="without a matching"):
        small(ManualClock()).__exit__(None, None, None)


def test_async_wrappers_record_outcomes_and_refuse_when_open() -> None:
    clock = ManualClock()
    breaker = small(clock, window_size=10, minimum_calls=3)

    @breaker
    async def decorated(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    async def failing() -> None:
        raise Fault

    async def scenario() -> None:
        assert await decorated(1) == 2
        assert await breaker.acall(decorated, 2) == 3  # two records: outer and inner
        async with breaker:
            await asyncio.sleep(0)
        with pytest.raises(Fault):
            await breaker.acall(failing)
        metrics = breaker.metrics()
        assert (metrics.calls, metrics.failed_calls) == (5, 1)
        breaker.reset()
        for _ in range(3):
            with pytest.raises(Fault):
                await breaker.acall(failing)
        with pytest.raises(CircuitOpenError):
            await decorated(1)
        with pytest.raises(CircuitOpenError):
            async with breaker:
                pytest.fail("the block must not run")

    assert asyncio.iscoroutinefunction(decorated)
    asyncio.run(scenario())


def test_cancelled_coroutine_records_nothing_and_frees_its_probe() -> None:
    clock = ManualClock()
    breaker = small(clock, half_open_calls=1)
    record(breaker, "FFFF")
    clock.advance(10.0)

    async def scenario() -> None:
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.sleep(3600)

        task = asyncio.create_task(breaker.acall(hang))
        await started.wait()
        assert breaker.metrics().probes_in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert breaker.state is HALF_OPEN
    assert breaker.metrics().probes_in_flight == 0


def test_concurrent_async_calls_overlap() -> None:
    breaker = CircuitBreaker()  # MonotonicClock
    inflight = peak = 0

    async def call(everyone_in: asyncio.Event) -> None:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        if inflight == 10:
            everyone_in.set()
        # Serialised, the first call would wait here for the others in vain.
        await asyncio.wait_for(everyone_in.wait(), timeout=5.0)
        inflight -= 1

    async def scenario() -> None:
        everyone_in = asyncio.Event()
        await asyncio.gather(*(breaker.acall(call, everyone_in) for _ in range(10)))

    asyncio.run(scenario())
    assert peak == 10  # all ten in flight at once, none waiting for another to end
    assert breaker.metrics().calls == 10


def test_with_blocks_in_concurrent_async_tasks_each_record_their_own_outcome() -> None:
    breaker = small(ManualClock(), window_size=10, minimum_calls=10)

    async def worker(fail: bool) -> None:
        async with breaker:
            await asyncio.sleep(0.01)
            if fail:
                raise Fault

    async def scenario() -> None:
        await asyncio.gather(*(worker(i % 2 == 0) for i in range(6)), return_exceptions=True)

    asyncio.run(scenario())
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls) == (6, 3)


# -- threads ---------------------------------------------------------------------------


def test_ten_threads_make_concurrent_calls_through_one_breaker() -> None:
    """The lock guards bookkeeping only: 10 calls of 0.1 s take about 0.1 s, not 1 s."""
    breaker = CircuitBreaker()  # MonotonicClock
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def caller() -> None:
        barrier.wait()
        try:
            breaker.call(time.sleep, 0.1)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=caller) for _ in range(10)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    assert errors == []
    assert elapsed < 0.5, f"calls were serialised: {elapsed:.2f} s"
    assert breaker.metrics().calls == 10


def test_half_open_refuses_other_threads_while_its_probes_are_in_flight() -> None:
    clock = ManualClock()
    breaker = small(clock, half_open_calls=3)
    record(breaker, "FFFF")
    clock.advance(10.0)
    release = threading.Event()
    in_flight = threading.Semaphore(0)
    refused: list[CircuitOpenError] = []
    lock = threading.Lock()

    def probe() -> None:
        in_flight.release()
        release.wait(5.0)

    def caller() -> None:
        try:
            breaker.call(probe)
        except CircuitOpenError as error:
            with lock:
                refused.append(error)
            in_flight.release()

    threads = [threading.Thread(target=caller) for _ in range(10)]
    for thread in threads:
        thread.start()
    for _ in range(10):  # every caller is either inside probe() or refused
        assert in_flight.acquire(timeout=5.0)
    assert len(refused) == 7
    assert breaker.metrics().probes_in_flight == 3
    release.set()
    for thread in threads:
        thread.join()
    assert breaker.state is CLOSED


def test_records_from_many_threads_are_never_lost() -> None:
    breaker = CircuitBreaker(ManualClock(), window_size=10_000, minimum_calls=10_000)

    def hammer() -> None:
        for i in range(1000):
            if i % 4:
                breaker.record_success()
            else:
                breaker.record_failure()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls) == (8000, 2000)


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"failure_rate_threshold": 0}, InvalidArgumentError, "failure_rate_threshold must be > 0"),
        ({"failure_rate_threshold": 100.5}, InvalidArgumentError, "must be <= 100"),
        ({"failure_rate_threshold": math.nan}, InvalidArgumentError, "finite"),
        ({"slow_call_rate_threshold": -1}, InvalidArgumentError, "slow_call_rate_threshold"),
        ({"slow_call_rate_threshold": 101}, InvalidArgumentError, "slow_call_rate_threshold"),
        ({"window": "sliding"}, UnknownPolicyError, "window must be one of 'count', 'time'"),
        ({"window_size": 0}, InvalidArgumentError, "window_size must be >= 1"),
        ({"window_size": 2.5}, InvalidTypeError, "window_size must be an int"),
        ({"minimum_calls": 0}, InvalidArgumentError, "minimum_calls must be >= 1"),
        ({"slow_call_duration": -0.1}, InvalidArgumentError, "slow_call_duration must be >= 0"),
        ({"slow_call_duration": math.inf}, InvalidArgumentError, "slow_call_duration"),
        ({"open_duration": 0}, InvalidArgumentError, "open_duration must be > 0"),
        ({"open_duration": math.nan}, InvalidArgumentError, "open_duration"),
        ({"open_duration_multiplier": 0.5}, InvalidArgumentError, "open_duration_multiplier"),
        ({"open_duration_multiplier": 2.0}, InvalidArgumentError, "open_duration_max is required"),
        ({"open_duration_max": 1.0}, InvalidArgumentError, "open_duration_max must be >="),
        ({"half_open_calls": 0}, InvalidArgumentError, "half_open_calls must be >= 1"),
        ({"window_size": 1_000_001}, InvalidArgumentError, "at most 1,000,000 calls"),
        ({"window": "time", "window_size": 10**9}, InvalidArgumentError, "1,000,000 seconds"),
        ({"open_duration": 1e10}, InvalidArgumentError, "open_duration must be at most 1e"),
        ({"open_duration_max": 1e300}, InvalidArgumentError, "at most 1e"),
        ({"max_wait_in_half_open": 0}, InvalidArgumentError, "max_wait_in_half_open must be > 0"),
        ({"max_wait_in_half_open": math.inf}, InvalidArgumentError, "max_wait_in_half_open"),
        ({"max_wait_in_half_open": "5"}, InvalidTypeError, "max_wait_in_half_open"),
        ({"record": ValueError()}, InvalidTypeError, "record must be an exception class"),
        ({"ignore": (KeyError, "x")}, InvalidTypeError, "ignore must be an exception class"),
        ({"is_failure": 3}, InvalidTypeError, "is_failure must be callable"),
        ({"on_state_change": "log"}, InvalidTypeError, "on_state_change must be callable"),
        ({"name": 7}, InvalidTypeError, "name must be a str"),
    ],
)
def test_bad_options_are_refused_with_a_specific_error(
    options: dict[str, Any], error: type[TaskdistError], message: str
) -> None:
    with pytest.raises(error, match=message):
        CircuitBreaker(ManualClock(), **options)


def test_clock_without_now_is_refused() -> None:
    with pytest.raises(InvalidTypeError, match="clock must have a now"):
        CircuitBreaker(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda b: b.record_success(-1.0), InvalidArgumentError),
        (lambda b: b.record_failure(math.nan), InvalidArgumentError),
        (lambda b: b.record_failure(math.inf), InvalidArgumentError),
        (lambda b: b.record_success("1"), InvalidTypeError),
        (lambda b: b.record_success(1.0, permit="p"), InvalidTypeError),
        (lambda b: b.record_success(1.0, permit=-3), InvalidTypeError),
        (lambda b: b.record_error("boom"), InvalidTypeError),
        (lambda b: b.record_error(Fault(), -2.0), InvalidArgumentError),
        (lambda b: b.release(permit=True), InvalidTypeError),
        (lambda b: b.add_listener(None), InvalidTypeError),
        (lambda b: b.remove_listener(print), InvalidArgumentError),
    ],
)
def test_bad_calls_raise_and_leave_the_breaker_unchanged(call: Any, error: type) -> None:
    clock = ManualClock()
    breaker = small(clock, half_open_calls=2, window_size=10, minimum_calls=3)
    record(breaker, "SFF")
    clock.advance(10.0)
    assert breaker.allow()  # a probe in flight
    before = breaker.metrics()
    with pytest.raises(error):
        call(breaker)
    assert breaker.metrics() == before


# -- the state machine against a reference model ---------------------------------------


@attrs.frozen
class Config:
    window: str
    window_size: int
    minimum_calls: int
    failure_rate_threshold: float
    slow_call_duration: float | None
    slow_call_rate_threshold: float
    open_duration: float
    open_duration_multiplier: float
    open_duration_max: float | None
    half_open_calls: int
    max_wait_in_half_open: float | None


@st.composite
def configs(draw: st.DrawFn) -> Config:
    open_duration = draw(st.sampled_from([1.0, 2.5, 5.0]))
    multiplier = draw(st.sampled_from([1.0, 2.0]))
    return Config(
        window=draw(st.sampled_from(["count", "time"])),
        window_size=draw(st.integers(1, 5)),
        minimum_calls=draw(st.integers(1, 6)),
        failure_rate_threshold=draw(st.sampled_from([1.0, 25.0, 33.3, 50.0, 66.7, 100.0])),
        slow_call_duration=draw(st.sampled_from([None, 1.0])),
        slow_call_rate_threshold=draw(st.sampled_from([50.0, 100.0])),
        open_duration=open_duration,
        open_duration_multiplier=multiplier,
        open_duration_max=open_duration * 3 if multiplier > 1 else None,
        half_open_calls=draw(st.integers(1, 3)),
        max_wait_in_half_open=draw(st.sampled_from([None, 1.5, 3.0])),
    )


class ReferenceBreaker:
    """The state machine written plainly: full outcome lists, exact fractions, no shortcuts."""

    def __init__(self, config: Config, now: float) -> None:
        self.c = config
        self.state = CLOSED
        self.period = 0
        self.since = now
        self.outcomes: list[tuple[float, bool, bool]] = []  # (time, failed, slow) since closing
        self.tripped_by = (0, 0, 0)
        self.open_until = 0.0
        self.consecutive_opens = 0
        self.trips = 0
        self.not_permitted = 0
        self.probes: list[tuple[bool, bool]] = []
        self.in_flight = 0
        self.deadline = math.inf  # HALF_OPEN: first probe + max wait
        self.changes: list[tuple[CircuitState, CircuitState, float, str]] = []

    def window(self, now: float) -> list[tuple[float, bool, bool]]:
        if self.c.window == "count":
            return self.outcomes[-self.c.window_size :]
        return [o for o in self.outcomes if math.floor(now) - math.floor(o[0]) < self.c.window_size]

    def minimum(self) -> int:
        if self.c.window == "count":
            return min(self.c.minimum_calls, self.c.window_size)
        return self.c.minimum_calls

    def exceeded(self, outcomes: list[tuple[bool, bool]]) -> bool:
        # The rates as metrics() reports them, compared with the thresholds.
        calls = len(outcomes)
        failure_rate = sum(f for f, _ in outcomes) * 100 / calls
        slow_rate = sum(s for _, s in outcomes) * 100 / calls
        return (
            failure_rate >= self.c.failure_rate_threshold
            or slow_rate >= self.c.slow_call_rate_threshold
        )

    def move(self, state: CircuitState, at: float, reason: str) -> None:
        self.changes.append((self.state, state, at, reason))
        self.state, self.since, self.period = state, at, self.period + 1
        self.deadline = math.inf

    def observe(self, now: float) -> None:
        if self.state is HALF_OPEN and now >= self.deadline:
            totals = self.totals([(0.0, f, s) for f, s in self.probes])
            self.trip(self.deadline, totals, "half_open_timeout")
        if self.state is OPEN and now >= self.open_until:
            self.probes, self.in_flight = [], 0
            self.move(HALF_OPEN, self.open_until, "open_duration_elapsed")

    def trip(self, now: float, totals: tuple[int, int, int], reason: str) -> None:
        self.consecutive_opens += 1
        self.trips += 1
        self.tripped_by = totals
        duration = self.c.open_duration * self.c.open_duration_multiplier ** (
            self.consecutive_opens - 1
        )
        self.open_until = now + min(duration, self.c.open_duration_max or self.c.open_duration)
        self.move(OPEN, now, reason)

    def close(self, now: float, reason: str) -> None:
        self.outcomes, self.consecutive_opens, self.in_flight = [], 0, 0
        if self.state is CLOSED:  # a reset of a closed breaker: nothing to hear
            self.since, self.period = now, self.period + 1
        else:
            self.move(CLOSED, now, reason)

    def set_manual(self, state: CircuitState, now: float) -> None:
        if self.state is not state:
            self.in_flight = 0
            self.move(state, now, "forced_open" if state is FORCED_OPEN else "disabled")

    def acquire(self, now: float) -> int | None:
        self.observe(now)
        if self.state is CLOSED or self.state is DISABLED:
            return self.period
        if self.state is HALF_OPEN and len(self.probes) + self.in_flight < self.c.half_open_calls:
            self.in_flight += 1
            if self.deadline == math.inf and self.c.max_wait_in_half_open is not None:
                self.deadline = now + self.c.max_wait_in_half_open
            return self.period
        self.not_permitted += 1
        return None

    def can_acquire(self, now: float) -> bool:
        return copy.deepcopy(self).acquire(now) is not None

    def wakeup(self) -> float | None:
        if self.state is OPEN:
            return self.open_until
        if self.state is HALF_OPEN and self.deadline < math.inf:
            return self.deadline
        return None

    def record(self, permit: int | None, failed: bool, duration: float, now: float) -> None:
        slow = self.c.slow_call_duration is not None and duration > self.c.slow_call_duration
        if permit is None:
            permit = self.period
        if self.state is HALF_OPEN:
            self.observe(now)  # a probe back after the deadline finds the breaker re-opened
        if permit != self.period:
            return
        if self.state is CLOSED:
            self.outcomes.append((now, failed, slow))
            window = self.window(now)
            if len(window) >= self.minimum() and self.exceeded([(f, s) for _, f, s in window]):
                self.trip(now, self.totals(window), self.reason([(f, s) for _, f, s in window]))
        elif self.state is HALF_OPEN and self.in_flight > 0:
            self.in_flight -= 1
            self.probes.append((failed, slow))
            if len(self.probes) == self.c.half_open_calls:
                if self.exceeded(self.probes):
                    totals = self.totals([(0.0, f, s) for f, s in self.probes])
                    self.trip(now, totals, self.reason(self.probes))
                else:
                    self.close(now, "probes_passed")

    def reason(self, outcomes: list[tuple[bool, bool]]) -> str:
        failure_rate = sum(f for f, _ in outcomes) * 100 / len(outcomes)
        return "failure_rate" if failure_rate >= self.c.failure_rate_threshold else "slow_call_rate"

    def release(self, permit: int, now: float) -> None:
        if self.state is HALF_OPEN:
            self.observe(now)
        if permit == self.period and self.state is HALF_OPEN and self.in_flight > 0:
            self.in_flight -= 1

    @staticmethod
    def totals(window: list[tuple[float, bool, bool]]) -> tuple[int, int, int]:
        return len(window), sum(f for _, f, _ in window), sum(s for _, _, s in window)

    def counts(self, now: float) -> tuple[int, int, int]:
        if self.state is CLOSED:
            return self.totals(self.window(now))
        if self.state is HALF_OPEN:
            return self.totals([(0.0, f, s) for f, s in self.probes])
        if self.state is OPEN:
            return self.tripped_by
        return (0, 0, 0)


class BreakerMachine(RuleBasedStateMachine):
    """Any sequence of permits, outcomes, releases, resets, forced and disabled states,
    questions and clock moves: breaker == model, transitions included."""

    permits = Bundle("permits")

    @initialize(config=configs(), start=st.sampled_from([0.0, 0.75]))
    def build(self, config: Config, start: float) -> None:
        self.clock = ManualClock(start=start)
        self.breaker = CircuitBreaker(self.clock, **attrs.asdict(config))
        self.model = ReferenceBreaker(config, start)
        self.heard: list[tuple[CircuitState, CircuitState, float, str]] = []
        self.breaker.add_listener(
            lambda c: self.heard.append((c.previous, c.current, c.at, c.reason))
        )

    @rule(dt=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 13.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(target=permits, n=st.integers(1, 3), dt=st.sampled_from([0.0, 0.0, 2.0, 5.0]))
    def acquire(self, n: int, dt: float) -> Any:
        """``dt`` seconds on, up to ``n`` callers ask; the permits they get are kept, to be
        used in any later state (the clock moves first, so the transitions that time brought
        are made by acquire itself)."""
        self.clock.advance(dt)
        granted = []
        for _ in range(n):
            permit = self.breaker.acquire()
            expected = self.model.acquire(self.clock.now())
            assert (permit is None) == (expected is None)
            if permit is not None:
                granted.append((permit, expected))
        return multiple(*granted)

    @rule(
        permit=consumes(permits),
        failed=st.booleans(),
        duration=st.sampled_from([0.0, 1.0, 1.5]),
    )
    def record_with_permit(self, permit: tuple[int, int], failed: bool, duration: float) -> None:
        real, expected = permit
        (self.breaker.record_failure if failed else self.breaker.record_success)(
            duration, permit=real
        )
        self.model.record(expected, failed, duration, self.clock.now())

    @rule(
        outcomes=st.lists(st.booleans(), min_size=1, max_size=5),
        duration=st.sampled_from([0.0, 1.5]),
        spacing=st.sampled_from([0.0, 0.5, 1.0]),
    )
    def record_without_permit(self, outcomes: list[bool], duration: float, spacing: float) -> None:
        """A run of outcomes (True: failed), ``spacing`` seconds apart.

        Runs make trips, and the states after them, come sooner; spacing makes
        time windows hold calls of several seconds, which then leave one by one.
        """
        for failed in outcomes:
            self.model.observe(self.clock.now())  # the breaker's current state, as it sees it
            (self.breaker.record_failure if failed else self.breaker.record_success)(duration)
            self.model.record(None, failed, duration, self.clock.now())
            self.clock.advance(spacing)

    @rule(outcome=st.sampled_from(["ok", "fault", "ignored"]), duration=st.sampled_from([0, 1.5]))
    def call(self, outcome: str, duration: float) -> None:
        """call(): permission, a call that takes ``duration`` on the clock, its outcome."""
        permit = self.model.acquire(self.clock.now())

        def work() -> str:
            self.clock.advance(duration)
            if outcome == "fault":
                raise Fault
            if outcome == "ignored":
                raise Interrupted
            return "done"

        try:
            result = self.breaker.call(work)
        except CircuitOpenError:
            assert permit is None
            return
        except (Fault, Interrupted):
            result = outcome
        assert permit is not None
        assert result == ("done" if outcome == "ok" else outcome)
        if outcome == "ignored":
            self.model.release(permit, self.clock.now())
        else:
            self.model.record(permit, outcome == "fault", duration, self.clock.now())

    @rule(permit=consumes(permits))
    def release(self, permit: tuple[int, int]) -> None:
        self.breaker.release(permit[0])
        self.model.release(permit[1], self.clock.now())

    @precondition(lambda self: self.model.trips > 0 or self.model.state in (FORCED_OPEN, DISABLED))
    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.model.close(self.clock.now(), "reset")

    @precondition(lambda self: self.model.trips > 0)
    @rule(state=st.sampled_from([FORCED_OPEN, DISABLED]))
    def set_by_hand(self, state: CircuitState) -> None:
        (self.breaker.force_open if state is FORCED_OPEN else self.breaker.disable)()
        self.model.set_manual(state, self.clock.now())

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 5.0]))
    def ask(self, dt: float) -> None:
        """can_acquire: acquire's answer, without its effects (the invariant sees none).

        Asked right after the clock moves, before anything observes the
        transitions that time brought (the invariant observes them all).
        """
        self.clock.advance(dt)
        assert self.breaker.can_acquire() is self.model.can_acquire(self.clock.now())
        # peek_state, peek_next_wakeup: what state and next_wakeup are about to report,
        # and no transition made to say it.
        heard = len(self.heard)
        peeked = self.breaker.peek_state()
        wakeup = self.breaker.peek_next_wakeup()
        assert len(self.heard) == heard, "a peek made a transition"
        assert wakeup == self.breaker.next_wakeup()
        assert peeked is self.breaker.state

    @invariant()
    def matches_the_model(self) -> None:
        now = self.clock.now()
        self.model.observe(now)
        metrics = self.breaker.metrics()
        model = self.model
        assert metrics.state is model.state
        assert (metrics.calls, metrics.failed_calls, metrics.slow_calls) == model.counts(now)
        assert metrics.not_permitted_calls == model.not_permitted
        assert metrics.probes_in_flight == (model.in_flight if model.state is HALF_OPEN else 0)
        assert metrics.time_in_state == now - model.since
        assert metrics.open_until == (model.open_until if model.state is OPEN else None)
        assert (metrics.consecutive_opens, metrics.trips) == (
            model.consecutive_opens,
            model.trips,
        )
        assert self.breaker.next_wakeup() == model.wakeup()
        assert self.heard == model.changes


TestBreakerMachine = BreakerMachine.TestCase
# Trips, probes and late outcomes need long runs: more than the profile's default.
TestBreakerMachine.settings = at_least(200, steps=50)


# -- differential: pybreaker in the configuration both share ----------------------------
#
# pybreaker counts *consecutive* failures: it opens when ``fail_max`` calls in
# a row have failed, stays open ``reset_timeout`` seconds, then lets a trial
# call through that closes it (success_threshold=1) or re-opens it; an
# ``exclude``d exception counts as a success. The same machine, in taskdist:
#
#   pybreaker.CircuitBreaker(fail_max=N, reset_timeout=T, success_threshold=1,
#                            exclude=[E], throw_new_error_on_trip=False)
#   == CircuitBreaker(window="count", window_size=N, minimum_calls=N,
#                     failure_rate_threshold=100, slow_call_duration=None,
#                     open_duration=T, half_open_calls=1, record=<all but E>)
#
# "the last N calls all failed" is "N consecutive failures"; a window emptied on
# every close is pybreaker's counter reset; one half-open probe at 100% decides
# as pybreaker's trial call does; ``record=`` leaves E counted as a success.
# pybreaker reads the wall clock through ``datetime.now``; the test drives it
# from the same ManualClock. pybreaker moves OPEN -> half-open only when a call
# arrives, so states are compared after each call.

_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)


def _pybreaker_datetime(clock: ManualClock) -> type[dt.datetime]:
    class ClockDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return _EPOCH + dt.timedelta(seconds=clock.now())

    return ClockDatetime


_PYBREAKER_STATE = {"closed": CLOSED, "open": OPEN, "half-open": HALF_OPEN}

operations = st.lists(
    st.one_of(
        st.sampled_from(["ok", "fault", "business"]),
        st.integers(1, 30).map(lambda halves: halves / 2.0),  # wait, in seconds
    ),
    max_size=60,
)


@at_least(100)
@given(
    fail_max=st.integers(1, 5),
    reset_timeout=st.sampled_from([1.0, 2.5, 10.0]),
    ops=operations,
)
def test_matches_pybreaker_in_the_consecutive_failures_configuration(
    fail_max: int, reset_timeout: float, ops: list[str | float]
) -> None:
    clock = ManualClock()
    ours = CircuitBreaker(
        clock,
        window="count",
        window_size=fail_max,
        minimum_calls=fail_max,
        failure_rate_threshold=100.0,
        slow_call_duration=None,
        open_duration=reset_timeout,
        half_open_calls=1,
        record=(Fault,),
    )
    with mock.patch.object(pybreaker, "datetime", _pybreaker_datetime(clock)):
        theirs = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            success_threshold=1,
            exclude=[BusinessError],
            throw_new_error_on_trip=False,
        )
        for op in ops:
            if isinstance(op, float):
                clock.advance(op)
                continue
            results = []
            for breaker, refused in (
                (ours, CircuitOpenError),
                (theirs, pybreaker.CircuitBreakerError),
            ):
                calls: list[str] = []

                def work(calls: list[str] = calls, op: str = op) -> str:
                    calls.append(op)
                    if op == "fault":
                        raise Fault
                    if op == "business":
                        raise BusinessError
                    return op

                try:
                    breaker.call(work)
                    outcome = "returned"
                except refused:
                    outcome = "refused"
                except (Fault, BusinessError) as error:
                    outcome = type(error).__name__
                results.append((outcome, calls))
            assert results[0] == results[1]
            assert ours.state is _PYBREAKER_STATE[theirs.current_state]
