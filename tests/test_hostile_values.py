"""Hostile and extreme values against the vocabulary: Task, Worker, the clocks, the statistics.

Each row is one call a careless or hostile caller could make, and the
specific error it must raise. A wrong type is an ``InvalidTypeError`` (a
``TypeError``); a value of the right type outside its range, an empty one
included, is an ``InvalidArgumentError`` (a ``ValueError``). For objects with
state (``ManualClock``, ``RecentSamples``) the refused call is made on one of
two twins built alike, and the twins must answer alike afterwards
(``tests/hostile.py``). Extreme values inside the documented ranges are
accepted and give finite answers.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hostile import assert_refused

from taskdist import (
    ClockError,
    DeadlineError,
    InvalidArgumentError,
    InvalidTypeError,
    ManualClock,
    MonotonicClock,
    RecentSamples,
    Task,
    TaskdistError,
    Worker,
    coefficient_of_variation,
    jain_index,
    percentile,
)
from taskdist._validate import check_key

NAN = math.nan
INF = math.inf
BIG = 10**400  # an int beyond the float range
HUGE = 10**5000  # an int too long for Python to print in decimal
FLOAT_MAX = sys.float_info.max
ARG, TYPE = InvalidArgumentError, InvalidTypeError


class BrokenHash:
    """Claims to be hashable, then raises something other than TypeError."""

    def __hash__(self) -> int:
        raise ValueError("no hash today")


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr today")


def rows(table: list[tuple[Any, ...]]) -> Any:
    """Parametrise over a table whose first column is the row's name."""
    return [pytest.param(*row[1:], id=row[0]) for row in table]


# -- Task ---------------------------------------------------------------------------

TASK_REFUSED: list[tuple[str, dict[str, Any], type[TaskdistError]]] = [
    ("id nan", {"id": NAN}, ARG),
    ("id Decimal nan", {"id": Decimal("NaN")}, ARG),
    ("id tuple holding nan", {"id": ("job", NAN)}, ARG),
    ("id nested tuple holding nan", {"id": ("job", ("part", NAN))}, ARG),
    ("id frozenset holding nan", {"id": frozenset({NAN})}, ARG),
    ("id empty str", {"id": ""}, ARG),
    ("id empty bytes", {"id": b""}, ARG),
    ("id None", {"id": None}, ARG),
    ("id list", {"id": ["t"]}, TYPE),
    ("id signalling Decimal nan", {"id": Decimal("sNaN")}, TYPE),
    ("id whose hash raises", {"id": BrokenHash()}, TYPE),
    ("tenant nan", {"tenant": NAN}, ARG),
    ("tenant Decimal nan", {"tenant": Decimal("NaN")}, ARG),
    ("tenant empty", {"tenant": ""}, ARG),
    ("tenant dict", {"tenant": {}}, TYPE),
    ("key nan", {"key": NAN}, ARG),
    ("key tuple holding nan", {"key": ("user", NAN)}, ARG),
    ("key empty bytes", {"key": b""}, ARG),
    ("group nan", {"group": NAN}, ARG),
    ("group empty", {"group": ""}, ARG),
    ("group set", {"group": {"g"}}, TYPE),
    ("priority above 2**53", {"priority": 2**53 + 1}, ARG),
    ("priority below -2**53", {"priority": -(2**53) - 1}, ARG),
    ("priority 10**400", {"priority": BIG}, ARG),
    ("priority 10**5000", {"priority": HUGE}, ARG),
    ("priority float", {"priority": 1.0}, TYPE),
    ("priority str", {"priority": "1"}, TYPE),
    ("priority None", {"priority": None}, TYPE),
    ("priority bool", {"priority": False}, TYPE),
    ("deadline nan", {"deadline": NAN}, DeadlineError),
    ("deadline -inf", {"deadline": -INF}, DeadlineError),
    ("deadline 10**400", {"deadline": BIG}, DeadlineError),
    ("deadline str", {"deadline": "12"}, TYPE),
    ("cost above 1e18", {"cost": 1.0000001e18}, ARG),
    ("cost 10**400", {"cost": BIG}, ARG),
    ("cost tiny negative", {"cost": -1e-300}, ARG),
    ("cost inf", {"cost": INF}, ARG),
    ("cost Decimal", {"cost": Decimal("1")}, TYPE),
    ("cost None", {"cost": None}, TYPE),
    ("cost whose repr raises", {"cost": BrokenRepr()}, TYPE),
    ("ttl zero", {"ttl": 0.0}, ARG),
    ("ttl -inf", {"ttl": -INF}, ARG),
    ("ttl above 1e18", {"ttl": 1e300}, ARG),
    ("ttl nan", {"ttl": NAN}, ARG),
    ("ttl str", {"ttl": "60"}, TYPE),
    ("resources amount above 1e18", {"resources": {"slots": 1e19}}, ARG),
    ("resources amount negative", {"resources": {"slots": -0.5}}, ARG),
    ("resources amount inf", {"resources": {"slots": INF}}, ARG),
    ("resources amount 10**400", {"resources": {"slots": BIG}}, ARG),
    ("resources empty name", {"resources": {"": 1}}, ARG),
    ("resources name None", {"resources": {None: 1}}, TYPE),
    ("resources amount str", {"resources": {"slots": "1"}}, TYPE),
    ("resources a str", {"resources": "slots"}, TYPE),
    ("resources pairs", {"resources": [("slots", 1)]}, TYPE),
    ("requires empty name", {"requires": {""}}, ARG),
    ("requires None name", {"requires": {None}}, TYPE),
    ("requires a lone str", {"requires": "gpu"}, TYPE),
    ("requires an int", {"requires": 3}, TYPE),
    ("max_attempts zero", {"max_attempts": 0}, ARG),
    ("max_attempts negative", {"max_attempts": -1}, ARG),
    ("max_attempts float", {"max_attempts": 1.5}, TYPE),
    ("max_attempts bool", {"max_attempts": True}, TYPE),
    ("zone empty", {"zone": ""}, ARG),
    ("zone int", {"zone": 5}, TYPE),
    ("zone bytes", {"zone": b"eu"}, TYPE),
]


@pytest.mark.parametrize(("fields", "error"), rows(TASK_REFUSED))
def test_task_refuses(fields: dict[str, Any], error: type[TaskdistError]) -> None:
    field = next(iter(fields))
    with pytest.raises(error, match=rf"Task\.{field}") as caught:
        Task(**{"id": "t"} | fields)
    assert len(str(caught.value)) < 300  # even for 10**5000 the message stays readable


TASK_ACCEPTED: list[tuple[str, dict[str, Any], str, Any]] = [
    ("cost 1e16", {"cost": 1e16}, "cost", 1e16),
    ("cost at the bound", {"cost": 1e18}, "cost", 1e18),
    ("cost int at the bound", {"cost": 10**18}, "cost", 1e18),
    ("cost zero", {"cost": 0}, "cost", 0.0),
    ("priority 2**53", {"priority": 2**53}, "priority", 2**53),
    ("priority -2**53", {"priority": -(2**53)}, "priority", -(2**53)),
    ("deadline 1e308", {"deadline": 1e308}, "deadline", 1e308),
    ("deadline largest float", {"deadline": FLOAT_MAX}, "deadline", FLOAT_MAX),
    ("deadline negative", {"deadline": -1e308}, "deadline", -1e308),
    ("ttl smallest float", {"ttl": 5e-324}, "ttl", 5e-324),
    ("ttl at the bound", {"ttl": 1e18}, "ttl", 1e18),
    ("resources at the bound", {"resources": {"gpu": 1e18}}, "resources", {"gpu": 1e18}),
    ("max_attempts 10**100", {"max_attempts": 10**100}, "max_attempts", 10**100),
    ("id Decimal", {"id": Decimal("1.5")}, "id", Decimal("1.5")),
    ("id tuple", {"id": ("job", 7)}, "id", ("job", 7)),
    ("tenant zero", {"tenant": 0}, "tenant", 0),
]


@pytest.mark.parametrize(("fields", "field", "value"), rows(TASK_ACCEPTED))
def test_task_accepts_extreme_but_valid(fields: dict[str, Any], field: str, value: Any) -> None:
    task = Task(**{"id": "t"} | fields)
    stored = getattr(task, field)
    assert (dict(stored) if field == "resources" else stored) == value


def test_nan_tenants_can_no_longer_slip_past_a_per_tenant_limit() -> None:
    """Five NaN tenants would be five strangers to a dict: none is ever built."""
    for _ in range(5):
        with pytest.raises(InvalidArgumentError, match="equal to itself"):
            Task("t", tenant=float("nan"))


# -- Worker -------------------------------------------------------------------------

WORKER_REFUSED: list[tuple[str, dict[str, Any], type[TaskdistError]]] = [
    ("id nan", {"id": NAN}, ARG),
    ("id Decimal nan", {"id": Decimal("NaN")}, ARG),
    ("id empty", {"id": ""}, ARG),
    ("id None", {"id": None}, ARG),
    ("id dict", {"id": {}}, TYPE),
    ("capacity empty mapping", {"capacity": {}}, ARG),
    ("capacity negative", {"capacity": -1}, ARG),
    ("capacity above 1e18", {"capacity": 1e19}, ARG),
    ("capacity nan", {"capacity": NAN}, ARG),
    ("capacity inf", {"capacity": INF}, ARG),
    ("capacity 10**400", {"capacity": BIG}, ARG),
    ("capacity str", {"capacity": "10"}, TYPE),
    ("capacity None", {"capacity": None}, TYPE),
    ("capacity empty resource name", {"capacity": {"": 1}}, ARG),
    ("capacity int resource name", {"capacity": {1: 1}}, TYPE),
    ("capacity resource above 1e18", {"capacity": {"gpu": 2e18}}, ARG),
    ("weight zero", {"weight": 0}, ARG),
    ("weight below 1e-18", {"weight": 1e-19}, ARG),
    ("weight above 1e18", {"weight": 1e19}, ARG),
    ("weight near the float limit", {"weight": 1e308}, ARG),
    ("weight negative", {"weight": -1}, ARG),
    ("weight nan", {"weight": NAN}, ARG),
    ("weight str", {"weight": "1"}, TYPE),
    ("weight bool", {"weight": True}, TYPE),
    ("cost negative", {"cost": -0.01}, ARG),
    ("cost above 1e18", {"cost": 1e19}, ARG),
    ("cost nan", {"cost": NAN}, ARG),
    ("cost str", {"cost": "0"}, TYPE),
    ("zone empty", {"zone": ""}, ARG),
    ("zone int", {"zone": 3}, TYPE),
    ("skills a lone str", {"skills": "gpu"}, TYPE),
    ("skills empty name", {"skills": {""}}, ARG),
    ("skills int name", {"skills": {3}}, TYPE),
]


@pytest.mark.parametrize(("fields", "error"), rows(WORKER_REFUSED))
def test_worker_refuses(fields: dict[str, Any], error: type[TaskdistError]) -> None:
    field = next(iter(fields))
    with pytest.raises(error, match=rf"Worker\.{field}"):
        Worker(**{"id": "w"} | fields)


@pytest.mark.parametrize(
    ("fields", "field", "value"),
    [
        pytest.param({"weight": 1e-9}, "weight", 1e-9, id="weight at the lower bound"),
        pytest.param({"weight": 1e9}, "weight", 1e9, id="weight at the upper bound"),
        pytest.param({"capacity": 1e15}, "slots", 1e15, id="capacity at the bound"),
        pytest.param({"capacity": 0}, "slots", 0.0, id="capacity zero"),
        pytest.param({"cost": 1e18}, "cost", 1e18, id="cost at the bound"),
    ],
)
def test_worker_accepts_extreme_but_valid(fields: dict[str, Any], field: str, value: Any) -> None:
    assert getattr(Worker("w", **fields), field) == value


# -- ManualClock and MonotonicClock -------------------------------------------------

CLOCK_BUILD_REFUSED: list[tuple[str, object, type[TaskdistError]]] = [
    ("start str", "0", TYPE),
    ("start None", None, TYPE),
    ("start bool", True, TYPE),
    ("start Decimal", Decimal("0"), TYPE),
    ("start nan", NAN, ClockError),
    ("start inf", INF, ClockError),
    ("start -inf", -INF, ClockError),
    ("start 10**400", BIG, ClockError),
    ("start 10**5000", HUGE, ClockError),
]


@pytest.mark.parametrize(("start", "error"), rows(CLOCK_BUILD_REFUSED))
def test_manual_clock_refuses_to_start_at(start: object, error: type[TaskdistError]) -> None:
    with pytest.raises(error, match="start"):
        ManualClock(start)  # type: ignore[arg-type]


CLOCK_CALL_REFUSED: list[tuple[str, float, Callable[[ManualClock], object], type[Exception]]] = [
    ("advance past the largest float", 1e308, lambda c: c.advance(1e308), ClockError),
    ("advance the largest float by itself", FLOAT_MAX, lambda c: c.advance(FLOAT_MAX), ClockError),
    ("advance a tiny negative step", 10.0, lambda c: c.advance(-1e-300), ClockError),
    ("advance nan", 10.0, lambda c: c.advance(NAN), ClockError),
    ("advance inf", 10.0, lambda c: c.advance(INF), ClockError),
    ("advance 10**400", 10.0, lambda c: c.advance(BIG), ClockError),
    ("advance str", 10.0, lambda c: c.advance("1"), TYPE),
    ("advance None", 10.0, lambda c: c.advance(None), TYPE),
    ("advance bool", 10.0, lambda c: c.advance(True), TYPE),
    ("set just before now", 10.0, lambda c: c.set(9.999999), ClockError),
    ("set nan", 10.0, lambda c: c.set(NAN), ClockError),
    ("set -inf", 10.0, lambda c: c.set(-INF), ClockError),
    ("set inf", 10.0, lambda c: c.set(INF), ClockError),
    ("set 10**400", 10.0, lambda c: c.set(BIG), ClockError),
    ("set str", 10.0, lambda c: c.set("20"), TYPE),
    ("set Decimal", 10.0, lambda c: c.set(Decimal("20")), TYPE),
]


@pytest.mark.parametrize(("start", "call", "error"), rows(CLOCK_CALL_REFUSED))
def test_manual_clock_refuses_and_stays_where_it_was(
    start: float, call: Callable[[ManualClock], object], error: type[Exception]
) -> None:
    assert_refused(lambda: ManualClock(start), call, error, lambda clock: clock.now())


def test_manual_clock_takes_extreme_but_finite_times() -> None:
    clock = ManualClock(-1e308)
    assert clock.set(1e308) == 1e308
    assert clock.advance(1e291) == 1e308  # lost to rounding, and finite
    assert clock.set(FLOAT_MAX) == FLOAT_MAX
    assert clock.advance(0) == FLOAT_MAX


def time_travel() -> float:
    return 0.0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(lambda: MonotonicClock(0.0), TypeError, id="no start to give"),
        pytest.param(lambda: MonotonicClock().now(1), TypeError, id="now takes nothing"),
        pytest.param(
            lambda: setattr(MonotonicClock(), "now", time_travel),
            AttributeError,
            id="now cannot be replaced",
        ),
    ],
)
def test_monotonic_clock_has_nothing_to_set(call: Callable[[], object], error: type) -> None:
    with pytest.raises(error):
        call()


# -- RecentSamples ------------------------------------------------------------------

SAMPLES_BUILD_REFUSED: list[tuple[str, object, type[TaskdistError]]] = [
    ("window zero", 0, ARG),
    ("window negative", -1, ARG),
    ("window beyond any deque", 10**30, ARG),
    ("window float", 1.5, TYPE),
    ("window str", "10", TYPE),
    ("window bool", True, TYPE),
    ("window None", None, TYPE),
]


@pytest.mark.parametrize(("window", "error"), rows(SAMPLES_BUILD_REFUSED))
def test_recent_samples_refuses_a_window_of(window: object, error: type[TaskdistError]) -> None:
    with pytest.raises(error, match="window"):
        RecentSamples(window)  # type: ignore[arg-type]


def samples_seen(samples: RecentSamples) -> tuple[int, int, str]:
    # repr: the empty window's NaN percentiles compare equal as text, not as floats
    return len(samples), samples.total, repr(samples.percentiles())


SAMPLES_CALL_REFUSED: list[tuple[str, Callable[[RecentSamples], object], type[TaskdistError]]] = [
    ("record nan", lambda s: s.record(NAN), ARG),
    ("record inf", lambda s: s.record(INF), ARG),
    ("record -inf", lambda s: s.record(-INF), ARG),
    ("record 10**400", lambda s: s.record(BIG), ARG),
    ("record str", lambda s: s.record("1"), TYPE),
    ("record None", lambda s: s.record(None), TYPE),
    ("record bool", lambda s: s.record(True), TYPE),
    ("extend with a nan last", lambda s: s.extend([1.0, 2.0, NAN]), ARG),
    ("extend with a str inside", lambda s: s.extend([1.0, "x", 2.0]), TYPE),
    ("extend with None", lambda s: s.extend([None]), TYPE),
    ("extend an int", lambda s: s.extend(5), TYPE),
    ("extend a str", lambda s: s.extend("123"), TYPE),
    ("extend a generator with an inf", lambda s: s.extend(x for x in (1.0, INF)), ARG),
]


@pytest.mark.parametrize(("call", "error"), rows(SAMPLES_CALL_REFUSED))
def test_recent_samples_refuses_and_keeps_what_it_had(
    call: Callable[[RecentSamples], object], error: type[TaskdistError]
) -> None:
    def build() -> RecentSamples:
        samples = RecentSamples(window=3)
        samples.extend([5.0, 1.0])
        return samples

    assert_refused(build, call, error, samples_seen)


def test_recent_samples_summarise_extreme_values_without_overflow() -> None:
    samples = RecentSamples(window=4)
    samples.extend([1e308, 1e308])
    summary = samples.percentiles()
    assert summary.mean == 1e308 and summary.p99 == 1e308  # their sum is not a float
    samples.extend([-1e308, -1e308])
    summary = samples.percentiles()
    assert summary.mean == 0.0 and summary.p50 == 0.0  # the gap is not a float either
    samples.record(5e-324)
    assert samples.percentiles().max == 1e308


# -- percentile, coefficient_of_variation, jain_index -------------------------------

METRICS_REFUSED: list[tuple[str, Callable[[], object], type[TaskdistError]]] = [
    ("percentile q nan", lambda: percentile([1.0], NAN), ARG),
    ("percentile q negative", lambda: percentile([1.0], -1), ARG),
    ("percentile q above 100", lambda: percentile([1.0], 100.0001), ARG),
    ("percentile q str", lambda: percentile([1.0], "50"), TYPE),
    ("percentile q None", lambda: percentile([1.0], None), TYPE),
    ("percentile q bool", lambda: percentile([1.0], True), TYPE),
    ("percentile of a set", lambda: percentile({1.0, 2.0}, 50), TYPE),
    ("percentile of a str", lambda: percentile("abc", 50), TYPE),
    ("percentile of None", lambda: percentile(None, 50), TYPE),
    ("percentile of a mapping", lambda: percentile({0: 1.0}, 50), TYPE),
    ("percentile reads a nan", lambda: percentile([1.0, NAN], 50), ARG),
    ("percentile reads an inf", lambda: percentile([1.0, INF], 100), ARG),
    ("percentile reads a str", lambda: percentile([1.0, "x"], 50), TYPE),
    ("cv of a nan", lambda: coefficient_of_variation([1.0, NAN]), ARG),
    ("cv of an inf", lambda: coefficient_of_variation([INF]), ARG),
    ("cv of a str value", lambda: coefficient_of_variation(["a"]), TYPE),
    ("cv of None", lambda: coefficient_of_variation(None), TYPE),
    ("cv of a str", lambda: coefficient_of_variation("12"), TYPE),
    ("jain of a nan", lambda: jain_index([NAN]), ARG),
    ("jain of an inf", lambda: jain_index([1.0, INF]), ARG),
    ("jain of a negative share", lambda: jain_index([1.0, -1.0]), ARG),
    ("jain of a str value", lambda: jain_index(["1"]), TYPE),
    ("jain of an int", lambda: jain_index(5), TYPE),
    ("jain of None values", lambda: jain_index([None]), TYPE),
]


@pytest.mark.parametrize(("call", "error"), rows(METRICS_REFUSED))
def test_statistics_refuse(call: Callable[[], object], error: type[TaskdistError]) -> None:
    with pytest.raises(error):
        call()


METRICS_EXTREME: list[tuple[str, Callable[[], float], float]] = [
    ("percentile across the float range", lambda: percentile([-1e308, 1e308], 50), 0.0),
    ("percentile at a quarter of it", lambda: percentile([-1e308, 1e308], 25), -5e307),
    ("percentile at an end", lambda: percentile([-FLOAT_MAX, FLOAT_MAX], 100), FLOAT_MAX),
    ("cv of huge values", lambda: coefficient_of_variation([1e308, 1e308, 0.0]), 0.5**0.5),
    ("cv of tiny values", lambda: coefficient_of_variation([1e-300, 3e-300]), 0.5),
    ("jain of huge values", lambda: jain_index([1e300, 1e300]), 1.0),
    ("jain of the largest floats", lambda: jain_index([FLOAT_MAX] * 3), 1.0),
    ("jain of tiny values", lambda: jain_index([1e-300, 0.0]), 0.5),
]


@pytest.mark.parametrize(("call", "expected"), rows(METRICS_EXTREME))
def test_statistics_of_extreme_values_are_finite_and_right(
    call: Callable[[], float], expected: float
) -> None:
    assert call() == pytest.approx(expected, rel=1e-12)


# -- the shared identity check other modules call (a private part) ------------------


@pytest.mark.parametrize(
    "key",
    [NAN, Decimal("NaN"), ("tenant", NAN), frozenset({("x", NAN)})],
    ids=["nan", "Decimal nan", "tuple", "frozenset of tuple"],
)
def test_check_key_refuses_what_is_not_equal_to_itself(key: object) -> None:
    with pytest.raises(InvalidArgumentError, match="limiter key"):
        check_key(key, "limiter key")


@pytest.mark.parametrize("key", [None, "", 0, ("a", 1), Decimal("1"), frozenset({1})])
def test_check_key_accepts_ordinary_keys(key: object) -> None:
    assert check_key(key, "key") == key
