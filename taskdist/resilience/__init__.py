"""Resilience: circuit breakers, retries with backoff, rate limits, bulkheads."""

from taskdist.resilience.rate_limit import RateLimiter

__all__ = [
    "RateLimiter",
]
