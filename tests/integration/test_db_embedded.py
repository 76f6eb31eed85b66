"""The embedded server: starts from an empty directory (as root too), keeps its data, stops
only what it started."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from db.embedded import EmbeddedPostgres
from db.embedded_host import EmbeddedPostgresError, free_port, pid_alive
from db.migrations import apply_migrations
from db.pool import create_pool, redact
from tests.support import postgres as support

pytestmark = pytest.mark.integration


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not tmp_path: pytest makes /tmp/pytest-of-root 0700, which the server's user cannot enter.
    d = Path(tempfile.mkdtemp(prefix="cityline-test-pg-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def _alive(pid: int) -> bool:
    return pid_alive(pid)


async def test_starts_from_empty_dir_keeps_data_and_stops(state_dir: Path, tmp_path: Path) -> None:
    data = state_dir / "pg"
    schema = tmp_path / "schema.sql"
    schema.write_text("CREATE TABLE IF NOT EXISTS t_keep (x jsonb);")

    async with EmbeddedPostgres(data, database="cityline") as pg:
        assert pg.dsn.startswith("postgresql://postgres:")
        assert "@127.0.0.1:" in pg.dsn and pg.dsn.endswith("/cityline")
        assert "***" in redact(pg.dsn)
        assert pg.pid is not None
        first_pid = pg.pid
        if os.geteuid() == 0:
            # The point of the exercise: PostgreSQL refuses root, so it must run as another user.
            assert _uid_of(first_pid) != 0
            assert data.stat().st_uid == _uid_of(first_pid)
        assert "initdb_s" in pg.timings and pg.timings["total_s"] < 30
        pool = await create_pool(pg.dsn, max_size=2)
        try:
            assert await apply_migrations(pool, [("keep", schema)]) == ["keep"]
            await pool.execute("INSERT INTO t_keep VALUES ($1)", {"kept": True})
        finally:
            await pool.close()
    assert not _alive(first_pid)

    # Same directory again: no initdb, the data is still there.
    async with EmbeddedPostgres(data, database="cityline") as pg:
        assert "initdb_s" not in pg.timings
        pool = await create_pool(pg.dsn, max_size=1)
        try:
            assert await apply_migrations(pool, [("keep", schema)]) == []
            assert await pool.fetchval("SELECT x FROM t_keep") == {"kept": True}
        finally:
            await pool.close()


async def test_password_is_required_over_tcp(state_dir: Path) -> None:
    async with EmbeddedPostgres(state_dir / "pg") as pg:
        no_password = f"postgresql://postgres@127.0.0.1:{pg.dsn.rsplit(':', 1)[1]}"
        with pytest.raises(
            (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
        ):
            await asyncpg.connect(no_password)


async def test_second_handle_reuses_a_running_server_and_does_not_stop_it(
    state_dir: Path,
) -> None:
    async with EmbeddedPostgres(state_dir / "pg") as owner:
        other = EmbeddedPostgres(state_dir / "pg")
        assert await other.start() == owner.dsn
        assert other.pid is None
        await other.stop()
        conn = await asyncpg.connect(owner.dsn)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()


async def test_a_server_left_by_a_dead_owner_can_be_taken_over_and_stopped(
    state_dir: Path,
) -> None:
    leftover = EmbeddedPostgres(state_dir / "pg")
    await leftover.start()  # its owner then dies without stopping it
    heir = EmbeddedPostgres(state_dir / "pg", take_over_leftover=True)
    assert await heir.start() == leftover.dsn
    assert heir.pid == leftover.pid
    await heir.stop()
    with pytest.raises(OSError):
        await asyncpg.connect(leftover.dsn, timeout=3)


async def test_restarts_after_the_server_was_killed(state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir / "pg")
    await pg.start()
    assert pg.pid is not None
    os.kill(pg.pid, signal.SIGKILL)  # a crash: postmaster.pid is left behind
    again = EmbeddedPostgres(state_dir / "pg")
    async with again:
        assert again.pid is not None and again.pid != pg.pid
        conn = await asyncpg.connect(again.dsn)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()


async def test_given_port_is_used(state_dir: Path) -> None:
    port = free_port()
    async with EmbeddedPostgres(state_dir / "pg", port=port) as pg:
        assert f"@127.0.0.1:{port}/" in pg.dsn


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs a separate server user")
async def test_unreachable_data_dir_gives_a_clear_error(tmp_path: Path) -> None:
    # pytest's tmp_path lives under a 0700 root directory.
    with pytest.raises(EmbeddedPostgresError, match="cannot reach"):
        await EmbeddedPostgres(tmp_path / "pg").start()


async def test_missing_binaries_give_a_clear_error(state_dir: Path) -> None:
    with pytest.raises(EmbeddedPostgresError, match="cannot run"):
        await EmbeddedPostgres(state_dir / "pg", bin_dir=state_dir / "nope").start()


async def test_session_server_falls_back_to_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend there is neither a configured nor a local server.
    await support.stop_test_server()
    monkeypatch.delenv(support.ENV_DSN, raising=False)
    monkeypatch.setattr(support, "LOCAL_DSN", "postgresql://postgres@127.0.0.1:1/postgres")
    try:
        dsn = await support.test_server_dsn()
        assert support._server is not None
        assert dsn == support._server.admin_dsn
        assert await support.test_server_dsn() == dsn  # one server per session
        tpl = support.TemplateDatabases(dsn, [])
        try:
            conn = await asyncpg.connect(await tpl.fresh())
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
        finally:
            await tpl.drop_all()
        pid = support._server.pid
        assert pid is not None
    finally:
        await support.stop_test_server()
    assert not _alive(pid)
