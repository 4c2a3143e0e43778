"""SEND of one STOMP connection: a publication on a topic's channel, or a queue message.

A topic SEND is published on the one delivery path after the channel's
``publish`` rule: a JSON or text body (:mod:`.bodies`), the SEND's own
headers as the publication's tags. A queue SEND is queued within the
queues' budgets, counted in the share of the connection's client address
(``stomp.max_client_queue_bytes``, :mod:`.shares`), which every connection
from that address draws from. SENDs of a connection held to the
channel rules (not an app server) spend ``limits.publish_rate`` tokens.
A queue SEND with ``persistent:true`` on a node with a queue file is stored
first (:mod:`.durable_queue`): it returns (and the RECEIPT goes) only once
its row is committed.
"""

from __future__ import annotations

from orbiter.auth import AuthError
from orbiter.protocol.native import is_reserved_tag, validate_tags
from orbiter.protocol.stomp import Frame
from orbiter.services.rate import TokenBucket
from orbiter.services.stomp.bodies import BodyError, data_of
from orbiter.services.stomp.destinations import channel_of, destination_of, queue_of
from orbiter.services.stomp.durable_queue import put_persistent
from orbiter.services.stomp.errors import StompError
from orbiter.services.stomp.interfaces import Connection, SessionBroker
from orbiter.services.stomp.queues import QueuedMessage, QueueFull
from orbiter.services.stomp.subscriptions import Subscriptions

#: SEND headers that are not passed on to a queue's consumer.
_NOT_FORWARDED = frozenset(
    {"destination", "receipt", "transaction", "content-length", "message-id", "subscription"}
)


class Sending:
    __slots__ = ("_broker", "_connection", "_publishes", "_subscriptions")

    def __init__(
        self, connection: Connection, broker: SessionBroker, subscriptions: Subscriptions
    ) -> None:
        self._connection = connection
        self._broker = broker
        self._subscriptions = subscriptions
        limits = broker.config.limits
        #: SENDs of a connection held to the channel rules (not an app server): publish_rate.
        self._publishes = TokenBucket(limits.publish_rate, limits.publish_burst, broker.clock())

    async def send(self, frame: Frame) -> None:
        """Carry out a SEND."""
        connection, broker = self._connection, self._broker
        kind, target = destination_of(broker, frame)
        identity = connection.identity
        if identity is not None and not identity.trusted:
            self._take_publish()
        if kind == "topic":
            channel = channel_of(target)
            try:
                data = data_of(frame.get("content-type"), frame.body)
            except BodyError as exc:
                raise StompError("cannot publish this body", str(exc)) from None
            if identity is not None and not identity.trusted:
                try:
                    data = await broker.auth.permissions.check_publish(
                        identity.identity,
                        channel,
                        data,
                        client=connection.client_id,
                        subscribed=self._subscriptions.to_channel(channel) is not None,
                        headers=connection.headers,
                    )
                except AuthError as exc:
                    raise StompError(
                        "permission denied",
                        f"{exc.message} (app servers log in with the API key as passcode)",
                    ) from None
            await broker.pubsub.publish(channel, data, _tags(frame))
            return
        queues = broker.queues
        try:
            deadline = queues.deadline(frame.get("expires"), frame.get("expiration"))
        except ValueError as exc:
            raise StompError("bad expiry header", str(exc)) from None
        headers = tuple((k, v) for k, v in frame.first_headers() if k not in _NOT_FORWARDED)
        message = QueuedMessage(
            f"q{broker.next_id()}", headers, frame.body, deadline, sender=connection.peer
        )
        queue = queue_of(broker, target)
        durable = broker.durable
        # persistent:true, the header of ActiveMQ and RabbitMQ: kept until consumed.
        persistent = frame.get("persistent")
        try:
            if persistent is not None and durable is not None and persistent.lower() == "true":
                await put_persistent(durable, queues, queue, message)
            else:
                queue.put(message)
        except QueueFull as exc:
            broker.counters[exc.counter] += 1
            raise StompError("queue full", f"{exc}; the message was not accepted") from None
        finally:
            queues.tidy(queue)
        broker.queued()

    def _take_publish(self) -> None:
        """One ``limits.publish_rate`` token for a SEND, or the StompError refusing it."""
        if self._publishes.take(self._broker.clock()):
            return
        self._broker.counters["limit_publish_rate"] += 1
        limits = self._broker.config.limits
        raise StompError(
            "publishing too fast",
            f"at most {limits.publish_rate:g} SENDs per second (bursts of "
            f"{limits.publish_burst}; limits.publish_rate, limits.publish_burst); "
            "the message was not published",
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
