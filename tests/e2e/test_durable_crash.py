"""Acknowledged means kept, across ``kill -9``: real ``orbiter serve`` processes on one
SQLite data directory, killed at a random moment while publishers stream numbered
messages over ``POST /api/publish``, and started again.

After each crash: every publication answered 200 is in history exactly once, at
the offset and epoch it was answered with, and each publisher's messages are in
the order it sent them; a subscriber that saw publications live, reconnecting
with its position, recovers exactly the ones it missed (it can only have seen
committed ones, so its position is never past what the restarted server has).
"""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

CONFIG = """
[channel_defaults]
history_size = 10000
history_ttl = 3600
"""
PUBLISHERS = 4
#: Each publisher sends at most this many per round (within history_size over all).
PER_PUBLISHER = 2000
ROUNDS = 3


def _start(data_dir: Path) -> RunningServer:
    return RunningServer(CONFIG, args=("--engine", "sqlite", "--data-dir", str(data_dir)))


async def _publisher(
    session: aiohttp.ClientSession, url: str, channel: str, who: int, acked: list[dict[str, Any]]
) -> None:
    """Publish ``{"p": who, "n": 0, 1, ...}`` one after another until the server is gone."""
    for n in range(PER_PUBLISHER):
        try:
            async with session.post(
                url + "/api/publish", json={"channel": channel, "data": {"p": who, "n": n}}
            ) as response:
                if response.status != 200:
                    return
                answer = await response.json()
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return
        acked.append({"p": who, "n": n, "offset": answer["offset"], "epoch": answer["epoch"]})


async def _history(url: str, channel: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/api/history", params={"channel": channel}) as response,
    ):
        assert response.status == 200
        result: dict[str, Any] = await response.json()
        return result


def _check_history(history: dict[str, Any], acked: list[dict[str, Any]]) -> None:
    pubs = history["publications"]
    offsets = [p["offset"] for p in pubs]
    assert offsets == list(range(1, len(pubs) + 1)), "history has a gap or a repeat"
    assert history["offset"] == len(pubs)
    by_offset = {p["offset"]: p["data"] for p in pubs}
    for ack in acked:
        assert ack["epoch"] == history["epoch"]
        assert by_offset.get(ack["offset"]) == {"p": ack["p"], "n": ack["n"]}, ack
    seen = [(p["data"]["p"], p["data"]["n"]) for p in pubs]
    assert len(set(seen)) == len(seen), "a message is in history twice"
    for who in range(PUBLISHERS):
        sent = [n for p, n in seen if p == who]
        assert sent == list(range(len(sent))), f"publisher {who}'s messages out of order"


async def test_kill_9_loses_no_acknowledged_publication(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random()
    rounds: list[tuple[str, list[dict[str, Any]]]] = []
    for round_ in range(ROUNDS):
        server = _start(data_dir)
        try:
            # What earlier rounds acknowledged is all still there.
            for earlier, earlier_acked in rounds:
                _check_history(await _history(server.url, earlier), earlier_acked)
            channel = f"crash:{round_}"
            watcher = await NativeClient.open(server.ws_url)
            subscribed = (await watcher.call("subscribe", channel=channel))["result"]
            acked: list[dict[str, Any]] = []
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                publishers = [
                    asyncio.create_task(_publisher(session, server.url, channel, who, acked))
                    for who in range(PUBLISHERS)
                ]
                await asyncio.sleep(rng.uniform(0.1, 0.8))
                server.process.send_signal(signal.SIGKILL)
                await asyncio.wait_for(asyncio.gather(*publishers), 15)
            await asyncio.wait_for(watcher.closed.wait(), 10)
            seen = await watcher.pushes_now(0)
            await watcher.close()
        finally:
            server.stop()
        assert acked, "nothing was acknowledged before the kill: the round proves nothing"
        rounds.append((channel, acked))
        live = [p["offset"] for p in seen if p.get("push") == "pub"]
        assert live == list(range(1, len(live) + 1)), "live delivery out of order"

        server = _start(data_dir)
        try:
            history = await _history(server.url, channel)
            _check_history(history, acked)
            assert history["epoch"] == subscribed["epoch"]
            # The subscriber resumes where it was: exactly what it missed, recovered.
            position = {"offset": live[-1] if live else 0, "epoch": subscribed["epoch"]}
            again = await NativeClient.open(server.ws_url)
            result = (await again.call("subscribe", channel=channel, since=position))["result"]
            await again.close()
        finally:
            server.stop()
        assert result["recovered"] is True
        missed = [p["offset"] for p in result["publications"]]
        assert missed == list(range(position["offset"] + 1, history["offset"] + 1))
