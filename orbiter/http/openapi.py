"""The OpenAPI 3.1 description of orbiter's HTTP API, served at ``GET /api/openapi.json``.

Written here, as Python data, rather than generated from the handlers: the
handlers read their bodies by hand (no schema objects to generate from), and
a description written for readers says what each field means. The parts
every route shares (the error body, the API key, the 401/413/415 refusals)
are written once, and the limits come from the code that enforces them.
``tests/e2e/test_openapi.py`` keeps it true: every aiohttp route under
``/api`` and ``/health`` is described and every described route exists,
and schemathesis checks the answers against it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from aiohttp import web

from orbiter.http.admin_api import MAX_CHANNELS, MAX_CONNECTIONS
from orbiter.http.api import MAX_BATCH, MAX_EVENT_KEYS
from orbiter.http.api_calls import MAX_TIMEOUT
from orbiter.http.api_wall import MAX_WALL_TEXT, WALL_CHANNEL
from orbiter.protocol.live import MAX_NAME
from orbiter.protocol.native import MAX_CHANNEL_LENGTH, MAX_TAG_NAME, MAX_TAGS
from orbiter.version import __version__

OPENAPI_PATH = "/api/openapi.json"

Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Json:
    return _json(_ref("Error"), description)


def _object(required: list[str], properties: Json, **extra: Any) -> Json:
    return {"type": "object", "required": required, "properties": properties, **extra}


_INT = {"type": "integer", "minimum": 0}
_STRING = {"type": "string"}


def _results(name: str) -> Json:
    """``{results: [{<name>, offset, epoch}]}``: where each of many publications went."""
    item = _object([name, "offset", "epoch"], {name: _STRING, "offset": _INT, "epoch": _STRING})
    return _object(["results"], {"results": {"type": "array", "items": item}})


#: One node's share of a cluster's numbers (``orbiter/http/api_cluster.py``).
_SHARE = _object(
    ["pid", "connections", "subscribed_channels"],
    {"pid": _INT, "connections": _INT, "subscribed_channels": _INT},
)
_CHANNEL_QUERY = {
    "name": "channel",
    "in": "query",
    "required": True,
    "schema": _ref("Channel"),
}

_SCHEMAS: Json = {
    "Error": _object(
        ["error"],
        {
            "error": _object(
                ["status", "message"],
                {"status": {"type": "integer"}, "message": _STRING},
            )
        },
        description="Every failure: the HTTP status and a message naming the problem.",
    ),
    "Channel": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_CHANNEL_LENGTH,
        "pattern": "^[^\\u0000-\\u001f\\u007f]+$",
        "description": "A channel name: no control characters.",
    },
    "Tags": {
        "type": "object",
        "maxProperties": MAX_TAGS,
        "propertyNames": {"minLength": 1, "maxLength": MAX_TAG_NAME, "pattern": "^[^:]+$"},
        "additionalProperties": _STRING,
        "description": "Name-value strings every subscriber gets with the publication.",
    },
    "Publication": _object(
        ["channel", "data"],
        {
            "channel": _ref("Channel"),
            "data": {"description": "Any JSON value."},
            "tags": {"anyOf": [_ref("Tags"), {"type": "null"}]},
        },
    ),
    "Position": _object(
        ["offset", "epoch"],
        {"offset": _INT, "epoch": _STRING},
        description="Where a publication was kept in its channel's stream.",
    ),
}

_KEYED: list[Json] = [{"ApiKey": []}, {"Authorization": []}, {}]

_REFUSALS: Json = {
    "400": _error("The request is malformed; the message says how."),
    "401": _error("server.api_key is set and the call does not carry it."),
}
_POST_REFUSALS: Json = {
    **_REFUSALS,
    "413": _error("The body is larger than limits.max_http_body."),
    "415": _error("Without server.api_key, a POST must say Content-Type: application/json."),
    "417": _error("An Expect header other than 100-continue."),
}


def _post(summary: str, body: Json, answers: Json) -> Json:
    return {
        "post": {
            "summary": summary,
            "security": _KEYED,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {**answers, **_POST_REFUSALS},
        }
    }


def _get(summary: str, parameters: list[Json], answer: Json, **more: Json) -> Json:
    return {
        "get": {
            "summary": summary,
            "security": _KEYED,
            "parameters": parameters,
            "responses": {"200": answer, **_REFUSALS, **more},
        }
    }


def _query_int(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": _INT,
        "description": description,
    }


_UNAVAILABLE = _error("The engine could not keep it (a full disk, Redis unreachable).")

_PATHS: Json = {
    "/api/publish": _post(
        "Publish to a channel, or a batch in order",
        {
            "anyOf": [
                _ref("Publication"),
                _object(
                    ["publications"],
                    {
                        "publications": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                            "items": _ref("Publication"),
                        }
                    },
                ),
            ]
        },
        {
            "200": _json(
                {
                    "oneOf": [
                        _ref("Position"),
                        _results("channel"),
                    ]
                },
                "Kept (SQLite: committed) and delivered: its position, or each one's.",
            ),
            "503": _UNAVAILABLE,
        },
    ),
    "/api/event": _post(
        "Send data to Orbited connection keys ('user, session, /location')",
        _object(
            ["keys", "data"],
            {
                "keys": {
                    "oneOf": [
                        _STRING,
                        {"type": "array", "maxItems": MAX_EVENT_KEYS, "items": _STRING},
                    ]
                },
                "data": {"description": "Any JSON value."},
            },
        ),
        {
            "200": _json(
                _results("key"),
                "Published to each key's channel (no keys: a success reaching no one).",
            ),
            "503": _UNAVAILABLE,
        },
    ),
    "/api/call": _post(
        "Call a method on live-element widgets in browsers",
        _object(
            ["method"],
            {
                "method": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
                "args": {"type": "array"},
                "user": {"type": "string", "minLength": 1},
                "key": {"type": "string", "minLength": 1},
                "channel": {"type": "string", "minLength": 1},
                "mount": {"type": ["string", "null"]},
                "wait": {"type": "boolean"},
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT},
            },
            description="Exactly one of user, key, channel; or mount alone (all its widgets).",
        ),
        {
            "200": _json(
                {
                    "oneOf": [
                        _object(["calls"], {"calls": _INT}),
                        _object(["results"], {"results": {"type": "array"}}),
                    ]
                },
                "Sent ({calls}), or with wait: each widget's value or error ({results}).",
            )
        },
    ),
    "/api/wall": _post(
        f"A notice on every chat page (published to {WALL_CHANNEL})",
        _object(
            ["text"],
            {"text": {"type": "string", "minLength": 1, "maxLength": MAX_WALL_TEXT}},
            description="text: not only white space.",
        ),
        {
            "200": _json(
                _object(
                    ["channel", "offset", "epoch"],
                    {"channel": {"const": WALL_CHANNEL}, "offset": _INT, "epoch": _STRING},
                ),
                "Published.",
            ),
            "503": _UNAVAILABLE,
        },
    ),
    "/api/channels": _get(
        "Channels with subscribers on this node",
        [],
        _json(
            _object(["channels"], {"channels": {"type": "object", "additionalProperties": _INT}}),
            "Each channel's number of subscribers here.",
        ),
    ),
    "/api/presence": _get(
        "Who is subscribed to a channel",
        [_CHANNEL_QUERY],
        _json(
            _object(
                ["channel", "clients", "users"],
                {"channel": _STRING, "clients": _INT, "users": {"type": "array"}},
            ),
            "Clients, and one entry per user (presence off: no users).",
        ),
    ),
    "/api/history": _get(
        "A channel's kept publications",
        [
            _CHANNEL_QUERY,
            _query_int("limit", "at most this many"),
            _query_int("since", "those after this offset (with epoch)"),
            {"name": "epoch", "in": "query", "required": False, "schema": _STRING},
            _query_int("before", "the newest older than this offset (not with since)"),
        ],
        _json(
            _object(
                ["channel", "epoch", "offset", "recoverable", "publications"],
                {
                    "channel": _STRING,
                    "epoch": _STRING,
                    "offset": _INT,
                    "recoverable": {"type": "boolean"},
                    "publications": {
                        "type": "array",
                        "items": _object(
                            ["offset", "data", "time"],
                            {
                                "offset": _INT,
                                "data": {},
                                "time": {"type": "number"},
                                "tags": _ref("Tags"),
                            },
                        ),
                    },
                },
            ),
            "The publications, and the stream's position now.",
        ),
        **{"503": _UNAVAILABLE},
    ),
    "/api/stats": _get(
        "Open connections, channels, and counters of limits and refusals",
        [],
        _json(
            _object(
                ["connections", "subscribed_channels", "counters"],
                {
                    "connections": _INT,
                    "subscribed_channels": _INT,
                    "channels": _INT,
                    "history_bytes": _INT,
                    "engine_up": _INT,
                    "engine_failures": _INT,
                    "counters": {"type": "object", "additionalProperties": _INT},
                    "cluster": _object(
                        ["nodes", "answered", "connections", "by_node"],
                        {
                            "nodes": _INT,
                            "answered": _INT,
                            "connections": _INT,
                            "by_node": {"type": "array", "items": _SHARE},
                        },
                        description=(
                            "On a clustered engine (Redis) only: the nodes alive, how many "
                            "answered in time, their connections summed, and each one's "
                            "share (this node's first)."
                        ),
                    ),
                },
            ),
            "What this node holds now (and, on Redis, every node).",
        ),
    ),
    OPENAPI_PATH: {
        "get": {
            "summary": "This description",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
        }
    },
    "/health/live": {
        "get": {
            "summary": "The process serves HTTP",
            "security": [],
            "responses": {
                "200": _json(
                    _object(["status", "version"], {"status": {"const": "ok"}, "version": _STRING}),
                    "Alive.",
                )
            },
        }
    },
    "/health/ready": {
        "get": {
            "summary": "Listeners up and the engine answering: send traffic here",
            "security": [],
            "responses": {
                "200": _json(_ref("Readiness"), "Ready."),
                "503": _json(_ref("Readiness"), "Not ready; reason says why."),
            },
        }
    },
}

_ADMIN_REFUSALS: Json = {
    "403": _error("server.api_key is not set: the admin routes are off."),
    "404": _error("No such connection, or no such user subscribed, on any node."),
}
_NULLABLE_INT = {"type": ["integer", "null"], "minimum": 0}
_PATHS["/api/admin/connections"] = _get(
    "Every node's connections (admin)",
    [],
    _json(
        _object(
            ["node", "nodes", "answered", "total", "connections"],
            {
                "node": _STRING,
                "nodes": _INT,
                "answered": _INT,
                "total": _INT,
                "connections": {
                    "type": "array",
                    "maxItems": MAX_CONNECTIONS,
                    "items": _object(
                        ["client", "user", "transport", "ip", "age", "buffer", "channels", "node"],
                        {
                            "client": _STRING,
                            "user": {"type": ["string", "null"]},
                            "transport": _STRING,
                            "ip": _STRING,
                            "age": {"type": ["number", "null"], "minimum": 0},
                            "buffer": _INT,
                            "channels": _NULLABLE_INT,
                            "node": _STRING,
                        },
                    ),
                },
            },
        ),
        "The longest-open first, from every node (node: the one holding it; answered below"
        " nodes: a node did not answer in time); age in seconds (null: not kept while INFO"
        " logs are off).",
    ),
    **{"403": _ADMIN_REFUSALS["403"]},
)
_PATHS["/api/admin/channels"] = _get(
    "Channels with subscribers on any node, with their stream's offset (admin)",
    [],
    _json(
        _object(
            ["total", "channels", "time"],
            {
                "total": _INT,
                "time": {"type": "number"},
                "channels": {
                    "type": "array",
                    "maxItems": MAX_CHANNELS,
                    "items": _object(
                        ["channel", "subscribers", "offset", "epoch", "history_size"],
                        {
                            "channel": _STRING,
                            "subscribers": _INT,
                            "offset": _INT,
                            "epoch": _STRING,
                            "history_size": _INT,
                        },
                    ),
                },
            },
        ),
        "The most subscribed first; a rate is the offset's change over time.",
    ),
    **{"403": _ADMIN_REFUSALS["403"], "503": _UNAVAILABLE},
)
_PATHS["/api/admin/disconnect"] = _post(
    "Close a connection on whichever node holds it (admin)",
    _object(
        ["client"],
        {"client": {"type": "string", "minLength": 1}, "reconnect": {"type": "boolean"}},
        description="reconnect: close 1001 (come back); else 3503 (do not).",
    ),
    {"200": _json(_object(["disconnected"], {"disconnected": _INT}), "Closed."), **_ADMIN_REFUSALS},
)
_PATHS["/api/admin/unsubscribe"] = _post(
    "Take a user's connections off a channel, each told why (admin)",
    _object(
        ["user", "channel"],
        {"user": {"type": "string", "minLength": 1}, "channel": _ref("Channel")},
    ),
    {
        "200": _json(_object(["unsubscribed"], {"unsubscribed": _INT}), "How many."),
        **_ADMIN_REFUSALS,
    },
)

_SCHEMAS["Readiness"] = _object(
    ["status", "checks", "engine", "version", "uptime"],
    {
        "status": {"enum": ["ready", "not ready"]},
        "checks": _object(["listeners", "engine"], {"listeners": _STRING, "engine": _STRING}),
        "engine": {"enum": ["sqlite", "memory", "redis"]},
        "version": _STRING,
        "uptime": {"type": "number"},
        "reason": _STRING,
    },
)


def openapi_document() -> Json:
    """The whole description, as a JSON-able dict (a new one each call)."""
    document: Json = orjson.loads(_document_bytes())
    return document


@cache
def _document_bytes() -> bytes:
    return orjson.dumps(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "orbiter HTTP API",
                "version": __version__,
                "description": (
                    "The app server's side of orbiter: publish, Orbited events, live-element "
                    "calls, channels, presence, history, stats; and the health probes. "
                    "Errors are {error: {status, message}}. docs/protocol.md has the rest."
                ),
            },
            "components": {
                "schemas": _SCHEMAS,
                "securitySchemes": {
                    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                    "Authorization": {
                        "type": "apiKey",
                        "in": "header",
                        "name": "Authorization",
                        "description": "'apikey KEY'",
                    },
                },
            },
            "paths": _PATHS,
        }
    )


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_document_bytes(), content_type="application/json")


def add_openapi_route(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi_json)
