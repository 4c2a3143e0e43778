"""SockJS: the native protocol (and, for the protocol suite, test services) for
browsers that cannot hold a WebSocket, over HTTP streaming and polling envelopes.

``frames``, ``envelopes``, ``session`` and ``urls`` are sans-I/O; ``endpoint``
runs sessions on the event loop; ``handlers`` and ``websocket``
are the aiohttp adapters; ``mount`` wires them into the application.
"""
