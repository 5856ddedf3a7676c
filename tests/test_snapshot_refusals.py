"""A refused restore leaves every object it was given as it was.

``Distributor.restore`` checks the whole snapshot before it loads any part,
so a snapshot it refuses, for whatever reason, changes none of the
collaborators it was given: not a queue (built in, or a queue of the user's
own that loads itself), the tracker, the dead-letter queue, the retry
policy, the gates, the intake policies, the balancer, the retry budget, the
random source, the listener or the clock.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from distributor_support import Without
from test_snapshot import CORRUPTIONS, busy_snapshot, parts, replaced

from taskdist import Distributor, ManualClock, PriorityQueue, SnapshotError, Task
from taskdist.balancing._state import state_of


def queue_of_its_own(clock: ManualClock) -> Without:
    """A queue of the user's own, with ``snapshot()`` and ``load_snapshot()`` but no
    prepared load: the distributor cannot check its part before it loads itself."""
    queue = PriorityQueue(clock, aging_rate=0.05, maxsize=12, overflow="drop_lowest")
    return Without(queue, "_prepare_snapshot")


def given_parts(clock: ManualClock, own_queue: bool) -> dict[str, Any]:
    given = parts(clock)
    if own_queue:
        given["queue"] = queue_of_its_own(clock)
    given["rng"] = random.Random(11)
    given["on_event"] = [].append
    return given


def everything(given: dict[str, Any], clock: ManualClock) -> Any:
    """What can be seen of every object given to restore, as plain data."""
    seen = {
        "queue": (len(given["queue"]), given["queue"].snapshot(), given["queue"].stats()),
        "tracker": given["tracker"].snapshot(),
        "dlq": given["dlq"].snapshot(),
        "retry": given["retry"].snapshot(),
        "gates": [gate.snapshot() for gate in given["gates"]],
        "intake": [policy.snapshot() for policy in given["intake"]],
        "balancer": state_of(given["balancer"]),
        "retry_budget": vars_of(given["retry_budget"]),
        "escalation": repr(given["escalation"]),
        "preemption": repr(given["preemption"]),
        "rng": given["rng"].getstate(),
        "clock": clock.now(),
        "events heard": len(given["on_event"].__self__),
    }
    return json.loads(json.dumps(seen, default=repr))


def vars_of(obj: object) -> dict[str, Any]:
    slots = getattr(type(obj), "__slots__", ())
    return {name: repr(getattr(obj, name)) for name in slots if hasattr(obj, name)}


# What only a queue of the user's own, loaded, can show: it is emptied again (what its
# counters say of the load is its own business).
FOUND_ONCE_LOADED = {"waiting task in no queue"}


def refused(snapshot: dict[str, Any], now: float, own_queue: bool, corruption: str = "") -> None:
    clock = ManualClock(start=now)
    given = given_parts(clock, own_queue)
    before = everything(given, clock)
    with pytest.raises(SnapshotError, match="cannot restore the snapshot"):
        Distributor.restore(snapshot, clock, **given)
    after = everything(given, clock)
    if own_queue and corruption in FOUND_ONCE_LOADED:
        assert len(given["queue"]) == 0
        after["queue"] = before["queue"] = None
    assert after == before


EXTRA: dict[str, Callable[[Any], None]] = {
    "unknown field last": replaced(("zzz",), 1),
    "timer of an unknown kind": replaced(("timers", 0, 0), "nonsense"),
    "breaker state unknown": replaced(("breaker_changes",), [["w0", "nonsense"]]),
    "balancer state of another kind": replaced(("balancers", 0), {"kind": "RoundRobin"}),
}


@pytest.mark.parametrize("own_queue", [False, True], ids=["built-in queue", "own queue"])
@pytest.mark.parametrize("corruption", sorted({**CORRUPTIONS, **EXTRA}))
def test_a_refused_restore_changes_nothing_it_was_given(corruption: str, own_queue: bool) -> None:
    snapshot, now = busy_snapshot()
    {**CORRUPTIONS, **EXTRA}[corruption](snapshot)
    refused(snapshot, now, own_queue, corruption)


def test_a_queue_of_your_own_is_filled_only_once_the_rest_is_checked() -> None:
    snapshot, now = busy_snapshot()
    clock = ManualClock(start=now)
    d = Distributor.restore(copy.deepcopy(snapshot), clock, **given_parts(clock, True))
    assert d.snapshot()["queue"] == snapshot["queue"]
    assert len(d.queue) == len(snapshot["queue"]["held"])
    # The queue holds a task the books do not know: found only once it loaded itself,
    # so it is emptied again, and nothing else was touched.
    strange = copy.deepcopy(snapshot)
    stray = copy.deepcopy(strange["queue"]["held"][0])
    stray[1] += 0.25  # an enqueue time of its own
    stray[2]["id"] = "stray"
    strange["queue"]["held"].append(stray)
    given = given_parts(clock, True)
    before = everything(given, clock)
    with pytest.raises(SnapshotError, match="the books say"):
        Distributor.restore(strange, clock, **given)
    assert len(given["queue"]) == 0
    after = everything(given, clock)
    assert {**after, "queue": None} == {**before, "queue": None}


def test_a_refused_restore_leaves_a_queue_of_your_own_empty_and_usable() -> None:
    snapshot, now = busy_snapshot()
    snapshot["surprise"] = 1
    clock = ManualClock(start=now)
    given = given_parts(clock, True)
    with pytest.raises(SnapshotError, match="unknown fields"):
        Distributor.restore(snapshot, clock, **given)
    assert len(given["queue"]) == 0
    given["queue"].push(Task("later"))
    assert given["queue"].pop().id == "later"
