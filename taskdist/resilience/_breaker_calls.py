"""Calls run through a circuit breaker: ``call``, ``acall``, decorator, ``with``, ``async with``.

These adapters drive the breaker's state machine from outside, the way
h11's connection drives its protocol state: take a permit (or raise
:class:`~taskdist.errors.CircuitOpenError` without calling), time the
protected call with the breaker's clock, then hand its outcome back to the
machine, which classifies it and records it under the permit. The machine
(``breaker.py``) knows nothing of functions, coroutines or ``with`` blocks;
this module knows nothing of windows, thresholds or states.

:class:`BreakerCalls` is mixed into ``CircuitBreaker``; it needs from the
machine only what its ``TYPE_CHECKING`` block declares.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, ParamSpec, TypeVar, cast

from taskdist.errors import CircuitOpenError, InvalidTypeError

__all__ = ["BreakerCalls"]

P = ParamSpec("P")
R = TypeVar("R")
_Breaker = TypeVar("_Breaker", bound="BreakerCalls")

# Entered ``with breaker:`` blocks of the current thread or task: (breaker,
# permit, start). A context variable, so threads and asyncio tasks sharing one
# breaker each see their own.
_ENTERED: contextvars.ContextVar[tuple[tuple[BreakerCalls, int, float], ...]] = (
    contextvars.ContextVar("taskdist_breaker_entered", default=())
)


class BreakerCalls:
    """The ways to run a call through a breaker, all on one preamble (:meth:`_begin`).

    Each is O(1) plus the call: one permit, two clock reads when the
    breaker times calls, one record.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        _now: Callable[[], float]
        _timed: bool
        """Whether the machine needs a call's duration (slow calls, a time window)."""

        def acquire(self) -> int | None: ...

        def _refusal(self) -> CircuitOpenError: ...

        def _settle(self, permit: int, error: BaseException | None, start: float) -> None: ...

    def _begin(self) -> tuple[int, float]:
        """A permit and the call's start time, or :class:`CircuitOpenError` (nothing taken)."""
        permit = self.acquire()
        if permit is None:
            raise self._refusal()
        return permit, self._now() if self._timed else 0.0

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through the breaker and return its result. O(1) + the call.

        The call is timed with the breaker's clock and its outcome recorded
        (exceptions classified as described above, then re-raised).

        Raises:
            CircuitOpenError: the breaker refused; ``fn`` was not called.
            InvalidTypeError: ``fn`` is not callable (nothing recorded).
        """
        if not callable(fn):
            raise InvalidTypeError(f"call() takes a function to call, got {fn!r}")
        permit, start = self._begin()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            self._settle(permit, error, start)
            raise
        self._settle(permit, None, start)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` through the breaker: :meth:`call` for coroutines.

        Cancellation records nothing and releases the permission.

        Raises:
            CircuitOpenError: the breaker refused; ``fn`` was not called.
            InvalidTypeError: ``fn`` is not callable (nothing recorded).
        """
        if not callable(fn):
            raise InvalidTypeError(f"acall() takes a coroutine function, got {fn!r}")
        permit, start = self._begin()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            self._settle(permit, error, start)
            raise
        self._settle(permit, None, start)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` so each call goes through :meth:`call` (:meth:`acall` for coroutines)."""
        if inspect.iscoroutinefunction(fn):
            coroutine_fn = cast(Callable[P, Awaitable[object]], fn)

            @functools.wraps(fn)
            async def guarded_coroutine(*args: P.args, **kwargs: P.kwargs) -> object:
                return await self.acall(coroutine_fn, *args, **kwargs)

            return cast(Callable[P, R], guarded_coroutine)

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            return self.call(fn, *args, **kwargs)

        return guarded

    def __enter__(self: _Breaker) -> _Breaker:
        """``with breaker:`` — the block is the protected call (raises CircuitOpenError)."""
        permit, start = self._begin()
        _ENTERED.set((*_ENTERED.get(), (self, permit, start)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entered = _ENTERED.get()
        # The innermost block of this breaker (blocks of one context exit innermost first).
        for i in range(len(entered) - 1, -1, -1):
            if entered[i][0] is self:
                _, permit, start = entered[i]
                _ENTERED.set(entered[:i] + entered[i + 1 :])
                break
        else:
            raise RuntimeError("CircuitBreaker.__exit__ without a matching __enter__")
        self._settle(permit, exc, start)

    async def __aenter__(self: _Breaker) -> _Breaker:
        """``async with breaker:`` — as ``with``, for code that awaits inside the block."""
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
