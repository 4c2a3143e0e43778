"""The embedded STOMP broker (MorbidQ's role): topics that are orbiter channels, queues.

- :mod:`.broker`: :class:`StompBroker`, the node's broker: sessions, queues,
  destination mapping, the MESSAGE encoding shared by a publication's subscribers.
- :mod:`.session`: :class:`StompSession`, one connection: frames in order, CONNECT,
  receipts, ERROR and the end, heart-beats; it hands each command to its part:
- :mod:`.sending`: SEND, to a topic's channel or a queue;
- :mod:`.subscriptions`: SUBSCRIBE/UNSUBSCRIBE, recovery, what goes back to queues;
  :mod:`.subscription`: one subscription (a queue's consumer);
- :mod:`.acks`: message ids and ACK/NACK;
- :mod:`.transactions`: BEGIN/COMMIT/ABORT and the frames a transaction holds;
- :mod:`.delivery`: the MESSAGE frames of publications and queue messages;
- :mod:`.destinations`: destination headers checked (channels, queues);
- :mod:`.interfaces`: what a session's parts see of the broker and of their connection.
- :mod:`.queues`: queues without I/O (round-robin, bounded, redelivery).
- :mod:`.errors`: :class:`StompError`, what an ERROR frame says.
- :mod:`.bodies`: how channel data (JSON) maps to STOMP bodies and back.
- :mod:`.identity`: the one hook that turns CONNECT's login/passcode into an identity.

Transports (``orbiter/transports/stomp_*.py``) only move bytes.
"""
