"""Elements whose connection ended, kept ``live.grace_period`` seconds for a reconnect.

A page that reconnects within the grace period attaches with the ``resume``
token its element was given and gets the same element back, its state
intact and no hook run; after the grace period the element's ``detached``
hook runs. A token is a 128-bit secret known only to the page, taken at most
once, and only by a connection of the same user. At most ``live.max_parked``
elements wait on a node; past it, and with a grace period of 0, an element
is detached at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from orbiter.services.live.elements import LiveElement
from orbiter.services.live.hooks import Hooks


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
        self._parked: dict[str, _Parked] = {}

    def __len__(self) -> int:
        return len(self._parked)

    def park(self, token: str, element: LiveElement, mount: str, user: str | None) -> bool:
        """Keep ``element`` for a reconnect; False (nothing kept) if it cannot be."""
        if self._grace <= 0 or len(self._parked) >= self._limit or token in self._parked:
            return False
        timer = asyncio.get_running_loop().call_later(self._grace, self._expire, token)
        self._parked[token] = _Parked(element, mount, user, timer)
        return True

    def take(self, token: str, mount: str, user: str | None) -> LiveElement | None:
        """The element parked under ``token`` at ``mount`` for ``user``, if any (unparked)."""
        parked = self._parked.get(token)
        if parked is None or parked.mount != mount or parked.user != user:
            return None
        del self._parked[token]
        parked.timer.cancel()
        return parked.element

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
