"""A balancer's own state as plain data: the snapshot convention for balancers.

A balancer that keeps state between calls (a position, running weights,
bindings, a random source) has ``snapshot()`` and ``load_snapshot(data)``
through :class:`Snapshotted`: a header (``kind``, the class's name, and the
format ``version``) and the fields the class writes. A balancer without them
(a strategy of the user's own, or one that keeps nothing) still takes part:
:func:`state_of` writes ``None`` for it, or only its random source when it
has an ``rng`` attribute holding a ``random.Random``, and
:func:`prepare_state` checks that what was written fits the balancer given
before anything is loaded.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from taskdist._snapshot import (
    Fields,
    check_header,
    decode_rng,
    encode_rng,
    header,
    prepare_load,
    refuse,
)
from taskdist._validate import shown

__all__ = ["Snapshotted", "prepare_state", "state_of"]


class Snapshotted:
    """``snapshot()`` / ``load_snapshot(data)`` for a balancer; a class says which fields.

    A subclass implements :meth:`_fields` (its state as plain data) and
    :meth:`_read_fields` (checks them; returns what loads them). The
    ``kind`` is the class's own name, so a snapshot loads into a balancer of
    the same class only.
    """

    __slots__ = ()

    def snapshot(self) -> dict[str, Any]:
        """The balancer's state as plain data, starting with ``kind`` and ``version``.

        See ``docs/persistence.md`` and the class's docstring for the fields.
        O(size of the state).
        """
        return {**header(type(self).__name__), **self._fields()}

    def load_snapshot(self, data: object) -> None:
        """Take on the state :meth:`snapshot` wrote, into a balancer of the same class
        and configuration. O(size of the state).

        Raises:
            SnapshotError: not a snapshot of this class (both named), of
                another format version or configuration, or a field missing
                or of the wrong type; nothing changes.
        """
        self._prepare_snapshot(data, "balancer")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, type(self).__name__, where)
        load = self._read_fields(fields, where)
        fields.done()
        return load

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def _read_fields(self, fields: Fields, where: str) -> Callable[[], None]:
        raise NotImplementedError


def _supported(balancer: object) -> bool:
    return callable(getattr(balancer, "snapshot", None)) and callable(
        getattr(balancer, "_prepare_snapshot", None)
    )


def _rng_of(balancer: object) -> random.Random | None:
    rng = getattr(balancer, "rng", None)
    return rng if isinstance(rng, random.Random) else None


def state_of(balancer: object) -> Any:
    """What a snapshot holds of ``balancer``: its own ``snapshot()``, else
    ``{"rng": ...}`` for a random source in its ``rng`` attribute, else ``None``."""
    if _supported(balancer):
        return balancer.snapshot()  # type: ignore[attr-defined]
    rng = _rng_of(balancer)
    return None if rng is None else {"rng": encode_rng(rng)}


def prepare_state(balancer: object, data: object, where: str) -> Callable[[], None]:
    """Check that ``data`` (what :func:`state_of` wrote) fits ``balancer``; what loads it.

    Raises:
        SnapshotError: the state of another class (both named), of a balancer
            with or without snapshot support when this one is the other way,
            or not a valid state; ``balancer`` is unchanged.
    """
    name = type(balancer).__name__
    written = data.get("kind") if type(data) is dict else None
    if _supported(balancer):
        if written is None:
            refuse(
                where,
                f"holds {shown(data)}, not the state of a {name}: the snapshot was "
                "taken with a balancer of another class",
            )
        return prepare_load(balancer, data, where)
    if written is not None:
        refuse(
            where,
            f"is the state of a {written}; the balancer given, a {name}, "
            "has no snapshot() / load_snapshot() to take it",
        )
    rng = _rng_of(balancer)
    if rng is None:
        if data is not None:
            refuse(where, f"must be None for a {name} (it has no random source), got {shown(data)}")
        return lambda: None
    if type(data) is not dict or set(data) != {"rng"}:
        refuse(where, f"must be {{'rng': ...}} for a {name} (its random source), got {shown(data)}")
    state = decode_rng(data["rng"], f"{where}.rng")
    return lambda: rng.setstate(state)
