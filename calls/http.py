"""HTTP routes for call records: one call with its trail and cases, the latest.

A call's recording is played through recordings/ (its route and its rules); answers here say
whether the call has one and where to play it, never where the file is on the server."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from calls.store import CallStore
from cases.http import CASES
from recordings.http import playback_url
from web.kit import json_error, parse_uuid, principal, to_json, whole_number

CALLS = web.AppKey("calls", CallStore)
log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


# Who reads any call's record (the caller's number, what they said): supervisors and admins;
# an agent reads the calls they took or were offered.
READS_EVERY_CALL = frozenset({"supervisor", "admin"})


def public_call(call: dict[str, Any]) -> dict[str, Any]:
    """A call record as the API shows it: the recording's server path replaced by a flag and
    the URL that plays it."""
    shown = {k: v for k, v in call.items() if k != "recording_path"}
    has_recording = bool(call.get("recording_path"))
    shown["has_recording"] = has_recording
    shown["recording_url"] = playback_url(call["id"]) if has_recording else None
    return shown


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
    shown = public_call(call)
    shown["events"] = await request.app[CALLS].call_events(call_id)
    shown["cases"] = await request.app[CASES].cases_for_call(call_id)
    return to_json(shown)


@routes.get("/api/calls")
async def recent_calls(request: web.Request) -> web.Response:
    await principal(request, "supervisor", "admin")
    limit = min(max(whole_number(request.query.get("limit", "50"), "limit"), 1), 500)
    return to_json([public_call(c) for c in await request.app[CALLS].recent_calls(limit)])


def setup(app: web.Application, *, calls: CallStore) -> None:
    app.add_routes(routes)
    app[CALLS] = calls
