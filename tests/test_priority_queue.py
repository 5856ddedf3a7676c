"""PriorityQueue: order, aging, where-pops, TTL, bounds, stats and bad input."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from taskdist import (
    DuplicateTaskError,
    Eviction,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    Priority,
    PriorityQueue,
    QueueFullError,
    Reason,
    Task,
    UnknownPolicyError,
    UnknownTaskError,
)
from taskdist.queues.priority import _NONE_EXPIRED

# Dyadic rationals (multiples of 1/4, small) are exact in binary floating
# point, so the float keys of the queue and the exact Fractions of the model
# below agree bit for bit and ties are real ties.
dyadic = st.integers(min_value=0, max_value=40).map(lambda n: n / 4)
rates = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0])
priorities = st.integers(min_value=-1, max_value=5)


def drain(queue: PriorityQueue) -> list[object]:
    """Every task id in pop order (empties the queue)."""
    order = []
    while (task := queue.pop()) is not None:
        order.append(task.id)
    return order


# -- ordering ----------------------------------------------------------------


def test_lower_number_is_more_urgent_and_ties_are_fifo() -> None:
    q = PriorityQueue(ManualClock())
    for task_id, priority in [("a", 2), ("b", 1), ("c", 2), ("d", 0), ("e", 1)]:
        q.push(Task(task_id, priority=priority))
    assert drain(q) == ["d", "b", "e", "a", "c"]


def test_aging_lets_low_priority_overtake_after_bound() -> None:
    clock = ManualClock()
    q = PriorityQueue(clock, aging_rate=0.5)
    q.push(Task("old-background", priority=Priority.BACKGROUND))
    # (4 - 0) / 0.5 = 8 s: a CRITICAL task pushed at 8 s no longer jumps it.
    clock.advance(7.75)
    q.push(Task("critical-early", priority=Priority.CRITICAL))
    clock.advance(0.25)
    q.push(Task("critical-at-bound", priority=Priority.CRITICAL))
    assert drain(q) == ["critical-early", "old-background", "critical-at-bound"]


def test_effective_priority_falls_with_waiting() -> None:
    clock = ManualClock()
    q = PriorityQueue(clock, aging_rate=0.25)
    q.push(Task("t", priority=3))
    assert q.effective_priority("t") == 3.0
    clock.advance(4.0)
    assert q.effective_priority("t") == 2.0
    with pytest.raises(UnknownTaskError):
        q.effective_priority("nope")


def test_zero_aging_rate_means_no_aging() -> None:
    clock = ManualClock()
    q = PriorityQueue(clock, aging_rate=0.0)
    q.push(Task("low", priority=4))
    clock.advance(1e6)
    q.push(Task("high", priority=1))
    assert q.effective_priority("low") == 4.0
    assert drain(q) == ["high", "low"]


def test_backdated_push_keeps_its_age() -> None:
    clock = ManualClock(start=100.0)
    q = PriorityQueue(clock, aging_rate=1.0)
    q.push(Task("new", priority=1))
    q.push(Task("requeued", priority=3), enqueued_at=97.0)
    assert q.effective_priority("requeued") == 0.0
    assert drain(q) == ["requeued", "new"]


# -- where= --------------------------------------------------------------------


def test_pop_where_takes_the_best_match_and_leaves_the_rest_in_place() -> None:
    q = PriorityQueue(ManualClock())
    q.push(Task("gpu-1", priority=0, requires={"gpu"}))
    q.push(Task("gpu-2", priority=1, requires={"gpu"}))
    q.push(Task("cpu-1", priority=2))
    q.push(Task("cpu-2", priority=3))
    taken = q.pop(where=lambda t: "gpu" not in t.requires)
    assert taken is not None and taken.id == "cpu-1"
    assert drain(q) == ["gpu-1", "gpu-2", "cpu-2"]


def test_pop_where_examines_only_entries_ahead_of_the_match() -> None:
    q = PriorityQueue(ManualClock())
    for i in range(1_000):
        q.push(Task(i, priority=i))
    seen: list[object] = []

    def third(task: Task) -> bool:
        seen.append(task.id)
        return task.id == 2

    taken = q.pop(where=third)
    assert taken is not None and taken.id == 2
    assert seen == [0, 1, 2]


# -- removal, TTL -------------------------------------------------------------


def test_remove_cancels_and_memory_is_reclaimed() -> None:
    q = PriorityQueue(ManualClock())
    for i in range(10_000):
        q.push(Task(i))
    for i in range(0, 10_000, 2):
        assert q.remove(i).id == i
    assert len(q) == 5_000
    # Dead entries are compacted once they outnumber live ones.
    assert len(q._order) <= 2 * len(q) + 64
    assert drain(q) == list(range(1, 10_000, 2))


def test_side_heaps_do_not_keep_popped_tasks() -> None:
    q = PriorityQueue(ManualClock(), maxsize=1_000, overflow="drop_lowest")
    for round_ in range(100):
        for i in range(100):
            q.push(Task((round_, i), ttl=1e9))
        while q.pop() is not None:
            pass
    assert len(q) == 0
    assert len(q._expiry) <= 64
    assert q._lowest is not None and len(q._lowest) <= 64


def test_next_wakeup_skips_tasks_that_left() -> None:
    clock = ManualClock()
    q = PriorityQueue(clock)
    q.push(Task("a", ttl=1.0))
    q.push(Task("b", ttl=2.0))
    q.remove("a")
    assert q.next_wakeup() == 2.0


# -- bounds ---------------------------------------------------------------------


def test_reject_overflow_raises_and_leaves_the_queue_unchanged() -> None:
    q = PriorityQueue(ManualClock(), maxsize=2, overflow="reject")
    q.push(Task("a", priority=3))
    q.push(Task("b", priority=2))
    with pytest.raises(QueueFullError, match="full"):
        q.push(Task("c", priority=0))
    assert drain(q) == ["b", "a"]
    assert q.stats().rejected == 1


def test_drop_lowest_evicts_the_least_urgent() -> None:
    q = PriorityQueue(ManualClock(), maxsize=2, overflow="drop_lowest")
    q.push(Task("a", priority=3))
    q.push(Task("b", priority=2))
    eviction = q.push(Task("c", priority=0))
    assert eviction == Eviction(Task("a", priority=3), Reason.EVICTED)
    # The newcomer itself is evicted when it is the least urgent (ties: newest).
    eviction = q.push(Task("d", priority=2))
    assert eviction is not None and eviction.task.id == "d"
    assert drain(q) == ["c", "b"]
    assert q.stats().evicted == 2


def test_expire_with_reasons_gives_every_task_its_ttl_as_the_reason() -> None:
    clock = ManualClock()
    q = PriorityQueue(clock)
    q.push(Task("late", ttl=2.0, deadline=1.0))
    q.push(Task("plain", ttl=3.0))
    q.push(Task("stays", ttl=9.0))
    clock.set(3.0)
    assert q.expire_with_reasons() == [
        Eviction(Task("late", ttl=2.0, deadline=1.0), Reason.TTL_EXPIRED),
        Eviction(Task("plain", ttl=3.0), Reason.TTL_EXPIRED),
    ]
    assert len(q) == 1 and q.expire_with_reasons() == []


def test_drop_lowest_never_picks_an_expired_task_as_victim() -> None:
    clock = ManualClock()
    q = PriorityQueue(clock, maxsize=2, overflow="drop_lowest")
    q.push(Task("expiring", priority=4, ttl=1.0))
    q.push(Task("keep", priority=3))
    clock.advance(1.0)
    eviction = q.push(Task("new", priority=1))
    assert eviction is not None and eviction.task.id == "keep"
    assert [t.id for t in q.expire()] == ["expiring"]
    assert drain(q) == ["new"]


# -- stats ------------------------------------------------------------------------


def test_stats_report_depth_age_and_wait_percentiles() -> None:
    clock = ManualClock()
    q = PriorityQueue(clock)
    for i in range(100):
        q.push(Task(i, priority=i % 2))
    clock.advance(10.0)
    for _ in range(50):
        q.pop()
    stats = q.stats()
    assert stats.depth == 50
    assert stats.by_priority == {1: 50}
    assert stats.oldest_age == 10.0
    assert stats.wait.count == 50 and stats.wait.p50 == 10.0 and stats.wait.p99 == 10.0
    assert (stats.pushed, stats.popped) == (100, 50)


def test_stats_oldest_age_with_backdated_pushes() -> None:
    clock = ManualClock(start=50.0)
    q = PriorityQueue(clock)
    q.push(Task("now"))
    q.push(Task("older"), enqueued_at=20.0)
    assert q.stats().oldest_age == 30.0
    q.remove("older")
    assert q.stats().oldest_age == 0.0


# -- bad input ----------------------------------------------------------------------


def _sample_queue() -> tuple[PriorityQueue, ManualClock]:
    clock = ManualClock(start=10.0)
    q = PriorityQueue(clock, aging_rate=0.5, maxsize=5)
    for i, priority in enumerate([3, 1, 2]):
        q.push(Task(f"t{i}", priority=priority, ttl=30.0))
    return q, clock


@pytest.mark.parametrize(
    ("bad_call", "error"),
    [
        # What every queue refuses is in the Queue contract (test_queue_contract.py).
        (lambda q: q.effective_priority([]), InvalidTypeError),
        (lambda q: q.effective_priority("missing"), UnknownTaskError),
    ],
)
def test_bad_input_raises_and_leaves_the_queue_unchanged(
    bad_call: Callable[[PriorityQueue], object], error: type[Exception]
) -> None:
    q, _ = _sample_queue()
    untouched, _ = _sample_queue()
    with pytest.raises(error):
        bad_call(q)
    assert len(q) == len(untouched)
    assert q.next_wakeup() == untouched.next_wakeup()
    assert drain(q) == drain(untouched)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"aging_rate": -0.1}, InvalidArgumentError),
        ({"aging_rate": float("nan")}, InvalidArgumentError),
        ({"aging_rate": float("inf")}, InvalidArgumentError),
        ({"maxsize": 0}, InvalidArgumentError),
        ({"maxsize": 2.5}, InvalidTypeError),
        ({"overflow": "drop_oldest"}, UnknownPolicyError),
        ({"stats_window": 0}, InvalidArgumentError),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        PriorityQueue(ManualClock(), **kwargs)  # type: ignore[arg-type]


def test_a_clock_without_now_is_refused() -> None:
    with pytest.raises(InvalidTypeError, match="now"):
        PriorityQueue(object())  # type: ignore[arg-type]


# -- starvation bound (property) ------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(min_value=0, max_value=4), dyadic),
        st.tuples(st.just("pop"), st.just(0), dyadic),
    ),
    max_size=80,
)


@given(rate=st.sampled_from([0.25, 0.5, 1.0, 2.0]), ops=operations)
def test_starvation_bound(rate: float, ops: list[tuple[str, int, float]]) -> None:
    """A task of priority p pushed at t0 is popped before any task pushed after
    it at a time >= t0 + (p - p_min) / rate (p_min: the smallest priority pushed)."""
    clock = ManualClock()
    q = PriorityQueue(clock, aging_rate=rate)
    pushed_at: dict[int, tuple[float, int]] = {}
    popped: list[int] = []
    for i, (kind, priority, dt) in enumerate(ops):
        clock.advance(dt)
        if kind == "push":
            q.push(Task(i, priority=priority))
            pushed_at[i] = (clock.now(), priority)
        elif (task := q.pop()) is not None:
            popped.append(task.id)  # type: ignore[arg-type]
    popped.extend(drain(q))  # type: ignore[arg-type]
    if not pushed_at:
        return
    p_min = min(priority for _, priority in pushed_at.values())
    position = {task_id: n for n, task_id in enumerate(popped)}
    for task_id, (t0, priority) in pushed_at.items():
        bound = t0 + (priority - p_min) / rate
        for other, (t1, _) in pushed_at.items():
            if other > task_id and t1 >= bound:
                note(f"{task_id} (p={priority}, t0={t0}) vs {other} pushed at {t1}")
                assert position[task_id] < position[other]


# -- stateful: the queue against a reference model --------------------------------------


class PriorityQueueMachine(RuleBasedStateMachine):
    """Every operation, compared with a naive exact model; nothing lost or duplicated."""

    maxsize: int | None = None
    overflow = "reject"

    @initialize(rate=rates)
    def start(self, rate: float) -> None:
        self.clock = ManualClock()
        self.rate = rate
        self.queue = PriorityQueue(
            self.clock,
            aging_rate=rate,
            maxsize=self.maxsize,
            overflow=self.overflow,  # type: ignore[arg-type]
        )
        # id -> (exact key, enqueued_at, seq, expires or None, task): the queue pops the
        # smallest (key, enqueued_at, seq) first.
        self.model: dict[int, tuple[Fraction, Fraction, int, Fraction | None, Task]] = {}
        self.seq = 0
        self.next_id = 0
        self.handed_out: list[object] = []

    # The model ------------------------------------------------------------

    def now(self) -> Fraction:
        return Fraction(self.clock.now())

    def is_expired(self, expires: Fraction | None) -> bool:
        return expires is not None and self.now() >= expires

    def best(self, where: Callable[[Task], bool] | None = None) -> int | None:
        live = [
            (key, t, seq, task_id)
            for task_id, (key, t, seq, expires, task) in self.model.items()
            if not self.is_expired(expires) and (where is None or where(task))
        ]
        return min(live)[3] if live else None

    # Rules ----------------------------------------------------------------

    @rule(priority=priorities, ttl=st.none() | dyadic.filter(bool), back=st.none() | dyadic)
    def push(self, priority: int, ttl: float | None, back: float | None) -> None:
        task = Task(self.next_id, priority=priority, ttl=ttl)
        enqueued = None if back is None else max(0.0, self.clock.now() - back)
        t = self.now() if enqueued is None else Fraction(enqueued)
        key = priority + Fraction(self.rate) * t
        expires = None if ttl is None else t + Fraction(ttl)
        full = self.maxsize is not None and len(self.model) >= self.maxsize
        if full and self.overflow == "reject":
            with pytest.raises(QueueFullError):
                self.queue.push(task, enqueued_at=enqueued)
            return
        eviction = self.queue.push(task, enqueued_at=enqueued)
        self.next_id += 1
        if full:
            live = [
                (k, at, s, i)
                for i, (k, at, s, e, _) in self.model.items()
                if not self.is_expired(e)
            ]
            victim = max(live) if live else None
            if victim is None or (key, t, self.seq) > victim[:3]:
                assert eviction is not None and eviction.task is task
                self.handed_out.append(task.id)
                return
            assert eviction is not None and eviction.task.id == victim[3]
            assert eviction.reason is Reason.EVICTED
            del self.model[victim[3]]
            self.handed_out.append(victim[3])
        else:
            assert eviction is None
        self.model[task.id] = (key, t, self.seq, expires, task)  # type: ignore[index]
        self.seq += 1

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def push_duplicate(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.model)))
        with pytest.raises(DuplicateTaskError):
            self.queue.push(Task(task_id))

    @rule()
    def pop(self) -> None:
        expected = self.best()
        task = self.queue.pop()
        assert (task.id if task else None) == expected
        if task is not None:
            del self.model[task.id]  # type: ignore[arg-type]
            self.handed_out.append(task.id)

    @rule(modulus=st.integers(min_value=2, max_value=4), remainder=st.integers(0, 3))
    def pop_where(self, modulus: int, remainder: int) -> None:
        def where(task: Task) -> bool:
            return task.id % modulus == remainder  # type: ignore[operator,no-any-return]

        expected = self.best(where)
        peeked = self.queue.peek(where)
        assert (peeked.id if peeked else None) == expected
        task = self.queue.pop(where)
        assert (task.id if task else None) == expected
        if task is not None:
            del self.model[task.id]  # type: ignore[arg-type]
            self.handed_out.append(task.id)

    @rule()
    def peek(self) -> None:
        task = self.queue.peek()
        assert (task.id if task else None) == self.best()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.model)))
        assert self.queue.remove(task_id).id == task_id
        del self.model[task_id]
        self.handed_out.append(task_id)

    @rule(task_id=st.integers(min_value=-5, max_value=-1))
    def remove_unknown(self, task_id: int) -> None:
        with pytest.raises(UnknownTaskError):
            self.queue.remove(task_id)

    @rule()
    def expire(self) -> None:
        # Earliest expiry first; equal expiries oldest first, then in push order.
        due = sorted(
            (expires, t, seq, task_id)
            for task_id, (_, t, seq, expires, _) in self.model.items()
            if self.is_expired(expires)
        )
        assert [t.id for t in self.queue.expire()] == [task_id for *_, task_id in due]
        for *_, task_id in due:
            del self.model[task_id]
            self.handed_out.append(task_id)

    @rule(dt=dyadic)
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    # Invariants -------------------------------------------------------------

    @invariant()
    def same_size_and_members(self) -> None:
        assert len(self.queue) == len(self.model)
        assert bool(self.queue) == bool(self.model)
        for task_id in self.model:
            assert task_id in self.queue
        # Every queue starts with one shared empty holding area of expired tasks: a queue
        # that filed an expired task there would show it to every other queue.
        assert not _NONE_EXPIRED

    @invariant()
    def nothing_lost_or_duplicated(self) -> None:
        assert len(set(self.handed_out)) == len(self.handed_out)
        assert set(self.handed_out).isdisjoint(self.model)
        assert len(self.handed_out) + len(self.model) == self.next_id

    @invariant()
    def next_wakeup_is_the_earliest_expiry(self) -> None:
        expiries = [e for _, _, _, e, _ in self.model.values() if e is not None]
        wakeup = self.queue.next_wakeup()
        assert wakeup == (float(min(expiries)) if expiries else None)

    @invariant()
    def effective_priority_matches(self) -> None:
        for task_id, (key, _, _, _, _) in list(self.model.items())[:3]:
            expected = key - Fraction(self.rate) * self.now()
            assert self.queue.effective_priority(task_id) == float(expected)

    @invariant()
    def stats_agree(self) -> None:
        stats = self.queue.stats()
        assert stats.depth == len(self.model)
        assert sum(stats.by_priority.values()) == len(self.model)


class BoundedRejectMachine(PriorityQueueMachine):
    maxsize = 4
    overflow = "reject"


class BoundedDropLowestMachine(PriorityQueueMachine):
    maxsize = 4
    overflow = "drop_lowest"


TestPriorityQueueMachine = PriorityQueueMachine.TestCase
TestBoundedRejectMachine = BoundedRejectMachine.TestCase
TestBoundedDropLowestMachine = BoundedDropLowestMachine.TestCase
