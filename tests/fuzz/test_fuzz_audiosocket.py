"""Fuzzing the AudioSocket codec (ivr/audiosocket.py), no I/O: arbitrary, frame-like and
mutated bytes in arbitrary reads. Only AudioSocketError may come out, the frames given are
well formed and in an order the protocol allows, nothing unbounded is buffered, and the same
bytes give the same frames however they are cut into reads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.audiosocket import (
    DTMF_DIGITS,
    HEADER_BYTES,
    MAX_AUDIO_PAYLOAD,
    Audio,
    AudioSocketError,
    AudioSocketParser,
    Dtmf,
    Frame,
    Hangup,
    Kind,
    ParserState,
    PeerError,
    SessionStart,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_session_start,
)
from tests.fuzz.hostile import SPECIAL_BYTES, cut, fuzz_settings, mutated, seeds

# Bounded by example counts; the timeout only catches a run gone wrong on a loaded machine.
pytestmark = pytest.mark.timeout(600)

SID = uuid.UUID("0f6b1c1e-3a5d-4b7e-9c2a-1d2e3f405162")
VALID = (
    encode_session_start(SID)
    + encode_audio(bytes(range(256)) + bytes(64))
    + encode_dtmf("5")
    + b"\xff\x00\x01\x02"
    + b"\xff\x00\x00"
    + encode_audio(b"\x01\x00" * 80)
    + encode_dtmf("#")
    + encode_hangup()
)


@st.composite
def frame(draw: st.DrawFn) -> bytes:
    """One frame as Asterisk could send it, or nearly: any type byte, a length that may not
    match the payload or the type's bounds."""
    kind = draw(st.sampled_from([*Kind]).map(int) | st.integers(0, 255))
    payload_size = draw(st.sampled_from([0, 1, 2, 15, 16, 17, 320, 321]) | st.integers(0, 700))
    payload = draw(st.binary(min_size=payload_size, max_size=payload_size))
    if kind == Kind.DTMF and payload and draw(st.booleans()):
        payload = draw(st.sampled_from(sorted(DTMF_DIGITS))).encode() + payload[1:]
    length = draw(
        st.just(len(payload))
        | st.sampled_from([0, 1, 16, MAX_AUDIO_PAYLOAD, MAX_AUDIO_PAYLOAD + 1, 0xFFFF])
        | st.integers(0, 0xFFFF)
    )
    return bytes([kind]) + length.to_bytes(2, "big") + payload


frame_like = st.lists(frame(), max_size=12).map(b"".join)
hostile_bytes = st.one_of(
    st.binary(max_size=600),
    st.lists(st.binary(max_size=8) | st.sampled_from(SPECIAL_BYTES), max_size=60).map(b"".join),
    frame_like,
    frame_like.map(lambda b: encode_session_start(SID) + b),
    mutated(VALID),
    st.just(VALID[:-3]).flatmap(mutated).map(lambda b: b + encode_dtmf("1") * 3),
    # a large audio frame whose payload may or may not all come
    st.integers(0, MAX_AUDIO_PAYLOAD // 2).map(
        lambda n: encode_session_start(SID) + b"\x10" + (2 * n).to_bytes(2, "big") + b"\x01" * n
    ),
)


@dataclass
class Run:
    frames: list[Frame]
    error: bool
    state: ParserState


def check_frames(frames: list[Frame]) -> None:
    started = ended = False
    for i, f in enumerate(frames):
        assert not ended, "a frame after the session ended"
        if isinstance(f, SessionStart):
            assert i == 0 and isinstance(f.uuid, uuid.UUID)
            started = True
        elif isinstance(f, Audio):
            assert started and f.pcm and len(f.pcm) % 2 == 0
            assert len(f.pcm) <= MAX_AUDIO_PAYLOAD
        elif isinstance(f, Dtmf):
            assert started and f.digit in DTMF_DIGITS
        elif isinstance(f, PeerError):
            assert f.code is None or 0 <= f.code <= 255
            ended = not started
        else:
            assert isinstance(f, Hangup)
            ended = True


def run_parser(reads: list[bytes], *, close: bool, check: bool = True) -> Run:
    parser = AudioSocketParser()
    frames: list[Frame] = []
    try:
        for read in reads:
            frames.extend(parser.feed(read))
            if check:
                check_frames(frames)
                # at most one unfinished frame is held back
                assert parser.buffered < max(HEADER_BYTES, MAX_AUDIO_PAYLOAD)
        if close:
            parser.close()
            assert parser.state is ParserState.CLOSED
    except AudioSocketError:
        if close:
            assert parser.state in (ParserState.ERROR, ParserState.CLOSED)
        else:
            assert parser.state is ParserState.ERROR
        if parser.state is ParserState.ERROR:
            try:
                parser.feed(encode_dtmf("1"))
            except AudioSocketError:
                pass
            else:
                raise AssertionError("a failed parser accepted more bytes") from None
            parser.close()  # already reported: closing after an error is quiet
        return Run(frames, True, parser.state)
    return Run(frames, False, parser.state)


@given(hostile_bytes, seeds, st.booleans())
@fuzz_settings(1500)
def test_parser_takes_any_bytes_in_any_reads(data: bytes, seed: int, close: bool) -> None:
    reference = run_parser([data[i : i + 1] for i in range(len(data))], close=close, check=False)
    got = run_parser(cut(data, seed), close=close)
    assert got.error == reference.error
    if got.error:
        assert got.frames == reference.frames[: len(got.frames)]
    else:
        assert got.frames == reference.frames
        assert got.state == reference.state


# -- the encoders: refuse with ValueError, or give frames that parse back --------------------


@given(st.binary(max_size=3000), st.integers(-4, MAX_AUDIO_PAYLOAD + 4) | st.just(320))
@fuzz_settings(500)
def test_encode_audio_round_trips(pcm: bytes, frame_bytes: int) -> None:
    try:
        wire = encode_audio(pcm, frame_bytes)
    except ValueError:
        assert len(pcm) % 2 or not 0 < frame_bytes <= MAX_AUDIO_PAYLOAD or frame_bytes % 2
        return
    parser = AudioSocketParser()
    frames = parser.feed(encode_session_start(SID) + wire + encode_hangup())
    assert frames[0] == SessionStart(SID) and frames[-1] == Hangup()
    audio = frames[1:-1]
    assert all(isinstance(f, Audio) and len(f.pcm) <= frame_bytes for f in audio)
    assert b"".join(f.pcm for f in audio if isinstance(f, Audio)) == pcm


@given(st.text(max_size=3), st.integers(-300, 600))
@fuzz_settings(300)
def test_encode_dtmf_and_error_round_trip(digit: str, code: int) -> None:
    parser = AudioSocketParser()
    parser.feed(encode_session_start(SID))
    try:
        assert parser.feed(encode_dtmf(digit)) == [Dtmf(digit)]
    except ValueError:
        assert digit not in DTMF_DIGITS
    try:
        assert parser.feed(encode_error(code)) == [PeerError(code)]
    except ValueError:
        assert not 0 <= code <= 255
