"""ResourcePool: a bulkhead that never lends more than it has, counts exactly, and refuses
over-release."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from taskdist import (
    CapacityError,
    InvalidArgumentError,
    InvalidTypeError,
    OverReleaseError,
    ResourcePool,
)


def snapshot(pool: ResourcePool) -> tuple[float, float, object]:
    return pool.in_use, pool.available, pool.stats()


def test_seed_database_pool_lends_at_most_twenty_connections() -> None:
    db = ResourcePool("db", size=20)  # seed-004: PostgreSQL pool of 20
    granted = sum(db.try_acquire() for _ in range(25))
    assert granted == 20
    assert (db.in_use, db.available) == (20.0, 0.0)
    db.release(5)
    assert db.try_acquire(5)
    assert not db.try_acquire()


def test_a_refused_acquire_takes_nothing() -> None:
    db = ResourcePool("db", size=10)
    db.try_acquire(7)
    before = snapshot(db)
    assert not db.try_acquire(4)
    assert snapshot(db)[:2] == before[:2]
    assert db.try_acquire(3)


def test_over_release_raises_and_changes_nothing() -> None:
    db = ResourcePool("db", size=10)
    db.try_acquire(3)
    before = snapshot(db)
    with pytest.raises(OverReleaseError, match="only 3 are in use"):
        db.release(4)
    assert snapshot(db) == before
    db.release(3)
    with pytest.raises(OverReleaseError):
        db.release()
    assert db.in_use == 0.0


def test_fractional_units_are_counted_exactly() -> None:
    memory = ResourcePool("memory_gb", size=2.0)  # seed-004: 2 GB
    for amount in (0.1, 0.2, 0.7, 1.0):
        assert memory.try_acquire(amount)
    # Given back in another order: float sums would leave a ghost 1e-17 in use.
    for amount in (0.7, 0.1, 1.0, 0.2):
        memory.release(amount)
    assert memory.in_use == 0.0
    assert memory.try_acquire(2.0)


@given(st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=1, max_size=30), st.randoms())
def test_any_amounts_returned_in_any_order_leave_the_pool_exactly_empty(
    amounts: list[float], rng: object
) -> None:
    pool = ResourcePool("p", size=30.0)
    for amount in amounts:
        assert pool.try_acquire(amount)
    shuffled = list(amounts)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    for amount in shuffled:
        pool.release(amount)
    assert pool.in_use == 0.0
    assert pool.available == 30.0


def test_hold_gives_units_back_however_the_block_ends() -> None:
    db = ResourcePool("db", size=2)
    with db.hold(2) as held:
        assert held is db
        assert db.available == 0.0
    assert db.in_use == 0.0
    seen_inside = []

    def failing_query() -> None:
        with db.hold():
            seen_inside.append(db.in_use)
            raise RuntimeError("the query failed")

    with pytest.raises(RuntimeError):
        failing_query()
    assert seen_inside == [1.0]
    assert db.in_use == 0.0


def test_hold_on_a_full_pool_raises_capacity_error_and_takes_nothing() -> None:
    db = ResourcePool("db", size=2)
    db.try_acquire(2)
    with pytest.raises(CapacityError, match="0 of 2 units free"), db.hold():
        pytest.fail("the block must not run")  # pragma: no cover
    assert db.in_use == 2.0


def test_stats_keep_the_peak_and_the_books() -> None:
    db = ResourcePool("db", size=5)
    db.try_acquire(3)
    db.try_acquire(2)
    db.try_acquire(1)  # refused
    db.release(4)
    stats = db.stats()
    assert (stats.name, stats.size, stats.in_use, stats.available) == ("db", 5.0, 1.0, 4.0)
    assert (stats.peak, stats.acquired, stats.refused, stats.released) == (5.0, 2, 1, 1)
    assert repr(db) == "ResourcePool('db', size=5, in_use=1)"


@pytest.mark.parametrize(
    ("name", "size", "error"),
    [
        ("", 5, InvalidArgumentError),  # empty: a value, not a type
        (None, 5, InvalidTypeError),
        ("db", 0, InvalidArgumentError),
        ("db", -1, InvalidArgumentError),
        ("db", math.nan, InvalidArgumentError),
        ("db", math.inf, InvalidArgumentError),
        ("db", "20", InvalidTypeError),
        ("db", True, InvalidTypeError),
    ],
)
def test_bad_pools_are_refused(name: object, size: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        ResourcePool(name, size)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "error"),
    [
        (0, InvalidArgumentError),
        (-1, InvalidArgumentError),
        (math.nan, InvalidArgumentError),
        (math.inf, InvalidArgumentError),
        (11, InvalidArgumentError),  # more than the pool: could never be met
        (10.5, InvalidArgumentError),
        (True, InvalidTypeError),
        ("1", InvalidTypeError),
    ],
)
@pytest.mark.parametrize("method", ["try_acquire", "release"])
def test_bad_amounts_are_refused_and_change_nothing(
    n: object, error: type[Exception], method: str
) -> None:
    db = ResourcePool("db", size=10)
    db.try_acquire(4)
    before = snapshot(db)
    if method == "release" and isinstance(n, (int, float)) and db.size < n < math.inf:
        error = OverReleaseError  # giving back more than the pool holds is an over-release
    with pytest.raises(error):
        getattr(db, method)(n)
    assert snapshot(db) == before


def test_releasing_more_than_the_pool_size_is_an_over_release() -> None:
    # It raised InvalidArgumentError "n must be <= the pool size or it could never
    # be met", an acquire's message, for what is a release of more than is in use.
    db = ResourcePool("db", size=2)
    db.try_acquire(2)
    before = snapshot(db)
    with pytest.raises(OverReleaseError, match="only 2 are in use"):
        db.release(3)
    assert snapshot(db) == before


amounts = st.sampled_from([1, 2, 3, 0.5, 0.25, 1.5, 0.1, 0.3])


class ResourcePoolMachine(RuleBasedStateMachine):
    """Any sequence of acquires and releases against an exact model of the units."""

    @initialize(size=st.sampled_from([1, 3, 10, 2.5]))
    def setup(self, size: float) -> None:
        self.pool = ResourcePool("p", size=size)
        self.size = Fraction(size)
        self.in_use = Fraction(0)
        self.peak = Fraction(0)
        self.counts = {"acquired": 0, "refused": 0, "released": 0}

    @rule(n=amounts)
    def acquire(self, n: float) -> None:
        if Fraction(n) > self.size:
            with pytest.raises(InvalidArgumentError):
                self.pool.try_acquire(n)
            return
        fits = self.in_use + Fraction(n) <= self.size
        assert self.pool.try_acquire(n) is fits
        if fits:
            self.in_use += Fraction(n)
            self.peak = max(self.peak, self.in_use)
            self.counts["acquired"] += 1
        else:
            self.counts["refused"] += 1

    @rule(n=amounts)
    def release(self, n: float) -> None:
        if Fraction(n) > self.in_use:
            with pytest.raises(OverReleaseError):
                self.pool.release(n)
        else:
            self.pool.release(n)
            self.in_use -= Fraction(n)
            self.counts["released"] += 1

    @invariant()
    def matches_the_model(self) -> None:
        assert self.pool.in_use == float(self.in_use)
        assert self.pool.available == float(self.size - self.in_use)
        assert 0 <= self.pool.in_use <= self.pool.size
        stats = self.pool.stats()
        assert stats.peak == float(self.peak)
        assert (stats.acquired, stats.refused, stats.released) == tuple(self.counts.values())


TestResourcePoolMachine = ResourcePoolMachine.TestCase
