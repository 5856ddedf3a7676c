"""Print CircuitBreaker.call's overhead per call as ratios to pybreaker's.

    python benchmarks/compare_breaker.py [--calls 100000] [--repeat 7]

Every scenario of ``bench_breaker.py`` runs each contender ``repeat`` times,
interleaved so that machine noise hits all of them alike, on a fresh breaker
each time, and keeps each one's best time. Overhead is a contender's time per
call minus the ``bare`` loop's (the function called directly). Prints a
Markdown table ready for docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import time

from bench_breaker import CONTENDERS, SCENARIOS

OURS = ("taskdist", "taskdist-untimed", "taskdist-time", "taskdist-allow")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    n = args.calls
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeat):
        for scenario in SCENARIOS:
            for contender, make in CONTENDERS.items():
                run = make(scenario, n)
                gc.collect()
                start = time.perf_counter()
                run()
                elapsed = (time.perf_counter() - start) / n * 1e9
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


if __name__ == "__main__":
    main()
