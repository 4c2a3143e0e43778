"""A channel's batch as native-protocol pushes: the native framing of a :class:`SharedBatch`.

PubSub hands subscribers publications, not bytes. The native session and
every transport that carries the native protocol (WebSocket, SockJS, SSE,
the Orbited streams) need each publication as its JSON ``pub`` push;
:func:`pushes` encodes a batch's once, on first use, for all of them, and
their own framings (a WebSocket text frame, a SockJS array) are built from
it. A batch no native subscriber takes is never JSON-encoded.
"""

from __future__ import annotations

from orbiter.protocol.native import encode_publication
from orbiter.services.shared_batch import SharedBatch


def pushes(batch: SharedBatch) -> list[bytes]:
    """``batch``'s native pushes, encoded once for every subscriber (and their total
    size set in ``batch.native_size``).

    A hot caller may read ``batch.native`` first and call this only when it is None.
    """
    found = batch.native
    if found is None:
        found = batch.native = list(map(encode_publication, batch.pubs))
        batch.native_size = len(found[0]) if len(found) == 1 else sum(map(len, found))
    return found
