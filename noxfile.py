"""The one entry point for the project's chores: ``nox -s tests lint typecheck docs bench``."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, property and stateful tests, plus a one-shot smoke run of the benchmarks."""
    session.install("-e", ".[test,dask]")
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session
def stateful(session: nox.Session) -> None:
    """The state machines at length: 200 runs of 100 steps each (20,000 steps per machine)."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "-k",
        "Machine",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "extended"},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".", "mypy")
    session.run("mypy", "--strict", "taskdist")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks, timed, side by side with the alternatives (slow: minutes)."""
    session.install("-e", ".[bench]")
    session.run(
        "pytest",
        "benchmarks",
        "--benchmark-enable",
        "--benchmark-only",
        "--benchmark-group-by=group",
        "--benchmark-columns=min,mean,median,rounds",
        *session.posargs,
        env={"TASKDIST_BENCH_FULL": "1"},
    )
    # The side-by-side ratio tables published in docs/performance.md.
    for script in sorted(Path("benchmarks").glob("compare_*.py")):
        session.run("python", str(script))


@nox.session
def docs(session: nox.Session) -> None:
    """Doctests of every public docstring, and the examples run end to end."""
    session.install("-e", ".[test]")
    session.run("pytest", "--doctest-modules", "taskdist", "-q")
    for example in sorted(Path("examples").glob("*.py")):
        session.run("python", str(example))
