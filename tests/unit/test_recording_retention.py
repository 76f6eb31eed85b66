"""The retention sweep with the clock given: what it deletes, what it leaves, what it records."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recordings.audit import AuditEntry
from recordings.policy import Retention
from recordings.retention import RecordingRetention

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


class Calls:
    """The call records as the sweep sees them: rows, plus the writes it makes."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}
        self.events: list[tuple[uuid.UUID, str, dict[str, Any]]] = []

    def add(self, archive: Path, days_ago: float, *, case: bool = False,
            suffix: str = ".ogg", write: bool = True) -> uuid.UUID:  # fmt: skip
        call_id = uuid.uuid4()
        ended = NOW - timedelta(days=days_ago)
        path = archive / ended.strftime("%Y-%m-%d") / f"{call_id}{suffix}"
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"OggS" + bytes(100))
        self.rows[call_id] = {"id": call_id, "recording_path": str(path), "ended_at": ended,
                              "arrived_at": ended, "case": case}  # fmt: skip
        return call_id

    async def get_call(self, call_id: uuid.UUID) -> dict[str, Any] | None:
        return self.rows.get(call_id)

    async def recordings_past(self, *, unlinked_before: datetime | None,
                              linked_before: datetime | None, limit: int) -> list[dict[str, Any]]:  # fmt: skip
        found = []
        for r in sorted(self.rows.values(), key=lambda r: r["ended_at"]):
            cutoff = linked_before if r["case"] else unlinked_before
            if r["recording_path"] and cutoff is not None and r["ended_at"] < cutoff:
                found.append({"id": r["id"], "recording_path": r["recording_path"],
                              "recorded_at": r["ended_at"], "linked_to_case": r["case"]})  # fmt: skip
        return found[:limit]

    async def update(self, call_id: uuid.UUID, **fields: Any) -> None:
        self.rows[call_id].update(fields)

    async def event(self, call_id: uuid.UUID, kind: str,
                    detail: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        self.events.append((call_id, kind, dict(detail or {})))


class Audit:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def add(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


def keeper(calls: Calls, audit: Audit, archive: Path, **days: int | None) -> RecordingRetention:
    return RecordingRetention(
        reader=calls, ledger=calls, audit=audit,  # type: ignore[arg-type]
        retention=Retention.of(days), archive_dir=archive, batch=50,
    )  # fmt: skip


async def test_expired_recordings_go_with_an_event_and_an_audit_row(tmp_path: Path) -> None:
    calls, audit = Calls(), Audit()
    old = calls.add(tmp_path, 91)
    young = calls.add(tmp_path, 89)
    case_call = calls.add(tmp_path, 200, case=True)
    result = await keeper(calls, audit, tmp_path).sweep(NOW)
    assert (result.deleted, result.more) == (1, False)
    assert calls.rows[old]["recording_path"] is None
    assert not list(tmp_path.rglob(f"{old}*"))
    assert calls.rows[young]["recording_path"] and calls.rows[case_call]["recording_path"]
    assert calls.events == [
        (old, "recording_deleted", {"reason": "retention_expired", "actor": "retention",
                                    "retention_kind": "answered", "retention_days": 90,
                                    "file_found": True}),
    ]  # fmt: skip
    [entry] = audit.entries
    assert (entry.call_id, entry.action, entry.actor, entry.reason) == (
        old,
        "deleted",
        "retention",
        "retention_expired",
    )
    assert (entry.retention_kind, entry.retention_days, entry.file_found, entry.bytes) == (
        "answered",
        90,
        True,
        104,
    )
    assert entry.recorded_at == NOW - timedelta(days=91)


async def test_the_case_period_runs_out_later(tmp_path: Path) -> None:
    calls, audit = Calls(), Audit()
    case_call = calls.add(tmp_path, 200, case=True)
    sweeper = keeper(calls, audit, tmp_path)
    assert (await sweeper.sweep(NOW)).deleted == 0
    assert (await sweeper.sweep(NOW + timedelta(days=166))).deleted == 1
    assert calls.rows[case_call]["recording_path"] is None
    assert audit.entries[0].retention_kind == "case" and audit.entries[0].retention_days == 365


async def test_a_file_already_gone_still_completes_the_record(tmp_path: Path) -> None:
    calls, audit = Calls(), Audit()
    gone = calls.add(tmp_path, 100, write=False)  # deleted before a crash, record not yet cleared
    assert (await keeper(calls, audit, tmp_path).sweep(NOW)).deleted == 1
    assert calls.rows[gone]["recording_path"] is None
    assert audit.entries[0].file_found is False and audit.entries[0].bytes is None
    assert calls.events[0][2]["file_found"] is False


async def test_a_path_that_is_not_the_calls_recording_is_never_deleted(tmp_path: Path) -> None:
    calls, audit = Calls(), Audit()
    bad = calls.add(tmp_path, 100, write=False)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    calls.rows[bad]["recording_path"] = str(victim)
    assert (await keeper(calls, audit, tmp_path).sweep(NOW)).deleted == 0
    assert victim.read_text() == "keep me" and audit.entries == []


async def test_a_pass_is_bounded_and_says_more_is_due(tmp_path: Path) -> None:
    calls, audit = Calls(), Audit()
    for _ in range(60):
        calls.add(tmp_path, 120, write=False)
    sweeper = keeper(calls, audit, tmp_path)
    first = await sweeper.sweep(NOW)
    assert (first.deleted, first.more) == (50, True)
    second = await sweeper.sweep(NOW)
    assert (second.deleted, second.more) == (10, False)


async def test_never_keeps_a_kind_for_good(tmp_path: Path) -> None:
    calls, audit = Calls(), Audit()
    calls.add(tmp_path, 5000, case=True)
    answered = calls.add(tmp_path, 31)
    result = await keeper(calls, audit, tmp_path, answered=30, case=None).sweep(NOW)
    assert result.deleted == 1 and calls.rows[answered]["recording_path"] is None


async def test_files_no_call_points_at_go_once_their_day_is_past_retention(tmp_path: Path) -> None:
    calls, audit = Calls(), Audit()
    kept_case = calls.add(tmp_path, 120, case=True)  # in the same old folder, still the call's
    folder = Path(calls.rows[kept_case]["recording_path"]).parent
    stray = folder / f"{uuid.uuid4()}.wav"  # a crash before its call record was written
    stray.write_bytes(b"RIFF")
    half = folder / f"{uuid.uuid4()}.ogg.part"
    half.write_bytes(b"Ogg")
    not_ours = folder / "notes.txt"
    not_ours.write_text("x")
    recent = tmp_path / (NOW - timedelta(days=10)).strftime("%Y-%m-%d")
    recent.mkdir()
    young_stray = recent / f"{uuid.uuid4()}.ogg"
    young_stray.write_bytes(b"OggS")
    empty_old = tmp_path / "2020-01-01"
    empty_old.mkdir()
    result = await keeper(calls, audit, tmp_path).sweep(NOW)
    assert result.orphans == 1
    assert not stray.exists() and not half.exists()
    assert not_ours.exists() and young_stray.exists()
    assert Path(calls.rows[kept_case]["recording_path"]).exists()
    assert not empty_old.exists()
    [entry] = audit.entries
    assert entry.reason == "orphan" and entry.call_id == uuid.UUID(stray.stem)
    assert calls.events == []  # no call to tell


async def test_deletion_by_hand_records_who_and_why(tmp_path: Path) -> None:
    calls, audit = Calls(), Audit()
    call_id = calls.add(tmp_path, 1)
    sweeper = keeper(calls, audit, tmp_path)
    assert await sweeper.delete_by_request(call_id, actor="admin", reason="erasure request 12/2026")
    assert calls.rows[call_id]["recording_path"] is None
    assert (
        audit.entries[0].actor == "admin" and audit.entries[0].reason == "erasure request 12/2026"
    )
    assert audit.entries[0].retention_kind is None
    assert calls.events[0][1] == "recording_deleted"
    assert not await sweeper.delete_by_request(call_id, actor="admin", reason="again")
    assert not await sweeper.delete_by_request(uuid.uuid4(), actor="admin", reason="none")
