"""Outcomes: what a tracker learns from its workers' outcomes and from time.

Per worker: the EWMA latency and success rate, the health the outcomes
imply (a :class:`~taskdist.workers.health.HealthPolicy`), outlier ejection
and readmission (an :class:`~taskdist.workers.health.OutlierEjection`, with
its bound on the share of workers ejected at once) and the slow-start ramp
of the effective weight (a :class:`~taskdist.workers.health.SlowStart`).

The :class:`~taskdist.CapacityTracker` owns one and calls it; it writes the
:class:`~taskdist.WorkerState` views only through their private mutators,
and reports every change of a worker's health or effective weight to the
tracker's ``changed(state, health_before)`` callback, so the tracker can
refile the worker in its indexes and counters.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any, Final

import attrs

from taskdist.workers.health import (
    Health,
    HealthPolicy,
    OutlierEjection,
    SlowStart,
    ewma_keep,
    worst,
)
from taskdist.workers.state import WorkerState

__all__ = ["RAMP_STEPS", "Outcomes"]

_UNAVAILABLE: Final = Health.UNAVAILABLE
_NEVER: Final = float("inf")
# A slow-start ramp moves a worker's effective weight along in this many equal
# steps of its window, so each worker is refiled this many times per ramp, not
# on every call (a fleet-wide restart would otherwise refile every worker each time).
RAMP_STEPS: Final = 32

Changed = Callable[[WorkerState, Health], None]


class _Record:
    """What the bookkeeping keeps of one worker beyond its view."""

    __slots__ = ("derived", "latency_at", "outcome_at", "ramp_step", "readmitted_at", "slow_since")

    def __init__(self) -> None:
        self.derived = Health.HEALTHY  # what the outcomes say
        # When each average last took a sample: a half-life decays it from there.
        self.latency_at: float | None = None
        self.outcome_at: float | None = None
        self.readmitted_at: float | None = None
        self.slow_since: float | None = None  # start of the slow-start ramp in progress
        self.ramp_step = RAMP_STEPS  # steps of the ramp taken (RAMP_STEPS: none in progress)


class Outcomes:
    """EWMA performance, derived health, outlier ejection and slow start for a tracker's workers.

    Every method is O(1) but where it says otherwise; ``changed`` is called
    once per change of a worker's health or effective weight.
    """

    __slots__ = (
        "_alpha",
        "_changed",
        "_ejected",
        "_ejection",
        "_fixed_keep",
        "_half_life",
        "_heap",
        "_policy",
        "_ramps",
        "_records",
        "_slow_start",
        "next_due",
    )

    def __init__(
        self,
        *,
        alpha: float,
        half_life: float | None,
        policy: HealthPolicy | None,
        ejection: OutlierEjection | None,
        slow_start: SlowStart | None,
        changed: Changed,
    ) -> None:
        self._alpha = alpha
        self._half_life = half_life
        # Without a half-life an average keeps the same weight on every sample.
        self._fixed_keep = 1.0 - alpha if half_life is None else None
        self._policy = policy
        self._ejection = ejection
        self._slow_start = slow_start
        self._changed = changed
        self._records: dict[WorkerState, _Record] = {}
        # (ejected_until, seq, state): live while state.ejected_until equals it.
        self._heap: list[tuple[float, int, WorkerState]] = []
        self._ejected = 0
        # (time of the next step, seq, state, start of its ramp): the ramps in progress.
        # An entry is live while the worker's record has that start.
        self._ramps: list[tuple[float, int, WorkerState, float]] = []
        self.next_due = _NEVER
        """No earlier than the first time :meth:`due` has work (an ejection to lift or a
        ramp to step): before it, the tracker need not call ``due`` at all."""

    # -- membership -------------------------------------------------------

    def join(self, state: WorkerState, now: float) -> None:
        """Start keeping ``state``'s books (and its slow start, if configured)."""
        self._records[state] = _Record()
        self._begin_slow_start(state, now)

    def leave(self, state: WorkerState) -> None:
        """Stop keeping ``state``'s books; an ejection in progress ends with it."""
        del self._records[state]
        if state.ejected_until is not None:
            state._set_ejection(None, state.ejections, state.consecutive_failures)
            self._ejected -= 1

    def reweigh(self, state: WorkerState) -> None:
        """``state``'s weight changed: put its ramp, if any, on the new weight."""
        self._set_ramp_weight(state, self._records[state])

    # -- what happens -----------------------------------------------------

    def set_host_health(self, state: WorkerState, health: Health, now: float) -> None:
        """Record what the host says of ``state``."""
        state._set_host_health(health)
        self._update_health(state, now)

    def record(
        self,
        state: WorkerState,
        now: float,
        duration: float | None,
        ok: bool | None,
        workers: int,
    ) -> None:
        """Feed one outcome into the averages, the health policy and ejection
        (``workers``: how many are registered, for the ejection bound)."""
        record = self._records[state]
        fixed = self._fixed_keep
        if duration is not None:
            previous = state.latency
            keep = fixed if fixed is not None else self._keep(record.latency_at, now)
            record.latency_at = now
            state._set_latency(
                duration if previous is None else keep * previous + (1.0 - keep) * duration
            )
        if ok is not None:
            keep = fixed if fixed is not None else self._keep(record.outcome_at, now)
            record.outcome_at = now
            state._count_outcome(
                keep * state.success_rate + (1.0 - keep) * (1.0 if ok else 0.0), ok
            )
        policy = self._policy
        if ok is False:
            if policy is not None:
                record.derived = policy.judge(state.outcomes, state.success_rate, state.latency)
            self._maybe_eject(state, now, workers)
            self._update_health(state, now)
        elif policy is not None:
            derived = record.derived = policy.judge(
                state.outcomes, state.success_rate, state.latency
            )
            # _update_health changes nothing when the health is already what the
            # outcomes and the host say, and no ejection is in progress (the usual case).
            if (
                derived is not state.health
                or derived is not state.host_health
                or state.ejected_until is not None
            ):
                self._update_health(state, now)
        # else nothing that decides health moved: no policy, and no ejection

    def reinstate(self, state: WorkerState, now: float) -> None:
        """Lift ``state``'s ejection now, if it is ejected."""
        if state.ejected_until is not None:
            self._readmit(state, now)

    def due(self, now: float) -> None:
        """Lift the ejections that have ended and move slow-start weights along.

        O(1) when nothing is due; O(log n) per ejection lifted and per ramp
        moved a step (each ramp moves at most ``RAMP_STEPS`` times).
        """
        heap = self._heap
        while heap and heap[0][0] <= now:
            until, _, state = heappop(heap)
            if state.ejected_until == until and state in self._records:
                self._readmit(state, until)
        ramps = self._ramps
        while ramps and ramps[0][0] <= now:
            at, _, state, since = heappop(ramps)
            record = self._records.get(state)
            # Live: the next step of the ramp in progress. A ramp restarted at the
            # instant it began left a twin entry, which must not step it twice.
            if record is not None and record.slow_since == since and at == self._step_at(record):
                self._step_ramp(state, record, now)
        self.next_due = min(heap[0][0] if heap else _NEVER, ramps[0][0] if ramps else _NEVER)

    def next_wakeup(self) -> float | None:
        """When the next ejection ends, or ``None``. O(1) amortised."""
        heap = self._heap
        while heap and heap[0][2].ejected_until != heap[0][0]:
            heappop(heap)
        return heap[0][0] if heap else None

    def keep_bound(self, workers: int, now: float) -> None:
        """After a removal, lift the ejections ending soonest until at most
        ``max_ejection_percent`` of the ``workers`` are ejected. O(log n) per lift."""
        rule = self._ejection
        if rule is None:
            return
        heap = self._heap
        # allows(ejected - 1, n) is "ejected <= percent * n / 100".
        while self._ejected and not rule.allows(self._ejected - 1, workers):
            until, _, state = heappop(heap)
            if state.ejected_until == until and state in self._records:
                self._readmit(state, now)

    # -- persistence ------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The configuration, as plain data: the EWMA's ``alpha`` and half-life, and
        each policy's fields (``None`` for a policy that is off)."""
        return {
            "ewma_alpha": self._alpha,
            "ewma_half_life": self._half_life,
            "health": _fields(self._policy),
            "ejection": _fields(self._ejection),
            "slow_start": _fields(self._slow_start),
        }

    def record_data(self, state: WorkerState) -> list[object]:
        """What the books keep of ``state`` beyond its view, as plain data."""
        record = self._records[state]
        return [
            record.derived.value,
            record.latency_at,
            record.outcome_at,
            record.readmitted_at,
            record.slow_since,
            record.ramp_step,
        ]

    def restore(self, states: list[tuple[WorkerState, list[object]]]) -> None:
        """Keep the books of restored workers (each with its :meth:`record_data`, already
        checked), and their ejections and ramps in progress."""
        for state, data in states:
            record = self._records[state] = _Record()
            derived, latency_at, outcome_at, readmitted_at, slow_since, ramp_step = data
            record.derived = Health(derived)
            record.latency_at = latency_at  # type: ignore[assignment]
            record.outcome_at = outcome_at  # type: ignore[assignment]
            record.readmitted_at = readmitted_at  # type: ignore[assignment]
            record.slow_since = slow_since  # type: ignore[assignment]
            record.ramp_step = ramp_step  # type: ignore[assignment]
            if state.ejected_until is not None:
                self._ejected += 1
                heappush(self._heap, (state.ejected_until, state.seq, state))
            ramp = self._slow_start
            if ramp is not None and record.slow_since is not None:
                heappush(self._ramps, (self._step_at(record), state.seq, state, record.slow_since))
        heap, ramps = self._heap, self._ramps
        self.next_due = min(heap[0][0] if heap else _NEVER, ramps[0][0] if ramps else _NEVER)

    # -- internals --------------------------------------------------------

    def _keep(self, last_sample_at: float | None, now: float) -> float:
        """The weight an average sampled last at ``last_sample_at`` keeps on a new sample."""
        if self._fixed_keep is not None:  # plain EWMA: time plays no part
            return self._fixed_keep
        elapsed = None if last_sample_at is None else now - last_sample_at
        return ewma_keep(self._alpha, elapsed, self._half_life)

    def _maybe_eject(self, state: WorkerState, now: float, workers: int) -> None:
        rule = self._ejection
        if (
            rule is None
            or state.ejected_until is not None
            or state.consecutive_failures < rule.consecutive_failures
            or not rule.allows(self._ejected, workers)
        ):
            return
        ejections = state.ejections
        readmitted = self._records[state].readmitted_at
        if readmitted is not None:
            # Envoy's multiplier decays by one per base_ejection_time spent back in service.
            ejections = max(0, ejections - int((now - readmitted) // rule.base_ejection_time))
        ejections += 1
        until = now + rule.duration(ejections)
        state._set_ejection(until, ejections, 0)
        self._ejected += 1
        heappush(self._heap, (until, state.seq, state))
        self.next_due = min(self.next_due, until)

    def _readmit(self, state: WorkerState, now: float) -> None:
        state._set_ejection(None, state.ejections, 0)
        self._records[state].readmitted_at = now
        self._ejected -= 1
        self._update_health(state, now)

    def _update_health(self, state: WorkerState, now: float) -> None:
        before = state.health
        if state.ejected_until is not None:
            after = _UNAVAILABLE
        else:
            after = worst(state.host_health, self._records[state].derived)
        if after is not before:
            state._set_health(after)
        if before is _UNAVAILABLE and after is not _UNAVAILABLE:
            self._begin_slow_start(state, now)
        if after is not before:
            self._changed(state, before)

    def _begin_slow_start(self, state: WorkerState, now: float) -> None:
        if self._slow_start is not None:
            record = self._records[state]
            record.slow_since = now
            record.ramp_step = -1
            self._step_ramp(state, record, now)

    def _step_ramp(self, state: WorkerState, record: _Record, now: float) -> None:
        """Move a ramp to the step ``now`` is in (at least one step on), and
        schedule its next step unless it is done."""
        ramp = self._slow_start
        since = record.slow_since
        assert ramp is not None  # only a tracker with slow start has ramps
        assert since is not None  # only a ramp in progress takes steps
        window = ramp.window
        # max(): a step boundary that float rounding puts a hair early still moves on.
        step = max(record.ramp_step + 1, int((now - since) / window * RAMP_STEPS))
        record.ramp_step = min(step, RAMP_STEPS)
        self._set_ramp_weight(state, record)
        if step < RAMP_STEPS:
            at = since + window * (step + 1) / RAMP_STEPS
            heappush(self._ramps, (at, state.seq, state, since))
            self.next_due = min(self.next_due, at)
        else:
            record.slow_since = None

    def _step_at(self, record: _Record) -> float:
        """When the ramp in progress takes its next step (as scheduled)."""
        assert self._slow_start is not None  # only a tracker with slow start has ramps
        assert record.slow_since is not None  # and this one is in progress
        return record.slow_since + self._slow_start.window * (record.ramp_step + 1) / RAMP_STEPS

    def _set_ramp_weight(self, state: WorkerState, record: _Record) -> None:
        """Effective weight: the weight, scaled by the ramp's factor at its current step."""
        ramp = self._slow_start
        factor = 1.0 if ramp is None else ramp.factor(ramp.window * record.ramp_step / RAMP_STEPS)
        state._set_effective_weight(state.weight * factor)
        self._changed(state, state.health)


def _fields(policy: HealthPolicy | OutlierEjection | SlowStart | None) -> dict[str, Any] | None:
    return None if policy is None else attrs.asdict(policy)
