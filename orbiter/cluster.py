"""``orbiter cluster N``: a cluster to try on one machine: N nodes, a Redis, nginx in front.

The nodes are forked as ``--workers`` are (``orbiter/workers.py``: the same
signals, restarts and private ``redis-server`` when no Redis is named), but
each listens on a port of its own on 127.0.0.1, and an ``nginx`` started
here (Debian's ``nginx`` or ``nginx-light``, run by :mod:`orbiter.nginx_front`)
serves ``--host:--port`` in front of them, with the configuration
``docs/cluster.md`` explains: a
session's requests to its node (hashed by the SockJS session id or the
Orbited key in the URL, else by client address: SockJS sessions and Orbited
keys work without it, through Redis, so for them it saves the relay; parked
live elements need it), WebSocket upgrades,
nothing buffered, and the nodes trusting its ``X-Forwarded-For``. Its
configuration and logs are in a temporary directory, removed when it stops;
without ``nginx`` on PATH the nodes run alone and their addresses are logged.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import time
from dataclasses import replace

from orbiter.config.settings import Config
from orbiter.nginx_front import (
    FrontSettings,
    NginxFailed,
    NginxFront,
    SessionAffinity,
    find_nginx,
)
from orbiter.workers import (
    PrivateRedis,
    Supervisor,
    WorkersRefused,
    engine_for_workers,
    reserve_port,
)

log = logging.getLogger("orbiter.cluster")


def _wait_listening(ports: list[int], timeout: float = 30.0) -> None:
    """Return once every node accepts connections (or after ``timeout``: nginx then
    answers 502 for those that do not yet)."""
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", waiting[0]), timeout=1.0).close()
            waiting.pop(0)
        except OSError:
            time.sleep(0.05)


def run_cluster(config: Config, nodes: int, *, engine_configured: bool) -> int:
    """Run ``nodes`` nodes on one Redis with nginx on ``config``'s host and port in front;
    the exit status. :class:`WorkersRefused` when it cannot."""
    if nodes < 1:
        raise WorkersRefused(f"orbiter cluster needs at least 1 node, not {nodes}")
    if config.port == 0:
        raise WorkersRefused("orbiter cluster needs a port for nginx to listen on (--port)")
    url = engine_for_workers(config, nodes, engine_configured=engine_configured)
    nginx_binary = find_nginx()
    front = f"{config.host}:{config.port}"
    private: PrivateRedis | None = None
    if url is None:
        private = PrivateRedis(config.engine.data_dir or ".", sync=config.engine.sync)
        private.start()
        url = private.url
    trusted = tuple(dict.fromkeys((*config.trusted_proxies, "127.0.0.1")))
    node_config = replace(config, host="127.0.0.1", trusted_proxies=trusted)
    try:
        with contextlib.ExitStack() as reserved:
            ports = [
                reserved.enter_context(reserve_port("127.0.0.1", 0)).getsockname()[1]
                for _ in range(nodes)
            ]
            nginx: NginxFront | None = None
            if nginx_binary is not None:
                listen = f"[{config.host}]:{config.port}" if ":" in config.host else front
                settings = FrontSettings(
                    listen=listen,
                    upstreams=tuple(f"127.0.0.1:{port}" for port in ports),
                    affinity=SessionAffinity(config.sockjs.prefix),
                    max_body=config.limits.max_http_body,
                    keepalive=64,
                )
                nginx = NginxFront(settings, nginx_binary)
            supervisor = Supervisor(node_config, ports, url)

            def started() -> None:
                _wait_listening(ports)
                addresses = ", ".join(f"http://127.0.0.1:{port}" for port in ports)
                if nginx is None:
                    log.warning(
                        "no nginx on PATH (apt install nginx): the %d nodes serve alone at %s",
                        nodes,
                        addresses,
                    )
                    return
                try:
                    nginx.start()
                except NginxFailed as exc:  # stops the nodes, and is printed
                    raise WorkersRefused(str(exc)) from None
                log.info(
                    "cluster of %d nodes through Redis at %s: nginx on http://%s in front of %s",
                    nodes,
                    url,
                    front,
                    addresses,
                )

            if nginx is None:
                return supervisor.run(started)
            try:  # nginx stops first: no new request goes to a node that is stopping
                return supervisor.run(started, nginx.failed, nginx.stop)
            finally:
                nginx.stop()
    finally:
        if private is not None:
            private.stop()


def cluster_main(config: Config, nodes: int, *, engine_configured: bool) -> int:
    """``orbiter cluster N``: the exit status; a refusal is one line on stderr."""
    try:
        return run_cluster(config, nodes, engine_configured=engine_configured)
    except WorkersRefused as exc:
        print(f"orbiter: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"orbiter: cannot start: {exc}", file=sys.stderr)
        return 1
