"""The PostgreSQL link: connection pool, DSN helpers, and the clock rows are stamped with."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# Errors that mean "not up yet, try again"; anything else (bad password, no such database)
# will not fix itself by waiting.
_TRANSIENT_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
)


# Errors that mean "the database is down, restarting or not answering", at any time (not only
# when connecting): the request may be retried later, the data is not at fault. Call records
# keep such facts in their journal; routes answer 503.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shut down, crashed, starting, cancelled
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing"
)


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached now (as opposed to bad data)."""
    return isinstance(exc, DATABASE_UNAVAILABLE)


# --------------------------------------------------------------------------- DSNs

_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ``***``, safe to log. Never raises."""
    try:
        if "://" not in dsn:
            # libpq key=value form: "host=... user=... password=secret"
            return _KV_PASSWORD.sub(r"\1***", dsn)
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                netloc = f"{user}:***@{hostinfo}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() == "password" for k, _ in pairs):
                query = urlencode(
                    [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*/"
                )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        # A DSN we cannot parse might still hold a password: show nothing of it.
        return "<unparsable dsn>"


def with_database(dsn: str, database: str) -> str:
    """The same URI-form DSN pointing at another database."""
    parts = urlsplit(dsn)
    if not parts.scheme:
        raise ValueError("expected a postgresql:// URI")
    return urlunsplit(
        (parts.scheme, parts.netloc, "/" + quote(database, safe=""), parts.query, parts.fragment)
    )


# --------------------------------------------------------------------------- pool


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Text codecs: asyncpg hands json/jsonb over as str by default.
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float | None = 30.0,
    connect_timeout: float = 10.0,
) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb to Python objects (and encode them back)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        timeout=connect_timeout,
        init=_init_connection,
    )
    assert pool is not None  # only None when awaited lazily, which we never do
    log.info("db.pool_created", dsn=redact(dsn), min_size=min_size, max_size=max_size)
    return pool


# The deadline spans many attempts, each with its own connect timeout, hence the parameter.
async def wait_for_server(dsn: str, timeout: float) -> None:
    """Return once the server accepts a connection; raise TimeoutError after ``timeout`` s.

    Connection refused / starting up are retried; authentication or missing-database errors
    are raised at once, since waiting will not fix them.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: BaseException | None = None
    delay = 0.05
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(
                f"PostgreSQL at {redact(dsn)} not reachable within {timeout:g} s: {last!r}"
            )
        try:
            conn = await asyncpg.connect(dsn, timeout=max(0.1, min(remaining, 5.0)))
        except _TRANSIENT_CONNECT_ERRORS as exc:
            last = exc
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, 0.5)
            continue
        await conn.close()
        return


def utcnow() -> datetime:
    """Now, timezone-aware in UTC: every timestamp stored in the database is one of these."""
    return datetime.now(UTC)
