"""One client session: the native protocol conversation, whatever carries it.

A transport adapter feeds :meth:`ClientSession.receive` with each message
the client sent (or :meth:`ClientSession.receive_now`, which handles a
message of publishes without a coroutine and returns the rest of any other
to await), writes out what :meth:`Outbox.take` returns, and calls
:meth:`ClientSession.finish` when the connection is gone. Everything else
(commands, permissions, subscriptions, recovery from history, slow-consumer
protection) lives here once for every transport.

Read-only adapters, whose clients send no commands (plain SSE, the Orbited
0.3 URLs), call :meth:`ClientSession.subscribe` and
:meth:`ClientSession.connect_key` directly instead: the same checks, the same
recovery and settling, with the recovered publications queued as ``pub``
pushes ahead of live ones. :meth:`ClientSession.position` says where each
channel stands in what has been queued, so such an adapter can tell its
client where to resume. They authenticate the session from the
:class:`Credentials` it was created with (or call :meth:`authenticate`).

Who the client is and what it may do is decided by :mod:`orbiter.auth`: with
auth on, the user, presence info and grantable keys come from the verified
token or the app's connect hook, never from what the client claims.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from orbiter.auth import Authenticator, AuthError, Credentials, Failure, Identity
from orbiter.config.settings import Config
from orbiter.engine.base import EngineUnavailable, HistoryPage, PublishFailed, TooManyStreams
from orbiter.logs import Counters
from orbiter.model import Publication, StreamPosition
from orbiter.protocol.fallback import parse_fallback
from orbiter.protocol.keys import ConnectionKey, InvalidKey
from orbiter.protocol.live import Attach, Call, Return, Rpc
from orbiter.protocol.native import (
    PROTOCOL_VERSION,
    Command,
    CommandError,
    Connect,
    DisconnectCode,
    ErrorCode,
    History,
    Ping,
    Presence,
    Publish,
    Received,
    Refresh,
    Refusal,
    ServerProtocol,
    Subscribe,
    Unsubscribe,
    encode_error,
    encode_publication,
    encode_published,
    encode_reply,
    encode_unsubscribed,
    publication_fields,
    reserved_refusal,
    validate_channel,
)
from orbiter.services.fallback_report import record_fallback
from orbiter.services.live.connection import LiveConnection
from orbiter.services.live.host import LiveHost
from orbiter.services.outbox import Outbox
from orbiter.services.pubsub import PubSub
from orbiter.services.pushes import pushes
from orbiter.services.rate import TokenBucket
from orbiter.services.recovery import Recovery
from orbiter.services.shared_batch import SharedBatch

log = logging.getLogger("orbiter.session")

#: The native commands (the protocol also reads malformed messages and live elements').
_COMMANDS = (Publish, Subscribe, Connect, Unsubscribe, Presence, Ping, Refresh, History)

#: The error code of a refusal, by why auth refused it.
_ERROR_CODES = {
    Failure.UNAUTHORIZED: ErrorCode.UNAUTHORIZED,
    Failure.EXPIRED: ErrorCode.TOKEN_EXPIRED,
    Failure.FORBIDDEN: ErrorCode.PERMISSION_DENIED,
}
#: How a refused ``connect`` closes the connection, by why auth refused it.
_CLOSE_CODES = {
    Failure.UNAUTHORIZED: DisconnectCode.UNAUTHORIZED,
    Failure.EXPIRED: DisconnectCode.TOKEN_EXPIRED,
    Failure.FORBIDDEN: DisconnectCode.FORBIDDEN,
}


#: What a publish gives its reply: the publication, or None when the engine queued it (the
#: reply then goes out once the engine tells how it went, :meth:`ClientSession._kept`).
Published = Publication | None
#: A publish begun without suspending: :data:`Published`, or the rest of it to await.
PublishStep = Published | Coroutine[Any, Any, Published]
#: A reply's place among those held back (:attr:`ClientSession._held`): a one-item list,
#: the reply, or None while its queued publish is not told yet.
_Slot = list[bytes | None]


def _engine_refusal(exc: TooManyStreams | PublishFailed) -> Refusal:
    """How a publish the engine refused is answered."""
    if isinstance(exc, TooManyStreams):  # counted by PubSub
        return Refusal(ErrorCode.LIMIT_EXCEEDED, str(exc))
    return Refusal(ErrorCode.INTERNAL, str(exc))  # a full disk: told, never OK


class ConnectRefused(Refusal):
    """A refused ``connect`` (or direct authentication); the session closes with ``close_code``."""

    def __init__(self, code: ErrorCode, message: str, close_code: DisconnectCode) -> None:
        super().__init__(code, message)
        self.close_code = close_code


class Subscription:
    """One channel a session is subscribed to, and the last offset it was sent."""

    __slots__ = ("epoch", "offset", "recovery")

    def __init__(self, held_bytes: int) -> None:
        self.offset = 0
        self.epoch = ""
        #: While the subscription is being set up, live publications wait
        #: here so that none is lost or sent twice around the history read.
        self.recovery: Recovery[bytes] | None = Recovery(held_bytes)


@dataclass(frozen=True, slots=True)
class Subscribed:
    """What :meth:`ClientSession.subscribe` (or ``connect_key``) found."""

    channel: str
    #: The stream's position when subscribed: recovered publications end here.
    position: StreamPosition
    #: Where the client stands before the recovered publications queued for
    #: it: ``since`` when recovered, else :attr:`position`.
    start: StreamPosition
    #: None without ``since``; else whether every publication after it was recovered.
    recovered: bool | None


class ClientSession:
    """One native-protocol client, whatever transport carries it: its commands,
    identity, subscriptions and outbox (``__slots__``: one is held per idle
    connection)."""

    __slots__ = (
        "_all_kept_waiter",
        "_auth",
        "_config",
        "_expiry",
        "_finished",
        "_held",
        "_live",
        "_live_host",
        "_protocol",
        "_publishes",
        "_pubsub",
        "_subs",
        "client_id",
        "close_code",
        "close_reason",
        "counters",
        "credentials",
        "identity",
        "info",
        "key",
        "on_slow_consumer",
        "outbox",
        "peer",
        "user",
    )

    def __init__(
        self,
        pubsub: PubSub,
        config: Config,
        *,
        peer: str,
        auth: Authenticator | None = None,
        credentials: Credentials | None = None,
        counters: Counters | None = None,
        live: LiveHost | None = None,
    ) -> None:
        self.client_id = secrets.token_urlsafe(9)
        self.peer = peer
        self.user: str | None = None
        self.info: Any = None
        self.key: ConnectionKey | None = None
        #: Who the client is, once authenticated (``connect``, or :meth:`authenticate`).
        self.identity: Identity | None = None
        self.credentials = credentials if credentials is not None else Credentials(peer=peer)
        #: Limit violations and refusals by name (the node's, shown at ``/api/stats``).
        self.counters = counters if counters is not None else Counters()
        self._auth = auth if auth is not None else Authenticator(config)
        self._expiry: asyncio.TimerHandle | None = None
        #: Set by the transport: cut the connection of a client closed as a slow
        #: consumer (one that does not read cannot take a close frame either).
        self.on_slow_consumer: Callable[[], None] | None = None
        limits = config.limits
        self._publishes = TokenBucket(limits.publish_rate, limits.publish_burst, pubsub.clock())
        self.outbox = Outbox(config.limits.outgoing_buffer)
        self.close_code: DisconnectCode | None = None
        self.close_reason = ""
        self._config = config
        self._pubsub = pubsub
        self._protocol = ServerProtocol()
        self._subs: dict[str, Subscription] = {}
        self._finished = False
        #: The mounted live elements (none without a host), and this connection's, once used.
        self._live_host = live
        self._live: LiveConnection | None = None
        #: Replies held back, in command order, behind the first queued publish not yet
        #: told how it went (see :meth:`_kept`); None or empty: none. And what a command
        #: after them waits on until they are all out (made only then: :meth:`_all_kept`).
        self._held: deque[_Slot] | None = None
        self._all_kept_waiter: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    @property
    def live(self) -> LiveConnection | None:
        """This connection's live elements, if it has attached any."""
        return self._live

    @property
    def channels(self) -> list[str]:
        return list(self._subs)

    # ------------------------------------------------------------------ input

    async def receive(self, data: str | bytes) -> None:
        """Handle one message from the client, holding one or more commands."""
        rest = self.receive_now(data)
        if rest is not None:
            await rest

    def receive_now(self, data: str | bytes) -> Coroutine[Any, Any, None] | None:
        """Handle one message at once, without a coroutine, if every command in it can be:
        None; else what is left of it, in order, as a coroutine to await.

        A ``publish`` is handled at once when its rules need no await (no publish
        hook) and the engine publishes at once or queues it (the memory, SQLite
        and Redis engines); anything else (another command, a malformed one, a
        publish hook's) goes to the coroutine from that command on, so replies
        and effects come in the order, and are the ones, of :meth:`receive`.
        """
        events = self._protocol.receive(data)
        for index, event in enumerate(events):
            if self.closed:
                return None
            if not isinstance(event, Publish):
                return self._receive_events(events, index, None)
            rest = self._start_publish(event)
            if rest is not None:
                return self._receive_events(events, index, rest)
        return None

    async def _receive_events(
        self, events: list[Received], start: int, started: Coroutine[Any, Any, None] | None
    ) -> None:
        """Handle ``events`` from ``start`` on, in order; ``started``: the rest of the
        publish ``events[start]``, begun by :meth:`receive_now`, to await first."""
        if started is not None:
            await started
            start += 1
        for event in events[start:]:
            if not isinstance(event, Publish) and self._held:
                # Commands run in order: this one after the publications queued before it.
                await self._all_kept()
            if self.closed:
                return
            if not isinstance(event, _COMMANDS):  # (one check for the commands)
                self._receive_other(event)
                continue
            if isinstance(event, Publish):
                rest = self._start_publish(event)
                if rest is not None:
                    await rest
                continue
            try:
                result, settling = await self._dispatch(event)
            except Exception as exc:
                self._command_failed(event, exc)
            else:
                self._send_reply(encode_reply(event.id, result))
                if settling is not None:
                    self._settle(settling)

    def _start_publish(self, event: Publish) -> Coroutine[Any, Any, None] | None:
        """Publish at once, or queue, and reply (or reply once kept): None; else, when
        the publish needs an await (a publish hook, an engine that must be awaited),
        the coroutine that finishes it and replies."""
        try:
            step = self._publish_now(event.id, event.channel, event.data, event.tags)
        except Exception as exc:
            self._command_failed(event, exc)
            return None
        if step is None or isinstance(step, Publication):
            self._published(event.id, step)
            return None
        return self._finish_publish(event, step)

    async def _finish_publish(self, event: Publish, step: Coroutine[Any, Any, Published]) -> None:
        try:
            published = await step
        except Exception as exc:
            self._command_failed(event, exc)
            return
        self._published(event.id, published)

    def _published(self, id_: int, published: Published) -> None:
        """Reply to a publish now; or, if queued, nothing yet (:meth:`_kept` will)."""
        if published is not None:
            self._send_reply(encode_published(id_, published.offset, published.epoch))

    def _command_failed(self, command: Command, exc: Exception) -> None:
        """Answer a command that raised: refused, the engine unreachable, or a bug."""
        if isinstance(exc, Refusal):
            log.info("client %s (%s): refused: %s", self.client_id, self.peer, exc.message)
            self._send_reply(encode_error(command.id, exc.code, exc.message))
            if isinstance(exc, ConnectRefused):
                self.close(exc.close_code, exc.message)
            elif isinstance(command, Connect):
                self.close(DisconnectCode.CONNECT_FAILED, exc.message)
        elif isinstance(exc, EngineUnavailable):  # Redis unreachable, say: told, no traceback
            log.warning("client %s (%s): %s", self.client_id, self.peer, exc)
            self._send_reply(encode_error(command.id, ErrorCode.INTERNAL, str(exc)))
        else:
            log.error("client %s (%s): internal error", self.client_id, self.peer, exc_info=exc)
            internal = encode_error(command.id, ErrorCode.INTERNAL, "internal server error")
            self._send_reply(internal)

    def _receive_other(self, event: CommandError | Return | Attach | Call | Rpc) -> None:
        """A message that is not a command: a malformed one, or a live element's."""
        if isinstance(event, CommandError):
            log.info("client %s (%s): %s", self.client_id, self.peer, event.message)
            self._send_reply(encode_error(event.id, event.code, event.message))
        elif isinstance(event, Return):
            if self._live is not None:
                self._live.returned(event)
        elif isinstance(event, Attach):
            self._live_connection().attach(event)
        elif isinstance(event, Call):
            self._live_connection().call(event)
        else:
            self._live_connection().rpc(event)

    def _live_connection(self) -> LiveConnection:
        """This connection's live elements (``services/live/``), made on first use."""
        if self._live is None:
            host = self._live_host
            if host is None:
                host = LiveHost(replace(self._config.live, mounts=()), self._config.rpc)
            self._live = LiveConnection(host, self, self._send_reply, self.counters)
        return self._live

    async def _dispatch(
        self, command: Connect | Subscribe | Unsubscribe | Presence | Ping | Refresh | History
    ) -> tuple[dict[str, Any], Subscription | None]:
        """Run one command (not a publish): its result, and a subscription to settle after
        the reply."""
        if isinstance(command, Subscribe):
            self._check_subscribable(command.channel)
            await self._check_permission(command.channel, command.token)
            page, sub = await self._subscribe(command.channel, command.since)
            return _subscribe_result(command.channel, command.since, page), sub
        if isinstance(command, Connect):
            return await self._connect(command)
        if isinstance(command, Unsubscribe):
            if command.channel not in self._subs:
                raise Refusal(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {command.channel!r}")
            await self._unsubscribe(command.channel)
            return {}, None
        if isinstance(command, Ping):
            return {}, None
        if isinstance(command, Presence):
            return await self._presence(command.channel), None
        if isinstance(command, History):
            return await self._history(command), None
        return await self._refresh(command.token), None

    async def _connect(self, command: Connect) -> tuple[dict[str, Any], Subscription | None]:
        result: dict[str, Any] = {"client": self.client_id, "protocol": PROTOCOL_VERSION}
        identity = await self.authenticate(command.token)
        if command.fallback is not None:
            record_fallback(
                self.counters,
                self._pubsub.events,
                self.client_id,
                self.peer,
                partial(parse_fallback, command.fallback),
            )
        if identity.expires is not None:
            result["expires_in"] = max(0.0, round(identity.expires - time.time(), 3))
        try:
            if command.key is not None:
                self.key = ConnectionKey.parse(command.key)
            elif command.user is not None or command.location is not None:
                if command.user is None or command.location is None:
                    raise InvalidKey("a connection key needs both 'user' and 'location'")
                self.key = ConnectionKey.build(
                    command.user, command.session or "0", command.location
                )
        except InvalidKey as exc:
            raise Refusal(ErrorCode.BAD_REQUEST, str(exc)) from None
        if identity.open:
            self.info = command.info
        elif self.key is None and identity.keys is not None and len(identity.keys) == 1:
            self.key = identity.keys[0]
        if self.key is None:
            return result, None
        self._check_key(self.key)
        if identity.open:
            self.user = self.key.user
        page, sub = await self._subscribe(self.key.channel, command.since)
        key_result = _subscribe_result(self.key.channel, command.since, page)
        result["key"] = {"key": str(self.key), **key_result}
        return result, sub

    async def authenticate(self, token: str | None = None) -> Identity:
        """Who the client is, from ``token`` or the session's credentials.

        Raises :class:`ConnectRefused` (the session should close with its
        ``close_code``) when the credentials are missing, bad or refused.
        """
        credentials = self.credentials
        if token is not None:
            credentials = replace(credentials, token=token)
        try:
            identity = await self._auth.authenticate_connection(credentials, self.client_id)
        except AuthError as exc:
            self.counters[f"auth_{exc.failure.value}"] += 1
            raise ConnectRefused(
                _ERROR_CODES[exc.failure], exc.message, _CLOSE_CODES[exc.failure]
            ) from None
        self.identity = identity
        if not identity.open:
            self.user, self.info = identity.user, identity.info
        self._schedule_expiry()
        return identity

    def _check_key(self, key: ConnectionKey) -> None:
        assert self.identity is not None
        if not self.identity.may_be_key(key):
            self.counters["auth_forbidden"] += 1
            raise ConnectRefused(
                ErrorCode.PERMISSION_DENIED,
                f"the connection may not be Orbited key {str(key)!r}: the token "
                "(or connect hook) grants neither that key nor its user",
                DisconnectCode.FORBIDDEN,
            )

    async def _refresh(self, token: str) -> dict[str, Any]:
        assert self.identity is not None
        try:
            self.identity = self._auth.refresh(self.identity, token)
        except AuthError as exc:
            self.counters[f"auth_{exc.failure.value}"] += 1
            raise Refusal(_ERROR_CODES[exc.failure], exc.message) from None
        self._schedule_expiry()
        # A token channel the new token no longer lists is left, and the client told.
        for channel in list(self._subs):
            rule = self._config.rule_for(channel)
            if rule.subscribe == "token" and not self.identity.lists_channel(channel):
                await self._unsubscribe(channel)
                reason = "the refreshed token no longer grants this channel"
                self._send(encode_unsubscribed(channel, reason))
        expires = self.identity.expires
        return {} if expires is None else {"expires_in": max(0.0, round(expires - time.time(), 3))}

    def _schedule_expiry(self) -> None:
        """Close the session when its token runs out, unless it is refreshed first."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        expires = None if self.identity is None else self.identity.expires
        if expires is not None:
            delay = max(0.0, expires - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self._expiry = None
        if not self.closed:
            self.counters["token_expired"] += 1
            log.info("client %s (%s): token expired without refresh", self.client_id, self.peer)
            self.close(DisconnectCode.TOKEN_EXPIRED, "token expired")

    async def _check_permission(self, channel: str, token: str | None = None) -> None:
        identity = self.identity
        if identity is None:
            identity = await self.authenticate()
        try:
            await self._auth.permissions.check_subscribe(
                identity,
                channel,
                client=self.client_id,
                token=token,
                headers=self.credentials.headers,
            )
        except AuthError as exc:
            self.counters["subscribe_denied"] += 1
            raise Refusal(_ERROR_CODES[exc.failure], exc.message) from None

    def _publish_now(
        self, id_: int, channel: str, data: Any, tags: dict[str, str] | None
    ) -> PublishStep:
        """Publish (command ``id_``), as far as it can without suspending: the rules (the
        publish rate, a reserved channel, the channel's permission), then the engine. The
        publication; or None if the engine queues publications (the SQLite engine's
        group commit, the Redis engine's pipeline), whose reply :meth:`_kept` sends; or,
        when the publish hook must be asked or the engine awaited, the coroutine that does
        the rest and returns one of those. A refusal raises :class:`Refusal`, before
        anything is published."""
        if not self._publishes.take(self._pubsub.clock()):
            self.counters.limit("limit_publish_rate", self.client_id, self.peer)
            limits = self._config.limits
            raise Refusal(
                ErrorCode.LIMIT_EXCEEDED,
                f"publishing too fast: at most {limits.publish_rate:g} per second "
                f"(bursts of {limits.publish_burst}; limits.publish_rate); not published",
            )
        reserved = reserved_refusal(channel)
        if reserved is not None:
            raise Refusal(ErrorCode.PERMISSION_DENIED, reserved)
        try:
            hooked = self._auth.permissions.check_publish_now(
                channel, subscribed=channel in self._subs
            )
        except AuthError as exc:
            raise self._publish_denied(exc) from None
        if hooked:
            return self._publish_hooked(id_, channel, data, tags)
        return self._publish_checked(id_, channel, data, tags)

    async def _publish_hooked(
        self, id_: int, channel: str, data: Any, tags: dict[str, str] | None
    ) -> Published:
        """The rest of :meth:`_publish_now` when the app's publish hook decides."""
        assert self.identity is not None
        try:
            data = await self._auth.permissions.publish_hook(
                self.identity,
                channel,
                data,
                client=self.client_id,
                headers=self.credentials.headers,
            )
        except AuthError as exc:
            raise self._publish_denied(exc) from None
        step = self._publish_checked(id_, channel, data, tags)
        if step is None or isinstance(step, Publication):
            return step
        return await step

    def _publish_denied(self, exc: AuthError) -> Refusal:
        self.counters["publish_denied"] += 1
        return Refusal(_ERROR_CODES[exc.failure], exc.message)

    def _publish_checked(
        self, id_: int, channel: str, data: Any, tags: dict[str, str] | None
    ) -> PublishStep:
        """Publish what the rules let through: at once if the engine can (the memory
        engine), else queued if it queues (None: :meth:`_kept` replies), else the
        coroutine that awaits it."""
        pubsub = self._pubsub
        try:
            pub = pubsub.publish_at_once(channel, data, tags)
            if pub is None:
                # Its place among the replies, taken before the engine may tell it.
                slot: _Slot = [None]
                held = self._held
                if held is None:
                    held = self._held = deque()
                held.append(slot)
                told = partial(self._kept, id_, slot)
                try:
                    queued = pubsub.publish_then(channel, data, tags, told)
                except BaseException:
                    held.pop()
                    raise
                if queued:
                    return None
                held.pop()
                return self._publish_later(channel, data, tags)
        except (TooManyStreams, PublishFailed) as exc:
            raise _engine_refusal(exc) from None
        return pub

    async def _publish_later(
        self, channel: str, data: Any, tags: dict[str, str] | None
    ) -> Published:
        try:
            return await self._pubsub.publish(channel, data, tags)
        except (TooManyStreams, PublishFailed) as exc:
            raise _engine_refusal(exc) from None

    def _kept(self, id_: int, slot: _Slot, outcome: Publication | BaseException) -> None:
        """Reply to a queued publish once the engine tells how it went
        (:meth:`PubSub.publish_then`: from the SQLite commit's report, in its iteration).

        :meth:`receive` goes on meanwhile: publishes that follow are queued behind
        it (one group commit takes them all), and any other command waits for them
        (:meth:`_all_kept`), so commands still run in order. Replies go out in command
        order: one that is ready while an earlier publish is not told yet (a refusal,
        or a publish told first by another Redis shard) is held in its place
        (:meth:`_send_reply`) and goes out with the earlier one's.
        """
        if isinstance(outcome, Publication):
            slot[0] = encode_published(id_, outcome.offset, outcome.epoch)
        elif isinstance(outcome, PublishFailed):  # a full disk: told, never OK
            log.info("client %s (%s): not published: %s", self.client_id, self.peer, outcome)
            slot[0] = encode_error(id_, ErrorCode.INTERNAL, str(outcome))
        else:
            log.error("client %s (%s): publish failed: %r", self.client_id, self.peer, outcome)
            slot[0] = encode_error(id_, ErrorCode.INTERNAL, "internal server error")
        held = self._held
        assert held is not None
        while held:
            reply = held[0][0]
            if reply is None:
                return  # an earlier publish is not told yet: this one waits in its place
            held.popleft()
            if not self.closed and self._client_reading():
                self.outbox.put(reply, force=True)
        waiter = self._all_kept_waiter
        if waiter is not None:
            self._all_kept_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    @property
    def _unkept(self) -> int:
        """Queued publishes not yet told how they went."""
        held = self._held
        return 0 if held is None else sum(1 for slot in held if slot[0] is None)

    async def _all_kept(self) -> None:
        """Until every publish queued so far was told how it went and replied to (:meth:`_kept`)."""
        if not self._held:
            return
        waiter = self._all_kept_waiter
        if waiter is None or waiter.done():  # (done: cancelled with the task that awaited it)
            waiter = asyncio.get_running_loop().create_future()
            self._all_kept_waiter = waiter
        await waiter

    async def _presence(self, channel: str) -> dict[str, Any]:
        if channel not in self._subs:
            raise Refusal(ErrorCode.NOT_SUBSCRIBED, f"subscribe to {channel!r} to see its presence")
        try:
            self._auth.permissions.check_presence(channel)
        except AuthError as exc:
            raise Refusal(_ERROR_CODES[exc.failure], exc.message) from None
        return await self._pubsub.presence(channel)

    async def _history(self, command: History) -> dict[str, Any]:
        """A page of a subscribed channel's history (the subscribe already checked the
        permission to read it)."""
        channel = command.channel
        if channel not in self._subs:
            raise Refusal(ErrorCode.NOT_SUBSCRIBED, f"subscribe to {channel!r} to read its history")
        if command.before is None:
            page = await self._pubsub.history(channel, None, command.limit)
        else:
            page = await self._pubsub.history_before(channel, command.before, command.limit)
        return {
            "channel": channel,
            "epoch": page.position.epoch,
            "offset": page.position.offset,
            "recoverable": page.recoverable,
            "publications": [publication_fields(p) for p in page.publications],
        }

    def _check_subscribable(self, channel: str) -> None:
        reserved = reserved_refusal(channel)
        if reserved is not None:
            raise Refusal(
                ErrorCode.PERMISSION_DENIED,
                f"{reserved}: Orbited key channels are joined by 'connect' with "
                "user/session/location",
            )
        if channel in self._subs:
            raise Refusal(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel!r}")
        limit = self._config.limits.max_subscriptions
        if len(self._subs) >= limit:
            self.counters.limit("limit_subscriptions", self.client_id, self.peer)
            raise Refusal(
                ErrorCode.LIMIT_EXCEEDED,
                f"a connection may hold at most {limit} subscriptions (limits.max_subscriptions)",
            )

    async def _subscribe(
        self, channel: str, since: StreamPosition | None
    ) -> tuple[HistoryPage, Subscription]:
        """Subscribe, then read history; :meth:`_settle` after the reply is sent.

        Live publications that arrive while history is read wait in the
        subscription's :class:`Recovery`; once the reply (with the recovered
        publications) is out, only those newer than the history's position
        follow, so nothing is lost or duplicated.
        """
        sub = self._subs[channel] = Subscription(self._config.limits.outgoing_buffer)
        try:
            await self._pubsub.subscribe(self, channel)
            page = await self._pubsub.history(channel, since, limit=0)
        except BaseException:
            self._subs.pop(channel, None)
            await self._pubsub.unsubscribe(self, channel)
            raise
        sub.offset = page.position.offset
        sub.epoch = page.position.epoch
        return page, sub

    def _settle(self, sub: Subscription) -> None:
        recovery, sub.recovery = sub.recovery, None
        if recovery is not None and recovery.held:
            for pub, message in recovery.newer_than(StreamPosition(sub.offset, sub.epoch)):
                self.deliver(pub, message)

    async def _unsubscribe(self, channel: str) -> None:
        if self._subs.pop(channel, None) is not None:
            await self._pubsub.unsubscribe(self, channel)

    async def drop(self, channel: str, reason: str) -> bool:
        """Leave ``channel`` on the server's word (an administrator, ``POST
        /api/admin/unsubscribe``), telling the client why; False if not subscribed."""
        if channel not in self._subs:
            return False
        await self._unsubscribe(channel)
        self._send(encode_unsubscribed(channel, reason))
        return True

    # ------------------------------------------------------------ direct calls

    async def subscribe(self, channel: str, since: StreamPosition | None = None) -> Subscribed:
        """Subscribe without a command, for adapters whose clients send none.

        The checks of the ``subscribe`` command apply (a well-formed channel,
        not reserved, not twice, at most ``limits.max_subscriptions``); a
        refusal raises :class:`Refusal`. When the gap after ``since`` can be
        recovered, the missed publications are queued in the outbox as
        ``pub`` pushes, oldest first, and live ones follow, none twice.
        """
        try:
            validate_channel(channel)
        except ValueError as exc:
            raise Refusal(ErrorCode.BAD_REQUEST, str(exc)) from None
        self._check_subscribable(channel)
        await self._check_permission(channel)
        return await self._join(channel, since)

    async def connect_key(
        self, key: ConnectionKey, since: StreamPosition | None = None
    ) -> Subscribed:
        """Be the Orbited ``key``'s connection and join its channel, without a command.

        What ``connect`` with a key does: the session's user becomes the
        key's user, and the key channel is subscribed as by :meth:`subscribe`.
        """
        if self.key is not None:
            raise Refusal(ErrorCode.ALREADY_CONNECTED, "already connected")
        identity = self.identity if self.identity is not None else await self.authenticate()
        self._check_key(key)
        self.key = key
        if identity.open:
            self.user = key.user
        return await self._join(key.channel, since)

    def position(self, channel: str) -> StreamPosition | None:
        """Where ``channel`` stands in what this session has queued for its client.

        The offset of the last publication queued (or, before any, of the
        subscription), in the stream's epoch. None if the session is not
        subscribed to ``channel`` or the subscription is still being set up.
        """
        sub = self._subs.get(channel)
        if sub is None or sub.recovery is not None:
            return None
        return StreamPosition(sub.offset, sub.epoch)

    async def _join(self, channel: str, since: StreamPosition | None) -> Subscribed:
        page, sub = await self._subscribe(channel, since)
        recovered = None if since is None else page.recoverable
        if recovered and self._client_reading():
            for pub in page.publications:
                self.outbox.put(encode_publication(pub), force=True)
        self._settle(sub)
        start = since if recovered and since is not None else page.position
        return Subscribed(channel, page.position, start, recovered)

    # ------------------------------------------------------------------ output

    def deliver(self, pub: Publication, message: bytes) -> None:
        """Queue one publication, ``message`` its native push (a batch's, one at a time)."""
        sub = self._subs.get(pub.channel)
        if sub is None:
            return
        if sub.recovery is not None:
            if not sub.recovery.hold(pub, message, len(message)):
                self.close(DisconnectCode.SLOW_CONSUMER, "outgoing buffer full")
            return
        if pub.epoch != sub.epoch:
            if sub.offset or pub.offset != 1:
                # Offsets of another epoch say nothing about what the client missed.
                self.close(
                    DisconnectCode.STREAM_LOST,
                    f"the stream of {pub.channel!r} was lost; reconnect to learn what is",
                )
                return
            sub.epoch = pub.epoch  # a first publication after the epoch read: nothing missed
        elif pub.offset <= sub.offset:
            return
        elif pub.offset != sub.offset + 1:
            # The engine could not deliver the ones between (a node that got them neither
            # live nor from history): the client must not believe it has them.
            self.close(
                DisconnectCode.STREAM_LOST,
                f"publications of {pub.channel!r} were lost; reconnect to learn which",
            )
            return
        sub.offset = pub.offset
        if not self.outbox.put(message):
            self.close(DisconnectCode.SLOW_CONSUMER, "outgoing buffer full")

    def deliver_batch(self, batch: SharedBatch) -> None:
        """Fan-out hot path (:class:`~orbiter.services.pubsub.Subscriber`): a channel's new
        publications, framed by the transport from their native pushes
        (:func:`~orbiter.services.pushes.pushes`, encoded once per batch)."""
        sub = self._subs.get(batch.channel)
        if sub is None:
            return
        if (
            sub.recovery is not None
            or sub.offset != batch.previous_offset
            or sub.epoch != batch.epoch
        ):
            for pub, message in zip(batch.pubs, pushes(batch), strict=True):
                self.deliver(pub, message)
            return
        sub.offset = batch.last_offset
        if not self.outbox.put_batch(batch):
            self.close(DisconnectCode.SLOW_CONSUMER, "outgoing buffer full")

    def deliver_presence(self, channel: str, message: bytes) -> None:
        """Queue a join/leave push, for subscriptions already set up."""
        sub = self._subs.get(channel)
        if sub is not None and sub.recovery is None:
            self._send(message)

    def _send(self, message: bytes) -> None:
        if not self.outbox.put(message):
            self.close(DisconnectCode.SLOW_CONSUMER, "outgoing buffer full")

    def _send_reply(self, message: bytes) -> None:
        """Queue a reply; it may take the outbox past its limit (see :meth:`_client_reading`).
        Behind a queued publish not yet told, it is held in its place (:meth:`_kept`)."""
        held = self._held
        if held:
            held.append([message])
        elif self._client_reading():
            self.outbox.put(message, force=True)

    def _client_reading(self) -> bool:
        """May what the client asked for be queued past the outgoing limit?

        A reply (with a recovery, which can be larger than the limit: it is
        bounded by the channel's ``history_size``) is queued whole, but only
        if the client has been reading: an outbox already past its limit means
        it has not, and the session is closed as a slow consumer instead.
        """
        if self.outbox.over_limit:
            self.close(DisconnectCode.SLOW_CONSUMER, "outgoing buffer full")
            return False
        return True

    def close(self, code: DisconnectCode, reason: str) -> None:
        """End the session; the transport closes the connection with ``code``."""
        if self.closed:
            return
        self.close_code, self.close_reason = code, reason
        if code is DisconnectCode.SLOW_CONSUMER:
            self.counters["limit_outgoing_buffer"] += 1
            if self.on_slow_consumer is not None:
                self.on_slow_consumer()
            log.warning(
                "client %s (%s): disconnected: %s (%d bytes queued)",
                self.client_id,
                self.peer,
                reason,
                self.outbox.queued_bytes,
                extra={  # fields of the JSON log (orbiter/logs.py)
                    "event": "limit",
                    "counter": "limit_outgoing_buffer",
                    "client": self.client_id,
                    "ip": self.peer,
                },
            )
        self.outbox.close(discard=code is DisconnectCode.SLOW_CONSUMER)

    async def finish(self) -> None:
        """The connection is gone: leave every channel. Idempotent."""
        if self._finished:
            return
        self._finished = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if not self.closed:
            self.outbox.close(discard=True)
        # else: closed by the server; what it queued last (the refusal, the reason)
        # still goes out before the close, unless close() discarded it (slow consumer).
        for channel in list(self._subs):
            await self._unsubscribe(channel)
        if self._live is not None:  # detached hooks run; calls to the browser fail
            await self._live.close()


def _subscribe_result(
    channel: str, since: StreamPosition | None, page: HistoryPage
) -> dict[str, Any]:
    """The result of a ``subscribe`` command (and of a key in ``connect``)."""
    result: dict[str, Any] = {
        "channel": channel,
        "epoch": page.position.epoch,
        "offset": page.position.offset,
    }
    if since is not None:
        result["recovered"] = page.recoverable
        result["publications"] = (
            [publication_fields(p) for p in page.publications] if page.recoverable else []
        )
    return result
