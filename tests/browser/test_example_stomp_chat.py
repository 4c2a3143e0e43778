"""``examples/stomp_chat`` in Chromium: ``orbiter --config=chat.ini`` and the app server.

The example is copied to a temporary directory and run as its README says;
only the ports in ``chat.ini`` are rewritten. The page loads the seed's
Orbited 0.7 script URLs from orbiter and speaks STOMP through ``/tcp`` to
the embedded broker; two users with nicknames chat (one with the button, one
with Enter), a line that is HTML shows as text, and the app server's
subscriber logs every line to ``chat.log``.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from orbiter.ports import free_port
from tests.support.example_processes import started, stop

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "stomp_chat"


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    here = tmp_path_factory.mktemp("stomp_chat") / "stomp_chat"
    shutil.copytree(EXAMPLE, here)
    http_port, stomp_port, app_port = free_port(), free_port(), free_port()
    ini = here / "chat.ini"
    text = ini.read_text()
    ini.write_text(text.replace(":9000", f":{http_port}").replace(":61613", f":{stomp_port}"))
    env = {
        "ORBITER_PORT": str(http_port),
        "STOMP_PORT": str(stomp_port),
        "CHAT_PORT": str(app_port),
        "PYTHONUNBUFFERED": "1",
    }
    orbiter = started(
        [sys.executable, "-m", "orbiter", "--config=chat.ini"], here, "listening on http://", env
    )
    app = started([sys.executable, "stomp_chat.py"], here, "stomp_chat on", env)
    yield f"http://127.0.0.1:{app_port}/", here
    stop(app, orbiter)


def test_two_users_chat_with_nicknames_and_the_server_logs_it(
    chat: tuple[str, Path], new_page: Callable[[], Page]
) -> None:
    url, here = chat
    ann, bob = new_page(), new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    for page, name in ((ann, "ann"), (bob, "bob")):
        page.on("dialog", on_dialog)
        page.goto(url)
        page.fill(".chat-entry .nick", name)
        page.wait_for_selector("body[data-connected=yes]")
    ann.wait_for_timeout(300)  # each SUBSCRIBE, sent on CONNECTED, has reached the broker
    ann.fill(".chat-entry .chatter", "hello bob")
    ann.click(".chat-entry .chat-trigger")
    expect(bob.locator(".chat-message").last).to_have_text("ann hello bob")
    bob.fill(".chat-entry .chatter", "<img src=x onerror=alert(1)>")
    bob.press(".chat-entry .chatter", "Enter")
    for page in (ann, bob):
        expect(page.locator(".chat-message").last).to_have_text("bob <img src=x onerror=alert(1)>")
    assert dialogs == []
    deadline = time.monotonic() + 10
    log = here / "chat.log"
    while time.monotonic() < deadline:
        if log.exists() and "bob: <img" in log.read_text():
            break
        time.sleep(0.1)
    assert log.read_text().splitlines() == ["ann: hello bob", "bob: <img src=x onerror=alert(1)>"]
