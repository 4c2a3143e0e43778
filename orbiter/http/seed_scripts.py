"""The script URLs of Orbited 0.3 and 0.7 pages, served so the seeds' pages load as printed.

An Orbited 0.3 page loads ``/_/orbited.js``; an Orbited 0.7 page loads
``JSON.js``, ``Orbited.js`` and ``protocols/stomp/stomp.js`` from the
server's ``/static`` (the TurboGears tutorial's ``${orbited_files}``).
``orbited.js`` and ``Orbited.js`` are orbiter.js itself, which defines
``Orbited`` (``connect``, ``TCPSocket``, ``settings``) and ``STOMPClient``.
``JSON.js`` (json2, for browsers before JSON was built in) and ``stomp.js``
are shims: JSON is native today, and ``stomp.js`` only loads orbiter.js if
the page has not (``STOMPClient`` undefined). Every answer is JavaScript,
revalidated on each load (``no-cache``) so an upgrade reaches the page.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

#: Orbited 0.3's script, and Orbited 0.7's (under /static), both orbiter.js.
ORBITED_SCRIPTS = ("/_/orbited.js", "/static/Orbited.js")
JSON_SHIM = b"""/* Orbited 0.7's JSON.js (json2): every browser has JSON built in now. */
"""
STOMP_SHIM = b"""/* Orbited 0.7's protocols/stomp/stomp.js: STOMPClient is part of orbiter.js
   (Orbited.js). Loaded without it, this loads orbiter.js from beside it, before the
   page's next script. */
(function () {
  if (typeof window.STOMPClient === "function") return;
  var here = document.currentScript && document.currentScript.src;
  var src = here ? here.replace(/protocols\\/stomp\\/stomp\\.js(\\?.*)?$/, "orbiter.js")
                 : "/static/orbiter.js";
  document.write('<script src="' + src + '"><\\/script>');
})();
"""
_HEADERS = {"Content-Type": "application/javascript; charset=utf-8", "Cache-Control": "no-cache"}


def add_seed_scripts(app: web.Application, static_dir: Path) -> None:
    """Mount the seeds' script URLs (before ``/static`` itself, which they are under)."""
    orbiter_js = static_dir / "orbiter.js"

    async def orbiter(request: web.Request) -> web.FileResponse:
        return web.FileResponse(orbiter_js, headers=_HEADERS)

    def fixed(body: bytes) -> web.Response:
        return web.Response(body=body, headers=_HEADERS)

    async def json_shim(request: web.Request) -> web.Response:
        return fixed(JSON_SHIM)

    async def stomp_shim(request: web.Request) -> web.Response:
        return fixed(STOMP_SHIM)

    for path in ORBITED_SCRIPTS:
        app.router.add_get(path, orbiter)
    app.router.add_get("/static/JSON.js", json_shim)
    app.router.add_get("/static/protocols/stomp/stomp.js", stomp_shim)
