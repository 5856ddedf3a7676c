"""RetryPolicy: when to try again and how long to wait, as small composable strategies.

A policy answers two questions and never sleeps: :meth:`RetryPolicy.should_retry`
(is another attempt allowed?) and :meth:`RetryPolicy.delay` (how long to wait
before it?). The host does the waiting, on its own loop.

The waits are capped exponential backoff with the jitters of the AWS
Architecture Blog's "Exponential Backoff And Jitter" (none, full, equal,
decorrelated). In tenacity's spirit, a policy is built from small strategy
objects that compose: stop strategies with ``|`` (stop when either says so)
and ``&`` (when both do), wait strategies with ``+`` (add the waits).
"""

from __future__ import annotations

import abc
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, cast

import attrs

from taskdist._snapshot import check_header, decode_rng, encode_rng, header
from taskdist._validate import check_choice, check_int, check_number
from taskdist.errors import InvalidArgumentError, InvalidTypeError
from taskdist.resilience._ranges import check_duration

__all__ = [
    "Jitter",
    "RetryPolicy",
    "StopAfterAttempt",
    "StopAfterDelay",
    "StopAll",
    "StopAny",
    "StopNever",
    "StopStrategy",
    "WaitDecorrelatedJitter",
    "WaitEqualJitter",
    "WaitExponential",
    "WaitFixed",
    "WaitFullJitter",
    "WaitRandom",
    "WaitStrategy",
    "WaitSum",
]

Jitter = Literal["none", "full", "equal", "decorrelated"]
"""The ``jitter=`` of :class:`RetryPolicy`: how a backoff delay is randomised below its ceiling."""
_JITTERS: tuple[Jitter, ...] = ("none", "full", "equal", "decorrelated")


# attrs converters: one per field, so each message names its field.
def _max_attempts(value: object) -> int:
    return check_int(value, "max_attempts", minimum=1)


def _max_delay(value: object) -> float:
    return check_number(value, "max_delay", minimum=0.0)


def _delay(value: object) -> float:
    return check_duration(value, "delay")


def _low(value: object) -> float:
    return check_duration(value, "low")


def _high(value: object) -> float:
    return check_duration(value, "high")


def _base(value: object) -> float:
    return check_duration(value, "base", positive=True)


def _multiplier(value: object) -> float:
    return check_number(value, "multiplier", minimum=1.0)


def _cap(value: object) -> float:
    return check_duration(value, "cap", positive=True)


# -- stop strategies ------------------------------------------------------------------


class StopStrategy(abc.ABC):
    """Decides when to give up: ``stop(attempt, elapsed) -> True`` means no more attempts.

    ``attempt`` is the number of attempts made so far (1 after the first
    failure); ``elapsed`` the seconds since the first one started (as the
    host measures it). Combine with ``a | b`` (stop when either says so) and
    ``a & b`` (stop when both do). Strategies are immutable values: safe to
    share between threads.
    """

    __slots__ = ()

    @abc.abstractmethod
    def __call__(self, attempt: int, elapsed: float) -> bool:
        """True when no further attempt should be made."""

    def __or__(self, other: StopStrategy) -> StopAny:
        if not isinstance(other, StopStrategy):
            return NotImplemented
        return StopAny((self, other))

    def __and__(self, other: StopStrategy) -> StopAll:
        if not isinstance(other, StopStrategy):
            return NotImplemented
        return StopAll((self, other))


@attrs.frozen
class StopAfterAttempt(StopStrategy):
    """Stop once ``max_attempts`` attempts have been made (1 = never retry). O(1).

    >>> StopAfterAttempt(3)(2, 0.0), StopAfterAttempt(3)(3, 0.0)
    (False, True)
    """

    max_attempts: int = attrs.field(converter=_max_attempts)

    def __call__(self, attempt: int, elapsed: float) -> bool:
        return attempt >= self.max_attempts


@attrs.frozen
class StopAfterDelay(StopStrategy):
    """Stop once ``elapsed >= max_delay`` seconds. O(1)."""

    max_delay: float = attrs.field(converter=_max_delay)

    def __call__(self, attempt: int, elapsed: float) -> bool:
        return elapsed >= self.max_delay


@attrs.frozen
class StopNever(StopStrategy):
    """Never stop (combine it with a ``retryable`` predicate, or stop it from outside)."""

    def __call__(self, attempt: int, elapsed: float) -> bool:
        return False


def _parts(value: object, kind: type) -> tuple[object, ...]:
    """A non-empty tuple of strategies of ``kind``, from any iterable of them."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidTypeError(f"strategies must be an iterable of {kind.__name__}, got {value!r}")
    parts = tuple(value)
    if not parts:
        raise InvalidArgumentError("strategies must not be empty")
    for part in parts:
        if not isinstance(part, kind):
            raise InvalidTypeError(f"expected {kind.__name__} objects, got {part!r}")
    return parts


def _stop_parts(value: object) -> tuple[StopStrategy, ...]:
    return cast(tuple[StopStrategy, ...], _parts(value, StopStrategy))


@attrs.frozen
class StopAny(StopStrategy):
    """Stop when any of ``strategies`` says so (what ``a | b`` builds). O(parts)."""

    strategies: tuple[StopStrategy, ...] = attrs.field(converter=_stop_parts)

    def __call__(self, attempt: int, elapsed: float) -> bool:
        return any(stop(attempt, elapsed) for stop in self.strategies)


@attrs.frozen
class StopAll(StopStrategy):
    """Stop when all of ``strategies`` say so (what ``a & b`` builds). O(parts)."""

    strategies: tuple[StopStrategy, ...] = attrs.field(converter=_stop_parts)

    def __call__(self, attempt: int, elapsed: float) -> bool:
        return all(stop(attempt, elapsed) for stop in self.strategies)


# -- wait strategies ------------------------------------------------------------------


class WaitStrategy(abc.ABC):
    """Decides how long to wait: ``wait(attempt, previous, rng) -> seconds >= 0``.

    ``attempt`` is the attempt that just failed (1-based); ``previous`` the
    delay used before it (``None`` before the first retry); ``rng`` the
    policy's random source. Combine with ``a + b`` (wait the sum).
    Strategies are immutable values (durations at most 1e9 seconds): safe to
    share between threads.
    """

    __slots__ = ()

    @abc.abstractmethod
    def __call__(self, attempt: int, previous: float | None, rng: random.Random) -> float:
        """Seconds to wait before the next attempt."""

    def __add__(self, other: WaitStrategy) -> WaitSum:
        if not isinstance(other, WaitStrategy):
            return NotImplemented
        return WaitSum((self, other))


@attrs.frozen
class WaitFixed(WaitStrategy):
    """Always wait ``delay`` seconds (>= 0). O(1)."""

    delay: float = attrs.field(converter=_delay)

    def __call__(self, attempt: int, previous: float | None, rng: random.Random) -> float:
        return self.delay


@attrs.frozen
class WaitRandom(WaitStrategy):
    """Wait a uniform random time in ``[low, high]``. O(1)."""

    low: float = attrs.field(converter=_low)
    high: float = attrs.field(converter=_high)

    def __attrs_post_init__(self) -> None:
        if self.high < self.low:
            raise InvalidArgumentError(f"high must be >= low ({self.low:g}), got {self.high:g}")

    def __call__(self, attempt: int, previous: float | None, rng: random.Random) -> float:
        return min(self.high, self.low + rng.random() * (self.high - self.low))


@attrs.frozen
class WaitExponential(WaitStrategy):
    """Capped exponential backoff, no jitter: ``min(cap, base * multiplier ** (attempt - 1))``.

    This *ceiling* is what the jittered strategies below draw under. O(1).

    >>> [WaitExponential(base=0.1, multiplier=2.0, cap=0.5).ceiling(n) for n in (1, 2, 3, 4)]
    [0.1, 0.2, 0.4, 0.5]
    """

    base: float = attrs.field(default=0.1, converter=_base)
    multiplier: float = attrs.field(default=2.0, converter=_multiplier)
    cap: float = attrs.field(default=30.0, converter=_cap)

    def __attrs_post_init__(self) -> None:
        if self.cap < self.base:
            raise InvalidArgumentError(f"cap must be >= base ({self.base:g}), got {self.cap:g}")

    def ceiling(self, attempt: int) -> float:
        """``min(cap, base * multiplier ** (attempt - 1))``, without overflow. O(1).

        Any attempt works, 10**6 or 10**400: a power too large for a float is
        above the cap.
        """
        if self.multiplier == 1.0:
            return self.base  # 1.0 ** n, even for an n too large to be a float
        try:
            return min(self.cap, self.base * self.multiplier ** (attempt - 1))
        except OverflowError:
            return self.cap

    def __call__(self, attempt: int, previous: float | None, rng: random.Random) -> float:
        return self.ceiling(attempt)


@attrs.frozen
class WaitFullJitter(WaitExponential):
    """AWS "full jitter": uniform in ``[0, ceiling(attempt)]``. O(1)."""

    def __call__(self, attempt: int, previous: float | None, rng: random.Random) -> float:
        return rng.random() * self.ceiling(attempt)


@attrs.frozen
class WaitEqualJitter(WaitExponential):
    """AWS "equal jitter": half the ceiling plus uniform in ``[0, ceiling / 2]``. O(1)."""

    def __call__(self, attempt: int, previous: float | None, rng: random.Random) -> float:
        half = self.ceiling(attempt) / 2.0
        return half + rng.random() * half


@attrs.frozen
class WaitDecorrelatedJitter(WaitStrategy):
    """AWS "decorrelated jitter": ``min(cap, uniform(base, previous * 3))``. O(1).

    Independent of ``attempt``: each wait grows from the previous one
    (``previous=None`` means ``base``, the blog's starting value). The result
    lies in ``[base, min(cap, max(base, 3 * previous))]``; a ``previous`` below
    ``base / 3``, which a chain started at ``base`` never produces, is read as
    ``base / 3`` so the range stays non-empty.
    """

    base: float = attrs.field(default=0.1, converter=_base)
    cap: float = attrs.field(default=30.0, converter=_cap)

    def __attrs_post_init__(self) -> None:
        if self.cap < self.base:
            raise InvalidArgumentError(f"cap must be >= base ({self.base:g}), got {self.cap:g}")

    def __call__(self, attempt: int, previous: float | None, rng: random.Random) -> float:
        base = self.base
        high = max(base, 3.0 * (base if previous is None else previous))
        # min(high, ...) guards the last ulp of base + r * (high - base).
        return min(self.cap, high, base + rng.random() * (high - base))


def _wait_parts(value: object) -> tuple[WaitStrategy, ...]:
    return cast(tuple[WaitStrategy, ...], _parts(value, WaitStrategy))


@attrs.frozen
class WaitSum(WaitStrategy):
    """Wait the sum of ``strategies`` (what ``a + b`` builds). O(parts).

    Each part sees the same ``attempt`` and ``previous`` (the previous total).
    """

    strategies: tuple[WaitStrategy, ...] = attrs.field(converter=_wait_parts)

    def __call__(self, attempt: int, previous: float | None, rng: random.Random) -> float:
        return sum(wait(attempt, previous, rng) for wait in self.strategies)


# -- the policy -----------------------------------------------------------------------


def _jittered(jitter: Jitter, base: float, multiplier: float, cap: float) -> WaitStrategy:
    if jitter == "none":
        return WaitExponential(base, multiplier, cap)
    if jitter == "full":
        return WaitFullJitter(base, multiplier, cap)
    if jitter == "equal":
        return WaitEqualJitter(base, multiplier, cap)
    return WaitDecorrelatedJitter(base, cap)


def _any_exception(error: BaseException) -> bool:
    return isinstance(error, Exception)


class RetryPolicy:
    """When to retry and how long to wait: capped exponential backoff with jitter.

    With ``ceiling(n) = min(cap, base * multiplier ** (n - 1))`` for the
    attempt ``n`` that just failed, :meth:`delay` returns (AWS Architecture
    Blog definitions):

    ==================  ===========================================  ==============================
    ``jitter``          delay                                        always within
    ==================  ===========================================  ==============================
    ``"none"``          ``ceiling(n)``                               exactly that
    ``"full"``          ``uniform(0, ceiling(n))``                   ``[0, ceiling(n)]``
    ``"equal"``         ``ceiling(n)/2 + uniform(0, ceiling(n)/2)``  ``[ceiling(n)/2, ceiling(n)]``
    ``"decorrelated"``  ``min(cap, uniform(base, 3 * previous))``    ``[base, min(cap, 3*prev)]``
    ==================  ===========================================  ==============================

    so no delay ever exceeds ``cap``. Decorrelated jitter ignores
    ``multiplier`` and ``n``: pass the previous delay back as ``previous``
    (``None`` for the first retry, read as ``base``).

    :meth:`should_retry` allows attempt ``n + 1`` while ``n < max_attempts``
    and the error is ``retryable`` (default: any ``Exception``; a
    ``BaseException`` such as cancellation is never retried).

    **Composition.** ``stop=`` replaces ``max_attempts`` and ``wait=``
    replaces ``base``/``multiplier``/``cap``/``jitter`` with any
    :class:`StopStrategy` / :class:`WaitStrategy` (``|``, ``&``, ``+``
    combine them); giving both a strategy and the settings it replaces is an
    error. Unset settings take the defaults ``max_attempts=5, base=0.1,
    multiplier=2.0, cap=30.0, jitter="full"``.

    Randomness comes only from ``rng`` (default: a new ``random.Random()``),
    so a seeded ``rng`` replays the same delays. Every method is O(1) for the
    built-in strategies (O(parts) for composites).

    **Accepted ranges.** Attempts and ``max_attempts`` are any int >= 1
    (``delay(10**6)`` is the cap, with no overflow); ``multiplier`` any finite
    number >= 1; ``base``, ``cap`` and every duration a strategy holds (or
    ``previous``) at most 1e9 seconds (about 31.7 years), so that no delay,
    nor a sum of them, is infinite; ``elapsed`` and ``StopAfterDelay``'s
    ``max_delay`` any finite number >= 0.

    **Threads.** Safe to share between threads: a policy holds nothing but its
    strategies (immutable) and its random source, whose draws are atomic.
    With several threads drawing, which delay goes to which thread depends on
    scheduling, so a seeded replay holds only for one thread.

    >>> policy = RetryPolicy(max_attempts=3, base=1.0, cap=10.0, jitter="none")
    >>> [policy.delay(n) for n in (1, 2, 3, 4, 5)]
    [1.0, 2.0, 4.0, 8.0, 10.0]
    >>> policy.should_retry(2, ValueError()), policy.should_retry(3, ValueError())
    (True, False)
    >>> composed = RetryPolicy(stop=StopAfterAttempt(10) | StopAfterDelay(60.0),
    ...                        wait=WaitFixed(1.0) + WaitRandom(0.0, 0.5))
    >>> 1.0 <= composed.delay(4) <= 1.5
    True
    """

    __slots__ = ("_retryable", "_rng", "_stop", "_wait")

    def __init__(
        self,
        *,
        max_attempts: int | None = None,
        base: float | None = None,
        multiplier: float | None = None,
        cap: float | None = None,
        jitter: Jitter | None = None,
        retryable: Callable[[BaseException], bool] | None = None,
        rng: random.Random | None = None,
        stop: StopStrategy | None = None,
        wait: WaitStrategy | None = None,
    ) -> None:
        """
        Args:
            max_attempts: attempts in all, the first included (>= 1; default 5).
            base: the first delay's ceiling, in seconds (0 < base <= 1e9; default 0.1).
            multiplier: growth of the ceiling per attempt (>= 1; default 2.0).
            cap: the longest delay (base <= cap <= 1e9; default 30.0).
            jitter: ``"none"``, ``"full"`` (default), ``"equal"`` or ``"decorrelated"``.
            retryable: predicate on the error; false means do not retry it.
            rng: the random source for jitter (default: ``random.Random()``).
            stop: a :class:`StopStrategy` instead of ``max_attempts``.
            wait: a :class:`WaitStrategy` instead of base/multiplier/cap/jitter.

        Raises:
            InvalidArgumentError: a value out of range, or a strategy given together with
                the settings it replaces.
            UnknownPolicyError: ``jitter`` is not one of the four names.
            InvalidTypeError: ``rng``, ``stop``, ``wait`` or ``retryable`` of the wrong kind.
        """
        if stop is None:
            stop = StopAfterAttempt(5 if max_attempts is None else max_attempts)
        elif not isinstance(stop, StopStrategy):
            raise InvalidTypeError(f"stop must be a StopStrategy, got {stop!r}")
        elif max_attempts is not None:
            raise InvalidArgumentError("give max_attempts or stop, not both (stop replaces it)")
        backoff = {"base": base, "multiplier": multiplier, "cap": cap, "jitter": jitter}
        if wait is None:
            wait = _jittered(
                check_choice("full" if jitter is None else jitter, "jitter", _JITTERS),
                0.1 if base is None else base,
                2.0 if multiplier is None else multiplier,
                30.0 if cap is None else cap,
            )
        elif not isinstance(wait, WaitStrategy):
            raise InvalidTypeError(f"wait must be a WaitStrategy, got {wait!r}")
        else:
            given = [name for name, value in backoff.items() if value is not None]
            if given:
                raise InvalidArgumentError(
                    f"give {', '.join(given)} or wait, not both (wait replaces them)"
                )
        if retryable is None:
            retryable = _any_exception
        elif not callable(retryable):
            raise InvalidTypeError(f"retryable must be callable, got {retryable!r}")
        if rng is None:
            rng = random.Random()
        elif not isinstance(rng, random.Random):
            raise InvalidTypeError(f"rng must be a random.Random, got {rng!r}")
        self._stop = stop
        self._wait = wait
        self._retryable = retryable
        self._rng = rng

    @property
    def stop(self) -> StopStrategy:
        """The stop strategy (``StopAfterAttempt(max_attempts)`` unless ``stop=`` was given)."""
        return self._stop

    @property
    def wait(self) -> WaitStrategy:
        """The wait strategy (built from the backoff settings unless ``wait=`` was given)."""
        return self._wait

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is of a kind this policy retries (its ``retryable``
        predicate), whatever the attempt count. O(1) plus the predicate.

        Raises:
            InvalidTypeError: ``error`` is not an exception.
        """
        if not isinstance(error, BaseException):
            raise InvalidTypeError(f"error must be an exception, got {error!r}")
        return bool(self._retryable(error))

    def delay(self, attempt: int, previous: float | None = None) -> float:
        """Seconds to wait after attempt ``attempt`` (1-based) failed, before the next. O(1).

        ``previous`` is the delay used before ``attempt`` (decorrelated jitter
        grows from it; the others ignore it).

        Raises:
            InvalidTypeError / InvalidArgumentError: ``attempt`` not an int >= 1,
                ``previous`` negative, NaN, infinite or above 1e9 seconds.
        """
        attempt = check_int(attempt, "attempt", minimum=1)
        if previous is not None:
            previous = check_duration(previous, "previous")
        return self._wait(attempt, previous, self._rng)

    def should_retry(
        self, attempt: int, error: BaseException | None = None, *, elapsed: float = 0.0
    ) -> bool:
        """Whether to make attempt ``attempt + 1`` after attempt ``attempt`` failed with ``error``.

        False when ``error`` is not retryable or the stop strategy says stop
        (``elapsed``: seconds since the first attempt started, for
        :class:`StopAfterDelay`). O(1) plus the predicate.

        Raises:
            InvalidTypeError / InvalidArgumentError: ``attempt`` not an int >= 1,
                ``elapsed`` negative or NaN, ``error`` not an exception.
        """
        attempt = check_int(attempt, "attempt", minimum=1)
        elapsed = check_number(elapsed, "elapsed", minimum=0.0)
        if error is not None:
            if not isinstance(error, BaseException):
                raise InvalidTypeError(f"error must be an exception or None, got {error!r}")
            if not self._retryable(error):
                return False
        return not self._stop(attempt, elapsed)

    def delays(self) -> Iterator[float]:
        """The successive delays of a run in which every attempt fails at once.

        Yields the delay after attempt 1, 2, ... while the stop strategy
        allows another attempt, counting only the delays as elapsed time
        (endless with :class:`StopNever`). O(1) per delay.

        >>> list(RetryPolicy(max_attempts=4, base=0.5, jitter="none").delays())
        [0.5, 1.0, 2.0]
        """
        previous: float | None = None
        elapsed = 0.0
        attempt = 1
        while not self._stop(attempt, elapsed):
            previous = self._wait(attempt, previous, self._rng)
            elapsed += previous
            yield previous
            attempt += 1

    def snapshot(self) -> dict[str, Any]:
        """Its one piece of state, the random source's, as plain data. O(1).

        :meth:`load_snapshot` on a policy with the same strategies makes it draw
        the same delays from there; see ``docs/persistence.md``.
        """
        return {**header("RetryPolicy"), "rng": encode_rng(self._rng)}

    def load_snapshot(self, data: object) -> None:
        """Set the random source to the state :meth:`snapshot` wrote. O(1).

        Raises:
            SnapshotError: not such a snapshot (nothing changes).
        """
        self._prepare_snapshot(data, "retry")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "RetryPolicy", where)
        state = decode_rng(fields.value("rng"), f"{where}.rng")
        fields.done()
        return lambda: self._rng.setstate(state)

    def __repr__(self) -> str:
        return f"RetryPolicy(stop={self._stop!r}, wait={self._wait!r})"
