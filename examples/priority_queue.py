"""A host loop around PriorityQueue: aging, cancellation, TTL and a where-filter.

Run: python examples/priority_queue.py
"""

from taskdist import ManualClock, Priority, PriorityQueue, Task

clock = ManualClock()
queue = PriorityQueue(clock, aging_rate=0.5, maxsize=100)

queue.push(Task("nightly-report", priority=Priority.BACKGROUND))
queue.push(Task("gpu-render", priority=Priority.HIGH, requires={"gpu"}))
queue.push(Task("reply-user", priority=Priority.HIGH, ttl=2.0))
queue.push(Task("reindex", priority=Priority.LOW))

# Only CPU workers are free: take the best task that needs no GPU.
task = queue.pop(where=lambda t: "gpu" not in t.requires)
print(f"t={clock.now():>4}: CPU worker takes {task.id if task else None}")

queue.remove("reindex")  # the user cancelled it
queue.push(Task("reply-late", priority=Priority.HIGH, ttl=2.0))
clock.advance(3.0)  # nobody served the queue for 3 s
print(f"t={clock.now():>4}: expired {[t.id for t in queue.expire()]}")

# After 3 s at 0.5 levels/s the background job has aged from 4 to 2.5.
print(f"t={clock.now():>4}: nightly-report is now at {queue.effective_priority('nightly-report')}")
while (task := queue.pop()) is not None:
    print(f"t={clock.now():>4}: pop {task.id}")
print(queue.stats())
