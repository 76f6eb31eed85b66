"""Call recordings end to end: a real call recorded by Asterisk, stored compressed and private,
played back through the API (with Range), and deleted by the retention sweep or by hand with an
audit trail."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from cityline.simulated.sipp import Speech, call_with_keys
from cityline.wiring import CityLine
from tests.support.checks import eventually
from tests.support.desk import AgentAtDesk, admin_headers, base_url

pytestmark = pytest.mark.integration

POLISH_ROADS = [(1.0, "1"), (1.5, "1")]
SAID = (
    "Dzień dobry, dzwonię w sprawie latarni na ulicy Marszałkowskiej pięć. Nie świeci od trzech"
    " dni, a wieczorem jest tam zupełnie ciemno. Proszę przysłać kogoś, kto to naprawi."
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def polish(text: str, tmp: Path) -> Speech:
    wav, raw = tmp / "said.wav", tmp / "said.raw"
    subprocess.run(["espeak-ng", "-v", "pl", "-w", str(wav), text], check=True, capture_output=True)
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                    "-t", "raw", str(raw)], check=True, capture_output=True)  # fmt: skip
    return Speech(raw.read_bytes(), label="said")


async def test_a_real_call_is_stored_compressed_private_and_played_back(
    city: CityLine, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    nina = await AgentAtDesk(
        city, http, "nina", {"lang:pl": 5, "group:roads": 4}, talk_seconds=16.0
    ).arrive()
    try:
        said = polish(SAID, tmp_path)
        caller = asyncio.create_task(
            call_with_keys(city.settings.sip_port, [*POLISH_ROADS, (4.0, said)],
                           echo=False, hold_seconds=30, timeout=90)
        )  # fmt: skip
        pop = await nina.next_message("pop", timeout=30)
        assert (await caller).ok
        call_id = uuid.UUID(pop["call_id"])

        async def stored() -> str | None:
            assert city.calls is not None
            row = await city.calls.get_call(call_id)
            return row["recording_path"] if row else None

        recording = Path(await eventually(stored, timeout=30))
        # Compressed, checked, private to the service's user.
        assert recording.suffix == ".ogg" and recording.read_bytes()[:4] == b"OggS"
        assert recording.is_relative_to(city.settings.recordings_dir)
        assert mode(recording) == 0o600 and recording.stat().st_uid == os.geteuid()
        assert mode(recording.parent) == 0o700 and mode(city.settings.recordings_dir) == 0o700
        assert not recording.with_suffix(".wav").exists()
        seconds = _seconds(recording)
        assert 12 < seconds < 25, seconds  # the conversation, not the IVR or the hold music
        wav_bytes = round(seconds * 16000) + 44  # what MixMonitor's 8 kHz 16-bit WAV was
        ratio = wav_bytes / recording.stat().st_size
        print(f"\nrecording: {seconds:.1f} s, WAV {wav_bytes} B, Opus {recording.stat().st_size} B,"
              f" ratio {ratio:.1f}")  # fmt: skip
        assert ratio > 5

        # The call's answer says there is a recording and where to play it, not the file's path.
        status, call = await nina.api("GET", f"/api/calls/{call_id}")
        assert status == 200
        assert call["has_recording"] is True
        assert call["recording_url"] == f"/api/calls/{call_id}/recording"
        assert "recording_path" not in call
        assert str(recording) not in str(call) and str(city.settings.recordings_dir) not in str(
            call
        )
        async with http.get(f"{base_url(city)}/api/calls", headers=admin_headers(city)) as r:
            listed = await r.json()
            assert "recording_path" not in listed[0] and listed[0]["has_recording"] is True

        headers = {"Authorization": f"Bearer {nina.token}"}
        url = f"{base_url(city)}/api/calls/{call_id}/recording"
        async with http.get(url, headers=headers) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "audio/ogg; codecs=opus"
            assert r.headers["Cache-Control"] == "private, no-store"
            assert r.headers.get("Accept-Ranges") == "bytes"
            body = await r.read()
            assert body == recording.read_bytes()
        async with http.get(url, headers={**headers, "Range": "bytes=100-199"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 100-199/{len(body)}"
            assert await r.read() == body[100:200]
    finally:
        await nina.leave()


def _seconds(path: Path) -> float:
    from pydub import AudioSegment

    with path.open("rb") as f:
        return len(AudioSegment.from_file(f, format="ogg")) / 1000


async def test_recordings_past_their_period_are_deleted_with_an_audit_trail(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    assert city.records is not None and city.recordings is not None and city.pool is not None
    records, url, admin = city.records, base_url(city), admin_headers(city)
    ended = datetime.now(UTC) - timedelta(days=1)

    async def recorded_call() -> tuple[uuid.UUID, Path]:
        call_id = uuid.uuid4()
        await records.arrived(call_id, asterisk_uniqueid=f"t.{call_id.hex[:6]}",
                              caller_number="48600111222", at=ended - timedelta(minutes=3))  # fmt: skip
        path = city.settings.recordings_dir / ended.strftime("%Y-%m-%d") / f"{call_id}.ogg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"OggS" + bytes(500))
        await records.update(call_id, ended_at=ended, outcome="answered", agent="x",
                             recording_path=str(path))  # fmt: skip
        return call_id, path

    answered, answered_file = await recorded_call()
    with_case, case_file = await recorded_call()
    second, second_file = await recorded_call()
    async with http.post(f"{url}/api/cases", headers=admin, json={
        "call_id": str(with_case), "service_code": "street_light_out",
        "description": "Lampa nie świeci", "address": "Marszałkowska 5",
    }) as r:  # fmt: skip
        assert r.status == 201, await r.text()

    # Tomorrow nothing is due; 90 days after the call, the call without a case is.
    assert (await city.recordings.sweep(datetime.now(UTC) + timedelta(days=1))).deleted == 0
    result = await city.recordings.sweep(ended + timedelta(days=90, seconds=1))
    assert result.deleted == 2  # answered and second: neither has a case
    assert not answered_file.exists() and not second_file.exists() and case_file.exists()
    assert city.calls is not None
    row = await city.calls.get_call(answered)
    assert row is not None and row["recording_path"] is None
    events = {e["kind"]: e["detail"] for e in await city.calls.call_events(answered)}
    assert events["recording_deleted"] == {
        "reason": "retention_expired", "actor": "retention", "retention_kind": "answered",
        "retention_days": 90, "file_found": True,
    }  # fmt: skip
    async with http.get(f"{url}/api/calls/{answered}/recording", headers=admin) as r:
        assert r.status == 410 and (await r.json())["error_id"] == "recording_deleted"
    async with http.get(f"{url}/api/calls/{answered}", headers=admin) as r:
        shown = await r.json()
        assert shown["has_recording"] is False and shown["recording_url"] is None

    # The case's recording goes when the case period ends.
    assert (await city.recordings.sweep(ended + timedelta(days=365, seconds=1))).deleted == 1
    assert not case_file.exists()

    async with http.get(f"{url}/api/recordings/audit", headers=admin) as r:
        audit = await r.json()
    kinds = {(e["call_id"], e["retention_kind"], e["retention_days"], e["actor"], e["reason"])
             for e in audit}  # fmt: skip
    assert (str(answered), "answered", 90, "retention", "retention_expired") in kinds
    assert (str(second), "answered", 90, "retention", "retention_expired") in kinds
    assert (str(with_case), "case", 365, "retention", "retention_expired") in kinds
    assert all(e["file_found"] and e["bytes"] == 504 for e in audit)


async def test_an_admin_deletes_a_recording_on_request_with_the_reason(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    assert city.records is not None
    url, admin = base_url(city), admin_headers(city)
    call_id = uuid.uuid4()
    now = datetime.now(UTC)
    await city.records.arrived(call_id, asterisk_uniqueid="t.erase", caller_number="4860",
                               at=now)  # fmt: skip
    path = city.settings.recordings_dir / now.strftime("%Y-%m-%d") / f"{call_id}.ogg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"OggS" + bytes(10))
    await city.records.update(call_id, ended_at=now, agent="ola", recording_path=str(path))
    ola = await AgentAtDesk(city, http, "ola", {"lang:pl": 5}).arrive(ready=False)
    try:
        status, _ = await ola.api("DELETE", f"/api/calls/{call_id}/recording", {"reason": "x"})
        assert status == 403  # the agent who took the call may hear it, not delete it
        status, _ = await ola.api("GET", "/api/recordings/audit")
        assert status == 403
    finally:
        await ola.leave()
    async with http.delete(f"{url}/api/calls/{call_id}/recording", headers=admin, json={}) as r:
        assert r.status == 400  # a reason is required
    async with http.delete(f"{url}/api/calls/{call_id}/recording", headers=admin,
                           json={"reason": "erasure request RODO/2026/17"}) as r:  # fmt: skip
        assert r.status == 200 and (await r.json())["deleted"] is True
    assert not path.exists()
    async with http.delete(f"{url}/api/calls/{call_id}/recording", headers=admin,
                           json={"reason": "again"}) as r:  # fmt: skip
        assert r.status == 404
    async with http.get(f"{url}/api/recordings/audit?call_id={call_id}", headers=admin) as r:
        [entry] = await r.json()
    assert (entry["actor"], entry["reason"], entry["file_found"]) == (
        "admin",
        "erasure request RODO/2026/17",
        True,
    )
    assert city.calls is not None
    events = {e["kind"]: e["detail"] for e in await city.calls.call_events(call_id)}
    assert events["recording_deleted"]["actor"] == "admin"
