"""The Orbited 0.3/0.7 script URLs the seeds' pages load (``http/seed_scripts.py``).

The pages themselves run in Chromium in tests/browser/test_pylons_chat.py
(``/_/orbited.js``) and tests/browser/test_seed_chat.py (``${orbited_files}``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp

from orbiter.ports import free_port
from tests.support.server import RunningServer

ORBITED_03 = (Path(__file__).parent.parent / "fixtures" / "orbited03.cfg").read_text()


async def get(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.read()


async def test_the_seed_script_urls_serve_orbiter_js_or_its_shims(
    start_server: Callable[..., RunningServer],
) -> None:
    # Seed 000's config: its [proxy] sends / to the app (unreachable here), orbiter keeps /_.
    config = ORBITED_03.replace("127.0.0.1:5000", f"127.0.0.1:{free_port()}")
    srv = start_server(config + "\n[listen]\nhttp://127.0.0.1:0\n")
    status, _, library = await get(srv.url + "/static/orbiter.js")
    assert status == 200
    for path in ("/_/orbited.js", "/static/Orbited.js"):
        status, kind, body = await get(srv.url + path)
        assert (status, kind, body) == (200, "application/javascript; charset=utf-8", library)
    for path, says in (
        ("/static/JSON.js", b"built in"),
        ("/static/protocols/stomp/stomp.js", b"orbiter.js"),
    ):
        status, kind, body = await get(srv.url + path)
        assert (status, kind) == (200, "application/javascript; charset=utf-8")
        assert says in body
    assert (await get(srv.url + "/_/nothing.js"))[0] == 404  # not the app's (502)
