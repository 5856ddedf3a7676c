"""``python -m taskdist`` (also the ``taskdist`` command): simulate and plan.

- ``simulate`` (the default): run a scenario (the nine-agent platform unless
  ``--scenario`` says otherwise) under a policy and print the seed checklist,
  measured; ``--compare`` runs several policies over several seeds.
- ``plan``: Erlang C sizing of one pool (``--arrival-rate``,
  ``--service-time`` and a target, or ``--servers``), or of every pool of a
  scenario (``--scenario``).

Exit status: 0 on success, 2 on bad arguments (including a malformed trace
file, named with its line and field), 1 when a run cannot finish (an
optional dependency missing for ``--plot``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from taskdist.errors import TaskdistError
from taskdist.planning import (
    erlang_c,
    mean_wait,
    plan_for,
    servers_for_service_level,
    servers_for_wait,
    service_level,
)
from taskdist.sim import BUILT_IN, Policy, Simulation, Trace, compare, scenarios
from taskdist.sim.progress import discard_output
from taskdist.sim.report import _require
from taskdist.sim.scenario import Scenario

__all__ = ["build_parser", "main"]

COMPARE_TASKS = 5_000
"""Tasks per run of ``simulate --compare`` unless ``--tasks`` says otherwise."""

_MAX_SERVERS = 10**18
"""The largest pool ``plan --servers`` evaluates (any size past the load waits no time)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with our own argument errors also exiting with status 2."""

    def fail(self, message: str) -> NoReturn:
        self.error(message)


def _number(text: str, *, zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number is needed, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise argparse.ArgumentTypeError(f"a finite number {bound} is needed, got {text!r}")
    return value


def _positive(text: str) -> float:
    return _number(text, zero=False)


def _non_negative(text: str) -> float:
    return _number(text, zero=True)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number is needed, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number >= 1 is needed, got {text!r}")
    return value


def _servers(text: str) -> int:
    value = _count(text)
    if value > _MAX_SERVERS:
        raise argparse.ArgumentTypeError(
            f"a pool of at most {_MAX_SERVERS:.0e} servers is evaluated, got {text!r}"
        )
    return value


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds are whole numbers, e.g. 1,2,3; got {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("at least one seed is needed")
    return seeds


def _path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a file name is needed, got an empty one")
    return text


def build_parser() -> _Parser:
    """The argument parser of ``python -m taskdist``."""
    parser = _Parser(
        prog="python -m taskdist",
        description="Try task-distribution policies on a workload before deploying them, "
        "and size the pools they need. With no command: simulate.",
    )
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    sim = commands.add_parser(
        "simulate",
        help="run a scenario under a policy and print the seed checklist (default)",
        description="Simulate a scenario with the real Distributor and print the seed "
        "checklist, measured.",
    )
    sim.add_argument(
        "--scenario",
        default="platform",
        help=f"one of {', '.join(scenarios.NAMES)} (default: platform)",
    )
    sim.add_argument(
        "--policy",
        default="priority",
        help="queue[/balancer][+cb]: queue one of fifo, priority, fair, edf, fair+edf; "
        "balancer one of least, p2c, rr, hash, random, perf; +cb adds circuit breakers "
        "(default: priority)",
    )
    sim.add_argument(
        "--compare",
        nargs="?",
        const="",
        metavar="POLICIES",
        help="compare policies (comma-separated; alone: "
        f"{', '.join(BUILT_IN)}) over --seeds, {COMPARE_TASKS:,} tasks each unless --tasks",
    )
    sim.add_argument("--seeds", type=_seeds, default=[1, 2, 3], help="seeds to compare over")
    sim.add_argument("--tasks", type=_count, help="arrivals to simulate")
    sim.add_argument(
        "--load",
        type=_positive,
        help="offered load (1.0 = the pool's capacity; from 1e-6 to 100)",
    )
    sim.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    sim.add_argument(
        "--trace",
        type=_path,
        metavar="FILE",
        help="replay arrivals from a CSV or JSON-lines file",
    )
    sim.add_argument(
        "--plot",
        type=_path,
        metavar="FILE",
        help="save one run's plots, in the format its suffix names (.png, .svg, .pdf...; "
        "needs matplotlib)",
    )
    sim.add_argument("--json", action="store_true", help="print the report as JSON")
    sim.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress (default: on a terminal, for long runs)",
    )
    sim.set_defaults(handler=_simulate)
    plan = commands.add_parser(
        "plan",
        help="size a pool with Erlang C",
        description="Size a pool as an M/M/c queue: give --arrival-rate and --service-time "
        "with --target-wait (mean wait), --within and --level (service level), or "
        "--servers (evaluate that size); or --scenario to plan every pool of a scenario.",
    )
    plan.add_argument("--arrival-rate", type=_positive, help="tasks per second")
    plan.add_argument("--service-time", type=_positive, help="mean seconds per task")
    plan.add_argument("--target-wait", type=_positive, help="largest mean wait, seconds (> 0)")
    plan.add_argument("--within", type=_non_negative, help="service level: wait at most this")
    plan.add_argument("--level", type=_positive, help="service level share (0.8)")
    plan.add_argument("--servers", type=_servers, help="evaluate a pool of this many servers")
    plan.add_argument("--scenario", help="plan every pool of a built-in scenario")
    plan.add_argument("--load", type=_positive, help="the scenario's offered load")
    plan.add_argument("--json", action="store_true", help="print the result as JSON")
    plan.set_defaults(handler=_plan)
    return parser


# -- simulate -----------------------------------------------------------------------


def _scenario(args: argparse.Namespace, parser: _Parser) -> Scenario:
    tasks = args.tasks
    if tasks is None and args.compare is not None:
        tasks = COMPARE_TASKS
    try:
        # Built for its task count: a scenario may time its faults by its length.
        scenario = scenarios.by_name(args.scenario, load=args.load, tasks=tasks)
    except TaskdistError as error:
        parser.fail(str(error))
    if args.trace:
        try:
            trace = Trace.load(args.trace)
        except OSError as error:
            parser.fail(f"cannot read the trace {args.trace}: {error.strerror}")
        except TaskdistError as error:
            parser.fail(f"bad trace: {error}")
        scenario = Scenario(
            name=f"{scenario.name} trace {trace.source}",
            workers=scenario.workers,
            workload=trace,
            tasks=len(trace) if args.tasks is None else min(args.tasks, len(trace)),
            gates=scenario.gates,
            lease=scenario.lease,
            plans=scenario.plans,
            tenant_plan=scenario.tenant_plan,
            aging_rate=scenario.aging_rate,
        )
    return scenario


def _plot_format(path: str, parser: _Parser) -> None:
    """Refuse, before any run, a plot file that could not be written: no such directory,
    or a suffix matplotlib has no format for. ImportError: matplotlib is missing."""
    target = Path(path)
    if not target.parent.is_dir():
        parser.fail(f"cannot save the plots to {path}: {target.parent} is not a directory")
    _require("matplotlib")
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    formats.pop("pgf", None)  # (LaTeX code, written only with a TeX system installed)
    suffix = target.suffix.lower().lstrip(".")
    if suffix not in formats:
        parser.fail(
            f"cannot save the plots to {path}: its suffix names no format matplotlib "
            f"writes (one of .{', .'.join(sorted(formats))})"
        )


def _simulate(args: argparse.Namespace, parser: _Parser) -> int:
    if args.plot is not None:
        if args.compare is not None:
            parser.fail("--plot draws one run's plots: it does not go with --compare")
        try:
            _plot_format(args.plot, parser)
        except ImportError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    scenario = _scenario(args, parser)
    if args.compare is not None:
        names = [n.strip() for n in args.compare.split(",") if n.strip()] or list(BUILT_IN)
        try:
            policies = [Policy.named(name) for name in names]
        except TaskdistError as error:
            parser.fail(str(error))
        try:
            result = compare(policies, scenario, seeds=args.seeds)
        except TaskdistError as error:
            parser.fail(str(error))
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False) if args.json else result)
        return 0
    try:
        policy = Policy.named(args.policy)
    except TaskdistError as error:
        parser.fail(str(error))
    try:
        report = Simulation(scenario, policy, seed=args.seed, progress=args.progress).run()
    except TaskdistError as error:  # the input's fault (what it asks cannot be simulated)
        parser.fail(str(error))
    # The report first: a plot that cannot be written after all loses nothing of it.
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print(report)
    if args.plot is not None:
        try:
            report.plot(args.plot)
        except (OSError, RuntimeError, ValueError) as error:
            sys.stdout.flush()
            detail = error.strerror if isinstance(error, OSError) and error.strerror else error
            parser.fail(f"cannot save the plots to {args.plot}: {detail}")
        if not args.json:
            print(f"\nplots saved to {args.plot}")
    return 0


# -- plan ---------------------------------------------------------------------------


def _plan(args: argparse.Namespace, parser: _Parser) -> int:
    _refuse_plan_conflicts(args, parser)
    if args.level is None:
        args.level = 0.8
    if args.scenario is not None:
        return _plan_scenario(args, parser)
    if args.arrival_rate is None or args.service_time is None:
        parser.fail("plan needs --arrival-rate and --service-time (or --scenario)")
    rate, time = args.arrival_rate, args.service_time
    load = rate * time
    result: dict[str, Any] = {"arrival_rate": rate, "service_time": time, "offered_load": load}
    try:
        if args.servers is not None:
            servers = args.servers
            if load >= servers:
                parser.fail(
                    f"{servers} servers cannot carry {load:g} erlangs (arrival rate x "
                    "service time): the queue would grow for ever"
                )
        elif args.target_wait is not None:
            servers = servers_for_wait(rate, time, args.target_wait)
            result["target_wait"] = args.target_wait
        else:
            within = time if args.within is None else args.within
            servers = servers_for_service_level(rate, time, within, args.level)
            result.update(within=within, level=args.level)
        within = time if args.within is None else args.within
        result.update(
            servers=servers,
            utilization=load / servers,
            wait_probability=erlang_c(servers, load),
            mean_wait=mean_wait(rate, time, servers),
            service_level=service_level(rate, time, servers, within),
            service_level_within=within,
        )
    except TaskdistError as error:
        parser.fail(str(error))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"M/M/c pool: {rate:g} tasks/s x {time:g} s = {load:g} erlangs offered\n"
        f"servers:           {servers}\n"
        f"utilisation:       {result['utilization']:.1%}\n"
        f"P(wait > 0):       {result['wait_probability']:.1%}\n"
        f"mean wait:         {result['mean_wait']:.3g} s\n"
        f"P(wait <= {within:g} s): {result['service_level']:.1%}"
    )
    return 0


def _refuse_plan_conflicts(args: argparse.Namespace, parser: _Parser) -> None:
    """Refuse options that another one makes meaningless, rather than ignore them."""
    if args.scenario is not None:
        given = [
            option
            for option, value in (
                ("--arrival-rate", args.arrival_rate),
                ("--service-time", args.service_time),
                ("--servers", args.servers),
            )
            if value is not None
        ]
        if given:
            parser.fail(
                f"--scenario plans every pool from the scenario's own rates; "
                f"{' and '.join(given)} cannot be given with it"
            )
    elif args.load is not None:
        parser.fail("--load sets a scenario's offered load: it needs --scenario")
    if args.servers is not None and (args.target_wait is not None or args.level is not None):
        target = "--target-wait" if args.target_wait is not None else "--level"
        parser.fail(
            f"--servers evaluates a pool of a given size and {target} sizes one: "
            "give one or the other"
        )
    if args.target_wait is not None and args.level is not None:
        parser.fail(
            "--target-wait sizes the pool for a mean wait and --level for a service level: "
            "give one or the other"
        )


def _plan_scenario(args: argparse.Namespace, parser: _Parser) -> int:
    try:
        scenario = scenarios.by_name(args.scenario, load=args.load)
        plans = plan_for(
            scenario, within=args.within, level=args.level, target_wait=args.target_wait
        )
    except TaskdistError as error:
        parser.fail(str(error))
    if args.json:
        print(json.dumps([_plan_row(p) for p in plans], indent=2))
        return 0
    print(f"{scenario.description or scenario.name}: slots per pool (M/M/c approximation)\n")
    width = max(len(p.name) for p in plans)
    print(
        f"{'pool':<{width}}  {'tasks/s':>8}  {'mean s':>7}  {'slots':>5}  {'util':>6}  "
        f"{'P(wait)':>7}  {'mean wait':>9}  {'suggested':>9}"
    )
    for p in plans:
        print(
            f"{p.name:<{width}}  {p.arrival_rate:>8.3f}  {p.service_time:>7.2f}  {p.servers:>5}  "
            f"{p.utilization:>6.1%}  {p.wait_probability:>7.1%}  {p.mean_wait:>8.2f}s  "
            f"{p.suggested:>9}"
        )
    return 0


def _plan_row(plan: Any) -> dict[str, Any]:
    return {
        "pool": plan.name,
        "arrival_rate": plan.arrival_rate,
        "service_time": plan.service_time,
        "servers": plan.servers,
        "utilization": plan.utilization,
        "wait_probability": plan.wait_probability,
        "mean_wait": None if math.isinf(plan.mean_wait) else plan.mean_wait,
        "suggested": plan.suggested,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (argument errors exit with 2).

    A reader that goes away (``| head``) is not an error: the status is then 0. An
    interrupt (Ctrl-C) ends the command with one line on stderr and status 130, the
    shell's convention, instead of a traceback."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0].startswith("-") and arguments[0] not in ("-h", "--help")):
        arguments.insert(0, "simulate")
    args = parser.parse_args(arguments)
    subparser = parser if args.command is None else _subparser(parser, args.command)
    try:
        status = int(args.handler(args, subparser))
        sys.stdout.flush()
    except BrokenPipeError:
        discard_output(sys.stdout)
        return 0
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # (stderr gone too: the status says it)
            print("\ninterrupted", file=sys.stderr)
        return 130
    return status


def _subparser(parser: _Parser, name: str) -> _Parser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found = action.choices[name]
            assert isinstance(found, _Parser)
            return found
    return parser  # pragma: no cover - the parser always has its commands
