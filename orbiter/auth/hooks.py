"""The app server's HTTP callbacks for connect, subscribe and publish (hookbox model).

Each configured hook is a ``POST`` of a JSON object to the app, carrying the
browser's cookies and chosen headers (:data:`FORWARDED_HEADERS`) as the
request's own headers, so the app's usual session middleware knows the user.
Bodies:

- connect: ``{"client", "transport", "peer", "user"?}`` (``user``: from a
  verified token, if one was given);
- subscribe: ``{"client", "user", "channel"}``;
- publish: ``{"client", "user", "channel", "data"}``.

The app answers ``200`` with a JSON object: ``{"allow": true}`` (optionally
with rewrites: ``user``, ``info``, ``channels``, ``keys`` on connect;
``data`` on publish, which replaces the published payload) or
``{"allow": false, "reason": "..."}``. Anything else (another status, a body
that is not such an object, a time-out after ``hooks.timeout`` seconds, a
refused connection) denies: hooks fail closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp
import orjson

from orbiter.config.settings import HookSettings
from orbiter.model import JSON

log = logging.getLogger("orbiter.hooks")

#: Browser request headers passed on to hooks (besides these, none).
FORWARDED_HEADERS = (
    "Cookie",
    "Authorization",
    "Origin",
    "Referer",
    "User-Agent",
    "Accept-Language",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Real-IP",
)
#: Largest hook answer read, in bytes.
MAX_ANSWER = 1_048_576


class HookDenied(Exception):
    """The hook said no, or could not be asked (fail closed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class HookAnswer:
    """An ``allow: true`` answer and its fields (rewrites), as the app sent them."""

    fields: dict[str, Any]

    def has(self, name: str) -> bool:
        return name in self.fields

    def get(self, name: str) -> Any:
        return self.fields.get(name)


async def read_answer(response: aiohttp.ClientResponse) -> bytes:
    """An app server's answer body, whole, up to :data:`MAX_ANSWER` bytes and one more.

    ``read(n)`` gives what has arrived (often one TCP segment), so it is called
    until the body ends or passes the bound (a longer body is not read on).
    """
    body = b""
    while len(body) <= MAX_ANSWER:
        chunk = await response.content.read(MAX_ANSWER + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return body


def forwarded(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a browser's request that hooks receive."""
    return {name: headers[name] for name in FORWARDED_HEADERS if name in headers}


class AppHooks:
    """Calls the configured hooks; one HTTP client session for all of them."""

    def __init__(self, settings: HookSettings) -> None:
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None

    async def connect(self, payload: dict[str, Any], headers: Mapping[str, str]) -> HookAnswer:
        return await self._call("connect", self.settings.connect_url, payload, headers)

    async def subscribe(
        self, client: str, user: str | None, channel: str, headers: Mapping[str, str]
    ) -> HookAnswer:
        payload = {"client": client, "user": user, "channel": channel}
        return await self._call("subscribe", self.settings.subscribe_url, payload, headers)

    async def publish(
        self, client: str, user: str | None, channel: str, data: JSON, headers: Mapping[str, str]
    ) -> HookAnswer:
        payload = {"client": client, "user": user, "channel": channel, "data": data}
        return await self._call("publish", self.settings.publish_url, payload, headers)

    async def _call(
        self, name: str, url: str, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> HookAnswer:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        sent = {**forwarded(headers), "Content-Type": "application/json"}
        try:
            async with asyncio.timeout(self.settings.timeout):
                async with self._http.post(
                    url, data=orjson.dumps(payload), headers=sent, allow_redirects=False
                ) as response:
                    body = await read_answer(response)
                    status = response.status
        except TimeoutError:
            self._fail(name, f"the app's {name} hook did not answer in time")
        except (aiohttp.ClientError, OSError) as exc:
            self._fail(name, f"the app's {name} hook could not be reached: {exc}")
        if status != 200:
            self._fail(name, f"the app's {name} hook answered HTTP {status}")
        try:
            answer = orjson.loads(body) if len(body) <= MAX_ANSWER else None
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or type(answer.get("allow")) is not bool:
            self._fail(name, f"the app's {name} hook answer has no 'allow' true or false")
        if not answer["allow"]:
            reason = answer.get("reason")
            raise HookDenied(reason if isinstance(reason, str) and reason else f"{name} denied")
        return HookAnswer(answer)

    def _fail(self, name: str, message: str) -> NoReturn:
        log.warning("%s; denying (hooks fail closed)", message)
        raise HookDenied(f"{name} refused: the app server could not decide")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
