"""What the engines that serve one process share: delivery to the channels subscribed here.

The memory and SQLite engines keep streams in this process, so a node's
subscriptions are a set of channels, and presence events go straight to the
node's handler for the channels in it.
"""

from __future__ import annotations

from orbiter.engine.base import Broker
from orbiter.model import PresenceEvent


class LocalBroker(Broker):
    """A :class:`Broker` whose node is the only one: subscribing is remembering the channel."""

    def __init__(self) -> None:
        #: The channels this node's subscribers are on.
        self._subscribed: set[str] = set()

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    async def subscribed(self, channels: list[str]) -> set[str]:
        return self._subscribed.intersection(channels)

    async def publish_presence(self, event: PresenceEvent) -> None:
        if self._on_presence is not None and event.channel in self._subscribed:
            self._on_presence(event)
