"""Call records in PostgreSQL: the rows and their event trail. Thin: SQL in, plain dicts out.

Only calls/record.py writes through this store; everything else reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

# Columns a caller of update_call may set; anything else is a programming error.
CALL_COLUMNS = frozenset(
    {
        "language",
        "service_group",
        "service_code",
        "transcript",
        "ivr_ended_at",
        "queued_at",
        "offered_at",
        "answered_at",
        "ended_at",
        "outcome",
        "agent",
        "offers",
        "wait_seconds",
        "answered_within_target",
        "recording_path",
    }
)



def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None


class CallStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_call(
        self,
        call_id: uuid.UUID,
        *,
        asterisk_uniqueid: str,
        caller_number: str,
        arrived_at: datetime,
    ) -> None:
        await self._pool.execute(
            "INSERT INTO calls (id, asterisk_uniqueid, caller_number, arrived_at)"
            " VALUES ($1, $2, $3, $4)",
            call_id,
            asterisk_uniqueid,
            caller_number,
            arrived_at,
        )
        await self.add_event(call_id, "arrived", {"caller": caller_number})

    async def update_call(self, call_id: uuid.UUID, **fields: Any) -> None:
        unknown = set(fields) - CALL_COLUMNS
        if unknown:
            raise ValueError(f"unknown call columns {sorted(unknown)}")
        if not fields:
            return
        names = list(fields)
        assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
        await self._pool.execute(
            f"UPDATE calls SET {assignments} WHERE id = $1",
            call_id,
            *(fields[n] for n in names),
        )

    async def add_event(
        self, call_id: uuid.UUID, kind: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        await self._pool.execute(
            "INSERT INTO call_events (call_id, kind, detail) VALUES ($1, $2, $3)",
            call_id,
            kind,
            dict(detail or {}),
        )

    async def get_call(self, call_id: uuid.UUID) -> dict[str, Any] | None:
        return _row(await self._pool.fetchrow("SELECT * FROM calls WHERE id = $1", call_id))

    async def call_by_uniqueid(self, asterisk_uniqueid: str) -> dict[str, Any] | None:
        """The record of the call on this Asterisk channel (the newest, should ids repeat)."""
        return _row(
            await self._pool.fetchrow(
                "SELECT * FROM calls WHERE asterisk_uniqueid = $1 ORDER BY arrived_at DESC LIMIT 1",
                asterisk_uniqueid,
            )
        )

    async def call_events(self, call_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT at, kind, detail FROM call_events WHERE call_id = $1 ORDER BY id", call_id
        )
        return [dict(r) for r in rows]

    async def recent_calls(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT * FROM calls ORDER BY arrived_at DESC LIMIT $1", limit
        )
        return [dict(r) for r in rows]


