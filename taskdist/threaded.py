"""Share one Distributor between threads: ``taskdist.threaded.ThreadSafeDistributor(d)``.

Every call holds one lock; worker threads wait for work with
``wait_for_work(timeout)`` instead of polling (see ``docs/hosting.md``).
"""

from taskdist.hosts.threaded import ThreadSafeDistributor

__all__ = ["ThreadSafeDistributor"]
