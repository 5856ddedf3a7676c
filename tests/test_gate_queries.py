"""Gates asked without side effects: can_acquire agrees with try_acquire and changes
nothing; check refuses a demand that could never pass; AllGates keeps its members apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from gate_support import CountingGate
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    AllGates,
    DuplicateTaskError,
    Gate,
    InvalidArgumentError,
    KeyedRateGate,
    KeyedRateLimiter,
    ManualClock,
    PoolGate,
    QueryableGate,
    RateGate,
    RateLimiter,
    ResourcePool,
    ReversibleGate,
    Task,
    UnsatisfiableDemandError,
)

# -- a world per gate kind: the clock, the gate, and everything a twin can be compared on


World = tuple[ManualClock, Gate, Callable[[], Any]]
Step = tuple[float, float, int, "str | None", str]


def rate_world() -> World:
    clock = ManualClock()
    api = RateLimiter(2, per=1.0, burst=3, clock=clock)
    gate = RateGate(api, "api_calls")
    return clock, gate, lambda: (api.available(), api.ready_at(1), gate.next_wakeup())


def keyed_world() -> World:
    clock = ManualClock()
    keyed = KeyedRateLimiter(1, per=1.0, burst=3, clock=clock)
    gate = KeyedRateGate(keyed, "api_calls")
    return (
        clock,
        gate,
        lambda: (
            sorted(map(str, keyed)),
            [keyed.available(key) for key in ("a", "b", None)],
            gate.next_wakeup(),
        ),
    )


def pool_world() -> World:
    clock = ManualClock()
    db = ResourcePool("db", size=4)
    gate = PoolGate(db)
    return clock, gate, lambda: (db.stats(), gate.next_wakeup())


def all_world(*, plain: bool = False) -> World:
    clock = ManualClock()
    api = RateLimiter(2, per=1.0, burst=3, clock=clock)
    db = ResourcePool("db", size=4)
    user = CountingGate(capacity=3)
    members: list[Gate] = [PoolGate(db), RateGate(api, "api_calls")]
    if plain:
        members.insert(1, user)
    gate = AllGates(members)
    return (
        clock,
        gate,
        lambda: (
            api.available(),
            db.stats(),
            sorted(map(str, user.running)),
            len(gate),
            gate.next_wakeup(),
        ),
    )


WORLDS: dict[str, Callable[[], World]] = {
    "rate": rate_world,
    "keyed": keyed_world,
    "pool": pool_world,
    "all": all_world,
    "all-with-a-plain-gate": lambda: all_world(plain=True),
}

operations = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=1.5),  # clock advance first
        st.sampled_from([0, 0.5, 1, 2, 3, 4]),  # api_calls (4 is above every burst)
        st.sampled_from([0, 1, 2, 3, 5]),  # db (5 is above the pool)
        st.sampled_from(["a", "b", None]),  # tenant
        st.sampled_from(["keep", "release", "rollback", "again"]),  # after an admission
    ),
    max_size=30,
)


def drive(
    world: World, steps: list[tuple[float, float, int, str | None, str]], ask: bool
) -> list[Any]:
    """Run the steps; with ``ask``, call can_acquire on every task before and after each step.

    Returns what each step answered and the world's observation after it.
    """
    clock, gate, observe = world
    assert isinstance(gate, QueryableGate)
    seen: list[Any] = []
    held: list[Task] = []
    for i, (dt, api_calls, db, tenant, then) in enumerate(steps):
        clock.advance(dt)
        resources = {"api_calls": api_calls, "db": db}
        task = Task(i, tenant=tenant, resources={k: v for k, v in resources.items() if v})
        probes = [task, *held[-2:]]
        if ask:
            answers = [gate.can_acquire(probe) for probe in probes]
            assert gate.can_acquire(task) is answers[0]  # asking twice: the same answer
        try:
            admitted: object = gate.try_acquire(task)
        except (UnsatisfiableDemandError, DuplicateTaskError) as error:
            admitted = type(error)
        if ask:
            assert answers[0] is (admitted is True), (task, admitted)
        if admitted is True:
            if then == "rollback":
                assert isinstance(gate, ReversibleGate)
                gate.rollback(task)
            elif then == "release":
                gate.release(task)
            else:
                held.append(task)
                if then == "again":  # a pool refuses a task it holds; a rate gate only spends
                    answer = gate.can_acquire(task) if ask else None
                    try:
                        again: object = gate.try_acquire(task)
                    except DuplicateTaskError:
                        again = DuplicateTaskError
                    if ask:
                        assert answer is (again is True)
        elif held and then == "release":
            gate.release(held.pop(0))
        if ask:
            for probe in [task, *held[-2:]]:
                gate.can_acquire(probe)
        seen.append((admitted, observe()))
    return seen


@pytest.mark.parametrize("kind", list(WORLDS))
@given(steps=operations)
def test_can_acquire_agrees_with_try_acquire_and_changes_nothing(
    kind: str, steps: list[Step]
) -> None:
    """One twin is asked can_acquire before and after every step, the other never:
    each answer matches the try_acquire that follows, and the twins never differ."""
    asked = drive(WORLDS[kind](), steps, ask=True)
    assert asked == drive(WORLDS[kind](), steps, ask=False)


def test_every_built_in_gate_is_queryable_and_a_plain_gate_is_not() -> None:
    clock = ManualClock()
    for gate in (
        RateGate(RateLimiter(1, clock=clock), "api_calls"),
        KeyedRateGate(KeyedRateLimiter(1, clock=clock), "api_calls"),
        PoolGate(ResourcePool("db", 1)),
        AllGates([]),
    ):
        assert isinstance(gate, QueryableGate)
    plain = CountingGate(1)
    assert isinstance(plain, Gate)
    assert not isinstance(plain, QueryableGate)


def test_can_acquire_leaves_the_wakeup_as_it_was() -> None:
    clock = ManualClock()
    gate = RateGate(RateLimiter(1, per=1.0, burst=1, clock=clock), "api_calls")
    assert gate.try_acquire(Task("a", resources={"api_calls": 1}))
    assert not gate.can_acquire(Task("b", resources={"api_calls": 1}))
    assert gate.next_wakeup() is None  # only a refused try_acquire asks to be woken
    assert not gate.try_acquire(Task("b", resources={"api_calls": 1}))
    assert gate.next_wakeup() == 1.0
    clock.advance(2.0)
    assert gate.can_acquire(Task("b", resources={"api_calls": 1}))
    assert gate.next_wakeup() == 1.0  # still due: a try_acquire clears it


# -- check: demands that could never pass ------------------------------------


@pytest.mark.parametrize(
    ("gate", "task", "words"),
    [
        (
            RateGate(RateLimiter(10, burst=2), "api_calls"),
            Task("big", resources={"api_calls": 3}),
            ["'big'", "3", "'api_calls'", "burst of 2"],
        ),
        (
            KeyedRateGate(KeyedRateLimiter(10, burst=2), "tokens", default=5),
            Task("default"),
            ["'default'", "5", "'tokens'", "burst of 2"],
        ),
        (
            PoolGate(ResourcePool("db", 20)),
            Task("wide", resources={"db": 21}),
            ["'wide'", "21", "'db'", "(20)"],
        ),
        (
            AllGates([PoolGate(ResourcePool("gpu", 2)), PoolGate(ResourcePool("db", 1))]),
            Task("t", resources={"gpu": 1, "db": 1.5}),
            ["'t'", "1.5", "'db'", "(1)"],
        ),
    ],
)
def test_check_and_try_acquire_refuse_a_demand_that_could_never_pass(
    gate: QueryableGate, task: Task, words: list[str]
) -> None:
    for call in (gate.check, gate.try_acquire):
        with pytest.raises(UnsatisfiableDemandError) as refused:
            call(task)
        for word in words:
            assert word in str(refused.value)
        assert isinstance(refused.value, InvalidArgumentError)  # old catches still work
    assert gate.can_acquire(task) is False
    assert gate.next_wakeup() is None  # nothing changed


def test_check_passes_a_demand_that_could_pass_later() -> None:
    clock = ManualClock()
    db = ResourcePool("db", 2)
    api = RateLimiter(1, per=1.0, burst=2, clock=clock)
    gates = AllGates([PoolGate(db), RateGate(api, "api_calls"), CountingGate(0)])
    task = Task("t", resources={"db": 2, "api_calls": 2})
    assert db.try_acquire(2) and api.try_acquire(2)
    gates.check(task)  # not now, but once the units come back: no error
    assert not gates.can_acquire(task)


def test_limiters_and_pools_raise_unsatisfiable_demand_too() -> None:
    with pytest.raises(UnsatisfiableDemandError, match="could never pass"):
        RateLimiter(10, burst=2).try_acquire(3)
    with pytest.raises(UnsatisfiableDemandError, match="'db'"):
        ResourcePool("db", 2).try_acquire(3)
    with pytest.raises(UnsatisfiableDemandError):
        ResourcePool("db", 2).can_acquire(2.5)


def test_pool_can_acquire_answers_exactly_with_fractional_units() -> None:
    pool = ResourcePool("mem", 1.0)
    assert pool.try_acquire(0.1) and pool.try_acquire(0.2) and pool.try_acquire(0.7)
    assert pool.can_acquire(1e-9) is pool.try_acquire(1e-9)  # whatever 0.1 + 0.2 + 0.7 is
    pool.release(0.1)
    free = pool.available
    assert pool.can_acquire(0.1) is pool.try_acquire(0.1)
    assert pool.can_acquire(free + 1e-9) is False


# -- AllGates: members that are not queryable, members given twice ----------


def test_all_gates_asks_a_plain_gate_only_when_the_queryable_ones_admit() -> None:
    db = ResourcePool("db", 1)
    user = CountingGate(capacity=1)
    gates = AllGates([user, PoolGate(db)])
    assert gates.can_acquire(Task("a", resources={"db": 1}))
    assert user.asked == 1 and user.running == set()  # admitted, then undone
    assert db.try_acquire(1)
    assert not gates.can_acquire(Task("b", resources={"db": 1}))
    assert user.asked == 1  # the pool said no first: the plain gate was not asked


def test_all_gates_can_acquire_is_false_for_a_task_it_holds() -> None:
    gates = AllGates([PoolGate(ResourcePool("db", 4))])
    task = Task("a", resources={"db": 1})
    assert gates.try_acquire(task)
    assert not gates.can_acquire(task)


def shared_gates() -> list[Callable[[], list[Gate]]]:
    clock = ManualClock()
    api = RateLimiter(10, burst=2, clock=clock)
    db = ResourcePool("db", 4)
    keyed = KeyedRateLimiter(1, clock=clock)
    gate = RateGate(api, "api_calls")
    return [
        lambda: [gate, gate],
        lambda: [RateGate(api, "api_calls"), RateGate(api, "llm_tokens")],
        lambda: [PoolGate(db), PoolGate(db, "db_heavy")],
        lambda: [KeyedRateGate(keyed, "a"), KeyedRateGate(keyed, "b")],
        lambda: [gate, AllGates([PoolGate(db), gate])],
        lambda: [AllGates([PoolGate(db)]), PoolGate(db)],
        lambda: [user := CountingGate(1), AllGates([user])],
    ]


@pytest.mark.parametrize("members", shared_gates())
def test_all_gates_refuses_a_gate_limiter_or_pool_given_twice(
    members: Callable[[], list[Gate]],
) -> None:
    with pytest.raises(InvalidArgumentError, match="both draw on"):
        AllGates(members())


def test_the_same_gate_twice_would_have_leaked_a_token() -> None:
    """Why it is refused: the second admission overwrote the first, so the
    rollback after a later refusal refunded one unit of two."""
    clock = ManualClock()
    api = RateLimiter(10, burst=4, clock=clock)
    gate = RateGate(api, "api_calls")
    with pytest.raises(InvalidArgumentError):
        AllGates([gate, gate, PoolGate(ResourcePool("db", 1))])
    assert api.available() == 4.0
