"""Affinity: sticky placement by task key, with a fallback when the bound worker cannot take it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from taskdist._snapshot import Fields, as_snapshot_error, decode_key, encode_key, refuse
from taskdist._validate import check_hashable, check_id, check_int
from taskdist.balancing.base import (
    Balancer,
    DelegatingBalancer,
    check_balancer,
    check_candidates,
    checked_choose,
    checked_select,
    trusted,
)
from taskdist.balancing.least_load import LeastConnections
from taskdist.errors import TaskdistError, UnknownError
from taskdist.task import Task
from taskdist.workers.tracker import CapacityTracker, WorkerFilter, WorkerState

__all__ = ["Affinity"]


class Affinity(DelegatingBalancer):
    """Tasks with the same ``key`` go to the same worker while it can take them.

    The first task of a key is placed by ``fallback`` and binds the key to
    that worker. Later tasks of the key go to the bound worker whenever it is
    among the candidates (healthy enough, with room); when it is not (down,
    ejected, full) ``fallback`` places the task *without* rebinding, so the
    key returns home as soon as its worker does. The binding ends when the
    worker is removed (``on_worker_removed``), by :meth:`unbind`, or when
    the least recently used of more than ``max_keys`` keys is forgotten.
    :meth:`bind` pins a key by hand (manual routing). Tasks without a key
    go straight to ``fallback``.

    ``select`` is O(n) to find the bound worker among the candidates (plus
    the fallback's cost when it is needed); :meth:`choose` asks the tracker
    about the bound worker alone, O(r), and uses the fallback's ``choose``
    otherwise. Bookkeeping is O(1).

    **Snapshot.** :meth:`snapshot` holds the bindings, least recently used
    first, and the fallback's state::

        {"kind": "Affinity", "version": 1, "max_keys": int,
         "bound": [[key, worker id], ...], "delegates": [fallback's state]}

    (the fallback's own snapshot, or ``None`` for a fallback without
    snapshot support, such as the default ``LeastConnections``, which keeps
    nothing). :meth:`load_snapshot` needs an ``Affinity`` with the same
    ``max_keys`` and a fallback of the same class; keys go home and are
    forgotten in the same order as before. O(k) for k bindings.

    **Threads.** Not safe to share between threads (it keeps the bindings): drive it
    from one thread, behind a lock of your own, or through the
    ``taskdist.threaded.ThreadSafeDistributor``.

    >>> from taskdist import CapacityTracker, ManualClock, Task, Worker
    >>> tracker = CapacityTracker(ManualClock())
    >>> for name in "ab":
    ...     _ = tracker.add_worker(Worker(name, capacity=10))
    >>> sticky = Affinity()
    >>> home = sticky.select(Task(1, key="user-7"), tracker.candidates(Task(1))).id
    >>> _ = tracker.assign(Task(2), home)
    >>> sticky.select(Task(3, key="user-7"), tracker.candidates(Task(3))).id == home
    True
    """

    __slots__ = ("_bound", "_fallback", "_keys_of", "_max_keys")

    def __init__(self, fallback: Balancer | None = None, *, max_keys: int = 100_000) -> None:
        """
        Args:
            fallback: places unbound keys and keys whose worker cannot take
                the task (default: ``LeastConnections()``).
            max_keys: most bindings kept (>= 1); the least recently used go first.
        """
        fallback = LeastConnections() if fallback is None else check_balancer(fallback, "fallback")
        super().__init__(fallback)
        self._fallback = fallback
        self._max_keys = check_int(max_keys, "max_keys", minimum=1)
        self._bound: OrderedDict[Hashable, Hashable] = OrderedDict()
        self._keys_of: dict[Hashable, set[Hashable]] = {}

    @property
    def fallback(self) -> Balancer:
        """The balancer used when affinity does not decide."""
        return self._fallback

    @trusted
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        """The key's bound worker if it is a candidate, else the fallback's choice.

        Raises:
            InvalidTypeError, InvalidArgumentError: a candidate is not a
                ``WorkerState``, or the fallback chose something that is not a
                candidate (nothing is bound then).
        """
        candidates = check_candidates(candidates)
        if not candidates:
            return None
        key = task.key
        if key is None:
            return checked_select(self._fallback, task, candidates)
        home = self._bound.get(key)
        if home is not None:
            for worker in candidates:
                if worker.id == home:
                    self._bound.move_to_end(key)
                    return worker
            chosen = checked_select(self._fallback, task, candidates)
            self._bound.move_to_end(key)
            return chosen
        chosen = checked_select(self._fallback, task, candidates)
        if chosen is not None:
            self._bind(key, chosen.id)
        return chosen

    @trusted
    def choose(
        self, task: Task, tracker: CapacityTracker, where: WorkerFilter | None = None
    ) -> WorkerState | None:
        """``select``'s answer over ``tracker.candidates(task, where)``, without listing them.

        The bound worker if ``tracker.is_candidate`` says so, else the
        fallback's ``choose`` (binding the key if it had no worker); what a
        fallback of your own returns is checked (see
        :func:`~taskdist.balancing.base.checked_choose`).
        """
        key = task.key
        if key is None:
            return checked_choose(self._fallback, task, tracker, where)
        home = self._bound.get(key)
        chosen: WorkerState | None
        if home is not None:
            if tracker.is_candidate(task, home, where):
                chosen = tracker.worker(home)
            else:
                chosen = checked_choose(self._fallback, task, tracker, where)
            if chosen is not None:  # as select() does for a non-empty list
                self._bound.move_to_end(key)
            return chosen
        chosen = checked_choose(self._fallback, task, tracker, where)
        if chosen is not None:
            self._bind(key, chosen.id)
        return chosen

    def bind(self, key: Hashable, worker_id: Hashable) -> None:
        """Send tasks with ``key`` to this worker from now on (replacing any binding). O(1)."""
        check_hashable(key, "key")
        check_id(worker_id, "worker_id")
        self._unbind(key)
        self._bind(key, worker_id)

    def unbind(self, key: Hashable) -> Hashable:
        """Forget where ``key`` goes; return the worker id it was bound to. O(1).

        Raises:
            UnknownError: the key is not bound.
        """
        check_hashable(key, "key")
        worker_id = self._unbind(key)
        if worker_id is None:
            raise UnknownError(f"key {key!r} is not bound to a worker")
        return worker_id

    def preferred(self, key: Hashable) -> Hashable | None:
        """The worker id ``key`` is bound to, or ``None``. O(1)."""
        check_hashable(key, "key")
        return self._bound.get(key)

    def __len__(self) -> int:
        """Keys bound."""
        return len(self._bound)

    def on_worker_removed(self, worker_id: Hashable) -> None:
        """Unbind every key bound to the worker, and tell the fallback. O(its keys)."""
        for key in self._keys_of.pop(worker_id, ()):
            del self._bound[key]
        super().on_worker_removed(worker_id)

    def __repr__(self) -> str:
        return f"Affinity(fallback={self._fallback!r}, keys={len(self._bound)})"

    def _fields(self) -> dict[str, Any]:
        return {
            **super()._fields(),
            "max_keys": self._max_keys,
            "bound": [
                [encode_key(key, "an affinity key"), encode_key(worker_id, "a worker id")]
                for key, worker_id in self._bound.items()
            ],
        }

    def _read_fields(self, fields: Fields, where: str) -> Callable[[], None]:
        fields.same("max_keys", self._max_keys, "Affinity")
        bound: OrderedDict[Hashable, Hashable] = OrderedDict()
        for i, (key, data) in enumerate(fields.pairs("bound")):
            at = f"{where}.bound[{i}]"
            if key in bound:
                refuse(at, f"binds key {key!r} a second time")
            worker_id = decode_key(data, f"{at}[1]")
            try:
                bound[key] = check_id(worker_id, "worker_id")
            except TaskdistError as error:
                raise as_snapshot_error(error, f"{at}[1]") from None
        if len(bound) > self._max_keys:
            refuse(f"{where}.bound", f"holds {len(bound)} keys; max_keys is {self._max_keys}")
        load_fallback = super()._read_fields(fields, where)

        def load() -> None:
            load_fallback()
            self._bound.clear()
            self._keys_of.clear()
            for key, worker_id in bound.items():
                self._bind(key, worker_id)

        return load

    def _bind(self, key: Hashable, worker_id: Hashable) -> None:
        self._bound[key] = worker_id
        self._keys_of.setdefault(worker_id, set()).add(key)
        if len(self._bound) > self._max_keys:
            old_key, old_worker = self._bound.popitem(last=False)
            self._forget(old_key, old_worker)

    def _unbind(self, key: Hashable) -> Hashable | None:
        worker_id = self._bound.pop(key, None)
        if worker_id is not None:
            self._forget(key, worker_id)
        return worker_id

    def _forget(self, key: Hashable, worker_id: Hashable) -> None:
        keys = self._keys_of[worker_id]
        keys.discard(key)
        if not keys:
            del self._keys_of[worker_id]
