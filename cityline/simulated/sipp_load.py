"""Load generation with a few sipp processes instead of one process (or thread) per call.

- Residents: ONE sipp UAC process (``load_resident.xml``) carries every call of a run; sipp's
  ``-r`` (calls a second), ``-l`` (calls at once) and ``-m`` (calls in all) shape the load.
  Each call presses its keys (RFC 2833 pcaps, the same as ``sipp.py``), then waits in the
  queue and the conversation until the PBX hangs up.
- Agents: ONE sipp UAS process (``load_agent.xml``) answers for every agent. The agents'
  endpoints are registered by a short sipp UAC run (``load_register.xml``, an injection file
  with one line per agent) whose Contact is the answering process's port, so Asterisk rings
  that one process whichever agent the service chose.

Every call is named by the resident's number (a prefix and sipp's call number): it is in the
resident's log, in the From header the agent sees (Asterisk passes the caller id on) and in
the service's call record. Timestamps come from sipp's own log lines (``[timestamp]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import os
import re
import signal
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cityline.simulated.sipp import LOOPBACK, SIPP_BIN, dtmf_pcap

SCENARIOS = Path(__file__).with_name("scenarios")
RESIDENT_TEMPLATE = SCENARIOS / "load_resident.xml"
AGENT_TEMPLATE = SCENARIOS / "load_agent.xml"
REGISTER_TEMPLATE = SCENARIOS / "load_register.xml"

# The end packet of sip-tester's key pcaps comes this long after the key starts.
KEY_END_OFFSET = 0.140
# A log line: "<KIND> <call> <date>\t<time>\t<epoch seconds>" ([timestamp] renders the last three).
_LOG_LINE = re.compile(r"^([A-Z_0-9]+) (\S+) \S+\t\S+\t(\d+(?:\.\d+)?)", re.MULTILINE)
_ERROR_START = re.compile(r"\d{4}-\d\d-\d\d\t\d\d:\d\d:\d\d(?:\.\d+)?\t\d+(?:\.\d+)?: ")
# How many talk times the agents' scenario draws from (sipp timeouts are fixed per step).
TALK_BRANCHES = 8


# -- scenarios ---------------------------------------------------------------------------------
def render_resident(
    *,
    prefix: str,
    keys: Sequence[tuple[float, str]],
    wait_seconds: float,
    pcap_dir: Path,
) -> str:
    """The residents' scenario: keys are (seconds after the previous step, key) pairs, the first
    counted from the answer; the caller then waits up to ``wait_seconds`` for the PBX's BYE."""
    if not re.fullmatch(r"[0-9]{1,12}", prefix):
        raise ValueError(f"bad caller prefix: {prefix!r}")
    steps = []
    for i, (delay, digit) in enumerate(keys):
        pcap = pcap_dir / f"key{i}.pcap"
        pcap.write_bytes(dtmf_pcap(digit, i))
        steps.append(
            # A BYE while waiting to press ends the call cleanly instead of failing it.
            f'  <recv request="BYE" timeout="{max(1, round(delay * 1000))}" '
            f'ontimeout="key{i}" next="pbx_bye"/>\n'
            f'  <label id="key{i}"/>\n'
            "  <nop>\n    <action>\n"
            f'      <log message="KEY{i} @@PREFIX@@[call_number] [timestamp]"/>\n'
            f'      <exec play_pcap_audio="{pcap}"/>\n'
            "    </action>\n  </nop>"
        )
    return (
        RESIDENT_TEMPLATE.read_text(encoding="utf-8")
        .replace("@@KEYS@@", "\n".join(steps))
        .replace("@@WAIT_MS@@", str(max(1, round(wait_seconds * 1000))))
        .replace("@@PREFIX@@", prefix)
    )


def talk_times(low: float, high: float, branches: int = TALK_BRANCHES) -> list[float]:
    """Evenly spread talk times from low to high (a uniform draw among them per call)."""
    if not 0 < low <= high:
        raise ValueError("talk times: 0 < low <= high")
    if branches == 1 or low == high:
        return [low]
    return [low + (high - low) * i / (branches - 1) for i in range(branches)]


def render_agent(*, answer_seconds: float, talk: Sequence[float], media: Path | None) -> str:
    """The agents' scenario: ring, answer after ``answer_seconds``, talk for one of ``talk``
    (drawn per call), hang up. ``media``: a raw u-law file looped to the resident meanwhile."""
    lines = []
    if media is not None:
        lines.append(
            "  <nop>\n    <action>\n"
            f'      <exec rtp_stream="{media},-1,0"/>\n'
            "    </action>\n  </nop>"
        )
    if len(talk) > 1:
        lines.append(
            "  <nop>\n    <action>\n"
            f'      <sample assign_to="talk" distribution="uniform" min="0" max="{len(talk)}"/>\n'
            + "".join(
                f'      <test assign_to="short{i}" variable="talk" compare="less_than" '
                f'value="{i + 1}"/>\n'
                for i in range(len(talk) - 1)
            )
            + "    </action>\n  </nop>"
        )
        for i in range(len(talk) - 1):
            lines.append(f'  <nop test="short{i}" next="talk{i}"/>')
    for i, seconds in reversed(list(enumerate(talk))):
        lines.append(
            f'  <label id="talk{i}"/>\n'
            f'  <recv request="BYE" timeout="{round(seconds * 1000)}" '
            'ontimeout="agent_bye" next="remote_bye"/>'
        )
    sdp_port = "[rtpstream_audio_port]" if media is not None else "[media_port]"
    return (
        AGENT_TEMPLATE.read_text(encoding="utf-8")
        .replace("@@TALK@@", "\n".join(lines))
        .replace("@@ANSWER_MS@@", str(max(0, round(answer_seconds * 1000))))
        .replace("m=audio [media_port]", f"m=audio {sdp_port}")
    )


def render_register(*, agents_port: int, expires: int) -> str:
    return (
        REGISTER_TEMPLATE.read_text(encoding="utf-8")
        .replace("@@AGENTS_PORT@@", str(agents_port))
        .replace("@@EXPIRES@@", str(expires))
    )


def write_injection(path: Path, credentials: Sequence[tuple[str, str]]) -> None:
    """sipp's injection file: one agent a line, its endpoint and an [authentication] keyword."""
    rows = ["SEQUENTIAL"]
    for username, password in credentials:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", username) or re.search(r"[;\]\s]", password):
            raise ValueError(f"credentials sipp cannot carry for {username!r}")
        rows.append(f"{username};[authentication username={username} password={password}]")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def voice_like_ulaw(seconds: float = 8.0) -> bytes:
    """Raw G.711 u-law, 8 kHz: a tone that rises and falls in syllables, for the agents' talk.

    What Asterisk relays and records costs the same whatever the sound is; this just keeps the
    recordings from being silence."""
    samples = []
    for n in range(int(seconds * 8000)):
        t = n / 8000
        envelope = max(0.0, math.sin(2 * math.pi * 2.5 * t)) ** 2
        pitch = 180 + 40 * math.sin(2 * math.pi * 0.3 * t)
        samples.append(int(6000 * envelope * math.sin(2 * math.pi * pitch * t)))
    pcm = struct.pack(f"<{len(samples)}h", *samples)
    return _lin2ulaw(pcm)


def _lin2ulaw(pcm: bytes) -> bytes:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # in the standard library up to 3.12, which is what this project runs
    return audioop.lin2ulaw(pcm, 2)


# -- processes ---------------------------------------------------------------------------------
@dataclass
class SippProcess:
    """One running sipp and its files; stopped with stop() (soft) or kill()."""

    name: str
    proc: asyncio.subprocess.Process
    work: Path
    log_file: Path
    error_file: Path
    stat_file: Path | None = None
    stderr_file: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def stop_calling(self) -> None:
        """SIGUSR1: sipp places no more calls and exits once the calls in progress are over."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGUSR1)

    async def wait(self, timeout: float) -> int | None:
        """The exit status, or None if it is still running after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.proc.wait()), timeout)
        except TimeoutError:
            return None

    async def kill(self) -> int:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        return await self.proc.wait()

    def log_text(self) -> str:
        return _read(self.log_file)

    def errors_text(self, since: int = 0) -> str:
        """sipp's error file, from byte ``since`` on (a long-running process's later part)."""
        try:
            with self.error_file.open("rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def errors_size(self) -> int:
        try:
            return self.error_file.stat().st_size
        except FileNotFoundError:
            return 0

    def stats(self) -> list[dict[str, str]]:
        """Rows of sipp's statistics file (-trace_stat), oldest first."""
        if self.stat_file is None:
            return []
        text = _read(self.stat_file)
        if not text.strip():
            return []
        return list(csv.DictReader(text.splitlines(), delimiter=";"))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


async def _spawn(name: str, work: Path, args: list[str], *, stats: bool) -> SippProcess:
    log_file, error_file = work / f"{name}.log", work / f"{name}.errors"
    stat_file = work / f"{name}.csv" if stats else None
    stderr_file = work / f"{name}.stderr"
    full = [
        *args,
        "-nostdin",
        "-trace_logs", "-log_file", str(log_file),
        "-trace_err", "-error_file", str(error_file),
        *(["-trace_stat", "-stf", str(stat_file), "-fd", "1"] if stat_file else []),
    ]  # fmt: skip
    err = await asyncio.to_thread(stderr_file.open, "wb")
    with err:
        proc = await asyncio.create_subprocess_exec(
            SIPP_BIN,
            *full,
            cwd=work,
            # Its own session: a Ctrl-C in the terminal is for the benchmark, which stops sipp.
            start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,  # the screen; the figures are in the files
            stderr=err,
        )
    return SippProcess(name, proc, work, log_file, error_file, stat_file, stderr_file)


async def start_residents(
    sip_port: int,
    *,
    work: Path,
    prefix: str,
    keys: Sequence[tuple[float, str]],
    wait_seconds: float,
    rate: float,
    limit: int,
    max_calls: int,
    sip_local_port: int,
    media_port: int,
    echo: bool,
    number: str = "19115",
) -> SippProcess:
    """Residents calling ``number`` at ``rate`` calls a second, at most ``limit`` at once and
    ``max_calls`` in all. ``echo``: send back the audio Asterisk sends (prompts, the agent)."""

    def prepare() -> Path:
        work.mkdir(parents=True, exist_ok=True)
        scenario = work / "residents.xml"
        scenario.write_text(
            render_resident(prefix=prefix, keys=keys, wait_seconds=wait_seconds, pcap_dir=work),
            encoding="utf-8",
        )
        return scenario

    scenario = await asyncio.to_thread(prepare)
    args = [
        "-sf", str(scenario),
        "-s", number,
        "-i", LOOPBACK, "-p", str(sip_local_port),
        "-mi", LOOPBACK, "-mp", str(media_port),
        *(["-rtp_echo"] if echo else []),
        "-r", f"{rate:.3f}", "-rp", "1000",
        "-l", str(limit),
        "-m", str(max_calls),
        f"{LOOPBACK}:{sip_port}",
    ]  # fmt: skip
    return await _spawn("residents", work, args, stats=True)


async def start_agent_phones(
    *,
    work: Path,
    port: int,
    media_port: int,
    answer_seconds: float,
    talk: Sequence[float],
    media: bool,
) -> SippProcess:
    """The answering process for every agent (it runs until stopped)."""

    def prepare() -> Path:
        work.mkdir(parents=True, exist_ok=True)
        audio = None
        if media:
            audio = work / "talk.ulaw"
            audio.write_bytes(voice_like_ulaw())
        scenario = work / "agents.xml"
        scenario.write_text(
            render_agent(answer_seconds=answer_seconds, talk=talk, media=audio), encoding="utf-8"
        )
        return scenario

    scenario = await asyncio.to_thread(prepare)
    args = [
        "-sf", str(scenario),
        "-i", LOOPBACK, "-p", str(port),
        "-mi", LOOPBACK, "-mp", str(media_port),
        "-aa",  # answers OPTIONS, INFO, NOTIFY, UPDATE outside the scenario
    ]  # fmt: skip
    return await _spawn("agents", work, args, stats=True)


async def register_agents(
    sip_port: int,
    credentials: Sequence[tuple[str, str]],
    *,
    work: Path,
    agents_port: int,
    local_port: int,
    expires: int = 3600,
    rate: float = 100.0,
    timeout: float = 60.0,
) -> set[str]:
    """Register every agent's endpoint with its Contact on ``agents_port``; the endpoints that
    Asterisk accepted (sipp's log says which)."""
    scenario, injection = work / "register.xml", work / "agents.csv"

    def prepare() -> None:
        work.mkdir(parents=True, exist_ok=True)
        scenario.write_text(render_register(agents_port=agents_port, expires=expires), "utf-8")
        write_injection(injection, credentials)
        for old in (work / "register.log", work / "register.errors"):
            old.unlink(missing_ok=True)

    await asyncio.to_thread(prepare)
    args = [
        "-sf", str(scenario),
        "-inf", str(injection),
        "-i", LOOPBACK, "-p", str(local_port),
        "-r", f"{rate:.0f}", "-rp", "1000",
        "-l", "50",
        "-m", str(len(credentials)),
        "-timeout", f"{int(timeout)}s",
        f"{LOOPBACK}:{sip_port}",
    ]  # fmt: skip
    process = await _spawn("register", work, args, stats=False)
    if await process.wait(timeout + 5) is None:
        await process.kill()
    return {call for kind, call, _ in log_events(process.log_text()) if kind == "REGISTERED"}


# -- what the logs say -------------------------------------------------------------------------
def log_events(text: str) -> list[tuple[str, str, float]]:
    """(kind, call, epoch seconds) for each log line of the load scenarios, in order."""
    return [(m.group(1), m.group(2), float(m.group(3))) for m in _LOG_LINE.finditer(text)]


@dataclass
class CallTimes:
    """One call's events from sipp's logs: each kind's times, in order."""

    events: dict[str, list[float]] = field(default_factory=dict)

    def first(self, kind: str) -> float | None:
        times = self.events.get(kind)
        return times[0] if times else None

    def count(self, kind: str) -> int:
        return len(self.events.get(kind, ()))


def calls_by_number(*texts: str, prefix: str = "") -> dict[str, CallTimes]:
    """Events of every call whose number starts with ``prefix``, from one or more logs."""
    calls: dict[str, CallTimes] = {}
    for text in texts:
        for kind, call, at in log_events(text):
            if call.startswith(prefix):
                calls.setdefault(call, CallTimes()).events.setdefault(kind, []).append(at)
    return calls


def error_summary(text: str, limit: int = 8) -> dict[str, int]:
    """sipp's error file by kind of message (call ids and numbers blanked), most frequent first.
    Timeouts that jump to a label are the scenarios' own choices and are left out."""
    counts: dict[str, int] = {}
    # Entries start with "[timestamp]: " and are not always on lines of their own.
    for message in _ERROR_START.split(text):
        message = message.strip()
        if not message or "jumping to label" in message or message.startswith("The following"):
            continue
        kind = re.sub(r"(call-id:|call:)\s*[^\s,]+", r"\1 *", message, flags=re.IGNORECASE)
        kind = re.sub(r"\d+", "N", kind)[:160]
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1])[:limit])


def kill_on_exit(*processes: SippProcess) -> None:
    """Last resort (an exception on the way out): no sipp of ours outlives the benchmark."""
    for process in processes:
        if process.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
