"""JSON inside JavaScript and HTML: JSONP, ``eval``-able bodies, script-tag streams.

The comet transports of the seeds deliver JSON as code: a JSONP response
calls ``callback(json)``, Orbited's ``xhr`` client runs ``eval`` on the
body, and its ``iframe`` transport streams an HTML document of
``<script>`` tags. A payload is user data, so it is written so that it
cannot end the script or the string it sits in: ``<``, ``>`` and ``&``
become ``\\u003c``, ``\\u003e``, ``\\u0026`` (no ``</script>``, no ``<!--``),
and U+2028/U+2029, line breaks to older JavaScript, become ``\\u2028`` and
``\\u2029``. The result is still JSON with the same value. Callback names
are checked against a strict pattern before they are written anywhere.
Nothing here touches a socket.
"""

from __future__ import annotations

import re

import orjson

from orbiter.model import JSON

JAVASCRIPT_CONTENT_TYPE = "application/javascript; charset=utf-8"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"

#: A JavaScript identifier, or a dotted path of them (``Orbited.event_cb``).
CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,63}(\.[A-Za-z_$][A-Za-z0-9_$]{0,63}){0,3}")

_UNSAFE = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)

#: Bytes of padding after an iframe document's head: some browsers show
#: nothing of a streamed document until they have received this much.
IFRAME_PADDING = 2048
#: Written when the stream has been idle for a while: keeps proxies from
#: closing it and tells a dead connection apart.
IFRAME_KEEPALIVE = b"<!-- keepalive -->\n"


class BadCallback(ValueError):
    """A JSONP or iframe callback name that is not a plain JavaScript name."""


def check_callback(name: str) -> str:
    """Return ``name`` if it is safe to write as a function to call, else raise."""
    if not CALLBACK.fullmatch(name):
        raise BadCallback(
            "'callback' must be a JavaScript name such as 'onData' or 'app.onData' "
            "(letters, digits, '_' and '$', at most 4 dotted parts)"
        )
    return name


def script_safe(json: bytes) -> bytes:
    """JSON text made safe to embed in an HTML ``<script>`` or a JavaScript source."""
    for raw, escaped in _UNSAFE:
        if raw in json:
            json = json.replace(raw, escaped)
    return json


def dumps(value: JSON) -> bytes:
    """``value`` as script-safe JSON."""
    return script_safe(orjson.dumps(value))


def jsonp(callback: str, json: bytes) -> bytes:
    """A JSONP body: ``callback(json);``, after a comment that keeps it from
    being read as anything but JavaScript (the Rosetta Flash defence)."""
    return b"/**/" + check_callback(callback).encode() + b"(" + script_safe(json) + b");"


def eval_body(json: bytes) -> bytes:
    """A body whose ``eval`` is the JSON value: in parentheses, so an object
    is not read as a block."""
    return b"(" + script_safe(json) + b")"


def iframe_prelude(callback: str) -> bytes:
    """The start of a script-tag stream inside an iframe of the page.

    Each later chunk (:func:`iframe_call`) calls ``c(payload)``, which calls
    ``callback`` in the parent page; :func:`iframe_end` makes the iframe
    load the stream again after a delay. Only a page that frames the
    stream is called: opened on its own (no parent), the document calls
    nothing, so a callback such as ``eval`` cannot be turned on orbiter's
    own origin. (A parent of another origin is out of reach anyway.)
    """
    target = "window.parent." + check_callback(callback)
    head = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>orbiter</title>\n'
        "<script>\n"
        f"var c = function (d) {{ if (window.parent !== window) {target}(d); }};\n"
        "var r = function (ms) { setTimeout(function () { window.location.reload(); }, ms); };\n"
        "</script>\n</head><body>\n"
    ).encode()
    padding = b"<!--" + b" " * IFRAME_PADDING + b"-->\n"
    return head + padding


def iframe_call(json: bytes) -> bytes:
    """One event in a script-tag stream: the parent's callback gets the value."""
    return b"<script>c(" + script_safe(json) + b");</script>\n"


def iframe_end(reload_after: float) -> bytes:
    """The end of a script-tag stream: load it again in ``reload_after`` seconds."""
    ms = max(0, round(reload_after * 1000))
    return b"<script>r(" + str(ms).encode() + b");</script>\n</body></html>\n"
