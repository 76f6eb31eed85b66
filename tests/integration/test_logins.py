"""Logging in and out: one session per agent, a second log-in ends the first, supervisors can
log an agent out, and an abandoned log-in leaves nothing half-done."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from acd.engine import Engine
from acd.live import AcdService
from agent_client import accounts
from agent_client.accounts import Agent, AgentDirectory, session_key
from agent_client.desktops import DesktopHub
from agent_client.sessions import DeskSessions
from cases.catalogue import load_catalogue
from cityline.wiring import CityLine
from db.pool import create_pool
from tests.support.checks import agent_is, eventually
from tests.support.desk import DEFAULT_PASSWORD, admin_headers, base_url, create_account

pytestmark = pytest.mark.integration


async def _log_in(
    city: CityLine, http: aiohttp.ClientSession, name: str, password: str = DEFAULT_PASSWORD
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{base_url(city)}/api/login", json={"name": name, "password": password}
    ) as response:
        return response.status, await response.json()


async def _me(city: CityLine, http: aiohttp.ClientSession, token: str) -> tuple[int, Any]:
    async with http.get(
        f"{base_url(city)}/api/me", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.json()


async def _post(
    city: CityLine, http: aiohttp.ClientSession, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    async with http.post(
        f"{base_url(city)}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.json()


async def _sessions_of(city: CityLine, name: str) -> int:
    assert city.pool is not None
    return int(
        await city.pool.fetchval(
            "SELECT count(*) FROM agent_sessions s JOIN agents a ON a.id = s.agent_id"
            " WHERE a.name = $1",
            name,
        )
    )


def _ring(city: CityLine, agent: str, call_id: str) -> None:
    """Reserve the agent for a (pretend) waiting call: the agent's phone would be ringing."""
    assert city.acd is not None
    city.acd.set_reachable(agent, True)
    city.acd.enqueue(call_id, language="pl", group="roads")
    assert city.acd.agent_view(agent)["call_id"] == call_id


async def test_a_second_log_in_ends_the_first_and_always_returns_a_token(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "ala")
    status, first = await _log_in(city, http, "ala")
    assert status == 200
    status, second = await _log_in(city, http, "ala")  # the lock-out: 409, no token
    assert status == 200, second
    assert second["token"] != first["token"]
    assert (await _me(city, http, first["token"]))[0] == 401
    status, me = await _me(city, http, second["token"])
    assert status == 200 and me["acd"]["state"] == "paused"
    assert me["acd"]["pause_reason"] == "login"
    assert await _sessions_of(city, "ala") == 1
    status, _ = await _log_in(city, http, "ala")  # and again: never locked out
    assert status == 200 and await _sessions_of(city, "ala") == 1


async def test_a_log_in_while_ready_keeps_the_agent_logged_in_not_ready(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "bea")
    _, first = await _log_in(city, http, "bea")
    status, view = await _post(city, http, "/api/me/state", first["token"], {"state": "ready"})
    assert status == 200 and view["state"] == "ready"
    status, second = await _log_in(city, http, "bea")
    assert status == 200, second
    await eventually(agent_is(city, "bea", state="paused", pause_reason="login"))


async def test_a_log_in_during_a_call_keeps_the_call(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "cyd")
    _, first = await _log_in(city, http, "cyd")
    await _post(city, http, "/api/me/state", first["token"], {"state": "ready"})
    assert city.acd is not None
    _ring(city, "cyd", "call-cyd")
    try:
        status, second = await _log_in(city, http, "cyd")
        assert status == 200, second
        view = city.acd.agent_view("cyd")
        assert (view["state"], view["call_id"]) == ("ringing", "call-cyd")
    finally:
        city.acd.finish("call-cyd", talked=False)


async def test_the_first_desk_is_told_why_and_closed(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "dag")
    _, first = await _log_in(city, http, "dag")
    url = base_url(city).replace("http", "ws") + f"/ws/agent?token={first['token']}"
    async with http.ws_connect(url) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        status, _ = await _log_in(city, http, "dag")
        assert status == 200
        message = await ws.receive_json(timeout=5)
        while message["type"] == "state":
            message = await ws.receive_json(timeout=5)
        assert message["type"] == "session_ended"
        assert message["reason"] == "logged_in_elsewhere"
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_a_log_in_the_client_gave_up_on_leaves_a_consistent_state(
    city: CityLine, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_account(city, http, "eva")
    real_verify = accounts.verify_password

    def slow_verify(password: str, stored: str) -> bool:
        time.sleep(1.0)  # runs in a worker thread: a slow log-in
        return real_verify(password, stored)

    monkeypatch.setattr(accounts, "verify_password", slow_verify)
    with pytest.raises(TimeoutError):
        async with http.post(
            f"{base_url(city)}/api/login",
            json={"name": "eva", "password": DEFAULT_PASSWORD},
            timeout=aiohttp.ClientTimeout(total=0.3),
        ):
            pass
    # The server finishes what it started: the agent is logged in (a session nobody holds).
    await eventually(agent_is(city, "eva", state="paused", pause_reason="login"))
    await asyncio.sleep(0.2)
    monkeypatch.setattr(accounts, "verify_password", real_verify)
    status, body = await _log_in(city, http, "eva")  # the client tries again
    assert status == 200, body
    assert (await _me(city, http, body["token"]))[0] == 200
    assert await _sessions_of(city, "eva") == 1


async def test_a_supervisor_logs_an_agent_out_and_the_desk_is_told(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "fox")
    await create_account(city, http, "gil", role="supervisor")
    _, agent = await _log_in(city, http, "fox")
    _, boss = await _log_in(city, http, "gil")
    await _post(city, http, "/api/me/state", agent["token"], {"state": "ready"})
    url = base_url(city).replace("http", "ws") + f"/ws/agent?token={agent['token']}"
    async with http.ws_connect(url) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        # an agent may not log a colleague out; an unknown name is not found
        assert (await _post(city, http, "/api/agents/gil/logout", agent["token"]))[0] == 403
        assert (await _post(city, http, "/api/agents/nobody/logout", boss["token"]))[0] == 404
        status, body = await _post(city, http, "/api/agents/fox/logout", boss["token"])
        assert status == 200, body
        assert body["acd"]["state"] == "logged_out" and body["sessions_ended"] == 1
        message = await ws.receive_json(timeout=5)
        while message["type"] == "state":
            message = await ws.receive_json(timeout=5)
        assert message["type"] == "session_ended"
        assert (message["reason"], message["by"]) == ("logged_out_by_supervisor", "gil")
    assert (await _me(city, http, agent["token"]))[0] == 401
    await eventually(agent_is(city, "fox", state="logged_out"))
    status, _ = await _log_in(city, http, "fox")  # and the agent can come back
    assert status == 200


async def test_a_supervisor_cannot_log_out_an_agent_on_a_call(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "hana")
    _, agent = await _log_in(city, http, "hana")
    await _post(city, http, "/api/me/state", agent["token"], {"state": "ready"})
    assert city.acd is not None
    _ring(city, "hana", "call-hana")
    try:
        status, body = await _post(city, http, "/api/agents/hana/logout", city.admin_token)
        assert status == 409 and "call" in body["error"]
        assert (await _me(city, http, agent["token"]))[0] == 200  # nothing changed
        assert city.acd.agent_view("hana")["state"] == "ringing"
    finally:
        city.acd.finish("call-hana", talked=False)
    status, body = await _post(city, http, "/api/agents/hana/logout", city.admin_token)
    assert status == 200, body
    async with http.get(f"{base_url(city)}/api/agents", headers=admin_headers(city)) as r:
        rows = {a["name"]: a for a in await r.json()}
    assert rows["hana"]["acd"]["state"] == "logged_out"


# -- the session steps themselves, against PostgreSQL only ---------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def desk_parts(
    fresh_dsn: str,
) -> AsyncIterator[tuple[AgentDirectory, AcdService, DesktopHub]]:
    pool = await create_pool(fresh_dsn, max_size=4)
    try:
        directory = AgentDirectory(pool, load_catalogue())
        acd = AcdService(Engine())
        yield directory, acd, DesktopHub(directory)
    finally:
        await pool.close()


async def test_a_log_in_cancelled_half_way_is_finished_all_the_same(
    desk_parts: tuple[AgentDirectory, AcdService, DesktopHub],
) -> None:
    directory, acd, desktops = desk_parts
    agent = await directory.create(name="ida", password=DEFAULT_PASSWORD, skills={"lang:pl": 3})
    acd.upsert_agent("ida", agent.skills)
    sessions = DeskSessions(directory, acd, desktops)
    first = await sessions.log_in(agent)
    acd.set_ready("ida")

    release = asyncio.Event()
    real_open = directory.open_session

    async def held_open(who: Agent) -> str:
        await release.wait()
        return await real_open(who)

    directory.open_session = held_open  # type: ignore[method-assign]
    attempt = asyncio.create_task(sessions.log_in(agent))
    await asyncio.sleep(0.05)
    attempt.cancel()  # the request handler is cancelled while the session is being opened
    with pytest.raises(asyncio.CancelledError):
        await attempt
    release.set()
    await sessions.drain()
    directory.open_session = real_open  # type: ignore[method-assign]

    # Finished all the same: one new session, the old one gone, the agent logged in, not ready.
    assert await directory.agent_for_token(first) is None
    assert await directory.names_with_sessions() == {"ida"}
    view = acd.agent_view("ida")
    assert (view["state"], view["pause_reason"]) == ("paused", "login")


async def test_two_log_ins_at_once_leave_one_session_and_the_desk_follows_it(
    desk_parts: tuple[AgentDirectory, AcdService, DesktopHub],
) -> None:
    directory, acd, desktops = desk_parts
    agent = await directory.create(name="jo", password=DEFAULT_PASSWORD, skills={"lang:pl": 3})
    acd.upsert_agent("jo", agent.skills)
    sessions = DeskSessions(directory, acd, desktops)
    tokens = await asyncio.gather(*(sessions.log_in(agent) for _ in range(4)))
    live = [t for t in tokens if await directory.agent_for_token(t) is not None]
    assert len(live) == 1
    assert await _count_sessions(directory, agent.id) == 1
    # the desk that may connect is the one holding the session that survived
    assert desktops._live_session["jo"] == session_key(live[0])


async def _count_sessions(directory: AgentDirectory, agent_id: int) -> int:
    return int(
        await directory._pool.fetchval(
            "SELECT count(*) FROM agent_sessions WHERE agent_id = $1", agent_id
        )
    )
