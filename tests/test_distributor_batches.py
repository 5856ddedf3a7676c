"""Batches in dispatch: a Distributor with a BatchOptimizer places tasks of one group
together on one worker, under one lease, and still accounts for each task on its own."""

from __future__ import annotations

from collections.abc import Hashable

import pytest
from distributor_support import Recorded, build
from hostile import assert_refused
from hypothesis import given, settings
from hypothesis import strategies as st

from taskdist import (
    AIMDSizing,
    BatchOptimizer,
    Distributor,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    RateGate,
    RateLimiter,
    RetryPolicy,
    Task,
    TaskState,
    Worker,
)


def batched(
    *workers: Worker, max_size: int = 4, **options: object
) -> tuple[Recorded, BatchOptimizer]:
    clock = ManualClock()
    batcher_options = {
        k: options.pop(k) for k in ("max_cost", "max_resources", "key", "sizing") if k in options
    }
    batcher = BatchOptimizer(clock, max_size=max_size, **batcher_options)  # type: ignore[arg-type]
    run = build(*workers, clock=clock, batcher=batcher, **options)
    return run, batcher


def by_batch(assignments: list) -> dict[Hashable, list[Hashable]]:  # type: ignore[type-arg]
    groups: dict[Hashable, list[Hashable]] = {}
    for a in assignments:
        groups.setdefault(a.batch, []).append(a.task.id)
    return groups


def test_tasks_of_one_group_go_together_to_one_worker_up_to_the_batch_size() -> None:
    run, _ = batched(Worker("w", capacity={"slots": 10}), max_size=3)
    for i in range(5):
        run.d.submit(Task(f"e{i}", group="embed"))
    made = run.d.dispatch()
    groups = by_batch(made)
    assert list(groups.values()) == [["e0", "e1", "e2"], ["e3", "e4"]]
    assert all(a.worker_id == "w" for a in made)
    assert len({a.lease_expiry for a in made}) == 1


def test_tasks_without_a_group_go_alone_and_groups_never_mix() -> None:
    run, _ = batched(Worker("w", capacity={"slots": 10}))
    run.d.submit(Task("a1", group="a"))
    run.d.submit(Task("solo"))
    run.d.submit(Task("b1", group="b"))
    run.d.submit(Task("a2", group="a"))
    made = run.d.dispatch()
    assert [a.batch is None for a in made if a.task.id == "solo"] == [True]
    groups = {k: v for k, v in by_batch(made).items() if k is not None}
    assert sorted(groups.values()) == [["a1", "a2"], ["b1"]]


def test_a_batch_takes_no_more_than_its_worker_has_room_for() -> None:
    run, _ = batched(Worker("w1", capacity={"slots": 2}), Worker("w2", capacity={"slots": 2}))
    for i in range(6):
        run.d.submit(Task(f"t{i}", group="g"))
    made = run.d.dispatch()
    groups = by_batch(made)
    assert [len(ids) for ids in groups.values()] == [2, 2]
    for ids in groups.values():
        assert len({run.d.assignment(i).worker_id for i in ids}) == 1
    assert set(run.states(["t4", "t5"]).values()) <= {TaskState.QUEUED, TaskState.PARKED}


def test_a_batch_respects_the_batcher_cost_bound_and_the_rest_forms_the_next() -> None:
    run, _ = batched(Worker("w", capacity={"slots": 10}), max_size=10, max_cost=5.0)
    for i, cost in enumerate([2.0, 2.0, 2.0, 1.0]):
        run.d.submit(Task(f"t{i}", group="g", cost=cost))
    made = run.d.dispatch()
    assert list(by_batch(made).values()) == [["t0", "t1"], ["t2", "t3"]]


def test_a_task_with_a_near_deadline_does_not_close_a_batch_in_dispatch() -> None:
    # The batch goes out now anyway: a due time that has come (a deadline within the
    # batcher's margin) closed it after its first task, so six tasks went as four batches.
    clock = ManualClock()
    d = Distributor(clock, batcher=BatchOptimizer(clock, max_size=8, max_wait=20.0))
    d.add_worker(Worker("gpu", capacity={"slots": 16}))
    for i in range(6):
        d.submit(Task(f"text-{i}", group="embed", deadline=60.0 if i % 2 else 10.0))
    placed = d.dispatch()
    assert len({a.batch for a in placed}) == 1 and len(placed) == 6
    # Outside a dispatch, the batcher still releases such a batch at once.
    batcher = BatchOptimizer(clock, max_size=8, max_wait=20.0)
    released = batcher.add(Task("alone", group="embed", deadline=10.0))
    assert released is not None and [t.id for t in released.tasks] == ["alone"]


def test_a_batch_passes_the_gates_task_by_task() -> None:
    clock = ManualClock()
    limiter = RateLimiter(3, per=60.0, burst=3, clock=clock)
    batcher = BatchOptimizer(clock, max_size=10)
    run = build(
        Worker("w", capacity={"slots": 10}),
        clock=clock,
        batcher=batcher,
        gates=[RateGate(limiter, "calls", default=1.0)],
    )
    for i in range(5):
        run.d.submit(Task(f"t{i}", group="g"))
    made = run.d.dispatch()
    assert [a.task.id for a in made] == ["t0", "t1", "t2"]
    assert len({a.batch for a in made}) == 1


def test_dispatch_limit_counts_every_task_of_a_batch() -> None:
    run, _ = batched(Worker("w", capacity={"slots": 10}), max_size=8)
    for i in range(6):
        run.d.submit(Task(f"t{i}", group="g"))
    assert [a.task.id for a in run.d.dispatch(limit=4)] == ["t0", "t1", "t2", "t3"]


def test_a_heartbeat_of_one_task_renews_the_whole_batch_lease() -> None:
    run, _ = batched(Worker("w", capacity={"slots": 10}), lease=10.0)
    for i in range(3):
        run.d.submit(Task(f"t{i}", group="g"))
    run.d.dispatch()
    run.clock.advance(8.0)
    assert run.d.heartbeat("t1") == 18.0
    assert {a.lease_expiry for a in run.d.leases()} == {18.0}
    run.clock.advance(5.0)
    run.d.tick()
    assert run.states(["t0", "t1", "t2"]) == dict.fromkeys(["t0", "t1", "t2"], TaskState.LEASED)


def test_a_partial_failure_retries_only_the_failed_task() -> None:
    retry = RetryPolicy(max_attempts=3, base=1.0, cap=10.0, jitter="none")
    run, _ = batched(Worker("w", capacity={"slots": 10}), retry=retry)
    for i in range(3):
        run.d.submit(Task(f"t{i}", group="g"))
    run.d.dispatch()
    run.d.complete("t0")
    run.d.fail("t1", error="boom")
    run.d.complete("t2")
    assert run.states(["t0", "t1", "t2"]) == {
        "t0": TaskState.COMPLETED,
        "t1": TaskState.RETRYING,
        "t2": TaskState.COMPLETED,
    }
    run.clock.advance(1.0)
    again = run.d.dispatch()
    assert [(a.task.id, a.attempt) for a in again] == [("t1", 2)]


def test_an_expired_batch_lease_returns_every_task_of_it() -> None:
    run, _ = batched(Worker("w", capacity={"slots": 10}), lease=5.0)
    for i in range(3):
        run.d.submit(Task(f"t{i}", group="g"))
    first = run.d.dispatch()
    run.clock.advance(5.0)
    again = run.d.dispatch()
    assert sorted(a.task.id for a in again) == ["t0", "t1", "t2"]
    assert {a.attempt for a in again} == {2}
    assert again[0].batch != first[0].batch
    assert len({a.batch for a in again}) == 1


def test_the_sizing_rule_hears_a_batch_when_every_task_of_it_completed() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(
        clock,
        max_size=8,
        sizing=AIMDSizing(target_latency=1.0, increase=1, decrease=0.5, initial_size=4),
    )
    run = build(Worker("w", capacity={"slots": 20}), clock=clock, batcher=batcher)
    before = batcher.target_size("g")
    for i in range(before):
        run.d.submit(Task(f"t{i}", group="g"))
    made = run.d.dispatch()
    assert len(made) == before
    clock.advance(5.0)  # far over the latency target: the target size falls
    for a in made[:-1]:
        run.d.complete(a.task.id)
    assert batcher.target_size("g") == before
    run.d.complete(made[-1].task.id)
    assert batcher.target_size("g") < before


def test_explain_names_the_batch() -> None:
    run, _ = batched(Worker("w", capacity={"slots": 10}))
    run.d.submit(Task("t0", group="g"))
    run.d.submit(Task("t1", group="g"))
    made = run.d.dispatch()
    assert f"in batch {made[0].batch} of 2" in run.d.explain("t1")


def test_a_key_function_that_raises_mid_batch_takes_every_placement_back() -> None:
    calls = {"n": 0}

    def key(task: Task) -> Hashable:
        calls["n"] += 1
        if task.id == "t2" and calls["n"] > 3:
            raise RuntimeError("key failed")
        return task.group

    run, batcher = batched(Worker("w", capacity={"slots": 10}), key=key)
    for i in range(3):
        run.d.submit(Task(f"t{i}", group="g"))
    with pytest.raises(RuntimeError):
        run.d.dispatch()
    assert run.states(["t0", "t1", "t2"]) == dict.fromkeys(["t0", "t1", "t2"], TaskState.QUEUED)
    assert run.d.leases() == [] and len(batcher) == 0
    assert run.d.tracker.worker("w").in_flight == 0


def test_a_key_that_changes_its_mind_leaves_the_group_counts_true() -> None:
    # The batcher's key is asked at submit; a task leaves the counts of the group it
    # was counted in, whatever the key says by then.
    groups = {"x": "b", "a1": "a", "a2": "a"}
    run, _ = batched(Worker("w", capacity={"slots": 10}), key=lambda task: groups[task.id])
    run.d.submit(Task("x"))
    assert run.dispatch_ids() == ["x"]
    run.d.submit(Task("a1"))
    run.d.submit(Task("a2"))
    groups["x"] = "a"  # x now says it is of a1's group
    run.d.complete("x")
    made = run.d.dispatch()
    assert list(by_batch(made).values()) == [["a1", "a2"]]
    for task_id in ("a1", "a2"):
        run.d.complete(task_id)
    assert not run.d._group_live and not run.d._group_leased and not run.d._batch_group


def test_a_batcher_must_be_an_empty_batch_optimizer() -> None:
    clock = ManualClock()
    busy = BatchOptimizer(clock)
    busy.add(Task("x", group="g"))
    with pytest.raises(InvalidArgumentError, match="must be empty"):
        Distributor(clock, batcher=busy)
    with pytest.raises(InvalidTypeError, match="BatchOptimizer"):
        Distributor(clock, batcher=object())  # type: ignore[arg-type]


def test_a_refused_dispatch_limit_leaves_batches_unformed() -> None:
    run, batcher = batched(Worker("w", capacity={"slots": 10}))
    run.d.submit(Task("t0", group="g"))
    assert_refused(
        lambda: batched(Worker("w", capacity={"slots": 10}))[0].d,
        lambda d: d.dispatch(limit=-1),
        InvalidArgumentError,
        lambda d: (d.stats().by_state, [a.task.id for a in d.leases()]),
    )
    assert len(batcher) == 0


@settings(max_examples=60, deadline=None)
@given(
    tasks=st.lists(
        st.tuples(st.sampled_from(["a", "b", None]), st.integers(1, 3)), min_size=1, max_size=30
    ),
    slots=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    max_size=st.integers(1, 5),
    max_cost=st.sampled_from([None, 4.0]),
    outcomes=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_batches_never_mix_groups_overfill_or_lose_a_task(
    tasks: list[tuple[str | None, int]],
    slots: list[int],
    max_size: int,
    max_cost: float | None,
    outcomes: list[bool],
) -> None:
    workers = [Worker(f"w{i}", capacity={"slots": s}) for i, s in enumerate(slots)]
    retry = RetryPolicy(max_attempts=2, base=1.0, cap=1.0, jitter="none")
    run, batcher = batched(*workers, max_size=max_size, max_cost=max_cost, retry=retry)
    capacity = {f"w{i}": s for i, s in enumerate(slots)}
    ids = []
    for i, (group, cost) in enumerate(tasks):
        run.d.submit(Task(f"t{i}", group=group, cost=float(cost)))
        ids.append(f"t{i}")
    flips = iter(outcomes * 10)
    for _ in range(200):
        made = run.d.dispatch()
        for batch_id, members in by_batch(made).items():
            if batch_id is None:
                continue
            picked = [a for a in made if a.batch == batch_id]
            assert len({a.worker_id for a in picked}) == 1
            assert len({a.task.group for a in picked}) == 1
            assert picked[0].task.group is not None
            assert len(members) <= max_size
            if max_cost is not None and len(members) > 1:
                assert sum(a.task.cost for a in picked) <= max_cost
        load: dict[str, int] = {}
        for lease in run.d.leases():
            load[lease.worker_id] = load.get(lease.worker_id, 0) + 1
        assert all(load[w] <= capacity[w] for w in load)
        for lease in run.d.leases():
            if next(flips):
                run.d.complete(lease.task.id)
            else:
                run.d.fail(lease.task.id, error="x")
        run.clock.advance(1.0)
        states = run.states(ids)
        if all(s in (TaskState.COMPLETED, TaskState.DEAD) for s in states.values()):
            break
    states = run.states(ids)
    assert all(s in (TaskState.COMPLETED, TaskState.DEAD) for s in states.values())
    assert len(batcher) == 0
    counts = run.d.stats().by_state
    assert counts[TaskState.COMPLETED] + counts[TaskState.DEAD] == len(ids)
