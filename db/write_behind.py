"""Written behind: the newest value of each key, written to PostgreSQL by one task.

Callers never wait for the database: put() only remembers the value and wakes the writer.
While PostgreSQL is away the writer retries (newer values win over a batch that failed), and
stop() writes what is left, once and briefly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg
import structlog

log = structlog.get_logger(__name__)

K = TypeVar("K")
V = TypeVar("V")
# What a write may fail with and is worth retrying: the database is away or slow.
RETRIED = (OSError, asyncpg.PostgresError, TimeoutError)


class WriteBehind(Generic[K, V]):
    def __init__(
        self,
        name: str,
        write: Callable[[dict[K, V]], Awaitable[None]],
        *,
        retry_seconds: float = 1.0,
    ) -> None:
        self._name = name
        self._write = write
        self._retry_seconds = retry_seconds
        self._pending: dict[K, V] = {}
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    def put(self, key: K, value: V) -> None:
        self._pending[key] = value
        self._wake.set()

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name=self._name)

    async def stop(self) -> None:
        """Stop the writer, then write what is still pending (once, briefly)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        try:
            await asyncio.wait_for(self._write_pending(), timeout=5)
        except RETRIED as exc:
            log.error("write_behind_not_saved", writer=self._name,
                      keys=sorted(map(str, self._pending)), error=repr(exc))  # fmt: skip

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._write_pending()
            except RETRIED as exc:
                log.warning("write_behind_failed", writer=self._name, error=repr(exc))
                self._wake.set()
                await asyncio.sleep(self._retry_seconds)

    async def _write_pending(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await self._write(batch)
        except BaseException:
            self._pending = {**batch, **self._pending}  # newer values win over the batch
            raise
