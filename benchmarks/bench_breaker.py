"""CircuitBreaker.call overhead next to pybreaker's CircuitBreaker.call.

Each round makes n calls of a trivial function through one breaker (built
outside the timing, on the real monotonic clock). Scenarios:

- ``pass``: a CLOSED breaker, every call succeeds;
- ``mixed``: a CLOSED breaker, every 10th call raises (never enough to trip);
- ``refuse``: an OPEN breaker, every call is refused without calling.

Contenders: ``bare`` (the function called directly: the floor that overhead
is measured from), ``pybreaker`` (fail_max=5, its in-memory storage), and
three taskdist configurations — ``taskdist`` (the defaults: count window of
100, slow-call detection on, so each call is timed), ``taskdist-untimed``
(``slow_call_duration=None``: pybreaker's feature set, nothing to time) and
``taskdist-time`` (a 60 s time-based window). ``taskdist-allow`` drives the
sans-I/O ``acquire()`` / ``record_success(permit=...)`` pair by hand, as a
distributor does. ``benchmarks/compare_breaker.py`` prints the overhead
ratios.
"""

from __future__ import annotations

from collections.abc import Callable

import pybreaker
import pytest
from sizing import sizes

from taskdist import CircuitBreaker, CircuitOpenError

SIZES = sizes(full=[100_000], smoke=[300])
SCENARIOS = ("pass", "mixed", "refuse")

Run = Callable[[], int]
"""One round: make the n calls, return how many reached the function."""


class Boom(Exception):
    pass


def workload(scenario: str) -> Callable[[int], int]:
    if scenario == "mixed":

        def work(i: int) -> int:
            if i % 10 == 0:
                raise Boom
            return i

        return work
    return lambda i: i


def bare(scenario: str, n: int) -> Run:
    work = workload(scenario)
    refused = scenario == "refuse"

    def run() -> int:
        reached = 0
        for i in range(n):
            if refused:
                continue  # an open breaker's ideal: nothing at all
            try:  # noqa: SIM105 - the same try/except as the other loops, so it cancels out
                work(i)
            except Boom:
                pass
            reached += 1
        return reached

    return run


def _through(call: Callable[..., int], work: Callable[[int], int], n: int, refused: type) -> Run:
    def run() -> int:
        reached = 0
        for i in range(n):
            try:
                call(work, i)
            except Boom:
                pass
            except refused:
                continue
            reached += 1
        return reached

    return run


def with_pybreaker(scenario: str, n: int) -> Run:
    breaker = pybreaker.CircuitBreaker(fail_max=5 if scenario != "mixed" else n, reset_timeout=3600)
    if scenario == "refuse":
        breaker.open()
    return _through(breaker.call, workload(scenario), n, pybreaker.CircuitBreakerError)


def with_taskdist(
    breaker_class: type = CircuitBreaker, **options: object
) -> Callable[[str, int], Run]:
    """``breaker_class(open_duration=3600, **options).call``; another class (an earlier
    version of CircuitBreaker) lets ``compare_breaker.py --baseline`` compare the two."""

    def make(scenario: str, n: int) -> Run:
        breaker = breaker_class(open_duration=3600.0, **options)
        if scenario == "refuse":
            for _ in range(100):
                breaker.record_failure()
        return _through(breaker.call, workload(scenario), n, CircuitOpenError)

    return make


def with_taskdist_allow(scenario: str, n: int, breaker_class: type = CircuitBreaker) -> Run:
    """The sans-I/O pair a distributor uses: acquire(), then record_*(permit=...)."""
    breaker = breaker_class(open_duration=3600.0, slow_call_duration=None)
    if scenario == "refuse":
        for _ in range(100):
            breaker.record_failure()
    work = workload(scenario)
    acquire, success, failure = breaker.acquire, breaker.record_success, breaker.record_failure

    def run() -> int:
        reached = 0
        for i in range(n):
            permit = acquire()
            if permit is None:
                continue
            try:
                work(i)
            except Boom:
                failure(permit=permit)
            else:
                success(permit=permit)
            reached += 1
        return reached

    return run


CONTENDERS: dict[str, Callable[[str, int], Run]] = {
    "bare": bare,
    "pybreaker": with_pybreaker,
    "taskdist": with_taskdist(),
    "taskdist-untimed": with_taskdist(slow_call_duration=None),
    "taskdist-time": with_taskdist(window="time", window_size=60),
    "taskdist-allow": with_taskdist_allow,
}


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("contender", list(CONTENDERS))
def bench_call(benchmark, contender: str, scenario: str, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"breaker {scenario} n={n:.0e}"
    run = CONTENDERS[contender](scenario, n)
    reached = benchmark.pedantic(run, rounds=5, iterations=1)
    assert reached == (0 if scenario == "refuse" else n)
