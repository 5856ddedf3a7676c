"""The asyncio host's private parts: the runner pool and the renewal batches.

Runners run jobs eagerly on long-lived tasks; these tests pin what a job
sees (its own task while it awaits, its own context, cancellations meant
for it only) and how many tasks the pool uses. RenewalBatches is checked
against a plain model of every member's due time.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskdist import ManualClock
from taskdist.aio import run_virtual
from taskdist.hosts._renewal_batches import RenewalBatch, RenewalBatches
from taskdist.hosts._runners import WITHDRAWN, Runners, Withdrawn

Ended = list[tuple[str, str]]


class Job:
    """A job: a name, and what it runs (None: withdrawn)."""

    def __init__(self, name: str, body: Callable[[], object] | None) -> None:
        self.name = name
        self.body = body


def pool(ended: Ended) -> Runners[Job]:
    """Runners that start each job's body and log how each job ended."""

    def start(job: Job) -> Awaitable[object] | Withdrawn:
        return WITHDRAWN if job.body is None else job.body()  # type: ignore[return-value]

    def finish(job: Job, error: BaseException | None) -> None:
        ended.append((job.name, "ok" if error is None else type(error).__name__))

    return Runners(start, finish)


async def returns() -> None:
    return None


async def naps(seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_jobs_that_never_await_all_run_on_one_runner_in_one_step() -> None:
    ended: Ended = []
    runners = pool(ended)
    seen: set[asyncio.Task[object] | None] = set()

    async def no_await() -> None:
        seen.add(asyncio.current_task())

    async def main() -> None:
        for i in range(50):
            runners.push(Job(str(i), no_await))
        await asyncio.sleep(0)  # the runner runs them all in its first step
        assert len(ended) == 50 and runners.runners == 1
        await runners.close()

    run_virtual(main(), ManualClock())
    assert ended == [(str(i), "ok") for i in range(50)]
    assert len(seen) == 1 and None not in seen


def test_a_job_that_awaits_keeps_its_runner_and_another_takes_the_queue() -> None:
    clock = ManualClock()
    ended: Ended = []
    runners = pool(ended)
    tasks: dict[str, asyncio.Task[object] | None] = {}

    def job(name: str, seconds: float) -> Job:
        async def body() -> None:
            tasks[name] = asyncio.current_task()
            if seconds:
                await asyncio.sleep(seconds)
            assert asyncio.current_task() is tasks[name]  # the same task throughout

        return Job(name, body)

    async def main() -> None:
        for name, seconds in [("a", 3.0), ("b", 0.0), ("c", 1.0), ("d", 0.0), ("e", 2.0)]:
            runners.push(job(name, seconds))
        await asyncio.sleep(5.0)
        # Three jobs waited at once: three runners, no more.
        assert runners.runners == 3
        # Then a second wave reuses the idle runners.
        for name, seconds in [("f", 1.0), ("g", 1.5), ("h", 2.0)]:
            runners.push(job(name, seconds))
        await asyncio.sleep(5.0)
        assert runners.runners == 3
        await runners.close()

    run_virtual(main(), clock)
    assert [name for name, _ in ended] == ["b", "d", "c", "e", "a", "f", "g", "h"]
    assert tasks["a"] is not tasks["c"] and tasks["c"] is not tasks["e"]
    assert tasks["b"] is tasks["c"]  # b ran on c's runner before c awaited


def test_a_job_that_raises_in_its_first_step_is_finished_with_its_error() -> None:
    ended: Ended = []
    runners = pool(ended)

    async def raises_at_once() -> None:
        raise KeyError("no such record")

    def raises_when_called() -> Awaitable[object]:
        raise ValueError("not even a coroutine")

    def stops_when_called() -> Awaitable[object]:
        return next(iter([]))  # StopIteration: an error here, not a return

    async def raises_later() -> None:
        await asyncio.sleep(1.0)
        raise TimeoutError("too slow")

    async def main() -> None:
        runners.push(Job("first-step", raises_at_once))
        runners.push(Job("call", raises_when_called))
        runners.push(Job("stop", stops_when_called))
        runners.push(Job("later", raises_later))
        runners.push(Job("after", returns))
        await asyncio.sleep(2.0)
        await runners.close()

    run_virtual(main(), ManualClock())
    assert ended == [
        ("first-step", "KeyError"),
        ("call", "ValueError"),
        ("stop", "StopIteration"),
        ("after", "ok"),
        ("later", "TimeoutError"),
    ]


def test_any_awaitable_runs_a_withdrawn_job_is_skipped_and_none_fails() -> None:
    ended: Ended = []
    runners = pool(ended)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        loop.call_later(1.0, future.set_result, 7)
        runners.push(Job("future", lambda: future))
        runners.push(Job("withdrawn", None))
        runners.push(Job("not awaitable", lambda: None))
        await asyncio.sleep(2.0)
        await runners.close()

    run_virtual(main(), ManualClock())
    assert ended == [("not awaitable", "TypeError"), ("future", "ok")]


def test_each_job_has_its_own_context() -> None:
    ended: Ended = []
    runners = pool(ended)
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []

    def job(name: str, seconds: float) -> Job:
        async def body() -> None:
            seen.append(f"{name}:{var.get()}")
            var.set(name)
            if seconds:
                await asyncio.sleep(seconds)
            seen.append(f"{name}:{var.get()}")

        return Job(name, body)

    async def main() -> None:
        var.set("host")
        runners.push(job("a", 0.0))
        runners.push(job("b", 1.0))
        runners.push(job("c", 0.0))
        await asyncio.sleep(2.0)
        assert var.get() == "host"
        await runners.close()

    run_virtual(main(), ManualClock())
    assert seen == ["a:host", "a:a", "b:host", "c:host", "c:c", "b:b"]


def test_cancel_reaches_only_the_job_it_names() -> None:
    """A cancelled job that swallows its cancellation still ends; the next job on
    its runner is neither cancelled nor counted as cancelling."""
    clock = ManualClock()
    ended: Ended = []
    runners = pool(ended)
    cancelling: list[int] = []

    async def swallows() -> None:
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            await asyncio.sleep(1.0)

    async def then_naps(seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        cancelling.append(getattr(task, "cancelling", lambda: 0)())
        await asyncio.sleep(seconds)

    async def main() -> None:
        swallowing = Job("swallows", swallows)
        cancelled = Job("cancelled", lambda: naps(10.0))
        runners.push(swallowing)
        runners.push(cancelled)
        await asyncio.sleep(1.0)
        assert runners.cancel(swallowing) and runners.cancel(cancelled)
        assert not runners.cancel(Job("unknown", returns))
        await asyncio.sleep(1.5)  # both ended: "swallows" at 2.0
        runners.push(Job("next-1", lambda: then_naps(2.0)))
        runners.push(Job("next-2", lambda: then_naps(3.0)))
        await asyncio.sleep(4.0)
        assert runners.runners == 2
        await runners.close()

    run_virtual(main(), clock)
    assert ended == [
        ("cancelled", "CancelledError"),
        ("swallows", "ok"),
        ("next-1", "ok"),
        ("next-2", "ok"),
    ]
    assert cancelling == [0, 0]


def test_close_cancels_running_jobs_and_drops_queued_ones() -> None:
    ended: Ended = []
    started: list[str] = []
    runners = pool(ended)

    def job(name: str) -> Job:
        async def body() -> None:
            started.append(name)
            await asyncio.sleep(10.0)

        return Job(name, body)

    async def main() -> None:
        runners.push(job("running"))
        await asyncio.sleep(1.0)
        runners.push(job("queued"))  # pushed, but no runner has run since
        await runners.close()
        assert runners.runners == 0

    run_virtual(main(), ManualClock())
    assert started == ["running"]
    assert ended == [("running", "CancelledError")]


def test_a_runner_cancelled_from_outside_hands_the_queue_on() -> None:
    ended: Ended = []
    runners = pool(ended)

    async def main() -> None:
        runners.push(Job("first", returns))
        await asyncio.sleep(0)
        [runner] = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        runners.push(Job("second", returns))  # wakes the idle runner ...
        runner.cancel()  # ... which is cancelled before it runs
        for _ in range(5):  # it ends, its done callback wakes another, which runs
            await asyncio.sleep(0)
        assert runner.cancelled() and runners.runners == 1
        await runners.close()

    run_virtual(main(), ManualClock())
    assert ended == [("first", "ok"), ("second", "ok")]


# -- renewal batches ------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 5), st.sampled_from([10.0, 30.0])),
        st.tuples(st.just("leave"), st.integers(0, 40), st.just(0.0)),
        st.tuples(st.just("due"), st.integers(0, 40), st.just(0.0)),
    ),
    max_size=40,
)


@given(operations=operations)
def test_renewal_batches_match_a_model_of_every_member(
    operations: list[tuple[str, int, float]],
) -> None:
    """next_due is the earliest due time of a member still in; due() hands out
    exactly the members due, each once."""
    batches: RenewalBatches[int] = RenewalBatches(0.5)
    model: dict[int, float] = {}  # member -> due time, while it is in
    where: dict[int, RenewalBatch[int]] = {}
    now = 0.0
    for kind, value, lease in operations:
        if kind == "add":
            now += value
            member = len(where)
            where[member] = batches.add(member, now, now + lease)
            model[member] = now + 0.5 * ((now + lease) - now)
        elif kind == "leave" and value in model:
            where[value].live -= 1
            del model[value]
        elif kind == "due":
            now += value
            taken = {m for batch in batches.due(now) for m in batch.members if m in model}
            assert taken == {m for m, due in model.items() if due <= now}
            for m in taken:
                del model[m]
        assert batches.next_due() == min(model.values(), default=None)


def test_one_dispatch_s_runs_share_one_batch() -> None:
    batches: RenewalBatches[str] = RenewalBatches(0.5)
    first = batches.add("a", 0.0, 30.0)
    assert batches.add("b", 0.0, 30.0) is first
    assert batches.batch(0.0, 30.0) is first
    assert batches.add("c", 0.0, 10.0) is not first
    assert [batch.members for batch in batches.due(15.0)] == [["c"], ["a", "b"]]
    assert batches.next_due() is None
    # A batch taken is closed: a new member at the same due time opens a new one.
    assert batches.add("d", 0.0, 30.0) is not first


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9])
def test_a_batch_is_due_at_its_fraction_of_the_lease(fraction: float) -> None:
    batches: RenewalBatches[str] = RenewalBatches(fraction)
    batches.add("a", 100.0, 140.0)
    assert batches.next_due() == 100.0 + fraction * 40.0
