"""Hosts: the loops that run a Distributor's assignments, over the sans-I/O core.

Users import them as ``taskdist.aio`` (asyncio), ``taskdist.threaded``
(threads) and ``taskdist.executor`` (``concurrent.futures`` executors,
dask.distributed included). The package root does not import them: the
core needs neither asyncio's event loop nor threads.
"""
