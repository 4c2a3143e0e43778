"""``orbiter serve`` as a process: listener log lines, clean shutdown, config errors."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_shutdown_closes_connections_with_a_reason(
    start_server: Callable[..., RunningServer], sig: signal.Signals
) -> None:
    srv = start_server()
    assert srv.url.startswith("http://127.0.0.1:")
    assert srv.wait_for_log("running open for development")
    client = await NativeClient.open(srv.ws_url)
    await client.call("subscribe", channel="chat:bye")
    code = await asyncio.to_thread(srv.stop, sig)
    await asyncio.wait_for(client.closed.wait(), 5)
    assert client.ws.close_code == 1001
    assert client.close_reason == "server shutting down"
    assert code == 0
    assert "stopped" in srv.log
    assert "Traceback" not in srv.log
    await client.close()


def test_bad_config_file_exits_with_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nprot = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "orbiter", "serve", "--config", str(path), "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "'server.prot'" in done.stderr
