"""Print RateLimiter.try_acquire's cost as ratios to pyrate-limiter's in-memory Limiter.

    python benchmarks/compare_rate_limit.py [--calls 100000] [--repeat 5] [--baseline FILE]

Every scenario of ``bench_rate_limit.py`` runs each contender ``repeat``
times, interleaved so that machine noise hits all of them alike, on a fresh
limiter each time, and keeps each one's best time, in the process's CPU time
(``time.process_time``: the moments another process holds the core, most of
the noise on a shared machine, do not count). Prints a Markdown table
(nanoseconds per call and ratios) ready for docs/performance.md.

``--baseline FILE`` also runs an earlier version of the limiter module (for
example ``git show REV:taskdist/resilience/rate_limit.py > /tmp/rate_limit_before.py``)
in the same interleaved rounds, and prints each taskdist contender's time
after the change over before it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import time

from bench_rate_limit import CASES, CONTENDERS, SCENARIOS, taskdist_keyed, taskdist_limiter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", help="an earlier rate_limit.py to compare against")
    args = parser.parse_args()
    n = args.calls
    contenders = dict(CONTENDERS)
    cases = list(CASES)
    if args.baseline:
        spec = importlib.util.spec_from_file_location("rate_limit_baseline", args.baseline)
        assert spec is not None and spec.loader is not None, f"cannot load {args.baseline}"
        before = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(before)
        contenders["before:taskdist"] = functools.partial(taskdist_limiter, module=before)
        contenders["before:taskdist-keyed"] = functools.partial(taskdist_keyed, module=before)
        cases += [(f"before:{c}", s) for c, s in CASES if c.startswith("taskdist")]
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeat):
        for contender, scenario in cases:
            run = contenders[contender](scenario, n)
            gc.collect()
            start = time.process_time()
            run()
            elapsed = (time.process_time() - start) / n * 1e9
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
    if args.baseline:
        print()
        print("| scenario | taskdist before → after ns | keyed before → after ns |")
        print("|---|---|---|")
        for scenario in SCENARIOS:
            cells = []
            for name in ("taskdist", "taskdist-keyed"):
                if (name, scenario) not in best:
                    cells.append("")
                    continue
                old, new = best[f"before:{name}", scenario], best[name, scenario]
                cells.append(f"{old:.0f} → {new:.0f} ({new / old:.2f}x)")
            print(f"| {scenario} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
