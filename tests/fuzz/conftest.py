"""One CityLine per fuzz module: thousands of requests against one running service (its own
Asterisk, a fresh database), not one service per test."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from cityline.wiring import CityLine
from tests.conftest import city_settings
from tests.support.asterisk import asterisk_location
from tests.support.postgres import TemplateDatabases


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def module_city(
    template_databases: TemplateDatabases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CityLine]:
    asterisk_location()  # skips with the reason when no Asterisk exists at all
    service = CityLine(
        city_settings(tmp_path_factory.mktemp("fuzz-city"), await template_databases.fresh())
    )
    try:
        await service.start()
        yield service
    finally:
        await service.stop()
        if service.asterisk is not None:
            shutil.rmtree(service.asterisk.run_dir, ignore_errors=True)
