"""Reading call records from PostgreSQL: the rows and their event trail. Plain dicts out.

calls/record.py is the one writer of these tables; everything here only reads.
"""

from __future__ import annotations

import uuid
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
