"""A stand-in for the sniffer's Takeover: what FastPublishProtocol asks of one."""

from __future__ import annotations


class StandInTakeover:
    peer = "127.0.0.1"

    def __init__(self, transport: object) -> None:
        self.transport = transport

    def release(self, protocol: object) -> None:
        pass
