"""Property tests of config parsing: any table gives a Config or a ConfigError naming a key."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbiter.config.settings import Config, ConfigError, config_from_dict

_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["anyone", "token", "private", "hook", "chat:*", "https://a.example", "*"]),
    st.lists(st.sampled_from(["https://a.example", "*", "nope", 3, "10.0.0.1", "::1"]), max_size=3),
)
_SECTIONS: dict[str, list[str]] = {
    "server": ["host", "port", "api_key", "trusted_proxies", "bogus"],
    "limits": [
        "max_message_size",
        "max_http_body",
        "max_subscriptions",
        "outgoing_buffer",
        "max_connections",
        "max_connections_per_ip",
        "publish_rate",
        "publish_burst",
        "max_channels",
        "max_history_size",
    ],
    "auth": ["secret", "public_key", "audience", "issuer", "leeway", "public_key_file"],
    "hooks": ["connect_url", "subscribe_url", "publish_url", "timeout"],
    "origins": ["allow", "localhost"],
    "channel_defaults": ["client_publish", "presence", "history_size", "subscribe", "publish_hook"],
}
_RULE_KEYS = ["match", "client_publish", "presence", "history_size", "history_ttl", "subscribe"]


def _table(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), _value, max_size=4)


_config = st.fixed_dictionaries(
    {},
    optional={
        **{name: _table(keys) for name, keys in _SECTIONS.items()},
        "channel": st.lists(_table(_RULE_KEYS), max_size=3),
    },
)


@settings(max_examples=400, deadline=None)
@given(_config)
def test_any_config_table_loads_or_names_the_problem(raw: dict[str, Any]) -> None:
    try:
        config = config_from_dict(raw, source="t.toml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("t.toml: ")
        return
    assert isinstance(config, Config)
    for rule in (config.channel_defaults, *config.channels):
        assert rule.subscribe in ("anyone", "token", "private", "hook")
        if rule.subscribe in ("token", "private"):
            assert config.auth.enabled
        assert 0 <= rule.history_size <= config.limits.max_history_size
    assert all(getattr(config.limits, name) > 0 for name in _SECTIONS["limits"])


def test_auth_hooks_origins_and_rules_are_checked() -> None:
    secret = "x" * 32
    ok = config_from_dict(
        {
            "auth": {"secret": secret},
            "hooks": {"subscribe_url": "http://127.0.0.1:9/s", "timeout": 1},
            "origins": {"allow": ["https://app.example"], "localhost": False},
            "channel": [
                {"match": "team:*", "subscribe": "token"},
                {"match": "h:*", "subscribe": "hook"},
            ],
        }
    )
    assert ok.auth_required
    assert ok.rule_for("team:x").subscribe == "token"
    assert ok.origins.allow == ("https://app.example",)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"auth": {"secret": "short"}}, "at least 32 bytes"),
        ({"auth": {"secret": secret, "public_key": "-----BEGIN"}}, "not both"),
        ({"auth": {"public_key": "not pem"}}, "PEM"),
        ({"channel": [{"match": "p:*", "subscribe": "private"}]}, "needs tokens"),
        ({"channel": [{"match": "p:*", "subscribe": "hook"}]}, "hooks.subscribe_url"),
        ({"channel": [{"match": "p:*", "subscribe": "everyone"}]}, "must be one of"),
        ({"channel": [{"match": "p:*", "publish_hook": True}]}, "hooks.publish_url"),
        ({"channel": [{"match": "p:*", "history_size": 10001}]}, "max_history_size"),
        ({"hooks": {"connect_url": "ftp://x"}}, "http://"),
        ({"origins": {"allow": ["https://a.example/path"]}}, "is not an origin"),
        ({"origins": {"allow": "https://a.example"}}, "list of origins"),
        ({"origins": {"nope": 1}}, "origins.nope"),
        ({"limits": {"publish_rate": 0}}, "limits.publish_rate"),
    ]
    for raw, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)):
            config_from_dict(raw, source="t.toml")
