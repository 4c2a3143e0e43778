"""The third-party JavaScript clients the tests drive, from ``tests/js/node_modules``.

``npm ci`` in ``tests/js`` installs them (``scripts/test`` does). A missing
client fails the tests that need it, when they run, with the command that
installs it; it never stops collection, so every other test still runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NODE_MODULES = Path(__file__).resolve().parents[1] / "js" / "node_modules"


def npm_file(path: str) -> Path:
    """``path`` under ``tests/js/node_modules``; fails the calling test if it is not there."""
    file = NODE_MODULES / path
    if not file.exists():
        pytest.fail(
            f"{path} is not installed (the npm test clients are missing): "
            "run `cd tests/js && npm ci`",
            pytrace=False,
        )
    return file
