"""Capacity held back: a share of a pool for urgent work, and room for the next large task.

Two policies the :class:`~taskdist.Distributor` consults when it looks for a
worker for a task:

- :class:`Reservation`: a share of a pool's slots that only urgent tasks
  (priority number at most ``priority_at_most``) may take, so a flood of
  less urgent work never takes the last slots.
- :class:`Backfill`: as Slurm's backfill scheduler does, the next large task
  that finds no worker with room gets a worker reserved for it, from the
  time enough of that worker's running tasks will have ended (by their
  ``cost``, taken as their expected duration); until then other tasks may
  use that worker only if they will end before that time, or fit in what
  the large task leaves free. So a stream of small tasks never starves a
  large one, and the reserved worker does not idle meanwhile.

The book that applies both (:class:`Holds`) is the Distributor's; it narrows a
task's worker filter in O(reservations), O(1) amortised for backfill.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence

import attrs

from taskdist._validate import check_int, check_number
from taskdist.dispatch._placement import Filter, both
from taskdist.dispatch.routing import Pool
from taskdist.errors import InvalidArgumentError, InvalidTypeError
from taskdist.task import Task
from taskdist.workers.state import WorkerState, demand_of
from taskdist.workers.tracker import CapacityTracker

__all__ = ["Backfill", "Reservation"]


def _every_pool() -> Pool:
    return Pool()


_EVERY_WORKER = Pool()


def _no_worker(worker: WorkerState) -> bool:
    return False


NOWHERE: Filter = _no_worker
"""The filter ``Holds.narrow`` gives a task that no worker may take now."""


@attrs.frozen
class Reservation:
    """Hold ``share`` of a pool's slots for tasks of priority ``<= priority_at_most``.

    The pool's capacity is the ``"slots"`` of its registered workers; the
    reserved part is ``share`` of it, rounded up (so any share above 0 holds
    at least one slot). Less urgent tasks together hold at most the rest of
    the pool's slots; an urgent task may take any free slot. A task kept out
    is parked ("held for reservation"); each dispatch first wakes as many
    held tasks as the unreserved part has free slots, oldest parked first.
    Checking a task is O(1); the pool's capacity is summed again, O(workers),
    when the workers change.

    >>> urgent = Reservation(priority_at_most=1, share=0.2)
    >>> urgent.reserved(capacity=12), urgent.urgent(Task("page", priority=0))
    (3.0, True)
    """

    priority_at_most: int
    share: float
    pool: Pool = attrs.field(factory=_every_pool)
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        check_int(self.priority_at_most, "Reservation.priority_at_most")
        share = check_number(self.share, "Reservation.share", minimum=0.0, maximum=1.0)
        if share == 0.0:
            raise InvalidArgumentError("Reservation.share must be above 0 and at most 1, got 0")
        object.__setattr__(self, "share", share)
        if not isinstance(self.pool, Pool):
            raise InvalidTypeError(f"Reservation.pool must be a Pool, got {self.pool!r}")

    def urgent(self, task: Task) -> bool:
        """Whether ``task`` may use the reserved slots. O(1)."""
        return task.priority <= self.priority_at_most

    def reserved(self, capacity: float) -> float:
        """The slots held out of ``capacity``: ``share`` of it, rounded up. O(1)."""
        return float(math.ceil(self.share * capacity - 1e-9))

    @property
    def label(self) -> str:
        """How ``explain`` names it."""
        pool = "" if self.pool == Pool() else f" in pool {self.pool.label}"
        name = "" if self.name is None else f" {self.name!r}"
        return f"reservation{name} ({self.share:g} of the slots{pool} for priority <= " + (
            f"{self.priority_at_most})"
        )


def _large(task: Task) -> bool:
    return _slots(task) > 1.0


@attrs.frozen
class Backfill:
    """Reserve a worker for the next large task that cannot start; backfill the gap.

    ``when`` picks the tasks that get a reservation (default: those that
    need more than one slot). When such a task is parked because no worker
    has room for it, it gets the worker where it could start soonest, from
    the time enough of that worker's running tasks will have ended (each at
    its start plus its ``cost``; one that ran past its cost counts as ending
    now). One reservation at a time; it ends when its task starts or leaves.
    Until then any other task may use that worker only if it will end (now
    plus its ``cost``) by then, or fits in what the large task leaves free at
    that time: given accurate costs, no backfilled task delays the reserved
    start. The search for the worker is O(w k log k) for w workers running k
    tasks each, once per reservation; checking a task against it is O(1)
    amortised, however often the clock moves: the worker's running tasks are
    sorted by their end, O(k log k), only when they (or the workers) change,
    and each check after that walks past an end at most once.

    >>> Backfill().wants(Task("render", resources={"slots": 4}))
    True
    """

    when: Callable[[Task], bool] = _large

    def __attrs_post_init__(self) -> None:
        if not callable(self.when):
            raise InvalidTypeError(f"Backfill.when must be callable, got {self.when!r}")

    def wants(self, task: Task) -> bool:
        """Whether ``task``, parked for want of room, gets a reservation. O(1) plus ``when``."""
        return task.gang is None and bool(self.when(task))


@attrs.frozen(cache_hash=True)
class HeldGroup:
    """The parking group of the tasks a :class:`Reservation` keeps out (by its index)."""

    index: int


@attrs.frozen
class BackfillMark:
    """Part of the parking signature of tasks kept off the worker reserved for another
    (``held``: the mark of a reservation that also holds them, or ``None``)."""

    held: Hashable


def backfill_group(group: Hashable) -> bool:
    """Whether a parking group is of tasks the backfill reservation kept off its worker."""
    return (
        type(group) is tuple
        and len(group) == 2
        and type(group[1]) is tuple
        and len(group[1]) == 2
        and isinstance(group[1][1], BackfillMark)
    )


class Holds:
    """The Distributor's book of reservations and the backfill reservation.

    ``narrow`` is O(reservations) per task; ``leased`` and ``released`` O(1)
    per reservation. ``wake(group, n)`` is the Distributor's: it puts up to
    ``n`` tasks of a parked group back in the queue.
    """

    __slots__ = (
        "_backfill",
        "_capacity",
        "_counted",
        "_due",
        "_everywhere",
        "_groups",
        "_held",
        "_holder",
        "_holder_task",
        "_reservations",
        "_started",
        "_tracker",
        "_version",
        "_wake",
        "_worker",
    )

    def __init__(
        self,
        reservations: Iterable[Reservation],
        backfill: Backfill | None,
        tracker: CapacityTracker,
        started: Callable[[Hashable], float],
        wake: Callable[[Hashable, int | None], None],
    ) -> None:
        self._reservations = tuple(reservations)
        self._backfill = backfill
        self._tracker = tracker
        self._started = started
        self._wake = wake
        # Per reservation: the pool's slots (with the membership version they were
        # summed at) and the slots its less urgent tasks hold.
        self._capacity = [_UNSEEN] * len(self._reservations)
        self._groups = tuple(HeldGroup(index) for index in range(len(self._reservations)))
        self._everywhere = tuple(r.pool == _EVERY_WORKER for r in self._reservations)
        self._held = [0.0] * len(self._reservations)
        # task id -> [(reservation index, slots)] it is counted under while leased.
        self._counted: dict[Hashable, list[tuple[int, float]]] = {}
        # The backfill reservation: its task, its worker, and the schedule of that
        # worker's running tasks with the (version, membership version) it was made at.
        self._holder: Hashable = None
        self._holder_task: Task | None = None
        self._worker: Hashable = None
        self._version = 0
        self._due: tuple[int, int, _Schedule] | None = None

    @staticmethod
    def check(reservations: Reservation | Iterable[Reservation]) -> tuple[Reservation, ...]:
        """The reservations given to a Distributor, as a tuple (each checked)."""
        if isinstance(reservations, Reservation):
            return (reservations,)
        try:
            listed: tuple[object, ...] = tuple(reservations)
        except TypeError:
            raise InvalidTypeError(
                f"reservations must be a Reservation or an iterable of them, got {reservations!r}"
            ) from None
        checked = []
        for item in listed:
            if not isinstance(item, Reservation):
                raise InvalidTypeError(f"reservations must be Reservation objects, got {item!r}")
            checked.append(item)
        return tuple(checked)

    # -- the urgent share ---------------------------------------------------------

    def _pool_slots(self, index: int) -> tuple[float, float]:
        """The pool's slots, and how many of them the less urgent may hold."""
        version = self._tracker.membership_version
        seen, slots, limit = self._capacity[index]
        if seen != version:
            reservation = self._reservations[index]
            pool = reservation.pool
            slots = sum(
                w.capacity.get("slots", 0.0) for w in self._tracker.workers() if pool.admits(w)
            )
            limit = slots - reservation.reserved(slots) + 1e-9
            self._capacity[index] = (version, slots, limit)
        return slots, limit

    def workers_changed(self) -> None:
        """A worker's capacity or pool may have changed: sum the pools again, work out
        the reserved start again, wake all."""
        self._capacity = [_UNSEEN] * len(self._reservations)
        self._version += 1
        for group in self._groups:
            self._wake(group, None)

    # -- what dispatch asks ---------------------------------------------------------

    def narrow(
        self,
        task: Task,
        filter_: Filter | None,
        now: Callable[[], float],
        gang: Sequence[Task] | None = None,
    ) -> tuple[Filter | None, Hashable, Hashable]:
        """``(filter, signature mark, parking group)`` for ``task``: the filter keeps it
        off what is held for others (:data:`NOWHERE` if that is every worker); the mark
        (or ``None``) joins its parking signature; the group (or ``None``) is where it
        parks if no worker is left. A gang's member is checked as the whole ``gang``'s
        slots. ``now`` is the clock, read only while a backfill reservation is held."""
        mark: Hashable = None
        group: Hashable = None
        priority = task.priority
        slots = None
        for index, reservation in enumerate(self._reservations):
            if priority <= reservation.priority_at_most:
                continue
            if slots is None:
                slots = sum(_slots(member) for member in gang) if gang else _slots(task)
            if self._held[index] + slots > self._pool_slots(index)[1]:
                mark = group = self._groups[index]
                if self._everywhere[index]:  # no need to look: no worker is left
                    return NOWHERE, mark, group
                filter_ = both(_outside(reservation.pool), filter_)
        holder = self._holder
        if holder is not None and holder != task.id and not self._may_backfill(task, now()):
            reserved = self._worker
            filter_ = both(lambda worker: worker.id != reserved, filter_)
            mark = BackfillMark(mark)
        return filter_, mark, group

    def _may_backfill(self, task: Task, now: float) -> bool:
        due = self._due_time(now)
        if due is None:
            return True
        when, left = due
        if now + task.cost <= when:
            return True
        return all(amount <= left.get(name, 0.0) + 1e-9 for name, amount in _demand(task))

    def _due_time(self, now: float) -> tuple[float, dict[str, float]] | None:
        """When the reserved worker has room for its task, and what is left over then;
        ``None`` (and the reservation ends) if the worker is gone or can never fit it.

        O(1) amortised: the worker's schedule is made again only when its tasks or
        the workers changed, whatever ``now`` is."""
        tracker = self._tracker
        membership = tracker.membership_version
        cached = self._due
        if cached is not None and cached[0] == self._version and cached[1] == membership:
            schedule: _Schedule | None = cached[2]
        else:
            task = self._holder_task
            worker_id = self._worker
            schedule = None
            if task is not None and worker_id in tracker:
                schedule = _Schedule(tracker.worker(worker_id), task, tracker, self._started)
            if schedule is not None:
                self._due = (self._version, membership, schedule)
        found = None if schedule is None else schedule.start(now)
        if found is None:
            self.end()
        return found

    # -- the backfill reservation ---------------------------------------------------------

    def wants(self, task: Task) -> bool:
        """Whether ``task`` would get a backfill reservation when parked for want of room."""
        return self._backfill is not None and self._backfill.wants(task)

    def reserve(self, task: Task, candidates: list[WorkerState], now: float) -> WorkerState | None:
        """Give ``task`` (parked for want of room) the worker among ``candidates`` where it
        can start soonest, if no reservation is held and the policy wants it. O(w k)."""
        backfill = self._backfill
        if backfill is None or self._holder is not None or not backfill.wants(task):
            return None
        best: tuple[float, WorkerState] | None = None
        for state in candidates:
            found = _Schedule(state, task, self._tracker, self._started).start(now)
            if found is not None and (best is None or found[0] < best[0]):
                best = (found[0], state)
        if best is None:
            return None
        self._holder = task.id
        self._holder_task = task
        self._worker = best[1].id
        self._version += 1
        self._due = None
        return best[1]

    @property
    def reservations(self) -> tuple[Reservation, ...]:
        """The reservations, in the order given (a :class:`HeldGroup` names one by place)."""
        return self._reservations

    def backfill_state(self) -> tuple[Task, Hashable] | None:
        """``(task, worker id)`` of the backfill reservation held, or ``None``."""
        if self._holder_task is None:
            return None
        return self._holder_task, self._worker

    def restore_backfill(self, task: Task, worker_id: Hashable) -> None:
        """Hold the backfill reservation a snapshot had (checked by the caller). O(1)."""
        self._holder = task.id
        self._holder_task = task
        self._worker = worker_id
        self._version += 1
        self._due = None

    def replaced(self, task: Task) -> None:
        """A waiting task was given a new priority: if the backfill reservation is for
        it, it holds the new ``Task`` (its demand and cost, all it reads, are the
        same). O(1)."""
        if task.id == self._holder:
            self._holder_task = task

    @property
    def holder(self) -> Hashable:
        """The id of the task the backfill reservation is for, or ``None``."""
        return self._holder

    @property
    def reserved_worker(self) -> Hashable:
        """The worker held for the backfill reservation's task, or ``None``."""
        return self._worker

    def due(self, now: float) -> float | None:
        """When the reserved task is due to start, or ``None`` without a reservation."""
        if self._holder is None:
            return None
        found = self._due_time(now)
        return None if found is None else found[0]

    def end(self) -> None:
        """The reservation ends (its task started or left, or its worker went). O(1)."""
        self._holder = self._worker = self._holder_task = None
        self._due = None

    # -- what the Distributor tells it ------------------------------------------------------

    def leased(self, task: Task, worker: WorkerState) -> bool:
        """``task`` started on ``worker``; ``True`` if that ended the backfill
        reservation (it was its task). O(reservations)."""
        ended = task.id == self._holder
        if ended:
            self.end()
        elif worker.id == self._worker:
            self._version += 1
        counted = None
        priority = task.priority
        for index, reservation in enumerate(self._reservations):
            if priority > reservation.priority_at_most and (
                self._everywhere[index] or reservation.pool.admits(worker)
            ):
                slots = _slots(task)
                self._held[index] += slots
                if counted is None:
                    counted = self._counted[task.id] = []
                counted.append((index, slots))
        return ended

    def released(self, task: Task, worker_id: Hashable) -> None:
        """``task`` left ``worker_id``. O(reservations)."""
        if worker_id == self._worker:
            self._version += 1
        counted = self._counted.pop(task.id, None)
        if counted is not None:
            for index, slots in counted:
                self._held[index] -= slots

    def wake_held(self, parked: Callable[[Hashable], bool]) -> None:
        """Before a dispatch: wake as many held tasks as each reservation has room for
        (one per free slot, oldest parked first; ``parked(group)`` says whether any
        waits). A woken task that still does not fit is held again. O(reservations)
        plus the tasks woken."""
        for index, group in enumerate(self._groups):
            if parked(group):
                room = self._pool_slots(index)[1] - self._held[index]
                if room > 0:
                    self._wake(group, max(1, math.floor(room)))

    def finished(self, task_id: Hashable) -> bool:
        """``task_id`` left for good; ``True`` if that ended the backfill reservation."""
        if task_id == self._holder:
            self.end()
            return True
        return False

    # -- words -------------------------------------------------------------------

    def words(self, group: HeldGroup) -> str:
        """Why a task in ``group`` waits, for ``explain``."""
        index = group.index
        capacity = self._pool_slots(index)[0]
        reservation = self._reservations[index]
        return (
            f"held for reservation: the {reservation.label} keeps "
            f"{reservation.reserved(capacity):g} of {capacity:g} slots"
        )


_UNSEEN = (-1, 0.0, 0.0)


def _outside(pool: Pool) -> Filter:
    return lambda worker: not pool.admits(worker)


def _slots(task: Task) -> float:
    if not task.resources:
        return 1.0  # the usual task: one slot
    return demand_of(task).get("slots", 0.0)


def _demand(task: Task) -> list[tuple[str, float]]:
    return [(name, amount) for name, amount in demand_of(task).items() if amount]


def _ends(
    state: WorkerState, tracker: CapacityTracker, started: Callable[[Hashable], float]
) -> list[tuple[float, list[tuple[str, float]]]]:
    """The tasks running on ``state``: when each ends (its start plus its cost) and its
    demand, soonest first (ties in placement order). O(k log k) for k tasks."""
    ends = sorted(
        (
            (started(placed.id) + placed.cost, order, placed)
            for order, placed in enumerate(tracker.tasks_on(state.id))
        ),
        key=lambda entry: (entry[0], entry[1]),
    )
    return [(end, _demand(placed)) for end, _, placed in ends]


class _Schedule:
    """When a task fits a worker as the worker's running tasks end (each at its start
    plus its cost, or now if overdue), and the capacity left over then.

    Made from the worker as it is, O(k log k) for k running tasks; :meth:`start` is
    then O(1) amortised over calls whose ``now`` does not go back (each end is passed
    once), O(k) after one that does.
    """

    __slots__ = ("_at", "_base", "_demand", "_ends", "_free", "_left", "_position", "_ready")

    def __init__(
        self,
        state: WorkerState,
        task: Task,
        tracker: CapacityTracker,
        started: Callable[[Hashable], float],
    ) -> None:
        demand = _demand(task)
        capacity = state.capacity
        self._demand = demand
        self._base = {name: state.free(name) for name in capacity}
        self._ends = _ends(state, tracker, started)
        # When it fits if nothing were overdue (the first end after which it fits),
        # with what is left then; None if it never fits (more than the capacity).
        self._ready: tuple[float, dict[str, float]] | None = None
        if not any(amount > capacity.get(name, 0.0) + 1e-9 for name, amount in demand):
            free = dict(self._base)
            when = -math.inf
            for end, held in self._ends:
                if end > when and self._fits(free):
                    break
                when = end
                _give_back(free, held)
            self._ready = (when, self._left_from(free))
        # The ends passed so far (those no later than _at) and what is free after them.
        self._position = 0
        self._at = -math.inf
        self._free = dict(self._base)
        self._left: dict[str, float] | None = None

    def _fits(self, free: dict[str, float]) -> bool:
        return all(amount <= free.get(name, 0.0) + 1e-9 for name, amount in self._demand)

    def _left_from(self, free: dict[str, float]) -> dict[str, float]:
        left = dict(free)
        for name, amount in self._demand:
            left[name] -= amount
        return left

    def start(self, now: float) -> tuple[float, dict[str, float]] | None:
        """When the task can start, no earlier than ``now``, and what is left over then;
        ``None`` if it never fits the worker."""
        ready = self._ready
        if ready is None:
            return None
        if now < ready[0]:
            return ready  # it waits for an end still to come: the answer is fixed
        if now < self._at:  # the clock went back: walk again from the start
            self._position = 0
            self._free = dict(self._base)
            self._left = None
        self._at = now
        ends = self._ends
        position = self._position
        while position < len(ends) and ends[position][0] <= now:
            _give_back(self._free, ends[position][1])
            position += 1
            self._left = None
        self._position = position
        if self._left is None:
            self._left = self._left_from(self._free)
        return now, self._left


def _give_back(free: dict[str, float], demand: list[tuple[str, float]]) -> None:
    """A running task ends: its demand is free again (in the resources tracked)."""
    for name, amount in demand:
        if name in free:
            free[name] += amount
