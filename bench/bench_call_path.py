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
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

import aiohttp

from bench.common import percentile, proc_usage, service_process, write_result
from cityline.simulated.sipp import call_with_keys
from tests.support.desk import AgentAtDesk

KEY_END_OFFSET = 0.140  # the end packet of sip-tester's key pcaps, after the key starts


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

    desks: list[AgentAtDesk] = []
    figures: dict[str, Any] = {}
    async with service_process() as service:
        city = SimpleNamespace(admin_token=service.admin_token, http_port=service.http_port)
        sip_port = service.sip_port
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
                asterisk_pid = service.asterisk_pid()
                asterisk_cpu_before = proc_usage(asterisk_pid)[0]
                for batch in range(0, args.calls, args.parallel):
                    count = min(args.parallel, args.calls - batch)
                    results = await asyncio.gather(
                        *(one_call(sip_port, desks, batch + k) for k in range(count))
                    )
                    samples.extend(r for r in results if r is not None)
                service_cpu = proc_usage(service.pid)[0] - cpu_before
                asterisk_cpu = proc_usage(asterisk_pid)[0] - asterisk_cpu_before
                measured = max(len(samples), 1)
                key_to_ring = [s["key_to_ring"] * 1000 for s in samples]
                ring_to_pop = [s["ring_to_pop"] * 1000 for s in samples]
                figures["calls"] = {
                    "attempted": args.calls, "measured": len(samples),
                    "parallel": args.parallel, "seconds": round(time.time() - started, 1),
                    "key_to_ring_ms": {"median": round(statistics.median(key_to_ring), 1),
                                       "p95": round(percentile(key_to_ring, 0.95), 1),
                                       "max": round(max(key_to_ring), 1)},
                    "service_cpu_ms_per_call": round(service_cpu * 1000 / measured, 1),
                    "asterisk_cpu_ms_per_call": round(asterisk_cpu * 1000 / measured, 1),
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
