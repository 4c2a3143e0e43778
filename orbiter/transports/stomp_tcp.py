"""STOMP over TCP (the ``stomp.listen`` listener, MorbidQ's ``stomp://`` port).

Bytes read from the socket go to the session as they come; what the
session queues is written in batches. When the session ends (DISCONNECT,
an ERROR, a heart-beat time-out, shutdown) the socket is closed once what
was queued has been written, or cut after :data:`CLOSE_GRACE` seconds if
the client does not read it (a slow consumer).
"""

from __future__ import annotations

import asyncio
import contextlib

from orbiter.services.outbox import Pull
from orbiter.services.stomp.broker import StompBroker
from orbiter.services.stomp.session import StompSession

READ_SIZE = 65_536
#: Seconds a closing connection has to take what was queued for it before it is cut.
CLOSE_GRACE = 5.0


async def start_tcp_listener(broker: StompBroker, host: str, port: int) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(broker, reader, writer)

    return await asyncio.start_server(serve, host, port, limit=READ_SIZE)


async def serve_connection(
    broker: StompBroker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    address = writer.get_extra_info("peername")
    peer = str(address[0]) if isinstance(address, tuple) else "?"
    session = broker.new_session(peer=peer, transport="tcp")
    session.abort = writer.transport.abort
    output = asyncio.create_task(_write(session, writer))
    beats = asyncio.create_task(session.keepalive())
    cutter = asyncio.create_task(_cut_when_closed(session, writer))
    try:
        while not session.closed:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            await session.receive(data)
    except (ConnectionError, OSError):
        pass
    finally:
        beats.cancel()
        await broker.end_session(session)
        await output
        cutter.cancel()


async def _cut_when_closed(session: StompSession, writer: asyncio.StreamWriter) -> None:
    """Once the session is closed, give the client :data:`CLOSE_GRACE` s to read, then cut."""
    await session.wait_closed()
    await asyncio.sleep(CLOSE_GRACE)
    writer.transport.abort()


async def _write(session: StompSession, writer: asyncio.StreamWriter) -> None:
    try:
        output = Pull(session.outbox)
        while batch := await output.take():
            if writer.is_closing():  # cut (abort) while this batch was queued
                break
            writer.write(b"".join(batch))
            await writer.drain()
            session.drained()
    except (ConnectionError, OSError):
        session.close("connection lost")
    finally:
        session.close("connection closed")
        writer.close()
        # A client that stopped reading never lets the close finish: cut it after a grace period.
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), CLOSE_GRACE)
        writer.transport.abort()
