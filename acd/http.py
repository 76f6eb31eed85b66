"""Supervisor routes of the ACD: the wallboard (HTTP and WebSocket) and why a call waits."""

from __future__ import annotations

from aiohttp import web

from acd.engine import AcdError
from acd.service import AcdService
from acd.wallboard import WallboardHub, wallboard_state
from cases.http import json_error, principal, to_json

ACD_SERVICE: web.AppKey[AcdService] = web.AppKey("acd_service")
WALLBOARD: web.AppKey[WallboardHub] = web.AppKey("wallboard")
SUPERVISORS = ("supervisor", "admin")

routes = web.RouteTableDef()


@routes.get("/api/wallboard")
async def wallboard(request: web.Request) -> web.Response:
    await principal(request, *SUPERVISORS)
    return to_json(wallboard_state(request.app[ACD_SERVICE]))


@routes.get("/ws/wallboard")
async def wallboard_socket(request: web.Request) -> web.WebSocketResponse:
    await principal(request, *SUPERVISORS)
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)
    await request.app[WALLBOARD].serve(ws)
    return ws


@routes.get("/api/acd/calls/{call_id}/why")
async def why_waiting(request: web.Request) -> web.Response:
    """Why a call has not been offered yet: its rung, who could take it, what they are doing."""
    await principal(request, *SUPERVISORS)
    try:
        return to_json(request.app[ACD_SERVICE].explain(request.match_info["call_id"]))
    except AcdError as exc:
        raise json_error(404, str(exc)) from exc
