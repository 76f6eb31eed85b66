"""PostgreSQL for the test suite: one server per session, a fresh database per test.

The server is, in order: ``CITYLINE_TEST_DSN`` if set; the local server on 127.0.0.1:5432 if
it answers within 1 s; otherwise one embedded server in a temporary directory, started once
and stopped by ``stop_test_server()`` (or at interpreter exit as a fallback).

Databases are cloned from a migrated template (``CREATE DATABASE x TEMPLATE tpl``), which
takes milliseconds where running every schema file per test would not.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import structlog

from db.embedded import EmbeddedPostgres
from db.embedded_host import free_port, processes_in
from db.migrations import apply_migrations
from db.pool import create_pool, redact, with_database

log = structlog.get_logger(__name__)

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ENV_DSN = "CITYLINE_TEST_DSN"

# Durability is pointless for throw-away test data; these make the embedded server faster.
TEST_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class _LoopLock:
    """An asyncio.Lock re-made per event loop: tests may run on function- or session-scoped
    loops, and a Lock used from a second loop raises."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    def get(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._lock = loop, asyncio.Lock()
        return self._lock


_server: EmbeddedPostgres | None = None
_server_tmp: Path | None = None
_server_lock: _LoopLock | None = None
_server_dsn: str | None = None


async def server_answers(dsn: str, within: float = 1.0) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=within)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    await conn.close()
    return True


def _make_server_dir() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="cityline-pg-"))
    # The server may run as another user (we may be root): let it reach its data dir.
    tmp.chmod(0o755)
    return tmp


async def start_embedded_server() -> EmbeddedPostgres:
    """A throw-away embedded server in a new temporary directory (removed on stop)."""
    global _server, _server_tmp
    tmp = await asyncio.to_thread(_make_server_dir)
    pg = EmbeddedPostgres(tmp / "data", settings=TEST_SERVER_SETTINGS)
    try:
        await pg.start()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _server, _server_tmp = pg, tmp
    atexit.register(_stop_at_exit)
    return pg


async def test_server_dsn() -> str:
    """Admin DSN of the session's server (see the module docstring for the order tried)."""
    global _server_lock, _server_dsn
    if _server_dsn is not None:
        return _server_dsn
    if _server_lock is None:
        _server_lock = _LoopLock()
    async with _server_lock.get():
        if _server_dsn is None:
            if env := os.environ.get(ENV_DSN):
                _server_dsn = env
                source = "env"
            elif await server_answers(LOCAL_DSN, within=1.0):
                _server_dsn = LOCAL_DSN
                source = "local"
            else:
                _server_dsn = (await start_embedded_server()).admin_dsn
                source = "embedded"
            log.info("test_pg.server", dsn=redact(_server_dsn), source=source)
    return _server_dsn


test_server_dsn.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


async def stop_test_server() -> None:
    """Stop the embedded server if this session started one; a no-op otherwise."""
    global _server, _server_tmp, _server_dsn, _server_lock
    pg, tmp = _server, _server_tmp
    _server = _server_tmp = _server_dsn = _server_lock = None
    if pg is not None:
        await pg.stop()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    atexit.unregister(_stop_at_exit)


def _stop_at_exit() -> None:
    # Fallback when the suite forgets stop_test_server(): never leave a server behind.
    if _server is not None:
        _server.stop_sync()
    if _server_tmp is not None:
        shutil.rmtree(_server_tmp, ignore_errors=True)


class TemplateDatabases:
    """A migrated template database, and fresh copies of it on demand.

    Names carry a random run id (``cityline_tpl_<run>``, ``cityline_t_<run>_<n>``), so runs
    sharing one server never collide. Only the admin DSN is kept, not a pool, so the object
    works from any event loop.
    """

    def __init__(
        self,
        admin_dsn: str,
        schema_files: Sequence[tuple[str, Path]],
        *,
        prefix: str = "cityline",
    ) -> None:
        self.admin_dsn = admin_dsn
        self.schema_files = list(schema_files)
        self.run_id = secrets.token_hex(4)
        self.template = f"{prefix}_tpl_{self.run_id}"
        self._prefix = f"{prefix}_t_{self.run_id}_"
        self._count = 0
        self._created: list[str] = []
        self._template_ready = False
        self._lock = _LoopLock()

    async def create_template(self) -> str:
        """Create and migrate the template once; return its name."""
        if self._template_ready:
            return self.template
        async with self._lock.get():
            if self._template_ready:
                return self.template
            await self._admin(f'CREATE DATABASE "{self.template}"')
            self._created.append(self.template)
            pool = await create_pool(with_database(self.admin_dsn, self.template), max_size=1)
            try:
                await apply_migrations(pool, self.schema_files)
            finally:
                await pool.close()
            # No connections allowed: a stray one would make CREATE DATABASE ... TEMPLATE fail.
            await self._admin(
                f'ALTER DATABASE "{self.template}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false'
            )
            self._template_ready = True
            log.info("test_pg.template_ready", template=self.template)
        return self.template

    async def fresh(self) -> str:
        """DSN of a new database cloned from the template."""
        await self.create_template()
        self._count += 1
        name = f"{self._prefix}{self._count}"
        self._created.append(name)
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return with_database(self.admin_dsn, name)

    async def drop_all(self) -> None:
        """Drop every database this object created, template last; kicks leftover sessions."""
        created, self._created = self._created, []
        conn = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            for name in reversed(created):
                if name == self.template:
                    await conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false')
                # WITH (FORCE): a test that leaked a connection must not leak its database.
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self._template_ready = False
        log.info("test_pg.dropped", count=len(created))

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


class OwnServer:
    """A PostgreSQL server for one fault test alone, so freezing or stopping it touches no
    other test (the session's server may be shared): ``await OwnServer.start()``, then
    freeze()/thaw() (SIGSTOP/SIGCONT to every process of the server: the postmaster and each
    connection's backend), stop(), start_again() (same port, same data), kill() (-9, the
    postmaster only, as a crash), close()."""

    def __init__(self, server: EmbeddedPostgres, tmp: Path) -> None:
        self.server = server
        self.tmp = tmp
        self._frozen: list[int] = []

    @classmethod
    async def start(cls) -> OwnServer:
        tmp = await asyncio.to_thread(_make_server_dir)
        # A fixed port: started again, it listens where the services' DSNs point.
        server = EmbeddedPostgres(tmp / "data", port=free_port(), settings=TEST_SERVER_SETTINGS)
        await server.start()
        return cls(server, tmp)

    @property
    def dsn(self) -> str:
        return self.server.dsn

    def processes(self) -> list[int]:
        return processes_in(self.server.data_dir)

    def freeze(self) -> None:
        self._frozen = self.processes()
        assert self._frozen, "no server process to freeze"
        for pid in self._frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen = []

    async def stop(self) -> None:
        await self.server.stop()

    async def start_again(self) -> None:
        await self.server.start()  # the port it had: the services' DSNs still point there

    async def close(self) -> None:
        self.thaw()
        with contextlib.suppress(Exception):
            await self.server.stop()
        await asyncio.to_thread(shutil.rmtree, self.tmp, True)
