"""Schema migrations: each capability ships one idempotent ``schema.sql``.

Files use ``CREATE ... IF NOT EXISTS`` and ``ALTER ... ADD COLUMN IF NOT EXISTS``. The runner
applies them in the order given, each in its own transaction, and records a checksum per file
in ``schema_migrations``; a file whose checksum changed is simply applied again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# One fixed key for the whole project: advisory locks are per database, so runs against
# different databases (a test database each) never wait for one another.
MIGRATION_LOCK_KEY = 0x0C17_11E5_C4E5  # "cityline cases", fits in a bigint

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class SchemaFile:
    name: str
    path: Path
    sql: str
    checksum: str


def checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def load_schema_files(schema_files: Sequence[tuple[str, Path]]) -> list[SchemaFile]:
    """Read every file up front so a missing one fails before the database is touched."""
    seen: set[str] = set()
    loaded: list[SchemaFile] = []
    for name, path in schema_files:
        if name in seen:
            raise ValueError(f"schema name {name!r} given twice")
        seen.add(name)
        sql = Path(path).read_text(encoding="utf-8")
        loaded.append(SchemaFile(name, Path(path), sql, checksum(sql)))
    return loaded


def plan_migrations(files: Sequence[SchemaFile], applied: Mapping[str, str]) -> list[SchemaFile]:
    """The files to apply, in the given order: new ones and those whose checksum changed."""
    return [f for f in files if applied.get(f.name) != f.checksum]


async def apply_migrations(
    pool: asyncpg.Pool,
    schema_files: Sequence[tuple[str, Path]],
    *,
    lock_timeout: float = 60.0,
) -> list[str]:
    """Apply new or changed schema files in order; return the names applied.

    Serialised by a session advisory lock, so processes starting together run one after the
    other and the later ones find nothing to do. A file must not manage its own transaction
    (no BEGIN/COMMIT, no CREATE INDEX CONCURRENTLY).
    """
    files = load_schema_files(schema_files)
    async with pool.acquire() as conn:
        started = time.monotonic()
        # timeout= cancels the wait server-side, so a stuck holder cannot hang start-up.
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY, timeout=lock_timeout)
        try:
            waited = time.monotonic() - started
            # Inside the lock: concurrent CREATE TABLE IF NOT EXISTS can still collide.
            await conn.execute(_MIGRATIONS_TABLE)
            rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
            applied = {r["name"]: r["checksum"] for r in rows}
            todo = plan_migrations(files, applied)
            for f in todo:
                t0 = time.monotonic()
                async with conn.transaction():
                    await conn.execute(f.sql)
                    await conn.execute(
                        """
                        INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)
                        ON CONFLICT (name) DO UPDATE
                            SET checksum = EXCLUDED.checksum, applied_at = now()
                        """,
                        f.name,
                        f.checksum,
                    )
                log.info(
                    "db.migration_applied",
                    name=f.name,
                    path=str(f.path),
                    checksum=f.checksum[:12],
                    reapplied=f.name in applied,
                    ms=round((time.monotonic() - t0) * 1000, 1),
                )
            log.info(
                "db.migrations_done",
                applied=[f.name for f in todo],
                up_to_date=len(files) - len(todo),
                lock_wait_ms=round(waited * 1000, 1),
            )
            return [f.name for f in todo]
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                # Do not hide the migration's own error; a dead session drops the lock anyway.
                log.warning("db.migration_unlock_failed", error=repr(exc))


async def applied_migrations(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, Any]:
    """name -> checksum of what is recorded (empty before the first run)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
    return {r["name"]: r["checksum"] for r in rows}
