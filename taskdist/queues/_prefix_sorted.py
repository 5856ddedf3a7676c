"""PrefixSumSortedList: a sorted list that sums the costs of everything before a point.

The ordered index behind :class:`~taskdist.queues.DeadlineScheduler`: it keeps
the queue in scheduling order *and* answers "how much work is ahead of this
point?" in O(log n), which a heap cannot. Each item may also carry a *bound*
(for a task with a deadline: the latest its work may end), and the list
answers "what is the least margin ``bound - work through the item`` after
this point?" in O(log n + L): the range-min over slack that lets admission
see every admitted task's deadline at once.

With a ``key`` (and a ``tie`` for items of equal keys) the list holds items
that do not compare themselves: the index of a deadline-aware
:class:`~taskdist.queues.FairScheduler` holds the tasks themselves, keyed by
their deadlines, so a task costs it no item of its own. Given a ``cost`` too,
the list is *lean*: it keeps the items alone (one pointer each), reading
each one's cost and bound (its key, or ``inf`` once unbound) from the item.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterator
from itertools import accumulate, chain, islice
from operator import add, sub
from typing import Any, Generic, TypeVar

__all__ = ["PrefixSumSortedList"]

# Without a key, items must be totally ordered and distinct (the scheduler's are
# tuples led by numbers and a unique sequence number); with one, (key, tie) must be.
_T = TypeVar("_T", bound=Any)

# How many cost changes a block total takes as deltas before it is summed
# afresh from its costs (see PrefixSumSortedList._update_total).
_MAX_DELTAS = 8

_INF = math.inf


def _no_cost(item: Any) -> float:
    raise AssertionError("only a lean list reads costs from its items")


class PrefixSumSortedList(Generic[_T]):
    """Sorted items, each with a cost >= 0 and a bound, answering prefix sums of cost and
    least margins.

    Without a ``key`` the items are distinct and ordered by themselves. With
    one, they are ordered by ``(key(item), tie(item))``, which must be
    distinct: ``tie`` is asked only where items of the item's key are held
    (O(log n) calls then), so it may be a look-up that most items are not
    in. ``remove`` then finds the very item it is given (``is``). The probes
    of ``cost_before``, ``costs_before`` and ``margin_after`` are then keys.

    **Lean.** With a key, a ``cost`` and an ``ident`` the list keeps no cost
    and no bound of its own: an item's cost is ``cost(item)``, its bound its
    key, or ``inf`` while ``ident(item)`` is in :attr:`unbound` (an item
    filed with the bound ``inf``, or unbound since, is put there; its owner
    takes it out when the item leaves). Every bound is then the key or
    ``inf`` (``set_bound`` takes no other; ``set_bounds`` is not offered).
    The same answers, to the last bit, for one pointer an item instead of
    three; a block's costs and bounds are read from its items when needed
    (O(L), in C, as the sums over them already are).

    The items live in blocks of at most ``2 * load`` sorted items (the
    layout of ``sortedcontainers.SortedList``; every block but the first
    holds more than ``load / 2``), each block with parallel lists of costs
    and bounds. A segment tree over the blocks' cost totals gives the total
    of every block before a given one in O(log B) for B blocks; the block
    itself is summed directly (O(load), in C).

    **Margins.** An item's *margin* is its bound minus the cost of every
    item up to and including it (its *through* cost). ``margin_after``,
    ``margin`` and ``first_margin_below`` answer over a range in O(log n +
    L): each block keeps its least margin counted from the block's start,
    and a second tree over the blocks combines them, node = ``(total, least)``
    with ``least = min(least_left, least_right - total_left)``, so no range
    update is ever needed when a cost comes or goes. Both are kept lazily:
    a change marks its block stale, and the next margin query refreshes only
    what changed (a full O(B) pass after the blocks were relaid). A bound of
    ``inf`` takes an item out of the margins. A change whose effect on its
    block's least margin is bounded (an item filed, taken out or given a
    bound in the middle of a block) keeps a lower bound instead: the block
    is *loose*. The exact queries sum loose blocks afresh;
    ``margin_at_least(t)``, which only needs to show that every margin is at
    least ``t``, sums afresh only the loose blocks whose bound falls below
    ``t``, and ``unbind_margins_below`` looks only into those.

    Rounding error does not accumulate over a long run: the tree's inner
    nodes are recomputed from their children (never adjusted by deltas), and
    a block's total takes at most ``_MAX_DELTAS`` changes as deltas, with no
    cancelling subtraction, before it is summed afresh from its costs
    (:meth:`_update_total`). Every cost is >= 0, so any sum returned is
    within a relative ~1e-11 of the exact value.

    Complexity (n items, L = ``load``, B ~ n / L blocks): ``add``,
    ``remove``, ``pop_first``, ``cost_before``, ``set_bound`` are O(log n +
    L) amortised; the margin queries O(log n + L) plus the refresh of what
    changed since the last one. Blocks split or merge at most once per L / 2
    changes; that rewrites the tree from the changed block to the end
    (C-level slices), so appending after the last item and taking from the
    front (the EDF pattern) stay O(log n + L), while a split in the middle
    costs O(B) at C speed: O(n / L**2) amortised, negligible below ~10**6
    items. ``first`` and ``total`` are O(1); iteration is O(1) per item;
    ``last_bound`` O(log n + L) after the refresh; ``margin_at_least`` O(log
    n + L) per loose block it sums afresh.

    >>> costs = PrefixSumSortedList()
    >>> for key, cost in [(5, 1.0), (1, 2.0), (3, 4.0)]:
    ...     _ = costs.add(key, cost, bound=10.0)
    >>> list(costs), costs.cost_before(4), costs.cost_before(3), costs.total()
    ([1, 3, 5], 6.0, 2.0, 7.0)
    >>> costs.margin(), costs.margin_after(3)  # 10 - 7 after the last; 10 - 7 after 3
    (3.0, 3.0)
    >>> costs.first_margin_below(5.0)  # margins 8, 4, 3: the first below 5 is at 3
    3
    """

    __slots__ = (
        "_bounds",
        "_cost_of",
        "_costs",
        "_deltas",
        "_ident",
        "_items",
        "_key",
        "_lean",
        "_load",
        "_loose",
        "_margins",
        "_maxes",
        "_mtree",
        "_mtree_dirty",
        "_mtree_fresh",
        "_offset",
        "_size",
        "_stale",
        "_tie",
        "_totals",
        "_tree",
        "count",
        "unbound",
    )

    unbound: set[Hashable]
    """Lean only: the idents of the items whose bound is ``inf`` (see the class)."""

    def __init__(
        self,
        load: int = 128,
        key: Callable[[_T], Any] | None = None,
        tie: Callable[[_T], Any] | None = None,
        *,
        cost: Callable[[_T], float] | None = None,
        ident: Callable[[_T], Hashable] | None = None,
    ) -> None:
        self._load = load
        self._key = key
        self._tie = tie
        self._items: list[list[_T]] = []
        # Lean (a cost given): no costs and bounds kept, read from the items instead.
        self._lean = cost is not None
        if self._lean and (key is None or ident is None):
            raise TypeError("a lean PrefixSumSortedList needs a key and an ident too")
        self._cost_of: Callable[[_T], float] = cost or _no_cost
        self._ident: Callable[[_T], Hashable] = ident or id
        if self._lean:  # (not made otherwise: a DeadlineScheduler per tenant has two lists)
            self.unbound = set()
        self._costs: list[list[float]] = []
        self._bounds: list[list[float]] = []
        # The key of each block's last item (the item itself without a key).
        self._maxes: list[Any] = []
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
        self.count = 0
        """How many items it holds (read it; never set it): ``len`` without a call."""
        # Margins, kept lazily: each block's least margin from its start (valid
        # unless the block is in _stale), and a tree over them laid out as _tree
        # (leaves in _mtree_dirty need their path recomputed; all of it unless
        # _mtree_fresh).
        self._margins: list[float] = []
        self._stale: set[int] = set()
        # Blocks whose margin is only a lower bound (a change moved it by at most a
        # known amount): good enough to show that every margin clears a line.
        self._loose: set[int] = set()
        self._mtree: list[float] = [_INF, _INF]
        self._mtree_dirty: set[int] = set()
        self._mtree_fresh = False

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

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

    def add(self, item: _T, cost: float, bound: float = _INF, *, last: bool = False) -> float:
        """Insert ``item`` (not already present) and return the sum of costs before it.

        ``bound`` (default ``inf``: no margin) is the item's bound for the
        margin queries. With a key, ``last`` says its tie is above those of
        every item of its key (it goes after them, no tie asked). O(log n + L)
        amortised. A lean list is given the item's own cost and bound (its key
        or ``inf``), and returns ``nan`` unless the item went last in its block:
        it reads no costs to add an item (:meth:`cost_before` answers).
        """
        items = self._items
        key = self._key
        probe = item if key is None else key(item)
        self.count += 1
        lean = self._lean
        if lean and bound == _INF:
            self.unbound.add(self._ident(item))
        if not items:
            items.append([item])
            if not lean:
                self._costs.append([cost])
                self._bounds.append([bound])
            self._maxes.append(probe)
            self._totals.append(cost)
            self._deltas.append(0)
            self._margins.append(bound - cost)
            self._relayout(0, 0)
            return 0.0
        maxes = self._maxes
        if key is None:
            b = bisect_left(maxes, item)
            i = 0 if b == len(maxes) else bisect_left(items[b], item)
        elif last:
            b = bisect_right(maxes, probe)
            i = 0 if b == len(maxes) else bisect_right(items[b], probe, key=key)
        else:
            b, i = self._locate(item, probe)
        if b == len(maxes):
            # The common case for EDF: a deadline later than every held one.
            b -= 1
            i = len(items[b])
        block = items[b]
        costs: list[float] | None = None
        if i == len(block):
            block.append(item)
            if not lean:
                costs = self._costs[b]
                costs.append(cost)
                self._bounds[b].append(bound)
            maxes[b] = probe
        else:
            block.insert(i, item)
            if not lean:
                costs = self._costs[b]
                costs.insert(i, cost)
                self._bounds[b].insert(i, bound)
        old_total = self._totals[b]
        appended = i + 1 == len(block)
        if appended:
            in_block = old_total
        elif costs is None:  # lean: not summed (old_total bounds it for the margins)
            in_block = math.nan
        else:
            # Subtracting at most half the total cannot cancel.
            after = sum(costs[i + 1 :])
            in_block = old_total - after if after <= 0.5 * old_total else sum(costs[:i])
        if b in self._stale:
            pass
        elif appended:
            # Appended: no other margin in the block moves.
            margin = bound - (old_total + cost)
            if margin < self._margins[b]:
                self._margins[b] = margin
        else:
            # Those after it fell by its cost: the least, by at most that. (A lean list
            # bounds the cost before it by the block's total: costs are >= 0.)
            ahead = old_total if costs is None else in_block
            self._margins[b] = min(self._margins[b] - cost, bound - (ahead + cost))
            self._loose.add(b)
        if len(block) > 2 * self._load:
            before = self._prefix(b) + in_block
            self._split(b)
            return before
        # The walk up the tree that files the new total sums the blocks before it too.
        return self._update_total(b, cost, costs) + in_block

    def remove(self, item: _T) -> None:
        """Remove ``item``, which must be present (``ValueError`` otherwise). O(log n + L)."""
        b, i = self._position(item)
        self._delete(b, i)

    def holds_key(self, probe: Any) -> bool:
        """Whether an item of key ``probe`` is held (with a key). O(log n)."""
        maxes = self._maxes
        b = bisect_left(maxes, probe)
        if b == len(maxes):
            return False
        key = self._key
        assert key is not None
        block = self._items[b]
        return bool(key(block[bisect_left(block, probe, key=key)]) == probe)

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

    def set_bound(self, item: _T, bound: float) -> None:
        """Give a present ``item`` a new bound (``inf``: out of the margins). O(log n + L)."""
        b, i = self._position(item)
        if self._lean:
            if bound == _INF:
                self.unbound.add(self._ident(item))
            elif bound == self._key_of(item):
                self.unbound.discard(self._ident(item))
            else:
                raise ValueError(f"a lean list's bounds are its keys or inf, not {bound!r}")
        else:
            self._bounds[b][i] = bound
        if b in self._stale:
            return
        # No other margin moves: the block's least stays a lower bound with this one's.
        if bound != _INF:
            margin = bound - sum(self._block_costs(b)[: i + 1])
            if margin < self._margins[b]:
                self._margins[b] = margin
                self._mtree_dirty.add(self._size + self._offset + b)
        self._loose.add(b)

    def set_bounds(self, bound: Callable[[_T], float]) -> None:
        """Give every item the bound ``bound(item)``. O(n). Not for a lean list."""
        if self._lean:
            raise TypeError("a lean list's bounds are its keys: set_bounds is not offered")
        self._bounds = [[bound(item) for item in block] for block in self._items]
        self._stale.update(range(len(self._items)))

    # -- summing ----------------------------------------------------------

    def cost_before(self, item: _T) -> float:
        """The total cost of the items smaller than ``item`` (present or not). O(log n + L)."""
        maxes = self._maxes
        b = bisect_left(maxes, item)
        if b == len(maxes):
            return self._tree[1]
        block = self._items[b]
        in_block = self._block_costs(b)[: bisect_left(block, item, key=self._key)]
        return self._prefix(b) + sum(in_block)

    def costs(self) -> Iterator[float]:
        """Every cost, in item order. O(1) each."""
        return chain.from_iterable(self._cost_blocks(len(self._items)))

    def costs_before(self, item: _T) -> Iterator[float]:
        """The costs of the items smaller than ``item``, in order. O(1) each, O(log n) to start."""
        maxes = self._maxes
        b = bisect_left(maxes, item)
        if b == len(maxes):
            return self.costs()
        i = bisect_left(self._items[b], item, key=self._key)
        return chain(chain.from_iterable(self._cost_blocks(b)), self._block_costs(b)[:i])

    # -- margins ----------------------------------------------------------

    def margin(self) -> float:
        """The least margin (bound - through cost) of any item; ``inf`` if none. O(log n + L)."""
        self._refresh_margins()
        return self._mtree[1]

    def margin_after(self, item: _T) -> float:
        """The least margin of the items larger than ``item`` (present or not). O(log n + L)."""
        self._refresh_margins()
        maxes = self._maxes
        b = bisect_right(maxes, item)
        if b == len(maxes):
            return _INF
        i = bisect_right(self._items[b], item, key=self._key)
        before = self._prefix(b)
        least = min(
            map(
                sub,
                islice(self._block_bounds(b), i, None),
                islice(accumulate(self._block_costs(b)), i, None),
            ),
            default=_INF,
        )
        return min(least - before, self._least_from(b + 1, before + self._totals[b]))

    def first_margin_below(self, threshold: float) -> _T | None:
        """The smallest item whose margin is below ``threshold``, or ``None``. O(log n + L).

        Within rounding of the threshold (a relative ~1e-11) an item may count
        as either side of it; the answer is always a present item or ``None``.
        """
        self._refresh_margins()
        if not self._mtree[1] < threshold:
            return None
        b, before = self._first_block_below(threshold)
        through = before
        items = self._items
        costs, bounds = self._block_costs(b), self._block_bounds(b)
        for item, cost, bound in zip(items[b], costs, bounds, strict=True):
            through += cost
            if bound - through < threshold:
                return item
        # The tree sums in another order than this scan: at the threshold's edge the two
        # may round apart. Look on in the later blocks, skipping those above the threshold.
        margins, totals = self._margins, self._totals
        for later in range(b + 1, len(items)):
            if margins[later] - through < threshold:
                for item, cost, bound in zip(
                    items[later], self._block_costs(later), self._block_bounds(later), strict=True
                ):
                    through += cost
                    if bound - through < threshold:
                        return item
            else:
                through += totals[later]
        return None

    def margin_at_least(self, threshold: float) -> float:
        """At most :meth:`margin`, and at least ``threshold`` when :meth:`margin` is.

        Cheaper than :meth:`margin` when the answer is clear: blocks whose
        least margin is only known as a lower bound (after cost came or went
        ahead of some of their items) are summed afresh only where that bound
        falls below ``threshold``. O(log n + L) per block summed afresh.
        """
        self._refresh_margins(exact=False)
        loose = self._loose
        while self._mtree[1] < threshold:
            b, _ = self._first_block_below(threshold)
            if b not in loose:
                break  # summed exactly: a margin truly below the threshold
            loose.discard(b)
            self._margins[b] = self._block_margin(b)
            self._mtree_dirty.add(self._size + self._offset + b)
            self._refresh_margins(exact=False)
        return self._mtree[1]

    def _first_block_below(self, threshold: float) -> tuple[int, float]:
        """The first block whose least margin (by the tree, which must be below
        ``threshold``) falls below it, and the cost ahead of that block: O(log B)."""
        mtree = self._mtree
        tree = self._tree
        node = 1
        before = 0.0
        while node < self._size:
            left = 2 * node
            if mtree[left] - before < threshold:
                node = left
            else:
                before += tree[left]
                node = left + 1
        return node - self._size - self._offset, before

    def last_bound(self) -> _T | None:
        """The largest item with a finite bound (in the margins), or ``None``. O(log n + L)."""
        self._refresh_margins()
        mtree = self._mtree
        if mtree[1] == _INF:
            return None
        node = 1
        while node < self._size:  # down the rightmost subtree holding a margin
            node = 2 * node + 1 if mtree[2 * node + 1] != _INF else 2 * node
        b = node - self._size - self._offset
        bounds = self._block_bounds(b)
        i = len(bounds) - 1
        while bounds[i] == _INF:
            i -= 1
        return self._items[b][i]

    def unbind_margins_below(self, threshold: float) -> list[_T]:
        """Give every item whose margin is below ``threshold`` the bound ``inf``; return them.

        A bound changes no other item's margin, so one pass finds them all:
        O((k + 1) log B + k_b L) for k items in k_b blocks (a block whose least
        margin is only a lower bound is looked at when the bound is below).
        """
        self._refresh_margins(exact=False)
        mtree = self._mtree
        if not mtree[1] < threshold:
            return []
        tree = self._tree
        size = self._size
        base = size + self._offset
        found: list[_T] = []
        # Depth first, left to right, into every subtree whose least margin is below.
        stack = [(1, 0.0)]
        while stack:
            node, before = stack.pop()
            if not mtree[node] - before < threshold:
                continue
            if node >= size:
                b = node - base
                bounds = self._block_bounds(b)  # a lean list's: a copy, its marks in unbound
                through = before
                for i, cost in enumerate(self._block_costs(b)):
                    through += cost
                    if bounds[i] - through < threshold:
                        bounds[i] = _INF
                        found.append(self._items[b][i])
                self._stale.add(b)
                continue
            left = 2 * node
            stack.append((left + 1, before + tree[left]))
            stack.append((left, before))
        if self._lean:
            self.unbound.update(map(self._ident, found))
        return found

    # -- internals --------------------------------------------------------

    def _position(self, item: _T) -> tuple[int, int]:
        """The block and index of the present ``item`` (``ValueError`` if absent)."""
        maxes = self._maxes
        key = self._key
        if key is None:
            b = bisect_left(maxes, item)
            if b < len(maxes):
                block = self._items[b]
                i = bisect_left(block, item)
                if block[i] is item or block[i] == item:
                    return b, i
        else:
            b, i = self._locate(item, key(item))
            if b < len(maxes):
                block = self._items[b]
                if i < len(block) and block[i] is item:
                    return b, i
        raise ValueError(f"{item!r} is not in the list")

    def _locate(self, item: _T, probe: Any) -> tuple[int, int]:
        """Where ``item`` (of key ``probe``, with a key) goes: the first place whose item is
        not below it, ``(len(blocks), 0)`` if none is. O(log n)."""
        maxes = self._maxes
        b = bisect_left(maxes, probe)
        if b == len(maxes):
            return b, 0
        block = self._items[b]
        key = self._key
        assert key is not None
        i = bisect_left(block, probe, key=key)
        found = block[i]
        if found is item or key(found) != probe:
            return b, i
        return self._locate_tied(item, probe, b, i)

    def _locate_tied(self, item: _T, probe: Any, b: int, i: int) -> tuple[int, int]:
        """:meth:`_locate` among the items of ``item``'s key, the first at block ``b``, index
        ``i``, maybe over several blocks: by tie. O(log n) calls of the key and the tie."""
        items = self._items
        tie = self._tie
        assert tie is not None, "a list with a key needs a tie for items of equal keys"
        rank = tie(item)
        # Blocks b .. end - 1 end with items of this key; the first whose last one is not
        # below the item holds its place (the block at end, or after the last, if none).
        end = bisect_right(self._maxes, probe, lo=b)
        at = bisect_left(range(end), rank, lo=b, key=lambda j: tie(items[j][-1]))
        if at == len(items):
            return at, 0
        block = items[at]
        hi = bisect_right(block, probe, key=self._key)
        return at, bisect_left(block, rank, i if at == b else 0, hi, key=tie)

    def _key_of(self, item: _T) -> Any:
        return item if self._key is None else self._key(item)

    def _block_costs(self, b: int) -> list[float]:
        """Block ``b``'s costs: kept, or read from a lean list's items (O(L), in C)."""
        if not self._lean:
            return self._costs[b]
        return list(map(self._cost_of, self._items[b]))

    def _cost_blocks(self, stop: int) -> list[list[float]]:
        """The costs of blocks ``0 .. stop - 1``, block by block."""
        if not self._lean:
            return self._costs[:stop]
        return [self._block_costs(b) for b in range(stop)]

    def _block_bounds(self, b: int) -> list[float]:
        """Block ``b``'s bounds: kept, or for a lean list a list made from its items (their
        keys, ``inf`` for the unbound: O(L), in C unless some are unbound)."""
        if not self._lean:
            return self._bounds[b]
        block = self._items[b]
        key = self._key
        assert key is not None
        bounds = list(map(key, block))
        unbound = self.unbound
        if unbound and not unbound.isdisjoint(map(self._ident, block)):
            ident = self._ident
            for i, item in enumerate(block):
                if ident(item) in unbound:
                    bounds[i] = _INF
        return bounds

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

    def _least_from(self, b: int, before: float) -> float:
        """The least margin of the items in blocks ``b ..``, ``before`` the cost ahead: O(log B)."""
        count = len(self._items)
        if b >= count:
            return _INF
        base = self._size + self._offset
        lo, hi = base + b, base + count
        left: list[int] = []
        right: list[int] = []
        while lo < hi:
            if lo & 1:
                left.append(lo)
                lo += 1
            if hi & 1:
                hi -= 1
                right.append(hi)
            lo >>= 1
            hi >>= 1
        mtree = self._mtree
        tree = self._tree
        least = _INF
        for node in chain(left, reversed(right)):
            least = min(least, mtree[node] - before)
            before += tree[node]
        return least

    def _block_margin(self, b: int) -> float:
        """Block ``b``'s least margin, counting through cost from the block's start: O(L)."""
        bounds = self._block_bounds(b)
        if bounds.count(_INF) == len(bounds):
            return _INF  # no margin in it (all late, or without deadlines): no sums needed
        least: float = min(map(sub, bounds, accumulate(self._block_costs(b))))
        return least

    def _refresh_margins(self, exact: bool = True) -> None:
        """Bring the stale block margins (and, if ``exact``, the loose ones) and the margin
        tree up to date; with ``exact=False`` the tree may hold lower bounds."""
        if exact and self._loose:
            self._stale |= self._loose
        if self._mtree_fresh and not self._stale and not self._mtree_dirty:
            return
        margins = self._margins
        base = self._size + self._offset
        dirty = self._mtree_dirty
        loose = self._loose
        for b in self._stale:
            margins[b] = self._block_margin(b)
            dirty.add(base + b)
            loose.discard(b)
        self._stale.clear()
        mtree = self._mtree
        tree = self._tree
        if not self._mtree_fresh or len(dirty) * 8 > len(margins):
            size = self._size
            count = len(margins)
            mtree = self._mtree = [_INF] * (2 * size)
            mtree[base : base + count] = margins
            lo, hi = size, 2 * size
            while lo > 1:
                lo >>= 1
                hi >>= 1
                mtree[lo:hi] = map(
                    min,
                    mtree[2 * lo : 2 * hi : 2],
                    map(sub, mtree[2 * lo + 1 : 2 * hi : 2], tree[2 * lo : 2 * hi : 2]),
                )
            self._mtree_fresh = True
        else:
            count = len(margins)
            for leaf in dirty:
                if base <= leaf < base + count:  # else a leaf emptied: inf already
                    mtree[leaf] = margins[leaf - base]
                i = leaf >> 1
                while i:
                    left = mtree[2 * i]
                    right = mtree[2 * i + 1] - tree[2 * i]
                    mtree[i] = left if left < right else right
                    i >>= 1
        dirty.clear()

    def _update_total(self, b: int, change: float, costs: list[float] | None) -> float:
        """Add ``change`` (an added cost, or minus a removed one) to block ``b``'s total;
        return the total of the blocks before it (as :meth:`_prefix`).

        Applied as a delta while that is accurate, else summed afresh. Adding
        a cost >= 0 keeps the relative error of the total; subtracting at most
        half of it at most doubles it. So after at most ``_MAX_DELTAS`` deltas
        between fresh sums (each within ``2 * load * 2**-53``) a total is
        within ``2**_MAX_DELTAS * (2 * load + _MAX_DELTAS) * 2**-53``
        relative, about 1e-11 for load 128: no drift, at 1 / _MAX_DELTAS of
        the cost of summing every time. ``costs``: the block's (``None``: read
        them if needed, for a lean list).
        """
        total = self._totals[b]
        deltas = self._deltas[b] + 1
        if deltas > _MAX_DELTAS or -change > 0.5 * total:
            total = sum(map(self._cost_of, self._items[b]) if costs is None else costs)
            deltas = 0
        else:
            total += change
        self._deltas[b] = deltas
        return self._set_total(b, total)

    def _set_total(self, b: int, value: float) -> float:
        """Set block ``b``'s total and recompute its ancestors from their children; return
        the total of the blocks before it, summed as :meth:`_prefix` sums it: O(log B)."""
        self._totals[b] = value
        tree = self._tree
        i = self._size + self._offset + b
        self._mtree_dirty.add(i)
        tree[i] = value
        before = 0.0
        while i > 1:
            # A node's sibling is not on the path: the same sum _prefix would read.
            sibling = tree[i ^ 1]
            if i & 1:
                before += sibling
            value += sibling
            i >>= 1
            tree[i] = value
        return before

    def _relayout(self, start: int, old_count: int) -> None:
        """Blocks ``start`` onwards moved (there were ``old_count``): rewrite their leaves.

        O(B - start) in C slices, or a full O(B) rebuild when the leaves no
        longer fit (at most once per B block changes).
        """
        self._mtree_fresh = False
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
        self._mtree_fresh = False

    def _shift_stale(self, start: int, by: int) -> None:
        """Block indices from ``start`` on moved by ``by``: move their stale and loose marks."""
        if self._stale:
            self._stale = {b if b < start else b + by for b in self._stale}
        if self._loose:
            self._loose = {b if b < start else b + by for b in self._loose}

    def _split(self, b: int) -> None:
        block = self._items[b]
        costs = self._block_costs(b)
        half = len(block) // 2
        old_count = len(self._items)
        self._items[b : b + 1] = [block[:half], block[half:]]
        if not self._lean:
            bounds = self._bounds[b]
            self._costs[b : b + 1] = [costs[:half], costs[half:]]
            self._bounds[b : b + 1] = [bounds[:half], bounds[half:]]
        self._maxes[b : b + 1] = [self._key_of(block[half - 1]), self._key_of(block[-1])]
        self._totals[b : b + 1] = [sum(costs[:half]), sum(costs[half:])]
        self._deltas[b : b + 1] = [0, 0]
        self._margins[b : b + 1] = [_INF, _INF]
        self._loose.discard(b)
        self._shift_stale(b + 1, 1)
        self._stale.update((b, b + 1))
        self._relayout(b, old_count)

    def _delete(self, b: int, i: int) -> None:
        items = self._items
        block = items[b]
        lean = self._lean
        costs: list[float] | None
        if lean:
            costs = None
            item = block[i]
            cost = self._cost_of(item)
            unbound = self.unbound
            bound = _INF if unbound and self._ident(item) in unbound else self._key_of(item)
        else:
            costs = self._costs[b]
            cost = costs[i]
            bound = self._bounds[b][i]
            del costs[i]
            del self._bounds[b][i]
        del block[i]
        self.count -= 1
        if block and (b == 0 or len(block) > self._load // 2):
            # The first block may run low: items leave from the front, and it
            # goes when empty without shifting the others.
            if i == len(block):
                self._maxes[b] = self._key_of(block[-1])
            if b in self._stale:
                pass
            elif i == 0:
                # The first left: every other rose by its cost. Exact unless it was the
                # least; a lower bound either way.
                if not bound - cost > self._margins[b]:
                    self._loose.add(b)
                self._margins[b] += cost
            else:
                self._loose.add(b)  # those after it rose: the least did not fall
            self._update_total(b, -cost, costs)
            return
        if b == 0:
            del items[0], self._maxes[0]
            if not lean:
                del self._costs[0], self._bounds[0]
            del self._totals[0], self._deltas[0], self._margins[0]
            self._stale.discard(0)
            self._loose.discard(0)
            self._shift_stale(1, -1)
            leaf = self._size + self._offset
            self._tree[leaf] = 0.0
            if self._mtree_fresh:  # else it is laid out afresh when next asked
                self._mtree[leaf] = _INF
                self._mtree_dirty.add(leaf)
            self._offset += 1
            self._refresh(leaf, leaf + 1)
            return
        # Merge the small block into the one before it, splitting that if it
        # grew too big, so blocks after the first hold more than load / 2.
        old_count = len(items)
        items[b - 1] += block
        if not lean:
            self._costs[b - 1] += self._costs[b]
            self._bounds[b - 1] += self._bounds[b]
            del self._costs[b], self._bounds[b]
        self._maxes[b - 1] = self._key_of(items[b - 1][-1])
        self._totals[b - 1] = sum(self._block_costs(b - 1))
        self._deltas[b - 1] = 0
        del items[b], self._maxes[b]
        del self._totals[b], self._deltas[b], self._margins[b]
        self._stale.discard(b)
        self._loose.discard(b)
        self._shift_stale(b + 1, -1)
        self._stale.add(b - 1)
        if len(items[b - 1]) > 2 * self._load:
            self._split(b - 1)  # lays the blocks out again from b - 1
        else:
            self._relayout(b - 1, old_count)
