"""HTTP routes for call records and cases, plus the small request helpers other routes share."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from cases.store import CallStore, CaseError, CaseStore


@dataclass(frozen=True)
class Principal:
    """Who is asking: 'admin' (the service's admin token), 'supervisor' or 'agent'."""

    name: str
    role: str


Authenticate = Callable[[web.Request], Awaitable[Principal]]
AUTHENTICATE: web.AppKey[Authenticate] = web.AppKey("authenticate")
CALLS = web.AppKey("calls", CallStore)
CASES = web.AppKey("cases", CaseStore)

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


class JsonError(web.HTTPException):
    """An HTTP error whose body is JSON: {"error": message}."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        self.status_code = status
        super().__init__(
            text=json.dumps({"error": message, **extra}), content_type="application/json"
        )


def json_error(status: int, message: str, **extra: Any) -> web.HTTPException:
    return JsonError(status, message, **extra)


async def read_object(request: web.Request, max_bytes: int = 64 * 1024) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > max_bytes:
        raise json_error(413, f"body larger than {max_bytes} bytes")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise json_error(413, f"body larger than {max_bytes} bytes")
    try:
        body = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise json_error(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise json_error(400, "body must be a JSON object")
    return body


def text_field(
    body: dict[str, Any], name: str, *, max_len: int = 200, required: bool = True
) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise json_error(400, f"{name}: a non-empty string is required")
    if len(value) > max_len:
        raise json_error(400, f"{name}: at most {max_len} characters")
    return value.strip()


def parse_uuid(value: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise json_error(400, f"{name}: not a valid id") from exc


async def principal(request: web.Request, *roles: str) -> Principal:
    who = await request.app[AUTHENTICATE](request)
    if roles and who.role not in roles:
        raise json_error(403, f"needs one of the roles {list(roles)}")
    return who


def to_json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


@routes.post("/api/cases")
async def create_case(request: web.Request) -> web.Response:
    who = await principal(request, "agent", "supervisor", "admin")
    body = await read_object(request)
    call_id = parse_uuid(body["call_id"], "call_id") if body.get("call_id") else None
    service_code = text_field(body, "service_code", max_len=60, required=False)
    attributes = body.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise json_error(400, "attributes: an object of field code -> value is required")
    try:
        case = await request.app[CASES].create_case(
            call_id=call_id,
            service_group=text_field(body, "service_group", max_len=40, required=not service_code),
            service_code=service_code,
            description=text_field(body, "description", max_len=4000),
            address=text_field(body, "address", max_len=300, required=False),
            location=location_field(body),
            attributes=attributes,
            created_by=who.name,
            caller_number=text_field(body, "caller_number", max_len=40, required=False) or None,
        )
    except CaseError as exc:
        log.info("case_refused", call_id=str(call_id) if call_id else None, by=who.name,
                 error=str(exc))  # fmt: skip
        raise json_error(422, str(exc)) from exc
    log.info("case_created", call_id=str(call_id) if call_id else None, case_id=case["id"],
             service=case["service_code"], department=case["department"], by=who.name)  # fmt: skip
    return to_json(case, status=201)


def location_field(body: Mapping[str, Any]) -> tuple[float, float] | None:
    """Optional "lat"/"lon" (WGS84 degrees): both or neither."""
    lat, lon = body.get("lat"), body.get("lon")
    if lat in (None, "") and lon in (None, ""):
        return None
    try:
        point = (float(lat), float(lon))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise json_error(400, "lat/lon: two numbers (degrees) are required together") from exc
    if not (-90 <= point[0] <= 90 and -180 <= point[1] <= 180) or any(map(math.isnan, point)):
        raise json_error(400, "lat/lon: outside the globe")
    return point


@routes.post("/api/cases/{case_id}/calls")
async def link_call(request: web.Request) -> web.Response:
    """Record that a call reports a case that exists (a duplicate), instead of a new case."""
    who = await principal(request, "agent", "supervisor", "admin")
    body = await read_object(request)
    call_id = parse_uuid(body.get("call_id"), "call_id")
    try:
        case = await request.app[CASES].link_call(_case_id(request), call_id, who.name)
    except CaseError as exc:
        raise json_error(404, str(exc)) from exc
    log.info("call_linked_to_case", call_id=str(call_id), case_id=case["id"], by=who.name)
    return to_json(case)


@routes.get("/api/cases/nearby")
async def nearby_cases(request: web.Request) -> web.Response:
    """Open cases of one service near an address or a point: possible duplicates."""
    await principal(request, "agent", "supervisor", "admin")
    query = dict(request.query)
    cases = await request.app[CASES].possible_duplicates(
        text_field(query, "service_code", max_len=60),
        address=text_field(query, "address", max_len=300, required=False),
        location=location_field(query),
    )
    return to_json(cases)


def _case_id(request: web.Request) -> int:
    try:
        return int(request.match_info["case_id"])
    except ValueError as exc:
        raise json_error(400, "case id must be a number") from exc


@routes.get("/api/cases/{case_id}")
async def get_case(request: web.Request) -> web.Response:
    await principal(request)
    case_id = _case_id(request)
    case = await request.app[CASES].get_case(case_id)
    if case is None:
        raise json_error(404, f"no case {case_id}")
    return to_json(case)


@routes.get("/api/calls/{call_id}")
async def get_call(request: web.Request) -> web.Response:
    await principal(request)
    call_id = parse_uuid(request.match_info["call_id"], "call id")
    call = await request.app[CALLS].get_call(call_id)
    if call is None:
        raise json_error(404, f"no call {call_id}")
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
    try:
        limit = min(max(int(request.query.get("limit", "50")), 1), 500)
    except ValueError as exc:
        raise json_error(400, "limit must be a number") from exc
    return to_json(await request.app[CALLS].recent_calls(limit))
