"""Stand-ins for what the fast protocols are given: the sniffer's Takeover and a transport."""

from __future__ import annotations


class StandInTakeover:
    peer = "127.0.0.1"

    def __init__(self, transport: object) -> None:
        self.transport = transport

    def release(self, protocol: object) -> None:
        pass


class StandInTransport:
    """What the protocols call on a transport: writes are kept in ``out``."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
