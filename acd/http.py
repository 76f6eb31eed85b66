"""Supervisor routes of the ACD: the wallboard (HTTP and WebSocket), why a call waits, and
actions on agents (force ready or a pause, listen to or whisper into a call)."""

from __future__ import annotations

import re
from pathlib import Path

import structlog
from aiohttp import web

from acd.board import wallboard_state
from acd.engine import AcdError
from acd.live import AcdService
from acd.supervision import Supervision, SupervisionError, listen_mode, state_request
from acd.wallboard_hub import WallboardHub
from web.app import add_page
from web.kit import ApiError, json_error, map_errors, principal, read_object, to_json

ACD_SERVICE: web.AppKey[AcdService] = web.AppKey("acd_service")
WALLBOARD: web.AppKey[WallboardHub] = web.AppKey("wallboard")
SUPERVISION: web.AppKey[Supervision] = web.AppKey("supervision")
SUPERVISORS = ("supervisor", "admin")
# Agent names as accounts allow them; anything else cannot name an agent.
AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
STATUS_OF = {"unknown_agent": 404, "bad_request": 400, "conflict": 409, "pbx_down": 503}

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()
STATIC = Path(__file__).resolve().parent / "static"


@routes.get("/api/wallboard")
async def wallboard(request: web.Request) -> web.Response:
    await principal(request, *SUPERVISORS)
    acd = request.app[ACD_SERVICE]
    faults = request.app[WALLBOARD].faults()
    state = wallboard_state(acd.engine, acd.now(), acd.waiting_elsewhere)
    return to_json({**state, "faults": faults})


@routes.get("/ws/wallboard")
async def wallboard_socket(request: web.Request) -> web.WebSocketResponse:
    await principal(request, *SUPERVISORS)
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)
    await request.app[WALLBOARD].serve(ws, request.transport)
    return ws


@routes.get("/api/acd/calls/{call_id}/why")
async def why_waiting(request: web.Request) -> web.Response:
    """Why a call has not been offered yet: its rung, who could take it, what they are doing."""
    await principal(request, *SUPERVISORS)
    try:
        return to_json(request.app[ACD_SERVICE].explain(request.match_info["call_id"]))
    except AcdError as exc:
        raise json_error(404, str(exc)) from exc


def _agent_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not AGENT_NAME.match(name):
        raise json_error(404, "no agent by that name")
    return name


def _failed(exc: SupervisionError, by: str, action: str, agent: str) -> ApiError:
    status = STATUS_OF.get(exc.kind, 400)
    log.info("supervisor_action_refused", by=by, action=action, agent=agent, status=status,
             error=str(exc))  # fmt: skip
    return json_error(status, str(exc))


@routes.post("/api/agents/{name}/state")
async def force_state(request: web.Request) -> web.Response:
    """A supervisor sets an agent ready or paused: {"state": "ready"|"paused", "reason"}."""
    who = await principal(request, *SUPERVISORS)
    name = _agent_name(request)
    body = await read_object(request, max_bytes=4096)
    try:
        state, reason = state_request(body)
        view = request.app[SUPERVISION].set_state(who.name, name, state, reason)
    except SupervisionError as exc:
        raise _failed(exc, who.name, "state", name) from exc
    return to_json(view)


@routes.post("/api/agents/{name}/listen")
async def listen(request: web.Request) -> web.Response:
    """Ring the supervisor's phone into the agent's call: {"mode": "listen"|"whisper"}."""
    who = await principal(request, *SUPERVISORS)
    name = _agent_name(request)
    body = await read_object(request, max_bytes=4096)
    try:
        started = await request.app[SUPERVISION].listen(
            who.name, name, listen_mode(body), by_admin=who.role == "admin"
        )
    except SupervisionError as exc:
        raise _failed(exc, who.name, "listen", name) from exc
    return to_json(
        {
            "agent": started.agent,
            "mode": started.mode,
            "channel": started.channel,
            "phone": started.phone,
            "action_id": started.action_id,
        },
        status=202,
    )


def setup(
    app: web.Application, *, acd: AcdService, wallboard: WallboardHub, supervision: Supervision
) -> None:
    app.add_routes(routes)
    add_page(app, "/wallboard", STATIC / "wallboard.html", "/static/wallboard")
    map_errors(app, {AcdError: 409})  # a move the agent's or call's state does not allow
    app[ACD_SERVICE] = acd
    app[WALLBOARD] = wallboard
    app[SUPERVISION] = supervision
