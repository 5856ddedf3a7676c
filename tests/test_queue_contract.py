"""The Queue contract (taskdist.testing), run over every queue taskdist ships.

Each queue's own tests pin what is its own (priority order and aging, EDF and
admission, fair shares and quotas); this suite checks what the protocol
promises of all of them, as a user's own queue would be checked.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from taskdist import (
    DeadlineScheduler,
    FairScheduler,
    PriorityQueue,
    Queue,
    QueueFullError,
    Task,
)
from taskdist.testing import (
    QUEUE_CHECKS,
    QueueFactory,
    check_check_push,
    check_queue,
    queue_machine,
)

FACTORIES: dict[str, QueueFactory] = {
    "PriorityQueue": lambda clock: PriorityQueue(clock),
    "PriorityQueue-aging-bounded": lambda clock: PriorityQueue(
        clock, aging_rate=0.5, maxsize=6, overflow="drop_lowest"
    ),
    "DeadlineScheduler": lambda clock: DeadlineScheduler(clock),
    "DeadlineScheduler-3-dead_letter-aging": lambda clock: DeadlineScheduler(
        clock, servers=3, on_miss="dead_letter", aging_rate=0.25
    ),
    "DeadlineScheduler-reject-bounded": lambda clock: DeadlineScheduler(
        clock, on_miss="reject", maxsize=6, overflow="drop_lowest"
    ),
    "FairScheduler": lambda clock: FairScheduler(clock, weights={"a": 2.0}),
    "FairScheduler-edf-bypass": lambda clock: FairScheduler(
        clock, inner=DeadlineScheduler, critical_bypass=True
    ),
}


@pytest.mark.parametrize("check", QUEUE_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("make", FACTORIES.values(), ids=FACTORIES.keys())
def test_contract(make: QueueFactory, check: Callable[[QueueFactory], None]) -> None:
    check(make)


# One state machine per queue configuration, each with a third of the profile's examples
# (seven of them run).
for _name, _make in FACTORIES.items():
    _case = queue_machine(_make).TestCase
    _case.settings = settings(max_examples=max(20, settings.default.max_examples // 3))
    globals()[f"TestContract_{_name.replace('-', '_')}"] = _case
del _case


class ForgetfulQueue(PriorityQueue):
    """A queue that loses every third task it is given: the suite must notice."""

    def push(self, task: Task, *, enqueued_at: float | None = None) -> None:  # type: ignore[override]
        self.pushes = getattr(self, "pushes", 0) + 1
        if self.pushes % 3:
            super().push(task, enqueued_at=enqueued_at)


class StickyQueue(PriorityQueue):
    """A queue whose ``pop(where=...)`` ignores the predicate."""

    def pop(self, where: object = None) -> Task | None:  # type: ignore[override]
        return super().pop()


@pytest.mark.parametrize("broken", [ForgetfulQueue, StickyQueue])
def test_the_suite_catches_a_queue_that_breaks_the_contract(broken: type[Queue]) -> None:
    with pytest.raises(AssertionError):
        check_queue(lambda clock: broken(clock))  # type: ignore[call-arg]


def test_the_module_imports_without_pytest_or_hypothesis() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['pytest'] = None; sys.modules['hypothesis'] = None\n"
        "from taskdist import PriorityQueue\n"
        "from taskdist.testing import check_queue\n"
        "check_queue(lambda clock: PriorityQueue(clock))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class LaxCheckQueue(PriorityQueue):
    """A queue whose ``check_push`` passes every task, even one ``push`` refuses."""

    def check_push(self, task: Task) -> None:
        return None


class FussyCheckQueue(PriorityQueue):
    """A queue whose ``check_push`` refuses tasks ``push`` takes."""

    def check_push(self, task: Task) -> None:
        raise QueueFullError("never any room")


class MeddlingCheckQueue(PriorityQueue):
    """A queue whose ``check_push`` keeps the task it was asked about."""

    def check_push(self, task: Task) -> None:
        super().check_push(task)
        self.push(task)


@pytest.mark.parametrize("broken", [LaxCheckQueue, FussyCheckQueue, MeddlingCheckQueue])
def test_the_suite_catches_a_check_push_that_does_not_agree_with_push(
    broken: type[PriorityQueue],
) -> None:
    with pytest.raises(AssertionError, match="check_push"):
        check_check_push(lambda clock: broken(clock))


@pytest.mark.parametrize("broken", [LaxCheckQueue, FussyCheckQueue, MeddlingCheckQueue])
def test_the_state_machine_catches_a_check_push_that_does_not_agree_with_push(
    broken: type[PriorityQueue],
) -> None:
    machine = queue_machine(lambda clock: broken(clock))
    with pytest.raises(AssertionError, match="check_push"):
        run_state_machine_as_test(
            machine, settings=settings(max_examples=50, database=None, deadline=None)
        )


@pytest.mark.parametrize(
    "make",
    [
        lambda clock: PriorityQueue(clock, maxsize=5, overflow="reject"),
        lambda clock: DeadlineScheduler(clock, maxsize=5, overflow="reject"),
    ],
    ids=["PriorityQueue", "DeadlineScheduler"],
)
def test_check_push_of_a_queue_left_full_by_the_sample_agrees_with_push(
    make: QueueFactory,
) -> None:
    # The sample fills it: check_push refuses the next task as push does, QueueFullError.
    check_check_push(make)
