"""FairScheduler(deadline_aware=True): fair share that keeps deadlines.

The setting of the guarantees: one server that runs each popped task for
exactly its ``cost`` and pops the next when it is done (the clock advances by
the cost, then the task is released); plain pops; no quota holds a tenant;
no CRITICAL bypass. Then:

- **deadlines**: if the tasks queued at the start can all meet their
  deadlines in deadline order (plain EDF over every tenant), the scheduler
  meets every one of them too; more generally, a pop never makes a queued set
  that deadline order could serve in time one that it cannot;
- **lag**: the pairwise lag bound of plain fair share holds with an extra
  ``max_lead / w`` for each of the two tenants, and every tenant's tag stays
  within ``(c + max_lead) / w`` of the virtual time.

Both are Hypothesis properties below; example tests pin the behaviour the
docs describe (served out of turn, then repaid).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from fair_support import LagChecker
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from taskdist import (
    DeadlineScheduler,
    FairScheduler,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    Priority,
    Quota,
    Task,
)
from taskdist.queues._deadline_slack import DeadlineSlack
from taskdist.queues._prefix_sorted import PrefixSumSortedList

# -- the one-server setting ---------------------------------------------------------


def run_one_server(fair: FairScheduler, clock: ManualClock) -> list[tuple[Task, float]]:
    """Pop until empty; each task runs for its cost. Returns (task, finish time) in order."""
    finished = []
    while (task := fair.pop()) is not None:
        clock.advance(task.cost)
        finished.append((task, clock.now()))
        fair.release(task)
    return finished


def edf_meets_all(tasks: list[Task], now: float) -> bool:
    """Whether plain EDF over ``tasks`` on one server from ``now`` meets every deadline."""
    end = now
    for task in sorted((t for t in tasks if t.deadline is not None), key=lambda t: t.deadline):  # type: ignore[arg-type, return-value]
        end += task.cost
        if end > task.deadline:  # type: ignore[operator]
            return False
    return True


def missed(finished: list[tuple[Task, float]]) -> list[Hashable]:
    return [t.id for t, end in finished if t.deadline is not None and end > t.deadline + 1e-9]


INNER: dict[str, Callable[..., Any] | None] = {
    "PriorityQueue": None,
    "DeadlineScheduler": lambda clock: DeadlineScheduler(clock),
}

# -- examples -------------------------------------------------------------------


def flood_and_deadlines(**kwargs: Any) -> tuple[FairScheduler, ManualClock]:
    """Tenant "b" floods plain work; tenant "a" has ten tasks due one after the other."""
    clock = ManualClock()
    fair = FairScheduler(clock, **kwargs)
    for i in range(20):
        fair.push(Task(f"b{i}", tenant="b", cost=1.0))
    for i in range(10):
        fair.push(Task(f"a{i}", tenant="a", cost=1.0, deadline=float(i + 1) * 1.5))
    return fair, clock


def test_plain_fair_share_lets_urgent_tasks_wait_their_turn_and_miss() -> None:
    fair, clock = flood_and_deadlines()
    assert missed(run_one_server(fair, clock))  # alternating with b, a falls behind


@pytest.mark.parametrize("inner", INNER.values(), ids=INNER.keys())
def test_deadline_aware_serves_urgent_tasks_ahead_then_repays(inner: Any) -> None:
    fair, clock = flood_and_deadlines(deadline_aware=True, inner=inner)
    finished = run_one_server(fair, clock)
    assert missed(finished) == []
    order = [t.tenant for t, _ in finished]
    # a went first as often as its deadlines needed, then b caught up: 20 of b in a row
    # would be too many, but b's last tasks come in a run once a had repaid its lead.
    assert order[:15].count("a") == 10
    assert order[15:] == ["b"] * 15
    stats = fair.stats()
    assert stats.tenants == {}  # all done and idle


def test_urgent_service_is_counted_and_charged() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, deadline_aware=True)
    for i in range(6):
        fair.push(Task(f"b{i}", tenant="b", cost=2.0))
    fair.push(Task("a0", tenant="a", cost=2.0))
    fair.push(Task("a-urgent", tenant="a", cost=2.0, deadline=4.0))
    first = fair.pop()
    assert first is not None and first.id == "b0"  # b came first; fair order is safe
    clock.advance(2.0)
    fair.release(first)
    urgent = fair.pop()  # a's fair turn would serve a0 (cost 2): a-urgent would end at 6 > 4
    assert urgent is not None and urgent.id == "a-urgent"
    stats = fair.stats().tenants["a"]
    assert (stats.urgent, stats.dispatched) == (1, 1)
    assert stats.virtual_start == 2.0  # charged like any dispatch: a repays it
    clock.advance(2.0)
    fair.release(urgent)
    assert [t.tenant for t in (fair.pop(), fair.pop())] == ["b", "a"]  # type: ignore[union-attr]


def test_a_task_that_cannot_make_it_any_more_makes_no_one_wait() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, deadline_aware=True)
    fair.push(Task("a-doomed", tenant="a", cost=5.0, deadline=3.0))  # 5 > 3: it will miss
    for i in range(4):
        fair.push(Task(f"b{i}", tenant="b", cost=1.0))
    order = [t.tenant for t, _ in run_one_server(fair, clock)]
    assert order.count("a") == 1
    assert fair.stats().tenants == {}


def test_max_lead_caps_the_service_out_of_turn() -> None:
    fair, clock = flood_and_deadlines(deadline_aware=True, max_lead=2.0)
    finished = run_one_server(fair, clock)
    order = [t.tenant for t, _ in finished[:10]]
    # a may run at most 2 of cost ahead of its share: never three in a row.
    assert "aaa" not in "".join(order)
    assert missed(finished)  # the cap costs deadlines


def test_without_deadlines_the_order_is_plain_fair_share() -> None:
    orders = []
    for aware in (False, True):
        clock = ManualClock()
        fair = FairScheduler(clock, weights={"a": 2.0}, deadline_aware=aware)
        for i in range(30):
            fair.push(Task(f"a{i}", tenant="a", cost=1.0 + i % 3))
            fair.push(Task(f"b{i}", tenant="b", cost=2.0 - i % 2))
        orders.append([t.id for t, _ in run_one_server(fair, clock)])
    assert orders[0] == orders[1]


def test_pop_where_and_peek_agree_under_deadlines() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, deadline_aware=True)
    for i in range(5):
        fair.push(Task(f"b{i}", tenant="b", cost=2.0))
    fair.push(Task("a-gpu", tenant="a", cost=1.0, deadline=2.5, requires={"gpu"}))
    fair.push(Task("a-cpu", tenant="a", cost=1.0, deadline=3.0))

    def cpu(task: Task) -> bool:
        return not task.requires

    assert fair.peek() is fair.pop()  # b0 first: tie on tags, b came first... or a-gpu
    peeked = fair.peek(cpu)
    popped = fair.pop(cpu)
    assert peeked is popped and popped is not None and not popped.requires


def test_an_urgent_pop_put_back_leaves_the_scheduler_as_its_twin() -> None:
    def build() -> tuple[FairScheduler, ManualClock]:
        clock = ManualClock()
        fair = FairScheduler(clock, deadline_aware=True, inner=DeadlineScheduler)
        fair.push(Task("a-first", tenant="a", cost=2.0))
        first = fair.pop()  # a is 2 ahead now
        assert first is not None
        fair.release(first)
        for i in range(4):
            fair.push(Task(f"b{i}", tenant="b", cost=2.0))
        fair.push(Task("a0", tenant="a", cost=2.0, deadline=9.0))
        fair.push(Task("a-urgent", tenant="a", cost=2.0, deadline=2.0))
        return fair, clock

    def observe(fair: FairScheduler, clock: ManualClock) -> object:
        seen = (fair.stats(), fair.virtual_time, [fair.why_waiting(i) for i in ("a0", "a-urgent")])
        return seen, [(t.id, end) for t, end in run_one_server(fair, clock)]

    fair, clock = build()
    task = fair.pop()
    assert task is not None and task.id == "a-urgent"
    assert fair.stats().tenants["a"].urgent == 1
    fair.unpop(task)
    assert observe(fair, clock) == observe(*build())


def test_settings_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="deadline_aware"):
        FairScheduler(max_lead=3.0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidArgumentError, match="max_lead"):
            FairScheduler(deadline_aware=True, max_lead=bad)
    with pytest.raises(InvalidTypeError, match="max_lead"):
        FairScheduler(deadline_aware=True, max_lead="3")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="deadline_aware"):
        FairScheduler(deadline_aware=1)  # type: ignore[arg-type]


# -- the guarantees, as properties ----------------------------------------------------------

task_st = st.tuples(
    st.integers(0, 3),  # tenant
    st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0]),  # cost
    st.booleans(),  # has a deadline
    st.floats(min_value=0.01, max_value=12.0),  # slack over its EDF completion
)


def feasible_batch(specs: list[tuple[int, float, bool, float]], order: list[int]) -> list[Task]:
    """Tasks whose deadlines plain EDF meets on one server from 0, by construction.

    The tasks with a deadline are laid out in ``order`` (a permutation); each
    gets its completion time there plus its slack, kept non-decreasing along
    that order so EDF runs them in it.
    """
    deadlined = [i for i, spec in enumerate(specs) if spec[2]]
    ranked = sorted(deadlined, key=lambda i: order[i % len(order)])
    deadline_of: dict[int, float] = {}
    end = previous = 0.0
    for i in ranked:
        end += specs[i][1]
        previous = max(previous, end + specs[i][3])
        deadline_of[i] = previous
    return [
        Task(i, tenant=f"t{tenant}", cost=cost, deadline=deadline_of.get(i))
        for i, (tenant, cost, _, _) in enumerate(specs)
    ]


@pytest.mark.parametrize("inner", INNER.values(), ids=INNER.keys())
@settings(max_examples=150)
@given(
    specs=st.lists(task_st, min_size=1, max_size=24),
    order=st.permutations(list(range(24))),
    weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 5.0]), min_size=4, max_size=4),
)
def test_no_deadline_that_plain_edf_meets_is_missed(
    inner: Any,
    specs: list[tuple[int, float, bool, float]],
    order: list[int],
    weights: list[float],
) -> None:
    tasks = feasible_batch(specs, order)
    assert edf_meets_all(tasks, 0.0)
    clock = ManualClock()
    fair = FairScheduler(
        clock,
        weights={f"t{i}": w for i, w in enumerate(weights)},
        deadline_aware=True,
        inner=inner,
    )
    for task in tasks:
        fair.push(task)
    finished = run_one_server(fair, clock)
    assert len(finished) == len(tasks)
    assert missed(finished) == []


@settings(max_examples=150)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("push"), task_st),
            st.tuples(st.just("pop"), st.integers(1, 4)),
            st.tuples(st.just("idle"), st.sampled_from([0.5, 2.0])),
        ),
        max_size=40,
    ),
    weights=st.lists(st.sampled_from([0.5, 1.0, 3.0]), min_size=4, max_size=4),
)
def test_a_pop_never_makes_a_feasible_queue_infeasible(
    ops: list[tuple[Any, ...]], weights: list[float]
) -> None:
    """Arrivals may make the queue infeasible; a pop never does (one server, from now)."""
    clock = ManualClock()
    fair = FairScheduler(
        clock, weights={f"t{i}": w for i, w in enumerate(weights)}, deadline_aware=True
    )
    queued: dict[Hashable, Task] = {}
    ids = itertools.count()
    for op in ops:
        if op[0] == "push":
            tenant, cost, has_deadline, slack = op[1]
            deadline = clock.now() + cost + slack if has_deadline else None
            task = Task(next(ids), tenant=f"t{tenant}", cost=cost, deadline=deadline)
            fair.push(task)
            queued[task.id] = task
        elif op[0] == "idle":
            clock.advance(op[1])
        else:
            for _ in range(op[1]):
                feasible = edf_meets_all(list(queued.values()), clock.now())
                task = fair.pop()
                if task is None:
                    break
                del queued[task.id]
                clock.advance(task.cost)
                fair.release(task)
                if feasible:
                    assert edf_meets_all(list(queued.values()), clock.now()), task
                    if task.deadline is not None:
                        assert clock.now() <= task.deadline + 1e-9


@settings(max_examples=120)
@given(
    weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=2, max_size=4),
    specs=st.lists(task_st, min_size=1, max_size=30),
    lead=st.sampled_from([0.0, 1.0, 3.0, 10.0]),
)
def test_lag_stays_within_the_bound_plus_the_lead(
    weights: list[float], specs: list[tuple[int, float, bool, float]], lead: float
) -> None:
    tenants = [f"t{i}" for i in range(len(weights))]
    weight_of = dict(zip(tenants, weights, strict=True))
    clock = ManualClock()
    fair = FairScheduler(clock, weights=weight_of, deadline_aware=True, max_lead=lead)
    checker = LagChecker(fair, weight_of, clock=clock, lead=lead)
    by_tenant: dict[str, list[Task]] = {t: [] for t in tenants}
    for i, (tenant, cost, has_deadline, slack) in enumerate(specs):
        name = tenants[tenant % len(tenants)]
        deadline = cost + slack if has_deadline else None
        by_tenant[name].append(Task(i, tenant=name, cost=cost, deadline=deadline))
    for name, tasks in by_tenant.items():
        if tasks:
            checker.push(name, tasks)
    while checker.pop() is not None:
        pass


def test_out_of_turn_service_is_repaid_in_later_turns() -> None:
    """Over the whole run the split is the weighted one, urgent service included."""
    clock = ManualClock()
    fair = FairScheduler(clock, weights={"a": 1.0, "b": 1.0}, deadline_aware=True)
    for i in range(100):
        fair.push(Task(f"b{i}", tenant="b", cost=1.0))
    for i in range(50):  # a needs 20 at once, then nothing urgent
        deadline = float(i + 1) if i < 20 else None
        fair.push(Task(f"a{i}", tenant="a", cost=1.0, deadline=deadline))
    finished = run_one_server(fair, clock)
    first_100 = Counter(t.tenant for t, _ in finished[:100])
    assert missed(finished) == []
    assert abs(first_100["a"] - first_100["b"]) <= 2  # 20 ahead, then repaid


def test_quota_holds_come_before_deadlines() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, deadline_aware=True, quotas={"a": Quota(max_concurrent=1)})
    fair.push(Task("a0", tenant="a", cost=1.0))
    fair.push(Task("a-urgent", tenant="a", cost=1.0, deadline=2.0))
    fair.push(Task("b0", tenant="b", cost=1.0))
    first = fair.pop()
    assert first is not None and first.tenant == "a"
    second = fair.pop()  # a is at its max_concurrent: b goes, whatever a's deadline
    assert second is not None and second.id == "b0"


def test_critical_bypass_still_comes_first() -> None:
    clock = ManualClock()
    fair = FairScheduler(clock, deadline_aware=True, critical_bypass=True)
    fair.push(Task("a-urgent", tenant="a", cost=1.0, deadline=1.5))
    fair.push(Task("b-critical", tenant="b", cost=1.0, priority=Priority.CRITICAL))
    assert fair.pop().id == "b-critical"  # type: ignore[union-attr]


def test_the_slack_index_answers_at_a_thresholds_rounding_edge() -> None:
    """The least margin, asked back as a threshold: the index's tree and its block scan
    sum in different orders, and once raised there instead of answering."""
    rng = random.Random(6)
    order: PrefixSumSortedList[tuple[float, int]] = PrefixSumSortedList(load=4)
    for i in range(rng.randrange(2, 40)):
        deadline = rng.uniform(0, 50)
        order.add((deadline, i), rng.uniform(0.1, 3.0), deadline)
    asked = 0
    while len(order):
        least = order.margin()
        for threshold in (least, least + 1e-15, least - 1e-15, least + 2e-15):
            found = order.first_margin_below(threshold)
            asked += 1
            assert found is None or found in list(order)
        items = list(order)
        order.remove(items[rng.randrange(len(items))])
    assert asked


@settings(max_examples=100)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from([1.0, 2.0, 2.0, 3.0]), st.integers(0, 10**6), st.booleans()),
        max_size=60,
    )
)
def test_a_keyed_list_orders_equal_keys_by_tie_and_finds_the_very_item(
    steps: list[tuple[float, int, bool]],
) -> None:
    """Many items of one key, over blocks of 4, told apart by a tie only items of a held
    key have: remove finds the item by identity (not an equal twin), an item added back
    goes where it was, and tie is asked only when items of its key are held (and not
    for one added ``last``)."""
    ties: dict[int, int] = {}  # id(item) -> tie, for items that came to a held key
    asked: list[list[float]] = []

    def tie(item: list[float]) -> int:
        asked.append(item)
        return ties.get(id(item), 0)

    order: PrefixSumSortedList[list[float]] = PrefixSumSortedList(
        load=4, key=lambda item: item[0], tie=tie
    )
    model: list[list[float]] = []  # in (key, tie) order
    made: list[list[float]] = []
    arrivals = itertools.count(1)
    for key, pick, take in steps:
        if take and model:
            item = model[pick % len(model)]
            order.remove(item)
            model = [other for other in model if other is not item]
            if pick % 2:  # and back in its place
                order.add(item, item[0])
                model.append(item)
            else:
                made.append(item)  # kept, so no later item takes its id()
        else:
            item = [key]  # equal to the other items of its key, but not them
            held = order.holds_key(key)
            assert held == any(other[0] == key for other in model)
            if held:
                ties[id(item)] = next(arrivals)
            asked.clear()
            last = pick % 3 == 0  # its tie is above those of its key: either way goes
            order.add(item, key, last=last)
            assert not asked if last or not held else asked
            model.append(item)
        model.sort(key=lambda other: (other[0], ties.get(id(other), 0)))
        assert len(order) == len(model)
        assert all(a is b for a, b in zip(order, model, strict=True))
        assert order.total() == sum(item[0] for item in model)
    for item in model:
        with pytest.raises(ValueError):
            order.remove([item[0]])


@pytest.mark.parametrize("aware", [False, True], ids=["fair order", "deadline-aware"])
def test_through_a_distributor_on_one_worker(aware: bool) -> None:
    """The Distributor pops with where= (placeable now): deadlines hold there too."""
    from taskdist import Distributor, TaskState, Worker

    clock = ManualClock()
    queue = FairScheduler(clock, deadline_aware=aware, inner=DeadlineScheduler)
    d = Distributor(clock, queue=queue)
    d.add_worker(Worker("w", capacity=1))
    for i in range(12):
        d.submit(Task(f"bulk-{i}", tenant="bulk", cost=1.0))
    for i in range(4):
        d.submit(Task(f"due-{i}", tenant="acme", cost=1.0, deadline=1.5 * (i + 1)))
    late = []
    while assignments := d.dispatch():
        (assignment,) = assignments
        clock.advance(assignment.task.cost)
        deadline = assignment.task.deadline
        if deadline is not None and clock.now() > deadline:
            late.append(assignment.task.id)
        d.complete(assignment.task.id)
    stats = d.stats()
    assert stats.by_state[TaskState.COMPLETED] == 16
    assert (late == []) is aware
    assert (stats.deadline_hit_rate == 1.0) is aware


# -- the deadline index against an exact model ----------------------------------------


def small_blocks(slack: DeadlineSlack) -> DeadlineSlack:
    """``slack`` (empty) with blocks of 4 tasks, not 128: equal deadlines run over blocks."""
    slack._order = slack._new_order(load=4)
    return slack


class DeadlineSlackMachine(RuleBasedStateMachine):
    """The deadline index a deadline-aware scheduler asks, against plain EDF sums.

    Dyadic costs and deadlines keep every sum exact, so the model's margins are
    the index's. Deadlines come from a few values: equal ones go first come,
    first served, and a task put back keeps its place among them.
    """

    @initialize()
    def start(self) -> None:
        self.slack = small_blocks(DeadlineSlack())
        self.ids = itertools.count()
        self.arrivals = itertools.count()
        # (deadline, arrival, task) in deadline order; the ids marked late.
        self.held: list[tuple[float, int, Task]] = []
        self.late: set[Hashable] = set()
        self.now = 0.0
        self.taken: tuple[tuple[float, int, Task], bool, Any] | None = None

    def margins(self) -> list[tuple[float, Task]]:
        through = 0.0
        margins = []
        for deadline, _, task in sorted(self.held, key=lambda item: item[:2]):
            through += task.cost
            bound = math.inf if task.id in self.late else deadline
            margins.append((bound - through, task))
        return margins

    @rule(
        deadline=st.sampled_from([1.0, 2.0, 2.5, 4.0, 8.0]),
        cost=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    )
    def add(self, deadline: float, cost: float) -> None:
        task = Task(next(self.ids), cost=cost, deadline=deadline)
        self.slack.add(task)
        self.held.append((deadline, next(self.arrivals), task))
        self.taken = None

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def take(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(self.held))
        taken = self.slack.take(item[2])
        assert taken is not None and taken[1] == (item[2].id in self.late)
        self.held.remove(item)
        self.taken = (item, item[2].id in self.late, taken)
        self.late.discard(item[2].id)

    @precondition(lambda self: self.taken is not None)
    @rule()
    def put_back(self) -> None:
        assert self.taken is not None
        item, late, taken = self.taken
        self.slack.put_back(taken)
        self.held.append(item)
        if late:
            self.late.add(item[2].id)
        self.taken = None

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
    def settle(self, dt: float) -> None:
        self.now += dt
        self.slack.settle(self.now)
        self.late |= {task.id for margin, task in self.margins() if margin < self.now}

    @rule(data=st.data(), cost=st.sampled_from([0.0, 0.5, 1.0, 3.0]))
    def is_safe(self, data: st.DataObject, cost: float) -> None:
        # A held task, or one without a deadline (it delays every held task).
        choices = [Task("free", cost=cost)] + [item[2] for item in self.held]
        task = data.draw(st.sampled_from(choices))
        margins = self.margins()
        tasks = [other for _, other in margins]
        # Serving it delays the tasks ahead of it in deadline order.
        ahead = margins[: tasks.index(task)] if task in tasks else margins
        expected = not task.cost or all(m >= self.now + task.cost for m, _ in ahead)
        assert self.slack.is_safe(task, self.now) == expected

    @invariant()
    def answers_as_the_model(self) -> None:
        in_order = sorted(self.held, key=lambda item: item[:2])
        assert self.slack.listed() == [(task, task.id in self.late) for *_, task in in_order]
        assert len(self.slack) == len(self.held)
        urgent = next((task for *_, task in in_order if task.id not in self.late), None)
        assert self.slack.most_urgent() is urgent

    @invariant()
    def a_loaded_copy_lists_the_same(self) -> None:
        copy = DeadlineSlack()
        copy.load(self.slack.listed())
        assert copy.listed() == self.slack.listed()


TestDeadlineSlackMachine = DeadlineSlackMachine.TestCase


# -- the deadline index inside a scheduler, against a plain model -----------------------


class PlainSlack:
    """What a deadline-aware scheduler asks of its deadline index, done the plain way.

    A list in (deadline, arrival) order, summed from the front at each question;
    a task put back takes its arrival number back. With exact sums (the costs
    and times below are small dyadic numbers, or 2**40) its answers are the
    exact answers, so the index must give the same ones.
    """

    def __init__(self) -> None:
        self.held: list[tuple[float, int, Task]] = []
        self.late: set[Hashable] = set()
        self.arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self.held)

    def add(self, task: Task) -> None:
        assert task.deadline is not None
        self.held.append((task.deadline, next(self.arrivals), task))
        self.held.sort(key=lambda item: item[:2])

    def take(self, task: Task) -> tuple[tuple[float, int, Task], bool] | None:
        for item in self.held:
            if item[2] is task:
                self.held.remove(item)
                late = task.id in self.late
                self.late.discard(task.id)
                return item, late
        return None

    def put_back(self, taken: tuple[tuple[float, int, Task], bool]) -> None:
        item, late = taken
        self.held.append(item)
        self.held.sort(key=lambda item: item[:2])
        if late:
            self.late.add(item[2].id)

    def listed(self) -> list[tuple[Task, bool]]:
        return [(task, task.id in self.late) for *_, task in self.held]

    def load(self, held: list[tuple[Task, bool]]) -> None:
        for task, late in held:
            self.add(task)
            if late:
                self.late.add(task.id)

    def margins(self) -> list[tuple[float, Task]]:
        through = 0.0
        margins = []
        for deadline, _, task in self.held:
            through += task.cost
            margins.append(((math.inf if task.id in self.late else deadline) - through, task))
        return margins

    def settle(self, now: float) -> None:
        self.late |= {task.id for margin, task in self.margins() if margin < now}

    def is_safe(self, task: Task, now: float) -> bool:
        if not task.cost:
            return True
        margins = self.margins()
        ahead = margins
        for i, (_, other) in enumerate(margins):
            if other is task:
                ahead = margins[:i]
        return all(margin >= now + task.cost for margin, _ in ahead)

    def most_urgent(self) -> Task | None:
        return next((task for *_, task in self.held if task.id not in self.late), None)


class DeadlineAwareTwinsMachine(RuleBasedStateMachine):
    """Two deadline-aware schedulers on one clock, one with its deadline index, one with
    :class:`PlainSlack`: every pop, peek, expiry and unpop must answer alike.

    Few deadlines, so many are equal (across tenants too); zero and huge costs; near,
    far and passed deadlines; TTLs; ``max_lead`` of none, 0 or 2.
    """

    @initialize(max_lead=st.sampled_from([None, 0.0, 2.0]))
    def start(self, max_lead: float | None) -> None:
        self.clock = ManualClock()
        self.real = FairScheduler(self.clock, deadline_aware=True, max_lead=max_lead)
        assert self.real._slack is not None
        small_blocks(self.real._slack)
        self.plain = FairScheduler(self.clock, deadline_aware=True, max_lead=max_lead)
        self.plain._slack = PlainSlack()  # type: ignore[assignment]
        self.ids = itertools.count()
        self.queued: list[Task] = []
        self.running: list[Task] = []
        self.popped: Task | None = None

    def both(self, call: Callable[[FairScheduler], Any]) -> Any:
        answer = call(self.real)
        assert call(self.plain) == answer
        return answer

    @rule(
        tenant=st.sampled_from("abc"),
        due=st.sampled_from([None, 0.5, 1.0, 2.0, 2.0, 4.0, 2.0**30]),
        cost=st.sampled_from([0.0, 0.5, 1.0, 2.0, 2.0**40]),
        ttl=st.sampled_from([None, None, 1.0, 4.0]),
    )
    def push(self, tenant: str, due: float | None, cost: float, ttl: float | None) -> None:
        deadline = None if due is None else self.clock.now() + due
        task = Task(next(self.ids), tenant=tenant, cost=cost, deadline=deadline, ttl=ttl)
        self.both(lambda fair: fair.push(task))
        self.queued.append(task)
        self.popped = None

    @rule(cheap=st.booleans(), peek=st.booleans())
    def pop(self, cheap: bool, peek: bool) -> None:
        where = (lambda task: task.cost <= 1.0) if cheap else None
        if peek:
            self.both(lambda fair: fair.peek(where))
            return
        task = self.both(lambda fair: fair.pop(where))
        self.popped = task
        if task is not None:
            self.queued.remove(task)
            self.running.append(task)

    @precondition(lambda self: self.popped is not None)
    @rule()
    def unpop(self) -> None:
        task = self.popped
        assert task is not None
        self.both(lambda fair: fair.unpop(task))
        self.running.remove(task)
        self.queued.append(task)
        self.popped = None

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(self.running))
        self.both(lambda fair: fair.release(task))
        self.running.remove(task)
        self.popped = None

    @precondition(lambda self: self.queued)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(self.queued))
        self.both(lambda fair: fair.remove(task.id))
        self.queued.remove(task)
        self.popped = None

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0]))
    def expire(self, dt: float) -> None:
        self.clock.advance(dt)
        expired = self.both(lambda fair: fair.expire())
        for task in expired:
            self.queued.remove(task)
        if expired:
            self.popped = None

    @invariant()
    def the_indexes_agree(self) -> None:
        assert len(self.real) == len(self.plain)
        assert self.real._slack is not None and self.plain._slack is not None
        assert self.real._slack.listed() == self.plain._slack.listed()


TestDeadlineAwareTwinsMachine = DeadlineAwareTwinsMachine.TestCase
