"""Checkers for the FairScheduler's fairness bounds, and configurations, shared by its
test modules.

:class:`PairLag` watches the dispatches among siblings (tenants of one
scheduler, or the users of one tenant in a nested share) and checks the
pairwise lag bound over every stretch in which two of them stay backlogged;
:class:`LagChecker` drives a scheduler with plain pops and checks that bound,
the tag invariant and prompt entry at every step. :data:`UNRANKED_FAIR` makes
the schedulers that do not rank tasks (``rank`` answers ``None``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping

from taskdist import FairScheduler, ManualClock, PriorityQueue, Task

EPS = 1e-7

# FairSchedulers whose order within a tenant depends on what they hold: queues of a
# factory's making order their tasks as they will (nested schedulers among them, where
# two tasks of one key may even wait in different inner tenants); a tenant_of may split
# one task.tenant; deadline_aware may serve a later task first.
UNRANKED_FAIR: dict[str, Callable[[ManualClock], FairScheduler]] = {
    "inner": lambda clock: FairScheduler(clock, inner=lambda c: PriorityQueue(c)),
    "nested": lambda clock: FairScheduler(
        clock, inner=lambda c, t: FairScheduler(c, tenant_of=lambda t: t.key)
    ),
    "tenant_of": lambda clock: FairScheduler(clock, tenant_of=lambda t: t.key),
    "deadline_aware": lambda clock: FairScheduler(clock, deadline_aware=True),
}


class PairLag:
    """The pairwise lag bound among siblings, checked at every dispatch.

    Over every stretch in which siblings ``i`` and ``j`` both stay backlogged,
    ``|W_i/w_i - W_j/w_j| <= (c_i + lead)/w_i + (c_j + lead)/w_j``, where
    ``W`` is the cost dispatched in the stretch, ``c`` the largest cost
    dispatched in it or last before it, and ``lead`` the extra term
    (``max_lead`` of a deadline-aware scheduler; 0 for plain SFQ).
    """

    def __init__(self, weights: Mapping[Hashable, float], *, lead: float = 0.0) -> None:
        self.weights = weights
        self.lead = lead
        self.last_cost: dict[Hashable, float] = defaultdict(float)
        # (i, j) -> [D, min D, max D, cmax_i, cmax_j] while both are backlogged.
        self.pairs: dict[tuple[Hashable, Hashable], list[float]] = {}
        self.worst = 0.0  # the largest lag seen, over its bound

    def entered(self, member: Hashable, backlogged: list[Hashable]) -> None:
        """``member`` became backlogged while ``backlogged`` were."""
        for other in backlogged:
            if other != member:
                i, j = sorted((member, other), key=repr)
                self.pairs[i, j] = [0.0, 0.0, 0.0, self.last_cost[i], self.last_cost[j]]

    def served(self, member: Hashable, cost: float) -> None:
        self.last_cost[member] = cost
        for (i, j), pair in self.pairs.items():
            if member == i:
                pair[0] += cost / self.weights[i]
                pair[3] = max(pair[3], cost)
            elif member == j:
                pair[0] -= cost / self.weights[j]
                pair[4] = max(pair[4], cost)
            else:
                continue
            pair[1] = min(pair[1], pair[0])
            pair[2] = max(pair[2], pair[0])
            bound = (pair[3] + self.lead) / self.weights[i] + (pair[4] + self.lead) / self.weights[
                j
            ]
            assert pair[2] - pair[1] <= bound + EPS, (i, j, pair, bound)
            self.worst = max(self.worst, (pair[2] - pair[1]) / bound if bound else 0.0)

    def left(self, member: Hashable) -> None:
        """``member`` is no longer backlogged."""
        self.pairs = {k: v for k, v in self.pairs.items() if member not in k}


class LagChecker:
    """Checks the FairScheduler docstring's bounds on a sequence of plain pops.

    - pairwise (1): see :class:`PairLag` (``lead`` is the extra term of a
      deadline-aware scheduler's ``max_lead``);
    - the invariant ``V <= S_i <= V + (c_last_i + lead)/w_i`` for backlogged tenants;
    - prompt entry (3): a tenant entering at the virtual time is served
      before any other tenant is served twice (plain SFQ only: ``lead`` 0).

    With a ``clock``, each pop runs its task on one server: the clock
    advances by its cost and the task is released.
    """

    def __init__(
        self,
        fair: FairScheduler,
        weights: Mapping[Hashable, float],
        *,
        clock: ManualClock | None = None,
        lead: float | None = None,
    ) -> None:
        self.fair = fair
        self.weights = weights
        self.clock = clock
        self.lead = lead
        self.queued: Counter[Hashable] = Counter()
        self.pairs = PairLag(weights, lead=lead or 0.0)
        # entering tenant -> dispatches of each other tenant since it entered.
        self.entering: dict[Hashable, Counter[Hashable]] = {}
        self.finished: list[tuple[Task, float]] = []

    def push(self, tenant: Hashable, tasks: list[Task]) -> None:
        was_idle = self.queued[tenant] == 0
        for task in tasks:
            self.fair.push(task)
        self.queued[tenant] += len(tasks)
        if not was_idle:
            return
        self.pairs.entered(tenant, [t for t in self.weights if self.queued[t]])
        stats = self.fair.stats()
        if self.lead is None and stats.tenants[tenant].virtual_start == stats.virtual_time:
            self.entering[tenant] = Counter()

    def pop(self) -> Task | None:
        task = self.fair.pop()
        if task is None:
            assert not any(self.queued.values()), "a backlogged tenant was not served"
            return None
        served = task.tenant
        self.pairs.served(served, task.cost)
        self.entering.pop(served, None)
        for others in self.entering.values():
            others[served] += 1
            assert others[served] <= 1, "an entering tenant waited for a second round"
        self.queued[served] -= 1
        if not self.queued[served]:
            self.pairs.left(served)
        self.check_invariant()
        if self.clock is not None:
            self.clock.advance(task.cost)
            self.finished.append((task, self.clock.now()))
            self.fair.release(task)
        return task

    def check_invariant(self) -> None:
        stats = self.fair.stats()
        v = stats.virtual_time
        lead = self.lead or 0.0
        for tenant, n in self.queued.items():
            if n:
                s = stats.tenants[tenant].virtual_start
                last = self.pairs.last_cost[tenant]
                assert v - EPS <= s <= v + (last + lead) / self.weights[tenant] + EPS
