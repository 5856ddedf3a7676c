"""Balancers: which worker runs a task.

Subclass :class:`Balancer` and implement ``select(task, candidates)`` only;
or pick a built-in strategy (see ``docs/balancing.md`` for when to use which).
"""

from taskdist.balancing.affinity import Affinity
from taskdist.balancing.base import (
    Balancer,
    DelegatingBalancer,
    RandomizedBalancer,
    ScoringBalancer,
    load_per_weight,
)
from taskdist.balancing.consistent_hash import ConsistentHash, key_hash
from taskdist.balancing.least_load import CapacityBased, LeastConnections, PerformanceBased
from taskdist.balancing.randomized import PowerOfTwoChoices, RandomBalancer
from taskdist.balancing.round_robin import RoundRobin, WeightedRoundRobin
from taskdist.balancing.scoring import (
    Factor,
    MultiFactor,
    availability,
    cost_efficiency,
    performance,
    skill_match,
)
from taskdist.balancing.zone import Spill, ZoneAware

__all__ = [
    "Affinity",
    "Balancer",
    "CapacityBased",
    "ConsistentHash",
    "DelegatingBalancer",
    "Factor",
    "LeastConnections",
    "MultiFactor",
    "PerformanceBased",
    "PowerOfTwoChoices",
    "RandomBalancer",
    "RandomizedBalancer",
    "RoundRobin",
    "ScoringBalancer",
    "Spill",
    "WeightedRoundRobin",
    "ZoneAware",
    "availability",
    "cost_efficiency",
    "key_hash",
    "load_per_weight",
    "performance",
    "skill_match",
]
