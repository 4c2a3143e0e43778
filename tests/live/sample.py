"""Elements the live-element tests mount (``tests.live.sample:...``)."""

from __future__ import annotations

import asyncio
from typing import Any

from orbiter.live import LiveElement, RemoteError, expose

#: Every Sample made, in order (the tests read what happened to them).
MADE: list[Sample] = []


class Sample(LiveElement):
    widget_class = "SampleWidget"
    template = '<p name="out">sample</p>'
    widget_js = """
class SampleWidget extends Orbiter.Widget {
  answer(q) { return q + "!"; }
  later(x) { return new Promise((resolve) => setTimeout(() => resolve(x * 2), 10)); }
  boom() { throw new RangeError("too far"); }
  refuse() { return Promise.reject(new Error("no thanks")); }
  _secret() { return "private"; }
}
"""
    secret = "class attribute"

    def __init__(self) -> None:
        self.events: list[str] = []
        self.cancelled = False
        MADE.append(self)

    @expose
    def add(self, a: Any, b: Any) -> Any:
        return a + b

    @expose
    def optional(self, a: int, b: int = 2, *rest: int) -> list[int]:
        return [a, b, *rest]

    @expose
    async def slow(self, seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "done"

    @expose
    def fail(self) -> None:
        raise ValueError("bad value")

    @expose
    def fail_loudly(self) -> None:
        raise RuntimeError("x" * 100_000)

    @expose
    async def fail_later(self) -> None:
        await asyncio.sleep(0)
        raise KeyError("gone")

    @expose
    def unsendable(self) -> Any:
        return {1, 2}

    @expose
    async def ask(self, question: str, timeout: float = 5.0) -> Any:
        return await self.call_remote("answer", question, timeout=timeout)

    @expose
    async def relay(self, method: str, *args: Any) -> Any:
        """Call the widget's ``method``: its value, or its error as ``[type, message]``."""
        try:
            return {"value": await self.call_remote(method, *args, timeout=5)}
        except RemoteError as exc:
            return {"error": [exc.type, exc.message]}

    @expose
    def whoami(self) -> Any:
        return {"user": self.user, "client": self.client_id}

    def hidden(self) -> str:
        return "not exposed"

    def attached(self) -> None:
        self.events.append("attached")

    def detached(self) -> None:
        self.events.append("detached")


class Narrower(Sample):
    """Withdraws ``add`` by overriding it without @expose."""

    def add(self, a: Any, b: Any) -> Any:
        return "withdrawn"


class Spy(Sample):
    """Records every attribute looked up on it once ``watching`` is set."""

    watching = False
    looked_up: list[str]

    def __getattribute__(self, name: str) -> Any:
        if object.__getattribute__(self, "watching"):
            object.__getattribute__(self, "looked_up").append(name)
        return object.__getattribute__(self, name)


def make_spy() -> Spy:
    spy = Spy()
    spy.looked_up = []
    return spy


def make() -> Sample:
    return Sample()


def make_narrower() -> Narrower:
    return Narrower()


def not_an_element() -> Sample:
    """Says it makes a Sample, but does not."""
    return object()  # type: ignore[return-value]


class BadWidgetName(Sample):
    widget_class = "Widget); alert(1); ("
