"""The AGI codec: every reply form Asterisk sends, split reads, bounds, quoting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.agi import (
    MAX_HEADER_LINES,
    MAX_LINE,
    AgiDeadChannel,
    AgiEvent,
    AgiHangupNotice,
    AgiHeader,
    AgiParser,
    AgiProtocolError,
    AgiReply,
    AgiUsageError,
    ParserState,
    encode_command,
)

HEADER = (
    b"agi_network: yes\n"
    b"agi_network_script: city?lang=pl&retry=2&retry=3&empty=\n"
    b"agi_request: agi://127.0.0.1:4573/city?lang=pl&retry=2&retry=3&empty=\n"
    b"agi_channel: PJSIP/caller-00000001\n"
    b"agi_language: en\n"
    b"agi_uniqueid: 1712345678.42\n"
    b"agi_callerid: 48221234567\n"
    b"agi_calleridname: Jan Kowalski\n"
    b"agi_accountcode: \n"
    b"agi_arg_1: first arg\n"
    b"\n"
)

USAGE_BLOCK = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b"Usage: DATABASE GET <family> <key>\n"
    b"\n"
    b"Example return code: 200 result=1 (testvariable)\n"
    b"520 End of proper usage.\n"
)

# A whole session as Asterisk could send it, and the events it must give.
STREAM = HEADER + (
    b"200 result=1\n"
    b"100 result=0 Trying...\n"
    b"200 result=1 (timeout) endpos=1234\n" + USAGE_BLOCK + b"200 result= (timeout)\n"
    b"HANGUP\n"
    b"511 Command Not Permitted on a dead channel or intercept routine\n"
)


def expected_stream_events() -> list[AgiEvent]:
    return [
        AgiHeader(
            env={
                "agi_network": "yes",
                "agi_network_script": "city?lang=pl&retry=2&retry=3&empty=",
                "agi_request": "agi://127.0.0.1:4573/city?lang=pl&retry=2&retry=3&empty=",
                "agi_channel": "PJSIP/caller-00000001",
                "agi_language": "en",
                "agi_uniqueid": "1712345678.42",
                "agi_callerid": "48221234567",
                "agi_calleridname": "Jan Kowalski",
                "agi_accountcode": "",
                "agi_arg_1": "first arg",
            },
            script="city",
            params={"lang": "pl", "retry": "2", "empty": ""},
        ),
        AgiReply(200, "1", "", "200 result=1"),
        AgiReply(
            200, "1", "timeout", "200 result=1 (timeout) endpos=1234", extra={"endpos": "1234"}
        ),
        AgiUsageError(
            "Invalid command syntax.  Proper usage follows:\n"
            "Usage: DATABASE GET <family> <key>\n"
            "\n"
            "Example return code: 200 result=1 (testvariable)"
        ),
        AgiReply(200, "", "timeout", "200 result= (timeout)"),
        AgiHangupNotice(),
        AgiDeadChannel("Command Not Permitted on a dead channel or intercept routine"),
    ]


def ready_parser() -> AgiParser:
    parser = AgiParser()
    [header] = parser.feed(b"agi_uniqueid: 1.1\n\n")
    assert isinstance(header, AgiHeader)
    assert parser.state is ParserState.READY
    return parser


def one(line: bytes) -> AgiEvent:
    [event] = ready_parser().feed(line)
    return event


# -- header ----------------------------------------------------------------------------------


def test_whole_stream_in_one_read() -> None:
    assert AgiParser().feed(STREAM) == expected_stream_events()


def test_header_without_network_script() -> None:
    [header] = AgiParser().feed(b"agi_request: /usr/bin/x\nagi_uniqueid: 9\n\n")
    assert isinstance(header, AgiHeader)
    assert header.script == ""
    assert header.params == {}
    assert header.env["agi_uniqueid"] == "9"


def test_header_crlf_line_endings() -> None:
    [header] = AgiParser().feed(b"agi_network_script: city\r\nagi_uniqueid: 7\r\n\r\n")
    assert isinstance(header, AgiHeader)
    assert header.script == "city"
    assert header.env["agi_uniqueid"] == "7"


def test_header_percent_encoded_params() -> None:
    [header] = AgiParser().feed(b"agi_network_script: city?name=a%20b&x=%3F\n\n")
    assert isinstance(header, AgiHeader)
    assert header.params == {"name": "a b", "x": "?"}


def test_header_incomplete_gives_nothing_yet() -> None:
    parser = AgiParser()
    assert parser.feed(b"agi_uniqueid: 1\nagi_callerid: 2\n") == []
    assert parser.state is ParserState.HEADER


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"hello\n",
        b"agi_uniqueid 1\n",  # no colon
        b"\n",  # empty header
        b"200 result=1\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",  # a TLS hello
    ],
)
def test_header_garbage_is_a_protocol_error(data: bytes) -> None:
    parser = AgiParser()
    with pytest.raises(AgiProtocolError):
        parser.feed(data)
    assert parser.state is ParserState.ERROR
    with pytest.raises(AgiProtocolError):
        parser.feed(b"agi_uniqueid: 1\n\n")  # a failed parser stays failed


def test_header_line_limit() -> None:
    ok = b"".join(b"agi_v%d: x\n" % i for i in range(MAX_HEADER_LINES)) + b"\n"
    [header] = AgiParser().feed(ok)
    assert isinstance(header, AgiHeader)
    assert len(header.env) == MAX_HEADER_LINES
    too_long = b"".join(b"agi_v%d: x\n" % i for i in range(MAX_HEADER_LINES + 1))
    with pytest.raises(AgiProtocolError, match="header longer"):
        AgiParser().feed(too_long)


def test_line_length_limit() -> None:
    value = b"x" * (MAX_LINE - len(b"agi_v: "))
    [header] = AgiParser().feed(b"agi_v: " + value + b"\n\n")
    assert isinstance(header, AgiHeader)
    with pytest.raises(AgiProtocolError, match="line longer"):
        AgiParser().feed(b"agi_v: " + value + b"x\n\n")


def test_endless_line_is_rejected_before_its_newline() -> None:
    parser = AgiParser()
    for _ in range(MAX_LINE // 1000):
        assert parser.feed(b"a" * 1000) == []
    with pytest.raises(AgiProtocolError, match="line longer"):
        parser.feed(b"a" * 1000)


def test_close_inside_header_or_usage_block() -> None:
    parser = AgiParser()
    parser.feed(b"agi_uniqueid: 1\n")
    with pytest.raises(AgiProtocolError, match="before the header ended"):
        parser.close()
    parser = ready_parser()
    parser.feed(b"520-Invalid command syntax.  Proper usage follows:\n")
    with pytest.raises(AgiProtocolError, match="usage block"):
        parser.close()
    ready_parser().close()  # between replies EOF is fine


# -- replies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "result", "data", "extra"),
    [
        ("200 result=0", "0", "", {}),
        ("200 result=-1", "-1", "", {}),
        ("200 result=1234", "1234", "", {}),  # GET DATA digits
        ("200 result=12 (timeout)", "12", "timeout", {}),  # digits typed before the timeout
        ("200 result= (timeout)", "", "timeout", {}),
        ("200 result=1 (hello world)", "1", "hello world", {}),  # GET VARIABLE
        ("200 result=1 ()", "1", "", {}),
        ("200 result=1 (a) b=c)", "1", "a) b=c", {}),  # a value holding ") "
        ("200 result=0 endpos=8000", "0", "", {"endpos": "8000"}),
        ("200 result=49 endpos=1600", "49", "", {"endpos": "1600"}),
        ("200 result=1 (digit) digit=5 endpos=400", "1", "digit", {"digit": "5", "endpos": "400"}),
        (
            "200 result=1 (speech) endpos=1234 results=2 foo bar",
            "1",
            "speech",
            {"endpos": "1234", "results": "2 foo bar"},
        ),
        ("200 result=-1 Gosub label not found", "-1", "Gosub label not found", {}),
        ("200 result=0 (timeout) endpos=0", "0", "timeout", {"endpos": "0"}),
    ],
)
def test_200_reply_forms(line: str, result: str, data: str, extra: dict[str, str]) -> None:
    assert one(line.encode() + b"\n") == AgiReply(200, result, data, line, extra=extra)


def test_other_codes_are_replies_with_their_text() -> None:
    assert one(b"510 Invalid or unknown command\n") == AgiReply(
        510, "", "Invalid or unknown command", "510 Invalid or unknown command"
    )
    assert one(b"503 result=-2 Memory allocation failure\n") == AgiReply(
        503, "-2", "Memory allocation failure", "503 result=-2 Memory allocation failure"
    )


def test_dead_channel() -> None:
    assert one(b"511 Command Not Permitted on a dead channel\n") == AgiDeadChannel(
        "Command Not Permitted on a dead channel"
    )


def test_hangup_notice_and_repeats() -> None:
    assert ready_parser().feed(b"HANGUP\nHANGUP\n") == [AgiHangupNotice(), AgiHangupNotice()]


def test_trying_lines_and_blank_lines_are_skipped() -> None:
    assert ready_parser().feed(b"100 result=0 Trying...\n\n200 result=1\n") == [
        AgiReply(200, "1", "", "200 result=1")
    ]


def test_single_line_usage_error() -> None:
    assert one(b"520 Invalid command syntax.  Proper usage not available.\n") == AgiUsageError(
        "Invalid command syntax.  Proper usage not available."
    )


def test_usage_block_then_reply_stays_in_step() -> None:
    parser = ready_parser()
    events = parser.feed(USAGE_BLOCK + b"200 result=1 (transfer)\n")
    assert isinstance(events[0], AgiUsageError)
    assert "DATABASE GET" in events[0].text
    assert events[1] == AgiReply(200, "1", "transfer", "200 result=1 (transfer)")
    assert parser.state is ParserState.READY


def test_usage_block_with_reply_like_lines_inside() -> None:
    # usage text quotes replies and says HANGUP: inside a block they are only text
    block = (
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b"200 result=1 (example)\n"
        b"HANGUP\n"
        b"520 End of proper usage.\n"
    )
    assert ready_parser().feed(block) == [
        AgiUsageError(
            "Invalid command syntax.  Proper usage follows:\n200 result=1 (example)\nHANGUP"
        )
    ]


def test_usage_block_end_glued_to_last_line() -> None:
    # res_agi writes the usage with "%s" and no newline of its own
    block = (
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b"Answers channel if not already in answer state.520 End of proper usage.\n"
    )
    assert ready_parser().feed(block) == [
        AgiUsageError(
            "Invalid command syntax.  Proper usage follows:\n"
            "Answers channel if not already in answer state."
        )
    ]


def test_usage_block_line_limit() -> None:
    parser = ready_parser()
    parser.feed(b"520-Invalid command syntax.  Proper usage follows:\n")
    with pytest.raises(AgiProtocolError, match="usage block longer"):
        parser.feed(b"text\n" * 250)


@pytest.mark.parametrize(
    "line",
    [
        b"200\n",
        b"200 result 1\n",
        b"200 ok\n",
        b"some random reply that we are not supposed to get\n",
        b"20 result=1\n",
        b"2000 result=1\n",
        b"200-result=1\n",
        b"agi_uniqueid: 1\n",  # a second header
        b"hangup\n",
    ],
)
def test_malformed_reply_lines(line: bytes) -> None:
    parser = ready_parser()
    with pytest.raises(AgiProtocolError) as info:
        parser.feed(line)
    assert info.value.line == line.rstrip(b"\n").decode()
    assert parser.state is ParserState.ERROR


def test_events_before_the_error_are_not_lost_to_state() -> None:
    # the exception carries the bad line; the state says the stream is unusable
    parser = ready_parser()
    with pytest.raises(AgiProtocolError, match="garbage"):
        parser.feed(b"200 result=1\ngarbage\n")
    assert parser.state is ParserState.ERROR


def test_non_utf8_bytes_do_not_crash() -> None:
    [header] = AgiParser().feed(b"agi_calleridname: Zo\xbf\xf3\xb3w\n\n")
    assert isinstance(header, AgiHeader)
    assert header.env["agi_calleridname"].startswith("Zo")


# -- split reads -----------------------------------------------------------------------------


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[AgiEvent]:
    parser = AgiParser()
    events: list[AgiEvent] = []
    start = 0
    for cut in sorted(cuts):
        events += parser.feed(data[start:cut])
        start = cut
    events += parser.feed(data[start:])
    return events


def test_every_single_split_point() -> None:
    expected = expected_stream_events()
    for cut in range(len(STREAM) + 1):
        assert feed_in_pieces(STREAM, [cut]) == expected, cut


def test_byte_by_byte() -> None:
    assert feed_in_pieces(STREAM, list(range(len(STREAM)))) == expected_stream_events()


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    assert feed_in_pieces(STREAM, cuts) == expected_stream_events()


# -- encoding --------------------------------------------------------------------------------


def test_encode_plain_words() -> None:
    assert encode_command("GET", "DATA", "pl/menu", "5000", "1") == b"GET DATA pl/menu 5000 1\n"


def test_encode_quotes_empty_and_spaces() -> None:
    assert encode_command("STREAM", "FILE", "beep", "") == b'STREAM FILE beep ""\n'
    assert encode_command("SET", "VARIABLE", "X", "a b") == b'SET VARIABLE X "a b"\n'
    assert encode_command("SET", "VARIABLE", "X", "a\tb") == b'SET VARIABLE X "a\tb"\n'


def test_encode_escapes_quotes_and_backslashes() -> None:
    assert encode_command("SET", "VARIABLE", "X", 'say "hi"') == b'SET VARIABLE X "say \\"hi\\""\n'
    assert encode_command("SET", "VARIABLE", "X", "c:\\dir") == b'SET VARIABLE X "c:\\\\dir"\n'


def test_encode_keeps_commas_and_unicode() -> None:
    assert encode_command("EXEC", "Dial", "PJSIP/a,20,") == b"EXEC Dial PJSIP/a,20,\n"
    assert encode_command("VERBOSE", "Łódź") == "VERBOSE Łódź\n".encode()


@pytest.mark.parametrize("bad", ["x\nHANGUP", "x\r", "\n", "a\x00b"])
def test_encode_rejects_injected_lines(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_command("SET", "VARIABLE", "X", bad)


def test_encode_needs_a_word() -> None:
    with pytest.raises(ValueError):
        encode_command()


def unquote_like_asterisk(line: str) -> list[str]:
    """A transcription of res_agi's parse_args, to check the encoder against it."""
    args: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and cur is None:
                cur = []
                args.append("")
            continue
        if ch in " \t" and not quoted and not escaped:
            if cur is not None:
                args[-1] = "".join(cur)
            cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if cur is None:
            cur = []
            args.append("")
        cur.append(ch)
        escaped = False
    if cur is not None:
        args[-1] = "".join(cur)
    return args


@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=["Cs"])
        ),
        min_size=1,
        max_size=6,
    )
)
def test_encode_round_trips_through_asterisks_argument_parser(words: list[str]) -> None:
    line = encode_command(*words).decode()
    assert line.endswith("\n") and line.count("\n") == 1
    assert unquote_like_asterisk(line[:-1]) == words
