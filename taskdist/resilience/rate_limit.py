"""Rate limits by GCRA: one bucket, several limits at once, and one bucket per key.

- :class:`RateLimiter`: ``rate`` units per ``per`` seconds with bursts of
  ``burst`` units; O(1) and timer-free.
- :class:`MultiLimiter`: several named limits acquired all or nothing
  (100 requests/min *and* 40k tokens/min); a refusal changes no bucket.
- :class:`KeyedRateLimiter`: one bucket per key (tenant, user, API key) with
  memory bounded by the keys active in the last ``burst * per / rate`` seconds,
  and optionally by an LRU cap.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from taskdist._snapshot import check_header, decode_key, encode_key, header, refuse
from taskdist._validate import check_int, check_number, shown
from taskdist.clock import Clock, check_clock
from taskdist.errors import InvalidArgumentError, InvalidTypeError, UnsatisfiableDemandError
from taskdist.resilience._ranges import LARGEST_BURST

__all__ = ["KeyedRateLimiter", "MultiLimiter", "RateLimiter"]

# Two times closer than this fraction of their magnitude are one time: a
# schedule ``t0 + k * per / rate`` computed by the caller and the limiter's own
# ``anchor + k * (per / rate)`` may differ by a few units in the last place,
# and a caller exactly on schedule must not be refused for it. 2**-50 is four
# ulps. Where the clock's magnitude makes four ulps a sizeable part of one
# unit's interval (1e9 units/s at t = 1e6 s), the slack is capped at
# ``_MAX_EARLY`` of an interval instead, so a whole unit is never admitted early.
_ROUNDING = 2.0**-50
_MAX_EARLY = 2.0**-10
_PLAIN_NUMBERS = (int, float)
# A bucket busy for this many units re-anchors its schedule (one rounding of the
# anchor), so the unit count stays far below 2**53, where adding a unit is lost.
_REBASE_AT = 2.0**44


class RateLimiter:
    """Admit at most ``rate`` units per ``per`` seconds, with bursts of ``burst`` units.

    Token-bucket semantics computed by GCRA (the generic cell rate algorithm):
    each unit costs ``interval = per / rate`` seconds of a *theoretical arrival
    time* (TAT) that says when the bucket would be full again, so there are no
    timers and no refill loop. A request of ``amount`` units is admitted when
    ``TAT + amount * interval - burst * interval <= now``.

    **Guarantees.**

    - From idle exactly ``burst`` units pass at once, not ``burst + 1``
      (default ``burst = max(rate, 1)``: ``rate=10, per=60`` lets 10 through
      at once, then one every 6 s).
    - Over any window ``[t1, t2]`` the units admitted are at most
      ``rate * (t2 - t1) / per + burst``.
    - A caller steady at the rate is never refused: one that comes back at
      :meth:`ready_at` (or after :meth:`retry_after`), or on the schedule
      ``t0 + k * amount * per / rate`` from an idle start at ``t0``. The TAT is
      kept as ``anchor + units * interval`` (one rounding, no drift however
      long the bucket stays busy) and times within a few float ulps of each
      other count as equal (within ``2**-50`` of their magnitude, and never
      more than ``2**-10`` of one unit's interval: at most that fraction of
      a unit early, never a whole one, as long as an interval is longer than
      the float spacing of the clock's times).
    - A refused request changes nothing.

    Amounts are weights (tokens, bytes, cost), not only requests: any finite
    ``0 < amount <= burst``. A larger amount could never pass and raises
    :class:`~taskdist.errors.UnsatisfiableDemandError` (an
    ``InvalidArgumentError``) instead of being refused forever.

    **Accepted ranges.** ``rate`` and ``per`` any finite number > 0 whose
    ratio ``per / rate`` is a positive finite interval (1e-300 units per
    second and 1e300 both work); ``1 <= burst <= 2**40`` (about 1.1e12 units,
    so unit counts stay exact in a float: the default burst, the rate, must
    be given explicitly above that). A bucket busy for more than 2**44 units
    in a row re-anchors its schedule, one rounding of a time each time.

    **Threads.** Not thread-safe: a host with threads drives it through
    ``taskdist.threaded.ThreadSafeDistributor`` or holds its own lock around
    every call.

    Every operation is O(1).

    >>> from taskdist import ManualClock
    >>> clock = ManualClock()
    >>> limiter = RateLimiter(rate=2, per=1.0, burst=2, clock=clock)
    >>> limiter.try_acquire(), limiter.try_acquire(), limiter.try_acquire()
    (True, True, False)
    >>> limiter.retry_after()
    0.5
    >>> clock.set(limiter.ready_at())
    0.5
    >>> limiter.try_acquire()
    True
    """

    __slots__ = ("_anchor", "_burst", "_clock", "_count", "_interval", "_now", "_per", "_rate")

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
            burst: units that may pass at once from idle (1 to 2**40; default
                ``max(rate, 1)``).
            clock: where time comes from (default: :class:`MonotonicClock`).

        Raises:
            InvalidArgumentError: a value NaN, infinite, <= 0, ``burst`` outside
                [1, 2**40], or ``per / rate`` not a positive finite interval.
            InvalidTypeError: a value not a number, or ``clock`` without ``now()``.
        """
        rate = check_number(rate, "rate", positive=True)
        per = check_number(per, "per", positive=True)
        defaulted = burst is None
        burst = max(rate, 1.0) if burst is None else check_number(burst, "burst", minimum=1.0)
        if burst > LARGEST_BURST:
            raise InvalidArgumentError(
                f"burst must be at most 2**40 (about 1.1e12) units so that unit counts stay "
                f"exact, got {burst:g}"
                + (" (the rate: give a burst, or count in larger units)" if defaulted else "")
            )
        interval = per / rate
        if not 0.0 < interval < math.inf or not math.isfinite(burst * interval):
            raise InvalidArgumentError(
                f"per / rate must be a positive finite interval with burst * interval finite, "
                f"got rate={rate!r}, per={per!r}, burst={burst!r}"
            )
        self._clock = check_clock(clock)
        self._now = self._clock.now
        self._rate = rate
        self._per = per
        self._burst = burst
        self._interval = interval
        # TAT = anchor + count * interval. Idle (TAT < now) restarts the
        # schedule at now, so the TAT is always one multiply and one add away
        # from exact, never a long sum of roundings.
        self._anchor = -math.inf
        self._count = 0.0

    # -- configuration ----------------------------------------------------

    @property
    def rate(self) -> float:
        """Units admitted per ``per`` seconds."""
        return self._rate

    @property
    def per(self) -> float:
        """The period in seconds."""
        return self._per

    @property
    def burst(self) -> float:
        """Units that may pass at once from idle."""
        return self._burst

    @property
    def interval(self) -> float:
        """Seconds each unit costs: ``per / rate``."""
        return self._interval

    @property
    def clock(self) -> Clock:
        """The clock this limiter reads."""
        return self._clock

    # -- acquiring --------------------------------------------------------

    def try_acquire(self, amount: float = 1) -> bool:
        """Take ``amount`` units if they are available now; all or nothing. O(1).

        Returns ``False`` (and changes nothing) when they are not.

        Raises:
            UnsatisfiableDemandError: ``amount`` is more than ``burst``.
            InvalidArgumentError: ``amount`` <= 0, NaN or infinite.
            InvalidTypeError: ``amount`` is not a number.
        """
        if amount.__class__ not in _PLAIN_NUMBERS or not 0 < amount <= self._burst:
            amount = self._check_amount(amount)
        # The body of _plan, inlined: this is the hot path.
        now = self._now()
        anchor = self._anchor
        count = self._count
        interval = self._interval
        if anchor + count * interval < now:
            anchor = now
            count = 0.0
        count += amount
        ready = anchor + (count - self._burst) * interval
        if ready > now and not self._near(ready, now, anchor, count):
            return False
        self._anchor = anchor
        self._count = count
        if count > _REBASE_AT:
            self._rebase()
        return True

    def can_acquire(self, amount: float = 1) -> bool:
        """Whether ``try_acquire(amount)`` would succeed now, without taking anything. O(1)."""
        amount = self._check_amount(amount)
        now = self._now()
        return self._plan(amount, now)[2] <= now

    def refund(self, amount: float = 1) -> None:
        """Give back ``amount`` units taken but not used (e.g. an estimate of LLM tokens
        that came in lower, or an acquisition rolled back). O(1).

        The bucket never holds more than ``burst``: refunding to an idle
        bucket changes nothing.

        Raises:
            InvalidArgumentError: ``amount`` <= 0, NaN or infinite.
        """
        amount = check_number(amount, "amount", positive=True)
        now = self._now()
        anchor, count = self._schedule(now)
        if count:
            self._anchor = anchor
            self._count = count - amount

    # -- looking ahead ----------------------------------------------------

    def ready_at(self, amount: float = 1) -> float:
        """The clock time from which ``try_acquire(amount)`` succeeds: ``now`` if it
        would now, else the exact time to come back at. O(1).

        Setting a :class:`~taskdist.clock.ManualClock` to this value and
        acquiring never fails (unless someone else acquired in between).
        """
        amount = self._check_amount(amount)
        now = self._now()
        return max(self._plan(amount, now)[2], now)

    def retry_after(self, amount: float = 1) -> float:
        """Seconds until ``amount`` units could be taken (0 if now): ``ready_at - now``. O(1)."""
        amount = self._check_amount(amount)
        now = self._now()
        return max(self._plan(amount, now)[2], now) - now

    def next_wakeup(self) -> float | None:
        """When one more unit becomes available, or ``None`` if one is available now. O(1)."""
        now = self._now()
        ready = self._plan(1.0, now)[2]
        return ready if ready > now else None

    def available(self) -> float:
        """Units that could be taken right now (fractional, 0..burst). O(1)."""
        now = self._now()
        anchor, count = self._schedule(now)
        backlog = (anchor - now) / self._interval + count
        return min(self._burst, max(0.0, self._burst - backlog))

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self._rate:g}, per={self._per:g}, burst={self._burst:g})"

    # -- internals --------------------------------------------------------

    def _check_amount(self, amount: object) -> float:
        if amount.__class__ in _PLAIN_NUMBERS and 0 < amount <= self._burst:
            return amount  # a valid int or float: the common case
        value = check_number(amount, "amount", positive=True)
        if value > self._burst:
            raise UnsatisfiableDemandError(
                f"amount must be <= burst ({self._burst:g}) or it could never pass, got {amount!r}"
            )
        return value

    def _schedule(self, now: float) -> tuple[float, float]:
        """``(anchor, count)`` as of ``now``: an idle bucket restarts at ``(now, 0)``."""
        anchor = self._anchor
        count = self._count
        if anchor + count * self._interval < now:
            return now, 0.0
        return anchor, count

    def _plan(self, amount: float, now: float) -> tuple[float, float, float]:
        """Taking ``amount`` at ``now``: the ``(anchor, count)`` it would leave and the
        time it passes (``now`` if only float rounding makes it later).

        ``try_acquire`` inlines this: it is the hot path.
        """
        anchor, count = self._schedule(now)
        count += amount
        ready = anchor + (count - self._burst) * self._interval
        if ready > now and self._near(ready, now, anchor, count):
            ready = now
        return anchor, count, ready

    def _near(self, ready: float, now: float, anchor: float, count: float) -> bool:
        """Whether ``ready`` is later than ``now`` only by float rounding."""
        interval = self._interval
        scale = abs(anchor) + abs(now) + (abs(count) + self._burst) * interval
        return ready - now <= min(scale * _ROUNDING, interval * _MAX_EARLY)

    def _rebase(self) -> None:
        """Move the anchor up by the whole units counted, keeping the TAT (one rounding)."""
        whole = math.floor(self._count)
        self._anchor += whole * self._interval
        self._count -= whole  # exact: whole is an integer no larger than the count

    def _tat(self) -> float:
        """When the bucket is full again (the theoretical arrival time)."""
        return self._anchor + self._count * self._interval

    def _fresh(self) -> RateLimiter:
        """An idle limiter with this one's (already validated) settings and clock."""
        fresh = RateLimiter.__new__(RateLimiter)
        fresh._clock = self._clock
        fresh._now = self._now
        fresh._rate = self._rate
        fresh._per = self._per
        fresh._burst = self._burst
        fresh._interval = self._interval
        fresh._anchor = -math.inf
        fresh._count = 0.0
        return fresh

    # -- persistence ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Its schedule (the GCRA theoretical arrival time) as plain data. O(1).

        :meth:`load_snapshot` on a new limiter configured alike takes it back;
        see ``docs/persistence.md``.
        """
        anchor = None if self._anchor == -math.inf else self._anchor
        return {
            **header("RateLimiter"),
            "rate": self._rate,
            "per": self._per,
            "burst": self._burst,
            "anchor": anchor,
            "count": self._count,
        }

    def load_snapshot(self, data: object) -> None:
        """Take on the schedule :meth:`snapshot` wrote (same rate, per and burst). O(1).

        Raises:
            SnapshotError: not such a snapshot, or another configuration (nothing changes).
        """
        self._prepare_snapshot(data, "limiter")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "RateLimiter", where)
        for name, mine in (("rate", self._rate), ("per", self._per), ("burst", self._burst)):
            fields.same(name, mine, "limiter")
        anchor = fields.opt_number("anchor")
        count = fields.number("count")
        fields.done()

        def load() -> None:
            self._anchor = -math.inf if anchor is None else anchor
            self._count = count

        return load


class MultiLimiter:
    """Several named limits acquired all or nothing.

    ``MultiLimiter({"requests": RateLimiter(100, per=60), "tokens":
    RateLimiter(40_000, per=60)})`` admits a call only if *every* limit it
    draws from admits it; a refusal changes no bucket (each limit is checked
    before any is taken). Amounts are a mapping of limit name to amount (a
    name left out, or 0, draws nothing from that limit), or one number drawn
    from every limit (several windows on one unit: 10/s *and* 100/min).

    :meth:`retry_after` / :meth:`ready_at` of a combination are the latest of
    its limits'. Each limit keeps its own clock. Not thread-safe: a host with
    threads drives it through ``taskdist.threaded.ThreadSafeDistributor`` or
    holds its own lock. Every operation is O(k) for k limits.

    >>> from taskdist import ManualClock
    >>> clock = ManualClock()
    >>> limits = MultiLimiter({
    ...     "requests": RateLimiter(100, per=60.0, burst=10, clock=clock),
    ...     "tokens": RateLimiter(40_000, per=60.0, clock=clock),
    ... })
    >>> limits.try_acquire({"requests": 1, "tokens": 30_000})
    True
    >>> limits.try_acquire({"requests": 1, "tokens": 30_000})   # tokens refuse: nothing taken
    False
    >>> limits.available()["requests"]
    9.0
    >>> limits.retry_after({"requests": 1, "tokens": 30_000})
    30.0
    """

    __slots__ = ("_limiters", "_limits", "_smallest_burst")

    def __init__(self, limits: Mapping[str, RateLimiter]) -> None:
        """
        Args:
            limits: limit name (non-empty str) -> :class:`RateLimiter`; at least
                one, each limiter object at most once.

        Raises:
            InvalidTypeError: not a mapping of str to RateLimiter.
            InvalidArgumentError: empty, an empty name, or one limiter under two names.
        """
        if not isinstance(limits, Mapping):
            raise InvalidTypeError(
                f"limits must be a mapping of name to RateLimiter, got {limits!r}"
            )
        if not limits:
            raise InvalidArgumentError("limits must name at least one RateLimiter, got {}")
        seen: dict[int, str] = {}
        for name, limiter in limits.items():
            if not isinstance(name, str):
                raise InvalidTypeError(f"limits keys must be limit names (str), got {name!r}")
            if not name:
                raise InvalidArgumentError("limits keys must be non-empty names, got ''")
            if not isinstance(limiter, RateLimiter):
                raise InvalidTypeError(
                    f"limits[{name!r}] must be a RateLimiter, got {type(limiter).__name__}"
                )
            if id(limiter) in seen:
                raise InvalidArgumentError(
                    f"limits[{name!r}] is the same RateLimiter as limits[{seen[id(limiter)]!r}]; "
                    f"one bucket would be charged twice"
                )
            seen[id(limiter)] = name
        self._limits = dict(limits)
        self._limiters = tuple(self._limits.values())
        self._smallest_burst = min(limiter.burst for limiter in self._limiters)

    @property
    def limits(self) -> Mapping[str, RateLimiter]:
        """The limits by name (read-only)."""
        return MappingProxyType(self._limits)

    def try_acquire(self, amounts: float | Mapping[str, float] = 1) -> bool:
        """Take every amount, or nothing if any limit refuses. O(k).

        Raises:
            InvalidArgumentError: an unknown limit name, or an amount < 0, NaN,
                infinite or above its limit's ``burst`` (nothing taken).
            InvalidTypeError: an amount that is not a number.
        """
        if amounts.__class__ in _PLAIN_NUMBERS and 0 < amounts <= self._smallest_burst:
            # The common case, one valid number drawn from every limit.
            draws = [(limiter, amounts) for limiter in self._limiters]
        else:
            draws = self._draws(amounts)
        plans = []
        for limiter, amount in draws:
            now = limiter._now()
            anchor, count, ready = limiter._plan(amount, now)
            if ready > now:
                return False
            plans.append((limiter, anchor, count))
        # Every limit admits: commit what each planned (nothing ran in between).
        for limiter, anchor, count in plans:
            limiter._anchor = anchor
            limiter._count = count
            if count > _REBASE_AT:
                limiter._rebase()
        return True

    def can_acquire(self, amounts: float | Mapping[str, float] = 1) -> bool:
        """Whether :meth:`try_acquire` would succeed now, without taking anything. O(k)."""
        return all(limiter.can_acquire(amount) for limiter, amount in self._draws(amounts))

    def refund(self, amounts: float | Mapping[str, float] = 1) -> None:
        """Give back amounts taken but not used (see :meth:`RateLimiter.refund`). O(k)."""
        for limiter, amount in self._draws(amounts, refund=True):
            limiter.refund(amount)

    def ready_at(self, amounts: float | Mapping[str, float] = 1) -> float:
        """The clock time from which :meth:`try_acquire` succeeds: the latest of the limits'.

        O(k). With no amount drawn it is the first limit's ``now``.
        """
        draws = self._draws(amounts)
        if not draws:
            return next(iter(self._limits.values())).clock.now()
        return max(limiter.ready_at(amount) for limiter, amount in draws)

    def retry_after(self, amounts: float | Mapping[str, float] = 1) -> float:
        """Seconds until :meth:`try_acquire` could succeed: the longest of the limits'. O(k)."""
        return max(
            (limiter.retry_after(amount) for limiter, amount in self._draws(amounts)),
            default=0.0,
        )

    def next_wakeup(self) -> float | None:
        """When every limit has one more unit, or ``None`` if every one has now. O(k)."""
        times = [t for limiter in self._limits.values() if (t := limiter.next_wakeup()) is not None]
        return max(times) if times else None

    def available(self) -> dict[str, float]:
        """Units each limit could give right now. O(k)."""
        return {name: limiter.available() for name, limiter in self._limits.items()}

    def __repr__(self) -> str:
        inner = ", ".join(f"{name!r}: {limiter!r}" for name, limiter in self._limits.items())
        return f"MultiLimiter({{{inner}}})"

    def _draws(self, amounts: object, *, refund: bool = False) -> list[tuple[RateLimiter, float]]:
        """Validate ``amounts`` fully, before anything is taken: ``[(limiter, amount)]``."""
        limits = self._limits
        if amounts.__class__ in _PLAIN_NUMBERS and not refund:
            return [(limiter, limiter._check_amount(amounts)) for limiter in limits.values()]
        if isinstance(amounts, Mapping):
            draws = []
            for name, amount in amounts.items():
                limiter = limits.get(name) if isinstance(name, str) else None
                if limiter is None:
                    raise InvalidArgumentError(
                        f"amounts names an unknown limit {name!r}; the limits are "
                        f"{', '.join(repr(n) for n in limits)}"
                    )
                value = check_number(amount, f"amounts[{name!r}]", minimum=0.0)
                if value:
                    draws.append((limiter, value if refund else limiter._check_amount(value)))
            return draws
        if refund:
            value = check_number(amounts, "amounts", positive=True)
            return [(limiter, value) for limiter in limits.values()]
        return [(limiter, limiter._check_amount(amounts)) for limiter in limits.values()]


class KeyedRateLimiter:
    """One :class:`RateLimiter` bucket per key (tenant, user, API key), memory bounded.

    Every key gets its own bucket of ``rate`` per ``per`` with ``burst``; a
    key seen for the first time starts full.

    **Memory.** A bucket untouched for ``burst * per / rate`` seconds is full
    again, indistinguishable from a fresh one, so forgetting it changes no
    decision. Buckets are kept in order of their last successful acquisition;
    each time a new key is added, full buckets at the old end are dropped.
    So the limiter holds at most the keys that acquired in the last
    ``burst * per / rate`` seconds (plus those since the last new key), and
    never more than ``max_keys`` when that is set: past it the least recently
    used bucket is dropped even if not full, and that key may then get up to
    ``burst`` extra units. :attr:`evicted_active` counts those; a host that
    sees it grow should raise ``max_keys``.

    **Keys** are any hashable value but NaN, or a tuple or frozenset holding
    one: NaN is not equal to itself, so each NaN would get a bucket of its
    own and escape the limit (:class:`~taskdist.errors.InvalidArgumentError`);
    an unhashable key is an :class:`~taskdist.errors.InvalidTypeError`.
    Not thread-safe: a host with threads drives it through
    ``taskdist.threaded.ThreadSafeDistributor`` or holds its own lock.

    ``try_acquire`` is O(1) amortised (each bucket is dropped at most once
    per creation); every other operation is O(1) (O(size of the key) for a
    key not held, which is checked for NaN), but :meth:`snapshot` and
    :meth:`load_snapshot`, O(k) for the k buckets held.

    >>> from taskdist import ManualClock
    >>> clock = ManualClock()
    >>> per_tenant = KeyedRateLimiter(rate=2, per=1.0, clock=clock)
    >>> [per_tenant.try_acquire("acme") for _ in range(3)]
    [True, True, False]
    >>> per_tenant.try_acquire("globex")
    True
    >>> clock.advance(1.0)
    1.0
    >>> per_tenant.try_acquire("initech"), len(per_tenant)   # acme and globex were full again
    (True, 1)
    """

    __slots__ = ("_buckets", "_evicted_active", "_evicted_idle", "_max_keys", "_template")

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        *,
        clock: Clock | None = None,
        max_keys: int | None = None,
    ) -> None:
        """
        Args:
            rate, per, burst, clock: as for :class:`RateLimiter`, for every key.
            max_keys: most buckets held at once (>= 1), or ``None`` for no cap
                beyond the idle bound above.

        Raises:
            InvalidArgumentError, InvalidTypeError: as for :class:`RateLimiter`,
                or ``max_keys`` < 1.
        """
        # The template is never acquired from: it is the answer for unknown keys.
        self._template = RateLimiter(rate, per, burst, clock=clock)
        self._max_keys = None if max_keys is None else check_int(max_keys, "max_keys", minimum=1)
        self._buckets: OrderedDict[Hashable, RateLimiter] = OrderedDict()
        self._evicted_idle = 0
        self._evicted_active = 0

    @property
    def rate(self) -> float:
        """Units admitted per ``per`` seconds, per key."""
        return self._template.rate

    @property
    def per(self) -> float:
        """The period in seconds."""
        return self._template.per

    @property
    def burst(self) -> float:
        """Units each key may take at once from idle."""
        return self._template.burst

    @property
    def clock(self) -> Clock:
        """The clock every bucket reads."""
        return self._template.clock

    @property
    def max_keys(self) -> int | None:
        """The cap on buckets held, or ``None``."""
        return self._max_keys

    @property
    def evicted_idle(self) -> int:
        """Buckets dropped because they were full again (harmless)."""
        return self._evicted_idle

    @property
    def evicted_active(self) -> int:
        """Buckets dropped by the ``max_keys`` cap before they were full (each may
        have let its key take up to ``burst`` extra units)."""
        return self._evicted_active

    def try_acquire(self, key: Hashable, amount: float = 1) -> bool:
        """Take ``amount`` units from ``key``'s bucket if available; all or nothing.

        O(1) amortised.

        Raises:
            InvalidTypeError: ``key`` unhashable, or ``amount`` not a number.
            InvalidArgumentError: ``key`` NaN, ``amount`` <= 0, NaN or infinite.
            UnsatisfiableDemandError: ``amount`` above ``burst``.
        """
        bucket = self._get(key)
        if bucket is not None:
            if bucket.try_acquire(amount):
                self._buckets.move_to_end(key)
                return True
            return False
        self.check_key(key)  # only a key not held can be NaN: none is ever stored
        bucket = self._template._fresh()
        bucket.try_acquire(amount)  # a fresh bucket admits any valid amount; raises if invalid
        self._drop_idle(bucket._now())
        self._buckets[key] = bucket
        if self._max_keys is not None and len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
            self._evicted_active += 1
        return True

    def can_acquire(self, key: Hashable, amount: float = 1) -> bool:
        """Whether ``try_acquire(key, amount)`` would succeed now, taking nothing. O(1)."""
        return self._bucket_or_template(key).can_acquire(amount)

    def refund(self, key: Hashable, amount: float = 1) -> None:
        """Give back units ``key`` took but did not use (no-op for a key not held). O(1)."""
        bucket = self._get(key)
        if bucket is None:
            self.check_key(key)
            check_number(amount, "amount", positive=True)
            return
        bucket.refund(amount)

    def check_key(self, key: object) -> None:
        """Return if ``key`` can have a bucket; changes nothing. O(size of the key).

        Raises:
            InvalidTypeError: ``key`` is unhashable.
            InvalidArgumentError: ``key`` is NaN, or a tuple or frozenset holding one.
        """
        self._get(key)
        if _holds_nan(key):
            raise InvalidArgumentError(
                f"key must not be NaN or hold one: NaN is not equal to itself, so each would "
                f"get a bucket of its own and escape the limit; got {key!r}"
            )

    def ready_at(self, key: Hashable, amount: float = 1) -> float:
        """The clock time from which ``try_acquire(key, amount)`` succeeds. O(1)."""
        return self._bucket_or_template(key).ready_at(amount)

    def retry_after(self, key: Hashable, amount: float = 1) -> float:
        """Seconds until ``key`` could take ``amount`` units (0 if now). O(1)."""
        return self._bucket_or_template(key).retry_after(amount)

    def next_wakeup(self, key: Hashable) -> float | None:
        """When ``key`` has one more unit, or ``None`` if it has one now. O(1)."""
        return self._bucket_or_template(key).next_wakeup()

    def available(self, key: Hashable) -> float:
        """Units ``key`` could take right now. O(1)."""
        return self._bucket_or_template(key).available()

    def __len__(self) -> int:
        """Buckets held now."""
        return len(self._buckets)

    def __iter__(self) -> Iterator[Hashable]:
        """The keys holding a bucket, least recently acquired first (a snapshot). O(n)."""
        return iter(list(self._buckets))

    def __contains__(self, key: object) -> bool:
        """Whether a bucket is held for ``key`` (a key not held is a full bucket)."""
        try:
            return key in self._buckets
        except TypeError:
            return False

    def __repr__(self) -> str:
        t = self._template
        return (
            f"KeyedRateLimiter(rate={t.rate:g}, per={t.per:g}, burst={t.burst:g}, "
            f"keys={len(self._buckets)}, max_keys={self._max_keys!r})"
        )

    # -- persistence ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every bucket it holds, least recently acquired first, and its eviction
        counters, as plain data. O(k) for k buckets held.

        A bucket the limiter still holds is carried even when it is full again:
        its place in the order decides what the next new key drops (and the
        ``max_keys`` cap evicts); a key it forgot is full and is not carried.
        :meth:`load_snapshot` on a new limiter configured alike takes it back;
        see ``docs/persistence.md``.

        Raises:
            SnapshotError: a key that is not plain data (see ``Task``'s ids).
        """
        t = self._template
        return {
            **header("KeyedRateLimiter"),
            "rate": t.rate,
            "per": t.per,
            "burst": t.burst,
            "max_keys": self._max_keys,
            "buckets": [
                [encode_key(key, "a rate limit key"), bucket._anchor, bucket._count]
                for key, bucket in self._buckets.items()
            ],
            "evicted": [self._evicted_idle, self._evicted_active],
        }

    def load_snapshot(self, data: object) -> None:
        """Take on the buckets and counters :meth:`snapshot` wrote (same rate, per,
        burst and ``max_keys``), in place of its own. O(k).

        Raises:
            SnapshotError: not such a snapshot, or another configuration (nothing changes).
        """
        self._prepare_snapshot(data, "limiter")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "KeyedRateLimiter", where)
        t = self._template
        for name, mine in (("rate", t.rate), ("per", t.per), ("burst", t.burst)):
            fields.same(name, mine, "limiter")
        fields.same("max_keys", self._max_keys, "limiter")
        buckets: OrderedDict[Hashable, RateLimiter] = OrderedDict()
        for i, row in enumerate(fields.items("buckets")):
            at = f"{where}.buckets[{i}]"
            if type(row) is not list or len(row) != 3:
                refuse(at, f"must be a [key, anchor, count] triple, got {shown(row)}")
            key = decode_key(row[0], f"{at}[0]")
            if _holds_nan(key) or key in buckets:
                refuse(f"{at}[0]", f"is {'a NaN key' if _holds_nan(key) else 'a key twice'}")
            bucket = t._fresh()
            bucket._anchor = _finite(row[1], f"{at}[1] (anchor)")
            bucket._count = _finite(row[2], f"{at}[2] (count)")
            buckets[key] = bucket
        if self._max_keys is not None and len(buckets) > self._max_keys:
            refuse(
                f"{where}.buckets", f"holds {len(buckets)} keys, above max_keys {self._max_keys}"
            )
        idle, active = fields.counts("evicted", 2)
        fields.done()

        def load() -> None:
            self._buckets = buckets
            self._evicted_idle, self._evicted_active = idle, active

        return load

    def _get(self, key: object) -> RateLimiter | None:
        try:
            return self._buckets.get(key)
        except TypeError:
            raise InvalidTypeError(
                f"key must be hashable (str, int, tuple, ...), got {type(key).__name__} {key!r}"
            ) from None

    def _bucket_or_template(self, key: Hashable) -> RateLimiter:
        bucket = self._get(key)
        if bucket is None:
            self.check_key(key)
            return self._template
        return bucket

    def _drop_idle(self, now: float) -> None:
        """Drop full buckets from the least recently acquired end."""
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if oldest._tat() > now:
                return
            buckets.popitem(last=False)
            self._evicted_idle += 1


def _finite(value: object, where: str) -> float:
    """``value`` read from a snapshot as a float: a finite int or float, else refused."""
    number = math.nan
    if type(value) in _PLAIN_NUMBERS:
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:  # an int too large for a float
            number = math.inf
    if not math.isfinite(number):
        refuse(where, f"must be a finite number, got {shown(value)}")
    return number


def _holds_nan(key: object) -> bool:
    """Whether ``key`` is NaN (of any numeric type), or a tuple or frozenset holding one."""
    if key.__class__ is str or key.__class__ is int:
        return False
    if isinstance(key, (tuple, frozenset)):
        return any(_holds_nan(part) for part in key)
    try:
        return bool(key != key)  # NaN is the one value not equal to itself
    except Exception:  # a key whose comparison raises is not NaN
        return False
