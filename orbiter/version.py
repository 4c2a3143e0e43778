"""The version of orbiter and which build of it runs: the one place both are written
(pyproject.toml reads the version from here for the package, setup.py reads
:data:`COMPILED_MODULES`; ``orbiter --version`` and the start-up line show both, the
STOMP ``server`` header the version).

The build: the modules of the publish → deliver path are compiled from their own
source with mypyc at install when a C compiler is present (``setup.py``), and run
as plain Python otherwise. :func:`build` says which this process runs, from the
evidence (a module's file: a compiled extension or its ``.py``). In a checkout
whose compiled files sit next to their ``.py``, ``ORBITER_PURE=1`` runs the pure
build: :func:`prefer_source_when_asked`, called by the package root before
anything else is imported, makes every ``orbiter.*`` module load from its ``.py``
(so it does, saying why, where a compiled file is older than its source).

A leaf module, so that any layer may import it; the package root re-exports the version.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

__version__ = "0.1.0"

#: The modules compiled with mypyc (setup.py reads this tuple, as a literal).
COMPILED_MODULES = (
    "orbiter.protocol.http_publish",
    "orbiter.protocol.websocket",
    "orbiter.http.fast_publish",
    "orbiter.services.pubsub",
    "orbiter.services.shared_batch",
    "orbiter.services.outbox",
    "orbiter.session.session",
    "orbiter.engine.memory",
    "orbiter.protocol.native",
    "orbiter.transports.websocket",
    "orbiter.http.api_rules",
    "orbiter.services.pushes",
    "orbiter.model",
    "orbiter.engine.sqlite",
    "orbiter.engine.sqlite_index",
    "orbiter.engine.sqlite_batch",
    "orbiter.engine.redis_wire",
    "orbiter.engine.redis_publishing",
    "orbiter.engine.redis_delivery",
    "orbiter.services.rate",
)

#: Set to 1: import the Python source of every orbiter module, compiled or not.
PURE_VARIABLE = "ORBITER_PURE"


def pure_asked() -> bool:
    """Whether this process was asked to run the pure-Python build (``ORBITER_PURE=1``)."""
    value = os.environ.get(PURE_VARIABLE, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{PURE_VARIABLE} must be 1 (pure Python) or 0/unset, not {value!r}")
    return value == "1"


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds an ``orbiter.*`` module's ``.py`` before a compiled file next to it
    (Python's own finder prefers extension modules)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if path is None or not fullname.startswith("orbiter."):
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None  # a package, or not orbiter's: the usual finders look


def stale_in_checkout(package: str) -> list[str]:
    """The modules of :data:`COMPILED_MODULES` whose compiled file is older than their
    ``.py`` in a source checkout (``package``'s parent holds setup.py: ``pip install -e``),
    where an edit does not rebuild them. Installed packages are never checked: their
    files' times are those of the install."""
    if not os.path.isfile(os.path.join(os.path.dirname(package), "setup.py")):
        return []
    stale = []
    for name in COMPILED_MODULES:
        source = os.path.join(package, *name.split(".")[1:]) + ".py"
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            compiled = source[: -len(".py")] + suffix
            if os.path.isfile(compiled) and os.path.getmtime(compiled) < os.path.getmtime(source):
                stale.append(name)
    return stale


#: Why this process runs the pure-Python build although compiled files may be there.
_source_chosen: str | None = None


def prefer_source_when_asked() -> None:
    """Put the source-first finder ahead of Python's own with ``ORBITER_PURE=1``, and in
    a checkout whose compiled files are older than their source (saying so on stderr):
    old compiled code must never run for an edited ``.py``."""
    global _source_chosen
    if any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        return
    stale = stale_in_checkout(os.path.dirname(os.path.abspath(__file__)))
    if pure_asked():
        _source_chosen = f"{PURE_VARIABLE}=1"
    elif stale:
        _source_chosen = "the compiled files are older than the source: run scripts/setup"
        print(f"orbiter: {', '.join(stale)}: {_source_chosen}", file=sys.stderr)
    if _source_chosen is not None:
        sys.meta_path.insert(0, _SourceFirst())


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension rather than its ``.py``."""
    file = getattr(module, "__file__", None) or ""
    return file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def compiled_now() -> list[str]:
    """The modules of :data:`COMPILED_MODULES` this process runs compiled (imports them)."""
    return [name for name in COMPILED_MODULES if is_compiled(importlib.import_module(name))]


def build() -> str:
    """Which build this process runs, in words, for ``--version`` and the start-up line."""
    compiled = compiled_now()
    if len(compiled) == len(COMPILED_MODULES):
        return f"compiled with mypyc: {len(compiled)} modules"
    if not compiled:
        return "pure Python" if _source_chosen is None else f"pure Python, {_source_chosen}"
    return f"partly compiled: {len(compiled)} of {len(COMPILED_MODULES)} modules (rebuild it)"
