"""Storing a finished recording: compressed with pydub and ffmpeg (Opus in Ogg), checked, private
to the service's user; on any failure the WAV itself is kept."""

from __future__ import annotations

import asyncio
import math
import os
import stat
import struct
import wave
from pathlib import Path

import pytest

import recordings.collector as service
from recordings.collector import RecordingCollector
from recordings.files import tighten

SPOOL = "/spool/monitor/"


def collector(tmp_path: Path, **options: object) -> RecordingCollector:
    sandbox = tmp_path / "sandbox"
    return RecordingCollector(
        asterisk_spool_dir=SPOOL,
        host_path=lambda p: sandbox / p.lstrip("/"),
        archive_dir=tmp_path / "archive",
        settle_seconds=0.01,
        give_up_seconds=0.3,
        **options,  # type: ignore[arg-type]
    )


def spool_file(tmp_path: Path, call_id: str) -> Path:
    path = tmp_path / "sandbox" / SPOOL.strip("/") / f"{call_id}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def speechlike_wav(path: Path, seconds: float = 4.0) -> None:
    """8 kHz 16-bit mono like MixMonitor's: a voice-like tone that rises and falls in bursts."""
    rate = 8000
    frames = bytearray()
    for i in range(int(rate * seconds)):
        t = i / rate
        envelope = 0.5 + 0.5 * math.sin(2 * math.pi * 3 * t)
        sample = envelope * (0.5 * math.sin(2 * math.pi * (180 + 40 * math.sin(t)) * t)
                             + 0.2 * math.sin(2 * math.pi * 900 * t))  # fmt: skip
        frames += struct.pack("<h", int(sample * 12000))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    path.chmod(0o644)  # as Asterisk leaves it


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_finished_recording_is_compressed_into_the_private_archive(tmp_path: Path) -> None:
    rec = collector(tmp_path)
    path = rec.asterisk_path_for("call-1")
    assert path == "/spool/monitor/call-1.wav"
    source = spool_file(tmp_path, "call-1")
    speechlike_wav(source)
    wav_bytes = source.stat().st_size
    stored = await rec.collect("call-1", path)
    assert stored is not None
    stored_path = Path(stored)
    assert stored_path.suffix == ".ogg" and stored_path.read_bytes()[:4] == b"OggS"
    assert b"OpusHead" in stored_path.read_bytes()[:200]
    assert stored_path.is_relative_to(tmp_path / "archive") and not source.exists()
    assert wav_bytes / stored_path.stat().st_size > 5  # 128 kbit/s -> 16 kbit/s
    # Private: the file 0600, its day folder and the archive 0700, all ours; nothing left over.
    assert mode(stored_path) == 0o600 and stored_path.stat().st_uid == os.geteuid()
    assert mode(stored_path.parent) == 0o700 and mode(tmp_path / "archive") == 0o700
    assert sorted(p.name for p in stored_path.parent.iterdir()) == ["call-1.ogg"]
    assert list((tmp_path / "archive" / ".work").iterdir()) == []


async def test_a_recording_that_cannot_be_compressed_is_kept_as_wav(tmp_path: Path) -> None:
    rec = collector(tmp_path)
    source = spool_file(tmp_path, "call-3")
    source.write_bytes(b"RIFF" + b"\0" * 2000)  # not audio ffmpeg can read
    source.chmod(0o644)
    stored = await rec.collect("call-3", rec.asterisk_path_for("call-3"))
    assert stored is not None and stored.endswith("call-3.wav")
    assert Path(stored).read_bytes() == b"RIFF" + b"\0" * 2000
    assert mode(Path(stored)) == 0o600 and not source.exists()
    assert sorted(p.name for p in Path(stored).parent.iterdir()) == ["call-3.wav"]


async def test_a_conversion_past_its_deadline_keeps_the_wav(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "conversion_timeout", lambda wav_bytes: 0.01)
    rec = collector(tmp_path)
    source = spool_file(tmp_path, "call-4")
    speechlike_wav(source, seconds=2)
    stored = await rec.collect("call-4", rec.asterisk_path_for("call-4"))
    assert stored is not None and stored.endswith("call-4.wav") and Path(stored).is_file()
    assert not Path(stored).with_suffix(".ogg").exists()
    assert not Path(stored).with_name("call-4.ogg.part").exists()


async def test_a_service_stopping_mid_conversion_leaves_the_wav_in_the_spool(
    tmp_path: Path,
) -> None:
    rec = collector(tmp_path)
    source = spool_file(tmp_path, "call-5")
    speechlike_wav(source, seconds=30)
    task = asyncio.create_task(rec.collect("call-5", rec.asterisk_path_for("call-5")))
    for _ in range(200):  # until the conversion's child runs
        await asyncio.sleep(0.01)
        if _children():
            break
    assert _children(), "the conversion never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _children() == []  # the child and its ffmpeg are gone
    assert source.is_file()  # the next start archives it (calls/leftovers.py)
    day_folders = list((tmp_path / "archive").glob("????-??-??"))
    assert all(list(d.iterdir()) == [] for d in day_folders)


def _children() -> list[str]:
    """Our conversion processes (children or orphans of this test's process group)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if b"recordings.compress" in cmd and ppid == os.getpid():
            found.append(proc.name)
    return found


async def test_wav_storage_when_the_city_chooses_it(tmp_path: Path) -> None:
    rec = collector(tmp_path, store_format="wav")
    source = spool_file(tmp_path, "call-6")
    speechlike_wav(source, seconds=1)
    stored = await rec.collect("call-6", rec.asterisk_path_for("call-6"))
    assert stored is not None and stored.endswith("call-6.wav") and mode(Path(stored)) == 0o600
    with pytest.raises(ValueError):
        collector(tmp_path, store_format="flac")


async def test_recovered_leftovers_are_compressed_too(tmp_path: Path) -> None:
    rec = collector(tmp_path)
    call_id = "6f1c1d2e-8a8f-4c4e-9a53-222222222222"
    source = spool_file(tmp_path, call_id)
    speechlike_wav(source, seconds=1)
    (source.parent / "not-a-call.wav").write_bytes(b"RIFF")
    assert [c for c, _ in await rec.leftovers()] == [call_id]
    stored = await rec.archive(call_id, source)
    assert stored.endswith(f"{call_id}.ogg") and not source.exists()


async def test_a_missing_recording_is_reported_not_raised(tmp_path: Path) -> None:
    rec = collector(tmp_path)
    assert await rec.collect("call-2", rec.asterisk_path_for("call-2")) is None


def test_an_existing_world_readable_archive_is_made_private(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    day = root / "2026-01-02"
    day.mkdir(parents=True)
    root.chmod(0o755)
    day.chmod(0o755)
    recording = day / "6f1c1d2e-8a8f-4c4e-9a53-333333333333.ogg"
    recording.write_bytes(b"OggS")
    recording.chmod(0o644)
    stale = day / "6f1c1d2e-8a8f-4c4e-9a53-444444444444.ogg.part"
    stale.write_bytes(b"half")
    other = root / "README"  # not the archive's: left alone
    other.write_text("x")
    other.chmod(0o644)
    done = tighten(root, work_dir=".work", stale_before=stale.stat().st_mtime + 1)
    assert (done.folders, done.files, done.stale_removed) == (1, 1, 1)
    assert mode(root) == 0o700 and mode(day) == 0o700 and mode(recording) == 0o600
    assert not stale.exists() and mode(other) == 0o644
    again = tighten(root, work_dir=".work", stale_before=0)
    assert (again.folders, again.files, again.stale_removed) == (0, 0, 0)


def test_a_file_we_may_not_take_over_is_replaced_by_our_own_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recordings import files

    path = tmp_path / "x.wav"
    path.write_bytes(b"RIFF1234")
    real_stat = os.stat

    class Foreign:  # as if another user (Asterisk) owned it, which only root could change
        def __init__(self, st: os.stat_result) -> None:
            self.st_uid, self.st_gid, self.st_mode = st.st_uid + 1, st.st_gid, st.st_mode

    def fake_stat(self: Path, **kw: object) -> object:
        st = real_stat(self)
        return Foreign(st) if self == path else st

    def refuse(*args: object) -> None:
        raise PermissionError("not root")

    monkeypatch.setattr(Path, "stat", fake_stat)
    monkeypatch.setattr(files.os, "chown", refuse)
    files.make_private(path)
    monkeypatch.undo()
    assert path.read_bytes() == b"RIFF1234" and mode(path) == 0o600
    assert not path.with_name("x.wav.own").exists()
