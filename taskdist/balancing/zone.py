"""ZoneAware: prefer workers in the task's zone, spill over to others by policy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from taskdist._validate import check_choice, check_number
from taskdist.balancing.base import (
    Balancer,
    DelegatingBalancer,
    check_balancer,
    check_candidates,
    checked_choose,
    checked_select,
    trusted,
)
from taskdist.balancing.least_load import LeastConnections
from taskdist.errors import InvalidArgumentError, InvalidTypeError
from taskdist.task import Task
from taskdist.workers.health import Health
from taskdist.workers.state import CandidateList
from taskdist.workers.tracker import CapacityTracker, WorkerFilter, WorkerState

__all__ = ["Spill", "ZoneAware"]

Spill = Literal["when_empty", "when_loaded", "never"]
"""The ``spill=`` of :class:`ZoneAware`: when a task may leave its zone (see the class)."""
_SPILL_POLICIES: tuple[Spill, ...] = ("when_empty", "when_loaded", "never")


class ZoneAware(DelegatingBalancer):
    """Keeps a task in its zone (``task.zone``, else ``zone=``) and lets ``inner`` choose there.

    The local candidates are those whose ``zone`` equals the task's. ``inner``
    chooses among them; whether it may choose among *all* candidates
    instead (spill over) is the ``spill`` policy:

    - ``"when_empty"`` (default): only when no local candidate is left;
    - ``"when_loaded"``: also when every local candidate's ``load_ratio`` is
      ``>= threshold``, so a busy zone sheds work before it is full;
    - ``"never"``: return ``None`` rather than leave the zone.

    A task with no zone (and no ``zone=`` default) is placed by ``inner``
    among all candidates. ``select`` is O(n) plus ``inner``'s cost;
    :meth:`choose` (except with ``"when_loaded"``) lets ``inner`` choose from
    the tracker with a zone filter, so over ``LeastConnections`` it is
    O(log n) plus the workers passed over (those of other zones among them).

    **Snapshot.** It keeps nothing of its own; :meth:`snapshot` holds the
    inner balancer's state, ``{"kind": "ZoneAware", "version": 1,
    "delegates": [inner's state]}`` (``None`` for an inner balancer without
    snapshot support, such as the default ``LeastConnections``), and
    :meth:`load_snapshot` loads it into an inner balancer of the same class.

    **Threads.** Not safe to share between threads: drive it from one thread, behind a
    lock of your own, or through the ``taskdist.threaded.ThreadSafeDistributor``.

    >>> from taskdist import CapacityTracker, ManualClock, Task, Worker
    >>> tracker = CapacityTracker(ManualClock())
    >>> _ = tracker.add_worker(Worker("us-1", zone="us"))
    >>> _ = tracker.add_worker(Worker("eu-1", zone="eu"))
    >>> ZoneAware().select(Task("t", zone="eu"), tracker.candidates(Task("t"))).id
    'eu-1'
    """

    __slots__ = ("_inner", "_spill", "_threshold", "_zone")

    def __init__(
        self,
        inner: Balancer | None = None,
        *,
        spill: Spill = "when_empty",
        threshold: float = 0.8,
        zone: str | None = None,
    ) -> None:
        """
        Args:
            inner: chooses within the allowed workers (default: ``LeastConnections()``).
            spill: ``"when_empty"``, ``"when_loaded"`` or ``"never"``.
            threshold: load ratio in [0, 1] at which ``"when_loaded"`` spills over.
            zone: the zone of tasks that name none (the host's own zone), or ``None``.
        """
        inner = LeastConnections() if inner is None else check_balancer(inner, "inner")
        super().__init__(inner)
        self._inner = inner
        if not isinstance(spill, str):
            raise InvalidTypeError(f"spill must be a policy name (str), got {spill!r}")
        self._spill = check_choice(spill, "spill", _SPILL_POLICIES)
        self._threshold = check_number(threshold, "threshold", minimum=0.0, maximum=1.0)
        if zone is not None and not isinstance(zone, str):
            raise InvalidTypeError(f"zone must be a str or None, got {zone!r}")
        if zone == "":
            raise InvalidArgumentError("zone must be a non-empty zone name or None, got ''")
        self._zone = zone

    @property
    def inner(self) -> Balancer:
        """The balancer that chooses within the allowed workers."""
        return self._inner

    @trusted
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """The inner balancer's choice among the local candidates, or beyond them per ``spill``.

        Raises:
            InvalidTypeError, InvalidArgumentError: a candidate is not a
                ``WorkerState``, or ``inner`` chose something that is not one
                of the candidates it was given.
        """
        candidates = check_candidates(candidates)
        inner = self._inner
        zone = task.zone if task.zone is not None else self._zone
        if zone is None or not candidates:
            return checked_select(inner, task, candidates)
        # Made of checked candidates, so inner need not check them again.
        local = CandidateList([worker for worker in candidates if worker.zone == zone])
        if local:
            if self._spill == "when_loaded" and all(
                worker.load_ratio >= self._threshold for worker in local
            ):
                return checked_select(inner, task, candidates)
            return checked_select(inner, task, local)
        if self._spill == "never":
            return None
        return checked_select(inner, task, candidates)

    @trusted
    def choose(
        self, task: Task, tracker: CapacityTracker, where: WorkerFilter | None = None
    ) -> WorkerState | None:
        """``select``'s answer over ``tracker.candidates(task, where)``, through ``inner.choose``.

        The inner balancer chooses from the tracker among the task's zone,
        then (per ``spill``) among all. ``"when_loaded"`` must see every
        local candidate's load, so it lists them: O(n r).
        """
        zone = task.zone if task.zone is not None else self._zone
        if zone is None:
            return checked_choose(self._inner, task, tracker, where)
        if self._spill == "when_loaded":
            return super().choose(task, tracker, where)

        def local(worker: WorkerState) -> bool:
            return worker.zone == zone and (where is None or where(worker))

        chosen = checked_choose(self._inner, task, tracker, local)
        if (
            chosen is not None
            and chosen.health is Health.DEGRADED
            and tracker.degraded == "fallback"
        ):
            # The tracker fell back to a degraded local worker, but select() sees
            # degraded workers only when no healthy one qualifies in any zone; if
            # one does, the zone has no candidate and the task spills over. (Rare:
            # the listing is affordable here.)
            listed = tracker.candidates(task, where)
            if listed and listed[0].health is Health.HEALTHY:
                chosen = None
        if chosen is not None or self._spill == "never":
            return chosen
        return checked_choose(self._inner, task, tracker, where)

    def __repr__(self) -> str:
        return f"ZoneAware(inner={self._inner!r}, spill={self._spill!r}, zone={self._zone!r})"
