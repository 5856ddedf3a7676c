"""The Balancer seam, and the behaviour its strategies share.

- :class:`Balancer`: ``select(task, candidates)`` is the only abstract method;
  the hooks are no-ops a stateful strategy may override.
- :class:`ScoringBalancer`: "the best score wins, ties to the least loaded";
  a strategy only says how to score.
- :class:`RandomizedBalancer`: holds the injected ``random.Random``.
- :class:`DelegatingBalancer`: wraps other balancers and forwards the hooks.

Both carry their state in a snapshot (``snapshot()`` / ``load_snapshot()``,
see :mod:`taskdist.balancing._state`): the random source's, and the wrapped
balancers' states.

And the checks at the seam, so that what a user's code hands the library,
or a balancer hands its caller, is what the contract says:
:func:`check_candidates` (what ``select`` is given), :func:`checked_select`
and :func:`checked_choose` (what a balancer returns), :func:`check_scores`
(what ``scores()`` returns). Built-in implementations whose results are
right by construction are marked :func:`trusted` and not checked again.
"""

from __future__ import annotations

import abc
import math
import random
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from taskdist._snapshot import Fields, decode_rng, encode_rng, refuse
from taskdist.balancing._state import Snapshotted, prepare_state, state_of
from taskdist.errors import InvalidArgumentError, InvalidTypeError
from taskdist.task import Task
from taskdist.workers.state import CandidateList
from taskdist.workers.tracker import CapacityTracker, WorkerFilter, WorkerState

__all__ = [
    "Balancer",
    "DelegatingBalancer",
    "RandomizedBalancer",
    "ScoringBalancer",
    "load_per_weight",
]

_F = TypeVar("_F", bound=Callable[..., Any])
# The built-in select / choose / scores functions whose results need no check.
_TRUSTED: set[object] = set()


def trusted(function: _F) -> _F:
    """Mark a built-in ``select``, ``choose`` or ``scores`` whose results are right by
    construction (one of the candidates, a tracker's candidate, finite scores), so the
    seams do not check them again.

    A subclass that overrides the method gets the checks back: the mark is on
    the function, not the class.
    """
    _TRUSTED.add(function)
    return function


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

    **What crosses the seam is checked.** Every built-in ``select`` refuses
    candidates that are not ``WorkerState`` views with
    :class:`~taskdist.errors.InvalidTypeError` (O(1) for the list
    ``tracker.candidates`` returns, O(n) for any other sequence), and
    :meth:`choose` refuses a ``select`` that returns something other than
    one of the candidates or ``None`` (``InvalidTypeError`` for a
    non-``WorkerState``, :class:`~taskdist.errors.InvalidArgumentError` for
    a view that is not a candidate). A refused call changes nothing in the
    tracker or in a built-in balancer.

    **Threads.** Balancers are not safe to share between threads (most keep
    state between calls, and all read the tracker's live views): drive them
    from one thread, behind your own lock, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.

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
        O(n r) for the listing plus the cost of ``select``, and O(n) in C to
        check that ``select`` returned one of the listed candidates.
        Strategies that can choose without the full list override it with
        the same answer (or, for random ones, the same distribution of
        answers). ``where`` must be side-effect free (see
        :data:`~taskdist.workers.tracker.WorkerFilter`).

        Raises:
            InvalidTypeError: ``select`` returned something that is not a
                ``WorkerState`` (nor ``None``).
            InvalidArgumentError: ``select`` returned a view that is not one
                of the candidates.
        """
        return checked_select(self, task, tracker.candidates(task, where))

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


trusted(Balancer.choose)  # it checks what select() returns itself


def check_candidates(candidates: object) -> Sequence[WorkerState]:
    """``candidates`` if it is a sequence of ``WorkerState`` views, else
    :class:`~taskdist.errors.InvalidTypeError`.

    O(1) for a list ``CapacityTracker.candidates`` made (and nobody added
    to); O(n) for any other sequence.
    """
    if type(candidates) is CandidateList and candidates._vouched:
        return candidates
    if not isinstance(candidates, Sequence) or isinstance(candidates, (str, bytes)):
        raise InvalidTypeError(
            f"candidates must be a sequence of WorkerState (tracker.candidates(task)), "
            f"got {type(candidates).__name__} {candidates!r:.80}"
        )
    for candidate in candidates:
        if type(candidate) is not WorkerState:
            raise InvalidTypeError(
                "candidates must be WorkerState views from a CapacityTracker "
                f"(tracker.candidates(task)), got {type(candidate).__name__} {candidate!r:.80}"
            )
    return candidates


def _check_chosen(chosen: object, source: object) -> WorkerState | None:
    """``chosen`` if it is ``None`` or a ``WorkerState``, else InvalidTypeError."""
    if chosen is None or type(chosen) is WorkerState:
        return chosen
    raise InvalidTypeError(
        f"{source} must return one of the candidates (a WorkerState) or None, "
        f"got {type(chosen).__name__} {chosen!r:.80}"
    )


def checked_select(
    balancer: Balancer, task: Task, candidates: Sequence[WorkerState]
) -> WorkerState | None:
    """``balancer.select(task, candidates)``, refused unless it is one of ``candidates``
    (the same object) or ``None``.

    O(n) in C for the membership test, plus the cost of ``select``; nothing for
    a built-in ``select``, which returns one of them by construction.

    Raises:
        InvalidTypeError: the result is not a ``WorkerState`` (nor ``None``).
        InvalidArgumentError: it is a view, but not one of ``candidates``.
    """
    if type(balancer).select in _TRUSTED:  # a built-in select: one of them by construction
        return balancer.select(task, candidates)
    source = f"{type(balancer).__name__}.select()"
    chosen = _check_chosen(balancer.select(task, candidates), source)
    # Views compare by identity, so `in` is an identity test, in C.
    if chosen is not None and chosen not in candidates:
        raise InvalidArgumentError(
            f"{source} returned worker {chosen.id!r}, which is not one of the "
            f"{len(candidates)} candidates it was given"
        )
    return chosen


def trusts_choice(balancer: Balancer) -> bool:
    """Whether ``balancer.choose`` answers with a candidate by construction (a built-in
    ``choose``, or the base one, which checks ``select``), so a caller need not check. O(1)."""
    return type(balancer).choose in _TRUSTED


def hears_nothing(balancer: Balancer) -> bool:
    """Whether ``balancer``'s ``on_assign`` and ``on_release`` are the base's no-ops, so
    a caller may skip them. O(1)."""
    cls = type(balancer)
    own = getattr(balancer, "__dict__", {})  # hooks set on the instance count too
    return (
        cls.on_assign is Balancer.on_assign
        and cls.on_release is Balancer.on_release
        and "on_assign" not in own
        and "on_release" not in own
    )


def checked_choose(
    balancer: Balancer,
    task: Task,
    tracker: CapacityTracker,
    where: WorkerFilter | None = None,
) -> WorkerState | None:
    """``balancer.choose(task, tracker, where)``, refused unless it is a candidate of
    ``tracker`` for ``task`` (as ``tracker.is_candidate`` says) or ``None``.

    A ``choose`` the library trusts (the base one, which checks ``select``
    itself, and the built-in strategies') is not checked again; any other
    costs one ``is_candidate``, O(r).

    Raises:
        InvalidTypeError: the result is not a ``WorkerState`` (nor ``None``).
        InvalidArgumentError: it is a view, but not a candidate of the tracker.
    """
    chosen = balancer.choose(task, tracker, where)
    if trusts_choice(balancer):
        return chosen
    source = f"{type(balancer).__name__}.choose()"
    chosen = _check_chosen(chosen, source)
    if chosen is not None and not (
        chosen.id in tracker
        and tracker.worker(chosen.id) is chosen
        and tracker.is_candidate(task, chosen.id, where)
    ):
        raise InvalidArgumentError(
            f"{source} returned worker {chosen.id!r}, which is not a candidate "
            f"of the tracker for task {task.id!r}"
        )
    return chosen


def check_scores(scores: object, count: int, source: str, *, unit: bool = False) -> Sequence[float]:
    """``scores`` if it holds ``count`` numbers, none NaN (and, with ``unit``, each in [0, 1]).

    Infinities are allowed unless ``unit`` (``-inf`` is a fair score for
    "room for any number of tasks like this"). O(n) in C.

    Raises:
        InvalidTypeError: not a sequence, or a value that is not a real number.
        InvalidArgumentError: the wrong number of values, a NaN, or (with
            ``unit``) a value outside [0, 1] or infinite.
    """
    if not isinstance(scores, Sequence) or isinstance(scores, (str, bytes)):
        raise InvalidTypeError(
            f"{source} must return a sequence of {count} numbers, got {scores!r:.80}"
        )
    if len(scores) != count:
        raise InvalidArgumentError(f"{source} returned {len(scores)} scores for {count} candidates")
    try:
        finite = math.isfinite(sum(scores))  # one C pass; NaN and inf - inf give NaN
    except TypeError:
        raise InvalidTypeError(f"{source} returned a score that is not a real number") from None
    except OverflowError:  # an int too large for a float: finite, but not as a float
        finite = False
    if not finite:
        if unit:
            raise InvalidArgumentError(
                f"{source} returned a NaN or infinite score (or one too large for a float)"
            )
        if any(score != score for score in scores):  # (math.isnan overflows on huge ints)
            raise InvalidArgumentError(f"{source} returned a NaN score")
    if unit and (min(scores) < 0.0 or max(scores) > 1.0):
        raise InvalidArgumentError(f"{source} returned a score outside [0, 1]")
    return scores


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
    ``select`` is O(n) plus the cost of ``scores``. What a subclass's
    ``scores`` returns is checked (:func:`check_scores`: one number per
    candidate, none NaN; an infinity is a fair score), in O(n) in C.

    **Threads.** Not safe to share between threads (it reads the tracker's live views):
    drive it from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.
    """

    __slots__ = ()

    @abc.abstractmethod
    def scores(self, task: Task, candidates: Sequence[WorkerState]) -> list[float]:
        """One score per candidate, in order; lower is better."""

    @trusted
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """The lowest-scored candidate, or ``None`` for an empty list.

        Raises:
            InvalidTypeError: a candidate is not a ``WorkerState``, or
                ``scores`` returned something other than numbers.
            InvalidArgumentError: ``scores`` returned the wrong number of
                values, or a NaN.
        """
        candidates = check_candidates(candidates)
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        scores: Sequence[float] = self.scores(task, candidates)
        if type(self).scores not in _TRUSTED:
            scores = check_scores(scores, len(candidates), f"{type(self).__name__}.scores()")
        return best_of(scores, candidates)


class RandomizedBalancer(Snapshotted, Balancer):
    """A strategy whose choices are random, drawn from an injectable ``random.Random``.

    The same seed and the same calls give the same choices. :meth:`snapshot`
    holds the random source's state, ``{"kind": <class name>, "version": 1,
    "rng": [version, [ints], gauss]}`` (``random.Random.getstate()`` as
    lists), and :meth:`load_snapshot` sets it, so the draws go on from
    there. O(1) (625 ints).

    **Threads.** Not safe to share between threads (``rng`` is shared state): drive it
    from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.
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

    def _fields(self) -> dict[str, Any]:
        return {"rng": encode_rng(self.rng)}

    def _read_fields(self, fields: Fields, where: str) -> Callable[[], None]:
        state = decode_rng(fields.value("rng"), f"{where}.rng")
        rng = self.rng
        return lambda: rng.setstate(state)


class DelegatingBalancer(Snapshotted, Balancer):
    """A strategy that hands some decisions to other balancers, and forwards every hook to them.

    Each hook costs O(d) for d wrapped balancers, plus what theirs cost.
    :meth:`snapshot` holds the wrapped balancers' states, in order,
    ``{"kind": <class name>, "version": 1, "delegates": [state, ...]}``: each
    one's own snapshot, ``None`` for one without snapshot support (or
    ``{"rng": ...}`` when it has a ``random.Random`` in ``rng``);
    :meth:`load_snapshot` loads each into the balancer wrapped at the same
    place, after checking that every one fits.

    **Threads.** Not safe to share between threads: drive it from one thread, behind a
    lock of your own, or through the ``taskdist.threaded.ThreadSafeDistributor``.
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

    def _fields(self) -> dict[str, Any]:
        return {"delegates": [state_of(delegate) for delegate in self._delegates]}

    def _read_fields(self, fields: Fields, where: str) -> Callable[[], None]:
        states = fields.items("delegates")
        if len(states) != len(self._delegates):
            refuse(
                f"{where}.delegates",
                f"holds {len(states)} states; this {type(self).__name__} wraps "
                f"{len(self._delegates)} balancers",
            )
        loads = [
            prepare_state(delegate, state, f"{where}.delegates[{i}]")
            for i, (delegate, state) in enumerate(zip(self._delegates, states, strict=True))
        ]

        def load() -> None:
            for load_one in loads:
                load_one()

        return load
