"""How the load generator talks to each kind of server: subscribe and publish.

- ``orbiter``: the native protocol on ``/connection/websocket`` (connect,
  subscribe; ready after both replies), plain SSE on ``/connection/sse``
  (ready at ``subscribed``), long polls on ``GET /poll?channel=C`` (ready
  once the first poll, without ``since``, has answered with the channel's
  position: every poll after it asks from there, so nothing published
  after ``READY`` can be missed even before the server parks the next
  poll), or the native protocol over SockJS's WebSocket transport
  (``/sockjs/0/<session>/websocket``: commands sent as SockJS JSON arrays
  once the ``o`` frame arrives, ready after both replies); publishing by
  ``POST /api/publish`` (one publication, or a batch), or by ``publish``
  commands over a WebSocket.
- ``broadcast``: the bench's own peer servers (``orbiter/bench/peers``:
  aiohttp, websockets, node ``ws``): ``/ws?channel=C`` subscribes, ``POST
  /pub?channel=C`` (raw body) or a WebSocket on ``/pub`` sending
  ``C<TAB>payload`` (answered ``ok``) publishes. ``broadcast-ws`` (the
  ``websockets`` peer, which serves no POST) always publishes over the WebSocket.
- ``nchan``: nginx with nchan (``peers/nchan.conf``): WebSocket subscriber
  on ``/sub/C``, ``POST /pub/C``.
- ``socketio``: python-socketio (``peers/socketio_broadcast.py``): Engine.IO
  v4 over WebSocket on ``/socket.io/?EIO=4&transport=websocket&channel=C``;
  ``40`` (connect to the default namespace) is sent once the ``0{...}`` open
  packet arrives, ready at the server's ``40{...}`` (the room is joined
  before it is sent), pings ``2`` answered ``3``; ``POST /pub?channel=C``
  (raw body) publishes, arriving as ``42["message","<body>"]``.
- ``pushpin``: Pushpin with ``peers/pushpin_origin.py`` behind it: WebSocket
  on ``/ws?channel=C`` (the origin subscribes it over WebSocket-over-HTTP
  before the handshake is answered); ``POST /publish/`` on Pushpin's control
  port (the target's ``pub_url``) with one ``ws-message`` item; that API
  closes the connection after each answer, so ``depth`` connections carry
  one request each and connect again after it.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from orbiter.bench.scenarios import Scenario

#: Handshakes the load generator has in flight at once against Pushpin.
PUSHPIN_MAX_CONNECTING = 32

FLAVORS = ("orbiter", "broadcast", "broadcast-ws", "nchan", "socketio", "pushpin")


class FlavorError(ValueError):
    pass


def channel_name(index: int) -> str:
    return f"bench{index}"


def _sockjs_array(command: dict[str, object]) -> str:
    """A native command as a SockJS client frame: a JSON array holding the command's JSON."""
    return orjson.dumps([orjson.dumps(command).decode()]).decode()


def subscriber_lines(
    flavor: str, scenario: Scenario, channel: str, index: int = 0
) -> Iterator[str]:
    """Config lines for subscriber connection number ``index``."""
    if flavor == "orbiter":
        connect = {"id": 1, "op": "connect"}
        subscribe = {"id": 2, "op": "subscribe", "channel": channel}
        if scenario.transport == "sse":
            yield f"sse /connection/sse?channel={channel}"
            yield "ready 1"
        elif scenario.transport == "longpoll":
            yield f"lp /poll?channel={channel}"
            yield "ready 0"
        elif scenario.transport == "sockjs":
            if scenario.churn:
                raise FlavorError("churn reconnects with the same SockJS session; use ws")
            yield f"ws /sockjs/0/s{index}/websocket"
            yield "framing sockjs"
            yield "send " + _sockjs_array(connect)
            yield "send " + _sockjs_array(subscribe)
            yield "ready 2"
        else:
            yield "ws /connection/websocket"
            yield "send " + orjson.dumps(connect).decode()
            yield "send " + orjson.dumps(subscribe).decode()
            yield "ready 2"
        return
    if scenario.transport != "ws":
        raise FlavorError(f"flavor {flavor!r} is only benchmarked over WebSocket")
    if flavor in ("broadcast", "broadcast-ws", "pushpin"):
        yield f"ws /ws?channel={channel}"
    elif flavor == "nchan":
        yield f"ws /sub/{channel}"
    elif flavor == "socketio":
        yield f"ws /socket.io/?EIO=4&transport=websocket&channel={channel}"
        yield "framing eio"
        yield "send 40"
        yield "ready 1"
        return
    else:
        raise FlavorError(f"unknown flavor {flavor!r}; known: {', '.join(FLAVORS)}")
    yield "ready 0"


def global_lines(flavor: str, scenario: Scenario) -> Iterator[str]:
    """Config lines for markers and the publisher."""
    if flavor == "orbiter":
        if scenario.transport == "sockjs":  # the reply is a JSON string inside a["..."]
            yield 'ready_marker \\"result\\"'
            yield 'fail_marker \\"error\\"'
        else:
            yield "ready_marker " + ("subscribed" if scenario.transport == "sse" else '"result"')
            yield 'fail_marker "error"'
        item = '{"channel":"@C","data":"@P"}'
        if scenario.route == "http":
            yield "pub_path /api/publish"
            yield f"pub_item {item}"
        elif scenario.route == "batch":
            yield "pub_path /api/publish"
            yield f"pub_batch {scenario.batch}"
            yield 'pub_prefix {"publications":['
            yield f"pub_item {item}"
            yield "pub_suffix ]}"
        else:
            yield "pub_ws 1"
            yield "pub_path /connection/websocket"
            yield 'pub_init {"id":1,"op":"connect"}'
            yield f"pub_batch {scenario.batch}"
            yield "pub_sep \\n"
            yield 'pub_item {"id":@I,"op":"publish","channel":"@C","data":"@P"}'
            yield 'pub_ack "result"'
        return
    # socketio: the load generator tells "40{...}" (connected) and "44{...}"
    # (refused) by the start of the frame itself.
    yield "ready_marker "
    yield "fail_marker "
    if scenario.route == "batch":
        raise FlavorError(f"flavor {flavor!r} has no batched publish")
    if flavor == "nchan":
        if scenario.route != "http":
            raise FlavorError("nchan is published to over HTTP only here")
        yield "pub_path /pub/@C"
        yield "pub_item @P"
    elif flavor == "pushpin":
        if scenario.route != "http":
            raise FlavorError("Pushpin is published to over HTTP only here")
        # Past a few dozen handshakes at once its proxy answers some with 502
        # at once, before its origin sees them (measured: 110 of 500 with 256 at once).
        yield f"max_connecting {PUSHPIN_MAX_CONNECTING}"
        # Its handler takes the origin's subscribe some 60 ms after the 101 and tells
        # nobody: what is published before is dropped (receivers=0 in its log).
        yield "probe_subscriptions 1"
        yield "pub_path /publish/"
        # Its control API closes the connection after every response: ``depth``
        # connections with one request each, each connecting again after its answer.
        yield f"pub_conns {scenario.depth}"
        yield "pub_depth 1"
        content = {"ws-message": {"content": "@P"}}
        yield (
            "pub_item " + orjson.dumps({"items": [{"channel": "@C", "formats": content}]}).decode()
        )
    elif flavor == "socketio":
        if scenario.route != "http":
            raise FlavorError("the socketio peer is published to over HTTP only")
        yield "pub_path /pub?channel=@C"
        yield "pub_item @P"
    elif scenario.route == "http" and flavor == "broadcast":
        yield "pub_path /pub?channel=@C"
        yield "pub_item @P"
    else:
        yield "pub_ws 1"
        yield "pub_path /pub"
        yield "pub_item @C\t@P"
        yield "pub_ack ok"
