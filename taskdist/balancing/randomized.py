"""Random strategies: RandomBalancer (weighted) and PowerOfTwoChoices."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from taskdist._snapshot import Fields
from taskdist.balancing.base import RandomizedBalancer, check_candidates, load_per_weight, trusted
from taskdist.errors import InvalidTypeError
from taskdist.task import Task
from taskdist.workers.state import CandidateList
from taskdist.workers.tracker import CapacityTracker, WorkerFilter, WorkerState

__all__ = ["PowerOfTwoChoices", "RandomBalancer"]


class RandomBalancer(RandomizedBalancer):
    """A random candidate, with probability proportional to ``effective_weight``.

    With ``weighted=False`` every candidate is equally likely. Choices come
    from the injected ``rng``, so a seeded ``random.Random`` replays them.
    ``select`` is O(n) weighted (one pass to accumulate weights), O(1)
    unweighted.

    **Snapshot.** :meth:`snapshot` holds the random source's state and
    ``weighted``, ``{"kind": "RandomBalancer", "version": 1, "rng": [...],
    "weighted": bool}``; :meth:`load_snapshot` needs a ``RandomBalancer``
    with the same ``weighted`` and sets its ``rng`` to the state, so the
    draws go on from there.

    **Threads.** Not safe to share between threads (``rng`` is shared state): drive it
    from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.

    >>> import random
    >>> from taskdist import CapacityTracker, ManualClock, Task, Worker
    >>> tracker = CapacityTracker(ManualClock())
    >>> for name in "abc":
    ...     _ = tracker.add_worker(Worker(name, capacity=10))
    >>> pool = tracker.candidates(Task("t"))
    >>> one = [RandomBalancer(random.Random(7)).select(Task("t"), pool).id for _ in range(2)]
    >>> one[0] == one[1]  # same seed, same choice
    True
    """

    __slots__ = ("weighted",)

    def __init__(self, rng: random.Random | None = None, *, weighted: bool = True) -> None:
        """
        Args:
            rng: the source of randomness (default: a fresh ``random.Random()``).
            weighted: pick in proportion to ``effective_weight`` (else uniformly).
        """
        if not isinstance(weighted, bool):
            raise InvalidTypeError(f"weighted must be a bool, got {weighted!r}")
        super().__init__(rng)
        self.weighted = weighted

    @trusted
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """A random candidate, or ``None`` for an empty list."""
        candidates = check_candidates(candidates)
        count = len(candidates)
        if count < 2:
            return candidates[0] if count else None
        if not self.weighted:
            return candidates[self.rng.randrange(count)]
        weights = [worker.effective_weight for worker in candidates]
        return self.rng.choices(candidates, weights)[0]

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "weighted": self.weighted}

    def _read_fields(self, fields: Fields, where: str) -> Callable[[], None]:
        fields.same("weighted", self.weighted, "RandomBalancer")
        return super()._read_fields(fields, where)

    def __repr__(self) -> str:
        return f"RandomBalancer(weighted={self.weighted!r})"


class PowerOfTwoChoices(RandomizedBalancer):
    """Two distinct random candidates; the less loaded of them wins (Envoy's least request).

    "Less loaded" is the lower ``load_ratio / effective_weight`` (ties: the
    first drawn). Sampling two instead of scanning all makes ``select`` O(1)
    in the number of workers, yet the balance is close to least-connections:
    with n workers and n tasks placed one by one, the most loaded worker has
    ``ln ln n / ln 2 + O(1)`` tasks, against ``ln n / ln ln n`` for one random
    choice (Azar et al., "Balanced allocations", 1994).

    :meth:`choose` draws the two from the tracker directly (see
    :meth:`CapacityTracker.sample <taskdist.workers.tracker.CapacityTracker.sample>`),
    so a placement is O(1) expected in the number of workers, not O(n) for
    listing the candidates first.

    **Snapshot.** :meth:`snapshot` holds the random source's state,
    ``{"kind": "PowerOfTwoChoices", "version": 1, "rng": [...]}``, and
    :meth:`load_snapshot` sets its ``rng`` to it, so the draws go on from
    there. O(1).

    **Threads.** Not safe to share between threads (``rng`` is shared state): drive it
    from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.
    """

    __slots__ = ()

    @trusted
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """The less loaded of two random candidates, or ``None`` for an empty list. O(1)."""
        if type(candidates) is not CandidateList or not candidates._vouched:
            candidates = check_candidates(candidates)  # inlined for the tracker's own lists
        count = len(candidates)
        if count < 2:
            return candidates[0] if count else None
        draw = self.rng.randrange
        first = draw(count)
        second = draw(count - 1)
        if second >= first:
            second += 1
        a, b = candidates[first], candidates[second]
        return b if load_per_weight(b) < load_per_weight(a) else a

    @trusted
    def choose(
        self, task: Task, tracker: CapacityTracker, where: WorkerFilter | None = None
    ) -> WorkerState | None:
        """The less loaded of two candidates drawn by ``tracker.sample``. O(1) expected.

        Each pair of distinct candidates is as likely as with ``select`` over
        ``tracker.candidates(task, where)``; the draws themselves differ, so
        a seeded ``rng`` replays ``choose`` and ``select`` separately. A
        subclass that overrides ``select`` gets the listing instead (O(n r)),
        so its own choice is the one made. If ``where`` raises (a refused
        call back into the tracker included), the draws made before it
        stay drawn.
        """
        if type(self).select is not PowerOfTwoChoices.select:
            return super().choose(task, tracker, where)
        pair = tracker.sample(task, 2, self.rng, where)
        if len(pair) < 2:
            return pair[0] if pair else None
        a, b = pair
        return b if load_per_weight(b) < load_per_weight(a) else a
