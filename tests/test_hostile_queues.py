"""Red team: bad, extreme and re-entrant calls on the queues and the batch optimizer.

Every row of the tables below is one call that must be refused with a
specific error, run with ``assert_refused`` against an untouched twin built
the same way: afterwards every observable answer (stats, membership, timers,
lateness, and a full drain) must be the twin's. Re-entrant rows call back into
the object from inside its own callback (a ``where=`` predicate, a ``key``
function, a sizing rule). The rows for ``FairScheduler`` are the calls of the
``Queue`` contract only; the rest of its hardening is tested with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import attrs
import pytest
from hostile import assert_refused, plain

from taskdist import (
    AIMDSizing,
    Batch,
    BatchOptimizer,
    DeadlineError,
    DeadlineInfeasibleError,
    DeadlineScheduler,
    DuplicateTaskError,
    FairScheduler,
    GroupLimits,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    OverReleaseError,
    PriorityQueue,
    QueueFullError,
    ReentrancyError,
    Task,
    TaskStateError,
    UnknownTaskError,
)

# -- builders: the same object each time ---------------------------------------------------


def tasks(clock: ManualClock) -> list[Task]:
    now = clock.now()
    return [
        Task("a", priority=2, deadline=now + 50.0, cost=1.0, ttl=30.0, tenant="t1"),
        Task("b", priority=1, deadline=now + 20.0, cost=2.0, tenant="t2"),
        Task("c", priority=3, deadline=now + 80.0, cost=1.5, ttl=60.0, tenant="t1"),
        Task("d", priority=0, deadline=now + 40.0, cost=0.5, tenant="t3"),
    ]


def filled(queue: Any, clock: ManualClock) -> Any:
    for task in tasks(clock):
        queue.push(task)
    return queue


def priority_queue() -> PriorityQueue:
    clock = ManualClock(start=10.0)
    return filled(PriorityQueue(clock, aging_rate=0.5), clock)  # type: ignore[no-any-return]


def bounded_queue() -> PriorityQueue:
    clock = ManualClock(start=10.0)
    return filled(PriorityQueue(clock, maxsize=4), clock)  # type: ignore[no-any-return]


def deadline_scheduler() -> DeadlineScheduler:
    clock = ManualClock(start=10.0)
    return filled(  # type: ignore[no-any-return]
        DeadlineScheduler(clock, on_miss="reject", aging_rate=0.25), clock
    )


def deadline_scheduler_4() -> DeadlineScheduler:
    clock = ManualClock(start=10.0)
    return filled(DeadlineScheduler(clock, servers=4, on_miss="dead_letter"), clock)  # type: ignore[no-any-return]


def fair_scheduler() -> FairScheduler:
    clock = ManualClock(start=10.0)
    return filled(FairScheduler(clock, weights={"t1": 2.0}), clock)  # type: ignore[no-any-return]


IDS = ["a", "b", "c", "d", "new"]


# Counters of refusals: a refused call counts itself there, and changes nothing else.
REFUSAL_COUNTERS = {"rejected", "overflowed"}


def observe_queue(queue: Any) -> object:
    """Everything a caller can see, then a full drain (it consumes the queue)."""
    held = [i for i in IDS if i in queue]
    stats = attrs.asdict(queue.stats(), recurse=False)
    for counter in REFUSAL_COUNTERS:
        stats.pop(counter, None)
    seen: list[object] = [len(queue), held, queue.next_wakeup(), plain(stats)]
    if isinstance(queue, PriorityQueue):
        seen.append([queue.effective_priority(i) for i in held])
    elif isinstance(queue, DeadlineScheduler):
        seen.append([(queue.slack(i), queue.is_late(i)) for i in held])
    else:
        seen.append([queue.why_waiting(i) for i in held])
    order = []
    while (task := queue.pop()) is not None:
        order.append(task.id)
    seen.append(order)
    return seen


QUEUES: dict[str, Callable[[], Any]] = {
    "PriorityQueue": priority_queue,
    "DeadlineScheduler": deadline_scheduler,
    "DeadlineScheduler-4": deadline_scheduler_4,
    "FairScheduler": fair_scheduler,
}


class Boom(Exception):
    pass


def boom(task: Task) -> bool:
    raise Boom


def inside(call: Callable[[Any], object]) -> Callable[[Any], object]:
    """A pop whose where= predicate makes ``call`` on the same queue."""
    return lambda q: q.pop(lambda task: bool(call(q)) or True)


def inside_peek(call: Callable[[Any], object]) -> Callable[[Any], object]:
    return lambda q: q.peek(lambda task: bool(call(q)) or True)


def popped_then(call: Callable[[Any, Task], object]) -> Callable[[Any], object]:
    """Pop the first task, push it back as a new push would, then ``call(q, task)``."""

    def run(q: Any) -> object:
        return call(q, q.peek())

    return run


# -- the Queue contract's calls, on every queue -----------------------------------------

QUEUE_CASES: list[tuple[str, Callable[[Any], object], type[BaseException]]] = [
    ("push a str", lambda q: q.push("x"), InvalidTypeError),
    ("push None", lambda q: q.push(None), InvalidTypeError),
    ("push an int", lambda q: q.push(5), InvalidTypeError),
    ("push a dict", lambda q: q.push({"id": "x"}), InvalidTypeError),
    ("push a held id", lambda q: q.push(Task("a")), DuplicateTaskError),
    (
        "push enqueued_at nan",
        lambda q: q.push(Task("new"), enqueued_at=math.nan),
        InvalidArgumentError,
    ),
    (
        "push enqueued_at inf",
        lambda q: q.push(Task("new"), enqueued_at=math.inf),
        InvalidArgumentError,
    ),
    (
        "push enqueued_at -inf",
        lambda q: q.push(Task("new"), enqueued_at=-math.inf),
        InvalidArgumentError,
    ),
    (
        "push enqueued_at future",
        lambda q: q.push(Task("new"), enqueued_at=1e6),
        InvalidArgumentError,
    ),
    ("push enqueued_at str", lambda q: q.push(Task("new"), enqueued_at="0"), InvalidTypeError),
    ("push enqueued_at bool", lambda q: q.push(Task("new"), enqueued_at=True), InvalidTypeError),
    ("pop where=5", lambda q: q.pop(5), InvalidTypeError),
    ("pop where=str", lambda q: q.pop("urgent"), InvalidTypeError),
    ("pop where=list", lambda q: q.pop([1]), InvalidTypeError),
    ("peek where=5", lambda q: q.peek(5), InvalidTypeError),
    ("peek where=object", lambda q: q.peek(object()), InvalidTypeError),
    ("pop where raises", lambda q: q.pop(boom), Boom),
    ("peek where raises", lambda q: q.peek(boom), Boom),
    ("pop inside where", inside(lambda q: q.pop()), ReentrancyError),
    ("pop(where) inside where", inside(lambda q: q.pop(lambda t: True)), ReentrancyError),
    ("push inside where", inside(lambda q: q.push(Task("new"))), ReentrancyError),
    ("remove inside where", inside(lambda q: q.remove("c")), ReentrancyError),
    ("peek inside where", inside(lambda q: q.peek()), ReentrancyError),
    ("expire inside where", inside(lambda q: q.expire()), ReentrancyError),
    ("next_wakeup inside where", inside(lambda q: q.next_wakeup()), ReentrancyError),
    ("unpop inside where", inside(lambda q: q.unpop(Task("a"))), ReentrancyError),
    ("pop inside peek's where", inside_peek(lambda q: q.pop()), ReentrancyError),
    ("push inside peek's where", inside_peek(lambda q: q.push(Task("new"))), ReentrancyError),
    ("remove an unknown id", lambda q: q.remove("missing"), UnknownTaskError),
    ("remove a list id", lambda q: q.remove(["a"]), InvalidTypeError),
    ("remove a dict id", lambda q: q.remove({}), InvalidTypeError),
    ("unpop a task never popped", popped_then(lambda q, t: q.unpop(t)), TaskStateError),
    ("unpop a look-alike", lambda q: q.unpop(Task("a", priority=2)), TaskStateError),
    ("unpop a str", lambda q: q.unpop("a"), InvalidTypeError),
    ("unpop None", lambda q: q.unpop(None), InvalidTypeError),
    ("release a str", lambda q: q.release("a"), InvalidTypeError),
]


@pytest.mark.parametrize("make", QUEUES.values(), ids=QUEUES.keys())
@pytest.mark.parametrize(
    ("call", "error"), [(c, e) for _, c, e in QUEUE_CASES], ids=[n for n, _, _ in QUEUE_CASES]
)
def test_queue_contract_calls_are_refused_and_change_nothing(
    make: Callable[[], Any], call: Callable[[Any], object], error: type[BaseException]
) -> None:
    assert_refused(make, call, error, observe_queue)


# -- what each scheduler refuses of its own -----------------------------------------------


POPPED: dict[int, Task] = {}


def changed_after_a_pop(make: Callable[[], Any]) -> Callable[[], Any]:
    """``make``, then a pop, then a push and a remove: unpop's turn is over."""

    def build() -> Any:
        queue = make()
        POPPED[id(queue)] = queue.pop()
        queue.push(Task("new"))
        queue.remove("new")
        return queue

    return build


def unpop_after_a_change(q: Any) -> None:
    q.unpop(POPPED[id(q)])


def unpop_twice(q: Any) -> None:
    task = q.pop()
    q.unpop(task)
    q.unpop(task)


def pop_unpop_twin(make: Callable[[], Any]) -> Callable[[], Any]:
    """``make``, then a pop put back: what a refused second unpop must leave."""

    def build() -> Any:
        queue = make()
        queue.unpop(queue.pop())
        return queue

    return build


OWN_CASES: list[tuple[str, Callable[[], Any], Callable[[Any], object], type[BaseException]]] = [
    (
        "pq: effective_priority of a list",
        priority_queue,
        lambda q: q.effective_priority([]),
        InvalidTypeError,
    ),
    (
        "pq: effective_priority unknown",
        priority_queue,
        lambda q: q.effective_priority("x"),
        UnknownTaskError,
    ),
    (
        "pq: aged priority 10**400",
        priority_queue,
        lambda q: q.push(Task("new", priority=10**400)),
        InvalidArgumentError,
    ),
    (
        "pq: aged priority -(2**60)",
        priority_queue,
        lambda q: q.push(Task("new", priority=-(2**60))),
        InvalidArgumentError,
    ),
    ("pq: full, reject", bounded_queue, lambda q: q.push(Task("new")), QueueFullError),
    (
        "pq: full, reject, critical",
        bounded_queue,
        lambda q: q.push(Task("new", priority=-5)),
        QueueFullError,
    ),
    ("pq: unpop twice", pop_unpop_twin(priority_queue), unpop_twice, TaskStateError),
    (
        "ds: deadline now",
        deadline_scheduler,
        lambda q: q.push(Task("new", deadline=10.0)),
        DeadlineError,
    ),
    (
        "ds: deadline past",
        deadline_scheduler,
        lambda q: q.push(Task("new", deadline=-1e9)),
        DeadlineError,
    ),
    (
        "ds: cost 1e300",
        deadline_scheduler,
        lambda q: q.push(Task("new", cost=1e300, deadline=1e9)),
        InvalidArgumentError,
    ),
    (
        "ds: cost 1e300, no deadline",
        deadline_scheduler,
        lambda q: q.push(Task("new", cost=1e300)),
        InvalidArgumentError,
    ),
    (
        "ds: aged priority 10**400",
        deadline_scheduler,
        lambda q: q.push(Task("new", priority=10**400)),
        InvalidArgumentError,
    ),
    (
        "ds: cannot make it",
        deadline_scheduler,
        lambda q: q.push(Task("new", deadline=12.0, cost=5.0)),
        DeadlineInfeasibleError,
    ),
    (
        "ds: would make 'b' miss",
        deadline_scheduler,
        lambda q: q.push(Task("new", priority=0, cost=25.0)),
        DeadlineInfeasibleError,
    ),
    ("ds: slack unknown", deadline_scheduler, lambda q: q.slack("x"), UnknownTaskError),
    ("ds: slack of a list", deadline_scheduler, lambda q: q.slack([]), InvalidTypeError),
    ("ds: is_late unknown", deadline_scheduler, lambda q: q.is_late("x"), UnknownTaskError),
    ("ds: feasible of a str", deadline_scheduler, lambda q: q.feasible("a"), InvalidTypeError),
    (
        "ds: feasible cost 1e300",
        deadline_scheduler,
        lambda q: q.feasible(Task("n", cost=1e300, deadline=1e9)),
        InvalidArgumentError,
    ),
    ("ds: servers 0", deadline_scheduler, lambda q: setattr(q, "servers", 0), InvalidArgumentError),
    (
        "ds: servers -1",
        deadline_scheduler,
        lambda q: setattr(q, "servers", -1),
        InvalidArgumentError,
    ),
    ("ds: servers 1.5", deadline_scheduler, lambda q: setattr(q, "servers", 1.5), InvalidTypeError),
    (
        "ds: servers True",
        deadline_scheduler,
        lambda q: setattr(q, "servers", True),
        InvalidTypeError,
    ),
    ("ds: servers str", deadline_scheduler, lambda q: setattr(q, "servers", "2"), InvalidTypeError),
    (
        "ds: preempt a str",
        deadline_scheduler,
        lambda q: q.preemption_candidates("x", []),
        InvalidTypeError,
    ),
    (
        "ds: preempt running 5",
        deadline_scheduler,
        lambda q: q.preemption_candidates(Task("n"), 5),
        InvalidTypeError,
    ),
    (
        "ds: preempt running tasks",
        deadline_scheduler,
        lambda q: q.preemption_candidates(Task("n"), [Task("r")]),
        InvalidTypeError,
    ),
    (
        "ds: preempt start nan",
        deadline_scheduler,
        lambda q: q.preemption_candidates(Task("n"), [(Task("r"), math.nan)]),
        InvalidArgumentError,
    ),
    (
        "ds: preempt start future",
        deadline_scheduler,
        lambda q: q.preemption_candidates(Task("n"), [(Task("r"), 1e9)]),
        InvalidArgumentError,
    ),
    (
        "ds: preempt duplicate",
        deadline_scheduler,
        lambda q: q.preemption_candidates(Task("n"), [(Task("r"), 0.0), (Task("r"), 1.0)]),
        DuplicateTaskError,
    ),
    (
        "ds: feasible inside where",
        deadline_scheduler,
        inside(lambda q: q.feasible(Task("x"))),
        ReentrancyError,
    ),
    ("ds: slack inside where", deadline_scheduler, inside(lambda q: q.slack("a")), ReentrancyError),
    (
        "ds: expire_with_reasons inside where",
        deadline_scheduler,
        inside(lambda q: q.expire_with_reasons()),
        ReentrancyError,
    ),
    (
        "ds: servers inside where",
        deadline_scheduler,
        inside(lambda q: setattr(q, "servers", 2)),
        ReentrancyError,
    ),
    (
        "ds: unpop after a change",
        changed_after_a_pop(deadline_scheduler),
        unpop_after_a_change,
        TaskStateError,
    ),
    (
        "pq: unpop after a change",
        changed_after_a_pop(priority_queue),
        unpop_after_a_change,
        TaskStateError,
    ),
    (
        "ds4: cost 1e300",
        deadline_scheduler_4,
        lambda q: q.push(Task("new", cost=1e300)),
        InvalidArgumentError,
    ),
    (
        "fair: release never popped",
        fair_scheduler,
        lambda q: q.release(Task("a")),
        OverReleaseError,
    ),
    (
        "fair: release inside where",
        fair_scheduler,
        inside(lambda q: q.release(Task("a"))),
        ReentrancyError,
    ),
    (
        "fair: set_weight inside where",
        fair_scheduler,
        inside(lambda q: q.set_weight("t1", 3.0)),
        ReentrancyError,
    ),
    (
        "fair: unpop after a change",
        changed_after_a_pop(fair_scheduler),
        unpop_after_a_change,
        TaskStateError,
    ),
]


def observe_own(subject: Any) -> object:
    return observe_queue(subject)


@pytest.mark.parametrize(
    ("make", "call", "error"),
    [(m, c, e) for _, m, c, e in OWN_CASES],
    ids=[n for n, _, _, _ in OWN_CASES],
)
def test_each_schedulers_own_bad_calls_are_refused_and_change_nothing(
    make: Callable[[], Any], call: Callable[[Any], object], error: type[BaseException]
) -> None:
    assert_refused(make, call, error, observe_own)


# -- BatchOptimizer ---------------------------------------------------------------------


def sizing_that_calls_back(batcher: dict[str, BatchOptimizer]) -> AIMDSizing:
    class Meddling(AIMDSizing):
        def adjust(self, current: int, size: int, duration: float, lo: int, hi: int) -> int:
            batcher["it"].add(Task("meddled", group="g"))
            return current

    return Meddling(target_latency=1.0)


def batch_optimizer(key: Callable[[Task], Hashable] | None = None) -> BatchOptimizer:
    clock = ManualClock(start=10.0)
    batcher = BatchOptimizer(
        clock,
        max_size=4,
        max_wait=2.0,
        max_cost=10.0,
        max_resources={"tokens": 100.0},
        key=key,
        groups={"small": GroupLimits(max_size=2, max_wait=0.5)},
    )
    for i, group in enumerate(["g", "g", "small", "h"]):
        batcher.add(Task(f"t{i}", group=group, ttl=30.0, cost=1.0, resources={"tokens": 5.0}))
    return batcher


def key_case(call: Callable[[BatchOptimizer], object]) -> Callable[[], BatchOptimizer]:
    """An optimizer whose key function makes ``call`` on it for the task "probe"."""

    def build() -> BatchOptimizer:
        holder: dict[str, BatchOptimizer] = {}

        def key(task: Task) -> Hashable:
            if task.id == "probe":
                call(holder["it"])
            return task.group

        holder["it"] = batch_optimizer(key)
        return holder["it"]

    return build


def key_returning(value: Callable[[Task], Any]) -> Callable[[], BatchOptimizer]:
    """An optimizer whose key function gives ``value(task)`` for the task "probe"."""
    return lambda: batch_optimizer(lambda t: value(t) if t.id == "probe" else t.group)


def with_sizing_meddling() -> BatchOptimizer:
    holder: dict[str, BatchOptimizer] = {}
    clock = ManualClock(start=10.0)
    holder["it"] = BatchOptimizer(clock, max_size=2, sizing=sizing_that_calls_back(holder))
    holder["it"].add(Task("x", group="g"))
    return holder["it"]


A_BATCH = Batch(0, "g", (Task("x", group="g"),), 0.0, 1.0, reason=None)  # type: ignore[arg-type]


def observe_batcher(batcher: BatchOptimizer) -> object:
    stats = batcher.stats()
    seen = [
        len(batcher),
        [f"t{i}" in batcher for i in range(5)],
        batcher.next_wakeup(),
        stats.pending,
        stats.open_batches,
        stats.formed,
        {key: group.pending for key, group in stats.groups.items()},
        {key: batcher.target_size(key) for key in ("g", "h", "small")},
    ]
    seen.append([(b.key, b.ids, b.reason) for b in batcher.flush()])
    return seen


BATCH_CASES: list[
    tuple[
        str, Callable[[], BatchOptimizer], Callable[[BatchOptimizer], object], type[BaseException]
    ]
] = [
    ("add a str", batch_optimizer, lambda b: b.add("x"), InvalidTypeError),
    ("add None", batch_optimizer, lambda b: b.add(None), InvalidTypeError),
    (
        "add a pending id",
        batch_optimizer,
        lambda b: b.add(Task("t0", group="g")),
        DuplicateTaskError,
    ),
    (
        "add over max_cost",
        batch_optimizer,
        lambda b: b.add(Task("n", cost=11.0)),
        InvalidArgumentError,
    ),
    (
        "add over max_resources",
        batch_optimizer,
        lambda b: b.add(Task("n", resources={"tokens": 101.0})),
        InvalidArgumentError,
    ),
    (
        "add enqueued_at nan",
        batch_optimizer,
        lambda b: b.add(Task("n"), enqueued_at=math.nan),
        InvalidArgumentError,
    ),
    (
        "add enqueued_at inf",
        batch_optimizer,
        lambda b: b.add(Task("n"), enqueued_at=math.inf),
        InvalidArgumentError,
    ),
    (
        "add enqueued_at future",
        batch_optimizer,
        lambda b: b.add(Task("n"), enqueued_at=11.0),
        InvalidArgumentError,
    ),
    (
        "add enqueued_at str",
        batch_optimizer,
        lambda b: b.add(Task("n"), enqueued_at="1"),
        InvalidTypeError,
    ),
    (
        "key returns a list",
        key_returning(lambda t: [t.group]),
        lambda b: b.add(Task("probe")),
        InvalidTypeError,
    ),
    (
        "key raises",
        key_returning(lambda t: 1 // 0),
        lambda b: b.add(Task("probe")),
        ZeroDivisionError,
    ),
    (
        "add inside key",
        key_case(lambda b: b.add(Task("inner"))),
        lambda b: b.add(Task("probe")),
        ReentrancyError,
    ),
    (
        "remove inside key",
        key_case(lambda b: b.remove("t0")),
        lambda b: b.add(Task("probe")),
        ReentrancyError,
    ),
    (
        "poll inside key",
        key_case(lambda b: b.poll()),
        lambda b: b.add(Task("probe")),
        ReentrancyError,
    ),
    (
        "flush inside key",
        key_case(lambda b: b.flush()),
        lambda b: b.add(Task("probe")),
        ReentrancyError,
    ),
    (
        "next_wakeup inside key",
        key_case(lambda b: b.next_wakeup()),
        lambda b: b.add(Task("probe")),
        ReentrancyError,
    ),
    (
        "record inside key",
        key_case(lambda b: b.record(A_BATCH, 1.0)),
        lambda b: b.add(Task("probe")),
        ReentrancyError,
    ),
    (
        "set_group inside key",
        key_case(lambda b: b.set_group("g", None)),
        lambda b: b.add(Task("probe")),
        ReentrancyError,
    ),
    (
        "add inside a sizing rule",
        with_sizing_meddling,
        lambda b: b.record(A_BATCH, 0.5),
        ReentrancyError,
    ),
    ("remove unknown", batch_optimizer, lambda b: b.remove("missing"), UnknownTaskError),
    ("remove a list", batch_optimizer, lambda b: b.remove([]), InvalidTypeError),
    ("record a str", batch_optimizer, lambda b: b.record("batch", 1.0), InvalidTypeError),
    (
        "record duration -1",
        batch_optimizer,
        lambda b: b.record(A_BATCH, -1.0),
        InvalidArgumentError,
    ),
    (
        "record duration nan",
        batch_optimizer,
        lambda b: b.record(A_BATCH, math.nan),
        InvalidArgumentError,
    ),
    (
        "record duration inf",
        batch_optimizer,
        lambda b: b.record(A_BATCH, math.inf),
        InvalidArgumentError,
    ),
    ("record duration str", batch_optimizer, lambda b: b.record(A_BATCH, "1"), InvalidTypeError),
    ("set_group an int", batch_optimizer, lambda b: b.set_group("g", 5), InvalidTypeError),
    (
        "set_group a list key",
        batch_optimizer,
        lambda b: b.set_group([], GroupLimits()),
        InvalidTypeError,
    ),
    (
        "set_group below min_size",
        lambda: BatchOptimizer(ManualClock(), min_size=3),
        lambda b: b.set_group("g", GroupLimits(max_size=2)),
        InvalidArgumentError,
    ),
    ("target_size of a list", batch_optimizer, lambda b: b.target_size([]), InvalidTypeError),
    ("group of a list", batch_optimizer, lambda b: b.group([]), InvalidTypeError),
]


@pytest.mark.parametrize(
    ("make", "call", "error"),
    [(m, c, e) for _, m, c, e in BATCH_CASES],
    ids=[n for n, _, _, _ in BATCH_CASES],
)
def test_batch_optimizer_bad_calls_are_refused_and_change_nothing(
    make: Callable[[], BatchOptimizer],
    call: Callable[[BatchOptimizer], object],
    error: type[BaseException],
) -> None:
    assert_refused(make, call, error, observe_batcher)


def test_the_red_team_makes_at_least_a_hundred_calls() -> None:
    count = len(QUEUE_CASES) * len(QUEUES) + len(OWN_CASES) + len(BATCH_CASES)
    assert count >= 100, count


# -- extreme but valid numbers: taken, and ordered right -------------------------------------


def test_priorities_at_the_accepted_extremes_order_exactly_without_aging() -> None:
    queue = PriorityQueue(ManualClock())
    top = 2**53
    for task_id, priority in [("huge", top), ("tiny", -top), ("zero", 0), ("big", top - 1)]:
        queue.push(Task(task_id, priority=priority))
    assert queue.effective_priority("huge") == float(top)
    assert queue.effective_priority("tiny") == -float(top)
    assert [queue.pop().id for _ in range(4)] == ["tiny", "zero", "big", "huge"]  # type: ignore[union-attr]


def test_priorities_beyond_the_accepted_range_are_refused_before_any_queue() -> None:
    with pytest.raises(InvalidArgumentError, match="priority"):
        Task("huge", priority=10**400)


def test_a_deadline_scheduler_orders_extreme_priorities_with_deadlines_and_critical() -> None:
    edf = DeadlineScheduler(ManualClock())
    edf.push(Task("late", priority=2**53, deadline=5.0))
    edf.push(Task("early", priority=2**53 - 1, deadline=5.0))
    edf.push(Task("emergency", priority=-(2**53)))
    assert [edf.pop().id for _ in range(3)] == ["emergency", "early", "late"]  # type: ignore[union-attr]


def test_large_but_accepted_costs_keep_the_work_finite() -> None:
    edf = DeadlineScheduler(ManualClock(), servers=3)
    for i in range(50):
        edf.push(Task(i, cost=1e18, deadline=1e300))
    assert edf.slack(49) < math.inf and not math.isnan(edf.slack(49))
    assert len(edf) == 50
