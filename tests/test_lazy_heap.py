"""LazyHeap (private): the lazy-deletion heap every queue and timer heap shares; with
LazyMaxHeap (largest first) and Expiries (a queue's TTL expiries), which share its
membership rule."""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from taskdist import Task
from taskdist._lazy_heap import COMPACT_SLACK, Expiries, LazyHeap, LazyMaxHeap, _Runs

_Entry = tuple[int, int, Hashable]
_Side = tuple[int, _Entry]

keys = st.integers(min_value=0, max_value=9)
names = st.integers(min_value=0, max_value=12)


class LazyHeapMachine(RuleBasedStateMachine):
    """An owner's heap, a side heap, a max-heap and expiries over the same live dict,
    against plain sorting."""

    @initialize()
    def start(self) -> None:
        self.live: dict[Hashable, _Entry] = {}
        self.heap: LazyHeap[_Entry] = LazyHeap(self.live, at=2)
        # The side heap orders the same live entries by a second key, descending.
        self.side: LazyHeap[_Side] = LazyHeap(self.live, at=2, via=1)
        self.largest: LazyMaxHeap[_Entry] = LazyMaxHeap(self.live, at=2)
        # Each entry expires at its key: in order while keys come in order.
        self.expiries: Expiries[_Entry] = Expiries(self.live, at=2, expires=lambda e: e[0])
        self.seq = 0

    def file(self, entry: _Entry, replaced: bool) -> None:
        self.side.push((-entry[0], entry))
        self.largest.push(entry)
        self.expiries.add(entry, entry[0])
        if replaced:  # the entry it replaced is dead: an owner compacts after a deletion
            self.compact_all()

    def compact_all(self) -> None:
        """What an owner does after any deletion: every structure may compact."""
        self.heap.compact()
        self.side.compact()
        self.largest.compact()
        self.expiries.compact()

    def entry(self, key: int, name: int) -> _Entry:
        self.seq += 1
        return (key, self.seq, name)

    def expected(self) -> list[_Entry]:
        return sorted(self.live.values())

    @rule(key=keys, name=names)
    def push(self, key: int, name: int) -> None:
        entry = self.entry(key, name)
        replaced = name in self.live
        self.live[name] = entry  # replaces (kills) any older entry of that name
        self.heap.push(entry)
        self.file(entry, replaced)

    @rule(key=keys, name=names)
    def schedule(self, key: int, name: int) -> None:
        replaced = name in self.live
        self.heap.schedule(name, key)
        entry = self.live[name]
        assert entry[0] == key and entry[2] == name
        self.file(entry, replaced)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def discard(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.live, key=repr)))
        del self.live[name]
        self.compact_all()

    @rule()
    def drop_largest(self) -> None:
        top = self.largest.top()
        assert top == max(self.live.values(), default=None)
        if top is not None:
            del self.live[top[2]]
            assert self.largest.drop_top(top)
            assert not self.largest.drop_top(top)
        self.compact_all()

    @rule(limit=keys)
    def expire_until(self, limit: int) -> None:
        expected = [entry for entry in self.expected() if entry[0] <= limit]
        assert sorted(self.expiries.pop_until(limit)) == expected
        assert not any(entry[2] in self.live for entry in expected)
        self.compact_all()

    @rule()
    def pop(self) -> None:
        expected = self.expected()
        popped = self.heap.pop()
        assert popped == (expected[0] if expected else None)
        if popped is not None:
            assert popped[2] not in self.live
        self.compact_all()

    @rule()
    def pop_side(self) -> None:
        expected = max(self.live.values(), key=lambda e: (e[0], -e[1]), default=None)
        popped = self.side.pop()
        assert (None if popped is None else popped[1]) == expected
        if popped is not None:
            assert popped[1][2] not in self.live
        self.compact_all()

    @rule(limit=keys)
    def pop_until(self, limit: int) -> None:
        expected = [entry for entry in self.expected() if entry[0] <= limit]
        assert self.heap.pop_until(limit) == expected
        assert not any(entry[2] in self.live for entry in expected)
        self.compact_all()

    @rule(limit=keys)
    def find(self, limit: int) -> None:
        matches = [entry for entry in self.expected() if entry[0] >= limit]
        found = self.heap.find(lambda key: key >= limit, item=0)
        assert found == (matches[0] if matches else None)

    @rule(data=st.data())
    def drop_top(self, data: st.DataObject) -> None:
        top = self.heap.top()
        if top is not None:
            del self.live[top[2]]
            self.heap.drop_top(top)
            assert self.heap.top() != top
        self.compact_all()

    @invariant()
    def top_and_walk_agree_with_sorting(self) -> None:
        expected = self.expected()
        assert self.heap.top() == (expected[0] if expected else None)
        assert list(self.heap.walk()) == expected
        assert sorted(self.heap.live_entries()) == expected
        assert self.largest.top() == (expected[-1] if expected else None)
        assert self.expiries.first() == (expected[0][0] if expected else math.inf)

    @invariant()
    def memory_stays_within_twice_the_live_entries(self) -> None:
        assert len(self.heap) <= 2 * len(self.live) + COMPACT_SLACK + 1
        assert len(self.side) <= 2 * len(self.live) + COMPACT_SLACK + 1
        assert len(self.largest) <= 2 * len(self.live) + COMPACT_SLACK + 1
        assert len(self.expiries) <= 2 * len(self.live) + COMPACT_SLACK + 1


TestLazyHeapMachine = LazyHeapMachine.TestCase


def test_rescheduling_the_top_entry_replaces_it_in_one_step() -> None:
    live: dict[Hashable, _Entry] = {}
    heap: LazyHeap[_Entry] = LazyHeap(live, at=2)
    for name, key in [("a", 1), ("b", 2), ("c", 3)]:
        heap.schedule(name, key)
    heap.schedule("a", 5)  # "a" was the top: replaced, not left behind dead
    assert len(heap) == 3
    assert [entry[2] for entry in heap.walk()] == ["b", "c", "a"]


def test_compaction_keeps_memory_proportional_to_live_entries() -> None:
    live: dict[Hashable, _Entry] = {}
    heap: LazyHeap[_Entry] = LazyHeap(live, at=2)
    for i in range(10_000):
        live[i] = entry = (i, i, i)
        heap.push(entry)
    for i in range(0, 10_000, 2):
        del live[i]
        heap.compact()
    assert len(heap) <= 2 * len(live) + COMPACT_SLACK
    assert heap.top() == (1, 1, 1)


def test_reset_and_clear() -> None:
    live: dict[Hashable, _Entry] = {n: (n, n, n) for n in (3, 1, 2)}
    heap: LazyHeap[_Entry] = LazyHeap(live, at=2)
    heap.reset(list(live.values()))
    assert [entry[2] for entry in heap.walk()] == [1, 2, 3]
    heap.clear()
    assert len(heap) == 0 and heap.top() is None and heap.pop() is None


@given(
    expiries=st.lists(st.integers(min_value=0, max_value=400), max_size=300),
    falling=st.booleans(),
    dropped=st.sets(st.integers(min_value=0, max_value=299)),
    limits=st.lists(st.integers(min_value=0, max_value=400), max_size=4),
)
def test_expiries_in_any_order_come_out_earliest_first(
    expiries: list[int], falling: bool, dropped: set[int], limits: list[int]
) -> None:
    # Falling expiries make a run per entry until the runs are merged; random ones
    # make many runs; each answer is the earliest live expiry all the same.
    if falling:
        expiries.sort(reverse=True)
    live: dict[Hashable, _Entry] = {}
    timer: Expiries[_Entry] = Expiries(live, at=2, expires=lambda e: e[0])
    for name, expires in enumerate(expiries):
        live[name] = entry = (expires, name, name)
        timer.add(entry, expires)
        if name in dropped:
            del live[name]
            timer.compact()
        assert timer.first() == min((e[0] for e in live.values()), default=math.inf)
        assert len(timer) <= 2 * len(live) + COMPACT_SLACK + 1
    for limit in sorted(limits):
        due = sorted(entry for entry in live.values() if entry[0] <= limit)
        assert sorted(timer.pop_until(limit)) == due
        assert timer.first() == min((e[0] for e in live.values()), default=math.inf)


def test_expiries_filed_in_falling_order_are_merged_into_few_runs() -> None:
    live: dict[Hashable, _Entry] = {}
    timer: Expiries[_Entry] = Expiries(live, at=2, expires=lambda e: e[0])
    for name in range(10_000):
        live[name] = entry = (10_000 - name, name, name)
        timer.add(entry, entry[0])
    # Each would be a run of its own: merged once they outnumber an eighth of the entries.
    assert len(timer) - len(live) <= len(live) // 8 + COMPACT_SLACK + 1
    assert timer.first() == 1
    assert sorted(entry[0] for entry in timer.pop_until(5)) == [1, 2, 3, 4, 5]
    assert timer.first() == 6


def test_expiries_come_out_fifo_first_then_by_expiry_and_entry() -> None:
    # The order a queue keeps its expired tasks in (and writes them to a snapshot):
    # the FIFO's in order, then those filed out of order as a heap of (expiry, entry)
    # would give them, whichever further run holds them.
    live: dict[Hashable, _Entry] = {}
    timer: Expiries[_Entry] = Expiries(live, at=2, expires=lambda e: e[0])
    for expires, name in [(10, "a"), (5, "b"), (7, "c"), (3, "d"), (12, "e"), (5, "f")]:
        live[name] = entry = (expires, 0, name)
        timer.add(entry, expires)
    assert [entry[2] for entry in timer.pop_until(11)] == ["a", "d", "b", "f", "c"]
    assert timer.first() == 12


def test_expiries_filed_in_falling_order_then_deleted_compact_a_logarithmic_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each entry expires before every one filed before it: runs of one entry, merged as
    # they pile up. Deleting them leaves runs thinned to an entry or two, which must not
    # keep the next compaction a few deletions away (O(n) each: a quadratic drain).
    live: dict[int, tuple[int, float]] = {}
    expiries: Expiries[tuple[int, float]] = Expiries(live, at=0, expires=lambda entry: entry[1])
    n = 20_000
    for i in range(n):
        entry = (i, 1e7 - 5.0 * i)
        live[i] = entry
        expiries.add(entry, entry[1])
    rebuilds = 0
    keep_live = _Runs.keep_live

    def counted(self: _Runs[Any], *args: Any) -> bool:
        nonlocal rebuilds
        rebuilds += 1
        return keep_live(self, *args)

    monkeypatch.setattr(_Runs, "keep_live", counted)
    for i in range(n):
        del live[i]
        expiries.compact()
        assert len(expiries) <= 2 * len(live) + COMPACT_SLACK
    assert rebuilds <= 2 * math.log2(n)
    assert expiries.first() == math.inf


def test_entries_holding_a_task_are_live_by_the_tasks_id() -> None:
    # task=True: the id is read from the task the entry holds, no field of its own.
    live: dict[Hashable, tuple[int, int, Task]] = {}
    heap: LazyHeap[tuple[int, int, Task]] = LazyHeap(live, at=2, task=True)
    largest: LazyMaxHeap[tuple[int, int, Task]] = LazyMaxHeap(live, at=2, task=True)
    expiries: Expiries[tuple[int, int, Task]] = Expiries(
        live, at=2, expires=lambda e: float(e[0]), task=True
    )
    for seq, (key, name) in enumerate([(3, "c"), (1, "a"), (2, "b"), (4, "d")]):
        live[name] = entry = (key, seq, Task(name))
        heap.push(entry)
        largest.push(entry)
        expiries.add(entry, float(key))
    live["a"] = renewed = (9, 9, Task("a"))  # the first entry of "a" is dead now
    heap.push(renewed)
    del live["d"]
    top, most = heap.top(), largest.top()
    assert top is not None and top[2].id == "b"
    assert most is not None and most[2].id == "c"
    assert [e[2].id for e in expiries.pop_until(3.0)] == ["c", "b"]  # the FIFO's first
    assert sorted(live) == ["a"]
    assert heap.pop() is renewed  # the dead ones skipped, and out of ``live`` too
    assert not live
