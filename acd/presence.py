"""Agents' ACD states kept across a restart.

The engine holds agents' states in memory; this module writes each change behind it to
PostgreSQL (`agent_presence`, one writer: PresenceStore, fed by the ACD's AgentChanged events)
and, at start, before any call is taken, logs back in every agent whose desk session is still
valid.

What an agent comes back as (`restored_pause_reason`, pure):

- no valid session: logged out (nobody could act at that desk);
- paused with a reason: paused with that reason;
- ready, or ringing, on a call or wrapping up: paused "service restarted". Ready is not safe to
  restore: while our service was down Asterisk's fallback queue rang every agent, so a "ready"
  agent may be talking to a resident we know nothing of, or may have left the desk; a call
  offered then rings unanswered for the ring timeout while the resident waits. An agent with a
  call when we stopped is likely still on it (Asterisk outlives us). One click on Ready, on a
  desk that reconnects by itself, brings each agent back;
- a valid session the ACD had logged out (or an agent saved by a version without this table):
  logged in, paused "service restarted": a valid session means a logged-in agent.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import asyncpg
import structlog

from acd.agents import AgentState
from acd.events import AcdEvent, AgentChanged
from acd.live import AcdService
from db.write_behind import WriteBehind

log = structlog.get_logger(__name__)

RESTART_PAUSE_REASON = "service restarted"
LOGIN_PAUSE_REASON = "login"  # what the engine's log-in pauses with
AGENT_STATES = frozenset(state.value for state in AgentState)  # not "unknown"


@dataclass(frozen=True)
class SavedPresence:
    state: str  # an AgentState value
    pause_reason: str | None = None


def restored_pause_reason(saved: SavedPresence | None, has_session: bool) -> str | None:
    """The pause reason an agent is logged back in with after a restart; None: logged out."""
    if not has_session:
        return None
    if saved is not None and saved.state == AgentState.PAUSED.value and saved.pause_reason:
        return saved.pause_reason
    return RESTART_PAUSE_REASON


class PresenceStore:
    """The one writer of `agent_presence`: every state the ACD reports, written behind, in order.

    Writing never blocks the ACD: changes queue here and one task writes them; while PostgreSQL
    is away it retries (the newest state of each agent wins), and stop() writes what is left.
    """

    def __init__(self, pool: asyncpg.Pool, *, retry_seconds: float = 1.0) -> None:
        self._pool = pool
        self._behind: WriteBehind[str, SavedPresence] = WriteBehind(
            "agent-presence", self._write, retry_seconds=retry_seconds
        )

    # -- writing ----------------------------------------------------------------------------
    def on_acd_event(self, event: AcdEvent) -> None:
        """An ACD listener: remember the agent's new state for the writer."""
        if isinstance(event, AgentChanged) and event.view.get("state") in AGENT_STATES:
            self.record(event.agent_id, event.view["state"], event.view.get("pause_reason"))

    def record(self, agent_id: str, state: str, pause_reason: str | None) -> None:
        self._behind.put(agent_id, SavedPresence(state, pause_reason))

    async def start(self) -> None:
        await self._behind.start()

    async def stop(self) -> None:
        await self._behind.stop()

    async def _write(self, batch: dict[str, SavedPresence]) -> None:
        await self._pool.executemany(
            "INSERT INTO agent_presence (agent, state, pause_reason, changed_at)"
            " VALUES ($1, $2, $3, now()) ON CONFLICT (agent) DO UPDATE"
            " SET state = excluded.state, pause_reason = excluded.pause_reason,"
            " changed_at = excluded.changed_at",
            [(agent, p.state, p.pause_reason) for agent, p in batch.items()],
        )

    # -- reading, at start ------------------------------------------------------------------
    async def load(self) -> dict[str, SavedPresence]:
        rows = await self._pool.fetch("SELECT agent, state, pause_reason FROM agent_presence")
        return {row["agent"]: SavedPresence(row["state"], row["pause_reason"]) for row in rows}

    async def restore(self, acd: AcdService, *, with_session: Collection[str]) -> dict[str, str]:
        """Log back in the ACD's agents with a valid session (see the module's rules), before
        calls are taken; the pause reason of each agent restored."""
        saved = await self.load()
        restored = restore_agents(acd, saved, with_session)
        for agent_id in acd.engine.agent_ids():
            was = saved.get(agent_id)
            if agent_id not in restored and was is not None and was.state != "logged_out":
                self.record(agent_id, AgentState.LOGGED_OUT.value, None)  # its session expired
        log.info("agents_restored", agents=restored)
        return restored


def restore_agents(
    acd: AcdService, saved: Mapping[str, SavedPresence], with_session: Collection[str]
) -> dict[str, str]:
    """Log in each logged-out agent the rules bring back; the pause reason of each."""
    restored: dict[str, str] = {}
    for agent_id in acd.engine.agent_ids():
        if acd.engine.agent_state(agent_id) is not AgentState.LOGGED_OUT:
            continue
        reason = restored_pause_reason(saved.get(agent_id), agent_id in with_session)
        if reason is None:
            continue
        acd.login(agent_id)
        if reason != LOGIN_PAUSE_REASON:
            acd.pause(agent_id, reason)
        restored[agent_id] = reason
    return restored
