"""Endpointing, resampling and result handling of the speech pool: pure, no Vosk."""

from __future__ import annotations

import json
import math
from array import array
from pathlib import Path

import pytest

from ivr.speech import SpeechModelError, SpeechPool, SpeechUnavailable
from ivr.speech_core import (
    EndpointConfig,
    Endpointer,
    Result,
    Upsampler,
    Word,
    merge_results,
    nearest_phrase,
    parse_vosk_result,
    split_phrases,
)

RATE = 8000


def tone(ms: int, amplitude: int = 8000, freq: float = 440.0) -> bytes:
    n = RATE * ms // 1000
    return array(
        "h", (int(amplitude * math.sin(2 * math.pi * freq * i / RATE)) for i in range(n))
    ).tobytes()


def quiet(ms: int) -> bytes:
    return b"\0\0" * (RATE * ms // 1000)


def push_in_frames(ep: Endpointer, pcm: bytes, size: int) -> list[tuple[int, str]]:
    """(bytes pushed when it ended, reason) for every end."""
    ends = []
    for i in range(0, len(pcm), size):
        reason = ep.push(pcm[i : i + size])
        if reason:
            ends.append((i + size, reason))
    return ends


def test_silence_alone_never_ends_an_utterance() -> None:
    ep = Endpointer(EndpointConfig(silence_ms=300))
    assert push_in_frames(ep, quiet(10_000), 320) == []
    assert not ep.in_speech


def test_speech_then_silence_ends_after_the_configured_silence() -> None:
    ep = Endpointer(EndpointConfig(silence_ms=500))
    assert ep.push(tone(400)) is None
    assert ep.in_speech
    assert ep.push(quiet(480)) is None
    assert ep.push(quiet(20)) == "silence"
    assert ep.speech_ms == 0  # starts afresh for the next utterance


def test_a_click_does_not_start_speech() -> None:
    ep = Endpointer(EndpointConfig(silence_ms=300, min_speech_ms=100))
    assert push_in_frames(ep, tone(40) + quiet(2000), 320) == []


def test_a_caller_who_never_stops_is_cut_at_max_length() -> None:
    ep = Endpointer(EndpointConfig(max_utterance_ms=2000))
    ends = push_in_frames(ep, tone(5000), 320)
    assert [r for _, r in ends] == ["max_length", "max_length"]
    assert ends[0][0] == 2000 * 16  # after exactly 2 s of audio


def test_chunking_and_odd_byte_counts_do_not_change_the_decision() -> None:
    audio = quiet(200) + tone(600) + quiet(900) + tone(300) + quiet(900)
    by_frame = push_in_frames(Endpointer(), audio, 320)
    assert [r for _, r in by_frame] == ["silence", "silence"]
    for size in (1, 7, 321, 1600):
        got = push_in_frames(Endpointer(), audio, size)
        assert [r for _, r in got] == ["silence", "silence"]
        # the same 20 ms frame ends each utterance: reported within one chunk of it
        for (pos, _), (frame_pos, _) in zip(got, by_frame, strict=True):
            assert frame_pos <= pos < frame_pos + size + 320
    # one push reports the first end only; the worker's hops (<= 1 s) are shorter than two
    assert push_in_frames(Endpointer(), audio, len(audio)) == [(len(audio), "silence")]


def test_quiet_noise_below_threshold_is_not_speech() -> None:
    ep = Endpointer(EndpointConfig(threshold=400))
    assert push_in_frames(ep, tone(3000, amplitude=300), 320) == []


def test_upsampler_interpolates_a_tone_and_is_continuous_across_chunks() -> None:
    pcm = tone(500, amplitude=10_000, freq=1000)
    whole = Upsampler(2)(pcm)
    up = Upsampler(2)
    pieces = b"".join(up(pcm[i : i + 321 * 2]) for i in range(0, len(pcm), 321 * 2))
    assert whole == pieces
    out = array("h", whole)
    assert len(out) == 2 * (len(pcm) // 2 - 8)  # 8 input samples held back for the filter
    # every output sample sits on the 16 kHz version of the same sine (same start, no shift)
    ideal = [10_000 * math.sin(2 * math.pi * 1000 * i / 16000) for i in range(len(out))]
    worst = max(abs(a - b) for a, b in zip(out[32:], ideal[32:], strict=True))
    assert worst < 10_000 * 0.03
    assert (
        array("h", Upsampler(2)(array("h", [5000] * 100).tobytes()))[40:60].tolist() == [5000] * 20
    )
    assert Upsampler(2)(b"") == b""
    with pytest.raises(ValueError):
        Upsampler(1)


def test_phrases_with_unknown_words_are_dropped_whole() -> None:
    known = {"street", "light", "pothole"}
    kept, dropped = split_phrases(
        ["Street light", "pothole", "street lamp", "  "], lambda w: w in known
    )
    assert kept == ["Street light", "pothole"]
    assert dropped == {"street lamp": ["lamp"], "  ": []}


def test_nearest_phrase_maps_a_mixed_result_back_to_an_allowed_phrase() -> None:
    phrases = ["street light", "pothole", "rubbish"]
    assert nearest_phrase("street lights", phrases) == "street light"
    assert nearest_phrase("pot hole", phrases) == "pothole"
    assert nearest_phrase("", phrases) is None
    assert nearest_phrase("zzzzzzzzzz", phrases) is None


def test_vosk_json_becomes_a_result_without_unk() -> None:
    raw = json.dumps(
        {
            "result": [
                {"word": "street", "start": 0.1, "end": 0.4, "conf": 1.0},
                {"word": "[unk]", "start": 0.4, "end": 0.5, "conf": 0.5},
                {"word": "light", "start": 0.5, "end": 0.9, "conf": 0.6},
            ],
            "text": "street [unk] light",
        }
    )
    result = parse_vosk_result(raw, ["street light", "pothole"])
    assert result.text == "street light"
    assert result.confidence == pytest.approx(0.8)
    assert result.words[1] == Word("light", 0.5, 0.9, 0.6)
    assert result.phrase == "street light"
    assert parse_vosk_result('{"text": ""}') == Result("", 0.0)


def test_merge_keeps_only_spoken_results() -> None:
    a = Result("a", 1.0, (Word("a", 0, 1, 1.0),))
    b = Result("b", 0.5, (Word("b", 1, 2, 0.5),))
    empty = Result("", 0.0)
    assert merge_results([empty]) == empty
    assert merge_results([a, empty]) == a
    merged = merge_results([a, empty, b])
    assert merged.text == "a b"
    assert merged.confidence == pytest.approx(0.75)


async def test_pool_with_only_missing_models_runs_keypad_only(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    pool = SpeechPool({"pl": missing, "en": tmp_path}, workers=1)
    await pool.start()
    try:
        assert pool.available_languages() == frozenset()
        assert str(missing) in pool.errors["pl"] and "'pl'" in pool.errors["pl"]
        assert "not a Vosk model" in pool.errors["en"]
        with pytest.raises(SpeechUnavailable, match="pl"):
            await pool.open("call-1", "pl")
        with pytest.raises(SpeechUnavailable, match="de"):
            await pool.open("call-1", "de")
    finally:
        await pool.close()
    with pytest.raises(SpeechModelError, match="no-such-model"):
        await SpeechPool({"pl": missing}).start(strict=True)
