"""Call every one of several undo or release steps, even if one raises.

Undoing what a task was granted (a gate's units, a trial placement) must reach
every step, or the steps after a failing one keep what they hold for ever. A
step of the host's own may raise: the first error is raised once all have run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def call_all(calls: Iterable[Callable[[], object]]) -> None:
    """Call each of ``calls`` in order, every one even if one raises; then raise the
    first error, if any. O(len(calls))."""
    failed: BaseException | None = None
    for call in calls:
        try:
            call()
        except BaseException as error:
            if failed is None:
                failed = error
    if failed is not None:
        raise failed
