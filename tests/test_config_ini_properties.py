"""Any INI text, access rule or [tcp]/[pyorbited]/[dev_proxy] table: a config or a named error."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orbiter.config.ini import config_from_ini
from orbiter.config.settings import ConfigError, config_from_dict
from orbiter.protocol.tcp_access import AccessRule, BadTarget

LINES = st.sampled_from(
    [
        "[listen]",
        "[access]",
        "[global]",
        "[proxy]",
        "[logging]",
        "http://:9000",
        "stomp://:61613",
        "orbit://127.0.0.1:9001",
        "https://:443",
        "* -> localhost:61613",
        "localhost:9000 -> irc.example.org:6667",
        "* -> *:1",
        "session.ping_interval = 20",
        "proxy.enabled = 1",
        "proxy.keepalive = x",
        "/orbited -> ORBITED",
        "/ -> http://127.0.0.1:5000",
        "# comment",
        "",
    ]
)


@settings(max_examples=300)
@given(st.lists(st.one_of(LINES, st.text(max_size=40)), max_size=12))
def test_any_ini_text_loads_or_names_the_line(lines: list[str]) -> None:
    text = "\n".join(lines)
    try:
        config_from_ini(text, "fuzz.ini")
    except ConfigError as exc:
        message = str(exc)
    else:
        return
    assert message.startswith("fuzz.ini")


@given(st.text(max_size=80))
def test_any_access_line_is_a_rule_or_bad_target(line: str) -> None:
    try:
        rule = AccessRule.parse_line(line)
    except BadTarget:
        return
    assert "*" not in rule.to.host


SCALARS = st.one_of(st.booleans(), st.integers(-5, 70000), st.floats(-1, 1e6), st.text(max_size=30))
TABLES: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {},
    optional={
        "tcp": st.dictionaries(
            st.sampled_from(["connect_timeout", "idle_timeout", "max_per_ip", "access", "x"]),
            st.one_of(
                SCALARS,
                st.lists(
                    st.dictionaries(st.sampled_from(["to", "via", "origin", "y"]), SCALARS),
                    max_size=3,
                ),
            ),
        ),
        "pyorbited": st.dictionaries(
            st.sampled_from(["enabled", "host", "port", "max_body", "z"]), SCALARS
        ),
        "dev_proxy": st.dictionaries(
            st.sampled_from(["enabled", "keepalive", "route"]),
            st.one_of(
                SCALARS,
                st.lists(st.dictionaries(st.sampled_from(["prefix", "to"]), SCALARS), max_size=3),
            ),
        ),
    },
)


@settings(max_examples=300)
@given(TABLES)
def test_any_tcp_tables_load_or_name_the_key(raw: dict[str, Any]) -> None:
    try:
        config_from_dict(raw, source="fuzz.toml")
    except ConfigError as exc:
        message = str(exc)
    else:
        return
    assert message.startswith("fuzz.toml: ")
