"""The SockJS session state machine, driven with a fake clock."""

from __future__ import annotations

from orbiter.protocol.sockjs.frames import HEARTBEAT, INTERRUPTED, OPEN, Close, Messages
from orbiter.protocol.sockjs.session_state import SLOW_CONSUMER, Attach, SockJSSession, State


def new(max_queued_bytes: int = 1000) -> SockJSSession:
    return SockJSSession(
        heartbeat=25.0, disconnect_delay=5.0, max_queued_bytes=max_queued_bytes, now=0.0
    )


def test_first_receiver_gets_open_then_waits() -> None:
    session = new()
    assert session.state.value == "connecting"
    assert session.attach(0.0) is Attach.ATTACHED
    assert session.next_frame(0.0) == OPEN
    assert session.state.value == "open"
    assert session.next_frame(1.0) is None


def test_queued_messages_go_out_as_one_frame() -> None:
    session = new()
    session.attach(0.0)
    session.next_frame(0.0)
    assert session.send("a")
    assert session.send("b")
    assert session.next_frame(1.0) == Messages(("a", "b"))
    assert session.queued_bytes == 0
    assert session.next_frame(1.0) is None


def test_messages_wait_for_a_receiver() -> None:
    session = new()
    session.attach(0.0)
    session.next_frame(0.0)
    session.detach(0.0)
    session.send("later")
    assert session.attach(1.0) is Attach.ATTACHED
    assert session.next_frame(1.0) == Messages(("later",))


def test_a_second_receiver_is_busy() -> None:
    session = new()
    assert session.attach(0.0) is Attach.ATTACHED
    assert session.attach(0.1) is Attach.BUSY
    assert session.attached


def test_heartbeat_after_silence() -> None:
    session = new()
    session.attach(0.0)
    session.next_frame(0.0)
    assert session.wake_at() == 25.0
    assert session.next_frame(24.9) is None
    assert session.next_frame(25.0) == HEARTBEAT
    assert session.wake_at() == 50.0


def test_a_frame_postpones_the_heartbeat() -> None:
    session = new()
    session.attach(0.0)
    session.next_frame(0.0)
    session.send("x")
    session.next_frame(20.0)
    assert session.next_frame(26.0) is None
    assert session.next_frame(45.0) == HEARTBEAT


def test_ready_callback_only_when_a_receiver_waits() -> None:
    calls: list[int] = []
    session = new()
    session.on_ready = lambda: calls.append(1)
    session.send("x")
    assert calls == []
    session.attach(0.0)
    session.send("y")
    session.close(3000, "bye")
    assert calls == [1, 1]


def test_close_flushes_then_sends_the_close_frame_to_every_receiver() -> None:
    session = new()
    session.attach(0.0)
    session.next_frame(0.0)
    session.send("last")
    assert session.close(3000, "Go away!")
    assert not session.close(3001, "again")
    assert session.state is State.CLOSING
    assert session.next_frame(1.0) == Messages(("last",))
    assert session.next_frame(1.0) == Close(3000, "Go away!")
    session.detach(1.0)
    assert session.attach(2.0) is Attach.CLOSED
    assert session.close_frame == Close(3000, "Go away!")
    assert session.send("dropped")
    assert session.queued_bytes == 0


def test_messages_queued_between_polls_go_out_before_the_close_frame() -> None:
    session = new()
    session.attach(0.0)
    assert session.next_frame(0.0) == OPEN
    session.detach(0.1)  # the first poll is answered; no receiver now
    session.send("last words")
    assert session.close(3000, "Go away!")
    assert session.attach(0.2) is Attach.ATTACHED
    assert session.next_frame(0.2) == Messages(("last words",))
    session.detach(0.2)
    assert session.attach(0.3) is Attach.CLOSED
    assert session.close_frame == Close(3000, "Go away!")


def test_close_may_discard_what_is_queued() -> None:
    session = new()
    session.send("x")
    session.close(3000, "now", discard=True)
    assert session.queued_bytes == 0
    # A receiver arriving after the close only gets the close frame.
    assert session.attach(0.0) is Attach.CLOSED


def test_an_idle_session_expires_after_the_delay() -> None:
    session = new()
    session.attach(0.0)
    session.next_frame(0.0)
    session.detach(10.0)
    assert session.expires_at() == 15.0
    assert not session.expire(14.9)
    assert session.expire(15.0)
    assert session.state is State.CLOSED
    assert session.expires_at() is None


def test_an_attached_session_does_not_expire() -> None:
    session = new()
    session.attach(0.0)
    assert session.expires_at() is None
    assert not session.expire(1000.0)


def test_each_request_on_a_closing_session_restarts_the_delay() -> None:
    session = new()
    session.close(3000, "bye")
    assert session.attach(4.0) is Attach.CLOSED
    assert not session.expire(8.0)
    assert session.expire(9.0)


def test_an_interrupted_receiver_ends_the_session() -> None:
    session = new()
    session.attach(0.0)
    session.next_frame(0.0)
    session.send("in flight")
    session.detach(1.0, interrupted=True)
    assert session.state is State.CLOSED
    assert session.close_frame == INTERRUPTED
    assert session.queued_bytes == 0
    assert session.attach(2.0) is Attach.CLOSED


def test_an_interrupted_receiver_keeps_an_earlier_close_reason() -> None:
    session = new()
    session.attach(0.0)
    session.close(3000, "bye")
    session.detach(1.0, interrupted=True)
    assert session.close_frame == Close(3000, "bye")


def test_the_queue_is_bounded_in_bytes() -> None:
    session = new(max_queued_bytes=10)
    assert session.send("ż" * 5)  # 10 bytes
    assert not session.send("x")
    assert session.state is State.CLOSING
    assert session.close_frame == SLOW_CONSUMER
    assert session.queued_bytes == 0


def test_end() -> None:
    session = new()
    session.attach(0.0)
    session.end()
    assert session.state is State.CLOSED
    assert not session.attached
