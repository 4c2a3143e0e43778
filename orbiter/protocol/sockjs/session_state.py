"""The SockJS session as a state machine, without I/O.

A session outlives the HTTP requests that carry it. One *receiver* (a
polling or streaming response, or a WebSocket) at a time is attached and
asks :meth:`SockJSSession.next_frame` what to write; a second receiver is
refused with ``c[2010,...]``. Time is passed in (``now``, in seconds), so
heartbeats and the disconnect delay are tested without a clock:

- ``CONNECTING`` until the first receiver is handed the ``o`` frame;
- ``OPEN``: messages queue (bounded in bytes) until a receiver takes them
  as one ``a[...]`` frame; an attached receiver that got nothing for
  ``heartbeat`` seconds gets ``h``;
- ``CLOSING`` once closed by the application or the server: what was
  queued before the close still goes out (to the next poll, when no
  receiver was attached), then every receiver gets the close frame, until
  the session has had no receiver for ``disconnect_delay`` seconds;
- ``CLOSED``: gone. An open session also ends this way when it has had no
  receiver for ``disconnect_delay`` seconds, or when its receiver broke off
  mid-request (``c[1002,...]``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from orbiter.protocol.native import DisconnectCode
from orbiter.protocol.sockjs.frames import (
    HEARTBEAT,
    INTERRUPTED,
    OPEN,
    Close,
    Encoded,
    Frame,
    Messages,
)

#: Why a session whose client does not read fast enough is closed.
SLOW_CONSUMER = Close(int(DisconnectCode.SLOW_CONSUMER), "outgoing buffer full")


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Attach(enum.Enum):
    """What a receiver that asks to attach should do."""

    #: It is the session's receiver: write what :meth:`SockJSSession.next_frame` gives.
    ATTACHED = "attached"
    #: Another receiver is attached: write ``c[2010,...]`` and end.
    BUSY = "busy"
    #: The session is closed: write :attr:`SockJSSession.close_frame` and end.
    CLOSED = "closed"


class SockJSSession:
    __slots__ = (
        "_attached",
        "_idle_since",
        "_last_frame",
        "_queue",
        "_queued_bytes",
        "close_frame",
        "disconnect_delay",
        "heartbeat",
        "max_queued_bytes",
        "on_ready",
        "state",
    )

    def __init__(
        self, *, heartbeat: float, disconnect_delay: float, max_queued_bytes: int, now: float
    ) -> None:
        self.heartbeat = heartbeat
        self.disconnect_delay = disconnect_delay
        self.max_queued_bytes = max_queued_bytes
        self.state = State.CONNECTING
        self.close_frame: Close | None = None
        #: Called (without arguments) when an attached receiver has something to
        #: write: messages were queued or the session was closed.
        self.on_ready: Callable[[], None] | None = None
        self._queue: list[str | Encoded] = []
        self._queued_bytes = 0
        self._attached = False
        self._last_frame = now
        self._idle_since = now

    # ------------------------------------------------------------ application side

    @property
    def is_open(self) -> bool:
        return self.state is State.CONNECTING or self.state is State.OPEN

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def send(self, message: str) -> bool:
        """Queue ``message``; False if that passed the limit and closed the session.

        Messages sent once the session is closing are dropped.
        """
        if not self.is_open:
            return True
        return self._append(message, len(message.encode()))

    def send_encoded(self, messages: Encoded) -> bool:
        """Queue already encoded ``messages`` (shared with other sessions), like :meth:`send`."""
        if not self.is_open:
            return True
        return self._append(messages, messages.size)

    def _append(self, part: str | Encoded, size: int) -> bool:
        size += self._queued_bytes
        if size > self.max_queued_bytes:
            self.close(SLOW_CONSUMER.code, SLOW_CONSUMER.reason, discard=True)
            return False
        self._queue.append(part)
        self._queued_bytes = size
        self._notify()
        return True

    def close(self, code: int, reason: str, *, discard: bool = False) -> bool:
        """Close with ``c[code, reason]``; True if this call closed it.

        Queued messages still go out before the close frame, unless ``discard``.
        """
        if not self.is_open:
            return False
        self.state = State.CLOSING
        self.close_frame = Close(code, reason)
        if discard:
            self._queue, self._queued_bytes = [], 0
        self._notify()
        return True

    # --------------------------------------------------------------- receiver side

    @property
    def attached(self) -> bool:
        return self._attached

    def attach(self, now: float) -> Attach:
        """A receiver asks to be the one that writes this session's frames."""
        if self._attached:
            return Attach.BUSY
        if not self.is_open and not (self.state is State.CLOSING and self._queue):
            # Each request for a closed session restarts the disconnect delay,
            # so a client that keeps asking keeps getting the close frame.
            self._idle_since = now
            return Attach.CLOSED
        self._attached = True
        self._last_frame = now
        return Attach.ATTACHED

    def next_frame(self, now: float) -> Frame | None:
        """The frame the attached receiver should write now, or None to wait."""
        frame: Frame | None = None
        if self.state is State.CONNECTING:
            self.state = State.OPEN
            frame = OPEN
        elif self._queue:
            frame = Messages(tuple(self._queue))
            self._queue, self._queued_bytes = [], 0
        elif self.close_frame is not None:
            frame = self.close_frame
        elif now >= self._last_frame + self.heartbeat:
            frame = HEARTBEAT
        if frame is not None:
            self._last_frame = now
        return frame

    def wake_at(self) -> float:
        """When the attached receiver is due a heartbeat if nothing comes before."""
        return self._last_frame + self.heartbeat

    def detach(self, now: float, *, interrupted: bool = False) -> None:
        """The receiver is done; ``interrupted`` if its connection broke.

        A session whose receiver broke off is over: what was in flight may be
        lost, so it ends (``c[1002,...]``) rather than carry on with a gap.
        """
        if not self._attached:
            return
        self._attached = False
        self._idle_since = now
        if interrupted:
            if self.is_open:
                self.close_frame = INTERRUPTED
            self._queue, self._queued_bytes = [], 0
            self.state = State.CLOSED

    # ---------------------------------------------------------------------- timing

    def expires_at(self) -> float | None:
        """When the session ends unless a receiver attaches first (None: it won't)."""
        if self._attached or self.state is State.CLOSED:
            return None
        return self._idle_since + self.disconnect_delay

    def expire(self, now: float) -> bool:
        """End the session if it has had no receiver for the disconnect delay."""
        deadline = self.expires_at()
        if deadline is None or now < deadline:
            return False
        self.state = State.CLOSED
        self._queue, self._queued_bytes = [], 0
        return True

    def end(self) -> None:
        """End the session now (its only connection, a WebSocket, is gone)."""
        self._attached = False
        self._queue, self._queued_bytes = [], 0
        self.state = State.CLOSED

    def _notify(self) -> None:
        if self._attached and self.on_ready is not None:
            self.on_ready()
