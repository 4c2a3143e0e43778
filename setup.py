"""Builds orbiter, with the publish → deliver path compiled by mypyc when it can be.

pyproject.toml holds the package's metadata; this file adds the compiled modules.
The modules named by ``COMPILED_MODULES`` in orbiter/version.py are compiled from
their own Python source with mypyc (as black and mypy ship themselves) when a C
compiler and the Python headers are present and ``ORBITER_PURE_BUILD=1`` is not
set. Otherwise, and when the compilation fails, the install goes on as pure Python
(the same source, interpreted), saying why on stderr: an install never fails for
want of a compiler. ``orbiter --version`` says which build runs.
"""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent

#: Set to 1: install pure Python even where the modules could be compiled.
PURE_BUILD_VARIABLE = "ORBITER_PURE_BUILD"

#: The shared library that holds every compiled module, orbiter_hotpath__mypyc*.so: a
#: top-level module beside the package, where mypyc derives the modules' __file__ from.
GROUP = "orbiter_hotpath"


def compiled_modules() -> list[str]:
    """``COMPILED_MODULES`` of orbiter/version.py, read without importing orbiter."""
    tree = ast.parse((HERE / "orbiter" / "version.py").read_text(encoding="utf-8"))
    for statement in tree.body:
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and statement.targets[0].id == "COMPILED_MODULES"
        ):
            return list(ast.literal_eval(statement.value))
    raise SystemExit("orbiter/version.py: no COMPILED_MODULES = (...) tuple")


def why_not_compiled() -> str | None:
    """Why the modules cannot be compiled here, or None when they can."""
    if os.environ.get(PURE_BUILD_VARIABLE, "") not in ("", "0"):
        return f"{PURE_BUILD_VARIABLE} is set"
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler!r} is not on PATH)"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no Python headers ({headers}; on Debian: apt-get install python3-dev)"
    try:
        import mypyc.build  # noqa: F401 - only whether it is there
    except ImportError:
        return "mypyc (mypy) is not installed where orbiter is built"
    return None


def remove_earlier_build() -> None:
    """Removes the compiled files an earlier build left next to the sources (``pip
    install -e``): Python would import them before the ``.py``, old or not. Called by
    builds in place only, so that building a wheel leaves a checkout's install alone."""
    for compiled in [*(HERE / "orbiter").rglob("*.so"), *HERE.glob(f"{GROUP}__mypyc*")]:
        compiled.unlink()


def say(message: str) -> None:
    print(f"orbiter build: {message}", file=sys.stderr, flush=True)


class BuildOrFallBack(build_ext):
    """Compiles the modules with mypyc when the extension is built (not each time
    setup.py is asked for metadata); when that fails, removes whatever part of the
    extension was built and goes on as pure Python (half a group would not import)."""

    def finalize_options(self) -> None:
        if PLACEHOLDER in (self.distribution.ext_modules or []):
            # Asked by a metadata command (egg_info lists the extensions' sources),
            # nothing is compiled; otherwise mypyc writes the C now.
            metadata_only = set(self.distribution.commands) <= METADATA_COMMANDS
            self.distribution.ext_modules = [] if metadata_only else mypyc_extensions()
        super().finalize_options()

    def run(self) -> None:
        in_place = self.inplace or getattr(self, "editable_mode", False)
        if in_place:
            remove_earlier_build()
        try:
            super().run()
        except Exception as exc:  # the compiler's or linker's error, whatever its class
            self.inplace = False  # (setuptools leaves it so when its build fails)
            for ext in self.extensions:  # what was built of the group, in build/
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            if in_place:
                remove_earlier_build()
            self.extensions = self.distribution.ext_modules = []
            say(f"compiling failed ({exc}); installing pure Python")


#: mypy's options for the build, over pyproject.toml's strict ones. A one-step ``pip
#: install`` builds orbiter before it installs aiohttp, orjson, redis ...: mypyc then sees
#: them as Any (compiled as plain objects), which strict mode would refuse. The strict
#: check against the real packages is CI's (``mypy`` in scripts/test), not the build's.
BUILD_CHECKS = [
    "--ignore-missing-imports",
    "--allow-subclassing-any",
    "--no-warn-return-any",
    "--no-warn-unused-ignores",
    "--allow-untyped-decorators",
    # (a class with __slots__ over an Any base: an attribute of the base looks unknown)
    "--disable-error-code=misc",
]


def mypyc_extensions() -> list[Extension]:
    """The compiled modules' extensions (C written by mypyc), or none when mypyc fails."""
    modules = compiled_modules()
    paths = [str(Path(*name.split(".")).with_suffix(".py")) for name in modules]
    try:
        from mypyc.build import mypycify

        built: list[Extension] = mypycify([*BUILD_CHECKS, *paths], group_name=GROUP, opt_level="3")
    except (Exception, SystemExit) as exc:  # mypy's errors end in SystemExit
        say(f"mypyc failed ({exc!r}); installing pure Python")
        if IN_PLACE:
            remove_earlier_build()
        return []
    say(f"compiling {len(modules)} modules with mypyc")
    return built


#: Whether this is an install in place (pip install -e runs editable_wheel).
IN_PLACE = bool({"editable_wheel", "develop", "--inplace"} & set(sys.argv))

#: The commands that only describe the package (what pip asks before a build).
METADATA_COMMANDS = {"egg_info", "dist_info", "sdist"}

#: Stands for the mypyc extension until build_ext makes it (so that the wheel is
#: built for this platform, and the modules are compiled only when it is built).
PLACEHOLDER = Extension(f"{GROUP}__mypyc", sources=[])


def extensions() -> list[Extension]:
    """The placeholder of the compiled modules, or none (pure Python, saying why)."""
    why = why_not_compiled()
    if why is not None:
        say(f"pure Python: {why}")
        if IN_PLACE:
            remove_earlier_build()
        return []
    return [PLACEHOLDER]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildOrFallBack})
