"""Run a Distributor's tasks on ``concurrent.futures`` executors: ``ExecutorHost``.

Thread pools, process pools and dask.distributed clusters (``dask_workers``)
alike: taskdist decides which task runs next and where; the executors run
them (see ``docs/hosting.md``).
"""

from taskdist.hosts.executor import ExecutorHost, Job, ResultHandler, dask_workers

__all__ = ["ExecutorHost", "Job", "ResultHandler", "dask_workers"]
