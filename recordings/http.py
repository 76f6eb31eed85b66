"""HTTP routes for call recordings: playing one (with Range, for seeking), deleting one by hand,
and the deletion audit trail. The server's file paths never leave this process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog
from aiohttp import web

from recordings.audit import RecordingAudit
from recordings.policy import Retention, content_type
from recordings.retention import CallLedger, CallReader, RecordingRetention
from web.kit import ApiError, json_error, parse_uuid, principal, read_object, text_field, to_json

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


@dataclass(frozen=True)
class Recordings:
    calls: CallReader
    retention: RecordingRetention


RECORDINGS = web.AppKey("recordings", Recordings)


def playback_url(call_id: uuid.UUID | str) -> str:
    return f"/api/calls/{call_id}/recording"


@routes.get("/api/calls/{call_id}/recording")
async def play(request: web.Request) -> web.StreamResponse:
    """The call's recording: for the agent who took the call, supervisors and admins."""
    who = await principal(request, "agent", "supervisor", "admin")
    call_id = parse_uuid(request.match_info["call_id"], "call id")
    recordings = request.app[RECORDINGS]
    call = await recordings.calls.get_call(call_id)
    if call is None:
        raise json_error(404, f"no call {call_id}")
    if who.role == "agent" and call.get("agent") != who.name:
        raise json_error(403, "only the agent who took the call may hear it")
    path = call.get("recording_path")
    if not path or not await asyncio.to_thread(Path(path).is_file):
        if await recordings.retention.audit.deleted(call_id):
            raise ApiError(410, "this call's recording was deleted", error_id="recording_deleted")
        raise json_error(404, "this call has no recording (yet)")
    log.info("recording_played", call_id=str(call_id), by=who.name, role=who.role,
             range=request.headers.get("Range"))  # fmt: skip
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type(path),
            "Cache-Control": "private, no-store",  # personal data: no copy in any cache
            "X-Content-Type-Options": "nosniff",
        },
    )


@routes.delete("/api/calls/{call_id}/recording")
async def delete(request: web.Request) -> web.Response:
    """Delete a call's recording now, with the reason (e.g. a resident's erasure request)."""
    who = await principal(request, "admin")
    call_id = parse_uuid(request.match_info["call_id"], "call id")
    reason = text_field(await read_object(request), "reason", max_len=300)
    recordings = request.app[RECORDINGS]
    if not await recordings.retention.delete_by_request(call_id, actor=who.name, reason=reason):
        raise json_error(404, "this call has no recording")
    return to_json({"call_id": str(call_id), "deleted": True})


@routes.get("/api/recordings/audit")
async def audit(request: web.Request) -> web.Response:
    """Recordings deleted, newest first (optionally one call's)."""
    await principal(request, "supervisor", "admin")
    raw_call = request.query.get("call_id")
    call_id = parse_uuid(raw_call, "call_id") if raw_call else None
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
    except ValueError as exc:
        raise json_error(400, "limit must be a number") from exc
    entries = await request.app[RECORDINGS].retention.audit.entries(call_id=call_id, limit=limit)
    return to_json(entries)


def setup(
    app: web.Application,
    *,
    pool: asyncpg.Pool,
    calls: CallReader,
    ledger: CallLedger,
    retention_days: Mapping[str, int | None],
    archive_dir: Path,
) -> RecordingRetention:
    """The routes; returns the retention keeper, whose run() is the sweep task to start."""
    keeper = RecordingRetention(
        reader=calls,
        ledger=ledger,
        audit=RecordingAudit(pool),
        retention=Retention.of(retention_days),
        archive_dir=archive_dir,
    )
    app.add_routes(routes)
    app[RECORDINGS] = Recordings(calls=calls, retention=keeper)
    log.info("recording_retention", archive=str(archive_dir),
             days={k: v or "never" for k, v in keeper.retention.days.items()})  # fmt: skip
    return keeper
