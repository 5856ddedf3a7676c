"""The error hierarchy: every refusal is a TaskdistError and the matching builtin."""

from __future__ import annotations

import builtins
import inspect
import re
from pathlib import Path

import pytest

import taskdist
from taskdist import errors


def all_error_classes() -> list[type[Exception]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, Exception) and obj.__module__ == errors.__name__
    ]


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_is_a_taskdist_error_exported_and_documented(cls: type[Exception]) -> None:
    assert issubclass(cls, errors.TaskdistError)
    assert getattr(taskdist, cls.__name__) is cls
    assert cls.__name__ in errors.__all__
    assert cls.__doc__
    assert cls.__name__ in (errors.__doc__ or ""), "listed in the module's hierarchy tree"


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.InvalidArgumentError, ValueError),
        (errors.InvalidTypeError, TypeError),
        (errors.DuplicateTaskError, ValueError),
        (errors.UnknownTaskError, KeyError),
        (errors.UnknownWorkerError, KeyError),
        (errors.OverReleaseError, ValueError),
    ],
)
def test_errors_are_also_the_builtin_they_are_a_kind_of(
    cls: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(cls, builtin)


def test_unknown_errors_print_their_message_unquoted() -> None:
    assert str(errors.UnknownTaskError("no task with id 'x'")) == "no task with id 'x'"


def test_the_error_table_of_the_docs_lists_every_error_and_what_it_also_is() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "index.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| `(\w+)` \|", page, re.M))
    assert set(rows) == {cls.__name__ for cls in all_error_classes()}
    for name, also in rows.items():
        kind = getattr(taskdist, also, None) or getattr(builtins, also)
        assert issubclass(getattr(taskdist, name), kind), f"{name} is not a {also}"
