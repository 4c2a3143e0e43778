"""The [stomp] table: defaults, the listen forms, and errors that name the key."""

from __future__ import annotations

import pytest

from orbiter.config.settings import Config, ConfigError, config_from_dict
from orbiter.config.stomp import StompSettings, StompSettingsError, parse_listen


def test_defaults_run_no_tcp_listener_but_websocket_endpoints():
    settings = Config().stomp
    assert settings == StompSettings()
    assert settings.listen == ""
    assert settings.websocket is True
    assert (settings.topic_prefix, settings.queue_prefix) == ("/topic/", "/queue/")


def test_a_full_table():
    config = config_from_dict(
        {
            "stomp": {
                "listen": 61613,
                "channel_prefix": "stomp:",
                "max_queue_length": 5,
                "heartbeat_send": 1,
                "anonymous": False,
            }
        }
    )
    assert config.stomp.listen == "61613"
    assert config.stomp.channel_prefix == "stomp:"
    assert config.stomp.heartbeat_send == 1.0
    assert config.stomp.anonymous is False


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"lissen": "1"}, "unknown key 'stomp.lissen'"),
        ({"listen": "host:port"}, "'stomp.listen'"),
        ({"listen": "1:70000"}, "'stomp.listen'"),
        ({"max_unacked": "5"}, "'stomp.max_unacked' must be of type int"),
        ({"max_queue_length": 0}, "'stomp.max_queue_length' must be positive"),
        ({"heartbeat_send": -1}, "'stomp.heartbeat_send' must not be negative"),
        ({"topic_prefix": "topic/"}, "'stomp.topic_prefix' must start with '/'"),
        ({"queue_prefix": "/topic/"}, "must differ"),
        ({"channel_prefix": "$key:"}, "'stomp.channel_prefix'"),
        ({"max_queue_bytes": 0}, "'stomp.max_queue_bytes' must be positive"),
        ({"max_total_queue_bytes": -1}, "'stomp.max_total_queue_bytes' must not be negative"),
        ({"max_client_queue_bytes": 0}, "'stomp.max_client_queue_bytes' must be positive"),
        ({"message_ttl": 0}, "'stomp.message_ttl' must be positive"),
        ({"heartbeat_send": 0.05}, "'stomp.heartbeat_send' must be 0 \\(none\\) or from 0.1 to"),
        ({"heartbeat_receive": 3601}, "'stomp.heartbeat_receive' must be 0 \\(none\\) or from"),
    ],
)
def test_bad_values_name_the_key(table, problem):
    with pytest.raises(ConfigError, match=problem.replace("$", r"\$")):
        config_from_dict({"stomp": table})


def test_queue_budgets_and_ttl_have_safe_defaults():
    settings = StompSettings()
    assert settings.max_queue_bytes == 4 * 1024 * 1024
    assert settings.max_total_queue_bytes == 64 * 1024 * 1024
    assert settings.max_client_queue_bytes == settings.max_total_queue_bytes // 4
    assert settings.message_ttl == 3600.0
    config = config_from_dict(
        {"stomp": {"max_queue_bytes": 1000, "max_total_queue_bytes": 5000, "message_ttl": 2}}
    )
    assert (config.stomp.max_queue_bytes, config.stomp.max_total_queue_bytes) == (1000, 5000)
    assert config.stomp.message_ttl == 2.0
    # Heart-beats of the range's ends, and none, are fine.
    for value in (0, 0.1, 3600):
        config_from_dict({"stomp": {"heartbeat_send": value, "heartbeat_receive": value}})


def test_listen_forms():
    assert parse_listen("127.0.0.1:61613", "0.0.0.0") == ("127.0.0.1", 61613)
    assert parse_listen(":61613", "127.0.0.1") == ("127.0.0.1", 61613)
    assert parse_listen("61613", "127.0.0.1") == ("127.0.0.1", 61613)
    assert parse_listen("[::1]:0", "127.0.0.1") == ("::1", 0)
    with pytest.raises(StompSettingsError, match="must be"):
        parse_listen("nope", "127.0.0.1")


# ², Arabic-Indic 10, more digits than int() takes
@pytest.mark.parametrize("listen", ["\u00b2", ":\u0661\u0660", "9" * 5000])
def test_listen_port_is_ascii_digits_only(listen):
    with pytest.raises(StompSettingsError, match="must be"):
        parse_listen(listen, "127.0.0.1")
