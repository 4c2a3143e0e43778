"""Seed 004's chat rooms as a Django app, with orbiter in the Twisted server's place.

The tutorial's Django project served two pages per room, one chatting over
WebSocket and one by long polling (JSONP), and a Twisted server relayed the
messages. Here orbiter does the relaying: the WebSocket page (orbiter.js)
publishes to the room's channel ``chat:room-ID`` itself; the long-poll
page reads ``GET /poll`` with JSONP and sends through this app, which
publishes with ``orbiter.Client``. Both kinds of page are in the same rooms.
One module (settings, URLs and views), run by Django's own server:

    orbiter                      # reads ./orbiter.toml: http://127.0.0.1:8000
    python longpoll_chat.py      # Django, on DJANGO_PORT (8001), behind orbiter's dev proxy
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template import Context, Template
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from orbiter import Client

HERE = Path(__file__).resolve().parent
MAX_TEXT = 2000

settings.configure(
    DEBUG=False,
    SECRET_KEY="example-only",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
)
django.setup()
orbit = Client(os.environ.get("ORBITER_URL", "http://127.0.0.1:8000"))


def _page(name: str, room: int) -> HttpResponse:
    template = Template((HERE / name).read_text(encoding="utf-8"))
    return HttpResponse(template.render(Context({"room": room})))


def chat_room(request: HttpRequest, room: int) -> HttpResponse:
    return _page("ws_room.html", room)


def longpoll_chat_room(request: HttpRequest, room: int) -> HttpResponse:
    return _page("long_poll.html", room)


def say(request: HttpRequest, room: int) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    nick, text = request.POST.get("nick", ""), request.POST.get("text", "")
    if not text or len(text) > MAX_TEXT or len(nick) > 100:
        return HttpResponseBadRequest("nick (at most 100) and text (1 to 2000 characters)")
    orbit.publish(f"chat:room-{room}", {"nick": nick, "text": text})
    return HttpResponse(status=204)


urlpatterns = [
    path("rooms/<int:room>/", chat_room, name="chat_room"),
    path("long_poll/<int:room>/", longpoll_chat_room, name="longpoll_chat_room"),
    path("rooms/<int:room>/say", csrf_exempt(say), name="say"),  # a demo: no sessions
]


def main() -> None:
    from django.core.management import execute_from_command_line

    port = os.environ.get("DJANGO_PORT", "8001")
    execute_from_command_line([sys.argv[0], "runserver", "--noreload", f"127.0.0.1:{port}"])


if __name__ == "__main__":
    main()
