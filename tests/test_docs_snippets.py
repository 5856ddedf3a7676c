"""The Python blocks of the docs pages listed here run, in order, as written.

Each page's blocks share one namespace (a later block may use what an
earlier one built), so a page reads as one session. A page joins the list
once every block on it runs on its own.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = [
    "distributor.md",
    "hosting.md",
    "policies.md",
    "flow-control.md",
    "persistence.md",
    "fairness.md",
    "deadlines.md",
    "../README.md",
]


def blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_of_the_page_runs(page: str) -> None:
    found = blocks(page)
    assert found, f"{page} has no python blocks"
    namespace: dict[str, object] = {"__name__": f"docs_{page}"}
    for number, code in enumerate(found, 1):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(code, f"{page} block {number}", "exec"), namespace)
            except Exception as error:  # pragma: no cover - the failure message is the point
                pytest.fail(f"{page} block {number} raised {type(error).__name__}: {error}")


def test_the_distributor_page_shows_what_explain_says() -> None:
    """The comments of the explain() block are what explain() answers."""
    code = blocks("distributor.md")[-1]
    printed: list[str] = []
    namespace: dict[str, object] = {"print": lambda *a: printed.append(" ".join(map(str, a)))}
    exec("from taskdist import Distributor, ManualClock, Task, Worker\n" + code, namespace)
    expected = [line.split("# ")[1] for line in code.splitlines() if "print(d.explain" in line]
    assert len(printed) == len(expected)
    for said, shown in zip(printed, expected, strict=True):
        prefix = shown.split("...")[0].strip()
        assert said.startswith(prefix), (said, shown)
