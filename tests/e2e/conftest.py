"""Fixtures shared by the end-to-end tests (each runs a real ``orbiter serve``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import RunningServer
from tests.support.sockjs_urls import SockJSUrls


@pytest.fixture(scope="module")
def sockjs() -> Iterator[SockJSUrls]:
    """A server with the SockJS test services, shared by a module's tests."""
    server = RunningServer(args=("--sockjs-test-services",))
    yield SockJSUrls(server)
    server.stop()
