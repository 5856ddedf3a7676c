"""Progress of a long run: a rich progress bar on a terminal, plain lines elsewhere.

rich is optional (the ``[sim]`` extra); without it a terminal gets a plain
line rewritten in place. Progress goes to standard error, so ``--json`` on
standard output stays clean.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Final, TextIO

__all__ = ["Progress", "discard_output"]

LONG_RUN: Final = 20_000
"""Runs of this many tasks or more show progress by default (on a terminal)."""


def discard_output(stream: object) -> None:
    """Send what is still to be written to ``stream`` (its reader gone) to the null
    device, so that flushing it at exit raises no ``BrokenPipeError``. Does nothing for
    a stream without a file descriptor."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = stream.fileno()  # type: ignore[attr-defined]
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


class Progress:
    """Shows ``done of total``; ``enabled=None`` means on a terminal, for long runs only.

    Not a terminal and explicitly enabled: a plain line at each quarter.
    ``update`` is O(1).
    """

    def __init__(
        self, total: int, label: str, enabled: bool | None, stream: TextIO | None = None
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        terminal = bool(getattr(self._stream, "isatty", lambda: False)())
        if enabled is None:
            enabled = terminal and total >= LONG_RUN
        self._enabled = enabled
        self._terminal = terminal
        self._total = max(1, total)
        self._label = label
        self._quarter = 0
        self._bar: Any = None
        if enabled and terminal:
            try:
                from rich.progress import Progress as RichProgress
            except ImportError:
                self._bar = None
            else:
                self._bar = RichProgress(transient=True, console=None)
                self._bar.start()
                self._task = self._bar.add_task(label, total=self._total)

    def update(self, done: int) -> None:
        """``done`` tasks of the total have arrived. A stream that can no longer be
        written (its reader gone) ends the progress shown, not the run."""
        if not self._enabled:
            return
        try:
            if self._bar is not None:
                self._bar.update(self._task, completed=done)
            elif self._terminal:
                self._stream.write(f"\r{self._label}: {done:,} / {self._total:,}")
                self._stream.flush()
            else:
                quarter = 4 * done // self._total
                if quarter > self._quarter:
                    self._quarter = quarter
                    self._stream.write(f"{self._label}: {done:,} / {self._total:,} tasks\n")
                    self._stream.flush()
        except OSError:
            self._gone()

    def _gone(self) -> None:
        """The stream's reader went away: show nothing more, and let what is left in its
        buffer go nowhere (so that flushing it at exit raises nothing either)."""
        self._enabled = False
        self._bar = None
        discard_output(self._stream)

    def close(self) -> None:
        """The run is over: take the bar down."""
        try:
            if self._bar is not None:
                self._bar.stop()
            elif self._enabled and self._terminal:
                self._stream.write("\r" + " " * (len(self._label) + 30) + "\r")
                self._stream.flush()
        except OSError:
            self._gone()
        self._enabled = False
