"""Settings of one CityLine process, read from CITYLINE_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(f"CITYLINE_{name}", default)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(f"CITYLINE_{name}")
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"CITYLINE_{name} must be a whole number, got {raw!r}") from exc


def _env_days(name: str, default: int) -> int | None:
    """A retention period in whole days (at least 1), or None for "never" (kept until deleted
    by hand)."""
    raw = os.environ.get(f"CITYLINE_{name}", "").strip().lower()
    if raw == "":
        return default
    if raw == "never":
        return None
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    raise SystemExit(f"CITYLINE_{name} must be a number of days (1 or more) or never, got {raw!r}")


def _default_state_dir() -> str:
    return _env("STATE_DIR", str(PROJECT_DIR / "var"))


@dataclass
class Settings:
    # Where the service keeps its state (embedded PostgreSQL, admin token, Asterisk run dirs).
    state_dir: Path = field(default_factory=lambda: Path(_default_state_dir()))
    cache_dir: Path = field(default_factory=lambda: Path(_env("CACHE", "/var/cache/cityline")))
    # The pages' browser libraries (JsSIP, uPlot), bundled by scripts/setup.sh.
    web_vendor_dir: Path = field(
        default_factory=lambda: Path(_env("WEB_VENDOR_DIR", str(PROJECT_DIR / "build" / "web")))
    )
    # The call recordings' archive (<day>/<call id>.ogg), private to the service's user: kept
    # apart from the code, under the state directory unless set.
    recordings_dir: Path = field(
        default_factory=lambda: Path(
            _env("RECORDINGS_DIR", str(Path(_default_state_dir()) / "recordings"))
        )
    )
    # How long a recording is kept, per kind, in days from the end of the call (None: never
    # deleted by the sweep). answered: a call an agent took; case: a call that opened or was
    # linked to a case (the recording is part of what the resident reported).
    recording_retention_days: dict[str, int | None] = field(
        default_factory=lambda: {
            "answered": _env_days("RECORDING_RETENTION_DAYS_ANSWERED", 90),
            "case": _env_days("RECORDING_RETENTION_DAYS_CASE", 365),
        }
    )
    # How finished recordings are stored: opus (Opus in Ogg, about a tenth of the WAV) or wav
    # (as Asterisk wrote it).
    recording_format: str = field(default_factory=lambda: _env("RECORDING_FORMAT", "opus"))
    # Empty: start the embedded PostgreSQL in state_dir.
    database_dsn: str = field(default_factory=lambda: _env("DATABASE_DSN", ""))
    # Empty: the system Asterisk if installed, else the sandbox built by scripts/setup.sh.
    asterisk_binary: str = field(default_factory=lambda: _env("ASTERISK_BIN", ""))
    instance_name: str = field(default_factory=lambda: _env("INSTANCE", "main"))
    http_host: str = field(default_factory=lambda: _env("HTTP_HOST", "127.0.0.1"))
    http_port: int = field(default_factory=lambda: _env_int("HTTP_PORT", 8080))
    agi_port: int = field(default_factory=lambda: _env_int("AGI_PORT", 4573))
    sip_port: int = field(default_factory=lambda: _env_int("SIP_PORT", 5060))
    ami_port: int = field(default_factory=lambda: _env_int("AMI_PORT", 5038))
    asterisk_http_port: int = field(default_factory=lambda: _env_int("ASTERISK_HTTP_PORT", 8088))
    rtp_start: int = field(default_factory=lambda: _env_int("RTP_START", 10000))
    rtp_end: int = field(default_factory=lambda: _env_int("RTP_END", 10999))
    # How long an agent's phone rings before the call goes back to the queue.
    ring_timeout_seconds: int = field(default_factory=lambda: _env_int("RING_TIMEOUT", 15))
    # Asterisk's own fallback queue: the longest wait before the resident is told to call again.
    fallback_wait_seconds: int = field(default_factory=lambda: _env_int("FALLBACK_WAIT", 600))
    wrap_up_seconds: int = field(default_factory=lambda: _env_int("WRAP_UP", 0))
    answer_target_seconds: int = field(default_factory=lambda: _env_int("ANSWER_TARGET", 15))
    # How a waiting call widens to more agents: target (when the 15 s target is at risk),
    # fixed (on timers, like app_queue penaltychange) or strict (never).
    widening: str = field(default_factory=lambda: _env("WIDENING", "target"))
    # Seconds between position / expected-wait announcements to a waiting resident.
    announce_period_seconds: int = field(default_factory=lambda: _env_int("ANNOUNCE_PERIOD", 30))
    # More waiting calls than this in one queue: announce at once and offer a callback.
    overflow_limit: int = field(default_factory=lambda: _env_int("OVERFLOW_LIMIT", 10))
    # host:port of the SIP trunk that reaches residents; empty: no callbacks are offered.
    callback_trunk: str = field(default_factory=lambda: _env("CALLBACK_TRUNK", ""))
    # Speech: a Vosk model directory per language (CITYLINE_VOSK_MODEL_PL=/path ...); a
    # language without one runs keypad-only. Phrases a language pack adds to the catalogue
    # (JSON {service_code: {language: [phrases]}}), and grammar mode for the open question
    # (for test packs whose small model cannot do free speech).
    vosk_models: dict[str, str] = field(
        default_factory=lambda: {
            k[len("CITYLINE_VOSK_MODEL_") :].lower(): v
            for k, v in os.environ.items()
            if k.startswith("CITYLINE_VOSK_MODEL_") and v
        }
    )
    speech_workers: int = field(default_factory=lambda: _env_int("SPEECH_WORKERS", 2))
    speech_phrases_file: str = field(default_factory=lambda: _env("SPEECH_PHRASES", ""))
    open_question_grammar: bool = field(
        default_factory=lambda: _env("OPEN_QUESTION_GRAMMAR", "0") == "1"
    )
    session_hours: int = field(default_factory=lambda: _env_int("SESSION_HOURS", 12))
    log_level: str = field(default_factory=lambda: _env("LOG_LEVEL", "INFO"))
    # Set by tests: the service then skips starting its own Asterisk.
    manage_asterisk: bool = field(default_factory=lambda: _env("MANAGE_ASTERISK", "1") == "1")
