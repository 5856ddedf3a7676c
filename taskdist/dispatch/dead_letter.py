"""DeadLetterQueue: where tasks that left the normal path wait to be inspected or redriven."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Literal

import attrs

from taskdist._snapshot import Fields, check_header, header, refuse
from taskdist._validate import check_choice, check_int, shown
from taskdist.clock import Clock, check_clock
from taskdist.dispatch.stats import AttemptRecord
from taskdist.errors import (
    DuplicateTaskError,
    InvalidArgumentError,
    InvalidTypeError,
    QueueFullError,
    SnapshotError,
    TaskdistError,
    UnknownTaskError,
)
from taskdist.queues.protocol import Eviction, Queue
from taskdist.task import Reason, Task

__all__ = ["DeadLetter", "DeadLetterQueue", "DeadLetterStats", "RedriveReport"]

Overflow = Literal["drop_oldest", "reject"]
_OVERFLOW_POLICIES: tuple[Overflow, ...] = ("drop_oldest", "reject")
_REASONS = frozenset(reason.value for reason in Reason)


def _error_text(error: object) -> str | None:
    if error is None or isinstance(error, str):
        return error
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    raise InvalidTypeError(f"error must be an exception, a str or None, got {error!r}")


@attrs.frozen
class DeadLetter:
    """One dead-lettered task: what it was, why it died, what was tried, and when."""

    task: Task
    reason: Reason
    """Why it left the normal path (``max_attempts``, ``ttl_expired``, ...)."""
    history: tuple[Any, ...]
    """The attempt records the caller passed, oldest first (a distributor passes
    the :class:`~taskdist.AttemptRecord` of each try)."""
    error: str | None
    """The last error as ``"TypeName: message"`` (an exception is not kept, so
    no traceback and its frames stay alive), or the text given."""
    dead_at: float
    """Clock time it was added."""
    redriven_at: float | None = None
    """Set on the copies :meth:`DeadLetterQueue.redrive` returns: when it went back."""

    @property
    def attempts(self) -> int:
        """How many attempts its history records."""
        return len(self.history)


Selector = Iterable[Hashable] | Callable[[DeadLetter], bool]
"""Which entries: an iterable of task ids, or a predicate over entries."""


@attrs.frozen
class RedriveReport:
    """What a :meth:`DeadLetterQueue.redrive` did; every selected entry is in exactly
    one of ``redriven`` and ``refused``."""

    redriven: tuple[DeadLetter, ...]
    """Entries now in the target queue (with ``redriven_at`` set), out of the DLQ."""
    refused: tuple[tuple[DeadLetter, str], ...]
    """Entries the target queue would not take, with why; they are still in the DLQ."""
    displaced: tuple[Eviction, ...]
    """Tasks the target queue evicted to make room; they are dead-lettered here,
    except one whose id the DLQ already holds (a task resubmitted under the id of
    a dead one): that one is only here, for the caller to handle."""


@attrs.frozen
class DeadLetterStats:
    """A snapshot of a :class:`DeadLetterQueue`.

    Nothing is lost: ``added == depth + redriven + purged + evicted``.
    """

    depth: int
    by_reason: dict[Reason, int]
    oldest_age: float
    """Seconds since the oldest held entry was added (0 when empty)."""
    added: int
    redriven: int
    purged: int
    evicted: int
    """Entries dropped as the oldest by ``overflow="drop_oldest"`` (each returned by ``add``)."""
    rejected: int
    """Adds refused with ``QueueFullError`` by ``overflow="reject"``."""


class DeadLetterQueue:
    """Tasks that left the normal path, kept with their reason, attempt history and
    time, to be inspected, filtered, redriven into a queue, or purged.

    **Nothing is lost silently.** Every task added is, at any moment, exactly
    one of: held here; redriven (in the queue it was pushed into); purged
    (returned by :meth:`purge`); evicted by the bound (returned by
    :meth:`add` and counted); or refused by :meth:`add` with an error.
    :meth:`stats` keeps the books: ``added == depth + redriven + purged +
    evicted``.

    **Bound.** With ``maxsize``, adding to a full DLQ either evicts the
    oldest entry and returns it (``overflow="drop_oldest"``, the default:
    the newest failures are usually the ones worth looking at), or raises
    :class:`~taskdist.errors.QueueFullError` and keeps the DLQ unchanged
    (``overflow="reject"``).

    **Redrive** pushes tasks back into any :class:`~taskdist.queues.Queue`
    as new work: attempts are reset, meaning the task is pushed as it is,
    with a fresh enqueue time, and the DLQ forgets it; its history and the
    redrive time are in the returned :class:`RedriveReport` for the caller's
    records. Whoever counts attempts counts from the first again. A
    distributor's own DLQ is redriven with ``Distributor.redrive``, which
    submits the tasks anew (a redrive into that distributor's queue is
    refused: it would not know of them). A task the queue refuses (duplicate
    id, full, quota...) stays here and is reported; a task the queue evicts
    to make room is dead-lettered here (or, if a task with its id already is,
    only reported).

    **Order.** Entries are held and iterated oldest first.

    **Callbacks.** A selector predicate (and the target queue of a redrive)
    may read the DLQ or change it: the entries are looked at as they were
    when the call began; one taken meanwhile (purged, redriven) is neither
    selected nor taken twice, and one added meanwhile is not looked at.

    **Complexity** (n = entries held):

    ===========================  ===================================
    ``add``                      O(1) (+ O(len(history)) to copy it)
    ``get``, ``in``, ``len``     O(1)
    iteration, ``filter``        O(n)
    ``redrive``, ``purge``       O(n) for a predicate, O(k) for k ids
                                 (+ the target queue's push)
    ``stats``                    O(r) for r distinct reasons
    ===========================  ===================================

    >>> from taskdist import ManualClock, PriorityQueue, Reason, Task
    >>> clock = ManualClock()
    >>> dlq = DeadLetterQueue(clock, maxsize=1000)
    >>> dlq.add(Task("t1"), Reason.MAX_ATTEMPTS, history=["try 1", "try 2"],
    ...         error=TimeoutError("agent timed out"))
    >>> dlq["t1"].attempts, dlq["t1"].error
    (2, 'TimeoutError: agent timed out')
    >>> queue = PriorityQueue(clock)
    >>> report = dlq.redrive(["t1"], into=queue)
    >>> [e.task.id for e in report.redriven], "t1" in queue, len(dlq)
    (['t1'], True, 0)
    """

    __slots__ = (
        "_added",
        "_by_reason",
        "_clock",
        "_entries",
        "_evicted",
        "_feeds",
        "_maxsize",
        "_overflow",
        "_purged",
        "_redriven",
        "_rejected",
    )

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        maxsize: int | None = None,
        overflow: Overflow = "drop_oldest",
    ) -> None:
        """
        Args:
            clock: where time comes from (default: :class:`MonotonicClock`).
            maxsize: most entries held (>= 1), or ``None`` for unbounded.
            overflow: ``"drop_oldest"`` or ``"reject"``: what a full DLQ does.

        Raises:
            InvalidArgumentError: ``maxsize`` < 1.
            UnknownPolicyError: ``overflow`` is not one of the choices.
            InvalidTypeError: ``clock`` has no ``now()``.
        """
        clock = check_clock(clock)
        self._maxsize = None if maxsize is None else check_int(maxsize, "maxsize", minimum=1)
        self._overflow = check_choice(overflow, "overflow", _OVERFLOW_POLICIES)
        self._clock = clock
        self._entries: OrderedDict[Hashable, DeadLetter] = OrderedDict()
        # The queues of the Distributors this DLQ serves, which take tasks back only
        # through Distributor.redrive (each must know of its tasks).
        self._feeds: tuple[object, ...] = ()
        self._by_reason: Counter[Reason] = Counter()
        self._added = self._redriven = self._purged = self._evicted = self._rejected = 0

    # -- adding -----------------------------------------------------------

    def add(
        self,
        task: Task,
        reason: Reason | str,
        *,
        history: Iterable[Any] = (),
        error: BaseException | str | None = None,
    ) -> DeadLetter | None:
        """Dead-letter ``task`` for ``reason``. O(1) + O(len(history)).

        Returns ``None``, or the entry evicted to make room (``overflow="drop_oldest"``).

        Raises:
            InvalidTypeError: ``task`` not a Task, ``history`` not an iterable
                (a lone str is refused), ``error`` not an exception, str or None.
            InvalidArgumentError: ``reason`` is not a :class:`~taskdist.task.Reason`.
            DuplicateTaskError: a task with this id is already held.
            QueueFullError: full, with ``overflow="reject"``.
        """
        if not isinstance(task, Task):
            raise InvalidTypeError(f"add() takes a Task, got {type(task).__name__} {task!r}")
        why = self._reason(reason)
        if isinstance(history, (str, bytes)) or not isinstance(history, Iterable):
            raise InvalidTypeError(
                f"history must be an iterable of attempt records, got {history!r}"
            )
        text = _error_text(error)
        records = tuple(history)  # may raise (a generator): before anything changes
        entries = self._entries
        if task.id in entries:
            raise DuplicateTaskError(f"a task with id {task.id!r} is already dead-lettered")
        evicted = None
        if self._maxsize is not None and len(entries) >= self._maxsize:
            if self._overflow == "reject":
                self._rejected += 1
                raise QueueFullError(
                    f"the dead-letter queue is full ({self._maxsize} entries); "
                    f"{task.id!r} was not added"
                )
            evicted = self._take(next(iter(entries)))
            self._evicted += 1
        entry = DeadLetter(task, why, records, text, self._clock.now())
        entries[task.id] = entry
        self._by_reason[why] += 1
        self._added += 1
        return evicted

    # -- looking ----------------------------------------------------------

    def get(self, task_id: Hashable) -> DeadLetter | None:
        """The entry of the task with this id, or ``None``. O(1)."""
        try:
            return self._entries.get(task_id)
        except TypeError:
            return None

    def __getitem__(self, task_id: Hashable) -> DeadLetter:
        """The entry of the task with this id. O(1).

        Raises:
            UnknownTaskError: no held entry has this id.
        """
        entry = self.get(task_id)
        if entry is None:
            raise UnknownTaskError(f"no task with id {task_id!r} in the dead-letter queue")
        return entry

    def __iter__(self) -> Iterator[DeadLetter]:
        """Entries, oldest first (a snapshot: the DLQ may change while iterating)."""
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __contains__(self, task_id: object) -> bool:
        try:
            return task_id in self._entries
        except TypeError:
            return False

    def filter(
        self,
        reason: Reason | str | None = None,
        predicate: Callable[[DeadLetter], bool] | None = None,
    ) -> list[DeadLetter]:
        """Entries with this ``reason`` and satisfying ``predicate``, oldest first. O(n).

        Raises:
            InvalidArgumentError: ``reason`` is not a Reason.
            InvalidTypeError: ``predicate`` is not callable.
        """
        why = None if reason is None else self._reason(reason)
        if predicate is not None and not callable(predicate):
            raise InvalidTypeError(f"predicate must be callable, got {predicate!r}")
        entries = self._entries
        chosen = [
            entry
            for entry in list(entries.values())  # a copy: the predicate may change the DLQ
            if (why is None or entry.reason is why) and (predicate is None or predicate(entry))
        ]
        return [entry for entry in chosen if entries.get(entry.task.id) is entry]

    @property
    def maxsize(self) -> int | None:
        """Most entries held, or ``None`` for unbounded."""
        return self._maxsize

    @property
    def overflow(self) -> Overflow:
        """What a full DLQ does: ``"drop_oldest"`` or ``"reject"``."""
        return self._overflow

    def stats(self) -> DeadLetterStats:
        """A snapshot: depth, depth per reason, oldest age and the books. O(r)."""
        entries = self._entries
        oldest = next(iter(entries.values())).dead_at if entries else None
        return DeadLetterStats(
            depth=len(entries),
            by_reason=dict(self._by_reason),
            oldest_age=0.0 if oldest is None else max(0.0, self._clock.now() - oldest),
            added=self._added,
            redriven=self._redriven,
            purged=self._purged,
            evicted=self._evicted,
            rejected=self._rejected,
        )

    # -- persistence ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The entries, oldest first, and the books, as plain data. O(n + history).

        A history must hold :class:`~taskdist.AttemptRecord` items (what the
        Distributor records). :meth:`load_snapshot` on an empty DLQ of the same
        configuration takes it back; see ``docs/persistence.md``.

        Raises:
            SnapshotError: a history item that is not an ``AttemptRecord``, or an
                id a snapshot cannot carry.
        """
        entries = []
        for entry in self._entries.values():
            history = []
            for record in entry.history:
                if not isinstance(record, AttemptRecord):
                    raise SnapshotError(
                        f"cannot write the history of dead letter {entry.task.id!r} to a "
                        f"snapshot: it holds {shown(record)}, not AttemptRecords"
                    )
                history.append(record.to_data())
            entries.append(
                {
                    "task": entry.task.to_data(),
                    "reason": entry.reason.value,
                    "history": history,
                    "error": entry.error,
                    "dead_at": entry.dead_at,
                    "redriven_at": entry.redriven_at,
                }
            )
        return {
            **header("DeadLetterQueue"),
            "maxsize": self._maxsize,
            "overflow": self._overflow,
            "entries": entries,
            "counts": [self._added, self._redriven, self._purged, self._evicted, self._rejected],
        }

    def load_snapshot(self, data: object) -> None:
        """Take on the state :meth:`snapshot` wrote, into an empty DLQ of the same
        ``maxsize`` and ``overflow``. O(n + history).

        Raises:
            SnapshotError: an unknown format version, a missing or ill-typed field,
                another configuration, or a non-empty DLQ (nothing changes).
        """
        self._prepare_snapshot(data, "dlq")()

    def _prepare_snapshot(self, data: object, where: str) -> Callable[[], None]:
        """Check ``data`` whole; return what loads it (it cannot fail)."""
        fields = check_header(data, "DeadLetterQueue", where)
        if self._entries or self._added:
            refuse(where, "can be loaded only into a new, empty DeadLetterQueue")
        for name, mine in (("maxsize", self._maxsize), ("overflow", self._overflow)):
            fields.same(name, mine, "dead-letter queue")
        entries: dict[Hashable, DeadLetter] = {}
        for i, item in enumerate(fields.items("entries")):
            at = f"{where}.entries[{i}]"
            entry = Fields(item, at)
            task = Task.from_data(entry.value("task"), f"{at}.task")
            reason = entry.text("reason")
            if reason not in _REASONS:
                refuse(f"{at}.reason", f"names no Reason, got {reason!r}")
            history = tuple(
                AttemptRecord.from_data(record, f"{at}.history[{j}]")
                for j, record in enumerate(entry.items("history"))
            )
            letter = DeadLetter(
                task,
                Reason(reason),
                history,
                entry.opt_text("error"),
                entry.number("dead_at"),
                entry.opt_number("redriven_at"),
            )
            entry.done()
            if task.id in entries:
                refuse(at, f"holds task {task.id!r} a second time")
            entries[task.id] = letter
        if self._maxsize is not None and len(entries) > self._maxsize:
            refuse(where, f"holds {len(entries)} entries, more than maxsize {self._maxsize}")
        counts = fields.counts("counts", 5)
        fields.done()

        def load() -> None:
            self._entries.update(entries)
            self._by_reason.update(entry.reason for entry in entries.values())
            self._added, self._redriven, self._purged, self._evicted, self._rejected = counts

        return load

    def __repr__(self) -> str:
        return (
            f"DeadLetterQueue(len={len(self._entries)}, maxsize={self._maxsize!r}, "
            f"overflow={self._overflow!r})"
        )

    # -- leaving ----------------------------------------------------------

    def redrive(self, ids_or_predicate: Selector, *, into: Queue) -> RedriveReport:
        """Push the selected tasks back into ``into`` as new work, oldest first
        (ids: in the order given). O(n) for a predicate, O(k) for k ids.

        Each task the queue accepts leaves the DLQ; each it refuses (raises a
        :class:`~taskdist.errors.TaskdistError`, or evicts it straight back)
        stays, and the report says why. A task the queue evicts to make room
        is dead-lettered here with the eviction's reason (unless a task with
        its id is already held here: then it is only in ``report.displaced``).

        Raises:
            InvalidTypeError: ``into`` is not a Queue, or the selector is
                neither ids nor a predicate (a lone str id must be in a list).
            InvalidArgumentError: ``into`` is the queue of the ``Distributor`` this
                DLQ belongs to: redrive through :meth:`Distributor.redrive` instead.
            UnknownTaskError: an id is not held (nothing is redriven).
        """
        if not isinstance(into, Queue):
            raise InvalidTypeError(f"into must be a Queue, got {type(into).__name__}")
        if any(into is fed for fed in self._feeds):
            raise InvalidArgumentError(
                "into is the queue of the Distributor this dead-letter queue belongs to, "
                "which would not know of the tasks: use Distributor.redrive() (nothing moved)"
            )
        selected = self._select(ids_or_predicate)
        redriven: list[DeadLetter] = []
        refused: list[tuple[DeadLetter, str]] = []
        displaced: list[Eviction] = []
        for entry in selected:
            if self._entries.get(entry.task.id) is not entry:
                continue  # taken meanwhile (by a callback of the queue, or the predicate)
            try:
                eviction = into.push(entry.task)
            except TaskdistError as error:
                refused.append((entry, f"{type(error).__name__}: {error}"))
                continue
            if eviction is not None and eviction.task.id == entry.task.id:
                refused.append((entry, f"the queue evicted it straight back ({eviction.reason})"))
                continue
            self._take(entry.task.id)
            self._redriven += 1
            redriven.append(attrs.evolve(entry, redriven_at=self._clock.now()))
            if eviction is not None:
                displaced.append(eviction)
                # The DLQ just shrank by one, so this add cannot overflow.
                if eviction.task.id not in self._entries:
                    self.add(eviction.task, eviction.reason)
        return RedriveReport(tuple(redriven), tuple(refused), tuple(displaced))

    def purge(self, ids_or_predicate: Selector | None = None) -> list[DeadLetter]:
        """Remove and return the selected entries (all of them by default), oldest first.

        O(n) for a predicate or all, O(k) for k ids.

        Raises:
            InvalidTypeError: the selector is neither ids nor a predicate.
            UnknownTaskError: an id is not held (nothing is purged).
        """
        selected = (
            list(self._entries.values())
            if ids_or_predicate is None
            else (self._select(ids_or_predicate))
        )
        entries = self._entries
        # A predicate may have taken some of the entries it chose: those stay taken.
        selected = [entry for entry in selected if entries.get(entry.task.id) is entry]
        for entry in selected:
            self._take(entry.task.id)
        self._purged += len(selected)
        return selected

    # -- internals --------------------------------------------------------

    def _take(self, task_id: Hashable) -> DeadLetter:
        entry = self._entries.pop(task_id)
        count = self._by_reason[entry.reason] - 1
        if count:
            self._by_reason[entry.reason] = count
        else:
            del self._by_reason[entry.reason]
        return entry

    def _reason(self, reason: object) -> Reason:
        try:
            return Reason(reason)
        except ValueError:
            allowed = ", ".join(repr(r.value) for r in Reason)
            raise InvalidArgumentError(f"reason must be one of {allowed}, got {reason!r}") from None

    def _select(self, ids_or_predicate: object) -> list[DeadLetter]:
        """The entries selected, validated in full before anything moves."""
        entries = self._entries
        if callable(ids_or_predicate):
            # Over a copy: the predicate may change the DLQ; what it took is not selected.
            matched = [entry for entry in list(entries.values()) if ids_or_predicate(entry)]
            return [entry for entry in matched if entries.get(entry.task.id) is entry]
        if isinstance(ids_or_predicate, (str, bytes)) or not isinstance(ids_or_predicate, Iterable):
            raise InvalidTypeError(
                "select entries with an iterable of task ids such as "
                f"[{ids_or_predicate!r}] or a predicate over entries, got {ids_or_predicate!r}"
            )
        chosen: dict[Hashable, DeadLetter] = {}
        for task_id in ids_or_predicate:
            try:
                entry = entries.get(task_id)
            except TypeError:
                raise InvalidTypeError(f"task ids are hashable, got {task_id!r}") from None
            if entry is None:
                raise UnknownTaskError(f"no task with id {task_id!r} in the dead-letter queue")
            chosen[task_id] = entry
        return list(chosen.values())
