"""Print CircuitBreaker.call's overhead per call as ratios to pybreaker's.

    python benchmarks/compare_breaker.py [--calls 100000] [--repeat 7] [--baseline FILE]

Every scenario of ``bench_breaker.py`` runs each contender ``repeat`` times,
interleaved so that machine noise hits all of them alike, on a fresh breaker
each time, and keeps each one's best time. Times are the process's CPU time
(``time.process_time``), so the moments another process holds the core do
not count: on a shared machine they are most of the noise. Overhead is a
contender's time per call minus the ``bare`` loop's (the function called
directly). Prints a Markdown table ready for docs/performance.md.

``--baseline FILE`` also runs an earlier version of the breaker module (for
example ``git show REV:taskdist/resilience/breaker.py > /tmp/breaker_before.py``)
in the same interleaved rounds, and prints a second table: each taskdist
configuration's overhead after the change over before it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import time
from collections.abc import Callable

from bench_breaker import CONTENDERS, SCENARIOS, Run, with_taskdist, with_taskdist_allow

OURS = ("taskdist", "taskdist-untimed", "taskdist-time", "taskdist-allow")


def baseline_contenders(path: str) -> dict[str, Callable[[str, int], Run]]:
    """The taskdist contenders again, built from the ``CircuitBreaker`` of the file ``path``."""
    spec = importlib.util.spec_from_file_location("breaker_baseline", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = module.CircuitBreaker
    return {
        "before:taskdist": with_taskdist(before),
        "before:taskdist-untimed": with_taskdist(before, slow_call_duration=None),
        "before:taskdist-time": with_taskdist(before, window="time", window_size=60),
        "before:taskdist-allow": functools.partial(with_taskdist_allow, breaker_class=before),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline", help="an earlier breaker.py to compare against")
    args = parser.parse_args()
    n = args.calls
    contenders = dict(CONTENDERS)
    if args.baseline:
        contenders |= baseline_contenders(args.baseline)
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeat):
        for scenario in SCENARIOS:
            for contender, make in contenders.items():
                run = make(scenario, n)
                gc.collect()
                start = time.process_time()
                run()
                elapsed = (time.process_time() - start) / n * 1e9
                key = (contender, scenario)
                best[key] = min(best.get(key, float("inf")), elapsed)
    print(
        "| scenario | pybreaker overhead ns | "
        + " | ".join(f"{name} ns (ratio)" for name in OURS)
        + " |"
    )
    print("|---|---|" + "---|" * len(OURS))
    for scenario in SCENARIOS:
        floor = best["bare", scenario]
        theirs = best["pybreaker", scenario] - floor
        cells = []
        for name in OURS:
            ours = best[name, scenario] - floor
            cells.append(f"{ours:.0f} ({ours / theirs:.2f}x)")
        print(f"| {scenario} | {theirs:.0f} | " + " | ".join(cells) + " |")
    if args.baseline:
        print()
        print("| scenario | " + " | ".join(f"{name} before → after ns" for name in OURS) + " |")
        print("|---|" + "---|" * len(OURS))
        for scenario in SCENARIOS:
            floor = best["bare", scenario]
            cells = []
            for name in OURS:
                before = best[f"before:{name}", scenario] - floor
                after = best[name, scenario] - floor
                cells.append(f"{before:.0f} → {after:.0f} ({after / before:.2f}x)")
            print(f"| {scenario} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
