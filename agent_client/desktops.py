"""Agents' desktop connections: one live WebSocket per agent for screen-pops and state.

Each desktop writes through a bounded outbox (web/outbox.py): a desktop that cannot keep up is
disconnected rather than allowed to slow the loop; it reconnects and gets the current state
again.

A connection belongs to the session it was opened with. When the agent's session ends (a log-in
elsewhere, a log-out, a supervisor's log-out) its desk is told why (`session_ended`) and closed,
and a connection that still carries an ended session is refused the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

import structlog
from aiohttp import web

from agent_client.accounts import AgentDirectory
from web.outbox import Outbox

log = structlog.get_logger(__name__)


class SessionEnd(StrEnum):
    """Why a desk's session ended, as the desk is told (`session_ended`'s reason)."""

    LOGGED_IN_ELSEWHERE = "logged_in_elsewhere"
    LOGGED_OUT = "logged_out"
    LOGGED_OUT_BY_SUPERVISOR = "logged_out_by_supervisor"


class DesktopHub:
    """One live desktop connection per agent; a newer one replaces the older."""

    def __init__(
        self,
        directory: AgentDirectory,
        *,
        phones_of: Callable[[str], list[str]] = lambda agent_id: [],
        outbox_size: int = 64,
    ) -> None:
        self._directory = directory
        self._phones_of = phones_of
        self._outbox_size = outbox_size
        self._connections: dict[str, _Desktop] = {}
        # agent -> its live session's key, or None once it ended; absent: not known here (after
        # a restart the desks come back with sessions PostgreSQL vouched for).
        self._live_session: dict[str, str | None] = {}
        self.last_pop: dict[str, dict[str, Any]] = {}

    def endpoint_of(self, agent_id: str) -> str | None:
        return self._directory.endpoint_of(agent_id)

    def phones_of(self, agent_id: str) -> list[str]:
        """Endpoints to ring for the agent: the registered ones, else its SIP endpoint."""
        phones = self._phones_of(agent_id)
        endpoint = self.endpoint_of(agent_id)
        return phones or ([endpoint] if endpoint else [])

    def attach(
        self,
        agent_id: str,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None = None,
        *,
        session: str | None = None,
    ) -> _Desktop:
        """The agent's desktop on this socket; one whose session has ended is told and closed."""
        desktop = _Desktop(agent_id, ws, self._outbox_size, transport, session=session)
        live = self._live_session.get(agent_id, session)
        if live != session:
            desktop.end_session(SessionEnd.LOGGED_IN_ELSEWHERE if live else SessionEnd.LOGGED_OUT)
            return desktop
        old = self._connections.get(agent_id)
        if old is not None:
            old.close("replaced by a newer connection")
        self._connections[agent_id] = desktop
        return desktop

    def session_started(self, agent_id: str, session: str) -> None:
        """The agent's one session is now `session`: a desk on an older one is told and closed."""
        self._live_session[agent_id] = session
        desktop = self._connections.get(agent_id)
        if desktop is not None and desktop.session != session:
            del self._connections[agent_id]
            desktop.end_session(SessionEnd.LOGGED_IN_ELSEWHERE)

    def session_ended(self, agent_id: str, reason: SessionEnd, *, by: str | None = None) -> None:
        """The agent has no session any more: its desk is told why and closed."""
        self._live_session[agent_id] = None
        desktop = self._connections.pop(agent_id, None)
        if desktop is not None:
            desktop.end_session(reason, by=by)

    def detach(self, desktop: _Desktop) -> None:
        if self._connections.get(desktop.agent_id) is desktop:
            del self._connections[desktop.agent_id]

    def send(self, agent_id: str, message: Mapping[str, Any]) -> bool:
        desktop = self._connections.get(agent_id)
        return desktop.send(message) if desktop else False

    def send_pop(self, agent_id: str, pop: Mapping[str, Any]) -> None:
        message = {"type": "pop", **pop}
        self.last_pop[agent_id] = message
        delivered = self.send(agent_id, message)
        log.info("screen_pop", agent=agent_id, delivered=delivered)

    def send_call_update(self, agent_id: str, call_id: str, status: str) -> None:
        self.send(agent_id, {"type": "call", "call_id": call_id, "status": status})

    def pass_pop(self, call_id: str, to_agent: str) -> None:
        """A colleague who takes a transferred call sees what the first agent saw."""
        by, pop = next(
            ((a, p) for a, p in self.last_pop.items() if p.get("call_id") == call_id),
            (None, None),
        )
        if pop is not None and to_agent != by:
            pop = {k: v for k, v in pop.items() if k != "type"}
            self.send_pop(to_agent, {**pop, "transferred_from": by})

    def close_all(self) -> None:
        for desktop in list(self._connections.values()):
            desktop.close("server shutting down")


class _Desktop:
    """One agent's connection: JSON messages through its outbox; start() begins writing."""

    def __init__(
        self,
        agent_id: str,
        ws: web.WebSocketResponse,
        outbox_size: int,
        transport: asyncio.Transport | None = None,
        *,
        session: str | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.session = session
        self.outbox = Outbox(ws, outbox_size, transport=transport, on_too_slow=self._too_slow)

    @property
    def closed_reason(self) -> str | None:
        return self.outbox.closed_reason

    def send(self, message: Mapping[str, Any]) -> bool:
        if self.outbox.closed_reason is not None:
            return False
        return self.outbox.put(json.dumps(message, default=str))

    def close(self, reason: str) -> None:
        """Close once what is queued has been written."""
        self.outbox.close(reason)

    def end_session(self, reason: SessionEnd, *, by: str | None = None) -> None:
        """Tell the desk its session is over, and why, then close."""
        message: dict[str, Any] = {"type": "session_ended", "reason": reason.value}
        if by is not None:
            message["by"] = by
        self.send(message)
        self.close(f"session ended: {reason.value}")
        log.info("desktop_session_ended", agent=self.agent_id, reason=reason.value, by=by)

    def start(self) -> None:
        self.outbox.start()

    def stop(self) -> None:
        """The socket is gone: stop writing."""
        self.outbox.stop()

    def _too_slow(self, _: Outbox) -> None:
        log.warning("desktop_too_slow", agent=self.agent_id)
