"""One STOMP connection's subscriptions: SUBSCRIBE, UNSUBSCRIBE, recovery, what goes back.

A topic subscription, once the channel's ``subscribe`` rule allows it, makes
the connection a PubSub subscriber of its channel (once per channel, however
many subscriptions name it); with ``orbiter-since`` and ``orbiter-epoch`` it
first gets what the channel published since (:mod:`orbiter.services.recovery`).
A queue subscription is one of the queue's consumers. Unsubscribing, or the
end of the connection, gives what a queue subscription holds unacknowledged
back to its queue, first in line.
"""

from __future__ import annotations

from orbiter.auth import AuthError
from orbiter.model import StreamPosition
from orbiter.protocol.stomp import Frame, Header
from orbiter.services.recovery import Recovery
from orbiter.services.stomp.acks import Acks
from orbiter.services.stomp.delivery import Delivery
from orbiter.services.stomp.destinations import channel_of, destination_of, queue_of
from orbiter.services.stomp.errors import StompError
from orbiter.services.stomp.interfaces import Connection, SessionBroker
from orbiter.services.stomp.subscription import Subscription

ACK_MODES = ("auto", "client", "client-individual")


class Subscriptions:
    __slots__ = ("_acks", "_broker", "_connection", "_delivery", "_topics", "by_id")

    def __init__(
        self, connection: Connection, broker: SessionBroker, delivery: Delivery, acks: Acks
    ) -> None:
        self._connection = connection
        self._broker = broker
        self._delivery = delivery
        self._acks = acks
        self.by_id: dict[str, Subscription] = {}
        #: Channel -> the topic subscriptions to it.
        self._topics: dict[str, list[Subscription]] = {}

    def to_channel(self, channel: str) -> list[Subscription] | None:
        """The subscriptions to ``channel``, if any."""
        return self._topics.get(channel)

    def queue_subscriptions(self) -> list[Subscription]:
        return [sub for sub in self.by_id.values() if sub.kind == "queue"]

    async def subscribe(self, frame: Frame) -> list[Header]:
        """Carry out a SUBSCRIBE; the headers its RECEIPT gets (a recovery's outcome)."""
        connection, broker = self._connection, self._broker
        kind, target = destination_of(broker, frame)
        sub_id = frame.get("id")
        if sub_id is None:
            if connection.version != "1.0":
                raise StompError("missing id", "a SUBSCRIBE frame needs an id header (STOMP 1.1+)")
            sub_id = frame.get("destination") or ""
        if sub_id in self.by_id:
            raise StompError("duplicate subscription", f"subscription id {sub_id!r} is in use")
        ack = frame.get("ack", "auto") or "auto"
        if ack not in ACK_MODES:
            raise StompError("bad ack mode", f"ack must be one of {', '.join(ACK_MODES)}")
        limit = broker.config.limits.max_subscriptions
        if len(self.by_id) >= limit:
            raise StompError(
                "too many subscriptions", f"a connection may hold at most {limit} subscriptions"
            )
        destination = frame.get("destination") or ""
        sub = Subscription(
            self._delivery,
            sub_id,
            destination,
            kind,
            target,
            ack,
            version=connection.version or "1.0",
            max_unacked=broker.settings.max_unacked,
        )
        if kind == "topic":
            channel = channel_of(target)
            identity = connection.identity
            if identity is not None and not identity.trusted:
                try:
                    await broker.auth.permissions.check_subscribe(
                        identity.identity,
                        channel,
                        client=connection.client_id,
                        token=frame.get("token"),
                        headers=connection.headers,
                    )
                except AuthError as exc:
                    raise StompError("permission denied", exc.message) from None
            since = since_of(frame)
            if since is not None:
                sub.recovery = Recovery(broker.config.limits.outgoing_buffer)
            self.by_id[sub_id] = sub
            subs = self._topics.setdefault(channel, [])
            subs.append(sub)
            if len(subs) == 1:
                try:
                    await broker.pubsub.subscribe(connection, channel)
                except BaseException:
                    self._drop_topic(sub)
                    raise
            if since is not None:
                return await self._recover(sub, channel, since)
            return []
        queue = queue_of(broker, target)
        self.by_id[sub_id] = sub
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
            page = await self._broker.pubsub.history(channel, since)
        finally:
            recovery, sub.recovery = sub.recovery, None
        delivery = self._delivery
        if page.recoverable:
            for pub in page.publications:
                if pub.offset > since.offset:
                    delivery.publication(sub, pub)
        position = page.position
        if recovery is not None:
            for pub, tail in recovery.newer_than(position):
                delivery.publication(sub, pub, tail)
        return [
            ("orbiter-recovered", "true" if page.recoverable else "false"),
            ("orbiter-offset", str(position.offset)),
            ("orbiter-epoch", position.epoch),
        ]

    async def unsubscribe(self, frame: Frame) -> None:
        """Carry out an UNSUBSCRIBE."""
        sub_id = frame.get("id")
        if sub_id is None and self._connection.version == "1.0":
            sub_id = frame.get("destination")
        if sub_id is None:
            raise StompError("missing id", "an UNSUBSCRIBE frame needs an id header")
        sub = self.by_id.get(sub_id)
        if sub is None:
            raise StompError("unknown subscription", f"no subscription with id {sub_id!r}")
        await self.remove(sub)

    async def remove_all(self) -> None:
        """The connection is gone: leave every channel, give held queue messages back."""
        for sub in list(self.by_id.values()):
            await self.remove(sub)

    async def remove(self, sub: Subscription) -> None:
        self.by_id.pop(sub.id, None)
        held = self._acks.forget(sub)
        if sub.kind == "topic":
            if self._drop_topic(sub):
                await self._broker.pubsub.unsubscribe(self._connection, sub.target)
            return
        queues = self._broker.queues
        queue = queues.find(sub.target)
        if queue is not None:
            queue.remove(sub)
            queue.put_back(held)
            queues.tidy(queue)

    def _drop_topic(self, sub: Subscription) -> bool:
        """Forget a topic subscription; True if it was the connection's last on its channel."""
        self.by_id.pop(sub.id, None)
        subs = self._topics.get(sub.target, [])
        if sub in subs:
            subs.remove(sub)
        if not subs:
            self._topics.pop(sub.target, None)
            return True
        return False


def since_of(frame: Frame) -> StreamPosition | None:
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
