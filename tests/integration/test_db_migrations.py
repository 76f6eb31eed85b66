"""The migration runner, pool codecs and template databases against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from db.migrations import applied_migrations, apply_migrations
from db.pool import create_pool, wait_for_server
from tests.support.postgres import TemplateDatabases, test_server_dsn

pytestmark = pytest.mark.integration

CASES_V1 = """
CREATE TABLE IF NOT EXISTS t_cases (
    id      bigserial PRIMARY KEY,
    title   text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'
);
INSERT INTO t_log (what) VALUES ('cases');
"""
CASES_V2 = CASES_V1 + "ALTER TABLE t_cases ADD COLUMN IF NOT EXISTS lat double precision;\n"
# Applied first; records every application so "applied once" is visible in the data.
LOG_SQL = "CREATE TABLE IF NOT EXISTS t_log (n bigserial PRIMARY KEY, what text NOT NULL);\n"
ACD_SQL = """
CREATE TABLE IF NOT EXISTS t_queue (case_id bigint REFERENCES t_cases (id));
INSERT INTO t_log (what) VALUES ('acd');
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def templates() -> AsyncIterator[TemplateDatabases]:
    tpl = TemplateDatabases(await test_server_dsn(), [])
    yield tpl
    await tpl.drop_all()


@pytest.fixture
def schema(tmp_path: Path) -> list[tuple[str, Path]]:
    files = {"log": LOG_SQL, "cases": CASES_V1, "acd": ACD_SQL}
    out = []
    for name, sql in files.items():
        path = tmp_path / name / "schema.sql"
        path.parent.mkdir()
        path.write_text(sql)
        out.append((name, path))
    return out


@pytest_asyncio.fixture
async def pool(templates: TemplateDatabases) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(await templates.fresh(), max_size=4)
    yield p
    await p.close()


async def test_migrations_are_applied_once_in_order(
    pool: asyncpg.Pool, schema: list[tuple[str, Path]]
) -> None:
    assert await apply_migrations(pool, schema) == ["log", "cases", "acd"]
    assert await apply_migrations(pool, schema) == []
    assert await pool.fetchval("SELECT array_agg(what ORDER BY n) FROM t_log") == ["cases", "acd"]
    recorded = await applied_migrations(pool)
    assert set(recorded) == {"log", "cases", "acd"}


async def test_changed_file_is_applied_again_and_checksum_updated(
    pool: asyncpg.Pool, schema: list[tuple[str, Path]]
) -> None:
    await apply_migrations(pool, schema)
    before = await applied_migrations(pool)
    schema[1][1].write_text(CASES_V2)
    assert await apply_migrations(pool, schema) == ["cases"]
    after = await applied_migrations(pool)
    assert after["cases"] != before["cases"]
    assert after["acd"] == before["acd"]
    cols = await pool.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 't_cases'"
    )
    assert "lat" in {r["column_name"] for r in cols}
    assert await apply_migrations(pool, schema) == []


async def test_failing_file_rolls_back_and_is_not_recorded(
    pool: asyncpg.Pool, schema: list[tuple[str, Path]]
) -> None:
    schema[2][1].write_text(ACD_SQL + "SELECT * FROM no_such_table;\n")
    with pytest.raises(asyncpg.UndefinedTableError):
        await apply_migrations(pool, schema)
    assert set(await applied_migrations(pool)) == {"log", "cases"}
    assert await pool.fetchval("SELECT to_regclass('t_queue')") is None
    # The advisory lock was released: a fixed file goes through.
    schema[2][1].write_text(ACD_SQL)
    assert await apply_migrations(pool, schema) == ["acd"]


async def test_concurrent_apply_from_two_pools_does_not_fail(
    templates: TemplateDatabases, schema: list[tuple[str, Path]]
) -> None:
    dsn = await templates.fresh()
    pools = [await create_pool(dsn, max_size=2) for _ in range(2)]
    try:
        for _ in range(3):  # a few rounds: the race window is small
            results = await asyncio.gather(*(apply_migrations(p, schema) for p in pools))
            assert sorted(results, key=len) in ([[], ["log", "cases", "acd"]], [[], []])
        assert await pools[0].fetchval("SELECT count(*) FROM t_log") == 2
    finally:
        for p in pools:
            await p.close()


async def test_jsonb_and_json_round_trip(pool: asyncpg.Pool) -> None:
    detail = {"street": "Marszałkowska 1", "lamp": 42, "tags": ["light", None], "ok": True}
    await pool.execute("CREATE TABLE j (a jsonb, b json)")
    await pool.execute("INSERT INTO j VALUES ($1, $2)", detail, [1, 2.5, "x"])
    row = await pool.fetchrow("SELECT a, b FROM j")
    assert row is not None
    assert row["a"] == detail
    assert row["b"] == [1, 2.5, "x"]
    assert await pool.fetchval("SELECT $1::jsonb ->> 'street'", detail) == "Marszałkowska 1"


async def test_fresh_databases_are_independent(templates: TemplateDatabases) -> None:
    a, b = await templates.fresh(), await templates.fresh()
    assert a != b
    pa, pb = await create_pool(a, max_size=1), await create_pool(b, max_size=1)
    try:
        await pa.execute("CREATE TABLE only_in_a (x int)")
        assert await pb.fetchval("SELECT to_regclass('only_in_a')") is None
    finally:
        await pa.close()
        await pb.close()


async def test_template_is_migrated_and_copies_are_dropped(tmp_path: Path) -> None:
    admin = await test_server_dsn()
    schema = tmp_path / "schema.sql"
    schema.write_text("CREATE TABLE IF NOT EXISTS t_tpl (x int);")
    tpl = TemplateDatabases(admin, [("tpl", schema)])
    try:
        fresh = await tpl.fresh()
        conn = await asyncpg.connect(fresh)
        try:
            assert await conn.fetchval("SELECT to_regclass('t_tpl') IS NOT NULL")
            assert await applied_migrations(conn) == {
                "tpl": await conn.fetchval("SELECT checksum FROM schema_migrations")
            }
        finally:
            await conn.close()
        leaked = await asyncpg.connect(fresh)  # drop_all must cope with a leaked session
    finally:
        await tpl.drop_all()
    await leaked.close()
    conn = await asyncpg.connect(admin)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname LIKE $1", f"%{tpl.run_id}%"
        )
    finally:
        await conn.close()
    assert left == 0


async def test_wait_for_server_times_out_on_a_closed_port() -> None:
    with pytest.raises(TimeoutError, match="not reachable"):
        await wait_for_server("postgresql://postgres@127.0.0.1:1/postgres", timeout=0.3)


async def test_wait_for_server_returns_when_up() -> None:
    await wait_for_server(await test_server_dsn(), timeout=5)
