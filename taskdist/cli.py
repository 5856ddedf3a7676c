"""``python -m taskdist``: the command line.

With no arguments it runs ``demo``: the built-in platform scenario through a
:class:`~taskdist.queues.PriorityQueue`, with and without aging, and prints
how long each priority level waited.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence

from taskdist.clock import ManualClock
from taskdist.metrics import RecentSamples
from taskdist.queues import PriorityQueue
from taskdist.task import Task

__all__ = ["main"]

# The nine-agent platform: intents and their priorities (1 = most urgent), at
# most 10 concurrent workflows lasting 0.8 s to 15 s. The platform's own rule,
# "waited over 10 minutes: one level more urgent", is aging at 1/600 level per
# second; the demo ages faster so a short overloaded run shows the effect.
PLATFORM_INTENT_PRIORITY = {
    "brainstorming": 1,
    "deciding": 1,
    "modifying": 1,
    "exploring": 2,
    "reviewing": 3,
    "development": 3,
    "general": 3,
    "document_research": 4,
    "reference_integration": 4,
}
PLATFORM_CONCURRENCY = 10
PLATFORM_DURATION = (0.8, 15.0)
PLATFORM_AGING_RATE = 1 / 600
DEMO_AGING_RATE = 1 / 60


def run_platform_demo(
    *, tasks: int, load: float, aging_rate: float, seed: int
) -> dict[int, RecentSamples]:
    """Serve ``tasks`` platform workflows on 10 slots; return the waits per priority.

    Arrivals are Poisson at ``load`` times the pool's capacity; the same seed
    gives the same arrivals and durations whatever the aging rate, so runs
    compare like with like.
    """
    rng = random.Random(seed)
    low, high = PLATFORM_DURATION
    arrival_rate = load * PLATFORM_CONCURRENCY / ((low + high) / 2)
    intents = sorted(PLATFORM_INTENT_PRIORITY)
    arrivals: list[tuple[float, Task, float]] = []
    t = 0.0
    for i in range(tasks):
        t += rng.expovariate(arrival_rate)
        intent = rng.choice(intents)
        task = Task(f"wf-{i}", priority=PLATFORM_INTENT_PRIORITY[intent], group=intent)
        arrivals.append((t, task, rng.uniform(low, high)))
    duration = {task.id: d for _, task, d in arrivals}

    clock = ManualClock()
    queue = PriorityQueue(clock, aging_rate=aging_rate)
    busy_until: list[float] = []  # end times of running workflows
    waits: dict[int, RecentSamples] = {}
    enqueued: dict[object, float] = {}
    next_arrival = 0
    while next_arrival < len(arrivals) or queue:
        # Advance to the next event: an arrival or a slot freeing up.
        candidates = [arrivals[next_arrival][0]] if next_arrival < len(arrivals) else []
        if busy_until and (len(busy_until) >= PLATFORM_CONCURRENCY or not candidates):
            candidates.append(min(busy_until))
        clock.set(max(clock.now(), min(candidates)))
        now = clock.now()
        busy_until = [end for end in busy_until if end > now]
        while next_arrival < len(arrivals) and arrivals[next_arrival][0] <= now:
            _, task, _ = arrivals[next_arrival]
            queue.push(task)
            enqueued[task.id] = now
            next_arrival += 1
        while len(busy_until) < PLATFORM_CONCURRENCY:
            started = queue.pop()
            if started is None:
                break
            waits.setdefault(started.priority, RecentSamples(tasks)).record(
                now - enqueued.pop(started.id)
            )
            busy_until.append(now + duration[started.id])
    return waits


def _demo(args: argparse.Namespace) -> int:
    print(
        f"taskdist demo: {args.tasks} platform workflows on {PLATFORM_CONCURRENCY} slots "
        f"at {args.load:.0%} load (seed {args.seed})\n"
    )
    runs = {
        "no aging": run_platform_demo(
            tasks=args.tasks, load=args.load, aging_rate=0.0, seed=args.seed
        ),
        f"aging {args.aging_rate:.4g}/s": run_platform_demo(
            tasks=args.tasks, load=args.load, aging_rate=args.aging_rate, seed=args.seed
        ),
    }
    header = f"{'priority':>8} {'tasks':>6}"
    for name in runs:
        header += f" | {name + ': mean / p95 / max wait (s)':>40}"
    print(header)
    print("-" * len(header))
    for priority in sorted(next(iter(runs.values()))):
        row = f"{priority:>8} {next(iter(runs.values()))[priority].total:>6}"
        for waits in runs.values():
            p = waits[priority].percentiles()
            row += f" | {p.mean:>12.1f} {p.p95:>12.1f} {p.max:>12.1f}  "
        print(row)
    print(
        "\nAging bounds the least urgent levels' wait, paid for by the "
        "more urgent ones (see docs/queues.md)."
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m taskdist``."""
    parser = argparse.ArgumentParser(
        prog="python -m taskdist",
        description="Compare task-distribution policies on a workload before deploying them.",
    )
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="priority queue with and without aging (default)")
    demo.add_argument("--tasks", type=int, default=4_000, help="workflows to serve")
    demo.add_argument(
        "--load", type=float, default=1.05, help="offered load (1.0 = the pool's capacity)"
    )
    demo.add_argument(
        "--aging-rate",
        type=float,
        default=DEMO_AGING_RATE,
        help="priority levels gained per second waited "
        f"(default 1 per minute; the platform's rule is {PLATFORM_AGING_RATE:.4g})",
    )
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0].startswith("-") and arguments[0] not in ("-h", "--help")):
        arguments.insert(0, "demo")
    args = parser.parse_args(arguments)
    handler = args.handler
    return int(handler(args))
