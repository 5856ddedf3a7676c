"""ShutGates: when a closed gate holds back every waiting task, dispatch stops looking.

A rate limit or a pool that charges every task something holds back every
waiting task once it has less left than the least any of them asks for.
Dispatch used to go on walking the queue all the same, taking each task out
and parking it with the gates, and a gate's refill put them back (with
scouts, the first of each class): with thousands of tenants each waiting
with a task or two behind one API limit, every refill cost a queue round
trip per tenant, about 40 µs each, to place one task.

Instead, the first time the gates refuse a task while such a gate is *shut*
(it has less left than the least demand of every task the Distributor holds
or could take back), the walk stops: nothing behind that task could pass
either. The tasks stay in the queue, in the order it keeps, and the next
dispatch (when the gate refills: ``next_wakeup`` says when) starts from the
head again. So a placement behind a shut gate costs what one queue look
costs, whatever the number waiting, and the queue's own order, not the order
of earlier refusals, decides who passes next.

"The least demand" is the least each gate charged any task the Distributor
took in (submitted, or restored from a snapshot), a bound that only falls: a
task asking for none of a gate's units lowers it to 0, and that gate never
shuts the walk again. Only rate gates and pool gates shut (a keyed gate's
bucket or an adaptive limit holds back some tasks, not all).

The Distributor stops walking only where nothing else is decided in the walk
past the refused task: a queue of the library's that takes a predicate's
error back exactly (a ``PriorityQueue``, a ``DeadlineScheduler``, or a
``FairScheduler`` whose tenant queues it makes itself: the default ones,
``inner=PriorityQueue`` or ``inner=DeadlineScheduler``, or a ``KeyShare``'s
schedulers; ``tests/test_queue_walk_abort.py`` holds each to that), and no
reservation, preemption, batching or fallback route step, whose timers and
holds start when a task is looked at. Tasks that would have been parked
further down for another reason (a pause, no worker with room for them) are
parked when a later walk reaches them.

A task with a deadline that waits behind a shut gate waits in the deadline
scheduler, as one waiting for a worker does: if its deadline passes there,
its ``on_miss`` decides (``run_late`` keeps it, and it goes first when the
gate opens; ``dead_letter`` hands it back at its deadline). A parked task
pushed back after its deadline meets the same rule at its push: kept, late,
under ``run_late``, refused (and dead-lettered) under the other policies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from taskdist.queues.deadline import DeadlineScheduler
from taskdist.queues.fair import FairScheduler
from taskdist.queues.priority import PriorityQueue
from taskdist.resilience.gates import Gate, PoolGate, RateGate
from taskdist.task import Task

__all__ = ["Shut", "ShutGates", "gate_shut"]


class Shut(Exception):
    """Raised by dispatch's ``where=`` predicate to end the walk: a shut gate holds
    back every task left. A signal, not an error: it never leaves ``dispatch``."""


def gate_shut(queue: object, gates: Sequence[Gate], *, plain: bool) -> ShutGates | None:
    """The gates that may shut a Distributor's walk, or ``None`` where it walks on.

    ``plain``: no reservation, preemption, batching or route step that moves a task on
    after a wait (see the module docstring).
    """
    if not plain:
        return None
    if type(queue) is FairScheduler:
        # A factory's queues are the user's: a predicate's error may leave them changed.
        if not queue._own_queues:
            return None
    elif type(queue) not in (PriorityQueue, DeadlineScheduler):
        return None
    shutting = tuple(
        gate  # exactly these: a subclass may refuse on other grounds than units left
        for gate in gates
        if isinstance(gate, (RateGate, PoolGate)) and type(gate) in (RateGate, PoolGate)
    )
    return ShutGates(shutting) if shutting else None


class ShutGates:
    """The rate and pool gates of a Distributor, each with the least demand it charged
    a task taken in. ``note`` and ``shut`` are O(g) for g such gates."""

    __slots__ = ("_gates", "least", "opens")

    def __init__(self, gates: tuple[RateGate | PoolGate, ...]) -> None:
        self._gates = gates
        self.least = [math.inf] * len(gates)
        """Each gate's least demand of a task taken in (``inf``: none yet)."""
        self.opens: float | None = None
        """When the last ``shut()`` that said yes found a shut rate gate to have its
        least demand again (``None``: only pools are shut; they open on a release)."""

    @property
    def size(self) -> int:
        """How many gates may shut."""
        return len(self._gates)

    def note(self, task: Task) -> None:
        """``task`` was taken in: it may wait in the queue."""
        least = self.least
        for i, gate in enumerate(self._gates):
            amount = gate.demand(task)
            if amount < least[i]:
                least[i] = amount

    def shut(self) -> bool:
        """Whether a gate now refuses every task taken in (its least demand is above
        what it has left); if so, ``opens`` says when the soonest shut rate gate has it
        again. Changes no gate.

        The gate that refused the task at hand may be another (a pool asked first):
        the host must still hear when the shut one opens, so it is worked out here.
        """
        shut = False
        opens = None
        for gate, least in zip(self._gates, self.least, strict=True):
            if not least or least == math.inf:
                continue  # a task that passes it untouched; or none taken in yet
            # (Above the limit, a task is refused for good, not held back: not a shut.)
            if isinstance(gate, RateGate):
                limiter = gate.limiter
                if least <= limiter.burst and not limiter.can_acquire(least):
                    shut = True
                    ready = limiter.ready_at(least)
                    if opens is None or ready < opens:
                        opens = ready
            elif least <= gate.pool.size and not gate.pool.can_acquire(least):
                shut = True
        if shut:
            self.opens = opens
        return shut
