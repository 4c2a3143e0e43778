"""The TurboGears tutorial's chat, as the seed wrote it, in Chromium: ``orbiter
--config=chat.ini`` (the seed's file, ports rewritten), and the seed's page with only
its template values filled in and jQuery served locally. STOMPClient sees the seed's
``TCPSocket = Orbited.TCPSocket`` and speaks STOMP through /tcp to the embedded broker,
as its [access] rule allows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from orbiter.ports import free_port
from tests.support.npm import npm_file
from tests.support.page_server import PageServer
from tests.support.seed_server import SeedServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SeedServer, int]]:
    http_port, stomp_port = free_port(), free_port()
    text = (FIXTURES / "chat.ini").read_text()
    text = text.replace(":9000", f":{http_port}").replace(":61613", f":{stomp_port}")
    path = tmp_path_factory.mktemp("seed") / "chat.ini"
    path.write_text(text)
    server = SeedServer(path)
    yield server, stomp_port
    server.stop()


def seed_page(orbiter_port: int, stomp_port: int) -> str:
    page = (FIXTURES / "tg_chat.html").read_text()
    substitutions = {
        # jQuery 1.4.2 from Google's CDN cannot be fetched here: jQuery 1.12 from npm,
        # with jquery-migrate 1.4 giving back 1.4's .attr("value") that the page uses.
        '<script type="text/javascript" src="http://ajax.googleapis.com/ajax/libs/jquery'
        '/1.4.2/jquery.min.js"></script>': '<script src="/jquery.js"></script>'
        '<script src="/jquery-migrate.js"></script>',
        # The controller's value: Orbited 0.7's /static, where orbiter serves JSON.js,
        # Orbited.js and protocols/stomp/stomp.js (http/seed_scripts.py).
        "${orbited_files}": f"http://127.0.0.1:{orbiter_port}/static",
        # The template's values (TurboGears config defaults), ports rewritten.
        "Orbited.settings.port = 9000;": f"Orbited.settings.port = {orbiter_port};",
        "${simplejson.dumps( chat_server )}": '"127.0.0.1"',
        "${d(stomp_server)}": '"localhost"',
        "${d(stomp_port)}": str(stomp_port),
    }
    for old, new in substitutions.items():
        assert old in page, old
        page = page.replace(old, new)
    assert "${" not in page
    return page


@pytest.fixture(scope="module")
def pages(seed: tuple[SeedServer, int]) -> Iterator[PageServer]:
    server, stomp_port = seed
    site = PageServer(
        {
            "/chat": seed_page(server.port, stomp_port),
            "/jquery.js": npm_file("jquery/dist/jquery.min.js").read_text(),
            "/jquery-migrate.js": npm_file("jquery-migrate/dist/jquery-migrate.js").read_text(),
        }
    )
    yield site
    site.close()


def say(page: Page, text: str) -> None:
    page.fill(".chat-entry .chatter", text)
    page.click(".chat-entry .chat-trigger")
    expect(page.locator(".chat-entry .chatter")).to_have_value("")


def test_seed_chat_page_chats(pages: PageServer, new_page: Callable[[], Page]) -> None:
    ann, bob = new_page(), new_page()
    for page in (ann, bob):
        page.goto(pages.url + "/chat")
        page.wait_for_function("window.stomp && window.stomp.connected")
    say(ann, "hello from ann")
    say(bob, "hi ann, bob here")
    for page in (ann, bob):
        messages = page.locator(".chat-trace .chat-message")
        expect(messages).to_have_text(["hello from ann", "hi ann, bob here"])
    assert ann.evaluate("stomp._socket instanceof Orbiter.TCPWebSocket")
