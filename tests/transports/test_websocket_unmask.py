"""The native WebSocket's unmasking (aiohttp's C loop, given to the sans-I/O core) gives the
bytes the core's own big-integer XOR gives, for any payload and mask; and the core uses the
one it is given."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orbiter.protocol.websocket import Message, ServerConnection, unmask_payload
from orbiter.transports.websocket import unmask_in_c


@given(st.binary(max_size=5000), st.binary(min_size=4, max_size=4))
def test_the_c_loop_unmasks_as_rfc_6455_says(payload: bytes, mask: bytes) -> None:
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert unmask_payload(payload, mask) == expected
    assert unmask_in_c(payload, mask) == expected


def _masked_text(text: bytes, mask: bytes) -> bytes:
    assert len(text) < 126
    return bytes([0x81, 0x80 | len(text)]) + mask + unmask_payload(text, mask)


def test_the_core_unmasks_with_the_function_it_is_given() -> None:
    seen: list[tuple[bytes, bytes]] = []

    def unmask(payload: bytes, mask: bytes) -> bytes:
        seen.append((payload, mask))
        return unmask_in_c(payload, mask)

    conn = ServerConnection(1024, unmask)
    mask = b"\x01\x02\x03\x04"
    conn.receive_data(_masked_text(b"hello", mask))
    event = conn.next_event()
    assert isinstance(event, Message)
    assert event.data == "hello"
    assert seen == [(unmask_payload(b"hello", mask), mask)]
