"""``examples/longpoll_chat`` in Chromium: a Django app's rooms over WebSocket and long polling.

The example is copied to a temporary directory and run as its README says
(``orbiter`` with no arguments, reading ``./orbiter.toml``, and ``python
longpoll_chat.py``, Django's own server); only the ports are rewritten. A
WebSocket page and a long-poll (JSONP) page share room 1, a page of room 2
sees none of it; each sends a burst at once, and both room-1 pages get every
line, each sender's in order; a page opened afterwards reads the backlog.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from orbiter.ports import free_port
from tests.support.example_processes import started, stop

pytest.importorskip("django")

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "longpoll_chat"
BURST = 30


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    here = tmp_path_factory.mktemp("longpoll") / "longpoll_chat"
    shutil.copytree(EXAMPLE, here)
    http_port, django_port = free_port(), free_port()
    toml = here / "orbiter.toml"
    text = toml.read_text()
    assert "port = 8000" in text
    assert "127.0.0.1:8001" in text
    text = text.replace("port = 8000", f"port = {http_port}")
    toml.write_text(text.replace("127.0.0.1:8001", f"127.0.0.1:{django_port}"))
    url = f"http://127.0.0.1:{http_port}"
    env = {"DJANGO_PORT": str(django_port), "ORBITER_URL": url, "PYTHONUNBUFFERED": "1"}
    orbiter = started(
        [sys.executable, "-m", "orbiter"], here, "listening on http://", env, timeout=30
    )
    django = started(
        [sys.executable, "longpoll_chat.py"], here, "Starting development server", env, timeout=30
    )
    yield url
    stop(django, orbiter)


def opened(page: Page, url: str, nick: str) -> Page:
    page.goto(url, wait_until="domcontentloaded")  # a held poll keeps it loading
    page.fill("#nick", nick)
    page.wait_for_selector("body[data-ready=yes]")
    return page


def lines(page: Page) -> list[str]:
    shown: list[str] = page.eval_on_selector_all(".message", "ns => ns.map(n => n.textContent)")
    return shown


def test_both_kinds_of_page_share_a_room_and_lose_nothing_in_a_burst(
    site: str, new_page: Callable[[], Page]
) -> None:
    ws = opened(new_page(), site + "/rooms/1/", "wanda")
    lp = opened(new_page(), site + "/long_poll/1/", "lou")
    other = opened(new_page(), site + "/rooms/2/", "otto")
    ws.wait_for_timeout(300)
    burst = f"for (let i = 0; i < {BURST}; i++) say('n' + i);"
    ws.evaluate(burst)
    lp.evaluate(burst)
    for page in (ws, lp):
        expect(page.locator(".message")).to_have_count(2 * BURST, timeout=20_000)
        shown = lines(page)
        for nick in ("wanda", "lou"):
            assert [s for s in shown if s.startswith(nick + ":")] == [
                f"{nick}: n{i}" for i in range(BURST)
            ]
    assert lines(other) == []
    late = opened(new_page(), site + "/long_poll/1/", "lena")
    expect(late.locator(".message")).to_have_count(50)  # the page's last=50
    assert lines(late)[-1] in (f"wanda: n{BURST - 1}", f"lou: n{BURST - 1}")
