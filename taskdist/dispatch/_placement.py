"""Where each task may run: its route and fallback step, its pin, and the breakers.

The Distributor asks :meth:`PlacementRules.of` for a task's worker filter,
balancer and the part of its parking signature these add; everything about
routes, chains and pins lives here, so the dispatch loop stays one loop.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from taskdist.balancing.base import Balancer
from taskdist.dispatch.routing import Pool, Route, Router, Step
from taskdist.task import Task
from taskdist.workers.state import WorkerState

__all__ = ["PlacementRules"]

Filter = Callable[[WorkerState], bool]
Placement = tuple["Filter | None", Balancer, Hashable]


class PlacementRules:
    """Per-task placement: O(1) for a task without routes or pins, O(routes) the first
    time a routed task is seen (its route is then remembered until it finishes)."""

    __slots__ = (
        "_balancer",
        "_base",
        "_breakers",
        "_closed",
        "_filters",
        "_pins",
        "_pools",
        "_router",
        "_where",
        "ever_own",
    )

    def __init__(self, balancer: Balancer, router: Router | None) -> None:
        self._balancer = balancer
        self._router = router
        self._breakers: Filter | None = None
        # Pools the host paused: their workers take nothing new.
        self._closed: list[Pool] = []
        # What every worker must pass: its breaker admits, it is in no paused pool.
        self._base: Filter | None = None
        # task id -> (route index, step index), for routed tasks still live.
        self._where: dict[Hashable, tuple[int, int]] = {}
        # task id -> the worker it waits for.
        self._pins: dict[Hashable, Hashable] = {}
        # task id -> the pool an escalation sent it to (it wins over its route).
        self._pools: dict[Hashable, Pool] = {}
        # (route, step) -> the pool's filter combined with the breakers'.
        self._filters: dict[tuple[int, int], Filter] = {}
        # Whether any task ever had a route, a pin or a pool of its own: until then
        # a finished task has nothing to forget (an attribute, read on the hot path).
        self.ever_own = router is not None

    @property
    def balancer(self) -> Balancer:
        """The distributor's own balancer (tasks without a route-specific one)."""
        return self._balancer

    @property
    def plain(self) -> bool:
        """Whether no task has a route, a pin or a pool of its own (the fast path)."""
        return self._router is None and not self._pins and not self._pools

    def set_breakers(self, breakers: Filter) -> None:
        """From now on, workers must also pass ``breakers`` (their breaker admits)."""
        self._breakers = breakers
        self._rebase()

    def close_pool(self, pool: Pool) -> None:
        """Workers in ``pool`` take no new task until it is reopened. O(paused pools)."""
        if all(pool != closed for closed in self._closed):
            self._closed.append(pool)
            self._rebase()

    def open_pool(self, pool: Pool) -> bool:
        """Reopen a paused pool; ``False`` if it was not paused."""
        if pool not in self._closed:
            return False
        self._closed.remove(pool)
        self._rebase()
        return True

    @property
    def closed_pools(self) -> tuple[Pool, ...]:
        """The paused pools."""
        return tuple(self._closed)

    def _rebase(self) -> None:
        closed = tuple(self._closed)
        open_: Filter | None = None
        if closed:

            def open_(worker: WorkerState) -> bool:
                return not any(pool.admits(worker) for pool in closed)

        self._base = both(open_, self._breakers) if open_ is not None else self._breakers
        self._filters.clear()

    @property
    def breakers(self) -> Filter | None:
        """The breakers' filter alone, or ``None`` without breakers."""
        return self._breakers

    def has_fallbacks(self) -> bool:
        """Whether some route moves a task on to a next step after a wait."""
        return self._router is not None and any(len(r.steps) > 1 for r in self._router.routes)

    def balancers(self) -> list[Balancer]:
        """Every balancer that may place a task, each once (they all hear membership)."""
        found = [self._balancer]
        if self._router is not None:
            found += [b for b in self._router.balancers() if b is not self._balancer]
        return found

    # -- a task's route ---------------------------------------------------------

    def route_of(self, task: Task) -> int | None:
        """The route a new task takes (asks the routes' ``when`` once; changes nothing),
        or ``None``: what :meth:`enter` files once the task is accepted."""
        router = self._router
        return None if router is None else router.route_of(task)

    def enter(self, task: Task, route: int | None) -> None:
        """File an accepted task's route (from :meth:`route_of`). O(1)."""
        if route is not None:
            self._where[task.id] = (route, 0)

    def leave(self, task_id: Hashable) -> None:
        """Forget a finished task's route and pin. O(1)."""
        self._where.pop(task_id, None)
        self._pins.pop(task_id, None)
        self._pools.pop(task_id, None)

    def step_of(self, task_id: Hashable) -> tuple[int, int] | None:
        """``(route, step)`` of a routed task, or ``None``."""
        return self._where.get(task_id)

    def next_step(self, task_id: Hashable) -> Step | None:
        """The step a routed task falls back to next, or ``None`` at the chain's end."""
        where = self._where.get(task_id)
        if where is None or task_id in self._pools:
            return None
        assert self._router is not None
        steps = self._router.routes[where[0]].steps
        return steps[where[1] + 1] if where[1] + 1 < len(steps) else None

    def advance(self, task_id: Hashable) -> bool:
        """Move a routed task to its next step; ``False`` at the chain's end."""
        if self.next_step(task_id) is None:
            return False
        route, step = self._where[task_id]
        self._where[task_id] = (route, step + 1)
        return True

    def routed(self) -> list[tuple[Hashable, int, int]]:
        """``(task id, route, step)`` of every live routed task, in the order routed."""
        return [(task_id, route, step) for task_id, (route, step) in self._where.items()]

    def sent(self) -> list[tuple[Hashable, Pool]]:
        """``(task id, pool)`` of every live task an escalation sent to a pool."""
        return list(self._pools.items())

    def put_on_step(self, task_id: Hashable, route: int, step: int) -> None:
        """Place a restored task on ``step`` of ``route`` (both checked by the caller)."""
        self._where[task_id] = (route, step)

    @property
    def routes(self) -> tuple[Route, ...]:
        """The routes, in order (none without a router)."""
        return () if self._router is None else self._router.routes

    def pin(self, task_id: Hashable, worker_id: Hashable | None) -> None:
        """Make a task wait for one worker (``None``: unpin). O(1)."""
        if worker_id is None:
            self._pins.pop(task_id, None)
        else:
            self._pins[task_id] = worker_id
            self.ever_own = True

    def send(self, task_id: Hashable, pool: Pool) -> None:
        """From now on the task may run only in ``pool`` (an escalation's). O(1)."""
        self._pools[task_id] = pool
        self.ever_own = True

    def pinned(self, task_id: Hashable) -> Hashable | None:
        """The worker a task is pinned to, or ``None``."""
        return self._pins.get(task_id)

    # -- what dispatch asks -------------------------------------------------------

    def of(self, task: Task) -> Placement:
        """``(worker filter, balancer, signature part)`` for ``task``. O(1)."""
        if self._router is None and not self._pins and not self._pools:
            return self._base, self._balancer, None
        task_id = task.id
        where = self._where.get(task_id)
        balancer = self._balancer
        filter_ = self._base
        pool = self._pools.get(task_id)
        if pool is not None:
            filter_ = both(pool.admits, self._base)
            where = None
        elif where is not None:
            assert self._router is not None
            route = self._router.routes[where[0]]
            step = route.steps[where[1]]
            balancer = step.balancer or route.balancer or balancer
            filter_ = self._filters.get(where)
            if filter_ is None:
                filter_ = self._filters[where] = both(step.pool.admits, self._base)
        pin = self._pins.get(task_id)
        if pin is not None:
            filter_ = both(_only(pin), filter_)
        if where is None and pin is None and pool is None:
            return filter_, balancer, None
        return filter_, balancer, (where, pin, pool)

    def without_breakers(self, task: Task) -> Filter | None:
        """The task's filter, breakers left out: does its pool have room, breakers aside?"""
        where = self._where.get(task.id)
        base: Filter | None = None
        pool = self._pools.get(task.id)
        if pool is not None:
            base = pool.admits
        elif where is not None:
            assert self._router is not None
            base = self._router.routes[where[0]].steps[where[1]].pool.admits
        pin = self._pins.get(task.id)
        if pin is not None:
            base = both(_only(pin), base)
        closed = tuple(self._closed)
        if closed:
            base = both(lambda worker: not any(p.admits(worker) for p in closed), base)
        return base

    def describe(self, task_id: Hashable) -> str:
        """The route, step and pin of a task, for ``explain`` (empty if none)."""
        parts = []
        where = self._where.get(task_id)
        pool = self._pools.get(task_id)
        if pool is not None:
            parts.append(f"escalated to pool {pool.label}")
        elif where is not None:
            assert self._router is not None
            pool = self._router.routes[where[0]].steps[where[1]].pool
            parts.append(f"route {self._router.name(where[0])}, pool {pool.label}")
        pin = self._pins.get(task_id)
        if pin is not None:
            parts.append(f"pinned to worker {pin!r}")
        return "; ".join(parts)


def _only(worker_id: Hashable) -> Filter:
    return lambda worker: worker.id == worker_id


def both(first: Filter, second: Filter | None) -> Filter:
    """A filter both must pass (``second`` may be ``None``: ``first`` alone)."""
    if second is None:
        return first
    return lambda worker: first(worker) and second(worker)
