"""Reservation with backfill: slots held for urgent work, and a worker held for a large task
while shorter tasks fill the gap."""

from __future__ import annotations

import heapq
import math
from typing import Any

import pytest
from distributor_support import on_slots as cluster
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    Backfill,
    Distributor,
    Escalation,
    Event,
    EventKind,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    Pool,
    Reservation,
    Task,
    TaskState,
    Worker,
)

URGENT = Reservation(priority_at_most=1, share=0.2)

# -- the urgent share -----------------------------------------------------------------


def test_a_flood_of_low_priority_tasks_never_takes_the_reserved_slots() -> None:
    d, _, _ = cluster(2, 2, 2, 2, 2, reservations=[URGENT])
    for i in range(20):
        d.submit(Task(f"bulk{i}", priority=3))
    assert len(d.dispatch()) == 8
    assert d.explain("bulk9") == (
        "parked: held for reservation: the reservation (0.2 of the slots for priority <= 1) "
        "keeps 2 of 10 slots"
    )
    d.submit(Task("page", priority=0))
    d.submit(Task("alert", priority=1))
    assert sorted(a.task.id for a in d.dispatch()) == ["alert", "page"]


@pytest.mark.parametrize("how", ["reprioritize", "escalation"])
def test_a_held_task_made_urgent_takes_a_reserved_slot_at_the_next_dispatch(how: str) -> None:
    # Held behind another held task: the one task a dispatch wakes from the hold is
    # not it, so unless its new priority is asked about, it waits on beside free slots.
    rule = Escalation(after={3: 5.0, 2: 5.0}) if how == "escalation" else None
    half = Reservation(priority_at_most=1, share=0.5)
    d, clock, _ = cluster(4, reservations=[half], escalation=rule)
    d.submit(Task("bulk-0", priority=4))
    d.submit(Task("bulk-1", priority=4))
    d.dispatch()
    d.submit(Task("held", priority=4))
    d.submit(Task("late", priority=3))
    assert d.dispatch() == []
    if how == "reprioritize":
        d.reprioritize("late", 0)
    else:
        clock.set(10.0)  # 3 -> 2 at 5, 2 -> 1 at 10: urgent now
    assert [a.task.id for a in d.dispatch()] == ["late"]
    assert d.state_of("held") is TaskState.PARKED


def test_an_urgent_task_may_take_any_free_slot() -> None:
    d, _, _ = cluster(5, reservations=[URGENT])
    for i in range(5):
        d.submit(Task(f"page{i}", priority=1))
    assert len(d.dispatch()) == 5


def test_each_dispatch_wakes_one_held_task_per_free_unreserved_slot() -> None:
    d, _, events = cluster(5, reservations=[URGENT])
    for i in range(7):
        d.submit(Task(f"bulk{i}", priority=3))
    first = [a.task.id for a in d.dispatch()]
    assert first == ["bulk0", "bulk1", "bulk2", "bulk3"]
    events.clear()
    d.complete("bulk0")
    d.complete("bulk1")
    assert [a.task.id for a in d.dispatch()] == ["bulk4", "bulk5"]
    assert [e.task_id for e in events if e.kind is EventKind.UNPARKED] == ["bulk4", "bulk5"]
    assert d.state_of("bulk6") is TaskState.PARKED


def test_a_held_task_is_woken_even_when_the_one_woken_before_it_left() -> None:
    d, _, _ = cluster(2, reservations=[Reservation(priority_at_most=1, share=0.5)])
    for i in range(3):
        d.submit(Task(f"bulk{i}", priority=3))
    d.dispatch()
    d.complete("bulk0")
    d.tick()
    d.cancel("bulk1")  # parked or woken: it leaves before it runs
    assert [a.task.id for a in d.dispatch()] == ["bulk2"]


def test_a_reservation_on_a_pool_leaves_the_other_workers_alone() -> None:
    clock = ManualClock()
    d = Distributor(
        clock,
        lease=None,
        reservations=[Reservation(priority_at_most=0, share=0.5, pool=Pool(skills={"gpu"}))],
    )
    d.add_worker(Worker("gpu", capacity=2, skills={"gpu"}))
    d.add_worker(Worker("cpu", capacity=2))
    for i in range(5):
        d.submit(Task(f"t{i}", priority=2))
    placed = [a.worker_id for a in d.dispatch()]
    assert sorted(placed) == ["cpu", "cpu", "gpu"]


def test_more_workers_make_a_larger_share_and_wake_the_held_tasks() -> None:
    d, _, _ = cluster(2, reservations=[Reservation(priority_at_most=1, share=0.5)])
    for i in range(4):
        d.submit(Task(f"bulk{i}", priority=3))
    assert len(d.dispatch()) == 1
    d.add_worker(Worker("big", capacity=4))
    assert len(d.dispatch()) == 2  # 6 slots, 3 held: 3 for the less urgent
    d.update_worker("big", capacity=6)
    assert len(d.dispatch()) == 1  # 8 slots, 4 held: 4 for the less urgent


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"priority_at_most": 1, "share": 0.0}, InvalidArgumentError),
        ({"priority_at_most": 1, "share": 1.5}, InvalidArgumentError),
        ({"priority_at_most": 1, "share": -0.1}, InvalidArgumentError),
        ({"priority_at_most": 1, "share": math.nan}, InvalidArgumentError),
        ({"priority_at_most": 1.5, "share": 0.2}, InvalidTypeError),
        ({"priority_at_most": 1, "share": 0.2, "pool": "gpu"}, InvalidTypeError),
    ],
)
def test_a_bad_reservation_is_refused(fields: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match="Reservation"):
        Reservation(**fields)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reservations": 0.2}, "reservations"),
        ({"reservations": [0.2]}, "reservations"),
        ({"backfill": True}, "backfill"),
    ],
)
def test_a_distributor_takes_only_reservation_and_backfill_policies(
    kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidTypeError, match=match):
        Distributor(ManualClock(), **kwargs)


def test_backfill_checks_its_predicate() -> None:
    with pytest.raises(InvalidTypeError, match=r"Backfill\.when"):
        Backfill(when="large")  # type: ignore[arg-type]


@given(
    workers=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    steps=st.lists(
        st.tuples(st.sampled_from(["urgent", "bulk", "complete", "dispatch"]), st.integers(0, 20)),
        max_size=40,
    ),
    share=st.sampled_from([0.1, 0.25, 0.5, 1.0]),
)
def test_urgent_work_never_waits_while_reserved_capacity_is_free(
    workers: list[int], steps: list[tuple[str, int]], share: float
) -> None:
    """After every dispatch: the less urgent hold at most the unreserved slots; an urgent
    task waits only when no slot is free; a less urgent one only when no unreserved
    slot is."""
    reservation = Reservation(priority_at_most=1, share=share)
    d, _, _ = cluster(*workers, reservations=[reservation])
    capacity = sum(workers)
    unreserved = capacity - reservation.reserved(capacity)
    priorities: dict[str, int] = {}
    for action, pick in steps:
        if action in ("urgent", "bulk"):
            task_id = f"t{len(priorities)}"
            priorities[task_id] = 0 if action == "urgent" else 3
            d.submit(Task(task_id, priority=priorities[task_id]))
        elif action == "complete":
            leases = d.leases()
            if leases:
                d.complete(leases[pick % len(leases)].task.id)
        else:
            d.dispatch()
            leased = [a.task for a in d.leases()]
            free = capacity - len(leased)
            bulk = sum(1 for t in leased if t.priority > 1)
            waiting = {
                priorities[task_id]
                for task_id in priorities
                if d.state_of(task_id) in (TaskState.QUEUED, TaskState.PARKED)
            }
            assert bulk <= unreserved, "the less urgent took reserved slots"
            assert not (0 in waiting and free > 0), "urgent work waits beside a free slot"
            assert not (3 in waiting and free > 0 and bulk < unreserved), "an unreserved slot idles"


# -- backfill -----------------------------------------------------------------------------


def big_waits_behind_small(*others: Task) -> tuple[Distributor, ManualClock, list[Event]]:
    """Two workers of 4 slots, running tasks that end at 10, 20, ... 80; then a task that
    needs a whole worker arrives, and ``others`` after it."""
    d, clock, events = cluster(4, 4, backfill=Backfill())
    for i in range(8):
        d.submit(Task(f"s{i}", cost=10.0 * (i + 1)))
    d.dispatch()
    d.submit(Task("big", resources={"slots": 4}, cost=5.0))
    for task in others:
        d.submit(task)
    return d, clock, events


def finish(d: Distributor, clock: ManualClock, task_id: str, at: float) -> list[tuple[str, str]]:
    """At ``at``, ``task_id`` completes; what the next dispatch places, and where."""
    clock.set(at)
    d.complete(task_id)
    return [(str(a.task.id), str(a.worker_id)) for a in d.dispatch()]


def test_a_large_task_gets_the_worker_where_it_can_start_soonest() -> None:
    d, clock, events = big_waits_behind_small()
    finish(d, clock, "s0", at=10.0)
    reserved = [e for e in events if e.kind is EventKind.RESERVED]
    assert [(e.task_id, e.worker_id, e.at) for e in reserved] == [("big", "w0", 70.0)]
    assert d.explain("big").endswith("; worker 'w0' reserved for it from 70")


def test_short_tasks_backfill_the_reserved_worker_and_long_ones_wait() -> None:
    d, clock, _ = big_waits_behind_small(Task("long", cost=100.0), Task("short", cost=50.0))
    assert finish(d, clock, "s0", at=10.0) == [("short", "w0")]  # w0 is the reserved one
    assert "held for reservation: worker 'w0' is reserved for 'big' from 70" in d.explain("long")
    assert finish(d, clock, "s1", at=20.0) == [("long", "w1")]  # w1 is not reserved


def test_the_reserved_task_starts_when_its_worker_has_room_and_the_reservation_ends() -> None:
    d, clock, events = big_waits_behind_small(Task("long", cost=100.0))
    for i, now in enumerate([10.0, 30.0, 50.0]):
        assert finish(d, clock, f"s{2 * i}", at=now) == []
    assert finish(d, clock, "s6", at=70.0) == [("big", "w0")]
    assert d.state_of("long") in (TaskState.QUEUED, TaskState.PARKED)  # w1 is still full
    assert finish(d, clock, "s7", at=80.0) == [("long", "w1")]
    assert sum(1 for e in events if e.kind is EventKind.RESERVED) == 1


def test_a_task_ending_exactly_at_the_reserved_start_is_backfilled() -> None:
    d, clock, _ = big_waits_behind_small(
        Task("too-long", cost=60.5), Task("just-in-time", cost=60.0)
    )
    assert finish(d, clock, "s0", at=10.0) == [("just-in-time", "w0")]


def test_a_task_that_fits_beside_the_reserved_one_may_use_the_worker_meanwhile() -> None:
    d, _, _ = cluster(6, backfill=Backfill())
    for i in range(4):
        d.submit(Task(f"s{i}", cost=10.0))
    d.dispatch()
    d.submit(Task("big", resources={"slots": 4}, cost=5.0))
    d.submit(Task("long", cost=100.0))
    d.submit(Task("longer", cost=200.0))
    # At 10 the four end: 6 free, 4 for big, 2 left over: both long tasks fit beside it.
    assert sorted(a.task.id for a in d.dispatch()) == ["long", "longer"]
    assert d.state_of("big") is TaskState.PARKED


def test_cancelling_the_reserved_task_frees_its_worker_for_everyone() -> None:
    d, clock, _ = big_waits_behind_small(Task("long", cost=100.0))
    assert finish(d, clock, "s0", at=10.0) == []
    d.cancel("big")
    assert [(a.task.id, a.worker_id) for a in d.dispatch()] == [("long", "w0")]


running_costs = st.lists(st.integers(1, 12), min_size=1, max_size=8)
arrivals = st.lists(st.tuples(st.integers(0, 15), st.integers(1, 15)), max_size=30)


@given(
    running=running_costs,
    arrivals=arrivals,
    big_at=st.integers(0, 20),
    big_slots=st.integers(2, 4),
)
def test_backfill_never_delays_the_reserved_start_and_never_idles_the_worker(
    running: list[int], arrivals: list[tuple[int, int]], big_at: int, big_slots: int
) -> None:
    """With accurate costs (each task runs exactly its cost): the large task starts by the
    time its reservation announced, and after every dispatch no waiting task that would
    end by then is kept off the reserved worker's free room."""
    d, clock, events = cluster(4, 4, backfill=Backfill())
    timeline: list[tuple[float, int, Task]] = []
    for i, cost in enumerate(running):
        timeline.append((0.0, i, Task(f"r{i}", cost=float(cost))))
    for i, (at, cost) in enumerate(arrivals):
        timeline.append((float(at), 100 + i, Task(f"a{i}", cost=float(cost))))
    timeline.append((float(big_at), 99, Task("big", resources={"slots": big_slots}, cost=3.0)))
    heapq.heapify(timeline)
    submitted: list[Task] = []
    ends: list[tuple[float, str]] = []
    reserved: Event | None = None
    started: float | None = None
    while True:
        now = clock.now()
        while timeline and timeline[0][0] <= now:
            submitted.append(heapq.heappop(timeline)[2])
            d.submit(submitted[-1])
        while ends and ends[0][0] <= now:
            d.complete(heapq.heappop(ends)[1])
        for assignment in d.dispatch():
            task = assignment.task
            heapq.heappush(ends, (now + task.cost, str(task.id)))
            if task.id == "big":
                started = now
        reserved = reserved or next((e for e in events if e.kind is EventKind.RESERVED), None)
        events.clear()
        if reserved is not None and started is None:
            assert reserved.at is not None and now < reserved.at, "the reserved start passed"
            worker = d.tracker.worker(reserved.worker_id)
            idle = worker.free() >= 1
            for task in submitted:
                if task.id != "big" and idle and now + task.cost <= reserved.at:
                    assert d.state_of(task.id) not in (TaskState.QUEUED, TaskState.PARKED), (
                        f"{task.id} would end by {reserved.at} but waits beside free room"
                    )
        upcoming = [queue[0][0] for queue in (timeline, ends) if queue]
        if not upcoming:
            break
        clock.set(min(upcoming))
    assert started is not None
    if reserved is not None:
        assert reserved.at is not None and started <= reserved.at


# -- the reserved start is worked out once per change, not once per task checked ------


class TickingClock(ManualClock):
    """A clock that moves on at every read, as a real one does."""

    def now(self) -> float:
        return self.advance(1e-6)


def test_checking_tasks_against_the_reservation_sorts_only_when_the_worker_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taskdist.dispatch import reservation

    sorts = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal sorts
        sorts += 1
        return sorted(*args, **kwargs)

    clock = TickingClock()
    d, _, _ = cluster(4, 4, clock=clock, backfill=Backfill())
    for i in range(8):
        d.submit(Task(f"s{i}", cost=10.0 * (i + 1)))
    d.dispatch()
    d.submit(Task("big", resources={"slots": 4}, cost=5.0))
    for i in range(50):  # none ends by the reserved start: each is checked, and waits
        d.submit(Task(f"long{i}", cost=1000.0))
    d.complete("s0")
    monkeypatch.setattr(reservation, "sorted", counted, raising=False)
    placed = d.dispatch()
    d.tick()
    d.dispatch()
    assert [a.task.id for a in placed] == []
    assert d.tracker.worker("w0").free() == 1  # the reserved worker had room all along
    # One schedule per worker to find the one to reserve, one for the reserved start;
    # none more for the 50 tasks checked against it while the clock moves on.
    assert sorts <= 3


@given(
    running=st.lists(
        st.tuples(st.integers(0, 20), st.integers(1, 20), st.integers(1, 2)),
        min_size=1,
        max_size=6,
    ),
    needs=st.integers(1, 4),
    nows=st.lists(st.integers(0, 50), min_size=1, max_size=12),
)
def test_the_reserved_start_is_the_walk_through_the_running_tasks_at_every_time(
    running: list[tuple[int, int, int]], needs: int, nows: list[int]
) -> None:
    """The schedule answers, at any time asked (forwards, or back), what walking through
    the worker's running tasks at that time answers."""
    from taskdist import CapacityTracker
    from taskdist.dispatch.reservation import _Schedule

    tracker = CapacityTracker(ManualClock())
    state = tracker.add_worker(Worker("w", capacity={"slots": 12}))
    started: dict[Any, float] = {}
    for i, (start, cost, slots) in enumerate(running):
        task = Task(i, cost=float(cost), resources={"slots": slots})
        tracker.assign(task, "w")
        started[i] = float(start)
    big = Task("big", resources={"slots": needs})
    schedule = _Schedule(state, big, tracker, started.__getitem__)
    for now in map(float, nows):
        free = 12.0 - sum(slots for _, _, slots in running)
        when = now
        for end, slots in sorted(
            (max(started[i] + cost, now), slots) for i, (_, cost, slots) in enumerate(running)
        ):
            if end > when and free >= needs:
                break  # it fits before this task ends
            when = end
            free += slots
        assert schedule.start(now) == (when, {"slots": free - needs})
