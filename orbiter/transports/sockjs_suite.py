"""Which paths are the SockJS protocol suite's test services (``sockjs.test_services``).

Kept beside :mod:`orbiter.transports.sockjs`, not in it, so that the origin
checks (:mod:`orbiter.transports.request_checks`), which every transport uses (SockJS
too), can ask without importing into the SockJS package.
"""

from __future__ import annotations

from orbiter.config.settings import Config

#: The services ``sockjs.test_services`` mounts under the prefix.
TEST_SERVICES = ("echo", "close", "disabled_websocket_echo", "cookie_needed_echo")


def is_test_service_path(config: Config, path: str) -> bool:
    """Is ``path`` under one of the protocol suite's test services, and are they mounted?

    The suite sends made-up origins (``Origin: test``, ``Origin: null``) and
    expects them answered with CORS, as sockjs-node's test server does. These
    services only echo and hold no data, so origin checks may leave them out.
    """
    settings = config.sockjs
    if not settings.test_services:
        return False
    for name in TEST_SERVICES:
        base = f"{settings.prefix}/{name}"
        if path == base or path.startswith(base + "/"):
            return True
    return False
