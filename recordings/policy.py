"""What the recordings' rules say, with no I/O and no clock of their own (time is passed in).

Retention: every stored recording is of one kind, and each kind has its own period in days,
counted from the end of the call (None: the sweep never deletes that kind). A recording expires
at `recorded_at + days`; the sweep deletes what has expired at the time it is given.

Kinds:
  answered  a call an agent took (the recording is for complaints and quality review)
  case      a call that opened a case or was linked to one: the recording is part of what the
            resident reported, so it is kept as long as the case may need it

A call linked to a case after its recording was made changes kind then: the sweep classifies
at the time it runs, never at recording time.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import PurePath

KINDS = ("answered", "case")
DEFAULT_RETENTION_DAYS: Mapping[str, int | None] = {"answered": 90, "case": 365}

# The archive's layout: <root>/<YYYY-MM-DD>/<call id>.<suffix>
DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STORED_SUFFIXES = (".ogg", ".wav")
CONTENT_TYPES = {".ogg": "audio/ogg; codecs=opus", ".wav": "audio/wav"}

# Conversion: at least this long for any file, plus a second per this many bytes of WAV
# (8 kHz 16-bit mono is 16,000 bytes a second: 10 s of audio per second of budget, where ffmpeg
# does hundreds).
CONVERSION_BASE_SECONDS = 30.0
CONVERSION_BYTES_PER_SECOND = 160_000


class RetentionError(ValueError):
    """A retention setting that cannot be used."""


@dataclass(frozen=True)
class Retention:
    """The period of each kind, in days; None: kept until deleted by hand."""

    days: Mapping[str, int | None]

    @classmethod
    def of(cls, days: Mapping[str, int | None]) -> Retention:
        unknown = set(days) - set(KINDS)
        if unknown:
            raise RetentionError(f"unknown recording kinds {sorted(unknown)}; kinds: {KINDS}")
        merged = {**DEFAULT_RETENTION_DAYS, **days}
        for kind, value in merged.items():
            if value is not None and (not isinstance(value, int) or value < 1):
                raise RetentionError(f"{kind}: a retention of at least 1 day, or None, is needed")
        return cls(merged)

    def days_for(self, kind: str) -> int | None:
        return self.days[kind]

    def cutoff(self, kind: str, now: datetime) -> datetime | None:
        """Recordings of this kind made before this instant have expired at `now`."""
        days = self.days[kind]
        return None if days is None else now - timedelta(days=days)

    def shortest_days(self) -> int | None:
        periods = [d for d in self.days.values() if d is not None]
        return min(periods) if periods else None


@dataclass(frozen=True)
class StoredRecording:
    """A call's stored recording as the sweep sees it."""

    call_id: uuid.UUID
    recorded_at: datetime  # the end of the call (its arrival when the end is unknown)
    linked_to_case: bool

    @property
    def kind(self) -> str:
        return "case" if self.linked_to_case else "answered"


@dataclass(frozen=True)
class Expiry:
    recording: StoredRecording
    kind: str
    retention_days: int
    expired_at: datetime


def expiry_of(recording: StoredRecording, retention: Retention, now: datetime) -> Expiry | None:
    """The expiry of one recording at `now`, or None while it is to be kept."""
    kind = recording.kind
    days = retention.days_for(kind)
    if days is None:
        return None
    expires = recording.recorded_at + timedelta(days=days)
    if expires > now:
        return None
    return Expiry(recording, kind, days, expires)


def expired(
    recordings: Iterable[StoredRecording], retention: Retention, now: datetime
) -> list[Expiry]:
    """The recordings to delete at `now`, the longest expired first."""
    found = [e for r in recordings if (e := expiry_of(r, retention, now)) is not None]
    return sorted(found, key=lambda e: (e.expired_at, str(e.recording.call_id)))


def day_of(name: str) -> date | None:
    """The day an archive folder holds (its name), or None for anything else."""
    if not DAY_DIR.match(name):
        return None
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def day_past_retention(day: date, retention: Retention, now: datetime) -> bool:
    """Whether every recording archived on `day` is past the shortest period: a file of that
    day that no call refers to any more (left by a crash, or by a call record that is gone) is
    deleted then, as an answered call's would be."""
    days = retention.shortest_days()
    if days is None:
        return False
    end_of_day = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return end_of_day + timedelta(days=days) <= now


def content_type(path: str | PurePath) -> str:
    return CONTENT_TYPES.get(PurePath(path).suffix.lower(), "application/octet-stream")


def conversion_timeout(wav_bytes: int) -> float:
    """How long converting a WAV of this size may take before it is given up (the WAV kept)."""
    return CONVERSION_BASE_SECONDS + max(wav_bytes, 0) / CONVERSION_BYTES_PER_SECOND


def compression_ratio(wav_bytes: int, stored_bytes: int) -> float | None:
    return round(wav_bytes / stored_bytes, 2) if stored_bytes > 0 else None
