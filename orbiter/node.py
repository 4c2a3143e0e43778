"""One orbiter process: its configuration, engine, services and live sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator

from orbiter.auth import Authenticator, Credentials
from orbiter.config import Config
from orbiter.engine.base import Broker, PresenceStore
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.protocol.native import DisconnectCode
from orbiter.services.pubsub import PubSub
from orbiter.session.outbox import Flusher
from orbiter.session.session import ClientSession

log = logging.getLogger("orbiter.node")


class TooManyConnections(Exception):
    """``limits.max_connections`` or ``limits.max_connections_per_ip`` is reached."""


class Node:
    def __init__(
        self,
        config: Config,
        *,
        broker: Broker | None = None,
        presence: PresenceStore | None = None,
    ) -> None:
        self.config = config
        self.broker = (
            broker
            if broker is not None
            else MemoryBroker(
                max_streams=config.limits.max_channels,
                max_history_bytes=config.history_max_bytes,
            )
        )
        self.presence = presence if presence is not None else MemoryPresenceStore()
        self.pubsub = PubSub(config, self.broker, self.presence)
        #: Writes what pushed outboxes (WebSocket sessions) queued, once per loop iteration.
        self.flusher = Flusher()
        self.sessions: set[ClientSession] = set()
        self._sessions_gone = asyncio.Event()
        #: Who connections are and what they may do (tokens, hooks, channel rules).
        self.auth = Authenticator(config)
        #: Limit violations and refusals by name, for ``GET /api/stats``.
        self.counters: Counter[str] = Counter()
        self._per_ip: Counter[str] = Counter()
        #: Connections that are not native sessions (STOMP), counted in the same limits.
        self.other_connections = 0

    @property
    def connection_count(self) -> int:
        """Every open connection the connection limits count: sessions and others (STOMP)."""
        return len(self.sessions) + self.other_connections

    def _check_room(self, peer: str) -> None:
        """:class:`TooManyConnections` (counted) if ``peer`` may not open one more."""
        limits = self.config.limits
        if self.connection_count >= limits.max_connections:
            self.counters["limit_connections"] += 1
            log.warning("connection from %s refused: %d connections", peer, self.connection_count)
            raise TooManyConnections(
                f"the server is full ({limits.max_connections} connections, "
                "limits.max_connections); retry later"
            )
        if self._per_ip[peer] >= limits.max_connections_per_ip:
            self.counters["limit_connections_per_ip"] += 1
            log.warning(
                "connection from %s refused: %d from that address", peer, self._per_ip[peer]
            )
            raise TooManyConnections(
                f"too many connections from {peer} (limits.max_connections_per_ip = "
                f"{limits.max_connections_per_ip})"
            )

    def admit(self, peer: str) -> None:
        """Count a connection that is not a native session (a STOMP one) in the limits.

        :class:`TooManyConnections` (counted, as for sessions) past them; else
        :meth:`release` must follow when it closes.
        """
        self._check_room(peer)
        self.other_connections += 1
        self._per_ip[peer] += 1

    def release(self, peer: str) -> None:
        """An :meth:`admit`-ted connection closed."""
        self.other_connections = max(0, self.other_connections - 1)
        self._per_ip[peer] -= 1
        if self._per_ip[peer] <= 0:
            del self._per_ip[peer]

    def new_session(self, peer: str, credentials: Credentials | None = None) -> ClientSession:
        """A session for a new connection; :class:`TooManyConnections` past the limits."""
        self._check_room(peer)
        session = ClientSession(
            self.pubsub,
            self.config,
            peer=peer,
            auth=self.auth,
            credentials=credentials,
            counters=self.counters,
        )
        self.sessions.add(session)
        self._per_ip[peer] += 1
        self._sessions_gone.clear()
        return session

    @contextlib.contextmanager
    def held_request(self, peer: str) -> Iterator[None]:
        """A held long poll counts as one of its peer's connections while it waits.

        :class:`TooManyConnections` past ``limits.max_connections_per_ip``.
        """
        limit = self.config.limits.max_connections_per_ip
        if self._per_ip[peer] >= limit:
            self.counters["limit_connections_per_ip"] += 1
            log.warning("poll from %s refused: %d from that address", peer, self._per_ip[peer])
            raise TooManyConnections(
                f"too many connections from {peer} (limits.max_connections_per_ip = {limit})"
            )
        self._per_ip[peer] += 1
        try:
            yield
        finally:
            self._per_ip[peer] -= 1
            if self._per_ip[peer] <= 0:
                del self._per_ip[peer]

    async def end_session(self, session: ClientSession) -> None:
        """The transport is done with ``session``: unsubscribe it and forget it."""
        try:
            await session.finish()
        finally:
            if session in self.sessions:
                self.sessions.discard(session)
                self._per_ip[session.peer] -= 1
                if self._per_ip[session.peer] <= 0:
                    del self._per_ip[session.peer]
            if not self.sessions:
                self._sessions_gone.set()

    async def start(self) -> None:
        await self.broker.start()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Close every session with a reason, and wait (bounded) for them to go."""
        if not self.sessions:
            return
        log.info("closing %d client sessions", len(self.sessions))
        for session in list(self.sessions):
            session.close(DisconnectCode.SHUTDOWN, "server shutting down")
        try:
            await asyncio.wait_for(self._sessions_gone.wait(), timeout)
        except TimeoutError:
            log.warning("%d sessions still open after %.0f s", len(self.sessions), timeout)

    async def close(self) -> None:
        await self.auth.close()
        await self.broker.close()
