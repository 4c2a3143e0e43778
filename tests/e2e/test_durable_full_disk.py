"""A full disk: publishers are told, never answered OK, and the server goes on serving.

The server runs with a file-size limit (``RLIMIT_FSIZE``; Python ignores
``SIGXFSZ``, so a write past it fails with ``EFBIG``), a real write failure for
SQLite until the test lifts the limit: its transaction fails, and so does every
publish in it, on each route (HTTP 503, the native error 100, a STOMP ERROR
instead of the RECEIPT). What was acknowledged before stays in history, live
traffic (connections, subscriptions, stats) keeps working, and once there is
room again publishing resumes at the next offset.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.server import RunningServer
from tests.support.stomp_helpers import _STOMP_PORT, RawClient
from tests.support.wsclient import NativeClient

#: The largest file the server may write: its data file and log fill it quickly.
FILE_LIMIT = 192 * 1024
BODY = "x" * 8000

CONFIG = """
[channel_defaults]
history_size = 1000
[stomp]
listen = "127.0.0.1:0"
"""


def _small_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, resource.RLIM_INFINITY))


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url + "/api/publish", json=body) as response:
        return response.status, await response.json()


async def test_a_full_disk_is_an_error_to_every_publisher_and_serving_goes_on(
    tmp_path: Path,
) -> None:
    server = RunningServer(
        CONFIG, args=("--engine", "sqlite", "--data-dir", str(tmp_path)), preexec=_small_files
    )
    try:
        assert server.wait_for_log("stomp listening on", 10)
        match = _STOMP_PORT.search(server.log)
        assert match is not None
        watcher = await NativeClient.open(server.ws_url)
        await watcher.call("subscribe", channel="full")
        acked, refused = [], None
        async with aiohttp.ClientSession() as session:
            for n in range(200):  # 1.6 MB: far past the limit
                status, answer = await _post(
                    session, server.url, {"channel": "full", "data": [n, BODY]}
                )
                if status != 200:
                    refused = (status, answer)
                    break
                acked.append(answer["offset"])
            assert refused is not None, "the disk never filled"
            assert refused[0] == 503
            assert "could not store" in refused[1]["error"]["message"]
            assert acked == list(range(1, len(acked) + 1))
            # A batch of publications fails as one answer, naming how many went through.
            items = [{"channel": "full", "data": BODY} for _ in range(3)]
            async with session.post(
                server.url + "/api/publish", json={"publications": items}
            ) as response:
                assert response.status == 503
            # Orbited's event(keys): a 503 too.
            async with session.post(
                server.url + "/api/event", json={"keys": ["ann, 0, /chat"], "data": BODY}
            ) as response:
                assert response.status == 503
                assert "could not store" in (await response.json())["error"]["message"]
            # The native protocol: an error reply, not an offset.
            reply = await watcher.call("publish", channel="chat:full", data=BODY)
            assert reply["error"]["code"] == 100
            assert "could not store" in reply["error"]["message"]
            # STOMP: an ERROR naming it, never the RECEIPT.
            stomp = RawClient(int(match.group(1)))
            assert stomp.connect().command == "CONNECTED"
            stomp.frame("SEND", [("destination", "/topic/full"), ("receipt", "r1")], BODY.encode())
            error = stomp.next()
            assert error.command == "ERROR"
            assert "could not store" in error.body.decode()
            stomp.close()
            # Live traffic goes on: stats, new connections, history of what was kept.
            async with session.get(server.url + "/api/stats") as response:
                assert response.status == 200
            late = await NativeClient.open(server.ws_url)
            assert (await late.call("subscribe", channel="other"))["result"]["offset"] == 0
            await late.close()
            # Room again: publishing resumes, with the next offset (no hole where the
            # failed ones were).
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, unlimited)
            status, answer = await _post(session, server.url, {"channel": "full", "data": "room"})
            assert (status, answer["offset"]) == (200, len(acked) + 1)
            acked.append(answer["offset"])
            async with session.get(
                server.url + "/api/history", params={"channel": "full"}
            ) as response:
                history = await response.json()
            assert [p["offset"] for p in history["publications"]] == acked
        pushed = [p["offset"] for p in await watcher.pushes_now(0.3) if p.get("push") == "pub"]
        assert pushed == acked  # the subscriber got what was kept, and nothing else
        await watcher.close()
        assert server.process.poll() is None
    finally:
        server.stop()
