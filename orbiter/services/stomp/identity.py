"""Who a STOMP connection is: the one hook the CONNECT frame's login/passcode go through.

:func:`authenticate` decides, with the same rules as the HTTP API:

- ``passcode`` equal to ``server.api_key``: an app server (``trusted``: may
  publish to any channel, as ``POST /api/publish`` may);
- no ``api_key`` configured (the open embedded default, where the HTTP API
  is open too): every connection is trusted, its user is ``login``;
- otherwise, no passcode: anonymous (``user`` None), allowed only if
  ``stomp.anonymous``; it publishes only where a ``[[channel]]`` rule has
  ``client_publish``; any other passcode is refused.

When connection tokens (``orbiter/auth``) are configured, a passcode that is
not the API key is to be verified as a token here, and the token's user and
channel claims become the identity.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from orbiter.config import Config


@dataclass(frozen=True, slots=True)
class StompIdentity:
    user: str | None
    #: May publish to every channel that is not the server's own (``$...``).
    trusted: bool


class StompAuthError(Exception):
    """CONNECT refused; the message says why."""


async def authenticate(
    config: Config, login: str | None, passcode: str | None, *, peer: str, transport: str
) -> StompIdentity:
    """The identity of a connection that sent ``login``/``passcode``, or StompAuthError."""
    api_key = config.api_key
    if api_key is None:
        return StompIdentity(user=login or None, trusted=True)
    if passcode:
        if hmac.compare_digest(passcode.encode(), api_key.encode()):
            return StompIdentity(user=login or None, trusted=True)
        raise StompAuthError("login refused: the passcode is not valid")
    if not config.stomp.anonymous:
        raise StompAuthError("login refused: credentials are required (stomp.anonymous = false)")
    return StompIdentity(user=None, trusted=False)
