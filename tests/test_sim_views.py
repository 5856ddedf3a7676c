"""The simulator's optional views: progress on long runs, and clear errors without the extras."""

from __future__ import annotations

import io
import sys

import pytest

from taskdist.sim import Simulation, scenarios
from taskdist.sim.progress import Progress


def test_progress_prints_plain_quarters_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(100, "simulating", True, stream=stream)
    for done in range(1, 101):
        progress.update(done)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines == [f"simulating: {n} / 100 tasks" for n in (25, 50, 75, 100)]


def test_progress_stays_quiet_by_default_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(1_000_000, "simulating", None, stream=stream)
    progress.update(500_000)
    progress.close()
    assert stream.getvalue() == ""


def test_without_pandas_to_frame_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = Simulation(scenarios.mm_c(1.0, 1.0, 2, tasks=50), seed=1).run()
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"taskdist\[sim\]"):
        report.to_frame()


def test_without_matplotlib_plot_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = Simulation(scenarios.mm_c(1.0, 1.0, 2, tasks=50), seed=1).run()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"taskdist\[sim\]"):
        report.plot()
