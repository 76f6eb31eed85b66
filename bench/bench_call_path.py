"""How fast a resident's call reaches an agent, and what each call costs the service.

Runs the real stack: `cityline run` as its own process (so its CPU and memory are its own),
its Asterisk, sipp residents pressing keys, pyVoIP agents, one desktop WebSocket per agent.

Measured per call:
  key -> ring   from the end of the resident's last key press (the RFC 2833 end packet, 140 ms
                after the key starts in sip-tester's pcaps) to the INVITE reaching the agent's phone
  ring -> pop   from that INVITE to the screen-pop arriving on the agent's desktop socket
                (negative: the pop arrived first; both leave the service together)
Then N residents wait in the queue at once (nobody ready): the service's CPU and memory per
concurrent call against the idle service.

    .venv/bin/python -m bench.bench_call_path [--calls 50] [--parallel 5] [--hold 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from bench.common import write_result
from cityline.service import SCHEMA_FILES
from cityline.simulated.sipp import call_with_keys
from pbx.asterisk import find_asterisk
from tests.support.asterisk import free_port
from tests.support.desk import AgentAtDesk
from tests.support.postgres import TemplateDatabases, stop_test_server, test_server_dsn

KEY_END_OFFSET = 0.140  # the end packet of sip-tester's key pcaps, after the key starts
PROJECT = Path(__file__).resolve().parent.parent


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


async def start_service(env: dict[str, str], http_port: int) -> asyncio.subprocess.Process:
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
    raise RuntimeError("cityline run did not answer within 30 s")


async def one_call(sip_port: int, desks: list[AgentAtDesk], index: int) -> dict[str, float] | None:
    caller = f"48500{index:06d}"
    result = await call_with_keys(
        sip_port, [(0.6, "2"), (0.6, "1")], caller=caller, hold_seconds=20
    )
    if not result.ok or len(result.keys_sent_at) < 2:
        print(f"call {index}: failed ({result.errors.strip()[:200]})", file=sys.stderr)
        return None
    last_key = result.keys_sent_at[-1] + KEY_END_OFFSET
    for desk in desks:
        for received_at, message in desk.received:
            if message.get("type") == "pop" and message.get("caller_number") == caller:
                assert desk.phone is not None
                rings = [t for t in desk.phone.ring_times if t >= last_key - 1.0]
                ring = min(rings, key=lambda t: abs(t - last_key))
                return {"key_to_ring": ring - last_key, "ring_to_pop": received_at - ring}
    print(f"call {index}: no pop found", file=sys.stderr)
    return None


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=5)
    parser.add_argument("--hold", type=int, default=20, help="concurrent queued calls")
    args = parser.parse_args()

    templates = TemplateDatabases(await test_server_dsn(), SCHEMA_FILES)
    await templates.create_template()
    state = Path(tempfile.mkdtemp(prefix="cityline-bench-"))
    http_port = free_port()
    sip_port = free_port(udp_too=True)
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
        "CITYLINE_RTP_END": str(rtp + 1000),
        "CITYLINE_ADMIN_TOKEN": secrets.token_urlsafe(16),
        "CITYLINE_LOG_LEVEL": "WARNING",
    }
    service = await start_service(env, http_port)
    city = SimpleNamespace(admin_token=env["CITYLINE_ADMIN_TOKEN"], http_port=http_port)
    desks: list[AgentAtDesk] = []
    figures: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(args.parallel):
                desk = AgentAtDesk(
                    city,
                    http,
                    f"bench{i}",
                    {"lang:en": 4, "lang:pl": 4, "group:roads": 4},  # type: ignore[arg-type]
                    answer_after=0.2,
                    talk_seconds=0.5,
                )
                desks.append(await desk.arrive())
            samples: list[dict[str, float]] = []
            started = time.time()
            cpu_before = proc_usage(service.pid)[0]
            asterisk_pid = find_pid(
                f"/var/lib/cityline/{env['CITYLINE_INSTANCE']}/etc/asterisk.conf"
            )
            asterisk_cpu_before = proc_usage(asterisk_pid)[0]
            for batch in range(0, args.calls, args.parallel):
                count = min(args.parallel, args.calls - batch)
                results = await asyncio.gather(
                    *(one_call(sip_port, desks, batch + k) for k in range(count))
                )
                samples.extend(r for r in results if r is not None)
            service_cpu = proc_usage(service.pid)[0] - cpu_before
            asterisk_cpu = proc_usage(asterisk_pid)[0] - asterisk_cpu_before
            key_to_ring = [s["key_to_ring"] * 1000 for s in samples]
            ring_to_pop = [s["ring_to_pop"] * 1000 for s in samples]
            figures["calls"] = {
                "attempted": args.calls, "measured": len(samples),
                "parallel": args.parallel, "seconds": round(time.time() - started, 1),
                "key_to_ring_ms": {"median": round(statistics.median(key_to_ring), 1),
                                   "p95": round(percentile(key_to_ring, 0.95), 1),
                                   "max": round(max(key_to_ring), 1)},
                "service_cpu_ms_per_call": round(service_cpu * 1000 / max(len(samples), 1), 1),
                "asterisk_cpu_ms_per_call": round(asterisk_cpu * 1000 / max(len(samples), 1), 1),
                "ring_to_pop_ms": {"median": round(statistics.median(ring_to_pop), 1),
                                   "p95": round(percentile(ring_to_pop, 0.95), 1),
                                   "max": round(max(ring_to_pop), 1)},
            }  # fmt: skip

            for desk in desks:
                await desk.set_state("paused", "bench")
            await asyncio.sleep(2)
            cpu0, rss_idle = proc_usage(service.pid)
            t0 = time.monotonic()
            await asyncio.sleep(10)
            idle_cpu = (proc_usage(service.pid)[0] - cpu0) / (time.monotonic() - t0)
            holders = [
                asyncio.create_task(
                    call_with_keys(sip_port, [(0.6, "1"), (0.6, "1")], caller=f"48700{i:06d}",
                                   hang_up_after=40, timeout=60)
                )
                for i in range(args.hold)
            ]  # fmt: skip
            await asyncio.sleep(12)  # every caller through the IVR and waiting with music
            cpu1, rss_held = proc_usage(service.pid)
            ast_cpu1, ast_rss = proc_usage(asterisk_pid)
            t1 = time.monotonic()
            await asyncio.sleep(15)
            held_cpu = (proc_usage(service.pid)[0] - cpu1) / (time.monotonic() - t1)
            ast_held_cpu = (proc_usage(asterisk_pid)[0] - ast_cpu1) / (time.monotonic() - t1)
            rss_peak = max(rss_held, proc_usage(service.pid)[1])
            await asyncio.gather(*holders)
            figures["concurrent_calls"] = {
                "calls": args.hold,
                "service_idle_cpu_percent": round(idle_cpu * 100, 2),
                "service_cpu_percent_with_calls": round(held_cpu * 100, 2),
                "cpu_percent_per_call": round((held_cpu - idle_cpu) * 100 / args.hold, 3),
                "service_idle_rss_mib": round(rss_idle / 2**20, 1),
                "service_rss_mib_with_calls": round(rss_peak / 2**20, 1),
                "rss_kib_per_call": round((rss_peak - rss_idle) / 1024 / args.hold, 1),
                "asterisk_cpu_percent_with_calls": round(ast_held_cpu * 100, 2),
                "asterisk_rss_mib_with_calls": round(ast_rss / 2**20, 1),
            }
    finally:
        for desk in desks:
            await desk.leave()
        service.send_signal(signal.SIGTERM)
        await asyncio.wait_for(service.wait(), 30)
        await templates.drop_all()
        await stop_test_server()
        shutil.rmtree(state, ignore_errors=True)
        # The service's Asterisk instance directory (inside the sandbox when there is one).
        location = find_asterisk()
        root = location.sandbox_root or Path("/var/cache/cityline/instances")
        shutil.rmtree(root / "var/lib/cityline" / env["CITYLINE_INSTANCE"], ignore_errors=True)

    path = write_result("call_path", figures)
    c, h = figures["calls"], figures["concurrent_calls"]
    k2r, r2p = c["key_to_ring_ms"], c["ring_to_pop_ms"]
    print(f"calls measured        {c['measured']}/{c['attempted']} ({c['parallel']} at a time)")
    print(f"last key -> ring      median {k2r['median']} ms, p95 {k2r['p95']} ms")
    print(f"ring -> screen-pop    median {r2p['median']} ms, p95 {r2p['p95']} ms")
    print(
        f"CPU per handled call  service {c['service_cpu_ms_per_call']} ms,"
        f" Asterisk {c['asterisk_cpu_ms_per_call']} ms"
    )
    print(
        f"{h['calls']} calls queued    service CPU {h['service_cpu_percent_with_calls']}%"
        f" (idle {h['service_idle_cpu_percent']}%), {h['cpu_percent_per_call']}% per call;"
        f" RSS {h['service_rss_mib_with_calls']} MiB (idle {h['service_idle_rss_mib']}),"
        f" {h['rss_kib_per_call']} KiB per call"
    )
    print(
        f"                      Asterisk CPU {h['asterisk_cpu_percent_with_calls']}%,"
        f" RSS {h['asterisk_rss_mib_with_calls']} MiB"
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
