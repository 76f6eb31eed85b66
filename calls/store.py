"""Reading call records from PostgreSQL: the rows and their event trail. Plain dicts out.

calls/record.py is the one writer of these tables; everything here only reads.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None


class CallStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

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

    async def handled_by(self, call_id: uuid.UUID, agent: str) -> bool:
        """Whether the agent took the call or was offered it (a callback rang them too)."""
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM calls WHERE id = $1 AND agent = $2)"
                " OR EXISTS (SELECT 1 FROM call_events WHERE call_id = $1"
                " AND kind IN ('offered', 'callback_ringing_agent') AND detail->>'agent' = $2)",
                call_id,
                agent,
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

    async def recordings_past(
        self, *, unlinked_before: datetime | None, linked_before: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """Calls whose recording is older than the cut-off of its kind, oldest first: calls with
        no case that ended before `unlinked_before`, calls that opened or were linked to a case
        before `linked_before` (None: no cut-off for that kind). Rows: id, recording_path,
        recorded_at (the end of the call, else its arrival), linked_to_case."""
        rows = await self._pool.fetch(
            """
            SELECT id, recording_path, recorded_at, linked_to_case FROM (
                SELECT c.id, c.recording_path, coalesce(c.ended_at, c.arrived_at) AS recorded_at,
                       EXISTS (SELECT 1 FROM cases k WHERE k.call_id = c.id)
                       OR EXISTS (SELECT 1 FROM case_calls l WHERE l.call_id = c.id)
                           AS linked_to_case
                FROM calls c
                WHERE c.recording_path IS NOT NULL
                  AND coalesce(c.ended_at, c.arrived_at)
                      < greatest($1::timestamptz, $2::timestamptz)
            ) r
            WHERE (NOT linked_to_case AND recorded_at < $1)
               OR (linked_to_case AND recorded_at < $2)
            ORDER BY recorded_at, id
            LIMIT $3
            """,
            unlinked_before,
            linked_before,
            limit,
        )
        return [dict(r) for r in rows]
