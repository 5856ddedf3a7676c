"""compare: the same workload under several policies, over several seeds.

Every policy runs on the same seeds, so each sees the same arrivals and
service times. Each metric is reported as its mean over the seeds with a
95 % confidence interval (Student's t), and :meth:`Comparison.wins` says
which policy does best on what, and whether the lead is clear of the
runner-up's interval.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from taskdist._validate import check_int, shown
from taskdist.errors import InvalidArgumentError, InvalidTypeError
from taskdist.sim.policies import BUILT_IN, Policy
from taskdist.sim.report import Report, _json_ready, _require
from taskdist.sim.scenario import Scenario
from taskdist.sim.simulation import Simulation

__all__ = ["Comparison", "Win", "compare"]

HIGHER_IS_BETTER: Final = frozenset(
    {"throughput", "deadline_hit_rate", "completion_rate", "utilization", "jain_index"}
)
"""Metrics where more is better; for the others less is."""

# Two-sided 95 % Student t quantiles for 1..30 degrees of freedom.
_T95: Final = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (NaN for one value). O(n)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return mean, t * math.sqrt(variance / n)


@attrs.frozen
class Win:
    """The best policy on one metric: its mean, the runner-up's, and whether the lead
    is clear (the two 95 % intervals do not overlap) or a tie.

    A lead is never clear without both intervals (a comparison over one seed).
    """

    metric: str
    policy: str
    value: float
    runner_up: str | None
    runner_up_value: float
    clear: bool

    def __str__(self) -> str:
        if self.runner_up is None:
            return f"{self.metric}: {self.policy} ({self.value:.4g})"
        if math.isclose(self.value, self.runner_up_value, rel_tol=1e-9, abs_tol=1e-12):
            return (
                f"{self.metric}: tie between {self.policy} and {self.runner_up} ({self.value:.4g})"
            )
        lead = "clearly" if self.clear else "within the noise"
        return (
            f"{self.metric}: {self.policy} ({self.value:.4g}) beats {self.runner_up} "
            f"({self.runner_up_value:.4g}), {lead}"
        )


@attrs.frozen
class Comparison:
    """Reports of several policies on one scenario over the same seeds.

    Building the table or the wins is O(policies x seeds x metrics).
    """

    scenario: str
    seeds: tuple[int, ...]
    reports: Mapping[str, tuple[Report, ...]]

    @property
    def policies(self) -> tuple[str, ...]:
        """The policies, in the order given."""
        return tuple(self.reports)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics compared (those of :meth:`Report.metrics`)."""
        first = next(iter(self.reports.values()))[0]
        return tuple(first.metrics())

    def summary(self, policy: str, metric: str) -> tuple[float, float]:
        """Mean over the seeds and the 95 % half-width of ``metric`` under ``policy``."""
        return interval([report.metrics()[metric] for report in self.reports[policy]])

    def wins(self) -> list[Win]:
        """For each metric, the best policy and by how much."""
        found = []
        for metric in self.metrics:
            higher = metric in HIGHER_IS_BETTER
            ranked = sorted(
                self.policies,
                key=lambda p: _rank_key(self.summary(p, metric)[0], higher),
            )
            best = ranked[0]
            value, half = self.summary(best, metric)
            if len(ranked) == 1:
                found.append(Win(metric, best, value, None, math.nan, True))
                continue
            other = ranked[1]
            other_value, other_half = self.summary(other, metric)
            if math.isclose(value, other_value, rel_tol=1e-9, abs_tol=1e-12):
                clear = False
            elif math.isnan(half) or math.isnan(other_half):
                clear = False  # one seed (or no value): no interval to be clear of
            else:
                clear = abs(value - other_value) > half + other_half
            found.append(Win(metric, best, value, other, other_value, clear))
        return found

    def table(self) -> list[dict[str, Any]]:
        """One row per policy: each metric's mean and 95 % half-width."""
        rows = []
        for policy in self.policies:
            row: dict[str, Any] = {"policy": policy}
            for metric in self.metrics:
                mean, half = self.summary(policy, metric)
                row[metric] = mean
                row[f"{metric}_ci"] = half
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The table and the wins as plain data (a NaN or infinite figure as ``None``)."""
        data: dict[str, Any] = _json_ready(
            {
                "scenario": self.scenario,
                "seeds": list(self.seeds),
                "table": self.table(),
                "wins": [
                    {
                        "metric": w.metric,
                        "policy": w.policy,
                        "value": w.value,
                        "runner_up": w.runner_up,
                        "clear": w.clear,
                    }
                    for w in self.wins()
                ],
            }
        )
        return data

    def to_frame(self) -> Any:
        """Every run as a row of a ``pandas.DataFrame`` (policy, seed, metrics).

        Raises:
            ImportError: pandas is not installed (``pip install "taskdist[sim]"``).
        """
        pandas = _require("pandas")
        rows = []
        for policy, reports in self.reports.items():
            for report in reports:
                row: dict[str, Any] = {"policy": policy, "seed": report.seed}
                row.update(report.metrics())
                rows.append(row)
        return pandas.DataFrame(rows)

    def lines(self, metrics: Iterable[str] | None = None) -> list[str]:
        """The table as text (mean ± 95 % half-width) and the wins."""
        shown = tuple(metrics) if metrics is not None else _SHOWN
        width = max(len(p) for p in self.policies)
        head = f"{'policy':<{width}}" + "".join(f"  {_LABELS.get(m, m):>18}" for m in shown)
        out = [
            f"{self.scenario}: {len(self.policies)} policies x {len(self.seeds)} seeds "
            f"(mean ± 95% CI)",
            "",
            head,
        ]
        for policy in self.policies:
            cells = []
            for metric in shown:
                mean, half = self.summary(policy, metric)
                cell = _format(metric, mean)
                if not math.isnan(half):
                    cell += f" ±{_format(metric, half, bare=True)}"
                cells.append(f"  {cell:>18}")
            out.append(f"{policy:<{width}}" + "".join(cells))
        out.append("")
        out.append("best on each metric:")
        out.extend(f"  {win}" for win in self.wins() if win.metric in shown)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(_LABELS.get(m, m))}</th>" for m in _SHOWN)
        body = ""
        for policy in self.policies:
            cells = ""
            for metric in _SHOWN:
                mean, half = self.summary(policy, metric)
                shown = _format(metric, mean) + (
                    "" if math.isnan(half) else f" ± {_format(metric, half, bare=True)}"
                )
                cells += f"<td>{html.escape(shown)}</td>"
            body += f"<tr><td>{html.escape(policy)}</td>{cells}</tr>"
        wins = "".join(f"<li>{html.escape(str(w))}</li>" for w in self.wins())
        return (
            f"<p><b>{html.escape(self.scenario)}</b></p><table><thead><tr><th>policy</th>"
            f"{head}</tr></thead><tbody>{body}</tbody></table><ul>{wins}</ul>"
        )


_SHOWN: Final = (
    "urgent_wait_p95",
    "wait_p95",
    "end_to_end_p95",
    "deadline_hit_rate",
    "utilization",
    "load_variance",
    "jain_index",
    "priority_inversions",
)
_LABELS: Final = {
    "urgent_wait_p95": "urgent wait p95 (s)",
    "wait_p95": "wait p95 (s)",
    "end_to_end_p95": "end-to-end p95 (s)",
    "deadline_hit_rate": "deadlines met",
    "utilization": "utilisation",
    "load_variance": "load variance",
    "jain_index": "Jain index",
    "priority_inversions": "inversions",
}
_PERCENT: Final = frozenset(
    {"deadline_hit_rate", "utilization", "load_variance", "completion_rate"}
)


def _format(metric: str, value: float, *, bare: bool = False) -> str:
    if math.isnan(value):
        return "-"
    if metric in _PERCENT:
        return f"{value * 100:.1f}" + ("" if bare else "%")
    if metric == "jain_index":
        return f"{value:.3f}"
    if metric in ("priority_inversions", "dead"):
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    return f"{value:.2f}"


def _rank_key(value: float, higher: bool) -> float:
    if math.isnan(value):
        return math.inf
    return -value if higher else value


def _collection(value: object, name: str) -> Iterable[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidTypeError(
            f"compare() takes {name} as a collection such as a list, got {shown(value)}"
        )
    return value


def compare(
    policies: Iterable[Policy | str] | None,
    scenario: Scenario,
    *,
    seeds: Iterable[int] = (1, 2, 3),
    tasks: int | None = None,
) -> Comparison:
    """Run ``scenario`` under each policy on each seed; see :class:`Comparison`.

    ``policies`` are :class:`Policy` objects or built-in names (``None``: the
    built-in queue policies). O(policies x seeds) simulations.

    Raises:
        InvalidArgumentError: no policy, no seed, or a policy or a seed given twice.
        InvalidTypeError: policies or seeds not a collection of them (a lone
            name is refused as ambiguous: pass ``["fifo"]``).
        UnknownPolicyError: a name that is not a built-in policy.
    """
    if not isinstance(scenario, Scenario):
        raise InvalidTypeError(f"compare() takes a Scenario, got {scenario!r}")
    given = BUILT_IN if policies is None else _collection(policies, "policies")
    chosen = []
    for p in given:
        if isinstance(p, str):
            chosen.append(Policy.named(p))
        elif isinstance(p, Policy):
            chosen.append(p)
        else:
            raise InvalidTypeError(
                f"compare() takes policies as Policy values or names, got {shown(p)}"
            )
    if not chosen:
        raise InvalidArgumentError("compare() needs at least one policy")
    names = [p.name for p in chosen]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"compare() was given a policy twice: {names}")
    seed_list = tuple(check_int(s, "seed") for s in _collection(seeds, "seeds"))
    if not seed_list:
        raise InvalidArgumentError("compare() needs at least one seed")
    if len(set(seed_list)) < len(seed_list):
        # Two runs of one seed are one sample counted twice: the intervals would shrink.
        raise InvalidArgumentError(
            f"compare() was given a seed twice: {list(seed_list)}; each seed is one sample"
        )
    reports = {
        policy.name: tuple(
            Simulation(scenario, policy, seed=seed, tasks=tasks).run() for seed in seed_list
        )
        for policy in chosen
    }
    return Comparison(scenario.name, seed_list, reports)
