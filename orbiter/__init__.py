"""orbiter: a real-time push server for web applications.

Run it with ``orbiter serve``; publish from an app server with
``orbiter.Client(url).publish(channel, data)`` (or the seed's
``event(keys, message)``), or ``orbiter.AsyncClient`` under asyncio.
"""

# First, before any module that may be compiled is imported: ORBITER_PURE=1 loads
# every orbiter module from its .py even where a compiled one sits next to it.
from orbiter.version import prefer_source_when_asked

prefer_source_when_asked()

from orbiter.client import AsyncClient, Client, OrbiterError  # noqa: E402 - after the hook
from orbiter.version import __version__  # noqa: E402

__all__ = ["AsyncClient", "Client", "OrbiterError", "__version__"]
