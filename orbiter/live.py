"""Live elements, the public API: Python objects whose methods a browser widget calls.

Nevow Athena's model (``docs/live.md``)::

    from orbiter.live import LiveElement, expose

    class Echo(LiveElement):
        widget_class = "EchoWidget"

        @expose
        async def echo(self, text: str) -> str:
            await self.call_remote("show", text)
            return text

``orbiter serve --element package.module:factory`` (or ``[[live.element]]``)
makes one element per browser connection with the factory.
"""

from orbiter.protocol.live import NotJSON
from orbiter.services.live.elements import (
    ConnectionLost,
    LiveElement,
    RemoteError,
    RemoteTimeout,
    TooManyCalls,
    expose,
)

__all__ = [
    "ConnectionLost",
    "LiveElement",
    "NotJSON",
    "RemoteError",
    "RemoteTimeout",
    "TooManyCalls",
    "expose",
]
