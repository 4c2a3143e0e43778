"""The seeds' INI config files, read as-is; errors name the line; conversion to TOML."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from orbiter.config.ini import config_from_ini, load_any_config, looks_like_ini, parse_ini, to_toml
from orbiter.config.settings import ConfigError, config_from_dict
from orbiter.config.tcp import ORBITED, DevRoute
from orbiter.protocol.tcp_access import Target

FIXTURES = Path(__file__).parent / "fixtures"
#: The TurboGears tutorial's chat.ini, verbatim.
CHAT_INI = (FIXTURES / "chat.ini").read_text()
#: Orbited 0.3's orbited.cfg from the PylonsChat tutorial (its line breaks restored:
#: the seed's copy has them flattened into one line).
ORBITED_03 = (FIXTURES / "orbited03.cfg").read_text()


def test_chat_ini_as_is() -> None:
    config = config_from_ini(CHAT_INI, "chat.ini")
    assert (config.host, config.port) == ("0.0.0.0", 9000)
    assert config.stomp.listen == ":61613"
    assert config.session.ping_interval == 20
    [rule] = config.tcp.access
    assert (rule.to, rule.via) == (Target("localhost", 61613), "*")


def test_orbited_03_proxy_section() -> None:
    config = config_from_ini(ORBITED_03, "orbited.cfg")
    assert config.dev_proxy.enabled is True
    assert config.dev_proxy.keepalive is False
    assert config.dev_proxy.routes == (
        DevRoute("/orbited", ORBITED),
        DevRoute("/", "http://127.0.0.1:5000"),
    )


def test_orbit_listener_defaults_to_loopback() -> None:
    config = config_from_ini("[listen]\norbit://:9000\n")
    assert config.pyorbited.enabled
    assert (config.pyorbited.host, config.pyorbited.port) == ("127.0.0.1", 9000)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[listen]\nhttp://:9000\n[logging]\nx = 1\n", 3, "unknown section [logging]"),
        ("[global]\nreactor = epoll\n", 2, "unknown [global] key 'reactor'"),
        ("[global]\nsession.ping_interval = soon\n", 2, "number of seconds"),
        ("[global]\nproxy.enabled = maybe\n", 2, "0 or 1"),
        ("[listen]\nhttp://:9000\nhttp://:9001\n", 3, "one address"),
        ("[listen]\nhttps://:443\n", 2, "TLS"),
        ("[listen]\ngopher://:70\n", 2, "unknown listener scheme"),
        ("[listen]\nhttp://localhost\n", 2, "needs a port"),
        ("[access]\nlocalhost:61613\n", 2, "SOURCE -> HOST:PORT"),
        ("[access]\n* -> *:6667\n", 2, "wildcards"),
        ("[access]\n* -> localhost\n", 2, "host:port"),
        ("[proxy]\n/ -> ftp://x\n", 2, "http(s)://host"),
        ("http://:9000\n", 1, "before any [section]"),
        ("[global]\nsession.ping_interval = -5\n", 2, "must be positive"),
    ],
)
def test_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_ini(text, "bad.ini")
    message = str(info.value)
    assert words in message
    assert f"line {line}" in message


def test_convert_round_trips() -> None:
    for text in (CHAT_INI, ORBITED_03):
        raw, _ = parse_ini(text)
        toml = to_toml(raw, header="converted")
        assert config_from_dict(tomllib.loads(toml)) == config_from_ini(text)


def test_format_is_recognised(tmp_path: Path) -> None:
    assert looks_like_ini(CHAT_INI)
    assert not looks_like_ini("[server]\nport = 1\n")
    odd = tmp_path / "chat.txt"  # no .ini suffix: the content says INI
    odd.write_text(CHAT_INI)
    assert load_any_config(odd).port == 9000
    toml = tmp_path / "orbiter.toml"
    toml.write_text("[server]\nport = 1234\n")
    assert load_any_config(toml).port == 1234


def test_cli_convert(tmp_path: Path) -> None:
    ini = tmp_path / "chat.ini"
    ini.write_text(CHAT_INI)
    out = tmp_path / "chat.toml"
    run = [sys.executable, "-m", "orbiter", "config", "convert", str(ini)]
    printed = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    subprocess.run([*run, "-o", str(out)], capture_output=True, timeout=60, check=True)
    assert out.read_text() == printed.stdout
    assert tomllib.loads(printed.stdout)["tcp"]["access"] == [{"to": "localhost:61613", "via": "*"}]
    bad = tmp_path / "bad.ini"
    bad.write_text("[listen]\nhttp://:9000\n[static]\n")
    failed = subprocess.run(
        [sys.executable, "-m", "orbiter", "config", "convert", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 2
    assert "line 3" in failed.stderr
    assert "unknown section [static]" in failed.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[global]\nsession.ping_interval = nan\n", "finite"),
        ("[global]\nsession.ping_interval = inf\n", "finite"),
        ("[listen]\nhttp://:" + "9" * 5000 + "\n", "between 0 and 65535"),
        ("[listen]\nhttp://:\u0669\u0660\u0660\u0660\n", "scheme://host:port"),  # Arabic-Indic 9000
    ],
)
def test_numbers_that_are_not_plain_are_refused(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        config_from_ini(text, "bad.ini")
