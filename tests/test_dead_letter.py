"""DeadLetterQueue: entries with reason, history and time; inspect, filter, redrive, purge,
bounds; and nothing lost across any sequence of operations."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from taskdist import (
    Assignment,
    DeadLetter,
    DeadLetterQueue,
    DuplicateTaskError,
    Eviction,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    PriorityQueue,
    Queue,
    QueueFullError,
    Reason,
    Task,
    UnknownPolicyError,
    UnknownTaskError,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(100.0)


def books(dlq: DeadLetterQueue) -> tuple[object, ...]:
    """Everything observable, to compare before and after a refused call."""
    return (list(dlq), dlq.stats())


# -- adding and looking ------------------------------------------------------


def test_an_entry_keeps_reason_history_error_and_time(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    task = Task("t1", max_attempts=2)
    history = [Assignment(task, "w1", 1, 90.0), Assignment(task, "w2", 2, 95.0)]
    assert dlq.add(task, Reason.MAX_ATTEMPTS, history=history, error=TimeoutError("slow")) is None
    entry = dlq["t1"]
    assert entry.task is task
    assert entry.reason is Reason.MAX_ATTEMPTS
    assert entry.history == tuple(history)
    assert entry.attempts == 2
    assert entry.error == "TimeoutError: slow"
    assert entry.dead_at == 100.0
    assert entry.redriven_at is None


def test_reasons_may_be_given_by_value_and_errors_as_text(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    dlq.add(Task("t"), "ttl_expired", error="expired in queue")
    assert dlq["t"].reason is Reason.TTL_EXPIRED
    assert dlq["t"].error == "expired in queue"


def test_lookup_iteration_and_membership(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    for i in range(3):
        dlq.add(Task(i), Reason.REJECTED)
        clock.advance(1.0)
    assert [e.task.id for e in dlq] == [0, 1, 2]  # oldest first
    assert len(dlq) == 3
    assert 1 in dlq
    assert 7 not in dlq
    assert [] not in dlq  # unhashable: simply not there
    assert dlq.get(7) is None
    assert dlq.get([]) is None
    with pytest.raises(UnknownTaskError):
        dlq[7]


def test_filter_by_reason_and_predicate(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    dlq.add(Task("a", tenant="acme"), Reason.MAX_ATTEMPTS)
    dlq.add(Task("b", tenant="globex"), Reason.TTL_EXPIRED)
    dlq.add(Task("c", tenant="acme"), Reason.TTL_EXPIRED)
    assert [e.task.id for e in dlq.filter(reason=Reason.TTL_EXPIRED)] == ["b", "c"]
    assert [e.task.id for e in dlq.filter(reason="ttl_expired")] == ["b", "c"]
    acme = dlq.filter(predicate=lambda e: e.task.tenant == "acme")
    assert [e.task.id for e in acme] == ["a", "c"]
    both = dlq.filter(reason=Reason.TTL_EXPIRED, predicate=lambda e: e.task.tenant == "acme")
    assert [e.task.id for e in both] == ["c"]
    assert len(dlq.filter()) == 3


def test_stats_keep_the_books(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock, maxsize=2)
    dlq.add(Task("a"), Reason.MAX_ATTEMPTS)
    clock.advance(5.0)
    dlq.add(Task("b"), Reason.TTL_EXPIRED)
    dlq.add(Task("c"), Reason.TTL_EXPIRED)  # evicts a
    clock.advance(2.0)
    dlq.redrive(["b"], into=PriorityQueue(clock))
    dlq.add(Task("d"), Reason.REJECTED)
    dlq.purge(["d"])
    stats = dlq.stats()
    assert stats.depth == 1
    assert stats.by_reason == {Reason.TTL_EXPIRED: 1}
    assert stats.oldest_age == 2.0
    assert (stats.added, stats.redriven, stats.purged, stats.evicted, stats.rejected) == (
        4,
        1,
        1,
        1,
        0,
    )
    assert stats.added == stats.depth + stats.redriven + stats.purged + stats.evicted


# -- bounds -------------------------------------------------------------------


def test_a_full_dlq_drops_the_oldest_and_returns_it(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock, maxsize=2)
    dlq.add(Task("a"), Reason.MAX_ATTEMPTS)
    dlq.add(Task("b"), Reason.MAX_ATTEMPTS)
    evicted = dlq.add(Task("c"), Reason.MAX_ATTEMPTS)
    assert evicted is not None
    assert evicted.task.id == "a"
    assert [e.task.id for e in dlq] == ["b", "c"]
    assert dlq.stats().evicted == 1


def test_a_full_rejecting_dlq_raises_and_keeps_what_it_has(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock, maxsize=1, overflow="reject")
    dlq.add(Task("a"), Reason.MAX_ATTEMPTS)
    before = list(dlq)
    with pytest.raises(QueueFullError):
        dlq.add(Task("b"), Reason.MAX_ATTEMPTS)
    assert list(dlq) == before
    assert dlq.stats().rejected == 1


def test_a_history_that_fails_to_iterate_evicts_nothing(clock: ManualClock) -> None:
    # The history was copied after the oldest entry had been evicted to make room:
    # the add raised, and the evicted entry was gone without being returned.
    dlq = DeadLetterQueue(clock, maxsize=1)
    dlq.add(Task("a"), Reason.MAX_ATTEMPTS)
    before = books(dlq)

    def attempts() -> Iterator[str]:
        yield "try 1"
        raise RuntimeError("history source failed")

    with pytest.raises(RuntimeError):
        dlq.add(Task("b"), Reason.MAX_ATTEMPTS, history=attempts())
    assert books(dlq) == before


# -- redrive ------------------------------------------------------------------


def test_redrive_by_id_pushes_into_the_queue_and_resets_attempts(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    task = Task("t1")
    dlq.add(task, Reason.MAX_ATTEMPTS, history=["try 1", "try 2", "try 3"])
    queue = PriorityQueue(clock)
    clock.advance(30.0)
    report = dlq.redrive(["t1"], into=queue)
    assert "t1" not in dlq
    assert queue.pop() is task
    (entry,) = report.redriven
    assert entry.redriven_at == 130.0
    assert entry.history == ("try 1", "try 2", "try 3")  # kept for the caller's records
    assert report.refused == ()
    # Dead again later: a fresh entry, its history starting over.
    dlq.add(task, Reason.MAX_ATTEMPTS, history=["try 1"])
    assert dlq["t1"].attempts == 1


def test_redrive_by_predicate_takes_matching_entries_oldest_first(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    for i, reason in enumerate([Reason.TTL_EXPIRED, Reason.MAX_ATTEMPTS, Reason.TTL_EXPIRED]):
        dlq.add(Task(i), reason)
    queue = PriorityQueue(clock)
    report = dlq.redrive(lambda e: e.reason is Reason.TTL_EXPIRED, into=queue)
    assert [e.task.id for e in report.redriven] == [0, 2]
    assert [e.task.id for e in dlq] == [1]
    assert len(queue) == 2


def test_a_task_the_queue_already_holds_stays_in_the_dlq(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    dlq.add(Task("dup"), Reason.MAX_ATTEMPTS)
    dlq.add(Task("ok"), Reason.MAX_ATTEMPTS)
    queue = PriorityQueue(clock)
    queue.push(Task("dup"))
    report = dlq.redrive(["dup", "ok"], into=queue)
    assert [e.task.id for e in report.redriven] == ["ok"]
    ((entry, why),) = report.refused
    assert entry.task.id == "dup"
    assert "DuplicateTaskError" in why
    assert "dup" in dlq
    assert dlq.stats().redriven == 1


def test_a_full_queue_leaves_the_rest_in_the_dlq(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    for i in range(4):
        dlq.add(Task(i), Reason.MAX_ATTEMPTS)
    queue = PriorityQueue(clock, maxsize=2, overflow="reject")
    report = dlq.redrive(lambda e: True, into=queue)
    assert [e.task.id for e in report.redriven] == [0, 1]
    assert [e.task.id for e, _ in report.refused] == [2, 3]
    assert all("QueueFullError" in why for _, why in report.refused)
    assert [e.task.id for e in dlq] == [2, 3]


def test_a_task_the_queue_evicts_straight_back_stays_in_the_dlq(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    dlq.add(Task("background", priority=4), Reason.TTL_EXPIRED)
    queue = PriorityQueue(clock, maxsize=1, overflow="drop_lowest")
    queue.push(Task("urgent", priority=0))
    report = dlq.redrive(["background"], into=queue)
    assert report.redriven == ()
    assert "background" in dlq
    assert "urgent" in queue


def test_a_task_the_queue_displaces_to_make_room_is_dead_lettered(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    dlq.add(Task("urgent", priority=0), Reason.MAX_ATTEMPTS)
    queue = PriorityQueue(clock, maxsize=1, overflow="drop_lowest")
    queue.push(Task("background", priority=4))
    report = dlq.redrive(["urgent"], into=queue)
    assert [e.task.id for e in report.redriven] == ["urgent"]
    assert report.displaced == (Eviction(Task("background", priority=4), Reason.EVICTED),)
    assert dlq["background"].reason is Reason.EVICTED
    assert "urgent" in queue


def test_a_displaced_task_whose_id_is_already_dead_lettered_is_only_reported(
    clock: ManualClock,
) -> None:
    # A task resubmitted under the id of a dead one, then displaced by a redrive:
    # the DLQ cannot hold two entries with one id, so the report is where it goes.
    dlq = DeadLetterQueue(clock)
    dead = Task("x", priority=0, payload="first run")
    dlq.add(dead, Reason.MAX_ATTEMPTS)
    dlq.add(Task("urgent", priority=0), Reason.MAX_ATTEMPTS)
    queue = PriorityQueue(clock, maxsize=1, overflow="drop_lowest")
    resubmitted = Task("x", priority=4, payload="second run")
    queue.push(resubmitted)
    report = dlq.redrive(["urgent"], into=queue)
    assert report.displaced == (Eviction(resubmitted, Reason.EVICTED),)
    assert dlq["x"].task is dead
    assert "urgent" in queue and "x" not in queue
    stats = dlq.stats()
    assert stats.added == stats.depth + stats.redriven + stats.purged + stats.evicted


def test_an_unknown_id_redrives_nothing(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    dlq.add(Task("a"), Reason.MAX_ATTEMPTS)
    queue = PriorityQueue(clock)
    with pytest.raises(UnknownTaskError):
        dlq.redrive(["a", "missing"], into=queue)
    assert "a" in dlq
    assert len(queue) == 0


@pytest.mark.parametrize(
    ("selector", "error"),
    [
        ("a", InvalidTypeError),  # a lone str id: ambiguous, must be ["a"]
        (b"a", InvalidTypeError),
        (42, InvalidTypeError),
        ([["unhashable"]], InvalidTypeError),
        (["missing"], UnknownTaskError),
    ],
)
@pytest.mark.parametrize("action", ["redrive", "purge"])
def test_bad_selectors_are_refused_and_change_nothing(
    clock: ManualClock, selector: object, error: type[Exception], action: str
) -> None:
    dlq = DeadLetterQueue(clock)
    dlq.add(Task("a"), Reason.MAX_ATTEMPTS)
    before = books(dlq)
    queue = PriorityQueue(clock)
    act = {
        "redrive": lambda: dlq.redrive(selector, into=queue),  # type: ignore[arg-type]
        "purge": lambda: dlq.purge(selector),  # type: ignore[arg-type]
    }[action]
    with pytest.raises(error):
        act()
    assert len(queue) == 0
    assert books(dlq) == before


def test_redrive_into_something_that_is_not_a_queue_is_refused(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    dlq.add(Task("a"), Reason.MAX_ATTEMPTS)
    with pytest.raises(InvalidTypeError):
        dlq.redrive(["a"], into=[])  # type: ignore[arg-type]
    assert "a" in dlq


# -- purge --------------------------------------------------------------------


def test_purge_removes_and_returns_the_selected_entries(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    for i in range(5):
        dlq.add(Task(i), Reason.REJECTED if i % 2 else Reason.MAX_ATTEMPTS)
    assert [e.task.id for e in dlq.purge([3, 1])] == [3, 1]
    assert [e.task.id for e in dlq.purge(lambda e: e.task.id == 4)] == [4]
    assert [e.task.id for e in dlq.purge()] == [0, 2]
    assert len(dlq) == 0
    assert dlq.stats().purged == 5


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"reason": "exploded"}, InvalidArgumentError),
        ({"reason": None}, InvalidArgumentError),
        ({"history": "try 1"}, InvalidTypeError),
        ({"history": 3}, InvalidTypeError),
        ({"error": 42}, InvalidTypeError),
        ({"task": "not a task"}, InvalidTypeError),
        ({"task": Task("held")}, DuplicateTaskError),
    ],
)
def test_bad_adds_are_refused_and_change_nothing(
    clock: ManualClock, kwargs: dict[str, object], error: type[Exception]
) -> None:
    dlq = DeadLetterQueue(clock)
    dlq.add(Task("held"), Reason.MAX_ATTEMPTS)
    before = books(dlq)
    call: dict[str, object] = {"task": Task("new"), "reason": Reason.REJECTED, **kwargs}
    with pytest.raises(error):
        dlq.add(**call)  # type: ignore[arg-type]
    assert books(dlq) == before


def test_bad_filters_are_refused(clock: ManualClock) -> None:
    dlq = DeadLetterQueue(clock)
    with pytest.raises(InvalidArgumentError):
        dlq.filter(reason="nope")
    with pytest.raises(InvalidTypeError):
        dlq.filter(predicate="nope")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"maxsize": 0}, InvalidArgumentError),
        ({"maxsize": -1}, InvalidArgumentError),
        ({"maxsize": 1.5}, InvalidTypeError),
        ({"maxsize": math.inf}, InvalidTypeError),
        ({"overflow": "drop_newest"}, UnknownPolicyError),
        ({"clock": object()}, InvalidTypeError),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        DeadLetterQueue(**kwargs)  # type: ignore[arg-type]


# -- nothing lost ---------------------------------------------------------------


class DeadLetterMachine(RuleBasedStateMachine):
    """Adds, redrives (into a small bounded queue), pops from that queue and purges, against
    a model that knows where every task ever added is. Each task is in exactly one place."""

    added_ids = Bundle("added_ids")
    reasons = st.sampled_from([Reason.MAX_ATTEMPTS, Reason.TTL_EXPIRED, Reason.REJECTED])

    @initialize(
        maxsize=st.sampled_from([None, 3]),
        overflow=st.sampled_from(["drop_oldest", "reject"]),
        queue_overflow=st.sampled_from(["reject", "drop_lowest"]),
    )
    def setup(self, maxsize: int | None, overflow: str, queue_overflow: str) -> None:
        self.clock = ManualClock()
        self.dlq = DeadLetterQueue(self.clock, maxsize=maxsize, overflow=overflow)  # type: ignore[arg-type]
        self.queue = PriorityQueue(self.clock, maxsize=2, overflow=queue_overflow)  # type: ignore[arg-type]
        self.next_id = 0
        # Where each task id is: "dlq", "queue", "popped", "purged", "evicted", "refused".
        self.where: dict[int, str] = {}
        self.model_dlq: dict[int, Reason] = {}

    def _place(self, task_id: int, place: str) -> None:
        self.where[task_id] = place
        if place != "dlq":
            self.model_dlq.pop(task_id, None)

    @rule(target=added_ids, reason=reasons, priority=st.integers(0, 4))
    def add(self, reason: Reason, priority: int) -> int:
        task_id = self.next_id
        self.next_id += 1
        self.clock.advance(1.0)
        task = Task(task_id, priority=priority)
        full = self.dlq.maxsize is not None and len(self.model_dlq) >= self.dlq.maxsize
        if full and self.dlq.overflow == "reject":
            with pytest.raises(QueueFullError):
                self.dlq.add(task, reason)
            self._place(task_id, "refused")
            return task_id
        evicted = self.dlq.add(task, reason)
        if full:
            assert evicted is not None
            assert evicted.task.id == next(iter(self.model_dlq))  # the oldest
            self._place(evicted.task.id, "evicted")
        else:
            assert evicted is None
        self.where[task_id] = "dlq"
        self.model_dlq[task_id] = reason
        return task_id

    @rule(task_id=added_ids)
    def redrive_one(self, task_id: int) -> None:
        if self.where[task_id] != "dlq":
            with pytest.raises(UnknownTaskError):
                self.dlq.redrive([task_id], into=self.queue)
            return
        self._redrive([task_id])

    @rule(reason=reasons)
    def redrive_by_reason(self, reason: Reason) -> None:
        self._redrive(lambda e: e.reason is reason)

    @rule()
    def redrive_all(self) -> None:
        self._redrive(lambda e: True)

    def _redrive(self, selector: object) -> None:
        report = self.dlq.redrive(selector, into=self.queue)  # type: ignore[arg-type]
        for entry in report.redriven:
            assert self.where[entry.task.id] == "dlq"
            self._place(entry.task.id, "queue")
        for eviction in report.displaced:
            assert self.where[eviction.task.id] == "queue"
            self.where[eviction.task.id] = "dlq"
            self.model_dlq[eviction.task.id] = eviction.reason
        for entry, _ in report.refused:
            assert self.where[entry.task.id] == "dlq"

    @rule()
    def pop_from_queue(self) -> None:
        task = self.queue.pop()
        if task is not None:
            assert self.where[task.id] == "queue"
            self._place(task.id, "popped")

    @rule(task_id=consumes(added_ids))
    def purge_one(self, task_id: int) -> None:
        if self.where[task_id] != "dlq":
            with pytest.raises(UnknownTaskError):
                self.dlq.purge([task_id])
            return
        (entry,) = self.dlq.purge([task_id])
        assert entry.task.id == task_id
        self._place(task_id, "purged")

    @invariant()
    def every_task_is_in_exactly_one_place(self) -> None:
        in_dlq = {e.task.id for e in self.dlq}
        assert in_dlq == {i for i, place in self.where.items() if place == "dlq"}
        assert {i for i in self.where if i in self.queue} == {
            i for i, place in self.where.items() if place == "queue"
        }
        assert not in_dlq & {i for i in self.where if i in self.queue}

    @invariant()
    def the_books_balance(self) -> None:
        stats = self.dlq.stats()
        assert stats.depth == len(self.model_dlq)
        assert stats.added == stats.depth + stats.redriven + stats.purged + stats.evicted
        assert stats.by_reason == {
            r: n
            for r in Reason
            if (n := sum(1 for reason in self.model_dlq.values() if reason is r))
        }
        assert stats.rejected == sum(1 for p in self.where.values() if p == "refused")
        if self.dlq.maxsize is not None:
            assert len(self.dlq) <= self.dlq.maxsize
        assert [e.task.id for e in self.dlq] == list(self.model_dlq)  # oldest first
        assert isinstance(self.queue, Queue)


TestDeadLetterMachine = DeadLetterMachine.TestCase


@pytest.mark.parametrize("call", ["redrive", "purge", "filter"])
def test_a_predicate_that_changes_the_dlq_is_served_from_a_copy(
    clock: ManualClock, call: str
) -> None:
    dlq = DeadLetterQueue(clock)
    for task_id in "abc":
        dlq.add(Task(task_id), Reason.MAX_ATTEMPTS)
    seen: list[str] = []

    def predicate(entry: DeadLetter) -> bool:
        seen.append(entry.task.id)
        if entry.task.id == "a":
            dlq.purge(["b"])  # takes an entry not yet looked at
            dlq.add(Task("d"), Reason.TTL_EXPIRED)  # and adds one
        return True

    queue = PriorityQueue(clock)
    if call == "redrive":
        report = dlq.redrive(predicate, into=queue)
        chosen = [entry.task.id for entry in report.redriven]
        assert sorted(t.id for t in iter(queue.pop, None)) == ["a", "c"]
    elif call == "purge":
        chosen = [entry.task.id for entry in dlq.purge(predicate)]
    else:
        chosen = [entry.task.id for entry in dlq.filter(predicate=predicate)]
    assert seen == ["a", "b", "c"]  # the entries as they were when the call began
    assert chosen == ["a", "c"]  # b was taken meanwhile: neither chosen nor taken twice
    stats = dlq.stats()
    assert stats.added == stats.depth + stats.redriven + stats.purged + stats.evicted
    held = [entry.task.id for entry in dlq]
    assert held == (["a", "c", "d"] if call == "filter" else ["d"])
