"""Each client address's share of the STOMP queues: the bytes its messages hold there.

A queue message counts in the share of the address that sent it
(``stomp.max_client_queue_bytes``) from its SEND until it leaves the
queues: consumed, acknowledged or expired. The address is the peer as the
node's connection limits (``limits.max_connections_per_ip``) see it: the
socket's peer for STOMP over TCP, and on ``/stomp`` and its SockJS mount
the request's, which behind one of ``server.trusted_proxies`` is the
forwarded client. So every connection from one address draws from one
share, and a share outlives the connections that filled it: a client that
reconnects after its refusal, or opens more connections, is refused at once
while its messages still wait.

An address has an entry only while its messages hold bytes: it is dropped
when the last leaves, so the table never holds more entries than the
queues hold messages, which their byte budgets bound.
"""

from __future__ import annotations


class ClientShares:
    """Bytes held in the queues, by the address of the client that sent them."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    def held(self, address: str) -> int:
        """The bytes the messages ``address`` sent hold in the queues now."""
        return self._held.get(address, 0)

    def take(self, address: str, size: int) -> None:
        """A message of ``size`` bytes from ``address`` went into a queue."""
        self._held[address] = self._held.get(address, 0) + size

    def release(self, address: str, size: int) -> None:
        """A message of ``size`` bytes from ``address`` left the queues; an address left
        holding nothing is forgotten."""
        left = self._held[address] - size
        if left > 0:
            self._held[address] = left
        else:
            del self._held[address]

    def __len__(self) -> int:
        """How many addresses hold bytes."""
        return len(self._held)

    def __contains__(self, address: object) -> bool:
        return address in self._held
