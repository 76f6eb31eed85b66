"""The service catalogue in PostgreSQL (cases/services.sql, cases.services_store) and the
Open311 read endpoints over it (cases.open311), against a fresh migrated database per test."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web

from cases import open311
from cases.services import (
    ServiceCatalogue,
    load_services,
    to_open311,
    to_open311_definition,
)
from cases.services_store import get_service, list_services, row_to_service, sync_services
from db.migrations import apply_migrations
from db.pool import create_pool
from tests.support.postgres import TemplateDatabases, test_server_dsn
from web.app import create_app

pytestmark = pytest.mark.integration

SCHEMA = [
    ("cases", Path("cases/schema.sql")),
    ("agent_client", Path("agent_client/schema.sql")),
    ("services", Path("cases/services.sql")),
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services_templates() -> AsyncIterator[TemplateDatabases]:
    templates = TemplateDatabases(await test_server_dsn(), SCHEMA)
    await templates.create_template()
    yield templates
    await templates.drop_all()


@pytest_asyncio.fixture(loop_scope="session")
async def pool(services_templates: TemplateDatabases) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(await services_templates.fresh(), max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def catalogue() -> ServiceCatalogue:
    return load_services()


def without(catalogue: ServiceCatalogue, *codes: str) -> ServiceCatalogue:
    kept = {c: s for c, s in catalogue.services.items() if c not in codes}
    return ServiceCatalogue(kept, catalogue.keypad)


@pytest_asyncio.fixture(loop_scope="session")
async def client(pool: asyncpg.Pool) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    app = create_app()  # the service's own app: its errors leave through its middleware
    open311.setup(app, pool=pool)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_migration_is_idempotent(pool: asyncpg.Pool) -> None:
    # The file is applied again whenever it changes, on a database that already has the table.
    sql = Path("cases/services.sql").read_text(encoding="utf-8")
    await pool.execute(sql)
    await pool.execute(sql)
    assert await apply_migrations(pool, SCHEMA) == []


async def test_sync_stores_every_service_round_trip(
    pool: asyncpg.Pool, catalogue: ServiceCatalogue
) -> None:
    assert await sync_services(pool, catalogue) == len(catalogue)
    rows = await list_services(pool)
    assert {r["service_code"] for r in rows} == set(catalogue.services)
    assert all(r["active"] for r in rows)
    for row in rows:
        assert row_to_service(row) == catalogue.services[row["service_code"]]


async def test_unchanged_sync_leaves_rows_alone(
    pool: asyncpg.Pool, catalogue: ServiceCatalogue
) -> None:
    await sync_services(pool, catalogue)
    before = {r["service_code"]: r["updated_at"] for r in await list_services(pool)}
    assert await sync_services(pool, catalogue) == len(catalogue)
    after = {r["service_code"]: r["updated_at"] for r in await list_services(pool)}
    assert after == before


async def test_changed_service_is_updated(pool: asyncpg.Pool, catalogue: ServiceCatalogue) -> None:
    await sync_services(pool, catalogue)
    code = next(iter(catalogue.services))
    old = catalogue.services[code]
    renamed = dataclasses.replace(
        old, name={**old.name, "en": "Renamed"}, response_hours=old.response_hours + 1
    )
    changed = ServiceCatalogue({**catalogue.services, code: renamed}, catalogue.keypad)
    before = await get_service(pool, code)
    await sync_services(pool, changed)
    row = await get_service(pool, code)
    assert before is not None and row is not None
    assert row_to_service(row) == renamed
    assert row["updated_at"] > before["updated_at"]


async def test_removed_service_is_deactivated_not_deleted(
    pool: asyncpg.Pool, catalogue: ServiceCatalogue
) -> None:
    await sync_services(pool, catalogue)
    gone = next(iter(catalogue.services))
    assert await sync_services(pool, without(catalogue, gone)) == len(catalogue) - 1

    active = {r["service_code"] for r in await list_services(pool)}
    everything = {r["service_code"]: r for r in await list_services(pool, active_only=False)}
    assert gone not in active
    assert gone in everything and not everything[gone]["active"]
    assert len(everything) == len(catalogue)
    assert await get_service(pool, gone) is None
    assert await get_service(pool, gone, active_only=False) is not None

    # Back in the file: active again.
    await sync_services(pool, catalogue)
    assert gone in {r["service_code"] for r in await list_services(pool)}


async def test_failed_sync_changes_nothing(pool: asyncpg.Pool, catalogue: ServiceCatalogue) -> None:
    await sync_services(pool, catalogue)
    code = next(iter(catalogue.services))
    broken = dataclasses.replace(catalogue.services[code], response_hours=0)  # violates CHECK
    bad = ServiceCatalogue({code: broken}, catalogue.keypad)
    with pytest.raises(asyncpg.CheckViolationError):
        await sync_services(pool, bad)
    # One transaction: the deactivation of every other service did not happen either.
    assert len(await list_services(pool)) == len(catalogue)


@pytest.mark.parametrize("language", ["pl", "en"])
async def test_open311_services_list(
    pool: asyncpg.Pool,
    catalogue: ServiceCatalogue,
    client: tuple[aiohttp.ClientSession, str],
    language: str,
) -> None:
    session, base = client
    await sync_services(pool, catalogue)
    async with session.get(f"{base}/open311/v2/services.json", params={"lang": language}) as r:
        assert r.status == 200
        body = await r.json()
    assert len(body) == len(catalogue)
    by_code = {s["service_code"]: s for s in body}
    for service in catalogue:
        assert by_code[service.code] == to_open311(service, language)


async def test_open311_list_hides_inactive_and_defaults_to_polish(
    pool: asyncpg.Pool, catalogue: ServiceCatalogue, client: tuple[aiohttp.ClientSession, str]
) -> None:
    session, base = client
    gone = next(iter(catalogue.services))
    await sync_services(pool, without(catalogue, gone))
    async with session.get(f"{base}/open311/v2/services.json") as r:
        body = await r.json()
    codes = {s["service_code"] for s in body}
    assert gone not in codes and len(codes) == len(catalogue) - 1
    some = catalogue.services[body[0]["service_code"]]
    assert body[0]["service_name"] == some.name["pl"]


async def test_open311_definition(
    pool: asyncpg.Pool, catalogue: ServiceCatalogue, client: tuple[aiohttp.ClientSession, str]
) -> None:
    session, base = client
    await sync_services(pool, catalogue)
    service = next(s for s in catalogue if any(a.values for a in s.attributes))
    for language in ("pl", "en"):
        url = f"{base}/open311/v2/services/{service.code}.json"
        async with session.get(url, params={"lang": language}) as r:
            assert r.status == 200
            assert await r.json() == to_open311_definition(service, language)


async def test_open311_errors(
    pool: asyncpg.Pool, catalogue: ServiceCatalogue, client: tuple[aiohttp.ClientSession, str]
) -> None:
    session, base = client
    gone = next(iter(catalogue.services))
    await sync_services(pool, without(catalogue, gone))
    for code in ("no_such_service", gone):
        async with session.get(f"{base}/open311/v2/services/{code}.json") as r:
            assert r.status == 404
            assert r.content_type == "application/json"
            assert code in (await r.json())["error"]
    async with session.get(f"{base}/open311/v2/services.json", params={"lang": "de"}) as r:
        assert r.status == 400
        assert "lang" in (await r.json())["error"]
