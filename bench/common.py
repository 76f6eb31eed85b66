"""Helpers shared by the benchmarks: where results go and how they are written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cityline.wiring import SCHEMA_FILES
from pbx.asterisk import find_asterisk
from tests.support.asterisk import free_port
from tests.support.postgres import TemplateDatabases, stop_test_server, test_server_dsn

RESULTS = Path(__file__).with_name("results")
PROJECT = Path(__file__).resolve().parent.parent


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json with the machine and time next to the figures."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def find_pid(cmdline_part: str) -> int:
    """The process whose command line contains cmdline_part (our Asterisk instance)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmdline_part in cmdline and "chroot" not in cmdline.split()[0]:
                return int(entry.name)
    raise RuntimeError(f"no process with {cmdline_part!r}")


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds used, resident bytes) of a process and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


@dataclass
class ServiceUnderTest:
    """`cityline run` in its own process (its CPU and memory are its own), on loopback ports."""

    process: asyncio.subprocess.Process
    env: dict[str, str]
    http_port: int
    sip_port: int
    admin_token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def asterisk_pid(self) -> int:
        return find_pid(f"/var/lib/cityline/{self.env['CITYLINE_INSTANCE']}/etc/asterisk.conf")


@asynccontextmanager
async def service_process(rtp_ports: int = 1000) -> AsyncIterator[ServiceUnderTest]:
    """A whole CityLine (own Asterisk, fresh database) for a benchmark; all removed after."""
    templates = TemplateDatabases(await test_server_dsn(), SCHEMA_FILES)
    await templates.create_template()
    state = Path(tempfile.mkdtemp(prefix="cityline-bench-"))
    http_port, sip_port = free_port(), free_port(udp_too=True)
    rtp = random.randrange(30000, 38000, 2)
    env = {
        **os.environ,
        "CITYLINE_DATABASE_DSN": await templates.fresh(),
        "CITYLINE_STATE_DIR": str(state),
        "CITYLINE_RECORDINGS_DIR": str(state / "recordings"),
        "CITYLINE_INSTANCE": f"bench-{secrets.token_hex(4)}",
        "CITYLINE_HTTP_PORT": str(http_port),
        "CITYLINE_SIP_PORT": str(sip_port),
        "CITYLINE_AMI_PORT": str(free_port()),
        "CITYLINE_AGI_PORT": str(free_port()),
        "CITYLINE_ASTERISK_HTTP_PORT": str(free_port()),
        "CITYLINE_RTP_START": str(rtp),
        "CITYLINE_RTP_END": str(rtp + rtp_ports),
        "CITYLINE_ADMIN_TOKEN": secrets.token_urlsafe(16),
        "CITYLINE_LOG_LEVEL": "WARNING",
    }
    try:
        process = await _start(env, http_port)
        try:
            yield ServiceUnderTest(process, env, http_port, sip_port, env["CITYLINE_ADMIN_TOKEN"])
        finally:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)
    finally:
        await templates.drop_all()
        await stop_test_server()
        shutil.rmtree(state, ignore_errors=True)
        # The service's Asterisk instance directory (inside the sandbox when there is one).
        location = find_asterisk()
        root = location.sandbox_root or Path("/var/cache/cityline/instances")
        shutil.rmtree(root / "var/lib/cityline" / env["CITYLINE_INSTANCE"], ignore_errors=True)


async def _start(env: dict[str, str], http_port: int) -> asyncio.subprocess.Process:
    service_log = Path(env["CITYLINE_STATE_DIR"]) / "service.log"
    with service_log.open("w") as log_file:
        proc = await asyncio.create_subprocess_exec(
            str(PROJECT / ".venv/bin/cityline"), "run",
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"http://127.0.0.1:{http_port}/api/me") as response:
                    if response.status == 401:
                        return proc
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None:
                raise RuntimeError("cityline run exited during start-up; see service.log")
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("cityline run did not answer within 30 s")
