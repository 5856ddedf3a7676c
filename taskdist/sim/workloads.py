"""Workloads: when tasks arrive, what they are, how long they run.

A :class:`Workload` draws arrivals from a process (:class:`Poisson`, or the
bursty :class:`MMPP`), a task from a mix of :class:`TaskType` (service-time
distribution, priority, deadline, skills, resources, failure rate), and a
tenant from :class:`Tenants` (popularity and plans). A :class:`Trace` replays
recorded arrivals from a CSV or JSON-lines file instead.

Both yield :class:`Arrival` records in time order from ``generate(count,
rng)``: O(1) per arrival (O(log types) and O(log tenants) for the draws).
The first attempt's service time and outcome are drawn at arrival, from the
arrival stream, so every policy compared on one seed sees the same work.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import csv
import functools
import io
import itertools
import json
import math
import random
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from taskdist._validate import (
    MAX_AMOUNT,
    check_int,
    check_number,
    check_resources,
    check_skills,
    shown,
)
from taskdist.errors import InvalidArgumentError, InvalidTypeError, TaskdistError
from taskdist.sim.distributions import ServiceTime
from taskdist.task import Task
from taskdist.workers._ranges import MAX_SECONDS

__all__ = [
    "MIN_RATE",
    "MMPP",
    "Arrival",
    "Poisson",
    "TaskType",
    "Tenants",
    "Trace",
    "TraceError",
    "TraceRecord",
    "Workload",
    "Zipf",
]


_MAX_PRIORITY = 2**53  # Task's range of priorities

MIN_RATE: Final = 1e-6
"""The lowest arrival rate, in arrivals a second (one every 11.6 days on average), that
a :class:`Poisson` process, an :class:`MMPP`'s mean rate or :meth:`Workload.scaled`
takes. A million arrivals at this rate span about 1e12 s, the longest time a trace
holds; rarer ones lose the run's service times to rounding, and at rates near 1e-308
their times overflow to infinity. Every built-in scenario at ``scenarios.MIN_LOAD``
arrives faster than this."""


def check_rate(value: object, name: str) -> float:
    """An arrival rate: a finite number of arrivals a second, at least :data:`MIN_RATE`."""
    rate = check_number(value, name, positive=True)
    if rate < MIN_RATE:
        raise InvalidArgumentError(
            f"{name} must be at least MIN_RATE ({MIN_RATE:g} arrivals a second): rarer "
            f"arrivals come at times a run cannot measure, got {shown(value)}"
        )
    return rate


class TraceError(InvalidArgumentError):
    """A trace file that cannot be read: says which file, line and field, and what is allowed."""

    def __init__(self, source: str, line: int, field: str | None, problem: str) -> None:
        where = f"{source} line {line}" + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.line = line
        self.field = field


def _cumulative(weights: Sequence[float], name: str) -> tuple[float, ...]:
    checked = [check_number(w, f"{name}[{i}]", minimum=0.0) for i, w in enumerate(weights)]
    total = math.fsum(checked)
    if not checked or total <= 0:
        raise InvalidArgumentError(f"{name} must hold at least one weight > 0, got {weights!r}")
    return tuple(itertools.accumulate(w / total for w in checked))


def _pick(cumulative: tuple[float, ...], rng: random.Random) -> int:
    index = bisect.bisect_right(cumulative, rng.random())
    return min(index, len(cumulative) - 1)


@attrs.frozen
class Zipf:
    """Keys ``0 .. keys-1`` drawn with probability proportional to ``1 / (rank+1)**exponent``.

    Skewed keys (a few users or documents get most of the traffic) are what
    consistent hashing must cope with. O(log keys) per draw.
    """

    keys: int
    exponent: float = 1.1
    _cumulative: tuple[float, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        check_int(self.keys, "Zipf.keys", minimum=1, maximum=10_000_000)
        check_number(self.exponent, "Zipf.exponent", minimum=0.0, maximum=100.0)
        weights = [1.0 / (rank + 1) ** self.exponent for rank in range(self.keys)]
        object.__setattr__(self, "_cumulative", _cumulative(weights, "Zipf weights"))

    def sample(self, rng: random.Random) -> int:
        """One key. O(log keys)."""
        return _pick(self._cumulative, rng)


def _skills(value: object) -> frozenset[str]:
    return check_skills(value, "TaskType.requires")


def _resources(value: object) -> Mapping[str, float]:
    return check_resources(value, "TaskType.resources")


@attrs.frozen
class TaskType:
    """One kind of task in a workload's mix.

    ``share`` is its relative share of arrivals; ``service`` how long an
    attempt runs; ``deadline`` seconds after arrival by which it should
    finish (``None``: none); ``failure`` the probability that an attempt
    fails (then it is retried by the policy). ``requires``, ``resources``,
    ``priority``, ``ttl`` and ``max_attempts`` go to the ``Task`` as they
    are; ``keys`` draws its affinity ``key``. Validated when built. O(1).
    """

    name: str
    service: ServiceTime
    share: float = 1.0
    priority: int = 2
    deadline: float | None = None
    requires: frozenset[str] = attrs.field(default=frozenset(), converter=_skills)
    resources: Mapping[str, float] = attrs.field(factory=dict, converter=_resources)
    failure: float = 0.0
    ttl: float | None = None
    max_attempts: int | None = None
    keys: Zipf | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidTypeError(f"TaskType.name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.service, ServiceTime):
            raise InvalidTypeError(
                f"TaskType.service must be a service-time distribution (mean, sample), "
                f"got {self.service!r}"
            )
        check_number(self.share, "TaskType.share", minimum=0.0)
        check_int(self.priority, "TaskType.priority", minimum=-(2**53), maximum=2**53)
        if self.deadline is not None:
            check_number(self.deadline, "TaskType.deadline", positive=True)
        check_number(self.failure, "TaskType.failure", minimum=0.0, maximum=1.0)
        if self.ttl is not None:
            check_number(self.ttl, "TaskType.ttl", positive=True)
        if self.max_attempts is not None:
            check_int(self.max_attempts, "TaskType.max_attempts", minimum=1)
        if self.keys is not None and not isinstance(self.keys, Zipf):
            raise InvalidTypeError(f"TaskType.keys must be a Zipf or None, got {self.keys!r}")


def _names(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidTypeError(f"Tenants.names must be a sequence of str, got {value!r}")
    names = tuple(value)
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise InvalidArgumentError(f"Tenants.names must be non-empty strs, at least one: {value!r}")
    if len(set(names)) != len(names):
        raise InvalidArgumentError("Tenants.names must not repeat a tenant")
    return names


def _shares(value: object) -> tuple[float, ...] | None:
    if value is None:
        return None
    return _positive_tuple(value, "Tenants.shares")


def _tenant_plans(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidTypeError(f"Tenants.plans must map tenant to plan name, got {shown(value)}")
    for tenant, plan in value.items():
        if not isinstance(tenant, str) or not isinstance(plan, str) or not plan:
            raise InvalidTypeError(
                f"Tenants.plans must map a tenant (str) to a plan name (non-empty str), "
                f"got {shown(tenant)}: {shown(plan)}"
            )
    return value


def _boost(value: object) -> Mapping[str, int]:
    if not isinstance(value, Mapping):
        raise InvalidTypeError(f"Tenants.boost must map plan name to levels, got {shown(value)}")
    for plan, levels in value.items():
        if not isinstance(plan, str):
            raise InvalidTypeError(
                f"Tenants.boost keys must be plan names (str), got {shown(plan)}"
            )
        check_int(
            levels, f"Tenants.boost[{shown(plan)}]", minimum=-_MAX_PRIORITY, maximum=_MAX_PRIORITY
        )
    return value


@attrs.frozen
class Tenants:
    """Who submits: tenant names, how much each submits, and each one's plan.

    ``shares`` (default: equal) weights how often each tenant is drawn;
    ``plans`` maps a tenant to its plan name; ``boost`` maps a plan to the
    priority levels its tasks gain (an int; the platform's enterprise plan:
    one level more urgent), never past ``most_urgent`` (an int).
    Validated when built. O(log tenants) per draw.
    """

    names: tuple[str, ...] = attrs.field(converter=_names)
    shares: tuple[float, ...] | None = attrs.field(default=None, converter=_shares)
    plans: Mapping[str, str] = attrs.field(factory=dict, converter=_tenant_plans)
    boost: Mapping[str, int] = attrs.field(factory=dict, converter=_boost)
    most_urgent: int = 1
    _cumulative: tuple[float, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        check_int(
            self.most_urgent, "Tenants.most_urgent", minimum=-_MAX_PRIORITY, maximum=_MAX_PRIORITY
        )
        shares = self.shares if self.shares is not None else [1.0] * len(self.names)
        if len(shares) != len(self.names):
            raise InvalidArgumentError(
                f"Tenants.shares must give one share per tenant ({len(self.names)}), "
                f"got {len(shares)}"
            )
        object.__setattr__(self, "_cumulative", _cumulative(shares, "Tenants.shares"))
        unknown = set(self.plans) - set(self.names)
        if unknown:
            raise InvalidArgumentError(f"Tenants.plans names unknown tenants: {sorted(unknown)}")

    def sample(self, rng: random.Random) -> str:
        """One tenant. O(log tenants)."""
        return self.names[_pick(self._cumulative, rng)]

    def priority(self, tenant: str, priority: int) -> int:
        """``priority`` after the boost of the tenant's plan. O(1)."""
        plan = self.plans.get(tenant)
        boost = self.boost.get(plan, 0) if plan is not None else 0
        if not boost:
            return priority
        return max(self.most_urgent, priority - boost)


@attrs.frozen
class Poisson:
    """Arrivals at ``rate`` per second (at least :data:`MIN_RATE`), independent
    (exponential gaps). O(1) per gap."""

    rate: float

    def __attrs_post_init__(self) -> None:
        check_rate(self.rate, "Poisson.rate")

    @property
    def mean_rate(self) -> float:
        """Arrivals per second, on average."""
        return self.rate

    def gaps(self, rng: random.Random) -> Iterator[float]:
        """The times between arrivals, for ever."""
        rate = self.rate
        expovariate = rng.expovariate
        while True:
            yield expovariate(rate)

    def scaled(self, factor: float) -> Poisson:
        """The same process ``factor`` times as fast."""
        return Poisson(self.rate * factor)


def _positive_tuple(value: object, name: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidTypeError(f"{name} must be a sequence of numbers, got {value!r}")
    return tuple(check_number(v, f"{name}[{i}]", minimum=0.0) for i, v in enumerate(value))


def _rates(value: object) -> tuple[float, ...]:
    return _positive_tuple(value, "MMPP.rates")


def _durations(value: object) -> tuple[float, ...]:
    return _positive_tuple(value, "MMPP.durations")


_MIN_ARRIVALS_PER_CYCLE = 1e-3
"""An MMPP's least mean number of arrivals per cycle of its states (see :class:`MMPP`)."""


@attrs.frozen
class MMPP:
    """Bursty arrivals: a Markov-modulated Poisson process.

    The process stays in state ``i`` for an exponential time of mean
    ``durations[i]`` seconds, with Poisson arrivals at ``rates[i]`` while it
    does, then moves to the next state (cyclically). Two states, e.g.
    ``MMPP(rates=(2.0, 20.0), durations=(60.0, 10.0))``, give calm spells and
    bursts with the same long-run mean as a Poisson process of
    :attr:`mean_rate`, which must be at least :data:`MIN_RATE` (a state's own
    rate may be lower, or 0). A cycle of the states must see at least one
    arrival per thousand cycles on average (``mean_rate * sum(durations) >=
    0.001``): a process whose states change far faster than its arrivals come
    is a Poisson process of :attr:`mean_rate`, and drawing it state by state
    would take that many steps per gap. O(1) amortised per gap.
    """

    rates: tuple[float, ...] = attrs.field(converter=_rates)
    durations: tuple[float, ...] = attrs.field(converter=_durations)

    def __attrs_post_init__(self) -> None:
        if len(self.rates) < 1 or len(self.rates) != len(self.durations):
            raise InvalidArgumentError(
                "MMPP needs as many durations as rates, at least one state: "
                f"rates={self.rates}, durations={self.durations}"
            )
        if any(d <= 0 for d in self.durations):
            raise InvalidArgumentError(f"MMPP.durations must be > 0, got {self.durations}")
        if not any(r > 0 for r in self.rates):
            raise InvalidArgumentError(f"MMPP.rates must have a rate > 0, got {self.rates}")
        try:
            mean = self.mean_rate
        except OverflowError:  # fsum's partial sums beyond the float range
            mean = math.inf
        if not math.isfinite(mean):
            raise InvalidArgumentError(
                f"MMPP's mean rate (rates weighted by durations) overflows: "
                f"rates={self.rates}, durations={self.durations}"
            )
        check_rate(mean, "MMPP's mean rate")
        # Drawing a gap walks the states one by one: a cycle far shorter than a gap would
        # take that many steps per arrival (a hang), for a process that is Poisson anyway.
        per_cycle = mean * math.fsum(self.durations)
        if per_cycle < _MIN_ARRIVALS_PER_CYCLE:
            raise InvalidArgumentError(
                f"MMPP's states cycle {1.0 / per_cycle:.3g} times per arrival on average (at "
                f"most {1.0 / _MIN_ARRIVALS_PER_CYCLE:g} are allowed): it is a Poisson process "
                f"of rate {mean:g} in all but name (use Poisson); rates={self.rates}, "
                f"durations={self.durations}"
            )

    @property
    def mean_rate(self) -> float:
        """Arrivals per second in the long run: the rates weighted by time in each state."""
        return math.fsum(r * d for r, d in zip(self.rates, self.durations, strict=True)) / (
            math.fsum(self.durations)
        )

    def gaps(self, rng: random.Random) -> Iterator[float]:
        """The times between arrivals, for ever."""
        states = len(self.rates)
        state = 0
        left = rng.expovariate(1.0 / self.durations[0])  # time left in the state
        since = 0.0  # time since the last arrival
        while True:
            rate = self.rates[state]
            gap = rng.expovariate(rate) if rate > 0 else math.inf
            if gap <= left:
                left -= gap
                yield since + gap
                since = 0.0
            else:  # the state ends first; memorylessness lets us redraw in the next one
                since += left
                state = (state + 1) % states
                left = rng.expovariate(1.0 / self.durations[state])

    def scaled(self, factor: float) -> MMPP:
        """The same process with every rate ``factor`` times higher."""
        return MMPP(tuple(r * factor for r in self.rates), self.durations)


class Arrival:
    """One arriving task, with the first attempt's service time and outcome drawn."""

    __slots__ = ("fails", "kind", "service", "task", "time")

    def __init__(
        self, time: float, task: Task, service: float, fails: bool, kind: TaskType | None
    ) -> None:
        self.time = time
        self.task = task
        self.service = service
        self.fails = fails
        self.kind = kind

    def __repr__(self) -> str:
        return f"Arrival({self.time:g}, {self.task!r}, service={self.service:g})"


_T = TypeVar("_T")


def distinct_tuple(
    value: object, kind: type[_T], name: str, key: Callable[[_T], Hashable]
) -> tuple[_T, ...]:
    """``value`` (one ``kind`` or a sequence of them, at least one) as a tuple whose
    ``key`` values are distinct; else a ``TaskdistError`` naming ``name``. O(n)."""
    if isinstance(value, kind):
        return (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidTypeError(f"{name} must be a sequence of {kind.__name__}, got {value!r}")
    items = tuple(value)
    if not items:
        raise InvalidArgumentError(f"{name} must hold at least one {kind.__name__}")
    if not all(isinstance(item, kind) for item in items):
        raise InvalidTypeError(f"{name} must hold {kind.__name__} values only, got {value!r}")
    if len({key(item) for item in items}) != len(items):
        raise InvalidArgumentError(f"{name} must not repeat a {kind.__name__}")
    return items


def _types(value: object) -> tuple[TaskType, ...]:
    return distinct_tuple(value, TaskType, "Workload.types", lambda kind: kind.name)


@attrs.frozen
class Workload:
    """Arrivals from a process, each a task drawn from a mix of types and tenants.

    >>> from taskdist.sim import Exponential
    >>> w = Workload(Poisson(2.0), TaskType("job", Exponential(1.0)))
    >>> [round(a.time, 3) for a in w.generate(3, random.Random(1))]
    [0.072, 0.794, 1.136]
    """

    process: Poisson | MMPP
    types: tuple[TaskType, ...] = attrs.field(converter=_types)
    tenants: Tenants | None = None
    _cumulative: tuple[float, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.process, (Poisson, MMPP)):
            raise InvalidTypeError(
                f"Workload.process must be a Poisson or MMPP, got {self.process!r}"
            )
        if self.tenants is not None and not isinstance(self.tenants, Tenants):
            raise InvalidTypeError(f"Workload.tenants must be Tenants or None, got {self.tenants}")
        shares = [t.share for t in self.types]
        object.__setattr__(self, "_cumulative", _cumulative(shares, "the task types' shares"))

    @property
    def mean_rate(self) -> float:
        """Arrivals per second, on average."""
        return self.process.mean_rate

    def type_rates(self) -> list[tuple[TaskType, float]]:
        """Each type and its arrivals per second, on average."""
        total = math.fsum(t.share for t in self.types)
        return [(t, self.mean_rate * t.share / total) for t in self.types]

    def scaled(self, factor: float) -> Workload:
        """The same mix, arriving ``factor`` times as fast (factor > 0, the rate it makes
        finite and at least :data:`MIN_RATE`)."""
        factor = check_number(factor, "factor", positive=True)
        rate = self.mean_rate * factor
        if not MIN_RATE <= rate < math.inf:
            raise InvalidArgumentError(
                f"factor {shown(factor)} makes the arrival rate {rate:g} a second; it must "
                f"be finite and at least MIN_RATE ({MIN_RATE:g})"
            )
        return attrs.evolve(self, process=self.process.scaled(factor))

    def generate(self, count: int, rng: random.Random) -> Iterator[Arrival]:
        """``count`` arrivals in time order, tasks numbered 0, 1, ... O(count)."""
        count = check_int(count, "count", minimum=0)
        makers = [_Maker(kind, rng) for kind in self.types]
        single = makers[0] if len(makers) == 1 else None
        cumulative = self._cumulative
        tenants = self.tenants
        now = 0.0
        gaps = self.process.gaps(rng)
        random_ = rng.random
        for number, gap in zip(range(count), gaps, strict=False):
            now += gap
            maker = single if single is not None else makers[_pick(cumulative, rng)]
            kind = maker.kind
            tenant = None
            priority = kind.priority
            if tenants is not None:
                tenant = tenants.sample(rng)
                priority = tenants.priority(tenant, priority)
            deadline = maker.deadline
            keys = maker.keys
            task = Task(
                number,
                priority,
                None if deadline is None else now + deadline,
                tenant,
                None if keys is None else keys.sample(rng),
                *maker.fields,
            )
            service = maker.sample()
            failure = maker.failure
            fails = failure > 0 and random_() < failure
            yield Arrival(now, task, service, fails, kind)


# Task's own defaults of requires and resources (a task given none holds them):
# given these, Task converts nothing.
_NO_SKILLS = Task(0).requires
_NO_RESOURCES = Task(0).resources


class _Maker:
    """What :meth:`Workload.generate` needs of one task type, looked up once per run.

    ``fields`` are the task fields every task of the type shares, from
    ``requires`` to ``group``, in ``Task``'s order (passed by position: cheaper
    than by name); those the type leaves empty are ``Task``'s own defaults,
    which it takes without converting them. ``sample`` draws a service time
    from the run's stream.
    """

    __slots__ = ("deadline", "failure", "fields", "keys", "kind", "sample")

    def __init__(self, kind: TaskType, rng: random.Random) -> None:
        self.kind = kind
        self.deadline = kind.deadline
        self.keys = kind.keys
        self.failure = kind.failure
        service = kind.service
        own = getattr(service, "sampler", None)
        self.sample: Callable[[], float] = (
            own(rng) if own is not None else functools.partial(service.sample, rng)
        )
        self.fields = (
            kind.requires or _NO_SKILLS,
            kind.resources or _NO_RESOURCES,
            service.mean,
            kind.ttl,
            kind.max_attempts,
            kind.name,
        )


# -- traces -------------------------------------------------------------------------

_TRACE_FIELDS = ("time", "tenant", "priority", "deadline", "cost", "group", "requires", "service")


def _records(value: object) -> tuple[TraceRecord, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidTypeError(
            f"Trace.records must be a sequence of TraceRecord, got {shown(value)}"
        )
    return tuple(value)


@attrs.frozen
class TraceRecord:
    """One recorded arrival: at ``time``, a task that runs ``service`` seconds.

    ``time`` and ``service`` are seconds from 0 to 1e12 (the longest duration the
    Distributor takes; a run's slot-seconds stay finite). Validated when built. O(1).
    """

    time: float
    task: Task
    service: float

    def __attrs_post_init__(self) -> None:
        check_number(self.time, "TraceRecord.time", minimum=0.0, maximum=MAX_SECONDS)
        if not isinstance(self.task, Task):
            raise InvalidTypeError(f"TraceRecord.task must be a Task, got {shown(self.task)}")
        check_number(self.service, "TraceRecord.service", minimum=0.0, maximum=MAX_SECONDS)


def _allowed(minimum: float | None, maximum: float | None) -> str:
    bounds = ([] if minimum is None else [f">= {minimum:g}"]) + (
        [] if maximum is None else [f"<= {maximum:g}"]
    )
    return "a finite number" + (" " + " and ".join(bounds) if bounds else "")


def _field_number(
    raw: object,
    source: str,
    line: int,
    field: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    try:
        value = float(raw) if isinstance(raw, str) else raw
        return check_number(value, field, minimum=minimum, maximum=maximum)
    except (ValueError, TypeError, TaskdistError) as error:
        allowed = _allowed(minimum, maximum)
        raise TraceError(source, line, field, f"{allowed} is allowed, got {shown(raw)}") from error


def _field_priority(raw: object, source: str, line: int) -> int:
    value = raw
    if isinstance(raw, str):
        try:
            value = int(raw)  # exactly: through a float, 2**53 + 1 would become 2**53
        except ValueError:
            with contextlib.suppress(ValueError):
                value = float(raw)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        return check_int(value, "priority", minimum=-_MAX_PRIORITY, maximum=_MAX_PRIORITY)
    except TaskdistError:
        raise TraceError(
            source,
            line,
            "priority",
            f"an integer from -2**53 to 2**53 is allowed, got {shown(raw)}",
        ) from None


def _field_skills(raw: object, source: str, line: int) -> frozenset[str]:
    if isinstance(raw, str):
        raw = [s.strip() for s in raw.replace("|", ";").split(";") if s.strip()]
    elif isinstance(raw, list):
        raw = [s.strip() if isinstance(s, str) else s for s in raw]
    else:
        raise TraceError(
            source, line, "requires", f"a list of skill names (str) is allowed, got {shown(raw)}"
        )
    try:
        return check_skills(raw, "requires")
    except TaskdistError as error:
        raise TraceError(
            source, line, "requires", f"skill names (str) are allowed: {error}"
        ) from None


def _field_id(raw: object, source: str, line: int, field: str) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)  # a JSON integer, read as a CSV file's digits would be
    # str() of an object, array, true or 1.5 would be an id the file never wrote.
    raise TraceError(source, line, field, f"a string or an integer is allowed, got {shown(raw)}")


class _Repeated(dict[str, Any]):
    """A JSON object that names ``key`` more than once (json keeps only the last value)."""

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's ``object_pairs_hook``: a dict, or a :class:`_Repeated` naming the key given
    twice (checked on a line's own object: a nested one is refused by its field anyway)."""
    row = dict(pairs)
    if len(row) == len(pairs):
        return row
    keys = [key for key, _ in pairs]
    return _Repeated(pairs, next(key for i, key in enumerate(keys) if key in keys[:i]))


def _record(row: Mapping[str, Any], source: str, line: int, number: int) -> TraceRecord:
    unknown = [key for key in row if key not in _TRACE_FIELDS]
    if unknown:
        raise TraceError(
            source,
            line,
            unknown[0],
            f"not a trace field; the fields are {', '.join(_TRACE_FIELDS)}",
        )
    values = {key: value for key, value in row.items() if value not in (None, "")}
    if "time" not in values:
        raise TraceError(source, line, "time", "the arrival time is required")
    time = _field_number(values["time"], source, line, "time", minimum=0.0, maximum=MAX_SECONDS)
    fields: dict[str, Any] = {}
    if "priority" in values:
        fields["priority"] = _field_priority(values["priority"], source, line)
    if "deadline" in values:
        deadline = _field_number(values["deadline"], source, line, "deadline")
        if deadline <= time:
            raise TraceError(
                source, line, "deadline", f"must be after the arrival time {time:g}, got {deadline}"
            )
        fields["deadline"] = deadline
    cost = _field_number(
        values.get("cost", 1.0), source, line, "cost", minimum=0.0, maximum=MAX_AMOUNT
    )
    fields["cost"] = cost
    if "service" in values:
        service = _field_number(
            values["service"], source, line, "service", minimum=0.0, maximum=MAX_SECONDS
        )
    elif cost > MAX_SECONDS:
        raise TraceError(
            source,
            line,
            "cost",
            f"with no service given the cost is the service time, at most {MAX_SECONDS:g} s; "
            f"got {shown(values['cost'])}",
        )
    else:
        service = cost
    for name in ("tenant", "group"):
        if name in values:
            fields[name] = _field_id(values[name], source, line, name)
    if "requires" in values:
        fields["requires"] = _field_skills(values["requires"], source, line)
    try:
        task = Task(number, **fields)
    except TaskdistError as error:  # each field was checked above; a net for the rest
        raise TraceError(source, line, None, str(error)) from None
    return TraceRecord(time, task, service)


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidTypeError(f"{name} takes the trace's text (str), got {shown(value)}")
    return value.removeprefix("\ufeff")  # a byte-order mark some editors write


def _source(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidTypeError(f"a trace's source must be a non-empty str, got {shown(value)}")
    return value


def _undecodable(data: bytes, error: UnicodeDecodeError, source: str, csv_file: bool) -> TraceError:
    """The trace error for bytes that are not UTF-8: their line, and their field if the
    line parses once they are set aside."""
    # The decoder's offsets count from after a byte-order mark.
    at = error.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
    line = data.count(b"\n", 0, at) + 1
    problem = f"not UTF-8 text (byte 0x{data[at]:02x}); save the trace as UTF-8"
    field = None
    try:
        if csv_file:
            # Read record by record up to the line, so that a record spanning lines is read
            # whole (and a CSV error further on does not matter): the field is that of an
            # escaped byte in the last record starting by the line.
            names: list[str] | None = None
            values: list[str] = []
            with contextlib.suppress(csv.Error):
                for start, record in _CsvRecords(data.decode("utf-8-sig", "surrogateescape")):
                    if start > line:
                        break
                    if names is None:
                        names = record
                    else:
                        values = record
            if names is not None:
                field = next(
                    (names[i] for i, v in enumerate(values) if i < len(names) and _escaped(v)),
                    None,
                )
        else:
            row = json.loads(data.split(b"\n")[line - 1].decode("utf-8", "surrogateescape"))
            if isinstance(row, dict):
                field = next(
                    (str(k) for k, v in row.items() if isinstance(v, str) and _escaped(v)), None
                )
    except (ValueError, csv.Error, RecursionError):
        pass  # it does not parse: the error names the line alone
    return TraceError(source, line, field, problem)


def _escaped(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _CsvRecords:
    """Each non-blank record of strict CSV text with the line it starts on (a quoted
    value may span lines). Raises ``csv.Error``; :attr:`line` is then the line of the
    record it could not read."""

    def __init__(self, text: str) -> None:
        self._reader = csv.reader(io.StringIO(text), strict=True)
        self.line = 1

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        return self

    def __next__(self) -> tuple[int, list[str]]:
        reader = self._reader
        while True:
            self.line = start = reader.line_num + 1
            values = next(reader)  # (StopIteration ends the records)
            if values:  # (a blank line reads as no values)
                return start, values


@attrs.frozen
class Trace:
    """Recorded arrivals replayed as they are (``generate`` ignores the rng).

    Read one with :meth:`load` (CSV with a header row, or JSON lines, one
    object per line; UTF-8). Fields: ``time`` (arrival, seconds from 0 to
    1e12, required, non-decreasing), ``tenant``, ``priority`` (an integer
    within ±2**53), ``deadline`` (absolute time, after ``time``), ``cost``
    (estimated seconds, default 1, at most 1e18), ``group``, ``requires``
    (skills; ``a;b`` in CSV, a list in JSON), ``service`` (seconds it really
    runs, at most 1e12; default: ``cost``). ``tenant`` and ``group`` are
    strings (a JSON integer is read as its digits; an object, array, boolean
    or fraction is refused). A malformed file, or a JSON line that gives a
    field twice, raises :class:`TraceError` naming the line and field.
    Built directly, a trace needs at least one :class:`TraceRecord`, in time
    order, with distinct task ids.
    """

    records: tuple[TraceRecord, ...] = attrs.field(converter=_records)
    source: str = attrs.field(default="<trace>", converter=_source)

    def __attrs_post_init__(self) -> None:
        if not self.records:
            raise InvalidArgumentError(
                "a Trace needs at least one record (an empty trace has no arrivals to replay)"
            )
        last = 0.0
        ids: set[Hashable] = set()
        for index, record in enumerate(self.records):
            if not isinstance(record, TraceRecord):
                raise InvalidTypeError(
                    f"Trace.records[{index}] must be a TraceRecord, got {shown(record)}"
                )
            if record.time < last:
                raise InvalidArgumentError(
                    f"Trace.records must be in time order: record {index} at "
                    f"{record.time:g} after {last:g}"
                )
            last = record.time
            ids.add(record.task.id)
        if len(ids) != len(self.records):
            raise InvalidArgumentError("Trace.records must not repeat a task id")

    @classmethod
    def load(cls, path: str | PathLike[str]) -> Trace:
        """Read a trace file: ``.jsonl`` / ``.json`` / ``.ndjson`` (any case) as JSON lines,
        anything else as CSV.

        UTF-8, with or without a byte-order mark. O(records). Raises
        :class:`TraceError` (line and field) or ``OSError``.
        """
        if not isinstance(path, (str, PathLike)):
            raise InvalidTypeError(
                f"Trace.load takes a path (str or os.PathLike), got {shown(path)}"
            )
        path = Path(path)
        data = path.read_bytes()
        json_lines = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise _undecodable(data, error, path.name, not json_lines) from None
        if json_lines:
            return cls.from_json_lines(text, source=path.name)
        return cls.from_csv(text, source=path.name)

    @classmethod
    def from_csv(cls, text: str, *, source: str = "<csv>") -> Trace:
        """Parse CSV text with a header row. O(records).

        Strict CSV: a quote left open, or text after a closing quote, is an error
        (not a field that swallows the rest of the file). An error names the line a
        record starts on (a quoted value may span lines); blank lines are skipped.
        """
        text = _text(text, "Trace.from_csv")
        source = _source(source)
        records = _CsvRecords(text)
        rows: list[tuple[int, dict[str, str | None]]] = []
        try:
            first = next(records, None)
            if first is None:
                raise TraceError(
                    source, 1, None, "empty file: a header row naming the fields is needed"
                )
            header_line, names = first
            seen: set[str] = set()
            for name in names:
                if name not in _TRACE_FIELDS:
                    raise TraceError(
                        source,
                        header_line,
                        name,
                        f"not a trace field; the fields are {', '.join(_TRACE_FIELDS)}",
                    )
                if name in seen:
                    raise TraceError(source, header_line, name, "the header names this field twice")
                seen.add(name)
            for line, values in records:
                if len(values) > len(names):
                    raise TraceError(source, line, None, "more values than header fields")
                missing = [None] * (len(names) - len(values))
                rows.append((line, dict(zip(names, [*values, *missing], strict=True))))
        except csv.Error as error:
            raise TraceError(source, records.line, None, f"not valid CSV ({error})") from None
        return cls._from_rows(rows, source)

    @classmethod
    def from_json_lines(cls, text: str, *, source: str = "<jsonl>") -> Trace:
        """Parse JSON lines: one object per non-blank line. O(records)."""
        text = _text(text, "Trace.from_json_lines")
        source = _source(source)
        rows = []
        # Lines end at "\n" (or "\r\n") alone: JSON strings may hold U+2028 and the other
        # characters str.splitlines() also breaks at.
        for line_number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line, object_pairs_hook=_object)
            except (ValueError, RecursionError) as error:
                reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
                raise TraceError(source, line_number, None, f"not valid JSON ({reason})") from None
            if isinstance(row, _Repeated):
                raise TraceError(
                    source, line_number, row.key, "given twice in one object (JSON keeps the last)"
                )
            if not isinstance(row, dict):
                raise TraceError(source, line_number, None, "each line must be a JSON object")
            rows.append((line_number, row))
        return cls._from_rows(rows, source)

    @classmethod
    def _from_rows(cls, rows: Sequence[tuple[int, Mapping[str, Any]]], source: str) -> Trace:
        records = []
        last = 0.0
        for number, (line, row) in enumerate(rows):
            record = _record(row, source, line, number)
            if record.time < last:
                raise TraceError(
                    source, line, "time", f"times must not decrease: {record.time:g} after {last:g}"
                )
            last = record.time
            records.append(record)
        if not records:
            raise TraceError(source, 1, None, "no arrivals in the trace")
        return cls(tuple(records), source)

    @property
    def mean_rate(self) -> float:
        """Arrivals per second over the trace's span."""
        span = self.records[-1].time - self.records[0].time
        return len(self.records) / span if span > 0 else math.inf

    def generate(self, count: int, rng: random.Random) -> Iterator[Arrival]:
        """The first ``count`` records as arrivals (their service as recorded). O(count)."""
        count = check_int(count, "count", minimum=0)
        for record in self.records[:count]:
            yield Arrival(record.time, record.task, record.service, False, None)

    def __len__(self) -> int:
        return len(self.records)
