"""Batch LLM calls by intent, on the nine-agent platform scenario, driven by a ManualClock.

    python examples/batch_llm_calls.py

Requests arrive with an intent. The two batchable intents of the scenario,
``document_research`` and ``reviewing``, go through a BatchOptimizer keyed by
intent (``Task.group``); everything else is one call per request. The host is
a plain loop: it adds arrivals, and whenever the clock reaches
``next_wakeup()`` it polls. Each released batch becomes one LLM call whose
duration follows the scenario's estimate (60 % of the sequential time plus 1 s
of overhead), reported back with ``record()`` so AIMD sizing keeps batch
calls near a 30 s target.
"""

from __future__ import annotations

import random

from taskdist import AIMDSizing, Batch, BatchOptimizer, ManualClock, Task

# From the platform scenario (taskdist.sim.scenarios.INTENT_PRIORITY, a subset):
# intent priorities (1 = most urgent), and which intents may be batched.
# Durations per request: research 15 s is the scenario's figure; reviewing 5 s
# is assumed here.
INTENT_PRIORITY = {
    "brainstorming": 1,
    "deciding": 1,
    "exploring": 2,
    "reviewing": 3,
    "general": 3,
    "document_research": 4,
}
BATCHABLE = {"document_research", "reviewing"}
SECONDS_PER_REQUEST = {"document_research": 15.0, "reviewing": 5.0}


def batch_call_seconds(batch: Batch) -> float:
    """The scenario's estimate: one request alone, or 60 % of the sequential time + 1 s."""
    sequential = sum(SECONDS_PER_REQUEST[str(task.group)] for task in batch)
    return sequential if len(batch) == 1 else 0.6 * sequential + 1.0


def main() -> None:
    rng = random.Random(7)
    clock = ManualClock()
    batcher = BatchOptimizer(
        clock,
        max_size=5,  # the scenario's cap: at most 5 research items per call
        max_wait=20.0,  # a research request waits at most 20 s for company
        sizing=AIMDSizing(target_latency=30.0, initial_size=5),
    )
    single_calls = 0
    batch_calls: list[Batch] = []

    def run(batch: Batch) -> None:
        # A real host would send the batch to the LLM API and record on reply.
        batch_calls.append(batch)
        batcher.record(batch, batch_call_seconds(batch))

    arrival = 0.0
    intents = list(INTENT_PRIORITY)
    for i in range(400):
        arrival += rng.expovariate(1 / 3.0)  # one request every 3 s on average
        # Poll at every wakeup up to the next arrival: never late, never blind.
        while (wake := batcher.next_wakeup()) is not None and wake <= arrival:
            clock.set(max(wake, clock.now()))
            for batch in batcher.poll():
                run(batch)
        clock.set(arrival)
        intent = rng.choice(intents)
        if intent not in BATCHABLE:
            single_calls += 1
            continue
        task = Task(f"req-{i}", priority=INTENT_PRIORITY[intent], group=intent)
        if (batch := batcher.add(task)) is not None:
            run(batch)
    for batch in batcher.flush():
        run(batch)

    stats = batcher.stats()
    batched_requests = sum(len(batch) for batch in batch_calls)
    print(f"{single_calls} single calls, {batched_requests} batchable requests")
    print(f"in {len(batch_calls)} batch calls: {batched_requests - len(batch_calls)} calls saved")
    print("released by:", {reason.value: n for reason, n in sorted(stats.by_reason.items())})
    for intent, group in sorted(stats.groups.items(), key=lambda item: str(item[0])):
        print(
            f"  {intent}: {group.formed} batches, mean size {group.mean_size:.2f}, "
            f"wait p50 {group.wait.p50:.1f} s / p95 {group.wait.p95:.1f} s, "
            f"call p95 {group.duration.p95:.1f} s, target size now {group.target_size}"
        )
    assert batched_requests + single_calls == 400
    assert all(group.wait.max <= 20.0 for group in stats.groups.values())


if __name__ == "__main__":
    main()
