"""Worker health: the states, and the policies that derive them from outcomes.

A :class:`~taskdist.CapacityTracker` combines three sources into one
:class:`Health` per worker, the worst of:

- what the host said (``tracker.set_health(id, Health.DEGRADED)``);
- what the outcomes say (:class:`HealthPolicy`: the EWMA error rate or
  latency crossing a threshold makes a worker ``DEGRADED``);
- outlier ejection in Envoy's sense (:class:`OutlierEjection`: consecutive
  failures make a worker ``UNAVAILABLE`` for a growing interval, never more
  than ``max_ejection_percent`` of the workers at once).

:class:`SlowStart` ramps a new (or newly readmitted) worker's weight up over a
window, as Envoy's slow start does. The configs here are immutable values
validated at construction; the arithmetic that uses them is in
:func:`ewma_keep`, :meth:`OutlierEjection.duration` and
:meth:`SlowStart.factor`, each O(1).
"""

from __future__ import annotations

import enum
import math

import attrs

from taskdist._validate import check_int, check_number, check_optional_number
from taskdist.workers._ranges import MAX_SECONDS, MIN_RAMP_WEIGHT

__all__ = ["Health", "HealthPolicy", "OutlierEjection", "SlowStart"]


class Health(str, enum.Enum):
    """How well a worker is doing; ``UNAVAILABLE`` workers take no tasks.

    A ``str`` enum, so ``Health.DEGRADED == "degraded"``.

    **Threads.** A constant, so safe to share between threads.
    """

    HEALTHY = "healthy"
    """Takes tasks normally."""
    DEGRADED = "degraded"
    """Takes tasks, but by default only when no healthy worker can (Envoy's degraded hosts)."""
    UNAVAILABLE = "unavailable"
    """Takes no tasks: marked down by the host, or ejected as an outlier."""

    @property
    def rank(self) -> int:
        """0 for HEALTHY, 1 for DEGRADED, 2 for UNAVAILABLE: the worse, the higher."""
        return _RANK[self]


_RANK = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNAVAILABLE: 2}


def worst(a: Health, b: Health) -> Health:
    """The worse of two health states. O(1)."""
    return a if _RANK[a] >= _RANK[b] else b


@attrs.frozen
class HealthPolicy:
    """When outcomes make a worker ``DEGRADED`` (and when it recovers).

    After at least ``min_samples`` outcomes, a worker is ``DEGRADED`` while its
    EWMA error rate (``1 - success_rate``) is ``>= error_rate`` or its EWMA
    latency is ``>= latency``; otherwise it is ``HEALTHY`` again. Either
    threshold may be ``None`` (off). Because both are moving averages, one bad
    outcome does not flip a worker: with ``ewma_alpha=0.2`` it takes four
    failures in a row from a clean record to reach an error rate of 0.5
    (three reach 0.488).

    **Threads.** Immutable, so safe to share between threads.

    >>> HealthPolicy(error_rate=0.5, latency=10.0).latency
    10.0
    """

    error_rate: float | None = 0.5
    """EWMA error rate in (0, 1] at which a worker is degraded, or ``None``."""
    latency: float | None = None
    """EWMA task duration (seconds, > 0, at most 1e12) at which a worker is degraded,
    or ``None``."""
    min_samples: int = 5
    """Outcomes a worker must have reported before it is judged (>= 1)."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(
            self,
            "error_rate",
            check_optional_number(
                self.error_rate, "HealthPolicy.error_rate", positive=True, maximum=1.0
            ),
        )
        object.__setattr__(
            self,
            "latency",
            check_optional_number(
                self.latency, "HealthPolicy.latency", positive=True, maximum=MAX_SECONDS
            ),
        )
        check_int(self.min_samples, "HealthPolicy.min_samples", minimum=1)

    def judge(self, samples: int, success_rate: float, latency: float | None) -> Health:
        """``DEGRADED`` or ``HEALTHY`` for these averages. O(1)."""
        if samples < self.min_samples:
            return Health.HEALTHY
        if self.error_rate is not None and 1.0 - success_rate >= self.error_rate:
            return Health.DEGRADED
        if self.latency is not None and latency is not None and latency >= self.latency:
            return Health.DEGRADED
        return Health.HEALTHY


@attrs.frozen
class OutlierEjection:
    """Envoy-style outlier ejection: consecutive failures take a worker out for a while.

    After ``consecutive_failures`` failed outcomes in a row a worker is
    ejected (``UNAVAILABLE``) for ``base_ejection_time * k`` seconds, capped
    at ``max_ejection_time``, where ``k`` counts its ejections. As in Envoy,
    ``k`` decays: it drops by one for every ``base_ejection_time`` the worker
    spent readmitted before its next ejection. When the time is up the worker
    is readmitted on its own (see ``CapacityTracker.next_wakeup()``).

    **The bound.** An ejection that would make more than
    ``max_ejection_percent`` of the registered workers ejected at once does
    not happen (the worker stays in, and is ejected on a later failure if
    room has opened since). Unlike Envoy, which always allows one, the
    bound is strict: with 50 % and 3 workers, at most one is ejected; with
    10 % and 9 workers, none is. Removing a worker never breaks the bound
    either: the ejections closest to their end are lifted first.

    The default percent is 50, not Envoy's 10: agent pools are small, and at
    10 % a pool of fewer than ten workers could never eject anyone.

    **Threads.** Immutable, so safe to share between threads.

    >>> rule = OutlierEjection(base_ejection_time=30.0, max_ejection_time=300.0)
    >>> rule.duration(1), rule.duration(3), rule.duration(20)
    (30.0, 90.0, 300.0)
    """

    consecutive_failures: int = 5
    """Failures in a row that eject a worker (>= 1; Envoy's ``consecutive_5xx``)."""
    base_ejection_time: float = 30.0
    """Seconds of the first ejection (> 0, at most 1e12); the k-th lasts k times this."""
    max_ejection_time: float = 300.0
    """The longest an ejection lasts, seconds (>= ``base_ejection_time``, at most 1e12)."""
    max_ejection_percent: float = 50.0
    """At most this percentage (0..100) of registered workers is ejected at once."""

    def __attrs_post_init__(self) -> None:
        check_int(self.consecutive_failures, "OutlierEjection.consecutive_failures", minimum=1)
        base = check_number(
            self.base_ejection_time,
            "OutlierEjection.base_ejection_time",
            positive=True,
            maximum=MAX_SECONDS,
        )
        object.__setattr__(self, "base_ejection_time", base)
        object.__setattr__(
            self,
            "max_ejection_time",
            check_number(
                self.max_ejection_time,
                "OutlierEjection.max_ejection_time",
                minimum=base,
                maximum=MAX_SECONDS,
            ),
        )
        object.__setattr__(
            self,
            "max_ejection_percent",
            check_number(
                self.max_ejection_percent,
                "OutlierEjection.max_ejection_percent",
                minimum=0.0,
                maximum=100.0,
            ),
        )

    def duration(self, ejections: int) -> float:
        """How long the ``ejections``-th ejection (>= 1) lasts, in seconds. O(1)."""
        return min(self.base_ejection_time * ejections, self.max_ejection_time)

    def allows(self, ejected: int, workers: int) -> bool:
        """Whether one more ejection keeps ``ejected + 1 <= percent * workers / 100``. O(1)."""
        # Integers compared exactly: 100 * (ejected + 1) <= percent * workers.
        return 100 * (ejected + 1) <= self.max_ejection_percent * workers


@attrs.frozen
class SlowStart:
    """Envoy-style slow start: a new worker's weight ramps up over ``window`` seconds.

    A worker added (or readmitted after being ``UNAVAILABLE``) at ``t0`` has,
    at time ``t``, effective weight ``weight * max(min_weight, f ** (1 /
    aggression))`` with ``f = (t - t0) / window``, until ``f`` reaches 1.
    Weighted strategies (``WeightedRoundRobin``, ``LeastConnections``,
    ``PowerOfTwoChoices``, weighted ``RandomBalancer``) use the effective
    weight, so a cold worker is not flooded the moment it joins. A
    :class:`~taskdist.CapacityTracker` moves the weight along in 32 equal
    steps of the window: its ``effective_weight`` is ``weight *
    factor(t)`` for ``t`` the start of the current step, so a fleet that
    ramps up at once costs each worker 32 refilings, not one per call.

    **Threads.** Immutable, so safe to share between threads.

    >>> ramp = SlowStart(window=60.0, min_weight=0.1)
    >>> ramp.factor(0.0), ramp.factor(30.0), ramp.factor(90.0)
    (0.1, 0.5, 1.0)
    """

    window: float
    """Seconds the ramp lasts (> 0, at most 1e12)."""
    min_weight: float = 0.1
    """The fraction of its weight a worker starts with, in [1e-6, 1] (Envoy: 10 %)."""
    aggression: float = 1.0
    """Shape of the ramp (any finite number > 0): 1 is linear, larger ramps faster early on."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(
            self,
            "window",
            check_number(self.window, "SlowStart.window", positive=True, maximum=MAX_SECONDS),
        )
        object.__setattr__(
            self,
            "min_weight",
            check_number(
                self.min_weight, "SlowStart.min_weight", minimum=MIN_RAMP_WEIGHT, maximum=1.0
            ),
        )
        object.__setattr__(
            self,
            "aggression",
            check_number(self.aggression, "SlowStart.aggression", positive=True),
        )

    def factor(self, age: float) -> float:
        """The weight multiplier ``age`` seconds into the ramp, in [min_weight, 1]. O(1)."""
        if age >= self.window:
            return 1.0
        fraction = max(age, 0.0) / self.window
        return max(self.min_weight, math.pow(fraction, 1.0 / self.aggression))


def ewma_keep(alpha: float, elapsed: float | None, half_life: float | None) -> float:
    """The weight an EWMA keeps on its old value when a new sample arrives. O(1).

    Plain EWMA keeps ``1 - alpha``. With a ``half_life`` the old value also
    loses half its weight for every ``half_life`` seconds since the previous
    sample, so an average nobody has refreshed for a while gives way quickly
    to new evidence; two samples at the same instant behave as plain EWMA.

    >>> ewma_keep(0.2, None, None)
    0.8
    >>> round(ewma_keep(0.2, 10.0, 10.0), 3)
    0.4
    """
    keep = 1.0 - alpha
    if half_life is not None and elapsed is not None and elapsed > 0:
        keep *= math.pow(0.5, elapsed / half_life)
    return keep
