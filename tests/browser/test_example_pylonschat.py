"""``examples/pylonschat`` in Chromium: its app server and a bare ``orbiter`` in its directory.

The example is copied to a temporary directory and run as its README says
(``python pylonschat.py`` and ``orbiter`` with no arguments, which reads
``./orbited.cfg``); only the ports are rewritten (a ``[listen]`` section
added, and the ``[proxy]`` target), so that tests can run side by side.
Two pages, at ``localhost`` and ``127.0.0.1`` as the tutorial says, join
and chat through orbiter's dev proxy.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from orbiter.client import Client
from orbiter.ports import free_port
from tests.support.example_processes import started, stop

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "pylonschat"


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    here = tmp_path_factory.mktemp("pylonschat") / "pylonschat"
    shutil.copytree(EXAMPLE, here)
    http_port, app_port = free_port(), free_port()
    cfg = here / "orbited.cfg"
    text = cfg.read_text()
    assert "127.0.0.1:5000" in text
    text = text.replace("127.0.0.1:5000", f"127.0.0.1:{app_port}")
    cfg.write_text(text + f"\n[listen]\nhttp://127.0.0.1:{http_port}\n")
    url = f"http://127.0.0.1:{http_port}"
    env = {"CHAT_PORT": str(app_port), "ORBITER_URL": url, "PYTHONUNBUFFERED": "1"}
    app = started([sys.executable, "pylonschat.py"], here, "pylonschat on", env)
    orbiter = started([sys.executable, "-m", "orbiter"], here, "listening on http://", env)
    yield url
    stop(orbiter, app)


def test_two_pages_join_and_chat(chat: str, new_page: Callable[[], Page]) -> None:
    api = Client(chat)
    ann, bob = new_page(), new_page()

    def connected(user: str) -> None:
        for _ in range(100):
            if api.channels().get(f"$key:{user}, 0, /orbited"):
                return
            ann.wait_for_timeout(100)
        raise AssertionError(f"{user}'s page never connected")

    ann.goto(chat.replace("127.0.0.1", "localhost") + "/chat")
    ann.fill("#nickname", "ann")
    ann.click("input[type=button][value=nickname]")
    connected("ann")
    bob.goto(chat + "/chat")
    bob.fill("#nickname", "bob")
    bob.click("input[type=button][value=nickname]")
    expect(ann.locator("#box .event").last).to_have_text("bob joined")
    connected("bob")
    bob.fill("#chat", "hello ann")
    bob.click("input[type=submit][value=chat]")
    for page in (ann, bob):
        expect(page.locator("#box .event").last).to_contain_text("hello ann")
