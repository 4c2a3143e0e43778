"""The origin decision: same origin, the allow list, localhost in development, null."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbiter.auth.origins import HostAllowList, host_allow_list, host_name, origin_allowed
from orbiter.config.settings import AuthSettings, Config, OriginSettings


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
    from orbiter.transports.request_checks import client_address

    proxies = ("10.0.0.1", "10.0.0.2")
    assert client_address(["203.0.113.5"], proxies) == "203.0.113.5"
    assert client_address(["1.1.1.1, 203.0.113.5, 10.0.0.2"], proxies) == "203.0.113.5"
    assert client_address(["1.1.1.1", "203.0.113.5, 10.0.0.1"], proxies) == "203.0.113.5"
    assert client_address(["10.0.0.1"], proxies) is None
    assert client_address(["not-an-ip, 10.0.0.1"], proxies) is None
    assert client_address([], proxies) is None


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("Example.COM:8000", "example.com"),
        ("localhost.", "localhost"),
        ("host:", "host"),
        ("[0:0::1]:80", "[::1]"),
        ("127.0.0.1", "127.0.0.1"),
        ("", None),
        (":80", None),
        ("[::1]80", None),
        ("[zz::1]", None),
        ("a b", None),
        ("h:8o", None),
        ("h\u00e9.example", None),
        ("\udcff.example", None),
        ("user@host", None),
    ],
)
def test_host_names(value: str, name: str | None) -> None:
    assert host_name(value) == name


OPEN_DEFAULT = HostAllowList((), bound="127.0.0.1", running_open=True)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:8000", True),
        ("localhost", True),
        ("LOCALHOST:3000", True),
        ("app.localhost:1", True),
        ("[::1]:8", True),
        (None, True),  # no Host (HTTP/1.0): nothing to refuse
        ("rebound.example", False),
        ("localhost.rebound.example", False),
        ("127.0.0.2", False),
        ("10.0.0.1", False),
        ("", False),
    ],
)
def test_an_open_server_answers_its_address_and_localhost_names(
    host: str | None, expected: bool
) -> None:
    assert OPEN_DEFAULT.allows(host) is expected
    assert OPEN_DEFAULT.default


def test_bound_to_every_interface_any_ip_literal_but_no_other_name() -> None:
    for bound in ("0.0.0.0", "::", ""):
        hosts = HostAllowList((), bound=bound, running_open=True)
        assert hosts.allows("10.1.2.3:8000")
        assert hosts.allows("[fe80::1]")
        assert hosts.allows("localhost")
        assert not hosts.allows("rebound.example")
        assert not hosts.allows("10.1.2.3.rebound.example")


def test_a_bound_address_or_name_is_answered() -> None:
    assert HostAllowList((), bound="::1", running_open=True).allows("[::1]:9")
    assert HostAllowList((), bound="fd00::5", running_open=True).allows("[fd00:0::5]")
    named = HostAllowList((), bound="Dev.Box", running_open=True)
    assert named.allows("dev.box:8000")
    assert not named.allows("x.dev.box")


def test_an_explicit_list_is_the_whole_list_in_every_mode() -> None:
    for running_open in (True, False):
        hosts = HostAllowList(
            ("push.example", ".apps.example", "[::1]"), bound="0.0.0.0", running_open=running_open
        )
        assert not hosts.default
        assert hosts.allows("push.example:443")
        assert hosts.allows("apps.example")
        assert hosts.allows("a.b.apps.example")
        assert hosts.allows("[0::1]")
        assert not hosts.allows("localhost")
        assert not hosts.allows("127.0.0.1")  # no "any IP" once a list is given
        assert not hosts.allows("x.push.example")
        assert not hosts.allows("evilapps.example")
    assert HostAllowList(("*",), bound="127.0.0.1", running_open=True).allows("any.example")


def test_any_host_once_a_key_or_auth_is_set() -> None:
    assert HostAllowList((), bound="127.0.0.1", running_open=False).allows("any.example")
    assert host_allow_list(Config(api_key="k")).allows("any.example")
    secret = AuthSettings(secret="0123456789abcdef0123456789abcdef")
    assert host_allow_list(Config(auth=secret)).allows("any.example")
    assert not host_allow_list(Config()).allows("any.example")
    assert not host_allow_list(Config(api_key="k", allowed_hosts=("a",))).allows("b")
