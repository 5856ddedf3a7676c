"""Admission gates: rate and pool adapters reading task.resources, AllGates all or nothing,
wakeups, and the seed-004 platform limits."""

from __future__ import annotations

import math
from collections import deque

import pytest
from gate_support import CountingGate
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    AdaptiveConcurrency,
    AllGates,
    DuplicateTaskError,
    Gate,
    InvalidArgumentError,
    InvalidTypeError,
    KeyedRateGate,
    KeyedRateLimiter,
    ManualClock,
    OverReleaseError,
    PoolGate,
    RateGate,
    RateLimiter,
    ResourcePool,
    ReversibleGate,
    Task,
    UnsatisfiableDemandError,
)


def api_task(task_id: object, calls: float = 1, **resources: float) -> Task:
    return Task(task_id, resources={"api_calls": calls, **resources})


def test_every_adapter_is_a_reversible_gate() -> None:
    clock = ManualClock()
    gates = [
        RateGate(RateLimiter(1, clock=clock), "api_calls"),
        KeyedRateGate(KeyedRateLimiter(1, clock=clock), "api_calls"),
        PoolGate(ResourcePool("db", 1)),
        AllGates([]),
    ]
    for gate in gates:
        assert isinstance(gate, Gate)
        assert isinstance(gate, ReversibleGate)


# -- rate gates -------------------------------------------------------------


def test_rate_gate_charges_the_named_resource_and_skips_other_tasks() -> None:
    clock = ManualClock()
    limiter = RateLimiter(100, per=60.0, burst=3, clock=clock)
    gate = RateGate(limiter, "api_calls")
    assert gate.try_acquire(api_task("a", calls=2))
    assert gate.try_acquire(Task("no-api"))  # does not demand api_calls
    assert gate.try_acquire(Task("zero", resources={"api_calls": 0}))
    assert not gate.try_acquire(api_task("b", calls=2))
    assert gate.try_acquire(api_task("c", calls=1))
    assert limiter.available() == 0.0


def test_rate_gate_default_charges_tasks_that_do_not_name_the_resource() -> None:
    clock = ManualClock()
    limiter = RateLimiter(10, per=1.0, burst=2, clock=clock)
    gate = RateGate(limiter, "api_calls", default=1)
    assert [gate.try_acquire(Task(i)) for i in range(3)] == [True, True, False]


def test_releasing_a_rate_gate_returns_no_tokens() -> None:
    clock = ManualClock()
    limiter = RateLimiter(1, per=1.0, burst=1, clock=clock)
    gate = RateGate(limiter, "api_calls")
    task = api_task("a")
    assert gate.try_acquire(task)
    gate.release(task)
    assert not gate.try_acquire(api_task("b"))


def test_rate_gate_wakes_the_host_when_the_soonest_refused_task_could_pass() -> None:
    clock = ManualClock()
    limiter = RateLimiter(10, per=1.0, burst=5, clock=clock)
    gate = RateGate(limiter, "api_calls")
    assert gate.next_wakeup() is None
    assert gate.try_acquire(api_task("a", calls=4))
    assert not gate.try_acquire(api_task("big", calls=5))  # needs 4 more units: 0.4 s
    assert gate.next_wakeup() == pytest.approx(0.4)
    assert not gate.try_acquire(api_task("small", calls=2))  # needs 1 more unit: 0.1 s
    assert gate.next_wakeup() == pytest.approx(0.1)
    clock.set(gate.next_wakeup())  # type: ignore[arg-type]
    assert gate.try_acquire(api_task("small", calls=2))
    assert gate.next_wakeup() is None  # the host came back; nothing refused since


def test_a_past_wakeup_stays_until_the_host_tries_again() -> None:
    clock = ManualClock()
    gate = RateGate(RateLimiter(1, per=1.0, burst=1, clock=clock), "api_calls")
    gate.try_acquire(api_task("a"))
    gate.try_acquire(api_task("b"))
    clock.advance(5.0)
    assert gate.next_wakeup() == 1.0  # overdue: dispatch now
    gate.try_acquire(Task("unrelated"))
    assert gate.next_wakeup() is None


def test_rate_gate_rollback_refunds_only_the_admission_just_made() -> None:
    clock = ManualClock()
    limiter = RateLimiter(10, per=1.0, burst=3, clock=clock)
    gate = RateGate(limiter, "api_calls")
    a, b = api_task("a"), api_task("b")
    gate.try_acquire(a)
    gate.try_acquire(b)
    with pytest.raises(OverReleaseError):
        gate.rollback(a)
    assert limiter.available() == 1.0
    gate.rollback(b)
    assert limiter.available() == 2.0
    with pytest.raises(OverReleaseError):
        gate.rollback(b)  # twice is not an undo
    gate.rollback(Task("free"))  # nothing was charged: nothing to undo
    assert limiter.available() == 2.0


def test_a_run_of_admissions_rolls_back_whole_and_only_if_it_ends_with_the_last() -> None:
    clock = ManualClock()
    limiter = RateLimiter(10, per=1.0, burst=4, clock=clock)
    keyed = KeyedRateLimiter(10, per=1.0, burst=4, clock=clock)
    pool = ResourcePool("api_calls", size=4)
    gates = AllGates(
        [RateGate(limiter, "api_calls"), KeyedRateGate(keyed, "api_calls"), PoolGate(pool)]
    )
    a, b, c, free = api_task("a"), api_task("b", calls=2), api_task("c"), Task("free")
    for task in (a, b, free):
        assert gates.try_acquire(task)
    assert (limiter.available(), pool.in_use) == (1.0, 3.0)
    with pytest.raises(OverReleaseError):
        gates.rollback_run([a, c])  # c was never admitted: nothing changes
    assert (limiter.available(), pool.in_use, len(gates)) == (1.0, 3.0, 3)
    other = RateGate(limiter, "api_calls")
    assert other.try_acquire(c)
    with pytest.raises(OverReleaseError):
        other.rollback_run([a])  # that gate admitted c after it: not a run of its own
    other.rollback(c)
    gates.rollback_run([a, b, free])  # the whole run, b (the last charged) last
    assert (limiter.available(), keyed.available(None), pool.in_use, len(gates)) == (
        4.0,
        4.0,
        0.0,
        0,
    )
    with pytest.raises(OverReleaseError):
        gates.rollback_run([a])  # twice is not an undo


def test_a_gate_whose_undo_raises_leaves_the_others_undone() -> None:
    # A keyed gate asks the user's key function again to refund; when it raised there,
    # the gates admitted before it kept what they admitted (a pool unit leaked).
    clock = ManualClock()
    keyed = KeyedRateLimiter(10, per=1.0, burst=2, clock=clock)
    asked: list[str] = []

    def key(task: Task) -> str:
        asked.append(task.id)
        if len(asked) > 1:
            raise RuntimeError("the key function failed")
        return "k"

    pool = ResourcePool("api_calls", size=4)
    empty = RateLimiter(10, per=1.0, burst=1, clock=clock)
    assert empty.try_acquire()
    gates = AllGates(
        [PoolGate(pool), KeyedRateGate(keyed, "api_calls", key=key), RateGate(empty, "api_calls")]
    )
    with pytest.raises(RuntimeError, match="key function failed"):
        gates.try_acquire(api_task("a"))  # the last gate refuses; undoing the keyed one raises
    assert pool.in_use == 0 and len(gates) == 0


def test_a_demand_above_burst_is_an_error_not_a_refusal_forever() -> None:
    clock = ManualClock()
    limiter = RateLimiter(10, burst=2, clock=clock)
    gate = RateGate(limiter, "api_calls")
    gate.try_acquire(api_task("a", calls=2))
    gate.try_acquire(api_task("b", calls=1))  # refused: wakeup at 0.1
    clock.advance(1.0)
    with pytest.raises(InvalidArgumentError, match="could never pass"):
        gate.try_acquire(api_task("huge", calls=3))
    assert gate.next_wakeup() == pytest.approx(0.1)  # the error changed nothing
    assert limiter.available() == 2.0


def test_keyed_rate_gate_gives_each_tenant_its_own_bucket() -> None:
    clock = ManualClock()
    gate = KeyedRateGate(KeyedRateLimiter(2, per=60.0, clock=clock), "api_calls")
    acme = [Task(f"acme-{i}", tenant="acme", resources={"api_calls": 1}) for i in range(3)]
    globex = Task("globex-0", tenant="globex", resources={"api_calls": 1})
    assert [gate.try_acquire(t) for t in acme] == [True, True, False]
    assert gate.try_acquire(globex)
    assert gate.next_wakeup() == pytest.approx(30.0)
    gate.rollback(globex)
    assert gate.limiter.available("globex") == 2.0


def test_keyed_rate_gate_takes_any_key_function() -> None:
    clock = ManualClock()
    gate = KeyedRateGate(
        KeyedRateLimiter(1, per=60.0, clock=clock), "api_calls", key=lambda t: t.zone
    )
    assert gate.try_acquire(Task("a", zone="eu", resources={"api_calls": 1}))
    assert not gate.try_acquire(Task("b", zone="eu", resources={"api_calls": 1}))
    assert gate.try_acquire(Task("c", zone="us", resources={"api_calls": 1}))
    assert gate.key_of(Task("d", zone="us")) == "us"
    with pytest.raises(InvalidTypeError):
        gate.key_of("d")  # type: ignore[arg-type]


# -- pool gates -------------------------------------------------------------


def test_pool_gate_holds_units_until_release() -> None:
    db = ResourcePool("db", size=20)
    gate = PoolGate(db)
    tasks = [Task(i, resources={"db": 8}) for i in range(3)]
    assert [gate.try_acquire(t) for t in tasks] == [True, True, False]
    assert db.in_use == 16.0
    gate.release(tasks[0])
    assert gate.try_acquire(tasks[2])
    assert gate.holds(2)
    assert not gate.holds(0)
    assert gate.next_wakeup() is None


def test_pool_gate_with_default_caps_concurrency_of_every_task() -> None:
    workflows = PoolGate(ResourcePool("workflows", size=10), default=1)
    assert sum(workflows.try_acquire(Task(i)) for i in range(15)) == 10


def test_pool_gate_passes_tasks_that_need_none_of_it() -> None:
    gate = PoolGate(ResourcePool("db", size=1))
    assert gate.try_acquire(Task("a", resources={"db": 1}))
    assert gate.try_acquire(Task("b"))
    gate.release(Task("b"))  # held nothing: nothing to give back
    assert gate.pool.in_use == 1.0


def test_releasing_a_task_twice_or_never_admitted_raises_and_frees_nothing() -> None:
    db = ResourcePool("db", size=4)
    gate = PoolGate(db)
    a, b = Task("a", resources={"db": 2}), Task("b", resources={"db": 2})
    gate.try_acquire(a)
    gate.try_acquire(b)
    gate.release(a)
    with pytest.raises(OverReleaseError):
        gate.release(a)  # b's units must not be freed in a's name
    with pytest.raises(OverReleaseError):
        gate.release(Task("stranger", resources={"db": 1}))
    assert db.in_use == 2.0
    assert gate.holds("b")


def test_admitting_a_task_already_held_raises_and_takes_nothing() -> None:
    db = ResourcePool("db", size=4)
    gate = PoolGate(db)
    a = Task("a", resources={"db": 1})
    gate.try_acquire(a)
    with pytest.raises(DuplicateTaskError):
        gate.try_acquire(a)
    assert db.in_use == 1.0


def test_pool_gate_reads_another_resource_name_when_told() -> None:
    gate = PoolGate(ResourcePool("postgres", size=2), "db")
    assert gate.resource == "db"
    assert gate.try_acquire(Task("a", resources={"db": 2}))
    assert not gate.try_acquire(Task("b", resources={"db": 1}))


# -- all or nothing ---------------------------------------------------------


def test_all_gates_rolls_back_earlier_gates_when_a_later_one_refuses() -> None:
    clock = ManualClock()
    db = ResourcePool("db", size=10)
    requests = RateLimiter(100, per=60.0, burst=10, clock=clock)
    tokens = RateLimiter(40_000, per=60.0, clock=clock)
    gates = AllGates(
        [PoolGate(db), RateGate(requests, "api_calls", default=1), RateGate(tokens, "llm_tokens")]
    )
    first = Task("first", resources={"db": 2, "llm_tokens": 30_000})
    second = Task("second", resources={"db": 2, "llm_tokens": 30_000})
    assert gates.try_acquire(first)
    assert not gates.try_acquire(second)  # tokens refuse after db and requests admitted
    assert db.in_use == 2.0
    assert requests.available() == 9.0
    assert tokens.available() == pytest.approx(10_000.0)
    assert gates.next_wakeup() == pytest.approx(30.0)  # 20k tokens at 40k/min
    gates.release(first)
    assert db.in_use == 0.0
    assert len(gates) == 0


def test_all_gates_rolls_back_when_a_gate_raises() -> None:
    clock = ManualClock()
    db = ResourcePool("db", size=10)
    gates = AllGates([PoolGate(db), RateGate(RateLimiter(10, burst=2, clock=clock), "api_calls")])
    with pytest.raises(InvalidArgumentError):
        gates.try_acquire(Task("t", resources={"db": 3, "api_calls": 5}))
    assert db.in_use == 0.0
    assert len(gates) == 0


def test_a_user_gate_without_rollback_is_rolled_back_by_release() -> None:
    user = CountingGate(capacity=5)
    gates = AllGates([user, PoolGate(ResourcePool("db", 1))])
    assert gates.try_acquire(Task("a", resources={"db": 1}))
    assert not gates.try_acquire(Task("b", resources={"db": 1}))
    assert user.running == {"a"}


def test_all_gates_refuses_duplicates_and_unknown_releases_without_changing_anything() -> None:
    db = ResourcePool("db", size=4)
    gates = AllGates([PoolGate(db)])
    a = Task("a", resources={"db": 1})
    gates.try_acquire(a)
    with pytest.raises(DuplicateTaskError):
        gates.try_acquire(a)
    with pytest.raises(OverReleaseError):
        gates.release(Task("b", resources={"db": 1}))
    with pytest.raises(OverReleaseError):
        gates.rollback(Task("b", resources={"db": 1}))
    assert db.in_use == 1.0
    gates.rollback(a)
    assert db.in_use == 0.0


def test_all_gates_nest() -> None:
    clock = ManualClock()
    db = ResourcePool("db", size=2)
    inner = AllGates([PoolGate(db)])
    outer = AllGates([inner, RateGate(RateLimiter(1, burst=1, clock=clock), "api_calls")])
    assert outer.try_acquire(Task("a", resources={"db": 1, "api_calls": 1}))
    assert not outer.try_acquire(Task("b", resources={"db": 1, "api_calls": 1}))
    assert db.in_use == 1.0
    assert len(inner) == 1


@given(
    tasks=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=2.0),
            st.integers(0, 3),  # db
            st.integers(0, 3),  # api_calls
            st.integers(0, 2),  # gpu
            st.booleans(),  # release the oldest running task first
        ),
        max_size=40,
    )
)
def test_all_gates_admit_through_every_gate_or_leave_every_gate_as_it_was(
    tasks: list[tuple[float, int, int, int, bool]],
) -> None:
    clock = ManualClock()
    db, gpu = ResourcePool("db", 5), ResourcePool("gpu", 2)
    limiter = RateLimiter(2, per=1.0, burst=3, clock=clock)
    gates = AllGates([PoolGate(db), RateGate(limiter, "api_calls"), PoolGate(gpu, default=0.5)])

    def observed() -> tuple[float, ...]:
        return (db.in_use, gpu.in_use, limiter.available(), limiter.ready_at(1))

    running: deque[Task] = deque()
    for i, (dt, need_db, need_api, need_gpu, release_first) in enumerate(tasks):
        clock.advance(dt)
        if release_first and running:
            gates.release(running.popleft())
        resources = {"db": need_db, "api_calls": need_api, "gpu": need_gpu}
        task = Task(i, resources={k: v for k, v in resources.items() if v})
        before = observed()
        expected = (
            db.available >= need_db
            and (need_api == 0 or limiter.can_acquire(need_api))
            and gpu.available >= (need_gpu or 0.5)
        )
        assert gates.try_acquire(task) is expected
        if expected:
            running.append(task)
            assert db.in_use == before[0] + need_db
            assert gpu.in_use == before[1] + (need_gpu or 0.5)
        else:
            assert observed() == before
    assert db.in_use == sum(t.resources.get("db", 0) for t in running)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RateGate(ResourcePool("db", 1), "db"),  # type: ignore[arg-type]
        lambda: RateGate(RateLimiter(1), ""),
        lambda: RateGate(RateLimiter(1), 5),  # type: ignore[arg-type]
        lambda: RateGate(RateLimiter(1), "api_calls", default=-1),
        lambda: RateGate(RateLimiter(1), "api_calls", default=math.nan),
        lambda: KeyedRateGate(RateLimiter(1), "api_calls"),  # type: ignore[arg-type]
        lambda: KeyedRateGate(KeyedRateLimiter(1), "api_calls", key="tenant"),  # type: ignore[arg-type]
        lambda: PoolGate(RateLimiter(1)),  # type: ignore[arg-type]
        lambda: PoolGate(ResourcePool("db", 1), default=-1),
        lambda: AllGates([object()]),  # type: ignore[list-item]
        lambda: AllGates("gates"),  # type: ignore[arg-type]
        lambda: AllGates(None),  # type: ignore[arg-type]
    ],
)
def test_bad_gates_are_refused(build: object) -> None:
    with pytest.raises((InvalidTypeError, InvalidArgumentError)):
        build()  # type: ignore[operator]


# -- the seed-004 platform --------------------------------------------------


def test_seed_platform_limits_hold_under_a_host_driven_by_next_wakeup() -> None:
    """DB pool 20, API 100 requests/min (burst 10), at most 10 concurrent workflows.

    Every task is one workflow making one API call; every third also holds 3
    DB connections. Tasks run 1 s. A host admits what the gates allow and
    sleeps until the next completion or gate wakeup. The API rate binds:
    10 at once, then one every 0.6 s, so by 599.9 s exactly 10 + 999 tasks
    have been admitted (the 1000th post-burst slot is at 600 s).
    """
    clock = ManualClock()
    db = ResourcePool("db", size=20)
    api = RateLimiter(rate=100, per=60.0, burst=10, clock=clock)
    workflows = ResourcePool("workflows", size=10)
    gates = AllGates([PoolGate(workflows, default=1), PoolGate(db), RateGate(api, "api_calls")])
    waiting = deque(
        Task(i, resources={"api_calls": 1, **({"db": 3} if i % 3 == 0 else {})})
        for i in range(2000)
    )
    running: list[tuple[float, Task]] = []
    admitted_at: list[float] = []
    while clock.now() <= 599.9:
        now = clock.now()
        for end, task in [r for r in running if r[0] <= now]:
            gates.release(task)
            running.remove((end, task))
        while waiting and gates.try_acquire(waiting[0]):
            running.append((now + 1.0, waiting.popleft()))
            admitted_at.append(now)
        assert workflows.in_use <= 10
        assert db.in_use <= 20
        wakeups = [end for end, _ in running] + [w for w in [gates.next_wakeup()] if w]
        clock.set(max(now, min(wakeups)))
    assert len(admitted_at) == 10 + 999
    # No 60 s window saw more than 100 + 10 calls.
    for i, start in enumerate(admitted_at):
        in_window = sum(1 for t in admitted_at[i:] if t - start <= 60.0)
        assert in_window <= 110
    assert admitted_at[:10] == [0.0] * 10


# -- tasks that must pass at one moment (a gang) ----------------------------------------


def test_a_rate_gate_refuses_tasks_whose_demands_together_exceed_its_burst() -> None:
    clock = ManualClock()
    gate = RateGate(RateLimiter(3, per=1.0, burst=3, clock=clock), "api_calls")
    gate.check_together([api_task("a"), api_task("b"), api_task("c"), Task("free")])
    with pytest.raises(UnsatisfiableDemandError, match=r"'a', 'b' demand 3.5 'api_calls'"):
        gate.check_together([api_task("a", 2), api_task("b", 1.5)])
    # Thirty tenths add up to a hair over 3 in floats; the limiter admits them all.
    tenths = [api_task(i, 0.1) for i in range(30)]
    gate.check_together(tenths)
    assert all(gate.try_acquire(task) for task in tenths)


def test_a_keyed_rate_gate_sums_demands_per_bucket() -> None:
    clock = ManualClock()
    gate = KeyedRateGate(KeyedRateLimiter(2, per=1.0, burst=2, clock=clock), "api_calls")
    apart = [Task(i, tenant=i % 2, resources={"api_calls": 1}) for i in range(4)]
    gate.check_together(apart)  # two a tenant
    with pytest.raises(UnsatisfiableDemandError, match="bucket of key 0"):
        gate.check_together([*apart, Task("more", tenant=0, resources={"api_calls": 1})])
    with pytest.raises(InvalidArgumentError, match="NaN"):
        gate.check_together([Task("n", tenant=math.nan, resources={"api_calls": 1})])


def test_a_pool_gate_refuses_tasks_that_could_never_hold_their_units_at_once() -> None:
    gate = PoolGate(ResourcePool("db", size=4), default=1)
    gate.check_together([Task("a", resources={"db": 3}), Task("b")])
    with pytest.raises(UnsatisfiableDemandError, match=r"demand 5 'db' together.*holds \(4\)"):
        gate.check_together([Task("a", resources={"db": 3}), Task("b"), Task("c")])


def test_an_adaptive_limit_refuses_more_tasks_at_once_than_its_maximum() -> None:
    clock = ManualClock()
    api = AdaptiveConcurrency(clock.now, initial=1, maximum=2, applies=lambda t: t.group == "api")
    api.check_together([Task(i, group="api") for i in range(2)] + [Task("x")])
    with pytest.raises(UnsatisfiableDemandError, match=r"3 tasks .* maximum of 2"):
        api.check_together([Task(i, group="api") for i in range(3)])


def test_all_gates_ask_each_gate_that_can_tell_and_change_nothing() -> None:
    clock = ManualClock()
    limiter = RateLimiter(10, per=1.0, burst=10, clock=clock)
    pool = ResourcePool("db", size=2)
    gates = AllGates([RateGate(limiter, "api_calls"), PoolGate(pool, default=1), CountingGate(1)])
    three = [api_task(i) for i in range(3)]
    with pytest.raises(UnsatisfiableDemandError, match="pool 'db'"):
        gates.check_together(three)
    gates.check_together(three[:2])  # the counting gate, which cannot tell, is not asked
    assert limiter.available() == 10.0 and pool.in_use == 0 and gates.gates[2].asked == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("tasks", ["abc", None, [Task("a"), "b"], {Task("a")}])
def test_check_together_takes_a_sequence_of_tasks(tasks: object) -> None:
    clock = ManualClock()
    for gate in (
        RateGate(RateLimiter(1, clock=clock), "api_calls"),
        KeyedRateGate(KeyedRateLimiter(1, clock=clock), "api_calls"),
        PoolGate(ResourcePool("db", 1)),
        AdaptiveConcurrency(clock.now),
        AllGates([]),
    ):
        with pytest.raises(InvalidTypeError, match=r"check_together|Task"):
            gate.check_together(tasks)  # type: ignore[arg-type]
