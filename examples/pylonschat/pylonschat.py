"""PylonsChat's app server: the tutorial's ``ChatController``, on the standard library's WSGI.

The seed's controller (``pylonschat/controllers/chat.py``) kept a list of
joined users and sent every line to each one's Orbited key with pyorbited's
``orbit.event(keys, html)``. This is that controller with Pylons replaced by
:mod:`wsgiref` and pyorbited's ``Client()`` by :class:`orbiter.Client`
(``event`` is the same call; ``pyorbited`` itself also works, against the
event port 9000 that ``orbited.cfg`` opens). It serves the page and its
files from ``public/``, at ``http://127.0.0.1:5000``, where ``orbited.cfg``'s
``[proxy]`` sends every path orbiter does not answer itself.

    python pylonschat.py            # the app, on CHAT_PORT (5000)
    orbiter                   # orbiter, here: it reads ./orbited.cfg
"""

from __future__ import annotations

import mimetypes
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from orbiter import Client

PUBLIC = Path(__file__).resolve().parent / "public"
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class ChatController:
    """The seed's controller: ``index``, ``join`` and ``msg``."""

    def __init__(self, orbit: Client) -> None:
        self.orbit = orbit
        self.users: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _user_keys(self) -> list[str]:
        return [f"{user}, {session}, /orbited" for user, session in self.users]

    def join(self, user: str) -> str:
        with self._lock:
            if (user, "0") not in self.users:
                self.users.append((user, "0"))
            self.orbit.event(self._user_keys(), f"<b>{user} joined</b>")
        return "ok."

    def msg(self, user: str, msg: str) -> str:
        with self._lock:  # nobody joined yet: an event to no keys, a success
            self.orbit.event(self._user_keys(), f"<b>{user}</b> {msg}")
        return "ok."


def application(controller: ChatController) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: ``/chat``, ``/chat/join/USER``, ``/chat/msg/USER/MSG/N``, ``public/``."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raw = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
        parts = [unquote(p) for p in raw.strip("/").split("/")]
        kind, body = "text/plain", None
        if parts == ["chat"]:
            kind, body = "text/html", (PUBLIC / "index.html").read_bytes()
        elif parts[:2] == ["chat", "join"] and len(parts) == 3:
            body = controller.join(parts[2]).encode()
        elif parts[:2] == ["chat", "msg"] and len(parts) in (4, 5):
            body = controller.msg(parts[2], parts[3]).encode()
        else:
            path = (PUBLIC / "/".join(parts)).resolve()
            if path.is_file() and PUBLIC in path.parents:
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                body = path.read_bytes()
        if body is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        start_response(
            "200 OK", [("Content-Type", f"{kind}; charset=utf-8"), ("Cache-Control", "no-cache")]
        )
        return [body]

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port = int(os.environ.get("CHAT_PORT", "5000"))
    orbit = Client(os.environ.get("ORBITER_URL", "http://127.0.0.1:8000"))
    server = make_server(
        "127.0.0.1",
        port,
        application(ChatController(orbit)),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    print(f"pylonschat on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
