"""``examples/publish_from_worker`` in Chromium: a page follows background jobs' progress.

The example is copied to a temporary directory and run as its README says
(``orbiter`` with no arguments, reading ``./orbiter.toml``, and ``python
progress_app.py``); only the ports are rewritten. Two jobs started from
the page run as worker processes publishing each step; the page shows every
step of each (it subscribes before it starts the job), and the result.
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

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "publish_from_worker"
STEPS = 15


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    here = tmp_path_factory.mktemp("worker") / "publish_from_worker"
    shutil.copytree(EXAMPLE, here)
    http_port, app_port = free_port(), free_port()
    toml = here / "orbiter.toml"
    text = toml.read_text()
    assert "port = 8000" in text
    assert "127.0.0.1:5001" in text
    text = text.replace("port = 8000", f"port = {http_port}")
    toml.write_text(text.replace("127.0.0.1:5001", f"127.0.0.1:{app_port}"))
    url = f"http://127.0.0.1:{http_port}"
    env = {
        "APP_PORT": str(app_port),
        "ORBITER_URL": url,
        "JOB_STEPS": str(STEPS),
        "JOB_STEP_SECONDS": "0.05",
        "PYTHONUNBUFFERED": "1",
    }
    orbiter = started([sys.executable, "-m", "orbiter"], here, "listening on http://", env)
    app = started([sys.executable, "progress_app.py"], here, "progress_app on", env)
    yield url
    stop(app, orbiter)


def test_the_page_shows_every_step_of_each_job(site: str, new_page: Callable[[], Page]) -> None:
    page = new_page()
    page.goto(site + "/")
    page.click("#start")
    page.click("#start")
    expect(page.locator(".job")).to_have_count(2)
    expect(page.locator(".job.finished")).to_have_count(2)
    for row in page.locator(".job").all():
        assert row.get_attribute("data-updates") == str(STEPS)
        assert row.locator("progress").evaluate("bar => [bar.value, bar.max]") == [STEPS, STEPS]
        status = row.locator(".status").inner_text().strip()
        assert status.startswith("done: ")
        assert len(status.removeprefix("done: ")) == 12
