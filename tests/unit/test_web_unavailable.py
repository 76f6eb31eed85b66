"""The one JSON-error middleware: a database that is down or not answering is a 503 with a clear
message and Retry-After, never a 500; other failures stay 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from db.pool import DATABASE_UNAVAILABLE
from web.app import create_app
from web.kit import map_unavailable

FAILURES: dict[str, BaseException] = {
    "refused": ConnectionRefusedError(111, "Connect call failed"),
    "timeout": TimeoutError(),
    "closed": asyncpg.ConnectionDoesNotExistError("connection was closed"),
    "shutdown": asyncpg.AdminShutdownError("terminating connection"),
    "bug": RuntimeError("a programming error"),
}


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = create_app()
    map_unavailable(app, DATABASE_UNAVAILABLE, "the database is not answering just now")

    async def fail(request: web.Request) -> web.Response:
        raise FAILURES[request.match_info["how"]]

    app.router.add_get("/api/fail/{how}", fail)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.mark.parametrize("how", ["refused", "timeout", "closed", "shutdown"])
async def test_database_trouble_is_a_503_with_a_clear_message(
    client: TestClient[web.Request, web.Application], how: str
) -> None:
    response = await client.get(f"/api/fail/{how}")
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    body = await response.json()
    assert body["error_id"] == "unavailable"
    assert body["error"] == "the database is not answering just now"


async def test_anything_else_is_still_a_logged_500(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/api/fail/bug")
    assert response.status == 500
    assert (await response.json())["error_id"] == "internal"
