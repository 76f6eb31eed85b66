"""Call records and cases in PostgreSQL. Thin: SQL in, plain dicts out."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from cases.catalogue import Catalogue

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


class CaseError(ValueError):
    """A case that cannot be stored as asked (unknown call, unknown group...)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


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


class CaseStore:
    def __init__(self, pool: asyncpg.Pool, catalogue: Catalogue) -> None:
        self._pool = pool
        self._catalogue = catalogue

    async def create_case(
        self,
        *,
        call_id: uuid.UUID | None,
        service_group: str,
        description: str,
        address: str = "",
        created_by: str | None = None,
        caller_number: str | None = None,
    ) -> dict[str, Any]:
        group = self._catalogue.groups.get(service_group)
        if group is None:
            raise CaseError(f"unknown service group {service_group!r}")
        async with self._pool.acquire() as conn, conn.transaction():
            if call_id is not None:
                call = await conn.fetchrow("SELECT caller_number FROM calls WHERE id = $1", call_id)
                if call is None:
                    raise CaseError(f"no call {call_id}")
                caller_number = call["caller_number"]
            created_at = utcnow()
            row = await conn.fetchrow(
                "INSERT INTO cases (call_id, caller_number, service_group, department,"
                " description, address, created_by, created_at, due_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
                call_id,
                caller_number or "",
                group.code,
                group.department,
                description,
                address,
                created_by,
                created_at,
                created_at + timedelta(hours=group.response_hours),
            )
            if call_id is not None:
                await conn.execute(
                    "INSERT INTO call_events (call_id, kind, detail)"
                    " VALUES ($1, 'case_created', $2)",
                    call_id,
                    {"case_id": row["id"], "agent_id": created_by},
                )
        return dict(row)

    async def get_case(self, case_id: int) -> dict[str, Any] | None:
        return _row(await self._pool.fetchrow("SELECT * FROM cases WHERE id = $1", case_id))

    async def cases_for_call(self, call_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch("SELECT * FROM cases WHERE call_id = $1 ORDER BY id", call_id)
        return [dict(r) for r in rows]

    async def caller_history(self, caller_number: str, limit: int = 10) -> list[dict[str, Any]]:
        """The caller's earlier cases, newest first: what the agent sees in the screen-pop."""
        if not caller_number:
            return []
        rows = await self._pool.fetch(
            "SELECT id, service_group, department, description, address, status, created_at,"
            " due_at FROM cases WHERE caller_number = $1 ORDER BY created_at DESC LIMIT $2",
            caller_number,
            limit,
        )
        return [dict(r) for r in rows]
