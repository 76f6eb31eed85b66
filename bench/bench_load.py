"""Load and soak: how many concurrent calls CityLine and its Asterisk carry on this machine.

Runs the real stack: `cityline run` as its own process, its Asterisk, PostgreSQL. The load
comes from a light generator, a few sipp processes rather than one per call
(cityline/simulated/sipp_load.py):

  residents  ONE sipp UAC per phase: dials 19115, presses 2 (English) and 1 (roads and street
             lighting) as RFC 2833 keys, waits in the queue, talks, answers the PBX's BYE.
             `-l N` holds N calls on the line at once, `-r` fills them (1.25 times the rate
             that keeps N calls of the expected length going), `-m` bounds the total
  agents     ONE sipp UAS for the whole run answers for every agent: the agents are made with
             POST /api/agents, logged in (/api/login) and set ready (/api/me/state), and their
             SIP endpoints are registered (one short sipp run, an injection file of usernames
             and passwords) with the Contact on that process's port. It answers after
             --answer-after, talks for a time drawn from --talk, and hangs up
  media      by default the agents stream audio (sipp rtp_stream) and the residents echo what
             they hear (-rtp_echo), so every call carries RTP both ways on both legs through
             Asterisk, as a conversation does, and the recordings are not silence; --no-media
             measures the signalling alone

Measured per concurrency step (--steps), for --step-seconds of calling plus the drain:
  key -> ring   from the end of the resident's last key (the key's log line in the residents'
                sipp plus the 140 ms to the pcap's RFC 2833 end packet) to the INVITE reaching
                the agent (the agents' sipp log line), both sipp's [timestamp], same clock;
                p50 / p95 / max over every call of the step. The call records split it: key
                end -> IVR done -> offered -> ring
  lost          resident calls that never reached an agent (no answered INVITE on the agents'
                side); sipp's own failed-call counter besides
  records       every resident call must have exactly one call record in PostgreSQL, outcome
                answered, arrival, IVR end, queued, offered, answered and ended times, agent and
                recording, routed English / roads (a call routed elsewhere lost a key in the IVR)
  CPU           of the service, Asterisk, the generator (both sipp), the service's PostgreSQL
                backends and this driver, from /proc, as % of one core; the machine's total
Stepping stops at the first step whose p95 reaches --p95-limit-ms or that loses a call or a
record. Then the soak: --soak-concurrent calls for --soak-seconds, the same figures plus the
service's and Asterisk's RSS every --sample-seconds and their least-squares slope (MB/hour).

    .venv/bin/python -m bench.bench_load [--steps 50,100,200,300,400] [--step-seconds 90]
        [--soak-concurrent 200] [--soak-seconds 600] [--talk 30-60] [--no-media]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import ServiceUnderTest, percentile, service_process, write_result
from cityline.simulated.sipp import free_udp_port
from cityline.simulated.sipp_load import (
    KEY_END_OFFSET,
    CallTimes,
    SippProcess,
    calls_by_number,
    error_summary,
    kill_on_exit,
    register_agents,
    start_agent_phones,
    start_residents,
    talk_times,
)
from pbx.asterisk import find_asterisk

PASSWORD = "load bench password 1"
# The keypad path: 2 = English at the language menu, 1 = roads and street lighting. The first
# key waits out Asterisk's Answer() (up to 500 ms for the caller's first audio) and the start
# of the AGI session; the second leaves the IVR time to start the group menu.
KEYS = ((2.0, "2"), (1.5, "1"))
EXPECTED_ROUTE = ("en", "roads")
# Every agent takes the path's calls, and calls a lost key sends elsewhere (Polish, "other").
SKILLS = {"lang:en": 4, "lang:pl": 4, "group:roads": 4, "group:other": 4}
# sipp's -r: this many times the rate that keeps N calls going, so a step fills up quickly.
FILL_FACTOR = 1.25
# Asterisk's RTP ports per concurrent call: two legs, each an RTP and an RTCP port, and room
# for its random choice within the range.
RTP_PORTS_PER_CALL = 8
# Generator ports: sipp's SIP ports and the residents' echo port below Asterisk's RTP range
# (bench/common.py puts it in 30000-42000), the agents' per-call RTP ports above it.
LOW_PORTS = (20000, 29900)
AGENT_MEDIA_PORT = 45000
REGISTER_EXPIRES = 3600
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=60)
# The recordings service gives up on a file after 20 s; a little more than that.
RECORD_WAIT_SECONDS = 40.0
READY_WAIT_SECONDS = 30.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- /proc -------------------------------------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[21]) * PAGE / 2**20


def runqueue_wait_seconds(pid: int) -> float | None:
    """Seconds a thread (the process's main thread for a pid) has spent runnable but waiting
    for a CPU (/proc/<pid>/schedstat, second field)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def thread_states(pid: int) -> dict[str, int]:
    """A process's threads, and how many of them are runnable right now."""
    threads = runnable = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return {"threads": 0, "runnable": 0}
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        threads += 1
        runnable += state == "R"
    return {"threads": threads, "runnable": runnable}


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / TICKS


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    """CPU of this process's children that have ended (the residents' sipp of a phase)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def what_else_runs() -> dict[str, Any]:
    """Load average and the busiest processes, to read the figures against."""
    top = subprocess.run(
        ["ps", "-eo", "pid,pcpu,rss,etimes,comm", "--sort=-pcpu"],
        capture_output=True, text=True, timeout=10, check=False,
    ).stdout.splitlines()[:12]  # fmt: skip
    return {
        "at": time.strftime("%H:%M:%S"),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "top": top,
    }


def slope_per_hour(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) samples, in MiB per hour."""
    if len(samples) < 3:
        return None
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 3600


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    return {
        "n": len(values),
        "p50": round(percentile(list(values), 0.50), 1),
        "p95": round(percentile(list(values), 0.95), 1),
        "max": round(max(values), 1),
    }


class PostgresBackends:
    """CPU of the PostgreSQL backends serving the service's database (pg_stat_activity pids).

    Sampled: a backend's CPU counts from when it is first seen (from zero when it appeared
    during the phase); a backend that ends between samples loses its last interval."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}

    async def _pids(self) -> list[int]:
        rows = await self._conn.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [r["pid"] for r in rows]

    async def start(self) -> None:
        self._base, self._last = {}, {}
        for pid in await self._pids():
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self._base[pid] = self._last[pid] = cpu

    async def sample(self) -> None:
        for pid in await self._pids():
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self._base.setdefault(pid, 0.0)
                self._last[pid] = cpu

    def used(self) -> float:
        return sum(self._last[pid] - self._base[pid] for pid in self._last)


# -- agents ------------------------------------------------------------------------------------
@dataclass
class Agent:
    name: str
    token: str = ""
    sip_user: str = ""
    sip_password: str = ""


async def _each(items: Sequence[Any], at_once: int, work: Callable[[Any], Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(at_once)

    async def one(item: Any) -> None:
        async with gate:
            await work(item)

    await asyncio.gather(*(one(item) for item in items))


async def make_agents(
    http: aiohttp.ClientSession, service: ServiceUnderTest, count: int
) -> list[Agent]:
    """Create, log in and set ready `count` agents through the HTTP API."""
    agents = [Agent(f"load{i:04d}") for i in range(1, count + 1)]
    admin = {"Authorization": f"Bearer {service.admin_token}"}

    async def create(agent: Agent) -> None:
        body = {"name": agent.name, "password": PASSWORD, "skills": SKILLS}
        async with http.post(f"{service.url}/api/agents", json=body, headers=admin) as r:
            data = await r.json()
            if r.status != 201:
                raise RuntimeError(f"creating {agent.name}: {r.status} {data}")
        agent.sip_user, agent.sip_password = data["sip"]["username"], data["sip"]["password"]

    async def login(agent: Agent) -> None:
        body = {"name": agent.name, "password": PASSWORD}
        async with http.post(f"{service.url}/api/login", json=body) as r:
            data = await r.json()
            if r.status != 200:
                raise RuntimeError(f"log-in of {agent.name}: {r.status} {data}")
        agent.token = data["token"]

    # One at a time: each creation rewrites Asterisk's agents and reloads PJSIP.
    await _each(agents, 1, create)
    await _each(agents, 4, login)
    return agents


async def set_ready(http: aiohttp.ClientSession, service: ServiceUnderTest, agent: Agent) -> None:
    """Ask for ready; a refusal (a call offered meanwhile) shows in the next look at the ACD."""
    async with http.post(
        f"{service.url}/api/me/state",
        json={"state": "ready"},
        headers={"Authorization": f"Bearer {agent.token}"},
    ):
        pass


async def agent_states(
    http: aiohttp.ClientSession, service: ServiceUnderTest
) -> dict[str, dict[str, Any]]:
    async with http.get(
        f"{service.url}/api/agents", headers={"Authorization": f"Bearer {service.admin_token}"}
    ) as r:
        return {a["name"]: a.get("acd", {}) for a in await r.json()}


async def all_ready(
    http: aiohttp.ClientSession, service: ServiceUnderTest, agents: Sequence[Agent]
) -> dict[str, int]:
    """Set every agent ready (again) and wait until the ACD has them all ready and reachable."""
    by_name = {a.name: a for a in agents}
    deadline = time.monotonic() + READY_WAIT_SECONDS
    while True:
        states = await agent_states(http, service)
        ours = {name: states.get(name, {}) for name in by_name}
        not_ready = [n for n, s in ours.items() if s.get("state") != "ready"]
        unreachable = [n for n, s in ours.items() if not s.get("reachable")]
        if (not not_ready and not unreachable) or time.monotonic() > deadline:
            return {"agents": len(ours), "not_ready": len(not_ready),
                    "unreachable": len(unreachable)}  # fmt: skip
        await _each([by_name[n] for n in not_ready], 8, lambda a: set_ready(http, service, a))
        await asyncio.sleep(0.5)


# -- one phase: N calls at once for a while ----------------------------------------------------
@dataclass
class Bench:
    args: argparse.Namespace
    service: ServiceUnderTest
    http: aiohttp.ClientSession
    db: asyncpg.Connection
    agents: list[Agent]
    agent_phones: SippProcess
    work: Path
    asterisk_pid: int
    agents_port: int
    talk: list[float]
    phases: int = 0
    residents: list[SippProcess] = field(default_factory=list)

    @property
    def expected_call_seconds(self) -> float:
        """From the answer to the agent's hang-up, when nobody waits for an agent."""
        return sum(d for d, _ in KEYS) + 0.5 + self.args.answer_after + statistics.fmean(self.talk)

    async def register(self) -> int:
        registered = await register_agents(
            self.service.sip_port,
            [(a.sip_user, a.sip_password) for a in self.agents],
            work=self.work / "register",
            agents_port=self.agents_port,
            local_port=free_udp_port(low=LOW_PORTS[0], high=LOW_PORTS[1]),
            expires=REGISTER_EXPIRES,
        )
        return len(registered)

    async def phase(self, label: str, concurrent: int, seconds: float) -> dict[str, Any]:
        self.phases += 1
        prefix = f"48{self.phases:02d}"
        registered = await self.register()
        readiness = await all_ready(self.http, self.service, self.agents)
        if registered < len(self.agents) or readiness["not_ready"] or readiness["unreachable"]:
            log(f"{label}: agents registered {registered}/{len(self.agents)}, {readiness}")
        rate = FILL_FACTOR * concurrent / self.expected_call_seconds
        max_calls = concurrent + math.ceil(rate * seconds)
        # Room for a call whose keys the IVR missed (its menus retry for about a minute).
        patience = self.args.patience or (max(self.talk) + 120.0)
        log(f"{label}: {concurrent} calls at once for {seconds:.0f} s"
            f" (sipp -r {rate:.2f} -l {concurrent}), numbers {prefix}...")  # fmt: skip

        agent_errors_from = self.agent_phones.errors_size()
        pg = PostgresBackends(self.db)
        await pg.start()
        fill = concurrent / rate  # seconds until sipp has placed the first N calls
        t0, wall0 = time.monotonic(), time.time()
        at_start = self._cpu(pg, None)
        residents = await start_residents(
            self.service.sip_port,
            work=self.work / f"phase{self.phases:02d}",
            prefix=prefix,
            keys=KEYS,
            wait_seconds=patience,
            rate=rate,
            limit=concurrent,
            max_calls=max_calls,
            sip_local_port=free_udp_port(low=LOW_PORTS[0], high=LOW_PORTS[1]),
            media_port=free_udp_port(4, low=LOW_PORTS[0], high=LOW_PORTS[1]),
            echo=not self.args.no_media,
        )
        self.residents.append(residents)
        memory: list[dict[str, float | None]] = []
        stop_at = t0 + seconds
        # CPU while the calls are held: from the first sample after the fill-up to the stop.
        at_fill: tuple[float, dict[str, float]] | None = None
        waits_at_fill: dict[str, float | None] = {}
        seen_midway: dict[str, Any] | None = None
        while time.monotonic() < stop_at and residents.running:
            await asyncio.sleep(min(self.args.sample_seconds, max(0.0, stop_at - time.monotonic())))
            await pg.sample()
            now = time.monotonic() - t0
            if at_fill is None and now >= fill:
                at_fill = (now, self._cpu(pg, residents))
                waits_at_fill = self._waits(residents)
            if seen_midway is None and now >= (fill + seconds) / 2:
                seen_midway = await asyncio.to_thread(what_else_runs)
                seen_midway["asterisk_threads"] = await asyncio.to_thread(
                    thread_states, self.asterisk_pid
                )
                seen_midway["service_threads"] = await asyncio.to_thread(
                    thread_states, self.service.pid
                )
            memory.append({
                "t": round(now, 1),
                "service_mib": rss_mib(self.service.pid),
                "asterisk_mib": rss_mib(self.asterisk_pid),
                "calls": _current_calls(residents),
            })  # fmt: skip
        stopped_at = time.monotonic() - t0
        at_stop = self._cpu(pg, residents)
        waits_at_stop = self._waits(residents)
        residents.stop_calling()
        drain_limit = patience + 30.0
        log(f"{label}: stopped placing calls after {stopped_at:.0f} s; draining"
            f" (at most {drain_limit:.0f} s)")  # fmt: skip
        drained = True
        while await residents.wait(self.args.sample_seconds) is None:
            await pg.sample()
            if time.monotonic() - t0 > stopped_at + drain_limit:
                drained = False
                log(f"{label}: calls still up after the drain; killing the residents' sipp")
                await residents.kill()
                break
        await pg.sample()
        elapsed = time.monotonic() - t0
        at_end = self._cpu(pg, None)
        cpu_phase = _cpu_percent(at_start, at_end, elapsed)
        cpu_held = (
            _cpu_percent(at_fill[1], at_stop, stopped_at - at_fill[0])
            if at_fill is not None and stopped_at - at_fill[0] >= 1.0
            else None
        )

        figures = await self.judge(label, prefix, residents, wall0, fill, stopped_at)
        figures.update({
            "concurrent_target": concurrent,
            "sipp_rate_per_second": round(rate, 2),
            "placing_seconds": round(stopped_at, 1),
            "phase_seconds": round(elapsed, 1),
            "drained": drained,
            "agents": {"registered": registered, **readiness},
            # % of one core (200 = both cores): while the N calls were held, and over the
            # whole phase (fill-up and drain included).
            "cpu_percent_while_held": cpu_held,
            "cpu_held_window_seconds": [round(at_fill[0], 1), round(stopped_at, 1)]
            if at_fill
            else None,
            "cpu_percent_whole_phase": cpu_phase,
            "what_else_ran_midway": seen_midway,
            # While held: ms per second that the service's event loop thread and the
            # residents' sipp main thread were ready to run but waited for a CPU.
            "runqueue_wait_ms_per_second": _wait_rates(
                waits_at_fill, waits_at_stop, stopped_at - at_fill[0] if at_fill else 0.0
            ),
            "agents_sipp_errors": error_summary(self.agent_phones.errors_text(agent_errors_from)),
            "memory_samples": memory,
        })  # fmt: skip
        mean_calls = figures["concurrent_calls_while_placing"]["mean_after_fill"]
        if cpu_held and mean_calls:
            per_call = {
                k: round(cpu_held[k] / mean_calls, 3)
                for k in ("service", "asterisk", "postgres_backends")
            }
            per_call["generator"] = round(
                (cpu_held["generator_residents_sipp"] + cpu_held["generator_agents_sipp"])
                / mean_calls,
                3,
            )
            figures["cpu_percent_per_concurrent_call"] = per_call
        figures["memory"] = {
            "service_rss_mib": _first_last_max([m["service_mib"] for m in memory]),
            "asterisk_rss_mib": _first_last_max([m["asterisk_mib"] for m in memory]),
            # While the calls were held (after the fill-up, before the drain).
            "service_slope_mib_per_hour": _round(
                slope_per_hour(_window(memory, "service_mib", fill, stopped_at))
            ),
            "asterisk_slope_mib_per_hour": _round(
                slope_per_hour(_window(memory, "asterisk_mib", fill, stopped_at))
            ),
            "slope_window_seconds": [round(fill, 1), round(stopped_at, 1)],
        }
        return figures

    def _waits(self, residents: SippProcess) -> dict[str, float | None]:
        return {
            "service_event_loop": runqueue_wait_seconds(self.service.pid),
            "residents_sipp": runqueue_wait_seconds(residents.pid),
            "agents_sipp": runqueue_wait_seconds(self.agent_phones.pid),
        }

    def _cpu(self, pg: PostgresBackends, residents: SippProcess | None) -> dict[str, float]:
        """Cumulative CPU seconds of each party now. The residents' sipp is read from /proc
        while it runs (residents given), else from the ended children's total."""
        residents_cpu = (
            cpu_seconds(residents.pid) if residents is not None and residents.running else None
        )
        return {
            "service": cpu_seconds(self.service.pid) or 0.0,
            "asterisk": cpu_seconds(self.asterisk_pid) or 0.0,
            "generator_residents_sipp": residents_cpu
            if residents_cpu is not None
            else children_cpu_seconds(),
            "generator_agents_sipp": cpu_seconds(self.agent_phones.pid) or 0.0,
            "postgres_backends": pg.used(),
            "bench_driver": self_cpu_seconds(),
            "machine": machine_busy_seconds(),
        }

    async def judge(
        self,
        label: str,
        prefix: str,
        residents: SippProcess,
        started: float,
        fill: float,
        placing: float,
    ) -> dict[str, Any]:
        """Match the residents' calls with the agents' side and the call records."""
        calls = calls_by_number(residents.log_text(), prefix=prefix)
        agent_side = calls_by_number(self.agent_phones.log_text(), prefix=prefix)
        rows = await self._records(prefix, expected=len(calls))
        by_number: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            by_number.setdefault(row["caller_number"], []).append(row)

        reached = [n for n in calls if agent_side.get(n) and agent_side[n].first("ANSWER")]
        lost = sorted(set(calls) - set(reached))
        lost_by_reason: dict[str, int] = {}
        for number in lost:
            reason = _lost_reason(calls[number], agent_side.get(number), by_number.get(number))
            lost_by_reason[reason] = lost_by_reason.get(reason, 0) + 1
        ended_by_agent = [
            n for n in reached if calls[n].first("PBX_BYE") and agent_side[n].first("AGENT_BYE")
        ]
        caller_gave_up = [n for n in calls if calls[n].first("CALLER_BYE")]
        incomplete: dict[str, int] = {}
        misrouted: dict[str, int] = {}
        key_to_ring, key_to_ivr_end, ivr_end_to_offer, offer_to_ring = [], [], [], []
        answer_to_ivr = []  # the 200 OK to the service's first sight of the call (AGI)
        for number, events in calls.items():
            found = by_number.get(number, [])
            problem = _record_problem(found)
            if problem:
                incomplete[problem] = incomplete.get(problem, 0) + 1
            if not found:
                continue
            row = found[0]
            answered = events.first("ANSWERED")
            if answered is not None and row["arrived_at"] is not None:
                answer_to_ivr.append((row["arrived_at"].timestamp() - answered) * 1000)
            route = (row["language"], row["service_group"])
            if route != EXPECTED_ROUTE:
                # en/waste: a key taken twice; en/None: the group key missed; pl/...: the
                # language key missed (the IVR was not listening yet, or a key was lost).
                name = f"{route[0]}/{route[1] or 'none'}"
                misrouted[name] = misrouted.get(name, 0) + 1
                continue  # the last key is not what queued this call
            last_key = events.first(f"KEY{len(KEYS) - 1}")
            side = agent_side.get(number)
            if last_key is None or side is None or side.first("RING") is None:
                continue
            key_end = last_key + KEY_END_OFFSET
            ring = min((t for t in side.events["RING"] if t >= last_key), default=None)
            if ring is None:
                continue
            key_to_ring.append((ring - key_end) * 1000)
            if row["ivr_ended_at"] and row["offered_at"]:
                ivr_end, offered = row["ivr_ended_at"].timestamp(), row["offered_at"].timestamp()
                key_to_ivr_end.append((ivr_end - key_end) * 1000)
                ivr_end_to_offer.append((offered - ivr_end) * 1000)
                offer_to_ring.append((ring - offered) * 1000)
        stats = residents.stats()
        last = stats[-1] if stats else {}
        # Calls on the line each second while sipp was placing calls, and after the fill-up.
        on_line = [
            (at - started, int(r["CurrentCall"])) for r in stats
            if r.get("CurrentCall", "").isdigit()
            and (at := _stat_time(r)) is not None and at - started <= placing
        ]  # fmt: skip
        after_fill = [n for t, n in on_line if t >= fill]
        return {
            "label": label,
            "calls": {
                "placed": len(calls),
                "reached_agent": len(reached),
                "ended_by_agent_hanging_up": len(ended_by_agent),
                "lost": len(lost),
                "caller_gave_up": len(caller_gave_up),
                "lost_by_reason": lost_by_reason,
                "lost_examples": lost[:10],
                "sipp_successful": _int(last.get("SuccessfulCall(C)")),
                "sipp_failed": _int(last.get("FailedCall(C)")),
                "sipp_retransmissions": _int(last.get("Retransmissions(C)")),
                "sipp_errors": error_summary(residents.errors_text()),
            },
            "concurrent_calls_while_placing": {
                "max": max((n for _, n in on_line), default=0),
                "mean_after_fill": round(statistics.fmean(after_fill), 1) if after_fill else None,
                "min_after_fill": min(after_fill, default=None),
                "fill_seconds": round(fill, 1),
            },
            "records": {
                "rows": len(rows),
                "complete": len(calls) - sum(incomplete.values()),
                "incomplete": sum(incomplete.values()),
                "incomplete_by_reason": incomplete,
                "misrouted_ivr": sum(misrouted.values()),
                "misrouted_by_route": misrouted,
            },
            "key_to_ring_ms": spread(key_to_ring),
            # From the call records' times (the service's clock, the same machine's).
            "split_ms": {
                "answer_to_ivr_start": spread(answer_to_ivr),
                "key_end_to_ivr_done": spread(key_to_ivr_end),
                "ivr_done_to_offered": spread(ivr_end_to_offer),
                "offered_to_ring": spread(offer_to_ring),
            },
        }

    async def _records(self, prefix: str, expected: int) -> list[asyncpg.Record]:
        """The phase's call records, once every one of them has ended (or the wait is over)."""
        deadline = time.monotonic() + RECORD_WAIT_SECONDS
        while True:
            rows = await self.db.fetch(
                "SELECT caller_number, language, service_group, outcome, agent, offers,"
                " arrived_at, ivr_ended_at, queued_at, offered_at, answered_at, ended_at,"
                " recording_path FROM calls WHERE caller_number LIKE $1",
                prefix + "%",
            )
            # The recording is archived (and its path written) a moment after the call ends.
            open_rows = sum(
                1 for r in rows
                if r["ended_at"] is None or (r["outcome"] == "answered" and not r["recording_path"])
            )  # fmt: skip
            if (len(rows) >= expected and not open_rows) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(1.0)


REQUIRED = (
    "arrived_at", "ivr_ended_at", "queued_at", "offered_at", "answered_at", "ended_at",
    "agent", "recording_path",
)  # fmt: skip


def _lost_reason(
    resident: CallTimes, agent: CallTimes | None, rows: Sequence[asyncpg.Record] | None
) -> str:
    """Why a resident's call never reached an agent, from both sides and the record."""
    if resident.first("ANSWERED") is None:
        return "never answered by the PBX"
    if agent is None or agent.first("RING") is None:
        outcome = rows[0]["outcome"] if rows else "no record"
        return f"no agent rang ({outcome})"
    record = (
        "record says answered"
        if rows and rows[0]["outcome"] == "answered"
        else "record not answered"
    )
    return f"agent rang, never got the ACK ({record})"


def _record_problem(rows: Sequence[asyncpg.Record]) -> str | None:
    if not rows:
        return "no record"
    if len(rows) > 1:
        return "more than one record"
    row = rows[0]
    if row["outcome"] != "answered":
        return f"outcome {row['outcome']}"
    missing = [name for name in REQUIRED if row[name] is None]
    return f"missing {', '.join(missing)}" if missing else None


def _cpu_percent(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Each party's CPU between two snapshots as % of one core, the machine's total and
    what the machine spent on everything else (other work on it, the kernel)."""
    used = {k: after[k] - before[k] for k in before if k != "machine"}
    machine = after["machine"] - before["machine"]
    percent = {k: round(v * 100 / seconds, 1) for k, v in used.items()}
    percent["everything_else"] = round((machine - sum(used.values())) * 100 / seconds, 1)
    percent["machine_total"] = round(machine * 100 / seconds, 1)
    return percent


def _wait_rates(
    before: dict[str, float | None], after: dict[str, float | None], seconds: float
) -> dict[str, float] | None:
    if seconds <= 0:
        return None
    rates = {}
    for name, start in before.items():
        end = after.get(name)
        if start is not None and end is not None:
            rates[name] = round((end - start) * 1000 / seconds, 1)
    return rates


def _window(
    samples: Sequence[dict[str, float | None]], key: str, start: float, end: float
) -> list[tuple[float, float]]:
    """(time, value) of the samples taken from start to end seconds into the phase."""
    found = []
    for sample in samples:
        at, value = sample["t"], sample[key]
        if at is not None and value is not None and start <= at <= end:
            found.append((at, value))
    return found


def _stat_time(row: dict[str, str]) -> float | None:
    try:
        return float(row["CurrentTime"].split("\t")[-1])
    except (KeyError, ValueError, IndexError):
        return None


def _current_calls(process: SippProcess) -> int | None:
    stats = process.stats()
    return _int(stats[-1].get("CurrentCall")) if stats else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _first_last_max(values: Sequence[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"first": None, "last": None, "max": None}
    return {"first": round(present[0], 1), "last": round(present[-1], 1),
            "max": round(max(present), 1)}  # fmt: skip


# -- the logs ----------------------------------------------------------------------------------
def service_log_summary(path: Path, limit: int = 12) -> dict[str, int]:
    """Warnings and errors in the service's log (JSON lines), by level and event."""
    counts: dict[str, int] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        key = f"{entry.get('level', '?')} {entry.get('event', '?')}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1])[:limit])


def asterisk_log_summary(path: Path, limit: int = 12) -> dict[str, int]:
    """WARNING and ERROR lines of Asterisk's messages.log, numbers blanked, most frequent first."""
    import re

    counts: dict[str, int] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        match = re.search(r"\] (WARNING|ERROR)\[\d+\](?:\[[^\]]*\])?: (.*)$", line)
        if match:
            key = f"{match.group(1)} " + re.sub(r"\d+", "N", match.group(2))[:150]
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1])[:limit])


def asterisk_log_path(service: ServiceUnderTest) -> Path:
    location = find_asterisk()
    root = location.sandbox_root or Path("/var/cache/cityline/instances")
    return root / "var/lib/cityline" / service.env["CITYLINE_INSTANCE"] / "log" / "messages.log"


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps",
        default="50,100,200,300,400",
        help="concurrent calls per step, comma-separated ('' for none)",
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=90.0,
        help="seconds of placing calls per step (then the calls drain)",
    )
    parser.add_argument("--soak-concurrent", type=int, default=200)
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="0: no soak")
    parser.add_argument(
        "--talk",
        default="30-60",
        metavar="MIN-MAX",
        help="seconds an agent talks before hanging up, drawn per call",
    )
    parser.add_argument(
        "--answer-after",
        type=float,
        default=0.3,
        help="seconds an agent's phone rings before it answers",
    )
    parser.add_argument("--patience", type=float, default=0.0,
                        help="seconds a resident waits after the last key before hanging up"
                        " (default: the longest talk plus 120)")  # fmt: skip
    parser.add_argument("--p95-limit-ms", type=float, default=100.0)
    parser.add_argument(
        "--agents",
        type=int,
        default=0,
        help="simulated agents (default: the largest concurrency plus 5%%)",
    )
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument(
        "--no-media",
        action="store_true",
        help="silent calls: no audio from the agents, no echo from residents",
    )
    parser.add_argument(
        "--keep-going", action="store_true", help="run every step even after one fails"
    )
    parser.add_argument(
        "--keep-files",
        action="store_true",
        help="keep sipp's scenarios, logs and statistics (the work directory is in the JSON)",
    )
    args = parser.parse_args(argv)
    args.step_list = [int(s) for s in args.steps.split(",") if s.strip()]
    low, _, high = args.talk.partition("-")
    args.talk_range = (float(low), float(high or low))
    bounds = [
        (all(0 < s <= 1000 for s in args.step_list), "--steps: 1 to 1000 calls each"),
        (0 < args.step_seconds <= 3600, "--step-seconds: up to 3600"),
        (0 <= args.soak_seconds <= 4 * 3600, "--soak-seconds: up to 4 hours"),
        (0 < args.soak_concurrent <= 1000, "--soak-concurrent: 1 to 1000"),
        (0 < args.talk_range[0] <= args.talk_range[1] <= 3600, "--talk: 0 < MIN <= MAX <= 3600"),
        (0 <= args.answer_after <= 10, "--answer-after: 0 to 10 s"),
        (0 <= args.patience <= 7200, "--patience: up to 7200 s"),
        (0 <= args.agents <= 2000, "--agents: up to 2000"),
        (1 <= args.sample_seconds <= 60, "--sample-seconds: 1 to 60"),
    ]
    problems = [message for ok, message in bounds if not ok]
    if problems:
        parser.error("; ".join(problems))
    return args


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    largest = max([*args.step_list, args.soak_concurrent if args.soak_seconds else 0, 1])
    agent_count = args.agents or math.ceil(largest * 1.05)
    talk = talk_times(*args.talk_range)
    figures: dict[str, Any] = {
        "settings": {
            "steps": args.step_list, "step_seconds": args.step_seconds,
            "soak_concurrent": args.soak_concurrent, "soak_seconds": args.soak_seconds,
            "talk_seconds": talk, "answer_after_seconds": args.answer_after,
            "keys": [list(k) for k in KEYS], "expected_route": list(EXPECTED_ROUTE),
            "agents": agent_count, "media": not args.no_media,
            "p95_limit_ms": args.p95_limit_ms, "cores": os.cpu_count(),
        },
        "what_else_runs": [what_else_runs()],
    }  # fmt: skip
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"cityline-load-{os.getpid()}"
    figures["work_dir"] = str(work)
    try:
        await run(args, figures, work, largest, agent_count, talk)
    except BaseException as exc:  # Ctrl-C or a failure: keep what was measured so far
        figures["interrupted"] = repr(exc)
        raise
    finally:
        path = write_result("load_no_media" if args.no_media else "load", figures)
        report(figures)
        print(f"written to {path}")
        if not args.keep_files and "interrupted" not in figures:
            await asyncio.to_thread(shutil.rmtree, work, True)
    return 0


async def run(
    args: argparse.Namespace,
    figures: dict[str, Any],
    work: Path,
    largest: int,
    agent_count: int,
    talk: list[float],
) -> None:
    sipps: list[SippProcess] = []
    bench: Bench | None = None
    async with service_process(rtp_ports=max(1000, RTP_PORTS_PER_CALL * largest)) as service:
        asterisk_pid = service.asterisk_pid()
        db = await asyncpg.connect(service.env["CITYLINE_DATABASE_DSN"])
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT, connector=connector) as http:
                t = time.monotonic()
                agents = await make_agents(http, service, agent_count)
                made = round(time.monotonic() - t, 1)
                figures["setup_seconds"] = {"agents_made_and_logged_in": made}
                log(f"{len(agents)} agents made and logged in in {made} s")
                agents_port = free_udp_port(low=LOW_PORTS[0], high=LOW_PORTS[1])
                phones = await start_agent_phones(
                    work=work / "agents", port=agents_port, media_port=AGENT_MEDIA_PORT,
                    answer_seconds=args.answer_after, talk=talk, media=not args.no_media,
                )  # fmt: skip
                sipps.append(phones)
                bench = Bench(args, service, http, db, agents, phones, work, asterisk_pid,
                              agents_port, talk)  # fmt: skip
                t = time.monotonic()
                registered = await bench.register()
                figures["setup_seconds"]["agents_registered"] = round(time.monotonic() - t, 1)
                log(f"{registered}/{len(agents)} agents registered")
                if registered < len(agents):
                    raise RuntimeError(f"only {registered} of {len(agents)} agents registered")

                steps: list[dict[str, Any]] = []
                figures["steps"] = steps
                for concurrent in args.step_list:
                    step = await bench.phase(f"step {concurrent}", concurrent, args.step_seconds)
                    steps.append(step)
                    ok, why = step_held(step, args.p95_limit_ms)
                    step["held"], step["why_not"] = ok, why
                    log(step_line(step))
                    if not ok and not args.keep_going:
                        log(f"step {concurrent} did not hold ({why}); no further steps")
                        break
                held = [s["concurrent_target"] for s in steps if s["held"]]
                # The largest step before the first one that failed.
                largest_held = 0
                for s in steps:
                    if not s["held"]:
                        break
                    largest_held = s["concurrent_target"]
                figures["largest_step_held"] = largest_held
                figures["steps_held"] = held
                figures["what_else_runs"].append(what_else_runs())

                if args.soak_seconds > 0:
                    soak = await bench.phase("soak", args.soak_concurrent, args.soak_seconds)
                    soak["memory_samples_every_seconds"] = args.sample_seconds
                    figures["soak"] = soak
                    figures["what_else_runs"].append(what_else_runs())
                    log(step_line(soak))

                phones.stop_calling()
                if await phones.wait(15) is None:
                    await phones.kill()
                figures["agents_sipp_errors_total"] = error_summary(phones.errors_text())
        finally:
            kill_on_exit(*sipps, *(bench.residents if bench else []))
            await db.close()
            state = Path(service.env["CITYLINE_STATE_DIR"])
            figures["service_log"] = service_log_summary(state / "service.log")
            figures["asterisk_log"] = asterisk_log_summary(asterisk_log_path(service))


def step_held(step: dict[str, Any], limit_ms: float) -> tuple[bool, str]:
    problems = []
    p95 = step["key_to_ring_ms"]["p95"]
    if p95 is None:
        problems.append("no key-to-ring measured")
    elif p95 >= limit_ms:
        problems.append(f"key-to-ring p95 {p95} ms >= {limit_ms:g} ms")
    if step["calls"]["lost"]:
        problems.append(f"{step['calls']['lost']} calls lost")
    if step["records"]["incomplete"]:
        problems.append(f"{step['records']['incomplete']} incomplete records")
    if step["concurrent_calls_while_placing"]["max"] < step["concurrent_target"]:
        problems.append(
            f"only {step['concurrent_calls_while_placing']['max']} calls at once reached"
        )
    return not problems, "; ".join(problems)


def step_line(step: dict[str, Any]) -> str:
    k, c, r = step["key_to_ring_ms"], step["calls"], step["records"]
    cpu = step["cpu_percent_while_held"] or step["cpu_percent_whole_phase"]
    return (
        f"{step['label']:>9}: {c['placed']} calls, at once max"
        f" {step['concurrent_calls_while_placing']['max']}"
        f" (mean {step['concurrent_calls_while_placing']['mean_after_fill']});"
        f" key->ring p50 {k['p50']} ms p95 {k['p95']} ms max {k['max']} ms;"
        f" lost {c['lost']}, incomplete records {r['incomplete']}, misrouted {r['misrouted_ivr']};"
        f" CPU service {cpu['service']}% Asterisk {cpu['asterisk']}%"
        f" sipp {cpu['generator_residents_sipp'] + cpu['generator_agents_sipp']:.1f}%"
        f" postgres {cpu['postgres_backends']}% other {cpu['everything_else']}%"
        f" machine {cpu['machine_total']}%"
    )


def cpu_line(step: dict[str, Any]) -> str:
    """Who used the cores while the calls were held, and per concurrent call."""
    cpu = step["cpu_percent_while_held"] or step["cpu_percent_whole_phase"]
    per = step.get("cpu_percent_per_concurrent_call") or {}
    return (
        f"CPU % of one core: service {cpu['service']}, Asterisk {cpu['asterisk']},"
        f" postgres {cpu['postgres_backends']}, residents' sipp"
        f" {cpu['generator_residents_sipp']}, agents' sipp {cpu['generator_agents_sipp']},"
        f" driver {cpu['bench_driver']}, everything else {cpu['everything_else']}"
        f" (machine {cpu['machine_total']} of {100 * (os.cpu_count() or 1)});"
        f" per call: service {per.get('service')}, Asterisk {per.get('asterisk')},"
        f" postgres {per.get('postgres_backends')}, generator {per.get('generator')};"
        f" waited for a CPU (ms/s): {step.get('runqueue_wait_ms_per_second')}"
    )


def report(figures: dict[str, Any]) -> None:
    print("concurrency steps (key -> ring from the generator's side):")
    for step in figures.get("steps", []):
        print("  " + step_line(step) + ("" if step["held"] else f"  [failed: {step['why_not']}]"))
        print("      " + cpu_line(step))
    print(f"largest step held: {figures.get('largest_step_held')}")
    soak = figures.get("soak")
    if soak:
        m = soak["memory"]
        print("soak:")
        print("  " + step_line(soak))
        print("      " + cpu_line(soak))
        print(
            f"  service RSS {m['service_rss_mib']} MiB, slope {m['service_slope_mib_per_hour']}"
            f" MiB/h; Asterisk RSS {m['asterisk_rss_mib']} MiB, slope"
            f" {m['asterisk_slope_mib_per_hour']} MiB/h (while held, {m['slope_window_seconds']} s)"
        )
    if figures.get("service_log"):
        print(f"service log warnings/errors: {figures['service_log']}")
    if figures.get("asterisk_log"):
        print(f"Asterisk log warnings/errors: {figures['asterisk_log']}")


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
