"""Call recordings: where MixMonitor writes, and moving finished files to the archive.

Asterisk may run in a chroot sandbox, so it writes into its own spool and we map that path
to the host before moving the file to the recordings directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


# The dial plan's recordings of fallback-queue calls: fallback-<Asterisk uniqueid>.wav
FALLBACK_PREFIX = "fallback-"


class RecordingCollector:
    def __init__(
        self,
        *,
        asterisk_spool_dir: str,
        host_path: Callable[[str], Path],
        archive_dir: Path,
        settle_seconds: float = 0.5,
        give_up_seconds: float = 20.0,
    ) -> None:
        self._spool = asterisk_spool_dir.rstrip("/")
        self._host_path = host_path
        self._archive = archive_dir
        self._settle = settle_seconds
        self._give_up = give_up_seconds

    def asterisk_path_for(self, call_id: str) -> str:
        return f"{self._spool}/{call_id}.wav"

    def fallback_path_for(self, asterisk_uniqueid: str) -> str:
        """Where the dial plan records a call in the fallback queue (it may not know our id)."""
        return f"{self._spool}/{FALLBACK_PREFIX}{asterisk_uniqueid}.wav"

    async def collect(self, call_id: str, asterisk_path: str) -> str | None:
        """Wait until MixMonitor has finished the file, then move it; None if there is none."""
        source = self._host_path(asterisk_path)
        if not await self._settled(source):
            log.warning("recording_missing", source=str(source))
            return None
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        target = self._archive / day / f"{call_id}.wav"
        await asyncio.to_thread(_move, source, target)
        log.info("recording_stored", path=str(target))
        return str(target)

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
        """Move a finished recording into the archive, under the day it was last written."""
        mtime = await asyncio.to_thread(lambda: source.stat().st_mtime)
        day = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d")
        target = self._archive / day / f"{call_id}.wav"
        await asyncio.to_thread(_move, source, target)
        return str(target)

    async def _settled(self, path: Path) -> bool:
        """True once the file exists and has stopped growing (MixMonitor closes it at hang-up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._give_up
        last_size = -1
        while loop.time() < deadline:
            size = await asyncio.to_thread(_size, path)
            if size >= 0 and size == last_size:
                return True
            last_size = size
            await asyncio.sleep(self._settle)
        return await asyncio.to_thread(_size, path) >= 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)  # same file system: atomic
    except OSError:
        shutil.move(str(source), str(target))
