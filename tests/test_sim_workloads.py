"""Workload generators and distributions: rates and shapes checked statistically, traces parsed.

Every check uses a fixed seed and a tolerance of several standard errors (or
the Kolmogorov-Smirnov critical value at the 0.1 % level), so it is
deterministic and fails only if a generator is wrong.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from taskdist import InvalidArgumentError, InvalidTypeError, Task
from taskdist.sim import (
    MIN_RATE,
    MMPP,
    Constant,
    Empirical,
    Exponential,
    LogNormal,
    Poisson,
    TaskType,
    Tenants,
    Trace,
    TraceError,
    TraceRecord,
    Uniform,
    Workload,
    Zipf,
)

N = 20_000


def ks_statistic(samples: Sequence[float], cdf: Callable[[float], float]) -> float:
    ordered = sorted(samples)
    n = len(ordered)
    return max(max((i + 1) / n - cdf(x), cdf(x) - i / n) for i, x in enumerate(ordered))


def ks_critical(n: int) -> float:
    return 1.95 / math.sqrt(n)  # alpha = 0.001


def normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def gaps(workload: Workload, n: int, seed: int) -> list[float]:
    times = [a.time for a in workload.generate(n, random.Random(seed))]
    return [b - a for a, b in zip([0.0, *times], times, strict=False)]


def test_poisson_gaps_are_exponential_at_the_rate() -> None:
    observed = gaps(Workload(Poisson(4.0), TaskType("t", Constant(1.0))), N, 1)
    assert ks_statistic(observed, lambda x: 1 - math.exp(-4.0 * x)) < ks_critical(N)
    assert sum(observed) / N == pytest.approx(0.25, rel=4 / math.sqrt(N))


def test_poisson_counts_per_window_have_variance_equal_to_mean() -> None:
    times = [
        a.time
        for a in Workload(Poisson(10.0), TaskType("t", Constant(1.0))).generate(N, random.Random(2))
    ]
    counts = Counter(int(t) for t in times)
    windows = [counts.get(i, 0) for i in range(int(times[-1]))]
    mean = sum(windows) / len(windows)
    variance = sum((c - mean) ** 2 for c in windows) / (len(windows) - 1)
    assert mean == pytest.approx(10.0, rel=0.05)
    assert variance / mean == pytest.approx(1.0, abs=0.15)


def test_mmpp_keeps_its_mean_rate_and_is_bursty() -> None:
    process = MMPP(rates=(2.0, 20.0), durations=(40.0, 10.0))
    assert process.mean_rate == pytest.approx((2 * 40 + 20 * 10) / 50)
    workload = Workload(process, TaskType("t", Constant(1.0)))
    times = [a.time for a in workload.generate(3 * N, random.Random(3))]
    assert len(times) / times[-1] == pytest.approx(process.mean_rate, rel=0.1)
    counts = Counter(int(t) for t in times)
    windows = [counts.get(i, 0) for i in range(int(times[-1]))]
    mean = sum(windows) / len(windows)
    variance = sum((c - mean) ** 2 for c in windows) / (len(windows) - 1)
    assert variance / mean > 5  # far more dispersed than Poisson's 1


def test_scaling_a_workload_scales_its_rate() -> None:
    workload = Workload(MMPP((1.0, 3.0), (1.0, 1.0)), TaskType("t", Constant(1.0)))
    assert workload.scaled(2.0).mean_rate == pytest.approx(2 * workload.mean_rate)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Poisson(1e-320), "Poisson.rate must be at least MIN_RATE"),
        (lambda: Poisson(MIN_RATE / 2), "Poisson.rate must be at least MIN_RATE"),
        (lambda: MMPP((1e-320,), (1.0,)), "MMPP's mean rate must be at least MIN_RATE"),
        (lambda: MMPP((1e-6, 0.0), (1.0, 9.0)), "MMPP's mean rate must be at least MIN_RATE"),
        (lambda: MMPP((1e10,), (1e300,)), "MMPP's mean rate (rates weighted by durations)"),
        # States that change far faster than arrivals come: a Poisson process, and a hang.
        (lambda: MMPP((1.0,), (1e-320,)), "times per arrival on average"),
        (lambda: MMPP((2e-6, 0.0), (1.0, 1.0)), "times per arrival on average"),
        (lambda: Workload(Poisson(2.0), TaskType("t", Constant(1.0))).scaled(1e-320), "factor"),
        (lambda: Workload(Poisson(2.0), TaskType("t", Constant(1.0))).scaled(1e308), "factor"),
    ],
)
def test_rates_too_low_for_finite_arrival_times_are_refused(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        build()


def test_arrivals_at_the_lowest_rate_have_finite_times() -> None:
    for process in (Poisson(MIN_RATE), MMPP((0.0, 2 * MIN_RATE), (1e6, 1e6))):
        times = [
            a.time
            for a in Workload(process, TaskType("t", Constant(1.0))).generate(
                1_000, random.Random(1)
            )
        ]
        assert all(math.isfinite(t) for t in times) and times[-1] > 0


@pytest.mark.parametrize(
    ("distribution", "cdf"),
    [
        (Exponential(2.0), lambda x: 1 - math.exp(-x / 2.0)),
        (Uniform(0.8, 15.0), lambda x: min(1.0, max(0.0, (x - 0.8) / 14.2))),
        (
            LogNormal(3.0, 0.5),
            lambda x: (
                normal_cdf((math.log(x) - LogNormal(3.0, 0.5).mu) / LogNormal(3.0, 0.5).sigma)
                if x > 0
                else 0.0
            ),
        ),
    ],
    ids=["exponential", "uniform", "lognormal"],
)
def test_service_time_distributions_have_their_shape_and_mean(
    distribution: Exponential | Uniform | LogNormal, cdf: Callable[[float], float]
) -> None:
    rng = random.Random(5)
    samples = [distribution.sample(rng) for _ in range(N)]
    assert ks_statistic(samples, cdf) < ks_critical(N)
    assert sum(samples) / N == pytest.approx(distribution.mean, rel=0.02)


def test_lognormal_has_the_coefficient_of_variation_asked_for() -> None:
    rng = random.Random(6)
    samples = [LogNormal(2.0, 0.5).sample(rng) for _ in range(4 * N)]
    mean = sum(samples) / len(samples)
    sd = math.sqrt(sum((x - mean) ** 2 for x in samples) / len(samples))
    assert sd / mean == pytest.approx(0.5, rel=0.05)


def test_empirical_draws_each_observation_equally_often() -> None:
    rng = random.Random(7)
    counts = Counter(Empirical([1.0, 2.0, 4.0]).sample(rng) for _ in range(30_000))
    for value in (1.0, 2.0, 4.0):
        assert counts[value] == pytest.approx(10_000, abs=4 * math.sqrt(10_000 * 2 / 3))
    assert Empirical([1.0, 2.0, 4.0]).mean == pytest.approx(7 / 3)


@pytest.mark.parametrize(
    "distribution",
    [
        Constant(2.0),
        Exponential(1.5),
        LogNormal(3.0, 0.5),
        Uniform(1.0, 4.0),
        Empirical([0.5, 7.0]),
    ],
)
def test_a_sampler_draws_what_sample_draws_from_the_same_stream(
    distribution: Constant | Exponential | LogNormal | Uniform | Empirical,
) -> None:
    draw = distribution.sampler(random.Random(3))
    rng = random.Random(3)
    assert [draw() for _ in range(200)] == [distribution.sample(rng) for _ in range(200)]


class Doubled:
    """A service-time distribution of the caller's own: twice an exponential's draw."""

    mean = 2.0

    def sample(self, rng: random.Random) -> float:
        return 2 * rng.expovariate(1.0)


def test_a_distribution_without_a_sampler_is_drawn_through_sample() -> None:
    def services(service: Exponential | Doubled) -> list[float]:
        workload = Workload(Poisson(1.0), TaskType("job", service))
        return [a.service for a in workload.generate(100, random.Random(4))]

    assert services(Doubled()) == [2 * s for s in services(Exponential(1.0))]


def test_the_mix_of_task_types_follows_their_shares() -> None:
    workload = Workload(
        Poisson(1.0),
        [TaskType("a", Constant(1.0), share=1.0), TaskType("b", Constant(2.0), share=3.0)],
    )
    counts = Counter(a.task.group for a in workload.generate(N, random.Random(8)))
    expected = N / 4
    assert counts["a"] == pytest.approx(expected, abs=4 * math.sqrt(N * 0.25 * 0.75))
    assert [round(rate, 6) for _, rate in workload.type_rates()] == [0.25, 0.75]


def test_tenants_are_drawn_by_share_and_plans_boost_priority() -> None:
    tenants = Tenants(
        ["free", "big"], shares=(1.0, 3.0), plans={"big": "enterprise"}, boost={"enterprise": 1}
    )
    workload = Workload(Poisson(1.0), TaskType("t", Constant(1.0), priority=1), tenants)
    arrivals = list(workload.generate(N, random.Random(9)))
    counts = Counter(a.task.tenant for a in arrivals)
    assert counts["big"] == pytest.approx(0.75 * N, abs=4 * math.sqrt(N * 0.25 * 0.75))
    # Priority 1 is the most urgent a boost reaches by default.
    assert {a.task.priority for a in arrivals} == {1}
    assert tenants.priority("big", 3) == 2 and tenants.priority("free", 3) == 3


def test_zipf_keys_follow_the_power_law() -> None:
    rng = random.Random(10)
    zipf = Zipf(100, 1.0)
    counts = Counter(zipf.sample(rng) for _ in range(N))
    harmonic = sum(1 / k for k in range(1, 101))
    for rank in (0, 1, 9):
        p = 1 / (rank + 1) / harmonic
        assert counts[rank] == pytest.approx(N * p, abs=4 * math.sqrt(N * p * (1 - p)))


def test_deadlines_costs_and_first_attempt_outcomes_come_from_the_type() -> None:
    kind = TaskType("t", Exponential(2.0), deadline=30.0, failure=0.25, requires={"gpu"})
    arrivals = list(Workload(Poisson(1.0), kind).generate(N, random.Random(11)))
    assert all(a.task.deadline == pytest.approx(a.time + 30.0) for a in arrivals)
    assert all(a.task.cost == 2.0 and a.task.requires == {"gpu"} for a in arrivals)
    fails = sum(a.fails for a in arrivals)
    assert fails == pytest.approx(0.25 * N, abs=4 * math.sqrt(N * 0.25 * 0.75))


def test_the_same_seed_gives_the_same_arrivals() -> None:
    workload = Workload(Poisson(3.0), TaskType("t", LogNormal(1.0)))
    first = [(a.time, a.service) for a in workload.generate(100, random.Random(12))]
    again = [(a.time, a.service) for a in workload.generate(100, random.Random(12))]
    other = [(a.time, a.service) for a in workload.generate(100, random.Random(13))]
    assert first == again and first != other


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Exponential(0.0), InvalidArgumentError),
        (lambda: LogNormal(1.0, math.nan), InvalidArgumentError),
        (lambda: Uniform(2.0, 1.0), InvalidArgumentError),
        (lambda: Empirical([]), InvalidArgumentError),
        (lambda: Poisson(-1.0), InvalidArgumentError),
        (lambda: MMPP((1.0,), (1.0, 2.0)), InvalidArgumentError),
        (lambda: MMPP((0.0, 0.0), (1.0, 2.0)), InvalidArgumentError),
        (lambda: TaskType("t", "fast"), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: TaskType("t", Constant(1.0), failure=1.5), InvalidArgumentError),
        (lambda: Tenants([]), InvalidArgumentError),
        (lambda: Tenants(["a", "a"]), InvalidArgumentError),
        (lambda: Tenants(["a"], shares=(1.0, 2.0)), InvalidArgumentError),
        (lambda: Workload(Poisson(1.0), []), InvalidArgumentError),
        (lambda: Zipf(0), InvalidArgumentError),
        (lambda: Empirical(5), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: Empirical(None), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: Empirical({1.0: 2}), InvalidTypeError),
        (lambda: Tenants(["a"], 5), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: Tenants(["a"], plans=5), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: Tenants(["a"], plans={"a": 1}), InvalidTypeError),  # type: ignore[dict-item]
        (
            lambda: Tenants(["a"], plans={"a": "p"}, boost={"p": "x"}),  # type: ignore[dict-item]
            InvalidTypeError,
        ),
        (lambda: Tenants(["a"], most_urgent="x"), InvalidTypeError),  # type: ignore[arg-type]
    ],
)
def test_bad_workload_values_are_refused(build: Callable[[], object], error: type) -> None:
    with pytest.raises(error):
        build()


# -- traces --------------------------------------------------------------------------


def test_a_csv_trace_is_replayed_as_written(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(
        "time,tenant,priority,deadline,cost,group,requires,service\n"
        "0.5,acme,1,10,2.0,chat,conversation,1.5\n"
        "1.0,beta,3,,1.0,,research;gpu,\n"
    )
    trace = Trace.load(path)
    first, second = trace.generate(10, random.Random(0))
    assert (first.time, first.service) == (0.5, 1.5)
    assert first.task.tenant == "acme" and first.task.priority == 1
    assert first.task.deadline == 10.0 and first.task.group == "chat"
    assert second.task.requires == {"research", "gpu"} and second.service == 1.0
    assert second.task.deadline is None


def test_a_json_lines_trace_is_replayed_as_written(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_text(
        '{"time": 0, "tenant": "a", "cost": 3}\n\n{"time": 2.5, "requires": ["x", "y"]}\n'
    )
    trace = Trace.load(path)
    assert len(trace) == 2 and trace.mean_rate == pytest.approx(2 / 2.5)
    assert [a.service for a in trace.generate(5, random.Random(0))] == [3.0, 1.0]


@pytest.mark.parametrize(
    ("text", "suffix", "line", "field"),
    [
        ("time,priority\n0,1\n1,high\n", ".csv", 3, "priority"),
        ("time,priority\n0,1.5\n", ".csv", 2, "priority"),
        ("time,tenant\n1,a\n0.5,b\n", ".csv", 3, "time"),
        ("time,deadline\n5,4\n", ".csv", 2, "deadline"),
        ("time,cost\n0,-1\n", ".csv", 2, "cost"),
        ("time,colour\n0,red\n", ".csv", 1, "colour"),
        ("time,cost,time\n0,1,2\n", ".csv", 1, "time"),
        ("time,cost\n0,1\n1,1e19\n", ".csv", 3, "cost"),
        ("time,priority\n0,1\n1,1e300\n", ".csv", 3, "priority"),
        ("time,priority\n0,9007199254740993\n", ".csv", 2, "priority"),
        ("time,service\n0,2e12\n", ".csv", 2, "service"),
        ("time,cost\n0,2e12\n", ".csv", 2, "cost"),
        ("time\n0\n1e300\n", ".csv", 3, "time"),
        pytest.param("time,group\n0,a\n1," + "x" * 200_000 + "\n", ".csv", 3, None, id="long"),
        ('{"time": 0}\n{"time": 1, "requires": 5}\n', ".jsonl", 2, "requires"),
        ('{"time": 0, "requires": {"x": 1}}\n', ".jsonl", 1, "requires"),
        ("tenant\na\n", ".csv", 2, "time"),
        ("time\n", ".csv", 1, None),
        ('{"time": 0}\n{"time": nope}\n', ".jsonl", 2, None),
        ('{"time": 0}\n[1, 2]\n', ".jsonl", 2, None),
        ('{"time": 0, "requires": [1]}\n', ".jsonl", 1, "requires"),
        ('{"time": 0}\n{"time": 1, "tenant": {"id": 7}}\n', ".jsonl", 2, "tenant"),
        ('{"time": 0, "tenant": ["a", "b"]}\n', ".jsonl", 1, "tenant"),
        ('{"time": 0, "group": {}}\n', ".jsonl", 1, "group"),
        ('{"time": 0, "group": [1]}\n', ".jsonl", 1, "group"),
        ('{"time": 0, "tenant": true}\n', ".jsonl", 1, "tenant"),
        ('{"time": 0, "tenant": 1.5}\n', ".jsonl", 1, "tenant"),
        ('{"time": 0, "tenant": "a", "tenant": "b"}\n', ".jsonl", 1, "tenant"),
        ('{"time": 0}\n{"time": 1, "cost": 2, "time": 0.5}\n', ".jsonl", 2, "time"),
    ],
)
def test_a_malformed_trace_names_its_line_and_field(
    tmp_path: Path, text: str, suffix: str, line: int, field: str | None
) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(TraceError) as caught:
        Trace.load(path)
    assert caught.value.line == line and caught.value.field == field
    assert f"bad{suffix} line {line}" in str(caught.value)
    if field:
        assert repr(field) in str(caught.value)


def test_a_trace_that_is_not_utf8_is_named_with_its_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"time,tenant\n0,a\n1,caf\xe9\n")
    with pytest.raises(TraceError) as caught:
        Trace.load(path)
    assert (caught.value.line, caught.value.field) == (3, "tenant")
    assert "not UTF-8" in str(caught.value)


@pytest.mark.parametrize(
    "line", ["[" * 100_000, '{"time": ' + "1" * 5_000 + "}"], ids=["deep", "long int"]
)
def test_json_the_parser_refuses_is_a_trace_error(line: str) -> None:
    with pytest.raises(TraceError) as caught:
        Trace.from_json_lines('{"time": 0}\n' + line + "\n")
    assert caught.value.line == 2


def test_integer_priorities_are_read_exactly() -> None:
    trace = Trace.from_csv("time,priority\n0,9007199254740992\n1,-3\n2,2.0\n")
    assert [r.task.priority for r in trace.records] == [2**53, -3, 2]
    assert Trace.from_json_lines('{"time": 0, "priority": 4.0}').records[0].task.priority == 4


def test_json_identifiers_may_be_strings_or_integers() -> None:
    trace = Trace.from_json_lines(
        '{"time": 0, "tenant": "acme", "group": 7}\n{"time": 1, "tenant": 12, "group": null}\n'
    )
    assert [(r.task.tenant, r.task.group) for r in trace.records] == [("acme", "7"), ("12", None)]


def test_json_strings_may_hold_any_line_separator_and_lines_may_end_in_crlf() -> None:
    trace = Trace.from_json_lines('{"time": 0, "tenant": "a\u2028b\x85c"}\r\n{"time": 1}\r\n')
    assert [r.task.tenant for r in trace.records] == ["a\u2028b\x85c", None]


def test_a_byte_order_mark_is_not_part_of_the_first_field(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("time,cost\n0,2\n".encode("utf-8-sig"))
    assert Trace.load(path).records[0].task.cost == 2.0
    assert len(Trace.from_csv("\ufefftime\n0\n")) == 1


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Trace(()), InvalidArgumentError),
        (lambda: Trace(5), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: Trace(["x"]), InvalidTypeError),  # type: ignore[list-item]
        (
            lambda: Trace([TraceRecord(1.0, Task(0), 1.0), TraceRecord(0.5, Task(1), 1.0)]),
            InvalidArgumentError,
        ),
        (
            lambda: Trace([TraceRecord(0.0, Task(0), 1.0), TraceRecord(1.0, Task(0), 1.0)]),
            InvalidArgumentError,
        ),
        (lambda: Trace([TraceRecord(0.0, Task(0), 1.0)], source=""), InvalidTypeError),
        (lambda: TraceRecord(0.0, "task", 1.0), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: TraceRecord(0.0, Task(0), 2e12), InvalidArgumentError),
        (lambda: TraceRecord(math.nan, Task(0), 1.0), InvalidArgumentError),
        (lambda: Trace.from_csv(5), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: Trace.from_json_lines(b"{}"), InvalidTypeError),  # type: ignore[arg-type]
        (lambda: Trace.load(5), InvalidTypeError),  # type: ignore[arg-type]
    ],
)
def test_bad_traces_built_in_code_are_refused(build: Callable[[], object], error: type) -> None:
    with pytest.raises(error):
        build()
