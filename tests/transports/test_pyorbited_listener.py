"""The pyorbited listener's settings checks and its rate-limited refusal log, in process."""

from __future__ import annotations

import logging

import pytest

from orbiter.config.settings import ConfigError, config_from_dict
from orbiter.config.tcp import PyorbitedSettings, is_loopback
from orbiter.transports.pyorbited_listener import RefusalLog


def pyorbited(**table: object) -> PyorbitedSettings:
    return config_from_dict({"pyorbited": table}, source="t.toml").pyorbited


def test_defaults_are_the_documented_safe_ones() -> None:
    settings = PyorbitedSettings()
    assert settings.host == "127.0.0.1"
    assert settings.allow_remote is False
    assert settings.max_connections == 64
    assert settings.idle_timeout == 60.0
    assert settings.max_request == 1_114_112
    assert settings.max_body == 1_048_576


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost", "LOCALHOST", "localhost."]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert pyorbited(enabled=True, host=host).host == host


@pytest.mark.parametrize("host", ["", "0.0.0.0", "::", "10.0.0.1", "localhost.example", "x"])
def test_other_hosts_need_allow_remote(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match=r"'pyorbited.host'.*pyorbited.allow_remote = true"):
        pyorbited(enabled=True, host=host)
    assert pyorbited(enabled=True, host=host, allow_remote=True).host == host
    assert pyorbited(enabled=False, host=host).host == host  # not bound: nothing to refuse


@pytest.mark.parametrize("key", ["max_body", "max_request", "max_connections", "idle_timeout"])
@pytest.mark.parametrize("value", [0, -1])
def test_limits_must_be_positive(key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"'pyorbited.{key}' must be positive"):
        pyorbited(**{key: value})


def test_max_body_cannot_exceed_max_request() -> None:
    assert pyorbited(max_body=5000, max_request=5000).max_request == 5000
    with pytest.raises(ConfigError, match=r"'pyorbited.max_body' \(5001\) is more than"):
        pyorbited(max_body=5001, max_request=5000)


def test_refusal_log_writes_one_line_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    refusals = RefusalLog(interval=1.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="orbiter.pyorbited"):
        for _ in range(50):
            refusals.warning("full", "refused %s", "peer")
            now[0] += 0.01
        refusals.warning("other", "protocol error")  # another kind has its own budget
        now[0] += 0.6
        refusals.warning("full", "refused %s", "peer")
    assert [r.getMessage() for r in caplog.records] == [
        "refused peer",
        "protocol error",
        "refused peer (and 49 more since the last such line)",
    ]
