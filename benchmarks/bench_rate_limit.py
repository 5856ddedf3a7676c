"""RateLimiter.try_acquire next to pyrate-limiter's in-memory Limiter.

Three scenarios, n calls each, a fresh limiter per round (built outside the
timing), both sides on the real monotonic clock:

- ``admit``: a limit that does not bind, so every call is admitted;
- ``refuse``: a saturated limit (1 per hour, already used), every call refused;
- ``two-windows``: two limits on the same unit (n per second *and* 2n per
  hour), every call admitted: taskdist's ``MultiLimiter`` against pyrate's
  list of rates.

pyrate-limiter is a sliding-window log (it stores one item per admitted
unit); taskdist's GCRA keeps one number per bucket. Both answer the same
question, "may this call go now?", which is what is timed.
``benchmarks/compare_rate_limit.py`` prints the same comparison as ratios.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate
from sizing import sizes

import taskdist
from taskdist import MonotonicClock

SIZES = sizes(full=[10_000, 100_000], smoke=[200])
SCENARIOS = ("admit", "refuse", "two-windows")

Run = Callable[[], int]
"""One round: make the n calls, return how many were admitted."""


def taskdist_limiter(scenario: str, n: int, module: Any = taskdist) -> Run:
    """``module`` is where RateLimiter and MultiLimiter come from: another one (an
    earlier rate_limit.py) lets ``compare_rate_limit.py --baseline`` compare the two."""
    clock = MonotonicClock()
    if scenario == "two-windows":
        both = module.MultiLimiter(
            {
                "second": module.RateLimiter(n, per=1.0, burst=n, clock=clock),
                "hour": module.RateLimiter(2 * n, per=3600.0, burst=2 * n, clock=clock),
            }
        )
        acquire: Callable[[], bool] = both.try_acquire
    else:
        if scenario == "admit":
            limiter = module.RateLimiter(n, per=1.0, burst=n, clock=clock)
        else:
            limiter = module.RateLimiter(1, per=3600.0, burst=1, clock=clock)
            limiter.try_acquire()
        acquire = limiter.try_acquire

    def run() -> int:
        return sum(acquire() for _ in range(n))

    return run


def taskdist_keyed(scenario: str, n: int, module: Any = taskdist) -> Run:
    """The keyed limiter on 100 keys (taskdist only: what keying costs).

    Each key's limit is per hour, so its bucket stays held between its calls
    (a bucket full again would be dropped and made afresh: a different cost).
    """
    rate = n if scenario == "admit" else 1
    keyed = module.KeyedRateLimiter(rate, per=3600.0, burst=rate, clock=MonotonicClock())
    keys = [f"tenant-{i % 100}" for i in range(n)]
    if scenario == "refuse":
        for key in keys[:100]:
            keyed.try_acquire(key)

    def run() -> int:
        acquire = keyed.try_acquire
        return sum(acquire(key) for key in keys)

    return run


def pyrate_limiter(scenario: str, n: int) -> Run:
    if scenario == "admit":
        rates = [Rate(n, Duration.SECOND)]
    elif scenario == "refuse":
        rates = [Rate(1, Duration.HOUR)]
    else:
        rates = [Rate(n, Duration.SECOND), Rate(2 * n, Duration.HOUR)]
    limiter = Limiter(InMemoryBucket(rates))
    if scenario == "refuse":
        limiter.try_acquire("bench", blocking=False)
    acquire = limiter.try_acquire

    def run() -> int:
        try:
            return sum(bool(acquire("bench", blocking=False)) for _ in range(n))
        finally:
            limiter.close()

    return run


CONTENDERS: dict[str, Callable[[str, int], Run]] = {
    "taskdist": taskdist_limiter,
    "taskdist-keyed": taskdist_keyed,
    "pyrate-limiter": pyrate_limiter,
}


CASES = [
    (contender, scenario)
    for scenario in SCENARIOS
    for contender in CONTENDERS
    if not (contender == "taskdist-keyed" and scenario == "two-windows")
]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(("contender", "scenario"), CASES)
def bench_try_acquire(benchmark, contender: str, scenario: str, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"try_acquire {scenario} n={n:.0e}"

    def setup() -> tuple[tuple[Run], dict[str, object]]:
        return (CONTENDERS[contender](scenario, n),), {}

    admitted = benchmark.pedantic(lambda run: run(), setup=setup, rounds=5, iterations=1)
    assert admitted == (0 if scenario == "refuse" else n)
