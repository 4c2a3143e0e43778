"""Who a connection is and what it may do: tokens, app-server hooks, permissions.

- :mod:`.identity`: :class:`Identity` (who a connection is, once authenticated)
  and :class:`Credentials` (what it presented).
- :mod:`.tokens`: verifies connection and subscription tokens (JWT, PyJWT).
- :mod:`.hooks`: the app server's HTTP callbacks for connect, subscribe, publish.
- :mod:`.permissions`: the per-channel decision (subscribe, publish, presence).
- :mod:`.authenticator`: :meth:`Authenticator.authenticate_connection`, the one
  place every route (native protocol, SSE, polls, STOMP, TCP proxy) turns
  credentials into an identity.
"""

from orbiter.auth.authenticator import Authenticator
from orbiter.auth.identity import OPEN, AuthError, Credentials, Failure, Identity

__all__ = ["OPEN", "AuthError", "Authenticator", "Credentials", "Failure", "Identity"]
