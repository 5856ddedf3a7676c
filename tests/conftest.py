"""Shared test setup: Hypothesis profiles.

``dev`` (default) explores more; ``ci`` is bounded so the suite stays fast on
a 2-core machine. CI selects ``ci`` through the ``CI`` environment variable;
``HYPOTHESIS_PROFILE`` overrides either.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=150, deadline=None)
settings.register_profile("thorough", max_examples=2_000, stateful_step_count=100, deadline=None)
# At least 10,000 stateful steps per machine: `nox -s stateful`.
settings.register_profile("extended", max_examples=200, stateful_step_count=100, deadline=None)

_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))
