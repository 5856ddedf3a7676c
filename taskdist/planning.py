"""Capacity planning: how many workers a pool needs (Erlang C and Little's law).

A pool of ``c`` identical workers serving Poisson arrivals at ``arrival_rate``
tasks per second, each taking ``service_time`` seconds on average
(exponentially distributed), first come first served, is the M/M/c queue.
Its offered load is ``a = arrival_rate * service_time`` (in erlangs: the
average number of busy workers), and it is stable while ``a < c``. Erlang's C
formula gives the probability that a task has to wait at all; from it follow
the mean wait, the share of tasks that wait at most ``t`` (the service
level), and the fewest workers that meet a target.

>>> round(erlang_c(servers=3, offered_load=2.0), 4)       # 4/9
0.4444
>>> servers_for_wait(arrival_rate=3.0, service_time=2.0, target_wait=0.5)
8

Offered loads are planned up to 1e7 erlangs, as the searches look at pools
of up to 1e7 servers (a load close to 1e7 erlangs may need more servers than
that: the search then says so). Every function is O(c) for ``c`` servers (the Erlang B
recursion, which stops once its term underflows: at most about twice the
offered load whatever ``c``), except the ``servers_for_*`` searches, O(c) in
the answer overall (each step extends the recursion by one server). Pure
functions of their arguments: safe to share between threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

import attrs

from taskdist._validate import check_int, check_number, shown
from taskdist.errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "Plannable",
    "PoolLoad",
    "PoolPlan",
    "erlang_c",
    "littles_law",
    "mean_wait",
    "plan_for",
    "servers_for_service_level",
    "servers_for_wait",
    "service_level",
]

# Enough servers for any offered load a float can carry without the
# search running for ever: beyond it the answer is "more than this".
_MAX_SERVERS = 10_000_000
# The largest offered load planned, in erlangs: no pool the searches consider carries
# more, and Erlang C's recursion runs up to two steps per erlang.
_MAX_LOAD = float(_MAX_SERVERS)


def _offered(arrival_rate: float, service_time: float) -> float:
    rate = check_number(arrival_rate, "arrival_rate", minimum=0.0)
    time = check_number(service_time, "service_time", positive=True)
    load = rate * time
    if load > _MAX_LOAD:  # an overflow to inf included
        raise InvalidArgumentError(
            f"arrival_rate x service_time ({rate:g} x {time:g}) must be at most "
            f"{_MAX_LOAD:g} erlangs, the largest load planned"
        )
    return load


def _erlang_b_steps(offered_load: float) -> Iterable[tuple[int, float]]:
    """Erlang B blocking for 1, 2, 3, ... servers: B(c) = a B(c-1) / (c + a B(c-1))."""
    blocking = 1.0
    servers = 0
    while True:
        servers += 1
        blocking = offered_load * blocking / (servers + offered_load * blocking)
        yield servers, blocking


def _c_from_b(servers: int, offered_load: float, blocking: float) -> float:
    """Erlang C from Erlang B with the same servers (offered_load < servers)."""
    return servers * blocking / (servers - offered_load * (1.0 - blocking))


def _check_stable(servers: int, offered_load: float) -> None:
    if offered_load > _MAX_LOAD:
        raise InvalidArgumentError(
            f"offered_load must be at most {_MAX_LOAD:g} erlangs, the largest load "
            f"planned, got {offered_load:g}"
        )
    if offered_load >= servers:
        raise InvalidArgumentError(
            f"the offered load ({offered_load:g} erlangs = arrival rate x service time) must "
            f"be below the servers ({servers}); the queue grows for ever otherwise"
        )


def erlang_c(servers: int, offered_load: float) -> float:
    """The probability that a task waits at all in an M/M/c queue (Erlang's C formula).

    ``offered_load`` is ``arrival_rate * service_time`` in erlangs, below
    ``servers`` and at most 1e7. Computed through the Erlang B recursion, so
    it neither overflows nor loses precision for thousands of servers; the
    recursion stops once its term underflows to 0 (every later one is 0 too,
    and so is the answer), so any number of servers costs
    O(min(servers, 2 x offered_load + 1,000)).

    >>> round(erlang_c(servers=55, offered_load=48.0), 4)
    0.2387

    Raises:
        InvalidArgumentError: ``servers`` < 1, a negative or non-finite load,
            a load above 1e7 erlangs, or a load of ``servers`` erlangs or more.
    """
    servers = check_int(servers, "servers", minimum=1)
    load = check_number(offered_load, "offered_load", minimum=0.0)
    _check_stable(servers, load)
    if load == 0:
        return 0.0
    blocking = 1.0
    for step in range(1, servers + 1):
        blocking = load * blocking / (step + load * blocking)
        if blocking == 0.0:
            return 0.0  # underflowed: it stays 0 to the last server, and so does C
    return _c_from_b(servers, load, blocking)


def mean_wait(arrival_rate: float, service_time: float, servers: int) -> float:
    """The mean time a task waits before it starts, in an M/M/c queue. O(servers).

    ``W = C(c, a) * service_time / (c - a)``, with ``a = arrival_rate *
    service_time`` erlangs.

    >>> round(mean_wait(arrival_rate=360 / 1800, service_time=240.0, servers=55), 2)
    8.18

    Raises:
        InvalidArgumentError: ``servers`` < 1, a negative or non-finite rate, a
            service time <= 0, a load above 1e7 erlangs, or a load the servers
            cannot carry.
    """
    load = _offered(arrival_rate, service_time)
    waits = erlang_c(servers, load)
    if waits == 0.0:
        return 0.0  # (and servers - load need not be a float: any number of servers)
    return waits * service_time / (servers - load)


def service_level(arrival_rate: float, service_time: float, servers: int, within: float) -> float:
    """The share of tasks that wait at most ``within`` seconds, in an M/M/c queue.

    ``P(wait <= t) = 1 - C(c, a) * exp(-(c - a) * t / service_time)``. O(servers).

    >>> round(service_level(arrival_rate=0.2, service_time=240.0, servers=55, within=15.0), 4)
    0.8459

    Raises:
        InvalidArgumentError: as :func:`mean_wait`, or ``within`` < 0.
    """
    load = _offered(arrival_rate, service_time)
    within = check_number(within, "within", minimum=0.0)
    waits = erlang_c(servers, load)
    if waits == 0.0:
        return 1.0  # (and servers - load need not be a float: any number of servers)
    return 1.0 - waits * math.exp(-(servers - load) * within / service_time)


def _fewest_servers(offered_load: float, enough: Callable[[int, float], bool]) -> int:
    # _offered keeps the load at most _MAX_LOAD; a load close to it may need more servers
    # than the search looks at, and is refused then.
    for servers, blocking in _erlang_b_steps(offered_load):
        if servers > offered_load and enough(servers, _c_from_b(servers, offered_load, blocking)):
            return servers
        if servers >= _MAX_SERVERS:
            break
    raise InvalidArgumentError(
        f"no pool of up to {_MAX_SERVERS:,} servers meets the target at {offered_load:g} erlangs"
    )


def _check_target_wait(value: object) -> float:
    target = check_number(value, "target_wait", minimum=0.0)
    if target == 0:
        raise InvalidArgumentError(
            "target_wait must be above 0 (no finite pool makes the mean wait 0), got 0"
        )
    return target


def _check_level(value: object) -> float:
    level = check_number(value, "level", minimum=0.0)
    if level >= 1.0:
        raise InvalidArgumentError(
            f"level must be below 1 (no finite pool makes every task start at once), got {level!r}"
        )
    return level


def servers_for_wait(arrival_rate: float, service_time: float, target_wait: float) -> int:
    """The fewest servers whose M/M/c mean wait is at most ``target_wait`` seconds.

    O(answer).

    >>> servers_for_wait(arrival_rate=0.2, service_time=240.0, target_wait=10.0)
    55

    Raises:
        InvalidArgumentError: a negative or non-finite rate, a target <= 0 (no
            finite pool has no wait at all), a service time <= 0, a load above
            1e7 erlangs, or a target no pool of up to 1e7 servers meets.
    """
    load = _offered(arrival_rate, service_time)
    target = _check_target_wait(target_wait)
    if load == 0:
        return 1
    return _fewest_servers(
        load, lambda servers, waits: waits * service_time / (servers - load) <= target
    )


def servers_for_service_level(
    arrival_rate: float, service_time: float, within: float, level: float
) -> int:
    """The fewest servers for which at least ``level`` of the tasks wait at most
    ``within`` seconds (P(wait <= within) >= level), in an M/M/c queue. O(answer).

    >>> servers_for_service_level(arrival_rate=0.2, service_time=240.0, within=15.0, level=0.8)
    55

    Raises:
        InvalidArgumentError: a negative or non-finite rate or ``within``, a
            service time <= 0, a ``level`` outside [0, 1), a load above 1e7
            erlangs, or a target no pool of up to 1e7 servers meets.
    """
    load = _offered(arrival_rate, service_time)
    within = check_number(within, "within", minimum=0.0)
    level = _check_level(level)
    if load == 0:
        return 1
    return _fewest_servers(
        load,
        lambda servers, waits: (
            1.0 - waits * math.exp(-(servers - load) * within / service_time) >= level
        ),
    )


def littles_law(
    *,
    arrival_rate: float | None = None,
    time_in_system: float | None = None,
    number_in_system: float | None = None,
) -> float:
    """Little's law, ``L = arrival_rate * W``: give two of the three, get the third.

    It holds for any stable queue, whatever the arrival and service
    distributions and the order of service: the mean number of tasks in a
    system equals their arrival rate times the mean time each spends there
    (apply it to the queue alone with the mean wait, or to the workers with
    the service time: ``busy workers = arrival rate x service time``). O(1).

    >>> littles_law(arrival_rate=3.0, time_in_system=2.0)
    6.0
    >>> littles_law(number_in_system=6.0, arrival_rate=3.0)
    2.0

    Raises:
        InvalidArgumentError: not exactly two given, a negative or non-finite
            value, a zero to divide by, or an answer too large for a float.
    """
    given = {
        name: value
        for name, value in (
            ("arrival_rate", arrival_rate),
            ("time_in_system", time_in_system),
            ("number_in_system", number_in_system),
        )
        if value is not None
    }
    if len(given) != 2:
        raise InvalidArgumentError(
            "give exactly two of arrival_rate, time_in_system and number_in_system, "
            f"got {sorted(given) or 'none'}"
        )
    checked = {name: check_number(value, name, minimum=0.0) for name, value in given.items()}
    if "number_in_system" not in checked:
        found, answer = checked["arrival_rate"] * checked["time_in_system"], "number_in_system"
    elif "time_in_system" not in checked:
        if checked["arrival_rate"] == 0:
            raise InvalidArgumentError("arrival_rate must be > 0 to find time_in_system")
        found, answer = checked["number_in_system"] / checked["arrival_rate"], "time_in_system"
    else:
        if checked["time_in_system"] == 0:
            raise InvalidArgumentError("time_in_system must be > 0 to find arrival_rate")
        found, answer = checked["number_in_system"] / checked["time_in_system"], "arrival_rate"
    if not math.isfinite(found):
        raise InvalidArgumentError(
            f"{answer} overflows a float for "
            + ", ".join(f"{name}={value!r}" for name, value in given.items())
        )
    return found


def _arrival_rate(value: object) -> float:
    return check_number(value, "PoolLoad.arrival_rate", minimum=0.0)


def _service_time(value: object) -> float:
    return check_number(value, "PoolLoad.service_time", positive=True)


@attrs.frozen
class PoolLoad:
    """The load on one pool of interchangeable workers: what :func:`plan_for` reads.

    ``arrival_rate`` in tasks per second (a finite number >= 0),
    ``service_time`` the mean seconds per task (> 0), their product at most
    1e7 erlangs, ``servers`` the slots the pool has now.
    Validated when built (numbers as :func:`erlang_c` takes them: not a bool
    or str). O(1).
    """

    name: str
    arrival_rate: float = attrs.field(converter=_arrival_rate)
    service_time: float = attrs.field(converter=_service_time)
    servers: int

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidTypeError(f"PoolLoad.name must be a non-empty str, got {self.name!r}")
        check_int(self.servers, "PoolLoad.servers", minimum=0)
        if self.offered_load > _MAX_LOAD:
            raise InvalidArgumentError(
                f"PoolLoad {self.name!r}: arrival_rate x service_time must be at most "
                f"{_MAX_LOAD:g} erlangs, got {self.arrival_rate:g} x {self.service_time:g}"
            )

    @property
    def offered_load(self) -> float:
        """Erlangs: the mean number of busy slots the pool needs (Little's law)."""
        return self.arrival_rate * self.service_time


@runtime_checkable
class Plannable(Protocol):
    """Anything that can say the load on each of its pools (a simulation ``Scenario`` does)."""

    def pool_loads(self) -> Sequence[PoolLoad]: ...


@attrs.frozen
class PoolPlan:
    """One pool's numbers now, and the slots :func:`plan_for` suggests.

    ``utilization`` is offered load over slots (above 1: the pool cannot keep
    up); ``wait_probability`` and ``mean_wait`` are Erlang C's for the current
    slots (``inf`` when unstable); ``suggested`` meets the plan's target.
    """

    name: str
    arrival_rate: float
    service_time: float
    servers: int
    utilization: float
    wait_probability: float
    mean_wait: float
    suggested: int


def plan_for(
    scenario: Plannable,
    *,
    within: float | None = None,
    level: float = 0.8,
    target_wait: float | None = None,
) -> list[PoolPlan]:
    """Suggest the slots of every pool of ``scenario`` from its arrival and service rates.

    Each pool is taken as an M/M/c queue (Poisson arrivals, exponential
    service: an approximation for other distributions, good for the mean
    when service times vary about as much as exponential ones). The target
    is ``target_wait`` (mean seconds waited) if given, else a service
    level: ``level`` of the tasks wait at most ``within`` seconds (default:
    one mean service time, i.e. no task waits longer than it runs, 80 % of
    the time). O(pools x slots).

    Raises:
        InvalidTypeError: ``scenario`` has no ``pool_loads()``.
        InvalidArgumentError: a bad target (as the ``servers_for_*`` functions).
    """
    if not isinstance(scenario, Plannable):
        raise InvalidTypeError(
            f"plan_for() takes a scenario with pool_loads(), got {type(scenario).__name__}"
        )
    # Checked up front, so a bad target is refused whatever the pools (none included).
    if target_wait is not None:
        _check_target_wait(target_wait)
    else:
        _check_level(level)
        if within is not None:
            check_number(within, "within", minimum=0.0)
    pools = scenario.pool_loads()
    if isinstance(pools, (str, bytes)) or not isinstance(pools, Iterable):
        raise InvalidTypeError(
            f"pool_loads() must return a sequence of PoolLoad values, got {shown(pools)}"
        )
    plans = []
    for pool in pools:
        if not isinstance(pool, PoolLoad):
            raise InvalidTypeError(f"pool_loads() must return PoolLoad values, got {pool!r}")
        load = pool.offered_load
        if target_wait is not None:
            suggested = servers_for_wait(pool.arrival_rate, pool.service_time, target_wait)
        else:
            suggested = servers_for_service_level(
                pool.arrival_rate,
                pool.service_time,
                pool.service_time if within is None else within,
                level,
            )
        if pool.servers > load:
            waits = erlang_c(pool.servers, load)
            wait = waits * pool.service_time / (pool.servers - load)
        else:
            waits, wait = 1.0, math.inf
        plans.append(
            PoolPlan(
                name=pool.name,
                arrival_rate=pool.arrival_rate,
                service_time=pool.service_time,
                servers=pool.servers,
                utilization=load / pool.servers if pool.servers else math.inf,
                wait_probability=waits,
                mean_wait=wait,
                suggested=suggested,
            )
        )
    return plans
