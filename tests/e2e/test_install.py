"""The README's install path, followed in a fresh virtualenv and a clean shell.

A copy of the checkout (the files git knows, as they are in the work tree) is
installed with ``pip install`` into a new ``python -m venv``; then, in shells
whose environment holds nothing but ``PATH`` and ``HOME`` (no ``.venv``, no
``PYTHONPATH``, no working directory in the checkout), the installed
``orbiter`` answers ``--version``, writes its sample config, serves with it,
takes ``orbiter publish`` with ``ORBITER_URL``/``ORBITER_API_KEY``, and the
installed package's ``Client`` reads the publication back.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from orbiter.version import COMPILED_MODULES, __version__

# The module's venv fixture compiles the publish path (15+ modules with mypyc: ~2 min of
# CPU, more on a busy machine): past the suite's 120 s per test.
pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
#: What pip itself needs from the environment (its index, proxy and certificates).
_PIP_ENV = ("PIP_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy")
API_KEY = "install-test-key"


def _copy_checkout(dest: Path) -> None:
    """The tracked and new (not ignored) files of the checkout, copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        source = ROOT / raw.decode()
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree
        target = dest / raw.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the checkout ``pip install``-ed into it."""
    base = tmp_path_factory.mktemp("install")
    source = base / "orbiter-src"
    _copy_checkout(source)
    env = _clean_env(base)
    env.update({k: v for k, v in os.environ.items() if k.startswith(_PIP_ENV)})
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or sys.executable
    subprocess.run([python, "-m", "venv", str(base / "venv")], check=True, env=env, timeout=60)
    done = subprocess.run(
        [str(base / "venv/bin/pip"), "install", "--quiet", str(source)],
        env=env,
        cwd=base,
        capture_output=True,
        text=True,
        timeout=300,  # it compiles the publish path: ~80 s of CPU, more on a busy machine
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return base / "venv"


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), **extra}


def _shell(venv: Path, command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``command`` in bash with only PATH, HOME and ``env``, after the README's
    ``. venv/bin/activate``."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", f". {venv}/bin/activate && {command}"],
        env=_clean_env(cwd, **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


class _Server:
    """The installed ``orbiter serve`` in a clean shell, its output collected."""

    def __init__(self, venv: Path, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [
                "bash",
                "--noprofile",
                "--norc",
                "-c",
                f". {venv}/bin/activate && exec orbiter serve --port 0 --config orbiter.toml",
            ],
            env=_clean_env(cwd, PYTHONUNBUFFERED="1"),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.url = ""
        self._found = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match and not self.url:
                self.url = match.group(1)
                self._found.set()

    def wait(self) -> str:
        assert self._found.wait(30), "".join(self.lines)
        return self.url

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def served(venv: Path, tmp_path: Path) -> Iterator[tuple[_Server, Path]]:
    """The installed orbiter serving the sample config (with an API key set) in ``tmp_path``."""
    init = _shell(venv, "orbiter config init", tmp_path)
    assert init.returncode == 0, init.stderr
    sample = (tmp_path / "orbiter.toml").read_text()
    assert sample == (ROOT / "orbiter/config/sample.toml").read_text()
    config = sample.replace('# api_key = ""', f'api_key = "{API_KEY}"', 1)
    config = config.replace('# kind = "sqlite"', 'kind = "memory"', 1)
    assert config != sample
    (tmp_path / "orbiter.toml").write_text(config)
    server = _Server(venv, tmp_path)
    try:
        server.wait()
        yield server, tmp_path
    finally:
        server.stop()


def build_expected() -> str:
    """What ``orbiter --version`` should say of the build pip makes on this machine."""
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if shutil.which("gcc") and headers.is_file():
        return f"compiled with mypyc: {len(COMPILED_MODULES)} modules"
    return "pure Python"


def test_version_in_a_clean_shell(venv: Path, tmp_path: Path) -> None:
    done = _shell(venv, "orbiter --version", tmp_path)
    assert done.returncode == 0, done.stderr
    # The README's one-step pip install compiles the hot path where it can (setup.py), as
    # on this machine when scripts/system-packages ran: gcc and Python's headers.
    assert done.stdout.strip() == f"orbiter {__version__} ({build_expected()})"
    # Installed from the copy, not from this checkout:
    where = _shell(venv, "python -c 'import orbiter; print(orbiter.__file__)'", tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr


def test_publish_and_client_in_a_clean_shell(served: tuple[_Server, Path], venv: Path) -> None:
    server, here = served
    assert f"orbiter {__version__} listening on {server.url}" in "".join(server.lines)
    env = {"ORBITER_URL": server.url, "ORBITER_API_KEY": API_KEY}
    published = _shell(venv, "orbiter publish news:install '{\"n\": 1}'", here, **env)
    assert published.returncode == 0, published.stderr
    assert orjson.loads(published.stdout)["offset"] == 1
    # The key comes from ORBITER_API_KEY: without it the server refuses the call.
    refused = _shell(venv, "orbiter publish news:install 2", here, ORBITER_URL=server.url)
    assert refused.returncode == 1
    assert "API key" in refused.stderr
    script = (
        "from orbiter import Client\n"
        f"client = Client({server.url!r}, api_key={API_KEY!r})\n"
        "client.publish('news:install', 'from python')\n"
        "print([p['data'] for p in client.history('news:install')['publications']])\n"
    )
    (here / "app.py").write_text(script)
    client = _shell(venv, "python app.py", here)
    assert client.returncode == 0, client.stderr
    assert client.stdout.strip() == "[{'n': 1}, 'from python']"
