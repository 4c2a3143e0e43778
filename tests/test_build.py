"""The build: the modules of ``COMPILED_MODULES`` run compiled exactly when they were
compiled (their extension files sit next to their ``.py``) and ``ORBITER_PURE=1`` is
not set, never half of them; the compiled files are not older than their source (in
a checkout, older ones are not run);
``ORBITER_PURE=1`` loads the source even beside a compiled file; CI runs the
build it means to test (``ORBITER_EXPECT_BUILD``, set by scripts/test); and the
compiled modules' source keeps mypyc's rules that plain Python does not have
(:mod:`tests.support.mypyc_rules`), which only the compiled build would break on.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

import orbiter
from orbiter.version import (
    COMPILED_MODULES,
    _SourceFirst,
    build,
    is_compiled,
    pure_asked,
    stale_in_checkout,
)
from tests.support.mypyc_rules import except_name_clashes

ROOT = Path(__file__).resolve().parents[1]
#: What scripts/test sets to the build each pytest run is meant to test.
EXPECT_VARIABLE = "ORBITER_EXPECT_BUILD"


def _extension_beside(name: str) -> Path | None:
    """The compiled file of module ``name`` next to its ``.py``, if one was built."""
    package = importlib.import_module(name.rpartition(".")[0])
    leaf = name.rpartition(".")[2]
    for directory in package.__path__:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = Path(directory) / f"{leaf}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def test_the_modules_run_compiled_exactly_when_they_were_built_so() -> None:
    built = {name: _extension_beside(name) for name in COMPILED_MODULES}
    compiled_files = [name for name, path in built.items() if path is not None]
    assert compiled_files in ([], list(COMPILED_MODULES)), (
        f"a partial build: only {compiled_files} were compiled (rebuild: scripts/setup)"
    )
    source_chosen = pure_asked() or bool(stale_in_checkout(orbiter.__path__[0]))
    for name, extension in built.items():
        module = importlib.import_module(name)
        file = Path(str(module.__file__))
        if extension is None or source_chosen:
            assert file.suffix == ".py", f"{name} runs from {file}, not its source"
            assert not is_compiled(module)
        else:
            assert file == extension, f"{name} runs from {file}, not its compiled {extension}"
            assert is_compiled(module)
    expected = "pure Python" if not compiled_files or source_chosen else "compiled with mypyc"
    assert build().startswith(expected)


def test_no_compiled_module_is_older_than_its_source() -> None:
    for name in COMPILED_MODULES:
        extension = _extension_beside(name)
        if extension is None:
            continue
        source = extension.with_name(name.rpartition(".")[2] + ".py")
        assert extension.stat().st_mtime >= source.stat().st_mtime, (
            f"{extension.name} is older than {source.name}: the compiled module would run "
            "code that is no longer the source (rebuild: scripts/setup)"
        )


def test_ci_runs_the_build_it_means_to_test() -> None:
    expected = os.environ.get(EXPECT_VARIABLE)
    if expected is None:
        pytest.skip(f"{EXPECT_VARIABLE} is not set (scripts/test sets it)")
    assert expected in ("compiled", "pure"), f"{EXPECT_VARIABLE}={expected!r}"
    wanted = "compiled with mypyc" if expected == "compiled" else "pure Python"
    assert build().startswith(wanted), f"{EXPECT_VARIABLE}={expected} but this runs {build()}"


def _files_in_a_new_process(pure: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORBITER_PURE"}
    if pure is not None:
        env["ORBITER_PURE"] = pure
    names = ", ".join(repr(name) for name in COMPILED_MODULES)
    # orbiter.node first: most compiled modules are then imported by compiled ones
    # (directly, not through importlib), whose __file__ mypyc derives itself.
    script = (
        "import importlib, orbiter.node\n"
        f"for n in ({names},): print(importlib.import_module(n).__file__)"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_a_compiled_file_older_than_its_source_is_found_in_a_checkout_only(
    tmp_path: Path,
) -> None:
    package = tmp_path / "orbiter"
    source = package / "services" / "outbox.py"
    source.parent.mkdir(parents=True)
    compiled = source.with_name(f"outbox{importlib.machinery.EXTENSION_SUFFIXES[0]}")
    compiled.write_bytes(b"")
    source.write_text("")
    os.utime(compiled, (1_000_000, 1_000_000))  # built before the last edit
    assert stale_in_checkout(str(package)) == []  # installed: no setup.py beside it
    (tmp_path / "setup.py").write_text("")
    assert stale_in_checkout(str(package)) == ["orbiter.services.outbox"]
    os.utime(compiled, None)  # rebuilt
    os.utime(source, (1_000_000, 1_000_000))
    assert stale_in_checkout(str(package)) == []


def test_orbiter_pure_loads_the_source_even_beside_a_compiled_file() -> None:
    assert all(file.endswith(".py") for file in _files_in_a_new_process("1"))
    built = [_extension_beside(name) for name in COMPILED_MODULES]
    if stale_in_checkout(orbiter.__path__[0]):  # then the source runs: the test above fails
        built = [None for _ in built]
    unset = _files_in_a_new_process(None)
    assert unset == [str(path) if path else unset[i] for i, path in enumerate(built)]
    assert _files_in_a_new_process("0") == unset


def test_the_source_first_finder_prefers_the_py_over_an_extension(tmp_path: Path) -> None:
    package = tmp_path / "orbiter_pkg"
    package.mkdir()
    (package / "fast.py").write_text("X = 1\n")
    (package / f"fast{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"not loaded")
    spec = _SourceFirst().find_spec("orbiter.fast", [str(package)])
    assert spec is not None
    assert spec.origin == str(package / "fast.py")
    # Not orbiter's, a top-level name, or no .py there: the usual finders decide.
    assert _SourceFirst().find_spec("other.fast", [str(package)]) is None
    assert _SourceFirst().find_spec("orbiter", None) is None
    assert _SourceFirst().find_spec("orbiter.slow", [str(package)]) is None


def test_a_wrong_orbiter_pure_value_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORBITER_PURE", "yes")
    with pytest.raises(ValueError, match="ORBITER_PURE must be 1"):
        pure_asked()


#: Commit 2bb1a07's bug, as ClientSession.receive had it: compiled, ``exc`` is a Refusal
#: variable, and catching EngineUnavailable into it raised TypeError.
CLASHING = """\
class ClientSession:
    async def receive(self, event):
        for _ in range(3):
            try:
                await self.handle(event)
            except Refusal as exc:
                self.close(exc.close_code, exc.message)
            except EngineUnavailable as exc:
                self.tell(str(exc))
"""

#: What the rule allows: one type per name, another name, a nested function's (or
#: class's) own locals, the same type twice, and clauses without a name.
ALLOWED = """\
def receive(event):
    try:
        handle(event)
    except Refusal as exc:
        close(exc)
    except EngineUnavailable as unavailable:
        tell(unavailable)
    except Refusal as exc:
        close(exc)
    except ValueError:
        pass

    def later():
        try:
            handle(event)
        except (OSError, ValueError) as exc:
            tell(exc)

    class Retry:
        try:
            handle(event)
        except OSError as exc:
            error = exc
"""


def test_the_except_rule_finds_one_name_bound_to_two_exception_types() -> None:
    assert except_name_clashes(CLASHING, "session.py") == [
        "session.py:8 receive: 'exc' is Refusal (line 6) and EngineUnavailable"
    ]
    tuple_then_one = "try: f()\nexcept (A, B) as e: pass\nexcept A as e: pass\n"
    assert except_name_clashes(tuple_then_one) == [
        "<source>:3 <module>: 'e' is (A, B) (line 2) and A"
    ]
    assert except_name_clashes(ALLOWED) == []


def _source(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def test_no_compiled_module_binds_one_except_name_to_two_exception_types() -> None:
    """Compiled, a local keeps one type in its whole function (the pure build and mypy
    accept it; the compiled build raises TypeError when the second one is caught):
    give each exception type its own name."""
    clashes = [
        clash
        for module in COMPILED_MODULES
        for clash in except_name_clashes(
            _source(module).read_text(encoding="utf-8"), str(_source(module).relative_to(ROOT))
        )
    ]
    assert clashes == []
