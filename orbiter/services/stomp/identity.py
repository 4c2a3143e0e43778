"""Who a STOMP connection is: the one hook the CONNECT frame's login/passcode go through.

:func:`authenticate` decides, with the rules of every other route:

- ``passcode`` equal to ``server.api_key``: an app server (``trusted``: it
  may publish to and subscribe to any channel, as the HTTP API may);
- auth configured (``[auth]`` tokens or a connect hook): the ``passcode`` is
  the connection token (``login`` goes to the hook), checked by
  :meth:`orbiter.auth.Authenticator.authenticate_connection`; the identity
  is then held to the channel rules (``subscribe``, ``client_publish``, hooks)
  by :class:`orbiter.auth.permissions.Permissions`, as a browser's is;
- no auth and no ``api_key`` (the open embedded default, where the HTTP API
  is open too): every connection is trusted, its user is ``login``;
- ``api_key`` set but no auth: without a passcode the connection is
  anonymous (allowed while ``stomp.anonymous``) and held to the channel
  rules; any other passcode is refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from orbiter.auth import OPEN, Authenticator, AuthError, Credentials, Identity
from orbiter.config.settings import Config


@dataclass(frozen=True, slots=True)
class StompIdentity:
    user: str | None
    #: An app server (or the open default): channel rules do not bind it.
    trusted: bool
    #: What the permission checks see (for untrusted connections).
    identity: Identity = OPEN


class StompAuthError(Exception):
    """CONNECT refused; the message says why."""


async def authenticate(
    config: Config,
    auth: Authenticator,
    login: str | None,
    passcode: str | None,
    *,
    peer: str,
    transport: str,
    client: str,
    headers: Mapping[str, str] | None = None,
) -> StompIdentity:
    """The identity of a connection that sent ``login``/``passcode``, or StompAuthError."""
    api_key = config.api_key
    if (
        api_key is not None
        and passcode
        and hmac.compare_digest(passcode.encode(), api_key.encode())
    ):
        return StompIdentity(user=login or None, trusted=True)
    if auth.required:
        credentials = Credentials(
            peer=peer,
            token=passcode or None,
            login=login,
            headers=dict(headers or {}),
            transport=f"stomp-{transport}",
        )
        try:
            identity = await auth.authenticate_connection(credentials, client)
        except AuthError as exc:
            raise StompAuthError(
                f"login refused: {exc.message} (send the token as passcode)"
            ) from None
        return StompIdentity(user=identity.user, trusted=False, identity=identity)
    if api_key is None:
        return StompIdentity(user=login or None, trusted=True)
    if passcode:
        raise StompAuthError("login refused: the passcode is not valid")
    if not config.stomp.anonymous:
        raise StompAuthError("login refused: credentials are required (stomp.anonymous = false)")
    return StompIdentity(user=None, trusted=False)
