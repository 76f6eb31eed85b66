"""`cityline demo`: the whole server plus a simulated city, so the wallboard moves.

Simulated residents (sipp, one process per call) dial 19115 at a Poisson rate, choose a
language and a service group on the keypad and wait; a few give up. Simulated agents
(pyVoIP phones in this process) log in over the HTTP API, answer, talk, hang up and save a
case. A human agent account and a supervisor account are made (once) so a person can join
from the browser; their calls are served by the normal service, untouched by the demo.
Everything is bounded: the run's minutes, the calls on the line at once, the drain at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import aiohttp
import structlog

from cityline.simulated.agents import SimulatedAgent, SimulatedAgentError, cancel_and_wait
from cityline.simulated.sipp import call_with_keys
from cityline.simulated.traffic import (
    GROUP_MIX,
    LANGUAGE_MIX,
    AgentHabits,
    CallMix,
    ResidentCall,
    port_blocks,
    resident_calls,
    simulated_agent_skills,
)

if TYPE_CHECKING:
    from cityline.wiring import CityLine

log = structlog.get_logger(__name__)

HUMAN_AGENT = "demo-agent"
SUPERVISOR = "demo-supervisor"
SIMULATED_AGENT_PREFIX = "sim-agent-"
ACCOUNTS_FILE = "demo-accounts.json"

DEFAULT_RATE = 120.0
DEFAULT_AGENTS = 4
DEFAULT_MINUTES = 60.0
DEFAULT_MAX_CALLS = 20
DEFAULT_DRAIN_SECONDS = 240.0
# Upper bounds: one machine runs the server, sipp per call and pyVoIP threads per agent.
MAX_RATE = 3600.0
MAX_AGENTS = 20
MAX_MINUTES = 24 * 60.0
MAX_CALLS_LIMIT = 100
# A patient resident stays until the agent ends the call; past this sipp hangs up anyway.
PATIENT_HOLD_SECONDS = 900.0
PROGRESS_EVERY_SECONDS = 30.0
# The first resident calls this soon; at 120 calls/h the first gap would average 30 s.
FIRST_CALL_AFTER_SECONDS = 3.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass(frozen=True)
class DemoOptions:
    rate_per_hour: float = DEFAULT_RATE
    agents: int = DEFAULT_AGENTS
    minutes: float = DEFAULT_MINUTES
    max_concurrent_calls: int = DEFAULT_MAX_CALLS
    # Calls still on the line when the minutes are up get this long before they are cut.
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.rate_per_hour <= MAX_RATE:
            problems.append(f"--rate must be above 0 and at most {MAX_RATE:g} calls an hour")
        if not 0 <= self.agents <= MAX_AGENTS:
            problems.append(f"--agents must be from 0 to {MAX_AGENTS}")
        if not 0 < self.minutes <= MAX_MINUTES:
            problems.append(f"--minutes must be above 0 and at most {MAX_MINUTES:g}")
        if not 1 <= self.max_concurrent_calls <= MAX_CALLS_LIMIT:
            problems.append(f"--max-calls must be from 1 to {MAX_CALLS_LIMIT}")
        if not 0 <= self.drain_seconds <= 3600:
            problems.append("--drain must be from 0 to 3600 seconds")
        if problems:
            raise ValueError("; ".join(problems))


def parse_demo_args(argv: list[str]) -> DemoOptions:
    parser = argparse.ArgumentParser(
        prog="cityline demo",
        description="Run CityLine with simulated residents and agents, so the wallboard moves.",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        metavar="CALLS_PER_HOUR",
        help=f"residents' calls per hour, Poisson arrivals (default {DEFAULT_RATE:g})",
    )
    parser.add_argument(
        "--agents",
        type=int,
        default=DEFAULT_AGENTS,
        metavar="N",
        help=f"simulated agents (default {DEFAULT_AGENTS})",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=DEFAULT_MINUTES,
        metavar="M",
        help=f"how long residents keep calling (default {DEFAULT_MINUTES:g})",
    )
    parser.add_argument(
        "--max-calls",
        type=int,
        default=DEFAULT_MAX_CALLS,
        metavar="N",
        help="residents on the line at once, at most; more are turned away "
        f"(default {DEFAULT_MAX_CALLS})",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=DEFAULT_DRAIN_SECONDS,
        metavar="SECONDS",
        help="after the last arrival, how long calls in progress may go on "
        f"(default {DEFAULT_DRAIN_SECONDS:g})",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed, to repeat a run")
    args = parser.parse_args(argv)
    try:
        return DemoOptions(
            rate_per_hour=args.rate,
            agents=args.agents,
            minutes=args.minutes,
            max_concurrent_calls=args.max_calls,
            drain_seconds=args.drain,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
        raise  # parser.error exits; this keeps type checkers sure


# -- accounts ---------------------------------------------------------------------------------
@dataclass
class DemoAccount:
    name: str
    role: str
    password: str | None  # None: the account was made before and its password is not ours


class DemoAccounts:
    """The demo's accounts, made through the admin API once; passwords kept 0600 in the state
    directory so the next run logs the simulated agents in again and prints the same ones."""

    def __init__(self, path: Path, base_url: str, admin_token: str, http: aiohttp.ClientSession):
        self.path = path
        self.base_url = base_url
        self.admin_token = admin_token
        self.http = http
        self.passwords: dict[str, str] = self._load()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.passwords, indent=2), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(self.path)

    async def ensure(
        self, name: str, *, role: str, display_name: str, skills: dict[str, int] | None = None
    ) -> DemoAccount:
        """Create the account unless it exists; never changes an existing one."""
        password = self.passwords.get(name)
        new_password = password or secrets.token_urlsafe(9)
        if password is None:
            # Saved before the account exists, so a crash in between loses nothing.
            self.passwords[name] = new_password
            await asyncio.to_thread(self._save)
        body: dict[str, Any] = {
            "name": name,
            "password": new_password,
            "role": role,
            "display_name": display_name,
        }
        if skills:
            body["skills"] = skills
        async with self.http.post(
            f"{self.base_url}/api/agents",
            json=body,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=HTTP_TIMEOUT,
        ) as response:
            reply = await response.json()
        if response.status == 201:
            log.info("demo_account_created", agent=name, role=role)
            return DemoAccount(name, role, new_password)
        if response.status == 422 and "exists already" in str(reply.get("error", "")):
            if password is None:  # made elsewhere: the password we just stored is not its own
                del self.passwords[name]
                await asyncio.to_thread(self._save)
            return DemoAccount(name, role, password)
        raise RuntimeError(f"cannot create the demo account {name!r}: {response.status} {reply}")


# -- the run ----------------------------------------------------------------------------------
@dataclass
class ResidentTally:
    placed: int = 0
    turned_away: int = 0  # arrivals while --max-calls residents were already on the line
    on_the_line: int = 0
    ended_by_city: int = 0  # the agent (or the IVR) hung up
    hung_up: int = 0  # the resident hung up: gave up waiting, or at the end of their patience
    failed: int = 0  # sipp reported an error or timed out
    cut_at_stop: int = 0


@dataclass
class Demo:
    service: CityLine
    options: DemoOptions
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    habits: AgentHabits = field(default_factory=AgentHabits)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.options.seed)
        self.residents = ResidentTally()
        self.agents: list[SimulatedAgent] = []
        self.human: DemoAccount | None = None
        self.supervisor: DemoAccount | None = None
        self.done = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._calls: set[asyncio.Task[None]] = set()
        self._started_at = 0.0
        s = self.service.settings
        self.base_url = f"http://{s.http_host}:{self.service.http_port}"
        self.caller_ports, self.phone_ports = port_blocks((s.rtp_start, s.rtp_end))

    async def start(self) -> None:
        """Accounts, simulated agents, then the residents; the service must be running."""
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        accounts = DemoAccounts(
            self.service.settings.state_dir / ACCOUNTS_FILE,
            self.base_url,
            self.service.admin_token,
            self._http,
        )
        catalogue = self.service.catalogue
        languages, groups = list(catalogue.languages), list(catalogue.groups)
        self.human = await accounts.ensure(
            HUMAN_AGENT,
            role="agent",
            display_name="You (demo agent)",
            skills={f"lang:{c}": 4 for c in languages} | {f"group:{c}": 4 for c in groups},
        )
        self.supervisor = await accounts.ensure(
            SUPERVISOR, role="supervisor", display_name="Demo supervisor"
        )
        await self._start_agents(accounts, languages, groups)
        self._started_at = time.monotonic()
        calls = resident_calls(
            self.rng,
            rate_per_hour=self.options.rate_per_hour,
            seconds=self.options.minutes * 60,
            language_keys={c: lang.key for c, lang in catalogue.languages.items()},
            group_keys={c: g.key for c, g in catalogue.groups.items()},
            mix=CallMix(
                languages={c: LANGUAGE_MIX.get(c, 0.05) for c in languages},
                groups={c: GROUP_MIX.get(c, 0.1) for c in groups},
            ),
            first_at=FIRST_CALL_AFTER_SECONDS,
        )
        self._tasks = [
            asyncio.create_task(self._residents(calls), name="demo-residents"),
            asyncio.create_task(self._progress(), name="demo-progress"),
        ]
        log.info("demo_started", **vars(self.options))

    async def _start_agents(
        self, accounts: DemoAccounts, languages: list[str], groups: list[str]
    ) -> None:
        assert self._http is not None
        index = 0
        # Skip names whose password this demo does not know (made by hand, say); bounded.
        while len(self.agents) < self.options.agents and index < self.options.agents + 50:
            name = f"{SIMULATED_AGENT_PREFIX}{index + 1}"
            account = await accounts.ensure(
                name,
                role="agent",
                display_name=f"Simulated agent {index + 1}",
                skills=simulated_agent_skills(index, languages, groups),
            )
            index += 1
            if account.password is None:
                log.warning("demo_agent_skipped", agent=name, reason="password unknown")
                continue
            agent = SimulatedAgent(
                name,
                account.password,
                base_url=self.base_url,
                http=self._http,
                habits=self.habits,
                rng=random.Random(self.rng.random()),
                port_range=self.phone_ports,
            )
            self.agents.append(agent)  # before start, so stop() cleans up a half-started one
            await agent.start()

    async def _residents(self, calls: Iterable[ResidentCall]) -> None:
        """Place each call at its time, at most --max-calls at once; then let them finish."""
        try:
            for call in calls:
                delay = self._started_at + call.at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(self._calls) >= self.options.max_concurrent_calls:
                    self.residents.turned_away += 1
                    log.info("demo_resident_turned_away", caller=call.caller)
                    continue
                task = asyncio.create_task(self._resident(call), name=f"resident-{call.caller}")
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
            # The last arrival may come well before the end: the run still lasts its minutes.
            await asyncio.sleep(self._started_at + self.options.minutes * 60 - time.monotonic())
            if self._calls:
                print(
                    f"The {self.options.minutes:g} minutes are up: waiting up to "
                    f"{self.options.drain_seconds:g} s for {_calls(len(self._calls))} still "
                    "on the line.",
                    file=self.out,
                    flush=True,
                )
                await asyncio.wait(set(self._calls), timeout=self.options.drain_seconds)
            await self._cut_calls()
        finally:
            self.done.set()

    async def _resident(self, call: ResidentCall) -> None:
        self.residents.placed += 1
        self.residents.on_the_line += 1
        hang_up_after = call.hang_up_after
        budget = call.ivr_seconds + PATIENT_HOLD_SECONDS if hang_up_after is None else hang_up_after
        try:
            result = await call_with_keys(
                self.service.settings.sip_port,
                call.keys,
                caller=call.caller,
                hold_seconds=PATIENT_HOLD_SECONDS,
                hang_up_after=hang_up_after,
                port_range=self.caller_ports,
                timeout=budget + 60,
            )
        except asyncio.CancelledError:
            self.residents.cut_at_stop += 1
            raise
        except (OSError, RuntimeError, ValueError) as exc:  # sipp missing, no free port...
            self.residents.failed += 1
            log.warning("demo_resident_call_failed", caller=call.caller, error=repr(exc))
            return
        finally:
            self.residents.on_the_line -= 1
        if not result.ok:
            self.residents.failed += 1
            log.warning(
                "demo_resident_call_failed",
                caller=call.caller,
                returncode=result.returncode,
                timed_out=result.timed_out,
                errors=result.errors[-500:],
            )
        elif result.hung_up_by == "pbx":
            self.residents.ended_by_city += 1
        else:
            self.residents.hung_up += 1
        log.info(
            "demo_resident_call_ended",
            caller=call.caller,
            language=call.language,
            group=call.group,
            patience=call.patience,
            hung_up_by=result.hung_up_by,
        )

    async def _cut_calls(self) -> None:
        """Cancel the calls still on the line (each kills its own sipp) and wait for them."""
        calls = set(self._calls)
        for task in calls:
            task.cancel()
        if calls:
            await asyncio.wait(calls, timeout=15)

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_SECONDS)
            print(await self.progress_line(), file=self.out, flush=True)

    async def wallboard(self) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.get(
            f"{self.base_url}/api/wallboard",
            headers={"Authorization": f"Bearer {self.service.admin_token}"},
            timeout=HTTP_TIMEOUT,
        ) as response:
            return dict(await response.json())

    async def progress_line(self) -> str:
        elapsed = time.monotonic() - self._started_at
        r = self.residents
        line = (
            f"[{int(elapsed // 60):02d}:{int(elapsed % 60):02d}] residents: {r.placed} called, "
            f"{r.on_the_line} on the line, {r.turned_away} turned away"
        )
        try:
            board = await self.wallboard()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"{line} | wallboard unavailable: {exc!r}"
        today = board.get("service_level", {}).get("today", {}).get("overall", {})
        live = board.get("live", {})
        states = live.get("agents", {}).get("by_state", {})
        waiting = live.get("calls", {}).get("waiting", 0)
        sl = today.get("sl_percent")
        sl_text = "-" if sl is None else f"{sl:.0f}%"
        cases = sum(a.tally.cases_saved for a in self.agents)
        return (
            f"{line} | offered {today.get('offered', 0)}, answered {today.get('answered', 0)}, "
            f"abandoned {today.get('abandoned', 0)}, waiting {waiting}, SL {sl_text} | "
            f"agents ready {states.get('ready', 0)}, on call {states.get('on_call', 0)}, "
            f"paused {states.get('paused', 0)} | cases saved by simulated agents {cases}"
        )

    def banner(self) -> str:
        o = self.options
        sup, human = self.supervisor, self.human
        assert sup is not None and human is not None

        def password(account: DemoAccount) -> str:
            return account.password or "(made earlier, not by the demo: use the one you set)"

        accounts_file = self.service.settings.state_dir / ACCOUNTS_FILE
        return "\n".join(
            [
                "",
                "CityLine demo is running.",
                f"  Simulated residents call 19115 about {o.rate_per_hour:g} times an hour "
                f"(at most {o.max_concurrent_calls} at once) for {o.minutes:g} minutes;",
                f"  {len(self.agents)} simulated agents answer them.",
                "",
                f"  agent desk     {self.base_url}/desk",
                f"  wallboard      {self.base_url}/wallboard",
                "",
                f"  you, an agent  name {human.name:16} password {password(human)}",
                f"  supervisor     name {sup.name:16} password {password(sup)}",
                f"  (the passwords are kept in {accounts_file})",
                "",
                f"  Log in at /desk as {human.name} and press Ready: calls will reach you too.",
                f"  Log in at /wallboard as {sup.name} to watch the queue and the service level.",
                "  Ctrl-C stops everything the demo started.",
                "",
            ]
        )

    async def summary(self) -> str:
        r = self.residents
        lines = [
            "CityLine demo finished.",
            f"  residents: {r.placed} called, {r.ended_by_city} ended by the city, "
            f"{r.hung_up} hung up themselves, {r.turned_away} turned away, {r.failed} failed, "
            f"{r.cut_at_stop} cut at the stop",
        ]
        for agent in self.agents:
            t = agent.tally
            answered = len(agent.phone.answered) if agent.phone else 0
            lines.append(
                f"  {agent.name}: {answered} answered, {t.cases_saved} cases saved, "
                f"{t.pauses} pauses, {t.missed} missed"
            )
        return "\n".join(lines)

    async def stop(self) -> None:
        """Residents first (their sipp processes), then the simulated agents. Never raises."""
        await cancel_and_wait(self._tasks)
        await self._cut_calls()
        await asyncio.gather(*(agent.stop() for agent in self.agents), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        log.info("demo_stopped", **vars(self.residents))


async def start_demo(service: CityLine, options: DemoOptions, out: IO[str]) -> Demo:
    """Start the demo on a running service; on failure stop what was started and raise."""
    demo = Demo(service, options, out=out)
    try:
        await demo.start()
    except BaseException:
        await demo.stop()
        raise
    return demo


def _calls(count: int) -> str:
    return f"{count} call" if count == 1 else f"{count} calls"


def demo_log_level() -> str:
    """The demo keeps the terminal readable: warnings only, unless CITYLINE_LOG_LEVEL says."""
    return os.environ.get("CITYLINE_LOG_LEVEL") or "WARNING"


__all__ = [
    "Demo",
    "DemoOptions",
    "SimulatedAgentError",
    "demo_log_level",
    "parse_demo_args",
    "start_demo",
]
