"""Shared fixtures: one PostgreSQL server per session, a fresh migrated database per test,
and a whole CityLine (its own Asterisk, FastAGI, HTTP) per end-to-end test."""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from cityline.config import Settings
from cityline.logs import configure_logging
from cityline.wiring import SCHEMA_FILES, CityLine
from tests.support.asterisk import asterisk_location, free_port
from tests.support.postgres import TemplateDatabases, stop_test_server, test_server_dsn


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("INFO", json=True)


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_databases() -> AsyncIterator[TemplateDatabases]:
    templates = TemplateDatabases(await test_server_dsn(), SCHEMA_FILES)
    await templates.create_template()
    yield templates
    await templates.drop_all()
    await stop_test_server()


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_dsn(template_databases: TemplateDatabases) -> str:
    return await template_databases.fresh()


def city_settings(tmp_path: Path, dsn: str, **overrides: object) -> Settings:
    rtp_start = random.randrange(30000, 39000, 2)
    values: dict[str, object] = {
        "state_dir": tmp_path / "state",
        "recordings_dir": tmp_path / "recordings",
        "database_dsn": dsn,
        "instance_name": f"test-{uuid.uuid4().hex[:10]}",
        "http_port": 0,
        "agi_port": free_port(),
        "sip_port": free_port(udp_too=True),
        "ami_port": free_port(),
        "asterisk_http_port": free_port(),
        "rtp_start": rtp_start,
        "rtp_end": rtp_start + 400,
        "ring_timeout_seconds": 6,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


CityFactory = Callable[..., Awaitable[CityLine]]


@pytest_asyncio.fixture(loop_scope="session")
async def make_city(tmp_path: Path, fresh_dsn: str) -> AsyncIterator[CityFactory]:
    """Start a CityLine (own Asterisk) with settings overridden; all are stopped after."""
    asterisk_location()  # skips with the reason when no Asterisk exists at all
    started: list[CityLine] = []

    async def make(**overrides: object) -> CityLine:
        service = CityLine(city_settings(tmp_path, fresh_dsn, **overrides))
        started.append(service)
        await service.start()
        return service

    yield make
    for service in started:
        await service.stop()
        if service.asterisk is not None:
            shutil.rmtree(service.asterisk.run_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session")
async def city(make_city: CityFactory) -> CityLine:
    """A running CityLine with its own Asterisk; stopped and its Asterisk dir removed after."""
    return await make_city()
