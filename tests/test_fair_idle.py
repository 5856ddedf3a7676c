"""FairScheduler: idle tenants are dropped, and dropping them changes no decision.

A tenant with nothing queued or running loses its record; only a debt (its
tag ahead of the virtual time), a rate bucket that is not full again, or a
nested scheduler of its own still owing or refilling is kept, until it
lapses. The differential test runs every operation on the scheduler and on a
twin that never drops a record (the behaviour before idle tenants were
dropped) and requires the same answers; the memory tests
measure what 100 000 tenants seen once leave behind (tracemalloc, not timed).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Hashable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from taskdist import Eviction, FairScheduler, ManualClock, Quota, Task, WaitingReason
from taskdist.queues._idle_tenants import IdleTenants

# -- behaviour ----------------------------------------------------------------


def test_an_idle_tenant_is_dropped_and_its_configuration_stays() -> None:
    clock = ManualClock()
    fair = FairScheduler(
        clock, weights={"a": 3.0}, plans={"pro": Quota(max_concurrent=2)}, tenant_plan={"a": "pro"}
    )
    fair.push(Task("a0", tenant="a"))
    task = fair.pop()
    assert task is not None and "a" in fair.stats().tenants
    fair.release(task)
    assert fair.stats().tenants == {}
    fair.push(Task("a1", tenant="a"))
    back = fair.stats().tenants["a"]
    assert (back.weight, back.plan, back.quota) == (3.0, "pro", Quota(max_concurrent=2))
    assert back.dispatched == 0  # counters start again with the new record


def test_a_tenant_that_leaves_with_a_debt_comes_back_with_it() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock)
    fair.push(Task("a-big", tenant="a", cost=10.0))
    for i in range(30):
        fair.push(Task(f"b{i}", tenant="b"))
    big = fair.pop()
    assert big is not None and big.id == "a-big"
    fair.release(big)  # a is dropped, owing 10
    assert "a" not in fair.stats().tenants
    for i in range(4):
        fair.push(Task(f"a{i}", tenant="a"))
    order = [t.tenant for t in (fair.pop() for _ in range(11))]  # type: ignore[union-attr]
    assert order == ["b"] * 10 + ["a"]  # b catches up 10 before a's turn


def test_a_tenant_that_leaves_with_an_empty_bucket_gets_no_new_burst() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, quotas={"a": Quota(rate=2, per=10.0)})
    for i in range(2):
        fair.push(Task(f"a{i}", tenant="a"))
    for _ in range(2):
        task = fair.pop()
        assert task is not None
        fair.release(task)
    assert "a" not in fair.stats().tenants  # dropped, its bucket kept
    fair.push(Task("a2", tenant="a"))
    assert fair.pop() is None
    waiting = fair.why_waiting("a2")
    assert waiting.reason is WaitingReason.RATE_QUOTA and waiting.until == 5.0
    clock.advance(5.0)
    assert fair.pop() is not None


def test_a_weight_set_while_away_rescales_the_kept_debt() -> None:
    def run(change_while_away: bool) -> list[Hashable]:
        clock = ManualClock()
        fair = FairScheduler(clock)
        fair.push(Task("a-big", tenant="a", cost=8.0))
        for i in range(40):
            fair.push(Task(f"b{i}", tenant="b"))
        big = fair.pop()
        assert big is not None
        fair.release(big)
        fair.pop()  # b once: the virtual time moves, a still owes
        if change_while_away:
            fair.set_weight("a", 4.0)
        fair.push(Task("a1", tenant="a"))
        if not change_while_away:
            fair.set_weight("a", 4.0)
        return [t.tenant for t in (fair.pop() for _ in range(4))]  # type: ignore[union-attr]

    # The same order whether the weight changed while a was dropped or after it came back.
    assert run(True) == run(False) == ["b", "a", "b", "b"]


def test_nothing_of_a_tenant_is_kept_once_its_debt_and_bucket_lapse() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, default_plan="p", plans={"p": Quota(rate=1, per=4.0)})
    for tenant in ("a", "b", "c"):
        fair.push(Task(tenant, tenant=tenant, cost=2.0))
    for _ in range(3):
        task = fair.pop()
        assert task is not None
        fair.release(task)
    assert fair.stats().tenants == {}
    assert "3 tenants kept" in _kept(fair)
    clock.advance(4.0)  # every bucket is full again; the busy period ended
    fair.next_wakeup()
    assert "0 tenants kept" in _kept(fair)


def _kept(fair: FairScheduler) -> str:
    return f"{len(fair._idle)} tenants kept"  # a private count: what is held for dropped tenants


# -- dropping changes no decision ----------------------------------------------


class KeepEveryTenant(FairScheduler):
    """The scheduler as it was before idle tenants were dropped: records stay forever.

    A record that would have been dropped is idle; the nested scheduler of one that
    comes back starts its keys level if the busy period ended, or the virtual time
    passed every tag given out, while it was idle (as a kept one's debts lapse)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_since: dict[Hashable, tuple[int, int]] = {}

    def _retire(self, rec, now):  # type: ignore[no-untyped-def]
        self._eligible.discard(rec)
        self._blocked.discard(rec)
        self._expiry.discard(rec)
        self.idle_since[rec.key] = (self._busy_periods, self._horizon)

    def push(self, task: Task, *, enqueued_at: float | None = None) -> Eviction | None:
        since = self.idle_since.pop(task.tenant, None)
        rec = self._tenants.get(task.tenant)
        if since is not None and rec is not None and isinstance(rec.inner, FairScheduler):
            periods, horizon = since
            if periods != self._busy_periods or self._virtual > horizon:
                rec.inner._start_level()
        return super().push(task, enqueued_at=enqueued_at)


def by_key(clock: ManualClock) -> FairScheduler:
    """A tenant's own scheduler: its tasks' keys share its turns, "k0" twice as much,
    "k2" at most one a second."""
    return FairScheduler(
        clock,
        tenant_of=lambda t: t.key,
        weights={"k0": 2.0},
        quotas={"k2": Quota(rate=1, per=1.0)},
    )


TENANTS = ["a", "b", "c", "d"]
QUOTAS = [None, Quota(rate=1, per=2.0), Quota(rate=2, per=3.0), Quota(max_concurrent=1)]

operation = st.one_of(
    st.tuples(
        st.just("push"),
        st.sampled_from(TENANTS),
        st.sampled_from([0.0, 0.5, 1.0, 4.0]),
        st.sampled_from([None, None, 2.0]),
        st.sampled_from([None, None, 1.0, 3.0]),
        st.sampled_from(["k0", "k1", "k2"]),  # its key, for a nested scheduler
    ),
    st.tuples(st.just("pop"), st.booleans()),
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.tuples(st.just("remove"), st.integers(0, 20)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0])),
    st.tuples(st.just("expire")),
    st.tuples(st.just("weight"), st.sampled_from(TENANTS), st.sampled_from([None, 0.5, 2.0])),
    st.tuples(st.just("quota"), st.sampled_from(TENANTS), st.sampled_from(QUOTAS)),
)


def cheap(task: Task) -> bool:
    return task.cost <= 1.0


@settings(max_examples=100)
@given(
    ops=st.lists(operation, max_size=60),
    rates=st.lists(st.sampled_from(QUOTAS), min_size=4, max_size=4),
    aware=st.booleans(),
    nested=st.booleans(),
)
def test_dropping_idle_tenants_changes_no_decision(
    ops: list[tuple[object, ...]], rates: list[Quota | None], aware: bool, nested: bool
) -> None:
    quotas = {t: q for t, q in zip(TENANTS, rates, strict=True) if q is not None}
    clock = ManualClock()
    inner = by_key if nested else None
    fair = FairScheduler(clock, quotas=quotas, deadline_aware=aware, inner=inner)
    twin = KeepEveryTenant(clock, quotas=quotas, deadline_aware=aware, inner=inner)
    same_answers(clock, fair, twin, ops)


# Two tenants, each leaving often with tasks of its keys still queued: what a nested
# scheduler keeps for a dropped tenant decides which key goes first when it returns.
nested_push = st.tuples(
    st.just("push"),
    st.sampled_from(["a", "b"]),
    st.sampled_from([0.0, 1.0, 4.0]),
    st.none(),
    st.none(),
    st.sampled_from(["k0", "k1", "k2"]),
)
comings_and_goings = st.one_of(
    nested_push,
    nested_push,
    st.tuples(st.just("pop"), st.just(False)),
    st.tuples(st.just("release"), st.integers(0, 3)),
    st.tuples(st.just("remove"), st.integers(0, 20)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0])),
)


@settings(max_examples=300)
@given(ops=st.lists(comings_and_goings, min_size=8, max_size=40))
@example(  # "a" leaves owing for "k0"; back, its "k1" goes first
    ops=[
        ("push", "a", 1.0, None, None, "k0"),
        ("push", "a", 1.0, None, None, "k1"),
        ("pop", False),
        ("release", 0),
        ("remove", 0),
        ("push", "a", 1.0, None, None, "k0"),
        ("push", "a", 1.0, None, None, "k1"),
        ("pop", False),
    ]
)
def test_dropping_tenants_with_schedulers_of_their_own_changes_no_decision(
    ops: list[tuple[object, ...]],
) -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, inner=by_key)
    twin = KeepEveryTenant(clock, inner=by_key)
    same_answers(clock, fair, twin, ops)


def same_answers(
    clock: ManualClock, fair: FairScheduler, twin: FairScheduler, ops: list[tuple[object, ...]]
) -> None:
    """Run ``ops`` on both; every answer, and what is queued in what order, must agree."""
    pushed: list[Task] = []
    running: list[Task] = []
    for op in ops:
        kind = op[0]
        if kind == "push":
            _, tenant, cost, ttl, due, key = op
            deadline = None if due is None else clock.now() + due  # type: ignore[operator]
            task = Task(len(pushed), tenant=tenant, key=key, cost=cost, ttl=ttl, deadline=deadline)  # type: ignore[arg-type]
            pushed.append(task)
            fair.push(task)
            twin.push(task)
        elif kind == "pop":
            where = cheap if op[1] else None
            got, expected = fair.pop(where), twin.pop(where)
            assert got is expected
            if got is not None:
                running.append(got)
        elif kind == "release" and running:
            task = running.pop(op[1] % len(running))  # type: ignore[operator]
            fair.release(task)
            twin.release(task)
        elif kind == "remove":
            queued = [t.id for t in pushed if t.id in twin]
            if queued:
                victim = queued[op[1] % len(queued)]  # type: ignore[operator]
                assert fair.remove(victim) is twin.remove(victim)
        elif kind == "advance":
            clock.advance(op[1])  # type: ignore[arg-type]
        elif kind == "expire":
            assert fair.expire() == twin.expire()
        elif kind == "weight":
            fair.set_weight(op[1], op[2])  # type: ignore[arg-type]
            twin.set_weight(op[1], op[2])  # type: ignore[arg-type]
        elif kind == "quota":
            fair.set_quota(op[1], op[2])  # type: ignore[arg-type]
            twin.set_quota(op[1], op[2])  # type: ignore[arg-type]
        assert len(fair) == len(twin)
        assert fair.virtual_time == twin.virtual_time
        assert fair.next_wakeup() == twin.next_wakeup()
        for task in pushed:
            assert (task.id in fair) == (task.id in twin)
            if task.id in twin:
                assert fair.why_waiting(task.id) == twin.why_waiting(task.id)
    while (task := twin.pop()) is not None:
        assert fair.pop() is task
    assert fair.pop() is None


# -- memory -------------------------------------------------------------------

IDLE_BUDGET = 200
"""Bytes per tenant seen once that may stay held after it went idle (20 MB for 100 000)."""


def held_after(run: Callable[[], object]) -> int:
    """Bytes still allocated after ``run()`` (tracemalloc), garbage collected.

    The collector is paused while ``run`` makes its 100 000 records (it would
    walk them over and over); what is garbage afterwards is collected before
    the count.
    """
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gc.enable()
    return after - before


def test_100k_tenants_seen_once_hold_little_once_idle() -> None:
    clock = ManualClock()
    tasks = [Task(i, tenant=f"user-{i}") for i in range(100_000)]
    fair = FairScheduler(clock, default_plan="free", plans={"free": Quota(rate=5, per=10.0)})

    def run() -> FairScheduler:
        for task in tasks:
            fair.push(task)
        while (task := fair.pop()) is not None:
            fair.release(task)
        clock.advance(10.0)  # their buckets are full again
        fair.next_wakeup()
        return fair

    assert held_after(run) <= IDLE_BUDGET * len(tasks)
    assert fair.stats().tenants == {}


def test_tenants_seen_once_beside_a_busy_one_hold_little_once_idle() -> None:
    """The busy tenant keeps the scheduler from emptying: no clean sweep at the end."""
    clock = ManualClock()
    tasks = [Task(i, tenant=f"user-{i}") for i in range(20_000)]
    busy = [Task(f"busy-{i}", tenant="busy") for i in range(20_100)]
    fair = FairScheduler(clock)

    def run() -> FairScheduler:
        for task in busy:
            fair.push(task)
        for task in tasks:
            fair.push(task)
        for _ in range(40_050):  # every user task, and the busy tenant past their tags
            task = fair.pop()
            assert task is not None
            fair.release(task)
        fair.next_wakeup()
        return fair

    # What the busy tenant's own queue keeps of its 20 000 tasks is its queue's business.
    assert held_after(run) <= IDLE_BUDGET * len(tasks) + 100 * len(busy)
    assert set(fair.stats().tenants) == {"busy"}


def test_idle_tenants_listed_each_once_when_an_earlier_debt_lapsed() -> None:
    # Debts lapse smallest first: the lapsed ones lead the sorted list, and only they
    # move on to wait for their buckets (a snapshot listing one twice is refused).
    clock = ManualClock()
    quota = Quota(rate=1, per=2.0)
    idle = IdleTenants(lambda queue: None, lambda queue: False)
    for tenant, start in (("early", 5), ("late", 50)):
        limiter = quota.rate_limiter(clock)
        assert limiter.try_acquire()  # its bucket refills after it leaves
        idle.keep(tenant, start, 1.0, limiter, quota, virtual=0, now=clock.now())
    debts, refills = idle.listed(virtual=10, now=clock.now())
    assert [entry[2] for entry in debts] == ["late"]
    assert [entry[2] for entry in refills] == ["early"]
