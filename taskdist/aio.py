"""Run a Distributor from asyncio: ``await taskdist.aio.run(distributor, handler)``.

:class:`AsyncHost` dispatches, runs one ``handler(assignment)`` coroutine per
assignment, renews leases and reports outcomes, sleeping exactly until the
next thing is due. :class:`VirtualTimeLoop` runs it, or any asyncio code,
on a ``ManualClock`` that jumps over idle time (see ``docs/hosting.md``).
"""

from taskdist.hosts.aio import AsyncHost, Handler, run
from taskdist.hosts.virtual_time import VirtualTimeLoop, run_virtual

__all__ = ["AsyncHost", "Handler", "VirtualTimeLoop", "run", "run_virtual"]
