"""The Balancer seam, and the behaviour its strategies share.

- :class:`Balancer`: ``select(task, candidates)`` is the only abstract method;
  the hooks are no-ops a stateful strategy may override.
- :class:`ScoringBalancer`: "the best score wins, ties to the least loaded";
  a strategy only says how to score.
- :class:`RandomizedBalancer`: holds the injected ``random.Random``.
- :class:`DelegatingBalancer`: wraps other balancers and forwards the hooks.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Hashable, Sequence

from taskdist.errors import InvalidTypeError
from taskdist.task import Task
from taskdist.workers.tracker import CapacityTracker, WorkerFilter, WorkerState

__all__ = [
    "Balancer",
    "DelegatingBalancer",
    "RandomizedBalancer",
    "ScoringBalancer",
    "load_per_weight",
]


class Balancer(abc.ABC):
    """Chooses which worker runs a task.

    Subclass it and implement :meth:`select` only::

        class FewestInFlight(Balancer):
            def select(self, task, candidates):
                return min(candidates, key=lambda w: w.in_flight, default=None)

    ``candidates`` come already filtered (by ``CapacityTracker.candidates``,
    and by whatever else the host checks, such as circuit breakers): each is
    available, has the skills and has room. ``select`` returns one of those
    objects, or ``None`` when there are none (never an exception for an
    empty list).

    The hooks let a stateful strategy follow what happens; the base versions
    do nothing, and every built-in strategy stays correct when nobody calls
    them (they only keep its memory tidy or its view exact):

    - ``on_assign(task, worker)`` / ``on_release(task, worker)``: a placement
      was recorded / ended;
    - ``on_worker_added(worker)`` / ``on_worker_removed(worker_id)``:
      membership changed.

    **Choosing from a tracker.** A host with a
    :class:`~taskdist.CapacityTracker` calls :meth:`choose`, which
    is ``select(task, tracker.candidates(task, where))`` unless a strategy
    knows a way that does not list every worker: ``LeastConnections`` asks
    the tracker's load index (O(log n)), ``PowerOfTwoChoices`` draws two
    random candidates (O(1) expected). A subclass that only implements
    ``select`` gets the listing, O(n).

    The base hooks are O(1) no-ops; each strategy states what its ``select``
    and hooks cost.
    """

    __slots__ = ()

    @abc.abstractmethod
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """One of ``candidates`` to run ``task``, or ``None`` if there is none to choose."""

    def choose(
        self, task: Task, tracker: CapacityTracker, where: WorkerFilter | None = None
    ) -> WorkerState | None:
        """A worker for ``task`` among the tracker's candidates that pass ``where``, or ``None``.

        The base version is ``select(task, tracker.candidates(task, where))``:
        O(n r) for the listing plus the cost of ``select``. Strategies that
        can choose without the full list override it with the same answer
        (or, for random ones, the same distribution of answers). ``where``
        must be side-effect free (see
        :data:`~taskdist.workers.tracker.WorkerFilter`).
        """
        return self.select(task, tracker.candidates(task, where))

    # The hooks are optional, hence concrete no-ops rather than abstract (B027).
    def on_assign(self, task: Task, worker: WorkerState) -> None:  # noqa: B027
        """``task`` was placed on ``worker``. Does nothing unless overridden."""

    def on_release(self, task: Task, worker: WorkerState) -> None:  # noqa: B027
        """``task`` left ``worker`` (done, failed or requeued). Does nothing unless overridden."""

    def on_worker_added(self, worker: WorkerState) -> None:  # noqa: B027
        """``worker`` joined the pool. Does nothing unless overridden."""

    def on_worker_removed(self, worker_id: Hashable) -> None:  # noqa: B027
        """The worker with this id left the pool. Does nothing unless overridden."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_balancer(value: object, name: str) -> Balancer:
    """``value`` if it is a :class:`Balancer`, else :class:`~taskdist.errors.InvalidTypeError`."""
    if not isinstance(value, Balancer):
        raise InvalidTypeError(
            f"{name} must be a Balancer (e.g. LeastConnections()), got {value!r}"
        )
    return value


def load_per_weight(worker: WorkerState) -> float:
    """``load_ratio / effective_weight``: how loaded a worker is for the share it should carry.

    The load key of ``LeastConnections`` and ``PowerOfTwoChoices``: a worker
    of weight 2 counts as loaded as one of weight 1 at twice the load ratio.
    O(1).
    """
    return worker.load_ratio / worker.effective_weight


def _load_ratio(worker: WorkerState) -> float:
    return worker.load_ratio


def best_of(
    scores: Sequence[float], candidates: Sequence[WorkerState], *, highest: bool = False
) -> WorkerState:
    """The candidate with the lowest (or ``highest``) score; ties go to the lowest
    ``load_ratio``, then to the earliest candidate.

    Scores must be comparable floats, one per candidate, not NaN; the list
    must not be empty. O(n), in C except when there is a tie.
    """
    best = max(scores) if highest else min(scores)
    if scores.count(best) == 1:
        return candidates[scores.index(best)]
    tied = [worker for worker, score in zip(candidates, scores, strict=True) if score == best]
    return min(tied, key=_load_ratio)


class ScoringBalancer(Balancer):
    """Picks the candidate with the lowest score; ties go to the least loaded, then the earliest.

    A subclass implements :meth:`scores` (all candidates at once, so a score
    may depend on the others, e.g. be normalised against the fastest).
    ``select`` is O(n) plus the cost of ``scores``.
    """

    __slots__ = ()

    @abc.abstractmethod
    def scores(self, task: Task, candidates: Sequence[WorkerState]) -> list[float]:
        """One score per candidate, in order; lower is better."""

    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """The lowest-scored candidate, or ``None`` for an empty list."""
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        return best_of(self.scores(task, candidates), candidates)


class RandomizedBalancer(Balancer):
    """A strategy whose choices are random, drawn from an injectable ``random.Random``.

    The same seed and the same calls give the same choices.
    """

    __slots__ = ("rng",)

    def __init__(self, rng: random.Random | None = None) -> None:
        """
        Args:
            rng: the source of randomness (default: a fresh, unseeded ``random.Random()``).
        """
        if rng is None:
            rng = random.Random()
        elif not isinstance(rng, random.Random):
            raise InvalidTypeError(f"rng must be a random.Random or None, got {rng!r}")
        self.rng = rng
        """The source of randomness."""


class DelegatingBalancer(Balancer):
    """A strategy that hands some decisions to other balancers, and forwards every hook to them.

    Each hook costs O(d) for d wrapped balancers, plus what theirs cost.
    """

    __slots__ = ("_delegates",)

    def __init__(self, *delegates: Balancer) -> None:
        """
        Args:
            delegates: the balancers to forward hooks to.

        Raises:
            InvalidTypeError: one of them is not a Balancer.
        """
        self._delegates = tuple(
            check_balancer(delegate, f"delegates[{i}]") for i, delegate in enumerate(delegates)
        )

    def on_assign(self, task: Task, worker: WorkerState) -> None:
        """Forwarded to the wrapped balancers."""
        for delegate in self._delegates:
            delegate.on_assign(task, worker)

    def on_release(self, task: Task, worker: WorkerState) -> None:
        """Forwarded to the wrapped balancers."""
        for delegate in self._delegates:
            delegate.on_release(task, worker)

    def on_worker_added(self, worker: WorkerState) -> None:
        """Forwarded to the wrapped balancers."""
        for delegate in self._delegates:
            delegate.on_worker_added(worker)

    def on_worker_removed(self, worker_id: Hashable) -> None:
        """Forwarded to the wrapped balancers."""
        for delegate in self._delegates:
            delegate.on_worker_removed(worker_id)
