"""Report: what one simulation run measured, and the seed checklist with pass / miss.

Every figure is defined on the measured run (see ``docs/simulation.md``):

- **wait**: arrival to first dispatch; **end to end**: arrival to completion.
- **utilisation**: busy slot-seconds over slot-seconds of the workers present,
  over the arrival window (first to last arrival), so the drain at the end
  does not dilute it; per worker likewise.
- **offered load**: the work the arrivals brought (their first attempts'
  service time) over the same slot-seconds: what a run's utilisation can
  reach, which differs from a scenario's nominal load by sampling noise.
- **load variance**: the coefficient of variation of the per-worker
  utilisations (the seed's "variance across agents").
- **deadline hit rate**: tasks with a deadline that completed by it, over all
  accepted tasks with a deadline (dead-lettered or never finished = missed).
- **completion rate**: completed over accepted tasks (the rest are in the
  dead-letter queue with a reason, or were still waiting when the run ended).
- **Jain's index** across tenants of ``served / fair share``: each tenant's
  busy time over the arrival window, against its weighted max-min fair share
  of the busy time of the run given each tenant's demand. 1 is perfectly fair.
- **priority inversions**: dispatches of a task B on worker w while a task A
  of the same tenant, more urgent (lower priority number), that arrived
  before B and was waiting for its first dispatch, could have run on w: w
  has A's skills, A takes no more slots than B, and the admission gates
  would have admitted A.
- **distribution latency**: the wall-clock time the Distributor spent in
  ``dispatch()``, per assignment made (p99 over dispatch calls).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from taskdist.metrics import Percentiles

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["Check", "Report", "Series", "Timing"]

# The seed's delivery targets.
LATENCY_TARGET_MS: Final = 50.0
LOAD_VARIANCE_TARGET: Final = 0.10
COMPLETION_TARGET: Final = 0.99
DEADLINE_TARGET: Final = 0.95
UTILIZATION_TARGET: Final = 0.80
FAIRNESS_TARGET: Final = 0.90


@attrs.frozen
class Check:
    """One line of the checklist: a target, what was measured, and whether it passed."""

    name: str
    target: str
    measured: str
    passed: bool

    @property
    def verdict(self) -> str:
        """``"pass"`` or ``"miss"``."""
        return "pass" if self.passed else "miss"


@attrs.frozen
class Timing:
    """Wall-clock costs of the run (not part of a report's equality: they vary run to run).

    ``latency_*`` are seconds the Distributor's ``dispatch()`` took per
    assignment; ``distributor_seconds`` all time spent in Distributor calls;
    ``wall_seconds`` the whole run.
    """

    wall_seconds: float
    distributor_seconds: float
    latency_mean: float
    latency_p99: float
    latency_max: float

    def per_task(self, tasks: int) -> float:
        """Wall seconds per simulated task."""
        return self.wall_seconds / tasks if tasks else math.nan


@attrs.frozen
class Series:
    """What the plots draw: queue depth over time, the waits per priority in dispatch
    order, and the utilisation of each worker."""

    queue_depth: tuple[tuple[float, int], ...]
    waits_by_priority: Mapping[int, tuple[float, ...]]
    worker_utilization: Mapping[str, float]


def _percentiles_dict(p: Percentiles) -> dict[str, float | int]:
    return {
        "count": p.count,
        "mean": p.mean,
        "p50": p.p50,
        "p95": p.p95,
        "p99": p.p99,
        "max": p.max,
    }


def _clean(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_ready(value: Any) -> Any:
    """``value`` with every NaN or infinite float within it (in dicts and lists) made
    ``None``: JSON has no such numbers."""
    if isinstance(value, float):
        return _clean(value)
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


@attrs.frozen
class Report:
    """What a :class:`~taskdist.sim.Simulation` run measured (see the module docs).

    Equal reports mean the same run: the wall-clock :attr:`timing` is left
    out of equality, and the NaN figures of an empty summary (``end_to_end``
    when nothing completed) equal each other. :attr:`checklist` grades the seed's targets;
    :meth:`to_dict` (JSON-ready), :meth:`to_frame` (pandas),
    ``_repr_html_`` (notebooks), :meth:`plot` (matplotlib) show it.
    Building the views is O(workers + priorities + checks).

    Times are simulated seconds from the run's start (0). :attr:`window` is
    the time at which the arrival window ends, that of the last arrival, not
    the window's length: utilisation, offered load and fair shares are
    measured from the first arrival to it, so the length is ``window`` less
    the first arrival's time (with a trace whose first arrival is at 100 s
    and last at 160 s, ``window`` is 160). :attr:`makespan` is the time the
    run ended, at its last event; ``throughput`` is completions over it.
    """

    scenario: str
    policy: str
    seed: int
    tasks: int
    accepted: int
    refused: int
    completed: int
    dead: int
    stranded: int
    dispatches: int
    retries: int
    lease_expiries: int
    makespan: float
    window: float
    throughput: float
    wait: Percentiles
    end_to_end: Percentiles
    wait_by_priority: Mapping[int, Percentiles]
    deadlines: int
    deadlines_met: int
    utilization: float
    offered_load: float
    load_variance: float
    jain_index: float
    tenant_fairness: Mapping[str, float]
    priority_inversions: int
    dead_by_reason: Mapping[str, int]
    evicted: int
    series: Series = attrs.field(repr=False)
    timing: Timing = attrs.field(eq=False, repr=False)

    @property
    def completion_rate(self) -> float:
        """Completed over accepted tasks (1.0 when none was accepted)."""
        return self.completed / self.accepted if self.accepted else 1.0

    @property
    def deadline_hit_rate(self) -> float:
        """Tasks that met their deadline over accepted tasks with one (1.0 when none had one)."""
        return self.deadlines_met / self.deadlines if self.deadlines else 1.0

    @property
    def urgent_wait(self) -> Percentiles:
        """The wait of the most urgent priority level that had tasks."""
        if not self.wait_by_priority:
            return self.wait
        return self.wait_by_priority[min(self.wait_by_priority)]

    @property
    def overflowed(self) -> int:
        """Tasks refused at intake (queue full, quota) or evicted from a bounded queue."""
        return self.refused + self.evicted

    @property
    def checklist(self) -> tuple[Check, ...]:
        """The seed's targets, measured: latency, variance, completion, priority,
        deadlines, utilisation, overflow, fairness."""
        inversions = self.priority_inversions
        respected = 1.0 - inversions / self.dispatches if self.dispatches else 1.0
        p99_ms = self.timing.latency_p99 * 1e3
        return (
            Check(
                "distribution latency",
                f"< {LATENCY_TARGET_MS:g} ms",
                f"p99 {p99_ms:.3f} ms",
                p99_ms < LATENCY_TARGET_MS,
            ),
            Check(
                "load variance",
                f"< {LOAD_VARIANCE_TARGET:.0%}",
                f"{self.load_variance:.1%}",
                self.load_variance < LOAD_VARIANCE_TARGET,
            ),
            Check(
                "completion",
                f"> {COMPLETION_TARGET:.0%}",
                f"{self.completion_rate:.2%}",
                self.completion_rate > COMPLETION_TARGET,
            ),
            Check(
                "priority respected",
                "100%",
                f"{respected:.2%} ({inversions} inversions)",
                inversions == 0,
            ),
            Check(
                "deadlines met",
                f"> {DEADLINE_TARGET:.0%}",
                f"{self.deadline_hit_rate:.2%}",
                self.deadline_hit_rate > DEADLINE_TARGET,
            ),
            Check(
                "utilisation",
                f"> {UTILIZATION_TARGET:.0%}",
                f"{self.utilization:.1%}",
                self.utilization > UTILIZATION_TARGET,
            ),
            Check(
                "no queue overflow",
                "0 refused",
                f"{self.overflowed} refused or evicted",
                self.overflowed == 0,
            ),
            Check(
                "fairness",
                f"Jain >= {FAIRNESS_TARGET:g}",
                f"Jain {self.jain_index:.3f}",
                self.jain_index >= FAIRNESS_TARGET,
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """Every figure as plain JSON-ready data (no series; a NaN or infinite figure
        becomes ``None``)."""
        data: dict[str, Any] = _json_ready(self._data())
        return data

    def _data(self) -> dict[str, Any]:
        """The figures of :meth:`to_dict`, NaN and infinities as they are."""
        return {
            "scenario": self.scenario,
            "policy": self.policy,
            "seed": self.seed,
            "tasks": self.tasks,
            "accepted": self.accepted,
            "refused": self.refused,
            "completed": self.completed,
            "dead": self.dead,
            "stranded": self.stranded,
            "dispatches": self.dispatches,
            "retries": self.retries,
            "lease_expiries": self.lease_expiries,
            "makespan": self.makespan,
            "window": self.window,
            "throughput": self.throughput,
            "wait": _percentiles_dict(self.wait),
            "end_to_end": _percentiles_dict(self.end_to_end),
            "wait_by_priority": {
                str(p): _percentiles_dict(w) for p, w in sorted(self.wait_by_priority.items())
            },
            "deadlines": self.deadlines,
            "deadlines_met": self.deadlines_met,
            "deadline_hit_rate": self.deadline_hit_rate,
            "completion_rate": self.completion_rate,
            "utilization": self.utilization,
            "offered_load": self.offered_load,
            "load_variance": self.load_variance,
            "worker_utilization": dict(self.series.worker_utilization),
            "jain_index": self.jain_index,
            "tenant_fairness": dict(self.tenant_fairness),
            "priority_inversions": self.priority_inversions,
            "dead_by_reason": dict(self.dead_by_reason),
            "evicted": self.evicted,
            "timing": {
                "wall_seconds": self.timing.wall_seconds,
                "distributor_seconds": self.timing.distributor_seconds,
                "us_per_task": self.timing.per_task(self.tasks) * 1e6,
                "latency_mean_ms": self.timing.latency_mean * 1e3,
                "latency_p99_ms": self.timing.latency_p99 * 1e3,
                "latency_max_ms": self.timing.latency_max * 1e3,
            },
            "checklist": [
                {"name": c.name, "target": c.target, "measured": c.measured, "passed": c.passed}
                for c in self.checklist
            ],
        }

    def metrics(self) -> dict[str, float]:
        """The headline figures as one flat row (what ``compare`` and ``to_frame`` use)."""
        return {
            "throughput": self.throughput,
            "wait_mean": self.wait.mean,
            "wait_p95": self.wait.p95,
            "wait_p99": self.wait.p99,
            "urgent_wait_p95": self.urgent_wait.p95,
            "end_to_end_p95": self.end_to_end.p95,
            "deadline_hit_rate": self.deadline_hit_rate,
            "completion_rate": self.completion_rate,
            "utilization": self.utilization,
            "load_variance": self.load_variance,
            "jain_index": self.jain_index,
            "priority_inversions": float(self.priority_inversions),
            "dead": float(self.dead),
        }

    def to_frame(self) -> Any:
        """A one-row ``pandas.DataFrame`` of :meth:`metrics`, with scenario, policy and seed.

        Raises:
            ImportError: pandas is not installed (``pip install "taskdist[sim]"``).
        """
        pandas = _require("pandas")
        row = {"scenario": self.scenario, "policy": self.policy, "seed": self.seed}
        row.update(self.metrics())
        return pandas.DataFrame([row])

    def plot(self, path: str | None = None) -> Figure:
        """Queue depth over time, wait CDF per priority, utilisation per worker (matplotlib).

        Saves to ``path`` (PNG, SVG, ... by its suffix) when given; returns the figure.

        Raises:
            ImportError: matplotlib is not installed (``pip install "taskdist[sim]"``).
        """
        from taskdist.sim.plots import plot_report

        return plot_report(self, path)

    def lines(self) -> Iterator[str]:
        """The report as text: a headline and the checklist."""
        yield (
            f"{self.scenario} under {self.policy}, seed {self.seed}: {self.tasks:,} tasks, "
            f"{self.completed:,} completed, {self.dead:,} dead-lettered"
            + (f", {self.stranded:,} unfinished" if self.stranded else "")
            + (f", {self.refused:,} refused" if self.refused else "")
        )
        yield (
            f"simulated {self.makespan:,.0f} s in {self.timing.wall_seconds:.2f} s wall "
            f"({self.timing.per_task(self.tasks) * 1e6:.0f} us per task); "
            f"wait p50 {self.wait.p50:.2f} s, p95 {self.wait.p95:.2f} s, "
            f"p99 {self.wait.p99:.2f} s; throughput {self.throughput:.2f}/s"
        )
        yield ""
        width = max(len(c.name) for c in self.checklist)
        yield f"{'check':<{width}}  {'target':<12}  {'measured':<32}  result"
        for c in self.checklist:
            yield f"{c.name:<{width}}  {c.target:<12}  {c.measured:<32}  {c.verdict}"
        if self.dead_by_reason:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.dead_by_reason.items()))
            yield f"\ndead letters by reason: {reasons}"

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(c.name)}</td><td>{html.escape(c.target)}</td>"
            f"<td>{html.escape(c.measured)}</td>"
            f"<td style='color:{'green' if c.passed else 'red'}'>{c.verdict}</td></tr>"
            for c in self.checklist
        )
        head = html.escape(next(self.lines()))
        return (
            f"<p><b>{head}</b></p><table><thead><tr><th>check</th><th>target</th>"
            f"<th>measured</th><th>result</th></tr></thead><tbody>{rows}</tbody></table>"
        )


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(
            f'this needs {module}, an optional dependency: pip install "taskdist[sim]"'
        ) from error
