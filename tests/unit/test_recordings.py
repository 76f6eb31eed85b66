from __future__ import annotations

from pathlib import Path

from recordings.service import RecordingCollector


def collector(tmp_path: Path) -> RecordingCollector:
    sandbox = tmp_path / "sandbox"
    return RecordingCollector(
        asterisk_spool_dir="/spool/monitor/",
        host_path=lambda p: sandbox / p.lstrip("/"),
        archive_dir=tmp_path / "archive",
        settle_seconds=0.01,
        give_up_seconds=0.3,
    )


async def test_a_finished_recording_moves_from_the_sandbox_to_the_archive(tmp_path: Path) -> None:
    rec = collector(tmp_path)
    path = rec.asterisk_path_for("call-1")
    assert path == "/spool/monitor/call-1.wav"
    source = tmp_path / "sandbox/spool/monitor/call-1.wav"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"RIFF" + b"\0" * 2000)
    stored = await rec.collect("call-1", path)
    assert stored is not None and Path(stored).read_bytes()[:4] == b"RIFF"
    assert Path(stored).is_relative_to(tmp_path / "archive") and not source.exists()


async def test_a_missing_recording_is_reported_not_raised(tmp_path: Path) -> None:
    rec = collector(tmp_path)
    assert await rec.collect("call-2", rec.asterisk_path_for("call-2")) is None
