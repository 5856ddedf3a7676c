"""Resilience: circuit breakers, retries with backoff, rate limits, bulkheads."""

from taskdist.resilience.bulkhead import PoolStats, ResourcePool
from taskdist.resilience.gates import (
    AllGates,
    Gate,
    KeyedRateGate,
    PoolGate,
    RateGate,
    ReversibleGate,
)
from taskdist.resilience.rate_limit import KeyedRateLimiter, MultiLimiter, RateLimiter

__all__ = [
    "AllGates",
    "Gate",
    "KeyedRateGate",
    "KeyedRateLimiter",
    "MultiLimiter",
    "PoolGate",
    "PoolStats",
    "RateGate",
    "RateLimiter",
    "ResourcePool",
    "ReversibleGate",
]
