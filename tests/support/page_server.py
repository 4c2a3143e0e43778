"""Serves test pages from a real HTTP server on 127.0.0.1 (another origin than orbiter's).

Chromium refuses WebSocket connections to 127.0.0.1 from pages that did not
themselves come from a local address, so test pages are served for real.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PageServer:
    """``pages`` (path -> HTML, or JavaScript for ``.js``) on a free port; ``url`` is its base."""

    def __init__(self, pages: dict[str, str]) -> None:
        self.pages = pages
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                kind = "application/javascript" if self.path.endswith(".js") else "text/html"
                self.send_header("Content-Type", kind + "; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
