"""``orbiter`` with no arguments, in a directory holding a config, as the seeds start it.

Seed 000's tutorial runs a bare ``orbited`` where its ``orbited.cfg`` is,
and its app's pyorbited ``Client()`` sends events to ``localhost:9000``,
where Orbited 0.3 listened without being told. Each test runs the real
command in a directory of its own.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orbiter.config.ini import config_from_ini
from tests.support.pyorbited_client import SimpleClient

ORBITED_03 = (Path(__file__).parent.parent / "fixtures" / "orbited03.cfg").read_text()


class Bare:
    """``python -m orbiter ARGS`` in ``cwd``, its output collected."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orbiter", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    def wait_for(self, text: str, timeout: float = 20) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not in:\n" + "".join(self.lines))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def started() -> Iterator[list[Bare]]:
    runs: list[Bare] = []
    yield runs
    for run in runs:
        run.stop()


def free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_an_orbited_03_config_opens_the_event_port_9000() -> None:
    config = config_from_ini(ORBITED_03)
    assert config.pyorbited.enabled
    assert (config.pyorbited.host, config.pyorbited.port) == ("127.0.0.1", 9000)
    told = config_from_ini(ORBITED_03 + "\n[listen]\nhttp://:8001\norbit://:9100\n")
    assert told.pyorbited.port == 9100
    assert not config_from_ini("[listen]\nhttp://:8001\n").pyorbited.enabled


def test_bare_orbiter_serves_the_orbited_cfg_it_finds(tmp_path: Path, started: list[Bare]) -> None:
    if not (free(8000) and free(9000)):
        pytest.skip("ports 8000 and 9000 are taken here")
    (tmp_path / "orbited.cfg").write_text(ORBITED_03)
    run = Bare(tmp_path)
    started.append(run)
    run.wait_for("serving the config file ./orbited.cfg")
    run.wait_for("pyorbited listening on 127.0.0.1:9000")
    assert "127.0.0.1:8000" in run.wait_for("listening on http://")
    # pyorbited's Client() (its wire protocol), with its defaults: localhost:9000.
    orbit = SimpleClient("localhost", 9000)
    try:
        assert orbit.event([], "<b>ann joined</b>") == b"Success\r\nid: 1\r\n\r\n"
        # A key with no connection yet: a Failure naming it, as Orbited 0.3 answered.
        assert b"recipient: (ann, 0, /orbited)" in orbit.event(["ann, 0, /orbited"], "hi")
    finally:
        orbit.close()


def test_serve_finds_orbiter_toml_first_else_the_defaults(
    tmp_path: Path, started: list[Bare]
) -> None:
    (tmp_path / "orbited.cfg").write_text(ORBITED_03)
    (tmp_path / "orbiter.toml").write_text("[server]\nport = 0\n[session]\nping_interval = 7\n")
    run = Bare(tmp_path, "serve", "--data-dir", str(tmp_path / "data"))
    started.append(run)
    run.wait_for("serving the config file ./orbiter.toml")
    run.wait_for("listening on http://")
    assert not any("pyorbited" in line for line in run.lines)
    empty = tmp_path / "empty"
    empty.mkdir()
    run = Bare(empty, "serve", "--port", "0")
    started.append(run)
    run.wait_for("listening on http://127.0.0.1:")
    assert not any("config file" in line for line in run.lines)
