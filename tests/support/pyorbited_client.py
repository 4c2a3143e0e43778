"""pyorbited.simple.Client's wire behaviour, line for line, for tests of the orbit:// listener."""

from __future__ import annotations

import json
import socket


class SimpleClient:
    """pyorbited.simple.Client's wire behaviour, line for line, in Python 3.

    The original (Python 2) sends each line with its own ``socket.send``,
    JSON-encodes the body (simplejson's default separators, as ``json.dumps``),
    and reads one ``recv`` as the answer.
    """

    version = "Orbit 1.0"

    def __init__(self, addr: str, port: int) -> None:
        self.socket = socket.create_connection((addr, port), timeout=10)
        self.id = 0

    def sendline(self, line: str = "") -> None:
        self.socket.send(f"{line}\r\n".encode())

    def event(self, recipients: list[str], body: object, json_body: bool = True) -> bytes:
        text = json.dumps(body) if json_body else str(body)
        self.id += 1
        self.sendline(self.version)
        self.sendline("Event")
        self.sendline(f"id: {self.id}")
        for recipient in recipients:
            self.sendline(f"recipient: {recipient}")
        self.sendline(f"length: {len(text)}")  # Python 2 str: bytes (ASCII here)
        self.sendline()
        self.socket.send(text.encode())
        return self.socket.recv(4096)

    def close(self) -> None:
        self.socket.close()
