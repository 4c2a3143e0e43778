"""orbiter: a real-time push server for web applications.

Run it with ``orbiter serve``; publish from an app server with
``orbiter.Client(url).publish(channel, data)`` (or the seed's
``event(keys, message)``), or ``orbiter.AsyncClient`` under asyncio.
"""

from orbiter.client import AsyncClient, Client, OrbiterError
from orbiter.version import __version__

__all__ = ["AsyncClient", "Client", "OrbiterError", "__version__"]
