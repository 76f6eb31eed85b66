"""HTTP routes for cases: create, link a call, look up, nearby."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from cases.store import CaseError, CaseStore
from web.kit import (
    json_error,
    location_field,
    map_errors,
    parse_uuid,
    principal,
    read_object,
    text_field,
    to_json,
)

CASES = web.AppKey("cases", CaseStore)
# The trail of the call a case was opened on or linked to (calls/ is its one writer).
CallTrail = Callable[[uuid.UUID, str, dict[str, Any]], Awaitable[None]]
CALL_TRAIL: web.AppKey[CallTrail] = web.AppKey("call_trail")
# Waits (bounded) until the call's row is in the database: its facts may still be on their way.
CallSettled = Callable[[uuid.UUID], Awaitable[bool]]
CALL_SETTLED: web.AppKey[CallSettled] = web.AppKey("call_settled")

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


@routes.post("/api/cases")
async def create_case(request: web.Request) -> web.Response:
    who = await principal(request, "agent", "supervisor", "admin")
    body = await read_object(request)
    call_id = parse_uuid(body["call_id"], "call_id") if body.get("call_id") else None
    service_code = text_field(body, "service_code", max_len=60, required=False)
    attributes = body.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise json_error(400, "attributes: an object of field code -> value is required")
    if call_id is not None:
        await request.app[CALL_SETTLED](call_id)  # the case refers to the call's row
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
    if call_id is not None:
        await request.app[CALL_TRAIL](
            call_id, "case_created", {"case_id": case["id"], "agent_id": who.name}
        )
    log.info("case_created", call_id=str(call_id) if call_id else None, case_id=case["id"],
             service=case["service_code"], department=case["department"], by=who.name)  # fmt: skip
    return to_json(case, status=201)


@routes.post("/api/cases/{case_id}/calls")
async def link_call(request: web.Request) -> web.Response:
    """Record that a call reports a case that exists (a duplicate), instead of a new case."""
    who = await principal(request, "agent", "supervisor", "admin")
    body = await read_object(request)
    call_id = parse_uuid(body.get("call_id"), "call_id")
    await request.app[CALL_SETTLED](call_id)
    try:
        case = await request.app[CASES].link_call(_case_id(request), call_id, who.name)
    except CaseError as exc:
        raise json_error(404, str(exc)) from exc
    await request.app[CALL_TRAIL](
        call_id, "case_linked", {"case_id": case["id"], "agent_id": who.name}
    )
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


def setup(
    app: web.Application, *, cases: CaseStore, call_trail: CallTrail, call_settled: CallSettled
) -> None:
    app.add_routes(routes)
    map_errors(app, {CaseError: 422})
    app[CASES] = cases
    app[CALL_TRAIL] = call_trail
    app[CALL_SETTLED] = call_settled
