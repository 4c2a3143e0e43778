"""The [engine] table: defaults, every key, errors that name the key, and the engine a
node builds from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from orbiter.config.settings import Config, ConfigError, config_from_dict
from orbiter.config.storage import EngineSettings
from orbiter.engine.memory import MemoryBroker
from orbiter.engine.redis import RedisBroker, RedisPresenceStore
from orbiter.engine.redis_cluster_mode import ClusterRedisBroker, ClusterRedisPresenceStore
from orbiter.engine.sqlite import SqliteBroker
from orbiter.node import Node, engine_for


def test_defaults_are_sqlite_without_a_directory_so_a_program_s_node_keeps_memory():
    settings = Config().engine
    assert settings == EngineSettings()
    assert (settings.kind, settings.data_dir, settings.sync) == ("sqlite", "", "normal")
    assert not settings.durable
    assert isinstance(engine_for(config_from_dict({})), MemoryBroker)
    named = config_from_dict({"engine": {"data_dir": "d"}})
    assert named.engine.durable
    assert named.engine.data_file == Path("d") / "orbiter.sqlite3"


def test_a_full_table(tmp_path: Path):
    config = config_from_dict(
        {
            "engine": {
                "kind": "sqlite",
                "data_dir": str(tmp_path / "d"),
                "sync": "full",
                "memory_window": 16,
                "max_disk_bytes": 10_000_000,
                "commit_wait": 0.001,
            }
        }
    )
    assert config.engine.kind == "sqlite"
    assert config.engine.data_file == tmp_path / "d" / "orbiter.sqlite3"
    assert config.engine.sync == "full"
    assert config.engine.memory_window == 16
    assert config.engine.max_disk_bytes == 10_000_000
    broker = engine_for(config)
    assert isinstance(broker, SqliteBroker)
    assert broker._max_disk_bytes == 10_000_000
    assert broker._commit_wait == 0.001
    assert config_from_dict({}).engine.commit_wait == 0.0002
    assert engine_for(config_from_dict({"engine": {"data_dir": "d"}}))._max_disk_bytes is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"kind": "mongo"}, "'engine.kind' must be one of sqlite, memory, redis, not 'mongo'"),
        (
            {"kind": "redis"},
            "'engine.url' must be a Redis URL (redis://host:port/db, or redis+cluster://host:port) "
            "when 'engine.kind' is "
            "redis, not ''",
        ),
        (
            {"kind": "redis", "url": "http://h:6379"},
            "'engine.url' must be a Redis URL (redis://host:port/db, or redis+cluster://host:port) "
            "when 'engine.kind' is "
            "redis, not 'http://h:6379'",
        ),
        ({"kind": 1}, "'engine.kind' must be of type str"),
        ({"sync": "off"}, "'engine.sync' must be one of normal, full, not 'off'"),
        ({"data_dir": " "}, "'engine.data_dir' must be a directory path"),
        ({"data_dir": ""}, "'engine.data_dir' must be a directory path"),
        ({"data_dir": "a\0b"}, "'engine.data_dir' must be a directory path"),
        ({"memory_window": 0}, "'engine.memory_window' must be positive"),
        (
            {"commit_wait": 0.02},
            "'engine.commit_wait' must be between 0 and 0.01 seconds "
            "(0: the loop never waits for a commit), not 0.02",
        ),
        (
            {"commit_wait": -0.001},
            "'engine.commit_wait' must be between 0 and 0.01 seconds "
            "(0: the loop never waits for a commit), not -0.001",
        ),
        ({"max_disk_bytes": -1}, "'engine.max_disk_bytes' must not be negative (0: no bound)"),
        ({"window": 3}, "unknown key 'engine.window'"),
    ],
)
def test_bad_values_name_the_key(table, problem):
    with pytest.raises(ConfigError) as info:
        config_from_dict({"engine": table}, source="x.toml")
    assert str(info.value) == f"x.toml: {problem}"


def test_engine_must_be_a_table():
    with pytest.raises(ConfigError, match="'engine' must be a table"):
        config_from_dict({"engine": "sqlite"})


def test_the_node_builds_the_engine_the_table_names(tmp_path: Path):
    memory = engine_for(config_from_dict({"engine": {"kind": "memory", "data_dir": "d"}}))
    assert isinstance(memory, MemoryBroker)
    config = config_from_dict(
        {"engine": {"kind": "sqlite", "data_dir": str(tmp_path)}, "history": {"max_bytes": 5}}
    )
    sqlite = engine_for(config)
    assert isinstance(sqlite, SqliteBroker)
    assert sqlite.path == tmp_path / "orbiter.sqlite3"
    assert sqlite._max_history_bytes == 5
    assert not (tmp_path / "orbiter.sqlite3").exists()  # nothing is written before start


async def test_a_redis_engine_is_named_by_its_url():
    url = "redis://10.0.0.5:6380/2"
    config = config_from_dict({"engine": {"kind": "redis", "url": url}})
    assert (config.engine.kind, config.engine.url, config.engine.durable) == ("redis", url, False)
    node = Node(config)  # nothing connects before start
    assert isinstance(node.broker, RedisBroker)
    assert node.broker.url == url
    assert isinstance(node.presence, RedisPresenceStore)
    assert node.presence.url == url
    await node.presence.close()


async def test_a_redis_cluster_is_named_by_a_cluster_url():
    url = "redis+cluster://10.0.0.5:7000"
    config = config_from_dict({"engine": {"kind": "redis", "url": url}})
    node = Node(config)  # nothing connects before start
    assert isinstance(node.broker, ClusterRedisBroker)
    assert isinstance(node.presence, ClusterRedisPresenceStore)
    await node.presence.close()
