"""The ``Queue`` contract as tests: check that a queue keeps the protocol's promises.

taskdist's own queues run this suite; run it on yours too. A queue is given
by a factory that takes a :class:`~taskdist.clock.ManualClock` (the suite
moves time itself)::

    from taskdist.testing import check_queue, queue_machine

    def make(clock):
        return MyQueue(clock)

    check_queue(make)                          # plain assertions, any test runner
    TestMyQueue = queue_machine(make).TestCase  # a Hypothesis state machine

:func:`check_queue` runs every function in :data:`QUEUE_CHECKS` (each one
is also usable alone, e.g. to parametrise a test over them); it needs
nothing but taskdist. :func:`queue_machine` builds a Hypothesis
``RuleBasedStateMachine`` that drives the queue with random pushes, pops
(with and without ``where=``), peeks, removals, expiries, releases,
``unpop`` and ``check_push`` when the queue has them, bad input and the
passing of time, and compares it after every step with a model of what the
protocol promises;
it imports Hypothesis when called.

What the protocol promises, and so what is checked, is what every queue
shares; the order among tasks is each queue's own (its own tests pin it):

- ``push`` keeps the task, or hands back an :class:`~taskdist.queues.Eviction`
  (of that task or of a held one, which leaves), or raises a
  :class:`~taskdist.errors.TaskdistError` and changes nothing. Not a
  ``Task``, an id already held, or an ``enqueued_at`` that is NaN,
  infinite or in the future are refused that way.
- ``pop(where)`` returns a held task that satisfies ``where`` and whose TTL
  has not run out, and it leaves; ``None`` only when no held task that is
  still in time satisfies it. ``peek(where)`` is the task that ``pop(where)``
  would return, and changes nothing. Tasks that fail ``where`` stay where
  they are; a ``where`` that raises, or that is not callable, changes
  nothing; a ``where`` that calls back into the queue loses no task (the
  queue refuses the call with ``ReentrancyError``, or handles it).
- ``remove(task_id)`` returns the held task, which leaves; an unknown id is
  an ``UnknownTaskError`` and an unhashable one an ``InvalidTypeError``,
  both changing nothing.
- A task whose TTL ran out (``enqueued_at + ttl <= now``) is never popped
  or peeked; it stays in ``len`` and ``in`` until ``expire()`` returns it,
  and ``expire()`` returns every such task, once. ``next_wakeup()`` is
  never later than the earliest TTL expiry held (once one has passed, it
  is a time not after now: "call ``expire()`` now").
- ``release(task)`` is accepted for a task that ``pop`` handed out; it can
  then be pushed again.
- ``len(q)`` counts the held tasks and ``task_id in q`` says whether one is
  held (an unhashable id is in no queue). Nothing is lost or duplicated:
  every task pushed leaves exactly once, by ``pop``, ``remove``,
  ``expire()`` or an ``Eviction``.
- Optional: a queue with ``unpop(task)`` puts back the task the latest
  ``pop`` returned, exactly as it was (the next ``pop`` returns it again),
  and refuses anything else with ``TaskStateError``, changing nothing.
- Optional: a queue with ``check_push(task)`` raises what ``push(task)``
  would raise to refuse it, of the same class, and changes nothing; a task
  it passes, ``push`` takes (or answers with an ``Eviction``). The one
  refusal it may leave to ``push`` is ``DeadlineInfeasibleError``: whether
  a task would be admitted on time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

from taskdist.clock import ManualClock
from taskdist.errors import (
    DeadlineInfeasibleError,
    DuplicateTaskError,
    InvalidArgumentError,
    InvalidTypeError,
    ReentrancyError,
    TaskdistError,
    TaskStateError,
    UnknownTaskError,
)
from taskdist.queues.protocol import Eviction, Queue
from taskdist.task import Reason, Task

__all__ = ["QUEUE_CHECKS", "QueueFactory", "check_check_push", "check_queue", "queue_machine"]

QueueFactory = Callable[[ManualClock], Queue]
"""Makes a fresh, empty queue that reads time from the clock it is given."""

_START = 100.0


def _expect(condition: object, promise: str) -> None:
    """Fail with ``promise`` unless ``condition`` holds (not an ``assert``: it survives ``-O``)."""
    if not condition:
        raise AssertionError(promise)


def _fresh(make: QueueFactory) -> tuple[Any, ManualClock]:
    clock = ManualClock(start=_START)
    queue = make(clock)
    _expect(isinstance(queue, Queue), f"{type(queue).__name__} does not satisfy the Queue protocol")
    _expect(len(queue) == 0, "a fresh queue must be empty")
    return queue, clock


def _sample(clock: ManualClock, count: int = 5, **fields: Any) -> list[Task]:
    """Tasks that every queue accepts: distinct priorities, deadlines well ahead."""
    return [
        Task(f"t{i}", priority=i % 4, deadline=clock.now() + 1_000.0 + i, **fields)
        for i in range(count)
    ]


def _filled(make: QueueFactory, **fields: Any) -> tuple[Any, ManualClock, list[Task]]:
    queue, clock = _fresh(make)
    tasks = _sample(clock, **fields)
    for task in tasks:
        _expect(queue.push(task) is None, f"push({task!r}) into a roomy queue must keep it")
    return queue, clock, tasks


def _drain(queue: Any) -> list[Hashable]:
    """Every task id, in pop order (empties the queue)."""
    order = []
    while (task := queue.pop()) is not None:
        order.append(task.id)
        if len(order) > 10_000:
            raise AssertionError("pop() keeps returning tasks: more than were pushed")
    return order


def _observe(queue: Any, ids: list[Hashable]) -> tuple[object, ...]:
    """What a caller sees, ending with a full drain (consumes the queue)."""
    return (len(queue), [i for i in ids if i in queue], queue.next_wakeup(), _drain(queue))


def _refused(
    make: QueueFactory,
    call: Callable[[Any, ManualClock, list[Task]], object],
    error: type[BaseException],
    what: str,
    prepare: Callable[[Any], object] | None = None,
) -> None:
    """``call`` raises ``error`` and leaves the queue as a twin that never saw it.

    Both are filled with the sample tasks, then given ``prepare``.
    """
    queue, clock, tasks = _filled(make)
    twin, _, _ = _filled(make)
    if prepare is not None:
        prepare(queue)
        prepare(twin)
    try:
        call(queue, clock, tasks)
    except error:
        pass
    except Exception as other:
        raise AssertionError(
            f"{what}: expected {error.__name__}, got {type(other).__name__}: {other}"
        ) from other
    else:
        raise AssertionError(f"{what}: expected {error.__name__}")
    ids: list[Hashable] = [task.id for task in tasks] + ["new"]
    _expect(_observe(queue, ids) == _observe(twin, ids), f"{what} changed the queue")


# -- the checks ------------------------------------------------------------------------


def check_push_pop_len_in(make: QueueFactory) -> None:
    """Pushed tasks are counted and found by id; pop hands each out once, then ``None``."""
    queue, _, tasks = _filled(make)
    _expect(len(queue) == len(tasks) and bool(queue), "len(q) counts the pushed tasks")
    _expect(all(task.id in queue for task in tasks), "task_id in q finds every held task")
    _expect("absent" not in queue, "an id never pushed is not in q")
    _expect(["unhashable"] not in queue, "an unhashable id is in no queue (no error)")
    popped = []
    while (task := queue.pop()) is not None:
        _expect(task.id not in queue, "a popped task is no longer held")
        popped.append(task)
        _expect(len(queue) == len(tasks) - len(popped), "len(q) falls by one per pop")
    _expect(len(popped) == len(tasks), "pop hands out every task, then None")
    _expect({t.id for t in popped} == {t.id for t in tasks}, "each task once")
    _expect(all(any(p is t for t in tasks) for p in popped), "pop returns the pushed objects")
    _expect(len(queue) == 0 and not queue, "an emptied queue is empty")
    _expect(queue.peek() is None and queue.pop() is None, "an empty queue gives None")


def check_peek_is_pop_without_removal(make: QueueFactory) -> None:
    """``peek(where)`` names what ``pop(where)`` returns and changes nothing."""
    queue, _, tasks = _filled(make)
    odd = {task.id for task in tasks[1::2]}

    def where(task: Task) -> bool:
        return task.id in odd

    for predicate in (None, where):
        peeked = queue.peek(predicate)
        _expect(peeked is not None, "peek finds a task when one qualifies")
        _expect(queue.peek(predicate) is peeked, "peek changes nothing")
        _expect(queue.pop(predicate) is peeked, "pop returns what peek named")
    _expect(len(queue) == len(tasks) - 2, "only the two pops took tasks")


def check_where_leaves_the_others_in_place(make: QueueFactory) -> None:
    """``pop(where)`` takes a match; a miss returns ``None`` and changes nothing."""
    queue, _, tasks = _filled(make)
    twin, _, _ = _filled(make)
    target = tasks[2]
    _expect(queue.pop(lambda task: task.id == target.id) is target, "pop(where) takes the match")
    _expect(target.id not in queue, "the match leaves")
    _expect(queue.pop(lambda task: False) is None, "pop(where) with no match gives None")
    _expect(queue.peek(lambda task: False) is None, "peek(where) with no match gives None")
    twin.remove(target.id)
    ids: list[Hashable] = [task.id for task in tasks]
    _expect(_observe(queue, ids) == _observe(twin, ids), "tasks that fail where= stay in place")


def check_a_failing_where_changes_nothing(make: QueueFactory) -> None:
    """A predicate that raises lets its error through and leaves the queue unchanged."""

    class Broken(Exception):
        pass

    def broken(task: Task) -> bool:
        raise Broken

    _refused(make, lambda queue, _c, _t: queue.pop(broken), Broken, "pop(where=raises)")
    _refused(make, lambda queue, _c, _t: queue.peek(broken), Broken, "peek(where=raises)")


def check_where_must_be_callable(make: QueueFactory) -> None:
    """``where=`` that is not callable is an ``InvalidTypeError``, changing nothing."""
    _refused(make, lambda queue, _c, _t: queue.pop(5), InvalidTypeError, "pop(where=5)")
    _refused(make, lambda queue, _c, _t: queue.peek("x"), InvalidTypeError, "peek(where='x')")


def check_reentrant_where_loses_nothing(make: QueueFactory) -> None:
    """A ``where=`` that calls back into the queue (pop, push, remove) strands no task.

    The queue may refuse the call from inside with ``ReentrancyError`` (then
    the outer call raises it too and changes nothing), or handle it; either
    way every task stays held or is handed out exactly once.
    """
    for inner in ("pop", "push", "remove", "peek"):
        _reenter(make, inner)


def _reenter(make: QueueFactory, inner: str) -> None:
    queue, _, tasks = _filled(make)
    handed: list[Task] = []
    pushed: list[Hashable] = []
    calls = 0

    def where(task: Task) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            if inner == "pop":
                got = queue.pop()
                if got is not None:
                    handed.append(got)
            elif inner == "push":
                queue.push(Task("pushed-inside"))
                pushed.append("pushed-inside")
            elif inner == "remove":
                handed.append(queue.remove(tasks[-1].id))
            else:
                queue.peek()
        return True

    try:
        got = queue.pop(where)
    except ReentrancyError:
        got = None
        _expect(not handed and not pushed, f"{inner}() inside where= was refused, yet changed")
    if got is not None:
        handed.append(got)
    while (task := queue.pop()) is not None:
        handed.append(task)
    ids = sorted(repr(task.id) for task in handed)
    expected = sorted([repr(task.id) for task in tasks] + [repr(i) for i in pushed])
    _expect(ids == expected, f"{inner}() inside where=: a task was lost or handed out twice")


def check_remove(make: QueueFactory) -> None:
    """``remove`` returns the held task; unknown or unhashable ids change nothing."""
    queue, _, tasks = _filled(make)
    _expect(queue.remove(tasks[1].id) is tasks[1], "remove returns the held task")
    _expect(tasks[1].id not in queue, "a removed task is no longer held")
    _expect(len(queue) == len(tasks) - 1, "len(q) falls by one")
    _refused(make, lambda q, _c, _t: q.remove("absent"), UnknownTaskError, "remove(unknown)")
    _refused(make, lambda q, _c, _t: q.remove(["x"]), InvalidTypeError, "remove(unhashable)")


def check_bad_pushes_change_nothing(make: QueueFactory) -> None:
    """Not a Task, a held id, a bad ``enqueued_at``: refused, queue unchanged."""
    cases: list[tuple[Callable[[Any, ManualClock, list[Task]], object], type[Exception], str]] = [
        (lambda q, _c, _t: q.push("not a task"), InvalidTypeError, "push(str)"),
        (lambda q, _c, t: q.push(Task(t[0].id)), DuplicateTaskError, "push(held id)"),
        (
            lambda q, _c, _t: q.push(Task("new"), enqueued_at=math.nan),
            InvalidArgumentError,
            "enqueued_at=nan",
        ),
        (
            lambda q, _c, _t: q.push(Task("new"), enqueued_at=math.inf),
            InvalidArgumentError,
            "enqueued_at=inf",
        ),
        (
            lambda q, c, _t: q.push(Task("new"), enqueued_at=c.now() + 1.0),
            InvalidArgumentError,
            "enqueued_at in the future",
        ),
    ]
    for call, error, what in cases:
        _refused(make, call, error, what)


def check_ttl_expiry(make: QueueFactory) -> None:
    """An expired task is never popped; it is held until ``expire()`` returns it, once."""
    queue, clock = _fresh(make)
    short = Task("short", priority=0, ttl=5.0, deadline=clock.now() + 1_000.0)
    other = Task("other", priority=3, deadline=clock.now() + 2_000.0)
    queue.push(short)
    queue.push(other)
    wakeup = queue.next_wakeup()
    _expect(wakeup is not None and wakeup <= clock.now() + 5.0, "next_wakeup() by the expiry")
    clock.advance(5.0)
    _expect("short" in queue and len(queue) == 2, "an expired task is held until expire()")
    _expect(queue.peek() is other, "an expired task is never peeked")
    _expect(queue.pop() is other, "an expired task is never popped")
    wakeup = queue.next_wakeup()
    _expect(wakeup is not None and wakeup <= clock.now(), "next_wakeup() says expire() is due")
    _expect(queue.expire() == [short], "expire() returns the expired task")
    _expect(len(queue) == 0 and "short" not in queue, "the expired task left")
    _expect(queue.expire() == [], "expire() returns a task once")
    _expect(queue.next_wakeup() is None, "nothing left to wake up for")


def check_backdated_push_keeps_its_age(make: QueueFactory) -> None:
    """``enqueued_at`` in the past counts toward the TTL."""
    queue, clock = _fresh(make)
    task = Task("requeued", ttl=10.0, deadline=clock.now() + 1_000.0)
    queue.push(task, enqueued_at=clock.now() - 8.0)
    clock.advance(1.0)
    _expect(queue.expire() == [], "a TTL runs from enqueued_at: not yet")
    clock.advance(1.0)
    _expect(queue.expire() == [task], "a TTL runs from enqueued_at: expired at 10 s")


def check_release_then_push_again(make: QueueFactory) -> None:
    """A popped task is released once, then may be pushed again."""
    queue, _, tasks = _filled(make)
    task = queue.pop()
    _expect(task is not None, "pop hands out a task")
    queue.release(task)
    _expect(queue.push(task) is None, "a released task can be pushed again")
    _expect(task.id in queue and len(queue) == len(tasks), "it is held again")


def check_unpop(make: QueueFactory) -> None:
    """Optional ``unpop``: the latest popped task goes back exactly; anything else is refused."""
    queue, _, tasks = _filled(make)
    if not callable(getattr(queue, "unpop", None)):
        return
    ids: list[Hashable] = [task.id for task in tasks]
    first = queue.pop()
    _expect(first is not None, "pop hands out a task")
    queue.unpop(first)
    _expect(first.id in queue and len(queue) == len(tasks), "unpop puts it back")
    _expect(queue.pop() is first, "the next pop returns the task put back")
    queue.unpop(first)
    twin, _, _ = _filled(make)
    _expect(_observe(queue, ids) == _observe(twin, ids), "unpop restores the queue exactly")

    def pop(q: Any) -> None:
        q.pop()

    def pop_and_push(q: Any) -> None:
        q.pop()
        q.push(Task("new"))

    def pop_and_unpop(q: Any) -> None:
        q.unpop(q.pop())

    for prepare, call, error, what in (
        (None, lambda q, _c, t: q.unpop(t[0]), TaskStateError, "unpop of a task never popped"),
        (pop_and_unpop, lambda q, _c, t: q.unpop(q.peek()), TaskStateError, "unpop twice"),
        (pop_and_push, lambda q, _c, t: q.unpop(t[0]), TaskStateError, "unpop after a push"),
        (pop, lambda q, _c, _t: q.unpop("not a task"), InvalidTypeError, "unpop(str)"),
    ):
        _refused(make, call, error, what, prepare)


def check_check_push(make: QueueFactory) -> None:
    """Optional ``check_push``: refuses as ``push`` would, changes nothing, passes a good task."""
    queue, clock, tasks = _filled(make)
    if not callable(getattr(queue, "check_push", None)):
        return
    for call, error, what in (
        (lambda q, _c, _t: q.check_push("not a task"), InvalidTypeError, "check_push(str)"),
        (lambda q, _c, t: q.check_push(Task(t[0].id)), DuplicateTaskError, "check_push(held id)"),
    ):
        _refused(make, call, error, what)
    fresh = Task("new", deadline=clock.now() + 2_000.0)
    ids: list[Hashable] = [task.id for task in tasks] + ["new"]
    pushed, _, _ = _filled(make)
    try:
        answer = queue.check_push(fresh)
    except TaskdistError as error:  # a queue with no room left, say: push must agree
        try:
            pushed.push(fresh)
        except type(error):
            return
        except TaskdistError as other:
            raise AssertionError(
                f"check_push raised {type(error).__name__}, push {type(other).__name__}"
            ) from other
        raise AssertionError(
            f"check_push raised {type(error).__name__} for a task push took"
        ) from error
    _expect(answer is None, "check_push returns None for a task it passes")
    twin, _, _ = _filled(make)
    _expect(_observe(queue, ids) == _observe(twin, ids), "check_push of a good task changed it")
    try:
        result = pushed.push(fresh)
    except DeadlineInfeasibleError:  # on-time admission: the one refusal left to push
        return
    _expect(
        result is None or isinstance(result, Eviction),
        "push takes a task check_push passed (or answers with an Eviction)",
    )


QUEUE_CHECKS: tuple[Callable[[QueueFactory], None], ...] = (
    check_push_pop_len_in,
    check_peek_is_pop_without_removal,
    check_where_leaves_the_others_in_place,
    check_a_failing_where_changes_nothing,
    check_where_must_be_callable,
    check_reentrant_where_loses_nothing,
    check_remove,
    check_bad_pushes_change_nothing,
    check_ttl_expiry,
    check_backdated_push_keeps_its_age,
    check_release_then_push_again,
    check_unpop,
    check_check_push,
)
"""Every example check of the contract, each a function of a :data:`QueueFactory`."""


def check_queue(make: QueueFactory) -> None:
    """Run every check in :data:`QUEUE_CHECKS` on queues from ``make``.

    Raises ``AssertionError`` naming the first promise broken. Each check
    makes its own queues, so ``make`` must return a new one per call.
    Complexity: a few hundred queue operations.
    """
    for check in QUEUE_CHECKS:
        check(make)


def queue_machine(make: QueueFactory, *, max_ttl: float = 8.0) -> type[Any]:
    """A Hypothesis ``RuleBasedStateMachine`` class that checks queues from ``make``.

    Use its ``TestCase`` with pytest or unittest, and set Hypothesis
    ``settings`` on it as for any state machine. Tasks get ids of their
    own, priorities -1..4, costs, optional TTLs (up to ``max_ttl``),
    deadlines ahead of now and tenants; time moves in quarter seconds, so
    every sum is exact. Imports Hypothesis (a test dependency, not one of
    taskdist's).
    """
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        RuleBasedStateMachine,
        initialize,
        invariant,
        precondition,
        rule,
    )

    quarters = st.integers(min_value=0, max_value=16).map(lambda n: n / 4)
    ttls = st.none() | st.integers(min_value=1, max_value=int(max_ttl * 4)).map(lambda n: n / 4)

    class QueueContract(RuleBasedStateMachine):
        """The queue against a model: id -> (task, TTL expiry or None)."""

        @initialize()
        def start(self) -> None:
            self.clock = ManualClock(start=_START)
            self.queue: Any = make(self.clock)
            _expect(isinstance(self.queue, Queue), "the factory must make a Queue")
            self.model: dict[Hashable, tuple[Task, float | None]] = {}
            self.popped: list[Task] = []  # handed out by pop, not yet released
            # The latest pop's task, where= and time, while unpop may put it back.
            self.last_pop: tuple[Task, Callable[[Task], bool] | None, float] | None = None
            self.pushed = 0
            self.expiry_of: dict[Hashable, float | None] = {}
            self.left: set[Hashable] = set()
            self.has_unpop = callable(getattr(self.queue, "unpop", None))
            self.has_check_push = callable(getattr(self.queue, "check_push", None))

        # -- the model ---------------------------------------------------------

        def expired(self, expires: float | None) -> bool:
            return expires is not None and expires <= self.clock.now()

        def in_time(self, task: Task, expires: float | None) -> bool:
            """Surely poppable: its TTL and (if any) its deadline are still ahead."""
            deadline = task.deadline
            return not self.expired(expires) and (deadline is None or deadline > self.clock.now())

        def leave(self, task_id: Hashable) -> None:
            _expect(task_id not in self.left, f"{task_id!r} left twice")
            del self.model[task_id]
            self.left.add(task_id)

        def changed(self) -> None:
            self.last_pop = None

        # -- rules -------------------------------------------------------------

        @rule(
            priority=st.integers(min_value=-1, max_value=4),
            cost=quarters,
            ttl=ttls,
            deadline=st.none() | quarters.map(lambda q: q + 0.25),
            back=st.none() | quarters,
            tenant=st.sampled_from(["a", "b", None]),
        )
        def push(
            self,
            priority: int,
            cost: float,
            ttl: float | None,
            deadline: float | None,
            back: float | None,
            tenant: str | None,
        ) -> None:
            now = self.clock.now()
            task = Task(
                ("task", self.pushed),
                priority=priority,
                cost=cost,
                ttl=ttl,
                deadline=None if deadline is None else now + deadline,
                tenant=tenant,
            )
            self.pushed += 1
            enqueued = None if back is None else now - back
            size = len(self.queue)
            verdict = self.ask_check_push(task)
            try:
                result = self.queue.push(task, enqueued_at=enqueued)
            except TaskdistError as error:
                _expect(len(self.queue) == size and task.id not in self.queue, "refused: unchanged")
                if self.has_check_push:
                    _expect(
                        verdict is type(error)
                        or (verdict is None and isinstance(error, DeadlineInfeasibleError)),
                        f"push raised {type(error).__name__}, check_push "
                        f"{'passed it' if verdict is None else 'raised ' + verdict.__name__}",
                    )
                return
            _expect(verdict is None, f"check_push raised {verdict!r} for a task push took")
            self.changed()
            start = now if enqueued is None else enqueued
            expires = None if ttl is None else start + ttl
            self.model[task.id] = (task, expires)
            self.expiry_of[task.id] = expires
            if result is not None:
                _expect(isinstance(result, Eviction), f"push returned {result!r}")
                _expect(result.task.id in self.model, "an eviction hands back a held task")
                self.leave(result.task.id)

        def ask_check_push(self, task: Task) -> type[TaskdistError] | None:
            """What ``check_push`` refuses ``task`` with (None: passed); it changes nothing."""
            if not self.has_check_push:
                return None
            size, held = len(self.queue), task.id in self.queue
            verdict: type[TaskdistError] | None = None
            try:
                self.queue.check_push(task)
            except TaskdistError as error:
                verdict = type(error)
            _expect(
                len(self.queue) == size and (task.id in self.queue) == held,
                "check_push changes nothing",
            )
            return verdict

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def push_a_held_id(self, data: st.DataObject) -> None:
            task_id = data.draw(st.sampled_from(sorted(self.model, key=repr)))
            if self.has_check_push:
                _expect(
                    self.ask_check_push(Task(task_id)) is DuplicateTaskError,
                    "check_push of a held id must raise DuplicateTaskError",
                )
            try:
                self.queue.push(Task(task_id))
            except DuplicateTaskError:
                return
            raise AssertionError("a held id pushed again must raise DuplicateTaskError")

        @rule(modulus=st.none() | st.integers(min_value=2, max_value=3))
        def pop(self, modulus: int | None) -> None:
            def where(task: Task) -> bool:
                return modulus is None or task.cost * 4 % modulus == 0

            predicate = None if modulus is None else where
            peeked = self.queue.peek(predicate)
            task = self.queue.pop(predicate)
            _expect(task is peeked, "pop returns what peek named")
            self.last_pop = None if task is None else (task, predicate, self.clock.now())
            if task is None:
                _expect(
                    not any(where(t) and self.in_time(t, e) for t, e in self.model.values()),
                    "pop returned None though a task in time satisfies where",
                )
                return
            _expect(task.id in self.model, f"pop returned {task!r}, not a held task")
            _expect(where(task), "pop returned a task that fails where")
            _expect(not self.expired(self.model[task.id][1]), "pop returned an expired task")
            _expect(task.id not in self.queue, "a popped task is no longer held")
            self.leave(task.id)
            self.popped.append(task)

        @precondition(lambda self: self.has_unpop and self.last_pop is not None)
        @rule()
        def unpop_then_pop_again(self) -> None:
            if self.last_pop is None:  # the precondition rules it out
                return
            task, predicate, popped_at = self.last_pop
            size = len(self.queue)
            self.queue.unpop(task)
            _expect(
                task.id in self.queue and len(self.queue) == size + 1,
                "unpop puts the task back",
            )
            expires = self.expiry_of[task.id]
            # As if never popped: a pop at another time may choose otherwise (a deadline
            # come near, an aged priority), so the same task is promised at the same time.
            if self.in_time(task, expires) and self.clock.now() == popped_at:
                _expect(self.queue.pop(predicate) is task, "after unpop, pop returns the same task")
                self.queue.unpop(task)
            self.popped.remove(task)
            self.left.discard(task.id)
            self.model[task.id] = (task, expires)
            self.changed()

        @precondition(lambda self: self.has_unpop and self.model)
        @rule()
        def unpop_of_a_held_task_is_refused(self) -> None:
            task = next(iter(self.model.values()))[0]
            size = len(self.queue)
            try:
                self.queue.unpop(task)
            except TaskStateError:
                _expect(len(self.queue) == size, "a refused call changes nothing")
                return
            raise AssertionError("unpop of a held task must raise TaskStateError")

        @precondition(lambda self: self.popped)
        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            task = data.draw(st.sampled_from(self.popped))
            self.popped.remove(task)
            self.queue.release(task)
            self.changed()

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def remove(self, data: st.DataObject) -> None:
            task_id = data.draw(st.sampled_from(sorted(self.model, key=repr)))
            _expect(
                self.queue.remove(task_id) is self.model[task_id][0],
                "remove returns the held task",
            )
            self.leave(task_id)
            self.changed()

        @rule()
        def remove_unknown(self) -> None:
            size = len(self.queue)
            try:
                self.queue.remove(("never", "pushed"))
            except UnknownTaskError:
                _expect(len(self.queue) == size, "a refused call changes nothing")
                return
            raise AssertionError("removing an unknown id must raise UnknownTaskError")

        @rule(reasons=st.booleans())
        def expire(self, reasons: bool) -> None:
            with_reasons = getattr(self.queue, "expire_with_reasons", None) if reasons else None
            # Each task with its reason, or None when the queue was not asked for one.
            returned: list[tuple[Task, Reason | None]] = (
                [(task, None) for task in self.queue.expire()]
                if with_reasons is None
                else [(eviction.task, eviction.reason) for eviction in with_reasons()]
            )
            ids = [task.id for task, _ in returned]
            _expect(len(set(ids)) == len(ids), "expire returned a task twice")
            for task, reason in returned:
                _expect(task.id in self.model, f"expire returned {task!r}, not a held task")
                expires = self.model[task.id][1]
                missed = task.deadline is not None and task.deadline <= self.clock.now()
                _expect(self.expired(expires) or missed, f"{task!r} returned before its time")
                if reason is Reason.DEADLINE_MISSED:
                    _expect(missed, f"{task!r} expired as deadline_missed before its deadline")
                elif reason is not None:
                    _expect(
                        reason is Reason.TTL_EXPIRED and self.expired(expires),
                        f"{task!r} expired as {reason.value} before its TTL ran out",
                    )
                self.leave(task.id)
            for task, expires in self.model.values():
                _expect(not self.expired(expires), f"expire() kept {task!r}, whose TTL ran out")
            if returned:
                self.changed()

        @rule(dt=quarters)
        def advance(self, dt: float) -> None:
            self.clock.advance(dt)

        # -- invariants ---------------------------------------------------------

        @invariant()
        def held_tasks_are_counted_and_found(self) -> None:
            _expect(len(self.queue) == len(self.model), "len(q) counts the held tasks")
            _expect(
                bool(self.queue) == bool(self.model),
                "bool(q) says whether tasks are held",
            )
            for task_id in list(self.model)[:8]:
                _expect(task_id in self.queue, "a held task is in q")
            for task_id in list(self.left)[-4:]:
                _expect(task_id not in self.queue, "a task that left is not in q")
            _expect(["unhashable"] not in self.queue, "an unhashable id is in no queue")

        @invariant()
        def next_wakeup_is_no_later_than_the_earliest_expiry(self) -> None:
            expiries = [e for _, e in self.model.values() if e is not None]
            if expiries:
                # Once an expiry has passed, any time already past says "expire() now".
                earliest = min(expiries)
                due = self.clock.now() if earliest <= self.clock.now() else earliest
                wakeup = self.queue.next_wakeup()
                _expect(
                    wakeup is not None and wakeup <= due,
                    "next_wakeup() is no later than the earliest TTL expiry (or now, once "
                    "one has passed)",
                )

        @invariant()
        def nothing_lost_or_duplicated(self) -> None:
            _expect(not self.left & set(self.model), "a task that left is not held")

    return QueueContract
