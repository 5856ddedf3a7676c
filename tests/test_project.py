"""The project's own promises: README commands, CI script, public API documentation."""

from __future__ import annotations

import ast
import importlib
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


def module_source(module: str) -> Path:
    """The file of a ``taskdist`` module or package."""
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def docstring_where_defined(module: str, name: str) -> str | None:
    """The docstring of ``name`` where it is defined, following re-exports from ``module``.

    A class or function has its own docstring; a constant or type alias has
    the string literal right after its assignment (the attribute docstring
    that Sphinx and editors show).
    """
    body = ast.parse(module_source(module).read_text()).body
    for position, node in enumerate(body):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == name:
                return ast.get_docstring(node)
            continue
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            following = body[position + 1] if position + 1 < len(body) else None
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                text = following.value.value
                return text if isinstance(text, str) else None
            return None
    for node in body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return docstring_where_defined(node.module, alias.name)
    raise AssertionError(f"{name} is neither defined nor imported in {module}")


def names_in_docs() -> set[str]:
    """Every identifier written as code (inline spans, fenced blocks) on a page in docs/."""
    names: set[str] = set()
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text()
        fence = re.compile(r"^```.*?^```", re.S | re.M)
        code = fence.findall(text) + re.findall(r"`([^`]+)`", fence.sub("", text))
        for snippet in code:
            snippet = re.sub(r"[\w./-]+\.(?:md|py)\b", "", snippet)  # file names are not names
            names.update(re.findall(r"[A-Za-z_]\w*", snippet))
    return names


# The hosts sit above the package root, which cannot import them: users import
# their names from these modules, the hosts' public roots.
HOST_ROOTS = ("taskdist.aio", "taskdist.threaded", "taskdist.executor")
HOST_LAYER = {"hosts", "aio", "threaded", "executor"}


def host_names() -> list[tuple[str, str]]:
    return [(root, name) for root in HOST_ROOTS for name in importlib.import_module(root).__all__]


def public_roots_of(module: str) -> set[str]:
    """The names that ``module``'s own exports must be among."""
    if module.split(".")[1] in HOST_LAYER:
        return {name for _, name in host_names()}
    return set(taskdist.__all__)


@pytest.mark.parametrize(
    ("root", "name"), [("taskdist", name) for name in sorted(taskdist.__all__)] + host_names()
)
def test_every_public_name_has_a_docstring(root: str, name: str) -> None:
    assert docstring_where_defined(root, name), f"{name} needs a docstring"


def test_every_public_name_is_on_a_docs_page() -> None:
    public = set(taskdist.__all__) | {name for _, name in host_names()}
    missing = sorted(public - names_in_docs())
    assert not missing, f"no page in docs/ mentions: {missing}"


def public_modules() -> list[str]:
    """The modules of the package whose names are public (no part starts with ``_``)."""
    modules = []
    for path in sorted((ROOT / "taskdist").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(part.startswith("_") for part in parts):
            modules.append(".".join(parts))
    return modules


# The command-line program: ``main`` is its entry point, not a library name. The
# simulator's public import path is ``taskdist.sim`` (it sits above the root's layer).
# Modules with a public path of their own: their names are public there, not at the root.
NOT_LIBRARY = {"taskdist.cli", "taskdist.testing"} | {
    m for m in public_modules() if m.startswith("taskdist.sim")
}


@pytest.mark.parametrize("module", sorted(set(public_modules()) - NOT_LIBRARY - {"taskdist"}))
def test_every_name_a_module_exports_is_public_at_the_root(module: str) -> None:
    exported = set(getattr(importlib.import_module(module), "__all__", ()))
    missing = sorted(exported - public_roots_of(module))
    assert not missing, (
        f"{module}.__all__ lists {missing}: export them from taskdist (a host's from "
        "taskdist.aio, taskdist.threaded or taskdist.executor), "
        "or drop them from __all__ if they are private"
    )


def test_tests_import_public_names_from_the_package_root() -> None:
    public = set(taskdist.__all__)
    reaching = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("taskdist."):
                names = {alias.name for alias in node.names} & public
                if names:
                    reaching.append(f"{path.name}: {node.module} {sorted(names)}")
    assert not reaching, f"import these from taskdist: {reaching}"


def test_docs_point_only_inside_the_repository() -> None:
    outside = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text()
        outside += [
            f"{page.name}: {word}"
            for word in ("DESIGN.md", "STYLE.md", "shared/", "reference/")
            if word in text
        ]
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" in target:
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                outside.append(f"{page.name}: {target}")
    assert not outside, f"links that leave the repository or lead nowhere: {outside}"


def test_code_and_comments_point_only_inside_the_repository() -> None:
    # The project stands alone: its code, tests, examples and benchmarks restate what a
    # reader needs instead of citing the notes and documents it was built from.
    outside = []
    for folder in ("taskdist", "tests", "examples", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "test_project.py":
                continue  # (the words it looks for)
            text = path.read_text()
            outside += [
                f"{path.relative_to(ROOT)}: {word}"
                for word in ("DESIGN.md", "STYLE.md", "shared/", "reference/")
                if word in text
            ]
    assert not outside, f"citations of files outside the repository: {outside}"


def test_public_classes_state_their_complexity() -> None:
    """Components (classes with methods beyond a value's) say what each operation costs."""
    missing = []
    public = [(taskdist, name) for name in taskdist.__all__]
    public += [(importlib.import_module(root), name) for root, name in host_names()]
    for module, name in public:
        obj = getattr(module, name)
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
