"""AGI wire codec: bytes from Asterisk in, typed events out; commands out as bytes.

Sans-IO: no sockets, no clock. Two state machines, each a table so that every accepted
sequence is visible in one place and anything not in the table is an error:

- AgiParser, the lines: (state, line kind) -> (action, next state).
- AgiSession, the conversation (h11's way): which command is owed a reply, whether the caller
  has hung up, whether the connection is gone or the session failed. It owns a parser.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, NoReturn
from urllib.parse import parse_qs

__all__ = [
    "MAX_BLOCK_LINES",
    "MAX_HEADER_LINES",
    "MAX_LINE",
    "AgiCommand",
    "AgiDeadChannel",
    "AgiEvent",
    "AgiHangupNotice",
    "AgiHeader",
    "AgiParser",
    "AgiProtocolError",
    "AgiReply",
    "AgiSession",
    "AgiStateError",
    "AgiUsageError",
    "ParserState",
    "SessionState",
    "encode_command",
]

MAX_LINE = 8192  # bytes, without the newline
MAX_HEADER_LINES = 200
MAX_BLOCK_LINES = 200  # lines in one 520- usage block

_USAGE_END = "520 End of proper usage."


class AgiProtocolError(Exception):
    """The peer sent something that is not AGI; the session cannot be trusted any more."""

    def __init__(self, reason: str, line: str = "") -> None:
        super().__init__(f"{reason}: {line!r}" if line else reason)
        self.reason = reason
        self.line = line


class AgiStateError(RuntimeError):
    """This side asked for what its session state does not allow (a bug here, not the peer's)."""


@dataclass(frozen=True)
class AgiHeader:
    """The `agi_*` environment sent once at the start of a session."""

    env: dict[str, str]
    script: str = ""
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgiReply:
    """One reply line, e.g. `200 result=1 (timeout) endpos=1234`."""

    code: int
    result: str
    data: str
    raw: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgiUsageError:
    """520: Asterisk rejected the command's syntax (single line or a `520-` block)."""

    text: str


@dataclass(frozen=True)
class AgiHangupNotice:
    """An unsolicited `HANGUP` line: the caller has gone (sent when AGISIGHUP is not `no`)."""


@dataclass(frozen=True)
class AgiDeadChannel:
    """511: the command was refused because the channel is dead."""

    text: str = ""


AgiEvent = AgiHeader | AgiReply | AgiUsageError | AgiHangupNotice | AgiDeadChannel


class ParserState(enum.Enum):
    HEADER = "header"  # reading agi_* lines up to the blank line
    READY = "ready"  # between replies
    USAGE = "usage"  # inside a 520- block, waiting for the closing 520 line
    ERROR = "error"  # a protocol error happened; the stream is desynchronised for good


class _Kind(enum.Enum):
    BLANK = enum.auto()
    ENV = enum.auto()  # agi_key: value
    HANGUP = enum.auto()
    TRYING = enum.auto()  # 100 ...
    DEAD = enum.auto()  # 511 ...
    USAGE_START = enum.auto()  # 520-...
    USAGE_LINE = enum.auto()  # 520 ... (a whole usage error on one line)
    REPLY = enum.auto()  # any other NNN ...
    TEXT = enum.auto()  # anything else (legal only inside a usage block)
    USAGE_END = enum.auto()  # the line that closes a usage block


_ENV_RE = re.compile(r"(agi_[A-Za-z0-9_]+):(?: (.*))?")
_CODE_RE = re.compile(r"([1-9][0-9]{2})([ -])(.*)")
_RESULT_RE = re.compile(r"result=(\S*)(?: (.*))?")
_EXTRA_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")


def _classify(state: ParserState, line: str) -> _Kind:
    if state is ParserState.USAGE:
        # Asterisk writes the usage text with "%s" and no newline of its own, so the closing
        # marker can be glued to the end of the last usage line.
        if line.startswith("520 ") or line.endswith(_USAGE_END):
            return _Kind.USAGE_END
        return _Kind.TEXT
    if not line:
        return _Kind.BLANK
    if state is ParserState.HEADER:
        return _Kind.ENV if _ENV_RE.fullmatch(line) else _Kind.TEXT
    if line == "HANGUP":
        return _Kind.HANGUP
    m = _CODE_RE.fullmatch(line)
    if m is None:
        return _Kind.TEXT
    code, sep = m.group(1), m.group(2)
    if code == "100":
        return _Kind.TRYING
    if code == "520":
        return _Kind.USAGE_START if sep == "-" else _Kind.USAGE_LINE
    if sep == "-":
        return _Kind.TEXT  # no other multi-line replies exist in AGI
    if code == "511":
        return _Kind.DEAD
    return _Kind.REPLY


def parse_reply(line: str) -> AgiReply:
    """Parse one `NNN result=X (data) k=v ...` line (also used for non-200 codes)."""
    m = _CODE_RE.fullmatch(line)
    if m is None or m.group(2) != " ":
        raise AgiProtocolError("malformed reply", line)
    code = int(m.group(1))
    rest = m.group(3)
    rm = _RESULT_RE.fullmatch(rest)
    if rm is None:
        if code == 200:
            raise AgiProtocolError("200 reply without result=", line)
        # e.g. "510 Invalid or unknown command": the text is the data
        return AgiReply(code=code, result="", data=rest, raw=line)
    result, tail = rm.group(1), rm.group(2) or ""
    data, extra = _split_tail(tail)
    return AgiReply(code=code, result=result, data=data, raw=line, extra=extra)


def _split_tail(tail: str) -> tuple[str, dict[str, str]]:
    """Split what follows `result=X` into the parenthesised data and key=value pairs."""
    tail = tail.strip(" ")
    if not tail:
        return "", {}
    if tail.startswith("("):
        # GET VARIABLE prints the value raw inside (...), so the value may itself hold ")":
        # a tail that ends in ")" is all data; otherwise the last ") " before key=value pairs.
        if tail.endswith(")"):
            return tail[1:-1], {}
        for i in range(len(tail) - 1, 0, -1):
            if tail[i] == ")" and tail[i + 1 : i + 2] == " ":
                extra = _parse_extra(tail[i + 2 :])
                if extra is not None:
                    return tail[1:i], extra
        return tail, {}
    extra = _parse_extra(tail)
    if extra is None:
        # free text such as "Gosub label not found"
        return tail, {}
    return "", extra


def _parse_extra(text: str) -> dict[str, str] | None:
    """`endpos=1 results=foo bar` -> {'endpos': '1', 'results': 'foo bar'}; None if not pairs."""
    out: dict[str, str] = {}
    key: str | None = None
    for token in text.split(" "):
        m = _EXTRA_RE.fullmatch(token)
        if m is not None:
            key = m.group(1)
            out[key] = m.group(2)
        elif key is None:
            return None
        else:
            # a value with spaces (speech results): glue it to the previous key
            out[key] = f"{out[key]} {token}"
    return out


def _header_event(env: dict[str, str]) -> AgiHeader:
    # FastAGI URLs carry parameters: agi://host/city?lang=pl -> script "city", params {lang: pl}
    script, _, query = env.get("agi_network_script", "").partition("?")
    params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return AgiHeader(env=env, script=script, params=params)


_Action = Callable[["AgiParser", str], "AgiEvent | None"]


class AgiParser:
    """Incremental parser of what Asterisk sends on an AGI connection."""

    def __init__(self) -> None:
        self.state = ParserState.HEADER
        self._buf = bytearray()
        self._env: dict[str, str] = {}
        self._header_lines = 0
        self._block: list[str] = []

    # -- actions: each returns the event it completes, if any --------------------------------

    def _env_line(self, line: str) -> None:
        self._header_lines += 1
        if self._header_lines > MAX_HEADER_LINES:
            raise AgiProtocolError(f"header longer than {MAX_HEADER_LINES} lines", line)
        m = _ENV_RE.fullmatch(line)
        assert m is not None  # classified as ENV
        self._env[m.group(1)] = m.group(2) or ""

    def _header_end(self, line: str) -> AgiHeader:
        if not self._env:
            raise AgiProtocolError("empty header", line)
        return _header_event(self._env)

    def _skip(self, line: str) -> None:
        return None

    def _hangup(self, line: str) -> AgiHangupNotice:
        return AgiHangupNotice()

    def _dead(self, line: str) -> AgiDeadChannel:
        return AgiDeadChannel(text=line[4:])

    def _reply(self, line: str) -> AgiReply:
        return parse_reply(line)

    def _usage_line(self, line: str) -> AgiUsageError:
        return AgiUsageError(text=line[4:])

    def _usage_start(self, line: str) -> None:
        self._block = [line[4:]]

    def _usage_text(self, line: str) -> None:
        self._block.append(line)
        if len(self._block) > MAX_BLOCK_LINES:
            raise AgiProtocolError(f"usage block longer than {MAX_BLOCK_LINES} lines", line)

    def _usage_end(self, line: str) -> AgiUsageError:
        if not line.startswith("520 "):
            self._block.append(line[: -len(_USAGE_END)])  # text glued before the marker
        text = "\n".join(self._block).strip("\n")
        self._block = []
        return AgiUsageError(text=text)

    # (state, kind) -> (action, next state); a missing pair is a protocol error
    _TABLE: ClassVar[dict[tuple[ParserState, _Kind], tuple[_Action, ParserState]]] = {
        (ParserState.HEADER, _Kind.ENV): (_env_line, ParserState.HEADER),
        (ParserState.HEADER, _Kind.BLANK): (_header_end, ParserState.READY),
        # Asterisk never sends blank lines between replies; tolerating them costs nothing
        (ParserState.READY, _Kind.BLANK): (_skip, ParserState.READY),
        (ParserState.READY, _Kind.TRYING): (_skip, ParserState.READY),
        (ParserState.READY, _Kind.HANGUP): (_hangup, ParserState.READY),
        (ParserState.READY, _Kind.DEAD): (_dead, ParserState.READY),
        (ParserState.READY, _Kind.REPLY): (_reply, ParserState.READY),
        (ParserState.READY, _Kind.USAGE_LINE): (_usage_line, ParserState.READY),
        (ParserState.READY, _Kind.USAGE_START): (_usage_start, ParserState.USAGE),
        (ParserState.USAGE, _Kind.TEXT): (_usage_text, ParserState.USAGE),
        (ParserState.USAGE, _Kind.USAGE_END): (_usage_end, ParserState.READY),
    }

    # -- public API ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[AgiEvent]:
        """Consume bytes; return the events they complete. Raises AgiProtocolError."""
        if self.state is ParserState.ERROR:
            raise AgiProtocolError("parser already failed")
        self._buf += data
        events: list[AgiEvent] = []
        try:
            while True:
                nl = self._buf.find(b"\n")
                if nl < 0:
                    if len(self._buf) > MAX_LINE:
                        raise AgiProtocolError(
                            f"line longer than {MAX_LINE} bytes", self._preview(self._buf)
                        )
                    break
                raw = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if len(raw) > MAX_LINE:
                    raise AgiProtocolError(f"line longer than {MAX_LINE} bytes", self._preview(raw))
                event = self._line(raw.rstrip(b"\r").decode("utf-8", errors="replace"))
                if event is not None:
                    events.append(event)
        except AgiProtocolError:
            self.state = ParserState.ERROR
            raise
        return events

    def close(self) -> None:
        """The peer closed the stream. Raises AgiProtocolError if it stopped mid-message."""
        if self.state is ParserState.HEADER:
            raise AgiProtocolError("connection closed before the header ended")
        if self.state is ParserState.USAGE:
            raise AgiProtocolError("connection closed inside a usage block")
        # an unterminated last line is dropped: nothing waits for a partial reply

    # -- internals -------------------------------------------------------------------------------

    def _line(self, line: str) -> AgiEvent | None:
        kind = _classify(self.state, line)
        entry = self._TABLE.get((self.state, kind))
        if entry is None:
            raise AgiProtocolError(f"unexpected line in state {self.state.value}", line)
        action, next_state = entry
        event = action(self, line)
        self.state = next_state
        return event

    @staticmethod
    def _preview(raw: bytes | bytearray) -> str:
        return bytes(raw[:80]).decode("utf-8", errors="replace") + "..."


_NEEDS_QUOTES = re.compile(r'[\s"\\]')


def encode_command(*words: str) -> bytes:
    """Encode one AGI command line, quoting arguments the way res_agi's parse_args reads them."""
    if not words:
        raise ValueError("empty AGI command")
    out: list[str] = []
    for word in words:
        # A newline would end this command and start a second one chosen by the caller's data;
        # NUL would cut the C string short.
        if any(c in word for c in "\r\n\x00"):
            raise ValueError(f"AGI argument contains a line break or NUL: {word!r}")
        if word == "" or _NEEDS_QUOTES.search(word):
            escaped = word.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'"{escaped}"')
        else:
            out.append(word)
    return (" ".join(out) + "\n").encode("utf-8")


class AgiCommand:
    """One command line to send, checked and encoded when made: ValueError for bad words."""

    __slots__ = ("wire", "words")

    def __init__(self, *words: str) -> None:
        self.wire = encode_command(*words)
        self.words = words

    @property
    def name(self) -> str:
        return self.words[0]

    def __repr__(self) -> str:
        return f"AgiCommand{self.words!r}"


# --- the conversation ----------------------------------------------------------------------


class SessionState(enum.Enum):
    HEADER = "header"  # the agi_* environment has not ended yet
    IDLE = "idle"  # no reply is owed: a command may be sent
    AWAITING_REPLY = "awaiting_reply"  # a command was sent and its reply is owed
    CLOSED = "closed"  # the connection is gone (EOF, reset); for a call that is a hang-up
    FAILED = "failed"  # protocol error or a local failure (timeout): the stream is untrusted


class _Input(enum.Enum):
    SEND = "a command"
    HEADER = "a header"
    REPLY = "a reply"  # AgiReply, AgiUsageError
    DEAD = "a 511 reply"  # answers the command and says the channel is dead
    HANGUP = "a HANGUP notice"
    LOST = "the end of the connection"
    FAIL = "a failure"


_INPUT_OF: dict[type, _Input] = {
    AgiHeader: _Input.HEADER,
    AgiReply: _Input.REPLY,
    AgiUsageError: _Input.REPLY,
    AgiDeadChannel: _Input.DEAD,
    AgiHangupNotice: _Input.HANGUP,
}

# Inputs that say the caller is gone; recorded even when the input itself is out of turn.
_CALLER_GONE = frozenset({_Input.DEAD, _Input.HANGUP, _Input.LOST})
# What Asterisk says when the channel hung up; the connection ending without it is a cut.
_ASTERISK_SAW_HANGUP = frozenset({_Input.DEAD, _Input.HANGUP})

_S = SessionState
# state -> {input: next state}; a missing pair is illegal. LOST and FAIL are facts, legal in
# every state. After a HANGUP the channel runs in dead mode and still takes commands.
_TRANSITIONS: dict[SessionState, dict[_Input, SessionState]] = {
    _S.HEADER: {
        _Input.HEADER: _S.IDLE,
        _Input.LOST: _S.CLOSED,
        _Input.FAIL: _S.FAILED,
    },
    _S.IDLE: {
        _Input.SEND: _S.AWAITING_REPLY,
        _Input.HANGUP: _S.IDLE,
        _Input.LOST: _S.CLOSED,
        _Input.FAIL: _S.FAILED,
    },
    _S.AWAITING_REPLY: {
        _Input.REPLY: _S.IDLE,
        _Input.DEAD: _S.IDLE,
        # Asterisk sends it between commands; the pending command still gets its reply
        _Input.HANGUP: _S.AWAITING_REPLY,
        _Input.LOST: _S.CLOSED,
        _Input.FAIL: _S.FAILED,
    },
    # after a failed write the read side may still hold what Asterisk sent before it went
    _S.CLOSED: {
        _Input.HANGUP: _S.CLOSED,
        _Input.LOST: _S.CLOSED,
        _Input.FAIL: _S.FAILED,
    },
    # a session failed on a timeout keeps reading until the connection ends
    _S.FAILED: {
        _Input.HANGUP: _S.FAILED,
        _Input.LOST: _S.FAILED,
        _Input.FAIL: _S.FAILED,
    },
}


class AgiSession:
    """One AGI conversation, sans-IO: commands in as AgiCommand, out as bytes; bytes in, events
    out. It knows which command is owed a reply, and that a reply with none owed is a protocol
    error.

    ``receive_data(data)`` queues what the bytes complete (``b""`` is the end of the stream);
    ``next_event()`` takes them one at a time, each applied to the state as it is taken, so the
    events before an illegal one are still had. A protocol error (AgiProtocolError) leaves the
    session FAILED; asking for an illegal step here (AgiStateError) changes nothing.
    """

    def __init__(self) -> None:
        self.state = SessionState.HEADER
        self.header: AgiHeader | None = None
        self.awaiting: AgiCommand | None = None  # the command whose reply is owed
        self.hung_up = False  # HANGUP, 511 or the connection gone: the caller has left
        self.hangup_reported = False  # Asterisk itself said so (HANGUP or 511)
        self.closed_reason: str | None = None  # why the connection is gone (the first reason)
        self.failure: str | None = None  # why the session failed (the first reason)
        self._parser = AgiParser()
        self._events: deque[AgiEvent] = deque()
        self._eof = False  # the peer ended the stream; applied once the queue is taken

    # -- this side -------------------------------------------------------------------------------

    @property
    def cut_off(self) -> bool:
        """The connection ended without Asterisk reporting a hang-up: Asterisk died or the
        link broke, so the call was cut, not left by the caller."""
        return self.closed_reason is not None and not self.hangup_reported

    def send(self, command: AgiCommand) -> bytes:
        """The bytes to write for `command`. AgiStateError unless the session is IDLE."""
        next_state = self._next(_Input.SEND)
        if next_state is None:
            raise AgiStateError(f"cannot send {command.name} in state {self.state.value}")
        self._enter(next_state)
        self.awaiting = command
        return command.wire

    def connection_lost(self, reason: str) -> None:
        """The connection is gone (EOF, read or write error): any owed reply never comes."""
        if self.closed_reason is None:
            self.closed_reason = reason
        self._enter(self._always(_Input.LOST))

    def fail(self, reason: str) -> None:
        """End the session on an error (a reply that did not come in time, ...)."""
        if self.failure is None:
            self.failure = reason
        self._enter(self._always(_Input.FAIL))

    # -- the peer --------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from Asterisk; ``b""`` when it closed the stream. Raises AgiProtocolError for
        bytes that are not AGI or a stream that ended mid-message."""
        if self._eof:
            raise AgiStateError("data after the end of the stream")
        try:
            if data:
                self._events.extend(self._parser.feed(data))
            else:
                self._parser.close()
                self._eof = True
        except AgiProtocolError as exc:
            self._protocol_error(exc)

    def next_event(self) -> AgiEvent | None:
        """The next event received, applied to the state; None when there is none (yet).
        Raises AgiProtocolError for an event the state does not allow (a reply with no command
        owed one)."""
        if self._events:
            event = self._events.popleft()
            self._receive(event)
            return event
        if self._eof and self.closed_reason is None:
            self.connection_lost("eof")
        return None

    # -- internals -------------------------------------------------------------------------------

    def _receive(self, event: AgiEvent) -> None:
        what = _INPUT_OF[type(event)]
        next_state = self._next(what)
        if next_state is None:
            if what in (_Input.REPLY, _Input.DEAD):
                reason = "reply with no pending command"
            else:
                reason = f"{what.value} in state {self.state.value}"
            self._protocol_error(AgiProtocolError(reason, _line_of(event)))
        self._enter(next_state)
        if isinstance(event, AgiHeader):
            self.header = event

    def _next(self, what: _Input) -> SessionState | None:
        """The state `what` leads to, None if it is illegal here; notes a caller gone either way
        (a 511 out of turn still says the channel is dead)."""
        if what in _CALLER_GONE:
            self.hung_up = True
        if what in _ASTERISK_SAW_HANGUP:
            self.hangup_reported = True
        return _TRANSITIONS[self.state].get(what)

    def _always(self, what: _Input) -> SessionState:
        next_state = self._next(what)
        assert next_state is not None, f"{what} must be legal in every state"
        return next_state

    def _enter(self, state: SessionState) -> None:
        self.state = state
        if state is not _S.AWAITING_REPLY:
            self.awaiting = None

    def _protocol_error(self, exc: AgiProtocolError) -> NoReturn:
        self.fail(f"protocol error: {exc.reason}")
        raise exc


def _line_of(event: AgiEvent) -> str:
    """The line an event came from, near enough for an error message."""
    if isinstance(event, AgiReply):
        return event.raw
    if isinstance(event, AgiDeadChannel):
        return f"511 {event.text}".rstrip()
    if isinstance(event, AgiUsageError):
        return f"520 {event.text}".rstrip()
    if isinstance(event, AgiHangupNotice):
        return "HANGUP"
    return ""
