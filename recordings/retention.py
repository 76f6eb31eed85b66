"""Deleting recordings: the retention sweep (one task, bounded passes) and deletion by hand.

Each deletion removes the file, clears the call's recording through the call records' one
writer, adds a "recording_deleted" event to the call's trail, and a row to recording_audit
(who or what, when, why, under which period). The file goes first: should the process stop in
between, the next pass finds the call still pointing at a file that is gone and completes the
record (file_found false), so no deletion is ever left unrecorded.

The pass also deletes files of the archive that no call points at any more (a crash before the
call record was written, a call record removed), once their day is past the shortest period:
nothing recorded outlives its retention because a record lost track of it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from recordings.audit import AuditEntry, RecordingAudit
from recordings.collector import WORK_DIR
from recordings.files import (
    PART_SUFFIX,
    day_folders,
    files_in,
    remove,
    remove_empty_folder,
    tighten,
)
from recordings.policy import (
    STORED_SUFFIXES,
    Retention,
    StoredRecording,
    day_of,
    day_past_retention,
    expired,
)

log = structlog.get_logger(__name__)

SYSTEM_ACTOR = "retention"
PERIOD_SECONDS = 3600.0  # a pass an hour: retention is counted in days
AGAIN_SOON_SECONDS = 5.0  # a pass that hit its bound goes on shortly
BATCH = 200  # deletions per pass at most
STALE_SECONDS = 3600.0  # a half-written file older than this at start-up is a stopped conversion


class CallLedger(Protocol):
    """The call records' one writer (calls/record.py), as far as recordings need it."""

    async def update(self, call_id: uuid.UUID, **fields: Any) -> None: ...

    async def event(
        self, call_id: uuid.UUID, kind: str, detail: Mapping[str, Any] | None = None
    ) -> None: ...


class CallReader(Protocol):
    async def get_call(self, call_id: uuid.UUID) -> dict[str, Any] | None: ...

    async def recordings_past(
        self, *, unlinked_before: datetime | None, linked_before: datetime | None, limit: int
    ) -> list[dict[str, Any]]: ...


class NotARecording(Exception):
    """A path that does not look like one of our recordings: never deleted."""


@dataclass
class SweepResult:
    deleted: int = 0
    orphans: int = 0
    more: bool = False  # the pass hit its bound: more may be due


class RecordingRetention:
    def __init__(
        self,
        *,
        reader: CallReader,
        ledger: CallLedger,
        audit: RecordingAudit,
        retention: Retention,
        archive_dir: Path,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = BATCH,
        period_seconds: float = PERIOD_SECONDS,
    ) -> None:
        self._reader = reader
        self._ledger = ledger
        self.audit = audit
        self.retention = retention
        self._archive = archive_dir
        self._clock = clock
        self._batch = batch
        self._period = period_seconds
        self._lock = asyncio.Lock()  # one deletion at a time: the sweep and a request never race
        self._days_cleared: set[str] = set()  # day folders checked for orphans in this process

    # -- the task --------------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: make the archive private, then a bounded pass every period."""
        try:
            done = await asyncio.to_thread(
                tighten, self._archive, work_dir=WORK_DIR, stale_before=time.time() - STALE_SECONDS
            )
            if done.folders or done.files or done.stale_removed:
                log.warning("recordings_made_private", folders=done.folders, files=done.files,
                            stale_removed=done.stale_removed)  # fmt: skip
        except Exception:
            log.exception("recordings_not_made_private", archive=str(self._archive))
        while True:
            try:
                result = await self.sweep()
            except Exception:
                log.exception("recording_sweep_failed")
                result = SweepResult()
            await asyncio.sleep(AGAIN_SOON_SECONDS if result.more else self._period)

    async def sweep(self, now: datetime | None = None) -> SweepResult:
        """One pass at `now`: at most `batch` expired recordings, then orphans with what is left."""
        now = now or self._clock()
        result = SweepResult()
        rows = await self._reader.recordings_past(
            unlinked_before=self.retention.cutoff("answered", now),
            linked_before=self.retention.cutoff("case", now),
            limit=self._batch,
        )
        paths = {r["id"]: r["recording_path"] for r in rows}
        stored = [StoredRecording(r["id"], r["recorded_at"], r["linked_to_case"]) for r in rows]
        for expiry in expired(stored, self.retention, now):
            call_id = expiry.recording.call_id
            with structlog.contextvars.bound_contextvars(call_id=str(call_id)):
                try:
                    await self._delete(
                        call_id,
                        paths[call_id],
                        actor=SYSTEM_ACTOR,
                        reason="retention_expired",
                        kind=expiry.kind,
                        days=expiry.retention_days,
                        recorded_at=expiry.recording.recorded_at,
                    )
                    result.deleted += 1
                except NotARecording:
                    log.error("recording_path_refused", path=paths[call_id])
        result.more = len(rows) >= self._batch
        if not result.more:
            result.orphans, result.more = await self._orphans(now, self._batch - result.deleted)
        if result.deleted or result.orphans:
            log.info("recording_sweep_done", deleted=result.deleted, orphans=result.orphans,
                     more=result.more)  # fmt: skip
        return result

    # -- by hand ---------------------------------------------------------------------------
    async def delete_by_request(self, call_id: uuid.UUID, *, actor: str, reason: str) -> bool:
        """Delete a call's recording now (e.g. a resident's erasure request); False if it has
        none."""
        call = await self._reader.get_call(call_id)
        if call is None or not call.get("recording_path"):
            return False
        with structlog.contextvars.bound_contextvars(call_id=str(call_id)):
            await self._delete(
                call_id,
                call["recording_path"],
                actor=actor,
                reason=reason,
                recorded_at=call.get("ended_at") or call.get("arrived_at"),
            )
        return True

    # -- the deletion ------------------------------------------------------------------------
    async def _delete(
        self,
        call_id: uuid.UUID,
        path: str,
        *,
        actor: str,
        reason: str,
        kind: str | None = None,
        days: int | None = None,
        recorded_at: datetime | None = None,
        on_call: bool = True,
    ) -> None:
        file = Path(path)
        if file.stem != str(call_id) or file.suffix not in STORED_SUFFIXES:
            raise NotARecording(path)
        async with self._lock:
            size = await asyncio.to_thread(remove, file)
            if on_call:
                await self._ledger.update(call_id, recording_path=None)
            detail = {"reason": reason, "actor": actor, "retention_kind": kind,
                      "retention_days": days, "file_found": size is not None}  # fmt: skip
            if on_call:
                await self._ledger.event(call_id, "recording_deleted", detail)
            await self.audit.add(
                AuditEntry(
                    call_id=call_id,
                    action="deleted",
                    actor=actor,
                    reason=reason,
                    file_found=size is not None,
                    bytes=size,
                    retention_kind=kind,
                    retention_days=days,
                    recorded_at=recorded_at,
                )
            )
        log.info("recording_deleted", call_id=str(call_id), path=path, bytes=size, **detail)

    async def _orphans(self, now: datetime, budget: int) -> tuple[int, bool]:
        """Delete files in day folders past the shortest period that no call points at; the
        folders emptied go too. Each folder is checked once per process (nothing new is
        archived into an old day)."""
        deleted = 0
        for name in await asyncio.to_thread(day_folders, self._archive):
            day = day_of(name)
            if name in self._days_cleared or day is None:
                continue
            if not day_past_retention(day, self.retention, now):
                break  # folders are in day order: the rest are younger
            folder = self._archive / name
            for file in await asyncio.to_thread(files_in, folder):
                if deleted >= budget:
                    return deleted, True
                deleted += await self._orphan(file)
            await asyncio.to_thread(remove_empty_folder, folder)
            self._days_cleared.add(name)
        return deleted, False

    async def _orphan(self, file: Path) -> int:
        if file.name.endswith(PART_SUFFIX):
            await asyncio.to_thread(remove, file)  # a conversion that never finished
            log.warning("recording_part_removed", path=str(file))
            return 0
        try:
            call_id = uuid.UUID(file.stem)
        except ValueError:
            return 0  # not ours
        if file.suffix not in STORED_SUFFIXES:
            return 0
        call = await self._reader.get_call(call_id)
        if call is not None and call.get("recording_path") == str(file):
            return 0  # the call's own: kept or deleted by its kind's period
        with structlog.contextvars.bound_contextvars(call_id=str(call_id)):
            await self._delete(
                call_id,
                str(file),
                actor=SYSTEM_ACTOR,
                reason="orphan",
                days=self.retention.shortest_days(),
                on_call=False,
            )
            if call is not None:  # a call that points elsewhere (or nowhere): its trail says so
                await self._ledger.event(
                    call_id, "recording_deleted", {"reason": "orphan", "actor": SYSTEM_ACTOR}
                )
        return 1
