"""DeadlineScheduler: EDF order, admission control, expiry, preemption advice, bad input."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Hashable, Sequence
from fractions import Fraction
from operator import itemgetter
from typing import Any

import pytest
from hypothesis import given, note
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
    DeadlineError,
    DeadlineInfeasibleError,
    DeadlineScheduler,
    DuplicateTaskError,
    Eviction,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    Priority,
    QueueFullError,
    Reason,
    SnapshotError,
    Task,
    UnknownPolicyError,
    UnknownTaskError,
)
from taskdist.queues._prefix_sorted import PrefixSumSortedList

# Dyadic rationals (multiples of 1/4, small) are exact in binary floating
# point, so the scheduler's float sums and the exact Fractions of the models
# below agree bit for bit, and boundary cases (finish == deadline) are real.
dyadic = st.integers(min_value=0, max_value=40).map(lambda n: n / 4)
positive_dyadic = st.integers(min_value=1, max_value=40).map(lambda n: n / 4)
rates = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0])
priorities = st.integers(min_value=-1, max_value=4)
policies = st.sampled_from(["run_late", "dead_letter", "reject"])


def drain(scheduler: DeadlineScheduler) -> list[Hashable]:
    """Every task id in pop order (empties the scheduler)."""
    order = []
    while (task := scheduler.pop()) is not None:
        order.append(task.id)
    return order


# -- the specification, restated independently --------------------------------


def order_key(
    task: Task, enqueued: Fraction, seq: int, rate: float
) -> tuple[int, Fraction | float, int, int]:
    """The documented order: CRITICAL first; then deadline or implicit deadline; priority; FIFO."""
    critical = task.priority <= Priority.CRITICAL
    time: Fraction | float
    if task.deadline is not None:
        time = Fraction(task.deadline)
    elif rate and not critical:
        time = enqueued + Fraction(task.priority) / Fraction(rate)
    else:
        time = math.inf
    return (0 if critical else 1, time, task.priority, seq)


def simulated_finish(ahead: Sequence[float], cost: float, now: float, servers: int) -> Fraction:
    """Brute force: servers free from now, tasks in order, each on the earliest-free server."""
    free = [Fraction(now)] * servers
    for work in ahead:
        earliest = free.index(min(free))
        free[earliest] += Fraction(work)
    return min(free) + Fraction(cost)


def float_finish(ahead: Sequence[float], cost: float, now: float, servers: int) -> float:
    """The same simulation in floats, adding costs one at a time as a server would."""
    free = [now] * servers
    for work in ahead:
        earliest = free.index(min(free))
        free[earliest] += work
    return min(free) + cost


# -- order ---------------------------------------------------------------------


def test_earliest_deadline_first_then_priority_then_fifo() -> None:
    edf = DeadlineScheduler(ManualClock())
    edf.push(Task("late", priority=Priority.HIGH, deadline=30.0))
    edf.push(Task("soon-low", priority=Priority.LOW, deadline=10.0))
    edf.push(Task("soon-high", priority=Priority.HIGH, deadline=10.0))
    edf.push(Task("soon-low-2", priority=Priority.LOW, deadline=10.0))
    assert drain(edf) == ["soon-high", "soon-low", "soon-low-2", "late"]


def test_critical_tasks_jump_everything_deadline_or_not() -> None:
    edf = DeadlineScheduler(ManualClock())
    edf.push(Task("due-now", priority=Priority.HIGH, deadline=1.0))
    edf.push(Task("emergency", priority=Priority.CRITICAL))
    edf.push(Task("emergency-due", priority=Priority.CRITICAL, deadline=100.0))
    edf.push(Task("below-critical", priority=-3))
    assert drain(edf) == ["emergency-due", "below-critical", "emergency", "due-now"]


def test_without_aging_tasks_without_deadline_wait_for_every_deadlined_task() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock)
    edf.push(Task("no-deadline-high", priority=Priority.HIGH))
    edf.push(Task("no-deadline-normal", priority=Priority.NORMAL))
    clock.advance(1e6)
    edf.push(Task("far-background", priority=Priority.BACKGROUND, deadline=1e9))
    assert drain(edf) == ["far-background", "no-deadline-high", "no-deadline-normal"]


def test_aging_gives_tasks_without_deadline_an_implicit_deadline() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, aging_rate=0.5)
    # NORMAL (2) at rate 0.5 aged to CRITICAL after 4 s: implicit deadline 4.0.
    edf.push(Task("no-deadline", priority=Priority.NORMAL))
    edf.push(Task("due-at-5", priority=Priority.LOW, deadline=5.0))
    edf.push(Task("due-at-3", priority=Priority.LOW, deadline=3.0))
    edf.push(Task("due-at-4-low", priority=Priority.LOW, deadline=4.0))
    edf.push(Task("due-at-4-high", priority=Priority.HIGH, deadline=4.0))
    assert drain(edf) == ["due-at-3", "due-at-4-high", "no-deadline", "due-at-4-low", "due-at-5"]


@given(
    priority=st.integers(min_value=1, max_value=4),
    rate=st.sampled_from([0.25, 0.5, 1.0, 2.0]),
    later=st.lists(
        st.tuples(st.integers(min_value=1, max_value=4), st.none() | positive_dyadic, dyadic),
        max_size=8,
    ),
)
def test_a_task_without_deadline_is_never_overtaken_after_its_aging_bound(
    priority: int, rate: float, later: list[tuple[int, float | None, float]]
) -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, aging_rate=rate)
    edf.push(Task("waiting", priority=priority))
    bound = priority / rate
    clock.advance(bound)
    for i, (other_priority, relative_deadline, gap) in enumerate(later):
        clock.advance(gap)
        deadline = None if relative_deadline is None else clock.now() + relative_deadline
        edf.push(Task(i, priority=other_priority, deadline=deadline))
    assert drain(edf)[0] == "waiting"


@given(
    tasks=st.lists(
        st.tuples(priorities, st.none() | positive_dyadic, dyadic), min_size=1, max_size=30
    )
)
def test_popped_deadlines_are_in_edf_order_with_critical_first(
    tasks: list[tuple[int, float | None, float]],
) -> None:
    edf = DeadlineScheduler(ManualClock())
    for i, (priority, deadline, cost) in enumerate(tasks):
        edf.push(Task(i, priority=priority, deadline=deadline, cost=cost))
    popped = []
    while (task := edf.pop()) is not None:
        popped.append(task)
    assert sorted(int(t.id) for t in popped) == list(range(len(tasks)))  # type: ignore[call-overload]
    ranks = [0 if t.priority <= Priority.CRITICAL else 1 for t in popped]
    assert ranks == sorted(ranks), "CRITICAL first"
    for rank in (0, 1):
        group = [t for t in popped if (0 if t.priority <= Priority.CRITICAL else 1) == rank]
        deadlines = [math.inf if t.deadline is None else t.deadline for t in group]
        assert deadlines == sorted(deadlines), "deadlines non-decreasing, none last"
        for a, b in itertools.pairwise(group):
            if a.deadline == b.deadline:
                assert (a.priority, a.id) < (b.priority, b.id), "ties: priority, then FIFO"
    for priority in {t.priority for t in popped}:
        same_class = [t.deadline for t in popped if t.priority == priority and t.deadline]
        assert same_class == sorted(same_class), "non-decreasing within a priority class"


def test_backdated_push_keeps_its_age_for_aging_and_ttl() -> None:
    clock = ManualClock(start=100.0)
    edf = DeadlineScheduler(clock, aging_rate=1.0)
    edf.push(Task("fresh", priority=Priority.NORMAL))  # implicit deadline 102
    edf.push(Task("requeued", priority=Priority.NORMAL, ttl=10.0), enqueued_at=97.0)
    assert edf.next_wakeup() == 107.0
    assert drain(edf) == ["requeued", "fresh"]


# -- where= ----------------------------------------------------------------------


def test_pop_where_takes_the_best_match_and_leaves_the_rest_in_place() -> None:
    edf = DeadlineScheduler(ManualClock())
    edf.push(Task("gpu-critical", priority=0, requires={"gpu"}))
    edf.push(Task("gpu-soon", deadline=1.0, requires={"gpu"}))
    edf.push(Task("cpu-soon", deadline=2.0))
    edf.push(Task("cpu-late", deadline=3.0))
    taken = edf.pop(where=lambda t: "gpu" not in t.requires)
    assert taken is not None and taken.id == "cpu-soon"
    assert edf.peek(where=lambda t: t.id == "cpu-late").id == "cpu-late"  # type: ignore[union-attr]
    assert drain(edf) == ["gpu-critical", "gpu-soon", "cpu-late"]


def test_pop_where_examines_only_tasks_ahead_of_the_match() -> None:
    edf = DeadlineScheduler(ManualClock())
    for i in range(1_000):
        edf.push(Task(i, deadline=1.0 + i))
    seen: list[Hashable] = []

    def third(task: Task) -> bool:
        seen.append(task.id)
        return task.id == 2

    assert edf.pop(where=third).id == 2  # type: ignore[union-attr]
    assert seen == [0, 1, 2]


# -- feasibility ---------------------------------------------------------------


def test_feasibility_on_one_server_sums_the_work_ahead() -> None:
    clock = ManualClock(start=10.0)
    edf = DeadlineScheduler(clock)
    edf.push(Task("a", deadline=20.0, cost=3.0))
    edf.push(Task("b", deadline=30.0, cost=4.0))
    # Ahead of a deadline-25 task: only "a" (3 s). 10 + 3 + 12 = 25 fits exactly.
    assert edf.feasible(Task("c", deadline=25.0, cost=12.0))
    assert not edf.feasible(Task("c", deadline=25.0, cost=12.25))
    # Tasks behind it do not count.
    assert edf.feasible(Task("d", deadline=11.0, cost=1.0))
    assert edf.feasible(Task("no-deadline", cost=1e9))
    assert edf.slack("b") == 30.0 - (10.0 + 3.0 + 4.0)


def test_feasibility_with_several_servers_uses_list_scheduling() -> None:
    edf = DeadlineScheduler(ManualClock(), servers=2)
    for i, cost in enumerate([5.0, 1.0, 1.0, 1.0]):
        edf.push(Task(i, deadline=5.0, cost=cost))
    # Servers: [5] and [1, 1, 1]: the next task starts at 3 on the second.
    assert edf.slack(0) == 0.0 and edf.slack(3) == 2.0
    assert not edf.feasible(Task("too-long", deadline=5.0, cost=2.25))
    tight = Task("tight", deadline=5.0, cost=2.0)
    assert edf.feasible(tight)
    edf.push(tight)
    assert edf.slack("tight") == 0.0 and not edf.is_late("tight")


@pytest.mark.parametrize("servers", [2, 5])
def test_a_decisive_bound_answers_without_simulating(
    servers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, servers=servers)
    for i in range(200):
        edf.push(Task(i, deadline=1e4, cost=10.0))

    def no_simulation(*args: object) -> float:
        raise AssertionError("the bound should have decided")

    monkeypatch.setattr(DeadlineScheduler, "_simulated_start", no_simulation)
    # 2000 s of work ahead: it starts between 2000/m - 10 and 2000/m.
    assert edf.feasible(Task("loose", deadline=2e4, cost=1.0))
    hopeless = Task("hopeless", deadline=1e4 + 1, cost=1e4 + 21 - 2000 / servers)
    assert not edf.feasible(hopeless)
    # A CRITICAL task goes first, with room to spare.
    assert edf.feasible(Task("urgent", priority=0, deadline=5.0, cost=1.0))


def held_set(data: st.DataObject) -> list[tuple[int, float | None, float]]:
    return data.draw(
        st.lists(st.tuples(priorities, st.none() | positive_dyadic, dyadic), max_size=25),
        label="held",
    )


@given(
    servers=st.integers(min_value=1, max_value=4),
    rate=rates,
    start=dyadic,
    data=st.data(),
)
def test_feasibility_agrees_with_a_brute_force_simulation(
    servers: int, rate: float, start: float, data: st.DataObject
) -> None:
    clock = ManualClock(start=start)
    edf = DeadlineScheduler(clock, servers=servers, aging_rate=rate, on_miss="run_late")
    held = []
    for i, (priority, offset, cost) in enumerate(held_set(data)):
        deadline = None if offset is None else start + offset
        task = Task(i, priority=priority, deadline=deadline, cost=cost)
        edf.push(task)
        held.append((order_key(task, Fraction(start), i, rate), task))
    held.sort(key=lambda pair: pair[0])
    priority = data.draw(priorities, label="priority")
    deadline = start + data.draw(positive_dyadic, label="relative deadline")
    cost = data.draw(dyadic, label="cost")
    candidate = Task("new", priority=priority, deadline=deadline, cost=cost)
    key = order_key(candidate, Fraction(start), len(held), rate)
    ahead = [task.cost for k, task in held if k < key]
    finish = simulated_finish(ahead, cost, start, servers)
    note(f"ahead={ahead} finish={finish} deadline={deadline}")
    assert edf.feasible(candidate) == (finish <= deadline)
    # The same verdict at push, and slack is the simulated margin.
    edf.push(candidate)
    if finish > deadline:  # it may also be late for making another task miss
        assert edf.is_late("new")
    assert edf.slack("new") == deadline - finish
    queue = sorted([*held, (key, candidate)], key=lambda pair: pair[0])
    for position, (_, task) in enumerate(queue):
        if task.deadline is not None:
            ahead = [other.cost for _, other in queue[:position]]
            expected = Fraction(task.deadline) - simulated_finish(ahead, task.cost, start, servers)
            assert edf.slack(task.id) == expected
            assert edf.feasible(task) == (expected >= 0)


def simulated_finishes(queue: list[tuple[object, Task]], now: float, servers: int) -> dict:  # type: ignore[type-arg]
    """Brute force: each task's finish, servers free from now, tasks in queue order."""
    free = [Fraction(now)] * servers
    finishes = {}
    for _, task in sorted(queue, key=lambda pair: pair[0]):  # type: ignore[arg-type, return-value]
        earliest = free.index(min(free))
        free[earliest] += Fraction(task.cost)
        finishes[task.id] = free[earliest]
    return finishes


@given(
    servers=st.integers(min_value=1, max_value=3),
    rate=rates,
    steps=st.lists(
        st.tuples(priorities, st.none() | positive_dyadic, dyadic, dyadic), min_size=1, max_size=14
    ),
)
def test_admission_keeps_every_promise_exactly_on_one_server_and_soundly_on_several(
    servers: int, rate: float, steps: list[tuple[int, float | None, float, float]]
) -> None:
    """Each push against a brute-force simulation of every held task, with and without it.

    On time means: it meets its own deadline, and no task that is feasible
    now would miss with it. Tasks already predicted to miss are marked late
    first. One server: the scheduler's verdict is exactly that; several:
    whatever it admits on time truly is, and whatever it marks truly is late.
    """
    clock = ManualClock()
    edf = DeadlineScheduler(clock, servers=servers, aging_rate=rate, on_miss="dead_letter")
    held: list[tuple[object, Task]] = []
    late: set[object] = set()
    for seq, (priority, offset, cost, gap) in enumerate(steps):
        clock.advance(gap)
        now = clock.now()
        held = [(k, t) for k, t in held if t.deadline is None or t.deadline > now]
        task = Task(
            seq, priority=priority, deadline=None if offset is None else now + offset, cost=cost
        )
        key = order_key(task, Fraction(now), seq, rate)
        before = simulated_finishes(held, now, servers)
        after = simulated_finishes([*held, (key, task)], now, servers)
        promised = [t for _, t in held if t.deadline is not None and t.id not in late]
        doomed = {t.id for t in promised if before[t.id] > t.deadline}  # type: ignore[operator]
        on_time = (task.deadline is None or after[task.id] <= task.deadline) and all(
            after[t.id] <= t.deadline
            for t in promised
            if t.id not in doomed  # type: ignore[operator]
        )
        admitted = edf.push(task) is None
        newly_late = {t.id for _, t in held if t.id not in late and edf.is_late(t.id)}
        if servers == 1:
            assert admitted == on_time
            if admitted:
                assert newly_late == doomed
        else:
            assert not admitted or on_time, "admitted on time only when truly on time"
            assert newly_late <= doomed, "marked late only when truly predicted to miss"
        if admitted:
            held.append((key, task))
            late |= newly_late
        else:
            assert task.id not in edf
            assert not newly_late, "a refused push changes nothing"


awkward = st.sampled_from([0.1, 0.2, 0.3, 0.7, 1 / 3, 2 / 3]) | st.floats(0.0, 20.0)


@given(
    servers=st.integers(min_value=1, max_value=3),
    now=st.sampled_from([0.0, 0.3, 7.7, 1000.1, 12345.678]) | st.floats(0.0, 1e5),
    ahead=st.lists(awkward, min_size=1, max_size=30),
    cost=awkward,
)
def test_feasibility_agrees_with_a_float_simulation_to_the_last_bit(
    servers: int, now: float, ahead: list[float], cost: float
) -> None:
    # Costs that do not add up exactly in binary: the scheduler's prefix sums
    # round differently from a server adding them one by one, and a deadline
    # one ulp either side of the simulated finish must still get the
    # simulation's answer.
    edf = DeadlineScheduler(ManualClock(start=now), servers=servers)
    first = math.nextafter(now, math.inf)
    for i, work in enumerate(ahead):
        edf.push(Task(i, deadline=first, cost=work))  # all ahead of the probe
    finish = float_finish(ahead, cost, now, servers)
    for deadline in (math.nextafter(finish, -math.inf), finish, math.nextafter(finish, math.inf)):
        if deadline > first:
            probe = Task("probe", deadline=deadline, cost=cost)
            assert edf.feasible(probe) == (finish <= deadline), deadline


def test_changing_servers_changes_feasibility() -> None:
    edf = DeadlineScheduler(ManualClock())
    for i in range(4):
        edf.push(Task(i, deadline=100.0, cost=10.0))
    probe = Task("probe", deadline=100.0, cost=65.0)  # behind all four (FIFO)
    assert not edf.feasible(probe)  # 40 + 65 > 100
    assert edf.slack(3) == 60.0
    edf.servers = 2
    assert edf.servers == 2
    assert edf.feasible(probe)  # starts at 20
    assert edf.slack(3) == 80.0  # starts at 10, beside task 2
    edf.servers = 1
    assert not edf.feasible(probe) and edf.slack(3) == 60.0


# -- admission policies ----------------------------------------------------------


def overloaded(on_miss: str) -> tuple[ManualClock, DeadlineScheduler]:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, on_miss=on_miss)  # type: ignore[arg-type]
    edf.push(Task("busy", deadline=10.0, cost=9.0))
    return clock, edf


def test_run_late_keeps_an_infeasible_task_and_flags_it() -> None:
    _, edf = overloaded("run_late")
    assert edf.push(Task("late", deadline=12.0, cost=5.0)) is None
    assert "late" in edf and edf.is_late("late") and not edf.is_late("busy")
    assert edf.slack("late") == 12.0 - 14.0
    stats = edf.stats()
    assert (stats.admitted_late, stats.late, stats.pushed) == (1, 1, 2)
    assert drain(edf) == ["busy", "late"]
    # The flag left with the task: the id pushed again in time is not late.
    edf.push(Task("late", deadline=12.0, cost=5.0))
    assert not edf.is_late("late") and edf.stats().late == 0


@pytest.mark.parametrize("leave", ["pop", "remove", "expire"])
def test_a_late_flag_never_outlives_its_task(leave: str) -> None:
    clock, edf = overloaded("run_late")
    edf.push(Task("late", deadline=12.0, cost=5.0, ttl=1.0))
    assert edf.is_late("late")
    if leave == "pop":
        edf.pop(where=lambda t: t.id == "late")
    elif leave == "remove":
        edf.remove("late")
    else:
        clock.advance(1.0)
        assert [t.id for t in edf.expire()] == ["late"]
    edf.push(Task("late", deadline=50.0, cost=1.0))
    assert not edf.is_late("late")


def test_expired_work_no_longer_counts_as_ahead() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, on_miss="reject")
    edf.push(Task("stale", priority=0, ttl=1.0, cost=100.0))
    clock.advance(1.0)
    edf.push(Task("fresh", deadline=5.0, cost=1.0))  # "stale" expired: nothing ahead
    assert edf.slack("fresh") == 3.0


def test_dead_letter_hands_an_infeasible_task_back_and_changes_nothing() -> None:
    _, edf = overloaded("dead_letter")
    late = Task("late", deadline=12.0, cost=5.0)
    assert edf.push(late) == Eviction(late, Reason.DEADLINE_INFEASIBLE)
    assert "late" not in edf and len(edf) == 1 and edf.slack("busy") == 1.0
    assert edf.stats().dead_lettered == 1 and edf.stats().pushed == 1
    assert drain(edf) == ["busy"]


def test_reject_raises_for_an_infeasible_task_and_changes_nothing() -> None:
    _, edf = overloaded("reject")
    with pytest.raises(DeadlineInfeasibleError, match="'late'"):
        edf.push(Task("late", deadline=12.0, cost=5.0))
    assert "late" not in edf and len(edf) == 1 and edf.slack("busy") == 1.0
    assert edf.stats().rejected == 1
    # The id is free again: the refused task was not kept.
    edf.push(Task("late", deadline=20.0, cost=5.0))
    assert drain(edf) == ["busy", "late"]


@pytest.mark.parametrize("on_miss", ["run_late", "dead_letter", "reject"])
def test_a_deadline_not_after_now_is_refused_under_every_policy(on_miss: str) -> None:
    clock, edf = overloaded(on_miss)
    clock.advance(5.0)
    before = snapshot(edf, ["busy"])
    for deadline in (5.0, 4.0):
        with pytest.raises(DeadlineError, match="deadline"):
            edf.push(Task("past", deadline=deadline))
        assert not edf.feasible(Task("past", deadline=deadline))
    assert snapshot(edf, ["busy"]) == before


@pytest.mark.parametrize("deadline", [5.0, 4.0, 0.5])
def test_a_task_pushed_back_after_its_deadline_runs_late_under_run_late(deadline: float) -> None:
    # A task coming back with its age (from a worker, a retry, a hold) is treated as if
    # it had waited here when its deadline passed: kept, late, first by its deadline.
    clock, edf = overloaded("run_late")
    edf.push(Task("later", deadline=50.0, cost=1.0))
    clock.advance(5.0)
    assert edf.push(Task("back", deadline=deadline, cost=2.0), enqueued_at=0.0) is None
    assert edf.is_late("back") and edf.slack("back") == deadline - (5.0 + 2.0)
    stats = edf.stats()
    assert (stats.admitted_late, stats.pushed, stats.late) == (1, 3, 2)  # and "busy"
    assert edf.peek() is not None and edf.peek().id == "back"  # type: ignore[union-attr]
    # It delays the tasks behind it as any late task does: "busy" is now late too.
    assert edf.is_late("busy") and edf.slack("later") == 50.0 - (5.0 + 2.0 + 9.0 + 1.0)
    popped = edf.pop()
    assert popped is not None and popped.id == "back" and edf.stats().missed == 1
    restored = DeadlineScheduler(clock)
    restored.load_snapshot(json.loads(json.dumps(edf.snapshot())))
    assert drain(restored) == drain(edf) == ["busy", "later"]


@pytest.mark.parametrize(("cost", "late"), [(0.0, False), (1.0, True)])
def test_a_task_pushed_back_at_its_deadline_is_late_only_if_it_cannot_meet_it(
    cost: float, late: bool
) -> None:
    # At its deadline a task of cost 0 still meets it: admitted on time, not late, and
    # counted met when popped. One that costs anything is admitted late and missed.
    clock = ManualClock(start=5.0)
    edf = DeadlineScheduler(clock)
    edf.push(Task("back", deadline=5.0, cost=cost), enqueued_at=1.0)
    stats = edf.stats()
    assert edf.is_late("back") is late and stats.admitted_late == stats.late == int(late)
    assert edf.pop() is not None
    stats = edf.stats()
    assert (stats.met, stats.missed) == ((0, 1) if late else (1, 0))


@pytest.mark.parametrize("on_miss", ["dead_letter", "reject"])
def test_a_task_of_cost_0_is_late_at_its_deadline_when_it_expires_then(on_miss: str) -> None:
    # Under these policies a task is due to expire() at its deadline, whatever its cost.
    clock = ManualClock()
    edf = DeadlineScheduler(clock, on_miss=on_miss)  # type: ignore[arg-type]
    edf.push(Task("free", deadline=5.0, cost=0.0))
    clock.set(5.0)
    assert edf.is_late("free") and edf.stats().late == 1
    assert edf.pop() is None and [e.reason for e in edf.expire_with_reasons()] == [
        Reason.DEADLINE_MISSED
    ]


@pytest.mark.parametrize("on_miss", ["run_late", "dead_letter", "reject"])
def test_check_push_answers_for_a_task_pushed_back_after_its_deadline(on_miss: str) -> None:
    # What push would do with the same enqueued_at, changing nothing.
    clock, edf = overloaded(on_miss)
    clock.advance(5.0)
    task = Task("back", deadline=4.0, cost=2.0)
    before = snapshot(edf, ["busy"])
    if on_miss == "run_late":
        edf.check_push(task, enqueued_at=0.0)
    else:
        with pytest.raises(DeadlineError, match="deadline"):
            edf.check_push(task, enqueued_at=0.0)
    with pytest.raises(DeadlineError, match="deadline"):
        edf.check_push(task)  # a new task past its deadline, under every policy
    with pytest.raises(InvalidArgumentError, match="enqueued_at"):
        edf.check_push(task, enqueued_at=6.0)  # in the future
    assert snapshot(edf, ["busy"]) == before and edf.stats().pushed == 1


@pytest.mark.parametrize("on_miss", ["dead_letter", "reject"])
def test_a_task_pushed_back_after_its_deadline_is_refused_unless_run_late(on_miss: str) -> None:
    # Held, it would have been handed back at its deadline: it is refused, nothing changed.
    clock, edf = overloaded(on_miss)
    clock.advance(5.0)
    before = snapshot(edf, ["busy"])
    with pytest.raises(DeadlineError, match="deadline"):
        edf.push(Task("back", deadline=4.0, cost=2.0), enqueued_at=0.0)
    assert snapshot(edf, ["busy"]) == before and edf.stats().pushed == 1


# -- the classic result ----------------------------------------------------------


@given(
    jobs=st.lists(st.tuples(positive_dyadic, dyadic), min_size=1, max_size=12),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_edf_meets_every_deadline_of_a_feasible_single_server_job_set(
    jobs: list[tuple[float, float]], seed: int
) -> None:
    # A job set made feasible by construction: some order meets every deadline.
    clock = ManualClock()
    finish = 0.0
    tasks = []
    for i, (cost, spare) in enumerate(jobs):
        finish += cost
        tasks.append(Task(i, deadline=finish + spare, cost=cost))
    random.Random(seed).shuffle(tasks)
    # "reject" admission never refuses one, and none expires while waiting.
    edf = DeadlineScheduler(clock, on_miss="reject")
    for task in tasks:
        assert edf.push(task) is None
    while (job := edf.pop()) is not None:
        clock.advance(job.cost)
        assert job.deadline is not None and clock.now() <= job.deadline
        assert edf.expire() == []
    assert edf.stats().met == len(jobs) and edf.stats().missed == 0


@given(jobs=st.lists(st.tuples(positive_dyadic, positive_dyadic), min_size=1, max_size=6))
def test_edf_order_meets_all_deadlines_exactly_when_some_order_does(
    jobs: list[tuple[float, float]],
) -> None:
    def meets_all(order: Sequence[tuple[float, float]]) -> bool:
        t = 0.0
        for cost, deadline in order:
            t += cost
            if t > deadline:
                return False
        return True

    some_order = any(meets_all(order) for order in itertools.permutations(jobs))
    edf = DeadlineScheduler(ManualClock())
    for i, (cost, deadline) in enumerate(jobs):
        edf.push(Task(i, deadline=deadline, cost=cost))
    popped = []
    while (task := edf.pop()) is not None:
        popped.append(jobs[task.id])  # type: ignore[call-overload]
    assert meets_all(popped) == some_order


# -- expiry ----------------------------------------------------------------------


def test_ttl_expiry_returns_the_task_and_it_is_never_popped() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock)
    edf.push(Task("short", priority=0, ttl=5.0))
    edf.push(Task("normal", deadline=100.0))
    assert edf.next_wakeup() == 5.0
    clock.advance(5.0)
    assert "short" in edf and len(edf) == 2
    assert edf.peek().id == "normal"  # type: ignore[union-attr]
    assert edf.expire_with_reasons() == [
        Eviction(Task("short", priority=0, ttl=5.0), Reason.TTL_EXPIRED)
    ]
    assert len(edf) == 1 and edf.next_wakeup() is None and edf.expire() == []


def test_expire_returns_earliest_due_first_even_for_a_backdated_push() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock)
    edf.push(Task("a", ttl=9.0))
    clock.advance(10.0)
    assert edf.pop() is None  # "a" is due: set aside for expire()
    edf.push(Task("b", ttl=2.0), enqueued_at=3.0)  # due at 5, already past
    wakeup = edf.next_wakeup()
    assert wakeup is not None and wakeup <= clock.now()
    assert [t.id for t in edf.expire()] == ["b", "a"]


@pytest.mark.parametrize("on_miss", ["dead_letter", "reject"])
def test_a_deadline_passing_while_waiting_expires_the_task(on_miss: str) -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, on_miss=on_miss)  # type: ignore[arg-type]
    edf.push(Task("waits", deadline=4.0, cost=1.0))
    edf.push(Task("ttl-first", deadline=9.0, ttl=6.0))
    edf.push(Task("deadline-first", deadline=7.0, ttl=8.0))
    assert edf.next_wakeup() == 4.0
    clock.advance(4.0)
    assert edf.is_late("waits") and edf.slack("waits") == -1.0
    assert not edf.feasible(Task("waits", deadline=4.0, cost=1.0))
    clock.advance(10.0)
    expired = edf.expire_with_reasons()
    assert [(e.task.id, e.reason) for e in expired] == [
        ("waits", Reason.DEADLINE_MISSED),
        ("ttl-first", Reason.TTL_EXPIRED),
        ("deadline-first", Reason.DEADLINE_MISSED),
    ]
    stats = edf.stats()
    assert (stats.expired, stats.expired_deadline, stats.missed, stats.met) == (3, 2, 2, 0)


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_expired_tasks_are_held_earliest_due_first_whichever_limit_hit(rate: float) -> None:
    # Due times are found apart: TTLs in a FIFO while they come in order (else a
    # heap), deadlines without aging in the order itself. What falls due together
    # is held, and snapshotted, earliest due first all the same.
    clock = ManualClock()
    edf = DeadlineScheduler(clock, on_miss="dead_letter", aging_rate=rate)
    edf.push(Task("ttl-3", ttl=3.0))
    edf.push(Task("deadline-2", deadline=2.0))
    edf.push(Task("ttl-1", ttl=1.0))  # before the last TTL filed
    edf.push(Task("critical-deadline-4", priority=Priority.CRITICAL, deadline=4.0))
    edf.push(Task("ttl-5", ttl=5.0))
    edf.push(Task("deadline-6", deadline=6.0, ttl=7.0))
    assert edf.next_wakeup() == 1.0
    clock.advance(10.0)
    assert edf.peek() is None  # all due: set aside for expire()
    held = [(item[0][2]["id"], item[1], item[2]) for item in edf.snapshot()["expired"]]
    assert held == [
        ("ttl-1", "ttl_expired", 1.0),
        ("deadline-2", "deadline_missed", 2.0),
        ("ttl-3", "ttl_expired", 3.0),
        ("critical-deadline-4", "deadline_missed", 4.0),
        ("ttl-5", "ttl_expired", 5.0),
        ("deadline-6", "deadline_missed", 6.0),
    ]
    assert [task.id for task in edf.expire()] == [task_id for task_id, _, _ in held]


def test_a_snapshot_whose_expired_reason_is_not_a_name_is_refused() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, on_miss="dead_letter")
    edf.push(Task("late", deadline=1.0))
    clock.advance(2.0)
    assert edf.peek() is None  # set aside for expire()
    snapshot = json.loads(json.dumps(edf.snapshot()))
    snapshot["expired"][0][1] = ["deadline_missed"]  # a list: unhashable
    fresh = DeadlineScheduler(clock, on_miss="dead_letter")
    with pytest.raises(SnapshotError, match=r"expired\[0\] must be"):
        fresh.load_snapshot(snapshot)
    assert len(fresh) == 0


def test_a_deadline_expires_a_task_wherever_it_waits_in_the_order() -> None:
    # Without aging no deadline gets a timer: each is found at the front of the
    # CRITICAL list, the ordered front or the back, as the order moves.
    clock = ManualClock()
    edf = DeadlineScheduler(clock, on_miss="dead_letter")
    for i in range(40):
        priority = Priority.CRITICAL if i % 5 == 0 else 2
        assert edf.push(Task(i, priority=priority, deadline=40.0 - i, cost=0.0)) is None
    edf.push(Task("no-deadline", cost=0.0))
    assert edf.slack(20) > 0  # moves the back up to task 20 into the front
    gone: list[int] = []
    for now in (0.5, 5.0, 12.25, 30.0, 45.0):
        clock.advance(now - clock.now())
        due = [i for i in reversed(range(40)) if 40.0 - i <= now and i not in gone]
        assert [task.id for task in edf.expire()] == due  # earliest deadline first
        gone += due
        left = [40.0 - i for i in range(40) if i not in gone]
        assert edf.next_wakeup() == (min(left) if left else None)
    assert drain(edf) == ["no-deadline"]


def test_plain_expire_tells_a_missed_deadline_by_task_deadline_le_now() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, on_miss="dead_letter")
    edf.push(Task("missed", deadline=2.0))
    edf.push(Task("ttl", ttl=3.0))
    clock.advance(3.0)
    now = clock.now()
    reasons = {
        t.id: ("deadline_missed" if t.deadline is not None and t.deadline <= now else "ttl")
        for t in edf.expire()
    }
    assert reasons == {"missed": "deadline_missed", "ttl": "ttl"}


def test_run_late_keeps_a_task_whose_deadline_passed_and_counts_the_miss() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, on_miss="run_late")
    edf.push(Task("on-time", deadline=3.0, cost=1.0))
    edf.push(Task("overdue", deadline=4.0, cost=1.0))
    assert edf.next_wakeup() is None
    assert edf.pop().id == "on-time"  # type: ignore[union-attr]
    clock.advance(4.0)
    assert edf.expire() == [] and edf.is_late("overdue")
    assert edf.pop().id == "overdue"  # type: ignore[union-attr]
    stats = edf.stats()
    assert (stats.met, stats.missed, stats.hit_rate) == (1, 1, 0.5)


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_memory_of_side_heaps_is_reclaimed(rate: float) -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, servers=3, on_miss="dead_letter", aging_rate=rate)
    edf.push(Task("stays", deadline=2e9, ttl=2e9, cost=0.0))  # never empty: no fresh start
    for round_ in range(50):
        for i in range(100):
            edf.push(Task((round_, i), deadline=1e9 + i % 7, ttl=1e9 + i % 5, cost=1.0))
        for _ in range(100):
            edf.pop()
    assert len(edf) == 1 and edf.peek().id == "stays"  # type: ignore[union-attr]
    assert edf._timers is not None and len(edf._timers) <= 2 + 64
    assert len(edf._back) <= 2 + 64


# -- preemption advice -----------------------------------------------------------


def running_set() -> list[tuple[Task, float]]:
    return [
        (Task("tight", deadline=12.0, cost=10.0), 0.0),
        (Task("critical", priority=0, cost=10.0), 0.0),
        (Task("report", deadline=50.0, cost=10.0), 0.0),
        (Task("batch", priority=Priority.BACKGROUND, cost=10.0), 1.0),
    ]


def test_no_preemption_while_a_server_is_free() -> None:
    edf = DeadlineScheduler(ManualClock(start=2.0), servers=5)
    assert edf.preemption_candidates(Task("e", priority=0), running_set()) == []


def test_an_emergency_may_preempt_any_running_task_but_a_critical_one() -> None:
    edf = DeadlineScheduler(ManualClock(start=2.0), servers=4)
    advice = edf.preemption_candidates(Task("e", priority=0), running_set())
    # Least urgent first: no deadline; then most laxity (50-2-10 = 38, 12-2-10 = 0).
    assert [t.id for t in advice] == ["batch", "report", "tight"]


def test_an_urgent_task_preempts_only_tasks_it_outranks_that_can_absorb_it() -> None:
    edf = DeadlineScheduler(ManualClock(start=2.0), servers=4)
    # Waiting for the first server (free at 10) misses 8.0; starting now meets it.
    urgent = Task("urgent", priority=Priority.HIGH, deadline=8.0, cost=5.0)
    # "tight" has a later deadline but no laxity to absorb 5 s: not offered.
    assert [t.id for t in edf.preemption_candidates(urgent, running_set())] == [
        "batch",
        "report",
    ]


def test_no_preemption_when_waiting_meets_the_deadline_or_nothing_would() -> None:
    edf = DeadlineScheduler(ManualClock(start=2.0), servers=4)
    patient = Task("patient", deadline=15.0, cost=5.0)
    hopeless = Task("hopeless", deadline=4.0, cost=5.0)
    no_deadline = Task("whenever", priority=Priority.HIGH)
    for task in (patient, hopeless, no_deadline):
        assert edf.preemption_candidates(task, running_set()) == []


@given(
    now=dyadic,
    servers=st.integers(min_value=1, max_value=4),
    running=st.lists(
        st.tuples(priorities, st.none() | dyadic, positive_dyadic, dyadic), max_size=6
    ),
    new=st.tuples(priorities, st.none() | positive_dyadic, positive_dyadic),
)
def test_preemption_advice_never_names_critical_and_ranks_least_urgent_first(
    now: float,
    servers: int,
    running: list[tuple[int, float | None, float, float]],
    new: tuple[int, float | None, float],
) -> None:
    edf = DeadlineScheduler(ManualClock(start=now), servers=servers)
    pairs = [
        (Task(i, priority=p, deadline=None if d is None else now + d, cost=c), now - back)
        for i, (p, d, c, back) in enumerate(running)
    ]
    priority, relative, cost = new
    deadline = None if relative is None else now + relative
    task = Task("new", priority=priority, deadline=deadline, cost=cost)
    advice = edf.preemption_candidates(task, pairs)
    if len(pairs) < servers:
        assert advice == []
    starts = {t.id: start for t, start in pairs}

    def laxity(t: Task) -> float:
        return math.inf if t.deadline is None else t.deadline - now - t.cost

    for victim in advice:
        assert victim.priority > Priority.CRITICAL
        assert order_key(task, Fraction(0), 0, 0.0)[:3] < order_key(victim, Fraction(0), 0, 0.0)[:3]
        if task.priority > Priority.CRITICAL:
            assert laxity(victim) >= task.cost, "a victim must still make its own deadline"
    ranking = [(-laxity(t), -t.priority, -starts[t.id]) for t in advice]
    assert ranking == sorted(ranking)
    if advice and task.deadline is not None:
        earliest_free = max(now, min(start + t.cost for t, start in pairs))
        assert earliest_free + task.cost > task.deadline, "preempt only if waiting misses"


# -- stats -------------------------------------------------------------------------


def test_stats_count_hits_misses_and_conserve_tasks() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, on_miss="dead_letter")
    edf.push(Task("met", deadline=2.0, cost=1.0))
    edf.push(Task("expires", deadline=3.0, cost=1.0))
    edf.push(Task("cancelled", deadline=50.0))
    edf.push(Task("free", priority=0))
    assert edf.push(Task("refused", deadline=1.0, cost=5.0)) is not None
    edf.pop()  # "free" (CRITICAL)
    edf.pop()  # "met", at 0: 0 + 1 <= 2
    edf.remove("cancelled")
    clock.advance(3.0)
    edf.expire()
    stats = edf.stats()
    assert (stats.pushed, stats.popped, stats.removed, stats.expired) == (4, 2, 1, 1)
    assert stats.pushed == stats.depth + stats.popped + stats.removed + stats.expired
    assert (stats.met, stats.missed, stats.dead_lettered) == (1, 1, 1)
    assert stats.hit_rate == 0.5 and stats.wait.count == 2
    assert math.isnan(DeadlineScheduler(ManualClock()).stats().hit_rate)


# -- bad input -------------------------------------------------------------------


def snapshot(edf: DeadlineScheduler, ids: Sequence[Hashable]) -> tuple[object, ...]:
    """What a caller can observe without changing anything."""
    held = [i for i in ids if i in edf]
    return (
        len(edf),
        edf.peek(),
        edf.next_wakeup(),
        {i: (edf.slack(i), edf.is_late(i)) for i in held},
    )


def populated() -> tuple[DeadlineScheduler, list[Hashable]]:
    clock = ManualClock(start=1.0)
    edf = DeadlineScheduler(clock, servers=2, on_miss="reject")
    for i in range(6):
        edf.push(Task(i, priority=i % 3, deadline=10.0 + i, cost=1.5, ttl=20.0))
    return edf, list(range(6))


@pytest.mark.parametrize("deadline", [math.nan, math.inf, -math.inf])
def test_a_nan_or_infinite_deadline_is_refused_by_task(deadline: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"Task\.deadline"):
        Task("t", deadline=deadline)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"servers": 0}, InvalidArgumentError, "servers must be >= 1"),
        ({"servers": -2}, InvalidArgumentError, "servers must be >= 1"),
        ({"servers": 1.5}, InvalidTypeError, "servers must be an int"),
        ({"servers": True}, InvalidTypeError, "servers must be an int"),
        ({"on_miss": "drop"}, UnknownPolicyError, "on_miss must be one of"),
        ({"on_miss": None}, UnknownPolicyError, "on_miss must be one of"),
        ({"aging_rate": -0.5}, InvalidArgumentError, "aging_rate must be >= 0"),
        ({"aging_rate": math.nan}, InvalidArgumentError, "aging_rate must be a finite"),
        ({"clock": object()}, InvalidTypeError, "clock must have a now"),
        ({"stats_window": 0}, InvalidArgumentError, "window must be >= 1"),
        ({"maxsize": 0}, InvalidArgumentError, "maxsize must be >= 1"),
        ({"maxsize": 2.5}, InvalidTypeError, "maxsize must be an int"),
        ({"overflow": "drop_oldest"}, UnknownPolicyError, "overflow must be one of"),
    ],
)
def test_bad_configuration_is_refused(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    options: dict[str, object] = {"clock": ManualClock(), **kwargs}
    with pytest.raises(error, match=match):
        DeadlineScheduler(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, InvalidArgumentError), (2.0, InvalidTypeError), ("3", InvalidTypeError)],
)
def test_setting_bad_servers_is_refused_and_changes_nothing(
    value: object, error: type[Exception]
) -> None:
    edf, ids = populated()
    before = snapshot(edf, ids)
    with pytest.raises(error, match="servers"):
        edf.servers = value  # type: ignore[assignment]
    assert edf.servers == 2 and snapshot(edf, ids) == before


@pytest.mark.parametrize(
    ("call", "error"),
    [
        # What every queue refuses is in the Queue contract (test_queue_contract.py).
        (lambda edf: edf.push(Task("new", deadline=0.5)), DeadlineError),
        (lambda edf: edf.push(Task("new", deadline=1.0)), DeadlineError),
        (lambda edf: edf.push(Task("new", deadline=2.0, cost=5.0)), DeadlineInfeasibleError),
        (lambda edf: edf.slack("missing"), UnknownTaskError),
        (lambda edf: edf.slack({}), InvalidTypeError),
        (lambda edf: edf.is_late("missing"), UnknownTaskError),
        (lambda edf: edf.feasible(3), InvalidTypeError),
        (lambda edf: edf.preemption_candidates("x", []), InvalidTypeError),
        (lambda edf: edf.preemption_candidates(Task("n"), 5), InvalidTypeError),
        (lambda edf: edf.preemption_candidates(Task("n"), [Task("r")]), InvalidTypeError),
        (lambda edf: edf.preemption_candidates(Task("n"), [("r", 0.0)]), InvalidTypeError),
        (
            lambda edf: edf.preemption_candidates(Task("n"), [(Task("r"), math.nan)]),
            InvalidArgumentError,
        ),
        (
            lambda edf: edf.preemption_candidates(Task("n"), [(Task("r"), 2.0)]),
            InvalidArgumentError,
        ),
        (
            lambda edf: edf.preemption_candidates(Task("n"), [(Task("r"), 0.0), (Task("r"), 0.5)]),
            DuplicateTaskError,
        ),
        (
            lambda edf: edf.preemption_candidates(Task("n"), [(Task("n"), 0.0)]),
            DuplicateTaskError,
        ),
    ],
)
def test_bad_input_raises_a_specific_error_and_changes_nothing(
    call: Callable[[DeadlineScheduler], object], error: type[Exception]
) -> None:
    edf, ids = populated()
    before = snapshot(edf, ids)
    with pytest.raises(error):
        call(edf)
    assert snapshot(edf, ids) == before
    assert "new" not in edf


# -- the ordered index -----------------------------------------------------------


@given(
    load=st.integers(min_value=2, max_value=6),
    ops=st.lists(
        st.tuples(st.sampled_from(["add", "pop", "remove", "probe"]), dyadic, dyadic),
        max_size=120,
    ),
)
def test_prefix_sum_sorted_list_agrees_with_a_sorted_python_list(
    load: int, ops: list[tuple[str, float, float]]
) -> None:
    index: PrefixSumSortedList[tuple[float, int]] = PrefixSumSortedList(load=load)
    model: list[tuple[tuple[float, int], float]] = []
    for seq, (op, key, cost) in enumerate(ops):
        item = (key, seq)
        if op == "add" or not model:
            assert index.add(item, cost) == sum(c for k, c in model if k < item)
            model.append((item, cost))
            model.sort()
        elif op == "pop":
            assert index.pop_first() == model.pop(0)[0]
        elif op == "remove":
            victim = model.pop(int(key * 4) % len(model))
            index.remove(victim[0])
        else:
            assert index.cost_before(item) == sum(c for k, c in model if k < item)
            assert list(index.costs_before(item)) == [c for k, c in model if k < item]
        assert list(index) == [k for k, _ in model]
        assert index.total() == sum(c for _, c in model)
        assert index.first() == (model[0][0] if model else None)
        assert all(len(block) <= 2 * load for block in index._items)


@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "pop", "remove"]),
            st.floats(0.0, 1.0),
            st.floats(0.0, 1e12) | st.floats(0.0, 1e-3) | st.sampled_from([0.1, 1 / 3]),
        ),
        max_size=300,
    )
)
def test_prefix_sums_stay_accurate_through_any_history(ops: list[tuple[str, float, float]]) -> None:
    # Huge and tiny costs coming and going: no drift beyond a relative 1e-10.
    index: PrefixSumSortedList[tuple[float, int]] = PrefixSumSortedList(load=4)
    model: list[tuple[tuple[float, int], float]] = []
    for seq, (op, key, cost) in enumerate(ops):
        item = (key, seq)
        if op == "add" or not model:
            exact = math.fsum(c for k, c in model if k < item)
            assert math.isclose(index.add(item, cost), exact, rel_tol=1e-10, abs_tol=0.0)
            model.append((item, cost))
            model.sort()
        elif op == "pop":
            assert index.pop_first() == model.pop(0)[0]
        else:
            index.remove(model.pop(int(key * len(model)) % len(model))[0])
        probe = (key, -1)
        exact = math.fsum(c for k, c in model if k < probe)
        assert math.isclose(index.cost_before(probe), exact, rel_tol=1e-10, abs_tol=0.0)
        assert math.isclose(index.total(), math.fsum(c for _, c in model), rel_tol=1e-10)


# -- the stateful machine --------------------------------------------------------


class DeadlineMachine(RuleBasedStateMachine):
    """Every operation against an exact reference model: nothing lost or duplicated."""

    held_ids = Bundle("held_ids")

    @initialize(
        servers=st.integers(min_value=1, max_value=3),
        on_miss=policies,
        rate=rates,
        maxsize=st.none() | st.integers(min_value=1, max_value=4),
        overflow=st.sampled_from(["reject", "drop_lowest"]),
        sla=positive_dyadic,
        sla_ttl=positive_dyadic,
        look_each_step=st.booleans(),
    )
    def start(
        self,
        servers: int,
        on_miss: str,
        rate: float,
        maxsize: int | None,
        overflow: str,
        sla: float,
        sla_ttl: float,
        look_each_step: bool,
    ) -> None:
        self.clock = ManualClock()
        # Asking every task's slack moves the back's tasks into the ordered front; runs
        # that do not ask after each step keep tasks in the back between steps.
        self.look_each_step = look_each_step
        # A host's usual limits, one deadline and one TTL for every task, fall due in
        # the order the tasks come: the scheduler keeps those apart from the others.
        self.sla = sla
        self.sla_ttl = sla_ttl
        self.on_miss = on_miss
        self.rate = rate
        self.servers = servers
        self.maxsize = maxsize
        self.overflow = overflow
        self.edf = DeadlineScheduler(
            self.clock,
            servers=servers,
            on_miss=on_miss,  # type: ignore[arg-type]
            aging_rate=rate,
            maxsize=maxsize,
            overflow=overflow,  # type: ignore[arg-type]
        )
        # id -> (order key, due or None, task, flagged late: at admission or found
        # predicted to miss by a later push)
        self.model: dict[int, tuple[tuple[object, ...], Fraction | None, Task, bool]] = {}
        self.seq = 0
        self.next_id = 0
        self.accepted: set[int] = set()
        self.left: list[int] = []  # every id handed out, in any way

    # the model ------------------------------------------------------------

    def now(self) -> Fraction:
        return Fraction(self.clock.now())

    def live(self) -> list[tuple[tuple[object, ...], Task]]:
        now = self.now()
        return sorted(
            (key, task) for key, due, task, _ in self.model.values() if due is None or due > now
        )

    def finish(self, key: tuple[object, ...], task: Task) -> Fraction:
        ahead = [other.cost for other_key, other in self.live() if other_key < key]
        return simulated_finish(ahead, task.cost, self.clock.now(), self.servers)

    # rules ----------------------------------------------------------------

    def finishes(self, entries: list[tuple[tuple[object, ...], Task]]) -> dict[object, Fraction]:
        """Each task's finish in the feasibility simulation, entries in queue order."""
        free = [Fraction(self.clock.now())] * self.servers
        out = {}
        for _, task in sorted(entries, key=lambda pair: pair[0]):
            earliest = free.index(min(free))
            out[task.id] = free[earliest] + Fraction(task.cost)
            free[earliest] = out[task.id]
        return out

    def promises(self, exclude: object) -> list[Task]:
        """Held tasks admission protects: with a deadline, not late, not about to leave."""
        now = self.now()
        return [
            task
            for _, task in self.live()
            if task.deadline is not None
            and not self.model[task.id][3]  # type: ignore[index]
            and Fraction(task.deadline) > now
            and task.id != exclude
        ]

    @rule(
        target=held_ids,
        priority=priorities,
        relative_deadline=st.none() | positive_dyadic,
        cost=dyadic,
        ttl=st.none() | positive_dyadic,
        back=st.none() | dyadic,
        ask_first=st.booleans(),
        usual_limits=st.booleans(),
        far=st.booleans(),
    )
    def push(
        self,
        priority: int,
        relative_deadline: float | None,
        cost: float,
        ttl: float | None,
        back: float | None,
        ask_first: bool,
        usual_limits: bool,
        far: bool,
    ) -> int:
        now = self.clock.now()
        if far and relative_deadline is not None:  # far behind the work: in the back
            relative_deadline *= 64
        if usual_limits:  # due times in push order
            relative_deadline = None if relative_deadline is None else self.sla
            ttl = None if ttl is None else self.sla_ttl
            back = None
        deadline = None if relative_deadline is None else now + relative_deadline
        task_id = self.next_id
        task = Task(task_id, priority=priority, deadline=deadline, cost=cost, ttl=ttl)
        self.next_id += 1
        enqueued = None if back is None else max(0.0, now - back)
        t = self.now() if enqueued is None else Fraction(enqueued)
        key = order_key(task, t, self.seq, self.rate)
        feasible = deadline is None or self.finish(key, task) <= deadline
        if ask_first:  # else push alone must see what expired meanwhile
            assert self.edf.feasible(task) == feasible
        # Full: refuse, or hand back the least urgent live task (maybe this one).
        victim: Task | None = None
        if self.maxsize is not None and len(self.model) >= self.maxsize:
            if self.overflow == "reject":
                with pytest.raises(QueueFullError):
                    self.edf.push(task, enqueued_at=enqueued)
                return task_id
            live = self.live()
            if not live or key > live[-1][0]:
                assert self.edf.push(task, enqueued_at=enqueued) == Eviction(task, Reason.EVICTED)
                return task_id
            victim = live[-1][1]
        # The exact rule: held tasks already predicted to miss become late; the push is
        # on time if it is feasible and every remaining promise stays feasible with it.
        exclude = None if victim is None else victim.id
        promised = self.promises(exclude)
        before = self.finishes(self.live())
        doomed = {p.id for p in promised if before[p.id] > Fraction(p.deadline)}  # type: ignore[arg-type]
        after = self.finishes([*self.live(), (key, task)])
        on_time = feasible and all(
            after[p.id] <= Fraction(p.deadline)  # type: ignore[arg-type]
            for p in promised
            if p.id not in doomed
        )
        if self.servers > 1 and not on_time:
            pass  # the bound refuses at least what the exact rule refuses: no more to say
        refused = self.on_miss != "run_late"
        try:
            result = self.edf.push(task, enqueued_at=enqueued)
        except DeadlineInfeasibleError:
            assert refused and self.on_miss == "reject"
            assert self.servers > 1 or not on_time
            self.check_unchanged_flags()
            return task_id
        if isinstance(result, Eviction) and result.reason is Reason.DEADLINE_INFEASIBLE:
            assert self.on_miss == "dead_letter" and result.task is task
            assert self.servers > 1 or not on_time
            self.check_unchanged_flags()
            return task_id
        judged_on_time = not (task.deadline is not None and self.edf.is_late(task.id))
        judged_on_time = judged_on_time and task.id not in self.late_now()
        if self.servers == 1:
            assert judged_on_time == on_time or task.deadline is None
        elif judged_on_time and task.deadline is not None:
            assert on_time, "several servers: admitted on time only when truly on time"
        if victim is None:
            assert result is None
        else:
            assert result == Eviction(victim, Reason.EVICTED)
            del self.model[victim.id]  # type: ignore[arg-type]
            self.left.append(victim.id)  # type: ignore[arg-type]
        self.seq += 1
        due = None if ttl is None else t + Fraction(ttl)
        if deadline is not None and self.on_miss != "run_late":
            due = Fraction(deadline) if due is None else min(due, Fraction(deadline))
        # Lateness: exact on one server; with several, what the scheduler says, which
        # must be sound: a task marked late now was truly predicted to miss.
        self.model[task_id] = (key, due, task, False)
        if self.servers == 1:
            for other in doomed:
                self.flag(other)
            if not on_time and task.deadline is not None:
                self.flag(task_id)
        else:
            for _, other in self.live():
                newly_late = (
                    other.id != task_id
                    and other.deadline is not None
                    and self.edf.is_late(other.id)
                    and not self.model[other.id][3]  # type: ignore[index]
                )
                if newly_late:
                    assert other.id in doomed or Fraction(other.deadline) <= self.now()  # type: ignore[arg-type]
                    self.flag(other.id)
            if task.deadline is not None and self.edf.is_late(task_id):
                self.flag(task_id)
        self.accepted.add(task_id)
        return task_id

    def flag(self, task_id: object) -> None:
        key, due, task, _ = self.model[task_id]  # type: ignore[index]
        self.model[task_id] = (key, due, task, True)  # type: ignore[index]

    def late_now(self) -> set[object]:
        return {task_id for task_id, row in self.model.items() if row[3]}

    def check_unchanged_flags(self) -> None:
        """A refused push leaves every lateness as it was."""
        now = self.now()
        for _, task in self.live():
            flagged = self.model[task.id][3]  # type: ignore[index]
            late = flagged or (task.deadline is not None and Fraction(task.deadline) <= now)
            assert self.edf.is_late(task.id) == late

    @rule(data=st.data())
    def push_a_duplicate(self, data: st.DataObject) -> None:
        if not self.model:
            return
        task_id = data.draw(st.sampled_from(sorted(self.model)))
        with pytest.raises(DuplicateTaskError):
            self.edf.push(Task(task_id))

    @rule(modulus=st.none() | st.integers(min_value=2, max_value=4))
    def pop(self, modulus: int | None) -> None:
        def where(task: Task) -> bool:
            return modulus is None or task.id % modulus == 0  # type: ignore[operator]

        candidates = [task for _, task in self.live() if where(task)]
        expected = candidates[0] if candidates else None
        peeked = self.edf.peek(None if modulus is None else where)
        popped = self.edf.pop(None if modulus is None else where)
        assert peeked is expected and popped is expected
        if expected is not None:
            del self.model[expected.id]  # type: ignore[arg-type]
            self.left.append(expected.id)  # type: ignore[arg-type]

    @rule(modulus=st.none() | st.integers(min_value=2, max_value=4))
    def pop_then_unpop(self, modulus: int | None) -> None:
        # Put back at once (a composition that could not place it): as if never popped,
        # whether it came from the top or from deep inside the back's heap.
        def where(task: Task) -> bool:
            return modulus is None or task.id % modulus == 0  # type: ignore[operator]

        candidates = [task for _, task in self.live() if where(task)]
        popped = self.edf.pop(None if modulus is None else where)
        assert popped is (candidates[0] if candidates else None)
        if popped is not None:
            self.edf.unpop(popped)
            # Asking its slack moves the back into the ordered front: the put-back task
            # must be there once.
            key = next(key for key, task in self.live() if task is popped)
            self.check_slack(key, popped)

    @rule(task_id=consumes(held_ids))
    def remove(self, task_id: int) -> None:
        if task_id in self.model:
            assert self.edf.remove(task_id).id == task_id
            del self.model[task_id]
            self.left.append(task_id)
        else:
            with pytest.raises(UnknownTaskError):
                self.edf.remove(task_id)

    @rule(dt=dyadic)
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule()
    def expire(self) -> None:
        now = self.now()
        due = sorted(
            (d, key[3], task_id)
            for task_id, (key, d, _, _) in self.model.items()
            if d is not None and d <= now
        )
        evictions = self.edf.expire_with_reasons()
        assert [e.task.id for e in evictions] == [task_id for _, _, task_id in due]
        for eviction in evictions:
            task = eviction.task
            due_at = self.model[task.id][1]  # type: ignore[index]
            # The deadline is a timer only off run_late; it wins a tie with the TTL.
            missed = (
                self.on_miss != "run_late"
                and task.deadline is not None
                and Fraction(task.deadline) == due_at
            )
            assert eviction.reason == (Reason.DEADLINE_MISSED if missed else Reason.TTL_EXPIRED)
            del self.model[task.id]  # type: ignore[arg-type]
            self.left.append(task.id)  # type: ignore[arg-type]

    @rule()
    def restore_a_twin(self) -> None:
        # A twin restored from the snapshot holds the same, expires the same, and
        # writes the same snapshot, late marks in the same order.
        snapshot = self.edf.snapshot()
        twin = DeadlineScheduler(
            ManualClock(self.clock.now()),
            servers=self.servers,
            on_miss=self.on_miss,  # type: ignore[arg-type]
            aging_rate=self.rate,
            maxsize=self.maxsize,
            overflow=self.overflow,  # type: ignore[arg-type]
        )
        twin.load_snapshot(snapshot)
        assert twin.snapshot() == snapshot
        assert twin.next_wakeup() == self.edf.next_wakeup()
        now = self.now()
        due = sorted(
            (d, key[3], task_id)
            for task_id, (key, d, _, _) in self.model.items()
            if d is not None and d <= now
        )
        assert [e.task.id for e in twin.expire_with_reasons()] == [i for _, _, i in due]

    # invariants -----------------------------------------------------------

    @invariant()
    def nothing_lost_or_duplicated(self) -> None:
        assert len(self.edf) == len(self.model)
        assert len(self.left) == len(set(self.left))
        assert set(self.left) | set(self.model) == self.accepted
        assert not set(self.left) & set(self.model)
        for task_id in self.model:
            assert task_id in self.edf
        for task_id in self.left[-5:]:
            assert task_id not in self.edf
        stats = self.edf.stats()
        assert stats.pushed == len(self.accepted)
        assert stats.pushed == (
            stats.depth + stats.popped + stats.removed + stats.expired + stats.evicted
        )
        if self.maxsize is not None:
            assert len(self.edf) <= self.maxsize

    def check_slack(self, key: tuple[object, ...], task: Task) -> None:
        if task.deadline is None:
            assert self.edf.slack(task.id) == math.inf
            return
        expected = Fraction(task.deadline) - self.finish(key, task)
        assert self.edf.slack(task.id) == expected
        flagged = self.model[task.id][3]  # type: ignore[index]
        assert self.edf.is_late(task.id) == (flagged or task.deadline <= self.now())

    @rule(data=st.data())
    def ask_one_slack(self, data: st.DataObject) -> None:
        live = self.live()
        if live:
            self.check_slack(*data.draw(st.sampled_from(live)))

    @invariant()
    def slack_and_lateness_match_the_simulation(self) -> None:
        if self.look_each_step:
            for key, task in self.live():
                self.check_slack(key, task)

    @invariant()
    def next_wakeup_is_the_earliest_due(self) -> None:
        dues = [d for _, d, _, _ in self.model.values() if d is not None]
        wakeup = self.edf.next_wakeup()
        if dues and min(dues) <= self.now():
            assert wakeup is not None and wakeup <= self.now(), "expired tasks wait: now"
        else:
            assert wakeup == (float(min(dues)) if dues else None)


TestDeadlineMachine = DeadlineMachine.TestCase


# -- the bound ----------------------------------------------------------------------------


def test_a_full_scheduler_refuses_with_queue_full_and_changes_nothing() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, maxsize=2)
    edf.push(Task("a", deadline=10.0))
    edf.push(Task("b"))
    with pytest.raises(QueueFullError, match="full \\(2 tasks\\)"):
        edf.push(Task("c", deadline=5.0))
    assert "c" not in edf and len(edf) == 2
    assert edf.stats().overflowed == 1
    assert (edf.maxsize, edf.overflow) == (2, "reject")


def test_drop_lowest_hands_back_the_least_urgent_task() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, maxsize=3, overflow="drop_lowest")
    edf.push(Task("critical-undated", priority=Priority.CRITICAL))
    edf.push(Task("soon", deadline=5.0))
    undated = Task("undated")  # after every deadlined task
    edf.push(undated)
    assert edf.push(Task("later", deadline=9.0)) == Eviction(undated, Reason.EVICTED)
    last = Task("last", deadline=20.0)
    assert edf.push(last) == Eviction(last, Reason.EVICTED)
    assert [edf.pop().id for _ in range(3)] == ["critical-undated", "soon", "later"]  # type: ignore[union-attr]
    stats = edf.stats()
    assert (stats.evicted, stats.overflowed) == (1, 1)


def test_an_infeasible_push_into_a_full_scheduler_evicts_nothing() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, maxsize=2, overflow="drop_lowest", on_miss="dead_letter")
    edf.push(Task("a", deadline=4.0, cost=3.0))
    edf.push(Task("b"))
    late = Task("c", deadline=5.0, cost=3.0)  # after "a": 3 + 3 > 5
    assert edf.push(late) == Eviction(late, Reason.DEADLINE_INFEASIBLE)
    assert "b" in edf and len(edf) == 2 and edf.stats().evicted == 0


def test_expired_tasks_count_toward_the_bound_but_are_never_evicted() -> None:
    clock = ManualClock()
    edf = DeadlineScheduler(clock, maxsize=2, overflow="drop_lowest")
    edf.push(Task("short", ttl=1.0))
    keeps = Task("keeps", deadline=50.0)
    edf.push(keeps)
    clock.advance(2.0)  # "short" expired, held until expire()
    new = Task("new", deadline=60.0)
    assert edf.push(new) == Eviction(new, Reason.EVICTED)
    assert edf.push(Task("urgent", deadline=10.0)) == Eviction(keeps, Reason.EVICTED)
    assert [t.id for t in edf.expire()] == ["short"]


def model_margins(model: list[list[Any]]) -> list[tuple[tuple[float, int], float]]:
    """Each ``[item, cost, bound]`` row's margin: its bound less the cost through it."""
    through = 0.0
    out = []
    for item, cost, bound in model:
        through += cost
        out.append((item, bound - through))
    return out


def apply_margin_op(
    index: PrefixSumSortedList[tuple[float, int]],
    model: list[list[Any]],
    seq: int,
    op: str,
    key: float,
    cost: float,
    bound: float | None,
) -> None:
    """One change to the list and to its model (rows sorted by item); other ops change
    nothing."""
    real_bound = math.inf if bound is None else bound * 8
    if op == "add" or not model:
        item = (key, seq)
        index.add(item, cost, real_bound)
        model.append([item, cost, real_bound])
        model.sort(key=lambda row: row[0])
    elif op == "pop":
        assert index.pop_first() == model.pop(0)[0]
    elif op == "remove":
        index.remove(model.pop(int(key * 4) % len(model))[0])
    elif op == "bound":
        row = model[int(key * 4) % len(model)]
        row[2] = real_bound
        index.set_bound(row[0], real_bound)


@given(
    load=st.integers(min_value=2, max_value=5),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "pop", "remove", "bound", "query"]),
            dyadic,
            dyadic,
            st.none() | dyadic,
        ),
        max_size=150,
    ),
)
def test_margins_agree_with_a_sorted_python_list(
    load: int, ops: list[tuple[str, float, float, float | None]]
) -> None:
    """margin, margin_after and first_margin_below against brute force, through any history."""
    index: PrefixSumSortedList[tuple[float, int]] = PrefixSumSortedList(load=load)
    model: list[list[Any]] = []  # [item, cost, bound], sorted by item

    def margins() -> list[tuple[tuple[float, int], float]]:
        return model_margins(model)

    for seq, (op, key, cost, bound) in enumerate(ops):
        apply_margin_op(index, model, seq, op, key, cost, bound)
        all_margins = margins()
        assert index.margin() == min((m for _, m in all_margins), default=math.inf)
        probe = (key, -1 if op == "query" else seq)
        after = [m for i, m in all_margins if i > probe]
        assert index.margin_after(probe) == min(after, default=math.inf)
        threshold = cost * 4 - 20
        below = [i for i, m in all_margins if m < threshold]
        assert index.first_margin_below(threshold) == (below[0] if below else None)
        if op == "query":  # unbind everything below: exactly those, and no margin below after
            assert index.unbind_margins_below(threshold) == below
            for row in model:
                if row[0] in below:
                    row[2] = math.inf
            assert index.margin() == min((m for _, m in margins()), default=math.inf)


@given(
    load=st.integers(min_value=2, max_value=5),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "pop", "remove", "bound", "probe", "query"]),
            dyadic,
            dyadic,
            st.none() | dyadic,
        ),
        max_size=150,
    ),
)
def test_lower_bounds_of_moved_blocks_never_overstate_a_margin(
    load: int, ops: list[tuple[str, float, float, float | None]]
) -> None:
    """Blocks a change moved keep a lower bound until asked: margin_at_least never says more
    than the least margin, and clears a threshold whenever the least margin does;
    last_bound and unbind_margins_below stay exact, through any history."""
    index: PrefixSumSortedList[tuple[float, int]] = PrefixSumSortedList(load=load)
    model: list[list[Any]] = []  # [item, cost, bound], sorted by item
    for seq, (op, key, cost, bound) in enumerate(ops):
        apply_margin_op(index, model, seq, op, key, cost, bound)
        least = min((m for _, m in model_margins(model)), default=math.inf)
        threshold = cost * 4 - 20
        at_least = index.margin_at_least(threshold)
        assert at_least <= least
        assert least < threshold or at_least >= threshold
        if op == "probe":  # the exact answers, which sum every moved block afresh
            bounded = [row[0] for row in model if row[2] != math.inf]
            assert index.last_bound() == (bounded[-1] if bounded else None)
            assert index.margin() == least
        elif op == "query":  # from the lower bounds: exactly the items below, all unbound
            below = [i for i, m in model_margins(model) if m < threshold]
            assert index.unbind_margins_below(threshold) == below
            for row in model:
                if row[0] in below:
                    row[2] = math.inf
            assert index.margin_at_least(threshold) >= threshold


@given(
    load=st.integers(min_value=2, max_value=5),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "add", "pop", "remove", "bound", "query"]),
            st.integers(min_value=0, max_value=12),
            dyadic,
            st.booleans(),
        ),
        max_size=150,
    ),
)
def test_a_lean_list_answers_as_one_that_keeps_its_costs_and_bounds(
    load: int, ops: list[tuple[str, int, float, bool]]
) -> None:
    """A lean list (costs and bounds read from the items, the unbound ones by ident) and a
    list that keeps them, fed the same items: every answer the same float, through any
    history (equal keys over blocks, removals, unbinding, bounds set back)."""
    key, cost, ident = itemgetter(0), itemgetter(1), itemgetter(2)
    lean: PrefixSumSortedList[tuple[float, float, int]] = PrefixSumSortedList(
        load, key=key, tie=ident, cost=cost, ident=ident
    )
    kept: PrefixSumSortedList[tuple[float, float, int]] = PrefixSumSortedList(
        load, key=key, tie=ident
    )
    held: list[tuple[float, float, int]] = []
    for seq, (op, pick, amount, unbound) in enumerate(ops):
        if op == "add" or not held:
            item = (pick / 2, amount, seq)
            bound = math.inf if unbound else item[0]
            before = lean.add(item, amount, bound)
            assert math.isnan(before) or before == kept.add(item, amount, bound)
            if math.isnan(before):  # not summed: it went before others in its block
                kept.add(item, amount, bound)
                assert item is not lean.last()
            held.append(item)
        elif op in ("pop", "remove"):
            item = lean.pop_first() if op == "pop" else held[pick % len(held)]
            if op == "pop":
                assert kept.pop_first() is item
            else:
                lean.remove(item)
                kept.remove(item)
            held.remove(item)
            lean.unbound.discard(item[2])  # its owner takes it out as it leaves
        elif op == "bound":
            item = held[pick % len(held)]
            bound = math.inf if unbound else item[0]
            lean.set_bound(item, bound)
            kept.set_bound(item, bound)
        else:  # (margin_at_least answers from lower bounds, which may differ: not compared)
            threshold = amount - 4
            assert lean.unbind_margins_below(threshold) == kept.unbind_margins_below(threshold)
        probe = pick / 2
        threshold = amount - 4
        assert list(lean) == list(kept)
        assert list(lean.costs()) == list(kept.costs())
        assert list(lean.costs_before(probe)) == list(kept.costs_before(probe))
        assert lean.cost_before(probe) == kept.cost_before(probe)
        assert lean.total() == kept.total()
        assert lean.margin() == kept.margin()
        least = lean.margin()
        assert lean.margin_at_least(threshold) <= least
        assert least < threshold or lean.margin_at_least(threshold) >= threshold
        assert lean.margin_after(probe) == kept.margin_after(probe)
        assert lean.first_margin_below(threshold) is kept.first_margin_below(threshold)
        assert lean.last_bound() is kept.last_bound()
    lean.add(item := (1.0, 1.0, -1), 1.0)
    with pytest.raises(ValueError):  # a lean bound is the item's key or inf
        lean.set_bound(item, 5.0)
    with pytest.raises(TypeError):
        lean.set_bounds(lambda item: item[0])


@pytest.mark.parametrize("servers", [1, 3])
@pytest.mark.parametrize("seed", range(4))
def test_an_overloaded_scheduler_keeps_its_word_over_hundreds_of_pushes(
    servers: int, seed: int
) -> None:
    """Five times the work the deadlines allow, hundreds of tasks (several blocks of the
    margin tree, the kept floor and the protect edge all at work), with pops and time
    passing: after every push each late flag is the brute-force model's on one server,
    and sound on several (a task flagged late truly was predicted to miss; one admitted
    on time truly is)."""
    rng = random.Random(seed)
    clock = ManualClock()
    edf = DeadlineScheduler(clock, servers=servers)
    held: list[tuple[object, Task]] = []
    late: set[object] = set()
    for seq in range(400):
        if rng.random() < 0.1 and held:
            popped = edf.pop()
            held.sort(key=lambda pair: pair[0])  # type: ignore[arg-type, return-value]
            assert popped is held.pop(0)[1]
            late.discard(popped.id)  # type: ignore[union-attr]
        if rng.random() < 0.05:
            clock.advance(rng.randint(1, 4) / 8)
        now = clock.now()
        task = Task(
            seq,
            priority=rng.randint(1, 4),
            deadline=now + rng.randint(1, 128) / 8,
            cost=rng.randint(1, 8) / 16 * servers,
        )
        key = order_key(task, Fraction(now), seq, 0.0)
        before = simulated_finishes(held, now, servers)
        after = simulated_finishes([*held, (key, task)], now, servers)
        promised = [t for _, t in held if t.deadline is not None and t.id not in late]
        doomed = {t.id for t in promised if before[t.id] > t.deadline}  # type: ignore[operator]
        on_time = after[task.id] <= task.deadline and all(
            after[t.id] <= t.deadline  # type: ignore[operator]
            for t in promised
            if t.id not in doomed
        )
        assert edf.push(task) is None  # run_late keeps every task
        flagged = {t.id for t in promised if edf.is_late(t.id)}
        if servers == 1:
            assert flagged == doomed
            assert edf.is_late(task.id) == (not on_time)
        else:
            assert flagged <= doomed
            assert edf.is_late(task.id) or on_time
        late |= flagged
        if edf.is_late(task.id):
            late.add(task.id)
        held.append((key, task))
    assert len(edf) == len(held)
