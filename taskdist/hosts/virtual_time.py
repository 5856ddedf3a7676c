"""VirtualTimeLoop: an asyncio event loop whose time is a ManualClock that jumps when idle.

Code that sleeps (``asyncio.sleep``, ``wait_for``, ``call_later``) runs on it
unchanged, but a sleep costs no real time: whenever every coroutine is
waiting and no I/O is ready, the loop moves the clock straight to its next
timer. So an hour of leases, retries and heartbeats runs in milliseconds,
and every timer fires at exactly the time it asked for.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from taskdist.clock import ManualClock
from taskdist.errors import InvalidTypeError

__all__ = ["VirtualTimeLoop", "run_virtual"]

T = TypeVar("T")


class _JumpingSelector(selectors.BaseSelector):
    """A selector that, instead of blocking until a timer, moves the clock to it."""

    def __init__(self, clock: ManualClock) -> None:
        self._inner = selectors.DefaultSelector()
        self._clock = clock
        self.loop: VirtualTimeLoop | None = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            # Nothing scheduled (block on real I/O, as any loop would) or work ready.
            return self._inner.select(timeout)
        ready = self._inner.select(0)
        if ready:
            return ready
        # Idle until a timer: jump to it. The loop's next timer is read so that the
        # clock lands on its exact time (now + timeout could be off by a rounding).
        clock = self._clock
        now = clock.now()
        target = now + timeout
        scheduled = getattr(self.loop, "_scheduled", None)
        if scheduled:
            when = scheduled[0].when()
            if now < when <= target:
                target = when
        clock.set(max(target, now))
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on a :class:`~taskdist.ManualClock` that skips idle time.

    ``loop.time()`` is ``clock.now()``. When no callback is ready and no I/O
    is waiting, the loop sets the clock to its next timer's time instead of
    sleeping, like trio's ``MockClock(autojump_threshold=0)``. Use it to test
    a host, or anything that sleeps, in virtual time: a distributor on the
    same clock sees exactly the times the coroutines slept to. Real I/O
    still works, and a thread that calls back into the loop
    (``call_soon_threadsafe``) wakes it; but time does not wait for
    threads: while they work, the clock jumps on.

    Scheduling and running a callback cost what they cost on the standard
    loop; a jump is O(1).

    >>> import asyncio
    >>> from taskdist import ManualClock
    >>> clock = ManualClock()
    >>> async def nap():
    ...     await asyncio.sleep(3600.0)
    ...     return clock.now()
    >>> run_virtual(nap(), clock)
    3600.0
    """

    def __init__(self, clock: ManualClock) -> None:
        selector = _JumpingSelector(clock)
        super().__init__(selector)
        if not isinstance(clock, ManualClock):
            self.close()  # refuse a half-made loop that would complain when collected
            raise InvalidTypeError(
                f"VirtualTimeLoop runs on a ManualClock (it moves the time), got {clock!r}"
            )
        selector.loop = self
        self._virtual_clock = clock

    @property
    def clock(self) -> ManualClock:
        """The clock this loop's time is."""
        return self._virtual_clock

    def time(self) -> float:
        """The clock's time. O(1)."""
        return self._virtual_clock.now()


def run_virtual(main: Coroutine[Any, Any, T], clock: ManualClock) -> T:
    """Run ``main`` to completion on a new :class:`VirtualTimeLoop` over ``clock``, then
    close the loop (as ``asyncio.run`` does). Returns what ``main`` returns.

    Raises:
        InvalidTypeError: ``main`` is not a coroutine, or ``clock`` is not a
            ManualClock.
    """
    if not asyncio.iscoroutine(main):
        raise InvalidTypeError(f"run_virtual runs a coroutine, got {main!r}")
    loop = VirtualTimeLoop(clock)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks ``main`` left running and let them finish, as ``asyncio.run`` does."""
    left = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
