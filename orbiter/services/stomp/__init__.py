"""The embedded STOMP broker (MorbidQ's role): topics that are orbiter channels, queues.

- :mod:`.broker`: :class:`StompBroker`, the node's broker: sessions, queues,
  destination mapping, the MESSAGE encoding shared by a publication's subscribers.
- :mod:`.session`: :class:`StompSession`, one connection's frames and state.
- :mod:`.queues`: queues without I/O (round-robin, bounded, redelivery).
- :mod:`.transactions`: BEGIN/COMMIT/ABORT and the frames a transaction holds.
- :mod:`.errors`: :class:`StompError`, what an ERROR frame says.
- :mod:`.bodies`: how channel data (JSON) maps to STOMP bodies and back.
- :mod:`.identity`: the one hook that turns CONNECT's login/passcode into an identity.

Transports (``orbiter/transports/stomp_*.py``) only move bytes.
"""
