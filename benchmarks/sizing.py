"""Benchmark sizing: smoke sizes by default, the full ones with TASKDIST_BENCH_FULL=1.

Benchmark modules use it as ``from sizing import sizes``.

Under plain ``pytest`` (``--benchmark-disable`` is the default in
pyproject.toml) each benchmark body runs once, so CI proves it works without
timing it; ``nox -s bench`` times them at full size.
"""

from __future__ import annotations

import os

FULL = os.environ.get("TASKDIST_BENCH_FULL", "") not in ("", "0")


def sizes(full: list[int], smoke: list[int]) -> list[int]:
    """The problem sizes to run: ``full`` when timing for real, else ``smoke``."""
    return full if FULL else smoke
