"""The one writer of a call's row and its event trail.

Everything that learns something about a call (the resident's session, callbacks, the
fallback queue, the desk's cases, recordings found after a crash) tells it here; nothing
else writes `calls` or `call_events`. A call's service-level figures are computed here once.

Telling never waits on the database: a fact is numbered, appended to the journal on disk
(calls/journal.py) and queued in memory, and the call goes on. One writer task applies the
facts in order; while the database is down or frozen it retries with back-off, and the facts
wait in the journal, which a restart replays. Every fact is idempotent (rows by id, events by
the fact's key), so a fact applied twice is stored once. At the bound (calls/facts.py) a new
fact is refused, never waited for: it is logged in full at error level instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from calls.facts import DEFAULT_BOUND, Fact, FactKind, FactQueue, backoff, encode
from calls.journal import Journal
from calls.store import CallStore
from db.pool import database_unavailable, utcnow

log = structlog.get_logger(__name__)

# Columns an update may set; anything else is a programming error.
CALL_COLUMNS = frozenset(
    {
        "language",
        "service_group",
        "service_code",
        "transcript",
        "ivr_ended_at",
        "queued_at",
        "offered_at",
        "answered_at",
        "ended_at",
        "outcome",
        "agent",
        "offers",
        "wait_seconds",
        "answered_within_target",
        "recording_path",
    }
)

# Write the "applied through" mark at least every this many facts while draining a backlog.
_MARK_EVERY = 50


def wait_figures(wait_seconds: float, *, answered: bool, target_seconds: float) -> dict[str, Any]:
    """A queued call's wait and whether it counts as answered within the target.

    The wait runs from entering the queue to the answer, or to the hang-up of a caller
    nobody answered (who then counts against the target)."""
    wait = max(wait_seconds, 0.0)
    return {
        "wait_seconds": round(wait, 3),
        "answered_within_target": answered and wait <= target_seconds,
    }


class CallRecords:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        answer_target_seconds: float,
        journal_dir: Path,
        bound: int = DEFAULT_BOUND,
        apply_timeout: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self.target_seconds = answer_target_seconds
        self.read = CallStore(pool)
        self.journal = Journal(journal_dir)
        self.facts = FactQueue(bound=bound)
        self._apply_timeout = apply_timeout
        self._clock = clock
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._journal_failed = False
        self.database_down_since: float | None = None  # monotonic time of the first failure

    # -- life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the journal, queue what it holds beyond the database, start the writer."""
        replayed = await asyncio.to_thread(self.journal.open)
        self.facts = FactQueue(bound=self.facts.bound)
        self.facts.restore(replayed)
        if replayed.facts:
            log.warning("call_journal_replaying", facts=len(replayed.facts),
                        first=replayed.facts[0].seq, path=str(self.journal.path))  # fmt: skip
        self._writer = asyncio.create_task(self._write_forever(), name="call-records-writer")
        self._wake.set()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Apply what can be applied within the timeout; the rest stays in the journal."""
        if self._writer is not None:
            drained = await self.drained(drain_timeout)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
            if not drained:
                log.warning("call_journal_left_for_next_start", pending=len(self.facts),
                            path=str(self.journal.path))  # fmt: skip
            await self._mark_applied()
        await asyncio.to_thread(self.journal.close)

    # -- telling facts (never waits on the database) -----------------------------------------
    async def arrived(
        self, call_id: uuid.UUID, *, asterisk_uniqueid: str, caller_number: str, at: datetime
    ) -> None:
        """A call's row; a second arrival of the same call id keeps the first (no error)."""
        row = {"uniqueid": asterisk_uniqueid, "caller": caller_number, "arrived_at": at}
        self._learn("arrived", call_id, row, at=at)

    async def update(self, call_id: uuid.UUID, **fields: Any) -> None:
        unknown = set(fields) - CALL_COLUMNS
        if unknown:
            raise ValueError(f"unknown call columns {sorted(unknown)}")
        if fields:
            self._learn("update", call_id, fields)

    async def event(
        self, call_id: uuid.UUID, kind: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        self._learn("event", call_id, {"kind": kind, "detail": dict(detail or {})})

    async def event_safely(self, call_id: uuid.UUID, kind: str, **detail: Any) -> None:
        """An event whose loss must not stop the work that reports it (every event is so now)."""
        await self.event(call_id, kind, detail)

    async def handled_by(self, call_id: uuid.UUID, agent: str) -> bool:
        return await self.read.handled_by(call_id, agent)

    def wait_figures(self, wait_seconds: float, *, answered: bool) -> dict[str, Any]:
        return wait_figures(wait_seconds, answered=answered, target_seconds=self.target_seconds)

    def _learn(
        self, kind: FactKind, call_id: uuid.UUID, data: dict[str, Any], at: datetime | None = None
    ) -> None:
        fact = self.facts.admit(kind, call_id, at or self._clock(), data)
        if fact is None:
            # Never block a call: the fact goes to the log in full, to be replayed by hand.
            log.error("call_fact_refused_journal_full", bound=self.facts.bound,
                      refused=self.facts.refused, call_id=str(call_id), kind=kind,
                      fact_data=str(data))  # fmt: skip
            return
        try:
            self.journal.append(fact)
            self._journal_failed = False
        except OSError as exc:
            if not self._journal_failed:  # once per spell, not per fact
                log.error("call_journal_write_failed", path=str(self.journal.path),
                          error=repr(exc), pending=len(self.facts))  # fmt: skip
            self._journal_failed = True
        self._wake.set()

    # -- waiting for the database (reads that must see a write) -------------------------------
    async def settled(self, call_id: uuid.UUID, timeout: float) -> bool:
        """Wait until every fact told so far about this call is applied; False at the timeout."""
        return await self._until(lambda: self.facts.pending_for(call_id) == 0, timeout)

    async def drained(self, timeout: float) -> bool:
        """Wait until every fact told so far is applied; False at the timeout."""
        return await self._until(lambda: len(self.facts) == 0, timeout)

    async def _until(self, done: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0 or self._writer is None:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        return True

    @property
    def backlog(self) -> int:
        return len(self.facts)

    # -- the one writer -----------------------------------------------------------------------
    async def _write_forever(self) -> None:
        failures = 0
        since_mark = 0
        while True:
            head = self.facts.head()
            if not head:
                if since_mark:
                    await self._mark_applied()
                    since_mark = 0
                self._wake.clear()
                await self._wake.wait()
                continue
            fact = head[0]
            try:
                # asyncio.timeout, not wait_for: wait_for may swallow a cancellation (stop()).
                async with asyncio.timeout(self._apply_timeout):
                    await self._apply(fact)
            except Exception as exc:
                if database_unavailable(exc):
                    failures += 1
                    if failures == 1:
                        self.database_down_since = time.monotonic()
                        log.error("call_records_waiting_for_database", error=repr(exc),
                                  pending=len(self.facts))  # fmt: skip
                    await asyncio.sleep(backoff(failures))
                    continue
                # The fact itself cannot be stored (e.g. an event for a call with no row):
                # retrying would hold every later fact back. Logged in full, then skipped.
                log.error("call_fact_not_applicable", call_id=str(fact.call_id),
                          fact=encode(fact), error=repr(exc))  # fmt: skip
            if failures:
                down = time.monotonic() - (self.database_down_since or time.monotonic())
                log.warning("call_records_database_back", pending=len(self.facts),
                            down_seconds=round(down, 1), failures=failures)  # fmt: skip
                failures = 0
                self.database_down_since = None
            self.facts.applied(fact)
            self._progress.set()
            self._progress = asyncio.Event()
            since_mark += 1
            if since_mark >= _MARK_EVERY:
                await self._mark_applied()
                since_mark = 0

    async def _mark_applied(self) -> None:
        try:
            await asyncio.to_thread(
                self.journal.mark_applied, self.facts.applied_through,
                drained=len(self.facts) == 0,
            )  # fmt: skip
        except OSError as exc:
            log.error("call_journal_mark_failed", error=repr(exc))

    async def _apply(self, fact: Fact) -> None:
        if fact.kind == "arrived":
            await self._pool.execute(
                "INSERT INTO calls (id, asterisk_uniqueid, caller_number, arrived_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                fact.call_id, fact.data["uniqueid"], fact.data["caller"], fact.data["arrived_at"],
            )  # fmt: skip
            await self._insert_event(fact, "arrived", {"caller": fact.data["caller"]})
        elif fact.kind == "update":
            names = [name for name in fact.data if name in CALL_COLUMNS]
            if len(names) != len(fact.data):
                raise ValueError(f"unknown call columns in {sorted(fact.data)}")
            assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
            await self._pool.execute(
                f"UPDATE calls SET {assignments} WHERE id = $1",
                fact.call_id,
                *(fact.data[n] for n in names),
            )
        else:
            await self._insert_event(fact, fact.data["kind"], fact.data.get("detail") or {})

    async def _insert_event(self, fact: Fact, kind: str, detail: Mapping[str, Any]) -> None:
        await self._pool.execute(
            "INSERT INTO call_events (call_id, kind, detail, at, fact_id)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (fact_id) DO NOTHING",
            fact.call_id, kind, json.loads(json.dumps(detail, default=str)), fact.at, fact.key,
        )  # fmt: skip
