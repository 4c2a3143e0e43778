from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.protocol.keys import KEY_CHANNEL_PREFIX, ConnectionKey, InvalidKey


@pytest.mark.parametrize(
    "text",
    [
        "alice, 0, /chat",
        "alice,0,/chat",
        "alice , 0 , /chat",
        "  alice,  0,  chat ",
        "alice,0,chat",
    ],
)
def test_spelling_variants_parse_to_one_canonical_key(text: str) -> None:
    key = ConnectionKey.parse(text)
    assert key == ConnectionKey("alice", "0", "/chat")
    assert str(key) == "alice, 0, /chat"
    assert key.channel == KEY_CHANNEL_PREFIX + "alice, 0, /chat"


def test_seed_pylons_key_and_build_agree() -> None:
    # pylonschat: "%s, %s, /orbited" % (user, session)
    assert ConnectionKey.parse("%s, %s, /orbited" % ("bob", "0")) == ConnectionKey.build(  # noqa: UP031
        "bob", 0, "/orbited"
    )


def test_location_may_contain_commas() -> None:
    assert ConnectionKey.parse("a, 1, /rooms/x,y").location == "/rooms/x,y"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice, 0", "three comma-separated parts"),
        ("alice", "three comma-separated parts"),
        (", 0, /chat", "'user' is empty"),
        ("alice, , /chat", "'session' is empty"),
        ("alice, 0, ", "'location' is empty"),
        ("alice, 0, /", "'location' is empty"),
        ("al\x00ice, 0, /chat", "control character"),
        ("a" * 300 + ", 0, /chat", "longer than"),
    ],
)
def test_malformed_keys_are_refused_with_the_problem_named(text: str, problem: str) -> None:
    with pytest.raises(InvalidKey, match=problem):
        ConnectionKey.parse(text)


def test_non_string_key_is_refused() -> None:
    with pytest.raises(InvalidKey):
        ConnectionKey.parse(42)  # type: ignore[arg-type]


_part = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=",/ "),
    min_size=1,
    max_size=30,
).filter(str.strip)  # a part of only whitespace (say U+00A0) is empty, and refused


@given(user=_part, session=_part, location=_part)
def test_canonical_form_round_trips(user: str, session: str, location: str) -> None:
    key = ConnectionKey.build(user, session, location)
    assert ConnectionKey.parse(str(key)) == key
    assert ConnectionKey.parse(f"{user},{session},{location}") == key


@given(st.text(max_size=80))
def test_parse_never_fails_other_than_invalid_key(text: str) -> None:
    try:
        key = ConnectionKey.parse(text)
    except InvalidKey:
        return
    assert ConnectionKey.parse(str(key)) == key
