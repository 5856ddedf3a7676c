"""metrics: percentiles, recent-sample windows, load variance and Jain's index."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskdist import (
    InvalidArgumentError,
    RecentSamples,
    coefficient_of_variation,
    jain_index,
    percentile,
)

# Loads and waits: non-negative, and not so tiny that squares underflow.
amounts = st.integers(min_value=0, max_value=10**9).map(lambda n: n / 1000)
values = st.lists(amounts, min_size=1, max_size=200)


@given(data=values)
def test_percentile_matches_the_inclusive_quantile_definition(data: list[float]) -> None:
    ordered = sorted(data)
    assert percentile(ordered, 0) == ordered[0]
    assert percentile(ordered, 100) == ordered[-1]
    if len(ordered) >= 2:
        quartiles = statistics.quantiles(ordered, n=4, method="inclusive")
        assert percentile(ordered, 50) == pytest.approx(quartiles[1], rel=1e-9, abs=1e-9)
        assert percentile(ordered, 75) == pytest.approx(quartiles[2], rel=1e-9, abs=1e-9)


def test_percentile_of_nothing_is_nan_and_q_is_checked() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(InvalidArgumentError):
        percentile([1.0], 101)
    with pytest.raises(InvalidArgumentError):
        percentile([1.0], float("nan"))


def test_recent_samples_keep_only_the_window() -> None:
    samples = RecentSamples(window=100)
    for x in range(1000):
        samples.record(float(x))
    assert len(samples) == 100 and samples.total == 1000
    summary = samples.percentiles()
    assert summary.count == 100 and summary.max == 999.0
    assert summary.p50 == pytest.approx(949.5)
    assert summary.mean == pytest.approx(949.5)
    assert math.isnan(RecentSamples().percentiles().p95)
    with pytest.raises(InvalidArgumentError):
        RecentSamples(window=0)


def test_summaries_of_nothing_are_equal() -> None:
    empty = RecentSamples().percentiles()
    assert empty == RecentSamples(window=5).percentiles() and empty == empty
    assert hash(empty) == hash(RecentSamples().percentiles())
    samples = RecentSamples()
    samples.record(1.0)
    assert samples.percentiles() != empty


@given(data=values)
def test_coefficient_of_variation_is_stdev_over_mean(data: list[float]) -> None:
    mean = statistics.fmean(data)
    expected = statistics.pstdev(data) / mean if mean else 0.0
    assert coefficient_of_variation(data) == pytest.approx(expected, rel=1e-6, abs=1e-9)


@given(data=st.lists(amounts, min_size=1, max_size=50))
def test_jain_index_lies_between_one_over_n_and_one(data: list[float]) -> None:
    index = jain_index(data)
    assert 1 / len(data) - 1e-9 <= index <= 1 + 1e-9
    if len(set(data)) == 1:
        assert index == pytest.approx(1.0)


def test_jain_index_extremes() -> None:
    assert jain_index([5.0] * 4) == 1.0
    assert jain_index([1.0, 0.0, 0.0, 0.0]) == 0.25
    assert jain_index([]) == 1.0


@given(data=st.lists(amounts, max_size=30), window=st.integers(min_value=1, max_value=8))
def test_retract_undoes_the_latest_record_exactly(data: list[float], window: int) -> None:
    samples = RecentSamples(window=window)
    samples.extend(data)
    before = (len(samples), samples.percentiles())
    samples.record(12345.0)
    samples.retract()
    after = (len(samples), samples.percentiles())
    assert repr(after) == repr(before)  # NaN-safe: an empty window stays empty


def test_appender_records_at_c_speed_without_counting() -> None:
    samples = RecentSamples(window=2)
    append = samples.appender()
    for x in (1.0, 2.0, 3.0):
        append(x)
    assert len(samples) == 2 and samples.percentiles().p50 == 2.5
    assert samples.total == 0  # its owner keeps the count
