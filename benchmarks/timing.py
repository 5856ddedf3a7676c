"""Timing for the benchmark scripts' Markdown tables: the best of several runs.

Benchmark modules use it as ``from timing import best_of``. The best run, not
the mean, because the machines are shared: noise only ever adds time.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """The shortest of ``repeat`` runs of ``run()``, in seconds (garbage collected before each)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best
