"""Turns a connection's credentials into an :class:`Identity`: the one place for it.

:meth:`Authenticator.authenticate_connection` is what every route calls when
a client connects: the native protocol's ``connect`` (WebSocket, SockJS),
plain SSE, long polls and the Orbited URLs, and the STOMP broker's CONNECT
(``passcode`` as the token) or the TCP proxy. It applies, in order:

1. auth off (no ``auth.secret`` / ``auth.public_key`` / ``hooks.connect_url``):
   an open identity; the route may take what the client claims (development);
2. tokens configured: a valid connection token is required (or, with
   ``auth.anonymous``, none at all: an anonymous identity); identity from its claims;
3. a connect hook configured: the app allows or denies, and may set the user,
   ``info``, ``channels`` and ``keys``.

:meth:`Authenticator.refresh` checks a new token for a live connection.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from orbiter.auth.hooks import AppHooks, HookDenied
from orbiter.auth.identity import OPEN, AuthError, Credentials, Failure, Identity
from orbiter.auth.permissions import Permissions
from orbiter.auth.tokens import (
    ConnectionClaims,
    InvalidToken,
    TokenVerifier,
    channels_claim,
    keys_claim,
)
from orbiter.config.settings import Config

log = logging.getLogger("orbiter.auth")

#: A connection without a token where ``auth.anonymous`` lets it in.
ANONYMOUS = Identity(user=None, method="anonymous")


class Authenticator:
    def __init__(self, config: Config) -> None:
        self.required = config.auth_required
        self.verifier = TokenVerifier(config.auth) if config.auth.enabled else None
        hooks = config.hooks
        any_hook = hooks.connect_url or hooks.subscribe_url or hooks.publish_url
        self.hooks = AppHooks(hooks) if any_hook else None
        self._connect_hook = bool(hooks.connect_url)
        self._anonymous = config.auth.anonymous
        self.permissions = Permissions(config, self.verifier, self.hooks)

    async def authenticate_connection(self, credentials: Credentials, client: str = "") -> Identity:
        """Who the connection presenting ``credentials`` is; else :class:`AuthError`."""
        if not self.required:
            return OPEN
        identity: Identity | None = None
        if self.verifier is not None:
            if credentials.token is not None:
                identity = _from_claims(self._verify(credentials.token))
            elif self._anonymous:
                identity = ANONYMOUS
            else:
                raise AuthError(
                    Failure.UNAUTHORIZED,
                    "this server needs a connection token (JWT): send it as 'token'",
                )
        if self._connect_hook and self.hooks is not None:
            identity = await self._ask_hook(credentials, client, identity)
        assert identity is not None
        return identity

    def refresh(self, identity: Identity, token: object) -> Identity:
        """The identity a live connection has after presenting a fresh ``token``."""
        if self.verifier is None:
            raise AuthError(Failure.FORBIDDEN, "this server does not use connection tokens")
        claims = self._verify(token)
        if claims.user != identity.user:
            raise AuthError(Failure.FORBIDDEN, "a refreshed token must be for the same user")
        return _from_claims(claims)

    def _verify(self, token: object) -> ConnectionClaims:
        assert self.verifier is not None
        try:
            return self.verifier.connection(token)
        except InvalidToken as exc:
            failure = Failure.EXPIRED if exc.expired else Failure.UNAUTHORIZED
            raise AuthError(failure, exc.message) from None

    async def _ask_hook(
        self, credentials: Credentials, client: str, identity: Identity | None
    ) -> Identity:
        assert self.hooks is not None
        payload: dict[str, Any] = {
            "client": client,
            "transport": credentials.transport,
            "peer": credentials.peer,
        }
        if identity is not None:
            payload["user"] = identity.user
        if credentials.login is not None:
            payload["login"] = credentials.login
        try:
            answer = await self.hooks.connect(payload, credentials.headers)
        except HookDenied as exc:
            raise AuthError(Failure.FORBIDDEN, exc.message) from None
        base = identity or Identity(user=None, method="hook")
        user = answer.get("user") if answer.has("user") else base.user
        if user is not None and (not isinstance(user, str) or not user):
            raise AuthError(Failure.FORBIDDEN, "the connect hook's 'user' is not a string")
        try:
            channels = channels_claim(answer.get("channels")) if answer.has("channels") else None
            keys = keys_claim(answer.get("keys")) if answer.has("keys") else None
        except InvalidToken as exc:
            log.warning("connect hook answer refused: %s", exc.message)
            raise AuthError(Failure.FORBIDDEN, "the connect hook's answer is malformed") from None
        return Identity(
            user=user,
            info=answer.get("info") if answer.has("info") else base.info,
            expires=base.expires,
            channels=channels if answer.has("channels") else base.channels,
            keys=keys if answer.has("keys") else base.keys,
            method="hook" if identity is None else identity.method,
        )

    async def close(self) -> None:
        if self.hooks is not None:
            await self.hooks.close()


def _from_claims(claims: ConnectionClaims) -> Identity:
    return Identity(
        user=claims.user,
        info=claims.info,
        expires=claims.expires,
        channels=claims.channels,
        keys=claims.keys,
        method="token",
    )


def seconds_left(identity: Identity) -> float | None:
    """Seconds until ``identity``'s token expires (None: it does not)."""
    return None if identity.expires is None else identity.expires - time.time()
