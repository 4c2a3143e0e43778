"""The JSON answers of orbiter's HTTP routes: ``{"error": {"status", "message"}}``.

Here, below :mod:`orbiter.http`, so that the transports' routes refuse with the
same body as the HTTP API (:mod:`orbiter.http.api`) without importing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def error_payload(status: int, message: str) -> dict[str, Any]:
    """The JSON body of every API failure."""
    return {"error": {"status": status, "message": message}}


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = json_response(error_payload(status, message), status)
    if headers:
        response.headers.update(headers)
    return response
