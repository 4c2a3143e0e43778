"""``orbiter serve``'s start-up line: the version, what answers ``/``, the build."""

from __future__ import annotations

import pytest

from orbiter.version import __version__, build
from tests.support.server import RunningServer

PROXIED = """
[dev_proxy]
enabled = true
[[dev_proxy.route]]
prefix = "/"
to = "http://127.0.0.1:5999"
"""

NOT_ROOT = """
[dev_proxy]
enabled = true
[[dev_proxy.route]]
prefix = "/app"
to = "http://127.0.0.1:5999"
"""


@pytest.mark.parametrize(
    ("config", "home"),
    [
        (None, "chat demo /"),
        (PROXIED, "/ proxied to http://127.0.0.1:5999"),
        (NOT_ROOT, "chat demo /"),
    ],
)
def test_the_start_up_line_names_the_version_what_serves_root_and_the_build(
    config: str | None, home: str
) -> None:
    server = RunningServer(config, args=("--engine", "memory"))
    try:
        line = next(line for line in server.lines if "listening on" in line)
    finally:
        server.stop()
    assert f"orbiter {__version__} listening on {server.url} ({home}," in line
    # The server runs in a process of its own, with this one's environment: same build.
    assert line.rstrip().endswith(f"API /api/; {build()})"), line
    if config == PROXIED:
        assert "chat demo" not in server.log
