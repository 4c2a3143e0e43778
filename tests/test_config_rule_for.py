"""Config.rule_for: the first matching channel rule, remembered per name, bounded."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orbiter.config import settings
from orbiter.config.settings import ChannelRule, Config


def test_first_matching_rule_else_default() -> None:
    chat, any_chat = ChannelRule(match="chat:lobby"), ChannelRule(match="chat:*")
    config = Config(channels=(chat, any_chat))
    assert config.rule_for("chat:lobby") is chat
    assert config.rule_for("chat:other") is any_chat
    assert config.rule_for("news") is config.channel_defaults
    assert config.rule_for("chat:lobby") is chat  # remembered, same answer


def test_a_replaced_config_does_not_answer_from_the_old_rules() -> None:
    old = Config(channels=(ChannelRule(match="chat:*", presence=True),))
    assert old.rule_for("chat:a").presence
    new = replace(old, channels=(ChannelRule(match="chat:*", presence=False),))
    assert not new.rule_for("chat:a").presence


def test_names_remembered_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "_RULES_SEEN", 8)
    config = Config()
    for n in range(100):
        config.rule_for(f"c{n}")
    assert len(config._rules_seen) <= 8
    assert config.rule_for("c99") is config.channel_defaults
