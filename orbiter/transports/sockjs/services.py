"""What runs on a SockJS session: the native protocol, and the protocol suite's test services.

:class:`NativeApp` carries orbiter's native protocol: each SockJS message
from the client is one native message for a :class:`ClientSession`, and
each message the session queues goes back as one SockJS message; when the
client session closes (slow consumer, failed connect, server shutdown) the
SockJS session closes with the same code and reason. It is the client
session's outbox :class:`~orbiter.services.outbox.Sink`: single messages
are pushed to it once per loop iteration, and a channel's
:class:`SharedBatch` is JSON-encoded once (:func:`encode_messages`, cached
on the batch) for every SockJS session subscribed to the channel. :class:`EchoApp` and
:class:`CloseApp` are the services the SockJS protocol test suite expects.
"""

from __future__ import annotations

from orbiter.auth import Credentials
from orbiter.model import TooManyConnections
from orbiter.node import Node
from orbiter.protocol.native import DisconnectCode
from orbiter.protocol.sockjs.frames import Encoded, encode_messages
from orbiter.services.pushes import pushes
from orbiter.services.shared_batch import SharedBatch
from orbiter.session.session import ClientSession
from orbiter.transports.sockjs.endpoint import Connection

#: The :meth:`SharedBatch.framed` kind of a batch's SockJS encoding (an ``Encoded``).
_SOCKJS_MESSAGES = "sockjs-messages"


def _encode_batch(batch: SharedBatch) -> Encoded:
    """A channel's batch of native pushes as SockJS message elements."""
    return encode_messages(pushes(batch))


class NativeApp:
    """The native protocol over one SockJS session, pushed to by its outbox."""

    __slots__ = ("_client", "_conn", "_node")

    def __init__(self, node: Node, conn: Connection) -> None:
        self._node = node
        self._conn = conn
        self._client: ClientSession | None = None

    async def start(self) -> None:
        credentials = Credentials(
            peer=self._conn.peer, headers=self._conn.headers, transport="sockjs"
        )
        try:
            self._client = self._node.new_session(self._conn.peer, credentials)
        except TooManyConnections as exc:
            self._conn.close(int(DisconnectCode.TOO_MANY_CONNECTIONS), str(exc))
            return
        self._client.outbox.attach(self, self._node.flusher, self._closed)

    async def receive(self, message: str) -> None:
        if self._client is not None:
            await self._client.receive(message)

    async def stop(self) -> None:
        if self._client is not None:
            await self._node.end_session(self._client)

    # ------------------------------------------------------------ output (Sink)

    def backlog(self) -> int:
        # The SockJS session bounds what it queues itself (its max_queued_bytes,
        # closing a slow consumer): the outbox does not count it again.
        return 0

    def write(self, messages: list[bytes]) -> None:
        conn = self._conn
        for message in messages:
            conn.send(message.decode())

    def write_batch(self, batch: SharedBatch) -> None:
        self._conn.send_encoded(batch.framed(_SOCKJS_MESSAGES, _encode_batch))

    def _closed(self) -> None:
        """The outbox closed, after what it queued was handed over."""
        client = self._client
        if client is not None and client.close_code is not None:  # closed by the server
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
