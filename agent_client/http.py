"""Agent routes: accounts, log-in, state, and the desktop WebSocket that carries screen-pops."""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from acd.agents import (
    DEFAULT_PAUSE_REASON,
    AgentState,
    StateChangeError,
    parse_state_change,
)
from acd.devices import web_phone
from acd.engine import AcdError
from acd.events import AcdEvent, AgentChanged
from acd.http import ACD_SERVICE
from acd.live import AcdService
from agent_client.accounts import Agent, AgentDirectory, AgentError, session_key
from agent_client.desktops import DesktopHub
from agent_client.limits import LoginThrottle
from agent_client.sessions import DeskSessions, SessionConflict
from web.app import add_page
from web.kit import (
    AUTHENTICATE,
    ApiError,
    Principal,
    json_error,
    map_errors,
    parse_json_object,
    principal,
    read_object,
    text_field,
    to_json,
)

log = structlog.get_logger(__name__)

DIRECTORY = web.AppKey("directory", AgentDirectory)
DESKTOPS = web.AppKey("desktops", DesktopHub)
ADMIN_TOKEN = web.AppKey("admin_token", str)
SIP_INFO: web.AppKey[dict[str, Any]] = web.AppKey("sip_info")
AGENT = web.RequestKey("agent", Agent)
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
SESSIONS = web.AppKey("sessions", DeskSessions)
# Called after an agent is created, so the PBX and the ACD learn of the new phone.
AGENTS_CHANGED: web.AppKey[Callable[[Agent], Awaitable[None]]] = web.AppKey("agents_changed")

routes = web.RouteTableDef()
STATIC = Path(__file__).resolve().parent / "static"
MAX_WS_MESSAGE = 16 * 1024
MAX_TOKEN = 512


def _token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip()
    return request.query.get("token")


async def authenticate(request: web.Request) -> Principal:
    """Bearer token (or ?token= for WebSockets): the admin token or an agent's session."""
    token = _token_of(request)
    if not token:
        raise json_error(401, "missing bearer token")
    # Tokens are URL-safe ASCII. A header's bytes that are not UTF-8 arrive as lone surrogates,
    # which encode() below would fail on (a 500 before authentication): no such token exists.
    if not token.isascii() or len(token) > MAX_TOKEN:
        raise json_error(401, "session unknown or expired; log in again")
    if hmac.compare_digest(token.encode(), request.app[ADMIN_TOKEN].encode()):
        return Principal("admin", "admin")
    agent = await request.app[DIRECTORY].agent_for_token(token)
    if agent is None:
        raise json_error(401, "session unknown or expired; log in again")
    request[AGENT] = agent
    return Principal(agent.name, agent.role)


async def current_agent(request: web.Request) -> Agent:
    await principal(request, "agent", "supervisor")
    return request[AGENT]


def acd_call(change: Callable[[], None]) -> None:
    try:
        change()
    except AcdError as exc:
        raise json_error(409, str(exc)) from exc


@routes.post("/api/agents")
async def create_agent(request: web.Request) -> web.Response:
    await principal(request, "admin")
    body = await read_object(request)
    try:
        agent = await request.app[DIRECTORY].create(
            name=text_field(body, "name", max_len=32),
            password=text_field(body, "password", max_len=200),
            display_name=text_field(body, "display_name", max_len=100, required=False),
            role=text_field(body, "role", max_len=20, required=False) or "agent",
            skills=body.get("skills"),
        )
    except AgentError as exc:
        raise json_error(422, str(exc)) from exc
    await request.app[AGENTS_CHANGED](agent)
    return to_json({**agent.public(), "sip": _sip(request, agent)}, status=201)


@routes.get("/api/agents")
async def list_agents(request: web.Request) -> web.Response:
    await principal(request, "admin", "supervisor")
    acd = request.app[ACD_SERVICE]
    agents = [
        {**a.public(), "acd": acd.agent_view(a.name)}
        for a in request.app[DIRECTORY].by_name.values()
    ]
    return to_json(agents)


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    body = await read_object(request)
    name = text_field(body, "name", max_len=32)
    password = text_field(body, "password", max_len=200)
    roles = body.get("roles")  # the page's own roles: anyone else is refused, nothing changes
    if roles is not None and (
        not isinstance(roles, list) or not all(isinstance(r, str) for r in roles)
    ):
        raise json_error(400, "roles: a list of role names")
    throttle, address = request.app[LOGIN_THROTTLE], request.remote or ""
    wait = throttle.begin(name, address, time.monotonic())
    if wait > 0:
        log.warning("login_throttled", agent=name, address=address, retry_after=round(wait))
        seconds = math.ceil(wait)
        refused = json_error(
            429, f"too many failed log-ins; try again in {seconds} s", retry_after=seconds
        )
        refused.headers["Retry-After"] = str(seconds)
        raise refused
    password_right: bool | None = None  # not known until checked (the check may fail)
    try:
        agent = await request.app[DIRECTORY].check_password(name, password)
        password_right = agent is not None
    finally:
        throttle.end(name, address, time.monotonic(), password_right=password_right)
    if agent is None:
        log.info("login_failed", agent=name, address=address)
        raise json_error(401, "wrong name or password")
    if roles is not None and agent.role not in roles:
        log.info("login_refused_for_role", agent=name, roles=roles)  # its session is kept
        raise json_error(403, f"this page is for the roles {sorted(roles)}")
    token = await request.app[SESSIONS].log_in(agent)
    return to_json({"token": token, "agent": agent.public(), "sip": _sip(request, agent)})


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    agent = await current_agent(request)
    token = _token_of(request)
    assert token is not None
    await request.app[SESSIONS].log_out(agent, token)
    return to_json({"ok": True})


@routes.post("/api/agents/{name}/logout")
async def force_logout(request: web.Request) -> web.Response:
    """A supervisor logs an agent out: out of the ACD, every session ended, the desk told."""
    who = await principal(request, "supervisor", "admin")
    agent = request.app[DIRECTORY].by_name.get(request.match_info["name"])
    if agent is None:
        raise json_error(404, "no agent by that name")
    try:
        ended = await request.app[SESSIONS].force_log_out(who.name, agent)
    except SessionConflict as exc:
        log.info("supervisor_action_refused", by=who.name, action="logout", agent=agent.name,
                 status=409, error=str(exc))  # fmt: skip
        raise json_error(409, str(exc)) from exc
    view = request.app[ACD_SERVICE].agent_view(agent.name) if agent.role == "agent" else None
    return to_json({"agent": agent.name, "acd": view, "sessions_ended": ended})


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    agent = await current_agent(request)
    return to_json({**agent.public(), "acd": request.app[ACD_SERVICE].agent_view(agent.name)})


@routes.get("/api/me/sip")
async def my_sip(request: web.Request) -> web.Response:
    """The softphone's credentials, for a desk reopened on a saved session: the page keeps
    only its session token, never the SIP password."""
    agent = await current_agent(request)
    return to_json(_sip(request, agent))


@routes.post("/api/me/state")
async def set_state(request: web.Request) -> web.Response:
    agent = await current_agent(request)
    body = await read_object(request)
    _change_state(request.app, agent, body)
    return to_json(request.app[ACD_SERVICE].agent_view(agent.name))


def _change_state(app: web.Application, agent: Agent, body: dict[str, Any]) -> None:
    try:
        state, reason = parse_state_change(body, default_reason=DEFAULT_PAUSE_REASON)
    except StateChangeError as exc:
        raise json_error(400, str(exc)) from exc
    acd = app[ACD_SERVICE]
    if state is AgentState.READY:
        acd_call(lambda: acd.set_ready(agent.name))
    else:
        assert reason is not None
        acd_call(lambda: acd.pause(agent.name, reason))


@routes.get("/api/transfer-targets")
async def transfer_targets(request: web.Request) -> web.Response:
    """Where an agent can pass a caller: logged-in colleagues and the departments' numbers."""
    agent = await current_agent(request)
    directory, acd = request.app[DIRECTORY], request.app[ACD_SERVICE]
    colleagues = []
    for other in directory.by_name.values():
        state = acd.agent_view(other.name).get("state")
        if (
            other.name != agent.name
            and other.role == "agent"
            and state not in (None, "unknown", "logged_out")
        ):
            colleagues.append(
                {"name": other.name, "display_name": other.display_name,
                 "extension": other.sip_endpoint, "state": state}
            )  # fmt: skip
    departments = [
        {"code": d.code, "names": d.names, "extension": d.phone}
        for d in directory.catalogue.departments.values()
        if d.phone
    ]
    return to_json({"agents": colleagues, "departments": departments})


def _sip(request: web.Request, agent: Agent) -> dict[str, Any]:
    info: dict[str, Any] = request.app[SIP_INFO]
    sip = dict(info)
    sip.update(
        username=agent.sip_endpoint,
        password=agent.sip_secret,
        web_username=web_phone(agent.sip_endpoint),
    )
    return sip


@routes.get("/ws/agent")
async def desktop_socket(request: web.Request) -> web.WebSocketResponse:
    agent = await current_agent(request)
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_WS_MESSAGE)
    await ws.prepare(request)
    hub = request.app[DESKTOPS]
    token = _token_of(request)
    assert token is not None
    desktop = hub.attach(agent.name, ws, request.transport, session=session_key(token))
    desktop.send(
        {
            "type": "hello",
            "agent": agent.public(),
            "acd": request.app[ACD_SERVICE].agent_view(agent.name),
        }
    )
    desktop.start()
    log.info("desktop_connected", agent=agent.name)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                desktop.send({"type": "error", "code": 400, "error": "only JSON text messages"})
                continue
            desktop.send(_handle_desktop_message(request.app, agent, msg.data))
    finally:
        hub.detach(desktop)
        desktop.close("disconnected")
        desktop.stop()
        log.info("desktop_disconnected", agent=agent.name, reason=desktop.closed_reason)
    return ws


def _handle_desktop_message(app: web.Application, agent: Agent, text: str) -> dict[str, Any]:
    """Answer one message from a desktop; bad ones get an error reply, never a crash."""
    try:
        # The request kit's reader, not json.loads: deep nesting raised RecursionError past the
        # handlers below, failing the handler mid-socket (the 500 it wrote corrupted the
        # connection); NUL and lone surrogates would reach the ACD and the presence store.
        body = parse_json_object(text)
        if not isinstance(body.get("type"), str):
            raise ValueError("a message is a JSON object with a string 'type'")
        kind = body["type"]
        if kind == "ping":
            return {"type": "pong"}
        if kind == "state":
            _change_state(app, agent, body)
            return {"type": "state", "acd": app[ACD_SERVICE].agent_view(agent.name)}
        raise ValueError(f"unknown message type {kind!r}")
    except ApiError as exc:
        log.info("desktop_message_rejected", agent=agent.name, error=exc.message)
        return {"type": "error", "code": exc.status, "error": exc.message}
    except ValueError as exc:  # includes JSONDecodeError
        log.info("desktop_message_rejected", agent=agent.name, error=str(exc))
        return {"type": "error", "code": 400, "error": str(exc)}


def forward_acd_events(app: web.Application) -> Callable[[AcdEvent], None]:
    """An ACD listener that tells each agent's desktop about its own state changes."""

    def listener(event: AcdEvent) -> None:
        if isinstance(event, AgentChanged):
            app[DESKTOPS].send(event.agent_id, {"type": "state", "acd": event.view})

    return listener


def setup(
    app: web.Application,
    *,
    directory: AgentDirectory,
    desktops: DesktopHub,
    admin_token: str,
    sip_info: dict[str, Any],
    agents_changed: Callable[[Agent], Awaitable[None]],
    acd: AcdService,
) -> None:
    """The agents' routes; who is asking is decided here for every folder's routes."""
    app.add_routes(routes)
    add_page(app, "/desk", STATIC / "desk.html", "/static/desk")
    map_errors(app, {AgentError: 422, SessionConflict: 409})
    app[AUTHENTICATE] = authenticate
    app[DIRECTORY] = directory
    app[DESKTOPS] = desktops
    app[ADMIN_TOKEN] = admin_token
    app[LOGIN_THROTTLE] = LoginThrottle()
    app[SESSIONS] = DeskSessions(directory, acd, desktops)
    app[SIP_INFO] = sip_info
    app[AGENTS_CHANGED] = agents_changed
    acd.subscribe(forward_acd_events(app))
