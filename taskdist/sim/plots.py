"""Plots of a report with matplotlib (the optional ``[sim]`` extra).

Three panels: the queue depth over time, the cumulative distribution of the
wait per priority, and the utilisation of each worker over the arrival
window. O(samples) to draw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskdist.sim.report import Report, _require

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_report"]


def plot_report(report: Report, path: str | None = None) -> Figure:
    """Draw ``report`` (see the module docs); save to ``path`` when given.

    Raises:
        ImportError: matplotlib is not installed (``pip install "taskdist[sim]"``).
    """
    _require("matplotlib")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 3.8), layout="constrained")
    depth, cdf, workers = figure.subplots(1, 3)
    series = report.series
    if series.queue_depth:
        times, depths = zip(*series.queue_depth, strict=True)
        depth.plot(times, depths, linewidth=0.8)
    depth.set(title="queue depth", xlabel="time (s)", ylabel="tasks waiting")
    for priority, waits in sorted(series.waits_by_priority.items()):
        if waits:
            n = len(waits)
            cdf.step(
                sorted(waits),
                [(i + 1) / n for i in range(n)],
                where="post",
                label=f"priority {priority}",
            )
    cdf.set(title="wait, cumulative", xlabel="wait (s)", ylabel="share of tasks", ylim=(0, 1.01))
    if series.waits_by_priority:
        cdf.set_xscale("symlog", linthresh=1.0)
        cdf.set_xlim(left=0.0)
        cdf.legend(fontsize="small")
    names = list(series.worker_utilization)
    workers.bar(range(len(names)), [series.worker_utilization[n] for n in names])
    workers.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize="small")
    workers.axhline(report.utilization, color="black", linewidth=0.8, linestyle="--")
    workers.set(title="utilisation per worker", ylabel="busy share", ylim=(0, 1.0))
    figure.suptitle(f"{report.scenario} under {report.policy} (seed {report.seed})")
    if path is not None:
        figure.savefig(path, dpi=80)
    return figure
