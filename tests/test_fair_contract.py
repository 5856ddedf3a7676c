"""The Queue contract (taskdist.testing) on the FairScheduler's newer configurations.

``tests/test_queue_contract.py`` runs it on the plain and EDF-inside ones;
these add deadline-aware fair share and nested fair share (a FairScheduler
as each tenant's queue), with the CRITICAL bypass lane.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import settings

from taskdist import DeadlineScheduler, FairScheduler, PriorityQueue, Task
from taskdist.testing import QUEUE_CHECKS, QueueFactory, queue_machine


def by_key(clock: object, tenant: object, **kwargs: object) -> FairScheduler:
    """Each tenant's queue: a FairScheduler over its tasks' keys."""

    def key_of(task: Task) -> object:
        return task.key

    return FairScheduler(clock, tenant_of=key_of, **kwargs)  # type: ignore[arg-type]


FACTORIES: dict[str, QueueFactory] = {
    "aware": lambda clock: FairScheduler(clock, deadline_aware=True, weights={"a": 2.0}),
    "aware-edf-bypass-lead": lambda clock: FairScheduler(
        clock,
        deadline_aware=True,
        inner=lambda c, tenant: DeadlineScheduler(c) if tenant else PriorityQueue(c),
        critical_bypass=True,
        max_lead=1.0,
    ),
    "nested": lambda clock: FairScheduler(clock, weights={"a": 2.0}, inner=by_key),
    # Tenant queues aging at a rate of their own, at both levels (the inner level is
    # not adopted: its key queues keep their own tables).
    "aging": lambda clock: FairScheduler(clock, aging_rate=0.5, weights={"a": 2.0}),
    "nested-aging": lambda clock: FairScheduler(
        clock, inner=lambda c, tenant: by_key(c, tenant, aging_rate=0.0)
    ),
    "nested-aware-bypass": lambda clock: FairScheduler(
        clock,
        inner=lambda c, tenant: by_key(c, tenant, deadline_aware=True),
        deadline_aware=True,
        critical_bypass=True,
    ),
}


@pytest.mark.parametrize("check", QUEUE_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("make", FACTORIES.values(), ids=FACTORIES.keys())
def test_contract(make: QueueFactory, check: Callable[[QueueFactory], None]) -> None:
    check(make)


TestContractAware = queue_machine(FACTORIES["aware-edf-bypass-lead"]).TestCase
TestContractAware.settings = settings(max_examples=50)
TestContractNested = queue_machine(FACTORIES["nested-aware-bypass"]).TestCase
TestContractNested.settings = settings(max_examples=50)
