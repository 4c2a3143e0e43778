"""Verifies connection tokens and subscription tokens (JWT); PyJWT does the crypto.

A **connection token** is a JWT signed by the app server with ``auth.secret``
(HS256) or the private half of ``auth.public_key`` (RS256 or ES256). Claims:

- ``sub`` (required, a string): the user id;
- ``exp`` (optional): Unix time after which the token is no longer accepted;
  a connection must ``refresh`` before it or is closed;
- ``info`` (optional, any JSON): shown to others in presence;
- ``channels`` (optional, list of channel names or glob patterns): what the
  connection may subscribe to on channels whose rule says ``subscribe = "token"``;
- ``keys`` (optional, list of Orbited keys ``"user, session, /location"``):
  the keys the connection may be; without it, any key of the user ``sub``;
- ``aud`` / ``iss`` when ``auth.audience`` / ``auth.issuer`` are set.

A **subscription token** grants one channel whose rule says ``subscribe =
"private"``: claims ``channel`` (required), ``sub`` (the connection's user;
empty or absent for an anonymous connection) and ``exp``. A token with a
``channel`` claim is never accepted as a connection token, and one without
it never as a subscription token.

Only the algorithms the configured key is for are accepted (never ``none``,
never HMAC with a public key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from orbiter.config.settings import AuthSettings
from orbiter.model import JSON
from orbiter.protocol.keys import ConnectionKey, InvalidKey

#: Longest token accepted, in characters.
MAX_TOKEN_LENGTH = 8192
#: Most entries in a ``channels`` or ``keys`` claim.
MAX_CLAIM_ITEMS = 1024


class InvalidToken(Exception):
    """A token was refused; ``expired`` says whether a fresh one would do."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expired = expired


@dataclass(frozen=True, slots=True)
class ConnectionClaims:
    user: str
    expires: float | None
    info: JSON
    channels: tuple[str, ...] | None
    keys: tuple[ConnectionKey, ...] | None


class TokenVerifier:
    """Checks tokens against the configured key."""

    def __init__(self, settings: AuthSettings) -> None:
        if settings.secret:
            self._key: Any = settings.secret
            self._algorithms = ["HS256"]
        else:
            key = load_pem_public_key(settings.public_key.encode())
            if isinstance(key, rsa.RSAPublicKey):
                self._algorithms = ["RS256"]
            elif isinstance(key, ec.EllipticCurvePublicKey):
                self._algorithms = ["ES256"]
            else:
                raise ValueError("auth.public_key must be an RSA or EC (P-256) public key")
            self._key = key
        self._audience = settings.audience or None
        self._issuer = settings.issuer or None
        self._leeway = settings.leeway

    def connection(self, token: object) -> ConnectionClaims:
        """The claims of a valid connection token, else :class:`InvalidToken`."""
        claims = self._decode(token, "connection token")
        if "channel" in claims:
            raise InvalidToken("this is a subscription token, not a connection token")
        user = claims.get("sub")
        if not isinstance(user, str) or not user:
            raise InvalidToken("the connection token's 'sub' (user id) must be a non-empty string")
        return ConnectionClaims(
            user=user,
            expires=_expiry(claims),
            info=claims.get("info"),
            channels=channels_claim(claims.get("channels")),
            keys=keys_claim(claims.get("keys")),
        )

    def subscription(self, token: object, *, channel: str, user: str | None) -> float | None:
        """Check a subscription token for ``channel`` and ``user``; its expiry."""
        claims = self._decode(token, "subscription token")
        if claims.get("channel") != channel:
            raise InvalidToken(f"the subscription token is not for channel {channel!r}")
        sub = claims.get("sub") or None
        if sub != user:
            raise InvalidToken("the subscription token is for another user")
        return _expiry(claims)

    def _decode(self, token: object, what: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise InvalidToken(f"the {what} must be a non-empty string")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(f"the {what} is longer than {MAX_TOKEN_LENGTH} characters")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["sub"] if what == "connection token" else []},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken(f"the {what} has expired", expired=True) from None
        except jwt.InvalidSignatureError:
            raise InvalidToken(f"the {what}'s signature is not valid") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken(
                f"the {what} is not signed with {' or '.join(self._algorithms)}"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the {what} is not valid: {exc}") from None
        except Exception as exc:  # PyJWT lets a few decoding errors through unwrapped
            raise InvalidToken(f"the {what} is not valid: {type(exc).__name__}") from None
        return claims


def _expiry(claims: dict[str, Any]) -> float | None:
    exp = claims.get("exp")
    return None if exp is None else float(exp)


def channels_claim(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_CLAIM_ITEMS
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise InvalidToken(
            f"the token's 'channels' claim must be a list of at most {MAX_CLAIM_ITEMS} "
            "non-empty strings"
        )
    return tuple(value)


def keys_claim(value: object) -> tuple[ConnectionKey, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_CLAIM_ITEMS:
        raise InvalidToken(
            f"the token's 'keys' claim must be a list of at most {MAX_CLAIM_ITEMS} Orbited keys"
        )
    try:
        return tuple(ConnectionKey.parse(k) for k in value)
    except (InvalidKey, TypeError, AttributeError) as exc:
        raise InvalidToken(f"the token's 'keys' claim holds a bad key: {exc}") from None
