"""Capacity planning: Erlang C against published values, the sizing searches, Little's law."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    InvalidArgumentError,
    InvalidTypeError,
    PoolLoad,
    erlang_c,
    littles_law,
    mean_wait,
    plan_for,
    servers_for_service_level,
    servers_for_wait,
    service_level,
)
from taskdist.sim import scenarios

# Published values. Erlang C(3 servers, 2 erlangs) = 4/9 exactly (the textbook
# example); C(11, 10) = 0.6821 (Erlang C tables); and the classic call-centre
# worked example: 360 calls per half hour of 240 s each (48 erlangs) on 55
# agents: 23.87 % wait at all, 8.18 s average speed of answer, 84.6 % answered
# within 15 s, and 55 agents the fewest for 80 % within 15 s.
CALLS_PER_SECOND = 360 / 1800
HANDLE_TIME = 240.0


def test_erlang_c_matches_the_exact_textbook_value() -> None:
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9, rel=1e-12)


def test_erlang_c_matches_the_tables() -> None:
    assert round(erlang_c(11, 10.0), 4) == 0.6821
    assert round(erlang_c(55, 48.0), 4) == 0.2387


def test_the_call_centre_example_end_to_end() -> None:
    assert round(mean_wait(CALLS_PER_SECOND, HANDLE_TIME, 55), 2) == 8.18
    assert round(service_level(CALLS_PER_SECOND, HANDLE_TIME, 55, within=15.0), 3) == 0.846
    assert servers_for_service_level(CALLS_PER_SECOND, HANDLE_TIME, 15.0, 0.8) == 55


@given(st.floats(0.01, 0.99))
def test_one_server_waits_with_probability_rho(rho: float) -> None:
    assert erlang_c(1, rho) == pytest.approx(rho, rel=1e-12)
    # M/M/1: W = rho / (mu - lambda) with mu = 1.
    assert mean_wait(rho, 1.0, 1) == pytest.approx(rho / (1 - rho), rel=1e-9)


def erlang_c_by_the_formula(servers: int, load: float) -> float:
    """The formula as printed: a^c/c! * c/(c-a) over the sum plus that term."""
    top = load**servers / math.factorial(servers) * servers / (servers - load)
    return top / (sum(load**k / math.factorial(k) for k in range(servers)) + top)


@given(st.integers(1, 60), st.floats(0.01, 0.99))
def test_erlang_c_agrees_with_the_printed_formula(servers: int, utilization: float) -> None:
    load = servers * utilization
    assert erlang_c(servers, load) == pytest.approx(
        erlang_c_by_the_formula(servers, load), rel=1e-9
    )


def test_erlang_c_stays_finite_for_thousands_of_servers() -> None:
    value = erlang_c(5_000, 4_900.0)
    assert 0.0 < value < 1.0


@given(st.floats(0.05, 50.0), st.floats(0.05, 20.0), st.floats(0.0, 10.0, exclude_min=True))
def test_servers_for_wait_is_the_fewest_that_meet_the_target(
    rate: float, time: float, target: float
) -> None:
    servers = servers_for_wait(rate, time, target)
    assert mean_wait(rate, time, servers) <= target
    if servers - 1 > rate * time:
        assert mean_wait(rate, time, servers - 1) > target


@given(st.floats(0.05, 50.0), st.floats(0.05, 20.0), st.floats(0.0, 10.0), st.floats(0.0, 0.99))
def test_servers_for_service_level_is_the_fewest_that_meet_it(
    rate: float, time: float, within: float, level: float
) -> None:
    servers = servers_for_service_level(rate, time, within, level)
    assert service_level(rate, time, servers, within) >= level
    if servers - 1 > rate * time:
        assert service_level(rate, time, servers - 1, within) < level


def test_littles_law_solves_for_the_missing_one() -> None:
    assert littles_law(arrival_rate=3.0, time_in_system=2.0) == 6.0
    assert littles_law(number_in_system=6.0, time_in_system=2.0) == 3.0
    assert littles_law(number_in_system=6.0, arrival_rate=3.0) == 2.0


class Pools:
    """A Plannable with the pools it is given."""

    def __init__(self, pools: list[PoolLoad]) -> None:
        self.pools = pools

    def pool_loads(self) -> list[PoolLoad]:
        return self.pools


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: erlang_c(10, 10.0), InvalidArgumentError),  # unstable
        (lambda: erlang_c(0, 0.5), InvalidArgumentError),
        (lambda: erlang_c(2, math.nan), InvalidArgumentError),
        (lambda: erlang_c(2.5, 1.0), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: mean_wait(1.0, -2.0, 3), InvalidArgumentError),
        (lambda: service_level(1.0, 1.0, 3, within=-1.0), InvalidArgumentError),
        (lambda: servers_for_service_level(1.0, 1.0, 1.0, 1.0), InvalidArgumentError),
        (lambda: littles_law(arrival_rate=1.0), InvalidArgumentError),
        (lambda: littles_law(number_in_system=1.0, arrival_rate=0.0), InvalidArgumentError),
        (lambda: PoolLoad("", 1.0, 1.0, 1), InvalidTypeError),
        (lambda: PoolLoad("p", 1.0, 0.0, 1), InvalidArgumentError),
        (lambda: PoolLoad("p", "3", 1.0, 1), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: PoolLoad("p", True, 1.0, 1), InvalidTypeError),
        (lambda: PoolLoad("p", None, 1.0, 1), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: PoolLoad("p", 1.0, [1.0], 1), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: PoolLoad("p", 10**400, 1.0, 1), InvalidArgumentError),
        (lambda: PoolLoad("p", math.inf, 1.0, 1), InvalidArgumentError),
        (lambda: PoolLoad("p", 1e200, 1e200, 1), InvalidArgumentError),
        (lambda: servers_for_wait(3.0, 2.0, 0.0), InvalidArgumentError),
        (lambda: servers_for_wait(1e9, 1.0, 1.0), InvalidArgumentError),  # above 1e7 erlangs
        (lambda: erlang_c(20_000_000, 1.5e7), InvalidArgumentError),
        (lambda: littles_law(arrival_rate=1e-320, number_in_system=1.0), InvalidArgumentError),
        (lambda: littles_law(arrival_rate=1e300, time_in_system=1e300), InvalidArgumentError),
        (lambda: plan_for(object()), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: plan_for(Pools([]), level=5.0), InvalidArgumentError),
        (lambda: plan_for(Pools([]), target_wait=0.0), InvalidArgumentError),
        (lambda: plan_for(Pools(None)), InvalidTypeError),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_refused(call: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        call()  # type: ignore[operator]


def test_an_overflowing_load_names_the_arguments_given() -> None:
    with pytest.raises(InvalidArgumentError, match="arrival_rate x service_time"):
        mean_wait(1e200, 1e200, 5)


def test_pool_load_numbers_are_floats() -> None:
    pool = PoolLoad("p", 3, 2, 8)
    assert (type(pool.arrival_rate), type(pool.service_time)) == (float, float)


@pytest.mark.parametrize(("servers", "load"), [(400, 5.0), (3_000, 1_000.0), (50, 48.0)])
def test_erlang_c_stopping_early_gives_the_full_recursion_s_answer(
    servers: int, load: float
) -> None:
    blocking = 1.0
    for step in range(1, servers + 1):
        blocking = load * blocking / (step + load * blocking)
    full = servers * blocking / (servers - load * (1.0 - blocking))
    assert erlang_c(servers, load) == full


def test_erlang_c_answers_at_once_for_a_huge_pool() -> None:
    start = time.perf_counter()
    assert erlang_c(99_999_999_999_999, 5.0) == 0.0
    assert mean_wait(1.0, 5.0, 10**14) == 0.0
    assert service_level(1.0, 5.0, 10**14, 0.0) == 1.0
    assert time.perf_counter() - start < 1.0  # it looped over every server before
    # Beyond what a float holds: servers - load raised OverflowError.
    assert mean_wait(1.0, 1.0, 10**400) == 0.0 and service_level(1.0, 1.0, 10**400, 1.0) == 1.0


def test_plan_for_reads_every_pool_of_the_platform() -> None:
    scenario = scenarios.platform(load=0.85)
    plans = {plan.name: plan for plan in plan_for(scenario)}
    assert set(plans) == set(scenarios.AGENT_CONCURRENCY)
    for name, plan in plans.items():
        assert plan.servers == scenarios.AGENT_CONCURRENCY[name]
        assert plan.utilization == pytest.approx(0.85)
        # The suggestion meets the default target: 80 % wait at most one service time.
        assert (
            service_level(plan.arrival_rate, plan.service_time, plan.suggested, plan.service_time)
            >= 0.8
        )
    # Two slots of 15 s research at 85 % is the tightest pool: it needs a third.
    assert plans["research"].suggested == 3


def test_plan_for_with_a_target_wait_and_an_overloaded_pool() -> None:
    scenario = scenarios.mm_c(12.0, 1.0, 10)
    (plan,) = plan_for(scenario, target_wait=0.1)
    assert plan.mean_wait == math.inf and plan.utilization == pytest.approx(1.2)
    assert plan.suggested == servers_for_wait(12.0, 1.0, 0.1)
