"""Gangs: tasks that start together or not at all, and dead-letter together when they cannot."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Hashable, Iterator
from typing import Any

import pytest
from distributor_support import on_slots as cluster
from hostile import assert_refused
from hypothesis import event as note
from hypothesis import given, target
from hypothesis import strategies as st

from taskdist import (
    ConcurrencyLimit,
    DeadLetter,
    DeadLetterQueue,
    Distributor,
    Escalation,
    EventKind,
    FairScheduler,
    Gangs,
    InvalidArgumentError,
    InvalidTypeError,
    KeyedRateGate,
    KeyedRateLimiter,
    ManualClock,
    Pool,
    PoolGate,
    PriorityQueue,
    Quota,
    RateGate,
    RateLimiter,
    Reason,
    ResourcePool,
    Route,
    Step,
    Task,
    TaskdistError,
    TaskState,
    UnsatisfiableDemandError,
    Worker,
)


def member(gang: str, index: int, size: int, **fields: Any) -> Task:
    return Task(f"{gang}-{index}", gang=gang, gang_size=size, **fields)


def test_members_wait_parked_until_the_gang_is_complete_then_start_in_one_dispatch() -> None:
    d, _, events = cluster(2, 2)
    for i in range(3):
        d.submit(member("g1", i, 4))
    assert d.dispatch() == []
    assert d.state_of("g1-0") is TaskState.PARKED
    assert d.explain("g1-0") == "parked: waiting for gang 'g1': 3 of 4"
    d.submit(member("g1", 3, 4))
    assert [e.task_id for e in events if e.kind is EventKind.GANG_READY] == ["g1-3"]
    placed = d.dispatch()
    assert sorted(a.task.id for a in placed) == ["g1-0", "g1-1", "g1-2", "g1-3"]
    assert {a.worker_id for a in placed} == {"w0", "w1"}


def test_a_waiting_gang_holds_no_capacity() -> None:
    d, _, _ = cluster(2)
    d.submit(member("g1", 0, 2))
    d.submit(Task("solo-1"))
    d.submit(Task("solo-2"))
    assert sorted(a.task.id for a in d.dispatch()) == ["solo-1", "solo-2"]


def test_a_complete_gang_waits_until_every_member_fits_at_once() -> None:
    d, _, _ = cluster(2, 2)
    d.submit(Task("busy"))
    d.dispatch()
    for i in range(4):
        d.submit(member("g1", i, 4))
    assert d.dispatch() == []  # three slots free for four members: none starts
    assert d.tracker.worker("w0").in_flight + d.tracker.worker("w1").in_flight == 1
    assert "no room for every member at once" in d.explain("g1-3")
    assert "placed all together with 'g1-3'" in d.explain("g1-0")
    d.complete("busy")
    assert len(d.dispatch()) == 4


def test_gangs_waiting_for_room_all_start_when_room_for_all_comes() -> None:
    d, _, _ = cluster(1)
    for gang in ("g1", "g2", "g3"):
        for i in range(2):
            d.submit(member(gang, i, 2))
    assert d.dispatch() == []
    d.add_worker(Worker("big", capacity=6))
    assert len(d.dispatch()) == 6


def test_a_gang_not_placed_in_time_is_dead_lettered_as_a_whole() -> None:
    d, clock, _ = cluster(1, gangs=Gangs(timeout=60.0))
    for i in range(2):
        d.submit(member("g1", i, 3))
    assert d.next_wakeup() == 60.0
    clock.set(60.0)
    d.tick()
    for task_id in ("g1-0", "g1-1"):
        assert d.state_of(task_id) is TaskState.DEAD
        entry = d.dlq.get(task_id)
        assert entry is not None and entry.reason is Reason.GANG_TIMEOUT
    assert "gang 'g1' was not placed within 60 s (2 of 3 members arrived)" in d.explain("g1-0")
    assert d.stats().dead_by_reason == {Reason.GANG_TIMEOUT: 2}


@pytest.mark.parametrize("select", [["g1-1"], lambda entry: entry.task.id == "g1-1"])
def test_redriving_a_gang_member_takes_its_dead_gang_mates_along(select: Any) -> None:
    # Taken in alone, a member waited for the rest of its gang and died again at the
    # gang's timeout: the rest, dead too, now come along.
    d, clock, _ = cluster(1, gangs=Gangs(timeout=10.0))
    d.submit(Task("solo", max_attempts=1))
    for i in range(3):
        d.submit(member("g1", i, 3))
    clock.set(10.0)
    d.tick()
    d.dispatch()
    d.fail("solo", error="boom")
    dead = [entry.task.id for entry in d.dlq]
    assert sorted(dead) == ["g1-0", "g1-1", "g1-2", "solo"]
    report = d.redrive(select)
    # The one selected, then its gang's other members, oldest first.
    mates = [task_id for task_id in dead if task_id not in ("g1-1", "solo")]
    assert [entry.task.id for entry in report.redriven] == ["g1-1", *mates]
    assert report.refused == () and [entry.task.id for entry in d.dlq] == ["solo"]
    d.add_worker(Worker("more", capacity=2))
    assert sorted(a.task.id for a in d.dispatch()) == ["g1-0", "g1-1", "g1-2"]


@pytest.mark.parametrize("why", ["max_queued", "deadline"])
def test_a_redriven_gang_that_cannot_be_taken_in_whole_stays_dead_whole(why: str) -> None:
    # One member refused midway (no room left under max_queued, or its deadline passed)
    # left the members taken in before it waiting for it until the gang's timeout.
    options: dict[str, Any] = {"max_queued": 3} if why == "max_queued" else {}
    d, clock, events = cluster(1, gangs=Gangs(timeout=10.0), **options)
    d.submit(member("g1", 0, 3, deadline=5.0 if why == "deadline" else None))
    d.submit(member("g1", 1, 3))
    d.submit(member("g1", 2, 3))
    clock.set(10.0)
    d.tick()
    if why == "max_queued":
        d.submit(Task("busy"))  # room for two more, not three
    before = ([entry.task.id for entry in d.dlq], d.stats().submitted, len(events))
    report = d.redrive(["g1-2"])
    assert report.redriven == ()
    assert sorted(entry.task.id for entry, _ in report.refused) == ["g1-0", "g1-1", "g1-2"]
    expected = "QueueFullError" if why == "max_queued" else "DeadlineError"
    assert all(reason.startswith(expected) for _, reason in report.refused)
    assert ([entry.task.id for entry in d.dlq], d.stats().submitted, len(events)) == before
    assert all(d.state_of(f"g1-{i}") is TaskState.DEAD for i in range(3))


def test_a_redriven_gang_a_member_of_which_its_tenants_quota_refuses_stays_dead_whole() -> None:
    # Members of two tenants; since they died, "t" reached its max_queued. Its member, the
    # second taken in, was refused, and the first, taken in, waited in vain for it.
    fair = FairScheduler(ManualClock(), quotas={"t": Quota(max_queued=1)})
    d, clock, events = cluster(1, queue=fair, gangs=Gangs(timeout=10.0))
    d.submit(member("g1", 0, 2, tenant="a"))
    d.submit(member("g1", 1, 2, tenant="t"))
    clock.set(10.0)
    d.tick()
    d.submit(Task("busy", tenant="t", requires={"none has it"}))
    before = ([entry.task.id for entry in d.dlq], d.stats().submitted, len(events))
    report = d.redrive(["g1-0"])
    assert report.redriven == ()
    assert [entry.task.id for entry, _ in report.refused] == ["g1-0", "g1-1"]
    assert all(why.startswith("QuotaExceededError") for _, why in report.refused)
    assert ([entry.task.id for entry in d.dlq], d.stats().submitted, len(events)) == before
    assert d.state_of("g1-0") is TaskState.DEAD and d.state_of("g1-1") is TaskState.DEAD


class ShrinkingGate:
    """A gate of ``size`` units (a task takes its ``resources["units"]``, 1 by default),
    whose size the test may lower."""

    def __init__(self, size: float) -> None:
        self.size = size
        self.held: dict[Hashable, float] = {}

    def try_acquire(self, task: Task) -> bool:
        if not self.can_acquire(task):
            return False
        self.held[task.id] = task.resources.get("units", 1.0)
        return True

    def can_acquire(self, task: Task) -> bool:
        demand = task.resources.get("units", 1.0)
        return task.id not in self.held and sum(self.held.values()) + demand <= self.size

    def release(self, task: Task) -> None:
        self.held.pop(task.id, None)

    def next_wakeup(self) -> float | None:
        return None

    def check(self, task: Task) -> None:
        demand = task.resources.get("units", 1.0)
        if demand > self.size:
            raise UnsatisfiableDemandError(f"{task.id!r} needs {demand} of {self.size} units")


def test_a_redriven_gang_whose_demand_no_gate_could_grant_stays_dead_whole() -> None:
    # The gate shrank since the gang died: its second member's demand can never pass.
    # It was refused as it was taken in, and the first member waited in vain for it.
    gate = ShrinkingGate(4.0)
    d, clock, _ = cluster(1, gates=[gate], gangs=Gangs(timeout=10.0))
    d.submit(member("g1", 0, 2))
    d.submit(member("g1", 1, 2, resources={"units": 2.0}))
    clock.set(10.0)
    d.tick()
    gate.size = 1.0
    report = d.redrive(["g1-0"])
    assert report.redriven == ()
    assert [entry.task.id for entry, _ in report.refused] == ["g1-0", "g1-1"]
    assert all(why.startswith("UnsatisfiableDemandError") for _, why in report.refused)
    assert all("none of gang 'g1'" in why for _, why in report.refused)
    assert d.state_of("g1-0") is TaskState.DEAD and d.state_of("g1-1") is TaskState.DEAD


def test_a_redriven_gang_whose_intake_makes_room_in_a_quota_goes_in() -> None:
    # Taken in, g1-0 makes the intake policy cancel "old", which frees the room tenant
    # "t"'s quota needs for g1-1: judged beforehand, the gang would be refused for nothing.
    fair = FairScheduler(ManualClock(), quotas={"t": Quota(max_queued=1)})
    latest = ConcurrencyLimit(key=lambda t: t.key, strategy="latest_queued")
    d, clock, _ = cluster(1, queue=fair, gangs=Gangs(timeout=10.0), intake=[latest])
    d.submit(member("g1", 0, 2, tenant="a", key="k"))
    d.submit(member("g1", 1, 2, tenant="t"))
    clock.set(10.0)
    d.tick()
    d.submit(Task("old", tenant="t", key="k", requires={"none has it"}))
    report = d.redrive(["g1-0"])
    assert [entry.task.id for entry in report.redriven] == ["g1-0", "g1-1"]
    assert report.refused == () and d.state_of("old") is TaskState.CANCELLED
    assert "2 of 2" in d.explain("g1-0")


def test_a_redriven_member_of_a_gang_complete_without_it_is_refused_alone() -> None:
    # g1-0 and g1-1 died at different times; a new g1-2 waits. Redriving g1-0 brings g1-1
    # along, but only one of them can join: the first completes the gang, the other is
    # refused alone, as on submit (judged together, both were refused).
    fair = FairScheduler(ManualClock(), quotas={"a": Quota(max_concurrent=2)})
    d, clock, _ = cluster(1, queue=fair, gangs=Gangs(timeout=10.0))
    d.submit(member("g1", 0, 2, tenant="a"))
    clock.set(10.0)
    d.tick()
    d.submit(member("g1", 1, 2, tenant="a"))
    clock.set(20.0)
    d.tick()
    d.submit(member("g1", 2, 2, tenant="a"))
    report = d.redrive(["g1-0"])
    assert [entry.task.id for entry in report.redriven] == ["g1-0"]
    assert [(entry.task.id, why.split(":")[0]) for entry, why in report.refused] == [
        ("g1-1", "InvalidArgumentError")
    ]
    assert d.state_of("g1-0") is not TaskState.DEAD and d.state_of("g1-1") is TaskState.DEAD


def test_gangs_taken_in_before_a_refused_one_are_taken_in_whole() -> None:
    # Room for one gang of two under max_queued: the first gang selected goes in whole,
    # the second stays whole.
    d, clock, _ = cluster(1, gangs=Gangs(timeout=10.0), max_queued=4)
    for gang in ("g1", "g2"):
        for i in range(2):
            d.submit(member(gang, i, 3))
    clock.set(10.0)
    d.tick()
    d.submit(Task("busy", requires={"none has it"}))
    d.submit(Task("busy too", requires={"none has it"}))
    report = d.redrive(["g1-0", "g2-0"])
    assert sorted(entry.task.id for entry in report.redriven) == ["g1-0", "g1-1"]
    assert sorted(entry.task.id for entry, _ in report.refused) == ["g2-0", "g2-1"]
    assert d.state_of("g1-1") is TaskState.PARKED and d.state_of("g2-1") is TaskState.DEAD


def test_a_task_listed_between_gang_members_does_not_take_the_gangs_room() -> None:
    # Ids listing another dead task between two members of one gang: the gang was judged
    # to fit under max_queued, then that task took the last place and the second member
    # was refused, leaving the first to wait in vain for its gang's timeout. The gang's
    # members now go in one after the other, the task between them after the gang.
    d, clock, _ = cluster(1, gangs=Gangs(timeout=10.0), max_queued=3)
    d.submit(Task("solo", requires={"none has it"}, ttl=5.0))
    for i in range(2):
        d.submit(member("g1", i, 2))
    clock.set(10.0)
    d.tick()
    assert sorted(entry.task.id for entry in d.dlq) == ["g1-0", "g1-1", "solo"]
    d.submit(Task("busy", requires={"none has it"}))  # room for two more
    report = d.redrive(["g1-0", "solo", "g1-1"])
    assert [entry.task.id for entry in report.redriven] == ["g1-0", "g1-1"]
    assert [entry.task.id for entry, _ in report.refused] == ["solo"]
    assert d.state_of("solo") is TaskState.DEAD
    assert "2 of 2" in d.explain("g1-0")  # its gang is complete


class CountingDLQ(DeadLetterQueue):
    """A dead-letter queue that counts the walks over its entries."""

    walks = 0

    def __iter__(self) -> Iterator[DeadLetter]:
        self.walks += 1
        return super().__iter__()


def test_redriving_many_gangs_walks_the_dead_letter_queue_once() -> None:
    # Each selected member's gang-mates were looked up by a walk over the whole
    # dead-letter queue: redriving n dead gang members cost O(n**2).
    clock = ManualClock()
    dlq = CountingDLQ(clock)
    d, _, _ = cluster(1, clock=clock, dlq=dlq, gangs=Gangs(timeout=10.0))
    for g in range(8):
        for i in range(2):
            d.submit(member(f"g{g}", i, 3))
    clock.set(10.0)
    d.tick()
    assert len(dlq) == 16
    dlq.walks = 0
    report = d.redrive(lambda entry: True)
    assert len(report.redriven) == 16 and dlq.walks <= 1
    clock.set(30.0)
    d.tick()
    ids = [entry.task.id for entry in dlq]
    dlq.walks = 0
    report = d.redrive(ids[::2])  # one of each gang, its mate taken along
    assert sorted(entry.task.id for entry in report.redriven) == sorted(ids)
    assert dlq.walks <= 1


def test_a_redriven_gang_member_whose_gang_mates_are_not_dead_goes_alone() -> None:
    d, clock, _ = cluster(1, gangs=Gangs(timeout=10.0))
    d.submit(member("g1", 0, 2))
    clock.set(10.0)
    d.tick()
    d.submit(member("g2", 0, 2))
    assert [entry.task.id for entry in d.redrive(["g1-0"]).redriven] == ["g1-0"]
    assert d.state_of("g1-0") is TaskState.PARKED and d.state_of("g2-0") is TaskState.PARKED


def test_a_complete_gang_without_room_also_times_out_with_its_leader() -> None:
    d, clock, _ = cluster(1, gangs=Gangs(timeout=10.0))
    for i in range(2):
        d.submit(member("g1", i, 2))
    d.dispatch()
    clock.set(10.0)
    d.tick()
    assert {d.state_of("g1-0"), d.state_of("g1-1")} == {TaskState.DEAD}
    assert len(d) == 0


def test_a_member_leaving_a_complete_gang_sends_its_leader_back_to_wait() -> None:
    d, _, _ = cluster(4)
    for i in range(3):
        d.submit(member("g1", i, 3))
    d.cancel("g1-0")
    assert d.state_of("g1-2") is TaskState.PARKED
    assert d.explain("g1-2") == "parked: waiting for gang 'g1': 2 of 3"
    assert d.dispatch() == []
    d.submit(Task("g1-3", gang="g1", gang_size=3))
    assert sorted(a.task.id for a in d.dispatch()) == ["g1-1", "g1-2", "g1-3"]


def test_started_members_are_ordinary_tasks_each_retried_alone() -> None:
    d, clock, _ = cluster(2)
    for i in range(2):
        d.submit(member("g1", i, 2))
    d.dispatch()
    assert d.fail("g1-0", error="boom") is TaskState.RETRYING
    clock.set(100.0)
    assert [a.task.id for a in d.dispatch()] == ["g1-0"]


def test_a_gang_larger_than_the_dispatch_limit_waits_for_a_larger_one() -> None:
    d, _, _ = cluster(4)
    for i in range(3):
        d.submit(member("g1", i, 3))
    assert d.dispatch(limit=2) == []
    assert d.state_of("g1-2") is TaskState.QUEUED
    assert len(d.dispatch(limit=3)) == 3


def test_a_gang_over_the_limit_goes_back_even_after_a_task_was_passed_over() -> None:
    # The fair scheduler refuses an unpop once a passed-over task was parked since the
    # pop: the leader then goes back by release and push, with its age, not lost.
    clock = ManualClock()
    d, _, _ = cluster(3, clock=clock, gangs=Gangs(), queue=FairScheduler(clock))
    d.submit(Task("first"))
    d.submit(Task("gpu-only", requires={"gpu"}))
    for i in range(2):
        d.submit(member("g1", i, 2))
    assert [a.task.id for a in d.dispatch(limit=2)] == ["first"]
    assert d.state_of("g1-1") is TaskState.QUEUED and "g1-1" in d.queue
    assert d.state_of("gpu-only") is TaskState.PARKED
    assert sorted(a.task.id for a in d.dispatch()) == ["g1-0", "g1-1"]


def test_a_waiting_member_cannot_be_assigned_by_hand() -> None:
    d, _, _ = cluster(2)
    d.submit(member("g1", 0, 2))
    with pytest.raises(InvalidArgumentError, match="gang"):
        d.assign("g1-0", "w0")


def test_a_gang_of_one_starts_alone() -> None:
    d, _, _ = cluster(1)
    d.submit(member("g1", 0, 1))
    assert [a.task.id for a in d.dispatch()] == ["g1-0"]


def test_a_repeated_member_id_is_a_duplicate_and_does_not_count() -> None:
    d, _, _ = cluster(2)
    d.submit(member("g1", 0, 2))
    assert d.submit(member("g1", 0, 2)).duplicate
    assert d.explain("g1-0") == "parked: waiting for gang 'g1': 1 of 2"


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"gang": "g", "gang_size": 0}, InvalidArgumentError),
        ({"gang": "g", "gang_size": -3}, InvalidArgumentError),
        ({"gang": "g", "gang_size": math.nan}, InvalidTypeError),
        ({"gang": "g", "gang_size": 2.0}, InvalidTypeError),
        ({"gang": "g", "gang_size": True}, InvalidTypeError),
        ({"gang": "g"}, InvalidArgumentError),
        ({"gang_size": 2}, InvalidArgumentError),
        ({"gang": math.nan, "gang_size": 2}, InvalidArgumentError),
        ({"gang": [], "gang_size": 2}, InvalidTypeError),
    ],
)
def test_a_task_with_a_bad_gang_is_refused_at_construction(
    fields: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error, match="gang"):
        Task("t", **fields)


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.nan, math.inf])
def test_a_bad_gang_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(InvalidArgumentError, match="timeout"):
        Gangs(timeout=timeout)


def test_a_distributor_takes_only_a_gangs_policy() -> None:
    with pytest.raises(InvalidTypeError, match="gangs"):
        Distributor(ManualClock(), gangs=60.0)  # type: ignore[arg-type]


def half_a_gang() -> Distributor:
    d, _, _ = cluster(2)
    d.submit(member("g1", 0, 3))
    d.submit(member("g1", 1, 3))
    d.submit(Task("other"))
    return d


def view(d: Distributor) -> tuple[Any, ...]:
    stats = d.stats()
    return (
        stats.by_state,
        stats.submitted,
        d.next_wakeup(),
        [d.explain(i) for i in ("g1-0", "g1-1", "other")],
        sorted(a.task.id for a in d.dispatch()),
    )


@pytest.mark.parametrize(
    ("task", "match"),
    [
        (Task("g1-x", gang="g1", gang_size=4), "has 4 members, its other members say 3"),
        (Task("g1-y", gang="g1", gang_size=2), "has 2 members"),
    ],
)
def test_a_member_disagreeing_on_the_size_is_refused_and_changes_nothing(
    task: Task, match: str
) -> None:
    assert_refused(half_a_gang, lambda d: d.submit(task), InvalidArgumentError, view, match=match)


def test_a_member_beyond_the_gang_size_is_refused_and_changes_nothing() -> None:
    def full_gang() -> Distributor:
        d = half_a_gang()
        d.submit(member("g1", 2, 3))
        return d

    assert_refused(
        full_gang,
        lambda d: d.submit(member("g1", 3, 3)),
        InvalidArgumentError,
        view,
        match="already has its 3 members",
    )


# -- the guarantee ------------------------------------------------------------------------

gang_plans = st.lists(
    st.tuples(st.integers(1, 4), st.integers(0, 4)),  # (size, members that arrive)
    min_size=1,
    max_size=5,
)


@given(
    plans=gang_plans,
    capacities=st.lists(st.integers(0, 3), min_size=1, max_size=3),
    steps=st.lists(
        st.tuples(st.sampled_from(["dispatch", "complete", "cancel", "time"]), st.integers(0, 9)),
        max_size=25,
    ),
    limits=st.sampled_from([None, 1, 2, 3]),
)
def test_gangs_are_never_partly_placed(
    plans: list[tuple[int, int]],
    capacities: list[int],
    steps: list[tuple[str, int]],
    limits: int | None,
) -> None:
    d, clock, events = cluster(*capacities, gangs=Gangs(timeout=50.0))
    waiting: dict[str, set[Hashable]] = {}
    sizes = {}
    for g, (size, arriving) in enumerate(plans):
        gang = f"g{g}"
        sizes[gang] = size
        for i in range(min(size, arriving)):
            d.submit(member(gang, i, size, cost=1.0))
            waiting.setdefault(gang, set()).add(f"{gang}-{i}")
        d.submit(Task(f"solo{g}"))
    for action, pick in steps:
        if action == "dispatch":
            made = d.dispatch(limits)
            started = {a.task.id for a in made}
            for gang, members in list(waiting.items()):
                if members & started:
                    assert members <= started, f"{gang} partly placed"
                    assert len(members) == sizes[gang]
                    del waiting[gang]
        elif action == "complete":
            leased = sorted(map(str, (a.task.id for a in d.leases())))
            if leased:
                d.complete(leased[pick % len(leased)])
        elif action == "cancel":
            live = sorted(str(i) for members in waiting.values() for i in members)
            if live:
                d.cancel(live[pick % len(live)])
        else:
            clock.advance(10.0 * pick)
            d.tick()
        for event in events:
            if event.kind in (EventKind.CANCELLED, EventKind.DEAD_LETTERED):
                for members in waiting.values():
                    members.discard(event.task_id)
        events.clear()
        waiting = {gang: members for gang, members in waiting.items() if members}
        # Waiting members hold nothing: every leased task is a solo one or a whole gang's.
        for members in waiting.values():
            for task_id in members:
                assert d.state_of(task_id) in (TaskState.PARKED, TaskState.QUEUED)


def test_a_gang_a_rate_gate_admits_in_part_is_undone_whole_and_runs_later() -> None:
    # Two tokens of three: two members were admitted when the third was refused. A
    # rate gate's rollback undoes only the admission just made, so undoing them one by
    # one raised OverReleaseError out of dispatch and leaked a token each round.
    clock = ManualClock()
    limiter = RateLimiter(3, per=3.0, burst=3, clock=clock)
    d = Distributor(clock, gangs=Gangs(), lease=None, gates=[RateGate(limiter, "api", default=1)])
    d.add_worker(Worker("w", capacity=10))
    assert limiter.try_acquire()  # one token spent elsewhere: two left
    for member in ("m0", "m1", "m2"):
        d.submit(Task(member, gang="g", gang_size=3))
    assert d.dispatch() == []
    assert limiter.available() == 2.0  # both admissions undone
    clock.advance(1.0)  # a third token
    assert sorted(a.task.id for a in d.dispatch()) == ["m0", "m1", "m2"]


def test_a_gang_refused_by_a_second_gate_is_undone_in_the_first_too() -> None:
    # The third member passed the rate gate and the pool refused it: the rate gate
    # rolled that admission back, and then the run of the two before it.
    clock = ManualClock()
    limiter = RateLimiter(10, per=1.0, burst=10, clock=clock)
    pool = ResourcePool("db", size=3)
    assert pool.try_acquire(1)  # a unit held elsewhere: two free
    d = Distributor(
        clock,
        gangs=Gangs(),
        lease=None,
        gates=[RateGate(limiter, "api", default=1), PoolGate(pool, default=1)],
    )
    d.add_worker(Worker("w", capacity=10))
    for member in ("m0", "m1", "m2"):
        d.submit(Task(member, gang="g", gang_size=3))
    assert d.dispatch() == []
    assert limiter.available() == 10.0 and pool.in_use == 1


# -- gangs the gates could never admit at once ----------------------------------------------


def gated_half_gang(gate: str) -> Distributor:
    """Two members of a gang of three waiting, behind a gate that takes two at a time."""
    clock = ManualClock()
    gates = {
        "rate": RateGate(RateLimiter(2, per=1.0, burst=2, clock=clock), "api", default=1),
        "pool": PoolGate(ResourcePool("db", size=2), default=1),
    }
    d = Distributor(clock, gangs=Gangs(timeout=60.0), lease=None, gates=[gates[gate]])
    d.add_worker(Worker("w", capacity=10))
    d.submit(member("g1", 0, 3))
    d.submit(member("g1", 1, 3))
    d.submit(Task("other"))
    return d


@pytest.mark.parametrize("gate", ["rate", "pool"])
def test_a_member_whose_gang_could_never_pass_the_gates_together_is_refused(gate: str) -> None:
    # Each member alone fits the burst (or the pool); three at once never do, and the gang
    # used to wait until its timeout (for ever without one).
    assert_refused(
        lambda: gated_half_gang(gate),
        lambda d: d.submit(member("g1", 2, 3)),
        UnsatisfiableDemandError,
        view,
        match="'g1-0', 'g1-1', 'g1-2' demand 3 .* together",
    )


def test_a_member_that_keeps_its_gang_within_the_gates_joins_it() -> None:
    d = gated_half_gang("rate")
    assert d.submit(member("g1", 2, 3, resources={"api": 0.0})).accepted
    d.cancel("other")  # it would take one of the two tokens
    assert sorted(a.task.id for a in d.dispatch()) == ["g1-0", "g1-1", "g1-2"]


# -- gangs and a fair scheduler's quotas and shares ------------------------------------------


def gangs_on(clock: ManualClock, fair: FairScheduler, timeout: float = 300.0) -> Distributor:
    """A Distributor taking gangs (timed out after ``timeout``) over ``fair``, one worker
    with room for ten."""
    d = Distributor(clock, queue=fair, gangs=Gangs(timeout=timeout), lease=None)
    d.add_worker(Worker("w", capacity=10))
    return d


def test_a_gang_waits_for_room_in_its_tenants_concurrency_quota() -> None:
    # Only the leader is popped; its other members used to run beyond the quota.
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"alice": Quota(max_concurrent=3)})
    d = gangs_on(clock, fair)
    d.submit(Task("solo", tenant="alice"))
    for index in range(3):
        d.submit(member("g", index, 3, tenant="alice"))
    assert [a.task.id for a in d.dispatch()] == ["solo"]  # 1 + 3 > 3: the gang waits
    assert fair.stats().tenants["alice"].running == 1
    assert d.state_of("g-2") is TaskState.QUEUED  # the leader, back in its place
    d.complete("solo")
    assert sorted(a.task.id for a in d.dispatch()) == ["g-0", "g-1", "g-2"]
    assert fair.stats().tenants["alice"].running == 3
    for index in range(3):
        d.complete(f"g-{index}")
    assert fair.stats().running == 0 and len(d) == 0


def test_a_gang_takes_a_token_a_member_from_its_tenants_rate_quota() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"bob": Quota(rate=3, per=3.0)})
    d = gangs_on(clock, fair)
    d.submit(Task("solo", tenant="bob"))
    assert len(d.dispatch()) == 1  # two tokens left
    for index in range(3):
        d.submit(member("g", index, 3, tenant="bob"))
    assert d.dispatch() == []  # the leader's pop takes one: one left for two members
    assert d.state_of("g-2") is TaskState.QUEUED
    clock.advance(1.0)  # a token more
    assert sorted(a.task.id for a in d.dispatch()) == ["g-0", "g-1", "g-2"]


def rate_refused_gang() -> tuple[Distributor, ManualClock]:
    """bob's gang of three, refused by his rate quota (one token of the three it needs)."""
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"bob": Quota(rate=3, per=3.0)})
    d = gangs_on(clock, fair)
    d.submit(Task("solo", tenant="bob"))
    d.submit(Task("solo2", tenant="bob"))
    assert len(d.dispatch()) == 2  # one token left
    for index in range(3):
        d.submit(member("g", index, 3, tenant="bob"))
    assert d.dispatch() == []
    return d, clock


def test_a_gang_refused_by_a_rate_quota_is_woken_when_the_quota_refills() -> None:
    # Nothing else happens: a host that sleeps until next_wakeup must be woken when bob's
    # bucket holds three tokens (two seconds on), not at the gang's timeout or never.
    d, clock = rate_refused_gang()
    wake = d.next_wakeup()
    assert wake == pytest.approx(2.0)
    clock.set(wake)
    d.tick()
    assert sorted(a.task.id for a in d.dispatch()) == ["g-0", "g-1", "g-2"]
    assert d.next_wakeup() is None  # the retry timer went with the gang


def test_a_gang_retry_timer_travels_in_the_snapshot_and_goes_with_its_gang() -> None:
    d, clock = rate_refused_gang()
    fair = FairScheduler(clock, quotas={"bob": Quota(rate=3, per=3.0)})
    restored = Distributor.restore(d.snapshot(), clock, queue=fair)
    assert restored.next_wakeup() == d.next_wakeup() == pytest.approx(2.0)
    clock.set(2.0)
    restored.tick()
    assert sorted(a.task.id for a in restored.dispatch()) == ["g-0", "g-1", "g-2"]
    d.cancel("g-0")  # the gang is short of one: nothing to try at 2.0, only its timeout
    assert d.next_wakeup() == 300.0
    assert "gang retry" not in str(d.snapshot()["timers"])


@pytest.mark.parametrize(
    ("admitted", "lowered"),
    [
        (Quota(rate=3, per=3.0), Quota(rate=2, per=3.0)),
        (Quota(max_concurrent=3), Quota(max_concurrent=2)),
    ],
    ids=["rate", "max_concurrent"],
)
def test_a_gang_its_lowered_quota_could_never_start_is_dead_lettered(
    admitted: Quota, lowered: Quota
) -> None:
    # bob's quota lowered below his gang after it was admitted: no refill or release
    # would ever let three start at once, so the gang goes when next tried, not at
    # its timeout.
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"bob": admitted})
    d = gangs_on(clock, fair, timeout=100.0)
    d.submit(Task("other", tenant="carol"))
    for index in range(3):
        d.submit(member("g", index, 3, tenant="bob"))
    fair.set_quota("bob", lowered)
    assert [a.task.id for a in d.dispatch()] == ["other"]
    assert sorted((e.task.id, e.reason) for e in d.dlq) == [
        (f"g-{index}", Reason.REJECTED) for index in range(3)
    ]
    assert "more than its" in (d.dlq["g-0"].error or "")
    assert fair.stats().tenants.get("bob") is None  # nothing of bob's runs or waits
    assert d.next_wakeup() is None and len(d) == 1  # only "other", running
    assert "gang" not in str(d.snapshot()["timers"])


def test_a_gang_a_busy_tenant_has_no_room_for_now_still_waits() -> None:
    # Three of bob's may run at once; one runs: the gang waits for it, as before.
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"bob": Quota(max_concurrent=3)})
    d = gangs_on(clock, fair, timeout=100.0)
    d.submit(Task("solo", tenant="bob"))
    assert [a.task.id for a in d.dispatch()] == ["solo"]
    for index in range(3):
        d.submit(member("g", index, 3, tenant="bob"))
    assert d.dispatch() == [] and not list(d.dlq)
    d.complete("solo")
    assert sorted(a.task.id for a in d.dispatch()) == ["g-0", "g-1", "g-2"]


def test_a_leader_a_failed_put_back_dead_letters_leaves_no_retry_timed() -> None:
    # The gang is refused by bob's rate quota; the leader's way back to the queue fails
    # (the user's tenant_of raises for it): dead-lettered, its gang no longer complete,
    # so no retry may stay timed, and the snapshot restores.
    failing = {"on": False}

    def tenant_of(task: Task) -> Hashable:
        if failing["on"] and task.id == "g-2":
            raise RuntimeError("tenant_of failed")
        return task.tenant

    clock = ManualClock()

    def fair() -> FairScheduler:
        return FairScheduler(clock, tenant_of=tenant_of, quotas={"bob": Quota(rate=3, per=3.0)})

    d = gangs_on(clock, fair())
    d.submit(Task("solo", tenant="bob"))
    d.submit(Task("solo2", tenant="bob"))
    assert len(d.dispatch()) == 2  # one token left
    d.submit(Task("c1", tenant="carol", key="paused"))
    d.pause(key="paused")  # passed over by the pop: the queue can no longer unpop
    for index in range(3):
        d.submit(member("g", index, 3, tenant="bob"))
    failing["on"] = True
    with pytest.raises(RuntimeError, match="tenant_of failed"):
        d.dispatch()
    failing["on"] = False
    assert d.state_of("g-2") is TaskState.DEAD
    snapshot = d.snapshot()
    assert all(kind != "gang retry" for kind, _, _ in snapshot["timers"])
    restored = Distributor.restore(snapshot, clock, queue=fair())
    assert restored.next_wakeup() == d.next_wakeup() == 300.0


def test_a_gangs_members_are_charged_to_their_tenants_fair_shares() -> None:
    # Each member of alice's gang of 4 costs her a turn: bob, backlogged all along,
    # then gets the next four (the leader alone cost her one: bob got one, then turns).
    clock = ManualClock()
    fair = FairScheduler(clock)
    d = Distributor(clock, queue=fair, gangs=Gangs(), lease=None)
    d.add_worker(Worker("w", capacity=4))
    for index in range(4):
        d.submit(member("g", index, 4, tenant="alice"))
    for i in range(8):
        d.submit(Task(f"b{i}", tenant="bob"))
    assert sorted(a.task.id for a in d.dispatch()) == ["g-0", "g-1", "g-2", "g-3"]
    for i in range(8):
        d.submit(Task(f"a{i}", tenant="alice"))
    for index in range(4):
        d.complete(f"g-{index}")
    assert sorted(a.task.id for a in d.dispatch()) == ["b0", "b1", "b2", "b3"]


def fair_half_gang(quota: Quota) -> Distributor:
    """Two of alice's members of a gang of three waiting, under ``quota`` for alice."""
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"alice": quota})
    d = gangs_on(clock, fair, timeout=60.0)
    d.submit(member("g1", 0, 3, tenant="alice"))
    d.submit(member("g1", 1, 3, tenant="alice"))
    d.submit(Task("other", tenant="alice"))
    return d


@pytest.mark.parametrize(
    ("quota", "match"),
    [(Quota(max_concurrent=2), "max_concurrent of 2"), (Quota(rate=2, per=60.0), "rate of 2")],
)
def test_a_member_whose_gang_its_tenants_quota_could_never_run_is_refused(
    quota: Quota, match: str
) -> None:
    # Three of alice's tasks can never run at once under two at a time (or two tokens at
    # most): the gang used to wait until its timeout, for ever without one.
    assert_refused(
        lambda: fair_half_gang(quota),
        lambda d: d.submit(member("g1", 2, 3, tenant="alice")),
        UnsatisfiableDemandError,
        view,
        match=f"3 tasks of tenant 'alice' must start together .* {match}",
    )


def test_a_member_of_another_tenant_keeps_the_gang_within_the_quota() -> None:
    d = fair_half_gang(Quota(max_concurrent=2))
    assert d.submit(member("g1", 2, 3, tenant="bob")).accepted
    d.cancel("other")
    assert sorted(a.task.id for a in d.dispatch()) == ["g1-0", "g1-1", "g1-2"]


def test_each_member_of_a_gang_across_tenants_counts_for_its_own_tenant() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"bob": Quota(max_concurrent=2)})
    d = gangs_on(clock, fair)
    d.submit(Task("solo", tenant="bob"))
    assert len(d.dispatch()) == 1  # bob runs one of his two
    d.submit(member("g", 0, 3, tenant="bob"))
    d.submit(member("g", 1, 3, tenant="bob"))
    d.submit(member("g", 2, 3, tenant="alice"))  # the leader: alice's turn
    assert d.dispatch() == []  # bob has room for one more, not two
    assert fair.stats().running == 1 and fair.stats().tenants["alice"].queued == 1
    d.complete("solo")
    assert sorted(a.task.id for a in d.dispatch()) == ["g-0", "g-1", "g-2"]


members_step = st.tuples(
    st.just("member"), st.sampled_from("gh"), st.sampled_from(["bob", "carol"])
)
retry_steps = st.lists(
    st.one_of(
        # Members and dispatches most often: complete gangs meet half-spent buckets.
        *[members_step] * 4,
        *[st.tuples(st.just("solo"), st.sampled_from(["bob", "carol"]))] * 2,
        *[st.tuples(st.just("dispatch"))] * 2,
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("complete"), st.integers(0, 20)),
        st.tuples(st.just("wake")),
        st.tuples(st.just("quota"), st.integers(1, 4)),
    ),
    min_size=8,
    max_size=40,
)


@given(steps=retry_steps)
def test_a_gang_retry_is_timed_only_for_a_complete_gang_and_always_restores(
    steps: list[tuple[Any, ...]],
) -> None:
    # Tight rate quotas refuse gangs often. After every step: a pending gang retry
    # belongs to a complete gang waiting in the queue, the snapshot restores, and the
    # restored twin wakes at the same time.
    clock = ManualClock()
    bob = [3]  # bob's rate now

    def fair() -> FairScheduler:
        return FairScheduler(
            clock,
            quotas={"bob": Quota(rate=bob[0], per=3.0), "carol": Quota(rate=1, per=2.0)},
        )

    queue = fair()
    # Every finished id is remembered, so that the steps can ask about any of them.
    d = Distributor(clock, queue=queue, gangs=Gangs(timeout=20.0), lease=None, dedup_window=1e9)
    d.add_worker(Worker("w", capacity=20))
    gangs: dict[str, list[str]] = {"g": [], "h": []}  # each slot's waiting members
    names = {"g": "g", "h": "h"}  # the gang each slot fills now
    used = {"g": False, "h": False}  # whether it has had a member
    waiting = (TaskState.QUEUED, TaskState.PARKED)
    retries = 0
    for serial, step in enumerate(steps):
        name = step[0]
        if name == "member":
            slot, tenant = step[1], step[2]
            members = gangs[slot] = [m for m in gangs[slot] if d.state_of(m) in waiting]
            if len(members) == 2 or (not members and used[slot]):
                names[slot] = f"{slot}{serial}"  # complete, placed or gone: a new gang
                gangs[slot] = members = []
                used[slot] = False
            gang = names[slot]
            try:
                d.submit(Task(f"{gang}-{serial}", gang=gang, gang_size=2, tenant=tenant))
            except UnsatisfiableDemandError:
                continue
            members.append(f"{gang}-{serial}")
            used[slot] = True
            d.dispatch()  # as a host dispatches on every event
        elif name == "solo":  # a task of the tenant's own, placed at once if it may
            d.submit(Task(f"s{serial}", tenant=step[1]))
            d.dispatch()
        elif name in ("cancel", "complete"):
            live = [a.task.id for a in d.leases()] if name == "complete" else []
            if name == "cancel":
                live = [m for ms in gangs.values() for m in ms if d.state_of(m) in waiting]
            if live:
                chosen = live[step[1] % len(live)]
                d.complete(chosen) if name == "complete" else d.cancel(chosen)
        elif name == "dispatch":
            d.dispatch()
        elif name == "wake":
            wake = d.next_wakeup()
            if wake is not None:
                clock.set(wake)
                d.tick()
                d.dispatch()
        else:
            bob[0] = step[1]
            queue.set_quota("bob", Quota(rate=bob[0], per=3.0))
        snapshot = d.snapshot()
        if any(kind == "gang retry" for kind, _, _ in snapshot["timers"]):
            note("a gang retry timed")
            retries += 1
        if any(w[3] is not None for w in snapshot["waiting_gangs"]):
            note("a complete gang waiting")
        for kind, gang, _ in snapshot["timers"]:
            if kind == "gang retry":
                complete = [w for w in snapshot["waiting_gangs"] if w[0] == gang]
                assert complete and complete[0][3] is not None, f"retry for {gang!r}"
        twin = Distributor.restore(snapshot, clock, queue=fair())
        assert twin.next_wakeup() == d.next_wakeup()
    target(retries, label="steps with a gang retry timed")


def test_a_gang_placed_by_a_dispatch_that_then_fails_waits_as_a_gang_again() -> None:
    # A callback raises after the gang was placed: the dispatch takes every placement
    # back. The gang must wait as a gang again, not as two loose tasks that a later
    # dispatch could place one at a time.
    armed = {"on": False}

    def key(task: Task) -> str:
        if armed["on"] and task.id == "boom":
            armed["on"] = False
            raise RuntimeError("key function failed")
        return "everyone"

    clock = ManualClock()
    limiter = KeyedRateLimiter(rate=100, per=1.0, burst=100, clock=clock)
    d = Distributor(
        clock, gangs=Gangs(timeout=30.0), gates=[KeyedRateGate(limiter, "db", key=key)], lease=None
    )
    d.add_worker(Worker("w", capacity=10))
    for index in range(2):
        d.submit(member("g", index, 2, priority=1))
    d.submit(Task("boom", priority=3, resources={"db": 1}))
    armed["on"] = True  # it fails once, at boom's admission, after the gang was placed
    with pytest.raises(RuntimeError, match="key function failed"):
        d.dispatch()
    assert not d.leases()
    assert {d.state_of("g-0"), d.state_of("g-1")} == {TaskState.QUEUED, TaskState.PARKED}
    assert d.next_wakeup() == 30.0  # the gang's timeout, as before
    assert d.dispatch(limit=1) == []  # one slot is not room for the gang
    assert sorted(a.task.id for a in d.dispatch()) == ["boom", "g-0", "g-1"]


def urgent_beside_a_gang(clock: ManualClock, gates: list[Any]) -> Distributor:
    """A deadline-aware FairScheduler whose fair pick is a gang's leader (tenant A) and
    whose urgent pick is a task due soon (tenant B): it asks dispatch's predicate about
    the leader, then about the urgent task, and pops that one."""
    d = Distributor(
        clock,
        queue=FairScheduler(clock, deadline_aware=True),
        gates=gates,
        gangs=Gangs(timeout=10_000.0),
        lease=None,
    )
    d.add_worker(Worker("w", capacity=10))
    return d


def submit_gang_and_urgent(d: Distributor) -> None:
    d.submit(Task("g1", tenant="A", gang="G", gang_size=2, cost=10.0))
    d.submit(Task("g2", tenant="A", gang="G", gang_size=2, cost=10.0))
    d.submit(Task("u", tenant="B", deadline=9.0, cost=1.0))


def test_a_gang_planned_for_a_leader_the_queue_passed_over_is_not_placed_for_another() -> None:
    # The plan made when the predicate was asked about the leader was taken for the
    # urgent task's: the gang's members were pushed back while still queued.
    clock = ManualClock()
    d = urgent_beside_a_gang(clock, [])
    submit_gang_and_urgent(d)
    assert sorted(a.task.id for a in d.dispatch()) == ["g1", "g2", "u"]


def test_a_walk_a_shut_gate_ends_leaves_no_gang_plan_for_the_next_dispatch() -> None:
    # The predicate planned the gang, then a shut gate refused the urgent task and
    # ended the walk; the next dispatch must not place the old plan with another task.
    clock = ManualClock()
    limiter = RateLimiter(1, per=4.0, burst=2, clock=clock)
    d = urgent_beside_a_gang(clock, [RateGate(limiter, "api", default=1)])
    d.submit(Task("x0", tenant="C"))
    d.submit(Task("x1", tenant="C"))
    assert len(d.dispatch()) == 2  # the bucket is spent: the gate is shut
    submit_gang_and_urgent(d)
    assert d.dispatch() == []
    clock.set(4.0)  # one unit back: the urgent task, due at 9, passes
    assert [a.task.id for a in d.dispatch()] == ["u"]
    assert TaskState.LEASED not in (d.state_of("g1"), d.state_of("g2"))
    assert limiter.available() == 0.0


@pytest.mark.parametrize("queue", ["priority", "fair"])
def test_pinning_a_member_that_waits_for_its_gang_leaves_it_with_its_gang(queue: str) -> None:
    # A member waits parked for its gang (or, once the gang is complete, behind its
    # leader): a pin changes where it will run, not where it waits. Sent back to the
    # queue, it was queued twice once its gang went (a KeyError or a DuplicateTaskError
    # on every dispatch after) and its own snapshot did not restore.
    clock = ManualClock()
    fair = FairScheduler(clock) if queue == "fair" else None
    d, _, _ = cluster(4, 4, clock=clock, **({"queue": fair} if fair else {}))
    d.submit(member("g", 0, 2))
    d.pin("g-0", "w1")
    assert d.state_of("g-0") is TaskState.PARKED
    assert d.explain("g-0") == "parked: waiting for gang 'g': 1 of 2 [pinned to worker 'w1']"
    assert "g-0" not in d.queue
    d.submit(member("g", 1, 2))  # the gang is complete: it leads, g-0 waits behind it
    d.pin("g-0", None)
    d.pin("g-0", "w1")
    assert "g-0" not in d.queue
    restored = Distributor.restore(
        d.snapshot(),
        ManualClock(start=clock.now()),
        **({"queue": FairScheduler(clock)} if fair else {}),
    )
    for twin in (d, restored):
        placed = {a.task.id: a.worker_id for a in twin.dispatch()}
        assert placed.keys() == {"g-0", "g-1"} and placed["g-0"] == "w1"
        assert twin.dispatch() == []


def test_pinning_a_waiting_member_does_not_push_it_into_a_full_queue() -> None:
    clock = ManualClock()
    d, _, _ = cluster(4, clock=clock, queue=PriorityQueue(clock, maxsize=1))
    d.submit(member("g", 0, 2))  # waits out of the queue for its gang
    d.submit(Task("x"))  # the queue is full now
    d.pin("g-0", None)
    assert d.state_of("g-0") is TaskState.PARKED
    assert "g-0" not in d.dlq


def test_an_escalation_to_a_pool_leaves_a_waiting_member_with_its_gang() -> None:
    clock = ManualClock()
    d, _, _ = cluster(
        clock=clock, escalation=Escalation(after=5.0, to=Pool("oncall", skills={"cpu"}))
    )
    d.add_worker(Worker("oncall-1", capacity=4, skills={"cpu"}))
    d.submit(member("g", 0, 2, priority=3))
    clock.set(5.0)
    d.tick()
    assert d.state_of("g-0") is TaskState.PARKED and "g-0" not in d.queue
    d.submit(member("g", 1, 2, priority=3))
    assert sorted(a.task.id for a in d.dispatch()) == ["g-0", "g-1"]


def test_a_gang_waits_while_the_tenant_or_key_of_any_member_is_paused() -> None:
    for paused in ({"tenant": "acme"}, {"key": "k"}):
        d, _, events = cluster(4)
        d.pause(**paused)
        d.submit(member("g", 0, 2, tenant="acme", key="k"))
        d.submit(member("g", 1, 2, tenant="zeta"))  # the leader, itself not paused
        assert d.dispatch() == []
        assert d.state_of("g-0") is d.state_of("g-1") is TaskState.PARKED
        assert not [e for e in events if e.kind is EventKind.DISPATCHED]
        d.resume(**paused)
        assert sorted(a.task.id for a in d.dispatch()) == ["g-0", "g-1"]


def test_a_gang_waiting_for_room_moves_down_its_fallback_chain_whole() -> None:
    # Every member's route spills over to any worker after 2 s: the gang, with no room
    # in its first pool, starts on the fallback pool then, not at its timeout.
    clock = ManualClock()
    chain = [Pool("first", workers={"w0"}), Step(Pool("any"), after=2.0)]
    d = Distributor(clock, lease=None, gangs=Gangs(timeout=100.0), routes=[Route(chain)])
    d.add_worker(Worker("w0", capacity=1))
    d.add_worker(Worker("w1", capacity=4))
    d.submit(Task("hog"))
    d.dispatch()  # w0 is full
    d.submit(member("g", 0, 2))
    d.submit(member("g", 1, 2))
    assert d.dispatch() == [] and d.next_wakeup() == 2.0
    clock.set(2.0)
    assert sorted((a.task.id, a.worker_id) for a in d.dispatch()) == [
        ("g-0", "w1"),
        ("g-1", "w1"),
    ]


@given(
    gangs=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["a", "b", "t"]), st.booleans(), st.integers(1, 3)),
            min_size=2,
            max_size=3,
        ),
        min_size=1,
        max_size=4,
    ),
    fillers=st.lists(st.sampled_from(["a", "b", "t"]), max_size=4),
    gate_size=st.integers(1, 3),
    room=st.none() | st.integers(-3, 1),
    picks=st.lists(st.integers(0, 20), min_size=1, max_size=6),
)
def test_a_redriven_gang_goes_in_whole_or_stays_dead_whole(
    gangs: list[list[tuple[str, bool, int]]],
    fillers: list[str],
    gate_size: int,
    room: int | None,
    picks: list[int],
) -> None:
    # Gangs dead at their timeout, then the world changes (fillers fill tenants' quotas and
    # max_queued, the gate shrinks, some deadlines pass) and ids are redriven in any order,
    # members of several gangs interleaved: a gang must never be split, some members
    # taken in to wait for the rest while the others stay dead.
    fair = FairScheduler(ManualClock(), quotas={"t": Quota(max_queued=1)})
    gate = ShrinkingGate(4.0)
    # max_queued: room for every member at first, more or less room for them at the end.
    total = sum(map(len, gangs))
    max_queued = None if room is None else max(total, total + room + 2)
    d, clock, _ = cluster(
        1, queue=fair, gates=[gate], gangs=Gangs(timeout=10.0), max_queued=max_queued
    )
    for g, members in enumerate(gangs):
        for i, (tenant, short, units) in enumerate(members):
            task = member(
                f"g{g}",
                i,
                len(members) + 1,  # one member never comes: the gang dies
                tenant=tenant,
                deadline=15.0 if short else None,
                resources={"units": float(units)},
            )
            d.submit(task)
    clock.set(10.0)
    d.tick()
    dead = [entry.task.id for entry in d.dlq]
    assert len(dead) == sum(map(len, gangs))
    clock.set(20.0)  # the short deadlines have passed
    for n, tenant in enumerate(fillers):
        with contextlib.suppress(TaskdistError):
            d.submit(Task(f"filler-{n}", tenant=tenant, requires={"none has it"}))
    gate.size = float(gate_size)
    ids = list(dict.fromkeys(dead[pick % len(dead)] for pick in picks))
    report = d.redrive(ids)
    went = {entry.task.id for entry in report.redriven}
    stayed = {entry.task.id for entry, _ in report.refused}
    assert went | stayed >= set(ids) and not went & stayed
    for g, members in enumerate(gangs):
        ids_of = {f"g{g}-{i}" for i in range(len(members))}
        assert ids_of <= went or not ids_of & went, f"gang g{g} split: {ids_of & went} went"
        in_dlq = {entry.task.id for entry in d.dlq if entry.task.id in ids_of}
        assert in_dlq == ids_of or not in_dlq, f"gang g{g} split: {in_dlq} stayed dead"
