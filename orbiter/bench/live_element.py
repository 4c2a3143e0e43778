"""The element ``python -m orbiter.bench.live`` serves: an echo both ways."""

from __future__ import annotations

from typing import Any

from orbiter.services.live.elements import LiveElement, expose


class Echo(LiveElement):
    widget_class = "EchoWidget"

    @expose
    def echo(self, value: Any) -> Any:
        """One browser-to-server round trip."""
        return value

    @expose
    async def bounce(self, value: Any) -> Any:
        """A call that calls the widget back: two round trips, one each way."""
        return await self.call_remote("echo", value)


def make() -> Echo:
    return Echo()
