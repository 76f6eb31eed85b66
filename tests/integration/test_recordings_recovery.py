"""A recording left in Asterisk's spool by a run that stopped mid-call is archived and put on
its call record at the next start: nothing recorded is lost to a crash or a restart."""

from __future__ import annotations

import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import CityFactory

pytestmark = pytest.mark.integration


async def test_a_recording_left_in_the_spool_reaches_its_call_at_the_next_start(
    make_city: CityFactory,
) -> None:
    first = await make_city(instance_name=f"test-{uuid.uuid4().hex[:10]}")
    assert first.asterisk is not None and first.records is not None
    call_id = uuid.uuid4()
    await first.records.arrived(
        call_id, asterisk_uniqueid="x.1", caller_number="48600999888", at=datetime.now(UTC)
    )
    spool = first.asterisk.host_path(first.asterisk.spool_dir)
    (spool / f"{call_id}.wav").write_bytes(b"RIFF" + bytes(4000))  # MixMonitor's, never moved
    (spool / "not-a-call.wav").write_bytes(b"RIFF")
    await first.stop()  # as if the process had died mid-call

    second = await make_city(instance_name=first.settings.instance_name)
    assert second.calls is not None
    call = await second.calls.get_call(call_id)
    assert call is not None and call["recording_path"]
    archived = Path(call["recording_path"])
    assert archived.is_file() and archived.stat().st_size == 4004
    assert archived.is_relative_to(second.settings.recordings_dir)
    # Not audio ffmpeg can read, so kept as it was, and as private as any recording.
    assert archived.suffix == ".wav"
    assert stat.S_IMODE(archived.stat().st_mode) == 0o600
    assert stat.S_IMODE(archived.parent.stat().st_mode) == 0o700
    assert not (spool / f"{call_id}.wav").exists()
    assert (spool / "not-a-call.wav").exists()  # not ours to move
    events = [e["kind"] for e in await second.calls.call_events(call_id)]
    assert "recording_recovered" in events
