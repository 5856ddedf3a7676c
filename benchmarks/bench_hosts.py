"""The hosts end to end: tasks moved per second, against dramatiq and the bare Distributor.

One run moves n no-op tasks end to end: build each task, submit it, dispatch
it, run it, complete it. Contenders:

- ``asyncio host``: ``taskdist.aio.AsyncHost`` over a Distributor with leases
  on (30 s, renewed half way) and a ``FairScheduler`` over 10 tenants, 10
  workers of 10 slots, at most 100 handlers at once;
- ``distributor alone``: the same Distributor driven by a plain loop with no
  host (dispatch, complete each, repeat): the floor the host adds to;
- ``dramatiq``: dramatiq's in-memory ``StubBroker`` with its ``Worker`` (8
  threads, its defaults), the same number of no-op actor calls;
- ``host over a stand-in``: the asyncio host over a Distributor that
  schedules nothing (``StandIn``), against a plain loop over the same: the
  host's own cost per task, whatever the Distributor's;
- ``8 threads``: ``ThreadSafeDistributor``, eight threads each submitting
  its share, dispatching and completing; against ``one thread`` driving the
  bare Distributor through the same steps.

Smoke sizes by default; ``TASKDIST_BENCH_FULL=1`` for the full ones.
``benchmarks/compare_hosts.py`` prints the side-by-side table recorded in
docs/performance.md.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Hashable

import pytest
from sizing import sizes

from taskdist import (
    Assignment,
    Distributor,
    FairScheduler,
    MonotonicClock,
    Task,
    TaskState,
    Worker,
)
from taskdist.aio import AsyncHost
from taskdist.threaded import ThreadSafeDistributor

TENANTS = 10
WORKERS, SLOTS = 10, 10
SIZES = sizes(full=[20_000], smoke=[300])
THREADED_SIZES = sizes(full=[100_000], smoke=[800])

Seconds = tuple[float, float]
"""What one run took: (wall-clock seconds, CPU seconds of the whole process)."""


class Stopwatch:
    """Wall-clock and process CPU time since it was made. On a loaded machine the
    CPU time (every thread's, dramatiq's workers included) moves less than the wall."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def read(self) -> Seconds:
        return time.perf_counter() - self._wall, time.process_time() - self._cpu


def platform() -> Distributor:
    """The benchmark's distributor: leases on, fair sharing over 10 tenants."""
    clock = MonotonicClock()
    d = Distributor(clock, queue=FairScheduler(clock), lease=30.0, rng=random.Random(1))
    for w in range(WORKERS):
        d.add_worker(Worker(f"w{w}", capacity=SLOTS))
    return d


async def _noop(assignment: Assignment) -> None:
    return None


def asyncio_host(n: int) -> Seconds:
    """Seconds to move n tasks through the asyncio host."""

    async def main() -> Seconds:
        d = platform()
        start = Stopwatch()
        for i in range(n):
            d.submit(Task(i, tenant=i % TENANTS))
        d.close()
        await AsyncHost(d, _noop, concurrency=WORKERS * SLOTS).run()
        elapsed = start.read()
        assert d.stats().by_state["completed"] == n
        return elapsed

    return asyncio.run(main())


def distributor_alone(n: int) -> Seconds:
    """Seconds to move n tasks through the same Distributor with no host around it."""
    d = platform()
    start = Stopwatch()
    for i in range(n):
        d.submit(Task(i, tenant=i % TENANTS))
    done = 0
    while done < n:
        for assignment in d.dispatch(WORKERS * SLOTS):
            d.complete(assignment.task.id, duration=0.0)
            done += 1
    return start.read()


def dramatiq_stub(n: int) -> Seconds:
    """Seconds for dramatiq's StubBroker and Worker to run n no-op actor calls."""
    dramatiq = pytest.importorskip("dramatiq")
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name="bench", max_retries=0)
    def noop(i: int) -> None:
        return None

    worker = dramatiq.Worker(broker, worker_threads=8)
    worker.start()
    try:
        start = Stopwatch()
        for i in range(n):
            noop.send(i)
        broker.join("bench")
        worker.join()
        return start.read()
    finally:
        worker.stop()
        broker.close()


class StandIn(Distributor):
    """A Distributor that schedules nothing: ``dispatch`` hands out ready-made
    assignments, ``complete`` only counts. Driven by a host, what is left of the
    time is the host's own."""

    def __init__(self, n: int) -> None:
        super().__init__(MonotonicClock())
        now = self.clock.now()
        self.todo = [Assignment(Task(i), "w", 1, now, now + 30.0) for i in range(n)]
        self.completed = 0

    def dispatch(self, limit: int | None = None) -> list[Assignment]:
        k = min(WORKERS * SLOTS if limit is None else limit, len(self.todo))
        batch = self.todo[-k:] if k else []
        del self.todo[len(self.todo) - k :]
        return batch

    def complete(
        self,
        task_id: Hashable,
        *,
        duration: float | None = None,
        attempt: int | None = None,
        lease_id: int | None = None,
    ) -> TaskState:
        self.completed += 1
        return TaskState.COMPLETED

    @property
    def closed(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self.todo)

    def next_wakeup(self) -> float | None:
        return None


def host_over_stand_in(n: int) -> Seconds:
    """Seconds for the asyncio host to run n no-op handlers over a :class:`StandIn`."""

    async def main() -> Seconds:
        d = StandIn(n)
        start = Stopwatch()
        await AsyncHost(d, _noop, concurrency=WORKERS * SLOTS).run()
        elapsed = start.read()
        assert d.completed == n
        return elapsed

    return asyncio.run(main())


def loop_over_stand_in(n: int) -> Seconds:
    """Seconds for a plain loop to dispatch and complete n assignments of a StandIn."""
    d = StandIn(n)
    start = Stopwatch()
    while len(d):
        for assignment in d.dispatch(WORKERS * SLOTS):
            d.complete(assignment.task.id, duration=0.0, lease_id=assignment.lease_id)
    return start.read()


def threaded(n: int, threads: int = 8) -> Seconds:
    """Seconds for ``threads`` threads sharing a ThreadSafeDistributor to move n tasks."""
    shared = ThreadSafeDistributor(platform())
    tasks = [Task(i, tenant=i % TENANTS) for i in range(n)]
    completed = [0]
    book = threading.Lock()
    done = threading.Event()

    def work(index: int) -> None:
        mine = tasks[index::threads]
        submitted = 0
        while not done.is_set():
            for task in mine[submitted : submitted + 4]:
                shared.submit(task)
            submitted += 4
            assignments = shared.dispatch(4)
            for assignment in assignments:
                shared.complete(assignment.task.id, duration=0.0)
            if assignments:
                with book:
                    completed[0] += len(assignments)
                    if completed[0] == n:
                        done.set()
            elif submitted >= len(mine):
                shared.wait_for_work(0.01)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start = Stopwatch()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return start.read()


def one_thread(n: int) -> Seconds:
    """The same steps as :func:`threaded` on the bare Distributor, in one thread."""
    d = platform()
    tasks = [Task(i, tenant=i % TENANTS) for i in range(n)]
    start = Stopwatch()
    done = submitted = 0
    while done < n:
        for task in tasks[submitted : submitted + 4]:
            d.submit(task)
        submitted += 4
        for assignment in d.dispatch(4):
            d.complete(assignment.task.id, duration=0.0)
            done += 1
    return start.read()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("contender", [asyncio_host, distributor_alone, dramatiq_stub])
def bench_end_to_end(benchmark, contender, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"{n} no-op tasks end to end"
    benchmark.pedantic(contender, args=(n,), rounds=1)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("contender", [host_over_stand_in, loop_over_stand_in])
def bench_host_alone(benchmark, contender, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"{n} no-op tasks: the host's own cost, over a distributor doing nothing"
    benchmark.pedantic(contender, args=(n,), rounds=1)


@pytest.mark.parametrize("n", THREADED_SIZES)
@pytest.mark.parametrize("contender", [threaded, one_thread])
def bench_threads(benchmark, contender, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"{n} tasks: 8 threads on ThreadSafeDistributor vs one on Distributor"
    benchmark.pedantic(contender, args=(n,), rounds=1)
