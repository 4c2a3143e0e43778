"""The URLs of a running server's SockJS test services (``--sockjs-test-services``),
for the end-to-end SockJS tests and their ``sockjs`` fixture (``tests/e2e/conftest.py``)."""

from __future__ import annotations

import uuid

from tests.support.server import RunningServer


class SockJSUrls:
    """Base URLs of the SockJS services of one running server."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.top = server.url + "/sockjs"
        self.echo = self.top + "/echo"
        self.close = self.top + "/close"
        self.wsoff = self.top + "/disabled_websocket_echo"
        self.cookie = self.top + "/cookie_needed_echo"

    @staticmethod
    def session(base: str) -> str:
        """A fresh session URL under ``base``."""
        return f"{base}/000/{uuid.uuid4()}"

    @staticmethod
    def ws(url: str) -> str:
        return url.replace("http://", "ws://", 1)
