"""A user balancer in a few lines: the cheapest worker with room; the least loaded among equals.

Run: python examples/custom_balancer.py
"""

from collections.abc import Sequence

from taskdist import Balancer, CapacityTracker, ManualClock, Task, Worker, WorkerState


class Cheapest(Balancer):
    def select(self, task: Task, candidates: Sequence[WorkerState]) -> WorkerState | None:
        return min(candidates, key=lambda w: (w.cost, w.load_ratio), default=None)


tracker = CapacityTracker(ManualClock())
for name, slots, cost in (("large-model", 3, 0.06), ("small-model", 2, 0.01), ("local", 1, 0.0)):
    tracker.add_worker(Worker(name, capacity=slots, cost=cost))

balancer = Cheapest()
for i in range(7):
    task = Task(f"task-{i}")
    worker = balancer.choose(task, tracker)  # select() over the healthy workers with room
    if worker is None:
        print(f"{task.id}: every worker is full, so it waits in the queue")
        continue
    tracker.assign(task, worker.id)
    print(f"{task.id} -> {worker.id:<11} cost {worker.cost:.2f}, {worker.in_flight} in flight")
print(f"utilization {tracker.utilization():.0%}, load variance {tracker.load_variance():.2f}")
