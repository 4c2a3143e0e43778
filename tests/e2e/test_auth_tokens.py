"""Connection tokens over real WebSocket, SSE, long-poll and Orbited connections.

One server with ``auth.secret`` set and channel rules of every kind. Tokens
are made here with PyJWT, as an app server would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from orbiter import AsyncClient
from tests.support.keys import SECRET, ec_key, public_pem, rsa_key, token
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

CONFIG = f"""
[server]
api_key = "k"

[auth]
secret = "{SECRET}"

[[channel]]
match = "chat:*"
client_publish = true
presence = true

[[channel]]
match = "team:*"
subscribe = "token"
client_publish = true

[[channel]]
match = "private:*"
subscribe = "private"
"""


@pytest.fixture(scope="module")
def authed() -> Iterator[RunningServer]:
    srv = RunningServer(CONFIG)
    yield srv
    srv.stop()


@pytest.fixture
async def api(authed: RunningServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(authed.url, api_key="k") as client:
        yield client


class Raw:
    """One WebSocket, for connections the server is expected to refuse."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws = http, ws

    @classmethod
    async def open(cls, srv: RunningServer) -> Raw:
        http = aiohttp.ClientSession()
        return cls(http, await http.ws_connect(srv.ws_url))

    async def connect(self, **fields: Any) -> tuple[dict[str, Any], int | None]:
        """The reply to ``connect`` and the close code that follows (None: stays open)."""
        await self.ws.send_bytes(orjson.dumps({"id": 1, "op": "connect", **fields}))
        reply = orjson.loads((await self.ws.receive(timeout=5)).data)
        msg = await self.ws.receive(timeout=5)
        code = self.ws.close_code if msg.type is aiohttp.WSMsgType.CLOSE else None
        await self.ws.close()
        await self.http.close()
        return reply, code


@pytest.mark.parametrize(
    ("fields", "error", "close"),
    [
        (lambda: {}, 101, 3502),
        (lambda: {"token": token(key="not-the-secret-but-long-enough-0123456789")}, 101, 3502),
        (lambda: {"token": token() + "x"}, 101, 3502),
        (lambda: {"token": "e30.e30."}, 101, 3502),
        (lambda: {"token": token(ttl=-10)}, 111, 3002),
        (lambda: {"token": token("alice", channel="private:x")}, 101, 3502),
    ],
    ids=["missing", "wrong-signature", "tampered", "forged", "expired", "subscription-token"],
)
async def test_bad_tokens_are_refused_and_closed_with_a_code(
    authed: RunningServer, fields: Callable[[], dict[str, Any]], error: int, close: int
) -> None:
    reply, code = await (await Raw.open(authed)).connect(**fields())
    assert reply["error"]["code"] == error, reply
    assert reply["error"]["message"]
    assert code == close


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # signing it
async def test_the_secret_under_another_hmac_algorithm_is_refused_with_the_reason(
    authed: RunningServer,
) -> None:
    reply, code = await (await Raw.open(authed)).connect(token=token(algorithm="HS512"))
    assert reply["error"] == {
        "code": 101,
        "message": "the connection token is not signed with HS256",
    }
    assert code == 3502


async def test_identity_comes_from_the_token_never_from_the_browser(
    authed: RunningServer, api: AsyncClient
) -> None:
    t = token("alice", info={"name": "Alice"})
    client = await NativeClient.open(authed.ws_url, token=t, info={"name": "Mallory"})
    assert 0 < client.connect_result["expires_in"] <= 60
    await client.call("subscribe", channel="chat:who")
    presence = (await client.call("presence", channel="chat:who"))["result"]
    assert presence["users"] == [{"user": "alice", "info": {"name": "Alice"}, "clients": 1}]
    await client.close()


async def test_a_browser_claiming_another_users_key_is_refused(
    authed: RunningServer, api: AsyncClient
) -> None:
    reply, code = await (await Raw.open(authed)).connect(
        token=token("mallory"), key="alice, 0, /chat"
    )
    assert (reply["error"]["code"], code) == (103, 3503)
    reply, code = await (await Raw.open(authed)).connect(
        token=token("mallory"), user="alice", session="0", location="/chat"
    )
    assert (reply["error"]["code"], code) == (103, 3503)
    assert "$key:alice, 0, /chat" not in await api.channels()

    own = await NativeClient.open(authed.ws_url, token=token("alice"), key="alice, 0, /chat")
    await api.event(["alice, 0, /chat"], "for alice")
    assert (await own.next_push())["data"] == "for alice"
    await own.close()


async def test_keys_claim_binds_the_key_without_a_browser_claim(
    authed: RunningServer, api: AsyncClient
) -> None:
    t = token("alice", keys=["alice, 7, /inbox"])
    client = await NativeClient.open(authed.ws_url, token=t)
    assert client.connect_result["key"]["key"] == "alice, 7, /inbox"
    reply, code = await (await Raw.open(authed)).connect(token=t, key="alice, 0, /chat")
    assert (reply["error"]["code"], code) == (103, 3503)  # not a key the token lists
    await client.close()


async def test_token_channels_claim_governs_token_channels(
    authed: RunningServer, api: AsyncClient
) -> None:
    client = await NativeClient.open(authed.ws_url, token=token("ann", channels=["team:red*"]))
    assert "result" in await client.call("subscribe", channel="team:red")
    denied = await client.call("subscribe", channel="team:blue")
    assert denied["error"]["code"] == 103
    assert "team:blue" not in await api.channels()
    # Publishing on a token channel needs the subscription, as well as client_publish.
    assert (await client.call("publish", channel="team:blue", data="x"))["error"]["code"] == 103
    assert "result" in await client.call("publish", channel="team:red", data="ok")
    assert (await client.call("publish", channel="news", data="x"))["error"]["code"] == 103
    assert (await api.history("team:blue"))["publications"] == []
    assert (await api.history("news"))["publications"] == []
    await client.close()


async def test_private_channels_need_a_subscription_token_for_that_user(
    authed: RunningServer,
) -> None:
    client = await NativeClient.open(authed.ws_url, token=token("ann"))
    channel = "private:ann"
    assert (await client.call("subscribe", channel=channel))["error"]["code"] == 103
    for bad in (
        token("bob", channel=channel),
        token("ann", channel="private:bob"),
        token("ann", channel=channel, key="another-secret-long-enough-0123456789"),
    ):
        reply = await client.call("subscribe", channel=channel, token=bad)
        assert reply["error"]["code"] == 103, reply
    expired = await client.call(
        "subscribe", channel=channel, token=token("ann", ttl=-1, channel=channel)
    )
    assert expired["error"]["code"] == 111
    ok = await client.call("subscribe", channel=channel, token=token("ann", channel=channel))
    assert ok["result"]["channel"] == channel
    await client.close()


async def test_refresh_keeps_the_connection_past_the_first_expiry(
    authed: RunningServer, api: AsyncClient
) -> None:
    kept = await NativeClient.open(authed.ws_url, token=token("ann", ttl=2))
    lapsed = await NativeClient.open(authed.ws_url, token=token("ann", ttl=2))
    await kept.call("subscribe", channel="chat:refresh")
    wrong = await kept.call("refresh", token=token("bob", ttl=60))
    assert wrong["error"]["code"] == 103
    bad = await kept.call("refresh", token=token("ann", key="x" * 40))
    assert bad["error"]["code"] == 101
    fresh = await kept.call("refresh", token=token("ann", ttl=60))
    assert 50 < fresh["result"]["expires_in"] <= 60
    await asyncio.wait_for(lapsed.closed.wait(), 10)
    assert lapsed.ws.close_code == 3002
    await api.publish("chat:refresh", "still here")
    assert (await kept.next_push())["data"] == "still here"
    await kept.close()
    await lapsed.close()


async def test_sse_and_polls_need_the_token_too(authed: RunningServer) -> None:
    base = authed.url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/connection/sse?channel=chat:x") as r:
            assert r.status == 401
        async with http.get(f"{base}/poll?channel=chat:x") as r:
            assert r.status == 401
            assert "token" in (await r.json())["error"]["message"]
        async with http.get(f"{base}/poll?channel=team:red", params={"token": token("ann")}) as r:
            assert r.status == 403
        t = token("ann", channels=["team:red"])
        async with http.get(f"{base}/poll", params={"channel": "team:red", "token": t}) as r:
            assert r.status == 200
        headers = {"Authorization": "Bearer " + token("ann")}
        async with http.get(f"{base}/connection/sse?channel=chat:x", headers=headers) as r:
            assert r.status == 200
            assert (await r.content.readline()).startswith(b"event: subscribed")
        # The Orbited URLs: the key in the URL must be the token's.
        for transport in ("xhr", "sse", "iframe"):
            url = f"{base}/chat|alice,0,{transport}"
            async with http.get(url, params={"token": token("mallory")}) as r:
                assert r.status == 403, transport
            async with http.get(url) as r:
                assert r.status == 401, transport


async def test_a_refresh_that_drops_a_token_channel_leaves_it(
    authed: RunningServer, api: AsyncClient
) -> None:
    client = await NativeClient.open(
        authed.ws_url, token=token("ann", channels=["team:one", "team:two"])
    )
    for channel in ("team:one", "team:two", "chat:kept"):
        assert "result" in await client.call("subscribe", channel=channel)
    reply = await client.call("refresh", token=token("ann", channels=["team:two"]))
    assert "result" in reply
    push = await client.next_push()
    assert push["push"] == "unsubscribed"
    assert push["channel"] == "team:one"
    assert "no longer grants" in push["reason"]
    await api.publish("team:one", "gone")
    await api.publish("team:two", "kept")
    assert [p["data"] for p in [await client.next_push(), *await client.pushes_now()]] == ["kept"]
    await client.close()


@pytest.mark.parametrize("kind", ["rsa", "ec"])
async def test_public_key_tokens_from_a_key_file(
    start_server: Callable[..., RunningServer], tmp_path: Path, kind: str
) -> None:
    key = rsa_key() if kind == "rsa" else ec_key()
    algorithm = "RS256" if kind == "rsa" else "ES256"
    pem = tmp_path / "key.pem"
    pem.write_text(public_pem(key))
    srv = start_server(f'[auth]\npublic_key_file = "{pem}"\n')
    client = await NativeClient.open(srv.ws_url, token=token("ann", key=key, algorithm=algorithm))
    assert client.connect_result["client"]
    await client.close()
    reply, code = await (await Raw.open(srv)).connect(token=token("ann"))  # HS256: refused
    assert (reply["error"]["code"], code) == (101, 3502)


async def test_anonymous_connections_when_allowed(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(
        f"""
[auth]
secret = "{SECRET}"
anonymous = true

[[channel]]
match = "public:*"
client_publish = true

[[channel]]
match = "team:*"
subscribe = "token"
"""
    )
    client = await NativeClient.open(srv.ws_url)  # no token
    assert "result" in await client.call("subscribe", channel="public:news")
    assert (await client.call("subscribe", channel="team:x"))["error"]["code"] == 103
    assert "result" in await client.call("publish", channel="public:news", data="hi")
    await client.close()
    # Anonymous is nobody: no Orbited key; and a bad token is not downgraded to anonymous.
    reply, code = await (await Raw.open(srv)).connect(key="ann, 0, /x")
    assert (reply["error"]["code"], code) == (103, 3503)
    reply, code = await (await Raw.open(srv)).connect(token=token("ann") + "x")
    assert (reply["error"]["code"], code) == (101, 3502)
