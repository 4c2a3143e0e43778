"""The mounted element factories of a node, loaded from ``package.module:attribute``.

:class:`LiveHost` imports each ``[[live.element]]`` factory (or ``orbiter serve
--element``'s) when the node is made, and finds the :class:`LiveElement`
class it makes, whose template and widget the mount's page shows: the factory
is that class, or has an ``element_class`` attribute, or is annotated to
return it (``def makeChatter(self) -> ChatterElement``). What cannot be
loaded raises :class:`ElementLoadError` naming the mount and the problem.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orbiter.config.live import ElementMount, LiveSettings, RpcSettings
from orbiter.services.live.elements import LiveElement
from orbiter.services.live.hooks import Hooks
from orbiter.services.live.parking import Parking
from orbiter.services.live.rpc import RpcProxy

#: A widget class's name in the page: JavaScript identifiers, dotted.
_JS_NAME = re.compile(r"[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*", re.ASCII)


class ElementLoadError(ValueError):
    """A mount's factory cannot be imported or used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class MountedElement:
    path: str
    title: str
    factory: Callable[[], Any]
    element_class: type[LiveElement]


class LiveHost:
    """The live settings, the loaded mounts by path, and the elements kept for a reconnect."""

    def __init__(self, settings: LiveSettings, rpc: RpcSettings | None = None) -> None:
        self.settings = settings
        #: The RPC proxy to the app server (``[rpc]``), one HTTP client for the node.
        self.rpc = RpcProxy(rpc if rpc is not None else RpcSettings())
        self.mounts: dict[str, MountedElement] = {m.path: load_mount(m) for m in settings.mounts}
        hooks = Hooks(settings.call_timeout)
        self.parking = Parking(settings.grace_period, settings.max_parked, hooks)

    async def close(self) -> None:
        """The node is stopping: every element kept for a reconnect is detached."""
        await self.parking.close()
        await self.rpc.close()


def load_mount(mount: ElementMount) -> MountedElement:
    factory = _import(mount.factory)
    if not callable(factory):
        raise ElementLoadError(f"live element {mount.factory!r} is not callable")
    element_class = element_class_of(factory, mount.factory)
    if not _JS_NAME.fullmatch(element_class.widget_class):
        raise ElementLoadError(
            f"live element {mount.factory!r}: {element_class.__qualname__}.widget_class "
            f"{element_class.widget_class[:80]!r} is not a JavaScript name (like 'Chat.Widget')"
        )
    return MountedElement(mount.path, mount.title, factory, element_class)


def _import(name: str) -> Any:
    module_name, _, attribute = name.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ElementLoadError(
            f"live element {name!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ElementLoadError(f"live element {name!r}: {part!r} not found") from None
    return value


def element_class_of(factory: Any, name: str) -> type[LiveElement]:
    """The :class:`LiveElement` subclass ``factory`` makes (see the module docstring)."""
    candidates: list[Any] = [factory, getattr(factory, "element_class", None)]
    with contextlib.suppress(Exception):  # no annotations, or ones that do not resolve
        candidates.append(typing.get_type_hints(factory).get("return"))
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, LiveElement):
            return candidate
    raise ElementLoadError(
        f"live element {name!r}: cannot tell which LiveElement class it makes: make it the "
        "class, annotate its return type, or give it an 'element_class' attribute"
    )
