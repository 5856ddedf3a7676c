"""The project's own promises: README commands, CI script, public API documentation."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import taskdist

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block, "the README opens with a bash block of commands"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_the_run_and_test_commands() -> None:
    run, test = readme_commands()[:2]
    assert "python -m taskdist" in run and "pip install" in run
    assert "pytest" in test and "pip install" in test


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = readme_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


@pytest.mark.parametrize("name", sorted(set(taskdist.__all__) - {"__version__"}))
def test_every_public_name_is_documented(name: str) -> None:
    obj = getattr(taskdist, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert inspect.getdoc(obj), f"{name} needs a docstring"


def test_public_classes_state_their_complexity() -> None:
    """Components (classes with methods beyond a value's) say what each operation costs."""
    missing = []
    for name in taskdist.__all__:
        obj = getattr(taskdist, name)
        if not inspect.isclass(obj) or issubclass(obj, BaseException):
            continue
        if getattr(obj, "_is_protocol", False):
            continue  # a protocol's implementations state their own costs
        methods = [
            m
            for m, f in vars(obj).items()
            if inspect.isfunction(f) and not m.startswith("_") and m not in ("now",)
        ]
        if not methods:
            continue
        text = (inspect.getdoc(obj) or "") + "".join(
            inspect.getdoc(getattr(obj, m)) or "" for m in methods
        )
        if "O(" not in text:
            missing.append(name)
    assert not missing, f"no complexity stated for: {missing}"
