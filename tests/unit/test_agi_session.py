"""The AGI conversation state machine, sans-IO: every state against every input, no sockets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pbx.agi import (
    AgiCommand,
    AgiDeadChannel,
    AgiHangupNotice,
    AgiHeader,
    AgiProtocolError,
    AgiReply,
    AgiSession,
    AgiStateError,
    AgiUsageError,
    SessionState,
)

S = SessionState
HEADER = b"agi_network_script: city?lang=pl\nagi_uniqueid: 1712345678.1\n\n"
REPLY = b"200 result=1 (CANCEL)\n"
USAGE = b"520 Invalid command syntax.  Proper usage not available.\n"
DEAD = b"511 Command Not Permitted on a dead channel or intercept routine\n"
HANGUP = b"HANGUP\n"


def drain(session: AgiSession) -> list[object]:
    events: list[object] = []
    while (event := session.next_event()) is not None:
        events.append(event)
    return events


def receive(session: AgiSession, data: bytes) -> list[object]:
    session.receive_data(data)
    return drain(session)


# -- sessions in each state ------------------------------------------------------------------


def in_header() -> AgiSession:
    return AgiSession()


def idle() -> AgiSession:
    session = AgiSession()
    receive(session, HEADER)
    return session


def awaiting() -> AgiSession:
    session = idle()
    session.send(AgiCommand("GET", "VARIABLE", "DIALSTATUS"))
    return session


def closed() -> AgiSession:
    session = idle()
    session.connection_lost("write failed")
    return session


def failed() -> AgiSession:
    session = idle()
    session.fail("no reply in time")
    return session


STATES: dict[SessionState, Callable[[], AgiSession]] = {
    S.HEADER: in_header,
    S.IDLE: idle,
    S.AWAITING_REPLY: awaiting,
    S.CLOSED: closed,
    S.FAILED: failed,
}

# -- every input -----------------------------------------------------------------------------

INPUTS: dict[str, Callable[[AgiSession], object]] = {
    "send": lambda s: s.send(AgiCommand("ANSWER")),
    "header": lambda s: receive(s, HEADER),
    "reply": lambda s: receive(s, REPLY),
    "usage": lambda s: receive(s, USAGE),
    "dead": lambda s: receive(s, DEAD),
    "hangup": lambda s: receive(s, HANGUP),
    "eof": lambda s: receive(s, b""),
    "lost": lambda s: s.connection_lost("reset"),
    "fail": lambda s: s.fail("timeout"),
}

Outcome = SessionState | type[Exception]
P, L = AgiProtocolError, AgiStateError  # the peer's fault, this side's fault

# state -> input -> (state after, or the error raised; hung_up after)
EXPECTED: dict[SessionState, dict[str, tuple[Outcome, bool]]] = {
    S.HEADER: {
        "send": (L, False),
        "header": (S.IDLE, False),
        "reply": (P, False),  # no reply before the header ends
        "usage": (P, False),
        "dead": (P, False),
        "hangup": (P, False),
        "eof": (P, False),  # closed before the header ended
        "lost": (S.CLOSED, True),
        "fail": (S.FAILED, False),
    },
    S.IDLE: {
        "send": (S.AWAITING_REPLY, False),
        "header": (P, False),  # a second header
        "reply": (P, False),  # a reply with no pending command
        "usage": (P, False),
        "dead": (P, True),  # out of turn, but it still says the channel is dead
        "hangup": (S.IDLE, True),  # dead mode: commands may still be sent
        "eof": (S.CLOSED, True),
        "lost": (S.CLOSED, True),
        "fail": (S.FAILED, False),
    },
    S.AWAITING_REPLY: {
        "send": (L, False),  # one command at a time
        "header": (P, False),
        "reply": (S.IDLE, False),
        "usage": (S.IDLE, False),
        "dead": (S.IDLE, True),
        "hangup": (S.AWAITING_REPLY, True),  # the command still gets its reply
        "eof": (S.CLOSED, True),
        "lost": (S.CLOSED, True),
        "fail": (S.FAILED, False),
    },
    S.CLOSED: {
        "send": (L, True),
        "header": (P, True),
        "reply": (P, True),  # bytes still buffered after a failed write
        "usage": (P, True),
        "dead": (P, True),
        "hangup": (S.CLOSED, True),
        "eof": (S.CLOSED, True),
        "lost": (S.CLOSED, True),
        "fail": (S.FAILED, True),
    },
    S.FAILED: {
        "send": (L, False),
        "header": (P, False),
        "reply": (P, False),  # a reply that came after its timeout
        "usage": (P, False),
        "dead": (P, True),
        "hangup": (S.FAILED, True),
        "eof": (S.FAILED, True),
        "lost": (S.FAILED, True),
        "fail": (S.FAILED, False),
    },
}

CASES = [(state, name) for state in EXPECTED for name in INPUTS]


def test_the_expectations_cover_every_state_and_input() -> None:
    assert set(EXPECTED) == set(SessionState)
    assert all(set(row) == set(INPUTS) for row in EXPECTED.values())


@pytest.mark.parametrize(("state", "name"), CASES, ids=[f"{s.value}-{n}" for s, n in CASES])
def test_transition(state: SessionState, name: str) -> None:
    session = STATES[state]()
    assert session.state is state
    outcome, hung_up = EXPECTED[state][name]
    if isinstance(outcome, SessionState):
        INPUTS[name](session)
        assert session.state is outcome
    else:
        with pytest.raises(outcome):
            INPUTS[name](session)
        if outcome is AgiStateError:
            assert session.state is state  # nothing was done: the stream is still in step
        else:
            assert session.state is S.FAILED
            assert session.failure is not None
    assert session.hung_up is hung_up
    if session.state is not S.AWAITING_REPLY:
        assert session.awaiting is None


# -- details of the transitions --------------------------------------------------------------


def test_header_and_what_came_with_it() -> None:
    session = AgiSession()
    session.receive_data(HEADER + HANGUP)
    header = session.next_event()
    assert isinstance(header, AgiHeader) and session.header is header
    assert header.script == "city" and header.params == {"lang": "pl"}
    assert session.state is S.IDLE and not session.hung_up
    assert isinstance(session.next_event(), AgiHangupNotice)
    assert session.hung_up and session.next_event() is None


def test_header_in_pieces() -> None:
    session = AgiSession()
    for i in range(len(HEADER)):
        session.receive_data(HEADER[i : i + 1])
        event = session.next_event()
        assert (event is None) is (i < len(HEADER) - 1)
    assert session.state is S.IDLE


def test_send_returns_the_wire_bytes_and_remembers_the_command() -> None:
    session = idle()
    command = AgiCommand("STREAM", "FILE", "pl/hello", "")
    assert session.send(command) == b'STREAM FILE pl/hello ""\n'
    assert session.awaiting is command and command.name == "STREAM"
    [reply] = receive(session, b"200 result=0 endpos=1234\n")
    assert isinstance(reply, AgiReply) and reply.extra == {"endpos": "1234"}
    assert session.state is S.IDLE and session.awaiting is None


def test_a_bad_command_is_refused_before_it_reaches_the_session() -> None:
    session = idle()
    with pytest.raises(ValueError):
        AgiCommand("SET", "VARIABLE", "X", "a\nHANGUP")
    with pytest.raises(ValueError):
        AgiCommand()
    assert session.state is S.IDLE


def test_usage_error_and_dead_channel_answer_the_command() -> None:
    session = awaiting()
    [usage] = receive(
        session,
        b"520-Invalid command syntax.  Proper usage follows:\nUsage: x\n520 End of proper usage.\n",
    )
    assert isinstance(usage, AgiUsageError) and session.state is S.IDLE
    session.send(AgiCommand("ANSWER"))
    [dead] = receive(session, DEAD)
    assert isinstance(dead, AgiDeadChannel) and session.hung_up
    # dead mode: dead-capable commands still run
    session.send(AgiCommand("GET", "VARIABLE", "DIALSTATUS"))
    [reply] = receive(session, REPLY)
    assert isinstance(reply, AgiReply) and reply.data == "CANCEL"
    assert session.state is S.IDLE


def test_hangup_notice_while_a_command_waits_keeps_replies_in_step() -> None:
    session = awaiting()
    hangup, dead = receive(session, HANGUP + DEAD)
    assert isinstance(hangup, AgiHangupNotice) and isinstance(dead, AgiDeadChannel)
    assert session.state is S.IDLE and session.hung_up


def test_reply_with_no_pending_command_is_a_protocol_error() -> None:
    session = idle()
    with pytest.raises(AgiProtocolError) as info:
        receive(session, REPLY)
    assert info.value.reason == "reply with no pending command"
    assert info.value.line == REPLY.decode().rstrip("\n")
    assert session.failure == "protocol error: reply with no pending command"
    assert session.state is S.FAILED and not session.hung_up


def test_events_before_an_illegal_one_are_still_had() -> None:
    session = awaiting()
    session.receive_data(REPLY + REPLY)
    assert isinstance(session.next_event(), AgiReply)
    assert session.state is S.IDLE
    with pytest.raises(AgiProtocolError, match="no pending command"):
        session.next_event()
    assert session.state is S.FAILED


def test_garbage_fails_the_session_with_the_parsers_reason() -> None:
    session = awaiting()
    with pytest.raises(AgiProtocolError) as info:
        session.receive_data(b"I am not Asterisk\n")
    assert info.value.line == "I am not Asterisk"
    assert session.state is S.FAILED and session.awaiting is None
    assert session.failure == f"protocol error: {info.value.reason}"
    with pytest.raises(AgiProtocolError):
        session.receive_data(REPLY)  # the stream is desynchronised for good


def test_end_of_stream_comes_after_the_events_before_it() -> None:
    session = awaiting()
    session.receive_data(REPLY)
    session.receive_data(b"")
    assert session.state is S.AWAITING_REPLY  # nothing taken yet
    assert isinstance(session.next_event(), AgiReply)
    assert session.state is S.IDLE
    assert session.next_event() is None
    assert session.state is S.CLOSED and session.closed_reason == "eof" and session.hung_up
    with pytest.raises(AgiStateError):
        session.receive_data(REPLY)


def test_end_of_stream_inside_a_usage_block_is_a_protocol_error() -> None:
    session = awaiting()
    session.receive_data(b"520-Invalid command syntax.  Proper usage follows:\n")
    with pytest.raises(AgiProtocolError, match="usage block"):
        session.receive_data(b"")
    assert session.state is S.FAILED and not session.hung_up


def test_first_reasons_are_kept() -> None:
    session = awaiting()
    session.connection_lost("write failed: reset")
    assert session.awaiting is None
    session.connection_lost("eof")
    assert session.closed_reason == "write failed: reset"
    session.fail("reader failed")
    session.fail("later")
    assert session.state is S.FAILED and session.failure == "reader failed"


def test_a_failed_session_notes_the_end_of_the_connection() -> None:
    # a command timed out; the socket then closes: the caller counts as gone
    session = awaiting()
    session.fail("no reply to GET within 0.2 s")
    assert not session.hung_up
    receive(session, b"")
    assert session.state is S.FAILED and session.hung_up and session.closed_reason == "eof"


def test_a_connection_that_ends_without_a_hangup_is_a_cut() -> None:
    session = awaiting()
    receive(session, b"")  # Asterisk died: the stream ends, no HANGUP, no 511
    assert session.hung_up and session.cut_off


def test_a_connection_that_ends_after_a_hangup_is_the_caller_leaving() -> None:
    for last_words in (b"HANGUP\n", b"511 Command Not Permitted on a dead channel\n"):
        session = awaiting()
        receive(session, last_words)
        assert not session.cut_off  # the connection is still there
        receive(session, b"")
        assert session.hung_up and not session.cut_off
