"""GateScouts: which of the tasks the gates refused go back to the queue when a gate opens.

A task the gates refuse is parked until a gate may let it through (a rate
limit refills, a pool unit is released). Putting every such task back then,
so that the queue's order picks who passes, costs a queue push, a look and
a park for each of them: with thousands waiting behind a rate limit, every
refill did that much work to place one task.

Tasks that agree on everything a placement asks of them (their placement
group: skills, zone, demand, route step and pin; their tenant and key, which
pauses name; their priority; the bucket each keyed rate gate draws them
from, and whether each adaptive limit counts them) are refused or admitted
alike, so they form a *class*. Within a class the queue would serve them in
the order of its ``rank`` (ties in the order they were first refused: each
keeps its *ticket* while it waits). So only the first of each class needs to
go back when a gate opens: the *scout*. If the gates refuse it, they would
refuse the rest, and it goes back to its class, at its ticket. If it is
placed, or leaves waiting in any other way (dead-lettered, cancelled,
assigned, moved on its route, given another priority), the next of its class
goes to the queue in its place, before any further task is chosen. If
something other than the gates holds it back (no worker has room, a pause),
it stays the class's scout wherever it is parked, and the rest wait behind
it, as they would be held back alike. Scouts go back in the order of their
class's first ticket, as the tasks would be pushed if all went back. (One
difference: with a bounded queue, waking all pushed every refused task back
at once and a full queue rejected some; one scout a class does not fill it.)

A ``FairScheduler`` also chooses between tenants, by their virtual start
tags, and a tie goes to the tenant backlogged first: so the order in which
refused tasks go back decides ties. Scouts go back in the order of their
class's first ticket, so each tenant is backlogged again in the order its
tasks were first refused, as if every refused task went back in that order.
A tenant's share does not depend on how many of its tasks are queued, only
on which of them comes first, which its scouts show. With a ``KeyShare`` the
same holds one level down: a tenant's scheduler chooses between its keys by
their tags, and the key is part of the class.

A rate gate's units come back with time only, so a class a rate gate refuses
cannot pass before that gate's limiter could admit it (its ``ready_at`` for
the task's demand): it stays parked until then (:meth:`GateScouts.not_before`),
and a refill wakes only the classes whose time has come (a gang's leader, which
in the queue may end a dispatch's round for want of room before the gates are
asked, goes back at every wakeup all the same). With a bucket per
tenant, whose buckets refill at different moments, a refill then places that
tenant's task and sends no other tenant's task through the queue. A
``FairScheduler``'s busy period may then end where waking all kept refused
tasks in it (see the Distributor's docs); a ``PriorityQueue`` places the same,
but among tasks of equal rank (one priority, enqueued at one instant): a class
woken at its time goes back behind a scout that an earlier wakeup sent and that
still waits in the queue, where waking all pushed both each time, in ticket
order.

The Distributor uses this only where that reasoning is exact: a queue that
ranks tasks and takes back any task it held (a ``PriorityQueue``, or a
``FairScheduler`` of its own tenant queues or of a ``KeyShare``'s schedulers,
whose ``rank`` says so, or a ``DeadlineScheduler`` that runs late tasks, which
keeps every task pushed back, late or not; not one under ``dead_letter`` or
``reject``, whose push refuses a task whose deadline has passed or that is no
longer on time, so that when a task goes back decides its fate), the library's gates and
balancers, and no reservation, preemption, batching or fallback route step
(whose choices or timers depend on more than the class). Otherwise every
refused task goes back, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from taskdist.dispatch._placement import PlacementRules
from taskdist.dispatch._records import _group
from taskdist.queues.deadline import DeadlineScheduler
from taskdist.resilience.adaptive import AdaptiveConcurrency
from taskdist.resilience.gates import Gate, KeyedRateGate, PoolGate, RateGate
from taskdist.task import Task

__all__ = ["GateScouts", "gate_scouts"]

_KNOWN_GATES = (RateGate, KeyedRateGate, PoolGate, AdaptiveConcurrency)

Rank = Callable[[Task, float], Any]


def gate_scouts(
    queue: object,
    gates: Sequence[Gate],
    rules: PlacementRules,
    *,
    plain: bool,
) -> GateScouts | None:
    """Scouts for a Distributor's gates, or ``None`` where only waking all is exact.

    ``plain``: no reservation, preemption, batching or route step that moves a task on
    after a wait (each task parked for want of a worker starts such a step's timer,
    which a class waiting behind its scout would not).
    """
    rank = getattr(queue, "rank", None)
    if not plain or not gates or not callable(rank):
        return None
    try:
        probe = rank(Task("rank probe"), 0.0)
    except Exception:  # a queue of the user's that ranks only some tasks: wake all
        probe = None
    if probe is None:
        return None  # it ranks no task without holding it (a FairScheduler's factory queues)
    if isinstance(queue, DeadlineScheduler) and queue.on_miss != "run_late":
        # Its push refuses a task whose deadline has passed, or one no longer on time
        # for what it holds: when a task goes back decides its fate, so each must go
        # back when waking all would send it. Under run_late it keeps every task.
        return None
    if any(type(gate) not in _KNOWN_GATES for gate in gates):
        return None  # a gate of the user's may admit two tasks of a class differently
    if any(not type(b).__module__.startswith("taskdist.") for b in rules.balancers()):
        return None  # nor may a balancer of the user's be trusted to refuse them alike
    keyed = tuple(gate for gate in gates if type(gate) is KeyedRateGate)
    adaptive = tuple(gate for gate in gates if type(gate) is AdaptiveConcurrency)
    timed = tuple(gate for gate in gates if isinstance(gate, (RateGate, KeyedRateGate)))
    return GateScouts(rank, rules, keyed, adaptive, timed)


class GateScouts:
    """The classes of gate-refused tasks and the scout each has out of its class.

    ``klass`` is O(r + g) for r resources and g keyed or adaptive gates;
    ``not_before`` and ``evicted`` O(g) for g rate gates; the rest O(1).
    """

    __slots__ = (
        "_adaptive",
        "_class_of",
        "_evictions",
        "_keyed",
        "_rank",
        "_rules",
        "_scout_of",
        "_timed",
    )

    def __init__(
        self,
        rank: Rank,
        rules: PlacementRules,
        keyed: tuple[KeyedRateGate, ...],
        adaptive: tuple[AdaptiveConcurrency, ...],
        timed: tuple[RateGate | KeyedRateGate, ...] = (),
    ) -> None:
        self._rank = rank
        self._rules = rules
        self._keyed = keyed
        self._adaptive = adaptive  # whose ``applies`` says which tasks count
        # The rate gates: their units come back with time only, so each can say until
        # when it refuses a task (see not_before).
        self._timed = timed
        # (Counted when made: a Distributor restored from a snapshot counts the drops
        # its loaded limiters carry as new, and sends every class at its first wakeup,
        # as the original may still have to.)
        self._evictions = self._evicted_buckets()
        # Scout id -> (its class, its ticket there), and class -> its scout's id (one
        # scout a class). A scout the gates refuse goes back at its ticket, so tasks
        # of one rank keep the order they came in.
        self._class_of: dict[Hashable, tuple[Hashable, int]] = {}
        self._scout_of: dict[Hashable, Hashable] = {}

    def klass(self, task: Task, since: float) -> tuple[Hashable, Any]:
        """``(class, rank)`` of ``task``, waiting since ``since``: a task the queue cannot
        rank, or a gang member (placed with its gang), is a class of its own."""
        rank = self._rank(task, since)
        if rank is None or task.gang is not None:
            return ("alone", task.id), 0
        try:
            buckets = tuple(gate.key_of(task) for gate in self._keyed)
            buckets += tuple(gate.demand(task) for gate in self._adaptive)
            hash(buckets)
        except Exception:  # a key the gate refuses: let the gate say so, alone
            return ("alone", task.id), 0
        placement = _group(task, self._rules.of(task)[2])
        return (placement, task.tenant, task.key, task.priority, buckets), rank

    def not_before(self, task: Task, now: float) -> float | None:
        """When the gates may admit ``task`` (and so its class) at the soonest, if that
        is later than ``now``, else ``None``.

        A rate gate's units come back with time only: a bucket gains units as time
        passes, loses them to admissions, and is refunded only what an admission
        rolled back at once took. So a gate that would admit the task at ``t`` if
        nothing more were spent (its limiter's ``ready_at``) refuses it until then
        whatever happens, and that is the time its wakeup names; the latest such time
        over the rate gates holds for all of them. (Float rounding may let a limiter
        admit a task a hair before that time; the class waits until it, as a host
        that sleeps until the gates' wakeup does. A keyed limiter's ``max_keys`` cap
        may drop a bucket before it is full, and the key then starts afresh: see
        :meth:`evicted`.)
        """
        latest = now
        for gate in self._timed:
            try:
                ready = gate._refuses_until(task)
            except Exception:  # a key function of the user's failing: no time
                return None
            if ready is not None and ready > latest:
                latest = ready
        return latest if latest > now else None

    def evicted(self) -> bool:
        """Whether a keyed limiter dropped a bucket before it was full since last asked:
        then a time :meth:`not_before` gave for its key may be too late. O(g)."""
        evictions = self._evicted_buckets()
        if evictions == self._evictions:
            return False
        self._evictions = evictions
        return True

    @property
    def evictions_seen(self) -> int:
        """The keyed limiters' drops of buckets not yet full, as :meth:`evicted` last
        counted them (a snapshot keeps it, so that a restored twin sends every class at
        its next wakeup exactly when the original would)."""
        return self._evictions

    @evictions_seen.setter
    def evictions_seen(self, count: int) -> None:
        self._evictions = count

    def _evicted_buckets(self) -> int:
        return sum(gate.limiter.evicted_active for gate in self._keyed)

    def sent(self, klass: Hashable, task_id: Hashable, ticket: int) -> None:
        """``task_id``, at ``ticket`` in ``klass``, went back to the queue as its scout."""
        self._class_of[task_id] = (klass, ticket)
        self._scout_of[klass] = task_id

    def gone(self, task_id: Hashable) -> tuple[Hashable, int] | None:
        """``task_id`` is no longer a scout: its class and ticket, if it was one."""
        was = self._class_of.pop(task_id, None)
        if was is not None:
            del self._scout_of[was[0]]
        return was

    def scout_of(self, klass: Hashable) -> Hashable | None:
        """The id of ``klass``'s scout out, or ``None``. O(1)."""
        return self._scout_of.get(klass)

    def ticket_of(self, task_id: Hashable) -> int:
        """A scout's ticket in its class. O(1)."""
        return self._class_of[task_id][1]

    def out(self, klass: Hashable) -> bool:
        """Whether ``klass`` has a scout out (its tasks wait on what holds that one)."""
        return klass in self._scout_of

    def ids(self) -> list[Hashable]:
        """The scouts out, in the order sent."""
        return list(self._class_of)

    def __len__(self) -> int:
        return len(self._class_of)
