"""What runs on a SockJS session: the native protocol, and the protocol suite's test services.

:class:`NativeApp` carries orbiter's native protocol: each SockJS message
from the client is one native message for a :class:`ClientSession`, and
each message the session queues goes back as one SockJS message; when the
client session closes (slow consumer, failed connect, server shutdown) the
SockJS session closes with the same code and reason. :class:`EchoApp` and
:class:`CloseApp` are the services the SockJS protocol test suite expects.
"""

from __future__ import annotations

import asyncio

from orbiter.auth import Credentials
from orbiter.node import Node, TooManyConnections
from orbiter.protocol.native import DisconnectCode
from orbiter.session.session import ClientSession
from orbiter.transports.sockjs.endpoint import Connection


class NativeApp:
    """The native protocol over one SockJS session."""

    def __init__(self, node: Node, conn: Connection) -> None:
        self._node = node
        self._conn = conn
        self._client: ClientSession | None = None
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        credentials = Credentials(
            peer=self._conn.peer, headers=self._conn.headers, transport="sockjs"
        )
        try:
            self._client = self._node.new_session(self._conn.peer, credentials)
        except TooManyConnections as exc:
            self._conn.close(int(DisconnectCode.TOO_MANY_CONNECTIONS), str(exc))
            return
        self._writer = asyncio.create_task(self._write(self._client))

    async def receive(self, message: str) -> None:
        if self._client is not None:
            await self._client.receive(message)

    async def stop(self) -> None:
        if self._client is not None:
            await self._node.end_session(self._client)
        if self._writer is not None:
            await self._writer

    async def _write(self, client: ClientSession) -> None:
        while batch := await client.outbox.take():
            for message in batch:
                self._conn.send(message.decode())
        if client.close_code is not None:
            self._conn.close(int(client.close_code), client.close_reason)


class EchoApp:
    """Sends every message back (the suite's ``echo`` and its variants)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def start(self) -> None:
        pass

    async def receive(self, message: str) -> None:
        self._conn.send(message)

    async def stop(self) -> None:
        pass


class CloseApp:
    """Closes every session as soon as it opens (the suite's ``close``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def start(self) -> None:
        self._conn.close(3000, "Go away!")

    async def receive(self, message: str) -> None:
        pass

    async def stop(self) -> None:
        pass
