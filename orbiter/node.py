"""One orbiter process: its configuration, engine, services and live sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from orbiter.auth import Authenticator, Credentials
from orbiter.auth.origins import HostAllowList, host_allow_list
from orbiter.config.settings import Config
from orbiter.engine.base import Broker, PresenceStore
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.engine.redis_sessions import SessionDirectory, session_directory
from orbiter.engine.redis_shards import redis_broker, redis_presence
from orbiter.engine.sqlite import SqliteBroker
from orbiter.logs import Counters
from orbiter.model import TooManyConnections
from orbiter.protocol.native import DisconnectCode
from orbiter.services.live.host import LiveHost
from orbiter.services.outbox import Flusher
from orbiter.services.pubsub import PubSub
from orbiter.session.session import ClientSession

log = logging.getLogger("orbiter.node")


def engine_for(config: Config) -> Broker:
    """The broker ``[engine]`` asks for: Redis, SQLite on its data file, or memory (also
    when no ``data_dir`` is configured: see ``orbiter/config/storage.py``)."""
    settings = config.engine
    if settings.kind == "redis":
        # one Redis, or shards over several; a read's answers awaited as SQLite's commits are
        return redis_broker(settings.url, commit_wait=settings.commit_wait)
    if settings.durable:
        return SqliteBroker(
            settings.data_file,
            sync=settings.sync,
            window=settings.memory_window,
            commit_wait=settings.commit_wait,
            max_streams=config.limits.max_channels,
            max_history_bytes=config.history_max_bytes,
            max_disk_bytes=settings.max_disk_bytes or None,
        )
    return MemoryBroker(
        max_streams=config.limits.max_channels,
        max_history_bytes=config.history_max_bytes,
    )


class Node:
    def __init__(
        self,
        config: Config,
        *,
        broker: Broker | None = None,
        presence: PresenceStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: monotonic seconds (the event loop's in production) for the
        refusal and limit lines and PubSub's write delay."""
        self.config = config
        self._clock = clock
        self.broker = broker if broker is not None else engine_for(config)
        if presence is None:
            redis = config.engine.kind == "redis"
            presence = redis_presence(config.engine.url) if redis else MemoryPresenceStore()
        self.presence = presence
        #: Which node holds each SockJS session, on a Redis engine (None: this node holds all).
        self.session_directory: SessionDirectory | None = session_directory(self.broker)
        #: Limit violations and refusals by name, for ``GET /api/stats`` (and their lines).
        self.counters = Counters(clock=clock)
        self.pubsub = PubSub(config, self.broker, self.presence, self.counters, clock)
        #: The connection lines (orbiter/logs.py); when INFO is off, nothing is kept for them.
        self.events = self.pubsub.events
        #: When each session opened, while INFO lines are written (for its close line).
        self._opened: dict[ClientSession, float] = {}
        #: Writes what pushed outboxes (WebSocket sessions) queued, once per loop iteration.
        self.flusher = Flusher()
        self.sessions: set[ClientSession] = set()
        self._sessions_gone = asyncio.Event()
        #: Who connections are and what they may do (tokens, hooks, channel rules).
        self.auth = Authenticator(config)
        #: The ``Host`` values requests may carry (``server.allowed_hosts``), read per request.
        self.hosts: HostAllowList = host_allow_list(config)
        #: Open connections per peer address (only addresses with one or more).
        self._per_ip: dict[str, int] = {}
        #: Connections that are not native sessions (STOMP, admin feeds), in the same limits.
        self.other_connections = 0
        #: New connections still sending their first request head (``transports/sniffing.py``).
        self.pending_connections = 0
        #: Every connection :attr:`connection_count` counts, kept as they come and go.
        self._open = 0
        #: The mounted live elements (``[[live.element]]``), their factories imported now.
        self.live = LiveHost(config.live, config.rpc)

    @property
    def connection_count(self) -> int:
        """Every open connection the connection limits count: sessions, others (STOMP)
        and new connections still sending their first request head."""
        return self._open

    def opened_at(self, session: ClientSession) -> float | None:
        """When ``session`` opened (``time.monotonic()``), while INFO lines are written."""
        return self._opened.get(session)

    def refused(self, counter: str, message: str, *args: object) -> None:
        """Count a refusal under ``counter`` and log ``message % args`` (a WARNING,
        at most one per :data:`orbiter.logs.WARNING_INTERVAL` for each counter)."""
        self.counters.refused(counter, message, *args)

    def _check_room(self, peer: str, *, per_ip: bool = True, spare: int = 0) -> None:
        """:class:`TooManyConnections` (counted) if ``peer`` may not open one more.

        ``per_ip=False`` checks the total only (a trusted proxy's new connections);
        ``spare`` connections more than the limits are let in.
        """
        limits = self.config.limits
        if self._open >= limits.max_connections + spare:
            self.refused(
                "limit_connections",
                "connection from %s refused: %d connections (limits.max_connections)",
                peer,
                self._open,
            )
            raise TooManyConnections(
                f"the server is full ({limits.max_connections} connections, "
                "limits.max_connections); retry later"
            )
        if per_ip and self._per_ip.get(peer, 0) >= limits.max_connections_per_ip + spare:
            self.refused(
                "limit_connections_per_ip",
                "connection from %s refused: %d from that address (limits.max_connections_per_ip)",
                peer,
                self._per_ip[peer],
            )
            raise TooManyConnections(
                f"too many connections from {peer} (limits.max_connections_per_ip = "
                f"{limits.max_connections_per_ip})"
            )

    def open_pending(self, peer: str) -> str | None:
        """Count a new connection that has not sent its first request head yet.

        The refusal (counted and logged as for sessions) past the connection
        limits, else None; then :meth:`close_pending` must follow once the head
        is whole or the connection is gone. One connection more than the limits
        is let in, so that a client at its limit is told why by its route (a
        WebSocket close 3003, a 503 naming the limit) rather than refused unheard.
        A trusted proxy's connections count in the total only, not against its
        address.
        """
        trusted = peer in self.config.trusted_proxies
        try:
            self._check_room(peer, per_ip=not trusted, spare=1)
        except TooManyConnections as exc:
            return str(exc)
        self.pending_connections += 1
        self._count_in(peer)
        return None

    def _count_in(self, peer: str) -> None:
        """One more connection from ``peer`` counted in :attr:`connection_count`."""
        self._open += 1
        per_ip = self._per_ip
        per_ip[peer] = per_ip.get(peer, 0) + 1

    def _count_out(self, peer: str) -> None:
        """A connection from ``peer`` counted in :attr:`connection_count` is gone."""
        self._open -= 1
        per_ip = self._per_ip
        left = per_ip.get(peer, 0) - 1
        if left > 0:
            per_ip[peer] = left
        else:
            per_ip.pop(peer, None)

    def close_pending(self, peer: str) -> None:
        """An :meth:`open_pending` connection sent its head, or closed."""
        self.pending_connections -= 1
        self._count_out(peer)

    def admit(self, peer: str) -> None:
        """Count a connection that is not a native session (STOMP, an admin feed) in the limits.

        :class:`TooManyConnections` (counted, as for sessions) past them; else
        :meth:`release` must follow when it closes.
        """
        self._check_room(peer)
        self.other_connections += 1
        self._count_in(peer)

    def release(self, peer: str) -> None:
        """An :meth:`admit`-ted connection closed."""
        if self.other_connections > 0:
            self.other_connections -= 1
            self._count_out(peer)

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
            live=self.live,
        )
        self.sessions.add(session)
        self._count_in(peer)
        self._sessions_gone.clear()
        if self.events.info:
            self._opened[session] = time.monotonic()
            self.events.opened(session.credentials.transport, peer, session.client_id)
        return session

    @contextlib.contextmanager
    def held_request(self, peer: str) -> Iterator[None]:
        """A held long poll counts as one of its peer's connections while it waits.

        :class:`TooManyConnections` past ``limits.max_connections_per_ip``.
        """
        limit = self.config.limits.max_connections_per_ip
        if self._per_ip.get(peer, 0) >= limit:
            self.refused(
                "limit_connections_per_ip",
                "poll from %s refused: %d from that address (limits.max_connections_per_ip)",
                peer,
                self._per_ip[peer],
            )
            raise TooManyConnections(
                f"too many connections from {peer} (limits.max_connections_per_ip = {limit})"
            )
        per_ip = self._per_ip
        per_ip[peer] = per_ip.get(peer, 0) + 1
        try:
            yield
        finally:
            left = per_ip.get(peer, 0) - 1
            if left > 0:
                per_ip[peer] = left
            else:
                per_ip.pop(peer, None)

    async def end_session(self, session: ClientSession) -> None:
        """The transport is done with ``session``: unsubscribe it and forget it."""
        try:
            await session.finish()
        finally:
            if session in self.sessions:
                self.sessions.discard(session)
                self._count_out(session.peer)
                if self.events.info:
                    self._log_close(session)
            if not self.sessions:
                self._sessions_gone.set()

    def _log_close(self, session: ClientSession) -> None:
        """The close line of ``session``: who, how long, and the code it was closed with
        (none: the client went away)."""
        opened = self._opened.pop(session, None)
        code = session.close_code
        self.events.closed(
            session.credentials.transport,
            session.peer,
            session.client_id,
            session.user,
            None if opened is None else time.monotonic() - opened,
            None if code is None else int(code),
            session.close_reason if code is not None else "client went away",
        )

    async def start(self) -> None:
        await self.broker.start()
        if isinstance(self.broker, MemoryBroker):
            log.info("channel history is kept in memory only: a restart forgets it")

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
        await self.live.close()  # elements kept for a reconnect are detached
        await self.auth.close()
        await self.broker.close()
        await self.presence.close()
