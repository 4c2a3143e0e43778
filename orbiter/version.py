"""The version of orbiter: the one place it is written (pyproject.toml reads it from here
for the package; ``orbiter --version``, the start-up line and the STOMP ``server`` header).

A leaf module, so that any layer may import it; the package root re-exports it.
"""

from __future__ import annotations

__version__ = "0.1.0"
