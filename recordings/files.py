"""The archive on disk: private folders and files owned by the service's user. Blocking calls:
run them in a thread.

Recordings are personal data: folders 0700, files 0600, owned by the user the service runs as
(Asterisk may write its spool as another user, and a rename keeps the writer's owner and mode).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from recordings.policy import STORED_SUFFIXES, day_of

DIR_MODE = 0o700
FILE_MODE = 0o600
PART_SUFFIX = ".part"  # a file being written; never referred to by a call


def private_dir(path: Path) -> None:
    """Create the folder (and its parents) if need be; the folder itself ends up 0700, ours."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _own(path, DIR_MODE)


def make_private(path: Path) -> None:
    """The file is ours and 0600; one we cannot take over is replaced by our own copy."""
    try:
        _own(path, FILE_MODE)
    except PermissionError:
        copy = path.with_name(path.name + ".own")
        _copy_private(path, copy)
        os.replace(copy, path)


def take(source: Path, target: Path) -> None:
    """Move a finished file into the archive as a private file of ours (atomic on one file
    system: the target is never seen half-written)."""
    private_dir(target.parent)
    part = target.with_name(target.name + PART_SUFFIX)
    try:
        os.replace(source, part)
    except OSError:  # another file system
        _copy_private(source, part)
        source.unlink()
    make_private(part)
    os.replace(part, target)


def remove(path: Path) -> int | None:
    """Delete a stored file; its size, or None when it was already gone."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return None
    return size


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


@dataclass
class Tightened:
    folders: int = 0
    files: int = 0
    stale_removed: int = 0


def tighten(root: Path, *, work_dir: str, stale_before: float) -> Tightened:
    """Make an existing archive private: the root and its day folders 0700, the recordings in
    them 0600, all owned by us; remove what a stopped conversion left (half-written files and
    work folders last changed before `stale_before`, a timestamp). Only the archive's own layout
    is touched (<day>/<id>.ogg|wav, <work_dir>/), whatever else lives beside it."""
    done = Tightened()
    private_dir(root)
    for day in root.iterdir():
        if not day.is_dir() or day.is_symlink() or day_of(day.name) is None:
            continue
        if _needs(day, DIR_MODE):
            _own(day, DIR_MODE)
            done.folders += 1
        for entry in day.iterdir():
            if entry.is_symlink() or not entry.is_file():
                continue
            if entry.name.endswith(PART_SUFFIX):
                if entry.stat().st_mtime < stale_before:
                    entry.unlink(missing_ok=True)
                    done.stale_removed += 1
            elif entry.suffix in STORED_SUFFIXES and _needs(entry, FILE_MODE):
                make_private(entry)
                done.files += 1
    work = root / work_dir
    if work.is_dir() and not work.is_symlink():
        for entry in work.iterdir():
            if entry.lstat().st_mtime < stale_before:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                done.stale_removed += 1
    return done


def day_folders(root: Path) -> list[str]:
    """The names of the archive's day folders, oldest first."""
    if not root.is_dir():
        return []
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir() and not d.is_symlink() and day_of(d.name) is not None
    )


def files_in(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.is_dir())
    except FileNotFoundError:
        return []


def remove_empty_folder(path: Path) -> bool:
    try:
        path.rmdir()
    except OSError:
        return False
    return True


def _needs(path: Path, mode: int) -> bool:
    st = path.stat()
    return (st.st_mode & 0o7777) != mode or st.st_uid != os.geteuid()


def _own(path: Path, mode: int) -> None:
    st = path.stat()
    uid, gid = os.geteuid(), os.getegid()
    if (st.st_uid, st.st_gid) != (uid, gid):
        try:
            os.chown(path, uid, gid)
        except PermissionError:
            if st.st_uid != uid:
                raise  # not ours and we may not take it: the caller copies it
    os.chmod(path, mode)


def _copy_private(source: Path, target: Path) -> None:
    """A copy created by us, 0600 from its first byte."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, 1024 * 1024)
