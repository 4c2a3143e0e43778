"""The origin decision: same origin, the allow list, localhost in development, null."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbiter.auth.origins import origin_allowed
from orbiter.config import OriginSettings


def allowed(
    origin: str | None, host: str = "push.example:8000", allow: tuple[str, ...] = ()
) -> bool:
    """As a server with auth on (so no localhost by default)."""
    settings = OriginSettings(allow=allow)
    return origin_allowed(origin, host=host, scheme="http", settings=settings, running_open=False)


@pytest.mark.parametrize(
    ("origin", "host", "expected"),
    [
        (None, "push.example:8000", True),  # not a browser
        ("http://push.example:8000", "push.example:8000", True),  # same origin
        ("https://push.example", "push.example", True),  # TLS ended by a proxy
        ("http://push.example", "push.example:80", True),
        ("http://push.example:8001", "push.example:8000", False),
        ("http://evil.example", "push.example:8000", False),
        ("null", "push.example:8000", False),
        ("not an origin", "push.example:8000", False),
        ("http://localhost:3000", "push.example:8000", False),  # auth on: no localhost
    ],
)
def test_same_origin_and_foreign(origin: str | None, host: str, expected: bool) -> None:
    assert allowed(origin, host) is expected


def test_allow_list_and_star() -> None:
    assert allowed("https://app.example", allow=("https://app.example",))
    assert allowed("https://APP.example:443", allow=("https://app.example",))
    assert not allowed("http://app.example", allow=("https://app.example",))
    assert allowed("http://anything.example", allow=("*",))
    assert allowed("null", allow=("*",))


@pytest.mark.parametrize(
    "origin", ["http://localhost:3000", "http://127.0.0.1:5", "http://[::1]:8"]
)
def test_localhost_only_in_development_unless_configured(origin: str) -> None:
    settings = OriginSettings()
    assert origin_allowed(origin, host="h:1", scheme="http", settings=settings, running_open=True)
    assert not origin_allowed(
        origin, host="h:1", scheme="http", settings=settings, running_open=False
    )
    on = OriginSettings(localhost=True)
    assert origin_allowed(origin, host="h:1", scheme="http", settings=on, running_open=False)
    off = OriginSettings(localhost=False)
    assert not origin_allowed(origin, host="h:1", scheme="http", settings=off, running_open=True)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=60)), st.one_of(st.none(), st.text(max_size=40)))
def test_any_origin_and_host_header_is_decided_without_error(origin, host) -> None:
    for running_open in (True, False):
        result = origin_allowed(
            origin, host=host, scheme="http", settings=OriginSettings(), running_open=running_open
        )
        assert result in (True, False)
        if origin is None:
            assert result


def test_the_client_is_the_last_hop_that_is_not_a_trusted_proxy() -> None:
    from orbiter.transports.guard import client_address

    proxies = ("10.0.0.1", "10.0.0.2")
    assert client_address(["203.0.113.5"], proxies) == "203.0.113.5"
    assert client_address(["1.1.1.1, 203.0.113.5, 10.0.0.2"], proxies) == "203.0.113.5"
    assert client_address(["1.1.1.1", "203.0.113.5, 10.0.0.1"], proxies) == "203.0.113.5"
    assert client_address(["10.0.0.1"], proxies) is None
    assert client_address(["not-an-ip, 10.0.0.1"], proxies) is None
    assert client_address([], proxies) is None
