"""The AudioSocket codec: every frame type, split reads, state rules, bounds, encoders."""

from __future__ import annotations

import itertools
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.audiosocket import (
    FRAME_BYTES,
    MAX_AUDIO_PAYLOAD,
    Audio,
    AudioSocketError,
    AudioSocketParser,
    Dtmf,
    Frame,
    Hangup,
    ParserState,
    PeerError,
    SessionStart,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_session_start,
)

SID = uuid.UUID("0f6b1c1e-3a5d-4b7e-9c2a-1d2e3f405162")
PCM = bytes(range(256)) + bytes(64)  # 320 bytes, not silence

# A whole session as Asterisk could send it, and the frames it must give.
STREAM = (
    encode_session_start(SID)
    + encode_audio(PCM)
    + encode_dtmf("5")
    + encode_audio(b"\x01\x00" * 80)
    + b"\xff\x00\x01\x02"  # error with a code
    + b"\xff\x00\x00"  # error without one
    + encode_dtmf("#")
    + encode_hangup()
)
EXPECTED: list[Frame] = [
    SessionStart(SID),
    Audio(PCM),
    Dtmf("5"),
    Audio(b"\x01\x00" * 80),
    PeerError(2),
    PeerError(None),
    Dtmf("#"),
    Hangup(),
]


def feed_all(chunks: list[bytes]) -> tuple[list[Frame], AudioSocketParser]:
    parser = AudioSocketParser()
    frames: list[Frame] = []
    for chunk in chunks:
        frames += parser.feed(chunk)
    return frames, parser


def test_whole_stream_at_once() -> None:
    frames, parser = feed_all([STREAM])
    assert frames == EXPECTED
    assert parser.state is ParserState.CLOSED
    assert parser.buffered == 0
    parser.close()  # clean EOF after the hang-up


def test_wire_format_of_each_frame_type() -> None:
    assert encode_session_start(SID) == b"\x01\x00\x10" + SID.bytes
    assert encode_dtmf("*") == b"\x03\x00\x01*"
    assert encode_audio(b"\x10\x20") == b"\x10\x00\x02\x10\x20"
    assert encode_hangup() == b"\x00\x00\x00"
    assert encode_error(4) == b"\xff\x00\x01\x04"


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_split_at_every_byte_boundary(cut: int) -> None:
    frames, parser = feed_all([STREAM[:cut], STREAM[cut:]])
    assert frames == EXPECTED
    assert parser.state is ParserState.CLOSED


def test_one_byte_at_a_time() -> None:
    frames, _ = feed_all([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert frames == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_random_splits_give_the_same_frames(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    frames, _ = feed_all(chunks)
    assert frames == EXPECTED


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=MAX_AUDIO_PAYLOAD // 2).map(
                lambda b: Audio(b + b"\x00" * (len(b) % 2))
            ),
            st.sampled_from(sorted("0123456789*#ABCD")).map(Dtmf),
            st.integers(min_value=0, max_value=255).map(PeerError),
        ),
        max_size=20,
    ),
    st.data(),
)
def test_encoded_frames_round_trip(body: list[Frame], data: st.DataObject) -> None:
    wire = encode_session_start(SID)
    for frame in body:
        if isinstance(frame, Audio):
            wire += encode_audio(frame.pcm, frame_bytes=MAX_AUDIO_PAYLOAD)
        elif isinstance(frame, Dtmf):
            wire += encode_dtmf(frame.digit)
        elif isinstance(frame, PeerError):
            assert frame.code is not None
            wire += encode_error(frame.code)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    points = [0, *sorted(cuts), len(wire)]
    frames, _ = feed_all([wire[a:b] for a, b in itertools.pairwise(points)])
    # an empty audio frame carries nothing and gives no event
    assert frames == [SessionStart(SID), *[f for f in body if f != Audio(b"")]]


# -- state rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (encode_audio(PCM), "audio frame before the UUID frame"),
        (encode_dtmf("1"), "DTMF frame before the UUID frame"),
        (encode_session_start(SID) * 2, "second UUID frame"),
        (encode_session_start(SID) + encode_hangup() + encode_audio(PCM), "after the hang-up"),
        (b"\x02\x00\x00", "unknown frame type 0x02"),
        (b"\x7f\x00\x00", "unknown frame type 0x7f"),
        (b"\x01\x00\x0f" + bytes(15), "UUID frame with a 15-byte payload (expected 16)"),
        (b"\x01\x00\x11" + bytes(17), "UUID frame with a 17-byte payload"),
        (encode_session_start(SID) + b"\x03\x00\x02" + b"12", "DTMF frame with a 2-byte"),
        (encode_session_start(SID) + b"\x03\x00\x00", "DTMF frame with a 0-byte"),
        (encode_session_start(SID) + b"\x03\x00\x01x", "non-DTMF byte 0x78"),
        (encode_session_start(SID) + b"\x03\x00\x01\x00", "non-DTMF byte 0x00"),
        (encode_session_start(SID) + b"\x10\x00\x03abc", "odd length 3"),
        (encode_session_start(SID) + b"\x00\x00\x01x", "HANGUP frame with a 1-byte"),
        (encode_session_start(SID) + b"\xff\x00\x02xx", "ERROR frame with a 2-byte"),
    ],
)
def test_protocol_errors(wire: bytes, message: str) -> None:
    parser = AudioSocketParser()
    with pytest.raises(AudioSocketError, match=re.escape(message)):
        parser.feed(wire)
    assert parser.state is ParserState.ERROR
    with pytest.raises(AudioSocketError, match="already failed"):
        parser.feed(b"")


def test_oversize_audio_fails_on_the_header_alone() -> None:
    parser = AudioSocketParser()
    parser.feed(encode_session_start(SID))
    too_long = (MAX_AUDIO_PAYLOAD + 2).to_bytes(2, "big")
    with pytest.raises(AudioSocketError, match=f"{MAX_AUDIO_PAYLOAD + 2}-byte payload"):
        parser.feed(b"\x10" + too_long)  # no payload sent: nothing is waited for
    biggest = b"\x10" + b"\xff\xff"  # the largest length the field can hold
    with pytest.raises(AudioSocketError, match="65535-byte payload"):
        AudioSocketParser().feed(encode_session_start(SID) + biggest)


def test_largest_allowed_audio_frame() -> None:
    pcm = bytes(MAX_AUDIO_PAYLOAD)
    frames, _ = feed_all([encode_session_start(SID), encode_audio(pcm, MAX_AUDIO_PAYLOAD)])
    assert frames == [SessionStart(SID), Audio(pcm)]


def test_empty_audio_frame_gives_nothing() -> None:
    frames, parser = feed_all([encode_session_start(SID) + b"\x10\x00\x00" + encode_dtmf("1")])
    assert frames == [SessionStart(SID), Dtmf("1")]
    assert parser.state is ParserState.STREAMING


def test_hangup_or_error_before_the_uuid_closes() -> None:
    frames, parser = feed_all([encode_hangup()])
    assert frames == [Hangup()] and parser.state is ParserState.CLOSED
    frames, parser = feed_all([encode_error(1)])
    assert frames == [PeerError(1)] and parser.state is ParserState.CLOSED


def test_peer_error_keeps_streaming() -> None:
    frames, parser = feed_all([encode_session_start(SID) + encode_error(2) + encode_audio(PCM)])
    assert frames == [SessionStart(SID), PeerError(2), Audio(PCM)]
    assert parser.state is ParserState.STREAMING


# -- end of stream ---------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 2, 3, 4, 100, len(encode_audio(PCM)) - 1])
def test_eof_mid_frame(keep: int) -> None:
    parser = AudioSocketParser()
    parser.feed(encode_session_start(SID) + encode_audio(PCM)[:keep])
    with pytest.raises(AudioSocketError, match="closed mid-frame"):
        parser.close()
    assert parser.state is ParserState.CLOSED


def test_eof_mid_frame_message_says_how_much_arrived() -> None:
    parser = AudioSocketParser()
    parser.feed(encode_session_start(SID) + encode_audio(PCM)[:103])
    with pytest.raises(AudioSocketError, match="AUDIO payload 100 of 320 bytes"):
        parser.close()


def test_eof_between_frames_is_clean() -> None:
    parser = AudioSocketParser()
    parser.feed(encode_session_start(SID) + encode_audio(PCM))
    parser.close()  # Asterisk ends a session by closing: a hang-up
    assert parser.state is ParserState.CLOSED


def test_eof_before_the_uuid() -> None:
    with pytest.raises(AudioSocketError, match="before the UUID"):
        AudioSocketParser().close()
    parser = AudioSocketParser()
    parser.feed(b"\x01\x00")
    with pytest.raises(AudioSocketError, match="mid-frame: 2 of 3 header bytes"):
        parser.close()


def test_close_after_an_error_does_not_raise_again() -> None:
    parser = AudioSocketParser()
    with pytest.raises(AudioSocketError):
        parser.feed(b"\x42\x00\x00")
    parser.close()


# -- encoders --------------------------------------------------------------------------------


def test_encode_audio_splits_into_20ms_frames() -> None:
    pcm = bytes(range(200)) * 4  # 800 bytes: 320 + 320 + 160
    wire = encode_audio(pcm)
    frames, _ = feed_all([encode_session_start(SID), wire])
    assert [len(f.pcm) for f in frames if isinstance(f, Audio)] == [FRAME_BYTES, FRAME_BYTES, 160]
    assert b"".join(f.pcm for f in frames if isinstance(f, Audio)) == pcm
    assert len(wire) == len(pcm) + 3 * 3


def test_encode_audio_other_frame_size() -> None:
    assert encode_audio(b"abcd", frame_bytes=2) == b"\x10\x00\x02ab\x10\x00\x02cd"


def test_encode_audio_empty_gives_no_frame() -> None:
    # Asterisk treats a zero-length audio frame as an error and ends the call
    assert encode_audio(b"") == b""


@pytest.mark.parametrize("pcm", [b"\x00", b"\x00" * 321])
def test_encode_audio_rejects_odd_pcm(pcm: bytes) -> None:
    with pytest.raises(ValueError, match="odd length"):
        encode_audio(pcm)


@pytest.mark.parametrize("size", [0, -2, 3, MAX_AUDIO_PAYLOAD + 2])
def test_encode_audio_rejects_bad_frame_size(size: int) -> None:
    with pytest.raises(ValueError, match="frame_bytes"):
        encode_audio(b"\x00\x00", frame_bytes=size)


@pytest.mark.parametrize("code", [-1, 256])
def test_encode_error_rejects_codes_beyond_a_byte(code: int) -> None:
    with pytest.raises(ValueError, match="one byte"):
        encode_error(code)


@pytest.mark.parametrize("digit", ["", "12", "x", "a", "\x00"])
def test_encode_dtmf_rejects_non_digits(digit: str) -> None:
    with pytest.raises(ValueError, match="not a DTMF digit"):
        encode_dtmf(digit)
