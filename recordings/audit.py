"""The recording audit trail (table recording_audit, recordings/schema.sql): this is its one
writer. Only appends; nothing here updates or deletes a row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class AuditEntry:
    call_id: uuid.UUID
    action: str
    actor: str
    reason: str
    file_found: bool
    bytes: int | None = None
    retention_kind: str | None = None
    retention_days: int | None = None
    recorded_at: datetime | None = None


class RecordingAudit:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(self, entry: AuditEntry) -> None:
        await self._pool.execute(
            "INSERT INTO recording_audit (call_id, action, actor, reason, retention_kind,"
            " retention_days, recorded_at, file_found, bytes)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            entry.call_id,
            entry.action,
            entry.actor,
            entry.reason,
            entry.retention_kind,
            entry.retention_days,
            entry.recorded_at,
            entry.file_found,
            entry.bytes,
        )

    async def entries(
        self, *, call_id: uuid.UUID | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT at, call_id, action, actor, reason, retention_kind, retention_days,"
            " recorded_at, file_found, bytes FROM recording_audit"
            " WHERE $1::uuid IS NULL OR call_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
            call_id,
            limit,
        )
        return [dict(r) for r in rows]

    async def deleted(self, call_id: uuid.UUID) -> bool:
        """Whether this call's recording was deleted (so a missing file is not "not yet")."""
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM recording_audit"
                " WHERE call_id = $1 AND action = 'deleted')",
                call_id,
            )
        )
