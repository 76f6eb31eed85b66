"""Prompt texts (ivr/prompts/<lang>.json) rendered to 8 kHz WAV for Asterisk, cached by content.

Rendering happens once at start-up, never per call: espeak-ng speaks, sox converts to the
8 kHz 16-bit mono WAV Asterisk plays without transcoding.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import structlog

from cases.catalogue import Catalogue
from cases.services import load_services

PROMPTS_DIR = Path(__file__).with_name("prompts")
RENDERER_VERSION = "espeak-ng-1"
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


def _cache_key(segments: list[Segment]) -> str:
    blob = json.dumps([RENDERER_VERSION, segments], ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _render(segments: list[Segment], target: Path) -> None:
    espeak = shutil.which("espeak-ng")
    sox = shutil.which("sox")
    if espeak is None or sox is None:
        raise PromptError(
            "espeak-ng and sox are needed to render prompts (scripts/setup.sh installs them)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for i, (voice, text) in enumerate(segments):
            part = Path(tmp) / f"part{i}.wav"
            subprocess.run(
                [espeak, "-v", voice, "-s", "155", "-w", str(part), text],
                check=True,
                capture_output=True,
                timeout=60,
            )
            parts.append(str(part))
        partial = target.with_suffix(".tmp.wav")
        subprocess.run(
            [
                sox,
                *parts,
                "-r",
                "8000",
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
                str(partial),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        partial.replace(target)


def render_prompts(catalogue: Catalogue, cache_dir: Path, sounds_dir: Path) -> dict[str, list[str]]:
    """Make sounds_dir/<lang>/<name>.wav for every prompt; returns the names per language."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    rendered: dict[str, list[str]] = {}
    for language in available_languages():
        out_dir = sounds_dir / language
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, segments in prompt_texts(language, catalogue).items():
            cached = cache_dir / f"{_cache_key(segments)}.wav"
            if not cached.exists():
                _render(segments, cached)
            shutil.copyfile(cached, out_dir / f"{name}.wav")
        rendered[language] = sorted(prompt_texts(language, catalogue))
    log.info("prompts_ready", languages=sorted(rendered), sounds_dir=str(sounds_dir))
    return rendered
