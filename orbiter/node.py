"""One orbiter process: its configuration, engine, services and live sessions."""

from __future__ import annotations

import asyncio
import logging

from orbiter.config import Config
from orbiter.engine.base import Broker, PresenceStore
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.protocol.native import DisconnectCode
from orbiter.services.pubsub import PubSub
from orbiter.session.session import ClientSession

log = logging.getLogger("orbiter.node")


class Node:
    def __init__(
        self,
        config: Config,
        *,
        broker: Broker | None = None,
        presence: PresenceStore | None = None,
    ) -> None:
        self.config = config
        self.broker = broker if broker is not None else MemoryBroker()
        self.presence = presence if presence is not None else MemoryPresenceStore()
        self.pubsub = PubSub(config, self.broker, self.presence)
        self.sessions: set[ClientSession] = set()
        self._sessions_gone = asyncio.Event()

    def new_session(self, peer: str) -> ClientSession:
        session = ClientSession(self.pubsub, self.config, peer=peer)
        self.sessions.add(session)
        self._sessions_gone.clear()
        return session

    async def end_session(self, session: ClientSession) -> None:
        """The transport is done with ``session``: unsubscribe it and forget it."""
        try:
            await session.finish()
        finally:
            self.sessions.discard(session)
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
        await self.broker.close()
