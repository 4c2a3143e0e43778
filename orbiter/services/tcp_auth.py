"""Who may open a TCP relay when the server requires auth: the connection token, checked once.

With ``config.auth_required`` (tokens or a connect hook), a relay opens only
for credentials that :meth:`orbiter.auth.Authenticator.authenticate_connection`
accepts, as a push connection's are; an anonymous identity (``auth.anonymous``,
meant for anyone-channels) does not open relays. The token is checked when
the relay opens: its expiry does not cut a relay that is already open.
Refusals are :class:`ProxyError` with ``UNAUTHORIZED`` (4401: missing, bad
or expired token) or ``DENIED`` (4403: a connect hook said no), counted as
``auth_<failure>`` like every other route's.
"""

from __future__ import annotations

import logging
from collections import Counter

from orbiter.auth import Authenticator, AuthError, Credentials, Failure, Identity
from orbiter.services.tcp_proxy import CloseCode, ProxyError

log = logging.getLogger("orbiter.tcp")


async def authorize_relay(
    auth: Authenticator, counters: Counter[str], credentials: Credentials
) -> Identity:
    """The identity that may open a relay with ``credentials``, or :class:`ProxyError`."""
    try:
        identity = await auth.authenticate_connection(credentials)
        if identity.method == "anonymous":
            raise AuthError(
                Failure.UNAUTHORIZED,
                "the TCP proxy needs a connection token (auth.anonymous does not open relays)",
            )
    except AuthError as exc:
        counters[f"auth_{exc.failure.value}"] += 1
        log.info("tcp proxy: %s refused: %s", credentials.peer, exc.message)
        code = CloseCode.DENIED if exc.failure is Failure.FORBIDDEN else CloseCode.UNAUTHORIZED
        raise ProxyError(code, exc.message) from None
    return identity
