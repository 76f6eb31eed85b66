"""Log-in throttling over HTTP: parallel guesses are cut off while they are checked, a guesser
on the floor's address does not lock out the agents working there, and no password is hashed
on the event loop (unknown names included, at the same cost as known ones)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from agent_client import accounts
from agent_client.accounts import AgentDirectory
from cases.catalogue import load_catalogue
from cityline.wiring import CityLine
from db.pool import create_pool
from tests.support.desk import DEFAULT_PASSWORD, base_url, create_account

pytestmark = pytest.mark.integration


async def _log_in(http: aiohttp.ClientSession, city: CityLine, name: str, password: str) -> int:
    async with http.post(
        f"{base_url(city)}/api/login", json={"name": name, "password": password}
    ) as response:
        if response.status == 429:
            assert int(response.headers["Retry-After"]) >= 1
        return response.status


async def test_forty_parallel_guesses_get_five_checks(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "ola")
    statuses = await asyncio.gather(
        *(_log_in(http, city, "ola", f"guess number {n}") for n in range(40))
    )
    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == 35, statuses


async def test_a_guesser_on_the_floors_address_does_not_lock_out_its_agents(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    # Every request of this test comes from 127.0.0.1: the contact centre's one NAT address.
    await create_account(city, http, "ola")
    await create_account(city, http, "jan")
    assert await _log_in(http, city, "ola", DEFAULT_PASSWORD) == 200  # ola works here
    for n in range(20):
        assert await _log_in(http, city, f"guess{n}", "password1") == 401
    assert await _log_in(http, city, "guess-more", "password1") == 429  # spraying stops
    assert await _log_in(http, city, "jan", "password1") == 429  # so do guesses at others
    assert await _log_in(http, city, "ola", DEFAULT_PASSWORD) == 200  # ola is not locked out


# -- hashing, against PostgreSQL only -------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def directory(fresh_dsn: str) -> AsyncIterator[AgentDirectory]:
    pool = await create_pool(fresh_dsn, max_size=2)
    try:
        yield AgentDirectory(pool, load_catalogue())
    finally:
        await pool.close()


async def test_passwords_are_checked_off_the_loop_at_one_cost_known_or_not(
    directory: AgentDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    await directory.create(name="ola", password=DEFAULT_PASSWORD, skills={"lang:pl": 3})
    await directory.load()  # as at start-up
    real_scrypt = accounts.hashlib.scrypt
    calls: list[dict[str, Any]] = []

    def recording_scrypt(password: bytes, **params: Any) -> bytes:
        on_loop = threading.current_thread() is threading.main_thread()
        calls.append({"on_loop": on_loop, **{k: params[k] for k in ("n", "r", "p")}})
        return real_scrypt(password, **params)

    monkeypatch.setattr(accounts.hashlib, "scrypt", recording_scrypt)
    costs = []
    for name in ("ola", "nobody", "ola", "nobody-else"):
        calls.clear()
        assert await directory.check_password(name, "a wrong password") is None
        assert all(not call["on_loop"] for call in calls), (name, calls)
        costs.append([(c["n"], c["r"], c["p"]) for c in calls])
    assert await directory.check_password("ola", DEFAULT_PASSWORD) is not None
    # One scrypt of the same cost for a known and an unknown name: no timing tells them apart.
    assert costs[0] == costs[1] == costs[2] == costs[3] == [(2**14, 8, 1)]
