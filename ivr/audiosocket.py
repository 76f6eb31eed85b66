"""AudioSocket wire codec: bytes from Asterisk in, typed frames out; our frames out as bytes.

AudioSocket (Asterisk's app_audiosocket / res_audiosocket) frames are a 1-byte type, a 2-byte
big-endian payload length and the payload. Asterisk sends a UUID frame first, then signed
linear 16-bit little-endian 8 kHz mono audio (320 bytes per 20 ms) and DTMF digits; it may
send a hang-up or an error frame. We send audio back (played to the caller) and a hang-up
frame to end the session, after which the dial plan continues.

Sans-IO: no sockets, no clock. The parser's transitions are a table (state, frame kind) ->
(action, next state) checked as soon as a frame's 3-byte header is complete, so a frame that
is not allowed (or too long for its kind) fails without waiting for its payload.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "DTMF_DIGITS",
    "ERROR_FRAME_FORWARDING",
    "ERROR_HANGUP",
    "ERROR_MEMORY",
    "FRAME_BYTES",
    "FRAME_SECONDS",
    "HEADER_BYTES",
    "MAX_AUDIO_PAYLOAD",
    "Audio",
    "AudioSocketError",
    "AudioSocketParser",
    "Dtmf",
    "Frame",
    "Hangup",
    "Kind",
    "ParserState",
    "PeerError",
    "SessionStart",
    "encode_audio",
    "encode_dtmf",
    "encode_error",
    "encode_hangup",
    "encode_session_start",
]

HEADER_BYTES = 3
SAMPLE_RATE = 8000
FRAME_SECONDS = 0.020
FRAME_BYTES = 320  # 20 ms of 8 kHz 16-bit mono: what Asterisk sends and expects
# Asterisk sends one channel frame per AudioSocket frame (20-30 ms in practice); 8 KiB is
# 0.5 s, far above anything real, and keeps a garbage length from buffering 64 KiB.
MAX_AUDIO_PAYLOAD = 8192
DTMF_DIGITS = frozenset("0123456789*#ABCD")

# Error codes Asterisk documents for the 0xff frame.
ERROR_HANGUP = 0x01  # the calling party hung up
ERROR_FRAME_FORWARDING = 0x02
ERROR_MEMORY = 0x04


class AudioSocketError(Exception):
    """The peer sent something that is not AudioSocket; the stream cannot be trusted."""


class Kind(enum.IntEnum):
    """Frame types on the wire."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


# Allowed payload lengths per kind, (min, max) inclusive.
_LENGTHS: dict[Kind, tuple[int, int]] = {
    Kind.HANGUP: (0, 0),
    Kind.UUID: (16, 16),
    Kind.DTMF: (1, 1),
    Kind.AUDIO: (0, MAX_AUDIO_PAYLOAD),
    Kind.ERROR: (0, 1),  # the error code is optional
}


@dataclass(frozen=True)
class SessionStart:
    """The first frame: the UUID given to AudioSocket() in the dial plan."""

    uuid: uuid.UUID


@dataclass(frozen=True)
class Audio:
    """Caller audio: signed linear 16-bit little-endian, 8 kHz mono."""

    pcm: bytes


@dataclass(frozen=True)
class Dtmf:
    """A key the caller pressed (sent by Asterisk when the key is released)."""

    digit: str


@dataclass(frozen=True)
class Hangup:
    """The peer ends the session."""


@dataclass(frozen=True)
class PeerError:
    """The peer reports an error; `code` is None when it sent none."""

    code: int | None


Frame = SessionStart | Audio | Dtmf | Hangup | PeerError


class ParserState(enum.Enum):
    AWAITING_UUID = "awaiting_uuid"
    STREAMING = "streaming"
    CLOSED = "closed"  # a hang-up frame or EOF ended the session
    ERROR = "error"  # a protocol error happened; the stream is desynchronised for good


_Action = Callable[["AudioSocketParser", bytes], "Frame | None"]

# Why a (state, kind) pair is missing from the table, for a readable error.
_REFUSALS: dict[tuple[ParserState, Kind], str] = {
    (ParserState.AWAITING_UUID, Kind.AUDIO): "audio frame before the UUID frame",
    (ParserState.AWAITING_UUID, Kind.DTMF): "DTMF frame before the UUID frame",
    (ParserState.STREAMING, Kind.UUID): "second UUID frame",
}


class AudioSocketParser:
    """Incremental parser of what Asterisk sends on an AudioSocket connection."""

    def __init__(self) -> None:
        self.state = ParserState.AWAITING_UUID
        self._buf = bytearray()
        self._kind: Kind | None = None  # header read, payload pending
        self._length = 0

    # -- actions: each returns the frame it completes, if any ---------------------------------

    def _start(self, payload: bytes) -> SessionStart:
        return SessionStart(uuid.UUID(bytes=payload))

    def _audio(self, payload: bytes) -> Audio | None:
        if len(payload) % 2:
            raise AudioSocketError(f"audio payload of odd length {len(payload)} (16-bit samples)")
        return Audio(payload) if payload else None  # an empty frame carries nothing

    def _dtmf(self, payload: bytes) -> Dtmf:
        digit = chr(payload[0])
        if digit not in DTMF_DIGITS:
            raise AudioSocketError(f"DTMF frame with a non-DTMF byte 0x{payload[0]:02x}")
        return Dtmf(digit)

    def _hangup(self, payload: bytes) -> Hangup:
        return Hangup()

    def _error(self, payload: bytes) -> PeerError:
        return PeerError(payload[0] if payload else None)

    # (state, kind) -> (action, next state); a missing pair is a protocol error
    _TABLE: ClassVar[dict[tuple[ParserState, Kind], tuple[_Action, ParserState]]] = {
        (ParserState.AWAITING_UUID, Kind.UUID): (_start, ParserState.STREAMING),
        # an error or hang-up before the UUID ends the session that never started
        (ParserState.AWAITING_UUID, Kind.HANGUP): (_hangup, ParserState.CLOSED),
        (ParserState.AWAITING_UUID, Kind.ERROR): (_error, ParserState.CLOSED),
        (ParserState.STREAMING, Kind.AUDIO): (_audio, ParserState.STREAMING),
        (ParserState.STREAMING, Kind.DTMF): (_dtmf, ParserState.STREAMING),
        # an error report does not end the stream; the peer closes if it gives up
        (ParserState.STREAMING, Kind.ERROR): (_error, ParserState.STREAMING),
        (ParserState.STREAMING, Kind.HANGUP): (_hangup, ParserState.CLOSED),
    }

    # -- public API ----------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Consume bytes; return the frames they complete. Raises AudioSocketError."""
        if self.state is ParserState.ERROR:
            raise AudioSocketError("parser already failed")
        self._buf += data
        frames: list[Frame] = []
        try:
            while True:
                if self._kind is None:
                    if len(self._buf) < HEADER_BYTES:
                        break
                    self._header(bytes(self._buf[:HEADER_BYTES]))
                    del self._buf[:HEADER_BYTES]
                if len(self._buf) < self._length:
                    break
                payload = bytes(self._buf[: self._length])
                del self._buf[: self._length]
                frame = self._complete(payload)
                if frame is not None:
                    frames.append(frame)
        except AudioSocketError:
            self.state = ParserState.ERROR
            raise
        return frames

    def close(self) -> None:
        """The peer closed the stream. Raises AudioSocketError if it stopped mid-frame."""
        state, self.state = self.state, ParserState.CLOSED
        if state is ParserState.ERROR:
            return  # already reported
        if self._kind is not None:
            raise AudioSocketError(
                f"connection closed mid-frame: {self._kind.name} payload "
                f"{len(self._buf)} of {self._length} bytes"
            )
        if self._buf:
            raise AudioSocketError(
                f"connection closed mid-frame: {len(self._buf)} of {HEADER_BYTES} header bytes"
            )
        if state is ParserState.AWAITING_UUID:
            raise AudioSocketError("connection closed before the UUID frame")

    # -- internals -------------------------------------------------------------------------------

    def _header(self, header: bytes) -> None:
        try:
            kind = Kind(header[0])
        except ValueError:
            raise AudioSocketError(f"unknown frame type 0x{header[0]:02x}") from None
        length = int.from_bytes(header[1:3], "big")
        if (self.state, kind) not in self._TABLE:
            if self.state is ParserState.CLOSED:
                raise AudioSocketError(f"{kind.name} frame after the hang-up frame")
            reason = _REFUSALS.get((self.state, kind))
            raise AudioSocketError(reason or f"{kind.name} frame in state {self.state.value}")
        low, high = _LENGTHS[kind]
        if not low <= length <= high:
            expected = str(low) if low == high else f"{low}..{high}"
            raise AudioSocketError(
                f"{kind.name} frame with a {length}-byte payload (expected {expected})"
            )
        self._kind, self._length = kind, length

    def _complete(self, payload: bytes) -> Frame | None:
        assert self._kind is not None  # set by _header
        action, next_state = self._TABLE[(self.state, self._kind)]
        frame = action(self, payload)
        self.state = next_state
        self._kind, self._length = None, 0
        return frame


def _frame(kind: Kind, payload: bytes = b"") -> bytes:
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


def encode_audio(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> bytes:
    """Audio frames of at most `frame_bytes` (20 ms by default) carrying `pcm`.

    Split rather than one big frame: Asterisk writes each frame to the channel as it
    arrives, so 20-ms frames are what a phone expects and what a sender can pace. Empty PCM
    gives no frames at all (Asterisk rejects a zero-length audio frame and ends the call).
    """
    if len(pcm) % 2:
        raise ValueError(f"PCM of odd length {len(pcm)}: samples are 16-bit")
    if frame_bytes <= 0 or frame_bytes % 2 or frame_bytes > MAX_AUDIO_PAYLOAD:
        raise ValueError(f"frame_bytes must be even and in 2..{MAX_AUDIO_PAYLOAD}")
    view = memoryview(pcm)
    return b"".join(
        _frame(Kind.AUDIO, bytes(view[i : i + frame_bytes]))
        for i in range(0, len(pcm), frame_bytes)
    )


def encode_hangup() -> bytes:
    """End the session; Asterisk's AudioSocket() returns and the dial plan continues."""
    return _frame(Kind.HANGUP)


def encode_error(code: int) -> bytes:
    """An error frame. Asterisk's AudioSocket() ends the call on anything but audio or
    hang-up, so this is for peers that understand it (and for tests)."""
    if not 0 <= code <= 0xFF:
        raise ValueError(f"error code {code} does not fit in one byte")
    return _frame(Kind.ERROR, bytes([code]))


# -- the Asterisk side: for simulators and tests --------------------------------------------------


def encode_session_start(session_id: uuid.UUID) -> bytes:
    return _frame(Kind.UUID, session_id.bytes)


def encode_dtmf(digit: str) -> bytes:
    if digit not in DTMF_DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return _frame(Kind.DTMF, digit.encode("ascii"))
