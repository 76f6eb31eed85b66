"""Agents' states across a restart: what each saved state comes back as (pure), restoring them
into the ACD, and the write-behind that saves every change."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from acd.agents import AgentState
from acd.engine import Engine
from acd.live import AcdService
from acd.presence import (
    RESTART_PAUSE_REASON,
    PresenceStore,
    SavedPresence,
    restore_agents,
    restored_pause_reason,
)
from tests.support.acd_invariants import check_invariants

S = AgentState


@pytest.mark.parametrize(
    ("saved", "has_session", "expected"),
    [
        # no valid session: nobody can act at that desk
        *[(SavedPresence(s.value, "lunch" if s is S.PAUSED else None), False, None) for s in S],
        (None, False, None),
        # paused: the reason it had
        (SavedPresence("paused", "lunch"), True, "lunch"),
        (SavedPresence("paused", "login"), True, "login"),
        # ready or with a call: never ready again unasked
        (SavedPresence("ready"), True, RESTART_PAUSE_REASON),
        (SavedPresence("ringing"), True, RESTART_PAUSE_REASON),
        (SavedPresence("on_call"), True, RESTART_PAUSE_REASON),
        (SavedPresence("wrap_up"), True, RESTART_PAUSE_REASON),
        # a valid session means a logged-in agent, whatever the ACD had said
        (SavedPresence("logged_out"), True, RESTART_PAUSE_REASON),
        (SavedPresence("paused", None), True, RESTART_PAUSE_REASON),
        (None, True, RESTART_PAUSE_REASON),
    ],
)
def test_what_an_agent_comes_back_as(
    saved: SavedPresence | None, has_session: bool, expected: str | None
) -> None:
    assert restored_pause_reason(saved, has_session) == expected


def test_restoring_logs_agents_back_in_paused_and_never_ready() -> None:
    acd = AcdService(Engine(), clock=lambda: 100.0)
    for agent in ("rea", "lou", "gus", "new", "exp"):
        acd.upsert_agent(agent, {"lang:pl": 3, "group:roads": 3})
    saved = {
        "rea": SavedPresence("ready"),
        "lou": SavedPresence("paused", "lunch"),
        "gus": SavedPresence("logged_out"),
        "new": SavedPresence("paused", "login"),
        "exp": SavedPresence("on_call"),
    }
    restored = restore_agents(acd, saved, with_session={"rea", "lou", "new", "ghost"})
    assert restored == {"rea": RESTART_PAUSE_REASON, "lou": "lunch", "new": "login"}
    views = {a: (acd.agent_view(a)["state"], acd.agent_view(a)["pause_reason"]) for a in saved}
    assert views == {
        "rea": ("paused", RESTART_PAUSE_REASON),
        "lou": ("paused", "lunch"),
        "gus": ("logged_out", None),
        "new": ("paused", "login"),
        "exp": ("logged_out", None),
    }
    check_invariants(acd.engine)


class FakePool:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str | None]] = {}
        self.fail = 0
        self.writes = 0

    async def executemany(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("database away")
        self.writes += 1
        for agent, state, reason in args:
            self.rows[agent] = (state, reason)


async def test_every_change_is_written_behind_and_the_newest_wins() -> None:
    pool = FakePool()
    store = PresenceStore(pool, retry_seconds=0.01)  # type: ignore[arg-type]
    acd = AcdService(Engine(), clock=lambda: 5.0)
    acd.subscribe(store.on_acd_event)
    await store.start()
    acd.upsert_agent("ola", {"lang:pl": 3})
    pool.fail = 2  # PostgreSQL away for a moment: nothing is lost, nothing waits
    acd.login("ola")
    acd.set_ready("ola")
    acd.pause("ola", "lunch")
    await asyncio.sleep(0.1)
    assert pool.rows["ola"] == ("paused", "lunch")
    acd.logout("ola")
    await store.stop()  # writes what is left
    assert pool.rows["ola"] == ("logged_out", None)


async def test_stop_writes_what_the_writer_had_not_yet() -> None:
    pool = FakePool()
    store = PresenceStore(pool)  # type: ignore[arg-type]
    store.record("ola", "ready", None)
    await store.stop()  # never started: still written
    assert pool.rows == {"ola": ("ready", None)}
