"""The RPC proxy: a browser's ``rpc`` POSTed to the app server, with who is calling.

``POST [rpc] url`` with the JSON body ``{"method", "data", "client", "user"}``
(``user``: the connection's, from its token or key; ``client``: the server's
id for the connection) and the browser's cookies and chosen headers as the
request's own (as the connect hook gets them, ``auth/hooks.py``), so the
app's session middleware knows the caller. The app answers ``200`` with
``{"result": any JSON}`` or ``{"error": {"message", "type"?}}``.
Anything else (another status, a body that is not such an object, a refused
connection) is :class:`RpcUnavailable`; ``rpc.timeout`` is ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from orbiter.auth.hooks import MAX_ANSWER, forwarded, read_answer
from orbiter.config.live import RpcSettings
from orbiter.model import JSON

log = logging.getLogger("orbiter.live")


class RpcError(Exception):
    """The app server answered with an error: its ``type`` and ``message``."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message


class RpcUnavailable(Exception):
    """The app server could not be reached, or its answer was not one."""


class RpcProxy:
    """One HTTP client for every connection's ``rpc``, made on first use."""

    def __init__(self, settings: RpcSettings) -> None:
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.url)

    async def call(
        self,
        method: str,
        data: JSON,
        *,
        client: str,
        user: str | None,
        headers: Mapping[str, str],
    ) -> Any:
        """The app's ``result``; raises RpcError, RpcUnavailable or TimeoutError."""
        if self._http is None:
            self._http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        payload = orjson.dumps({"method": method, "data": data, "client": client, "user": user})
        sent = {**forwarded(headers), "Content-Type": "application/json"}
        try:
            async with (
                asyncio.timeout(self.settings.timeout),
                self._http.post(
                    self.settings.url, data=payload, headers=sent, allow_redirects=False
                ) as response,
            ):
                status = response.status
                body = await read_answer(response)
        except TimeoutError:  # an OSError too: told apart first
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise self._unavailable(f"cannot be reached: {exc}") from None
        if status != 200:
            raise self._unavailable(f"answered HTTP {status}")
        try:
            answer = orjson.loads(body) if len(body) <= MAX_ANSWER else None
        except orjson.JSONDecodeError:
            answer = None
        if isinstance(answer, dict) and "result" in answer:
            return answer["result"]
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            kind = error.get("type")
            raise RpcError(kind if isinstance(kind, str) and kind else "RpcError", error["message"])
        raise self._unavailable("answered neither {'result'} nor {'error': {'message'}}")

    def _unavailable(self, what: str) -> RpcUnavailable:
        log.warning("rpc proxy: the app server (%s) %s", self.settings.url, what)
        return RpcUnavailable(f"the app server {what}")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
