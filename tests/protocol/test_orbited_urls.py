"""Orbited 0.3 URL paths: ``/<location>|<user>,<session>,<transport>``."""

from __future__ import annotations

import pytest

from orbiter.protocol.keys import ConnectionKey
from orbiter.protocol.orbited_urls import (
    BadLegacyUrl,
    LegacyTransport,
    LegacyUrl,
    parse_legacy_path,
)


@pytest.mark.parametrize(
    ("path", "key", "transport"),
    [
        ("/example|username,0,iframe", "username, 0, /example", LegacyTransport.IFRAME),
        ("/a|u,0,iframe_domain", "u, 0, /a", LegacyTransport.IFRAME_DOMAIN),
        ("/chat|alice, 1, xhr", "alice, 1, /chat", LegacyTransport.XHR),
        ("/rooms/42|bob,0,sse", "bob, 0, /rooms/42", LegacyTransport.SSE),
    ],
)
def test_seed_urls(path: str, key: str, transport: LegacyTransport) -> None:
    assert parse_legacy_path(path) == LegacyUrl(ConnectionKey.parse(key), transport)


def test_both_iframes_stream_html() -> None:
    assert [t.value for t in LegacyTransport if t.streams_html] == ["iframe", "iframe_domain"]


def test_the_key_channel_is_the_one_event_publishes_to() -> None:
    url = parse_legacy_path("/example|username,0,xhr")
    assert url.key.channel == "$key:username, 0, /example"


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/chat", "is /<location>"),
        ("/chat|alice,xhr", "three comma-separated parts"),
        ("/chat|alice,0,xhr,x", "three comma-separated parts"),
        ("/chat|alice,0,flash", "unknown Orbited transport 'flash'"),
        ("/|alice,0,xhr", "'location' is empty"),
        ("/chat|,0,xhr", "'user' is empty"),
        ("/chat|al\x01ice,0,xhr", "control character"),
    ],
)
def test_malformed_paths_name_the_problem(path: str, problem: str) -> None:
    with pytest.raises(BadLegacyUrl, match=problem):
        parse_legacy_path(path)
