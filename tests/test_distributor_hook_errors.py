"""User code that raises outside a dispatch loses no task and holds nothing for ever.

A balancer's hooks that report what the books already did (a release, a worker added
or removed), and a gate's or the queue's ``release``, raise their error at the end
of the call, once the books are done. The
key functions of an intake limit and a retry budget are read once per task, so a
release never asks them again; a route's ``when`` is asked before the task goes in.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Hashable
from pathlib import Path

import pytest

from taskdist import (
    CapacityTracker,
    ConcurrencyLimit,
    Distributor,
    FairScheduler,
    InvalidArgumentError,
    InvalidTypeError,
    LeastConnections,
    ManualClock,
    Pool,
    PoolGate,
    Reason,
    ResourcePool,
    RetryBudget,
    RetryPolicy,
    Route,
    Task,
    TaskState,
    Verdict,
    Worker,
    WorkerState,
)

ROOT = Path(__file__).resolve().parent.parent


class Armed(LeastConnections):
    """Least connections whose hooks raise once when armed."""

    def __init__(self) -> None:
        super().__init__()
        self.armed: str | None = None

    def _fire(self, hook: str) -> None:
        if self.armed == hook:
            self.armed = None
            raise RuntimeError(hook)

    def on_release(self, task: Task, worker: WorkerState) -> None:
        super().on_release(task, worker)
        self._fire("on_release")

    def on_worker_added(self, worker: WorkerState) -> None:
        super().on_worker_added(worker)
        self._fire("on_worker_added")

    def on_worker_removed(self, worker_id: Hashable) -> None:
        super().on_worker_removed(worker_id)
        self._fire("on_worker_removed")


def one_lease(hook: str) -> tuple[Distributor, Armed]:
    """Task "a" leased on worker "w"; the balancer's ``hook`` armed."""
    balancer = Armed()
    d = Distributor(ManualClock(), lease=None, balancer=balancer)
    d.add_worker(Worker("w"))
    d.submit(Task("a"))
    d.dispatch()
    balancer.armed = hook
    return d, balancer


def test_an_on_release_that_raises_completes_the_task_all_the_same() -> None:
    d, _ = one_lease("on_release")
    with pytest.raises(RuntimeError, match="on_release"):
        d.complete("a")  # the task vanished: not live, not finished, its slot held
    assert d.state_of("a") is TaskState.COMPLETED and len(d) == 0
    assert d.tracker.worker("w").in_flight == 0
    Distributor.restore(json.loads(json.dumps(d.snapshot())), ManualClock())


class ReleaseRaises:
    """A gate of the host's own that admits everything and, once armed, raises on release."""

    def __init__(self) -> None:
        self.armed = False
        self.held: set[Hashable] = set()

    def try_acquire(self, task: Task) -> bool:
        self.held.add(task.id)
        return True

    def release(self, task: Task) -> None:
        self.held.discard(task.id)
        if self.armed:
            raise RuntimeError("release failed")

    def next_wakeup(self) -> float | None:
        return None


def two_leases_behind(gate: ReleaseRaises) -> tuple[Distributor, ResourcePool]:
    """Tasks "a" and "b" leased on worker "w", behind a pool gate and then ``gate``."""
    pool = ResourcePool("db", size=2)
    d = Distributor(ManualClock(), lease=None, gates=[PoolGate(pool), gate])
    d.add_worker(Worker("w", capacity=2))
    for task_id in "ab":
        d.submit(Task(task_id, resources={"db": 1}))
    assert len(d.dispatch()) == 2
    return d, pool


@pytest.mark.parametrize("end", ["complete", "fail", "cancel", "remove_worker"])
def test_a_gate_whose_release_raises_ends_the_lease_all_the_same(end: str) -> None:
    gate = ReleaseRaises()
    d, pool = two_leases_behind(gate)
    gate.armed = True
    target = "w" if end == "remove_worker" else "a"
    with pytest.raises(RuntimeError, match="release failed"):
        getattr(d, end)(target)
    gate.armed = False
    expected = {
        "complete": TaskState.COMPLETED,
        "fail": TaskState.RETRYING,
        "cancel": TaskState.CANCELLED,
        "remove_worker": TaskState.QUEUED,
    }[end]
    assert d.state_of("a") is expected
    # Every other gate gave its unit back: the pool holds only what still runs.
    running = [lease.task.id for lease in d.leases()]
    assert pool.in_use == len(running) and gate.held == set(running)


def test_a_queue_whose_release_raises_completes_the_task_all_the_same() -> None:
    class Breaks(FairScheduler):
        armed = False

        def release(self, task: Task) -> None:
            super().release(task)
            if self.armed:
                raise RuntimeError("queue release failed")

    clock = ManualClock()
    queue = Breaks(clock)
    d = Distributor(clock, queue=queue, lease=None)
    d.add_worker(Worker("w"))
    d.submit(Task("a", tenant="x"))
    d.dispatch()
    queue.armed = True
    with pytest.raises(RuntimeError, match="queue release failed"):
        d.complete("a")
    assert d.state_of("a") is TaskState.COMPLETED and d.leases() == []
    assert d.tracker.worker("w").in_flight == 0


def test_an_on_worker_removed_that_raises_requeues_the_workers_tasks() -> None:
    d, _ = one_lease("on_worker_removed")
    with pytest.raises(RuntimeError, match="on_worker_removed"):
        d.remove_worker("w")  # the lease was left on a worker gone
    assert d.state_of("a") is TaskState.QUEUED and not d.leases()
    d.add_worker(Worker("v"))
    assert [(a.task.id, a.worker_id) for a in d.dispatch()] == [("a", "v")]


def test_an_on_worker_added_that_raises_still_wakes_what_the_worker_can_run() -> None:
    balancer = Armed()
    d = Distributor(ManualClock(), lease=None, balancer=balancer)
    d.add_worker(Worker("cpu"))
    d.submit(Task("render", requires={"gpu"}))
    d.dispatch()
    assert d.state_of("render") is TaskState.PARKED
    balancer.armed = "on_worker_added"
    with pytest.raises(RuntimeError, match="on_worker_added"):
        d.add_worker(Worker("gpu", skills={"gpu"}))  # the parked task was never woken
    assert [(a.task.id, a.worker_id) for a in d.dispatch()] == [("render", "gpu")]


def test_an_on_worker_added_that_raises_as_the_distributor_is_built_raises_then() -> None:
    # Building over a tracker that holds workers (or restoring) told the balancer of them
    # with the error held back: the build passed, and the next call raised it.
    tracker = CapacityTracker(ManualClock())
    tracker.add_worker(Worker("w"))
    balancer = Armed()
    balancer.armed = "on_worker_added"
    with pytest.raises(RuntimeError, match="on_worker_added"):
        Distributor(ManualClock(), lease=None, balancer=balancer, tracker=tracker)
    clock = ManualClock()
    d = Distributor(clock, lease=None)
    d.add_worker(Worker("w"))
    balancer = Armed()
    balancer.armed = "on_worker_added"
    with pytest.raises(RuntimeError, match="on_worker_added"):
        Distributor.restore(d.snapshot(), clock, balancer=balancer)


class ForgetRaises:
    """An intake policy of the host's own that admits everything and, once armed, raises
    when told a task finished."""

    def __init__(self) -> None:
        self.armed = False

    def admit(self, task: Task, now: float, state_of: object) -> Verdict:
        return Verdict()

    def forget(self, task: Task) -> None:
        if self.armed:
            raise RuntimeError("forget failed")


@pytest.mark.parametrize("end", ["complete", "cancel_leased", "cancel_queued"])
def test_an_intake_policy_whose_forget_raises_ends_the_task_all_the_same(end: str) -> None:
    policy = ForgetRaises()
    limit = ConcurrencyLimit(key=lambda t: t.key, limit=1, strategy="cancel_newest")
    d = Distributor(ManualClock(), lease=None, intake=[policy, limit])
    d.add_worker(Worker("w"))
    d.submit(Task("a", key="k"))
    d.dispatch()
    target = "a"
    if end == "cancel_queued":
        d.submit(Task("q", key="other"))
        target = "q"
    policy.armed = True
    with pytest.raises(RuntimeError, match="forget failed"):
        (d.complete if end == "complete" else d.cancel)(target)
    policy.armed = False
    final = TaskState.COMPLETED if end == "complete" else TaskState.CANCELLED
    assert d.state_of(target) is final  # not lost half-way: finished, and known so
    assert d.stats().by_state[final] == 1
    # The other policy forgot it too: a new task of its key is not over the limit.
    key = "k" if target == "a" else "other"
    if target == "q":
        d.complete("a")
    assert d.submit(Task("next", key=key)).state is TaskState.QUEUED
    assert [a.task.id for a in d.dispatch()] == ["next"]


class Answers:
    """An intake policy of the host's own that answers every admission with ``answer``."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.undone: list[Hashable] = []

    def admit(self, task: Task, now: float, state_of: object) -> object:
        return self.answer

    def forget(self, task: Task) -> None:
        self.undone.append(task.id)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Verdict(replace=Task("a")), InvalidArgumentError),  # leased
        (Verdict(replace=Task("b")), InvalidArgumentError),  # queued
        (Verdict(replace=Task("c")), InvalidArgumentError),  # completed, within the window
        (Verdict(replace="n"), InvalidTypeError),  # type: ignore[arg-type]
        (None, InvalidTypeError),
        (True, InvalidTypeError),
    ],
)
def test_an_intake_verdict_naming_no_free_task_is_refused_and_adds_nothing(
    answer: object, error: type[Exception]
) -> None:
    policy = Answers(Verdict())
    d = Distributor(ManualClock(), lease=None, intake=[policy])
    d.add_worker(Worker("w"))
    for task_id in "ca":
        d.submit(Task(task_id))
        d.dispatch()
        if task_id == "c":
            d.complete("c")
    d.submit(Task("b"))
    policy.answer = answer
    before = d.stats().by_state
    with pytest.raises(error, match="was not added"):
        d.submit(Task("n"))
    assert d.stats().by_state == before and len(d.queue) == 1 and "n" not in d
    assert [a.task.id for a in d.leases()] == ["a"]  # "a" is not also queued
    policy.answer = Verdict()
    d.complete("a")
    d.submit(Task("n"))
    for _ in range(2):
        (lease,) = d.dispatch()
        d.complete(lease.task.id)
    assert len(d) == 0 and d.stats().by_state[TaskState.COMPLETED] == 4


def test_a_route_whose_when_raises_leaves_nothing_in_the_queue() -> None:
    route = Route(when=lambda t: t.payload["kind"] == "gpu", to=Pool(skills={"gpu"}))
    d = Distributor(ManualClock(), lease=None, routes=[route])
    d.add_worker(Worker("w"))
    with pytest.raises(TypeError):
        d.submit(Task("a", payload=None))  # it was queued, unknown to the distributor
    assert len(d) == 0 and len(d.queue) == 0 and "a" not in d
    assert d.dispatch() == []
    d.submit(Task("a", payload={"kind": "cpu"}))
    assert [a.task.id for a in d.dispatch()] == ["a"]


class ArmedKey:
    """A key function (``task.key``) that raises while armed."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self, task: Task) -> Hashable:
        if self.armed:
            raise RuntimeError("key")
        return task.key


def limited(key: ArmedKey) -> Distributor:
    d = Distributor(ManualClock(), lease=None, intake=[ConcurrencyLimit(key=key, limit=1)])
    d.add_worker(Worker("w", capacity=2))
    return d


def test_a_concurrency_key_is_not_asked_again_when_the_slot_is_given_back() -> None:
    key = ArmedKey()
    d = limited(key)
    d.submit(Task("a", key="k"))
    d.submit(Task("b", key="k"))
    assert [a.task.id for a in d.dispatch()] == ["a"]
    key.armed = True
    d.complete("a")  # raised, lost "a", and held its key's slot for ever
    key.armed = False
    assert d.state_of("a") is TaskState.COMPLETED
    assert [a.task.id for a in d.dispatch()] == ["b"]


def test_a_task_without_a_concurrency_key_is_not_asked_for_it_again_either() -> None:
    key = ArmedKey()
    d = limited(key)
    d.submit(Task("a"))  # key None: not limited
    d.dispatch()
    key.armed = True
    d.complete("a")  # the release asked the key again: it raised and the task was lost
    assert d.state_of("a") is TaskState.COMPLETED and len(d) == 0


def test_a_retry_budget_group_that_raises_puts_the_task_back_and_frees_the_worker() -> None:
    def per(task: Task) -> Hashable:
        if task.payload == "poison":
            raise ValueError("poison")
        return task.tenant

    d = Distributor(ManualClock(), lease=None, retry_budget=RetryBudget(per=per))
    d.add_worker(Worker("w"))
    d.submit(Task("a", payload="poison"))
    with pytest.raises(ValueError, match="poison"):
        d.dispatch()  # the rollback asked per again: the task lost, the slot held
    assert d.state_of("a") is TaskState.QUEUED and d.tracker.worker("w").in_flight == 0
    d.cancel("a")
    d.submit(Task("b"))
    assert [a.task.id for a in d.dispatch()] == ["b"]


def test_a_restored_tracker_counts_a_resource_a_later_worker_names_first() -> None:
    # Restored workers kept the snapshot's own set of named resources: "db", named first
    # by a worker added after the restore, did not count for them, so w1 said a task
    # needing "db" fitted, assign took it out of the queue, and the tracker refused it.
    clock = ManualClock()
    d = Distributor(clock, lease=None)
    d.add_worker(Worker("w1", capacity=2))
    back = Distributor.restore(d.snapshot(), clock)
    back.add_worker(Worker("w2", capacity={"slots": 4, "db": 2}))
    back.submit(Task("t", resources={"db": 1}))
    assert not back.tracker.worker("w1").fits(Task("x", resources={"db": 1}))
    assert [(a.task.id, a.worker_id) for a in back.dispatch()] == [("t", "w2")]


BATCH_RUN = """
import json, sys
from taskdist import BatchOptimizer, Distributor, EventKind, ManualClock, Task, Worker
mode, path = sys.argv[1], sys.argv[2]
log = []
def parts(clock):
    on_event = lambda e: log.append(e.task_id) if e.kind is EventKind.LEASE_EXPIRED else None
    return dict(batcher=BatchOptimizer(clock, max_size=8), on_event=on_event)
if mode == "save":
    clock = ManualClock()
    d = Distributor(clock, lease=30.0, **parts(clock))
    d.add_worker(Worker("w", capacity=8))
    for i in range(8):
        d.submit(Task(f"task-{i}", group="g"))
    d.dispatch()
    clock.advance(1.0)
    json.dump({"now": clock.now(), "snap": d.snapshot()}, open(path, "w"))
else:
    saved = json.load(open(path))
    clock = ManualClock(start=saved["now"])
    d = Distributor.restore(saved["snap"], clock, **parts(clock))
d.heartbeat("task-0")
clock.advance(30.0)
d.tick()
print(json.dumps(log))
"""


def test_a_batch_renews_its_members_in_batch_order_whatever_the_hash_seed(
    tmp_path: Path,
) -> None:
    # The members' lease timers were renewed in set order: their expiries (and places
    # back in the queue) followed the process's hash seed, and a restored twin diverged.
    saved = tmp_path / "saved.json"

    def run(mode: str, seed: str) -> list[str]:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", BATCH_RUN, mode, str(saved)],
            capture_output=True, text=True, cwd=ROOT, env=env, check=True, timeout=120,
        )  # fmt: skip
        order: list[str] = json.loads(out.stdout)
        return order

    original = run("save", "1")
    assert original == [f"task-{i}" for i in range(8)]
    assert run("load", "3") == run("load", "7") == original


class Policy(RetryPolicy):
    """A retry policy whose ``delay`` or ``should_retry``, once armed, misbehaves."""

    armed: str | None = None

    def delay(self, attempt: int, previous: float | None = None) -> float:
        if self.armed == "delay raises":
            raise RuntimeError("no delay")
        if self.armed == "delay is NaN":
            return math.nan
        return super().delay(attempt, previous)

    def should_retry(
        self, attempt: int, error: BaseException | None = None, *, elapsed: float = 0.0
    ) -> bool:
        if self.armed == "should_retry raises":
            raise RuntimeError("cannot tell")
        return super().should_retry(attempt, error, elapsed=elapsed)


@pytest.mark.parametrize(
    ("armed", "end", "error"),
    [
        ("delay raises", "fail", RuntimeError),
        ("delay is NaN", "fail", InvalidArgumentError),
        ("should_retry raises", "fail", RuntimeError),
        ("should_retry raises", "expire", RuntimeError),
    ],
)
def test_a_retry_policy_that_fails_once_the_lease_ended_dead_letters_the_task(
    armed: str, end: str, error: type[Exception]
) -> None:
    # The lease had ended, so the task was out of every place when the policy raised:
    # it was in no state afterwards (state_of: UnknownTaskError, len 0).
    clock = ManualClock()
    policy = Policy()
    d = Distributor(clock, lease=10.0, retry=policy)
    d.add_worker(Worker("w"))
    d.submit(Task("a"))
    d.dispatch()
    policy.armed = armed
    if end == "expire":
        clock.advance(11.0)
    call = (lambda: d.fail("a", error="flaky")) if end == "fail" else d.tick
    with pytest.raises(error):
        call()
    assert d.state_of("a") is TaskState.DEAD and len(d) == 0
    [letter] = list(d.dlq)
    assert letter.reason is Reason.REJECTED and letter.error
    assert d.tracker.worker("w").in_flight == 0
    policy.armed = None
    d.redrive(["a"])
    [again] = d.dispatch()
    d.complete("a", lease_id=again.lease_id)
    assert d.state_of("a") is TaskState.COMPLETED


def test_a_retry_policy_whose_delay_raises_over_the_budget_dead_letters_the_task() -> None:
    # Over the retry budget a retry waits another delay; a delay that raised left the
    # task retrying with no timer, waiting for ever.
    clock = ManualClock()
    policy = Policy()
    d = Distributor(clock, lease=None, retry=policy, retry_budget=RetryBudget(ratio=0.1, minimum=0))
    d.add_worker(Worker("w"))
    d.submit(Task("a"))
    d.dispatch()
    d.fail("a", error="flaky")
    policy.armed = "delay raises"
    clock.advance(60.0)
    with pytest.raises(RuntimeError, match="no delay"):
        d.tick()
    assert d.state_of("a") is TaskState.DEAD and len(d) == 0 and d.next_wakeup() is None
