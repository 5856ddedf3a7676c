"""The simulation page's Python blocks run as written, and its figures are what the code says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from taskdist import erlang_c, mean_wait, servers_for_service_level, service_level

PAGE = Path(__file__).resolve().parent.parent / "docs" / "simulation.md"


def test_every_python_block_of_the_simulation_page_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) >= 2
    namespace: dict[str, object] = {"__name__": "docs_simulation"}
    for number, code in enumerate(blocks, 1):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(code, f"simulation.md block {number}", "exec"), namespace)
            except Exception as error:  # pragma: no cover - the message is the point
                pytest.fail(f"simulation.md block {number} raised {type(error).__name__}: {error}")


def test_the_planning_figures_on_the_page_are_the_functions_answers() -> None:
    text = PAGE.read_text()
    assert f"{erlang_c(55, 48.0):.4f}" in text
    assert f"{mean_wait(0.2, 240.0, 55):.2f} s" in text
    assert f"{service_level(0.2, 240.0, 55, 15.0):.3f}" in text
    assert servers_for_service_level(0.2, 240.0, 15.0, 0.8) == 55
