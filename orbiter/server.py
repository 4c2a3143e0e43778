"""``orbiter serve``: run a node on uvloop until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from orbiter.config.settings import Config
from orbiter.config.tcp import ORBITED
from orbiter.http.api_cluster import answer_surveys
from orbiter.http.app import build_app
from orbiter.node import Node
from orbiter.transports.app_keys import RAW_ROUTERS
from orbiter.transports.sniffing import SniffingRunner, first_claim
from orbiter.version import __version__, build

log = logging.getLogger("orbiter")


def serve(config: Config, *, reuse_port: bool = False) -> None:
    """``reuse_port``: listen with ``SO_REUSEPORT`` (a worker of ``--workers N``)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        asyncio.run(run_server(config, reuse_port=reuse_port))
    else:
        uvloop.run(run_server(config, reuse_port=reuse_port))


class _OneLineBadRequests(logging.Filter):
    """aiohttp logs a request it cannot parse as an ERROR with a traceback; a client
    could fill the log that way. Such a record becomes one WARNING line naming the problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            what = record.getMessage()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "%s: %s"
            record.args = (what, " ".join(str(exc.message).split()))
            record.exc_info = record.exc_text = None
        return True


def _raise_descriptor_limit() -> None:
    """Let the process open as many files as its hard limit allows (as Go programs do):
    each connection is one, and the soft limit is often a low 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # pragma: no cover - depends on the system
            log.info("file descriptor limit stays %d (%s)", soft, exc)


async def run_server(config: Config, *, reuse_port: bool = False) -> None:
    logging.getLogger("aiohttp.server").addFilter(_OneLineBadRequests())
    _raise_descriptor_limit()
    node = Node(config)
    answer_surveys(node)  # its share of /api/stats on the other nodes of a cluster
    app = build_app(node)
    # Connections aiohttp cannot parse (hixie-76 WebSockets) are taken before it sees them;
    # until its first head is whole a connection counts in the node's connection limits.
    # aiohttp closes a kept-alive connection whose next head is not whole within
    # head_timeout of the last answer (its keepalive_timeout counts exactly that).
    runner = SniffingRunner(
        app,
        first_claim(app[RAW_ROUTERS]),
        gate=node,
        head_timeout=config.limits.head_timeout,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=config.limits.head_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_port=reuse_port or None)
    await site.start()
    # What exists now (modules, config, the app) lives as long as the process: move it
    # out of the collector's sight, so no full collection walks it again.
    gc.collect()
    gc.freeze()
    home, variant = _home(config, node), build()
    for url in _listener_urls(runner):
        log.info(
            "orbiter %s listening on %s (%s, WebSocket /connection/websocket, API /api/; %s)",
            __version__,
            url,
            home,
            variant,
        )
    for mount in node.live.mounts.values():
        log.info("live element %s at %s", mount.element_class.__qualname__, mount.path)
    _log_openness(config)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
        log.info("stopped")


def _home(config: Config, node: Node) -> str:
    """What answers ``/``, for the start-up line: a live element, the dev proxy's app
    server, or the chat demo."""
    if "/" in node.live.mounts:
        return "live element /"
    if config.dev_proxy.enabled:
        for route in config.dev_proxy.routes:
            if route.prefix == "/" and route.to != ORBITED:
                return f"/ proxied to {route.to}"
    return "chat demo /"


def _listener_urls(runner: web.AppRunner) -> list[str]:
    """URLs of the sockets actually bound (so ``--port 0`` reports its port)."""
    urls = []
    for address in runner.addresses:
        host, port = address[0], address[1]
        urls.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    return urls


def _log_openness(config: Config) -> None:
    if config.api_key is None:
        log.warning("running open for development: the HTTP API needs no key (set server.api_key)")
    if not config.auth_required:
        log.warning(
            "connections are open for development: not authenticated, they may claim any "
            "user or Orbited key (set auth.secret, auth.public_key or hooks.connect_url)"
        )
    else:
        how = "tokens" if config.auth.enabled else "the app's connect hook"
        log.info("connections are authenticated by %s", how)
    publishable = [rule.match for rule in config.channels if rule.client_publish]
    if config.channel_defaults.client_publish:
        publishable.append("* (channel_defaults)")
    if publishable:
        log.info("browsers may publish to: %s", ", ".join(publishable))
