"""Agents' desktop connections: one live WebSocket per agent for screen-pops and state.

Each desktop writes through a bounded outbox (web/outbox.py): a desktop that cannot keep up is
disconnected rather than allowed to slow the loop; it reconnects and gets the current state
again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from agent_client.accounts import AgentDirectory
from web.outbox import Outbox

log = structlog.get_logger(__name__)


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
    ) -> _Desktop:
        old = self._connections.get(agent_id)
        if old is not None:
            old.close("replaced by a newer connection")
        desktop = _Desktop(agent_id, ws, self._outbox_size, transport)
        self._connections[agent_id] = desktop
        return desktop

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
    ) -> None:
        self.agent_id = agent_id
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

    def start(self) -> None:
        self.outbox.start()

    def stop(self) -> None:
        """The socket is gone: stop writing."""
        self.outbox.stop()

    def _too_slow(self, _: Outbox) -> None:
        log.warning("desktop_too_slow", agent=self.agent_id)
