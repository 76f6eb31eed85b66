"""The fallback queue's bookkeeping without Asterisk: which agents it may ring, who waits in it,
and what its calls' records say."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg

from acd.board import wallboard_state
from acd.engine import Engine
from acd.events import AgentChanged, QueueChanged
from acd.live import AcdService
from acd.service_level import ServiceLevelWindows
from calls.fallback import FallbackCalls, FollowedCall, waiting_figures
from calls.fallback_members import FallbackMembers, member_paused
from calls.record import CallRecords
from pbx.ami import AmiError, AmiLink

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_only_agents_who_could_take_a_call_are_unpaused_members() -> None:
    assert not member_paused("ready")
    assert not member_paused("on_call")  # ringinuse=no keeps app_queue from ringing them
    assert not member_paused("ringing")
    for state in ("paused", "logged_out", "wrap_up", "unknown"):
        assert member_paused(state), state


def test_waiting_counts_only_residents_nobody_has_answered() -> None:
    calls = {
        "1": FollowedCall(uuid.uuid4(), T0),
        "2": FollowedCall(uuid.uuid4(), T0 + timedelta(seconds=20)),
        "3": FollowedCall(uuid.uuid4(), T0, answered_at=T0 + timedelta(seconds=5)),
    }
    assert waiting_figures(calls, T0 + timedelta(seconds=30)) == (2, 30.0)
    assert waiting_figures({}, T0) == (0, 0.0)


def test_the_wallboard_counts_residents_waiting_in_the_fallback_queue() -> None:
    acd = AcdService(Engine(stats=ServiceLevelWindows()), clock=lambda: 1000.0)
    assert (
        wallboard_state(acd.engine, acd.now(), acd.waiting_elsewhere)["live"]["calls"]["waiting"]
        == 0
    )
    acd.waiting_elsewhere = lambda now: (2, 75.0)
    live = wallboard_state(acd.engine, acd.now(), acd.waiting_elsewhere)["live"]["calls"]
    assert (live["waiting"], live["waiting_in_fallback"], live["longest_wait"]) == (2, 2, 75.0)
    assert wallboard_state(acd.engine, acd.now(), acd.waiting_elsewhere)["board"]["waiting"] == 2


class RecordingAmi:
    def __init__(self, failing: int = 0) -> None:
        self.actions: list[dict[str, Any]] = []
        self.failing = failing

    async def action(self, action: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        if self.failing:
            self.failing -= 1
            raise AmiError("QueuePause failed: timed out")
        self.actions.append(dict(action))
        return {}


async def settle(members: FallbackMembers, condition: Any) -> None:
    task = asyncio.create_task(members.run())
    try:
        for _ in range(500):  # 5 s at most
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("members not in step within 5 s")
    finally:
        task.cancel()


async def test_members_follow_the_acd_states_on_both_phones() -> None:
    ami = RecordingAmi()
    members = FallbackMembers(
        cast(AmiLink, ami), endpoint_of=lambda agent: f"agent-{agent}", retry_seconds=0.01
    )
    members.want_all({"ola": "logged_out", "gus": "ready"})
    members.on_acd_event(QueueChanged())  # not about an agent: ignored
    await settle(members, lambda: len(ami.actions) == 4)
    paused = {(a["Interface"], a["Paused"]) for a in ami.actions}
    assert paused == {("PJSIP/agent-ola", "true"), ("PJSIP/agent-ola-web", "true"),
                      ("PJSIP/agent-gus", "false"), ("PJSIP/agent-gus-web", "false")}  # fmt: skip
    assert {a["Queue"] for a in ami.actions} == {"cityline-fallback"}
    ami.actions.clear()
    members.on_acd_event(AgentChanged("ola", {"state": "ready"}))
    members.on_acd_event(AgentChanged("gus", {"state": "ready"}))  # no change: nothing sent
    await settle(members, lambda: len(ami.actions) == 2)
    assert {a["Paused"] for a in ami.actions} == {"false"}
    assert {a["Interface"] for a in ami.actions} == {"PJSIP/agent-ola", "PJSIP/agent-ola-web"}


async def test_a_failed_change_is_sent_again_and_a_resync_sends_everything() -> None:
    ami = RecordingAmi(failing=1)
    members = FallbackMembers(
        cast(AmiLink, ami), endpoint_of=lambda agent: agent, retry_seconds=0.01
    )
    members.want("ola", True)
    await settle(members, lambda: members.sent == {"ola": True})
    assert len(ami.actions) == 2
    members.resync()  # e.g. app_queue was reloaded
    await settle(members, lambda: len(ami.actions) == 4)


class StandInDatabase:
    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def execute(self, sql: str, *args: Any) -> str:
        self.statements.append((sql, args))
        return "OK"


async def test_a_fallback_call_is_recorded_without_reading_the_database(tmp_path: Path) -> None:
    db = StandInDatabase()
    now = [T0]
    records = CallRecords(cast(asyncpg.Pool, db), answer_target_seconds=15,
                          journal_dir=tmp_path, clock=lambda: now[0])  # fmt: skip
    await records.start()
    fallback = FallbackCalls(records, agent_for_endpoint={"agent-ola": "ola"}.get,
                             clock=lambda: now[0])  # fmt: skip
    call_id = uuid.uuid4()
    await fallback._on_event({"Event": "UserEvent", "UserEvent": "CityLineFallback",
                              "Uniqueid": "1.5", "CallId": str(call_id), "Caller": "481"})  # fmt: skip
    assert fallback.waiting() == (1, 0.0)
    now[0] = T0 + timedelta(seconds=8)
    await fallback._on_event({"Event": "AgentConnect", "Uniqueid": "1.5",
                              "Interface": "PJSIP/agent-ola-web"})  # fmt: skip
    assert fallback.waiting() == (0, 0.0)
    now[0] = T0 + timedelta(seconds=60)
    await fallback._on_event({"Event": "Hangup", "Uniqueid": "1.5"})
    assert fallback.following == {}
    assert await records.drained(timeout=5)
    updates = [args for sql, args in db.statements if sql.startswith("UPDATE")]
    assert updates[-1][-2:] == (T0 + timedelta(seconds=60), "fallback")  # ended, outcome
    assert any("ola" in args for args in updates)
    assert not any(sql.startswith("SELECT") for sql, _ in db.statements)
    await records.stop()


async def test_a_resident_who_gives_up_in_the_fallback_queue_counts_as_abandoned(
    tmp_path: Path,
) -> None:
    db = StandInDatabase()
    now = [T0]
    records = CallRecords(cast(asyncpg.Pool, db), answer_target_seconds=15,
                          journal_dir=tmp_path, clock=lambda: now[0])  # fmt: skip
    await records.start()
    fallback = FallbackCalls(records, agent_for_endpoint=lambda e: None, clock=lambda: now[0])
    call_id = uuid.uuid4()
    fallback.adopt("2.7", call_id, queued_at=T0 - timedelta(seconds=40))  # found at start-up
    assert fallback.waiting() == (1, 40.0)
    await fallback._on_event({"Event": "Hangup", "Uniqueid": "2.7"})
    assert await records.drained(timeout=5)
    sql, args = next((s, a) for s, a in db.statements if s.startswith("UPDATE"))
    assert "outcome" in sql and "fallback_abandoned" in args and 40.0 in args
    await records.stop()
