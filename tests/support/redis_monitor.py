"""The publish-script calls a ``redis-server`` runs, seen from outside through ``MONITOR``:
how many publications each call carried, for tests of how the Redis engine groups them
(the engine's own code is compiled: a test cannot wrap its methods, and need not).

Each ``EVAL``/``EVALSHA`` whose first key is a void-epoch key under the test's prefix
(``<prefix>:void``, or a cluster's ``<prefix>:void:{tag}``) is one call of the publish
script, its keys the void key then two per publication; other clients' commands and
the read script's (its void key comes third) are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import hiredis

#: A MONITOR line's command, its script (or SHA-1), its number of keys and first key (each
#: quoted, with ``\\`` escapes).
_SCRIPT_CALL = re.compile(
    rb'\] "(?:EVAL|EVALSHA|eval|evalsha)" "(?:[^"\\]|\\.)*" "(\d+)" "((?:[^"\\]|\\.)*)"', re.S
)


class ScriptCalls:
    """The publish-script calls of ``prefix``'s brokers on the Redis at ``port``, from
    :meth:`start` on: :attr:`calls`, the publications of each call in the order run."""

    def __init__(self, port: int, prefix: str) -> None:
        self._port = port
        self._void = prefix.encode() + b":void"
        self.calls: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._writer = writer
        writer.write(hiredis.pack_command(("MONITOR",)))
        parser = hiredis.Reader()
        while (reply := parser.gets()) is False:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("redis-server closed the MONITOR connection")
            parser.feed(data)
        if reply != b"OK":
            raise ConnectionError(f"MONITOR answered {reply!r}")
        self._task = asyncio.create_task(self._read(reader, parser))

    async def _read(self, reader: asyncio.StreamReader, parser: hiredis.Reader) -> None:
        while data := await reader.read(65536):
            parser.feed(data)
            while (line := parser.gets()) is not False:
                found = _SCRIPT_CALL.search(line)
                if found is None:
                    continue
                keys, first = int(found[1]), found[2]
                if first == self._void or first.startswith(self._void + b":"):
                    self.calls.append((keys - 1) // 2)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
