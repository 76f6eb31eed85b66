"""CallRecords with a stand-in database: callers never wait, facts go in order, a database
outage or a restart loses nothing and stores nothing twice, and the bound is honoured."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest

from calls.journal import Journal
from calls.record import CallRecords

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class StandInDatabase:
    """Keeps rows and events like the SQL would (ON CONFLICT DO NOTHING), and can be taken
    down (connection refused) or frozen (never answers)."""

    def __init__(self) -> None:
        self.calls: dict[uuid.UUID, dict[str, Any]] = {}
        self.events: list[tuple[uuid.UUID, str, uuid.UUID]] = []
        self.down = False
        self.frozen = False
        self.statements = 0

    async def execute(self, sql: str, *args: Any) -> str:
        self.statements += 1
        if self.frozen:
            await asyncio.sleep(3600)
        if self.down:
            raise ConnectionRefusedError("database down")
        if sql.startswith("INSERT INTO calls"):
            self.calls.setdefault(args[0], {"caller_number": args[2]})
        elif sql.startswith("UPDATE calls"):
            names = [part.split(" = ")[0] for part in sql.split(" SET ")[1].split(" WHERE")[0]
                     .split(", ")]  # fmt: skip
            if args[0] not in self.calls:
                return "UPDATE 0"
            self.calls[args[0]].update(zip(names, args[1:], strict=True))
        elif sql.startswith("INSERT INTO call_events"):
            call_id, kind, _detail, _at, key = args
            if call_id not in self.calls:
                raise asyncpg.ForeignKeyViolationError("no such call")
            if all(k != key for _, _, k in self.events):
                self.events.append((call_id, kind, key))
        return "OK"

    def kinds(self, call_id: uuid.UUID) -> list[str]:
        return [kind for c, kind, _ in self.events if c == call_id]


def records(db: StandInDatabase, tmp_path: Path, **kwargs: Any) -> CallRecords:
    return CallRecords(
        cast(asyncpg.Pool, db), answer_target_seconds=15, journal_dir=tmp_path / "journal",
        apply_timeout=0.2, clock=lambda: T0, **kwargs,
    )  # fmt: skip


async def tell_a_call(rec: CallRecords, call_id: uuid.UUID) -> None:
    await rec.arrived(call_id, asterisk_uniqueid="1.1", caller_number="481", at=T0)
    await rec.update(call_id, language="pl", queued_at=T0)
    await rec.event(call_id, "queued")
    await rec.update(call_id, outcome="answered", ended_at=T0, agent="ola")
    await rec.event(call_id, "ended", {"outcome": "answered"})


async def test_facts_reach_the_database_in_the_order_they_were_told(tmp_path: Path) -> None:
    db = StandInDatabase()
    rec = records(db, tmp_path)
    await rec.start()
    call = uuid.uuid4()
    await tell_a_call(rec, call)
    assert await rec.drained(timeout=5)
    assert db.calls[call] == {"caller_number": "481", "language": "pl", "queued_at": T0,
                              "outcome": "answered", "ended_at": T0, "agent": "ola"}  # fmt: skip
    assert db.kinds(call) == ["arrived", "queued", "ended"]
    await rec.stop()


async def test_with_the_database_frozen_telling_returns_at_once_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    db = StandInDatabase()
    db.frozen = True
    rec = records(db, tmp_path)
    await rec.start()
    call = uuid.uuid4()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await tell_a_call(rec, call)
    assert loop.time() - began < 0.05  # no database wait on the call's path
    assert not await rec.drained(timeout=0.5) and rec.backlog == 5
    db.frozen = False
    assert await rec.drained(timeout=5)
    assert db.kinds(call) == ["arrived", "queued", "ended"]
    assert db.calls[call]["outcome"] == "answered"
    await rec.stop()


async def test_a_database_that_is_down_gets_the_facts_when_it_returns(tmp_path: Path) -> None:
    db = StandInDatabase()
    db.down = True
    rec = records(db, tmp_path)
    await rec.start()
    call = uuid.uuid4()
    await tell_a_call(rec, call)
    await asyncio.sleep(0.5)
    assert db.calls == {} and rec.database_down_since is not None
    db.down = False
    assert await rec.drained(timeout=10)
    assert db.kinds(call) == ["arrived", "queued", "ended"]
    assert rec.database_down_since is None
    await rec.stop()


async def test_facts_left_at_a_stop_are_applied_at_the_next_start(tmp_path: Path) -> None:
    db = StandInDatabase()
    db.down = True
    first = records(db, tmp_path)
    await first.start()
    call = uuid.uuid4()
    await tell_a_call(first, call)
    await first.stop(drain_timeout=0.2)  # the database is still away
    db.down = False
    second = records(db, tmp_path)
    await second.start()
    assert await second.drained(timeout=5)
    assert db.kinds(call) == ["arrived", "queued", "ended"]
    assert db.calls[call]["agent"] == "ola"
    await second.stop()


async def test_replaying_facts_the_database_already_has_stores_nothing_twice(
    tmp_path: Path,
) -> None:
    db = StandInDatabase()
    first = records(db, tmp_path)
    await first.start()
    call = uuid.uuid4()
    await tell_a_call(first, call)
    assert await first.drained(timeout=5)
    await first.stop()
    # As if the process had died before marking them applied: the mark is lost.
    (tmp_path / "journal" / "applied").unlink()
    second = records(db, tmp_path)
    await second.start()
    assert second.backlog == 5  # every fact replayed...
    assert await second.drained(timeout=5)
    assert db.kinds(call) == ["arrived", "queued", "ended"]  # ...and stored once
    await second.stop()


async def test_a_crash_leaves_the_told_facts_on_disk(tmp_path: Path) -> None:
    db = StandInDatabase()
    db.down = True
    rec = records(db, tmp_path)
    await rec.start()
    call = uuid.uuid4()
    await tell_a_call(rec, call)
    # No stop(): what a kill -9 leaves is what was written.
    replayed = Journal(tmp_path / "journal").open()
    assert [f.kind for f in replayed.facts] == ["arrived", "update", "event", "update", "event"]
    assert rec._writer is not None
    rec._writer.cancel()


async def test_a_fact_the_database_refuses_is_logged_and_skipped_not_retried_forever(
    tmp_path: Path,
) -> None:
    db = StandInDatabase()
    rec = records(db, tmp_path)
    await rec.start()
    await rec.event(uuid.uuid4(), "orphan")  # no row: a foreign-key error, not an outage
    call = uuid.uuid4()
    await tell_a_call(rec, call)
    assert await rec.drained(timeout=5)
    assert db.kinds(call) == ["arrived", "queued", "ended"]
    await rec.stop()


async def test_at_the_bound_facts_are_refused_and_the_caller_still_returns(
    tmp_path: Path,
) -> None:
    db = StandInDatabase()
    db.frozen = True
    rec = records(db, tmp_path, bound=3)
    await rec.start()
    call = uuid.uuid4()
    await tell_a_call(rec, call)  # 5 facts, room for 3
    assert rec.backlog == 3 and rec.facts.refused == 2
    db.frozen = False
    assert await rec.drained(timeout=5)
    assert db.kinds(call) == ["arrived", "queued"]
    await rec.stop()


async def test_settled_waits_for_one_calls_facts(tmp_path: Path) -> None:
    db = StandInDatabase()
    db.down = True
    rec = records(db, tmp_path)
    await rec.start()
    call = uuid.uuid4()
    await tell_a_call(rec, call)
    assert not await rec.settled(call, timeout=0.3)
    db.down = False
    assert await rec.settled(call, timeout=5)
    await rec.stop()


async def test_unknown_columns_are_a_programming_error(tmp_path: Path) -> None:
    rec = records(StandInDatabase(), tmp_path)
    with pytest.raises(ValueError, match="unknown call columns"):
        await rec.update(uuid.uuid4(), colour="red")


def test_the_journal_is_emptied_once_drained(tmp_path: Path) -> None:
    from calls.facts import FactQueue

    journal = Journal(tmp_path, compact_after_bytes=1)
    journal.open()
    queue = FactQueue()
    fact = queue.admit("event", uuid.uuid4(), T0, {"kind": "k"})
    assert fact is not None
    journal.append(fact)
    assert journal.size > 0
    journal.mark_applied(fact.seq, drained=True)
    journal.close()
    assert journal.path.read_text() == ""
    again = Journal(tmp_path).open()
    assert again.facts == [] and again.applied_through == 1 and again.last_seq == 1
