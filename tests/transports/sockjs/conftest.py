from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

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


@pytest.fixture(scope="module")
def sockjs() -> Iterator[SockJSUrls]:
    """A server with the SockJS test services, shared by a module's tests."""
    server = RunningServer(args=("--sockjs-test-services",))
    yield SockJSUrls(server)
    server.stop()
