"""A restart keeps what agents and residents were promised: logged-in agents come back logged
in (paused, never ready), and a callback a resident asked for is still made."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from cityline.simulated.sipp import call_with_keys, free_udp_port
from cityline.wiring import CityLine
from tests.conftest import CityFactory
from tests.integration.test_callbacks import POLISH_WASTE_THEN_CALLBACK, resident_phone
from tests.support.checks import agent_is, eventually, only_call
from tests.support.desk import DEFAULT_PASSWORD, AgentAtDesk, base_url, create_account

pytestmark = pytest.mark.integration


async def _log_in(city: CityLine, http: aiohttp.ClientSession, name: str) -> str:
    async with http.post(
        f"{base_url(city)}/api/login", json={"name": name, "password": DEFAULT_PASSWORD}
    ) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["token"])


async def _post(city: CityLine, http: aiohttp.ClientSession, path: str, token: str,
                body: Any = None) -> int:  # fmt: skip
    async with http.post(
        f"{base_url(city)}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status


async def _me(city: CityLine, http: aiohttp.ClientSession, token: str) -> tuple[int, Any]:
    async with http.get(
        f"{base_url(city)}/api/me", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.json()


async def test_logged_in_agents_come_back_logged_in_after_a_restart(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    name = f"test-{uuid.uuid4().hex[:10]}"
    first = await make_city(instance_name=name)
    tokens = {}
    for agent in ("rea", "lou", "gus", "exp", "new"):
        await create_account(first, http, agent)
        tokens[agent] = await _log_in(first, http, agent)
    assert await _post(first, http, "/api/me/state", tokens["rea"], {"state": "ready"}) == 200
    assert await _post(first, http, "/api/me/state", tokens["exp"], {"state": "ready"}) == 200
    lunch = {"state": "paused", "reason": "lunch"}
    assert await _post(first, http, "/api/me/state", tokens["lou"], lunch) == 200
    assert await _post(first, http, "/api/logout", tokens["gus"]) == 200
    await first.stop()
    # exp's session runs out while the service is down
    conn = await asyncpg.connect(first.dsn)
    try:
        await conn.execute(
            "UPDATE agent_sessions SET expires_at = now() - interval '1 minute'"
            " WHERE agent_id = (SELECT id FROM agents WHERE name = 'exp')"
        )
    finally:
        await conn.close()

    second = await make_city(instance_name=name)
    views = {}
    for agent in ("rea", "lou", "new"):
        status, me = await _me(second, http, tokens[agent])
        assert status == 200, me
        views[agent] = (me["acd"]["state"], me["acd"]["pause_reason"])
    assert views == {
        "rea": ("paused", "service restarted"),  # was ready: never offered a call unasked
        "lou": ("paused", "lunch"),
        "new": ("paused", "login"),
    }
    assert second.acd is not None
    assert second.acd.agent_view("gus")["state"] == "logged_out"
    assert second.acd.agent_view("exp")["state"] == "logged_out"  # no valid session
    # The desk carries on with the session it had.
    assert await _post(second, http, "/api/me/state", tokens["rea"], {"state": "ready"}) == 200
    await eventually(agent_is(second, "rea", state="ready"))
    # ... and a third start finds what the second one saved.
    await second.stop()
    third = await make_city(instance_name=name)
    status, me = await _me(third, http, tokens["rea"])
    assert (me["acd"]["state"], me["acd"]["pause_reason"]) == ("paused", "service restarted")
    assert third.acd is not None and third.acd.agent_view("exp")["state"] == "logged_out"


async def test_a_callback_asked_for_before_a_restart_is_still_made(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    name, trunk_port = f"test-{uuid.uuid4().hex[:10]}", free_udp_port()
    settings = {"instance_name": name, "callback_trunk": f"127.0.0.1:{trunk_port}",
                "announce_period_seconds": 60}  # fmt: skip
    first = await make_city(**settings)
    mia = await AgentAtDesk(first, http, "mia", {"lang:pl": 4, "group:waste": 4}).arrive(
        ready=False
    )
    try:
        waiting = await call_with_keys(
            first.settings.sip_port, POLISH_WASTE_THEN_CALLBACK, caller="48601999777",
            hold_seconds=20,
        )  # fmt: skip
        assert waiting.ok and waiting.hung_up_by == "pbx"
        call = await only_call(first)
        assert call["outcome"] == "callback_requested"
        assert first.acd is not None and first.acd.waiting_count() == 1
    finally:
        await mia.leave()
    await first.stop()

    second = await make_city(**settings)
    assert second.acd is not None and second.acd.waiting_count() == 1  # waits again
    info = second.acd.engine.call_info(str(call["id"]))
    assert (info.callback_number, info.language, info.group) == ("48601999777", "pl", "waste")
    assert second.acd.agent_view("mia")["state"] == "paused"  # mia never said ready
    nel = AgentAtDesk(second, http, "nel", {"lang:pl": 4, "group:waste": 4}, talk_seconds=4.0)
    async with resident_phone(trunk_port) as phone:
        await nel.arrive()
        try:
            pop = await nel.next_message("pop", timeout=20)
            assert pop["callback"] is True and pop["caller_number"] == "48601999777"
            assert pop["call_id"] == str(call["id"])  # the pop saved with the request
            assert await asyncio.wait_for(phone.wait(), timeout=40) == 0  # reached
            await eventually(agent_is(second, "nel", state="ready"))
        finally:
            await nel.leave()
    assert second.calls is not None

    async def answered() -> dict[str, Any] | None:
        assert second.calls is not None
        record = await second.calls.get_call(call["id"])
        return record if record and record["ended_at"] else None

    record = await eventually(answered)
    assert (record["outcome"], record["agent"]) == ("callback_answered", "nel")
    assert second.pool is not None

    async def nothing_pending() -> bool:
        assert second.pool is not None
        return await second.pool.fetchval("SELECT count(*) FROM pending_callbacks") == 0

    await eventually(nothing_pending)
