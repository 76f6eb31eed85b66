"""Desktop connections follow the agent's one session: a desk on an ended session is told why
and closed, and one that turns up later with an ended session is refused the same way."""

from __future__ import annotations

import asyncio
import json

from agent_client.desktops import DesktopHub, SessionEnd
from tests.unit.test_outbox import FakeSocket


class FakeDirectory:
    def endpoint_of(self, agent_id: str) -> str | None:
        return None


def _messages(ws: FakeSocket) -> list[dict[str, object]]:
    return [json.loads(text) for text in ws.sent]


async def test_a_new_session_closes_the_desk_of_the_old_one_and_says_why() -> None:
    hub = DesktopHub(FakeDirectory())  # type: ignore[arg-type]
    first = FakeSocket()
    hub.attach("ola", first, session="s1").start()  # type: ignore[arg-type]
    hub.session_started("ola", "s2")
    await asyncio.sleep(0.01)
    assert _messages(first) == [{"type": "session_ended", "reason": "logged_in_elsewhere"}]
    assert first.closes == [{"message": b"session ended: logged_in_elsewhere"}]
    assert not hub.send("ola", {"type": "ping"})  # nobody left to send to

    second = FakeSocket()
    hub.attach("ola", second, session="s2").start()  # type: ignore[arg-type]
    assert hub.send("ola", {"type": "ping"})
    late = FakeSocket()  # a desk that checked the old token just before the new log-in
    hub.attach("ola", late, session="s1").start()  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert _messages(late) == [{"type": "session_ended", "reason": "logged_in_elsewhere"}]
    assert _messages(second) == [{"type": "ping"}] and second.closes == []
    assert hub.send("ola", {"type": "pong"})  # the live desk is still the one served


async def test_a_log_out_by_a_supervisor_names_who_and_later_desks_are_refused() -> None:
    hub = DesktopHub(FakeDirectory())  # type: ignore[arg-type]
    desk = FakeSocket()
    hub.attach("ola", desk, session="s1").start()  # type: ignore[arg-type]
    hub.session_ended("ola", SessionEnd.LOGGED_OUT_BY_SUPERVISOR, by="boss")
    late = FakeSocket()
    hub.attach("ola", late, session="s1").start()  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert _messages(desk) == [
        {"type": "session_ended", "reason": "logged_out_by_supervisor", "by": "boss"}
    ]
    assert _messages(late) == [{"type": "session_ended", "reason": "logged_out"}]


async def test_desks_the_hub_has_no_session_for_are_served() -> None:
    # After a restart the hub knows no sessions: PostgreSQL vouched for the token already.
    hub = DesktopHub(FakeDirectory())  # type: ignore[arg-type]
    desk = FakeSocket()
    hub.attach("ola", desk, session="s1").start()  # type: ignore[arg-type]
    assert hub.send("ola", {"type": "ping"})
