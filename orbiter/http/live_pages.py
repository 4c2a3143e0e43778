"""The page of each mounted live element: its template, its widget, and orbiter.js to start it.

One ``GET`` route per ``[[live.element]]`` path (``orbiter serve --element``
mounts ``/``). The page holds the element class's ``template`` in a
``<div>`` and its ``widget_js``, and starts the widget with
``Orbiter.Widget.start``, given the class by its name (a JavaScript
expression, checked to be a dotted identifier when the mount was loaded),
which attaches it to a new element on the page's connection
(``docs/live.md``). The template and script are the application's own; the
title and the mount path put into the page are escaped.
"""

from __future__ import annotations

import html

import orjson
from aiohttp import web

from orbiter.services.live.host import LiveHost, MountedElement

_PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<div id="orbiter-live">{template}</div>
<script src="/static/orbiter.js"></script>
<script>{widget_js}</script>
<script>
Orbiter.Widget.start({widget_class}, document.getElementById("orbiter-live"), {options})
  .catch((err) => console.error("orbiter: the element could not attach:", err));
</script>
</body>
</html>
"""


def _script_value(value: object) -> str:
    """JSON that cannot end the ``<script>`` it sits in."""
    return orjson.dumps(value).decode().replace("<", "\\u003c")


def render_page(mount: MountedElement) -> str:
    cls = mount.element_class
    return _PAGE.format(
        title=html.escape(mount.title),
        template=cls.template,
        widget_js=cls.widget_js.replace("</script", "<\\/script"),
        widget_class=cls.widget_class,  # a dotted JS name, checked when the mount was loaded
        options=_script_value({"mount": mount.path}),
    )


def add_live_pages(app: web.Application, host: LiveHost) -> None:
    for mount in host.mounts.values():
        page = render_page(mount)

        async def handler(request: web.Request, page: str = page) -> web.Response:
            return web.Response(
                text=page, content_type="text/html", headers={"Cache-Control": "no-cache"}
            )

        app.router.add_get(mount.path, handler)
