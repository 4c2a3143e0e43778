"""Each message of the Redis engine's pub/sub connections, handled: the per-message path.

:class:`Delivery` holds what a node knows of its subscriptions (the channels and their
pub/sub names, the last position delivered on each, the subscriptions not confirmed
yet) and handles one message at a time (:meth:`Delivery.take`): a publication is
parsed and handed to the node, unless it does not follow the last one delivered on its
channel (then the broker's catch-up from history is returned, to be awaited); a presence
event goes to the node; a confirmed subscription wakes its subscribers (and catches up
after a reconnect). One module with one job, compiled with mypyc (``COMPILED_MODULES``)
as the publish path is: the rest of ``engine/redis.py`` (connections, history reads,
presence) is not per message. The framing of a publication on pub/sub is the publish
script's (``engine/redis_publishing.py``): ``offset:epoch:time:len(tags):tags data``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from orbiter.model import ClientInfo, PresenceEvent, Publication, StreamPosition

log = logging.getLogger("orbiter.engine.redis")

#: What catches a channel up from history, up to a publication that did not follow.
CatchUp = Callable[[str, Publication | None], Coroutine[Any, Any, None]]


class Delivery:
    """A node's subscriptions on Redis pub/sub and the handling of each message; the
    broker (``engine/redis.py``) shares these collections (the same objects)."""

    def __init__(
        self,
        catch_up: CatchUp,
        cluster_names: frozenset[bytes],
        cluster_received: Callable[[bytes, bytes], None],
    ) -> None:
        """``catch_up``: the broker's catch-up from history; ``cluster_names``: the pub/sub
        names of the node list's channels, whose messages go to ``cluster_received``."""
        self._catch_up = catch_up
        self._cluster_names = cluster_names
        self._cluster_received = cluster_received
        #: Channels this node is subscribed to, by their pub/sub name, and back.
        self.subscribed: dict[str, bytes] = {}
        self.channel_of: dict[bytes, str] = {}
        #: The last publication delivered on each subscribed channel (or where it stood).
        self.last: dict[str, Publication | StreamPosition] = {}
        #: Subscriptions sent and not yet confirmed by Redis.
        self.confirming: dict[bytes, list[asyncio.Future[None]]] = {}
        #: Channels subscribed again after a reconnect, to catch up once Redis confirmed it.
        self.resubscribed: set[bytes] = set()
        #: The node's handlers (the broker's ``set_handlers``).
        self.on_publication: Callable[[Publication], None] | None = None
        self.on_presence: Callable[[PresenceEvent], None] | None = None
        #: The last publication's time and epoch as framed, and parsed.
        self._stamp_bytes = b""
        self._stamp = 0.0
        self._epoch_bytes = b""
        self._epoch = ""

    def take(self, message: Any) -> Coroutine[Any, Any, None] | None:
        """Handle one message of a pub/sub connection now, or return what must be awaited
        before the next one is handled (a catch-up from history)."""
        parts: list[Any] = message  # (a RESP array: hiredis's list)
        kind: bytes = parts[0]
        if kind == b"message" or kind == b"smessage":
            name: bytes = parts[1]
            channel = self.channel_of.get(name)
            if channel is None:
                if name in self._cluster_names:
                    self._cluster_received(name, parts[2])
                return None  # else unsubscribed meanwhile
            payload: bytes = parts[2]
            head = payload[:1]
            if head == b"j" or head == b"l":
                on_presence = self.on_presence
                if on_presence is not None:
                    client, user, info = orjson.loads(payload[1:])
                    on_presence(
                        PresenceEvent(channel, head == b"j", ClientInfo(client, user, info))
                    )
                return None
            offset, epoch, stamp, tags_length, rest = payload.split(b":", 4)
            tags: dict[str, str] | None
            if tags_length == b"0":
                tags = None
                data = orjson.loads(rest)
            else:
                cut = int(tags_length)
                tags = orjson.loads(rest[:cut])
                data = orjson.loads(rest[cut:])
            # The publications of one script call share its time, and most channels an
            # epoch: each is parsed once for the messages in a row that carry it.
            if stamp != self._stamp_bytes:
                self._stamp = float(stamp)
                self._stamp_bytes = stamp
            if epoch != self._epoch_bytes:
                self._epoch = epoch.decode()
                self._epoch_bytes = epoch
            pub = Publication(channel, int(offset), self._epoch, data, self._stamp, tags)
            last = self.last.get(channel)
            if last is not None and not (pub.epoch == last.epoch and pub.offset == last.offset + 1):
                if pub.epoch == last.epoch and pub.offset <= last.offset:
                    return None  # delivered already, from history
                return self._catch_up(channel, pub)
            self.last[channel] = pub
            self._hand_over(pub)
        elif kind == b"subscribe" or kind == b"ssubscribe":
            confirmed: bytes = parts[1]
            for future in self.confirming.pop(confirmed, []):
                if not future.done():
                    future.set_result(None)
            if confirmed in self.resubscribed:
                self.resubscribed.discard(confirmed)
                subscribed = self.channel_of.get(confirmed)
                if subscribed is not None:
                    return self._catch_up(subscribed, None)
        return None

    def deliver(self, pub: Publication) -> None:
        """Hand ``pub`` (from history: a catch-up) to the node if its channel is still
        subscribed, as the last delivered on it."""
        if pub.channel not in self.subscribed:
            return
        self.last[pub.channel] = pub
        self._hand_over(pub)

    def _hand_over(self, pub: Publication) -> None:
        on_publication = self.on_publication
        if on_publication is not None:
            try:
                on_publication(pub)
            except Exception:
                log.exception("delivering a publication of %r failed", pub.channel)
