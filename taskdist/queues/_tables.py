"""Giving back the memory of a dict or set after many deletions.

CPython never shrinks a dict or a set when keys are deleted: one that held a
million keys keeps a table for a million until it is cleared. A scheduler
whose tenants come and go, or whose queue drains, calls :func:`shrink` on its
tables now and then to return what they no longer need.
"""

from __future__ import annotations

import sys
from typing import Any, Final

__all__ = ["shrink"]

_BYTES_PER_KEY: Final = 400
"""A table larger than this per key held (plus a few KB) is rebuilt: about 8 times what
a dict or set needs per key at its fullest, so tables are rebuilt only after they emptied
by most of their size, and a rebuild (O(n)) is paid for by the deletions before it."""
_SMALL: Final = 8192


def shrink(table: dict[Any, Any] | set[Any]) -> None:
    """Rebuild ``table`` in place at the size its keys need, if it holds far fewer than it did.

    O(1) when not due; O(n) for n keys when due (after at least 7n deletions).
    """
    if sys.getsizeof(table) <= _BYTES_PER_KEY * len(table) + _SMALL:
        return
    if isinstance(table, dict):
        kept = dict(table)
        table.clear()
        table.update(kept)
    else:
        members = set(table)
        table.clear()
        table |= members
