"""The version of orbiter, for the code that names it (the STOMP ``server`` header).

A leaf module, so that any layer may import it; the package root re-exports it.
"""

from __future__ import annotations

__version__ = "0.1.0"
