"""Quota: the limits (and optional share) one tenant, or every tenant on a plan, runs under."""

from __future__ import annotations

import attrs

from taskdist._validate import check_int, check_number
from taskdist.clock import Clock
from taskdist.resilience import RateLimiter

__all__ = ["Quota"]


@attrs.frozen
class Quota:
    """Per-tenant limits for a :class:`~taskdist.queues.FairScheduler`; every field is optional.

    - ``max_concurrent``: most of the tenant's tasks running at once (handed
      out by ``pop`` and not yet ``release``-d). ``0`` holds every task.
    - ``rate`` per ``per`` seconds: most tasks dispatched, as a GCRA token
      bucket (:class:`~taskdist.resilience.RateLimiter`) whose burst is
      ``rate``: ``rate=10, per=60`` lets 10 through at once from idle, then one
      every 6 s. Over any window of ``w`` seconds at most ``rate + rate * w /
      per`` tasks pass. ``rate`` is at least 1 (one task must fit in a burst);
      write "one task every two minutes" as ``rate=1, per=120``.
    - ``max_queued``: most of the tenant's tasks waiting at once; a push beyond
      it raises :class:`~taskdist.errors.QuotaExceededError`. ``0`` refuses
      every push.
    - ``weight``: the tenant's fair share when no per-tenant weight is set
      (a plan's share: enterprise 4, pro 2, free 1), > 0.

    When a plan names a quota, each tenant on the plan gets its own limits
    (its own concurrency count and its own token bucket), not a pooled one.

    Construction validates every field and raises a
    :class:`~taskdist.errors.TaskdistError` subclass naming it. O(1).

    >>> Quota(max_concurrent=2, rate=10, per=60.0)
    Quota(max_concurrent=2, rate=10.0, per=60.0, max_queued=None, weight=None)
    >>> Quota(rate=0.5)
    Traceback (most recent call last):
    ...
    taskdist.errors.InvalidArgumentError: Quota.rate must be >= 1, got 0.5
    """

    max_concurrent: int | None = None
    """Most tasks running at once (>= 0), or ``None`` for no limit."""
    rate: float | None = None
    """Tasks dispatched per ``per`` seconds (>= 1, also the burst), or ``None`` for no limit."""
    per: float = 1.0
    """The rate's period in seconds (> 0)."""
    max_queued: int | None = None
    """Most tasks waiting at once (>= 0), or ``None`` for no limit."""
    weight: float | None = None
    """Fair share for tenants under this quota that have no weight of their own (> 0)."""

    def __attrs_post_init__(self) -> None:
        if self.max_concurrent is not None:
            check_int(self.max_concurrent, "Quota.max_concurrent", minimum=0)
        if self.rate is not None:
            object.__setattr__(self, "rate", check_number(self.rate, "Quota.rate", minimum=1.0))
        object.__setattr__(self, "per", check_number(self.per, "Quota.per", positive=True))
        if self.max_queued is not None:
            check_int(self.max_queued, "Quota.max_queued", minimum=0)
        if self.weight is not None:
            object.__setattr__(
                self, "weight", check_number(self.weight, "Quota.weight", positive=True)
            )

    def rate_limiter(self, clock: Clock) -> RateLimiter | None:
        """A fresh token bucket enforcing ``rate`` per ``per`` (burst ``rate``), or ``None``. O(1).

        >>> from taskdist import ManualClock
        >>> Quota(rate=10, per=60.0).rate_limiter(ManualClock())
        RateLimiter(rate=10, per=60, burst=10)
        """
        if self.rate is None:
            return None
        return RateLimiter(self.rate, self.per, self.rate, clock=clock)
