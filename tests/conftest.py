from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from tests.support.server import RunningServer

# Property tests check behaviour, not time: hypothesis's per-example deadline (200 ms) failed
# a config-parsing property on a machine loaded by the parallel suite (265 ms, then 0.3 ms).
settings.register_profile("orbiter", deadline=None)
settings.load_profile("orbiter")

#: The ``manual_clock`` fixture (a clock the test moves, the loop's time too); the
#: ``redis_server`` fixture (a real redis-server on a free port); ``redis_cluster`` (a real
#: 3-master Redis Cluster, per module); the ``rabbitmq_server``
#: fixture (a private RabbitMQ node with STOMP, on free ports).
pytest_plugins = [
    "tests.support.clock",
    "tests.support.redis_server",
    "tests.support.redis_cluster",
    "tests.support.rabbitmq_server",
    "tests.support.task_dump",
]


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    """One server with the embedded default config, shared by the session's tests."""
    srv = RunningServer()
    yield srv
    srv.stop()


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """Start servers with a given TOML config; each is stopped after the test."""
    started: list[RunningServer] = []

    def start(config_toml: str | None = None, **kwargs: object) -> RunningServer:
        srv = RunningServer(config_toml, **kwargs)  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
