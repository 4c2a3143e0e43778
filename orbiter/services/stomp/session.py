"""One STOMP connection, whatever carries it: its frames, subscriptions, acks, transactions.

A transport feeds bytes to :meth:`StompSession.receive` and writes what
:attr:`StompSession.outbox` hands it; :meth:`StompSession.keepalive` runs
the negotiated heart-beats; the broker's ``end_session`` is called when
the connection is gone. Every protocol error is an ``ERROR`` frame (a
``message`` header, a body saying what was wrong, the ``receipt-id`` of
the frame that caused it) followed by the end of the connection; what the
connection held of a queue goes back to the queue, marked redelivered.

The session is a PubSub :class:`~orbiter.services.pubsub.Subscriber` of the
channels its topic subscriptions name (once per channel, however many
subscriptions), so publications reach it on the one delivery path. It sees
its broker as a :class:`SessionBroker` (what :class:`~.broker.StompBroker`
is), so that the broker, which makes sessions, is the only one importing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from orbiter.auth import Authenticator, AuthError
from orbiter.config.settings import Config
from orbiter.config.stomp import StompSettings
from orbiter.engine.base import PublishFailed, TooManyStreams
from orbiter.model import JSON, Publication, StreamPosition
from orbiter.protocol.native import (
    is_reserved_tag,
    reserved_refusal,
    validate_channel,
    validate_tags,
)
from orbiter.protocol.stomp import (
    VERSIONS,
    Frame,
    FrameError,
    FrameParser,
    Header,
    Limits,
    encode_frame,
    escape,
    heart_beat_intervals,
    negotiate_version,
    parse_heart_beat,
)
from orbiter.services.outbox import Outbox
from orbiter.services.pubsub import PubSub
from orbiter.services.rate import TokenBucket
from orbiter.services.recovery import Recovery
from orbiter.services.shared_batch import SharedBatch
from orbiter.services.stomp.bodies import BodyError, data_of
from orbiter.services.stomp.errors import StompError
from orbiter.services.stomp.identity import StompAuthError, StompIdentity, authenticate
from orbiter.services.stomp.queues import (
    MessageQueue,
    QueueBook,
    QueuedMessage,
    QueueFull,
    Sender,
)
from orbiter.services.stomp.transactions import Transactions
from orbiter.version import __version__

log = logging.getLogger("orbiter.stomp")

#: Where a destination header points: a topic (an orbiter channel) or a queue, and its name.
Destination = tuple[Literal["topic", "queue"], str]

ACK_MODES = ("auto", "client", "client-individual")
CLIENT_COMMANDS = frozenset(
    {"SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN", "COMMIT", "ABORT", "DISCONNECT"}
)
#: SEND headers that are not passed on to a queue's consumer.
_NOT_FORWARDED = frozenset(
    {"destination", "receipt", "transaction", "content-length", "message-id", "subscription"}
)


def _tags(frame: Frame) -> dict[str, str] | None:
    """A topic SEND's own headers, which its MESSAGEs carry (STOMP 1.2: "user defined
    headers MUST be passed through"), as the publication's tags; the headers a MESSAGE
    sets itself (``destination``, ``content-type``, ``orbiter-offset``...) are not."""
    tags = {name: value for name, value in frame.first_headers() if not is_reserved_tag(name)}
    try:
        return validate_tags(tags)
    except ValueError as exc:
        raise StompError("cannot pass these headers on", str(exc)) from None


@dataclass(eq=False, slots=True)
class Subscription:
    """One SUBSCRIBE: a topic (channel) or a queue, with its ack mode and unacked messages."""

    session: StompSession
    id: str
    destination: str
    kind: str
    #: The channel (topic) or the queue's name.
    target: str
    ack: str
    #: Message-id -> the queued message (None for a topic's: nothing to redeliver).
    unacked: OrderedDict[str, QueuedMessage | None] = field(default_factory=OrderedDict)
    #: Live publications (and their MESSAGE tails) held back while history is read.
    recovery: Recovery[bytes] | None = None
    #: Every MESSAGE's first lines up to its message-id (the same for all its messages).
    head: bytes = b""
    #: MESSAGEs carry an ``ack`` header (STOMP 1.2, acknowledged modes).
    ack_header: bool = False

    def __post_init__(self) -> None:
        version = self.session.version or "1.0"
        self.head = f"MESSAGE\nsubscription:{escape(self.id, version)}\nmessage-id:".encode()
        self.ack_header = self.ack != "auto" and version == "1.2"

    # Consumer (queues)
    @property
    def acknowledges(self) -> bool:
        return self.ack != "auto"

    def has_room(self) -> bool:
        session = self.session
        if session.closed or not session.can_take_queued():
            return False
        return self.ack == "auto" or len(self.unacked) < session.settings.max_unacked

    def offer(self, message: QueuedMessage) -> bool:
        return self.session.deliver_queued(self, message)


class SessionBroker(Protocol):
    """What a session uses of the broker that made it (:class:`~.broker.StompBroker`)."""

    config: Config
    settings: StompSettings
    auth: Authenticator
    pubsub: PubSub
    queues: QueueBook
    #: Limit violations by name.
    counters: Counter[str]
    frame_limits: Limits

    def next_id(self) -> str:
        """A new id, unique in the broker (sessions, queued messages)."""

    def queued(self) -> None:
        """A message went into a queue (queues now hold bytes to sweep)."""

    def destination(self, name: str) -> Destination:
        """What a destination header names; ``ValueError`` saying why if nothing."""

    def message_tail(self, pub: Publication, escaped: bool) -> bytes:
        """The part of ``pub``'s MESSAGE frame after the subscription header."""

    def message_tails(self, batch: SharedBatch, escaped: bool) -> list[bytes]:
        """:meth:`message_tail` of each of ``batch``'s publications."""


class StompSession:
    def __init__(
        self,
        broker: SessionBroker,
        *,
        peer: str,
        transport: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.broker = broker
        self.headers = dict(headers or {})
        self.settings = broker.settings
        self.peer = peer
        self.transport = transport
        self.outbox = Outbox(broker.config.limits.outgoing_buffer)
        self.parser = FrameParser(broker.frame_limits, pause_after_connect=True)
        self.version: str | None = None
        self.identity: StompIdentity | None = None
        self._id = broker.next_id()
        self.subscriptions: dict[str, Subscription] = {}
        self._topics: dict[str, list[Subscription]] = {}
        #: Message-id -> subscription, for every message awaiting ACK/NACK.
        self._unacked: dict[str, Subscription] = {}
        self._transactions = Transactions(
            self.settings.max_transactions, self.settings.max_transaction_frames
        )
        self._deliveries = 0
        #: The bytes this connection's SENDs hold in queues (stomp.max_client_queue_bytes).
        self._queue_sender = Sender()
        limits = broker.config.limits
        #: SENDs of a connection held to the channel rules (not an app server): publish_rate.
        self._publishes = TokenBucket(limits.publish_rate, limits.publish_burst, time.monotonic())
        #: Counted in the node's connection limits (released when it ends).
        self.admitted = False
        self.closed = False
        self.close_reason = ""
        #: Negotiated heart-beats in ms: the broker sends every ..., the client must within ....
        self.send_interval = 0
        self.receive_interval = 0
        self.last_received = self.last_sent = time.monotonic()
        self.started = self.last_received
        self._connected = asyncio.Event()
        self._closed = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None
        #: Set by a transport that can cut its connection at once (used at shutdown).
        self.abort: Callable[[], None] | None = None

    # ------------------------------------------------------------ Subscriber

    @property
    def client_id(self) -> str:
        return f"stomp-{self._id}"

    @property
    def user(self) -> str | None:
        return None if self.identity is None else self.identity.user

    @property
    def info(self) -> JSON:
        return None

    def deliver_batch(self, batch: SharedBatch) -> None:
        """Fan-out hot path: a channel's batch, its MESSAGE tails encoded once for all sessions.

        Only STOMP's framing of the batch is made: a channel of STOMP subscribers
        alone is never encoded for the native protocol.
        """
        if self.closed or batch.channel not in self._topics:
            return
        tails = self.broker.message_tails(batch, self.version != "1.0")
        for pub, tail in zip(batch.pubs, tails, strict=True):
            self._deliver_live(pub, tail)

    def _deliver_live(self, pub: Publication, tail: bytes) -> None:
        """One MESSAGE per subscription of this session to the channel."""
        subs = self._topics.get(pub.channel)
        if not subs or self.closed:
            return
        for sub in subs:
            if sub.recovery is None:
                self._deliver_publication(sub, pub, tail)
                continue
            if not sub.recovery.hold(pub, tail, len(tail)):
                self.fail(
                    "slow consumer",
                    "the publications held during a recovery passed limits.outgoing_buffer",
                )

    def _deliver_publication(
        self, sub: Subscription, pub: Publication, tail: bytes | None = None
    ) -> None:
        if tail is None:
            tail = self.broker.message_tail(pub, self.version != "1.0")
        message_id = self._next_message_id()
        head = self._message_head(sub, message_id)
        if sub.ack != "auto":
            self._hold(sub, message_id, None)
        self._put(head + tail)

    def deliver_presence(self, channel: str, message: bytes) -> None:
        """STOMP has no presence frames; join/leave are not sent."""

    # ---------------------------------------------------------------- input

    async def receive(self, data: bytes) -> None:
        """Bytes from the client: parse and handle every frame they complete, in order."""
        if self.closed:
            return
        self.last_received = time.monotonic()
        while True:
            try:
                frames = self.parser.feed(data)
            except FrameError as exc:
                self.fail("malformed frame received", str(exc))
                return
            for frame in frames:
                if self.closed:
                    return
                try:
                    await self._handle(frame)
                except StompError as exc:
                    self.fail(exc.message, exc.detail, frame.get("receipt"))
                    return
                except TooManyStreams as exc:  # counted by PubSub
                    self.fail("too many channels", str(exc), frame.get("receipt"))
                    return
                except PublishFailed as exc:  # a full disk: an ERROR, never a RECEIPT
                    self.fail("not stored", str(exc), frame.get("receipt"))
                    return
            # The parser paused after CONNECT: parse the rest with the negotiated version.
            if not frames or frames[-1].command not in ("CONNECT", "STOMP") or self.closed:
                return
            data = b""

    async def _handle(self, frame: Frame) -> None:
        command = frame.command
        if self.version is None:
            if command not in ("CONNECT", "STOMP"):
                raise StompError(
                    "not connected", f"the first frame must be CONNECT or STOMP, not {command!r}"
                )
            await self._connect(frame)
            return
        if command == "NACK" and self.version == "1.0":
            raise StompError("unknown command", "NACK is not part of STOMP 1.0 (use 1.1 or 1.2)")
        if command not in CLIENT_COMMANDS:
            if command in ("CONNECT", "STOMP"):
                raise StompError("already connected", "CONNECT was sent twice")
            raise StompError("unknown command", f"unknown command {command[:32]!r}")
        if command in ("SEND", "ACK", "NACK") and "transaction" in frame:
            self._transactions.hold(frame)
        elif command == "DISCONNECT":
            self._receipt(frame)
            self.close("client disconnected")
            return
        else:
            self._receipt(frame, await self._execute(frame))
            return
        self._receipt(frame)

    async def _execute(self, frame: Frame) -> list[Header]:
        """Carry out one frame; the headers its RECEIPT gets besides ``receipt-id``."""
        command = frame.command
        if command == "SEND":
            await self._send(frame)
        elif command == "SUBSCRIBE":
            return await self._subscribe(frame)
        elif command == "UNSUBSCRIBE":
            await self._unsubscribe(frame)
        elif command in ("ACK", "NACK"):
            self._ack(frame, nack=command == "NACK")
        elif command == "BEGIN":
            self._transactions.begin(frame)
        elif command == "COMMIT":
            for buffered in self._transactions.end(frame):
                await self._execute(buffered)
        elif command == "ABORT":
            self._transactions.end(frame)
        return []

    # -------------------------------------------------------------- connect

    async def _connect(self, frame: Frame) -> None:
        version = negotiate_version(frame.get("accept-version"))
        if version is None:
            supported = ",".join(VERSIONS)
            self._put(
                encode_frame(
                    "ERROR",
                    [("version", supported), ("content-type", "text/plain"),
                     ("message", "unsupported protocol version")],
                    f"Supported protocol versions are {' '.join(VERSIONS)}".encode(),
                    "1.2",
                )
            )  # fmt: skip
            self.close("no common protocol version")
            return
        try:
            client_beat = parse_heart_beat(frame.get("heart-beat")) if version != "1.0" else (0, 0)
        except FrameError as exc:
            raise StompError("malformed heart-beat header", str(exc)) from None
        try:
            self.identity = await authenticate(
                self.broker.config,
                self.broker.auth,
                frame.get("login"),
                frame.get("passcode"),
                peer=self.peer,
                transport=self.transport,
                client=self.client_id,
                headers=self.headers,
            )
        except StompAuthError as exc:
            log.info("stomp connection from %s refused: %s", self.peer, exc)
            raise StompError("access refused", str(exc)) from None
        self.version = version
        self.parser.version = version
        self._connected.set()
        expires = self.identity.identity.expires
        if expires is not None:
            # STOMP has no way to renew a token: the connection ends when it expires.
            self._expiry = asyncio.get_running_loop().call_later(
                max(expires - time.time(), 0.0),
                self.fail,
                "token expired",
                "the connection token has expired: connect again with a new one",
            )
        server_beat = (
            round(self.settings.heartbeat_send * 1000),
            round(self.settings.heartbeat_receive * 1000),
        )
        headers: list[Header] = [
            ("version", version),
            ("server", f"orbiter/{__version__}"),
            ("session", self.client_id),
        ]
        if version != "1.0":
            self.send_interval, self.receive_interval = heart_beat_intervals(
                client_beat, server_beat
            )
            headers.append(("heart-beat", f"{server_beat[0]},{server_beat[1]}"))
        if self.user is not None:
            headers.append(("user-name", self.user))
        self._put(encode_frame("CONNECTED", headers, b"", version))

    # ----------------------------------------------------------------- send

    async def _send(self, frame: Frame) -> None:
        kind, target = self._destination(frame)
        identity = self.identity
        if identity is not None and not identity.trusted:
            self._take_publish()
        if kind == "topic":
            channel = self._channel(target)
            try:
                data = data_of(frame.get("content-type"), frame.body)
            except BodyError as exc:
                raise StompError("cannot publish this body", str(exc)) from None
            if identity is not None and not identity.trusted:
                try:
                    data = await self.broker.auth.permissions.check_publish(
                        identity.identity,
                        channel,
                        data,
                        client=self.client_id,
                        subscribed=channel in self._topics,
                        headers=self.headers,
                    )
                except AuthError as exc:
                    raise StompError(
                        "permission denied",
                        f"{exc.message} (app servers log in with the API key as passcode)",
                    ) from None
            await self.broker.pubsub.publish(channel, data, _tags(frame))
            return
        queues = self.broker.queues
        try:
            deadline = queues.deadline(frame.get("expires"), frame.get("expiration"))
        except ValueError as exc:
            raise StompError("bad expiry header", str(exc)) from None
        headers = tuple((k, v) for k, v in frame.first_headers() if k not in _NOT_FORWARDED)
        message = QueuedMessage(
            f"q{self.broker.next_id()}", headers, frame.body, deadline, sender=self._queue_sender
        )
        queue = self._queue(target)
        try:
            queue.put(message)
        except QueueFull as exc:
            self.broker.counters[exc.counter] += 1
            raise StompError("queue full", f"{exc}; the message was not accepted") from None
        finally:
            queues.tidy(queue)
        self.broker.queued()

    def _take_publish(self) -> None:
        """One ``limits.publish_rate`` token for a SEND, or the StompError refusing it."""
        if self._publishes.take(time.monotonic()):
            return
        self.broker.counters["limit_publish_rate"] += 1
        limits = self.broker.config.limits
        raise StompError(
            "publishing too fast",
            f"at most {limits.publish_rate:g} SENDs per second (bursts of "
            f"{limits.publish_burst}; limits.publish_rate, limits.publish_burst); "
            "the message was not published",
        )

    def _queue(self, name: str) -> MessageQueue:
        try:
            validate_channel(name)
        except ValueError as exc:
            raise StompError(
                "bad destination", str(exc).replace("'channel'", f"queue name {name[:64]!r}")
            ) from None
        queue = self.broker.queues.get(name)
        if queue is None:
            raise StompError(
                "too many queues",
                f"the broker holds {self.broker.queues.max_queues} queues (stomp.max_queues); "
                f"cannot open {name!r}",
            )
        return queue

    def _destination(self, frame: Frame) -> tuple[str, str]:
        name = frame.get("destination")
        if not name:
            raise StompError(
                "missing destination", f"a {frame.command} frame needs a destination header"
            )
        try:
            return self.broker.destination(name)
        except ValueError as exc:
            raise StompError("unknown destination", str(exc)) from None

    def _channel(self, channel: str) -> str:
        try:
            validate_channel(channel)
        except ValueError as exc:
            raise StompError(
                "bad destination", str(exc).replace("'channel'", "the channel")
            ) from None
        reserved = reserved_refusal(channel)
        if reserved is not None:
            raise StompError("permission denied", reserved)
        return channel

    # ------------------------------------------------------------ subscribe

    async def _subscribe(self, frame: Frame) -> list[Header]:
        kind, target = self._destination(frame)
        sub_id = frame.get("id")
        if sub_id is None:
            if self.version != "1.0":
                raise StompError("missing id", "a SUBSCRIBE frame needs an id header (STOMP 1.1+)")
            sub_id = frame.get("destination") or ""
        if sub_id in self.subscriptions:
            raise StompError("duplicate subscription", f"subscription id {sub_id!r} is in use")
        ack = frame.get("ack", "auto") or "auto"
        if ack not in ACK_MODES:
            raise StompError("bad ack mode", f"ack must be one of {', '.join(ACK_MODES)}")
        limit = self.broker.config.limits.max_subscriptions
        if len(self.subscriptions) >= limit:
            raise StompError(
                "too many subscriptions", f"a connection may hold at most {limit} subscriptions"
            )
        destination = frame.get("destination") or ""
        sub = Subscription(self, sub_id, destination, kind, target, ack)
        if kind == "topic":
            channel = self._channel(target)
            identity = self.identity
            if identity is not None and not identity.trusted:
                try:
                    await self.broker.auth.permissions.check_subscribe(
                        identity.identity,
                        channel,
                        client=self.client_id,
                        token=frame.get("token"),
                        headers=self.headers,
                    )
                except AuthError as exc:
                    raise StompError("permission denied", exc.message) from None
            since = _since(frame)
            if since is not None:
                sub.recovery = Recovery(self.broker.config.limits.outgoing_buffer)
            self.subscriptions[sub_id] = sub
            subs = self._topics.setdefault(channel, [])
            subs.append(sub)
            if len(subs) == 1:
                try:
                    await self.broker.pubsub.subscribe(self, channel)
                except BaseException:
                    self._drop_topic(sub)
                    raise
            if since is not None:
                return await self._recover(sub, channel, since)
            return []
        queue = self._queue(target)
        self.subscriptions[sub_id] = sub
        queue.add(sub)
        return []

    async def _recover(
        self, sub: Subscription, channel: str, since: StreamPosition
    ) -> list[Header]:
        """Send what ``channel`` published after ``since``, then the live publications.

        Publications that arrive while history is read wait in ``sub.recovery``;
        only those newer than the page's position are sent after it, so none is
        lost or sent twice. The SUBSCRIBE's RECEIPT says whether it could be done.
        """
        try:
            page = await self.broker.pubsub.history(channel, since)
        finally:
            recovery, sub.recovery = sub.recovery, None
        if page.recoverable:
            for pub in page.publications:
                if pub.offset > since.offset:
                    self._deliver_publication(sub, pub)
        position = page.position
        if recovery is not None:
            for pub, tail in recovery.newer_than(position):
                self._deliver_publication(sub, pub, tail)
        return [
            ("orbiter-recovered", "true" if page.recoverable else "false"),
            ("orbiter-offset", str(position.offset)),
            ("orbiter-epoch", position.epoch),
        ]

    async def _unsubscribe(self, frame: Frame) -> None:
        sub_id = frame.get("id")
        if sub_id is None and self.version == "1.0":
            sub_id = frame.get("destination")
        if sub_id is None:
            raise StompError("missing id", "an UNSUBSCRIBE frame needs an id header")
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise StompError("unknown subscription", f"no subscription with id {sub_id!r}")
        await self._remove(sub)

    async def _remove(self, sub: Subscription) -> None:
        self.subscriptions.pop(sub.id, None)
        held = [m for m in sub.unacked.values() if m is not None]
        for message_id in sub.unacked:
            self._unacked.pop(message_id, None)
        sub.unacked.clear()
        if sub.kind == "topic":
            if self._drop_topic(sub):
                await self.broker.pubsub.unsubscribe(self, sub.target)
            return
        queue = self.broker.queues.find(sub.target)
        if queue is not None:
            queue.remove(sub)
            queue.put_back(held)
            self.broker.queues.tidy(queue)

    def _drop_topic(self, sub: Subscription) -> bool:
        """Forget a topic subscription; True if it was the session's last on its channel."""
        self.subscriptions.pop(sub.id, None)
        subs = self._topics.get(sub.target, [])
        if sub in subs:
            subs.remove(sub)
        if not subs:
            self._topics.pop(sub.target, None)
            return True
        return False

    # ------------------------------------------------------------------ ack

    def _ack(self, frame: Frame, *, nack: bool) -> None:
        header = "id" if self.version == "1.2" else "message-id"
        message_id = frame.get(header)
        if not message_id:
            raise StompError(
                "missing header",
                f"an {frame.command} frame needs a {header} header (STOMP {self.version})",
            )
        sub = self._unacked.get(message_id)
        if sub is None:
            if self._was_sent(message_id):
                # Sent here, no longer held: a topic's past stomp.max_unacked (only the
                # newest are kept, never redelivered) or one already acknowledged.
                return
            raise StompError(
                "unknown message",
                f"{frame.command} of {message_id!r}: no message with that id awaits "
                "acknowledgement on this connection",
            )
        if self.version == "1.1" and frame.get("subscription") not in (None, sub.id):
            raise StompError(
                "unknown message", f"message {message_id!r} is not from that subscription"
            )
        done: list[QueuedMessage | None] = []
        if sub.ack == "client":
            while sub.unacked:
                key, message = sub.unacked.popitem(last=False)
                self._unacked.pop(key, None)
                done.append(message)
                if key == message_id:
                    break
        else:
            done.append(sub.unacked.pop(message_id))
            self._unacked.pop(message_id, None)
        if sub.kind != "queue":
            return
        queue = self.broker.queues.find(sub.target)
        if queue is None:
            return
        held = [m for m in done if m is not None]
        if nack:
            queue.put_back(held)
        else:
            queue.settle(held)

    def _hold(self, sub: Subscription, message_id: str, message: QueuedMessage | None) -> None:
        sub.unacked[message_id] = message
        self._unacked[message_id] = sub
        if message is None and len(sub.unacked) > self.settings.max_unacked:
            # A topic's unacknowledged messages are not redelivered; only the newest are kept.
            old, _ = sub.unacked.popitem(last=False)
            self._unacked.pop(old, None)

    # --------------------------------------------------------------- output

    def deliver_queued(self, sub: Subscription, message: QueuedMessage) -> bool:
        """Queue one queue message for the client (a :class:`Consumer`'s ``offer``); False if
        the outgoing buffer has no room for it (it then stays in the queue)."""
        if self.closed:
            return False
        message_id = self._next_message_id()
        version = self.version or "1.0"
        headers = [f"destination:{escape(sub.destination, version)}"]
        if message.redelivered:
            headers.append("redelivered:true")
        for name, value in message.headers:
            headers.append(f"{escape(name, version)}:{escape(value, version)}")
        headers.append(f"content-length:{len(message.body)}")
        data = (
            self._message_head(sub, message_id)
            + "\n".join(headers).encode()
            + b"\n\n"
            + message.body
            + b"\x00"
        )
        if not self.outbox.put(data):
            return False  # stays in the queue, for this consumer once it reads, or another
        self.last_sent = time.monotonic()
        if sub.ack != "auto":
            self._hold(sub, message_id, message)
        return True

    def can_take_queued(self) -> bool:
        """Room for queue messages: at most half the outgoing buffer is theirs.

        Queues wait for a consumer that reads (flow control) instead of cutting
        it as a slow consumer; the rest of the buffer is for topics and receipts.
        """
        return self.outbox.queued_bytes <= self.broker.config.limits.outgoing_buffer // 2

    def drained(self) -> None:
        """The transport took what was queued: hand this consumer more queue messages."""
        if self.closed:
            return
        for sub in list(self.subscriptions.values()):
            if sub.kind == "queue":
                queue = self.broker.queues.find(sub.target)
                if queue is not None:
                    queue.dispatch()

    def _message_head(self, sub: Subscription, message_id: str) -> bytes:
        mid = message_id.encode()
        if sub.ack_header:
            return sub.head + mid + b"\nack:" + mid + b"\n"
        return sub.head + mid + b"\n"

    def _was_sent(self, message_id: str) -> bool:
        """``message_id`` is one this connection delivered (see :meth:`_next_message_id`)."""
        prefix, _, number = message_id.rpartition("-")
        return (
            prefix == self._id
            and number.isascii()
            and number.isdigit()
            and len(number) <= 18
            and 0 < int(number) <= self._deliveries
        )

    def _next_message_id(self) -> str:
        self._deliveries += 1
        return f"{self._id}-{self._deliveries}"

    def _receipt(self, frame: Frame, extra: list[Header] | None = None) -> None:
        receipt = frame.get("receipt")
        if receipt is not None:
            headers = [("receipt-id", receipt), *(extra or [])]
            self._put(encode_frame("RECEIPT", headers, b"", self.version or "1.0"))

    def _put(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.outbox.put(data):
            self.fail("slow consumer", "outgoing buffer full")
            return
        self.last_sent = time.monotonic()

    def fail(self, message: str, detail: str = "", receipt: str | None = None) -> None:
        """Send an ERROR frame saying what was wrong, then end the connection."""
        if self.closed:
            return
        log.info("stomp connection from %s: %s: %s", self.peer, message, detail or message)
        headers: list[Header] = [("message", message), ("content-type", "text/plain")]
        if receipt is not None:
            headers.append(("receipt-id", receipt))
        frame = encode_frame("ERROR", headers, (detail or message).encode(), self.version or "1.0")
        if not self.outbox.put(frame):
            self.outbox.close(discard=True)  # too slow to take even the ERROR: just close
        self.close(message)

    def close(self, reason: str) -> None:
        """No more frames either way; the transport writes what is queued, then closes."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.outbox.close()
        self._connected.set()
        self._closed.set()
        if self._expiry is not None:
            self._expiry.cancel()

    async def wait_closed(self) -> None:
        """Return once the session is closed (by either side)."""
        await self._closed.wait()

    # -------------------------------------------------------------- upkeep

    async def keepalive(self) -> None:
        """Send heart-beats, and drop a client that stopped sending them (or never connected)."""
        while not self.closed:
            now = time.monotonic()
            if self.version is None:
                timeout = self.settings.connect_timeout
                if not timeout:
                    await self._connected.wait()
                    continue
                left = timeout - (now - self.started)
                if left <= 0:
                    self.fail("connect timeout", f"no CONNECT frame within {timeout:g} s")
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._connected.wait(), left)
                continue
            send, receive = self.send_interval / 1000, self.receive_interval / 1000
            if not send and not receive:
                return
            if receive and now - self.last_received > 2 * receive:
                self.fail(
                    "heart-beat timeout",
                    f"nothing received for {now - self.last_received:.1f} s "
                    f"(heart-beat every {receive:g} s was negotiated)",
                )
                return
            if send and now - self.last_sent >= send and self.outbox.put(b"\n"):
                self.last_sent = now
            await asyncio.sleep(min(x for x in (send, receive) if x) / 2)

    async def finish(self) -> None:
        """The connection is gone: leave channels, give held queue messages back."""
        self.close("connection closed")
        self._transactions.clear()
        for sub in list(self.subscriptions.values()):
            await self._remove(sub)


def _since(frame: Frame) -> StreamPosition | None:
    """The ``orbiter-since``/``orbiter-epoch`` of a SUBSCRIBE that recovers from history."""
    offset, epoch = frame.get("orbiter-since"), frame.get("orbiter-epoch")
    if offset is None and epoch is None:
        return None
    if (
        offset is None
        or epoch is None
        or not (offset.isascii() and offset.isdigit())
        or len(offset) > 18
    ):
        raise StompError(
            "bad recovery headers",
            "orbiter-since (an offset) and orbiter-epoch must be given together",
        )
    return StreamPosition(int(offset), epoch)


__all__ = ["MessageQueue", "StompError", "StompSession", "Subscription"]
