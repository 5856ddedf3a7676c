"""Plain data in and out: the shared grammar of every component's snapshot.

A snapshot is made of ``dict`` (with ``str`` keys), ``list``, ``str``,
``int``, ``float``, ``bool`` and ``None`` only, so ``json.dumps`` writes it
whenever the task payloads it carries are JSON themselves. Each component's
snapshot starts with a header (``kind`` and ``version``); reading one checks
the header, every field's presence and type, and refuses anything else with
:class:`~taskdist.errors.SnapshotError` before the component changes.

Versions: every kind starts at :data:`SNAPSHOT_VERSION`. A kind whose format
changes writes the next version of its own and keeps reading the ones before
it (a field added is then read only from the versions that have it, and an
older snapshot takes what the older format meant), so a snapshot written by
an earlier taskdist still loads, and one from a later taskdist is refused by
its version rather than by a field it does not know.

Ids, tenants, keys and groups are any hashable a task accepts; here they must
be ``None``, ``bool``, ``int``, ``float``, ``str``, or tuples and frozensets
of those, written as ``{"tuple": [...]}`` and ``{"frozenset": [...]}`` (a
dict is never hashable, so the tags cannot be mistaken for a value). Maps
keyed by such values are written as lists of ``[key, value]`` pairs, since
JSON keys are strings only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Hashable
from typing import Any, Final, NoReturn

from taskdist._validate import shown
from taskdist.errors import SnapshotError, TaskdistError

__all__ = [
    "SNAPSHOT_VERSION",
    "Fields",
    "as_snapshot_error",
    "check_header",
    "decode_key",
    "decode_rng",
    "encode_key",
    "encode_rng",
    "header",
    "one_of",
    "prepare_load",
    "refuse",
    "snapshot_part",
]

SNAPSHOT_VERSION: Final = 1
"""The first format version of every kind of snapshot (most are still at it)."""

_SCALARS: Final = (str, int, float, bool, type(None))
_WORD: Final = 2**32
"""One past the largest word of a ``random.Random`` state."""


def refuse(where: str, problem: str) -> NoReturn:
    """Raise the :class:`SnapshotError` for ``problem`` found at ``where``."""
    raise SnapshotError(f"cannot restore the snapshot: {where} {problem}")


def one_of(value: object, names: Collection[str]) -> bool:
    """Whether ``value`` is one of ``names`` (the values of an enum): a ``str`` among
    them. A value of another type is none of them, a list or dict read from a hostile
    snapshot included (asking a set or dict for it would raise ``TypeError``)."""
    return type(value) is str and value in names


def header(kind: str, version: int = SNAPSHOT_VERSION) -> dict[str, Any]:
    """The opening fields of a component's snapshot, in its kind's format ``version``."""
    return {"kind": kind, "version": version}


def check_header(
    data: object, kind: str, where: str, versions: tuple[int, ...] = (SNAPSHOT_VERSION,)
) -> Fields:
    """Read a component snapshot's header; the :class:`Fields` of the rest, whose
    ``version`` says which of the ``versions`` this code reads it is.

    Raises:
        SnapshotError: not a dict, another kind, or a version this code does not read.
    """
    fields = Fields(data, where)
    found = fields.text("kind")
    if found != kind:
        refuse(where, f"is a snapshot of a {found}, not of a {kind}")
    version = fields.integer("version")
    if version not in versions:
        known = ", ".join(map(str, versions))
        refuse(
            where,
            f"has format version {version}; this taskdist reads "
            + (f"version {known} only" if len(versions) == 1 else f"versions {known}")
            + f" of a {kind}",
        )
    fields.version = version
    return fields


class Fields:
    """Typed reads of one snapshot dict; every refusal names the field and what was wrong.

    ``done()`` refuses fields that were never read (a snapshot from another
    format, or corrupted).
    """

    __slots__ = ("_data", "_read", "version", "where")

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            refuse(where, f"must be a dict, got {shown(data)}")
        self._data: dict[str, Any] = data
        self._read: set[str] = set()
        self.where = where
        self.version = SNAPSHOT_VERSION  # the format read, once a header says so

    def _get(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            refuse(self.where, f"has no field {name!r}")
        self._read.add(name)
        return value

    def _wrong(self, name: str, wanted: str, value: object) -> NoReturn:
        refuse(f"{self.where}.{name}", f"must be {wanted}, got {shown(value)}")

    def value(self, name: str) -> Any:
        """The field as it is (a payload)."""
        return self._get(name)

    def integer(self, name: str, minimum: int | None = None) -> int:
        return self._int(name, self._get(name), minimum)

    def opt_integer(self, name: str, minimum: int | None = None) -> int | None:
        value = self._get(name)
        return None if value is None else self._int(name, value, minimum)

    def _int(self, name: str, value: object, minimum: int | None) -> int:
        if type(value) is not int or (minimum is not None and value < minimum):
            self._wrong(name, "an int" + ("" if minimum is None else f" >= {minimum}"), value)
        return value

    def number(self, name: str) -> float:
        return self._number(name, self._get(name))

    def opt_number(self, name: str) -> float | None:
        value = self._get(name)
        return None if value is None else self._number(name, value)

    def _number(self, name: str, value: object) -> float:
        if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
            self._wrong(name, "a finite number", value)
        return float(value)  # type: ignore[arg-type]

    def boolean(self, name: str) -> bool:
        value = self._get(name)
        if type(value) is not bool:
            self._wrong(name, "a bool", value)
        return value

    def text(self, name: str) -> str:
        value = self._get(name)
        if type(value) is not str:
            self._wrong(name, "a str", value)
        return value

    def opt_text(self, name: str) -> str | None:
        value = self._get(name)
        if value is not None and type(value) is not str:
            self._wrong(name, "a str or None", value)
        return value

    def items(self, name: str) -> list[Any]:
        value = self._get(name)
        if type(value) is not list:
            self._wrong(name, "a list", value)
        return value

    def counts(self, name: str, size: int) -> list[int]:
        """A list of ``size`` counters (ints >= 0)."""
        value = self.items(name)
        if len(value) != size or not all(type(n) is int and n >= 0 for n in value):
            self._wrong(name, f"{size} ints >= 0", value)
        return value

    def same(self, name: str, mine: object, owner: str) -> None:
        """Refuse a configuration field that differs from the loading instance's ``mine``."""
        theirs = self._get(name)
        if theirs != mine or (type(theirs) is bool and type(mine) is not bool):
            refuse(f"{self.where}.{name}", f"is {shown(theirs)}; this {owner} has {shown(mine)}")

    def key(self, name: str) -> Hashable:
        return decode_key(self._get(name), f"{self.where}.{name}")

    def pairs(self, name: str) -> list[tuple[Any, Any]]:
        """A list of ``[key, value]`` pairs; the keys decoded, the values as they are."""
        where = f"{self.where}.{name}"
        found = []
        for i, pair in enumerate(self.items(name)):
            if type(pair) is not list or len(pair) != 2:
                refuse(f"{where}[{i}]", f"must be a [key, value] pair, got {shown(pair)}")
            found.append((decode_key(pair[0], f"{where}[{i}][0]"), pair[1]))
        return found

    def done(self) -> None:
        """Refuse fields no read asked for."""
        extra = sorted(set(self._data) - self._read)
        if extra:
            refuse(self.where, f"has unknown fields {extra}")


def encode_key(value: object, what: str) -> Any:
    """A hashable (id, tenant, key, group) as plain data.

    Raises:
        SnapshotError: a value of a kind a snapshot cannot carry.
    """
    if isinstance(value, _SCALARS):
        if type(value) not in _SCALARS:  # a subclass (an enum member): not data
            raise SnapshotError(
                f"cannot write {what} {shown(value)} of type {type(value).__name__} to a "
                "snapshot: ids, tenants, keys and groups must be None, bool, int, float, "
                "str, or tuples and frozensets of those"
            )
        return value
    if type(value) is tuple:
        return {"tuple": [encode_key(item, what) for item in value]}
    if type(value) is frozenset:
        items = [encode_key(item, what) for item in value]
        return {"frozenset": sorted(items, key=repr)}
    raise SnapshotError(
        f"cannot write {what} {shown(value)} of type {type(value).__name__} to a snapshot: "
        "ids, tenants, keys and groups must be None, bool, int, float, str, or tuples and "
        "frozensets of those"
    )


def decode_key(data: object, where: str) -> Hashable:
    """The hashable :func:`encode_key` wrote."""
    if type(data) in _SCALARS:
        return data
    if type(data) is dict and len(data) == 1:
        (tag, items), *_ = data.items()
        if tag in ("tuple", "frozenset") and type(items) is list:
            values = [decode_key(item, f"{where}.{tag}") for item in items]
            return tuple(values) if tag == "tuple" else frozenset(values)
    refuse(
        where, f"must be an id (None, bool, int, float, str, tuple or frozenset), got {shown(data)}"
    )


def snapshot_part(part: object, what: str) -> Any:
    """``part.snapshot()``, or a :class:`SnapshotError` naming its type if it has none."""
    take = getattr(part, "snapshot", None)
    if not callable(take) or not callable(getattr(part, "_prepare_snapshot", None)):
        raise SnapshotError(
            f"cannot snapshot {what}: a {type(part).__name__} has no snapshot support yet"
        )
    return take()


def prepare_load(part: object, data: object, where: str) -> Callable[[], None]:
    """Check ``data`` for ``part`` (a component with snapshot support); what loads it."""
    prepare = getattr(part, "_prepare_snapshot", None)
    if not callable(prepare):
        refuse(where, f"cannot be loaded into a {type(part).__name__} (no snapshot support)")
    load: Callable[[], None] = prepare(data, where)
    return load


def encode_rng(rng: random.Random) -> list[Any]:
    """The state of ``rng`` as plain data."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def decode_rng(data: object, where: str) -> tuple[Any, ...]:
    """The ``random.Random`` state :func:`encode_rng` wrote, checked on a scratch generator."""
    if type(data) is not list or len(data) != 3 or type(data[1]) is not list:
        refuse(
            where, f"must be a random generator's state [version, [ints], gauss], got {shown(data)}"
        )
    # (setstate itself keeps only the low 32 bits of a word that fits a C long, and
    # raises OverflowError for one that does not: each is checked here instead.)
    bad = next((w for w in data[1] if type(w) is not int or not 0 <= w < _WORD), None)
    if bad is not None:
        refuse(where, f"must hold 32-bit words, got {shown(bad)}")
    if data[2] is not None and type(data[2]) is not float:
        refuse(where, f"must hold None or a float as its gauss, got {shown(data[2])}")
    state = (data[0], tuple(data[1]), data[2])
    try:
        random.Random().setstate(state)
    except (TypeError, ValueError) as error:
        refuse(where, f"is not a random generator's state ({error})")
    return state


def as_snapshot_error(error: TaskdistError, where: str) -> SnapshotError:
    """A validation error met while rebuilding a value, as the snapshot's fault."""
    return SnapshotError(f"cannot restore the snapshot: {where} is not valid ({error})")
