"""Red team: bad, extreme and re-entrant calls on a FairScheduler.

Every row is one call that must be refused with a specific error, run with
``assert_refused`` against an untouched twin built the same way: afterwards
every observable answer (stats, membership, why_waiting, next_wakeup, the
known tenants and a full drain with releases) must be the twin's. The
``Queue`` contract's own calls are in ``test_hostile_queues.py``; these are
the FairScheduler's: tenants (strict mode, NaN), weights, plans, quotas, the
``inner`` factory, release, unpop and callbacks. Extreme but valid numbers
(a cost of 1e16 among costs of 1, weights at the ends of their range) must
keep the weighted split.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hostile import assert_refused

from taskdist import (
    DeadlineScheduler,
    DuplicateTaskError,
    FairScheduler,
    InvalidArgumentError,
    InvalidTypeError,
    KeyShare,
    ManualClock,
    OverReleaseError,
    PriorityQueue,
    Quota,
    QuotaExceededError,
    ReentrancyError,
    SnapshotError,
    Task,
    TaskdistError,
    TaskStateError,
    UnknownPlanError,
    UnknownTaskError,
    UnknownTenantError,
    UnsatisfiableDemandError,
)
from taskdist.queues.fair import DEFAULT_AGING_RATE

NAN = float("nan")
PLANS = {"free": Quota(max_concurrent=1, rate=2, per=10.0), "pro": Quota(weight=3.0)}

# -- builders: the same scheduler each time ---------------------------------------------


def tasks() -> list[Task]:
    return [
        Task("a0", tenant="a", cost=1.0, ttl=30.0),
        Task("a1", tenant="a", cost=2.0, priority=1),
        Task("b0", tenant="b", cost=0.5),
        Task("c0", tenant="c", cost=1.5, ttl=60.0),
        Task("c1", tenant="c", cost=1.0),
    ]


def configured(**kwargs: Any) -> FairScheduler:
    clock = ManualClock(start=10.0)
    fair = FairScheduler(
        clock,
        weights={"a": 2.0},
        plans=PLANS,
        tenant_plan={"b": "free", "c": "pro"},
        quotas={"d": Quota(max_queued=1)},
        **kwargs,
    )
    for task in tasks():
        fair.push(task)
    fair.push(Task("d0", tenant="d"))  # d is at its max_queued
    running = fair.pop()  # one task running, so release has something to refuse around
    assert running is not None
    return fair


def plain() -> FairScheduler:
    return configured()


def strict() -> FairScheduler:
    return configured(strict_tenants=True)


def bypassing() -> FairScheduler:
    return configured(critical_bypass=True)


def per_tenant_queues() -> FairScheduler:
    def make(clock: ManualClock, tenant: Hashable) -> Any:
        return DeadlineScheduler(clock) if tenant == "c" else PriorityQueue(clock)

    return configured(inner=make)


def deadline_queues() -> FairScheduler:
    # Tenant queues filing their tasks in the scheduler's one id table, the lane's too.
    return configured(inner=DeadlineScheduler, critical_bypass=True)


def key_shares() -> FairScheduler:
    # Each tenant's turns shared among its keys, the keys capped by a plan of their own.
    keys = KeyShare({None: 2.0}, plans={"user": Quota(max_concurrent=2)}, default_plan="user")
    return configured(inner=keys, critical_bypass=True)


IDS = ["a0", "a1", "b0", "c0", "c1", "new", "d0"]


def snapshot(value: object) -> object:
    """A snapshot made comparable: attrs classes and mappings by sorted items."""
    if attrs.has(type(value)):
        return snapshot(attrs.asdict(value, recurse=False))  # type: ignore[arg-type]
    if isinstance(value, dict):
        return sorted((repr(k), snapshot(v)) for k, v in value.items())
    return value


def observe(fair: FairScheduler) -> object:
    """Everything a caller can see, then a full drain with releases (it consumes it)."""
    held = [i for i in IDS if i in fair]
    seen: list[object] = [
        len(fair),
        held,
        fair.next_wakeup(),
        fair.virtual_time,
        snapshot(fair.stats()),
        [fair.why_waiting(i) for i in held],
        sorted(map(repr, fair.known_tenants())),
        repr(fair),
    ]
    order = []
    clock = fair._clock  # the scheduler's own ManualClock: drain through the rate quotas
    for _ in range(50):
        task = fair.pop()
        if task is None:
            clock.advance(5.0)  # type: ignore[attr-defined]
            continue
        order.append(task.id)
        fair.release(task)
    seen.append(order)
    return seen


BUILDERS: dict[str, Callable[[], FairScheduler]] = {
    "plain": plain,
    "strict": strict,
    "bypass": bypassing,
    "per-tenant queues": per_tenant_queues,
    "deadline queues": deadline_queues,
    "key shares": key_shares,
}


def running_task(fair: FairScheduler) -> Task:
    """The task ``configured`` popped (a running one)."""
    task_id = next(iter(fair._running))  # which one it is depends on the weights
    return next(t for t in tasks() if t.id == task_id)


def inside(call: Callable[[FairScheduler], object]) -> Callable[[FairScheduler], object]:
    """A pop whose where= predicate makes ``call`` on the same scheduler."""
    return lambda f: f.pop(lambda task: bool(call(f)) or True)


def inside_peek(call: Callable[[FairScheduler], object]) -> Callable[[FairScheduler], object]:
    return lambda f: f.peek(lambda task: bool(call(f)) or True)


# -- every builder refuses these ------------------------------------------------------------

CASES: list[tuple[str, Callable[[FairScheduler], object], type[BaseException]]] = [
    # weights
    ("set_weight 0", lambda f: f.set_weight("a", 0.0), InvalidArgumentError),
    ("set_weight -1", lambda f: f.set_weight("a", -1.0), InvalidArgumentError),
    ("set_weight 1e-300", lambda f: f.set_weight("a", 1e-300), InvalidArgumentError),
    ("set_weight 1e-10", lambda f: f.set_weight("a", 1e-10), InvalidArgumentError),
    ("set_weight 1e10", lambda f: f.set_weight("a", 1e10), InvalidArgumentError),
    ("set_weight 1e308", lambda f: f.set_weight("a", 1e308), InvalidArgumentError),
    ("set_weight nan", lambda f: f.set_weight("a", NAN), InvalidArgumentError),
    ("set_weight inf", lambda f: f.set_weight("a", math.inf), InvalidArgumentError),
    ("set_weight -inf", lambda f: f.set_weight("a", -math.inf), InvalidArgumentError),
    ("set_weight 10**400", lambda f: f.set_weight("a", 10**400), InvalidArgumentError),
    ("set_weight str", lambda f: f.set_weight("a", "2"), InvalidTypeError),
    ("set_weight bool", lambda f: f.set_weight("a", True), InvalidTypeError),
    ("set_weight list", lambda f: f.set_weight("a", [2.0]), InvalidTypeError),
    ("set_weight complex", lambda f: f.set_weight("a", 2j), InvalidTypeError),
    # tenants that are not identities
    ("set_weight nan tenant", lambda f: f.set_weight(NAN, 2.0), InvalidArgumentError),
    ("set_weight Decimal nan", lambda f: f.set_weight(Decimal("NaN"), 2.0), InvalidArgumentError),
    ("set_weight (nan,) tenant", lambda f: f.set_weight((NAN,), 2.0), InvalidArgumentError),
    ("set_weight list tenant", lambda f: f.set_weight(["a"], 2.0), InvalidTypeError),
    ("set_weight dict tenant", lambda f: f.set_weight({}, 2.0), InvalidTypeError),
    ("set_plan nan tenant", lambda f: f.set_plan(NAN, "free"), InvalidArgumentError),
    ("set_plan list tenant", lambda f: f.set_plan(["a"], "free"), InvalidTypeError),
    ("set_quota nan tenant", lambda f: f.set_quota(NAN, Quota()), InvalidArgumentError),
    ("set_quota set tenant", lambda f: f.set_quota({"a"}, Quota()), InvalidTypeError),
    ("add_tenant nan", lambda f: f.add_tenant(NAN), InvalidArgumentError),
    ("add_tenant list", lambda f: f.add_tenant(["x"]), InvalidTypeError),
    ("remove_tenant nan", lambda f: f.remove_tenant(NAN), InvalidArgumentError),
    ("remove_tenant list", lambda f: f.remove_tenant(["a"]), InvalidTypeError),
    # plans and quotas
    ("set_plan unknown", lambda f: f.set_plan("a", "gold"), UnknownPlanError),
    ("set_plan list", lambda f: f.set_plan("a", ["free"]), InvalidTypeError),
    ("set_plan nan", lambda f: f.set_plan("a", NAN), UnknownPlanError),
    ("set_quota dict", lambda f: f.set_quota("a", {"max_concurrent": 1}), InvalidTypeError),
    ("set_quota int", lambda f: f.set_quota("a", 3), InvalidTypeError),
    # add_tenant's settings are checked before anything changes
    ("add_tenant weight 0", lambda f: f.add_tenant("x", weight=0.0), InvalidArgumentError),
    ("add_tenant weight nan", lambda f: f.add_tenant("x", weight=NAN), InvalidArgumentError),
    ("add_tenant weight str", lambda f: f.add_tenant("x", weight="1"), InvalidTypeError),
    ("add_tenant plan unknown", lambda f: f.add_tenant("x", plan="gold"), UnknownPlanError),
    ("add_tenant quota dict", lambda f: f.add_tenant("x", quota={}), InvalidTypeError),
    (
        "add_tenant good weight, bad plan",
        lambda f: f.add_tenant("a", weight=5.0, plan="gold"),
        UnknownPlanError,
    ),
    # removing tenants
    ("remove_tenant never known", lambda f: f.remove_tenant("zzz"), UnknownTenantError),
    ("remove_tenant with tasks queued", lambda f: f.remove_tenant("c"), TaskStateError),
    # pushing
    ("push a str", lambda f: f.push("x"), InvalidTypeError),
    ("push a queued id", lambda f: f.push(Task("a1", tenant="z")), DuplicateTaskError),
    ("push the running id", lambda f: f.push(running_task(f)), DuplicateTaskError),
    ("push beyond max_queued", lambda f: f.push(Task("d1", tenant="d")), QuotaExceededError),
    ("push enqueued_at nan", lambda f: f.push(Task("new"), enqueued_at=NAN), InvalidArgumentError),
    (
        "push enqueued_at future",
        lambda f: f.push(Task("new"), enqueued_at=1e9),
        InvalidArgumentError,
    ),
    # releasing and putting back
    ("release a str", lambda f: f.release("a0"), InvalidTypeError),
    ("release a queued task", lambda f: f.release(Task("c1", tenant="c")), OverReleaseError),
    ("release a stranger", lambda f: f.release(Task("zzz")), OverReleaseError),
    ("unpop after a change", lambda f: f.unpop(running_task(f)), TaskStateError),
    ("unpop a str", lambda f: f.unpop("a0"), InvalidTypeError),
    ("unpop a look-alike", lambda f: f.unpop(Task("a0", tenant="a")), TaskStateError),
    # taking tasks along with a pop, and asking whether tasks could start together
    ("take_along a str", lambda f: f.take_along("a0"), InvalidTypeError),  # type: ignore[arg-type]
    ("take_along a Task", lambda f: f.take_along(Task("x")), InvalidTypeError),  # type: ignore[arg-type]
    ("take_along a non-Task", lambda f: f.take_along([Task("x", tenant="a"), 3]), InvalidTypeError),  # type: ignore[list-item]
    (
        "take_along a queued id",
        lambda f: f.take_along([Task("a1", tenant="a")]),
        DuplicateTaskError,
    ),
    ("take_along the running id", lambda f: f.take_along([running_task(f)]), DuplicateTaskError),
    (
        "take_along one id twice",
        lambda f: f.take_along([Task("x", tenant="a"), Task("x", tenant="a")]),
        DuplicateTaskError,
    ),
    (
        "take_along beyond max_concurrent",
        lambda f: f.take_along(
            [Task("x", tenant="a"), Task("y", tenant="b"), Task("z", tenant="b")]
        ),
        QuotaExceededError,
    ),
    ("check_together a str", lambda f: f.check_together("a0"), InvalidTypeError),  # type: ignore[arg-type]
    ("check_together a dict", lambda f: f.check_together({}), InvalidTypeError),  # type: ignore[arg-type]
    ("check_together a non-Task", lambda f: f.check_together([None]), InvalidTypeError),  # type: ignore[list-item]
    (
        "check_together one id twice",
        lambda f: f.check_together([Task("x", tenant="a"), Task("x", tenant="b")]),
        DuplicateTaskError,
    ),
    (
        "check_together beyond max_concurrent",
        lambda f: f.check_together([Task("y", tenant="b"), Task("z", tenant="b")]),
        UnsatisfiableDemandError,
    ),
    # looking
    ("why_waiting unknown", lambda f: f.why_waiting("zzz"), UnknownTaskError),
    ("why_waiting running", lambda f: f.why_waiting(running_task(f).id), UnknownTaskError),
    ("why_waiting list", lambda f: f.why_waiting(["a0"]), InvalidTypeError),
    ("remove unknown", lambda f: f.remove("zzz"), UnknownTaskError),
    ("remove running", lambda f: f.remove(running_task(f).id), UnknownTaskError),
    ("remove list", lambda f: f.remove(["a0"]), InvalidTypeError),
    ("pop where=5", lambda f: f.pop(5), InvalidTypeError),  # type: ignore[arg-type]
    ("peek where=str", lambda f: f.peek("a"), InvalidTypeError),  # type: ignore[arg-type]
    # callbacks calling back in
    ("set_weight inside where", inside(lambda f: f.set_weight("a", 5.0)), ReentrancyError),
    ("set_plan inside where", inside(lambda f: f.set_plan("a", "pro")), ReentrancyError),
    ("set_quota inside where", inside(lambda f: f.set_quota("a", Quota())), ReentrancyError),
    ("add_tenant inside where", inside(lambda f: f.add_tenant("x")), ReentrancyError),
    ("remove_tenant inside where", inside(lambda f: f.remove_tenant("a")), ReentrancyError),
    ("release inside where", inside(lambda f: f.release(running_task(f))), ReentrancyError),
    ("unpop inside where", inside(lambda f: f.unpop(running_task(f))), ReentrancyError),
    ("push inside where", inside(lambda f: f.push(Task("new", tenant="a"))), ReentrancyError),
    ("pop inside where", inside(lambda f: f.pop()), ReentrancyError),
    ("take_along inside where", inside(lambda f: f.take_along([])), ReentrancyError),
    (
        "check_together inside where",
        inside(lambda f: f.check_together([Task("x", tenant="a")])),
        ReentrancyError,
    ),
    ("remove inside where", inside(lambda f: f.remove("c1")), ReentrancyError),
    ("expire inside where", inside(lambda f: f.expire()), ReentrancyError),
    (
        "expire_with_reasons inside where",
        inside(lambda f: f.expire_with_reasons()),
        ReentrancyError,
    ),
    ("next_wakeup inside where", inside(lambda f: f.next_wakeup()), ReentrancyError),
    ("set_weight inside peek", inside_peek(lambda f: f.set_weight("a", 5.0)), ReentrancyError),
    ("pop inside peek", inside_peek(lambda f: f.pop()), ReentrancyError),
]


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
@pytest.mark.parametrize(
    ("call", "error"), [(c, e) for _, c, e in CASES], ids=[n for n, _, _ in CASES]
)
def test_refused_calls_change_nothing(
    build: Callable[[], FairScheduler],
    call: Callable[[FairScheduler], object],
    error: type[BaseException],
) -> None:
    assert_refused(build, call, error, observe)


def test_a_second_release_is_refused_and_changes_nothing() -> None:
    def released() -> FairScheduler:
        fair = configured()
        fair.release(running_task(fair))
        return fair

    task = running_task(configured())
    assert_refused(released, lambda f: f.release(task), OverReleaseError, observe)


# -- strict tenants ------------------------------------------------------------------------

STRICT_CASES: list[tuple[str, Callable[[FairScheduler], object]]] = [
    ("push unknown", lambda f: f.push(Task("new", tenant="stranger"))),
    ("push tenant None", lambda f: f.push(Task("new"))),
    ("set_weight unknown", lambda f: f.set_weight("stranger", 2.0)),
    ("set_weight None tenant", lambda f: f.set_weight(None, 2.0)),
    ("set_plan unknown", lambda f: f.set_plan("stranger", "free")),
    ("set_quota unknown", lambda f: f.set_quota("stranger", Quota())),
    ("remove_tenant unknown", lambda f: f.remove_tenant("stranger")),
]


def strict_after_a_removal() -> FairScheduler:
    fair = strict()
    fair.add_tenant("e", weight=2.0)
    fair.remove_tenant("e")
    return fair


@pytest.mark.parametrize("build", [strict, strict_after_a_removal], ids=["strict", "removed"])
@pytest.mark.parametrize("call", [c for _, c in STRICT_CASES], ids=[n for n, _ in STRICT_CASES])
def test_strict_mode_refuses_unknown_tenants(
    build: Callable[[], FairScheduler], call: Callable[[FairScheduler], object]
) -> None:
    assert_refused(build, call, UnknownTenantError, observe, match="not known")


def test_a_removed_tenant_is_unknown_again() -> None:
    for call in (
        lambda f: f.push(Task("e0", tenant="e")),
        lambda f: f.set_weight("e", 1.0),
        lambda f: f.set_quota("e", Quota()),
    ):
        assert_refused(strict_after_a_removal, call, UnknownTenantError, observe)


def test_strict_mode_knows_configured_and_added_tenants() -> None:
    fair = strict()
    assert fair.known_tenants() == {"a", "b", "c", "d"}  # weights, tenant_plan, quotas
    with pytest.raises(UnknownTenantError):
        fair.push(Task("e0", tenant="e"))
    fair.add_tenant("e", weight=4.0)
    fair.push(Task("e0", tenant="e"))
    assert fair.stats().tenants["e"].weight == 4.0
    fair.remove("d0")
    fair.remove_tenant("d")
    assert "d" not in fair.known_tenants()


def test_a_plain_scheduler_takes_any_tenant_and_knows_the_configured_ones() -> None:
    fair = plain()
    fair.push(Task("new", tenant="stranger"))
    fair.set_weight("other", 2.0)
    assert not fair.strict_tenants
    assert fair.known_tenants() == {"a", "b", "c", "d"}  # set_weight does not make one known


def test_remove_tenant_keeps_its_running_tasks_releasable() -> None:
    fair = strict()
    task = running_task(fair)
    for queued in [t for t in tasks() if t.tenant == task.tenant and t.id in fair]:
        fair.remove(queued.id)
    fair.remove_tenant(task.tenant)
    fair.release(task)
    with pytest.raises(UnknownTenantError):
        fair.push(Task("back", tenant=task.tenant))


# -- the inner factory ------------------------------------------------------------------------


def stowaway(clock: ManualClock) -> PriorityQueue:
    queue = PriorityQueue(clock)
    queue.push(Task("stowaway"))
    return queue


BadQueue = Callable[[ManualClock, dict[Hashable, Any], FairScheduler], object]
FACTORY_CASES: list[tuple[str, BadQueue, type[BaseException], str]] = [
    ("not a Queue", lambda c, made, f: object(), InvalidTypeError, "Queue"),
    ("None", lambda c, made, f: None, InvalidTypeError, "Queue"),
    ("a list", lambda c, made, f: [], InvalidTypeError, "Queue"),
    ("another tenant's", lambda c, made, f: made["a"], InvalidArgumentError, "another"),
    ("non-empty", lambda c, made, f: stowaway(c), InvalidArgumentError, "empty"),
    ("raises", lambda c, made, f: 1 / 0, ZeroDivisionError, "division"),
    ("calls back", lambda c, made, f: f.push(Task("sneaky", tenant="a")), ReentrancyError, "push"),
    ("reconfigures", lambda c, made, f: f.set_weight("a", 9.0), ReentrancyError, "configuration"),
]


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [(b, e, m) for _, b, e, m in FACTORY_CASES],
    ids=[n for n, _, _, _ in FACTORY_CASES],
)
def test_a_bad_inner_queue_is_refused_and_the_push_changes_nothing(
    bad: BadQueue, error: type[BaseException], match: str
) -> None:
    """The factory is good for the tenants ``configured`` pushes, bad for tenant "x"."""

    def build() -> FairScheduler:
        made: dict[Hashable, Any] = {}
        holder: list[FairScheduler] = []

        def make(clock: ManualClock, tenant: Hashable) -> object:
            if tenant == "x":
                return bad(clock, made, holder[0])
            made[tenant] = queue = PriorityQueue(clock)
            return queue

        fair = configured(inner=make)
        holder.append(fair)
        return fair

    assert_refused(build, lambda f: f.push(Task("x0", tenant="x")), error, observe, match=match)


def test_the_bypass_lanes_queue_counts_as_held() -> None:
    lane: list[PriorityQueue] = []

    def make(clock: ManualClock, tenant: Hashable) -> PriorityQueue:
        if lane and tenant == "x":
            return lane[0]  # empty, but the bypass lane holds it
        queue = PriorityQueue(clock)
        lane.append(queue)
        return queue

    fair = FairScheduler(ManualClock(), inner=make, critical_bypass=True)
    with pytest.raises(InvalidArgumentError, match="another"):
        fair.push(Task("x0", tenant="x"))
    assert len(fair) == 0 and fair.stats().tenants == {}


@pytest.mark.parametrize(
    "factory",
    [lambda clock: stowaway(clock), lambda clock: object(), lambda clock: None, 3, "PriorityQueue"],
    ids=["filled", "not a Queue", "None", "an int", "a str"],
)
def test_a_bad_factory_fails_at_construction(factory: object) -> None:
    """The factory is tried once at construction (for the bypass lane), so it fails early."""
    with pytest.raises(TaskdistError):
        FairScheduler(ManualClock(), inner=factory, critical_bypass=True)  # type: ignore[arg-type]


def test_the_factory_may_take_the_tenant_and_give_each_its_own_queue() -> None:
    made: dict[Hashable, Any] = {}

    def make(clock: ManualClock, tenant: Hashable) -> Any:
        made[tenant] = queue = DeadlineScheduler(clock) if tenant == "edf" else PriorityQueue(clock)
        return queue

    clock = ManualClock()
    fair = FairScheduler(clock, inner=make)
    fair.push(Task("late", tenant="edf", deadline=50.0, priority=1))
    fair.push(Task("soon", tenant="edf", deadline=10.0, priority=4))
    fair.push(Task("low", tenant="prio", priority=4))
    fair.push(Task("high", tenant="prio", priority=1))
    assert isinstance(made["edf"], DeadlineScheduler)
    assert isinstance(made["prio"], PriorityQueue)
    order = [t.id for t in (fair.pop() for _ in range(4))]  # type: ignore[union-attr]
    assert order == ["soon", "high", "late", "low"]  # EDF in one tenant, priority in the other


def test_a_zero_argument_style_factory_still_works() -> None:
    fair = FairScheduler(ManualClock(), inner=lambda clock: PriorityQueue(clock))
    fair.push(Task("x", tenant="a"))
    assert fair.pop() is not None


# -- extreme but valid numbers ----------------------------------------------------------------


def split(fair: FairScheduler, pops: int) -> Counter[Hashable]:
    served: Counter[Hashable] = Counter()
    for _ in range(pops):
        task = fair.pop()
        assert task is not None
        served[task.tenant] += 1
        fair.release(task)
    return served


def test_one_huge_cost_does_not_freeze_the_shares_after_it() -> None:
    """With float tags, 1e16 + 1/3 == 1e16: every tag stuck, the 3:1 split became 1:1."""
    fair = FairScheduler(ManualClock(), weights={"a": 3.0, "b": 1.0})
    fair.push(Task("huge", tenant="big", cost=1e16))
    task = fair.pop()
    assert task is not None
    fair.release(task)
    assert fair.virtual_time == 1e16  # the busy period ended at its tag
    for i in range(400):
        fair.push(Task(f"a{i}", tenant="a", cost=1.0))
        fair.push(Task(f"b{i}", tenant="b", cost=1.0))
    served = split(fair, 400)
    assert abs(served["a"] - 300) <= 1 and abs(served["b"] - 100) <= 1


def test_a_huge_cost_among_backlogged_tenants_is_repaid_not_frozen() -> None:
    fair = FairScheduler(ManualClock(), weights={"a": 3.0, "b": 1.0})
    for i in range(500):
        fair.push(Task(f"a{i}", tenant="a", cost=1.0))
        fair.push(Task(f"b{i}", tenant="b", cost=1.0))
    fair.push(Task("huge", tenant="big", cost=1e16))
    fair.push(Task("after", tenant="big", cost=1.0))
    served = split(fair, 401)  # big's huge task in its first turn, then never again
    assert served["big"] == 1
    assert abs(served["a"] - 300) <= 1 and abs(served["b"] - 100) <= 1


@pytest.mark.parametrize(("low", "high"), [(1e-9, 3e-9), (1e9 / 3, 1e9)], ids=["1e-9", "1e9"])
def test_weights_at_the_ends_of_their_range_keep_the_split_and_finite_tags(
    low: float, high: float
) -> None:
    fair = FairScheduler(ManualClock(), weights={"a": high, "b": low, "big": 1e-9})
    fair.push(Task("huge", tenant="big", cost=1e18))  # the largest charge: 1e27
    fair.push(Task("next", tenant="big", cost=1e18))
    for i in range(200):
        fair.push(Task(f"a{i}", tenant="a", cost=1.0))
        fair.push(Task(f"b{i}", tenant="b", cost=1.0))
    served = split(fair, 200)
    stats = fair.stats()
    assert math.isfinite(stats.virtual_time)
    assert stats.tenants["big"].virtual_start == pytest.approx(1e27)
    assert served["big"] == 1
    assert abs(served["a"] - 150) <= 1 and abs(served["b"] - 49) <= 1


def test_a_weight_of_1e_minus_300_is_refused_everywhere() -> None:
    for make in (
        lambda: FairScheduler(weights={"a": 1e-300}),
        lambda: FairScheduler(default_weight=1e-300),
        lambda: FairScheduler().set_weight("a", 1e-300),
        lambda: FairScheduler().add_tenant("a", weight=1e-300),
    ):
        with pytest.raises(InvalidArgumentError, match=r"1e-09"):
            make()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weights": {NAN: 1.0}},
        {"quotas": {NAN: Quota()}},
        {"tenant_plan": {NAN: "free"}, "plans": PLANS},
        {"plans": {NAN: Quota()}},
        {"strict_tenants": "yes"},
        {"strict_tenants": 1},
    ],
    ids=["nan weight key", "nan quota key", "nan tenant_plan key", "nan plan", "str", "int"],
)
def test_the_constructor_refuses_nan_tenants_and_a_non_bool_strict(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TaskdistError):
        FairScheduler(ManualClock(), **kwargs)


@pytest.mark.parametrize(
    ("aging_rate", "error"),
    [
        (NAN, InvalidArgumentError),
        (math.inf, InvalidArgumentError),
        (-0.1, InvalidArgumentError),
        ("0.1", InvalidTypeError),
        (True, InvalidTypeError),
        (None, InvalidTypeError),
    ],
)
def test_the_constructor_refuses_a_bad_aging_rate(
    aging_rate: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="aging_rate"):
        FairScheduler(ManualClock(), aging_rate=aging_rate)  # type: ignore[arg-type]


def test_an_aging_rate_is_refused_beside_a_factory_whose_queues_age_as_it_makes_them() -> None:
    with pytest.raises(InvalidArgumentError, match="aging_rate"):
        FairScheduler(ManualClock(), aging_rate=0.5, inner=lambda c: PriorityQueue(c))
    # The default, said out loud, goes with any factory.
    fair = FairScheduler(
        ManualClock(), aging_rate=DEFAULT_AGING_RATE, inner=lambda c: PriorityQueue(c)
    )
    assert fair.aging_rate == DEFAULT_AGING_RATE


def test_the_tenant_queues_age_at_the_rate_given() -> None:
    clock = ManualClock(start=10.0)
    orders = {}
    for rate in (0.0, 0.5):
        fair = FairScheduler(clock, aging_rate=rate)
        assert fair.aging_rate == rate
        fair.push(Task("old", priority=3), enqueued_at=clock.now() - 6.0)
        fair.push(Task("new", priority=1))
        orders[rate] = [task.id for task in iter(fair.pop, None)]
    # Six seconds at 0.5 levels a second outweigh two priority levels; with none, not.
    assert orders == {0.0: ["new", "old"], 0.5: ["old", "new"]}


def test_a_snapshot_of_another_aging_rate_is_refused() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, aging_rate=0.5)
    fair.push(Task("t"))
    other = FairScheduler(clock)
    with pytest.raises(SnapshotError, match="aging_rate"):
        other.load_snapshot(fair.snapshot())
    assert len(other) == 0
