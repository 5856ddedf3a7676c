"""BatchOptimizer and AIMDSizing: grouping, bounds, due times, urgency, sizing, stats, bad input."""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from taskdist import (
    AIMDSizing,
    Batch,
    BatchOptimizer,
    BatchReason,
    DuplicateTaskError,
    GroupLimits,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    Priority,
    ReentrancyError,
    SizingRule,
    Task,
    UnknownPolicyError,
    UnknownTaskError,
)

# Multiples of 1/4 are exact in binary floating point, so the model's sums of
# times and costs agree with the optimizer's bit for bit and ties are real ties.
quarters = st.integers(min_value=0, max_value=16).map(lambda n: n / 4)
positive_quarters = st.integers(min_value=1, max_value=16).map(lambda n: n / 4)


def snapshot(batcher: BatchOptimizer) -> tuple[object, ...]:
    """What a refused call must leave unchanged."""
    stats = batcher.stats()
    return (
        len(batcher),
        batcher.next_wakeup(),
        stats.pending,
        stats.open_batches,
        stats.formed,
        {key: group.pending for key, group in stats.groups.items()},
    )


# -- per-group limits, TTL from enqueued_at, callbacks ----------------------------------


def test_a_group_with_its_own_size_and_wait_batches_by_them() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(
        clock, max_size=4, max_wait=1.0, groups={"small": GroupLimits(max_size=2, max_wait=0.25)}
    )
    assert batcher.add(Task("s1", group="small")) is None
    full = batcher.add(Task("s2", group="small"))
    assert full is not None and full.ids == ("s1", "s2")  # at its own size, not 4
    batcher.add(Task("s3", group="small"))
    batcher.add(Task("d1", group="default"))
    assert batcher.next_wakeup() == 0.25  # its own wait, not 1.0
    clock.advance(0.25)
    assert [b.ids for b in batcher.poll()] == [("s3",)]
    assert batcher.target_size("small") == 2 and batcher.target_size("default") == 4
    assert batcher.group("small") == GroupLimits(2, 0.25)
    assert batcher.group("default") == GroupLimits(4, 1.0)


def test_set_group_applies_to_batches_opened_afterwards() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, max_size=3, max_wait=1.0)
    batcher.add(Task("a1", group="g"))
    batcher.set_group("g", GroupLimits(max_size=1))
    assert batcher.add(Task("a2", group="g")) is None  # the open batch keeps its size
    assert batcher.add(Task("a3", group="g")).ids == ("a1", "a2", "a3")  # type: ignore[union-attr]
    assert batcher.add(Task("a4", group="g")).ids == ("a4",)  # type: ignore[union-attr]
    batcher.set_group("g", None)
    assert batcher.group("g") == GroupLimits(3, 1.0)


def test_a_dynamic_target_never_exceeds_its_groups_max_size() -> None:
    batcher = BatchOptimizer(
        ManualClock(),
        max_size=10,
        sizing=AIMDSizing(target_latency=1.0, initial_size=8),
        groups={"g": GroupLimits(max_size=3)},
    )
    assert batcher.target_size("g") == 3
    batch = batcher.add(Task("x", group="g"))
    batcher.add(Task("y", group="g"))
    batch = batcher.add(Task("z", group="g"))
    assert batch is not None and len(batch) == 3
    for _ in range(5):
        batcher.record(batch, duration=0.1)  # fast and full: AIMD would grow it
    assert batcher.target_size("g") == 3


def test_a_group_may_be_allowed_larger_batches_than_the_default() -> None:
    batcher = BatchOptimizer(ManualClock(), max_size=2, groups={"big": GroupLimits(max_size=5)})
    assert batcher.target_size("big") == 5 and batcher.target_size("other") == 2
    released = [batcher.add(Task(f"t{i}", group="big")) for i in range(5)]
    assert released[:4] == [None] * 4
    assert released[4] is not None and released[4].ids == ("t0", "t1", "t2", "t3", "t4")


def test_sizing_starts_and_moves_a_group_within_its_own_range() -> None:
    batcher = BatchOptimizer(
        ManualClock(),
        max_size=4,
        sizing=AIMDSizing(target_latency=1.0, initial_size=8),
        groups={"big": GroupLimits(max_size=10)},
    )
    # The rule's start over each group's range: 8 within [1, 10], 4 within [1, 4].
    assert batcher.target_size("big") == 8 and batcher.target_size("other") == 4
    batch = None
    for i in range(8):
        batch = batcher.add(Task(f"t{i}", group="big"))
    assert batch is not None and len(batch) == 8
    batcher.record(batch, duration=0.1)  # fast and full: it grows, past the default
    assert batcher.target_size("big") == 9
    batcher.set_group("big", GroupLimits(max_size=6))  # a learned target above it is lowered
    assert batcher.target_size("big") == 6
    batcher.set_group("big", GroupLimits(max_size=10))
    assert batcher.target_size("big") == 6  # and grows from there, not from 9


def test_bad_arguments_to_record_and_group_of_are_refused() -> None:
    batcher = BatchOptimizer(ManualClock())
    unhashable = Batch(1, ["a", "list"], (Task("q"),), 0.0, 0.0, BatchReason.FULL)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match=r"batch\.key must be hashable"):
        batcher.record(unhashable, 1.0)
    with pytest.raises(InvalidTypeError, match="takes a Task"):
        batcher.group_of("not a task")  # type: ignore[arg-type]
    assert batcher.stats().groups == {}


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: GroupLimits(max_size=0), InvalidArgumentError),
        (lambda: GroupLimits(max_size=1.5), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: GroupLimits(max_wait=-1.0), InvalidArgumentError),
        (lambda: GroupLimits(max_wait=math.nan), InvalidArgumentError),
        (
            lambda: BatchOptimizer(
                ManualClock(), min_size=3, max_size=5, groups={"g": GroupLimits(2)}
            ),
            InvalidArgumentError,
        ),
        (lambda: BatchOptimizer(ManualClock(), groups={"g": 4}), InvalidTypeError),  # type: ignore[dict-item]
        (lambda: BatchOptimizer(ManualClock(), groups=[1]), InvalidTypeError),  # type: ignore[arg-type]
    ],
)
def test_bad_group_limits_are_refused(make: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        make()


def test_ttl_counts_from_enqueued_at() -> None:
    clock = ManualClock(start=10.0)
    batcher = BatchOptimizer(clock, max_size=8, max_wait=5.0, expiry_margin=1.0)
    # It waited 6 s in a queue before: its 10 s TTL runs out at 14, so it goes by 13.
    batcher.add(Task("requeued", ttl=10.0, group="g"), enqueued_at=4.0)
    assert batcher.next_wakeup() == 13.0
    batcher.add(Task("fresh", ttl=10.0, group="h"))
    clock.advance(3.0)
    assert [b.ids for b in batcher.poll()] == [("requeued",)]
    assert batcher.next_wakeup() == 15.0  # max_wait of "fresh"'s batch, before its TTL margin
    with pytest.raises(InvalidArgumentError):
        batcher.add(Task("future", group="g"), enqueued_at=clock.now() + 1.0)
    with pytest.raises(InvalidArgumentError):
        batcher.add(Task("nan", group="g"), enqueued_at=math.nan)
    assert "future" not in batcher and "nan" not in batcher


def test_a_key_function_that_calls_back_in_is_refused_and_changes_nothing() -> None:
    clock = ManualClock()
    calls = []

    def key(task: Task) -> Hashable:
        calls.append(len(batcher))  # looking is fine
        if task.id == "sneaky":
            batcher.add(Task("inner"))
        return "g"

    batcher = BatchOptimizer(clock, max_size=2, key=key)
    batcher.add(Task("first"))
    before = snapshot(batcher)
    with pytest.raises(ReentrancyError, match="add"):
        batcher.add(Task("sneaky"))
    assert snapshot(batcher) == before and "inner" not in batcher and "sneaky" not in batcher


# -- grouping and size -------------------------------------------------------


def test_add_returns_the_batch_as_soon_as_it_is_full() -> None:
    batcher = BatchOptimizer(ManualClock(), max_size=3, max_wait=10.0)
    assert batcher.add(Task("a", group="g")) is None
    assert batcher.add(Task("b", group="g")) is None
    batch = batcher.add(Task("c", group="g"))
    assert batch is not None
    assert batch.ids == ("a", "b", "c")
    assert batch.reason is BatchReason.FULL
    assert len(batcher) == 0
    assert batcher.next_wakeup() is None


def test_batches_never_mix_groups() -> None:
    batcher = BatchOptimizer(ManualClock(), max_size=2, max_wait=10.0)
    assert batcher.add(Task("r1", group="research")) is None
    assert batcher.add(Task("v1", group="review")) is None
    research = batcher.add(Task("r2", group="research"))
    review = batcher.add(Task("v2", group="review"))
    assert research is not None and review is not None
    assert (research.key, research.ids) == ("research", ("r1", "r2"))
    assert (review.key, review.ids) == ("review", ("v1", "v2"))


def test_key_function_replaces_task_group() -> None:
    batcher = BatchOptimizer(ManualClock(), max_size=2, max_wait=10.0, key=lambda t: t.tenant)
    assert batcher.add(Task("a", tenant="acme", group="x")) is None
    batch = batcher.add(Task("b", tenant="acme", group="y"))
    assert batch is not None
    assert (batch.key, batch.ids) == ("acme", ("a", "b"))


def test_tasks_without_a_group_batch_together_under_none() -> None:
    batcher = BatchOptimizer(ManualClock(), max_size=2, max_wait=10.0)
    batcher.add(Task("a"))
    batch = batcher.add(Task("b"))
    assert batch is not None
    assert batch.key is None
    assert batch.ids == ("a", "b")


def test_max_cost_closes_the_batch_the_next_task_would_overflow() -> None:
    batcher = BatchOptimizer(ManualClock(), max_size=10, max_wait=10.0, max_cost=5.0)
    assert batcher.add(Task("a", group="g", cost=2.0)) is None
    assert batcher.add(Task("b", group="g", cost=3.0)) is None  # exactly 5.0 fits
    batch = batcher.add(Task("c", group="g", cost=0.5))
    assert batch is not None
    assert batch.ids == ("a", "b")
    assert batch.reason is BatchReason.FULL
    assert "c" in batcher
    assert len(batcher) == 1


def test_max_resources_closes_the_batch_the_next_task_would_overflow() -> None:
    batcher = BatchOptimizer(
        ManualClock(), max_size=10, max_wait=10.0, max_resources={"tokens": 1000}
    )
    assert batcher.add(Task("a", group="g", resources={"tokens": 600})) is None
    assert batcher.add(Task("b", group="g", resources={"api_calls": 5})) is None
    batch = batcher.add(Task("c", group="g", resources={"tokens": 500}))
    assert batch is not None
    assert batch.ids == ("a", "b")
    assert batcher.stats().groups["g"].pending == 1


# -- time ------------------------------------------------------------------


def test_poll_releases_a_batch_below_min_size_at_max_wait_by_default() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, min_size=4, max_size=8, max_wait=0.5)
    batcher.add(Task("a", group="g"))
    clock.advance(0.25)
    batcher.add(Task("b", group="g"))
    assert batcher.next_wakeup() == 0.5  # the oldest task's wait decides
    clock.set(0.49)
    assert batcher.poll() == []
    clock.set(0.5)
    [batch] = batcher.poll()
    assert batch.ids == ("a", "b")
    assert batch.reason is BatchReason.MAX_WAIT
    assert (batch.created, batch.released) == (0.0, 0.5)


def test_due_time_is_the_exact_float_next_wakeup_returned() -> None:
    # 0.1 + 0.2 == 0.30000000000000004: a host that polls at the value
    # next_wakeup() returned must find the batch due, not a hair early.
    clock = ManualClock(start=0.1)
    batcher = BatchOptimizer(clock, max_wait=0.2)
    batcher.add(Task("a", group="g"))
    wake = batcher.next_wakeup()
    assert wake == 0.1 + 0.2
    clock.set(0.3)
    assert batcher.poll() == []  # 0.3 < 0.30000000000000004
    assert wake is not None
    clock.set(wake)
    [batch] = batcher.poll()
    assert batch.released == wake
    assert batcher.next_wakeup() is None


def test_hold_keeps_a_batch_below_min_size_past_max_wait() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, min_size=3, max_size=8, max_wait=1.0, below_min="hold")
    batcher.add(Task("a", group="g"))
    batcher.add(Task("b", group="g"))
    assert batcher.next_wakeup() is None
    clock.advance(5.0)
    assert batcher.poll() == []
    # Reaching min_size long after max_wait releases it at once.
    batch = batcher.add(Task("c", group="g"))
    assert batch is not None
    assert batch.ids == ("a", "b", "c")
    assert batch.reason is BatchReason.MAX_WAIT


def test_hold_releases_at_max_wait_once_min_size_is_reached() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, min_size=2, max_size=8, max_wait=1.0, below_min="hold")
    batcher.add(Task("a", group="g"))
    clock.advance(0.5)
    batcher.add(Task("b", group="g"))
    assert batcher.next_wakeup() == 1.0
    clock.set(1.0)
    [batch] = batcher.poll()
    assert batch.ids == ("a", "b")


def test_task_with_ttl_is_released_expiry_margin_before_it_expires() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, max_size=8, max_wait=2.0, expiry_margin=0.25)
    batcher.add(Task("slow", group="g"))
    clock.advance(0.5)
    batcher.add(Task("hurried", group="g", ttl=1.0))
    # min(0 + 2.0, 0.5 + 1.0 - 0.25)
    assert batcher.next_wakeup() == 1.25
    clock.set(1.25)
    [batch] = batcher.poll()
    assert batch.ids == ("slow", "hurried")
    assert batch.reason is BatchReason.DEADLINE


def test_task_with_deadline_is_released_expiry_margin_before_it() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, max_size=8, max_wait=2.0, expiry_margin=0.5)
    batcher.add(Task("a", group="g", deadline=1.5))
    assert batcher.next_wakeup() == 1.0


def test_expiry_margin_defaults_to_max_wait() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, max_size=8, max_wait=0.25)
    assert batcher.expiry_margin == 0.25
    batcher.add(Task("a", group="g", ttl=0.375))
    assert batcher.next_wakeup() == 0.125


def test_task_that_cannot_afford_to_wait_is_released_by_add() -> None:
    clock = ManualClock(start=10.0)
    batcher = BatchOptimizer(clock, max_size=8, max_wait=1.0, expiry_margin=0.5)
    batcher.add(Task("a", group="g"))
    batch = batcher.add(Task("late", group="g", deadline=10.25))
    assert batch is not None
    assert batch.ids == ("a", "late")
    assert batch.reason is BatchReason.DEADLINE


def test_max_wait_zero_releases_every_task_alone() -> None:
    batcher = BatchOptimizer(ManualClock(), max_wait=0.0)
    batch = batcher.add(Task("a", group="g"))
    assert batch is not None
    assert batch.ids == ("a",)
    assert batch.reason is BatchReason.MAX_WAIT


# -- urgency -------------------------------------------------------------------


def test_critical_task_closes_its_batch_at_once() -> None:
    batcher = BatchOptimizer(ManualClock(), max_size=8, max_wait=10.0)
    batcher.add(Task("a", group="g", priority=Priority.LOW))
    batch = batcher.add(Task("fire", group="g", priority=Priority.CRITICAL))
    assert batch is not None
    assert batch.ids == ("a", "fire")
    assert batch.reason is BatchReason.CRITICAL
    assert batch.priority == Priority.CRITICAL


def test_critical_wait_policy_lets_a_critical_task_wait() -> None:
    batcher = BatchOptimizer(ManualClock(), max_size=8, max_wait=10.0, critical="wait")
    assert batcher.add(Task("fire", group="g", priority=Priority.CRITICAL)) is None
    assert "fire" in batcher


def test_poll_releases_the_most_urgent_batch_first() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, max_size=8, max_wait=1.0)
    batcher.add(Task("bg", group="background", priority=Priority.BACKGROUND))
    batcher.add(Task("n", group="normal", priority=Priority.NORMAL))
    clock.advance(0.5)
    batcher.add(Task("h", group="high", priority=Priority.HIGH))
    batcher.add(Task("n2", group="normal2", priority=Priority.NORMAL))
    clock.advance(5.0)
    order = [batch.key for batch in batcher.poll()]
    # priority first, then the earlier due time
    assert order == ["high", "normal", "normal2", "background"]


def test_flush_releases_everything_most_urgent_first() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, min_size=5, max_size=8, max_wait=1.0, below_min="hold")
    batcher.add(Task("l", group="low", priority=Priority.LOW))
    batcher.add(Task("h", group="high", priority=Priority.HIGH))
    batches = batcher.flush()
    assert [(b.key, b.reason) for b in batches] == [
        ("high", BatchReason.FLUSH),
        ("low", BatchReason.FLUSH),
    ]
    assert len(batcher) == 0
    assert batcher.next_wakeup() is None
    assert batcher.flush() == []


def test_task_that_does_not_fit_and_must_go_now_is_due_at_the_next_poll() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, max_size=8, max_wait=10.0, max_cost=2.0)
    batcher.add(Task("a", group="g", cost=1.5))
    full = batcher.add(Task("fire", group="g", cost=1.0, priority=Priority.CRITICAL))
    assert full is not None
    assert full.ids == ("a",)
    assert full.reason is BatchReason.FULL
    assert batcher.next_wakeup() == clock.now()
    [critical] = batcher.poll()
    assert critical.ids == ("fire",)
    assert critical.reason is BatchReason.CRITICAL


# -- remove ----------------------------------------------------------------


def test_remove_takes_a_task_out_and_relaxes_the_due_time() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, max_size=8, max_wait=4.0, expiry_margin=0.0)
    batcher.add(Task("a", group="g"))
    batcher.add(Task("b", group="g", ttl=1.0))
    assert batcher.next_wakeup() == 1.0
    assert batcher.remove("b").id == "b"
    assert "b" not in batcher
    assert batcher.next_wakeup() == 4.0
    assert batcher.remove("a").id == "a"
    assert batcher.next_wakeup() is None
    assert batcher.stats().open_batches == 0


def test_remove_unknown_or_unhashable_id_is_refused_and_changes_nothing() -> None:
    batcher = BatchOptimizer(ManualClock())
    batcher.add(Task("a", group="g"))
    before = snapshot(batcher)
    with pytest.raises(UnknownTaskError):
        batcher.remove("nope")
    with pytest.raises(InvalidTypeError):
        batcher.remove(["unhashable"])  # type: ignore[arg-type]
    assert snapshot(batcher) == before


# -- stats -----------------------------------------------------------------


def test_stats_count_batches_sizes_and_waits_per_group() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, max_size=2, max_wait=1.0)
    batcher.add(Task("a", group="g"))
    clock.advance(0.5)
    batch = batcher.add(Task("b", group="g"))  # waits 0.5 and 0.0
    assert batch is not None
    batcher.add(Task("c", group="h"))
    clock.advance(1.0)
    batcher.poll()  # c waited 1.0
    batcher.record(batch, 2.0)
    stats = batcher.stats()
    assert stats.formed == 2
    assert stats.mean_size == 1.5
    assert stats.by_reason == {BatchReason.FULL: 1, BatchReason.MAX_WAIT: 1}
    group = stats.groups["g"]
    assert (group.formed, group.mean_size, group.pending) == (1, 2.0, 0)
    assert (group.wait.p50, group.wait.max) == (0.25, 0.5)
    assert group.duration.p50 == 2.0
    assert stats.groups["h"].wait.p95 == 1.0
    assert math.isnan(stats.groups["h"].duration.p50)


def test_stats_of_a_fresh_optimizer_are_empty() -> None:
    stats = BatchOptimizer(ManualClock()).stats()
    assert (stats.formed, stats.pending, stats.open_batches, stats.groups) == (0, 0, 0, {})
    assert math.isnan(stats.mean_size)


def test_dead_heap_entries_are_compacted() -> None:
    # Each TTL task moves its batch's due time earlier; the old heap entries
    # die and must not pile up.
    clock = ManualClock()
    batcher = BatchOptimizer(clock, max_size=10_000, max_wait=1e6, expiry_margin=0.0)
    for i in range(2_000):
        batcher.add(Task(i, group="g", ttl=1e5 - i))
    assert batcher.next_wakeup() == 1e5 - 1_999
    assert len(batcher._due) <= 2 * 1 + 64 + 1


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"min_size": 5, "max_size": 4}, InvalidArgumentError),
        ({"min_size": 0}, InvalidArgumentError),
        ({"max_size": 0}, InvalidArgumentError),
        ({"max_size": 2.5}, InvalidTypeError),
        ({"min_size": True}, InvalidTypeError),
        ({"max_wait": -0.1}, InvalidArgumentError),
        ({"max_wait": math.nan}, InvalidArgumentError),
        ({"max_wait": math.inf}, InvalidArgumentError),
        ({"max_wait": "1"}, InvalidTypeError),
        ({"key": "group"}, InvalidTypeError),
        ({"max_cost": 0.0}, InvalidArgumentError),
        ({"max_cost": math.nan}, InvalidArgumentError),
        ({"max_resources": {"tokens": -1}}, InvalidArgumentError),
        ({"max_resources": {"tokens": math.nan}}, InvalidArgumentError),
        ({"max_resources": 100}, InvalidTypeError),
        ({"below_min": "wait"}, UnknownPolicyError),
        ({"critical": "jump"}, UnknownPolicyError),
        ({"expiry_margin": -1.0}, InvalidArgumentError),
        ({"expiry_margin": math.inf}, InvalidArgumentError),
        ({"sizing": "aimd"}, InvalidTypeError),
        ({"stats_window": 0}, InvalidArgumentError),
        ({"clock": object()}, InvalidTypeError),
    ],
)
def test_bad_constructor_arguments_raise_specific_errors(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        BatchOptimizer(**{"clock": ManualClock(), **kwargs})
    # The message names the argument.
    assert next(iter(kwargs)) in str(raised.value)


def test_add_refuses_bad_tasks_and_changes_nothing() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(
        clock,
        max_size=4,
        max_wait=1.0,
        max_cost=3.0,
        max_resources={"tokens": 100},
        key=lambda t: t.payload,
    )
    batcher.add(Task("a", payload="g"))
    before = snapshot(batcher)
    with pytest.raises(DuplicateTaskError):
        batcher.add(Task("a", payload="g"))
    with pytest.raises(DuplicateTaskError):
        batcher.add(Task("a", payload="other group"))
    with pytest.raises(InvalidTypeError):
        batcher.add("a")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match=r"key\(task\)"):
        batcher.add(Task("b", payload=["unhashable"]))
    with pytest.raises(InvalidArgumentError, match="max_cost"):
        batcher.add(Task("c", payload="g", cost=3.5))
    with pytest.raises(InvalidArgumentError, match="max_resources"):
        batcher.add(Task("d", payload="g", resources={"tokens": 101}))
    assert snapshot(batcher) == before
    assert batcher.add(Task("e", payload="g", cost=2.0)) is None


def test_record_refuses_bad_input_and_changes_nothing() -> None:
    clock = ManualClock()
    batcher = BatchOptimizer(clock, max_size=2, sizing=AIMDSizing(target_latency=1.0))
    batcher.add(Task("a", group="g"))
    batch = batcher.add(Task("b", group="g"))
    assert batch is not None
    target = batcher.target_size("g")
    for duration in (-1.0, math.nan, math.inf):
        with pytest.raises(InvalidArgumentError):
            batcher.record(batch, duration)
    with pytest.raises(InvalidTypeError):
        batcher.record(("g", ["a", "b"]), 1.0)  # type: ignore[arg-type]
    assert batcher.target_size("g") == target
    assert batcher.stats().groups["g"].duration.count == 0


def test_a_sizing_rule_returning_a_non_int_is_refused() -> None:
    class Broken:
        def initial(self, min_size: int, max_size: int) -> int:
            return min_size

        def adjust(
            self, current: int, size: int, duration: float, min_size: int, max_size: int
        ) -> int:
            return 2.5  # type: ignore[return-value]

    batcher = BatchOptimizer(ManualClock(), max_size=1, sizing=Broken())
    batch = batcher.add(Task("a"))
    assert batch is not None
    with pytest.raises(InvalidTypeError, match="adjust"):
        batcher.record(batch, 1.0)
    assert batcher.target_size(None) == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"target_latency": 0.0}, InvalidArgumentError),
        ({"target_latency": math.nan}, InvalidArgumentError),
        ({"target_latency": 1.0, "increase": 0}, InvalidArgumentError),
        ({"target_latency": 1.0, "increase": 1.5}, InvalidTypeError),
        ({"target_latency": 1.0, "decrease": 1.0}, InvalidArgumentError),
        ({"target_latency": 1.0, "decrease": 0.0}, InvalidArgumentError),
        ({"target_latency": 1.0, "initial_size": 0}, InvalidArgumentError),
    ],
)
def test_bad_aimd_arguments_raise_specific_errors(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        AIMDSizing(**kwargs)


# -- dynamic sizing --------------------------------------------------------


def drive_saturated(
    batcher: BatchOptimizer, clock: ManualClock, latency: Any, batches: int
) -> list[int]:
    """Run ``batches`` full batches of group "g" one after another; the targets seen."""
    targets = []
    ids = itertools.count()
    for _ in range(batches):
        targets.append(batcher.target_size("g"))
        batch = None
        while batch is None:
            batch = batcher.add(Task(next(ids), group="g"))
        assert len(batch) == targets[-1]
        duration = latency(len(batch))
        clock.advance(duration)
        batcher.record(batch, duration)
    return targets


def test_aimd_settles_into_the_sawtooth_below_the_latency_target() -> None:
    # L(n) = 0.2 + 0.05 n meets 1.0 s up to n* = 16; from 17 it halves to 8.
    clock = ManualClock()
    batcher = BatchOptimizer(
        clock, max_size=32, max_wait=1e9, sizing=AIMDSizing(target_latency=1.0)
    )
    targets = drive_saturated(batcher, clock, lambda n: 0.2 + 0.05 * n, 60)
    assert targets[:17] == list(range(1, 18))
    assert set(targets[17:]) == set(range(8, 18))
    assert batcher.stats().groups["g"].target_size in range(8, 18)


def test_aimd_does_not_grow_a_group_that_is_not_size_limited() -> None:
    clock = ManualClock()
    sizing = AIMDSizing(1.0, initial_size=4)
    batcher = BatchOptimizer(clock, max_size=32, max_wait=1.0, sizing=sizing)
    batcher.add(Task("a", group="g"))
    clock.advance(1.0)
    [batch] = batcher.poll()
    before = batcher.target_size("g")
    batcher.record(batch, 0.1)
    assert batcher.target_size("g") == before


@given(
    overhead=quarters,
    per_task=st.integers(min_value=1, max_value=8).map(lambda n: n / 16),
    target=st.integers(min_value=1, max_value=40).map(lambda n: n / 4),
    bounds=st.tuples(
        st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=40)
    ).map(sorted),
    increase=st.integers(min_value=1, max_value=4),
    decrease=st.sampled_from([0.25, 0.5, 0.75, 0.875]),
    start=st.one_of(st.none(), st.integers(min_value=1, max_value=64)),
)
def test_aimd_converges_into_its_band_and_stays_there(
    overhead: float,
    per_task: float,
    target: float,
    bounds: list[int],
    increase: int,
    decrease: float,
    start: int | None,
) -> None:
    low, high = bounds

    def latency(n: int) -> float:
        return overhead + per_task * n

    meeting = [n for n in range(low, high + 1) if latency(n) <= target]
    n_star = max(meeting) if meeting else low
    upper = min(high, n_star + increase)
    lower = max(low, math.floor(decrease * (n_star + 1)))
    settle = math.ceil((high - low) / increase) + math.ceil(math.log(64) / math.log(1 / decrease))
    note(f"n*={n_star} band=[{lower}, {upper}] settle={settle}")

    clock = ManualClock()
    rule = AIMDSizing(target, increase=increase, decrease=decrease, initial_size=start)
    batcher = BatchOptimizer(clock, min_size=low, max_size=high, max_wait=1e9, sizing=rule)
    targets = drive_saturated(batcher, clock, latency, settle + 3 * (upper - lower + 2))
    assert all(low <= t <= high for t in targets)
    settled = targets[settle:]
    assert all(lower <= t <= upper for t in settled), settled
    if n_star < high and meeting:
        # It keeps probing above n*, so a lighter load would be found.
        assert any(t > n_star for t in settled)


def test_aimd_sizing_is_a_sizing_rule() -> None:
    assert isinstance(AIMDSizing(1.0), SizingRule)


# -- the stateful model

task_specs = st.fixed_dictionaries(
    {
        "group": st.sampled_from(["research", "review", None]),
        "priority": st.sampled_from([0, 1, 1, 2, 2, 2, 2, 2, 3, 4]),
        "cost": quarters,
        "tokens": st.integers(min_value=0, max_value=3).map(float),
        # Mostly neither, so batches also fill and wait; sometimes one that cannot wait.
        "ttl": st.sampled_from([*[None] * 20, 0.25, 1.0, 2.0, 4.0, 8.0]),
        "deadline_in": st.sampled_from([*[None] * 20, -0.25, 0.5, 1.5, 3.0, 6.0]),
    }
)


class ModelBatch:
    """The reference: an open batch as plain lists, everything recomputed from scratch."""

    def __init__(self, batch_id: int, created: float, cap: int) -> None:
        self.id = batch_id
        self.created = created
        self.cap = cap
        self.tasks: list[Task] = []
        self.added: list[float] = []
        self.forced = math.inf
        self.forced_reason = BatchReason.FULL


class BatchingMachine(RuleBasedStateMachine):
    """Drives a BatchOptimizer like a host and compares it with a plain-list model.

    The host is disciplined: it never lets the clock pass ``next_wakeup()``
    without polling, so every wait bound must hold exactly.
    """

    disciplined = True

    @initialize(
        sizes=st.tuples(
            st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=5)
        ).map(sorted),
        max_wait=quarters,
        max_cost=st.one_of(st.none(), st.integers(min_value=4, max_value=12).map(float)),
        tokens=st.one_of(st.none(), st.integers(min_value=3, max_value=8).map(float)),
        below_min=st.sampled_from(["release", "hold"]),
        critical=st.sampled_from(["close", "wait"]),
        margin=st.one_of(st.none(), quarters),
        sizing=st.booleans(),
    )
    def setup(
        self,
        sizes: list[int],
        max_wait: float,
        max_cost: float | None,
        tokens: float | None,
        below_min: str,
        critical: str,
        margin: float | None,
        sizing: bool,
    ) -> None:
        self.clock = ManualClock()
        self.min_size, self.max_size = sizes
        self.max_wait = max_wait
        self.max_cost = max_cost
        self.tokens = tokens
        self.hold = below_min == "hold"
        self.close = critical == "close"
        self.margin = max_wait if margin is None else margin
        self.batcher = BatchOptimizer(
            self.clock,
            min_size=self.min_size,
            max_size=self.max_size,
            max_wait=max_wait,
            max_cost=max_cost,
            max_resources=None if tokens is None else {"tokens": tokens},
            below_min=below_min,  # type: ignore[arg-type]
            critical=critical,  # type: ignore[arg-type]
            expiry_margin=margin,
            sizing=AIMDSizing(target_latency=1.0) if sizing else None,
        )
        self.ids = itertools.count()
        self.batch_ids = itertools.count()
        self.open: dict[Hashable, ModelBatch] = {}
        self.added_at: dict[Hashable, float] = {}
        self.released: list[Batch] = []
        self.released_ids: set[Hashable] = set()
        self.removed: set[Hashable] = set()

    # -- the model's rules --------------------------------------------------

    def expiry_due(self, task: Task, added: float) -> float:
        due = math.inf
        if task.ttl is not None:
            due = added + task.ttl - self.margin
        if task.deadline is not None:
            due = min(due, task.deadline - self.margin)
        return due

    def candidates(self, batch: ModelBatch) -> list[tuple[float, BatchReason]]:
        """Every (time, reason) that bounds when the batch goes."""
        found = [(batch.forced, batch.forced_reason)]
        found += [
            (self.expiry_due(task, added), BatchReason.DEADLINE)
            for task, added in zip(batch.tasks, batch.added, strict=True)
        ]
        if not self.hold or len(batch.tasks) >= self.min_size:
            found.append((batch.created + self.max_wait, BatchReason.MAX_WAIT))
        return found

    def due(self, batch: ModelBatch) -> float:
        return min(time for time, _ in self.candidates(batch))

    def fits(self, batch: ModelBatch, task: Task) -> bool:
        if len(batch.tasks) >= batch.cap:
            return False
        if self.max_cost is not None:
            total = 0.0
            for held in [*batch.tasks, task]:
                total += held.cost
            if total > self.max_cost:
                return False
        if self.tokens is not None:
            total = 0.0
            for held in [*batch.tasks, task]:
                total += held.resources.get("tokens", 0.0)
            if total > self.tokens:
                return False
        return True

    def check_released(self, batch: Batch, model: ModelBatch, reasons: set[BatchReason]) -> None:
        """``batch`` is exactly ``model``'s tasks, for an allowed reason, within every bound."""
        now = self.clock.now()
        assert batch.ids == tuple(task.id for task in model.tasks)
        assert batch.id == model.id
        assert batch.key == model.tasks[0].group
        assert all(task.group == batch.key for task in batch)
        assert batch.created == model.created
        assert batch.released == now
        assert batch.reason in reasons, (batch.reason, reasons)
        assert len(batch) <= self.max_size
        cost = tokens = 0.0
        for task in batch:  # summed in add order, as the bound is stated
            cost += task.cost
            tokens += task.resources.get("tokens", 0.0)
        assert self.max_cost is None or cost <= self.max_cost
        assert self.tokens is None or tokens <= self.tokens
        assert not self.released_ids & set(batch.ids)
        if self.disciplined:
            for task, added in zip(model.tasks, model.added, strict=True):
                assert now <= max(added, self.expiry_due(task, added))
                if not self.hold:
                    assert now <= added + self.max_wait
        self.released.append(batch)
        self.released_ids.update(batch.ids)

    def due_reasons(self, model: ModelBatch) -> set[BatchReason]:
        due = self.due(model)
        return {reason for time, reason in self.candidates(model) if time == due}

    def release_due(self, batches: list[Batch]) -> None:
        now = self.clock.now()
        due = [model for model in self.open.values() if self.due(model) <= now]
        due.sort(key=lambda m: (min(t.priority for t in m.tasks), self.due(m), m.id))
        assert [b.id for b in batches] == [m.id for m in due]
        for batch, model in zip(batches, due, strict=True):
            self.check_released(batch, model, self.due_reasons(model))
            del self.open[batch.key]

    # -- rules ----------------------------------------------------------

    @rule(specs=st.lists(task_specs, min_size=1, max_size=6))
    def add(self, specs: list[dict[str, Any]]) -> None:
        for spec in specs:
            self.add_one(**spec)

    def add_one(
        self,
        group: str | None,
        priority: int,
        cost: float,
        tokens: float,
        ttl: float | None,
        deadline_in: float | None,
    ) -> None:
        now = self.clock.now()
        task = Task(
            next(self.ids),
            group=group,
            priority=priority,
            cost=cost,
            resources={"tokens": tokens},
            ttl=ttl,
            deadline=None if deadline_in is None else now + deadline_in,
        )
        cap = self.batcher.target_size(group)
        result = self.batcher.add(task)

        sealed = None
        model = self.open.get(group)
        if model is not None and not self.fits(model, task):
            sealed = model
            del self.open[group]
            model = None
        if model is None:
            model = self.open[group] = ModelBatch(next(self.batch_ids), now, cap)
        model.tasks.append(task)
        model.added.append(now)
        self.added_at[task.id] = now
        closing = None
        if len(model.tasks) >= model.cap:
            closing = BatchReason.FULL
        elif priority <= Priority.CRITICAL and self.close:
            closing = BatchReason.CRITICAL
        due = self.due(model)
        goes_now = closing is not None or due <= now

        if sealed is not None:
            assert result is not None
            self.check_released(result, sealed, {BatchReason.FULL})
            if closing is not None:
                model.forced, model.forced_reason = now, closing
        elif goes_now:
            assert result is not None
            reasons = {closing} if closing is not None else self.due_reasons(model)
            self.check_released(result, model, reasons)
            del self.open[group]
        else:
            assert result is None

    @rule(data=st.data())
    def add_duplicate(self, data: st.DataObject) -> None:
        pending = [t.id for m in self.open.values() for t in m.tasks]
        if not pending:
            return
        task_id = data.draw(st.sampled_from(pending))
        before = snapshot(self.batcher)
        with pytest.raises(DuplicateTaskError):
            self.batcher.add(Task(task_id, group="review"))
        assert snapshot(self.batcher) == before

    @precondition(lambda self: self.max_cost is not None)
    @rule()
    def add_too_costly(self) -> None:
        assert self.max_cost is not None
        before = snapshot(self.batcher)
        with pytest.raises(InvalidArgumentError):
            self.batcher.add(Task("too costly", group="review", cost=self.max_cost + 0.25))
        assert snapshot(self.batcher) == before

    @rule(dt=quarters)
    def advance(self, dt: float) -> None:
        target = self.clock.now() + dt
        wake = self.batcher.next_wakeup()
        if self.disciplined and wake is not None:
            target = min(target, max(wake, self.clock.now()))
        self.clock.set(target)

    @rule(at_next_wakeup=st.booleans())
    def poll(self, at_next_wakeup: bool) -> None:
        wake = self.batcher.next_wakeup()
        if at_next_wakeup and wake is not None:
            self.clock.set(max(wake, self.clock.now()))
        self.release_due(self.batcher.poll())

    @precondition(lambda self: len(self.open) >= 2)
    @rule()
    def flush(self) -> None:
        batches = self.batcher.flush()
        models = sorted(
            self.open.values(),
            key=lambda m: (min(t.priority for t in m.tasks), self.due(m), m.id),
        )
        assert [b.id for b in batches] == [m.id for m in models]
        for batch, model in zip(batches, models, strict=True):
            self.check_released(batch, model, {BatchReason.FLUSH})
        self.open.clear()

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        pending = [(key, t.id) for key, m in self.open.items() for t in m.tasks]
        if not pending:
            with pytest.raises(UnknownTaskError):
                self.batcher.remove("nothing")
            return
        key, task_id = data.draw(st.sampled_from(pending))
        assert self.batcher.remove(task_id).id == task_id
        model = self.open[key]
        position = [t.id for t in model.tasks].index(task_id)
        del model.tasks[position]
        del model.added[position]
        if not model.tasks:
            del self.open[key]
        self.removed.add(task_id)

    @precondition(lambda self: self.released)
    @rule(data=st.data(), duration=st.integers(min_value=0, max_value=8).map(lambda n: n / 4))
    def record(self, data: st.DataObject, duration: float) -> None:
        batch = data.draw(st.sampled_from(self.released))
        self.batcher.record(batch, duration)

    # -- invariants -------------------------------------------------------

    @invariant()
    def pending_tasks_match_the_model(self) -> None:
        pending = {t.id for m in self.open.values() for t in m.tasks}
        assert len(self.batcher) == len(pending)
        assert all(task_id in self.batcher for task_id in pending)
        # No task lost or duplicated: each one added is released, pending or removed, once.
        assert pending | self.released_ids | self.removed == set(self.added_at)
        assert not pending & self.released_ids
        assert not self.removed & self.released_ids

    @invariant()
    def next_wakeup_is_the_earliest_due_time(self) -> None:
        dues = [self.due(m) for m in self.open.values()]
        finite = [d for d in dues if d != math.inf]
        assert self.batcher.next_wakeup() == (min(finite) if finite else None)

    @invariant()
    def targets_stay_within_min_and_max(self) -> None:
        for key in ("research", "review", None):
            assert self.min_size <= self.batcher.target_size(key) <= self.max_size

    @invariant()
    def stats_agree(self) -> None:
        stats = self.batcher.stats()
        assert stats.formed == len(self.released)
        assert stats.pending == len(self.batcher)
        assert stats.open_batches == len(self.open)


class CarelessHostMachine(BatchingMachine):
    """The same model with a host that lets time run past ``next_wakeup()``."""

    disciplined = False


# Each run is short (a few dozen steps), so the machines get twice the
# profile's runs: enough to reach the rarer paths (a task that does not fit and
# must go at once) in every CI run, in a few seconds.
_machine_settings = settings(settings.default, max_examples=2 * settings.default.max_examples)
TestBatching = BatchingMachine.TestCase
TestBatching.settings = _machine_settings
TestBatchingCarelessHost = CarelessHostMachine.TestCase
TestBatchingCarelessHost.settings = _machine_settings
