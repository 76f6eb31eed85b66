"""Drive a resident's call with sipp: INVITE, RFC 2833 keys, then a hang-up.

The scenario is rendered per call from ``scenarios/resident_call.xml`` because the
pauses and key plays differ from call to call. Used by the demo's simulated residents and
by the end-to-end tests. sipp is Debian's ``sip-tester`` package.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import socket
import struct
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SIPP_BIN = shutil.which("sipp") or "/usr/bin/sipp"
TEMPLATE = Path(__file__).with_name("scenarios") / "resident_call.xml"
LOOPBACK = "127.0.0.1"

# RFC 4733 event codes; sipp plays one generated pcap per key.
DTMF_EVENTS = {str(d): d for d in range(10)} | {
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}
DTMF_PCAP_DIR = Path("/usr/share/sip-tester")  # Debian sip-tester's RFC 2833 key pcaps
TELEPHONE_EVENT_PT = 101  # must match the a=rtpmap in the scenario's SDP
# A key's pcap lasts 200 ms; sipp cancels a still-playing pcap when the next
# one starts, so closer keys would be cut short.
MIN_KEY_GAP = 0.3
# Leave time for the last key's packets to leave before any BYE we send.
TAIL_AFTER_LAST_KEY = 0.3
# A cancelled call's BYE is resent after this long without an answer (three tries).
BYE_RESEND_SECONDS = 0.5

# "[timestamp]" renders as "<date>\t<time>\t<epoch seconds>".
_LOG_LINE = re.compile(
    r"^(START|ANSWERED|KEY|PBX_BYE|CALLER_BYE)(?: (\S))? \S+\t\S+\t(\d+(?:\.\d+)?)",
    re.MULTILINE,
)

HangUpSide = Literal["pbx", "caller"]


@dataclass
class CallerResult:
    returncode: int
    stdout: str
    stderr: str
    messages_log: str
    started_at: float
    # Wall-clock time of each key play, from sipp's own log (best effort).
    keys_sent_at: list[float] = field(default_factory=list)
    answered_at: float | None = None
    ended_at: float | None = None
    # Who sent the BYE: the PBX, the caller (hang_up_after / hold_seconds), or
    # None when the call never got that far.
    hung_up_by: HangUpSide | None = None
    timed_out: bool = False
    scenario: str = ""
    log: str = ""
    errors: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_udp_port(block: int = 1, *, low: int = 20000, high: int = 60000) -> int:
    """An even UDP port on loopback with ``block`` consecutive ports free."""
    for _ in range(200):
        base = random.randrange(low, high - block) & ~1
        if all(_port_free(base + i) for i in range(block)):
            return base
    raise RuntimeError("no free UDP port block on 127.0.0.1")


def dtmf_pcap(digit: str, index: int) -> bytes:
    """A pcap of one RFC 4733 key press, the ``index``-th of the call.

    It is sip-tester's own dtmf_2833_<d>.pcap (which Asterisk reads as exactly one key),
    with the RTP timestamp and sequence numbers moved per key: the files all carry the
    same timestamp, so a repeated key ("99") would be dropped as a retransmission.
    Hand-built packets with other durations or sequence numbers made Asterisk see one
    key twice, hence reusing the files.
    """
    try:
        DTMF_EVENTS[digit.upper()]
    except KeyError:
        raise ValueError(f"not a DTMF key: {digit!r}") from None
    name = {"*": "star", "#": "pound"}.get(digit, digit.upper())
    source = DTMF_PCAP_DIR / f"dtmf_2833_{name}.pcap"
    if not source.is_file():
        raise ValueError(f"sip-tester has no pcap for key {digit!r} ({source})")
    data = bytearray(source.read_bytes())
    offset = 24  # pcap global header
    while offset + 16 <= len(data):
        captured = struct.unpack_from("<I", data, offset + 8)[0]
        rtp = offset + 16 + 14 + 20 + 8  # record header, Ethernet, IPv4, UDP
        seq, ts = struct.unpack_from("!HI", data, rtp + 2)
        struct.pack_into(
            "!HI", data, rtp + 2, (seq + index * 64) & 0xFFFF, (ts + index * 16000) & 0xFFFFFFFF
        )
        offset += 16 + captured
    return bytes(data)


@dataclass(frozen=True)
class Speech:
    """Something the resident says: 8 kHz 16-bit mono PCM, sent as G.711 u-law RTP."""

    pcm: bytes
    label: str = "speech"

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 16000


def audio_pcap(pcm: bytes, index: int, ssrc: int = 0x5EEC0001) -> bytes:
    """A pcap of RTP packets (PCMU, 20 ms each) carrying `pcm`, the `index`-th clip of the call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # in the standard library up to 3.12, which is what this project runs

    ulaw = audioop.lin2ulaw(pcm[: len(pcm) - len(pcm) % 2], 2)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    seq0, ts0 = 20000 + index * 4000, 500000 + index * 800000
    for n, start in enumerate(range(0, len(ulaw), 160)):
        payload = ulaw[start : start + 160].ljust(160, b"\xff")
        rtp = struct.pack("!BBHII", 0x80, (0x80 if n == 0 else 0), seq0 + n, ts0 + 160 * n, ssrc)
        udp = struct.pack("!HHHH", 10000, 10000, 8 + len(rtp) + len(payload), 0) + rtp + payload
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
            socket.inet_aton(LOOPBACK), socket.inet_aton(LOOPBACK),
        )  # fmt: skip
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        usec = n * 20000
        out.append(
            struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame))
        )
        out.append(frame)
    return b"".join(out)


def render_scenario(
    keys: Sequence[tuple[float, str | Speech]],
    *,
    caller: str,
    hold_seconds: float,
    hang_up_after: float | None,
    pcap_dir: Path,
) -> str:
    """Scenario XML for one call (key pcaps go to ``pcap_dir``).

    ``hang_up_after`` counts from the answer and drops keys that would come
    later; ``hold_seconds`` counts from the last key.
    """
    budget = hang_up_after if hang_up_after is not None else float("inf")
    steps: list[str] = []
    elapsed = 0.0
    previous_clip = 0.0  # a pcap still playing is cut off by the next one: wait it out
    for i, (delay, digit) in enumerate(keys):
        gap = max(float(delay), (MIN_KEY_GAP + previous_clip) if i else 0.0)
        if elapsed + gap >= budget:
            break  # the caller is gone before this key
        elapsed += gap
        pcap = pcap_dir / f"key{i}.pcap"
        if isinstance(digit, Speech):
            pcap.write_bytes(audio_pcap(digit.pcm, i))
            previous_clip = digit.seconds
            digit = digit.label
        else:
            pcap.write_bytes(dtmf_pcap(digit, i))
            previous_clip = 0.0
        if gap > 0:
            # A BYE during the wait ends the call cleanly instead of failing it.
            steps.append(
                f'  <recv request="BYE" timeout="{round(gap * 1000)}" '
                f'ontimeout="key{i}" next="pbx_bye"/>\n'
                f'  <label id="key{i}"/>'
            )
        steps.append(
            "  <nop>\n    <action>\n"
            f'      <log message="KEY {digit} [timestamp]"/>\n'
            f'      <exec play_pcap_audio="{pcap}"/>\n'
            "    </action>\n  </nop>"
        )
    wait = budget - elapsed if hang_up_after is not None else hold_seconds
    if steps:
        wait = max(wait, TAIL_AFTER_LAST_KEY)
    wait_ms = max(1, round(wait * 1000))
    return (
        TEMPLATE.read_text(encoding="utf-8")
        .replace("@@CALLER@@", caller)
        .replace("@@KEYS@@", "\n".join(steps))
        .replace("@@WAIT_MS@@", str(wait_ms))
    )


def bye_for_trace(messages_log: str, local_port: int) -> bytes | None:
    """A BYE ending the call in sipp's message trace (`-trace_msg`), or None when there is
    nothing to end: never answered, or a BYE already went one way or the other."""
    answer = None
    # Each entry: a line of dashes and a time, "UDP message sent/received ...", a blank
    # line, then the SIP message.
    for entry in re.split(r"^-{20,}.*$", messages_log, flags=re.MULTILINE):
        _, _, message = entry.strip().partition("\n\n")
        message = message.strip()
        if message.startswith("BYE "):
            return None
        if message.startswith("SIP/2.0 200") and re.search(r"^CSeq: *\d+ INVITE", message, re.M):
            answer = message
    if answer is None:
        return None
    headers: dict[str, str] = {}
    for line in answer.splitlines()[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            break  # the blank line before the body
        headers.setdefault(name.strip().lower(), value.strip())
    contact = re.search(r"<([^>]+)>", headers.get("contact", ""))
    if contact is None or not {"from", "to", "call-id"} <= headers.keys():
        return None
    branch = f"z9hG4bK-cityline-{random.randrange(1 << 30)}"
    lines = [
        f"BYE {contact.group(1)} SIP/2.0",
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch={branch}",
        f"From: {headers['from']}",
        f"To: {headers['to']}",
        f"Call-ID: {headers['call-id']}",
        "CSeq: 99 BYE",  # above any CSeq the scenario uses
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _abort_call(
    proc: asyncio.subprocess.Process, messages: Path, local_port: int, remote: tuple[str, int]
) -> None:
    """Kill sipp, then hang up its call ourselves so the PBX frees the line at once.

    sipp's own abort (a second SIGUSR1) never fires with `-m 1`: reaching the call count
    resets its quit flag on every loop. So the BYE is built from sipp's message trace.
    """
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), 5)
    bye = bye_for_trace(_read(messages), local_port)
    if bye is None:
        return
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with contextlib.suppress(OSError):
            sock.bind((LOOPBACK, local_port))  # the dialog's own port, free now sipp is gone
        sock.setblocking(False)
        for _ in range(3):  # UDP: resend until the PBX answers, briefly
            with contextlib.suppress(OSError):
                sock.sendto(bye, remote)
            try:
                reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), BYE_RESEND_SECONDS)
            except (TimeoutError, OSError):
                continue
            if reply.startswith(b"SIP/2.0 2") or reply.startswith(b"SIP/2.0 481"):
                return


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


async def call_with_keys(
    sip_port: int,
    keys: Sequence[tuple[float, str | Speech]],
    *,
    number: str = "19115",
    caller: str = "48600100200",
    hold_seconds: float = 30.0,
    hang_up_after: float | None = None,
    local_port: int = 0,
    echo: bool = True,
    timeout: float = 60.0,
    port_range: tuple[int, int] = (20000, 60000),
) -> CallerResult:
    """Call ``number`` at 127.0.0.1:``sip_port`` and press ``keys`` after the answer.

    ``keys`` are (seconds to wait before the key, key) pairs, the first
    counted from the answer; keys closer than MIN_KEY_GAP are spread out.
    Without ``hang_up_after`` the caller waits up to ``hold_seconds`` after the
    last key for the PBX to hang up, then hangs up itself; with it, the caller
    hangs up that many seconds after the answer (skipping later keys) unless
    the PBX does first. ``result.hung_up_by`` tells which happened. A call the
    PBX never answers fails when ``timeout`` expires. ``port_range`` bounds the
    caller's own SIP and RTP ports. Cancelling the call kills its sipp process.
    """
    if not re.fullmatch(r"[0-9A-Za-z+*#._-]+", caller):
        raise ValueError(f"bad caller number: {caller!r}")
    work = Path(tempfile.mkdtemp(prefix="cityline-sipp-"))
    try:
        scenario = render_scenario(
            keys,
            caller=caller,
            hold_seconds=hold_seconds,
            hang_up_after=hang_up_after,
            pcap_dir=work,
        )
        scenario_path = work / "call.xml"
        scenario_path.write_text(scenario, encoding="utf-8")
        messages = work / "messages.log"
        logs = work / "logs.log"
        errors = work / "errors.log"
        low, high = port_range
        sip_local = local_port or free_udp_port(low=low, high=high)
        # sipp uses the media port and the next ones (echo, video).
        media_port = free_udp_port(4, low=low, high=high)
        args = [
            "-sf", str(scenario_path),
            "-s", number,
            "-i", LOOPBACK,
            "-p", str(sip_local),
            "-mi", LOOPBACK,
            "-mp", str(media_port),
            *(["-rtp_echo"] if echo else []),  # off for speech: the echo would talk back
            "-m", "1",
            "-l", "1",
            "-nostdin",
            "-aa",
            "-trace_msg", "-message_file", str(messages),
            "-trace_logs", "-log_file", str(logs),
            "-trace_err", "-error_file", str(errors),
            # sipp's own bound, slightly before ours, so it reports its failure.
            "-timeout", f"{max(1, int(timeout) - 1)}s",
            "-timeout_error",
            f"{LOOPBACK}:{sip_port}",
        ]  # fmt: skip
        started_at = time.time()
        proc = await asyncio.create_subprocess_exec(
            SIPP_BIN,
            *args,
            cwd=work,
            # Its own session: a Ctrl-C in the terminal is for us, and we end our callers.
            start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        timed_out = False
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.CancelledError:
            # Whoever cancels us (Ctrl-C, the end of a run) must not leave sipp running.
            await _abort_call(proc, messages, sip_local, (LOOPBACK, sip_port))
            raise
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, 9)
            out, err = await asyncio.wait_for(proc.communicate(), 5)
        returncode = proc.returncode if proc.returncode is not None else -9
        log = _read(logs)
        result = CallerResult(
            returncode=returncode,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            messages_log=_read(messages),
            started_at=started_at,
            timed_out=timed_out,
            scenario=scenario,
            log=log,
            errors=_read(errors),
        )
        for m in _LOG_LINE.finditer(log):
            kind, stamp = m.group(1), float(m.group(3))
            if kind == "KEY":
                result.keys_sent_at.append(stamp)
            elif kind == "ANSWERED":
                result.answered_at = stamp
            elif kind == "PBX_BYE":
                result.hung_up_by, result.ended_at = "pbx", stamp
            elif kind == "CALLER_BYE":
                result.hung_up_by, result.ended_at = "caller", stamp
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
