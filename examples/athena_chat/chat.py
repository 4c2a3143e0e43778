"""Nevow Athena's chat tutorial, ported to orbiter's live elements.

One :class:`ChatRoom` keeps every connected :class:`ChatterElement`; the
factory ``chat`` (the room's ``makeChatter``) makes one element per browser
connection and adds it to the room. The widget calls ``setUsername`` and
``say``; the room calls ``wall`` and ``hear`` on every element, which call
the widgets' ``displayMessage`` and ``displayUserMessage``. A browser that
leaves is noticed (``detached``) and the room is told.

Run it: ``orbiter serve --element examples.athena_chat.chat:chat`` from the
repository, or ``orbiter serve --element chat:chat`` from this directory.
"""

from __future__ import annotations

from pathlib import Path

from orbiter.live import LiveElement, expose

HERE = Path(__file__).resolve().parent
#: The longest name and line a chatter may send.
MAX_USERNAME = 32
MAX_MESSAGE = 1000


class ChatRoom:
    def __init__(self) -> None:
        self.chatters: list[ChatterElement] = []

    def wall(self, message: str) -> None:
        for chatter in self.chatters:
            chatter.wall(message)

    def tellEverybody(self, who: ChatterElement, what: str) -> None:
        for chatter in self.chatters:
            chatter.hear(who.username or "?", what)

    def makeChatter(self) -> ChatterElement:
        elem = ChatterElement(self)
        self.chatters.append(elem)
        return elem

    def leave(self, chatter: ChatterElement) -> None:
        """``chatter``'s browser is gone: forget it, and tell the others."""
        if chatter in self.chatters:
            self.chatters.remove(chatter)
        if chatter.username is not None:
            self.wall(" * user " + chatter.username + " has left the room")


# The element to serve: each call makes a chatter in the one room.
chat = ChatRoom().makeChatter


class ChatterElement(LiveElement):
    template = (HERE / "template.html").read_text()
    widget_js = (HERE / "chatthing.js").read_text()
    widget_class = "ChatThing.ChatterWidget"

    def __init__(self, room: ChatRoom) -> None:
        self.room = room
        self.username: str | None = None

    @expose
    def setUsername(self, username: str) -> None:
        if not isinstance(username, str) or not 0 < len(username.strip()) <= MAX_USERNAME:
            raise ValueError(f"a username is 1 to {MAX_USERNAME} characters")
        if self.username is not None:
            raise ValueError(f"already logged in as {self.username}")
        self.username = username.strip()
        message = " * user " + self.username + " has joined the room"
        self.room.wall(message)

    @expose
    def say(self, message: str) -> None:
        if self.username is None:
            raise PermissionError("choose a username first")
        if not isinstance(message, str) or len(message) > MAX_MESSAGE:
            raise ValueError(f"a message is text of at most {MAX_MESSAGE} characters")
        self.room.tellEverybody(self, message)

    def wall(self, message: str) -> None:
        self.call_remote("displayMessage", message)

    def hear(self, username: str, what: str) -> None:
        self.call_remote("displayUserMessage", username, what)

    def detached(self) -> None:
        self.room.leave(self)
