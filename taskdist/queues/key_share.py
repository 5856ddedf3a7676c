"""KeyShare: a FairScheduler's ``inner=`` that shares each tenant's turns among its keys."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from taskdist.clock import Clock, ManualClock
from taskdist.queues.quota import Quota
from taskdist.task import Task

if TYPE_CHECKING:  # fair.py imports this module: the class is read when a scheduler is made
    from taskdist.queues.fair import FairScheduler

__all__ = ["KeyShare"]


def _task_key(task: Task) -> Hashable:
    """``task.key``: what a tenant is for the schedulers a :class:`KeyShare` makes."""
    return task.key


class KeyShare:
    """A second level of fair share: each tenant's turns shared among its tasks' keys.

    Pass it as a :class:`~taskdist.queues.FairScheduler`'s ``inner=``; each tenant's
    queue is then a ``FairScheduler`` whose tenants are ``task.key``, weighted and held
    to quotas by what is given here. ``FairScheduler(clock, inner=KeyShare())`` serves
    the tenants as before, and within a tenant its keys in turn (equal shares unless
    weighted): the tenants' shares hold however many keys each spreads its work over,
    and within a tenant no key (one user, say) takes more than its share of the
    tenant's turns. Within a key, tasks go by aged priority, then first in first out,
    as in any tenant queue.

    It makes the same schedulers as the factory ``lambda clock, tenant:
    FairScheduler(clock, tenant_of=lambda t: t.key, ...)``, with one difference: the
    outer scheduler knows what they are, so it can rank a task without holding it
    (:meth:`FairScheduler.rank`). Behind a gate, a ``Distributor`` then sends only the
    first task of each class back at a refill instead of every refused task (see the
    fairness docs). For anything else at the key level (deadlines, strict keys, a
    different scheduler per tenant), write the factory.

    Making one, and each scheduler it makes, is O(k + q) for k weights and q quotas
    and plans.
    """

    __slots__ = ("_options",)

    def __init__(
        self,
        weights: Mapping[Hashable, float] | None = None,
        *,
        default_weight: float = 1.0,
        quotas: Mapping[Hashable, Quota] | None = None,
        plans: Mapping[Hashable, Quota] | None = None,
        default_plan: Hashable | None = None,
    ) -> None:
        """
        Args:
            weights: key -> share (1e-9 to 1e9) within its tenant; keys not listed
                take their quota's ``weight``, else ``default_weight``.
            default_weight: the share of a key with no weight of its own.
            quotas: key -> :class:`Quota` (e.g. ``Quota(max_concurrent=2)`` for one
                user), overriding its plan's.
            plans: plan name -> :class:`Quota`.
            default_plan: the plan of every key without a quota of its own, e.g. a
                cap on each user's concurrent tasks.

        Raises:
            InvalidArgumentError, InvalidTypeError, UnknownPlanError: as a
                ``FairScheduler`` given the same arguments raises.
        """
        from taskdist.queues.fair import FairScheduler

        # Checked as a scheduler checks them, once, so that a bad value fails here.
        options: dict[str, Any] = {
            "weights": weights,
            "default_weight": default_weight,
            "quotas": quotas,
            "plans": plans,
            "default_plan": default_plan,
        }
        FairScheduler(ManualClock(), tenant_of=_task_key, **options)
        # Copies: what the caller changes later changes no scheduler made from here.
        for name in ("weights", "quotas", "plans"):
            if options[name] is not None:
                options[name] = dict(options[name])
        self._options = options

    def __call__(self, clock: Clock, tenant: Hashable) -> FairScheduler:
        """A new, empty scheduler of ``tenant``'s keys, on ``clock``."""
        from taskdist.queues.fair import FairScheduler

        return FairScheduler(clock, tenant_of=_task_key, **self._options)

    def __repr__(self) -> str:
        given = ", ".join(
            f"{name}={value!r}"
            for name, value in self._options.items()
            if value is not None and not (name == "default_weight" and value == 1.0)
        )
        return f"KeyShare({given})"
