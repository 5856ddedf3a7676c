"""Intake policies: what a Distributor does with a task as it arrives.

Beside plain deduplication (the same id), users of job queues ask for rules
by *key*, a value computed from the task (a repository, a user, a document):

- :class:`ConcurrencyLimit`: at most ``limit`` tasks of a key running at once.
  It is also a gate: with ``strategy="queue"`` a task of a key at its limit
  waits its turn (without spending an attempt) while other keys run. The
  other strategies act on arrival: ``"cancel_newest"`` cancels the newcomer
  when its key already has ``limit`` live tasks; ``"cancel_running"`` (the
  newest wins) cancels, when its key is at its limit, the key's oldest live
  tasks (running ones included) that leave the newcomer room, and keeps it;
  ``"latest_queued"`` cancels the key's queued tasks and keeps the newcomer
  (a debounce that lets the running one finish).
- :class:`Debounce`: a task whose key has a queued task submitted within
  ``window`` seconds replaces it (optionally carrying every payload).
- :class:`Throttle`: at most one task per key per ``window``; later ones are
  refused as duplicates.

Each answers :meth:`~IntakePolicy.admit` with a :class:`Verdict` the
Distributor carries out; the policies keep their own index by key, told by
the Distributor when a task finishes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from taskdist._snapshot import check_header, decode_key, encode_key, header, refuse
from taskdist._validate import check_choice, check_int, check_key, check_number, shown
from taskdist.errors import InvalidTypeError, OverReleaseError
from taskdist.task import Task, TaskState

__all__ = [
    "ConcurrencyLimit",
    "ConcurrencyStrategy",
    "Debounce",
    "IntakePolicy",
    "Throttle",
    "Verdict",
]

ConcurrencyStrategy = Literal["queue", "cancel_newest", "cancel_running", "latest_queued"]
"""What a :class:`ConcurrencyLimit` does with a task of a key at its limit."""
_STRATEGIES: tuple[ConcurrencyStrategy, ...] = (
    "queue",
    "cancel_newest",
    "cancel_running",
    "latest_queued",
)

StateOf = Callable[[Hashable], "TaskState | None"]
"""The distributor's answer to "where is this task?" (``None``: unknown or forgotten)."""


@attrs.frozen
class Verdict:
    """What to do with an arriving task.

    ``accept``: take it (``False``: refuse it as a duplicate of ``because``);
    ``cancel``: live tasks to cancel first; ``replace``: the task to take
    instead (a merged payload); ``cancel_self``: take it and cancel it at once
    (it is recorded, and cancelled).
    """

    accept: bool = True
    cancel: tuple[Hashable, ...] = ()
    replace: Task | None = None
    cancel_self: bool = False
    because: Hashable = None
    reason: str = ""


ACCEPT = Verdict()


@runtime_checkable
class IntakePolicy(Protocol):
    """A rule on arriving tasks: ``admit(task, now, state_of) -> Verdict``, and
    ``forget(task)`` when a task it admitted finishes.

    When a submit the policy admitted is refused after all (by another policy, or by
    the distributor: a full queue, a quota), the distributor calls the policy's
    ``undo_admit(task)`` if it has one, which must put back what that admission
    changed, else ``forget(task)``."""

    def admit(self, task: Task, now: float, state_of: StateOf) -> Verdict: ...

    def forget(self, task: Task) -> None: ...


def _key_function(key: object, name: str) -> Callable[[Task], Hashable]:
    """``key``, its answers checked: an unhashable key, or a NaN (never equal to itself,
    so each task would get a key of its own and no limit would apply), is refused."""
    if not callable(key):
        raise InvalidTypeError(f"{name}.key must be callable (task -> key), got {key!r}")
    what = f"{name}.key(task)"

    def checked(task: Task) -> Hashable:
        return check_key(key(task), what)

    return checked


class ConcurrencyLimit:
    """At most ``limit`` running tasks per key; a gate and an intake policy.

    ``key(task)`` gives a task's key (``None``: the task is not limited).
    ``admit`` is O(tasks of the key); the gate operations are O(1). Not safe
    to share between threads.

    >>> from taskdist import Task
    >>> repo = ConcurrencyLimit(key=lambda t: t.key, limit=1)
    >>> a, b = Task("a", key="repo-1"), Task("b", key="repo-1")
    >>> repo.try_acquire(a), repo.can_acquire(b), repo.can_acquire(Task("c", key="repo-2"))
    (True, False, True)
    """

    __slots__ = ("_held", "_key", "_keys", "_limit", "_live", "_running", "_strategy")

    def __init__(
        self,
        key: Callable[[Task], Hashable],
        *,
        limit: int = 1,
        strategy: ConcurrencyStrategy = "queue",
    ) -> None:
        self._key = _key_function(key, "ConcurrencyLimit")
        self._limit = check_int(limit, "limit", minimum=1)
        self._strategy: ConcurrencyStrategy = check_choice(strategy, "strategy", _STRATEGIES)
        # key -> ids of its live tasks, oldest first; key -> ids running.
        self._live: dict[Hashable, dict[Hashable, None]] = {}
        self._running: dict[Hashable, set[Hashable]] = {}
        # Running task id -> its key, as read when it took its slot: the release gives
        # the slot back without asking the key function again (one that raises then
        # would keep the slot for ever).
        self._held: dict[Hashable, Hashable] = {}
        # Live task id -> its key, as read at its admission: forget() asks no key again.
        self._keys: dict[Hashable, Hashable] = {}

    @property
    def strategy(self) -> ConcurrencyStrategy:
        """What it does with a task of a key at its limit."""
        return self._strategy

    def running(self, key: Hashable) -> int:
        """Tasks of ``key`` running now. O(1)."""
        return len(self._running.get(key, ()))

    # -- intake ---------------------------------------------------------------

    def admit(self, task: Task, now: float, state_of: StateOf) -> Verdict:
        """Carry out the strategy for an arriving ``task``."""
        key = self._key(task)
        self._keys[task.id] = key  # (None too: forget() asks no key again)
        if key is None:
            return ACCEPT
        live = list(self._live.get(key, ()))
        verdict = ACCEPT
        if self._strategy == "cancel_newest" and len(live) >= self._limit:
            verdict = Verdict(cancel_self=True, reason=f"key {key!r} is at its limit")
        elif self._strategy == "cancel_running" and len(live) >= self._limit:
            # The newest wins: the oldest go, as many as it takes to leave it room.
            oldest = tuple(live[: len(live) - self._limit + 1])
            verdict = Verdict(cancel=oldest, reason=f"a newer task of key {key!r}")
        elif self._strategy == "latest_queued":
            queued = tuple(i for i in live if state_of(i) is not TaskState.LEASED)
            if queued:
                verdict = Verdict(cancel=queued, reason=f"a newer task of key {key!r}")
        if not verdict.cancel_self:
            self._live.setdefault(key, {})[task.id] = None
        return verdict

    def forget(self, task: Task) -> None:
        """``task`` finished (or was refused): drop it from its key's index."""
        key = self._keys.pop(task.id) if task.id in self._keys else self._key(task)
        if key is None:
            return
        live = self._live.get(key)
        if live is not None:
            live.pop(task.id, None)
            if not live:
                del self._live[key]

    # -- the gate ---------------------------------------------------------------

    def demand(self, task: Task) -> float:
        """Running slots ``task`` takes: 1 if it has a key, else 0. O(1).

        A release of a task without a key frees nothing, so the Distributor
        wakes no task parked behind this limit for it.
        """
        _check_task(task)
        if task.id in self._held:  # running: without asking its key again
            return 0.0 if self._held[task.id] is None else 1.0
        return 0.0 if self._key(task) is None else 1.0

    def can_acquire(self, task: Task) -> bool:
        """Whether its key has a running slot free (always, for a task without key)."""
        _check_task(task)
        key = self._key(task)
        return key is None or len(self._running.get(key, ())) < self._limit

    def check(self, task: Task) -> None:
        """Nothing: every key has at least one slot."""
        _check_task(task)

    def try_acquire(self, task: Task) -> bool:
        """Take a running slot of the task's key, if one is free."""
        if not self.can_acquire(task):
            return False
        key = self._key(task)
        self._held[task.id] = key  # (None too: release() asks no key again)
        if key is not None:
            self._running.setdefault(key, set()).add(task.id)
        return True

    def release(self, task: Task) -> None:
        """Give back the task's running slot.

        Raises:
            OverReleaseError: it holds none.
        """
        _check_task(task)
        # Its key as read when it took its slot (else, holding none: say which key, if any).
        key = self._held.pop(task.id) if task.id in self._held else self._key(task)
        if key is None:
            return
        running = self._running.get(key)
        if running is None or task.id not in running:
            raise OverReleaseError(f"task {task.id!r} holds no slot of key {key!r}")
        running.discard(task.id)
        if not running:
            del self._running[key]

    def rollback(self, task: Task) -> None:
        """Undo the admission just made (as :meth:`release`)."""
        self.release(task)

    def next_wakeup(self) -> float | None:
        """``None``: a slot frees when a task ends, not with time."""
        return None

    def snapshot(self) -> dict[str, Any]:
        """The live and running task ids of each key, as plain data. O(tasks).
        See ``docs/persistence.md``."""
        return {
            **header("ConcurrencyLimit"),
            "limit": self._limit,
            "strategy": self._strategy,
            "live": [[_key(key), [_id(i) for i in ids]] for key, ids in self._live.items()],
            "running": [
                [_key(key), sorted((_id(i) for i in ids), key=repr)]
                for key, ids in self._running.items()
            ],
        }

    def load_snapshot(self, data: object) -> None:
        """Take on what :meth:`snapshot` wrote, into a new policy configured alike. O(tasks).

        Raises:
            SnapshotError: not such a snapshot, or another configuration.
        """
        self._prepare_snapshot(data, "intake")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "ConcurrencyLimit", where)
        if self._live or self._running or self._keys or self._held:
            refuse(where, "can be loaded only into a new ConcurrencyLimit")
        if fields.value("limit") != self._limit or fields.value("strategy") != self._strategy:
            refuse(where, f"is not of {self!r}")
        live = {key: dict.fromkeys(ids) for key, ids in _keyed_ids(fields.pairs("live"), where)}
        running = {key: set(ids) for key, ids in _keyed_ids(fields.pairs("running"), where)}
        fields.done()

        def load() -> None:
            self._live.update(live)
            self._running.update(running)
            self._held.update((task_id, key) for key, ids in running.items() for task_id in ids)
            self._keys.update((task_id, key) for key, ids in live.items() for task_id in ids)

        return load

    def __repr__(self) -> str:
        return f"ConcurrencyLimit(limit={self._limit}, strategy={self._strategy!r})"


class Debounce:
    """A task whose key has a queued task submitted within ``window`` seconds
    replaces it; with ``keep_payloads`` the newcomer carries every payload, oldest
    first, as a tuple. ``admit`` and ``forget`` are O(1).

    >>> from taskdist import Task
    >>> edits = Debounce(key=lambda t: t.key, window=2.0)
    >>> edits.admit(Task("v1", key="doc"), 0.0, lambda i: None).cancel
    ()
    """

    __slots__ = ("_keep", "_key", "_latest", "_replaced", "_window")

    def __init__(
        self, key: Callable[[Task], Hashable], *, window: float, keep_payloads: bool = False
    ) -> None:
        self._key = _key_function(key, "Debounce")
        self._window = check_number(window, "window", positive=True)
        if not isinstance(keep_payloads, bool):
            raise InvalidTypeError(f"keep_payloads must be a bool, got {keep_payloads!r}")
        self._keep = keep_payloads
        # key -> (id, submitted at, payloads so far) of its latest accepted task
        self._latest: dict[Hashable, tuple[Hashable, float, tuple[object, ...]]] = {}
        # The latest admission's (task id, key, the record it replaced), for undo_admit.
        self._replaced: tuple[Hashable, Hashable, Any] | None = None

    def admit(self, task: Task, now: float, state_of: StateOf) -> Verdict:
        """Replace the key's queued task if it came within the window."""
        key = self._key(task)
        if key is None:
            return ACCEPT
        latest = self._latest.get(key)
        replace = None
        verdict = ACCEPT
        payloads: tuple[object, ...] = (task.payload,)
        if latest is not None:
            previous, at, carried = latest
            waiting = state_of(previous) in (TaskState.QUEUED, TaskState.PARKED)
            if waiting and now - at <= self._window:
                if self._keep:
                    payloads = (*carried, task.payload)
                    replace = attrs.evolve(task, payload=payloads)
                verdict = Verdict(
                    cancel=(previous,), replace=replace, reason=f"debounced by key {key!r}"
                )
        self._replaced = (task.id, key, latest)
        self._latest[key] = (task.id, now, payloads)
        return verdict

    def undo_admit(self, task: Task) -> None:
        """The submit of ``task`` it just admitted was refused: the key's record is
        again what it was (its earlier task still debounces what comes next). O(1)."""
        replaced = self._replaced
        if replaced is None or replaced[0] != task.id:
            return
        _, key, latest = replaced
        self._replaced = None
        if latest is None:
            self._latest.pop(key, None)
        else:
            self._latest[key] = latest

    def forget(self, task: Task) -> None:
        """Drop the key's record once its latest task finishes."""
        key = self._key(task)
        latest = self._latest.get(key)
        if latest is not None and latest[0] == task.id:
            del self._latest[key]

    def snapshot(self) -> dict[str, Any]:
        """Each key's latest task, when it came and the payloads it carries, as plain data
        (JSON when the payloads are). O(keys). See ``docs/persistence.md``."""
        return {
            **header("Debounce"),
            "window": self._window,
            "keep_payloads": self._keep,
            "latest": [
                [_key(key), [_id(task_id), at, list(payloads)]]
                for key, (task_id, at, payloads) in self._latest.items()
            ],
        }

    def load_snapshot(self, data: object) -> None:
        """Take on what :meth:`snapshot` wrote, into a new policy configured alike. O(keys).

        Raises:
            SnapshotError: not such a snapshot, or another configuration.
        """
        self._prepare_snapshot(data, "intake")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "Debounce", where)
        if self._latest:
            refuse(where, "can be loaded only into a new Debounce")
        if fields.value("window") != self._window or fields.value("keep_payloads") != self._keep:
            refuse(where, "is not of a Debounce configured alike")
        latest: dict[Hashable, tuple[Hashable, float, tuple[object, ...]]] = {}
        for key, item in fields.pairs("latest"):
            if type(item) is not list or len(item) != 3 or type(item[1]) not in (int, float):
                refuse(f"{where}.latest", f"must hold [id, time, [payloads]], got {shown(item)}")
            if type(item[2]) is not list:
                refuse(f"{where}.latest", f"must hold a list of payloads, got {shown(item[2])}")
            latest[key] = (decode_key(item[0], f"{where}.latest"), float(item[1]), tuple(item[2]))
        fields.done()
        return lambda: self._latest.update(latest)


class Throttle:
    """At most one task per key per ``window`` seconds (from the accepted one's
    arrival); later ones are refused as duplicates of it. O(1) amortised per
    arrival; memory: one entry per key seen within the last window.

    >>> from taskdist import Task
    >>> once = Throttle(key=lambda t: t.key, window=60.0)
    >>> once.admit(Task("a", key="u"), 0.0, lambda i: None).accept
    True
    >>> once.admit(Task("b", key="u"), 30.0, lambda i: None).accept
    False
    """

    __slots__ = ("_key", "_last", "_window")

    def __init__(self, key: Callable[[Task], Hashable], *, window: float) -> None:
        self._key = _key_function(key, "Throttle")
        self._window = check_number(window, "window", positive=True)
        # key -> (id, arrival) of its accepted task, oldest arrival first.
        self._last: OrderedDict[Hashable, tuple[Hashable, float]] = OrderedDict()

    def admit(self, task: Task, now: float, state_of: StateOf) -> Verdict:
        """Refuse ``task`` if its key had an accepted task within the window."""
        last = self._last
        while last and now - next(iter(last.values()))[1] >= self._window:
            last.popitem(last=False)  # windows that have closed
        key = self._key(task)
        if key is None:
            return ACCEPT
        held = last.get(key)
        if held is not None:
            return Verdict(accept=False, because=held[0], reason=f"throttled by key {key!r}")
        last[key] = (task.id, now)
        return ACCEPT

    def undo_admit(self, task: Task) -> None:
        """The submit of ``task`` it just admitted was refused: its key's window, which
        that admission opened, closes again (a task never taken throttles none). O(1)."""
        key = self._key(task)
        held = self._last.get(key)
        if held is not None and held[0] == task.id:
            del self._last[key]

    def forget(self, task: Task) -> None:
        """Nothing: the window runs from arrival, whatever happens to the task."""

    def snapshot(self) -> dict[str, Any]:
        """Each key's accepted task and when it came, oldest first, as plain data.
        O(keys). See ``docs/persistence.md``."""
        return {
            **header("Throttle"),
            "window": self._window,
            "last": [[_key(key), [_id(task_id), at]] for key, (task_id, at) in self._last.items()],
        }

    def load_snapshot(self, data: object) -> None:
        """Take on what :meth:`snapshot` wrote, into a new policy configured alike. O(keys).

        Raises:
            SnapshotError: not such a snapshot, or another configuration.
        """
        self._prepare_snapshot(data, "intake")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        fields = check_header(data, "Throttle", where)
        if self._last:
            refuse(where, "can be loaded only into a new Throttle")
        if fields.value("window") != self._window:
            refuse(where, "is not of a Throttle configured alike")
        last: list[tuple[Hashable, tuple[Hashable, float]]] = []
        for key, item in fields.pairs("last"):
            if type(item) is not list or len(item) != 2 or type(item[1]) not in (int, float):
                refuse(f"{where}.last", f"must hold [id, time], got {shown(item)}")
            last.append((key, (decode_key(item[0], f"{where}.last"), float(item[1]))))
        fields.done()
        return lambda: self._last.update(last)


def _key(key: Hashable) -> Any:
    return encode_key(key, "an intake key")


def _id(task_id: Hashable) -> Any:
    return encode_key(task_id, "a task id")


def _keyed_ids(
    pairs: list[tuple[Hashable, Any]], where: str
) -> list[tuple[Hashable, list[Hashable]]]:
    """``[key, [ids]]`` pairs read back."""
    found = []
    for key, ids in pairs:
        if type(ids) is not list:
            refuse(where, f"must list the ids of key {key!r}, got {shown(ids)}")
        found.append((key, [decode_key(i, where) for i in ids]))
    return found


def _check_task(task: object) -> None:
    if not isinstance(task, Task):
        raise InvalidTypeError(f"a gate takes a Task, got {type(task).__name__} {task!r}")
