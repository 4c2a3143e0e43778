"""How channel data (JSON values) maps to STOMP bodies, and STOMP bodies to data.

- A publication whose data is a string becomes a ``text/plain;charset=utf-8``
  body (the string's UTF-8 bytes); any other JSON value an
  ``application/json`` body (its JSON text).
- A ``SEND`` to a topic whose ``content-type`` is ``application/json`` (or
  ``+json``) is parsed as JSON and published as that value; any other body
  is published as a string, so it must be UTF-8 text (topics are channels,
  which carry JSON; binary bodies go to queues, which keep them as they are).
"""

from __future__ import annotations

import orjson

from orbiter.model import JSON

TEXT = "text/plain;charset=utf-8"
JSON_TYPE = "application/json"


class BodyError(ValueError):
    """A SEND body that cannot be published to a channel; the message says why."""


def body_of(data: JSON) -> tuple[str, bytes]:
    """(content-type, body) for a publication's data."""
    if isinstance(data, str):
        return TEXT, data.encode()
    return JSON_TYPE, orjson.dumps(data)


def data_of(content_type: str | None, body: bytes) -> JSON:
    """The data a SEND to a topic publishes."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime == JSON_TYPE or mime.endswith("+json"):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BodyError(f"the body is not valid JSON (content-type {mime}): {exc}") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(
            "the body is not UTF-8 text: topics carry text or JSON (send binary bodies to a queue)"
        ) from None
