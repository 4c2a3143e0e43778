"""The ``[live]`` table, ``[[live.element]]`` mounts, and loading their factories."""

from __future__ import annotations

from typing import Any

import pytest

from orbiter.config.live import ElementMount, LiveSettings, RpcSettings
from orbiter.config.settings import ConfigError, config_from_dict
from orbiter.services.live.host import ElementLoadError, LiveHost
from tests.live import sample


def test_defaults_and_a_full_table() -> None:
    assert config_from_dict({}).live == LiveSettings()
    live = config_from_dict(
        {
            "live": {
                "call_timeout": 5,
                "max_calls": 4,
                "call_rate": 2.5,
                "call_burst": 3,
                "max_elements": 1,
                "debug": True,
                "element": [
                    {"path": "/chat", "factory": "pkg.mod:room.make", "title": "Chat"},
                    {"path": "/", "factory": "pkg:Elem"},
                ],
            }
        }
    ).live
    assert (live.call_timeout, live.max_calls, live.debug) == (5.0, 4, True)
    assert live.mounts == (
        ElementMount("/chat", "pkg.mod:room.make", "Chat"),
        ElementMount("/", "pkg:Elem", "orbiter"),
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"call_timeout": 0}, "'live.call_timeout' must be positive"),
        ({"max_calls": "3"}, "'live.max_calls' must be of type int"),
        ({"unknown": 1}, "unknown key 'live.unknown'"),
        ({"element": {"path": "/"}}, "must be an array of tables"),
        ({"element": [{"path": "/x"}]}, "'live.element[0]' needs 'factory'"),
        ({"element": [{"factory": "a:b"}]}, "'live.element[0]' needs 'path'"),
        ({"element": [{"path": "x", "factory": "a:b"}]}, "'live.element[0].path' must be"),
        ({"element": [{"path": "/x/", "factory": "a:b"}]}, "'live.element[0].path' must be"),
        ({"element": [{"path": "/api/x", "factory": "a:b"}]}, "is orbiter's own route"),
        ({"element": [{"path": "/static", "factory": "a:b"}]}, "is orbiter's own route"),
        ({"element": [{"path": "/x", "factory": "a.b"}]}, "'package.module:attribute'"),
        ({"element": [{"path": "/x", "factory": "a:b", "other": 1}]}, "unknown key"),
        (
            {"element": [{"path": "/x", "factory": "a:b"}, {"path": "/x", "factory": "c:d"}]},
            "mounted twice",
        ),
    ],
)
def test_bad_settings_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="config: ") as info:
        config_from_dict({"live": table})
    assert message in str(info.value)


def test_the_factory_class_is_found_from_the_class_an_attribute_or_the_annotation() -> None:
    def mount(factory: str) -> ElementMount:
        return ElementMount("/x", factory)

    host = LiveHost(LiveSettings(mounts=(mount("tests.live.sample:Sample"),)))
    assert host.mounts["/x"].element_class is sample.Sample
    host = LiveHost(LiveSettings(mounts=(mount("tests.live.sample:make_narrower"),)))
    assert host.mounts["/x"].element_class is sample.Narrower


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("tests.live.nothing_here:make", "cannot import 'tests.live.nothing_here'"),
        ("tests.live.sample:absent", "'absent' not found"),
        ("tests.live.sample:MADE", "is not callable"),
        ("tests.live.support:live_config", "cannot tell which LiveElement class it makes"),
        ("tests.live.sample:BadWidgetName", "is not a JavaScript name"),
    ],
)
def test_factories_that_cannot_be_used_are_named(factory: str, message: str) -> None:
    with pytest.raises(ElementLoadError) as info:
        LiveHost(LiveSettings(mounts=(ElementMount("/x", factory),)))
    assert message in str(info.value)
    assert factory in str(info.value)


def test_the_rpc_table() -> None:
    assert config_from_dict({}).rpc == RpcSettings()
    rpc = config_from_dict({"rpc": {"url": "https://app.example/rpc", "timeout": 2}}).rpc
    assert rpc == RpcSettings("https://app.example/rpc", 2.0)
    for table, message in [
        ({"url": "ftp://x"}, "'rpc.url' must be an http:// or https:// URL"),
        ({"timeout": 0}, "'rpc.timeout' must be positive"),
        ({"path": "/x"}, "unknown key 'rpc.path'"),
    ]:
        with pytest.raises(ConfigError) as info:
            config_from_dict({"rpc": table})
        assert message in str(info.value)
