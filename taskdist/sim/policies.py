"""Policies: how a scenario's tasks are scheduled, as the parts of a Distributor.

A :class:`Policy` is a small recipe that builds the Distributor's parts (queue,
tracker, balancer, breakers, retry policy) for a scenario, on the run's clock
and random source. Built-in ones are named ``"<queue>[/<balancer>][+cb]"``:

======================  ==============================================================
queue                   what decides which task goes next
======================  ==============================================================
``fifo``                arrival order (a priority queue aging a million levels a
                        second, so waiting time outweighs any priority difference)
``priority``            ``PriorityQueue`` with the scenario's aging rate
``fair``                ``FairScheduler`` over tenants (the scenario's plans and
                        quotas), a ``PriorityQueue`` inside each tenant
``edf``                 ``DeadlineScheduler``: earliest deadline first, run late
``fair+edf``            ``FairScheduler`` with a ``DeadlineScheduler`` inside each tenant
======================  ==============================================================

Balancers: ``least`` (``LeastConnections``, the default), ``p2c``
(``PowerOfTwoChoices``), ``rr`` (``RoundRobin``), ``hash``
(``ConsistentHash`` with bounded loads), ``random``, ``perf``
(``PerformanceBased``: the soonest expected completion). ``+cb`` gives every
worker a circuit breaker. So ``Policy.named("fair+edf/p2c+cb")``.

>>> Policy.named("fair/p2c").balancer
'p2c'
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Final

import attrs

from taskdist._validate import check_int, shown
from taskdist.balancing import (
    Balancer,
    ConsistentHash,
    LeastConnections,
    PerformanceBased,
    PowerOfTwoChoices,
    RandomBalancer,
    RoundRobin,
)
from taskdist.clock import Clock
from taskdist.dispatch import BreakerFactory
from taskdist.errors import InvalidArgumentError, InvalidTypeError, UnknownPolicyError
from taskdist.queues import PriorityQueue, Queue
from taskdist.queues.deadline import DeadlineScheduler
from taskdist.queues.fair import FairScheduler
from taskdist.resilience import CircuitBreaker, RetryPolicy
from taskdist.resilience._ranges import check_duration
from taskdist.sim.scenario import Scenario
from taskdist.workers import CapacityTracker

__all__ = ["BUILT_IN", "QUEUES", "Parts", "Policy"]

QUEUES: Final = ("fifo", "priority", "fair", "edf", "fair+edf")
"""The queue disciplines a built-in policy can name."""

BALANCERS: Final = ("least", "p2c", "rr", "hash", "random", "perf")
"""The balancers a built-in policy can name."""

BUILT_IN: Final = ("fifo", "priority", "fair", "edf", "fair+edf")
"""The policies ``compare`` and ``--compare`` run when given none."""

# FIFO as priority aging: a million levels a second makes arrival order decide
# (a 4-level difference is made up in 4 microseconds), ties by priority.
_FIFO_AGING: Final = 1e6


@attrs.frozen
class Parts:
    """What a policy builds for one run: the Distributor's keyword arguments."""

    queue: Queue
    tracker: CapacityTracker
    balancer: Balancer
    retry: RetryPolicy
    breaker: BreakerFactory | None


def _split(name: str) -> tuple[str, str, bool]:
    breakers = name.endswith("+cb")
    body = name[: -len("+cb")] if breakers else name
    queue, slash, balancer = body.partition("/")
    if slash and not balancer:
        raise UnknownPolicyError(
            f"policy {name!r} names no balancer after its '/': leave the '/' out for the "
            f"default (least), or name one of {', '.join(BALANCERS)}"
        )
    return queue, balancer or "least", breakers


@attrs.frozen
class Policy:
    """A named recipe for a Distributor's parts: queue, balancer, breakers, retries.

    ``retry_attempts`` is the attempts a task gets (first try included, an
    int >= 1); ``retry_base``/``retry_cap`` the backoff in seconds (full
    jitter; ``0 < retry_base <= retry_cap <= 1e9``, as :class:`RetryPolicy`
    takes them); ``breakers`` a bool. Validated when built. Build with
    :meth:`named` or directly; :meth:`build` is O(workers) (a tracker and
    per-run objects), called once per run.
    """

    queue: str = "priority"
    balancer: str = "least"
    breakers: bool = False
    retry_attempts: int = 3
    retry_base: float = 1.0
    retry_cap: float = 30.0

    def __attrs_post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise UnknownPolicyError(
                f"no queue discipline {self.queue!r}; the built-in ones are {', '.join(QUEUES)}"
            )
        if self.balancer not in BALANCERS:
            raise UnknownPolicyError(
                f"no balancer {self.balancer!r}; the built-in ones are {', '.join(BALANCERS)}"
            )
        if not isinstance(self.breakers, bool):
            raise InvalidTypeError(f"Policy.breakers must be a bool, got {shown(self.breakers)}")
        # The ranges build() gives RetryPolicy: refused here, not when a run starts.
        check_int(self.retry_attempts, "Policy.retry_attempts", minimum=1)
        base = check_duration(self.retry_base, "Policy.retry_base", positive=True)
        cap = check_duration(self.retry_cap, "Policy.retry_cap", positive=True)
        if cap < base:
            raise InvalidArgumentError(
                f"Policy.retry_cap must be >= retry_base ({base:g}), got {shown(self.retry_cap)}"
            )

    @classmethod
    def named(cls, name: str) -> Policy:
        """The built-in policy ``"<queue>[/<balancer>][+cb]"`` (see the module docs).

        Raises:
            UnknownPolicyError: a queue or balancer that is not built in.
        """
        if not isinstance(name, str) or not name:
            raise UnknownPolicyError(f"a policy name is a non-empty str, got {name!r}")
        queue, balancer, breakers = _split(name)
        return cls(queue=queue, balancer=balancer, breakers=breakers)

    @property
    def name(self) -> str:
        """The name :meth:`named` reads back into this policy."""
        balancer = "" if self.balancer == "least" else f"/{self.balancer}"
        return f"{self.queue}{balancer}{'+cb' if self.breakers else ''}"

    def build(self, scenario: Scenario, clock: Clock, rng: random.Random) -> Parts:
        """Make the parts for one run of ``scenario`` on ``clock``; random choices from ``rng``."""
        return Parts(
            queue=self._queue(scenario, clock),
            tracker=CapacityTracker(clock),
            balancer=self._balancer(rng),
            retry=RetryPolicy(
                max_attempts=self.retry_attempts,
                base=self.retry_base,
                cap=self.retry_cap,
                jitter="full",
                rng=rng,
            ),
            breaker=self._breakers(clock),
        )

    def _queue(self, scenario: Scenario, clock: Clock) -> Queue:
        queue = self.queue
        if queue == "fifo":
            return PriorityQueue(clock, aging_rate=_FIFO_AGING)
        if queue == "priority":
            return PriorityQueue(clock, aging_rate=scenario.aging_rate)
        servers = max(1, int(scenario.slots))
        edf: Callable[[Clock], Queue] = functools.partial(
            DeadlineScheduler, servers=servers, aging_rate=scenario.aging_rate
        )
        if queue == "edf":
            return edf(clock)
        plans = dict(scenario.plans)
        tenant_plan = {t: p for t, p in scenario.tenant_plan.items() if p in plans}
        if queue == "fair+edf":
            return FairScheduler(clock, plans=plans, tenant_plan=tenant_plan, inner=edf)
        # Its own tenant queues (PriorityQueues at the scenario's aging rate): they share
        # its id table, and tasks behind a gate wait in classes (see the Distributor).
        return FairScheduler(
            clock, plans=plans, tenant_plan=tenant_plan, aging_rate=scenario.aging_rate
        )

    def _balancer(self, rng: random.Random) -> Balancer:
        kind = self.balancer
        if kind == "p2c":
            return PowerOfTwoChoices(rng=rng)
        if kind == "rr":
            return RoundRobin()
        if kind == "hash":
            return ConsistentHash()
        if kind == "random":
            return RandomBalancer(rng=rng)
        if kind == "perf":
            return PerformanceBased()
        return LeastConnections()

    def _breakers(self, clock: Clock) -> BreakerFactory | None:
        if not self.breakers:
            return None
        return lambda worker_id: CircuitBreaker(clock, minimum_calls=10, open_duration=30.0)
