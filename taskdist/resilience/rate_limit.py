"""RateLimiter: the generic cell rate algorithm (GCRA), O(1) and timer-free."""

from __future__ import annotations

from taskdist._validate import check_number
from taskdist.clock import Clock, MonotonicClock
from taskdist.errors import InvalidArgumentError, InvalidTypeError

__all__ = ["RateLimiter"]


class RateLimiter:
    """Admit at most ``rate`` units per ``per`` seconds, with bursts of ``burst`` units.

    Token-bucket semantics computed by GCRA: the limiter keeps one number, the
    *theoretical arrival time* (TAT) at which the bucket would be full again,
    so it needs no timers and no refill loop. Each unit costs ``interval =
    per / rate`` seconds of TAT; a request of ``amount`` units is admitted when
    ``TAT + amount * interval - burst * interval <= now``.

    From idle exactly ``burst`` units pass at once (default ``burst = rate``:
    ``rate=10, per=60`` lets 10 through at once, then one every 6 s), and a
    caller steady at ``rate`` is never refused. Over any window of length
    ``w`` at most ``rate * w / per + burst`` units are admitted.

    Every operation is O(1).

    >>> from taskdist import ManualClock
    >>> clock = ManualClock()
    >>> limiter = RateLimiter(rate=2, per=1.0, burst=2, clock=clock)
    >>> limiter.try_acquire(), limiter.try_acquire(), limiter.try_acquire()
    (True, True, False)
    >>> limiter.retry_after()
    0.5
    """

    __slots__ = ("_burst_window", "_clock", "_interval", "_tat", "burst", "per", "rate")

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        """
        Args:
            rate: units admitted per ``per`` seconds (> 0).
            per: the period in seconds (> 0).
            burst: units that may pass at once from idle (>= 1; default ``rate``).
            clock: where time comes from (default: :class:`MonotonicClock`).
        """
        self.rate = check_number(rate, "rate", positive=True)
        self.per = check_number(per, "per", positive=True)
        self.burst = (
            self.rate if burst is None else check_number(burst, "burst", minimum=1.0)
        )
        if clock is None:
            clock = MonotonicClock()
        elif not callable(getattr(clock, "now", None)):
            raise InvalidTypeError(f"clock must have a now() method, got {clock!r}")
        self._clock = clock
        self._interval = self.per / self.rate
        self._burst_window = self.burst * self._interval
        self._tat = float("-inf")

    def _check_amount(self, amount: float) -> float:
        amount = check_number(amount, "amount", positive=True)
        if amount > self.burst:
            raise InvalidArgumentError(
                f"amount must be <= burst ({self.burst:g}) or it could never pass, got {amount!r}"
            )
        return amount

    def try_acquire(self, amount: float = 1) -> bool:
        """Take ``amount`` units if they are available now; all or nothing. O(1).

        Raises:
            InvalidArgumentError: ``amount`` <= 0, NaN, or more than ``burst``.
        """
        amount = self._check_amount(amount)
        now = self._clock.now()
        tat = max(self._tat, now)
        new_tat = tat + amount * self._interval
        if new_tat - self._burst_window > now:
            return False
        self._tat = new_tat
        return True

    def retry_after(self, amount: float = 1) -> float:
        """Seconds until ``amount`` units could be taken (0 if now). O(1)."""
        amount = self._check_amount(amount)
        now = self._clock.now()
        tat = max(self._tat, now)
        return max(0.0, tat + amount * self._interval - self._burst_window - now)

    def next_wakeup(self) -> float | None:
        """When one more unit becomes available, or ``None`` if one is available now. O(1)."""
        now = self._clock.now()
        at = max(self._tat, now) + self._interval - self._burst_window
        return at if at > now else None

    def available(self) -> float:
        """Units that could be taken right now (fractional). O(1)."""
        now = self._clock.now()
        used = max(self._tat, now) - now
        return max(0.0, (self._burst_window - used) / self._interval)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}, per={self.per:g}, burst={self.burst:g})"
