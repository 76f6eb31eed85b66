"""The one writer of a call's row and its event trail.

Everything that learns something about a call (the resident's session, callbacks, the
fallback queue, the desk's cases, recordings found after a crash) tells it here; nothing
else writes `calls` or `call_events`. A call's service-level figures are computed here once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from calls.store import CallStore

log = structlog.get_logger(__name__)

# Columns an update may set; anything else is a programming error.
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


def wait_figures(wait_seconds: float, *, answered: bool, target_seconds: float) -> dict[str, Any]:
    """A queued call's wait and whether it counts as answered within the target.

    The wait runs from entering the queue to the answer, or to the hang-up of a caller
    nobody answered (who then counts against the target)."""
    wait = max(wait_seconds, 0.0)
    return {
        "wait_seconds": round(wait, 3),
        "answered_within_target": answered and wait <= target_seconds,
    }


class CallRecords:
    def __init__(self, pool: asyncpg.Pool, *, answer_target_seconds: float) -> None:
        self._pool = pool
        self.target_seconds = answer_target_seconds
        self.read = CallStore(pool)

    async def arrived(
        self, call_id: uuid.UUID, *, asterisk_uniqueid: str, caller_number: str, at: datetime
    ) -> None:
        await self._pool.execute(
            "INSERT INTO calls (id, asterisk_uniqueid, caller_number, arrived_at)"
            " VALUES ($1, $2, $3, $4)",
            call_id,
            asterisk_uniqueid,
            caller_number,
            at,
        )
        await self.event(call_id, "arrived", {"caller": caller_number})

    async def update(self, call_id: uuid.UUID, **fields: Any) -> None:
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

    async def event(
        self, call_id: uuid.UUID, kind: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        await self._pool.execute(
            "INSERT INTO call_events (call_id, kind, detail) VALUES ($1, $2, $3)",
            call_id,
            kind,
            dict(detail or {}),
        )

    async def event_safely(self, call_id: uuid.UUID, kind: str, **detail: Any) -> None:
        """An event whose loss must not stop the work that reports it (logged instead)."""
        try:
            await self.event(call_id, kind, detail)
        except Exception:
            log.exception("call_event_not_stored", call_id=str(call_id), kind=kind)

    async def handled_by(self, call_id: uuid.UUID, agent: str) -> bool:
        return await self.read.handled_by(call_id, agent)

    def wait_figures(self, wait_seconds: float, *, answered: bool) -> dict[str, Any]:
        return wait_figures(wait_seconds, answered=answered, target_seconds=self.target_seconds)
