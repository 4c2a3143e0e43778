"""The ``orbiter`` command: ``serve``, and HTTP API calls from the shell."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from typing import Any

import orjson

from orbiter.client import DEFAULT_URL, Client, OrbiterError
from orbiter.config.ini import load_any_config
from orbiter.config.live import element_mount, with_mounts
from orbiter.config.settings import Config, ConfigError
from orbiter.config.storage import (
    DEFAULT_DATA_DIR,
    REDIS_CLUSTER_SCHEMES,
    REDIS_SCHEMES,
    EngineSettings,
)
from orbiter.config.values import SettingsError
from orbiter.logs import configure as configure_logs
from orbiter.version import __version__, build

DESCRIPTION = "orbiter: a real-time push server for web applications."

EPILOG = """\
shortcuts:
  orbiter                       the same as: orbiter serve
  orbiter --config=FILE         the same as: orbiter serve --config FILE (the seeds' command line)

config files:
  orbiter config init [PATH]    write a commented sample orbiter.toml (--force to overwrite)
  orbiter config convert FILE   print a seed-era INI config (Orbited 0.7) as TOML

The client commands (publish, event, call, channels, stats, status, history) talk to a
running server: --url, else $ORBITER_URL, else http://127.0.0.1:8000; --api-key, else
$ORBITER_API_KEY. Each command has its own help: orbiter COMMAND --help.
"""

#: Where the client commands find the server and its API key when not given on the line.
URL_VARIABLE = "ORBITER_URL"
KEY_VARIABLE = "ORBITER_API_KEY"


class _Version(argparse.Action):
    """``--version``: the version and which build runs (imports the compiled modules to tell)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"orbiter {__version__} ({build()})")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orbiter",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_Version, help="show the version and the build (compiled or pure)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument(
        "--config",
        help="config file: TOML, or the seeds' INI format (.ini, .cfg); default: "
        + " or ".join(f"./{name}" for name in FOUND_CONFIGS)
        + " if there is one, else the embedded defaults",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000; 0: any free)")
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning"],
        help="info: a line per connection open and close; debug: also per subscribe and "
        "publish (default: the config's log.level, info); the format is log.format",
    )
    serve.add_argument(
        "--engine",
        metavar="sqlite|memory|redis://HOST:PORT/DB",
        help="where channel history is kept: a SQLite file under the data directory, "
        "memory only (forgotten on restart), or a Redis shared by every node naming it "
        "(engine.kind and engine.url); default: the config's engine",
    )
    serve.add_argument(
        "--data-dir",
        help=f"the SQLite engine's directory (engine.data_dir; default ./{DEFAULT_DATA_DIR})",
    )
    serve.add_argument(
        "--element",
        metavar="PACKAGE.MODULE:FACTORY",
        help="serve at / a page making one live element per browser connection with FACTORY "
        "(imported from the current directory too); see docs/live.md",
    )
    serve.add_argument(
        "--sockjs-test-services",
        action="store_true",
        help="mount the SockJS protocol suite's test services (echo, close, ...) under the prefix",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N processes on the port, sharing channels through Redis (the engine's, else "
        "a private redis-server); see docs/cluster.md",
    )

    def api_command(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument(
            "--url",
            default=os.environ.get(URL_VARIABLE) or DEFAULT_URL,
            help=f"server URL (default: ${URL_VARIABLE}, else {DEFAULT_URL})",
        )
        p.add_argument(
            "--api-key",
            default=os.environ.get(KEY_VARIABLE) or None,
            help=f"API key (default: ${KEY_VARIABLE})",
        )
        return p

    publish = api_command("publish", "publish DATA (JSON, or else a string) to CHANNEL")
    publish.add_argument("channel")
    publish.add_argument("data")
    event = api_command("event", "send DATA to Orbited connection keys ('user, 0, /loc')")
    event.add_argument("data")
    event.add_argument("keys", nargs="+")
    call = api_command("call", "call METHOD with ARGS (JSON, else strings) on browser widgets")
    call.add_argument("method")
    call.add_argument("args", nargs="*")
    call.add_argument("--user", help="the widgets of this user's connections")
    call.add_argument("--key", help="... of this Orbited key's ('user, 0, /loc')")
    call.add_argument("--channel", help="... of this channel's subscribers")
    call.add_argument("--mount", help="only widgets of this mount (alone: all of its widgets)")
    call.add_argument("--wait", action="store_true", help="wait for every answer")
    call.add_argument("--timeout", type=float, help="seconds to wait (default live.call_timeout)")
    sub.add_parser(
        "bench",
        help="measure orbiter (and peers) with a load generator: orbiter bench --help",
        add_help=False,
    )
    sub.add_parser(
        "config",
        help="write a sample orbiter.toml, or convert a seed-era INI: orbiter config --help",
        add_help=False,
    )
    cluster = sub.add_parser(
        "cluster", help="try a cluster on one machine: N nodes, a Redis, nginx in front"
    )
    cluster.add_argument("nodes", type=int, metavar="N", help="how many nodes")
    cluster.add_argument("--config", help="config file of every node (as serve's)")
    cluster.add_argument("--host", help="the address nginx listens on (default 127.0.0.1)")
    cluster.add_argument("--port", type=int, help="the port nginx listens on (default 8000)")
    cluster.add_argument("--log-level", choices=["debug", "info", "warning"])
    cluster.add_argument("--engine", metavar="redis://HOST:PORT/DB", help="default: a private one")
    cluster.add_argument("--data-dir", help="the private Redis's data (default ./orbiter-data)")
    cluster.set_defaults(element=None, sockjs_test_services=False, workers=1)
    api_command("channels", "list channels with their subscriber counts")
    wall = api_command("wall", "show TEXT on every chat page (the server-wide wall)")
    wall.add_argument("text")
    api_command("stats", "show connections, channels and limit/refusal counters")
    api_command("status", "is the server ready? its engine, connections and channels, in short")
    compact = sub.add_parser(
        "compact",
        help="give the SQLite data file's and STOMP queue file's free space back "
        "(the server stopped)",
    )
    compact.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"the data directory (default ./{DEFAULT_DATA_DIR})",
    )
    history = api_command("history", "show a channel's retained publications")
    history.add_argument("channel")
    history.add_argument("--limit", type=int)
    return parser


def _data(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


#: The config files ``orbiter serve`` reads from the working directory without ``--config``,
#: the first found: orbiter's own, else the seeds' (a bare ``orbited`` read ``orbited.cfg``).
FOUND_CONFIGS = ("orbiter.toml", "orbited.cfg")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["serve"]  # a bare "orbited", as the seeds' tutorials start it
    if argv[:1] and argv[0].startswith("--config"):
        argv = ["serve", *argv]  # the seeds' "orbited --config=chat.ini"
    if argv[:1] == ["config"]:
        return _config_main(argv[1:])
    if argv[:1] == ["bench"]:
        from orbiter.bench.command import main as bench_main

        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command in ("serve", "cluster"):
        return _serve(args)
    if args.command == "compact":
        return _compact(args.data_dir)
    if args.command == "status":
        return _status(args.url, args.api_key)
    client = Client(args.url, api_key=args.api_key)
    try:
        if args.command == "publish":
            result: Any = client.publish(args.channel, _data(args.data))
        elif args.command == "event":
            result = client.event(args.keys, _data(args.data))
        elif args.command == "call":
            result = client.call(
                args.method,
                *(_data(a) for a in args.args),
                user=args.user,
                key=args.key,
                channel=args.channel,
                mount=args.mount,
                wait=args.wait,
                timeout=args.timeout,
            )
        elif args.command == "channels":
            result = client.channels()
        elif args.command == "stats":
            result = client.stats()
        elif args.command == "wall":
            result = client.wall(args.text)
        else:
            result = client.history(args.channel, limit=args.limit)
    except (OrbiterError, TypeError) as exc:  # TypeError: call's targets, named wrongly
        print(f"orbiter: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _config_main(argv: list[str]) -> int:
    """``orbiter config init [PATH] [--force]`` and ``orbiter config convert FILE``."""
    from orbiter.config.ini import convert_main

    if argv[:1] == ["convert"]:
        return convert_main(argv)
    parser = argparse.ArgumentParser(prog="orbiter config", description="config file tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = sub.add_parser("init", help="write a commented sample orbiter.toml")
    init.add_argument("path", nargs="?", default="orbiter.toml", help="default ./orbiter.toml")
    init.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    sub.add_parser(
        "convert",
        help="print a seed-era INI config as TOML: orbiter config convert --help",
        add_help=False,
    )
    args = parser.parse_args(argv)
    from orbiter.config.sample import write_sample

    try:
        path = write_sample(args.path, force=args.force)
    except FileExistsError:
        print(f"orbiter: {args.path} exists; --force overwrites it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"orbiter: cannot write {args.path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"orbiter: wrote {path}; start with: orbiter serve --config {path}")
    return 0


def _health(url: str) -> tuple[int, dict[str, Any]]:
    """``GET /health/ready``: its status and JSON (a 503 too); status 0 if no answer."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health/ready", timeout=10) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, orjson.loads(exc.read())
        except orjson.JSONDecodeError:
            return exc.code, {"reason": f"HTTP {exc.code} {exc.reason}"}
    except (OSError, orjson.JSONDecodeError) as exc:
        return 0, {"reason": str(getattr(exc, "reason", exc))}


def _status(url: str, api_key: str | None) -> int:
    """``orbiter status``: readiness (``/health/ready``) and ``/api/stats`` in a few lines;
    exit 0 when the server is ready, else 1."""
    code, health = _health(url)
    if code == 0:
        print(f"orbiter at {url}: no answer ({health['reason']})")
        return 1
    state = health.get("status", f"HTTP {code}")
    version = health.get("version", "?")
    print(
        f"orbiter {version} at {url}: {state}"
        + (f" ({health['reason']})" if "reason" in health else "")
    )
    checks = health.get("checks", {})
    engine, listeners = checks.get("engine", "?"), checks.get("listeners", "?")
    print(f"  engine: {health.get('engine', '?')}, {engine}; listeners: {listeners}")
    if "uptime" in health:
        print(f"  up for {health['uptime']:.0f} s")
    try:
        stats = Client(url, api_key=api_key).stats()
    except OrbiterError as exc:
        print(f"  stats: {exc}")
        return 0 if code == 200 else 1
    print(f"  connections: {stats.get('connections', 0):,}")
    channels = f"  channels: {stats.get('subscribed_channels', 0):,} subscribed here"
    if "channels" in stats:
        channels += f", {stats['channels']:,} kept"
    if "history_bytes" in stats:
        channels += f", {stats['history_bytes']:,} bytes of history in memory"
    print(channels)
    counters = stats.get("counters") or {}
    shown = ", ".join(f"{name} {count:,}" for name, count in counters.items() if count)
    print(f"  counters: {shown or 'none'}")
    return 0 if code == 200 else 1


def _compact(data_dir: str) -> int:
    """``orbiter compact``: VACUUM the data file and the STOMP queue file of a stopped
    server, each that exists (the history file first; nothing more after a refusal)."""
    from pathlib import Path

    from orbiter.config.storage import DATA_FILE, QUEUE_FILE
    from orbiter.engine.sqlite_store import SqliteStore, StoreError
    from orbiter.services.stomp.queue_file import QueueFile, QueueFileError

    data, queues = Path(data_dir) / DATA_FILE, Path(data_dir) / QUEUE_FILE
    if not data.exists() and not queues.exists():
        print(f"orbiter: there is no data file {data} (nor queue file {queues})", file=sys.stderr)
        return 1
    for path, compact in ((data, SqliteStore(data).compact), (queues, QueueFile(queues).compact)):
        if not path.exists():
            continue
        try:
            before, after = compact()
        except (StoreError, QueueFileError) as exc:
            print(f"orbiter: {exc}", file=sys.stderr)
            return 1
        print(f"orbiter: {path}: {before:,} bytes -> {after:,} bytes")
    return 0


def _found_config() -> str | None:
    """The first of :data:`FOUND_CONFIGS` in the working directory."""
    for name in FOUND_CONFIGS:
        if os.path.isfile(name):
            return name
    return None


def _serve(args: argparse.Namespace) -> int:
    path = args.config or _found_config()
    try:
        config = load_any_config(path) if path else Config()
    except ConfigError as exc:
        print(f"orbiter: {exc}", file=sys.stderr)
        return 2
    configure_logs(args.log_level or config.log.level, config.log.format)
    if path and not args.config:
        logging.getLogger("orbiter").info("serving the config file ./%s", path)
    if args.host is not None:
        config = replace(config, host=args.host)
    if args.port is not None:
        config = replace(config, port=args.port)
    if args.engine is not None:
        try:
            config = replace(config, engine=_engine_option(config.engine, args.engine))
        except SettingsError as exc:
            print(f"orbiter: {exc}", file=sys.stderr)
            return 2
    engine_configured = args.engine is not None or config.engine.kind_given
    data_dir = args.data_dir or config.engine.data_dir or DEFAULT_DATA_DIR
    config = replace(config, engine=replace(config.engine, data_dir=data_dir))
    if args.sockjs_test_services:
        config = replace(config, sockjs=replace(config.sockjs, test_services=True))
    try:
        config = _with_element(config, args.element)
    except SettingsError as exc:
        print(f"orbiter: {exc}", file=sys.stderr)
        return 2

    if args.command == "cluster":
        from orbiter.cluster import cluster_main

        return cluster_main(config, args.nodes, engine_configured=engine_configured)
    if args.workers != 1:
        from orbiter.workers import workers_main

        return workers_main(config, args.workers, engine_configured=engine_configured)
    from orbiter.engine.base import EngineUnavailable
    from orbiter.server import serve
    from orbiter.services.live.host import ElementLoadError

    try:
        serve(config)
    # An address taken, a damaged data file, an element that cannot be imported:
    except (OSError, EngineUnavailable, ElementLoadError) as exc:
        print(f"orbiter: cannot start: {exc}", file=sys.stderr)  # one line, no traceback
        return 1
    return 0


def _engine_option(settings: EngineSettings, engine: str) -> EngineSettings:
    """``settings`` with ``--engine``: a kind (``sqlite``, ``memory``) or a Redis URL
    (``redis+cluster://`` for a Redis Cluster)."""
    if engine.startswith(REDIS_SCHEMES + REDIS_CLUSTER_SCHEMES):
        return replace(settings, kind="redis", url=engine)
    if engine not in ("sqlite", "memory"):
        raise SettingsError(f"--engine must be sqlite, memory or a redis:// URL, not {engine!r}")
    return replace(settings, kind=engine)


def _with_element(config: Config, element: str | None) -> Config:
    """``config`` with ``--element``'s mount at ``/``; element modules import from ``.`` too."""
    if element is not None:
        mounts = (element_mount("/", element),)
        config = replace(config, live=with_mounts(config.live, mounts))
    if config.live.mounts and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as twistd did: the app's package is where it runs
    return config
