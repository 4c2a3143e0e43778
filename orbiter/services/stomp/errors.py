"""The error a STOMP frame is refused with: the ERROR frame's ``message`` and body."""

from __future__ import annotations


class StompError(Exception):
    """A frame the broker refuses: ``message`` is the ERROR's header, ``detail`` its body."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message
