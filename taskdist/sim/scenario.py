"""Scenario: the workers, the workload, the limits and the faults of one simulated system.

A scenario says *what* runs; a :class:`~taskdist.sim.Policy` says *how* it is
scheduled. Built-in scenarios are in :mod:`taskdist.sim.scenarios`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import get_args

import attrs

from taskdist._validate import (
    check_hashable,
    check_int,
    check_number,
    check_optional_number,
    shown,
)
from taskdist.clock import Clock
from taskdist.errors import InvalidArgumentError, InvalidTypeError
from taskdist.planning import PoolLoad
from taskdist.queues.quota import Quota
from taskdist.resilience.gates import Gate
from taskdist.sim.faults import Fault, LostLeases
from taskdist.sim.workloads import Trace, Workload, distinct_tuple
from taskdist.task import Worker

__all__ = ["GateFactory", "Scenario"]

GateFactory = Callable[[Clock], Sequence[Gate]]
"""Makes a scenario's admission gates (rate limits, pools) afresh for one run, on its clock."""


def _workers(value: object) -> tuple[Worker, ...]:
    return distinct_tuple(value, Worker, "Scenario.workers", lambda worker: worker.id)


_FAULTS = get_args(Fault)  # the fault classes, as the Fault type lists them


def _faults(value: object) -> tuple[Fault, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidTypeError(f"Scenario.faults must be a sequence of faults, got {shown(value)}")
    faults = tuple(value)
    for fault in faults:
        if not isinstance(fault, _FAULTS):
            raise InvalidTypeError(
                f"Scenario.faults must hold faults ({', '.join(f.__name__ for f in _FAULTS)}), "
                f"got {shown(fault)}"
            )
    return faults


def _plans(value: object) -> Mapping[Hashable, Quota]:
    if not isinstance(value, Mapping):
        raise InvalidTypeError(f"Scenario.plans must map plan name to Quota, got {shown(value)}")
    for plan, quota in value.items():
        if not isinstance(quota, Quota):
            raise InvalidTypeError(
                f"Scenario.plans[{shown(plan)}] must be a Quota, got {shown(quota)}"
            )
    return value


def _tenant_plan(value: object) -> Mapping[Hashable, Hashable]:
    if not isinstance(value, Mapping):
        raise InvalidTypeError(
            f"Scenario.tenant_plan must map tenant to plan name, got {shown(value)}"
        )
    for plan in value.values():
        check_hashable(plan, "Scenario.tenant_plan's plan names")
    return value


@attrs.frozen
class Scenario:
    """One system to simulate: workers, workload, gates, limits and faults.

    - ``workers``: the pool at time 0 (faults may change it).
    - ``workload``: a generated :class:`Workload` or a recorded :class:`Trace`.
    - ``tasks``: how many arrivals a run simulates (a trace: at most its length).
    - ``gates``: makes the admission gates for a run (``None``: none).
    - ``faults``: events and conditions (:mod:`taskdist.sim.faults`).
    - ``lease``: the Distributor's lease (needed when leases can be lost).
    - ``plans``, ``tenant_plan``: tenant quotas, used by the fair policies.
    - ``aging_rate``: priority levels gained per second waited, used by the
      priority policies (the platform's "one level per 10 minutes").
    - ``max_queued``: the Distributor's intake bound (``None``: unbounded).
    - ``cache_speedup``: a task whose ``key`` last ran on the same worker runs
      this many times as long (0.5: a warm cache halves it; 1.0: no effect).

    Frozen; :meth:`with_tasks` and ``attrs.evolve`` make variants. O(1) to
    build; :meth:`pool_loads` is O(types x workers).
    """

    name: str
    workers: tuple[Worker, ...] = attrs.field(converter=_workers)
    workload: Workload | Trace
    tasks: int = 10_000
    gates: GateFactory | None = None
    faults: tuple[Fault, ...] = attrs.field(default=(), converter=_faults)
    lease: float | None = None
    plans: Mapping[Hashable, Quota] = attrs.field(factory=dict, converter=_plans)
    tenant_plan: Mapping[Hashable, Hashable] = attrs.field(factory=dict, converter=_tenant_plan)
    aging_rate: float = 0.0
    max_queued: int | None = None
    cache_speedup: float = 1.0
    description: str = ""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidTypeError(f"Scenario.name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.workload, (Workload, Trace)):
            raise InvalidTypeError(
                f"Scenario.workload must be a Workload or a Trace, got {self.workload!r}"
            )
        check_int(self.tasks, "Scenario.tasks", minimum=1)
        if self.gates is not None and not callable(self.gates):
            raise InvalidTypeError(f"Scenario.gates must make gates from a clock: {self.gates!r}")
        if not isinstance(self.description, str):
            raise InvalidTypeError(
                f"Scenario.description must be a str, got {shown(self.description)}"
            )
        check_optional_number(self.lease, "Scenario.lease", positive=True)
        check_number(self.aging_rate, "Scenario.aging_rate", minimum=0.0)
        if self.max_queued is not None:
            check_int(self.max_queued, "Scenario.max_queued", minimum=1)
        check_number(self.cache_speedup, "Scenario.cache_speedup", positive=True)
        if self.lease is None and any(isinstance(f, LostLeases) for f in self.faults):
            raise InvalidArgumentError(
                "a scenario that loses leases needs a lease: only its expiry brings a lost "
                "task back (set Scenario.lease)"
            )

    @property
    def slots(self) -> float:
        """The slots of the workers at time 0."""
        return math.fsum(w.slots for w in self.workers)

    @property
    def whole_slots(self) -> bool:
        """Whether every task takes at least one slot (a trace's tasks take one each)."""
        workload = self.workload
        if isinstance(workload, Trace):
            return True
        return all(t.resources.get("slots", 1.0) >= 1 for t in workload.types)

    def with_tasks(self, tasks: int) -> Scenario:
        """The same scenario simulating ``tasks`` arrivals."""
        return attrs.evolve(self, tasks=check_int(tasks, "tasks", minimum=1))

    def pool_loads(self) -> list[PoolLoad]:
        """The load on each pool of workers that can run the same tasks (for planning).

        Tasks that the same set of workers can run share a pool: its arrival
        rate is theirs summed, its service time their rate-weighted mean, its
        servers the slots of those workers. O(types x workers).

        Raises:
            InvalidArgumentError: a pool whose tasks take 0 s, or a trace with
                every arrival at one time (no rate to plan from).
        """
        # pool -> [arrival rate, work per second, plain mean of its service times]
        demand: dict[frozenset[Hashable], list[float]] = {}
        names: dict[frozenset[Hashable], str] = {}
        for requires, rate, service in self._type_rates():
            able = frozenset(w.id for w in self.workers if requires <= w.skills)
            row = demand.setdefault(able, [0.0, 0.0, service])
            row[0] += rate
            row[1] += rate * service
            names.setdefault(able, "+".join(sorted(requires)) or "any")
        loads = []
        for able, (rate, work, first) in demand.items():
            servers = int(sum(w.slots for w in self.workers if w.id in able))
            service = work / rate if rate > 0 else first  # no arrivals: any type's is as good
            if service <= 0:
                raise InvalidArgumentError(
                    f"the tasks of pool {names[able]!r} take 0 s: Erlang C plans a pool "
                    "from a mean service time > 0"
                )
            loads.append(PoolLoad(names[able], rate, service, servers))
        return loads

    def _type_rates(self) -> list[tuple[frozenset[str], float, float]]:
        workload = self.workload
        if isinstance(workload, Workload):
            return [(t.requires, rate, t.service.mean) for t, rate in workload.type_rates()]
        rate = workload.mean_rate
        if math.isinf(rate):
            raise InvalidArgumentError(
                f"the trace {workload.source} has every arrival at one time: "
                "it has no arrival rate to plan from"
            )
        per: dict[frozenset[str], list[float]] = {}
        for record in workload.records:
            row = per.setdefault(record.task.requires, [0.0, 0.0])
            row[0] += 1
            row[1] += record.service
        total = len(workload.records)
        return [
            (requires, rate * count / total, work / count)
            for requires, (count, work) in per.items()
        ]
