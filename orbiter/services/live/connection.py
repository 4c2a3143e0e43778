"""One connection's live elements and the calls between them and the browser.

The native session hands :class:`LiveConnection` the live ops it parsed
(``attach``, ``call``, ``return``) and calls :meth:`LiveConnection.close`
when the connection ends. Replies and call pushes go out through the
session's ``send``, in the outbox with everything else.

- ``attach`` makes an element with the mount's factory (at most
  ``live.max_elements``); its ``attached`` hook runs once the reply is queued.
- ``call`` finds the method in the element class's table of exposed methods
  (never by attribute lookup), checks the arguments against its signature,
  and runs it: a sync method at once, an async one as a task cut at
  ``live.call_timeout``; calls are bounded by a token bucket
  (``live.call_rate``) and by ``live.max_calls`` running at once. The reply
  holds the value, or the exception's type and message (with the traceback
  only when ``live.debug``).
- Server-to-browser calls (:meth:`LiveConnection.call_remote`) get ids from
  :class:`~orbiter.protocol.live.CallIds` (at most ``live.max_calls``
  unanswered) and a timer; ``return`` settles them.
- ``rpc`` goes to the app server through the node's RPC proxy (``rpc.py``),
  counted like a call.
- ``close`` cancels the browser's running calls, fails the unanswered calls to
  the browser with :class:`ConnectionLost`, and parks every element for a
  reconnect (``parking.py``; an ``attach`` with its ``resume`` token takes it
  back) or, if it cannot be parked, runs its ``detached`` hook.
- An ``attach`` with the token of an element another connection still holds
  (its page came back before the server noticed the old connection end: over
  polling, up to ``sockjs.disconnect_delay``) takes it over: the old
  connection :meth:`~LiveConnection.surrender` s it, without a hook, as its
  ``close`` would have parked it: the calls its old page made are cancelled,
  the calls to its old widget fail with :class:`ConnectionLost` (never sent
  again: the page may have run them), and its later close leaves it alone.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from orbiter.auth import Credentials
from orbiter.config.live import LiveSettings
from orbiter.logs import Counters
from orbiter.protocol.live import (
    MAX_ERROR_MESSAGE,
    Attach,
    Call,
    CallIds,
    NotJSON,
    Return,
    Rpc,
    TooManyCalls,
    encode_call_error,
    encode_call_push,
    encode_call_result,
)
from orbiter.protocol.native import ErrorCode, encode_error, encode_reply
from orbiter.services.live.elements import (
    ConnectionLost,
    LiveElement,
    RemoteError,
    RemoteTimeout,
    _retrieve,
)
from orbiter.services.live.hooks import Hooks
from orbiter.services.live.host import LiveHost
from orbiter.services.live.rpc import RpcError, RpcUnavailable
from orbiter.services.rate import TokenBucket

log = logging.getLogger("orbiter.live")


class Caller(Protocol):
    """What the live connection needs of its session."""

    @property
    def user(self) -> str | None: ...

    @property
    def client_id(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def credentials(self) -> Credentials: ...


class LiveConnection:
    """The live elements of one connection (see the module docstring)."""

    def __init__(
        self,
        host: LiveHost,
        caller: Caller,
        send: Callable[[bytes], None],
        counters: Counters,
    ) -> None:
        self._host = host
        self._settings: LiveSettings = host.settings
        self._caller = caller
        self._send = send
        self._counters = counters
        self._elements: dict[int, LiveElement] = {}
        self._next_element = 1
        #: The browser's calls running now, each with its element's id (0: an rpc).
        self._running: dict[asyncio.Task[None], int] = {}
        self._hooks = Hooks(self._settings.call_timeout)
        #: Each element's resume token and mount, to park it for a reconnect.
        self._resume: dict[int, tuple[str, str]] = {}
        self._ids = CallIds(self._settings.max_calls)
        #: The calls to the browser not answered yet: future, timer, element id.
        self._waiting: dict[int, tuple[asyncio.Future[Any], asyncio.TimerHandle, int]] = {}
        self._bucket = TokenBucket(
            self._settings.call_rate, self._settings.call_burst, time.monotonic()
        )
        self._closed = False

    # The Binding an element sees (elements.py).
    @property
    def user(self) -> str | None:
        return self._caller.user

    @property
    def client_id(self) -> str:
        return self._caller.client_id

    @property
    def closed(self) -> bool:
        return self._closed or self._caller.closed

    @property
    def elements(self) -> dict[int, LiveElement]:
        return dict(self._elements)

    def widgets(self) -> list[tuple[int, str]]:
        """Each attached element's id and mount path."""
        return [(element, mount) for element, (_, mount) in self._resume.items()]

    # ------------------------------------------------------------------ attach

    def attach(self, command: Attach) -> None:
        if self.closed:
            return
        mount = self._host.mounts.get(command.mount)
        if mount is None:
            unknown = f"no element is mounted at {command.mount!r}"
            self._error(command.id, ErrorCode.NOT_EXPOSED, unknown)
            return
        limit = self._settings.max_elements
        if len(self._elements) >= limit:
            self._limit("limit_live_elements")
            self._error(
                command.id,
                ErrorCode.LIMIT_EXCEEDED,
                f"a connection may attach at most {limit} elements (live.max_elements)",
            )
            return
        parking = self._host.parking
        element = None
        if command.resume is not None:
            element = parking.take(command.resume, mount.path, self.user, self)
        resumed = element is not None
        if element is None:
            try:
                element = mount.factory()
            except Exception as exc:
                log.exception("live element factory %s failed", mount.path)
                self._failed(command.id, "the element's factory", exc)
                return
            if not isinstance(element, LiveElement) or element._orbiter_binding is not None:
                log.error("live factory at %s gave %r, not a new LiveElement", mount.path, element)
                self._error(
                    command.id, ErrorCode.INTERNAL, "the element's factory gave no new element"
                )
                return
        token = secrets.token_urlsafe(16)  # a new one on a resume too: each is used once
        element_id, self._next_element = self._next_element, self._next_element + 1
        element._orbiter_binding, element._orbiter_element = self, element_id
        self._elements[element_id] = element
        self._resume[element_id] = (token, mount.path)
        parking.hold(token, self, mount.path, self.user)
        result = {
            "element": element_id,
            "widget": type(element).widget_class,
            "resume": token,
            "resumed": resumed,
        }
        self._send(encode_reply(command.id, result))
        if not resumed:  # after the reply: the widget exists when the hook calls it
            asyncio.get_running_loop().call_soon(self._attached, element)

    def _attached(self, element: LiveElement) -> None:
        if not self.closed and element._orbiter_binding is self:
            self._hooks.run(element, "attached")

    # ------------------------------------------------------------------ calls from the browser

    def call(self, command: Call) -> None:
        if self.closed or not self._admit(command.id):
            return
        element = self._elements.get(command.element)
        if element is None:
            self._error(
                command.id,
                ErrorCode.NOT_EXPOSED,
                f"no element {command.element} on this connection",
            )
            return
        exposed = type(element).exposed.get(command.method)
        if exposed is None:
            self._error(
                command.id,
                ErrorCode.NOT_EXPOSED,
                f"{type(element).__name__} exposes no method {command.method[:64]!r}",
            )
            return
        try:
            exposed.signature.bind(element, *command.args)
        except TypeError as exc:
            self._error(command.id, ErrorCode.BAD_REQUEST, f"{exposed.name}(): {exc}")
            return
        try:
            result = exposed.function(element, *command.args)
        except Exception as exc:
            self._failed(command.id, f"{exposed.name}()", exc)
            return
        if inspect.iscoroutine(result):
            self._start(self._run(command.id, exposed.name, result), command.element)
        elif inspect.isawaitable(result):
            awaited = _awaiting(result)
            self._start(self._run(command.id, exposed.name, awaited), command.element)
        else:
            self._result(command.id, exposed.name, result)

    def _limit(self, counter: str) -> None:
        """A limit refused something of this connection: counted, and a (rate-limited) line."""
        caller = self._caller
        self._counters.limit(counter, caller.client_id, caller.credentials.peer)

    def _admit(self, id_: int) -> bool:
        """Whether one more call may run now (the call rate, live.max_calls); else refused."""
        if not self._bucket.take(time.monotonic()):
            self._limit("limit_call_rate")
            settings = self._settings
            self._error(
                id_,
                ErrorCode.LIMIT_EXCEEDED,
                f"calling too fast: at most {settings.call_rate:g} per second (bursts of "
                f"{settings.call_burst}; live.call_rate); not called",
            )
            return False
        if len(self._running) >= self._settings.max_calls:
            self._limit("limit_live_calls")
            self._error(
                id_,
                ErrorCode.LIMIT_EXCEEDED,
                f"{self._settings.max_calls} calls of this connection are still running "
                "(live.max_calls); not called",
            )
            return False
        return True

    def _start(self, coroutine: Coroutine[Any, Any, None], element: int) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._running[task] = element
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)

    async def _run(self, id_: int, name: str, coroutine: Coroutine[Any, Any, Any]) -> None:
        timeout = self._settings.call_timeout
        try:
            async with asyncio.timeout(timeout):
                value = await coroutine
        except TimeoutError:
            self._error(
                id_,
                ErrorCode.CALL_TIMEOUT,
                f"{name}() did not finish in {timeout:g} s (live.call_timeout)",
            )
        except Exception as exc:
            self._failed(id_, f"{name}()", exc)
        else:
            self._result(id_, name, value)

    # ------------------------------------------------------------------ the RPC proxy

    def rpc(self, command: Rpc) -> None:
        if self.closed:
            return
        if not self._host.rpc.enabled:
            self._error(command.id, ErrorCode.NOT_EXPOSED, "no RPC proxy is configured (rpc.url)")
            return
        if self._admit(command.id):
            self._start(self._rpc(command), 0)

    async def _rpc(self, command: Rpc) -> None:
        proxy = self._host.rpc
        try:
            value = await proxy.call(
                command.method,
                command.data,
                client=self._caller.client_id,
                user=self._caller.user,
                headers=self._caller.credentials.headers,
            )
        except TimeoutError:
            late = f"the app server did not answer in {proxy.settings.timeout:g} s (rpc.timeout)"
            self._error(command.id, ErrorCode.CALL_TIMEOUT, late)
        except RpcUnavailable as exc:
            self._error(command.id, ErrorCode.RPC_UNAVAILABLE, str(exc))
        except RpcError as exc:
            if not self.closed:
                failed = encode_call_error(command.id, ErrorCode.CALL_FAILED, exc.type, exc.message)
                self._send(failed)
        else:
            self._result(command.id, f"rpc {command.method[:64]!r}", value)

    def _result(self, id_: int, name: str, value: Any) -> None:
        if self.closed:
            return
        try:
            reply = encode_call_result(id_, name, value)
        except NotJSON as exc:
            log.warning("%s", exc)
            self._send(encode_call_error(id_, ErrorCode.CALL_FAILED, "TypeError", str(exc)))
            return
        self._send(reply)

    def _failed(self, id_: int, what: str, exc: Exception) -> None:
        log.info("%s raised %s: %s", what, type(exc).__name__, exc, exc_info=self._settings.debug)
        if self.closed:
            return
        tb = traceback.format_exc() if self._settings.debug else None
        message = str(exc)[:MAX_ERROR_MESSAGE]  # an exception's text can be any size
        self._send(encode_call_error(id_, ErrorCode.CALL_FAILED, type(exc).__name__, message, tb))

    def _error(self, id_: int, code: ErrorCode, message: str) -> None:
        log.info("client %s: %s", self._caller.client_id, message)
        if not self.closed:
            self._send(encode_error(id_, code, message))

    # ------------------------------------------------------------------ calls to the browser

    def call_remote(
        self, element: int, method: str, args: tuple[Any, ...], timeout: float | None
    ) -> asyncio.Future[Any]:
        """Send a call push; the future settles with the widget's answer (elements.py)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        future.add_done_callback(_retrieve)
        if self.closed or self._elements.get(element) is None:
            future.set_exception(ConnectionLost("the element's connection is closed"))
            return future
        try:
            call = self._ids.start()
        except TooManyCalls as exc:
            self._limit("limit_live_calls")
            future.set_exception(exc)
            return future
        try:
            push = encode_call_push(call, element, method, args)
        except NotJSON:
            self._ids.finish(call)
            raise
        delay = self._settings.call_timeout if timeout is None else timeout
        timer = loop.call_later(delay, self._timed_out, call, method, delay)
        self._waiting[call] = (future, timer, element)
        self._send(push)  # a full outbox closes the session: close() fails the future
        return future

    def returned(self, answer: Return) -> None:
        if not self._ids.finish(answer.call):
            log.debug("client %s: answer to call %d, not waited for", self.client_id, answer.call)
            return
        future, timer, _ = self._waiting.pop(answer.call)
        timer.cancel()
        if future.done():
            return
        if answer.error is not None:
            future.set_exception(RemoteError(*answer.error))
        else:
            future.set_result(answer.value)

    def _timed_out(self, call: int, method: str, delay: float) -> None:
        self._ids.finish(call)
        entry = self._waiting.pop(call, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(
                RemoteTimeout(f"the browser did not answer {method}() in {delay:g} s")
            )

    def _fail_waiting(self, element: int | None, why: str) -> None:
        """Fail the unanswered calls to the browser (to ``element``'s widget, or all)."""
        for call, (future, timer, of) in list(self._waiting.items()):
            if element is not None and of != element:
                continue
            del self._waiting[call]
            timer.cancel()
            self._ids.finish(call)
            if not future.done():
                future.set_exception(ConnectionLost(why))

    # ------------------------------------------------------------------ the end

    def surrender(self, token: str) -> LiveElement | None:
        """Give up the element of ``token``: its page attached it on a new connection.

        Called by the parking (``parking.py``), which checked the token, mount and
        user. No hook runs; the calls the old page made to it are cancelled and
        those to the old widget fail with :class:`ConnectionLost` (see the module
        docstring); this connection's close will neither park nor detach it.
        """
        element_id = next((e for e, (held, _) in self._resume.items() if held == token), None)
        if element_id is None:
            return None
        del self._resume[element_id]
        element = self._elements.pop(element_id)
        element._orbiter_binding = None
        for task, of in list(self._running.items()):
            if of == element_id:
                task.cancel()
        self._fail_waiting(
            element_id, "the page attached the element on a new connection before the answer"
        )
        log.info("client %s: element %d taken over by a new connection", self.client_id, element_id)
        return element

    async def close(self) -> None:
        """The connection is gone: stop its calls, fail those waiting, detach every element."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._running):
            task.cancel()
        self._fail_waiting(None, "the connection closed before the answer")
        self._hooks.cancel()  # an attached hook still running
        elements, self._elements = self._elements, {}
        parking = self._host.parking
        for element_id, element in elements.items():
            element._orbiter_binding = None
            token, mount = self._resume.pop(element_id)
            if not parking.park(token, element, mount, self.user):
                self._hooks.run(element, "detached")
        await self._hooks.wait()  # each detached hook is itself cut at live.call_timeout


async def _awaiting(awaitable: Any) -> Any:
    return await awaitable
