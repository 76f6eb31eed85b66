"""PostgreSQL trouble while residents call: frozen, stopped, killed.

Each test runs its own PostgreSQL server (tests/support/postgres.py OwnServer), so freezing or
stopping it touches no other test. A sipp resident goes through the keypad IVR meanwhile; the
call must reach the agent as if nothing were wrong, and its record must be complete once the
database is back.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import structlog

from cityline.simulated.sipp import call_with_keys
from cityline.wiring import CityLine
from db.embedded_host import pid_alive
from tests.conftest import CityFactory
from tests.integration.test_call_flow import ENGLISH_ROADS
from tests.support.checks import eventually, only_call
from tests.support.desk import AgentAtDesk, admin_headers, base_url
from tests.support.postgres import OwnServer

pytestmark = pytest.mark.integration
log = structlog.get_logger(__name__)

# A resident who keyed their way through the IVR reaches a free agent within this long.
REACHES_AGENT_WITHIN = 15.0


@pytest_asyncio.fixture(loop_scope="session")
async def own_pg() -> AsyncIterator[OwnServer]:
    server = await OwnServer.start()
    try:
        yield server
    finally:
        await server.close()


async def call_through_ivr(city: CityLine, agent: AgentAtDesk) -> tuple[float, dict[str, Any]]:
    """A resident keys English, roads; seconds from dialling to the agent's pop, and the pop."""
    began = time.monotonic()
    caller = asyncio.create_task(
        call_with_keys(city.settings.sip_port, ENGLISH_ROADS, hold_seconds=30, timeout=90)
    )
    try:
        pop = await agent.next_message("pop", timeout=60)
    finally:
        result = await caller
    assert result.ok and result.hung_up_by == "pbx", result.errors
    return time.monotonic() - began, pop


async def complete_record(city: CityLine, agent: str) -> dict[str, Any]:
    """The test's one call, once the database has every fact of it."""
    call = await only_call(city)  # polls (bounded) until the record has an end
    assert (call["outcome"], call["agent"], call["language"]) == ("answered", agent, "en")
    assert call["service_group"] == "roads"
    for column in ("ivr_ended_at", "queued_at", "offered_at", "answered_at", "ended_at"):
        assert call[column] is not None, column
    assert call["wait_seconds"] is not None and call["answered_within_target"] is True
    assert city.calls is not None

    async def trail() -> list[str] | None:
        assert city.calls is not None
        kinds = [e["kind"] for e in await city.calls.call_events(call["id"])]
        return kinds if kinds and kinds[-1] == "ended" else None

    kinds = await eventually(trail)
    assert kinds == ["arrived", "ivr_done", "queued", "offered", "ended"]  # once each, in order
    return call


async def test_a_frozen_database_never_holds_a_call_and_the_record_is_complete_after(
    make_city: CityFactory, http: aiohttp.ClientSession, own_pg: OwnServer
) -> None:
    city = await make_city(database_dsn=own_pg.dsn)
    kim = await AgentAtDesk(city, http, "kim", {"lang:en": 3, "group:roads": 3}).arrive()
    try:
        own_pg.freeze()
        took, pop = await call_through_ivr(city, kim)
        log.info("frozen_database_call", seconds_to_agent=round(took, 1))
        # Every key counted (not lost while the service waited on the database).
        assert (pop["language"], pop["service_group"]) == ("en", "roads")
        assert pop["earlier_cases"] == []  # the history lookup gave up, the call did not
        assert took < REACHES_AGENT_WITHIN, f"the resident waited {took:.1f} s for an agent"
        assert city.records is not None and city.records.backlog > 0  # held for the database
        # A route that needs the frozen database answers 503 in bounded time, not 500.
        began = time.monotonic()
        login = {"name": "kim", "password": kim.password}
        timeout = aiohttp.ClientTimeout(total=30)
        async with http.post(f"{base_url(city)}/api/login", json=login, timeout=timeout) as r:
            body = await r.json()
            assert r.status == 503, body
        log.info("frozen_database_login", seconds=round(time.monotonic() - began, 1))
        assert body["error_id"] == "unavailable"
        own_pg.thaw()
        await complete_record(city, "kim")
    finally:
        own_pg.thaw()
        await kim.leave()
        await city.stop()


async def test_a_stopped_database_answers_503_and_calls_still_go_through_the_ivr(
    make_city: CityFactory, http: aiohttp.ClientSession, own_pg: OwnServer
) -> None:
    city = await make_city(database_dsn=own_pg.dsn)
    lea = await AgentAtDesk(city, http, "lea", {"lang:en": 3, "group:roads": 3}).arrive()
    url = base_url(city)
    try:
        await own_pg.stop()
        login = {"name": "lea", "password": lea.password}
        async with http.post(f"{url}/api/login", json=login) as response:
            body = await response.json()
            assert response.status == 503, body
            assert response.headers.get("Retry-After") == "5"
        assert body["error_id"] == "unavailable" and "database" in body["error"]
        async with http.get(f"{url}/api/calls", headers=admin_headers(city)) as response:
            assert response.status == 503, await response.text()
        # The wallboard's live state comes from the ACD, not the database: it keeps working.
        async with http.get(f"{url}/api/wallboard", headers=admin_headers(city)) as response:
            assert response.status == 200, await response.text()

        took, pop = await call_through_ivr(city, lea)
        log.info("stopped_database_call", seconds_to_agent=round(took, 1))
        assert (pop["language"], pop["service_group"]) == ("en", "roads")
        assert took < REACHES_AGENT_WITHIN, f"the resident waited {took:.1f} s for an agent"

        await own_pg.start_again()
        await complete_record(city, "lea")
        status, me = await lea.api("GET", "/api/me")  # her session is read from the database
        assert status == 200, me
    finally:
        await lea.leave()
        await city.stop()


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest_asyncio.fixture(loop_scope="session")
async def reachable_state_dir() -> AsyncIterator[Path]:
    # The embedded server runs as an unprivileged user, which must reach its data directory.
    path = Path(tempfile.mkdtemp(prefix="cityline-dbfault-"))
    path.chmod(0o755)
    yield path
    await asyncio.to_thread(shutil.rmtree, path, True)


async def test_the_embedded_database_is_started_again_when_it_is_killed(
    make_city: CityFactory, http: aiohttp.ClientSession, reachable_state_dir: Path
) -> None:
    city = await make_city(database_dsn="", state_dir=reachable_state_dir)
    data_dir = reachable_state_dir / "postgres"
    max_ = await AgentAtDesk(city, http, "max", {"lang:en": 3, "group:roads": 3}).arrive()
    try:
        killed = postmaster_pid(data_dir)
        assert killed is not None
        os.kill(killed, signal.SIGKILL)  # a crash of the server, as kill -9 makes it
        took, pop = await call_through_ivr(city, max_)  # meanwhile, a resident calls
        assert (pop["language"], pop["service_group"]) == ("en", "roads")
        assert took < REACHES_AGENT_WITHIN, f"the resident waited {took:.1f} s for an agent"

        async def restarted() -> bool:
            pid = postmaster_pid(data_dir)
            return pid is not None and pid != killed and pid_alive(pid)

        await eventually(restarted, timeout=60)
        await complete_record(city, "max")

        status, me = await max_.api("GET", "/api/me")  # his session is read from the database
        assert status == 200, me
    finally:
        await max_.leave()
        await city.stop()
