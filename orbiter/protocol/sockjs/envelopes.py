"""The HTTP envelopes that carry SockJS frames to a browser.

Each envelope knows only how its response looks: the content type, the
prelude written before the first frame, how one frame is wrapped, whether
the response streams (many frames, until the response limit) or polls (one
frame, then the response ends), and whether it needs a JavaScript callback
name. Sessions, heartbeats and timeouts are session_state's business.
"""

from __future__ import annotations

import abc
import re
from typing import ClassVar

import orjson

from orbiter.protocol.sockjs.frames import Frame, encode_frame

#: A valid ``c`` (callback) parameter: a JavaScript name path such as ``_jp.a1b2c3``.
CALLBACK = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class Envelope(abc.ABC):
    """One HTTP transport's framing (the base is never used on its own)."""

    name: ClassVar[str]
    #: The HTTP method that opens this receiver.
    method: ClassVar[str] = "POST"
    content_type: ClassVar[str]
    streaming: ClassVar[bool] = False
    needs_callback: ClassVar[bool] = False

    def prelude(self, callback: str) -> bytes:
        """What is written once, before any frame."""
        return b""

    @abc.abstractmethod
    def wrap(self, frame: Frame, callback: str) -> bytes:
        """One frame, ready to write."""


class XhrPolling(Envelope):
    name = "xhr"
    content_type = "application/javascript; charset=UTF-8"

    def wrap(self, frame: Frame, callback: str) -> bytes:
        return (encode_frame(frame) + "\n").encode()


class XhrStreaming(XhrPolling):
    name = "xhr_streaming"
    streaming = True
    #: Old browsers only hand an XHR's body to the page after 2 KiB.
    _PRELUDE = b"h" * 2048 + b"\n"

    def prelude(self, callback: str) -> bytes:
        return self._PRELUDE


class EventSource(Envelope):
    name = "eventsource"
    method = "GET"
    content_type = "text/event-stream"
    streaming = True

    def prelude(self, callback: str) -> bytes:
        return b"\r\n"

    def wrap(self, frame: Frame, callback: str) -> bytes:
        # Frames are JSON-escaped, so they hold no newline to break the event.
        return b"data: " + encode_frame(frame).encode() + b"\r\n\r\n"


_HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.%s;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>
"""


def _script_string(text: str) -> bytes:
    """``text`` as a JavaScript string literal that is safe inside ``<script>``."""
    return (
        orjson.dumps(text)
        .replace(b"<", b"\\u003c")
        .replace(b">", b"\\u003e")
        .replace(b"&", b"\\u0026")
    )


class HtmlFile(Envelope):
    name = "htmlfile"
    method = "GET"
    content_type = "text/html; charset=UTF-8"
    streaming = True
    needs_callback = True

    def prelude(self, callback: str) -> bytes:
        head = _HTMLFILE_HEAD % callback
        # Browsers start running a streamed page only after about 1 KiB.
        return (head + " " * max(0, 1024 - len(head)) + "\r\n\r\n").encode()

    def wrap(self, frame: Frame, callback: str) -> bytes:
        return b"<script>\np(" + _script_string(encode_frame(frame)) + b");\n</script>\r\n"


class JsonpPolling(Envelope):
    name = "jsonp"
    method = "GET"
    content_type = "application/javascript; charset=UTF-8"
    needs_callback = True

    def wrap(self, frame: Frame, callback: str) -> bytes:
        # The leading comment keeps the response from being read as anything
        # but JavaScript (the "Rosetta Flash" attack).
        text = "/**/" + callback + "("
        return text.encode() + orjson.dumps(encode_frame(frame)) + b");\r\n"


ENVELOPES: dict[str, Envelope] = {
    envelope.name: envelope
    for envelope in (XhrPolling(), XhrStreaming(), EventSource(), HtmlFile(), JsonpPolling())
}
