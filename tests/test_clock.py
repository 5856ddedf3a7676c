"""Clocks: ManualClock moves only forward, by finite steps; MonotonicClock never decreases;
a host's clock that reads NaN or infinity is refused by the Distributor, which changes nothing."""

from __future__ import annotations

import copy
import math
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    Clock,
    ClockError,
    Distributor,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    MonotonicClock,
    Task,
    TaskState,
    Worker,
)


def test_manual_clock_starts_where_told_and_moves_only_when_told() -> None:
    clock = ManualClock(start=5.0)
    assert clock.now() == 5.0
    assert clock.advance(2.5) == 7.5
    assert clock.set(10.0) == 10.0
    assert clock.now() == 10.0
    assert clock.advance(0) == 10.0


@pytest.mark.parametrize(
    "bad_call",
    [
        lambda c: c.advance(-1.0),
        lambda c: c.advance(float("nan")),
        lambda c: c.advance(float("inf")),
        lambda c: c.set(9.0),
        lambda c: c.set(float("nan")),
        lambda c: c.set(float("inf")),
    ],
)
def test_manual_clock_refuses_to_go_backwards_or_to_non_finite_times(bad_call) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock(start=10.0)
    with pytest.raises(ClockError):
        bad_call(clock)
    assert clock.now() == 10.0


@pytest.mark.parametrize("start", [float("nan"), float("inf"), float("-inf"), 10**400])
def test_manual_clock_refuses_a_non_finite_start(start: object) -> None:
    with pytest.raises(ClockError):
        ManualClock(start=start)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad_call", [lambda c: c.set("11"), lambda c: c.advance(True), lambda c: c.advance(None)]
)
def test_manual_clock_refuses_a_time_that_is_not_a_number_as_a_type_error(bad_call) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock(start=10.0)
    with pytest.raises(InvalidTypeError):
        bad_call(clock)
    assert clock.now() == 10.0
    with pytest.raises(InvalidTypeError):
        ManualClock("0")  # type: ignore[arg-type]


def test_manual_clock_refuses_a_step_past_the_largest_float() -> None:
    clock = ManualClock(1e308)
    with pytest.raises(ClockError, match="infinite"):
        clock.advance(1e308)
    assert clock.now() == 1e308
    assert clock.advance(1e291) == 1e308  # absorbed by rounding: finite, so allowed
    assert clock.set(sys.float_info.max) == sys.float_info.max


def test_a_manual_clock_copies_and_pickles_with_its_time() -> None:
    clock = ManualClock(12.5)
    for twin in (copy.copy(clock), copy.deepcopy(clock), pickle.loads(pickle.dumps(clock))):
        assert twin.now() == 12.5
        twin.advance(1.0)
        assert (twin.now(), clock.now()) == (13.5, 12.5)


def test_threads_sharing_a_manual_clock_lose_no_step() -> None:
    clock = ManualClock()
    steps, threads = 2_000, 4
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        workers = [
            threading.Thread(target=lambda: [clock.advance(1.0) for _ in range(steps)])
            for _ in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(previous)
    assert clock.now() == steps * threads


def test_clock_error_is_an_invalid_argument_and_a_value_error() -> None:
    assert issubclass(ClockError, InvalidArgumentError)
    assert issubclass(ClockError, ValueError)


@given(steps=st.lists(st.floats(min_value=0, max_value=1e6), max_size=50))
def test_manual_clock_time_is_the_sum_of_its_steps(steps: list[float]) -> None:
    clock = ManualClock()
    previous = clock.now()
    for step in steps:
        clock.advance(step)
        assert clock.now() >= previous
        previous = clock.now()


def test_monotonic_clock_never_decreases_and_both_are_clocks() -> None:
    clock = MonotonicClock()
    readings = [clock.now() for _ in range(1000)]
    assert readings == sorted(readings)
    assert isinstance(clock, Clock)
    assert isinstance(ManualClock(), Clock)


class HostClock:
    """A host's clock: reads whatever it is set to."""

    def __init__(self) -> None:
        self.t: object = 0.0

    def now(self) -> object:
        return self.t


def _leased_two() -> tuple[HostClock, Distributor]:
    clock = HostClock()
    d = Distributor(clock, lease=5.0)  # type: ignore[arg-type]
    d.add_worker(Worker("w", capacity=2))
    d.add_worker(Worker("v", capacity=1))
    d.submit(Task("a"))
    d.submit(Task("b"))
    assert [a.task.id for a in d.dispatch()] == ["a", "b"]
    d.submit(Task("c"))
    d.submit(Task("e", key="k"))
    return clock, d


_CALLS: dict[str, Callable[[Distributor], Any]] = {
    "tick": lambda d: d.tick(),
    "dispatch": lambda d: d.dispatch(),
    "stats": lambda d: d.stats(),
    "next_wakeup": lambda d: d.next_wakeup(),
    "submit": lambda d: d.submit(Task("x")),
    "heartbeat": lambda d: d.heartbeat("a", extend=3.0),
    "complete": lambda d: d.complete("a"),
    "fail": lambda d: d.fail("a"),
    "requeue": lambda d: d.requeue("a"),
    "preempt": lambda d: d.preempt("a"),
    "cancel": lambda d: d.cancel("c"),
    "assign": lambda d: d.assign("c", "v"),
    "pin": lambda d: d.pin("c", "v"),
    "reprioritize": lambda d: d.reprioritize("c", 0),
    "add_worker": lambda d: d.add_worker(Worker("z", capacity=1)),
    "remove_worker": lambda d: d.remove_worker("w"),
    "set_health": lambda d: d.set_health("w", "degraded"),
    "update_worker": lambda d: d.update_worker("v", capacity=2),
    "close": lambda d: d.close(),
    "state_of": lambda d: d.state_of("a"),
    "explain": lambda d: d.explain("a"),
}


@pytest.mark.parametrize(
    "reading", [math.nan, math.inf, -math.inf, 10**400], ids=["nan", "inf", "-inf", "huge_int"]
)
@pytest.mark.parametrize("call", sorted(_CALLS))
def test_a_host_clock_reading_nan_or_infinity_is_refused_and_changes_nothing(
    call: str, reading: object
) -> None:
    clock, d = _leased_two()
    clock.t = 1.0
    before = d.snapshot()
    clock.t = reading
    with pytest.raises(ClockError, match=r"the clock .* read .*: its now\(\) must return a finite"):
        _CALLS[call](d)
    clock.t = 1.0
    assert d.snapshot() == before


def test_a_host_clock_reading_nan_once_loses_no_lease_and_records_no_wait() -> None:
    clock, d = _leased_two()
    clock.t = math.nan
    with pytest.raises(InvalidArgumentError, match="read nan"):
        d.tick()
    with pytest.raises(InvalidArgumentError, match="read nan"):
        d.dispatch()
    clock.t = 1.0
    assert d.state_of("a") is TaskState.LEASED
    assert d.state_of("b") is TaskState.LEASED
    assert [a.task.id for a in d.dispatch()] == ["c"]
    d.stats()  # no NaN wait recorded
    clock.t = 6.0
    d.tick()  # the leases expire: the tasks are retried, not dead
    assert d.state_of("a") is not TaskState.DEAD
    assert len(d.dlq) == 0


def test_a_host_clock_reading_no_number_is_a_type_error() -> None:
    clock, d = _leased_two()
    clock.t = "soon"
    with pytest.raises(InvalidTypeError, match="read 'soon'"):
        d.dispatch()
    clock.t = 1
    assert [a.task.id for a in d.dispatch()] == ["c"]


def test_a_host_clock_that_steps_back_does_not_dead_letter_a_failed_task() -> None:
    # The retry policy's elapsed time would be negative, which it refuses: the task
    # went to the dead-letter queue with attempts left.
    class Host:
        t = 10.0

        def now(self) -> float:
            return self.t

    clock = Host()
    d = Distributor(clock, lease=5.0)
    d.add_worker(Worker("w"))
    d.submit(Task("a"))
    d.dispatch()
    clock.t = 5.0
    assert d.fail("a") is TaskState.RETRYING
    assert len(d.dlq) == 0
