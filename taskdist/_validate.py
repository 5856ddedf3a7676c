"""Checks shared by every constructor and public method that takes input.

Each check returns the (normalised) value or raises a specific
:class:`~taskdist.errors.TaskdistError` whose message names the argument, says
what is allowed and shows what was given. They run once, at the boundary.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TypeVar

from taskdist.errors import InvalidArgumentError, InvalidTypeError, UnknownPolicyError

__all__ = [
    "check_choice",
    "check_enqueued_at",
    "check_hashable",
    "check_id",
    "check_int",
    "check_number",
    "check_optional_number",
    "check_resources",
    "check_skills",
]

_S = TypeVar("_S", bound=str)


def check_number(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    positive: bool = False,
    maximum: float | None = None,
) -> float:
    """A finite real number (not a bool), optionally ``>= minimum``, ``> 0``, ``<= maximum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTypeError(f"{name} must be a number, got {value!r}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond a float's range: infinite, as far as floats go
        result = math.inf
    if not math.isfinite(result):
        raise InvalidArgumentError(f"{name} must be a finite number, got {value!r}")
    if positive and result <= 0:
        raise InvalidArgumentError(f"{name} must be > 0, got {value!r}")
    if minimum is not None and result < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum:g}, got {value!r}")
    if maximum is not None and result > maximum:
        raise InvalidArgumentError(f"{name} must be <= {maximum:g}, got {value!r}")
    return result


def check_optional_number(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    positive: bool = False,
    maximum: float | None = None,
) -> float | None:
    """``None``, or what :func:`check_number` accepts."""
    if value is None:
        return None
    return check_number(value, name, minimum=minimum, positive=positive, maximum=maximum)


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """An ``int`` (not a bool), optionally ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_hashable(value: object, name: str) -> Hashable:
    """A hashable value (usable as a dict key)."""
    try:
        hash(value)
    except TypeError:
        raise InvalidTypeError(
            f"{name} must be hashable (str, int, tuple, ...), got {type(value).__name__} {value!r}"
        ) from None
    return value  # hash() succeeded: it is Hashable


def check_id(value: object, name: str) -> Hashable:
    """A hashable, non-empty identifier (not ``None``, not ``""``)."""
    if value is None:
        raise InvalidArgumentError(f"{name} must not be None")
    check_hashable(value, name)
    if isinstance(value, (str, bytes)) and not value:
        raise InvalidArgumentError(f"{name} must not be empty")
    return value


def check_skills(value: object, name: str) -> frozenset[str]:
    """A collection of skill names (strings); a lone ``str`` is refused as ambiguous."""
    if isinstance(value, (str, bytes)):
        raise InvalidTypeError(
            f"{name} must be a collection of skill names such as {{{value!r}}}, "
            f"not a single string {value!r}"
        )
    try:
        skills: frozenset[object] = frozenset(value)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidTypeError(
            f"{name} must be a collection of skill names (str), got {value!r}"
        ) from None
    for skill in skills:
        if not isinstance(skill, str) or not skill:
            raise InvalidTypeError(f"{name} must hold non-empty strings, got {skill!r}")
    return skills  # type: ignore[return-value]  # every member checked above


def check_resources(value: object, name: str) -> dict[str, float]:
    """A mapping of resource name (non-empty str) to a finite amount >= 0."""
    if not isinstance(value, Mapping):
        raise InvalidTypeError(
            f"{name} must be a mapping of resource name to amount, "
            f"such as {{'slots': 1}}, got {value!r}"
        )
    result: dict[str, float] = {}
    for resource, amount in value.items():
        if not isinstance(resource, str) or not resource:
            raise InvalidTypeError(
                f"{name} keys must be non-empty resource names (str), got {resource!r}"
            )
        result[resource] = check_number(amount, f"{name}[{resource!r}]", minimum=0.0)
    return result


def check_choice(value: object, name: str, choices: tuple[_S, ...]) -> _S:
    """One of ``choices`` (policy names)."""
    for choice in choices:
        if value == choice:
            return choice
    allowed = ", ".join(repr(c) for c in choices)
    raise UnknownPolicyError(f"{name} must be one of {allowed}, got {value!r}")


def check_enqueued_at(value: object, now: float) -> float:
    """A push's backdated enqueue time: a finite number no later than ``now``."""
    enqueued = check_number(value, "enqueued_at")
    if enqueued > now:
        raise InvalidArgumentError(
            f"enqueued_at must not be in the future (now is {now!r}), got {value!r}"
        )
    return enqueued
