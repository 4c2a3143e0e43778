"""The TurboGears chat's app server (seed 001): the page, and a server-side log of the room.

The tutorial's controller rendered its template with where Orbited and the
STOMP broker were (``orbited_files``, ``stomp_port``, ...); this serves
``index.html`` filled in the same way (``string.Template``: the template's
``${...}``) at ``/``. It also does what the tutorial left as an obvious
enhancement: it subscribes to ``/topic/chat`` on the broker (plain STOMP
over TCP, as any app server can) and appends each line, ``nick: text``, to
``chat.log`` and its output.

    orbiter --config=chat.ini   # orbiter: HTTP on 9000, STOMP on 61613
    python stomp_chat.py        # the app, on CHAT_PORT (8080)
"""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent


class ChatLog:
    """A STOMP subscriber to ``/topic/chat`` writing each line to ``chat.log``."""

    def __init__(self, host: str, port: int, path: Path) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.settimeout(None)
        self.path = path
        self.sock.sendall(b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\n\n\x00")
        self.sock.sendall(b"SUBSCRIBE\nid:log\ndestination:/topic/chat\n\n\x00")

    def run(self) -> None:
        buffer = b""
        while data := self.sock.recv(65536):
            buffer += data
            *frames, buffer = buffer.split(b"\x00")
            for frame in frames:
                self._frame(frame.lstrip(b"\r\n"))

    def _frame(self, frame: bytes) -> None:
        head, _, body = frame.partition(b"\n\n")
        if not head.startswith(b"MESSAGE"):
            return
        try:
            msg = json.loads(body)
            line = f"{msg['nick']}: {msg['text']}"
        except (ValueError, KeyError, TypeError):
            return  # not a chat line
        line = line.replace("\n", " ").replace("\r", " ")
        with self.path.open("a", encoding="utf-8") as log:
            log.write(line + "\n")
        print(line, flush=True)


def page(orbiter_host: str, orbiter_port: int, stomp_port: int) -> bytes:
    template = Template((HERE / "index.html").read_text(encoding="utf-8"))
    return template.substitute(
        orbited_files=f"http://{orbiter_host}:{orbiter_port}/static",
        orbited_host=orbiter_host,
        orbited_port=orbiter_port,
        stomp_host="localhost",
        stomp_port=stomp_port,
    ).encode()


def main() -> None:
    host = os.environ.get("ORBITER_HOST", "127.0.0.1")
    port = int(os.environ.get("ORBITER_PORT", "9000"))
    stomp_port = int(os.environ.get("STOMP_PORT", "61613"))
    log = ChatLog(host, stomp_port, HERE / "chat.log")
    threading.Thread(target=log.run, daemon=True).start()
    body = page(host, port, stomp_port)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path.split("?")[0] in ("/", "/chat")
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("CHAT_PORT", "8080"))), Handler)
    print(f"stomp_chat on http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
