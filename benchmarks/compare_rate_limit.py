"""Print RateLimiter.try_acquire's cost as ratios to pyrate-limiter's in-memory Limiter.

    python benchmarks/compare_rate_limit.py [--calls 100000] [--repeat 5]

Every scenario of ``bench_rate_limit.py`` runs each contender ``repeat``
times, interleaved so that machine noise hits all of them alike, on a fresh
limiter each time, and keeps each one's best time. Prints a Markdown table
(nanoseconds per call and ratios) ready for docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import time

from bench_rate_limit import CASES, CONTENDERS, SCENARIOS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.calls
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeat):
        for contender, scenario in CASES:
            run = CONTENDERS[contender](scenario, n)
            gc.collect()
            start = time.perf_counter()
            run()
            elapsed = (time.perf_counter() - start) / n * 1e9
            key = (contender, scenario)
            best[key] = min(best.get(key, float("inf")), elapsed)
    print(
        "| scenario | taskdist ns/call | pyrate-limiter ns/call "
        "| pyrate-limiter / taskdist | taskdist keyed ns/call |"
    )
    print("|---|---|---|---|---|")
    for scenario in SCENARIOS:
        ours = best["taskdist", scenario]
        theirs = best["pyrate-limiter", scenario]
        keyed = best.get(("taskdist-keyed", scenario))
        print(
            f"| {scenario} | {ours:.0f} | {theirs:.0f} | {theirs / ours:.1f}x "
            f"| {'' if keyed is None else f'{keyed:.0f}'} |"
        )


if __name__ == "__main__":
    main()
