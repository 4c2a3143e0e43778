"""The element an application writes: :class:`LiveElement` and ``@expose``.

Only methods marked ``@expose`` can be called from the browser. When a
subclass is created, the methods so marked are collected into a read-only
table, name to function (:attr:`LiveElement.exposed`); a browser's call is
one lookup in that table, never an attribute lookup on the element, so a name
a browser sends (a dunder, a dotted path, an attribute of the class or of a
module) reaches nothing else. A subclass that overrides an exposed method
without ``@expose`` withdraws it; names starting with ``_`` cannot be exposed.

An element calls its browser widget with :meth:`LiveElement.call_remote`:
the call is sent at once, and the future it returns gives the widget's return
value, or fails with :class:`RemoteError`, :class:`RemoteTimeout` or
:class:`ConnectionLost` (awaiting it is optional: Athena's fire-and-forget
``callRemote`` from a sync method still works).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, TypeVar

from orbiter.protocol.live import TooManyCalls

__all__ = [
    "ConnectionLost",
    "Exposed",
    "LiveElement",
    "RemoteError",
    "RemoteTimeout",
    "TooManyCalls",
    "expose",
]

_MARK = "__orbiter_exposed__"
F = TypeVar("F", bound=Callable[..., Any])


class RemoteError(Exception):
    """The browser widget's method threw: ``type`` and ``message`` are what it said."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(f"{type_}: {message}")
        self.type = type_
        self.message = message


class RemoteTimeout(TimeoutError):
    """The browser did not answer a call in time (``timeout``, or ``live.call_timeout``)."""


class ConnectionLost(ConnectionError):
    """The element's connection is closed (or was, before the browser answered)."""


def expose(function: F) -> F:
    """Mark a method (``def`` or ``async def``) of a :class:`LiveElement` as callable
    from the browser; its return value (or exception) goes back to the caller."""
    if not inspect.isfunction(function):
        raise TypeError(
            f"@expose takes a function defined with def or async def, not {function!r} "
            "(put @expose outermost, and no staticmethod or classmethod)"
        )
    setattr(function, _MARK, True)
    return function


@dataclass(frozen=True, slots=True)
class Exposed:
    """One exposed method: its function (called with the element first) and signature."""

    name: str
    function: Callable[..., Any]
    signature: inspect.Signature


class Binding(Protocol):
    """What an attached element sees of its connection (``connection.py``)."""

    @property
    def user(self) -> str | None: ...

    @property
    def client_id(self) -> str: ...

    def call_remote(
        self, element: int, method: str, args: tuple[Any, ...], timeout: float | None
    ) -> asyncio.Future[Any]: ...


def _exposed_of(cls: type) -> dict[str, Exposed]:
    table: dict[str, Exposed] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if inspect.isfunction(value) and getattr(value, _MARK, False) is True:
                if name.startswith("_"):
                    raise TypeError(
                        f"{cls.__qualname__}.{name}: a name starting with '_' cannot be exposed"
                    )
                table[name] = Exposed(name, value, inspect.signature(value))
            else:
                table.pop(name, None)  # overridden without @expose: withdrawn
    return table


class LiveElement:
    """A server-side object with a browser widget, one per browser connection.

    Subclasses set :attr:`template` (the element's HTML, put in its page),
    :attr:`widget_js` (JavaScript defining the widget class, a subclass of
    ``Orbiter.Widget``) and :attr:`widget_class` (that class's global name),
    and mark with ``@expose`` what the widget may call. ``attached`` and
    ``detached`` run when the browser arrives and when its connection ends.
    """

    template: ClassVar[str] = ""
    widget_js: ClassVar[str] = ""
    widget_class: ClassVar[str] = "Orbiter.Widget"
    #: The exposed methods by name, collected when the class is created.
    exposed: ClassVar[Mapping[str, Exposed]] = MappingProxyType({})

    _orbiter_binding: Binding | None = None
    _orbiter_element: int = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.exposed = MappingProxyType(_exposed_of(cls))

    @property
    def user(self) -> str | None:
        """Who the connection is (its user, as ``connect`` or the token said), if anyone."""
        return None if self._orbiter_binding is None else self._orbiter_binding.user

    @property
    def client_id(self) -> str | None:
        """The server's id of the element's connection, while attached."""
        return None if self._orbiter_binding is None else self._orbiter_binding.client_id

    @property
    def is_attached(self) -> bool:
        return self._orbiter_binding is not None

    def call_remote(
        self, method: str, *args: Any, timeout: float | None = None
    ) -> asyncio.Future[Any]:
        """Call ``method`` of the browser widget with ``args`` (JSON values).

        Sent at once; the future gives the widget's return value, or fails with
        :class:`RemoteError`, :class:`RemoteTimeout` (after ``timeout`` seconds,
        default ``live.call_timeout``), :class:`ConnectionLost` or
        :class:`TooManyCalls`. Arguments JSON cannot carry raise
        :class:`~orbiter.protocol.live.NotJSON` here, naming the problem.
        """
        binding = self._orbiter_binding
        if binding is None:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionLost(f"{type(self).__name__} is not attached"))
            future.add_done_callback(_retrieve)
            return future
        return binding.call_remote(self._orbiter_element, method, args, timeout)

    def attached(self) -> Any:
        """The browser is here (called after its ``attach`` is answered); may be async."""

    def detached(self) -> Any:
        """The browser's connection ended (left, closed, timed out); may be async."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    """A call's failure is the awaiting caller's to see; an unawaited call's is not logged."""
    if not future.cancelled():
        future.exception()
