"""KeyShare: each tenant's turns shared among its keys, as a nested FairScheduler does.

``FairScheduler(clock, inner=KeyShare(...))`` must answer every call as the
same scheduler with the factory ``lambda clock, tenant: FairScheduler(clock,
tenant_of=lambda t: t.key, ...)`` does (a Hypothesis property over random
pushes, pops, releases, removals, expiries, unpops and snapshots), and, unlike
it, rank a task without holding it. Bad arguments are refused as a scheduler
refuses them, when the KeyShare is made.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskdist import (
    FairScheduler,
    InvalidArgumentError,
    InvalidTypeError,
    KeyShare,
    ManualClock,
    Quota,
    Task,
    TaskdistError,
    UnknownPlanError,
)

WEIGHTS = {"k2": 3.0}
QUOTAS = {"k1": Quota(max_concurrent=1, rate=2.0, per=1.0)}
PLANS = {"small": Quota(max_queued=4)}


def with_key_share(clock: ManualClock) -> FairScheduler:
    inner = KeyShare(WEIGHTS, quotas=QUOTAS, plans=PLANS, default_plan="small")
    return FairScheduler(clock, weights={"b": 2.0}, critical_bypass=True, inner=inner)


def with_factory(clock: ManualClock) -> FairScheduler:
    def make(c: ManualClock, tenant: Hashable) -> FairScheduler:
        return FairScheduler(
            c,
            tenant_of=lambda t: t.key,
            weights=WEIGHTS,
            quotas=QUOTAS,
            plans=PLANS,
            default_plan="small",
        )

    return FairScheduler(clock, weights={"b": 2.0}, critical_bypass=True, inner=make)


def outcome(call: Callable[[], Any]) -> Any:
    """What a call answered (a task by its id), or the kind of error it raised."""
    try:
        answer = call()
    except TaskdistError as error:
        return ("refused", type(error).__name__)
    return ("ok", answer.id if isinstance(answer, Task) else answer)


push = st.tuples(
    st.just("push"),
    st.sampled_from(["a", "b", None]),  # tenant
    st.sampled_from(["k1", "k2", None]),  # key
    st.integers(0, 4),  # priority (0: CRITICAL, the bypass lane)
    st.sampled_from([None, 2.0]),  # ttl
    st.sampled_from([0.5, 1.0, 4.0]),  # cost
)
operation = st.one_of(
    push,
    push,
    push,  # (pushes and pops most often: tasks of one key and tenant pile up)
    st.tuples(st.just("pop")),
    st.tuples(st.just("pop")),
    st.tuples(st.just("pop where"), st.sampled_from(["k1", "k2"])),
    st.tuples(st.just("release"), st.integers(0, 30)),
    st.tuples(st.just("remove"), st.integers(0, 30)),
    st.tuples(st.just("unpop")),
    st.tuples(st.just("advance"), st.sampled_from([0.1, 0.7, 3.0])),
    st.tuples(st.just("expire")),
    st.tuples(st.just("restore")),
)


def run(make: Callable[[ManualClock], FairScheduler], ops: list[tuple[Any, ...]]) -> list[Any]:
    """Every answer a scheduler gave under ``ops``, and what it held at the end."""
    clock = ManualClock(start=10.0)
    fair = make(clock)
    trace: list[Any] = []
    pushed = 0
    running: list[Task] = []
    popped: Task | None = None
    for op in ops:
        kind = op[0]
        if kind == "push":
            _, tenant, key, priority, ttl, cost = op
            task = Task(pushed, tenant=tenant, key=key, priority=priority, ttl=ttl, cost=cost)
            pushed += 1
            trace.append(outcome(partial(fair.push, task)))
        elif kind in ("pop", "pop where"):
            where = None if kind == "pop" else (lambda t, k=op[1]: t.key == k)
            popped = fair.pop(where)
            trace.append(("pop", None if popped is None else popped.id))
            if popped is not None:
                running.append(popped)
            continue  # an unpop may follow
        elif kind == "release" and running:
            task = running.pop(op[1] % len(running))
            trace.append(outcome(partial(fair.release, task)))
        elif kind == "remove" and pushed:
            trace.append(outcome(partial(fair.remove, op[1] % pushed)))
        elif kind == "unpop" and popped is not None:
            trace.append(outcome(partial(fair.unpop, popped)))
            if trace[-1][0] == "ok":
                running.remove(popped)
        elif kind == "advance":
            clock.advance(op[1])
        elif kind == "expire":
            trace.append(("expired", sorted(t.id for t in fair.expire())))
        elif kind == "restore":
            twin = make(clock)
            twin.load_snapshot(fair.snapshot())
            fair = twin
        popped = None
        trace.append(("len", len(fair), fair.next_wakeup()))
    stats = fair.stats()
    trace.append(("stats", {k: (v.queued, v.running) for k, v in stats.tenants.items()}))
    trace.append(("left", [t.id for t in iter(fair.pop, None)]))
    return trace


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(operation, max_size=60))
def test_a_key_share_answers_as_the_factory_of_the_same_schedulers(
    ops: list[tuple[Any, ...]],
) -> None:
    assert run(with_key_share, ops) == run(with_factory, ops)


def test_spreading_work_over_many_keys_gains_a_tenant_nothing() -> None:
    fair = FairScheduler(ManualClock(), inner=KeyShare())
    for i in range(1000):
        fair.push(Task(f"spread-{i}", tenant="spread", key=f"k{i % 500}"))
        fair.push(Task(f"single-{i}", tenant="single", key="only"))
    served = Counter(fair.pop().tenant for _ in range(1000))  # type: ignore[union-attr]
    assert abs(served["spread"] - served["single"]) <= 1


def test_keys_share_their_tenants_turns_by_weight() -> None:
    fair = FairScheduler(ManualClock(), inner=KeyShare({"alice": 2.0}))
    for i in range(300):
        fair.push(Task(f"alice-{i}", tenant="acme", key="alice"))
        fair.push(Task(f"bob-{i}", tenant="acme", key="bob"))
    served = Counter(fair.pop().key for _ in range(300))  # type: ignore[union-attr]
    assert abs(served["alice"] - 200) <= 1 and abs(served["bob"] - 100) <= 1


def test_a_default_plan_caps_every_key_on_its_own() -> None:
    fair = FairScheduler(
        ManualClock(),
        inner=KeyShare(plans={"user": Quota(max_concurrent=1)}, default_plan="user"),
    )
    for i in range(3):
        for key in ("u1", "u2"):
            fair.push(Task(f"{key}-{i}", tenant="acme", key=key))
    first, second = fair.pop(), fair.pop()
    assert first is not None and second is not None
    assert {first.key, second.key} == {"u1", "u2"}
    assert fair.pop() is None  # each user has one running
    fair.release(first)
    assert fair.pop().key == first.key  # type: ignore[union-attr]


def test_it_ranks_where_a_factory_of_the_same_schedulers_cannot() -> None:
    task = Task("x", priority=2, tenant="acme", key="u1")
    assert FairScheduler(ManualClock(), inner=KeyShare()).rank(task, 5.0) == (2 + 5.0 / 600, 5.0)
    assert with_factory(ManualClock()).rank(task, 5.0) is None
    # A tenant_of or deadline_aware still makes the order depend on what is held.
    for fair in (
        FairScheduler(ManualClock(), inner=KeyShare(), tenant_of=lambda t: t.group),
        FairScheduler(ManualClock(), inner=KeyShare(), deadline_aware=True),
    ):
        assert fair.rank(task, 5.0) is None


def test_one_key_share_serves_many_schedulers_each_with_its_own_keys() -> None:
    share = KeyShare({"u1": 2.0})
    clock = ManualClock()
    first, second = FairScheduler(clock, inner=share), FairScheduler(clock, inner=share)
    first.push(Task(1, tenant="acme", key="u1"))
    second.push(Task(1, tenant="acme", key="u1"))  # the same id: a scheduler of its own
    assert first.pop().id == second.pop().id == 1  # type: ignore[union-attr]
    made = share(clock, "acme")
    assert made is not share(clock, "acme") and len(made) == 0


def test_what_it_is_given_is_copied() -> None:
    weights = {"u1": 2.0}
    share = KeyShare(weights)
    weights["u1"] = 1e6
    weights["u2"] = 5.0
    assert repr(share) == "KeyShare(weights={'u1': 2.0})"
    fair = FairScheduler(ManualClock(), inner=share)
    for i in range(30):
        fair.push(Task(f"u1-{i}", tenant="t", key="u1"))
        fair.push(Task(f"u2-{i}", tenant="t", key="u2"))
    served = Counter(fair.pop().key for _ in range(30))  # type: ignore[union-attr]
    assert served == {"u1": 20, "u2": 10}


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"weights": {"u": 0.0}}, InvalidArgumentError, "weights['u']"),
        ({"weights": {"u": math.nan}}, InvalidArgumentError, "weights['u']"),
        ({"weights": {"u": math.inf}}, InvalidArgumentError, "weights['u']"),
        ({"weights": {math.nan: 1.0}}, InvalidArgumentError, "NaN"),
        ({"weights": {"u": "2"}}, InvalidTypeError, "weights['u']"),
        ({"weights": [("u", 2.0)]}, InvalidTypeError, "weights"),
        ({"default_weight": -1.0}, InvalidArgumentError, "default_weight"),
        ({"quotas": {"u": 3}}, InvalidTypeError, "quotas['u']"),
        ({"plans": {"p": Quota()}, "default_plan": "q"}, UnknownPlanError, "'q'"),
        ({"default_plan": "p"}, UnknownPlanError, "'p'"),
    ],
)
def test_bad_arguments_are_refused_when_it_is_made(
    arguments: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=None) as raised:
        KeyShare(**arguments)
    assert words in str(raised.value)


def test_weights_may_be_passed_by_name_or_first() -> None:
    assert repr(KeyShare(weights={"u": 2.0})) == repr(KeyShare({"u": 2.0}))
    assert repr(KeyShare()) == "KeyShare()"
