"""Shared builders for the Distributor tests: a distributor that records its events,
spies on its seams, and a comparable picture of everything it holds.

Not a test module (pytest collects ``test_*.py`` only); the distributor tests
import it by name.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import attrs

from taskdist import (
    Assignment,
    CapacityTracker,
    CircuitBreaker,
    Distributor,
    Event,
    EventKind,
    LeastConnections,
    ManualClock,
    Predicate,
    PriorityQueue,
    Task,
    TaskState,
    Worker,
    WorkerFilter,
    WorkerState,
)

FINAL_KINDS = (EventKind.COMPLETED, EventKind.DEAD_LETTERED, EventKind.CANCELLED)


class Recorded:
    """A distributor on a ManualClock, with every event it emitted, in order."""

    def __init__(self, clock: ManualClock, distributor: Distributor, events: list[Event]) -> None:
        self.clock = clock
        self.d = distributor
        self.events = events

    def kinds(self, task_id: Hashable | None = None) -> list[EventKind]:
        """The kinds of the events about ``task_id`` (every event's with ``None``)."""
        return [e.kind for e in self.events if task_id is None or e.task_id == task_id]

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]

    def dispatch_ids(self, limit: int | None = None) -> list[Hashable]:
        return [a.task.id for a in self.d.dispatch(limit)]

    def states(self, ids: Iterable[Hashable]) -> dict[Hashable, TaskState]:
        return {task_id: self.d.state_of(task_id) for task_id in ids}


def build(
    *workers: Worker, clock: ManualClock | None = None, seed: int = 7, **options: Any
) -> Recorded:
    """A Distributor on a ManualClock (unless ``clock`` is given) with ``workers`` added
    and a seeded rng; ``options`` go to the constructor."""
    clock = ManualClock() if clock is None else clock
    events: list[Event] = []
    listener = options.pop("on_event", None)

    def record(event: Event) -> None:
        events.append(event)
        if listener is not None:
            listener(event)

    options.setdefault("rng", random.Random(seed))
    distributor = Distributor(clock, on_event=record, **options)
    for worker in workers:
        distributor.add_worker(worker)
    return Recorded(clock, distributor, events)


def one_probe_breakers(clock: ManualClock) -> Callable[[Hashable], CircuitBreaker]:
    """A breaker factory: each opens on one failure, for 5 s, then sends one probe."""
    return lambda _: CircuitBreaker(
        clock, minimum_calls=1, window_size=1, open_duration=5.0, half_open_calls=1
    )


def with_a_probe_out(clock: ManualClock, *waiting: str, **options: Any) -> Distributor:
    """A distributor (no leases; ``options`` to its constructor) whose one worker ``w``
    has a half-open breaker with its one probe out: task "broken" failed at 0 and
    opened it; at 5 s "probe" went out, and the ``waiting`` tasks wait behind it."""
    d = Distributor(clock, lease=None, breaker=one_probe_breakers(clock), **options)
    d.add_worker(Worker("w", capacity=10))
    d.submit(Task("broken"))
    d.dispatch()
    d.fail("broken", error="down", retryable=False)  # the breaker opens
    clock.set(5.0)
    for task_id in ("probe", *waiting):
        d.submit(Task(task_id))
    assert [a.task.id for a in d.dispatch()] == ["probe"]  # the one half-open probe
    return d


def on_slots(*capacities: int, **options: Any) -> tuple[Distributor, ManualClock, list[Event]]:
    """``(distributor, clock, events)``: as :func:`build`, leases off unless given, over
    workers ``w0, w1, ...`` with these capacities."""
    options.setdefault("lease", None)
    run = build(*(Worker(f"w{i}", capacity=c) for i, c in enumerate(capacities)), **options)
    return run.d, run.clock, run.events


class SpyBalancer(LeastConnections):
    """LeastConnections that counts every call it gets: ``choose`` per task id, and each hook."""

    def __init__(self) -> None:
        super().__init__()
        self.chosen_for: Counter[Hashable] = Counter()
        self.hooks: list[tuple[str, Hashable, Hashable | None]] = []

    def choose(
        self, task: Task, tracker: CapacityTracker, where: WorkerFilter | None = None
    ) -> WorkerState | None:
        self.chosen_for[task.id] += 1
        return super().choose(task, tracker, where)

    def on_assign(self, task: Task, worker: WorkerState) -> None:
        self.hooks.append(("assign", task.id, worker.id))
        super().on_assign(task, worker)

    def on_release(self, task: Task, worker: WorkerState) -> None:
        self.hooks.append(("release", task.id, worker.id))
        super().on_release(task, worker)

    def on_worker_added(self, worker: WorkerState) -> None:
        self.hooks.append(("added", None, worker.id))
        super().on_worker_added(worker)

    def on_worker_removed(self, worker_id: Hashable) -> None:
        self.hooks.append(("removed", None, worker_id))
        super().on_worker_removed(worker_id)


class SpyQueue(PriorityQueue):
    """A PriorityQueue that counts its pops, and how often ``where=`` was asked about each task."""

    def __init__(self, clock: ManualClock, **options: Any) -> None:
        super().__init__(clock, **options)
        self.pops = 0
        self.asked: Counter[Hashable] = Counter()

    def pop(self, where: Predicate | None = None) -> Task | None:
        self.pops += 1
        if where is None:
            return super().pop()
        asked = self.asked

        def counted(task: Task) -> bool:
            asked[task.id] += 1
            return where(task)

        return super().pop(counted)


def assignment_view(
    made: Sequence[Assignment],
) -> list[tuple[Hashable, Hashable, int, float | None]]:
    """What a host sees of assignments: task id, worker id, attempt, lease expiry."""
    return [(a.task.id, a.worker_id, a.attempt, a.lease_expiry) for a in made]


def comparable(value: Any) -> Any:
    """``value`` made comparable with ``==``: attrs objects as dicts, NaN as a string."""
    if attrs.has(type(value)):
        return comparable(attrs.asdict(value, recurse=False))
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def stats_view(distributor: Distributor) -> Any:
    """``stats()`` without its ``time``, comparable with ``==``."""
    view = comparable(distributor.stats())
    del view["time"]
    return view


def final_events(events: Iterable[Event]) -> Counter[Hashable]:
    """How many final events (completed, dead-lettered, cancelled) each task id got."""
    return Counter(e.task_id for e in events if e.kind in FINAL_KINDS)


# What each Distributor snapshot format added: top-level fields, then fields of each run.
_ADDED_IN: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    2: (
        (
            "gangs",
            "waiting_gangs",
            "routed",
            "sent",
            "paused_pools",
            "batcher",
            "batches",
            "batch_groups",
            "backfill",
        ),
        ("batch",),
    ),
    3: (("gate_scouts", "gate_due"), ()),
    5: (("gate_shut",), ()),
    6: (("gate_times", "gate_evictions"), ("permit",)),
    7: (("next_lease_id",), ("lease_id",)),
}


def as_version(snapshot: dict[str, Any], version: int) -> dict[str, Any]:
    """A Distributor's snapshot as a taskdist that wrote format ``version`` would have
    written it: without the fields later formats added."""
    dropped = [names for v, names in _ADDED_IN.items() if v > version]
    top = {name for names, _ in dropped for name in names}
    per_run = {name for _, names in dropped for name in names}
    old = {key: value for key, value in snapshot.items() if key not in top}
    old["runs"] = [{k: v for k, v in run.items() if k not in per_run} for run in old["runs"]]
    if version < 7:  # lapsed leases were their attempts alone
        for run in old["runs"]:
            if run["lapsed"] is not None:
                run["lapsed"] = [attempt for attempt, _ in run["lapsed"]]
    old["version"] = version
    return old


class Without:
    """A queue of the user's own made from one of taskdist's, without the optional
    method ``hidden`` (``expire_with_reasons``, a prepared snapshot load, ...): what a
    composition does when a queue lacks it."""

    def __init__(self, queue: Any, hidden: str) -> None:
        self._queue = queue
        self._hidden = hidden

    def __getattr__(self, name: str) -> Any:
        if name == self._hidden:
            raise AttributeError(name)
        return getattr(self._queue, name)

    def __len__(self) -> int:
        return len(self._queue)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._queue
