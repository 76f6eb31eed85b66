"""Call recordings: where MixMonitor writes, and storing finished files in the archive.

Asterisk may run in a chroot sandbox, so it writes into its own spool and we map that path
to the host before storing the file. A finished WAV is compressed (Opus in Ogg) straight from
the spool into the archive; only once the compressed file is written and checked does the WAV
go. When compression fails, or the service stops during it, the WAV itself is kept (archived,
or left in the spool for the next start): a recording is never lost to its compression.
Everything archived is private to the service's user (folders 0700, files 0600).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from recordings.compress import CompressionFailed, compress
from recordings.files import PART_SUFFIX, file_size, make_private, private_dir, take
from recordings.policy import compression_ratio, conversion_timeout

log = structlog.get_logger(__name__)

FORMATS = ("opus", "wav")
WORK_DIR = ".work"  # inside the archive: pydub's temporary copies, removed after each file


# The dial plan's recordings of fallback-queue calls: fallback-<Asterisk uniqueid>.wav
FALLBACK_PREFIX = "fallback-"


class RecordingCollector:
    def __init__(
        self,
        *,
        asterisk_spool_dir: str,
        host_path: Callable[[str], Path],
        archive_dir: Path,
        store_format: str = "opus",
        converters: int = 1,
        settle_seconds: float = 0.5,
        give_up_seconds: float = 20.0,
    ) -> None:
        if store_format not in FORMATS:
            raise ValueError(f"recording format must be one of {FORMATS}, not {store_format!r}")
        self._spool = asterisk_spool_dir.rstrip("/")
        self._host_path = host_path
        self._archive = archive_dir
        self._format = store_format
        # Conversions at once: each is an ffmpeg, and the machine also carries the calls.
        self._converters = asyncio.Semaphore(converters)
        self._settle = settle_seconds
        self._give_up = give_up_seconds

    @property
    def archive_dir(self) -> Path:
        return self._archive

    def asterisk_path_for(self, call_id: str) -> str:
        return f"{self._spool}/{call_id}.wav"

    def fallback_path_for(self, asterisk_uniqueid: str) -> str:
        """Where the dial plan records a call in the fallback queue (it may not know our id)."""
        return f"{self._spool}/{FALLBACK_PREFIX}{asterisk_uniqueid}.wav"

    async def collect(self, call_id: str, asterisk_path: str) -> str | None:
        """Wait until MixMonitor has finished the file, then store it; None if there is none."""
        source = self._host_path(asterisk_path)
        if not await self._settled(source):
            log.warning("recording_missing", call_id=call_id, source=str(source))
            return None
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        return await self._store(call_id, source, day)

    async def leftovers(self) -> list[tuple[str, Path]]:
        """Recordings still in the spool: (call id, file). Called at start-up, before any call,
        they are the ones a stopped or crashed process never moved."""
        spool = self._host_path(self._spool)
        files = await asyncio.to_thread(lambda: sorted(spool.glob("*.wav")))
        found = []
        for path in files:
            if path.stem.startswith(FALLBACK_PREFIX):
                continue  # fallback_leftovers(): named by channel, not by call
            try:
                found.append((str(uuid.UUID(path.stem)), path))
            except ValueError:
                log.warning("recording_not_ours", path=str(path))
        return found

    async def fallback_leftovers(self) -> list[tuple[str, Path]]:
        """Fallback-queue recordings still in the spool: (Asterisk uniqueid, file)."""
        spool = self._host_path(self._spool)
        files = await asyncio.to_thread(lambda: sorted(spool.glob(f"{FALLBACK_PREFIX}*.wav")))
        return [(path.stem.removeprefix(FALLBACK_PREFIX), path) for path in files]

    async def archive(self, call_id: str, source: Path) -> str:
        """Store a finished recording in the archive, under the day it was last written."""
        mtime = await asyncio.to_thread(lambda: source.stat().st_mtime)
        day = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d")
        return await self._store(call_id, source, day)

    async def _store(self, call_id: str, source: Path, day: str) -> str:
        folder = self._archive / day
        await asyncio.to_thread(_private_archive, self._archive, folder)
        if self._format == "opus":
            stored = await self._compressed(call_id, source, folder)
            if stored is not None:
                return stored
        target = folder / f"{call_id}.wav"
        await asyncio.to_thread(take, source, target)
        log.info("recording_stored", call_id=call_id, path=str(target), format="wav",
                 bytes=await asyncio.to_thread(file_size, target))  # fmt: skip
        return str(target)

    async def _compressed(self, call_id: str, source: Path, folder: Path) -> str | None:
        """The compressed recording's path, the WAV gone; None (WAV untouched) on failure."""
        target = folder / f"{call_id}.ogg"
        part = target.with_name(target.name + PART_SUFFIX)
        wav_bytes = await asyncio.to_thread(file_size, source)
        work = self._archive / WORK_DIR / f"{call_id}-{os.getpid()}"
        async with self._converters:
            try:
                done = await compress(
                    source, part, work_dir=work, timeout=conversion_timeout(wav_bytes)
                )
            except CompressionFailed as exc:
                log.warning("recording_not_compressed", call_id=call_id, error=str(exc),
                            kept="wav")  # fmt: skip
                return None
        try:
            await asyncio.to_thread(_finish, part, target, source)
        except OSError as exc:
            log.warning("recording_not_compressed", call_id=call_id, error=repr(exc), kept="wav")
            await asyncio.to_thread(lambda: part.unlink(missing_ok=True))
            return None
        log.info(
            "recording_stored",
            call_id=call_id,
            path=str(target),
            format="opus",
            seconds=done.seconds,
            wav_bytes=done.wav_bytes,
            bytes=done.stored_bytes,
            ratio=compression_ratio(done.wav_bytes, done.stored_bytes),
        )
        return str(target)

    async def _settled(self, path: Path) -> bool:
        """True once the file exists and has stopped growing (MixMonitor closes it at hang-up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._give_up
        last_size = -1
        while loop.time() < deadline:
            size = await asyncio.to_thread(file_size, path)
            if size >= 0 and size == last_size:
                return True
            last_size = size
            await asyncio.sleep(self._settle)
        return await asyncio.to_thread(file_size, path) >= 0


def _private_archive(root: Path, folder: Path) -> None:
    private_dir(root)
    private_dir(folder)


def _finish(part: Path, target: Path, source: Path) -> None:
    """The checked compressed file takes its place; only then does the WAV go."""
    make_private(part)
    os.replace(part, target)
    source.unlink(missing_ok=True)
