"""python -m taskdist: the default command runs the demo on the built-in scenario."""

from __future__ import annotations

import subprocess
import sys

import pytest

from taskdist.cli import PLATFORM_INTENT_PRIORITY, main, run_platform_demo


def test_default_command_prints_waits_per_priority(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tasks", "300", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "300 platform workflows" in out
    for priority in sorted(set(PLATFORM_INTENT_PRIORITY.values())):
        assert any(line.split()[:1] == [str(priority)] for line in out.splitlines())


def test_demo_is_deterministic_for_a_seed() -> None:
    first = run_platform_demo(tasks=200, load=1.0, aging_rate=0.1, seed=7)
    second = run_platform_demo(tasks=200, load=1.0, aging_rate=0.1, seed=7)
    assert {p: s.percentiles() for p, s in first.items()} == {
        p: s.percentiles() for p, s in second.items()
    }
    assert sum(s.total for s in first.values()) == 200


def test_aging_bounds_the_least_urgent_wait_in_overload() -> None:
    plain = run_platform_demo(tasks=3000, load=1.1, aging_rate=0.0, seed=1)
    aged = run_platform_demo(tasks=3000, load=1.1, aging_rate=1 / 60, seed=1)
    lowest = max(plain)
    assert aged[lowest].percentiles().max < plain[lowest].percentiles().max


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskdist", "demo", "--tasks", "50"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "priority" in result.stdout
