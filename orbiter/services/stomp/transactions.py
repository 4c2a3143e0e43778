"""STOMP transactions of one connection, without I/O: BEGIN, the frames held, COMMIT/ABORT.

SEND, ACK and NACK frames with a ``transaction`` header are held until the
transaction is committed (the session then carries them out, in order) or
aborted (dropped). Both the number of open transactions and the frames one
holds are bounded.
"""

from __future__ import annotations

from orbiter.protocol.stomp import Frame
from orbiter.services.stomp.errors import StompError


class Transactions:
    __slots__ = ("_open", "max_frames", "max_open")

    def __init__(self, max_open: int, max_frames: int) -> None:
        self.max_open = max_open
        self.max_frames = max_frames
        self._open: dict[str, list[Frame]] = {}

    def begin(self, frame: Frame) -> None:
        tx = _transaction_id(frame)
        if tx in self._open:
            raise StompError("transaction exists", f"transaction {tx!r} is already open")
        if len(self._open) >= self.max_open:
            raise StompError(
                "too many transactions",
                f"at most {self.max_open} transactions may be open at once",
            )
        self._open[tx] = []

    def hold(self, frame: Frame) -> None:
        """Keep ``frame`` (it has a ``transaction`` header) until its transaction ends."""
        tx = _transaction_id(frame)
        frames = self._open.get(tx)
        if frames is None:
            raise StompError("unknown transaction", f"transaction {tx!r} was not begun")
        if len(frames) >= self.max_frames:
            raise StompError(
                "transaction too large",
                f"a transaction may hold at most {self.max_frames} frames",
            )
        frames.append(frame)

    def end(self, frame: Frame) -> list[Frame]:
        """End the COMMIT's or ABORT's transaction; the frames it held, in order."""
        tx = _transaction_id(frame)
        frames = self._open.pop(tx, None)
        if frames is None:
            raise StompError("unknown transaction", f"transaction {tx!r} was not begun")
        return frames

    def clear(self) -> None:
        """Abort every open transaction (DISCONNECT, or the connection is gone)."""
        self._open.clear()


def _transaction_id(frame: Frame) -> str:
    tx = frame.get("transaction")
    if not tx:
        raise StompError(
            "missing transaction", f"a {frame.command} frame needs a transaction header"
        )
    return tx
