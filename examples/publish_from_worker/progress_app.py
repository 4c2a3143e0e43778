"""The app server of the example: the page, and ``POST /jobs?id=ID`` starting a worker.

It stands for any web app: the job is not run in the request, but handed to
a background process (here ``progress_worker.py``, as a task queue would),
and the request answers ``202`` at once. The page learns how the job goes
from orbiter, not from this server.

    orbiter                       # reads ./orbiter.toml: http://127.0.0.1:8000
    python progress_app.py        # this, on APP_PORT (5001), behind orbiter's dev proxy
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/":
            self._answer(404, "text/plain", b"not found")
            return
        self._answer(200, "text/html", (HERE / "index.html").read_bytes())

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        job = parse_qs(url.query).get("id", [""])[0]
        if url.path != "/jobs" or not JOB_ID.fullmatch(job):
            self._answer(400, "text/plain", b"POST /jobs?id=ID (1-64 of A-Z a-z 0-9 _ -)")
            return
        subprocess.Popen([sys.executable, str(HERE / "progress_worker.py"), job])
        self._answer(202, "application/json", b'{"job": "%s"}' % job.encode())

    def _answer(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("APP_PORT", "5001"))), Handler)
    print(f"progress_app on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
