"""SockJS: the native protocol (and, for the protocol suite, test services) for
browsers that cannot hold a WebSocket, over HTTP streaming and polling envelopes.

The sans-I/O core (frames, envelopes, the session state machine, URLs) is
:mod:`orbiter.protocol.sockjs`; here ``endpoint`` runs sessions on the event
loop; ``handlers``, ``websocket`` and ``hixie76`` are the adapters; ``mount``
wires them into the application.
"""
