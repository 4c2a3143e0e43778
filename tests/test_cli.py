"""The ``orbiter`` command's face: help, ``--version``, ``config init``, its sample config,
the client commands' environment variables, and ``orbiter bench``'s output off a terminal."""

from __future__ import annotations

import argparse
import io
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from orbiter import cli
from orbiter.bench import command as bench_command
from orbiter.bench.runner import Progress
from orbiter.bench.scenarios import PRESETS
from orbiter.client import DEFAULT_URL
from orbiter.config.ini import load_any_config
from orbiter.config.sample import sample_text
from orbiter.config.settings import Config, config_from_dict
from orbiter.config.tcp import DevProxySettings, DevRoute
from orbiter.version import __version__, build

ROOT = Path(__file__).resolve().parents[1]
#: What reStructuredText markup looks like in a help text.
_RST = re.compile(r"``|:class:|:func:|:data:|:meth:")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's --help and --version
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"orbiter {__version__} ({build()})"
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_help_names_every_command_and_the_shortcuts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    assert not _RST.search(out), out
    action = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(action.choices)
    assert "config" in commands
    assert "bench" in commands
    for name in commands:
        assert re.search(rf"^    {re.escape(name)}\s+\S", out, re.M), name
    assert "orbiter --config=FILE" in out
    assert "orbiter config init [PATH]" in out
    assert "$ORBITER_URL" in out
    assert "$ORBITER_API_KEY" in out


@pytest.mark.parametrize("command", ["serve", "publish", "stats", "history", "compact", "call"])
def test_command_help_has_no_markup(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run([command, "--help"], capsys)
    assert code == 0
    assert not _RST.search(out), out


def test_config_help_names_init_and_convert(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["config", "--help"], capsys)
    assert code == 0
    assert "init" in out
    assert "convert" in out


def test_bench_help_describes_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    text = bench_command.parser().format_help()
    assert not _RST.search(text), text
    for name, scenario in PRESETS.items():
        line = next(line for line in text.splitlines() if line.startswith(f"  {name} "))
        assert f"{scenario.subscribers:,} " in line, line
        assert (
            "1 channel" if scenario.channels == 1 else f"{scenario.channels:,} channels"
        ) in line


def test_config_init_writes_the_sample_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "orbiter.toml"
    assert _run(["config", "init", str(path)], capsys)[0] == 0
    assert path.read_text() == sample_text()
    path.write_text("# mine\n")
    code, _, err = _run(["config", "init", str(path)], capsys)
    assert code == 1
    assert "--force" in err
    assert path.read_text() == "# mine\n"  # untouched
    assert _run(["config", "init", str(path), "--force"], capsys)[0] == 0
    assert path.read_text() == sample_text()


def test_config_init_defaults_to_orbiter_toml_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run(["config", "init"], capsys)[0] == 0
    assert (tmp_path / "orbiter.toml").read_text() == sample_text()


def test_config_init_into_a_missing_directory_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["config", "init", str(tmp_path / "no" / "orbiter.toml")], capsys)
    assert code == 1
    assert "cannot write" in err


def test_the_sample_is_the_file_in_docs() -> None:
    assert (ROOT / "docs/orbiter.toml").read_text() == sample_text()


def test_the_sample_loads_as_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "orbiter.toml"
    path.write_text(sample_text())
    assert load_any_config(path) == Config()


def test_the_samples_commented_values_are_the_defaults() -> None:
    """Every ``# key = value`` line (and ``# [[table]]``) uncommented: the file still loads,
    and says what orbiter does without it, but for the dev proxy's example route and the
    data directory orbiter serve picks by itself."""
    text = re.sub(r"(?m)^# (\[\[[\w.]+\]\]|[a-z_]+ = )", r"\1", sample_text())
    assert text.count("\n# ") < sample_text().count("\n# ") - 40
    config = config_from_dict(tomllib.loads(text), source="sample")
    expected = replace(
        Config(),
        engine=replace(Config().engine, data_dir="orbiter-data"),
        dev_proxy=DevProxySettings(routes=(DevRoute("/", "http://127.0.0.1:5000"),)),
    )
    assert config == expected


def test_client_commands_read_the_url_and_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = cli._parser().parse_args(["stats"])
    assert args.url == DEFAULT_URL
    monkeypatch.setenv("ORBITER_URL", "http://10.1.2.3:9000")
    monkeypatch.setenv("ORBITER_API_KEY", "k1")
    args = cli._parser().parse_args(["publish", "c", "1"])
    assert (args.url, args.api_key) == ("http://10.1.2.3:9000", "k1")
    args = cli._parser().parse_args(["publish", "--url", "http://h:1", "--api-key", "k2", "c", "1"])
    assert (args.url, args.api_key) == ("http://h:1", "k2")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bench_progress_off_a_terminal_is_plain_lines() -> None:
    out = io.StringIO()
    progress = Progress(out, "orbiter fanout", 1000)
    for done in range(0, 1001, 100):
        progress.update(done, 5000.0)
    progress.end()
    text = out.getvalue()
    assert "\r" not in text
    assert "\x1b" not in text
    lines = text.splitlines()
    # The first count at once, the rest within a second: only the last one after it.
    assert lines == [
        "orbiter fanout: 0.0% 0/1,000 5,000/s",
        "orbiter fanout: 100.0% 1,000/1,000 5,000/s",
    ]


def test_bench_progress_on_a_terminal_is_one_bar() -> None:
    out = _Terminal()
    progress = Progress(out, "orbiter fanout", 10)
    progress.update(5, 1.0)
    progress.update(10, 1.0)
    progress.end()
    text = out.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("\n")
    assert text.count("\n") == 1
