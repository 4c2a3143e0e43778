"""Which paths are the protocol suite's test services (left out of origin checks)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orbiter.config.settings import Config
from orbiter.transports.sockjs_suite import is_test_service_path

ON = Config()
ON = replace(ON, sockjs=replace(ON.sockjs, test_services=True))


@pytest.mark.parametrize(
    "path",
    [
        "/sockjs/echo",
        "/sockjs/echo/info",
        "/sockjs/close/000/abc/xhr",
        "/sockjs/disabled_websocket_echo/websocket",
        "/sockjs/cookie_needed_echo/000/abc/jsonp",
    ],
)
def test_test_service_paths(path: str) -> None:
    assert is_test_service_path(ON, path)
    assert not is_test_service_path(Config(), path)  # not mounted: an ordinary path


@pytest.mark.parametrize(
    "path", ["/sockjs", "/sockjs/info", "/sockjs/000/abc/xhr", "/sockjs/echoes", "/echo", "/"]
)
def test_other_paths(path: str) -> None:
    assert not is_test_service_path(ON, path)


def test_the_prefix_is_followed() -> None:
    moved = replace(ON, sockjs=replace(ON.sockjs, prefix="/rt"))
    assert is_test_service_path(moved, "/rt/echo/info")
    assert not is_test_service_path(moved, "/sockjs/echo/info")
