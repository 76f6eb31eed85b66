"""HTTP routes for cases: create, link a call, look up, nearby."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import structlog
from aiohttp import web

from cases.store import CaseError, CaseStore
from web.kit import (
    Principal,
    json_error,
    location_field,
    map_errors,
    parse_uuid,
    principal,
    read_object,
    text_field,
    to_json,
    whole_number,
)

# Who sees a case whole (the caller's number with it): the agent who handled one of its calls
# or opened it, supervisors and admins. Other agents see open cases nearby, without numbers.
SEES_EVERY_CASE = frozenset({"supervisor", "admin"})


class CaseCalls(Protocol):
    """The calls a case is about, as cases see them (calls/ owns their records)."""

    async def handled_by(self, call_id: uuid.UUID, agent: str) -> bool: ...

    async def settled(self, call_id: uuid.UUID, timeout: float) -> bool: ...

    async def event(
        self, call_id: uuid.UUID, kind: str, detail: Mapping[str, Any] | None = None
    ) -> None: ...


CASES = web.AppKey("cases", CaseStore)
CASE_CALLS: web.AppKey[CaseCalls] = web.AppKey("case_calls")

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
        await _check_call_is_theirs(request, who, call_id)
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
        await request.app[CASE_CALLS].event(
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
    await _check_call_is_theirs(request, who, call_id)
    try:
        case = await request.app[CASES].link_call(_case_id(request), call_id, who.name)
    except CaseError as exc:
        raise json_error(404, str(exc)) from exc
    await request.app[CASE_CALLS].event(
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
    return whole_number(request.match_info["case_id"], "case id")


@routes.get("/api/cases/{case_id}")
async def get_case(request: web.Request) -> web.Response:
    who = await principal(request)
    case_id = _case_id(request)
    case = await request.app[CASES].get_case(case_id)
    if case is None:
        raise json_error(404, f"no case {case_id}")
    if not await _sees_whole_case(request, who, case):
        log.info("case_read_refused", case_id=case_id, by=who.name)
        raise json_error(403, "only the agent who handled this case's call, supervisors and admins")
    return to_json(case)


async def _check_call_is_theirs(request: web.Request, who: Principal, call_id: uuid.UUID) -> None:
    """An agent may put a case only on a call they handled (not on a colleague's). The call's
    row and trail are awaited first: its facts may still be on their way to the database
    (calls/ writes through a journal), and the case refers to its row."""
    calls = request.app[CASE_CALLS]
    await calls.settled(call_id, timeout=5.0)
    if who.role in SEES_EVERY_CASE:
        return
    if not await calls.handled_by(call_id, who.name):
        log.info("case_on_foreign_call_refused", call_id=str(call_id), by=who.name)
        raise json_error(403, "this call was handled by another agent")


async def _sees_whole_case(request: web.Request, who: Principal, case: Mapping[str, Any]) -> bool:
    if who.role in SEES_EVERY_CASE or case.get("created_by") == who.name:
        return True
    calls = request.app[CASE_CALLS]
    if case.get("call_id") is not None and await calls.handled_by(case["call_id"], who.name):
        return True
    return await request.app[CASES].linked_by(int(case["id"]), who.name)


def setup(app: web.Application, *, cases: CaseStore, calls: CaseCalls) -> None:
    app.add_routes(routes)
    map_errors(app, {CaseError: 422})
    app[CASES] = cases
    app[CASE_CALLS] = calls
