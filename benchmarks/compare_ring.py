"""Print ConsistentHash's ring costs next to the tuple layout it had before and uhashring.

    python benchmarks/compare_ring.py [--repeat 7]

- lookups: µs per key for 100k keys ``user-0 .. user-99999`` over 5 nodes
  ``node-0 .. node-4``, with max/mean keys per node;
- memory: bytes per worker (tracemalloc) of a ring of 100 workers;
- membership: one worker added then removed in a ring of 10 / 100 / 1000 workers
  (``--sizes 10 100 1000 10000`` adds 10 000; the tuple layout sits that out).

"tuple layout" is the ring as it was stored before the array layouts (a
sorted list of ``(point, repr(id), join number, id)`` tuples plus a list of
points and a list of owners, re-sorted on every join), kept here so the
comparison can be rerun. Every contender is run ``repeat`` times, interleaved
so that machine noise hits them alike, keeping each one's best (CPU time). Prints
Markdown tables for docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Hashable

import mmh3
from bench_balancing import NODES, taskdist_ring
from uhashring import HashRing

from taskdist.balancing import key_hash

KEYS = [f"user-{i}" for i in range(100_000)]


class PreviousRing:
    """The storage ConsistentHash used before: tuples, re-sorted on each join (lookup as before)."""

    def __init__(self, vnodes: int) -> None:
        self.vnodes = vnodes
        self.joined: dict[Hashable, int] = {}
        self.entries: list[tuple[int, str, int, Hashable]] = []
        self.points: list[int] = []
        self.owners: list[Hashable] = []

    def add(self, worker_id: Hashable) -> None:
        self.join(worker_id)
        self.entries.sort()
        self.reindex()

    def join(self, worker_id: Hashable) -> None:
        label, joined = repr(worker_id), len(self.joined)
        self.joined[worker_id] = joined
        self.entries.extend(
            (int(mmh3.hash(f"{label}#{i}", signed=False)), label, joined, worker_id)
            for i in range(self.vnodes)
        )

    def remove(self, worker_id: Hashable) -> None:
        joined = self.joined.pop(worker_id)
        self.entries = [entry for entry in self.entries if entry[2] != joined]
        self.reindex()

    def reindex(self) -> None:
        self.points = [entry[0] for entry in self.entries]
        self.owners = [entry[3] for entry in self.entries]

    def lookup(self, key: Hashable) -> Hashable | None:
        points = self.points
        if not points:
            return None
        index = bisect_right(points, key_hash(key))
        return self.owners[index if index < len(points) else 0]


def previous(nodes: list[str], vnodes: int) -> PreviousRing:
    ring = PreviousRing(vnodes)
    for node in nodes:
        ring.join(node)
    ring.entries.sort()  # once, not per join: the same ring, built faster
    ring.reindex()
    return ring


# name -> node names -> lookup function
LOOKUPS: dict[str, Callable[[list[str]], Callable[[str], object]]] = {
    "tuple layout, 160 points": lambda nodes: previous(nodes, 160).lookup,
    "tuple layout, 640 points": lambda nodes: previous(nodes, 640).lookup,
    "ConsistentHash(vnodes=160)": lambda nodes: taskdist_ring(nodes, 160).lookup,
    "ConsistentHash() (640 points)": lambda nodes: taskdist_ring(nodes).lookup,
    "uhashring HashRing (160 points)": lambda nodes: HashRing(nodes=nodes).get_node,
}


def seconds(run: Callable[[], object]) -> float:
    """CPU seconds of one ``run()``: the time the process waited for a core on a busy
    machine is not counted."""
    gc.collect()
    start = time.process_time()
    run()
    return time.process_time() - start


def lookups(repeat: int) -> None:
    made = {name: make(NODES) for name, make in LOOKUPS.items()}
    best = dict.fromkeys(made, float("inf"))
    for _ in range(repeat):
        for name, lookup in made.items():
            best[name] = min(best[name], seconds(lambda f=lookup: list(map(f, KEYS))))
    base = best["uhashring HashRing (160 points)"]
    print(f"\n| {len(KEYS)} keys / {len(NODES)} nodes | µs per key | to uhashring | max/mean |")
    print("|---|---:|---:|---:|")
    for name, lookup in made.items():
        counts = Counter(map(lookup, KEYS))
        spread = max(counts.values()) / (len(KEYS) / len(NODES))
        us = best[name] / len(KEYS) * 1e6
        print(f"| {name} | {us:.3f} | {best[name] / base:.2f} | {spread:.3f} |")


def traced_bytes(build: Callable[[], object]) -> int:
    """Bytes still allocated by ``build()`` while its result is alive (names made beforehand)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return after - before


def memory(workers: int = 100) -> None:
    names = [f"node-{i}" for i in range(workers)]
    rows = {
        "tuple layout, 640 points": lambda: previous(names, 640),
        "ConsistentHash(vnodes=160)": lambda: taskdist_ring(names, 160),
        "ConsistentHash() (640 points)": lambda: taskdist_ring(names),
        "uhashring HashRing (160 points)": lambda: HashRing(nodes=names),
    }
    print(f"\n| ring of {workers} workers | bytes per worker | bytes per point |")
    print("|---|---:|---:|")
    for name, build in rows.items():
        per_worker = traced_bytes(build) / workers
        points = 160 if "160" in name else 640
        print(f"| {name} | {per_worker:,.0f} | {per_worker / points:.1f} |")


# The tuple layout re-sorts its tuples on every join: past this many workers it
# would hold gigabytes and take minutes, so it sits out.
PREVIOUS_UP_TO = 1_000


def membership(repeat: int, sizes: list[int]) -> None:
    columns = " | ".join(f"{n} workers" for n in sizes)
    print(f"\n| one worker joins, then leaves: 640 points (uhashring 160) | {columns} |")
    print("|---|" + "---:|" * len(sizes))
    rows: dict[str, list[str]] = {}
    for n in sizes:
        names = [f"node-{i}" for i in range(n)]
        rings: dict[str, object] = {
            "ConsistentHash()": taskdist_ring(names),
            "uhashring HashRing": HashRing(nodes=names),
        }
        if n <= PREVIOUS_UP_TO:
            rings["tuple layout"] = previous(names, 640)
        else:
            rows.setdefault("tuple layout: add", []).append("-")
            rows.setdefault("tuple layout: remove", []).append("-")
        for name, ring in rings.items():
            add, remove = (
                (ring.add_node, ring.remove_node)  # type: ignore[attr-defined]
                if isinstance(ring, HashRing)
                else (ring.add, ring.remove)  # type: ignore[attr-defined]
            )
            added = removed = float("inf")
            for _ in range(repeat if n < 1_000 or name != "tuple layout" else 2):
                added = min(added, seconds(lambda add=add: add("newcomer")))
                removed = min(removed, seconds(lambda remove=remove: remove("newcomer")))
            rows.setdefault(f"{name}: add", []).append(f"{added * 1e3:.2f} ms")
            rows.setdefault(f"{name}: remove", []).append(f"{removed * 1e3:.2f} ms")
    for name, cells in sorted(rows.items()):
        print(f"| {name} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1_000])
    args = parser.parse_args()
    lookups(args.repeat)
    memory()
    membership(args.repeat, args.sizes)


if __name__ == "__main__":
    main()
