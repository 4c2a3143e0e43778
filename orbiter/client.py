"""Python clients of the HTTP API, for app servers: :class:`Client` and :class:`AsyncClient`.

``Client(url).event(["alice, 0, /chat"], "<b>hi</b>")`` is the seed's
pyorbited call; ``publish(channel, data)`` is the native one. Both clients
share the request shapes and the error handling below and differ only in
how they move bytes (stdlib ``urllib`` for the blocking client, aiohttp for
the asyncio one). The API key defaults to ``$ORBITER_API_KEY``.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson

from orbiter.model import JSON

DEFAULT_URL = "http://127.0.0.1:8000"


class OrbiterError(Exception):
    """The server refused a call; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    body: bytes | None = None


def _publish(channel: str, data: JSON, tags: dict[str, str] | None) -> _Call:
    body: dict[str, Any] = {"channel": channel, "data": data}
    if tags:
        body["tags"] = tags
    return _Call("POST", "/api/publish", orjson.dumps(body))


def _event(keys: str | list[str], message: JSON) -> _Call:
    return _Call("POST", "/api/event", orjson.dumps({"keys": keys, "data": message}))


def _widget_call(
    method: str,
    args: tuple[Any, ...],
    target: dict[str, str],
    mount: str | None,
    wait: bool,
    timeout: float | None,
) -> _Call:
    if len(target) > 1 or (not target and mount is None):
        raise TypeError(
            "name exactly one of user=, key=, channel= (or only mount=: all its widgets)"
        )
    body: dict[str, Any] = {"method": method, "args": args, "wait": wait, **target}
    if mount is not None:
        body["mount"] = mount
    if timeout is not None:
        body["timeout"] = timeout
    return _Call("POST", "/api/call", orjson.dumps(body))


def _target(user: str | None, key: str | None, channel: str | None) -> dict[str, str]:
    named = {"user": user, "key": key, "channel": channel}
    return {name: value for name, value in named.items() if value is not None}


def _channels() -> _Call:
    return _Call("GET", "/api/channels")


def _history(
    channel: str, limit: int | None, since: tuple[int, str] | None, before: int | None = None
) -> _Call:
    query: dict[str, str | int] = {"channel": channel}
    if limit is not None:
        query["limit"] = limit
    if since is not None:
        query["since"], query["epoch"] = since
    if before is not None:
        query["before"] = before
    return _Call("GET", "/api/history?" + urllib.parse.urlencode(query))


def _wall(text: str) -> _Call:
    return _Call("POST", "/api/wall", orjson.dumps({"text": text}))


def _stats() -> _Call:
    return _Call("GET", "/api/stats")


def _presence(channel: str) -> _Call:
    return _Call("GET", "/api/presence?" + urllib.parse.urlencode({"channel": channel}))


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    return headers


def _result(status: int, body: bytes) -> Any:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        payload = None
    if status >= 400:
        message = body.decode(errors="replace")[:200]
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            message = str(payload["error"].get("message", message))
        raise OrbiterError(status, message)
    if payload is None:
        raise OrbiterError(status, "the server's answer is not JSON")
    return payload


class Client:
    """Blocking client, safe to use from any web framework's request handler."""

    def __init__(
        self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = 10.0
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("ORBITER_API_KEY")
        self.timeout = timeout

    def publish(
        self, channel: str, data: JSON, tags: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Publish ``data`` (and ``tags``) to ``channel``; returns ``{"offset", "epoch"}``."""
        result: dict[str, Any] = self._call(_publish(channel, data, tags))
        return result

    def event(self, keys: str | list[str], message: JSON) -> list[dict[str, Any]]:
        """pyorbited's ``event``: send ``message`` to each Orbited connection key."""
        results: list[dict[str, Any]] = self._call(_event(keys, message))["results"]
        return results

    def call(
        self,
        method: str,
        *args: JSON,
        user: str | None = None,
        key: str | None = None,
        channel: str | None = None,
        mount: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Call ``method`` on the browser widgets (live elements) of a ``user``, a ``key`` or
        a ``channel``'s subscribers on this node (or, with ``mount`` alone, every widget of
        that mount): ``{"calls": n}``, or with ``wait`` ``{"results": [{client, element,
        mount, value | error}]}`` within ``timeout``."""
        call = _widget_call(method, args, _target(user, key, channel), mount, wait, timeout)
        result: dict[str, Any] = self._call(call)
        return result

    def wall(self, text: str) -> dict[str, Any]:
        """Show ``text`` on every chat page (the server-wide wall); ``{"channel", "offset",
        "epoch"}``."""
        result: dict[str, Any] = self._call(_wall(text))
        return result

    def channels(self) -> dict[str, int]:
        """Channels with subscribers, and how many each has."""
        channels: dict[str, int] = self._call(_channels())["channels"]
        return channels

    def history(
        self,
        channel: str,
        limit: int | None = None,
        since: tuple[int, str] | None = None,
        before: int | None = None,
    ) -> dict[str, Any]:
        """A channel's retained publications and its current ``offset`` and ``epoch``;
        ``before``: the newest ``limit`` older than that offset (a page further back)."""
        result: dict[str, Any] = self._call(_history(channel, limit, since, before))
        return result

    def presence(self, channel: str) -> dict[str, Any]:
        """Who is on ``channel``: ``{"clients": n, "users": [{user, info, clients}]}``."""
        result: dict[str, Any] = self._call(_presence(channel))
        return result

    def stats(self) -> dict[str, Any]:
        """Open connections and channels, and counters of limit violations and refusals."""
        result: dict[str, Any] = self._call(_stats())
        return result

    def _call(self, call: _Call) -> Any:
        request = urllib.request.Request(
            self.url + call.path,
            data=call.body,
            method=call.method,
            headers=_headers(self.api_key),
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _result(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return _result(exc.code, exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OrbiterError(0, f"cannot reach orbiter at {self.url}: {reason}") from None


class AsyncClient:
    """asyncio client; use as ``async with AsyncClient(url) as orbit: ...``."""

    def __init__(
        self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = 10.0
    ) -> None:
        import aiohttp

        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("ORBITER_API_KEY")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def publish(
        self, channel: str, data: JSON, tags: dict[str, str] | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(_publish(channel, data, tags))
        return result

    async def event(self, keys: str | list[str], message: JSON) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = (await self._call(_event(keys, message)))["results"]
        return results

    async def call(
        self,
        method: str,
        *args: JSON,
        user: str | None = None,
        key: str | None = None,
        channel: str | None = None,
        mount: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """:meth:`Client.call`."""
        call = _widget_call(method, args, _target(user, key, channel), mount, wait, timeout)
        result: dict[str, Any] = await self._call(call)
        return result

    async def wall(self, text: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(_wall(text))
        return result

    async def channels(self) -> dict[str, int]:
        channels: dict[str, int] = (await self._call(_channels()))["channels"]
        return channels

    async def history(
        self,
        channel: str,
        limit: int | None = None,
        since: tuple[int, str] | None = None,
        before: int | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(_history(channel, limit, since, before))
        return result

    async def presence(self, channel: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(_presence(channel))
        return result

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(_stats())
        return result

    async def _call(self, call: _Call) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(
                call.method,
                self.url + call.path,
                data=call.body,
                headers=_headers(self.api_key),
            ) as response:
                return _result(response.status, await response.read())
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise OrbiterError(0, f"cannot reach orbiter at {self.url}: {exc}") from None
