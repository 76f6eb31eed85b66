"""Fuzzing the AGI codec (pbx/agi.py), no I/O: arbitrary, AGI-like and mutated bytes in
arbitrary reads. Only the codec's own errors may come out (AgiProtocolError for the peer's
bytes, AgiStateError for a step this side may not take), the state stays consistent, and
the same bytes give the same events however they are cut into reads."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.agi import (
    MAX_LINE,
    AgiCommand,
    AgiDeadChannel,
    AgiEvent,
    AgiHangupNotice,
    AgiHeader,
    AgiParser,
    AgiProtocolError,
    AgiReply,
    AgiSession,
    AgiStateError,
    AgiUsageError,
    ParserState,
    SessionState,
    encode_command,
)
from tests.fuzz.hostile import SPECIAL_BYTES, cut, fuzz_settings, mutated, seeds

# Bounded by example counts; the timeout only catches a run gone wrong on a loaded machine.
pytestmark = pytest.mark.timeout(600)

EVENT_TYPES = (AgiHeader, AgiReply, AgiUsageError, AgiHangupNotice, AgiDeadChannel)

VALID = (
    b"agi_network: yes\n"
    b"agi_network_script: city?lang=pl&k=%ff%00&k=2\n"
    b"agi_request: agi://127.0.0.1:4573/city?lang=pl\n"
    b"agi_channel: PJSIP/caller-00000001\n"
    b"agi_uniqueid: 1712345678.42\n"
    b"agi_callerid: 48221234567\n"
    b"agi_arg_1: first arg\n"
    b"\n"
    b"200 result=1\n"
    b"100 result=0 Trying...\n"
    b"200 result=1 (timeout) endpos=1234\n"
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b"Usage: DATABASE GET <family> <key>\n"
    b"\n"
    b"520 End of proper usage.\n"
    b"200 result=1 (value with ) inside) endpos=2\n"
    b"510 Invalid or unknown command\n"
    b"HANGUP\n"
    b"511 Command Not Permitted on a dead channel or intercept routine\n"
)

_text = st.text(
    st.characters(codec="utf-8", exclude_characters="\n"), max_size=40
) | st.sampled_from(["", " ", "(", ")", "()", "=", "a=", "=b", "(x) y=", "\r", "\x00", "result="])


@st.composite
def agi_line(draw: st.DrawFn) -> bytes:
    """One line shaped like something Asterisk sends, or nearly."""
    kinds = "env blank hangup trying reply usage_start usage_end dead code text long".split()
    kind = draw(st.sampled_from(kinds))
    if kind == "env":
        key = draw(st.from_regex(r"agi_[A-Za-z0-9_]{0,12}", fullmatch=True))
        line = f"{key}:" + draw(st.sampled_from(["", " "])) + draw(_text)
    elif kind == "blank":
        line = ""
    elif kind == "hangup":
        line = draw(st.sampled_from(["HANGUP", "HANGUP ", "hangup"]))
    elif kind == "trying":
        line = "100 " + draw(_text)
    elif kind == "reply":
        code = draw(st.sampled_from(["200", "510", "520", "511", "999", "100"]))
        line = f"{code} result={draw(_text)}" + draw(st.sampled_from(["", " "])) + draw(_text)
    elif kind == "usage_start":
        line = "520-" + draw(_text)
    elif kind == "usage_end":
        line = draw(_text) + draw(st.sampled_from(["520 End of proper usage.", "520 ", "520"]))
    elif kind == "dead":
        line = "511 " + draw(_text)
    elif kind == "code":
        line = f"{draw(st.integers(0, 1200))}{draw(st.sampled_from([' ', '-', '']))}{draw(_text)}"
    elif kind == "text":
        line = draw(_text)
    else:
        line = "200 result=1 (" + "x" * draw(st.integers(MAX_LINE - 20, MAX_LINE + 20)) + ")"
    raw = line.encode("utf-8", errors="surrogatepass")
    return raw + draw(st.sampled_from([b"\n", b"\r\n", b"\n", b""]))


agi_like = st.lists(agi_line(), max_size=30).map(b"".join)
hostile_bytes = st.one_of(
    st.binary(max_size=600),
    st.lists(st.binary(max_size=20) | st.sampled_from(SPECIAL_BYTES), max_size=60).map(b"".join),
    agi_like,
    mutated(VALID),
    st.just(VALID).flatmap(mutated).map(lambda b: b + b"200 result=1\n" * 3),
    agi_like.map(lambda b: VALID + b),
)


@dataclass
class ParserRun:
    events: list[AgiEvent]
    error: bool
    state: ParserState


def run_parser(reads: list[bytes], *, close: bool, check: bool = True) -> ParserRun:
    parser = AgiParser()
    events: list[AgiEvent] = []
    try:
        for read in reads:
            before = len(events)
            events.extend(parser.feed(read))
            if check:
                assert all(isinstance(e, EVENT_TYPES) for e in events[before:])
                check_parser(parser, events)
        if close:
            parser.close()
    except AgiProtocolError:
        # the parser is failed for good: every later feed is refused the same way
        assert parser.state is ParserState.ERROR or close
        if parser.state is ParserState.ERROR:
            for _ in range(2):
                try:
                    parser.feed(b"200 result=1\n")
                except AgiProtocolError:
                    pass
                else:
                    raise AssertionError("a failed parser accepted more bytes") from None
        return ParserRun(events, True, parser.state)
    return ParserRun(events, False, parser.state)


def check_parser(parser: AgiParser, events: list[AgiEvent]) -> None:
    headers = [e for e in events if isinstance(e, AgiHeader)]
    assert len(headers) <= 1, "two headers"
    if headers:
        assert isinstance(events[0], AgiHeader), "an event before the header"
        assert parser.state in (ParserState.READY, ParserState.USAGE)
        assert all(k.startswith("agi_") for k in headers[0].env)
    else:
        assert not events, "an event before the header"
        assert parser.state is ParserState.HEADER
    # what is held back is at most one unfinished line
    assert len(parser._buf) <= MAX_LINE
    assert b"\n" not in parser._buf


@given(hostile_bytes, seeds, st.booleans())
@fuzz_settings(1000)
def test_parser_takes_any_bytes_in_any_reads(data: bytes, seed: int, close: bool) -> None:
    reads = cut(data, seed)
    one_byte_reads = run_parser(
        [data[i : i + 1] for i in range(len(data))], close=close, check=False
    )
    got = run_parser(reads, close=close)
    # the same verdict however the bytes are cut; the events of the failing read are lost, the
    # ones before it are exactly those of a byte-by-byte read
    assert got.error == one_byte_reads.error
    if got.error:
        assert got.events == one_byte_reads.events[: len(got.events)]
    else:
        assert got.events == one_byte_reads.events
        assert got.state == one_byte_reads.state


# -- the session: commands and bytes interleaved at random ------------------------------------

_word = st.text(st.characters(codec="utf-8"), max_size=12)
operation = st.one_of(
    st.tuples(st.just("send"), st.lists(_word, min_size=1, max_size=4)),
    st.tuples(st.just("data"), hostile_bytes.filter(bool).map(lambda b: b[:300])),
    st.tuples(st.just("data"), agi_line()),
    st.tuples(st.just("data"), st.sampled_from([b"200 result=1\n", b"HANGUP\n", b"511 x\n"])),
    st.tuples(st.just("eof"), st.none()),
    st.tuples(st.just("next"), st.integers(1, 5)),
    st.tuples(st.just("lost"), _word),
    st.tuples(st.just("fail"), _word),
)

_HEADER = b"agi_network_script: city\nagi_uniqueid: 1.2\n\n"


def snapshot(session: AgiSession) -> tuple[object, ...]:
    return (
        session.state, session.awaiting, session.header, session.hung_up,
        session.hangup_reported, session.closed_reason, session.failure,
    )  # fmt: skip


def check_session(session: AgiSession) -> None:
    s = session.state
    assert (session.awaiting is not None) == (s is SessionState.AWAITING_REPLY)
    if s in (SessionState.IDLE, SessionState.AWAITING_REPLY):
        assert session.header is not None
    if session.failure is not None:
        assert s is SessionState.FAILED
    if session.closed_reason is not None:
        assert s in (SessionState.CLOSED, SessionState.FAILED)
        assert session.hung_up
    if session.hangup_reported:
        assert session.hung_up


@given(st.booleans(), st.lists(operation, max_size=25))
@fuzz_settings(1000)
def test_session_takes_any_interleaving(start_with_header: bool, ops: list[tuple]) -> None:
    session = AgiSession()
    if start_with_header:
        session.receive_data(_HEADER)
    gone = False  # CLOSED or FAILED: never back to a live state
    for op, arg in ops:
        before = snapshot(session)
        try:
            if op == "send":
                try:
                    command = AgiCommand(*arg)
                except ValueError:
                    continue  # a word with a line break or NUL is refused when made
                wire = session.send(command)
                assert wire.endswith(b"\n") and wire.count(b"\n") == 1
            elif op == "data":
                session.receive_data(arg)
            elif op == "eof":
                session.receive_data(b"")
            elif op == "next":
                for _ in range(arg):
                    event = session.next_event()
                    assert event is None or isinstance(event, EVENT_TYPES)
            elif op == "lost":
                session.connection_lost(arg)
            else:
                session.fail(arg)
        except AgiStateError:
            assert snapshot(session) == before, "a refused step changed the session"
        except AgiProtocolError:
            assert session.state is SessionState.FAILED
        check_session(session)
        if gone:
            assert session.state in (SessionState.CLOSED, SessionState.FAILED)
            if before[0] is SessionState.FAILED:
                assert session.state is SessionState.FAILED
        gone = session.state in (SessionState.CLOSED, SessionState.FAILED)


# -- commands out: any words either refused with ValueError or encoded as one line -----------


def res_agi_parse_args(line: str) -> list[str]:
    """res_agi.c parse_args, transcribed: how Asterisk splits a command line into words."""
    words: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and cur is None:
                cur = []
                words.append("")
            escaped = False
        elif ch in " \t" and not quoted and not escaped:
            if cur is not None:
                words[-1] = "".join(cur)
            cur = None
        elif ch == "\\" and not escaped:
            escaped = True
        else:
            if cur is None:
                cur = []
                words.append("")
            cur.append(ch)
            escaped = False
    if cur is not None:
        words[-1] = "".join(cur)
    return words


@given(st.lists(st.text(st.characters(), max_size=30), max_size=6))
@fuzz_settings(800)
def test_encode_command_is_one_line_that_asterisk_splits_back(words: list[str]) -> None:
    try:
        wire = encode_command(*words)
    except ValueError:  # no words, a line break or NUL, or text that is not UTF-8
        bad = not words or any(c in w for w in words for c in "\r\n\x00")
        if not bad:
            for w in words:
                try:
                    w.encode("utf-8")
                except UnicodeEncodeError:
                    bad = True
        assert bad
        return
    assert wire.endswith(b"\n") and wire.count(b"\n") == 1
    assert res_agi_parse_args(wire[:-1].decode("utf-8")) == words
