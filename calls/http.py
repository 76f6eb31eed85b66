"""HTTP routes for call records: one call with its trail and cases, its recording, the latest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from aiohttp import web

from calls.store import CallStore
from cases.http import CASES
from web.kit import json_error, parse_uuid, principal, to_json, whole_number

CALLS = web.AppKey("calls", CallStore)
log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


# Who reads any call's record (the caller's number, what they said): supervisors and admins;
# an agent reads the calls they took or were offered.
READS_EVERY_CALL = frozenset({"supervisor", "admin"})


@routes.get("/api/calls/{call_id}")
async def get_call(request: web.Request) -> web.Response:
    who = await principal(request)
    call_id = parse_uuid(request.match_info["call_id"], "call id")
    call = await request.app[CALLS].get_call(call_id)
    if call is None:
        raise json_error(404, f"no call {call_id}")
    if who.role not in READS_EVERY_CALL and not await request.app[CALLS].handled_by(
        call_id, who.name
    ):
        log.info("call_read_refused", call_id=str(call_id), by=who.name)
        raise json_error(403, "only the agent who handled this call, supervisors and admins")
    call["events"] = await request.app[CALLS].call_events(call_id)
    call["cases"] = await request.app[CASES].cases_for_call(call_id)
    return to_json(call)


@routes.get("/api/calls/{call_id}/recording")
async def get_recording(request: web.Request) -> web.StreamResponse:
    """The call's recording (WAV): for the agent who took the call, supervisors and admins."""
    who = await principal(request, "agent", "supervisor", "admin")
    call_id = parse_uuid(request.match_info["call_id"], "call id")
    call = await request.app[CALLS].get_call(call_id)
    if call is None:
        raise json_error(404, f"no call {call_id}")
    if who.role == "agent" and call.get("agent") != who.name:
        raise json_error(403, "only the agent who took the call may hear it")
    path = call.get("recording_path")
    if not path or not await asyncio.to_thread(Path(path).is_file):
        raise json_error(404, "this call has no recording (yet)")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


@routes.get("/api/calls")
async def recent_calls(request: web.Request) -> web.Response:
    await principal(request, "supervisor", "admin")
    limit = min(max(whole_number(request.query.get("limit", "50"), "limit"), 1), 500)
    return to_json(await request.app[CALLS].recent_calls(limit))


def setup(app: web.Application, *, calls: CallStore) -> None:
    app.add_routes(routes)
    app[CALLS] = calls
