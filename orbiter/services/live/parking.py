"""Each element's resume token: the connection holding the element, or the element parked.

Every attached element has a token, a 128-bit secret known only to its page.
While its connection is open the token is *held* by that connection; when
the connection ends the element is *parked* for ``live.grace_period``
seconds, its state intact, and then its ``detached`` hook runs.

A page that reconnects attaches with its token and gets the same element back
(no hook run): from the parking, or, when the server has not yet noticed that
the old connection ended (polling transports notice only after
``sockjs.disconnect_delay``), straight from that connection, which gives it up
(:meth:`Holder.surrender`). Either way a token is taken at most once, only at
its mount and only by a connection of the same user, never by the connection
that holds it; the element then gets a new token. At most ``live.max_parked``
elements wait on a node; past it, and with a grace period of 0, an element is
detached at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from orbiter.services.live.elements import LiveElement
from orbiter.services.live.hooks import Hooks


class Holder(Protocol):
    """A live connection holding elements (``connection.py``)."""

    def surrender(self, token: str) -> LiveElement | None:
        """Give up the element of ``token`` (no hook run); None if it holds none."""


@dataclass(slots=True)
class _Held:
    holder: Holder
    mount: str
    user: str | None


@dataclass(slots=True)
class _Parked:
    element: LiveElement
    mount: str
    user: str | None
    timer: asyncio.TimerHandle


class Parking:
    def __init__(self, grace: float, limit: int, hooks: Hooks) -> None:
        self._grace = grace
        self._limit = limit
        self._hooks = hooks
        self._held: dict[str, _Held] = {}
        self._parked: dict[str, _Parked] = {}

    def __len__(self) -> int:
        """How many elements are parked."""
        return len(self._parked)

    @property
    def held(self) -> int:
        """How many tokens open connections hold."""
        return len(self._held)

    def hold(self, token: str, holder: Holder, mount: str, user: str | None) -> None:
        """``holder`` has attached an element under ``token`` (a new one: never reused)."""
        self._held[token] = _Held(holder, mount, user)

    def park(self, token: str, element: LiveElement, mount: str, user: str | None) -> bool:
        """Its connection ended: keep ``element`` for a reconnect; False if it cannot be."""
        self._held.pop(token, None)
        if self._grace <= 0 or len(self._parked) >= self._limit or token in self._parked:
            return False
        timer = asyncio.get_running_loop().call_later(self._grace, self._expire, token)
        self._parked[token] = _Parked(element, mount, user, timer)
        return True

    def take(self, token: str, mount: str, user: str | None, taker: Holder) -> LiveElement | None:
        """The element of ``token`` at ``mount`` for ``user``, if any, given up by where it is.

        Parked: unparked. Held by another connection: that connection surrenders it.
        """
        parked = self._parked.get(token)
        if parked is not None:
            if parked.mount != mount or parked.user != user:
                return None
            del self._parked[token]
            parked.timer.cancel()
            return parked.element
        held = self._held.get(token)
        if held is None or held.mount != mount or held.user != user or held.holder is taker:
            return None
        del self._held[token]
        return held.holder.surrender(token)

    def _expire(self, token: str) -> None:
        parked = self._parked.pop(token, None)
        if parked is not None:
            self._hooks.run(parked.element, "detached")

    async def close(self) -> None:
        """The node is stopping: detach every parked element now."""
        for token in list(self._parked):
            self._parked[token].timer.cancel()
            self._expire(token)
        await self._hooks.wait()
