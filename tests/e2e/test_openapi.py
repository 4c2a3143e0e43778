"""``GET /api/openapi.json`` describes exactly the HTTP API: every aiohttp route under
``/api`` and ``/health`` is in it, and everything in it is a route (both directions),
and the served document is the one the code builds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import aiohttp
import jsonschema_rs
import orjson
import pytest
from aiohttp import web

from orbiter.config.live import element_mount, with_mounts
from orbiter.config.settings import Config
from orbiter.config.tcp import DevProxySettings, DevRoute
from orbiter.http.app import build_app
from orbiter.http.openapi import openapi_document
from orbiter.node import Node
from tests.support.server import RunningServer

DESCRIBED_PREFIXES = ("/api/", "/health/")
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def _routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route the app registers under the described prefixes."""
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if not path.startswith(DESCRIBED_PREFIXES):
            continue
        if route.method == "HEAD":  # aiohttp adds one to every GET
            continue
        found.add((route.method.lower(), path))
    return found


def _described() -> set[tuple[str, str]]:
    paths = openapi_document()["paths"]
    return {(method, path) for path, item in paths.items() for method in item if method in METHODS}


@pytest.fixture
def app() -> web.Application:
    return build_app(Node(Config()))


def test_every_route_is_described_and_every_description_is_a_route(app: web.Application) -> None:
    routes = _routes(app)
    described = _described()
    assert routes, "no routes found: the test reads the router wrongly"
    assert routes - described == set(), "routes missing from the OpenAPI document"
    assert described - routes == set(), "described routes that do not exist"


def test_the_same_with_every_optional_part_on() -> None:
    """STOMP, live elements, SockJS test services and the dev proxy add routes of their
    own, none under /api or /health undescribed."""
    config = Config()
    config = replace(
        config,
        sockjs=replace(config.sockjs, test_services=True),
        live=with_mounts(config.live, (element_mount("/chat", "examples.athena_chat.chat:chat"),)),
        dev_proxy=DevProxySettings(enabled=True, routes=(DevRoute("/", "http://127.0.0.1:9"),)),
    )
    assert _routes(build_app(Node(config))) == _described()


def test_every_operation_names_its_answers_and_the_refs_resolve() -> None:
    document = openapi_document()
    text = orjson.dumps(document).decode()
    for name in document["components"]["schemas"]:
        assert f'"#/components/schemas/{name}"' in text or name == "Error"
    for ref in set(part.split('"')[0] for part in text.split('"$ref":"')[1:]):
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"], ref
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"], (method, path)
            assert operation["responses"], (method, path)


async def test_the_server_serves_the_document() -> None:
    server = RunningServer('[server]\napi_key = "k"\n', args=("--engine", "memory"))
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(server.url + "/api/openapi.json") as answer,  # no key needed
        ):
            assert answer.status == 200
            assert answer.content_type == "application/json"
            served = orjson.loads(await answer.read())
    finally:
        server.stop()
    assert served == openapi_document()
    assert served["openapi"].startswith("3.1")


def _closed(schema: Any) -> Any:
    """``schema`` with every object that lists its properties closed to others, so that
    an answer's field the document does not describe fails the validation."""
    if isinstance(schema, list):
        return [_closed(part) for part in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        closed["additionalProperties"] = False
    return closed


@pytest.mark.parametrize("args", [("--engine", "memory"), ("--workers", "2")])
async def test_stats_answers_are_described_field_by_field(args: tuple[str, ...]) -> None:
    """GET /api/stats on one process and on a cluster (--workers 2: Redis, with its
    ``cluster`` section) has exactly the fields its schema describes."""
    operation = openapi_document()["paths"]["/api/stats"]["get"]
    schema = _closed(operation["responses"]["200"]["content"]["application/json"]["schema"])
    server = RunningServer('[server]\napi_key = "k"\n', args=args)
    try:
        workers = 2 if "--workers" in args else 1
        server.wait_listening(workers)
        async with (
            aiohttp.ClientSession() as http,
            http.get(server.url + "/api/stats", headers={"X-API-Key": "k"}) as answer,
        ):
            assert answer.status == 200
            stats = orjson.loads(await answer.read())
    finally:
        server.stop()
    jsonschema_rs.validate(schema, stats)
    assert ("cluster" in stats) == (workers > 1), stats
    if workers > 1:
        assert stats["cluster"]["nodes"] == 2, stats
        assert len(stats["cluster"]["by_node"]) == stats["cluster"]["answered"]
