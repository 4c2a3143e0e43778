"""A raw HTTP/1.x client over asyncio streams, for checks aiohttp's client hides:
exact chunk boundaries, HTTP/1.0, requests left hanging or cut off."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TIMEOUT = 5.0


@dataclass
class Head:
    status: int
    version: str
    headers: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader = reader
        self.writer = writer
        self.host = host

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, parts.netloc)

    async def send_request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        version: str = "1.1",
    ) -> None:
        lines = [f"{method} {path} HTTP/{version}", f"Host: {self.host}"]
        all_headers = dict(headers or {})
        if body is not None or method == "POST":
            all_headers.setdefault("Content-Length", str(len(body or b"")))
        lines += [f"{k}: {v}" for k, v in all_headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        await self.writer.drain()

    async def read_head(self) -> Head:
        async with asyncio.timeout(TIMEOUT):
            status_line = (await self.reader.readline()).decode("latin-1")
            version, status, _ = status_line.split(" ", 2)
            head = Head(int(status), version.removeprefix("HTTP/"))
            while (line := (await self.reader.readline()).decode("latin-1")) not in ("\r\n", ""):
                name, _, value = line.partition(":")
                head.headers[name.strip().lower()] = value.strip()
        return head

    async def request(self, method: str, path: str, **kwargs: object) -> Head:
        await self.send_request(method, path, **kwargs)  # type: ignore[arg-type]
        return await self.read_head()

    async def read_chunk(self, timeout: float = TIMEOUT) -> bytes:
        """One HTTP/1.1 chunk's data (b"" for the last chunk)."""
        async with asyncio.timeout(timeout):
            size = int((await self.reader.readline()).strip(), 16)
            data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def read_exactly(self, n: int) -> bytes:
        async with asyncio.timeout(TIMEOUT):
            return await self.reader.readexactly(n)

    async def read_body(self, head: Head) -> bytes:
        if head.get("transfer-encoding") == "chunked":
            body = b""
            while chunk := await self.read_chunk():
                body += chunk
            return body
        return await self.read_exactly(int(head.get("content-length") or 0))

    async def closed_by_server(self, timeout: float = 2.0) -> bool:
        async with asyncio.timeout(timeout):
            return await self.reader.read(1) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def fetch(
    url: str,
    method: str = "GET",
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[Head, bytes]:
    """One request on its own connection: the head and the whole body."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = await RawConnection.open(url)
    try:
        head = await conn.request(method, path, headers=headers, body=body)
        return head, await conn.read_body(head)
    finally:
        await conn.close()
