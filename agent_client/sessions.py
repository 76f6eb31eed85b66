"""Log-in, log-out and a supervisor's log-out: the session, the ACD and the desk change together.

One agent, one session. Each change takes three steps: the session in PostgreSQL (one
transaction), the agent in the ACD (one legal transition, no I/O) and the desktop connection
(told why, closed). They run one agent at a time, and to the end even when the request that
asked is abandoned half-way (the client gave up, the handler was cancelled): a log-in whose
answer never arrived leaves a logged-in agent with one session nobody holds, and the next
log-in ends it like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

from acd.agents import AgentState
from acd.live import AcdService
from agent_client.accounts import Agent, AgentDirectory, session_key
from agent_client.desktops import DesktopHub, SessionEnd

log = structlog.get_logger(__name__)

T = TypeVar("T")

# A call is on its way to or with the agent: a supervisor's log-out would cut it.
ON_A_CALL = frozenset({AgentState.RINGING.value, AgentState.ON_CALL.value})


class SessionConflict(Exception):
    """A log-in or log-out the agent's state does not allow now (the message says why)."""


class DeskSessions:
    def __init__(self, directory: AgentDirectory, acd: AcdService, desktops: DesktopHub) -> None:
        self._directory = directory
        self._acd = acd
        self._desktops = desktops
        self._locks: dict[str, asyncio.Lock] = {}
        self._unattended: set[asyncio.Task[Any]] = set()

    async def log_in(self, agent: Agent) -> str:
        """Open the agent's one session (ending any other) and log it in to the ACD; the token.

        A ready, paused or wrapping-up agent lands paused("login"); one with a call keeps it.
        """
        return await self._to_the_end(agent.name, self._log_in(agent))

    async def log_out(self, agent: Agent, token: str) -> None:
        """The agent leaves: out of the ACD (refused on a call), the session ended."""
        await self._to_the_end(agent.name, self._log_out(agent, token))

    async def force_log_out(self, by: str, agent: Agent) -> int:
        """A supervisor logs the agent out; refused while a call rings or is in progress.

        Every session of the account ends and its desk is told who did it. Returns how many
        sessions there were.
        """
        return await self._to_the_end(agent.name, self._force_log_out(by, agent))

    # -- the steps, one agent at a time ---------------------------------------------------------
    async def _log_in(self, agent: Agent) -> str:
        if agent.role == "agent" and self._acd.agent_view(agent.name)["state"] == "unknown":
            raise SessionConflict(f"agent {agent.name!r} is not known to the ACD yet; try again")
        token = await self._directory.open_session(agent)
        # Nothing awaits from here on: the ACD and the desk follow the committed session at once.
        if agent.role == "agent":
            self._acd.login(agent.name)
        self._desktops.session_started(agent.name, session_key(token))
        log.info("agent_logged_in", agent=agent.name, acd=self._acd.agent_view(agent.name))
        return token

    async def _log_out(self, agent: Agent, token: str) -> None:
        if agent.role == "agent":
            self._acd.logout(agent.name)  # AcdError (409) on a call: nothing has changed
        await self._directory.end_session(token)
        self._desktops.session_ended(agent.name, SessionEnd.LOGGED_OUT)
        log.info("agent_logged_out", agent=agent.name)

    async def _force_log_out(self, by: str, agent: Agent) -> int:
        if agent.role == "agent":
            state = self._acd.agent_view(agent.name)["state"]
            if state in ON_A_CALL:
                raise SessionConflict(
                    f"agent {agent.name!r} is on a call ({state}); log them out when it ends"
                )
            self._acd.logout(agent.name)
        ended = await self._directory.end_sessions_of(agent)
        self._desktops.session_ended(agent.name, SessionEnd.LOGGED_OUT_BY_SUPERVISOR, by=by)
        log.info("supervisor_logged_out", by=by, agent=agent.name, sessions_ended=ended)
        return ended

    # -- running them ---------------------------------------------------------------------------
    async def _to_the_end(self, agent_name: str, steps: Coroutine[Any, Any, T]) -> T:
        """Run the steps under the agent's lock, to the end even if the caller is cancelled."""
        task = asyncio.ensure_future(self._locked(agent_name, steps))
        self._unattended.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    async def _locked(self, agent_name: str, steps: Coroutine[Any, Any, T]) -> T:
        lock = self._locks.setdefault(agent_name, asyncio.Lock())
        async with lock:
            return await steps

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._unattended.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Also seen by the caller if it still waits; logged for the one that gave up.
            log.info("session_change_failed", error=repr(task.exception()))

    async def drain(self) -> None:
        """Wait for changes still running (at shutdown)."""
        if self._unattended:
            await asyncio.wait(self._unattended, timeout=10)
