"""The package's architecture: imports go one way, and docs/architecture.md draws the tree.

Every module belongs to a layer, named by its first component under
``taskdist`` (``taskdist.queues.fair`` is in ``queues``, hence in the
components). A module may import from its own layer and the layers below it,
never from one above: so the vocabulary knows nothing of the components, the
components nothing of balancing, and so on up to the command line. Imports
are read from the source (``ast``), including those inside functions and
under ``if TYPE_CHECKING:``, so a deferred import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "taskdist"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# The layers, lowest first. Each names the top-level modules and packages of
# ``taskdist`` in it (fnmatch patterns); "" is the package root,
# taskdist/__init__.py, which re-exports the public names of the layers
# below it. A new top-level module or package goes in here before its first
# test can pass.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # The shared vocabulary, and private shared structures (_validate, _lazy_heap, ...).
    ("vocabulary", ("clock", "task", "errors", "metrics", "planning", "_[!_]*")),
    ("components", ("queues", "workers", "resilience", "batching")),
    ("balancing", ("balancing",)),
    ("dispatch", ("dispatch",)),
    ("package root", ("",)),
    # The Queue contract as tests, for any queue (taskdist.testing).
    ("testing", ("testing",)),
    # The hosts users import as taskdist.aio, taskdist.threaded, taskdist.executor.
    ("hosts", ("hosts", "aio", "threaded", "executor")),
    ("sim", ("sim",)),
    ("cli", ("cli", "__main__")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The index in LAYERS of the layer ``module`` (a ``taskdist`` module) belongs to."""
    top = module.split(".")[1] if "." in module else ""
    found = [
        index
        for index, (_, patterns) in enumerate(LAYERS)
        if any(fnmatch.fnmatchcase(top, pattern) for pattern in patterns)
    ]
    assert len(found) == 1, f"{module} must be in exactly one layer of LAYERS, is in {found}"
    return found[0]


def imported_modules(module: str, path: Path) -> set[str]:
    """The ``taskdist`` modules that ``module`` imports anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name == "taskdist" or name.startswith("taskdist.")}


def test_layer_data_names_each_layer_once() -> None:
    names = [name for name, _ in LAYERS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("module", sorted(modules()))
def test_every_module_belongs_to_one_layer(module: str) -> None:
    layer_of(module)


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for module, path in modules().items():
        own = layer_of(module)
        for imported in sorted(imported_modules(module, path)):
            if layer_of(imported) > own:
                upward.append(
                    f"{module} ({LAYERS[own][0]}) imports {imported} "
                    f"({LAYERS[layer_of(imported)][0]})"
                )
    assert not upward, "imports must go down the layers:\n" + "\n".join(upward)


def test_the_import_check_sees_imports_inside_functions_and_relative_ones(
    tmp_path: Path,
) -> None:
    source = tmp_path / "taskdist" / "queues" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from . import priority\n"
        "from ..dispatch import dead_letter\n"
        "def f():\n"
        "    import taskdist.cli\n"
    )
    found = imported_modules("taskdist.queues.x", source)
    assert found == {"taskdist.queues", "taskdist.dispatch", "taskdist.cli"}
    assert layer_of("taskdist.cli") > layer_of("taskdist.queues.x")


def drawn_tree() -> set[str]:
    """The files the tree on the architecture page shows, as paths under the repository.

    The tree is the code block that starts with ``taskdist/``; an entry is
    indented two spaces per level and is a name ending in ``/`` (a folder),
    ``.py`` or ``.typed``; the words after it, and lines that carry on a
    description, are not names.
    """
    text = ARCHITECTURE.read_text()
    block = re.search(r"```\n(taskdist/\n.*?)```", text, re.S)
    assert block, "docs/architecture.md draws the package tree in a block opening with taskdist/"
    files: set[str] = set()
    folders = ["taskdist"]
    for line in block.group(1).splitlines()[1:]:
        match = re.match(r"( *)([\w.]+(?:/|\.py|\.typed))(?:\s|$)", line)
        if not match:
            continue
        depth, name = len(match.group(1)) // 2, match.group(2)
        assert 1 <= depth <= len(folders), f"bad indentation on the architecture page: {line!r}"
        del folders[depth:]
        if name.endswith("/"):
            folders.append(name[:-1])
        else:
            files.add("/".join([*folders, name]))
    return files


def test_every_file_drawn_on_the_architecture_page_exists() -> None:
    missing = sorted(path for path in drawn_tree() if not (ROOT / path).is_file())
    assert not missing, f"docs/architecture.md draws files that do not exist: {missing}"


def test_every_module_of_the_package_is_drawn_on_the_architecture_page() -> None:
    drawn = drawn_tree()
    absent = sorted(
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and str(path.relative_to(ROOT)) not in drawn
    )
    assert not absent, f"docs/architecture.md does not draw: {absent}"


def test_the_architecture_page_states_the_layers_in_the_order_checked_here() -> None:
    chain = re.search(r"`(\w[\w ]*(?: ← \w[\w ]*)+)`", ARCHITECTURE.read_text())
    assert chain, "docs/architecture.md states the import direction as `a ← b ← ...`"
    assert chain.group(1).split(" ← ") == [name for name, _ in LAYERS]
