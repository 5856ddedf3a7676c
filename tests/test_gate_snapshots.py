"""Snapshots of the gates that learn or key their state: KeyedRateGate, AdaptiveConcurrency.

Hypothesis runs random operations on a gate, snapshots it (through JSON),
loads the snapshot into a fresh gate built alike on a clock of its own, then
runs the same random operations on both: every answer and everything a host
can observe must agree. A corrupted snapshot (a field removed, a wrong type,
NaN, a negative count, a future version, another configuration) is refused
with ``SnapshotError`` naming what was wrong, and the gate is left as it was.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hostile import assert_refused
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    AdaptiveConcurrency,
    Distributor,
    KeyedRateGate,
    KeyedRateLimiter,
    ManualClock,
    RateGate,
    RateLimiter,
    SnapshotError,
    Task,
    TaskdistError,
    Worker,
)

Gate = KeyedRateGate | AdaptiveConcurrency


def as_json(data: object) -> Any:
    return json.loads(json.dumps(data))


def outcome(call: Callable[[], object]) -> object:
    """What a call returned, or the error it raised (type and message)."""
    try:
        return call()
    except TaskdistError as error:
        return (type(error).__name__, str(error))


def twin_runs_alike(
    build: Callable[[ManualClock], Gate],
    apply: Callable[[ManualClock, Any, tuple[Any, ...]], object],
    observe: Callable[[Any], object],
    before: list[tuple[Any, ...]],
    after: list[tuple[Any, ...]],
) -> None:
    """Run ``before`` on a gate, load its snapshot into a fresh twin, then run
    ``after`` on both: every answer and every observation must agree."""
    clock = ManualClock()
    gate = build(clock)
    for op in before:
        apply(clock, gate, op)
    data = as_json(gate.snapshot())
    twin_clock = ManualClock(start=clock.now())
    twin = build(twin_clock)
    twin.load_snapshot(data)
    assert as_json(twin.snapshot()) == data
    assert observe(twin) == observe(gate)
    for op in after:
        assert apply(twin_clock, twin, op) == apply(clock, gate, op), op
        assert observe(twin) == observe(gate), op
    assert as_json(twin.snapshot()) == as_json(gate.snapshot())


# -- KeyedRateGate ----------------------------------------------------------------------

KEYS: list[Any] = ["acme", "globex", ("team", 1), None, 7]


def keyed_gate(clock: ManualClock, max_keys: int | None = 3) -> KeyedRateGate:
    limiter = KeyedRateLimiter(rate=1, per=2.0, burst=2, clock=clock, max_keys=max_keys)
    return KeyedRateGate(limiter, "api")


def keyed_task(number: int, tenant: Any, amount: float) -> Task:
    return Task(number, tenant=tenant, resources={"api": amount} if amount else {})


keyed_tasks = st.tuples(
    st.integers(0, 5), st.sampled_from(KEYS), st.sampled_from([0, 0.5, 1, 1, 2, 3])
)
keyed_ops = st.one_of(
    *(
        st.tuples(st.just(name), keyed_tasks)
        for name in ("acquire", "acquire", "can", "check", "rollback", "release")
    ),
    st.tuples(st.just("advance"), st.sampled_from([0.25, 1.0, 2.0, 5.0])),
)


def keyed_apply(clock: ManualClock, gate: KeyedRateGate, op: tuple[Any, ...]) -> object:
    name, arg = op
    if name == "advance":
        return clock.advance(arg)
    task = keyed_task(*arg)
    calls: dict[str, Callable[[Task], object]] = {
        "acquire": gate.try_acquire,
        "can": gate.can_acquire,
        "check": gate.check,
        "rollback": gate.rollback,
        "release": gate.release,
    }
    return outcome(lambda: calls[name](task))


def keyed_view(gate: KeyedRateGate) -> object:
    limiter = gate.limiter
    return (
        gate.next_wakeup(),
        list(limiter),
        limiter.evicted_idle,
        limiter.evicted_active,
        [(limiter.available(key), limiter.ready_at(key, 2)) for key in KEYS],
    )


@pytest.mark.parametrize("max_keys", [3, None])
@given(
    before=st.lists(keyed_ops, min_size=5, max_size=30),
    after=st.lists(keyed_ops, min_size=5, max_size=20),
)
def test_a_keyed_rate_gate_loaded_from_its_snapshot_decides_alike(
    max_keys: int | None, before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    twin_runs_alike(
        lambda clock: keyed_gate(clock, max_keys), keyed_apply, keyed_view, before, after
    )


def test_keyed_snapshot_keeps_the_order_the_cap_evicts_by() -> None:
    # A bucket full again but still held decides what the cap drops next: carried.
    clock = ManualClock()
    gate = keyed_gate(clock, max_keys=2)
    assert gate.try_acquire(keyed_task(1, "a", 2))
    assert gate.try_acquire(keyed_task(2, "b", 1))
    clock.advance(3.0)  # b is full again, a is not: neither is dropped (a is older)
    twin_clock = ManualClock(start=clock.now())
    twin = keyed_gate(twin_clock, max_keys=2)
    twin.load_snapshot(as_json(gate.snapshot()))
    assert list(twin.limiter) == list(gate.limiter) == ["a", "b"]
    for subject in (gate, twin):
        assert subject.try_acquire(keyed_task(3, "c", 1))  # drops a: the cap evicts it
        assert subject.limiter.evicted_active == 1
        assert list(subject.limiter) == ["b", "c"]


def used_keyed(clock: ManualClock | None = None) -> KeyedRateGate:
    """A keyed gate with something in every field: buckets, a wakeup, a task to roll
    back, and both eviction counters above zero."""
    clock = clock or ManualClock()
    gate = keyed_gate(clock, max_keys=2)
    gate.try_acquire(keyed_task(1, "a", 2))
    gate.try_acquire(keyed_task(2, "b", 1))
    gate.try_acquire(keyed_task(3, "c", 1))  # the cap evicts a, still busy
    clock.advance(4.0)
    gate.try_acquire(keyed_task(4, ("d", 1), 2))  # b and c are full again: dropped
    gate.try_acquire(keyed_task(5, ("d", 1), 1))  # refused: a wakeup
    gate.try_acquire(keyed_task(6, "e", 1))
    limiter = gate.limiter
    assert limiter.evicted_active == 1 and limiter.evicted_idle == 2
    assert gate.next_wakeup() is not None and len(limiter) == 2
    return gate


def test_the_used_keyed_gate_round_trips() -> None:
    gate = used_keyed()
    data = as_json(gate.snapshot())
    assert data["last"] == 6 and len(data["limiter"]["buckets"]) == 2
    twin = keyed_gate(ManualClock(start=4.0), max_keys=2)
    twin.load_snapshot(data)
    assert keyed_view(twin) == keyed_view(gate)
    twin.rollback(keyed_task(6, "e", 1))  # the task it may roll back travelled


def test_a_keyed_rate_limiter_alone_round_trips_and_refuses_another_cap() -> None:
    limiter = used_keyed().limiter
    data = as_json(limiter.snapshot())

    def fresh(max_keys: int = 2) -> KeyedRateLimiter:
        return KeyedRateLimiter(rate=1, per=2.0, burst=2, clock=ManualClock(4.0), max_keys=max_keys)

    def seen(subject: KeyedRateLimiter) -> object:
        counters = (subject.evicted_idle, subject.evicted_active)
        return list(subject), counters, [subject.available(key) for key in KEYS]

    twin = fresh()
    twin.load_snapshot(data)
    assert seen(twin) == seen(limiter)
    assert_refused(
        lambda: fresh(max_keys=3),
        lambda other: other.load_snapshot(data),
        SnapshotError,
        seen,
        match="max_keys is 2; this limiter has 3",
    )


def change(path: tuple[Any, ...], value: Any = None, *, remove: bool = False) -> Any:
    """A corruption: the field at ``path`` set to ``value``, or removed."""

    def corrupt(data: Any) -> None:
        *head, last = path
        for step in head:
            data = data[step]
        if remove:
            del data[last]
        else:
            data[last] = value

    return corrupt


KEYED_CORRUPTIONS: dict[str, tuple[Any, type[Exception], str]] = {
    "future version": (change(("version",), 2), SnapshotError, "version 2"),
    "limiter from the future": (change(("limiter", "version"), 99), SnapshotError, "version 99"),
    "another kind": (change(("kind",), "RateGate"), SnapshotError, "not of a KeyedRateGate"),
    "another resource": (change(("resource",), "tokens"), SnapshotError, "resource"),
    "resource not a str": (change(("resource",), 1), SnapshotError, "resource must be a str"),
    "wake not a number": (change(("wake",), "soon"), SnapshotError, "wake must be a finite"),
    "wake NaN": (change(("wake",), math.nan), SnapshotError, "wake must be a finite"),
    "last not an id": (change(("last",), [6]), SnapshotError, "last must be an id"),
    "another rate": (change(("limiter", "rate"), 2), SnapshotError, "rate is 2"),
    "another burst": (change(("limiter", "burst"), 1.0), SnapshotError, "burst"),
    "another cap": (change(("limiter", "max_keys"), None), SnapshotError, "max_keys"),
    "rate NaN": (change(("limiter", "rate"), math.nan), SnapshotError, "rate"),
    "buckets not a list": (change(("limiter", "buckets"), {}), SnapshotError, "buckets must"),
    "bucket not a triple": (
        change(("limiter", "buckets", 0), ["e", 1.0]),
        SnapshotError,
        r"buckets\[0\] must be a \[key, anchor, count\]",
    ),
    "bucket key not a key": (
        change(("limiter", "buckets", 0, 0), [1]),
        SnapshotError,
        r"buckets\[0\]\[0\] must be an id",
    ),
    "bucket key NaN": (
        change(("limiter", "buckets", 0, 0), math.nan),
        SnapshotError,
        "a NaN key",
    ),
    "bucket key twice": (
        change(("limiter", "buckets", 1, 0), {"tuple": ["d", 1]}),
        SnapshotError,
        "a key twice",
    ),
    "anchor NaN": (
        change(("limiter", "buckets", 0, 1), math.nan),
        SnapshotError,
        r"anchor\) must be a finite number",
    ),
    "anchor not a number": (
        change(("limiter", "buckets", 0, 1), "4"),
        SnapshotError,
        r"anchor\) must be a finite number",
    ),
    "anchor too large": (
        change(("limiter", "buckets", 0, 1), 10**400),
        SnapshotError,
        r"anchor\) must be a finite number",
    ),
    "count infinite": (
        change(("limiter", "buckets", 1, 2), math.inf),
        SnapshotError,
        r"count\) must be a finite number",
    ),
    "count a bool": (
        change(("limiter", "buckets", 1, 2), True),
        SnapshotError,
        r"count\) must be a finite number",
    ),
    "more keys than the cap": (
        change(("limiter", "buckets"), [["x", 0.0, 1.0], ["y", 0.0, 1.0], ["z", 0.0, 1.0]]),
        SnapshotError,
        "above max_keys 2",
    ),
    "negative eviction count": (
        change(("limiter", "evicted"), [-1, 0]),
        SnapshotError,
        "evicted must be 2 ints >= 0",
    ),
    "eviction count a float": (
        change(("limiter", "evicted"), [1.0, 0]),
        SnapshotError,
        "evicted must be 2 ints >= 0",
    ),
    "unknown field": (change(("surprise",), 1), SnapshotError, "unknown fields"),
    "unknown limiter field": (change(("limiter", "surprise"), 1), SnapshotError, "unknown"),
    "not a dict": (lambda data: data.clear(), SnapshotError, "no field 'kind'"),
}


def keyed_observed(gate: KeyedRateGate) -> object:
    return (as_json(gate.snapshot()), keyed_view(gate))


def load_corrupted(used: Callable[[], Any], corrupt: Callable[[Any], None]) -> Any:
    """The call that loads ``used()``'s snapshot, corrupted, into a gate."""
    data = as_json(used().snapshot())
    corrupt(data)
    return lambda gate: gate.load_snapshot(json.loads(json.dumps(data)))


def test_a_key_that_is_not_plain_data_is_refused_by_name() -> None:
    class Account:
        def __hash__(self) -> int:
            return 1

    clock = ManualClock()
    gate = KeyedRateGate(KeyedRateLimiter(1, clock=clock), "api", key=lambda _: Account())
    assert gate.try_acquire(Task("t", resources={"api": 1}))
    with pytest.raises(SnapshotError, match=r"rate limit key .* of type Account"):
        gate.snapshot()


# -- AdaptiveConcurrency ----------------------------------------------------------------

CONFIG: dict[str, Any] = {
    "initial": 3,
    "minimum": 1,
    "maximum": 6,
    "increase": 1.5,
    "decrease": 0.5,
    "latency_target": 2.0,
}


def adaptive_gate(clock: ManualClock) -> AdaptiveConcurrency:
    return AdaptiveConcurrency(clock.now, **CONFIG, applies=lambda task: task.group != "free")


def adaptive_task(number: int) -> Task:
    return Task(number, group="free" if number == 9 else None)


adaptive_ids = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 9])
adaptive_ops = st.one_of(
    *(
        st.tuples(st.just(name), adaptive_ids)
        for name in ("acquire", "acquire", "can", "release", "rollback", "failed")
    ),
    *(st.tuples(st.just("ok"), adaptive_ids, st.sampled_from([None, 0.5, 3.0])),) * 2,
    st.tuples(st.just("throttled"), adaptive_ids, st.sampled_from([None, 0.0, 1.0, 4.0])),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0])),
)


def adaptive_apply(clock: ManualClock, gate: AdaptiveConcurrency, op: tuple[Any, ...]) -> object:
    name, arg, *rest = op
    if name == "advance":
        return clock.advance(arg)
    task = adaptive_task(arg)
    calls: dict[str, Callable[[], object]] = {
        "acquire": lambda: gate.try_acquire(task),
        "can": lambda: gate.can_acquire(task),
        "release": lambda: gate.release(task),
        "rollback": lambda: gate.rollback(task),
        "ok": lambda: gate.record(task, ok=True, duration=rest[0] if rest else None),
        "failed": lambda: gate.record(task, ok=False),
        "throttled": lambda: gate.record(
            task, ok=False, throttled=True, retry_after=rest[0] if rest else None
        ),
    }
    return outcome(calls[name])


def adaptive_view(gate: AdaptiveConcurrency) -> object:
    return (
        gate.limit,
        gate.in_flight,
        gate.next_wakeup(),
        gate.can_acquire(Task("probe")),
        [gate.demand(adaptive_task(n)) for n in (0, 9)],
    )


@given(
    before=st.lists(adaptive_ops, min_size=5, max_size=30),
    after=st.lists(adaptive_ops, min_size=5, max_size=20),
)
def test_adaptive_concurrency_loaded_from_its_snapshot_decides_alike(
    before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    twin_runs_alike(adaptive_gate, adaptive_apply, adaptive_view, before, after)


def used_adaptive(clock: ManualClock | None = None) -> AdaptiveConcurrency:
    """An adaptive gate that learned something in every field: a limit off its start,
    tasks in flight, a throttle's pause and the wakeup it owes."""
    clock = clock or ManualClock()
    gate = adaptive_gate(clock)
    for n in range(3):
        assert gate.try_acquire(adaptive_task(n))
    gate.record(adaptive_task(0), ok=True, duration=0.5)
    gate.release(adaptive_task(0))
    gate.record(adaptive_task(1), ok=False, throttled=True, retry_after=5.0)
    clock.advance(1.0)
    assert gate.in_flight == 2 and gate.next_wakeup() == 5.0 and gate.limit == 1.75
    return gate


def adaptive_observed(gate: AdaptiveConcurrency) -> object:
    return (as_json(gate.snapshot()), adaptive_view(gate))


ADAPTIVE_CORRUPTIONS: dict[str, tuple[Any, type[Exception], str]] = {
    "future version": (change(("version",), 2), SnapshotError, "version 2"),
    "another kind": (change(("kind",), "PoolGate"), SnapshotError, "not of a AdaptiveConcurrency"),
    "another minimum": (change(("minimum",), 2.0), SnapshotError, "minimum is 2.0"),
    "another maximum": (change(("maximum",), 7), SnapshotError, "maximum is 7"),
    "another increase": (change(("increase",), 1.0), SnapshotError, "increase is 1.0"),
    "another decrease": (change(("decrease",), 0.25), SnapshotError, "decrease is 0.25"),
    "no latency target": (change(("latency_target",), None), SnapshotError, "latency_target"),
    "latency target NaN": (change(("latency_target",), math.nan), SnapshotError, "latency_target"),
    "limit NaN": (change(("limit",), math.nan), SnapshotError, "limit must be a finite number"),
    "limit not a number": (change(("limit",), "2"), SnapshotError, "limit must be a finite"),
    "limit below minimum": (change(("limit",), 0.5), SnapshotError, "limit is 0.5, outside"),
    "limit above maximum": (change(("limit",), 6.5), SnapshotError, "limit is 6.5, outside"),
    "in flight negative": (change(("in_flight",), -1), SnapshotError, "in_flight must be an int"),
    "in flight a float": (change(("in_flight",), 2.0), SnapshotError, "in_flight must be an int"),
    "in flight below held": (change(("in_flight",), 1), SnapshotError, "fewer than the 2 tasks"),
    "held not a list": (change(("held",), 1), SnapshotError, "held must be a list"),
    "held id not an id": (change(("held", 0), [1]), SnapshotError, r"held\[0\] must be an id"),
    "held twice": (change(("held",), [1, 1]), SnapshotError, "twice"),
    "pause NaN": (change(("paused_until",), math.nan), SnapshotError, "paused_until must be"),
    "pause infinite": (change(("paused_until",), math.inf), SnapshotError, "paused_until"),
    "wake not a number": (change(("wake",), [5.0]), SnapshotError, "wake must be a finite"),
    "unknown field": (change(("surprise",), 1), SnapshotError, "unknown fields"),
    "not a dict": (lambda data: data.clear(), SnapshotError, "no field 'kind'"),
}


def test_a_snapshot_taken_during_a_throttle_pause_keeps_the_pause() -> None:
    clock = ManualClock()
    gate = used_adaptive(clock)  # paused until 5.0, limit 1.75, two in flight
    twin_clock = ManualClock(start=clock.now())
    twin = adaptive_gate(twin_clock)
    twin.load_snapshot(as_json(gate.snapshot()))
    for subject, its_clock in ((gate, clock), (twin, twin_clock)):
        subject.release(adaptive_task(1))
        subject.release(adaptive_task(2))
        assert not subject.try_acquire(adaptive_task(3))  # paused, though under the limit
        subject.record(adaptive_task(1), ok=False, throttled=True)  # the same pause's echo
        assert subject.limit == 1.75  # one signal, one decrease
        its_clock.set(5.0)
        assert subject.try_acquire(adaptive_task(3)) and subject.next_wakeup() is None


# -- corrupted snapshots, of either gate ------------------------------------------------

CORRUPTED: dict[str, tuple[Callable[[], Any], Callable[[Any], object], dict[str, Any]]] = {
    "keyed": (used_keyed, keyed_observed, KEYED_CORRUPTIONS),
    "adaptive": (used_adaptive, adaptive_observed, ADAPTIVE_CORRUPTIONS),
}


def corruptions(gate: str) -> dict[str, tuple[Any, type[Exception], str]]:
    """The gate's corruptions, and each field of its snapshot (and its limiter's) removed."""
    used, _, table = CORRUPTED[gate]
    data = used().snapshot()
    paths: list[tuple[str, ...]] = [(name,) for name in data]
    if "limiter" in data:
        paths += [("limiter", name) for name in data["limiter"]]
    removed = {
        f"{'.'.join(path)} removed": (
            change(path, remove=True),
            SnapshotError,
            f"no field '{path[-1]}'",
        )
        for path in paths
    }
    return {**table, **removed}


@pytest.mark.parametrize(
    ("gate", "corruption"), [(gate, name) for gate in CORRUPTED for name in corruptions(gate)]
)
def test_a_corrupted_snapshot_is_refused_and_the_gate_unchanged(gate: str, corruption: str) -> None:
    used, observed, _ = CORRUPTED[gate]
    corrupt, error, match = corruptions(gate)[corruption]
    assert_refused(used, load_corrupted(used, corrupt), error, observed, match=match)


# -- a Distributor with both gates ------------------------------------------------------


def both_gates(clock: ManualClock) -> list[Any]:
    return [
        KeyedRateGate(KeyedRateLimiter(rate=1, per=4.0, burst=1, clock=clock), "api"),
        AdaptiveConcurrency(clock.now, initial=2, minimum=1, maximum=4),
        RateGate(RateLimiter(rate=3, per=1.0, clock=clock), "api"),
    ]


def test_a_distributor_with_both_gates_restores_and_decides_alike() -> None:
    clock = ManualClock()
    d = Distributor(clock, gates=both_gates(clock), lease=30.0)
    d.add_worker(Worker("w", capacity=4))
    for i, tenant in enumerate(["acme", "acme", "globex", "initech", "globex", "acme"]):
        d.submit(Task(i, tenant=tenant, resources={"api": 1}))
    assert [a.task.id for a in d.dispatch()] == [0, 2]  # acme's bucket, then the limit of 2
    d.fail(0, error="429", throttled=True, retry_after=3.0)  # halves the limit, pauses
    clock.advance(1.0)
    assert d.dispatch() == []
    data = as_json(d.snapshot())
    # initech's bucket was taken, then refunded when the adaptive gate refused task 3.
    buckets = data["gates"]["gates"][0]["limiter"]["buckets"]
    assert [key for key, _, _ in buckets] == ["acme", "globex", "initech"]
    assert data["gates"]["gates"][1]["held"] == [2]

    later = ManualClock(start=clock.now())
    back = Distributor.restore(data, later, gates=both_gates(later))
    assert as_json(back.snapshot()) == data
    for subject, its_clock in ((d, clock), (back, later)):
        assert subject.next_wakeup() == 3.0  # the pause travelled
        its_clock.set(3.0)
        assert [a.task.id for a in subject.dispatch()] == []  # limit 1, task 2 in flight
        subject.complete(2, duration=0.1)
        assert [a.task.id for a in subject.dispatch()] == [3]  # acme waits for its bucket
        its_clock.set(4.0)
        subject.complete(3, duration=0.1)
        # One unit each for acme and globex again, under a limit grown to 2.5.
        assert [a.task.id for a in subject.dispatch()] == [1, 4]
    assert as_json(back.snapshot()) == as_json(d.snapshot())
