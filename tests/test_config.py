from __future__ import annotations

from pathlib import Path

import pytest

from orbiter.config.settings import (
    ChannelRule,
    Config,
    ConfigError,
    SockJSSettings,
    config_from_dict,
    load_config,
)


def test_embedded_default_lets_browsers_publish_to_chat_only() -> None:
    config = Config()
    assert config.rule_for("chat:lobby").client_publish
    assert not config.rule_for("news").client_publish
    assert config.api_key is None


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    path.write_text(
        """
[server]
host = "0.0.0.0"
port = 9000
api_key = "k"

[limits]
max_message_size = 1000

[history]
meta_ttl = 60

[channel_defaults]
history_size = 7

[[channel]]
match = "news:*"
history_ttl = 10

[[channel]]
match = "*"
client_publish = true
"""
    )
    config = load_config(path)
    assert (config.host, config.port, config.api_key) == ("0.0.0.0", 9000, "k")
    assert config.limits.max_message_size == 1000
    assert config.history_meta_ttl == 60.0
    assert config.rule_for("news:x") == ChannelRule(
        "news:*", client_publish=False, history_size=7, history_ttl=10.0
    )
    assert config.rule_for("other") == ChannelRule(
        "*", client_publish=True, history_size=7, history_ttl=300.0
    )


def test_rules_in_a_file_replace_the_default_chat_rule() -> None:
    config = config_from_dict({"channel": [{"match": "room:*", "client_publish": True}]})
    assert not config.rule_for("chat:lobby").client_publish
    assert config.rule_for("room:1").client_publish


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"nonsense": 1}, "'nonsense'"),
        ({"server": {"prot": 1}}, "'server.prot'"),
        ({"server": {"port": "80"}}, "'server.port' must be of type int"),
        ({"server": {"port": 70000}}, "'server.port'"),
        ({"server": 3}, "'server' must be a table"),
        ({"limits": {"max_message_size": 0}}, "'limits.max_message_size' must be positive"),
        ({"limits": {"max_message_size": True}}, "'limits.max_message_size' must be of type"),
        ({"limits": {"body_deadline": 0}}, "'limits.body_deadline' must be positive"),
        (
            {"limits": {"body_timeout": 10, "body_deadline": 9.5}},
            "'limits.body_deadline' .9.5. is less than 'limits.body_timeout' .10.",
        ),
        ({"channel": {"match": "x"}}, "array of tables"),
        ({"channel": [{"client_publish": True}]}, "'channel[0].match'"),
        ({"channel": [{"match": "a", "publish": True}]}, "'channel[0].publish'"),
        ({"channel": [{"match": "a", "history_size": -1}]}, "history_size"),
        ({"channel_defaults": {"match": "a"}}, "takes no 'match'"),
        ({"history": {"size": 3}}, "'history.size'"),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(raw)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(bad)


def test_session_timing() -> None:
    config = config_from_dict({"session": {"ping_interval": 5, "pong_timeout": 2.5}})
    assert (config.session.ping_interval, config.session.pong_timeout) == (5.0, 2.5)
    with pytest.raises(ConfigError, match=r"'session\.pong_timeout' must be positive"):
        config_from_dict({"session": {"pong_timeout": 0}})
    with pytest.raises(ConfigError, match=r"'session\.ping'"):
        config_from_dict({"session": {"ping": 1}})


def test_poll_and_orbited_settings() -> None:
    assert (Config().poll.timeout, Config().orbited.disconnect_delay) == (25.0, 30.0)
    config = config_from_dict(
        {
            "poll": {"timeout": 2, "max_waiting": 5},
            "orbited": {"disconnect_delay": 1.5, "response_limit": 4096},
        }
    )
    assert (config.poll.timeout, config.poll.max_waiting) == (2.0, 5)
    assert (config.orbited.disconnect_delay, config.orbited.response_limit) == (1.5, 4096)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"poll": {"timeout": 0}}, r"'poll\.timeout' must be positive"),
        ({"poll": {"max_waiting": -1}}, r"'poll\.max_waiting' must be positive"),
        ({"poll": {"max_waiting": 1.5}}, r"'poll\.max_waiting' must be of type int"),
        ({"poll": {"hold": 3}}, r"unknown key 'poll\.hold'"),
        ({"poll": 3}, r"'poll' must be a table"),
        ({"orbited": {"response_limit": 0}}, r"'orbited\.response_limit' must be positive"),
        ({"orbited": {"disconnect_delay": "5"}}, r"'orbited\.disconnect_delay' must be of type"),
        ({"orbited": {"delay": 1}}, r"unknown key 'orbited\.delay'"),
        ({"sockjs": {"prefix": "/poll"}}, r"'/poll' is used by orbiter"),
        ({"sockjs": {"heartbeat": 0}}, r"'sockjs\.heartbeat' must be positive"),
        ({"sockjs": {"response_limit": -1}}, r"'sockjs\.response_limit' must be positive"),
        ({"session": {"ping_interval": 0}}, r"'session\.ping_interval' must be positive"),
        ({"limits": {"frame_rate": 0}}, r"'limits\.frame_rate' must be positive"),
        ({"tcp": {"idle_timeout": 0}}, r"'tcp\.idle_timeout' must be positive"),
        ({"tcp": {"read_size": -5}}, r"'tcp\.read_size' must be positive"),
        ({"pyorbited": {"max_request": 0}}, r"'pyorbited\.max_request' must be positive"),
    ],
)
def test_bad_poll_and_orbited_settings_name_the_key(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        config_from_dict(raw)


def test_sockjs_defaults_and_file() -> None:
    default = Config().sockjs
    assert (default.prefix, default.heartbeat, default.disconnect_delay) == ("/sockjs", 25.0, 5.0)
    assert (default.response_limit, default.test_services) == (131_072, False)
    config = config_from_dict(
        {
            "sockjs": {
                "prefix": "/rt/sockjs",
                "heartbeat": 10,
                "disconnect_delay": 2.5,
                "response_limit": 4096,
                "test_services": True,
                "client_url": "/js/sockjs.min.js",
            }
        }
    )
    assert config.sockjs == SockJSSettings("/rt/sockjs", 10.0, 2.5, 4096, True, "/js/sockjs.min.js")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"sockjs": {"prefx": "/x"}}, r"unknown key 'sockjs\.prefx'"),
        ({"sockjs": 1}, r"'sockjs' must be a table"),
        ({"sockjs": {"prefix": "sockjs"}}, r"'sockjs\.prefix' must be a path"),
        ({"sockjs": {"prefix": "/sockjs/"}}, r"'sockjs\.prefix' must be a path"),
        ({"sockjs": {"prefix": "/"}}, r"'sockjs\.prefix' must be a path"),
        ({"sockjs": {"prefix": "/a/../b"}}, r"'sockjs\.prefix' must be a path"),
        ({"sockjs": {"prefix": "/api"}}, r"'/api' is used by orbiter"),
        ({"sockjs": {"heartbeat": 0}}, r"'sockjs\.heartbeat' must be positive"),
        ({"sockjs": {"disconnect_delay": -1}}, r"'sockjs\.disconnect_delay' must be positive"),
        ({"sockjs": {"response_limit": 1.5}}, r"'sockjs\.response_limit' must be of type int"),
        ({"sockjs": {"test_services": "yes"}}, r"'sockjs\.test_services' must be of type bool"),
        ({"sockjs": {"client_url": "sockjs.js"}}, r"'sockjs\.client_url' must be an absolute"),
    ],
)
def test_bad_sockjs_settings_name_the_key(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        config_from_dict(raw)


def test_serve_flag_turns_on_the_sockjs_test_services() -> None:
    from orbiter.cli import _parser

    assert _parser().parse_args(["serve", "--sockjs-test-services"]).sockjs_test_services
    assert not _parser().parse_args(["serve"]).sockjs_test_services


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    "raw",
    [
        lambda v: {"session": {"ping_interval": v}},
        lambda v: {"limits": {"publish_rate": v}},
        lambda v: {"tcp": {"idle_timeout": v}},
        lambda v: {"stomp": {"heartbeat_send": v}},
    ],
)
def test_non_finite_numbers_are_refused(raw, value) -> None:
    # TOML has nan and inf; no setting means them (nan passes every "> 0" check).
    with pytest.raises(ConfigError, match="must be a finite number"):
        config_from_dict(raw(value))
