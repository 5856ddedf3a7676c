"""Twin checks for refused calls: build two objects the same way, refuse a call on one.

A red-team test states a bad, extreme or re-entrant call and the specific
error it must raise; :func:`assert_refused` builds two twins with the same
factory, makes the call on one, checks the error, then compares what both
twins answer afterwards (``observe``: stats, membership, a full drain). A call
that raised but changed something shows up as a difference from the twin.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import pytest

T = TypeVar("T")


def assert_refused(
    build: Callable[[], T],
    call: Callable[[T], object],
    error: type[BaseException],
    observe: Callable[[T], Any],
    *,
    match: str | None = None,
) -> None:
    """``call(subject)`` raises ``error`` and ``observe`` sees the subject as its twin.

    ``observe`` may consume its argument (drain a queue): it runs once on each
    twin, after the refused call, and the two answers must be equal.
    """
    subject, twin = build(), build()
    with pytest.raises(error, match=match):
        call(subject)
    assert observe(subject) == observe(twin)


def plain(value: object) -> object:
    """A value made comparable: attrs classes and dicts by sorted items, NaN as text."""
    if attrs.has(type(value)):
        return plain(attrs.asdict(value, recurse=False))  # type: ignore[arg-type]
    if isinstance(value, dict):
        return sorted((repr(k), plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value
