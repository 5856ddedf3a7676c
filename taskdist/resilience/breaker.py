"""CircuitBreaker: stop calling what keeps failing, probe it, resume when it recovers.

The state machine and vocabulary are resilience4j's: a CLOSED breaker records
the outcome of calls in a count- or time-based sliding window and trips OPEN
when the failure rate or the slow-call rate reaches its threshold; after the
open duration it turns HALF_OPEN and lets a few probe calls through, whose
outcome closes it again or re-opens it. An operator can force it open or
disable it until it is reset.

This module is the machine: permissions, outcomes, transitions and metrics,
under one lock. It is driven either by hand (``acquire`` then ``record_*``)
or by the adapters of ``_breaker_calls.py`` (``call``, ``acall``, the
decorator, ``with``), which :class:`CircuitBreaker` mixes in; the sliding
windows are in ``_breaker_windows.py``.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Any, Final, Literal, cast

import attrs

from taskdist._snapshot import check_header, header, refuse
from taskdist._validate import check_choice, check_int, check_number, check_optional_number
from taskdist.clock import Clock, check_clock
from taskdist.errors import CircuitOpenError, InvalidArgumentError, InvalidTypeError
from taskdist.resilience._breaker_calls import BreakerCalls
from taskdist.resilience._breaker_windows import FAILED, SLOW, CountWindow, TimeWindow
from taskdist.resilience._ranges import LARGEST_WINDOW, check_duration

__all__ = [
    "BreakerListener",
    "BreakerMetrics",
    "BreakerStateChange",
    "CircuitBreaker",
    "CircuitState",
    "WindowKind",
]

WindowKind = Literal["count", "time"]
"""The ``window=`` of :class:`CircuitBreaker`: the last ``window_size`` calls or seconds."""
_WINDOW_KINDS: tuple[WindowKind, ...] = ("count", "time")

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


class CircuitState(str, enum.Enum):
    """Where a breaker is; a ``str`` enum, so ``CircuitState.OPEN == "open"``."""

    CLOSED = "closed"
    """Calls pass; their outcomes are recorded in the sliding window."""
    OPEN = "open"
    """Calls are refused until the open duration has elapsed."""
    HALF_OPEN = "half_open"
    """A limited number of probe calls pass; their outcome decides what comes next."""
    FORCED_OPEN = "forced_open"
    """Every call is refused until :meth:`CircuitBreaker.reset` (or ``disable``)."""
    DISABLED = "disabled"
    """Every call passes and nothing is recorded, until :meth:`CircuitBreaker.reset`
    (or ``force_open``)."""


@attrs.frozen
class BreakerStateChange:
    """One state transition, as passed to state listeners."""

    name: str | None
    """The breaker's name."""
    previous: CircuitState
    current: CircuitState
    at: float
    """Clock time of the transition. OPEN -> HALF_OPEN happens at the end of the
    open duration, and a half-open timeout at its deadline, whenever first observed."""
    reason: str
    """Why: ``"failure_rate"``, ``"slow_call_rate"``, ``"half_open_timeout"``
    (tripped), ``"open_duration_elapsed"``, ``"probes_passed"``, ``"reset"``,
    ``"forced_open"``, ``"disabled"``."""


BreakerListener = Callable[[BreakerStateChange], object]
"""A state listener: called with each :class:`BreakerStateChange`."""


@attrs.frozen
class BreakerMetrics:
    """A snapshot of a breaker (:meth:`CircuitBreaker.metrics`).

    The counts describe the outcomes that decide the next transition: in
    CLOSED the sliding window now, in HALF_OPEN the probes recorded so far, in
    OPEN the window (or probes) that tripped it, as they were when it tripped;
    in FORCED_OPEN and DISABLED nothing is recorded and they are 0.
    Rates are percentages (0..100), ``None`` when there are no calls (so two
    snapshots of the same state compare equal).
    """

    name: str | None
    state: CircuitState
    failure_rate: float | None
    slow_call_rate: float | None
    calls: int
    failed_calls: int
    slow_calls: int
    """Calls slower than ``slow_call_duration``, failed or not."""
    not_permitted_calls: int
    """Calls refused since the breaker was made."""
    probes_in_flight: int
    """HALF_OPEN probes permitted whose outcome is not yet recorded."""
    time_in_state: float
    """Seconds since the current state began."""
    open_until: float | None
    """When OPEN ends (``None`` unless OPEN)."""
    consecutive_opens: int
    """Trips since the breaker was last CLOSED (drives the open-duration growth)."""
    trips: int
    """Times the breaker has opened since it was made."""


# How call() / record_error() classify an exception.
_SUCCESS: Final = 0
_FAILURE: Final = 1
_IGNORED: Final = 2

_NO_PERMIT: Final = -1
_STATES: Final = {state.value: state for state in CircuitState}
_INF: Final = float("inf")


def _exception_types(value: object, name: str) -> tuple[type[BaseException], ...]:
    types_ = value if isinstance(value, tuple) else (value,)
    for t in types_:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise InvalidTypeError(
                f"{name} must be an exception class or a tuple of them, got {value!r}"
            )
    return cast(tuple[type[BaseException], ...], types_)


def _percentage(value: object, name: str) -> float:
    return check_number(value, name, positive=True, maximum=100.0)


class CircuitBreaker(BreakerCalls):
    """A circuit breaker with resilience4j's semantics, thread-safe and sans-I/O.

    **CLOSED.** Calls pass. Each outcome is recorded in a sliding window —
    the last ``window_size`` calls (``window="count"``) or the calls of the
    last ``window_size`` seconds (``window="time"``, one bucket per second).
    A call is *slow* when its duration is above ``slow_call_duration``. Once
    the window holds at least ``minimum_calls`` calls, the breaker trips OPEN
    as soon as, after a record, the failure rate ``>= failure_rate_threshold``
    or the slow-call rate ``>= slow_call_rate_threshold`` (percentages).
    With a count window, ``minimum_calls`` is capped at ``window_size``.

    **OPEN.** Every call is refused (``allow()`` is False, ``call()`` raises
    :class:`~taskdist.errors.CircuitOpenError` without calling) until
    ``open_duration`` has elapsed; then the breaker is HALF_OPEN (observed
    lazily, dated at the end of the open duration; :meth:`next_wakeup` says
    when). On the *k*-th consecutive trip without a close in between, the open
    duration is ``min(open_duration_max, open_duration *
    open_duration_multiplier ** (k - 1))``.

    **HALF_OPEN.** Exactly ``half_open_calls`` probes are permitted; while they
    are in flight every other call is refused. When all of them are recorded,
    the breaker re-opens if their failure or slow rate reaches its threshold,
    else closes with an empty window. A probe whose outcome is ignored, or
    that was permitted but not made (:meth:`release`), gives its place back.
    With ``max_wait_in_half_open`` (resilience4j's
    ``maxWaitDurationInHalfOpenState``), a breaker still HALF_OPEN that long
    after its first probe was permitted re-opens, as a trip (reason
    ``"half_open_timeout"``), dated at that deadline: a probe whose outcome
    never comes back cannot hold it half-open for ever. Until a first probe
    is permitted there is nothing to wait for, and no deadline.

    **FORCED_OPEN and DISABLED** (resilience4j's states of the same names)
    are set by an operator: :meth:`force_open` refuses every call,
    :meth:`disable` permits every call and records nothing; neither changes
    by itself, and :meth:`reset` returns to CLOSED with an empty window.
    Each of these three makes every outstanding permit stale.

    **What counts as a failure** (``call()``, the decorator, ``with``, and
    :meth:`record_error`): an exception that is an instance of ``ignore`` is
    neither success nor failure; otherwise it is a failure if it is an
    instance of ``record`` or ``is_failure(error)`` is true; otherwise it
    counts as a success. By default (neither ``record`` nor ``is_failure``)
    every ``Exception`` is a failure. A ``BaseException`` that is not an
    ``Exception`` (cancellation, ``KeyboardInterrupt``) records nothing.

    **Threads.** Safe to share between threads and asyncio tasks: a
    ``threading.Lock`` guards the bookkeeping only; it is never held while
    the protected call runs, so concurrent calls through one breaker run
    concurrently. A permission in CLOSED takes no lock at all. Each outcome
    is attributed to the state period that permitted it: an outcome that
    arrives after the breaker has changed state is dropped (it says nothing
    about the new period).

    **Asking without taking.** :meth:`can_acquire` says whether
    :meth:`acquire` would permit a call now, and changes nothing (no probe
    taken, no refusal counted, no transition made); :meth:`state` and
    :meth:`next_wakeup` say where it is and when that can next change by
    itself (the end of OPEN, or the half-open deadline), making the
    transitions time has brought to say it; :meth:`peek_state` and
    :meth:`peek_next_wakeup` give the same answers and change nothing (an
    elapsed OPEN reads HALF_OPEN but stays OPEN until a call or ``state``
    moves it).

    **Driving it.** By hand: :meth:`acquire` a permit, make the call, then
    ``record_*`` its outcome with that permit (or :meth:`release` it). Or let
    :meth:`call`, :meth:`acall`, the decorator, ``with`` or ``async with`` do
    all three (they are the adapters mixed in from ``BreakerCalls``).

    **Listeners** (``on_state_change=`` or :meth:`add_listener`) are called
    with a :class:`BreakerStateChange` after the lock is released, in the thread
    that caused the change; an exception from a listener propagates to that
    caller (the breaker's state is already updated).

    **Complexity.** ``allow``, ``acquire``, ``can_acquire``, ``record_*``,
    ``release``, ``call``, ``state``, ``peek_state``, ``next_wakeup``,
    ``peek_next_wakeup``, ``metrics``, ``reset``, ``force_open`` and
    ``disable`` are O(1) (O(1) amortised with a time window: a bucket is
    evicted once per second that had calls). Memory
    is what the window holds, never allocated up front: at most
    ``window_size`` outcomes (count), or one bucket per second that had calls
    (time).

    >>> from taskdist import ManualClock
    >>> clock = ManualClock()
    >>> breaker = CircuitBreaker(clock, window_size=4, minimum_calls=4, open_duration=10.0,
    ...                          half_open_calls=1)
    >>> for ok in (True, False, True, False):
    ...     (breaker.record_success if ok else breaker.record_failure)()
    >>> breaker.state, breaker.allow()
    (<CircuitState.OPEN: 'open'>, False)
    >>> clock.advance(10.0)
    10.0
    >>> breaker.allow(), breaker.allow()   # one probe permitted, the next refused
    (True, False)
    >>> breaker.record_success()
    >>> breaker.state
    <CircuitState.CLOSED: 'closed'>
    """

    __slots__ = (
        "_classify_record",
        "_closed_permit",
        "_consecutive_opens",
        "_failure_threshold",
        "_half_open_calls",
        "_ignore",
        "_is_failure",
        "_listeners",
        "_lock",
        "_max_wait",
        "_not_permitted",
        "_now",
        "_open_duration",
        "_open_duration_max",
        "_open_multiplier",
        "_open_until",
        "_permit",
        "_probe_calls",
        "_probe_deadline",
        "_probe_failures",
        "_probe_slow",
        "_probes_left",
        "_refusal_message",
        "_since",
        "_slow_after",
        "_slow_threshold",
        "_state",
        "_time_window",
        "_timed",
        "_trip_totals",
        "_trips",
        "_window",
        "name",
    )

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        failure_rate_threshold: float = 50.0,
        window: WindowKind = "count",
        window_size: int = 100,
        minimum_calls: int = 10,
        slow_call_duration: float | None = 60.0,
        slow_call_rate_threshold: float = 100.0,
        open_duration: float = 30.0,
        open_duration_multiplier: float = 1.0,
        open_duration_max: float | None = None,
        half_open_calls: int = 3,
        max_wait_in_half_open: float | None = None,
        record: ExceptionTypes | None = None,
        ignore: ExceptionTypes = (),
        is_failure: Callable[[BaseException], bool] | None = None,
        on_state_change: BreakerListener | None = None,
        name: str | None = None,
    ) -> None:
        """
        Args:
            clock: where time comes from (default: :class:`MonotonicClock`).
            failure_rate_threshold: trip when the failure rate (percent) is >= this (0 < t <= 100).
            window: ``"count"`` (last ``window_size`` calls) or ``"time"`` (last
                ``window_size`` seconds).
            window_size: calls or seconds in the sliding window (1 to 1,000,000).
            minimum_calls: calls the window must hold before rates are judged (an
                int >= 1; a count window caps it at ``window_size``).
            slow_call_duration: a call lasting more than this many seconds is slow
                (finite, >= 0), or ``None`` to never call a call slow.
            slow_call_rate_threshold: trip when the slow-call rate (percent) is >= this
                (0 < t <= 100).
            open_duration: seconds an OPEN breaker refuses calls (0 < d <= 1e9).
            open_duration_multiplier: growth of the open duration per consecutive trip
                (finite, >= 1).
            open_duration_max: the longest open duration (``open_duration`` to 1e9);
                required when the multiplier is above 1, so a flapping dependency is
                never shut out for good.
            half_open_calls: probes permitted in HALF_OPEN (an int >= 1).
            max_wait_in_half_open: seconds after its first probe that a breaker still
                HALF_OPEN re-opens (0 < w <= 1e9), or ``None`` (the default) to wait
                for the probes for ever.
            record: exception class(es) counted as failures.
            ignore: exception class(es) counted as neither success nor failure.
            is_failure: predicate on an exception: true counts it as a failure.
            on_state_change: a listener called with each :class:`BreakerStateChange`.
            name: a name for messages, metrics and listeners.

        Raises:
            InvalidArgumentError: a threshold outside (0, 100], a duration negative, NaN,
                infinite or above 1e9, a size below 1 or above 1,000,000,
                ``open_duration_max`` missing or below ``open_duration``.
            UnknownPolicyError: ``window`` is not ``"count"`` or ``"time"``.
            InvalidTypeError: a clock without ``now()``, ``record``/``ignore`` not exception
                classes, a listener or predicate that is not callable, ``name`` not a str.
        """
        clock = check_clock(clock)
        failure_threshold = _percentage(failure_rate_threshold, "failure_rate_threshold")
        kind = check_choice(window, "window", _WINDOW_KINDS)
        size = check_int(window_size, "window_size", minimum=1)
        if size > LARGEST_WINDOW:
            unit = "calls" if kind == "count" else "seconds"
            raise InvalidArgumentError(
                f"window_size must be at most {LARGEST_WINDOW:,} {unit}, got {window_size!r}"
            )
        minimum = check_int(minimum_calls, "minimum_calls", minimum=1)
        slow_after = check_optional_number(slow_call_duration, "slow_call_duration", minimum=0.0)
        slow_threshold = _percentage(slow_call_rate_threshold, "slow_call_rate_threshold")
        duration = check_duration(open_duration, "open_duration", positive=True)
        multiplier = check_number(open_duration_multiplier, "open_duration_multiplier", minimum=1)
        longest = (
            None
            if open_duration_max is None
            else check_duration(open_duration_max, "open_duration_max", positive=True)
        )
        if longest is None:
            if multiplier > 1.0:
                raise InvalidArgumentError(
                    "open_duration_max is required when open_duration_multiplier > 1 "
                    f"(got multiplier {multiplier:g}), so the open duration stays bounded"
                )
            longest = duration
        elif longest < duration:
            raise InvalidArgumentError(
                f"open_duration_max must be >= open_duration ({duration:g}), got {longest:g}"
            )
        probes = check_int(half_open_calls, "half_open_calls", minimum=1)
        max_wait = (
            _INF
            if max_wait_in_half_open is None
            else check_duration(max_wait_in_half_open, "max_wait_in_half_open", positive=True)
        )
        record_types = None if record is None else _exception_types(record, "record")
        ignore_types = _exception_types(ignore, "ignore")
        if is_failure is not None and not callable(is_failure):
            raise InvalidTypeError(f"is_failure must be callable, got {is_failure!r}")
        if on_state_change is not None and not callable(on_state_change):
            raise InvalidTypeError(f"on_state_change must be callable, got {on_state_change!r}")
        if name is not None and not isinstance(name, str):
            raise InvalidTypeError(f"name must be a str or None, got {name!r}")

        self.name = name
        """The breaker's name (``None`` if not given)."""
        self._lock = threading.Lock()
        self._now = clock.now
        # Rates are judged as metrics() reports them (100.0 * failed / calls), so a
        # rate shown equal to its threshold has tripped the breaker, as in resilience4j.
        self._failure_threshold = failure_threshold
        self._slow_threshold = slow_threshold
        self._slow_after = _INF if slow_after is None else slow_after
        self._window: CountWindow | TimeWindow = (
            CountWindow(size, minimum) if kind == "count" else TimeWindow(size, minimum)
        )
        self._time_window = kind == "time"
        # The clock is read around a call only when something needs the duration.
        self._timed = slow_after is not None or kind == "time"
        self._open_duration = duration
        self._open_multiplier = multiplier
        self._open_duration_max = longest
        self._half_open_calls = probes
        self._max_wait = max_wait
        if record_types is None and is_failure is None:
            record_types = (Exception,)
        self._classify_record = record_types or ()
        self._ignore = ignore_types
        self._is_failure = is_failure
        self._listeners: tuple[BreakerListener, ...] = (
            () if on_state_change is None else (on_state_change,)
        )
        # A permit is the number of the state period that granted it.
        self._permit = 0
        self._closed_permit = 0  # == _permit while CLOSED, else _NO_PERMIT
        self._state = CircuitState.CLOSED
        self._refusal_message = ""
        self._since = self._now()
        self._open_until = 0.0
        self._consecutive_opens = 0
        self._trips = 0
        self._not_permitted = 0
        self._trip_totals = (0, 0, 0)
        self._probes_left = 0
        self._probe_calls = self._probe_failures = self._probe_slow = 0
        # HALF_OPEN: when it re-opens unless settled (its first probe + max wait), else inf.
        self._probe_deadline = _INF

    # -- permission ------------------------------------------------------------

    def allow(self) -> bool:
        """Whether a call may go ahead now; in HALF_OPEN a True takes one probe. O(1).

        Pair every True with :meth:`record_success`, :meth:`record_failure`,
        :meth:`record_error` or :meth:`release`: a HALF_OPEN breaker waits for
        its probes' outcomes.
        """
        if self._closed_permit >= 0:
            return True
        return self._acquire_slow() >= 0

    def acquire(self) -> int | None:
        """Like :meth:`allow`, but return a *permit* (or ``None`` when refused). O(1).

        Passing the permit back to ``record_*`` / :meth:`release` attributes
        the outcome to the state period that allowed the call: if the breaker
        has changed state since, the outcome is dropped. Use it when calls
        can outlive a state (a task dispatched while CLOSED that finishes
        after the breaker tripped and half-opened must not count as a probe).
        """
        permit = self._closed_permit
        if permit < 0:
            permit = self._acquire_slow()
            if permit < 0:
                return None
        return permit

    def can_acquire(self) -> bool:
        """Whether :meth:`acquire` would return a permit now, taking nothing. O(1).

        No probe is taken, no refusal counted and no transition made (listeners
        hear nothing): a host can ask it of every worker's breaker, then
        :meth:`acquire` from the one it chooses.
        """
        if self._closed_permit >= 0:
            return True
        now = self._now()
        with self._lock:
            state = self._state
            if state is CircuitState.OPEN:
                return now >= self._open_until  # then HALF_OPEN, with a probe to give
            if state is CircuitState.HALF_OPEN:
                deadline = self._probe_deadline
                if now >= deadline:  # it re-opens at the deadline: is that over too?
                    return now >= deadline + self._open_duration_after(self._consecutive_opens)
                return self._probes_left > 0
            return state is not CircuitState.FORCED_OPEN  # CLOSED, or DISABLED

    def _acquire_slow(self) -> int:
        """Permission outside CLOSED: OPEN expiry, half-open probes, refusals."""
        now = self._now()
        lock = self._lock
        lock.acquire()
        try:
            if self._state is CircuitState.OPEN and now < self._open_until:
                self._not_permitted += 1  # the common refusal, kept short
                return _NO_PERMIT
            changes = self._observe(now)
            state = self._state
            if state is CircuitState.CLOSED or state is CircuitState.DISABLED:
                permit = self._permit
            elif state is CircuitState.HALF_OPEN and self._probes_left > 0:
                self._probes_left -= 1
                if self._probe_deadline == _INF:  # the first probe starts the wait
                    self._probe_deadline = now + self._max_wait
                permit = self._permit
            else:
                self._not_permitted += 1
                permit = _NO_PERMIT
        finally:
            lock.release()
        if changes:
            self._notify(changes)
        return permit

    def _observe(self, now: float) -> tuple[BreakerStateChange, ...]:
        """Under the lock: make the transitions time has brought by ``now``.

        An OPEN breaker whose open duration has elapsed is HALF_OPEN; a
        HALF_OPEN one past its deadline re-opened then (and may be HALF_OPEN
        again, with no probe taken and so no deadline: at most two steps).
        """
        state = self._state
        if state is CircuitState.OPEN:
            if now < self._open_until:
                return ()
            return (self._half_open(),)
        if state is CircuitState.HALF_OPEN and now >= self._probe_deadline:
            deadline = self._probe_deadline
            totals = (self._probe_calls, self._probe_failures, self._probe_slow)
            reopened = self._trip(totals, "half_open_timeout", deadline)
            if now < self._open_until:
                return (reopened,)
            return (reopened, self._half_open())
        return ()

    def _refusal(self) -> CircuitOpenError:
        # Written once per state change (in _enter), not once per refused call.
        return CircuitOpenError(self._refusal_message)

    # -- outcomes ----------------------------------------------------------------

    def _check_record(self, duration: float, permit: int | None) -> tuple[float, int]:
        # The common case (a finite float >= 0) checked inline; NaN fails the comparison.
        if type(duration) is not float or not 0.0 <= duration < _INF:
            duration = check_number(duration, "duration", minimum=0.0)
        if permit is None:
            return duration, self._permit
        if type(permit) is not int or permit < 0:
            raise InvalidTypeError(f"permit must be a value acquire() returned, got {permit!r}")
        return duration, permit

    def record_success(self, duration: float = 0.0, *, permit: int | None = None) -> None:
        """Record a call that succeeded after ``duration`` seconds (slow if above the limit). O(1).

        Without ``permit`` the outcome counts for the current state; in
        HALF_OPEN it is dropped unless a probe is in flight; in FORCED_OPEN
        and DISABLED it is dropped.

        Raises:
            InvalidArgumentError: ``duration`` negative, NaN or infinite.
            InvalidTypeError: ``permit`` not an int from :meth:`acquire`.
        """
        duration, permit = self._check_record(duration, permit)
        self._record(permit, SLOW if duration > self._slow_after else 0, None)

    def record_failure(self, duration: float = 0.0, *, permit: int | None = None) -> None:
        """Record a call that failed after ``duration`` seconds. O(1).

        Same rules and errors as :meth:`record_success`.
        """
        duration, permit = self._check_record(duration, permit)
        self._record(permit, (FAILED | SLOW) if duration > self._slow_after else FAILED, None)

    def record_error(
        self, error: BaseException, duration: float = 0.0, *, permit: int | None = None
    ) -> None:
        """Record a call that raised ``error``, classified by ``record``/``ignore``/``is_failure``.

        A failure or success is recorded as by :meth:`record_failure` /
        :meth:`record_success`; an ignored error (or a ``BaseException`` that is
        not an ``Exception``) records nothing and releases the permission.
        O(1) plus the predicate.

        Raises:
            InvalidTypeError: ``error`` is not an exception.
        """
        if not isinstance(error, BaseException):
            raise InvalidTypeError(f"error must be an exception, got {error!r}")
        duration, permit = self._check_record(duration, permit)
        self._record_error(permit, error, SLOW if duration > self._slow_after else 0, None)

    def release(self, permit: int | None = None) -> None:
        """Give back a permission without an outcome (the call was not made, or is ignored). O(1).

        In HALF_OPEN it frees the probe for another caller; otherwise it does nothing.

        Raises:
            InvalidTypeError: ``permit`` not an int from :meth:`acquire`.
        """
        self._release(self._check_record(0.0, permit)[1])

    def _release(self, permit: int) -> None:
        lock = self._lock
        lock.acquire()
        try:
            changes = self._observe_deadline(None)
            if (
                permit == self._permit
                and self._state is CircuitState.HALF_OPEN
                and self._in_flight() > 0
            ):
                self._probes_left += 1
        finally:
            lock.release()
        if changes:
            self._notify(changes)

    def _in_flight(self) -> int:
        return self._half_open_calls - self._probes_left - self._probe_calls

    def _settle(self, permit: int, error: BaseException | None, start: float) -> None:
        """Record how a call timed from ``start`` ended: ``error``, or None for a success.

        The one way the call adapters (``call``, ``with``, ...) report back. O(1).
        """
        end = self._now() if self._timed else None
        slow = SLOW if end is not None and end - start > self._slow_after else 0
        if error is None:
            self._record(permit, slow, end)
            return
        try:
            kind = self._classify(error)
        except BaseException:
            self._release(permit)  # a raising is_failure must not strand a probe
            raise
        self._record_kind(permit, kind, slow, end)

    def _record_error(
        self, permit: int, error: BaseException, slow: int, now: float | None
    ) -> None:
        """Record a call that raised ``error``, classified; an ignored one releases its permit."""
        self._record_kind(permit, self._classify(error), slow, now)

    def _record_kind(self, permit: int, kind: int, slow: int, now: float | None) -> None:
        if kind == _IGNORED:
            self._release(permit)
        else:
            self._record(permit, slow | (FAILED if kind == _FAILURE else 0), now)

    def _classify(self, error: BaseException) -> int:
        if not isinstance(error, Exception) or (self._ignore and isinstance(error, self._ignore)):
            return _IGNORED
        if isinstance(error, self._classify_record):
            return _FAILURE
        is_failure = self._is_failure
        if is_failure is not None and is_failure(error):
            return _FAILURE
        return _SUCCESS

    def _record(self, permit: int, outcome: int, now: float | None) -> None:
        # acquire/release rather than ``with``: this is the hot path, and the
        # context-manager protocol costs as much again as the lock itself.
        changes: tuple[BreakerStateChange, ...]
        lock = self._lock
        lock.acquire()
        try:
            if permit == self._closed_permit:
                if now is None and self._time_window:
                    now = self._now()
                window = self._window
                if not window.record(0.0 if now is None else now, outcome):  # count: ignored
                    return
                reason = self._exceeded(window.calls, window.failures, window.slow)
                if reason is None:
                    return
                changes = (self._trip((window.calls, window.failures, window.slow), reason, now),)
            else:
                changes = self._record_other(permit, outcome, now)
        finally:
            lock.release()
        if changes:
            self._notify(changes)

    def _record_other(
        self, permit: int, outcome: int, now: float | None
    ) -> tuple[BreakerStateChange, ...]:
        """Under the lock: an outcome outside CLOSED (a probe, or a stale one to drop)."""
        changes = self._observe_deadline(now)  # a probe back after the deadline is stale
        if permit != self._permit or self._state is not CircuitState.HALF_OPEN:
            return changes
        if self._in_flight() <= 0:
            return changes
        self._probe_calls += 1
        self._probe_failures += outcome & FAILED
        self._probe_slow += outcome >> 1
        if self._probe_calls < self._half_open_calls:
            return changes
        totals = (self._probe_calls, self._probe_failures, self._probe_slow)
        reason = self._exceeded(*totals)
        if reason is not None:
            return (*changes, self._trip(totals, reason, now))
        return (*changes, self._close(now, "probes_passed"))

    def _observe_deadline(self, now: float | None) -> tuple[BreakerStateChange, ...]:
        """Under the lock: :meth:`_observe` when a half-open deadline is running (else nothing)."""
        if self._probe_deadline == _INF:
            return ()
        return self._observe(self._now() if now is None else now)

    def _exceeded(self, calls: int, failures: int, slow: int) -> str | None:
        if 100.0 * failures / calls >= self._failure_threshold:
            return "failure_rate"
        if 100.0 * slow / calls >= self._slow_threshold:
            return "slow_call_rate"
        return None

    # -- transitions (under the lock) ------------------------------------------------

    def _enter(self, state: CircuitState, at: float, reason: str) -> BreakerStateChange:
        previous = self._state
        self._state = state
        self._permit += 1
        self._closed_permit = self._permit if state is CircuitState.CLOSED else _NO_PERMIT
        self._probe_deadline = _INF
        self._since = at
        label = "circuit breaker" if self.name is None else f"circuit breaker {self.name!r}"
        if state is CircuitState.OPEN:
            self._refusal_message = (
                f"{label} is open until t={self._open_until:g}; the call was not made"
            )
        elif state is CircuitState.HALF_OPEN:
            self._refusal_message = (
                f"{label} is half-open and its {self._half_open_calls} probe(s) are in flight; "
                "the call was not made"
            )
        elif state is CircuitState.FORCED_OPEN:
            self._refusal_message = (
                f"{label} is forced open until it is reset; the call was not made"
            )
        return BreakerStateChange(self.name, previous, state, at, reason)

    def _half_open(self) -> BreakerStateChange:
        """OPEN -> HALF_OPEN, dated at the end of the open duration."""
        self._probes_left = self._half_open_calls
        self._probe_calls = self._probe_failures = self._probe_slow = 0
        return self._enter(CircuitState.HALF_OPEN, self._open_until, "open_duration_elapsed")

    def _trip(
        self, totals: tuple[int, int, int], reason: str, now: float | None = None
    ) -> BreakerStateChange:
        now = self._now() if now is None else now
        self._open_until = now + self._open_duration_after(self._consecutive_opens)
        self._consecutive_opens += 1
        self._trips += 1
        self._trip_totals = totals
        return self._enter(CircuitState.OPEN, now, reason)

    def _open_duration_after(self, opens: int) -> float:
        """How long the trip after ``opens`` consecutive ones keeps the breaker OPEN."""
        try:
            grown = self._open_duration * self._open_multiplier**opens
        except OverflowError:
            return self._open_duration_max
        return min(grown, self._open_duration_max)

    def _close(self, now: float | None, reason: str) -> BreakerStateChange:
        self._window.reset()
        self._consecutive_opens = 0
        return self._enter(CircuitState.CLOSED, self._now() if now is None else now, reason)

    def _notify(self, changes: tuple[BreakerStateChange, ...]) -> None:
        for change in changes:
            for listener in self._listeners:
                listener(change)

    # -- control and observation ---------------------------------------------------

    def reset(self) -> None:
        """Return to CLOSED with an empty window, from any state; outstanding permits
        become stale. O(1).

        It is the way back from :meth:`force_open` and :meth:`disable`.
        Listeners hear of it only if the state changes.
        """
        with self._lock:
            previous = self._state
            change = self._close(None, "reset")
        if previous is not CircuitState.CLOSED:
            self._notify((change,))

    def force_open(self) -> None:
        """Refuse every call until :meth:`reset` (or :meth:`disable`); permits become stale. O(1).

        resilience4j's forced-open state: for an operator who knows the
        dependency is down, or is taking it out of service. Nothing is
        recorded while forced open, and no timer runs (:meth:`next_wakeup` is
        ``None``). Listeners hear of it (reason ``"forced_open"``) unless it
        was already forced open.
        """
        self._set_manual(CircuitState.FORCED_OPEN, "forced_open")

    def disable(self) -> None:
        """Permit every call and record nothing until :meth:`reset` (or :meth:`force_open`). O(1).

        resilience4j's disabled state: the breaker steps aside without being
        removed from the code path. Outstanding permits become stale.
        Listeners hear of it (reason ``"disabled"``) unless it was already
        disabled.
        """
        self._set_manual(CircuitState.DISABLED, "disabled")

    def _set_manual(self, state: CircuitState, reason: str) -> None:
        with self._lock:
            if self._state is state:
                return
            change = self._enter(state, self._now(), reason)
        self._notify((change,))

    @property
    def state(self) -> CircuitState:
        """The current state (an elapsed OPEN is reported, and becomes, HALF_OPEN). O(1)."""
        if self._closed_permit >= 0:
            return CircuitState.CLOSED
        with self._lock:
            changes = self._observe(self._now())
            state = self._state
        if changes:
            self._notify(changes)
        return state

    def peek_state(self) -> CircuitState:
        """The state :attr:`state` would report now, changing nothing. O(1).

        An elapsed OPEN is reported as HALF_OPEN (and a HALF_OPEN past its
        deadline as what it re-opened to) but stays as it is, and listeners
        hear nothing, until a call or :attr:`state` makes the transition: a
        read for a report or a dashboard then leaves every later decision as
        it would have been.
        """
        if self._closed_permit >= 0:
            return CircuitState.CLOSED
        now = self._now()
        with self._lock:
            return self._peek(now)[0]

    def peek_next_wakeup(self) -> float | None:
        """What :meth:`next_wakeup` would return now, changing nothing. O(1).

        :meth:`next_wakeup` first makes the transitions time has brought (a
        HALF_OPEN past its deadline re-opens, and its listeners hear it);
        this answers from where those transitions would leave the breaker,
        and leaves it as it is, as :meth:`peek_state` does for :attr:`state`.
        """
        if self._closed_permit >= 0:
            return None
        now = self._now()
        with self._lock:
            return self._peek(now)[1]

    def _peek(self, now: float) -> tuple[CircuitState, float | None]:
        """Under the lock: the state and next wakeup that :meth:`_observe` ``(now)``
        would leave, without making its transitions."""
        state = self._state
        if state is CircuitState.OPEN:
            if now < self._open_until:
                return state, self._open_until
            return CircuitState.HALF_OPEN, None  # no probe taken yet: no deadline
        if state is CircuitState.HALF_OPEN:
            deadline = self._probe_deadline
            if now < deadline:
                return state, None if deadline == _INF else deadline
            # As _observe would: OPEN again from the deadline, then perhaps HALF_OPEN.
            until = deadline + self._open_duration_after(self._consecutive_opens)
            if now < until:
                return CircuitState.OPEN, until
            return CircuitState.HALF_OPEN, None
        return state, None

    def next_wakeup(self) -> float | None:
        """When the breaker will next change state by itself, or ``None``. O(1).

        That is the end of the open duration while OPEN, and the deadline of
        ``max_wait_in_half_open`` while HALF_OPEN with a probe permitted; in
        every other case (CLOSED, FORCED_OPEN, DISABLED, HALF_OPEN before its
        first probe or without a maximum wait) only a call can change it.
        The transitions time has brought are made first (listeners hear them):
        :meth:`peek_next_wakeup` gives the same answer and changes nothing.
        """
        with self._lock:
            changes = self._observe(self._now())
            state = self._state
            if state is CircuitState.OPEN:
                wakeup: float | None = self._open_until
            elif state is CircuitState.HALF_OPEN and self._probe_deadline < _INF:
                wakeup = self._probe_deadline
            else:
                wakeup = None
        if changes:
            self._notify(changes)
        return wakeup

    def metrics(self) -> BreakerMetrics:
        """A snapshot of the state, rates and counts (see :class:`BreakerMetrics`). O(1)."""
        with self._lock:
            now = self._now()
            changes = self._observe(now)
            state = self._state
            if state is CircuitState.CLOSED:
                calls, failures, slow = self._window.totals(now)
            elif state is CircuitState.HALF_OPEN:
                calls, failures, slow = self._probe_calls, self._probe_failures, self._probe_slow
            elif state is CircuitState.OPEN:
                calls, failures, slow = self._trip_totals
            else:
                calls = failures = slow = 0
            snapshot = BreakerMetrics(
                name=self.name,
                state=state,
                failure_rate=100.0 * failures / calls if calls else None,
                slow_call_rate=100.0 * slow / calls if calls else None,
                calls=calls,
                failed_calls=failures,
                slow_calls=slow,
                not_permitted_calls=self._not_permitted,
                probes_in_flight=self._in_flight() if state is CircuitState.HALF_OPEN else 0,
                time_in_state=now - self._since,
                open_until=self._open_until if state is CircuitState.OPEN else None,
                consecutive_opens=self._consecutive_opens,
                trips=self._trips,
            )
        if changes:
            self._notify(changes)
        return snapshot

    def add_listener(self, listener: BreakerListener) -> None:
        """Call ``listener(change)`` on every state change from now on. O(listeners).

        Raises:
            InvalidTypeError: ``listener`` is not callable.
        """
        if not callable(listener):
            raise InvalidTypeError(f"listener must be callable, got {listener!r}")
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: BreakerListener) -> None:
        """Stop calling ``listener`` (its first registration). O(listeners).

        Raises:
            InvalidArgumentError: ``listener`` was not added.
        """
        with self._lock:
            listeners = list(self._listeners)
            if listener not in listeners:
                raise InvalidArgumentError(f"listener {listener!r} is not registered")
            listeners.remove(listener)
            self._listeners = tuple(listeners)

    # -- persistence -----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The state, its window and its counters as plain data, read as they are: no
        transition is made and no listener hears anything. O(window).

        :meth:`load_snapshot` on a new breaker configured alike takes it back;
        see ``docs/persistence.md``.
        """
        with self._lock:
            return {
                **header("CircuitBreaker"),
                "window_kind": "time" if self._time_window else "count",
                "window_size": self._window.size,
                "state": self._state.value,
                "permit": self._permit,
                "since": self._since,
                "open_until": self._open_until,
                "consecutive_opens": self._consecutive_opens,
                "trips": self._trips,
                "not_permitted": self._not_permitted,
                "trip_totals": list(self._trip_totals),
                "probes": [
                    self._probes_left,
                    self._probe_calls,
                    self._probe_failures,
                    self._probe_slow,
                ],
                "probe_deadline": None if self._probe_deadline == _INF else self._probe_deadline,
                "refusal": self._refusal_message,
                "window": self._window.snapshot(),
            }

    def load_snapshot(self, data: object) -> None:
        """Take on the state :meth:`snapshot` wrote, into a new breaker configured alike
        (window kind and size, thresholds, durations). No listener hears it. O(window).

        Raises:
            SnapshotError: not such a snapshot, another window, or a breaker that has
                already seen calls (nothing changes).
        """
        self._prepare_snapshot(data, "breaker")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "CircuitBreaker", where)
        if self._permit or self._window.calls or self._not_permitted:
            refuse(where, "can be loaded only into a new CircuitBreaker")
        kind = "time" if self._time_window else "count"
        for name, mine in (("window_kind", kind), ("window_size", self._window.size)):
            fields.same(name, mine, "breaker")
        state_name = fields.text("state")
        if state_name not in _STATES:
            refuse(f"{where}.state", f"names no CircuitState, got {state_name!r}")
        state = _STATES[state_name]
        permit = fields.integer("permit", minimum=0)
        since = fields.number("since")
        open_until = fields.number("open_until")
        opens = fields.integer("consecutive_opens", minimum=0)
        trips = fields.integer("trips", minimum=0)
        not_permitted = fields.integer("not_permitted", minimum=0)
        totals = fields.items("trip_totals")
        probes = fields.items("probes")
        if len(totals) != 3 or len(probes) != 4:
            refuse(where, "must have 3 trip totals and 4 probe counts")
        if not all(type(n) is int and n >= 0 for n in (*totals, *probes)):
            refuse(where, "trip totals and probe counts must be ints >= 0")
        deadline = fields.opt_number("probe_deadline")
        refusal = fields.text("refusal")
        load_window = self._window.prepare_load(fields.value("window"), f"{where}.window")
        fields.done()

        def load() -> None:
            with self._lock:
                self._state = state
                self._permit = permit
                self._closed_permit = permit if state is CircuitState.CLOSED else _NO_PERMIT
                self._since = since
                self._open_until = open_until
                self._consecutive_opens = opens
                self._trips = trips
                self._not_permitted = not_permitted
                self._trip_totals = (totals[0], totals[1], totals[2])
                (
                    self._probes_left,
                    self._probe_calls,
                    self._probe_failures,
                    self._probe_slow,
                ) = probes
                self._probe_deadline = _INF if deadline is None else deadline
                self._refusal_message = refusal
                load_window()

        return load

    def __repr__(self) -> str:
        kind = "time" if self._time_window else "count"
        return (
            f"CircuitBreaker(name={self.name!r}, state={self._state.value}, window={kind!r}, "
            f"window_size={self._window.size}, minimum_calls={self._window.minimum})"
        )
