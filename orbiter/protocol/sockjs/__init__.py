"""SockJS's sans-I/O core: what a SockJS server writes and reads, without a socket.

``frames`` encodes the ``o``, ``h``, ``a[...]``, ``c[...]`` frames and decodes
client message arrays; ``envelopes`` wraps frames for each HTTP transport;
``session_state`` is the session as a state machine with time passed in;
``urls`` parses the URL scheme. The aiohttp adapters that run them are in
``orbiter/transports/sockjs/``.
"""
