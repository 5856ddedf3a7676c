"""MultiFactor: a weighted sum of factors (skill, availability, performance, cost, your own).

A *factor* scores every candidate at once, in [0, 1], higher is better:
``factor(task, candidates) -> list[float]``. Scoring all candidates together
lets a factor normalise (the cheapest worker scores 1) in one pass. The four
built-in factors are plain functions here, usable in your own combinations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

from taskdist._validate import check_number
from taskdist.balancing.base import Balancer, best_of, check_candidates, check_scores, trusted
from taskdist.errors import InvalidArgumentError, InvalidTypeError
from taskdist.task import Task
from taskdist.workers.tracker import WorkerState

__all__ = [
    "Factor",
    "MultiFactor",
    "availability",
    "cost_efficiency",
    "performance",
    "skill_match",
]

Factor = Callable[[Task, Sequence[WorkerState]], Sequence[float]]
"""Scores every candidate for a task, in order, in [0, 1]; higher is better."""


def skill_match(task: Task, candidates: Sequence[WorkerState]) -> list[float]:
    """Best fit: Jaccard ``len(requires & skills) / len(requires | skills)``; 1.0 if none required.

    A worker with exactly the skills a task needs scores 1; every extra skill
    lowers it, so specialists' rarer skills stay free for the tasks that need
    them. O(n s).
    """
    requires = task.requires
    if not requires:
        return [1.0] * len(candidates)
    return [len(requires & worker.skills) / len(requires | worker.skills) for worker in candidates]


def availability(task: Task, candidates: Sequence[WorkerState]) -> list[float]:
    """``1 - load_ratio`` (clamped to [0, 1]): an idle worker scores 1, a full one 0. O(n)."""
    return [max(0.0, 1.0 - worker.load_ratio) for worker in candidates]


def performance(task: Task, candidates: Sequence[WorkerState]) -> list[float]:
    """``success_rate * fastest_latency / latency``: the fastest reliable worker scores 1.

    Latencies are EWMAs; a worker with none yet counts as the fastest (so
    new workers get tried), and a zero latency likewise. O(n).
    """
    known = [worker.latency for worker in candidates if worker.latency]
    fastest = min(known) if known else 0.0
    return [
        worker.success_rate * (fastest / worker.latency if worker.latency else 1.0)
        for worker in candidates
    ]


def cost_efficiency(task: Task, candidates: Sequence[WorkerState]) -> list[float]:
    """Cheapest 1, dearest 0, linear in ``cost`` between them; 1.0 for all when costs are equal.

    O(n).
    """
    costs = [worker.cost for worker in candidates]
    low, high = min(costs), max(costs)
    if high == low:
        return [1.0] * len(costs)
    return [(high - cost) / (high - low) for cost in costs]


_MAX_FACTOR_WEIGHT: Final = 1e9

_BUILT_IN: dict[str, Factor] = {
    "skill": skill_match,
    "availability": availability,
    "performance": performance,
    "cost": cost_efficiency,
}
_TRUSTED_FACTORS: Final = frozenset(_BUILT_IN.values())


class MultiFactor(Balancer):
    """The candidate with the highest weighted sum of factor scores (the seeds' multi-factor match).

    ``score(w) = skill * skill_match + availability * availability +
    performance * performance + cost * cost_efficiency + sum(weight * custom)``,
    defaults .4 / .3 / .2 / .1 as in the specification. Ties go to the
    least loaded, then the earliest candidate. A weight of 0 switches a
    factor off (it is not computed); weights need not sum to 1.

    Custom factors plug in by name::

        same_zone = lambda task, ws: [1.0 if w.zone == task.zone else 0.0 for w in ws]
        MultiFactor(cost=0.0, factors={"zone": (0.3, same_zone)})

    ``select`` is O(n) per factor (O(n s) for skills). :meth:`scores` shows
    the totals, for explaining a choice.

    **Threads.** Not safe to share between threads (it reads the tracker's live views):
    drive it from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.
    """

    __slots__ = ("_factors",)

    def __init__(
        self,
        skill: float = 0.4,
        availability: float = 0.3,
        performance: float = 0.2,
        cost: float = 0.1,
        *,
        factors: Mapping[str, tuple[float, Factor]] | None = None,
    ) -> None:
        """
        Args:
            skill, availability, performance, cost: weights (0 to 1e9) of the
                built-in factors.
            factors: custom factors, ``{name: (weight, factor)}``: a non-empty
                name, a weight from 0 to 1e9, and a function returning one
                score in [0, 1] per candidate (checked on every call).

        Raises:
            InvalidArgumentError: a weight negative, above 1e9, NaN or infinite;
                all weights 0; a custom name that is empty or a built-in one.
            InvalidTypeError: ``factors`` not a mapping, a name not a str, or a
                custom factor that is not ``(weight, callable)``.
        """
        weighted: list[tuple[str, float, Factor]] = []
        builtin = {
            "skill": skill,
            "availability": availability,
            "performance": performance,
            "cost": cost,
        }
        for name, weight in builtin.items():
            weighted.append((name, _check_weight(weight, name), _BUILT_IN[name]))
        if factors is None:
            factors = {}
        elif not isinstance(factors, Mapping):
            raise InvalidTypeError(
                f"factors must be a mapping of name to (weight, factor), got {factors!r}"
            )
        for name, spec in factors.items():
            if not isinstance(name, str):
                raise InvalidTypeError(f"factor names are str, got {name!r}")
            if not name:
                raise InvalidArgumentError("a factor name must not be empty")
            if name in _BUILT_IN:
                raise InvalidArgumentError(
                    f"factors[{name!r}] clashes with the built-in factor; set {name}= instead"
                )
            if not (isinstance(spec, tuple) and len(spec) == 2 and callable(spec[1])):
                raise InvalidTypeError(
                    f"factors[{name!r}] must be (weight, factor(task, candidates)), got {spec!r}"
                )
            weighted.append((name, _check_weight(spec[0], f"factors[{name!r}]"), spec[1]))
        if not any(weight > 0 for _, weight, _ in weighted):
            raise InvalidArgumentError("at least one factor weight must be > 0, all are 0")
        self._factors = [(name, weight, factor) for name, weight, factor in weighted if weight > 0]

    @property
    def weights(self) -> dict[str, float]:
        """The weight of each factor in use, by name."""
        return {name: weight for name, weight, _ in self._factors}

    def scores(self, task: Task, candidates: Sequence[WorkerState]) -> list[float]:
        """The weighted sum per candidate, in order; higher is better.

        Raises:
            InvalidTypeError: a candidate is not a ``WorkerState``, or a
                factor returned something other than numbers.
            InvalidArgumentError: a factor returned the wrong number of
                scores, or a NaN, infinite or out-of-[0, 1] one (named in the
                message).
        """
        candidates = check_candidates(candidates)
        count = len(candidates)
        totals = [0.0] * count
        for name, weight, factor in self._factors:
            values = factor(task, candidates)
            if factor not in _TRUSTED_FACTORS:  # the built-in ones score in [0, 1] by design
                values = check_scores(values, count, f"factor {name!r}", unit=True)
            totals = [total + weight * value for total, value in zip(totals, values, strict=True)]
        return totals

    @trusted
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """The highest-scoring candidate, or ``None`` for an empty list."""
        candidates = check_candidates(candidates)
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        return best_of(self.scores(task, candidates), candidates, highest=True)

    def __repr__(self) -> str:
        weights = ", ".join(f"{name}={weight:g}" for name, weight, _ in self._factors)
        return f"MultiFactor({weights})"


def _check_weight(value: object, name: str) -> float:
    """A factor's weight: 0 (off) to 1e9; scores are in [0, 1], so totals stay finite."""
    return check_number(value, name, minimum=0.0, maximum=_MAX_FACTOR_WEIGHT)
