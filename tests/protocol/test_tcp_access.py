"""The [access] rules and target syntax, without a network."""

from __future__ import annotations

import contextlib
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.config.tcp import TcpSettings
from orbiter.protocol.tcp_access import AccessPolicy, AccessRule, BadTarget, Requester, Target
from orbiter.protocol.tcp_websockify import decode_base64, encode_base64, target_from
from orbiter.services.tcp_proxy import CloseCode, ProxyError, TcpProxy


def test_seed_line_any_source() -> None:
    rule = AccessRule.parse_line("* -> localhost:61613")
    policy = AccessPolicy((rule,))
    assert policy.allows(Target("localhost", 61613), Requester(host="x:9000"))
    assert not policy.allows(Target("localhost", 61614), Requester())
    assert not policy.allows(Target("127.0.0.1", 61613), Requester())  # no DNS games


def test_deny_by_default() -> None:
    assert not AccessPolicy(()).allows(Target("localhost", 80), Requester())


@pytest.mark.parametrize(
    ("via", "host", "allowed"),
    [
        ("localhost:9000", "localhost:9000", True),
        ("localhost:9000", "localhost:9001", False),
        ("localhost", "LOCALHOST:9001", True),
        ("localhost", "example.org", False),
        ("localhost", None, False),
        ("[::1]:9000", "[::1]:9000", True),
    ],
)
def test_source_is_the_host_header(via: str, host: str | None, allowed: bool) -> None:
    policy = AccessPolicy((AccessRule.build(to="irc.example.org:6667", via=via),))
    assert policy.allows(Target("irc.example.org", 6667), Requester(host=host)) is allowed


def test_origin_restriction() -> None:
    rule = AccessRule.build(to="a.example:1", origin="https://app.example/")
    policy = AccessPolicy((rule,))
    assert policy.allows(Target("a.example", 1), Requester(origin="https://APP.example"))
    assert not policy.allows(Target("a.example", 1), Requester(origin="https://evil.example"))
    assert not policy.allows(Target("a.example", 1), Requester())


@pytest.mark.parametrize(
    "text", ["*:80", "host:*", "host", "host:0", "host:65536", ":80", "a b:1", "[::1]80", ""]
)
def test_bad_targets(text: str) -> None:
    with pytest.raises(BadTarget):
        Target.parse(text)


def test_target_forms() -> None:
    assert Target.parse("[::1]:6667") == Target("::1", 6667)
    assert str(Target("::1", 6667)) == "[::1]:6667"
    assert target_from("/h:1", {}) == Target("h", 1)
    assert target_from("", {"target": "h:1"}) == Target("h", 1)
    assert target_from("", {"token": "h:1"}) == Target("h", 1)
    assert target_from("", {"host": "h", "port": "1"}) == Target("h", 1)
    with pytest.raises(BadTarget):
        target_from("/h:1", {"target": "h:2"})
    with pytest.raises(BadTarget):
        target_from("", {})
    with pytest.raises(BadTarget):
        target_from("", {"host": "h"})


def test_wildcard_rules_are_refused() -> None:
    with pytest.raises(BadTarget, match="wildcard"):
        AccessRule.parse_line("* -> *:6667")
    with pytest.raises(BadTarget):
        AccessRule.build(to="h:1", via="*.example.org")


@given(st.binary(max_size=2048))
def test_base64_round_trip(data: bytes) -> None:
    assert decode_base64(encode_base64(data)) == data


@given(st.text(max_size=200))
def test_base64_decode_never_crashes(text: str) -> None:
    with contextlib.suppress(ValueError):
        decode_base64(text)


async def test_unknown_host_is_4404() -> None:
    # DNS outside 127.0.0.1 is off limits in tests, so the resolver is a stand-in
    # that fails the way getaddrinfo does for a name that does not exist.
    async def no_such_host(
        host: str, port: int
    ) -> list[tuple[int, int, int, str, tuple[str, int]]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    settings = TcpSettings(access=(AccessRule.build(to="no-such-host.invalid:80"),))
    proxy = TcpProxy(settings, resolve=no_such_host)
    with pytest.raises(ProxyError) as info:
        await proxy.open(Target("no-such-host.invalid", 80), Requester(), "127.0.0.1")
    assert info.value.code is CloseCode.UNKNOWN_HOST
    assert proxy.open_connections == 0  # the slot was given back
