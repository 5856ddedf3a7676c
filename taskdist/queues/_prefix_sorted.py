"""PrefixSumSortedList: a sorted list that sums the costs of everything before a point.

The ordered index behind :class:`~taskdist.queues.DeadlineScheduler`: it keeps
the queue in scheduling order *and* answers "how much work is ahead of this
point?" in O(log n), which a heap cannot.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import chain
from operator import add
from typing import Any, Generic, TypeVar

__all__ = ["PrefixSumSortedList"]

# Items must be totally ordered and distinct (the scheduler's are tuples led by
# numbers and a unique sequence number).
_T = TypeVar("_T", bound=Any)

# How many cost changes a block total takes as deltas before it is summed
# afresh from its costs (see PrefixSumSortedList._update_total).
_MAX_DELTAS = 8


class PrefixSumSortedList(Generic[_T]):
    """Distinct sorted items, each with a cost >= 0, and the sum of costs before any point.

    The items live in blocks of at most ``2 * load`` sorted items (the
    layout of ``sortedcontainers.SortedList``; every block but the first
    holds more than ``load / 2``), each block with a parallel list of costs.
    A segment tree over the blocks' cost totals gives the total of every
    block before a given one in O(log B) for B blocks; the block itself is
    summed directly (O(load), in C).

    Rounding error does not accumulate over a long run: the tree's inner
    nodes are recomputed from their children (never adjusted by deltas), and
    a block's total takes at most ``_MAX_DELTAS`` changes as deltas, with no
    cancelling subtraction, before it is summed afresh from its costs
    (:meth:`_update_total`). Every cost is >= 0, so any sum returned is
    within a relative ~1e-11 of the exact value.

    Complexity (n items, L = ``load``, B ~ n / L blocks): ``add``,
    ``remove``, ``pop_first``, ``cost_before`` are O(log n + L) amortised.
    Blocks split or merge at most once per L / 2 changes; that rewrites the
    tree from the changed block to the end (C-level slices), so appending
    after the last item and taking from the front (the EDF pattern) stay
    O(log n + L), while a split in the middle costs O(B) at C speed:
    O(n / L**2) amortised, negligible below ~10**6 items. ``first`` and
    ``total`` are O(1); iteration is O(1) per item.

    >>> costs = PrefixSumSortedList()
    >>> for key, cost in [(5, 1.0), (1, 2.0), (3, 4.0)]:
    ...     _ = costs.add(key, cost)
    >>> list(costs), costs.cost_before(4), costs.cost_before(3), costs.total()
    ([1, 3, 5], 6.0, 2.0, 7.0)
    """

    __slots__ = (
        "_costs",
        "_deltas",
        "_items",
        "_len",
        "_load",
        "_maxes",
        "_offset",
        "_size",
        "_totals",
        "_tree",
    )

    def __init__(self, load: int = 128) -> None:
        self._load = load
        self._items: list[list[_T]] = []
        self._costs: list[list[float]] = []
        self._maxes: list[_T] = []
        self._totals: list[float] = []
        # Changes applied to each block total as a delta since it was last
        # summed from its costs (see _update_total).
        self._deltas: list[int] = []
        # Segment tree over _totals: block b's total is leaf _size + _offset + b,
        # node i holds tree[2i] + tree[2i + 1], tree[1] is the grand total, and
        # every other leaf is 0.0. The offset lets the first block go without
        # shifting the others.
        self._size = 1
        self._offset = 0
        self._tree: list[float] = [0.0, 0.0]
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[_T]:
        """The items in order, O(1) each. Do not change the list while iterating."""
        return chain.from_iterable(self._items)

    def first(self) -> _T | None:
        """The smallest item, or ``None`` when empty. O(1)."""
        return self._items[0][0] if self._items else None

    def last(self) -> _T | None:
        """The largest item, or ``None`` when empty. O(1)."""
        return self._items[-1][-1] if self._items else None

    def total(self) -> float:
        """The sum of every cost. O(1)."""
        return self._tree[1]

    # -- changing ---------------------------------------------------------

    def add(self, item: _T, cost: float) -> float:
        """Insert ``item`` (not already present) and return the sum of costs before it.

        O(log n + L) amortised.
        """
        items = self._items
        self._len += 1
        if not items:
            items.append([item])
            self._costs.append([cost])
            self._maxes.append(item)
            self._totals.append(cost)
            self._deltas.append(0)
            self._relayout(0, 0)
            return 0.0
        maxes = self._maxes
        b = bisect_left(maxes, item)
        if b == len(maxes):
            # The common case for EDF: a deadline later than every held one.
            b -= 1
            block = items[b]
            costs = self._costs[b]
            i = len(block)
            block.append(item)
            costs.append(cost)
            maxes[b] = item
        else:
            block = items[b]
            costs = self._costs[b]
            i = bisect_left(block, item)
            block.insert(i, item)
            costs.insert(i, cost)
        old_total = self._totals[b]
        if i + 1 == len(costs):
            in_block = old_total
        else:
            # Subtracting at most half the total cannot cancel.
            after = sum(costs[i + 1 :])
            in_block = old_total - after if after <= 0.5 * old_total else sum(costs[:i])
        before = self._prefix(b) + in_block
        if len(block) > 2 * self._load:
            self._split(b)
        else:
            self._update_total(b, cost, costs)
        return before

    def remove(self, item: _T) -> None:
        """Remove ``item``, which must be present (``ValueError`` otherwise). O(log n + L)."""
        b = bisect_left(self._maxes, item)
        if b < len(self._maxes):
            block = self._items[b]
            i = bisect_left(block, item)
            if block[i] is item or block[i] == item:
                self._delete(b, i)
                return
        raise ValueError(f"{item!r} is not in the list")

    def pop_first(self) -> _T:
        """Remove and return the smallest item (``IndexError`` when empty). O(log n + L)."""
        if not self._items:
            raise IndexError("pop_first from an empty PrefixSumSortedList")
        item = self._items[0][0]
        self._delete(0, 0)
        return item

    def remove_first_matching(self, match: Callable[[_T], bool]) -> _T | None:
        """Remove and return the smallest item for which ``match`` is true, or ``None``.

        O(k + log n + L) for k items before it; ``match`` is called in order
        and nothing changes if it raises.
        """
        for b, block in enumerate(self._items):
            for i, item in enumerate(block):
                if match(item):
                    self._delete(b, i)
                    return item
        return None

    def find_first_matching(self, match: Callable[[_T], bool]) -> _T | None:
        """The smallest item for which ``match`` is true, or ``None``. O(k), k items before it."""
        for item in chain.from_iterable(self._items):
            if match(item):
                return item
        return None

    # -- summing ----------------------------------------------------------

    def cost_before(self, item: _T) -> float:
        """The total cost of the items smaller than ``item`` (present or not). O(log n + L)."""
        maxes = self._maxes
        b = bisect_left(maxes, item)
        if b == len(maxes):
            return self._tree[1]
        return self._prefix(b) + sum(self._costs[b][: bisect_left(self._items[b], item)])

    def costs(self) -> Iterator[float]:
        """Every cost, in item order. O(1) each."""
        return chain.from_iterable(self._costs)

    def costs_before(self, item: _T) -> Iterator[float]:
        """The costs of the items smaller than ``item``, in order. O(1) each, O(log n) to start."""
        maxes = self._maxes
        b = bisect_left(maxes, item)
        if b == len(maxes):
            return chain.from_iterable(self._costs)
        i = bisect_left(self._items[b], item)
        return chain(chain.from_iterable(self._costs[:b]), self._costs[b][:i])

    # -- internals --------------------------------------------------------

    def _prefix(self, b: int) -> float:
        """The sum of the totals of blocks ``0 .. b - 1``: O(log B)."""
        tree = self._tree
        total = 0.0
        # Climb from block b's leaf; whenever it is a right child, its left
        # sibling covers blocks before it (leaves left of the offset are 0).
        i = self._size + self._offset + b
        while i > 1:
            if i & 1:
                total += tree[i - 1]
            i >>= 1
        return total

    def _update_total(self, b: int, change: float, costs: list[float]) -> None:
        """Add ``change`` (an added cost, or minus a removed one) to block ``b``'s total.

        Applied as a delta while that is accurate, else summed afresh. Adding
        a cost >= 0 keeps the relative error of the total; subtracting at most
        half of it at most doubles it. So after at most ``_MAX_DELTAS`` deltas
        between fresh sums (each within ``2 * load * 2**-53``) a total is
        within ``2**_MAX_DELTAS * (2 * load + _MAX_DELTAS) * 2**-53``
        relative, about 1e-11 for load 128: no drift, at 1 / _MAX_DELTAS of
        the cost of summing every time.
        """
        total = self._totals[b]
        deltas = self._deltas[b] + 1
        if deltas > _MAX_DELTAS or -change > 0.5 * total:
            total = sum(costs)
            deltas = 0
        else:
            total += change
        self._deltas[b] = deltas
        self._set_total(b, total)

    def _set_total(self, b: int, value: float) -> None:
        """Set block ``b``'s total and recompute its ancestors from their children: O(log B)."""
        self._totals[b] = value
        tree = self._tree
        i = self._size + self._offset + b
        tree[i] = value
        while i > 1:
            tree[i >> 1] = tree[i] + tree[i ^ 1]
            i >>= 1

    def _relayout(self, start: int, old_count: int) -> None:
        """Blocks ``start`` onwards moved (there were ``old_count``): rewrite their leaves.

        O(B - start) in C slices, or a full O(B) rebuild when the leaves no
        longer fit (at most once per B block changes).
        """
        totals = self._totals
        count = len(totals)
        if self._offset + count > self._size:
            self._rebuild()
            return
        tree = self._tree
        base = self._size + self._offset
        tree[base + start : base + count] = totals[start:]
        if old_count > count:
            tree[base + count : base + old_count] = [0.0] * (old_count - count)
        self._refresh(base + start, base + max(count, old_count))

    def _refresh(self, lo: int, hi: int) -> None:
        """Recompute every ancestor of tree leaves ``lo .. hi - 1``, level by level in C."""
        tree = self._tree
        while lo > 1:
            lo >>= 1
            hi = ((hi - 1) >> 1) + 1
            tree[lo:hi] = map(add, tree[2 * lo : 2 * hi : 2], tree[2 * lo + 1 : 2 * hi : 2])

    def _rebuild(self) -> None:
        """Lay the leaves out afresh from offset 0, with room to grow to twice as many blocks."""
        totals = self._totals
        size = 1
        while size < 2 * len(totals):
            size *= 2
        self._size = size
        self._offset = 0
        self._tree = [0.0] * (2 * size)
        self._tree[size : size + len(totals)] = totals
        self._refresh(size, 2 * size)

    def _split(self, b: int) -> None:
        block = self._items[b]
        costs = self._costs[b]
        half = len(block) // 2
        old_count = len(self._items)
        self._items[b : b + 1] = [block[:half], block[half:]]
        self._costs[b : b + 1] = [costs[:half], costs[half:]]
        self._maxes[b : b + 1] = [block[half - 1], block[-1]]
        self._totals[b : b + 1] = [sum(costs[:half]), sum(costs[half:])]
        self._deltas[b : b + 1] = [0, 0]
        self._relayout(b, old_count)

    def _delete(self, b: int, i: int) -> None:
        items = self._items
        block = items[b]
        costs = self._costs[b]
        cost = costs[i]
        del block[i]
        del costs[i]
        self._len -= 1
        if block and (b == 0 or len(block) > self._load // 2):
            # The first block may run low: items leave from the front, and it
            # goes when empty without shifting the others.
            if i == len(block):
                self._maxes[b] = block[-1]
            self._update_total(b, -cost, costs)
            return
        if b == 0:
            del items[0], self._costs[0], self._maxes[0], self._totals[0], self._deltas[0]
            leaf = self._size + self._offset
            self._tree[leaf] = 0.0
            self._offset += 1
            self._refresh(leaf, leaf + 1)
            return
        # Merge the small block into the one before it, splitting that if it
        # grew too big, so blocks after the first hold more than load / 2.
        old_count = len(items)
        items[b - 1] += block
        self._costs[b - 1] += costs
        self._maxes[b - 1] = items[b - 1][-1]
        self._totals[b - 1] = sum(self._costs[b - 1])
        self._deltas[b - 1] = 0
        del items[b], self._costs[b], self._maxes[b], self._totals[b], self._deltas[b]
        if len(items[b - 1]) > 2 * self._load:
            self._split(b - 1)  # lays the blocks out again from b - 1
        else:
            self._relayout(b - 1, old_count)
