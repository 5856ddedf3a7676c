"""Checks shared by every constructor and public method that takes input.

Each check returns the (normalised) value or raises a specific
:class:`~taskdist.errors.TaskdistError` whose message names the argument, says
what is allowed and shows what was given. They run once, at the boundary.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Final, TypeVar

from taskdist.errors import InvalidArgumentError, InvalidTypeError, UnknownPolicyError

__all__ = [
    "MAX_AMOUNT",
    "MAX_CAPACITY",
    "MAX_WEIGHT",
    "MIN_CAPACITY",
    "MIN_WEIGHT",
    "check_choice",
    "check_enqueued_at",
    "check_hashable",
    "check_id",
    "check_int",
    "check_key",
    "check_number",
    "check_optional_number",
    "check_resources",
    "check_skills",
    "shown",
]

_S = TypeVar("_S", bound=str)

MAX_AMOUNT: Final = 1e18
# A worker's numbers: the tracker sums, divides and averages them, so they stay
# where those results are finite and exact enough (see workers/_ranges.py).
MIN_WEIGHT: Final = 1e-9
MAX_WEIGHT: Final = 1e9
MIN_CAPACITY: Final = 1e-9
MAX_CAPACITY: Final = 1e15
"""The largest cost, duration, resource amount, capacity or weight a value accepts.

More than any real task or worker needs (3e10 years in seconds, an exabyte in
bytes), and small enough that the sums and ratios components form from such
numbers stay finite: a trillion of them add up to 1e30, far from the float
limit of 1.8e308. Times (clocks, deadlines) are not bounded by it.
"""


_LONGEST_SHOWN = 80


def shown(value: object) -> str:
    """``repr(value)`` for an error message, cut to a readable length.

    Never raises: a huge int (whose decimal form Python refuses to build) is
    described by its size, and a ``repr`` that fails by the value's type.
    """
    if isinstance(value, int) and value.bit_length() > 256:
        return f"an int of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:
        return f"an object of type {type(value).__name__} (its repr fails)"
    if len(text) > _LONGEST_SHOWN:
        return text[: _LONGEST_SHOWN - 3] + "..."
    return text


def check_number(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    positive: bool = False,
    maximum: float | None = None,
) -> float:
    """A finite real number (not a bool), optionally ``>= minimum``, ``> 0``, ``<= maximum``."""
    if value.__class__ is float and -math.inf < value < math.inf:
        result: float = value  # the usual case: finite (NaN fails <)
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidTypeError(f"{name} must be a number, got {shown(value)}")
        try:
            result = float(value)
        except OverflowError:  # an int beyond the float range
            result = math.inf
        if not math.isfinite(result):
            raise InvalidArgumentError(f"{name} must be a finite number, got {shown(value)}")
    if positive and result <= 0:
        raise InvalidArgumentError(f"{name} must be > 0, got {shown(value)}")
    if minimum is not None and result < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum:g}, got {shown(value)}")
    if maximum is not None and result > maximum:
        raise InvalidArgumentError(f"{name} must be <= {maximum:g}, got {shown(value)}")
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


def check_int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An ``int`` (not a bool), optionally ``>= minimum`` and ``<= maximum``."""
    if type(value) is int and (minimum is None or value >= minimum) and maximum is None:
        return value  # the usual call: a plain int within a lower bound
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{name} must be an int, got {shown(value)}")
    if minimum is not None and value < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum}, got {shown(value)}")
    if maximum is not None and value > maximum:
        raise InvalidArgumentError(f"{name} must be <= {maximum}, got {shown(value)}")
    return int(value)


def check_hashable(value: object, name: str) -> Hashable:
    """A hashable value (usable as a dict key)."""
    try:
        hash(value)
    except Exception:  # TypeError, or whatever a broken __hash__ raises
        raise InvalidTypeError(
            f"{name} must be hashable (str, int, tuple, ...), "
            f"got {type(value).__name__} {shown(value)}"
        ) from None
    return value  # hash() succeeded: it is Hashable


def _differs_from_itself(value: object) -> bool:
    """``value != value``, as for a NaN, or a tuple or frozenset holding one."""
    if value.__class__ in (str, int, bytes):
        return False  # the common identities, answered without a comparison
    try:
        if value != value:
            return True
    except Exception:
        return True  # == raised: it cannot tell one key from another either
    if isinstance(value, (tuple, frozenset)):
        return any(_differs_from_itself(item) for item in value)
    return False


def check_key(value: object, name: str) -> Hashable:
    """A value that can serve as an identity: hashable and equal to itself.

    A NaN (``float("nan")``, ``Decimal("NaN")``, or a tuple holding one) is
    refused: it is not equal to itself, so a dict keyed by it never finds it
    again, duplicate checks pass and per-key limits never apply. For tenants,
    task and worker ids, affinity and limiter keys, batch groups.
    """
    check_hashable(value, name)
    if _differs_from_itself(value):
        raise InvalidArgumentError(
            f"{name} must be equal to itself (not NaN, nor a tuple holding a NaN), "
            f"got {shown(value)}"
        )
    return value


def check_id(value: object, name: str) -> Hashable:
    """An identifier: what :func:`check_key` accepts, except ``None`` and ``""``."""
    cls = value.__class__
    if (cls is str and value) or cls is int:
        return value  # the usual ids: hashable, equal to themselves, not empty
    if value is None:
        raise InvalidArgumentError(f"{name} must not be None")
    check_key(value, name)
    if isinstance(value, (str, bytes)) and not value:
        raise InvalidArgumentError(f"{name} must not be empty")
    return value


def check_skills(value: object, name: str) -> frozenset[str]:
    """A collection of skill names (strings); a lone ``str`` is refused as ambiguous."""
    if isinstance(value, (str, bytes)):
        raise InvalidTypeError(
            f"{name} must be a collection of skill names such as {{{shown(value)}}}, "
            f"not a single string {shown(value)}"
        )
    try:
        skills: frozenset[object] = frozenset(value)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidTypeError(
            f"{name} must be a collection of skill names (str), got {shown(value)}"
        ) from None
    for skill in skills:
        if not isinstance(skill, str):
            raise InvalidTypeError(f"{name} must hold skill names (str), got {shown(skill)}")
        if not skill:
            raise InvalidArgumentError(
                f"{name} must hold non-empty skill names, got {shown(skill)}"
            )
    return skills  # type: ignore[return-value]  # every member checked above


def check_resources(value: object, name: str, *, maximum: float | None = None) -> dict[str, float]:
    """A mapping of resource name (non-empty str) to a finite amount >= 0 (and <= ``maximum``)."""
    if not isinstance(value, Mapping):
        raise InvalidTypeError(
            f"{name} must be a mapping of resource name to amount, "
            f"such as {{'slots': 1}}, got {shown(value)}"
        )
    result: dict[str, float] = {}
    for resource, amount in value.items():
        if not isinstance(resource, str):
            raise InvalidTypeError(
                f"{name} keys must be resource names (str), got {shown(resource)}"
            )
        if not resource:
            raise InvalidArgumentError(f"{name} keys must be non-empty resource names, got ''")
        result[resource] = check_number(
            amount, f"{name}[{shown(resource)}]", minimum=0.0, maximum=maximum
        )
    return result


def check_choice(value: object, name: str, choices: tuple[_S, ...]) -> _S:
    """One of ``choices`` (policy names)."""
    for choice in choices:
        if value == choice:
            return choice
    allowed = ", ".join(repr(c) for c in choices)
    raise UnknownPolicyError(f"{name} must be one of {allowed}, got {shown(value)}")


def check_enqueued_at(value: object, now: float) -> float:
    """A push's backdated enqueue time: a finite number no later than ``now``."""
    enqueued = check_number(value, "enqueued_at")
    if enqueued > now:
        raise InvalidArgumentError(
            f"enqueued_at must not be in the future (now is {now!r}), got {shown(value)}"
        )
    return enqueued
