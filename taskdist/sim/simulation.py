"""Simulation: a deterministic discrete-event loop driving the real Distributor.

The simulation plays the world around a :class:`~taskdist.Distributor` on a
:class:`~taskdist.ManualClock`: tasks arrive from the scenario's workload,
the simulation plays the workers (an assignment completes, or fails, after
its sampled service time; a lost one never reports back), faults strike on
time, and the Distributor's own timers (leases, retries, TTLs, gate refills)
run when its ``next_wakeup()`` says. The Distributor is used through its
public API only, exactly as a host would.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Hashable, Mapping
from typing import Final

from taskdist._validate import check_number, shown
from taskdist.clock import ManualClock, MonotonicClock
from taskdist.dispatch import Distributor
from taskdist.errors import (
    DeadlineError,
    InvalidArgumentError,
    InvalidTypeError,
    QueueFullError,
    QuotaExceededError,
    UnsatisfiableDemandError,
)
from taskdist.metrics import Percentiles, coefficient_of_variation, jain_index, percentile
from taskdist.resilience.gates import Gate
from taskdist.sim.faults import (
    TIMED,
    AddWorker,
    ErrorBurst,
    LostLeases,
    RemoveWorker,
    Slowdown,
    WorkerCrash,
)
from taskdist.sim.policies import Policy
from taskdist.sim.progress import Progress
from taskdist.sim.report import Report, Series, Timing
from taskdist.sim.scenario import Scenario
from taskdist.sim.workloads import Arrival, Trace, Workload
from taskdist.task import Assignment, Reason, Task, TaskState, Worker
from taskdist.workers import demand_of
from taskdist.workers._ranges import MAX_SECONDS

__all__ = ["Simulation"]

# Event kinds in the heap: (time, sequence, kind, payload).
_DONE: Final = 0
_LAPSE: Final = 1
_BEAT: Final = 2
_FAULT: Final = 3

_WAITING: Final = (TaskState.QUEUED, TaskState.PARKED)
_DEPTH_SAMPLES: Final = 2_000
_wall = MonotonicClock.now


class _SimClock(ManualClock):
    """The run's clock: a ManualClock the event loop moves without checks or lock.

    The loop alone moves it, to times taken from its own heap and arrivals,
    which are finite and never go back; everything else reads it as any
    ManualClock. O(1).
    """

    __slots__ = ()

    def jump(self, t: float) -> None:
        """Move to ``t``, a finite time not before now (the caller's promise). O(1)."""
        self._now = t


class _Attempt:
    """One assignment the simulated worker is running."""

    __slots__ = ("arrival", "attempt", "counted", "fails", "live", "slots", "start", "worker")

    def __init__(
        self,
        arrival: Arrival,
        attempt: int,
        worker: Hashable,
        start: float,
        slots: float,
        fails: bool,
    ) -> None:
        self.arrival = arrival
        self.attempt = attempt
        self.worker = worker
        self.start = start
        self.slots = slots
        self.fails = fails
        self.live = True
        self.counted = start  # served time is credited to the tenant up to here


class _Pool:
    """One simulated worker: its slots, what runs on it, and its busy time."""

    __slots__ = ("area", "busy", "capacity", "last", "running")

    def __init__(self, capacity: float, now: float, area: list[float]) -> None:
        self.capacity = capacity
        self.area = area  # [busy slot-seconds, slot-seconds] over the arrival window
        self.busy = 0.0
        self.last = now
        # Keyed by attempt, not task: a lost attempt may still hold its slot here after
        # its lease ran out and the same task started again on this worker.
        self.running: dict[_Attempt, None] = {}  # insertion-ordered, so runs replay exactly


class _Inversions:
    """Counts priority inversions within a tenant (defined in ``report.py``).

    Tasks waiting for their first dispatch are indexed by (tenant, skills)
    and priority, oldest first (lazy deletion), so a check costs O(the
    skill sets a worker has x the more urgent levels), not O(queue).
    """

    def __init__(self, distributor: Distributor, gates: list[Gate]) -> None:
        self._distributor = distributor
        self._gates = gates
        self._index: dict[
            tuple[Hashable, frozenset[str]], dict[int, list[tuple[float, Hashable]]]
        ] = {}
        self._waiting: dict[Hashable, Arrival] = {}
        self._sigs: set[frozenset[str]] = set()
        self._compatible: dict[Hashable, list[frozenset[str]]] = {}
        # Each tenant's priorities over all its skill sets: a dispatch is checked against
        # every set the worker can run, so two levels in different sets can invert.
        self._tenant_levels: dict[Hashable, set[int]] = {}
        self._levels = 0
        self.count = 0

    def waiting(self, arrival: Arrival) -> None:
        task = arrival.task
        sig = task.requires
        if sig not in self._sigs:
            self._sigs.add(sig)
            self._compatible.clear()
        levels = self._index.setdefault((task.tenant, sig), {})
        heap = levels.get(task.priority)
        if heap is None:
            heap = levels[task.priority] = []
            seen = self._tenant_levels.setdefault(task.tenant, set())
            seen.add(task.priority)
            self._levels = max(self._levels, len(seen))
        entry: tuple[float, Hashable] = (arrival.time, task.id)
        heapq.heappush(heap, entry)
        self._waiting[task.id] = arrival

    def dispatched(self, arrival: Arrival, worker: Hashable, skills: frozenset[str]) -> None:
        task = arrival.task
        self._waiting.pop(task.id, None)
        if self._levels < 2:
            return  # one priority per tenant: nothing can be inverted
        compatible = self._compatible.get(worker)
        if compatible is None:
            compatible = self._compatible[worker] = [s for s in self._sigs if s <= skills]
        for sig in compatible:
            levels = self._index.get((task.tenant, sig))
            if not levels:
                continue
            for priority, heap in levels.items():
                if priority < task.priority and self._older_waits(heap, arrival):
                    self.count += 1
                    return

    def _older_waits(self, heap: list[tuple[float, Hashable]], newer: Arrival) -> bool:
        waiting = self._waiting
        while heap:
            arrived, task_id = heap[0]
            if arrived >= newer.time:
                return False
            older = waiting.get(task_id)
            if older is None:
                heapq.heappop(heap)
                continue
            try:
                state = self._distributor.state_of(task_id)
            except LookupError:
                state = None
            if state not in _WAITING:  # dead-lettered (TTL, deadline) before its first dispatch
                heapq.heappop(heap)
                del waiting[task_id]
                continue
            return self._could_take(older.task, newer.task)
        return False

    def _could_take(self, older: Task, newer: Task) -> bool:
        if demand_of(older).get("slots", 0.0) > demand_of(newer).get("slots", 0.0):
            return False
        for gate in self._gates:
            demand = getattr(gate, "demand", None)
            if demand is not None and demand(older) <= demand(newer):
                continue  # the gate admitted the newer task: it would have admitted this one
            can = getattr(gate, "can_acquire", None)
            if can is not None and not can(older):
                return False
        return True


def _summary(values: list[float]) -> Percentiles:
    if not values:
        return Percentiles(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    values.sort()
    return Percentiles(
        count=len(values),
        mean=math.fsum(values) / len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        max=values[-1],
    )


def _priorities(workload: Workload | Trace) -> set[int]:
    """Every priority a workload's tasks can have (after tenant boosts). O(types x tenants)."""
    if isinstance(workload, Trace):
        return {record.task.priority for record in workload.records}
    tenants = workload.tenants
    levels = {kind.priority for kind in workload.types}
    if tenants is None:
        return levels
    return {tenants.priority(name, level) for name in tenants.names for level in levels}


def fair_shares(
    demand: dict[Hashable, float], weights: dict[Hashable, float], capacity: float
) -> dict[Hashable, float]:
    """Weighted max-min fair allocation of ``capacity`` to tenants with these demands.

    Water-filling: tenants whose demand is below their weighted share get
    their demand; the rest split what remains by weight (1 for a tenant
    ``weights`` leaves out). O(T log T).

    Raises:
        InvalidTypeError: ``demand`` or ``weights`` not a mapping, or a value not a number.
        InvalidArgumentError: a demand or the capacity negative, NaN or infinite; a
            weight not a finite number > 0.
    """
    for name, values in (("demand", demand), ("weights", weights)):
        if not isinstance(values, Mapping):
            raise InvalidTypeError(
                f"fair_shares() takes {name} as a mapping of tenant to number, got {shown(values)}"
            )
    # A negative demand would be "below its share" and hand its capacity to the others.
    for tenant, amount in demand.items():
        check_number(amount, f"fair_shares() demand[{shown(tenant)}]", minimum=0.0)
    for tenant, weight in weights.items():
        check_number(weight, f"fair_shares() weights[{shown(tenant)}]", positive=True)
    check_number(capacity, "fair_shares() capacity", minimum=0.0)
    shares: dict[Hashable, float] = {}
    left = capacity
    pending = sorted(demand, key=lambda t: demand[t] / weights.get(t, 1.0))
    total_weight = math.fsum(weights.get(t, 1.0) for t in pending)
    for index, tenant in enumerate(pending):
        weight = weights.get(tenant, 1.0)
        fair = left * weight / total_weight if total_weight > 0 else 0.0
        if demand[tenant] <= fair:
            shares[tenant] = demand[tenant]
            left -= demand[tenant]
            total_weight -= weight
        else:
            for rest in pending[index:]:
                shares[rest] = left * weights.get(rest, 1.0) / total_weight
            break
    return shares


class Simulation:
    """Runs a scenario under a policy, deterministically, and measures it.

    ``Simulation(scenario, policy="priority", seed=1).run()`` returns a
    :class:`Report`. The same scenario, policy and seed give an equal report
    (wall-clock timings aside). The arrivals, first-attempt service times and
    outcomes come from a random stream of their own, so every policy run on a
    seed sees the same work; the policy's random choices (balancer, retry
    jitter) and fault draws have their own streams.

    ``tasks`` overrides the scenario's count; ``progress`` shows a progress
    bar (``None``: on a terminal, for runs of 20,000 tasks or more).

    Cost: O(log e) per event for e pending events, plus the Distributor's own
    work, which dominates (see ``docs/performance.md``).

    >>> from taskdist.sim import scenarios
    >>> report = Simulation(scenarios.mm_c(8.0, 1.0, 10, tasks=500), seed=1).run()
    >>> report.completed
    500
    """

    def __init__(
        self,
        scenario: Scenario,
        policy: Policy | str = "priority",
        *,
        seed: int = 0,
        tasks: int | None = None,
        progress: bool | None = None,
    ) -> None:
        if not isinstance(scenario, Scenario):
            raise InvalidTypeError(f"Simulation takes a Scenario, got {scenario!r}")
        if isinstance(policy, str):
            policy = Policy.named(policy)
        elif not isinstance(policy, Policy):
            raise InvalidTypeError(f"policy must be a Policy or a policy name, got {policy!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidTypeError(f"seed must be an int, got {seed!r}")
        self.scenario = scenario if tasks is None else scenario.with_tasks(tasks)
        self.policy = policy
        self.seed = seed
        self.progress = progress

    def run(self) -> Report:
        """Simulate every arrival until nothing is left to happen; measure. See the class."""
        return _Run(self.scenario, self.policy, self.seed, self.progress).run()


class _Run:
    """The state of one run (a fresh Distributor, clock and random streams)."""

    def __init__(
        self, scenario: Scenario, policy: Policy, seed: int, progress: bool | None
    ) -> None:
        self.scenario = scenario
        self.policy = policy
        self.seed = seed
        self.clock = clock = _SimClock()
        self.rng_arrivals = random.Random(f"{seed}:arrivals")
        self.rng_policy = random.Random(f"{seed}:policy")
        self.rng_faults = random.Random(f"{seed}:faults")
        self.rng_retries = random.Random(f"{seed}:retries")
        parts = policy.build(scenario, clock, self.rng_policy)
        self.gates = list(scenario.gates(clock)) if scenario.gates is not None else []
        self.d = Distributor(
            clock,
            queue=parts.queue,
            tracker=parts.tracker,
            balancer=parts.balancer,
            breaker=parts.breaker,
            retry=parts.retry,
            gates=self.gates,
            lease=scenario.lease,
            dedup_window=0.0,
            max_queued=scenario.max_queued,
            rng=self.rng_policy,
        )
        # Inversions need two priority levels; a workload with one has none to count.
        self.inversions = (
            _Inversions(self.d, self.gates) if len(_priorities(scenario.workload)) > 1 else None
        )
        self.events: list[tuple[float, int, int, object]] = []
        self.sequence = itertools.count()
        self.pools: dict[Hashable, _Pool] = {}
        self.specs: dict[Hashable, Worker] = {}
        # worker id -> [busy slot-seconds, slot-seconds] over the arrival window
        self.areas: dict[Hashable, list[float]] = {}
        self.free = 0.0
        self.in_flight = 0
        self.window_end: float | None = None
        self.slowdowns = tuple(f for f in scenario.faults if isinstance(f, Slowdown))
        self.lost = tuple(f for f in scenario.faults if isinstance(f, LostLeases))
        self.bursts = tuple(f for f in scenario.faults if isinstance(f, ErrorBurst))
        self.cache_speedup = scenario.cache_speedup
        # Whether anything changes an attempt's sampled service time or outcome.
        self.reshapes = bool(self.slowdowns or self.bursts or self.cache_speedup != 1.0)
        self.last_worker: dict[Hashable, Hashable] = {}
        self.spent = 0.0
        self.latencies: list[float] = []
        self.progress = Progress(scenario.tasks, f"simulating {scenario.name}", progress)
        # Measures.
        self.accepted = self.refused = self.completed = 0
        self.offered = 0.0  # seconds of work the accepted arrivals brought (first attempts)
        self.deadlines = self.deadlines_met = 0
        self.waits: dict[int, list[float]] = {}
        self.end_to_end: list[float] = []
        self.depth: list[tuple[float, int]] = []
        self.demand: dict[Hashable, float] = {}
        self.served: dict[Hashable, float] = {}
        self.arrivals: dict[Hashable, Arrival] = {}
        # Every task takes at least one slot: then dispatch(limit=free slots) never pops a
        # task it cannot place, and a full pool needs no dispatch call at all.
        self.whole_slots = scenario.whole_slots
        # Without leases that can expire or breakers that can trip, every lease ends by a
        # call of this run's, so in_flight counts them exactly and len(d) == in_flight
        # means nothing waits: a dispatch() then would place nothing and find nothing due.
        self.skip_idle = scenario.lease is None and parts.breaker is None

    # -- the loop ------------------------------------------------------------------

    def run(self) -> Report:
        wall = _wall
        started = wall()
        scenario = self.scenario
        clock = self.clock
        d = self.d
        for worker in scenario.workers:
            self._add_worker(worker, 0.0)
        for fault in scenario.faults:
            if isinstance(fault, TIMED):
                self._push(fault.at, _FAULT, fault)
        arrivals = scenario.workload.generate(scenario.tasks, self.rng_arrivals)
        stride = max(1, scenario.tasks // _DEPTH_SAMPLES)
        events = self.events
        heappop = heapq.heappop
        next_wakeup = d.next_wakeup
        jump = clock.jump
        arrive = self._arrive
        done = self._done
        dispatch = self._dispatch
        inf = math.inf
        pending = next(arrivals, None)
        t_arrival = pending.time if pending is not None else inf
        arrived = 0
        ticked = -inf
        now = clock.now()
        asking = 0.0  # wall seconds in next_wakeup() and tick(), added to self.spent at the end
        while True:
            t_event = events[0][0] if events else inf
            soonest = t_event if t_event < t_arrival else t_arrival
            began = wall()
            wake = next_wakeup()
            asking += wall() - began
            if wake is not None and wake <= soonest and wake > ticked:
                if wake > now:
                    jump(wake)
                    now = wake
                ticked = wake
                began = wall()
                d.tick()
                asking += wall() - began
                dispatch(now)
                continue
            if soonest == inf:
                break
            if soonest > now:
                jump(soonest)
                now = soonest
            if t_arrival <= t_event:
                assert pending is not None
                if not arrived:
                    self._open_window(now)
                arrive(pending)
                arrived += 1
                if arrived % stride == 0:
                    self.depth.append((t_arrival, len(d) - self.in_flight))
                    self.progress.update(arrived)
                pending = next(arrivals, None)
                if pending is None:
                    t_arrival = inf
                    self._close_window(now)
                else:
                    t_arrival = pending.time
            else:
                _, _, kind, payload = heappop(events)
                if kind == _DONE:
                    done(payload, now)  # type: ignore[arg-type]
                elif kind == _LAPSE:
                    self._lapse(payload)  # type: ignore[arg-type]
                elif kind == _BEAT:
                    self._beat(payload)  # type: ignore[arg-type]
                else:
                    self._fault(payload)
            dispatch(now)
        self.spent += asking
        if self.window_end is None:
            self._close_window(now)
        self.progress.close()
        return self._report(wall() - started)

    def _push(self, time: float, kind: int, payload: object) -> None:
        heapq.heappush(self.events, (time, next(self.sequence), kind, payload))

    # -- arrivals and assignments ---------------------------------------------------

    def _arrive(self, arrival: Arrival) -> None:
        task = arrival.task
        began = _wall()
        try:
            self.d.submit(task)
        except (QueueFullError, QuotaExceededError, UnsatisfiableDemandError, DeadlineError):
            self.spent += _wall() - began
            self.refused += 1
            return
        self.spent += _wall() - began
        self.accepted += 1
        service = arrival.service
        self.offered += service
        self.arrivals[task.id] = arrival
        if task.deadline is not None:
            self.deadlines += 1
        tenant = task.tenant
        if tenant is not None:
            demand = self.demand
            demand[tenant] = demand.get(tenant, 0.0) + service
        if self.inversions is not None:
            self.inversions.waiting(arrival)

    def _dispatch(self, now: float) -> None:
        if self.whole_slots:
            free = int(self.free + 1e-9)
            if free <= 0:
                return
            limit: int | None = free
        else:
            limit = None
        if self.skip_idle and len(self.d) == self.in_flight:
            return  # nothing waits: the call would place nothing and have nothing due
        began = _wall()
        made = self.d.dispatch(limit)
        spent = _wall() - began
        self.spent += spent
        if made:
            self.latencies.append(spent / len(made))
            start = self._start
            for assignment in made:
                start(assignment, now)

    def _start(self, assignment: Assignment, now: float) -> None:
        task = assignment.task
        arrival = self.arrivals[task.id]
        worker = assignment.worker_id
        number = assignment.attempt
        if number == 1:
            waits = self.waits.get(task.priority)
            if waits is None:
                waits = self.waits[task.priority] = []
            waits.append(now - arrival.time)
            service, fails = arrival.service, arrival.fails
        else:
            kind = arrival.kind
            rng = self.rng_retries
            service = kind.service.sample(rng) if kind is not None else arrival.service
            fails = kind is not None and kind.failure > 0 and rng.random() < kind.failure
        if self.inversions is not None:
            self.inversions.dispatched(arrival, worker, self.specs[worker].skills)
        if self.reshapes:
            service, fails = self._reshaped(task, worker, now, service, fails)
        if not now + service < math.inf:
            raise InvalidArgumentError(
                f"task {task.id!r} would run for {service!r} s from {now!r} s: its end is past "
                f"every time the simulation can hold (a slowdown factor too large?)"
            )
        # demand_of(task) is one slot for a task that names no resources
        slots = demand_of(task).get("slots", 0.0) if task.resources else 1.0
        attempt = _Attempt(arrival, number, worker, now, slots, fails)
        pool = self.pools[worker]
        if self.window_end is None:  # as _advance
            area = pool.area
            span = now - pool.last
            area[0] += pool.busy * span
            area[1] += pool.capacity * span
        pool.last = now
        pool.busy += slots
        self.free -= slots
        pool.running[attempt] = None
        self.in_flight += 1
        if self.lost:
            lost = False
            for window in self.lost:
                if window.active(now) and self.rng_faults.random() < window.probability:
                    lost = True
            if lost and assignment.lease_expiry is not None:
                self._push(assignment.lease_expiry, _LAPSE, attempt)
                return
        heapq.heappush(self.events, (now + service, next(self.sequence), _DONE, attempt))
        lease = self.scenario.lease
        if lease is not None and service > lease / 2:
            self._push(now + lease / 2, _BEAT, (attempt, now + service))

    def _reshaped(
        self, task: Task, worker: Hashable, now: float, service: float, fails: bool
    ) -> tuple[float, bool]:
        """An attempt's service time and outcome after a warm cache, slowdowns and bursts."""
        key = task.key
        if key is not None and self.cache_speedup != 1.0:
            if self.last_worker.get(key) == worker:
                service *= self.cache_speedup
            self.last_worker[key] = worker
        for slow in self.slowdowns:
            if slow.applies(worker, now):
                service *= slow.factor
        for burst in self.bursts:
            if burst.applies(task, now) and self.rng_faults.random() < burst.probability:
                fails = True
        return service, fails

    def _vacate(self, attempt: _Attempt, now: float) -> _Pool | None:
        """The attempt stops occupying its worker; credit its tenant's served time."""
        attempt.live = False
        self.in_flight -= 1
        tenant = attempt.arrival.task.tenant
        if tenant is not None:
            until = now if self.window_end is None else min(now, self.window_end)
            if until > attempt.counted:
                self.served[tenant] = self.served.get(tenant, 0.0) + until - attempt.counted
        pool = self.pools.get(attempt.worker)
        if pool is None or attempt not in pool.running:
            return None
        del pool.running[attempt]
        self._advance(pool, now)
        pool.busy -= attempt.slots
        self.free += attempt.slots
        return pool

    def _advance(self, pool: _Pool, now: float) -> None:
        if self.window_end is None:
            area = pool.area
            span = now - pool.last
            area[0] += pool.busy * span
            area[1] += pool.capacity * span
        pool.last = now

    # -- outcomes --------------------------------------------------------------------

    def _done(self, attempt: _Attempt, now: float) -> None:
        if not attempt.live:
            return  # its worker left: the Distributor requeued the task
        self._vacate(attempt, now)
        arrival = attempt.arrival
        task = arrival.task
        # A run may be longer than the longest duration the Distributor takes (a slowdown
        # stretched it, or its end less its start rounds past it): the duration it is
        # told, which feeds only the worker's latency average, is capped.
        duration = min(now - attempt.start, MAX_SECONDS)
        began = _wall()
        if attempt.fails:
            self.d.fail(
                task.id,
                error="TransientError: the attempt failed",
                duration=duration,
                attempt=attempt.attempt,
            )
            self.spent += _wall() - began
            return
        self.d.complete(task.id, duration=duration, attempt=attempt.attempt)
        self.spent += _wall() - began
        self.completed += 1
        self.end_to_end.append(now - arrival.time)
        del self.arrivals[task.id]
        if task.deadline is not None and now <= task.deadline:
            self.deadlines_met += 1

    def _lapse(self, attempt: _Attempt) -> None:
        """A lost assignment's lease has run out: the Distributor took the task back."""
        if attempt.live:
            self._vacate(attempt, self.clock.now())

    def _beat(self, payload: tuple[_Attempt, float]) -> None:
        """Half a lease into a run longer than that, its worker's heartbeat: it renews the
        lease once, to half a lease past the run's end, as renewing it every half lease
        would end up doing. Nothing in a run takes a lease away but a lost lease (known
        when the run starts: it never beats) or its worker leaving (the Distributor
        requeues its tasks then), so one renewal decides the same; a beat every half
        lease would make a run of a day under a 20 s lease cost thousands of events."""
        attempt, ends = payload
        if not attempt.live:
            return
        lease = self.scenario.lease
        assert lease is not None
        began = _wall()
        self.d.heartbeat(attempt.arrival.task.id, extend=ends - self.clock.now() + lease / 2)
        self.spent += _wall() - began

    # -- faults and pools ------------------------------------------------------------

    def _fault(self, fault: object) -> None:
        now = self.clock.now()
        if isinstance(fault, AddWorker):
            if fault.worker.id not in self.pools:
                self._add_worker(fault.worker, now)
        elif isinstance(fault, RemoveWorker):
            self._remove_worker(fault.worker_id, now)
        elif isinstance(fault, WorkerCrash):
            spec = self.specs.get(fault.worker_id)
            if self._remove_worker(fault.worker_id, now) and fault.down_for is not None:
                assert spec is not None
                self._push(now + fault.down_for, _FAULT, AddWorker(now + fault.down_for, spec))

    def _add_worker(self, worker: Worker, now: float) -> None:
        began = _wall()
        self.d.add_worker(worker)
        self.spent += _wall() - began
        self.specs[worker.id] = worker
        self.pools[worker.id] = _Pool(
            worker.slots, now, self.areas.setdefault(worker.id, [0.0, 0.0])
        )
        self.free += worker.slots

    def _remove_worker(self, worker_id: Hashable, now: float) -> bool:
        pool = self.pools.get(worker_id)
        if pool is None:
            return False
        for attempt in list(pool.running):
            self._vacate(attempt, now)
        self._advance(pool, now)
        began = _wall()
        self.d.remove_worker(worker_id)
        self.spent += _wall() - began
        del self.pools[worker_id]
        self.free -= pool.capacity
        return True

    def _open_window(self, now: float) -> None:
        """The first arrival: utilisation is measured from here.

        No task can run before it, so a pool's busy slot-seconds are still 0; only the
        idle slot-seconds of workers present before it are dropped.
        """
        for area in self.areas.values():
            area[1] = 0.0
        for pool in self.pools.values():
            pool.last = now

    def _close_window(self, now: float) -> None:
        """The last arrival: utilisation and fair shares are measured up to here."""
        for pool in self.pools.values():
            self._advance(pool, now)
            for attempt in pool.running:
                tenant = attempt.arrival.task.tenant
                if tenant is not None and now > attempt.counted:
                    self.served[tenant] = self.served.get(tenant, 0.0) + now - attempt.counted
                    attempt.counted = now
        self.window_end = now

    # -- the report ------------------------------------------------------------------

    def _report(self, wall: float) -> Report:
        d = self.d
        stats = d.stats()
        now = self.clock.now()
        window = self.window_end if self.window_end is not None else now
        utilization_by_worker = {
            str(worker): (busy / slots if slots > 0 else 0.0)
            for worker, (busy, slots) in self.areas.items()
        }
        busy_total = math.fsum(a[0] for a in self.areas.values())
        slot_total = math.fsum(a[1] for a in self.areas.values())
        measured = [busy / slots for busy, slots in self.areas.values() if slots > 0]
        weights = self._tenant_weights()
        shares = fair_shares(self.demand, weights, math.fsum(self.served.values()))
        fairness = {
            str(t): (self.served.get(t, 0.0) / share) for t, share in shares.items() if share > 0
        }
        waits_all = [w for values in self.waits.values() for w in values]
        by_priority = {p: _summary(list(values)) for p, values in sorted(self.waits.items())}
        latencies = sorted(self.latencies)
        dead_by_reason = {
            (r.value if isinstance(r, Reason) else str(r)): n
            for r, n in sorted(stats.dead_by_reason.items(), key=lambda kv: str(kv[0]))
        }
        evicted = sum(n for r, n in dead_by_reason.items() if r in ("evicted", "rejected"))
        return Report(
            scenario=self.scenario.name,
            policy=self.policy.name,
            seed=self.seed,
            tasks=self.accepted + self.refused,
            accepted=self.accepted,
            refused=self.refused,
            completed=self.completed,
            dead=stats.by_state[TaskState.DEAD],
            stranded=len(d),
            dispatches=stats.dispatched,
            retries=stats.retries,
            lease_expiries=stats.lease_expiries,
            makespan=now,
            window=window,
            throughput=self.completed / now if now > 0 else 0.0,
            wait=_summary(waits_all),
            end_to_end=_summary(self.end_to_end),
            wait_by_priority=by_priority,
            deadlines=self.deadlines,
            deadlines_met=self.deadlines_met,
            utilization=busy_total / slot_total if slot_total > 0 else 0.0,
            offered_load=self.offered / slot_total if slot_total > 0 else 0.0,
            load_variance=coefficient_of_variation(measured),
            jain_index=jain_index(fairness.values()) if fairness else 1.0,
            tenant_fairness=fairness,
            priority_inversions=0 if self.inversions is None else self.inversions.count,
            dead_by_reason=dead_by_reason,
            evicted=evicted,
            series=Series(
                queue_depth=tuple(self.depth),
                waits_by_priority={p: tuple(v) for p, v in self.waits.items()},
                worker_utilization=utilization_by_worker,
            ),
            timing=Timing(
                wall_seconds=wall,
                distributor_seconds=self.spent,
                latency_mean=math.fsum(latencies) / len(latencies) if latencies else 0.0,
                latency_p99=percentile(latencies, 99) if latencies else 0.0,
                latency_max=latencies[-1] if latencies else 0.0,
            ),
        )

    def _tenant_weights(self) -> dict[Hashable, float]:
        scenario = self.scenario
        weights: dict[Hashable, float] = {}
        for tenant in self.demand:
            plan = scenario.tenant_plan.get(tenant)
            quota = scenario.plans.get(plan) if plan is not None else None
            weight = quota.weight if quota is not None else None
            weights[tenant] = weight if weight is not None else 1.0
        return weights
