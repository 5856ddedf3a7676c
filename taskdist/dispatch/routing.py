"""Routing rules: which workers, and which balancer, a task may use; fallback chains.

A :class:`Route` is data: a predicate on the task and a target, a
:class:`Pool` of workers (by skill, zone, explicit ids or a filter) or a
chain of :class:`Step` s. The :class:`~taskdist.Distributor` takes an
ordered list; the first route whose ``when`` matches a task decides where it
may run, and a route with ``when=None`` catches the rest. A chain moves a task
to its next step when the step ahead has had no capacity for it for longer
than the next step's ``after``, or at once when every breaker in its pool is
open.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import attrs

from taskdist._validate import check_number
from taskdist.balancing.base import Balancer
from taskdist.errors import InvalidArgumentError, InvalidTypeError
from taskdist.task import Task
from taskdist.workers.state import WorkerState
from taskdist.workers.tracker import WorkerFilter

__all__ = ["Pool", "Route", "Step"]


def _skills(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise InvalidTypeError(f"Pool.skills must be a set of skills, got the str {value!r}")
    return frozenset(value)


def _ids(value: Iterable[Hashable] | None) -> frozenset[Hashable] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise InvalidTypeError(f"Pool.workers must be a set of worker ids, got the str {value!r}")
    return frozenset(value)


@attrs.frozen
class Pool:
    """Which workers a route may use: every condition given must hold. O(1) per check.

    ``Pool()`` is every worker; ``Pool(skills={"gpu"})`` the workers with that
    skill; ``Pool(zone="eu")``; ``Pool(workers={"w1", "w2"})``; ``where`` any
    side-effect-free test of a :class:`~taskdist.WorkerState`.

    >>> Pool("gpu", skills={"gpu"})
    Pool(name='gpu', skills=frozenset({'gpu'}), zone=None, workers=None, where=None)
    """

    name: str | None = None
    skills: frozenset[str] = attrs.field(default=frozenset(), converter=_skills)
    zone: str | None = None
    workers: frozenset[Hashable] | None = attrs.field(default=None, converter=_ids)
    where: WorkerFilter | None = None

    def __attrs_post_init__(self) -> None:
        if self.where is not None and not callable(self.where):
            raise InvalidTypeError(f"Pool.where must be callable, got {self.where!r}")

    def admits(self, worker: WorkerState) -> bool:
        """Whether ``worker`` is in the pool. O(len(skills))."""
        if self.skills and not self.skills <= worker.skills:
            return False
        if self.zone is not None and worker.zone != self.zone:
            return False
        if self.workers is not None and worker.id not in self.workers:
            return False
        return self.where is None or bool(self.where(worker))

    @property
    def label(self) -> str:
        """How ``explain`` names the pool."""
        if self.name is not None:
            return repr(self.name)
        parts = []
        if self.skills:
            parts.append("skills " + ", ".join(sorted(map(repr, self.skills))))
        if self.zone is not None:
            parts.append(f"zone {self.zone!r}")
        if self.workers is not None:
            parts.append(f"{len(self.workers)} named workers")
        return "of " + "; ".join(parts) if parts else "of every worker"


@attrs.frozen
class Step:
    """One link of a fallback chain: a pool (and optionally its balancer), entered
    once the previous step has had no capacity for the task for ``after`` seconds."""

    pool: Pool
    after: float = 0.0
    balancer: Balancer | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.pool, Pool):
            raise InvalidTypeError(f"Step.pool must be a Pool, got {self.pool!r}")
        object.__setattr__(self, "after", check_number(self.after, "Step.after", minimum=0.0))
        if self.balancer is not None and not isinstance(self.balancer, Balancer):
            raise InvalidTypeError(f"Step.balancer must be a Balancer, got {self.balancer!r}")


def _steps(to: Any) -> tuple[Step, ...]:
    if isinstance(to, Pool):
        return (Step(to),)
    if isinstance(to, Step):
        return (to,)
    if isinstance(to, Sequence) and not isinstance(to, str):
        steps = tuple(item if isinstance(item, Step) else Step(item) for item in to)
        if not steps:
            raise InvalidArgumentError("Route.to must name at least one pool")
        return steps
    raise InvalidTypeError(f"Route.to must be a Pool, a Step or a sequence of them, got {to!r}")


@attrs.frozen
class Route:
    """A routing rule: tasks for which ``when`` holds go to ``to``.

    ``to`` is a :class:`Pool`, or a fallback chain of pools / :class:`Step`
    s; ``balancer`` (optional) places the route's tasks instead of the
    distributor's (a step's own balancer wins over it). ``when=None`` matches
    every task: the default route. ``name`` is how ``explain`` and events
    name the rule (default: its position in the list).

    >>> gpu = Route(when=lambda t: "gpu" in t.requires, name="gpu",
    ...             to=[Pool("gpu", skills={"gpu"}), Step(Pool("cpu"), after=30.0)])
    >>> [step.pool.name for step in gpu.steps], gpu.steps[1].after
    (['gpu', 'cpu'], 30.0)
    """

    to: Pool | Step | Sequence[Pool | Step]
    when: Callable[[Task], bool] | None = None
    balancer: Balancer | None = None
    name: str | None = None
    steps: tuple[Step, ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.when is not None and not callable(self.when):
            raise InvalidTypeError(f"Route.when must be callable or None, got {self.when!r}")
        if self.balancer is not None and not isinstance(self.balancer, Balancer):
            raise InvalidTypeError(f"Route.balancer must be a Balancer, got {self.balancer!r}")
        object.__setattr__(self, "steps", _steps(self.to))

    def matches(self, task: Task) -> bool:
        """Whether this rule takes ``task`` (``when`` is asked; ``None`` matches all). O(1)
        plus ``when``."""
        return self.when is None or bool(self.when(task))


class Router:
    """The ordered routes of a distributor: the first that matches a task decides.

    ``route_of(task)`` is O(routes) calls of ``when``; a task no route
    matches may use every worker with the distributor's balancer (add a
    ``Route(Pool())`` last to make that explicit).
    """

    __slots__ = ("_names", "_routes")

    def __init__(self, routes: Iterable[Route]) -> None:
        listed = list(routes)
        for route in listed:
            if not isinstance(route, Route):
                raise InvalidTypeError(f"routes must be Route objects, got {route!r}")
        self._routes = tuple(listed)
        self._names = tuple(
            repr(route.name) if route.name is not None else f"#{index}"
            for index, route in enumerate(self._routes)
        )

    @property
    def routes(self) -> tuple[Route, ...]:
        """The rules, in the order they are tried."""
        return self._routes

    def route_of(self, task: Task) -> int | None:
        """The index of the first route that matches ``task``, or ``None``."""
        for index, route in enumerate(self._routes):
            if route.matches(task):
                return index
        return None

    def name(self, index: int) -> str:
        """How ``explain`` names route ``index``: its name quoted, else ``#index``."""
        return self._names[index]

    def balancers(self) -> list[Balancer]:
        """Every balancer the routes name, each once, in order."""
        seen: dict[int, Balancer] = {}
        for route in self._routes:
            for balancer in (route.balancer, *(step.balancer for step in route.steps)):
                if balancer is not None:
                    seen.setdefault(id(balancer), balancer)
        return list(seen.values())

    def __len__(self) -> int:
        return len(self._routes)
