"""One STOMP connection, whatever carries it: its frames in order, CONNECT, receipts, the end.

A transport feeds bytes to :meth:`StompSession.receive` and writes what
:attr:`StompSession.outbox` hands it; :meth:`StompSession.keepalive` runs
the negotiated heart-beats; the broker's ``end_session`` is called when
the connection is gone. Every protocol error is an ``ERROR`` frame (a
``message`` header, a body saying what was wrong, the ``receipt-id`` of
the frame that caused it) followed by the end of the connection; what the
connection held of a queue goes back to the queue, marked redelivered.

The session parses frames and hands each command to the part that carries
it out: :mod:`.sending` (SEND), :mod:`.subscriptions` (SUBSCRIBE,
UNSUBSCRIBE, recovery), :mod:`.acks` (ACK, NACK), :mod:`.transactions`
(BEGIN, COMMIT, ABORT); :mod:`.delivery` frames the MESSAGEs. It is the
PubSub :class:`~orbiter.services.pubsub.Subscriber` of the channels its topic
subscriptions name (once per channel, however many subscriptions), so
publications reach it on the one delivery path. It sees its broker as a
:class:`~.interfaces.SessionBroker`, so that the broker, which makes
sessions, is the only one importing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from orbiter.engine.base import PublishFailed, TooManyStreams
from orbiter.model import JSON, Publication
from orbiter.protocol.stomp import (
    VERSIONS,
    Frame,
    FrameError,
    FrameParser,
    Header,
    encode_frame,
    heart_beat_intervals,
    negotiate_version,
    parse_heart_beat,
)
from orbiter.services.outbox import Outbox
from orbiter.services.shared_batch import SharedBatch
from orbiter.services.stomp.acks import Acks
from orbiter.services.stomp.delivery import Delivery
from orbiter.services.stomp.errors import StompError
from orbiter.services.stomp.identity import StompAuthError, StompIdentity, authenticate
from orbiter.services.stomp.interfaces import SessionBroker
from orbiter.services.stomp.sending import Sending
from orbiter.services.stomp.subscriptions import Subscriptions
from orbiter.services.stomp.transactions import Transactions
from orbiter.version import __version__

log = logging.getLogger("orbiter.stomp")

CLIENT_COMMANDS = frozenset(
    {"SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN", "COMMIT", "ABORT", "DISCONNECT"}
)


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
        self._transactions = Transactions(
            self.settings.max_transactions, self.settings.max_transaction_frames
        )
        #: Counted in the node's connection limits (released when it ends).
        self.admitted = False
        self.closed = False
        self.close_reason = ""
        #: Negotiated heart-beats in ms: the broker sends every ..., the client must within ....
        self.send_interval = 0
        self.receive_interval = 0
        #: The broker's monotonic clock (heart-beats, the connect timeout).
        self._clock = broker.clock
        self.last_received = self.last_sent = self._clock()
        self.started = self.last_received
        self._connected = asyncio.Event()
        self._closed = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None
        #: Set by a transport that can cut its connection at once (used at shutdown).
        self.abort: Callable[[], None] | None = None
        # The parts that carry out commands (they keep this session, fully made, as theirs).
        self._acks = Acks(self._id, self.settings.max_unacked)
        self._delivery = Delivery(self, self.outbox, broker, self._acks)
        self.subscriptions = Subscriptions(self, broker, self._delivery, self._acks)
        self._sending = Sending(self, broker, self.subscriptions)

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
        if self.closed or self.subscriptions.to_channel(batch.channel) is None:
            return
        tails = self.broker.message_tails(batch, self.version != "1.0")
        for pub, tail in zip(batch.pubs, tails, strict=True):
            self._deliver_live(pub, tail)

    def _deliver_live(self, pub: Publication, tail: bytes) -> None:
        """One MESSAGE per subscription of this session to the channel."""
        subs = self.subscriptions.to_channel(pub.channel)
        if not subs or self.closed:
            return
        for sub in subs:
            if sub.recovery is None:
                self._delivery.publication(sub, pub, tail)
                continue
            if not sub.recovery.hold(pub, tail, len(tail)):
                self.fail(
                    "slow consumer",
                    "the publications held during a recovery passed limits.outgoing_buffer",
                )

    def deliver_presence(self, channel: str, message: bytes) -> None:
        """STOMP has no presence frames; join/leave are not sent."""

    # ---------------------------------------------------------------- input

    async def receive(self, data: bytes) -> None:
        """Bytes from the client: parse and handle every frame they complete, in order."""
        if self.closed:
            return
        self.last_received = self._clock()
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
            await self._sending.send(frame)
        elif command == "SUBSCRIBE":
            return await self.subscriptions.subscribe(frame)
        elif command == "UNSUBSCRIBE":
            await self.subscriptions.unsubscribe(frame)
        elif command in ("ACK", "NACK"):
            self._acks.acknowledge(
                frame, self.version or "1.0", self.broker.queues, nack=command == "NACK"
            )
            durable = self.broker.durable
            if durable is not None and "receipt" in frame:
                await durable.synced()  # the RECEIPT says: the consumed rows are gone
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
            self.put(
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
        self.put(encode_frame("CONNECTED", headers, b"", version))

    # --------------------------------------------------------------- output

    def drained(self) -> None:
        """The transport took what was queued: hand this consumer more queue messages."""
        if self.closed:
            return
        for sub in self.subscriptions.queue_subscriptions():
            queue = self.broker.queues.find(sub.target)
            if queue is not None:
                queue.dispatch()

    def _receipt(self, frame: Frame, extra: list[Header] | None = None) -> None:
        receipt = frame.get("receipt")
        if receipt is not None:
            headers = [("receipt-id", receipt), *(extra or [])]
            self.put(encode_frame("RECEIPT", headers, b"", self.version or "1.0"))

    def put(self, data: bytes) -> None:
        """Queue a frame for the client; past the outbox's limit, ERROR: a slow consumer."""
        if not self.closed and not self.offer(data):
            self.fail("slow consumer", "outgoing buffer full")

    def offer(self, data: bytes) -> bool:
        """Queue a frame if the outbox has room for it; False (nothing queued) if not."""
        if not self.outbox.put(data):
            return False
        self.last_sent = self._clock()
        return True

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
            now = self._clock()
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
        await self.subscriptions.remove_all()
