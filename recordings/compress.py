"""Compressing a finished recording: the WAV Asterisk wrote -> Opus in Ogg (what browsers play),
with pydub and ffmpeg.

The work runs in a child process of its own (`python -m recordings.compress`), never on the event
loop: it can be given a deadline and killed with its ffmpeg, a crash or a leak in pydub (it
leaves file handles open, and temporary copies of the audio behind when ffmpeg fails) dies with
the process, and the temporary copies land in a private folder that is removed afterwards. The
result is decoded again and its length compared before the WAV may be let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent.parent
BITRATE = "16k"  # narrow-band speech (8 kHz): clear at 16 kbit/s, an eighth of the WAV's 128
# Decoded length may differ from the WAV's by Opus's padding: a few tens of milliseconds.
LENGTH_TOLERANCE_MS = 250


@dataclass(frozen=True)
class Compressed:
    seconds: float
    wav_bytes: int
    stored_bytes: int


class CompressionFailed(Exception):
    """The recording could not be compressed; the WAV is kept."""


async def compress(
    source: Path, target: Path, *, work_dir: Path, timeout: float, bitrate: str = BITRATE
) -> Compressed:
    """Write `source` (WAV) as Opus in Ogg to `target`, checked; the source is left as it is.

    Raises CompressionFailed (nothing left at `target`) when it cannot be done in time."""
    await asyncio.to_thread(_private_folder, work_dir)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "recordings.compress",
            str(source), str(target), str(work_dir), bitrate,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=PROJECT_DIR,
            start_new_session=True,  # its own process group: a kill reaches its ffmpeg too
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException:  # the deadline, or the service stopping: stop it and its ffmpeg
            _kill_group(proc.pid)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            raise
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no reason given"]
            raise CompressionFailed(f"exit {proc.returncode}: {reason[0][:300]}")
        result = json.loads(out.decode())
        return Compressed(
            seconds=float(result["seconds"]),
            wav_bytes=int(result["wav_bytes"]),
            stored_bytes=int(result["stored_bytes"]),
        )
    except TimeoutError as exc:
        await asyncio.to_thread(_discard, target)
        raise CompressionFailed(f"not done within {timeout:.0f} s") from exc
    except (OSError, ValueError, KeyError) as exc:
        await asyncio.to_thread(_discard, target)
        raise CompressionFailed(repr(exc)) from exc
    except BaseException:
        await asyncio.to_thread(_discard, target)
        raise
    finally:
        await asyncio.to_thread(shutil.rmtree, work_dir, True)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the group of the child we started (its own session)


def _private_folder(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# -- the child process ---------------------------------------------------------------------


def convert(source: Path, target: Path, bitrate: str) -> Compressed:
    """In the child: WAV -> Opus in Ogg, decoded again and compared. Raises on any problem."""
    from pydub import AudioSegment  # only the child pays for pydub

    with source.open("rb") as wav:
        audio = AudioSegment.from_file(wav, format="wav")
    if len(audio) == 0:
        raise ValueError("the recording is empty")
    if audio.channels != 1:
        audio = audio.set_channels(1)
    exported = audio.export(
        str(target), format="ogg", codec="libopus", bitrate=bitrate,
        parameters=["-application", "voip"],
    )  # fmt: skip
    exported.close()  # pydub returns the output file open
    with target.open("rb") as ogg:
        back = AudioSegment.from_file(ogg, format="ogg")
    if abs(len(back) - len(audio)) > LENGTH_TOLERANCE_MS:
        raise ValueError(f"decoded {len(back)} ms of {len(audio)} ms")
    return Compressed(
        seconds=round(len(audio) / 1000, 3),
        wav_bytes=source.stat().st_size,
        stored_bytes=target.stat().st_size,
    )


def main(argv: list[str]) -> int:
    source, target, work_dir, bitrate = argv
    os.umask(0o077)  # everything written here, ffmpeg's output included, is private
    tempfile.tempdir = work_dir  # pydub's temporary copies of the audio go there, not to /tmp
    try:
        done = convert(Path(source), Path(target), bitrate)
    except Exception as exc:
        _discard(Path(target))
        print(f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500], file=sys.stderr)
        return 1
    print(json.dumps(done.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
