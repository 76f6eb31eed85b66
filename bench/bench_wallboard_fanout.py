"""The wallboard fan-out: 500 supervisors' screens on one CityLine, and one that never reads.

Runs `cityline run` as its own process (its CPU and memory are its own) and, from this process,
opens N WebSocket viewers of /ws/wallboard (aiohttp, TCPConnector(limit=0)) while a driver
changes an agent's ACD state every second through the supervisor API, so every second brings a
new computed state. Measured:

  delivery latency  the state's "at" (when the service computed it) to its arrival at a viewer,
                    over every viewer and every state, p50 / p95 / max
  delivered         states each viewer got out of the states the service published meanwhile
  service           CPU % and RSS, idle and with the viewers connected
  slow viewer       phase two adds a viewer that never reads (its receive buffer held at 4 KiB):
                    when the service cut it off, and the others' latency while it was there

    .venv/bin/python -m bench.bench_wallboard_fanout [--viewers 500] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import percentile, proc_usage, service_process, write_result

PASSWORD = "bench password 1"
SLOW_RCVBUF = 4096


class Viewer:
    """One screen: records when each state arrived, by the state's own time."""

    def __init__(self) -> None:
        self.arrivals: dict[float, float] = {}  # state "at" -> arrival (wall clock)
        self.closed_by_server = False
        self.bytes = 0

    async def watch(self, ws: aiohttp.ClientWebSocketResponse, until: float) -> None:
        while time.time() < until:
            try:
                msg = await ws.receive(timeout=max(0.1, until - time.time()))
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                self.closed_by_server = msg.type in (
                    aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                )  # fmt: skip
                break
            received = time.time()
            self.bytes += len(msg.data)
            # The state's time is near the front; finding it is cheaper than parsing it all,
            # so the viewers' own parsing does not count as the service's latency.
            start = msg.data.find('"at": ') + 6
            self.arrivals[float(msg.data[start : msg.data.find(",", start)])] = received


async def api(
    http: aiohttp.ClientSession, base: str, path: str, token: str, body: Any
) -> dict[str, Any]:
    async with http.post(
        f"{base}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        data = await response.json()
        if response.status >= 300:
            raise RuntimeError(f"{path}: {response.status} {data}")
        return dict(data)


async def drive(
    http: aiohttp.ClientSession, base: str, admin: str, agents: list[str], until: float
) -> int:
    """An ACD change every second: one agent goes ready or pauses, in turn."""
    changes = 0
    ready = set()
    while time.time() < until:
        agent = agents[changes % len(agents)]
        if agent in ready:
            body: dict[str, str] = {"state": "paused", "reason": "break"}
            ready.discard(agent)
        else:
            body = {"state": "ready"}
            ready.add(agent)
        await api(http, base, f"/api/agents/{agent}/state", admin, body)
        changes += 1
        await asyncio.sleep(1.0)
    return changes


async def open_slow_viewer(port: int, token: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)  # before connect
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws/wallboard?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    async with asyncio.timeout(10):
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 1)  # byte by byte: leave the frames unread
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"slow viewer refused: {head[:80]!r}")
    return sock


async def drained_until_closed(sock: socket.socket, within: float = 10.0) -> bool:
    """Read what is left; True when the service had closed (or reset) the connection."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            while await loop.sock_recv(sock, 65536):
                pass
        return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def latency_figures(viewers: list[Viewer], start: float, end: float) -> dict[str, Any]:
    """Latency over the states computed in [start, end), and how many of them arrived."""
    published = sorted({at for v in viewers for at in v.arrivals if start <= at < end})
    latencies = [
        (arrived - at) * 1000
        for v in viewers
        for at, arrived in v.arrivals.items()
        if start <= at < end
    ]
    delivered = sum(1 for v in viewers for at in v.arrivals if start <= at < end)
    if not latencies:
        return {"states": 0}
    return {
        "states": len(published),
        "per_second": round(len(published) / (end - start), 2),
        "delivered_percent": round(100.0 * delivered / (len(published) * len(viewers)), 2),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 1),
            "p95": round(percentile(latencies, 0.95), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies), 1),
        },
    }


def cut_off_times(service_log: Path) -> list[float]:
    times = []
    for line in service_log.read_text(errors="replace").splitlines():
        if "wallboard_viewer_too_slow" in line:
            try:
                stamp = json.loads(line)["timestamp"]  # UTC, ISO 8601
                times.append(datetime.fromisoformat(stamp).timestamp())
            except (ValueError, KeyError):
                continue
    return times


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=30, help="length of each phase")
    parser.add_argument("--agents", type=int, default=20)
    args = parser.parse_args()
    if not 1 <= args.viewers <= 5000 or not 5 <= args.seconds <= 600:
        parser.error("viewers 1-5000, seconds 5-600")

    figures: dict[str, Any] = {"viewers": args.viewers, "agents": args.agents}
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    slow: socket.socket | None = None
    async with service_process(rtp_ports=200) as service:
        base, admin, env = service.url, service.admin_token, service.env
        http_port = service.http_port
        try:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                agents = [f"agent{i:03d}" for i in range(args.agents)]
                for name in agents:
                    await api(
                        http,
                        base,
                        "/api/agents",
                        admin,
                        {"name": name, "password": PASSWORD, "skills": {"lang:pl": 3}},
                    )
                    await api(http, base, "/api/login", admin, {"name": name, "password": PASSWORD})
                await api(http, base, "/api/agents", admin,
                          {"name": "boss", "password": PASSWORD, "role": "supervisor"})  # fmt: skip
                boss = {"name": "boss", "password": PASSWORD}
                token = (await api(http, base, "/api/login", admin, boss))["token"]

                await asyncio.sleep(2)
                cpu0, rss_idle = proc_usage(service.pid)
                t0 = time.monotonic()
                await asyncio.sleep(5)
                idle_cpu = (proc_usage(service.pid)[0] - cpu0) / (time.monotonic() - t0)

                url = f"{base.replace('http', 'ws')}/ws/wallboard?token={token}"
                opened = time.monotonic()
                for first in range(0, args.viewers, 50):
                    sockets += await asyncio.gather(
                        *(http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5))
                          for _ in range(first, min(first + 50, args.viewers)))
                    )  # fmt: skip
                figures["connect_seconds"] = round(time.monotonic() - opened, 2)
                viewers = [Viewer() for _ in sockets]

                # Phase one: every viewer reads. Phase two: one more never does.
                phase_one = time.time() + 2.0  # the welcome messages are behind us by then
                phase_two = phase_one + args.seconds
                end = phase_two + args.seconds
                watching = [
                    asyncio.create_task(v.watch(ws, end + 2.0))
                    for v, ws in zip(viewers, sockets, strict=True)
                ]
                driver = asyncio.create_task(drive(http, base, admin, agents, end))
                await asyncio.sleep(phase_one - time.time())
                cpu1, _ = proc_usage(service.pid)
                t1 = time.monotonic()
                await asyncio.sleep(phase_two - time.time())
                viewers_cpu = (proc_usage(service.pid)[0] - cpu1) / (time.monotonic() - t1)
                rss_viewers = proc_usage(service.pid)[1]
                slow = await open_slow_viewer(http_port, token)
                slow_opened = time.time()
                cpu2, _ = proc_usage(service.pid)
                t2 = time.monotonic()
                await asyncio.sleep(end - time.time())
                slow_cpu = (proc_usage(service.pid)[0] - cpu2) / (time.monotonic() - t2)
                rss_peak = max(rss_viewers, proc_usage(service.pid)[1])
                changes = await driver
                await asyncio.gather(*watching)
                slow_closed = await drained_until_closed(slow)
                cuts = [t for t in cut_off_times(Path(env["CITYLINE_STATE_DIR"]) / "service.log")
                        if t >= slow_opened - 1]  # fmt: skip

                sizes = [v.bytes / max(1, len(v.arrivals)) for v in viewers]
                figures.update(
                    {
                        "acd_changes": changes,
                        "message_bytes": round(statistics.mean(sizes)),
                        "all_reading": latency_figures(viewers, phase_one, phase_two),
                        "with_slow_viewer": latency_figures(viewers, phase_two, end),
                        "viewers_closed_by_service": sum(v.closed_by_server for v in viewers),
                        "slow_viewer": {
                            "cut_off": bool(cuts) and slow_closed,
                            "cut_off_after_seconds": (
                                round(cuts[0] - slow_opened, 1) if cuts else None
                            ),
                        },
                        "service": {
                            "idle_cpu_percent": round(idle_cpu * 100, 1),
                            "cpu_percent_with_viewers": round(viewers_cpu * 100, 1),
                            "cpu_percent_with_slow_viewer": round(slow_cpu * 100, 1),
                            "idle_rss_mib": round(rss_idle / 2**20, 1),
                            "rss_mib_with_viewers": round(rss_peak / 2**20, 1),
                        },
                    }
                )
                for ws in sockets:
                    await ws.close()
        finally:
            if slow is not None:
                slow.close()

    path = write_result("wallboard_fanout", figures)
    one, two, svc = figures["all_reading"], figures["with_slow_viewer"], figures["service"]
    print(
        f"viewers               {args.viewers} (connected in {figures['connect_seconds']} s),"
        f" {figures['acd_changes']} ACD changes, {figures['message_bytes']} bytes a state"
    )
    for label, phase in (("all reading", one), ("+ a stuck viewer", two)):
        lat = phase["latency_ms"]
        print(
            f"{label:<22}{phase['states']} states ({phase['per_second']}/s),"
            f" delivered {phase['delivered_percent']}%; latency p50 {lat['p50']} ms,"
            f" p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"
        )
    cut = figures["slow_viewer"]
    print(
        f"stuck viewer          cut off: {cut['cut_off']}"
        f" after {cut['cut_off_after_seconds']} s; other viewers closed:"
        f" {figures['viewers_closed_by_service']}"
    )
    print(
        f"service               CPU {svc['cpu_percent_with_viewers']}% with viewers"
        f" ({svc['cpu_percent_with_slow_viewer']}% with the stuck one, idle"
        f" {svc['idle_cpu_percent']}%); RSS {svc['rss_mib_with_viewers']} MiB"
        f" (idle {svc['idle_rss_mib']} MiB)"
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
