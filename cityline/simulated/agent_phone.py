"""A simulated agent phone: a pyVoIP 1.6.8 SIP user agent registered to Asterisk.

pyVoIP runs its own threads; this wrapper records what happened (ring, answer,
hang-up times) in plain lists and offers ``async`` waits for asyncio callers (the
demo's simulated agents and the end-to-end tests). The Asterisk AOR for the
endpoint needs ``qualify_frequency=0``: pyVoIP ignores OPTIONS.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

with warnings.catch_warnings():
    # pyVoIP imports audioop, deprecated since 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    # pyVoIP.SIP only imports cleanly after pyVoIP.VoIP (circular import).
    import pyVoIP
    from pyVoIP.VoIP import CallState, PhoneStatus, VoIPCall, VoIPPhone
    from pyVoIP.VoIP import VoIP as _voip

    # isort: split
    from pyVoIP import RTP, SIP

log = structlog.get_logger(__name__)
_pyvoip_log = logging.getLogger("pyVoIP")

LOOPBACK = "127.0.0.1"
# The longest we keep a call up when nobody hangs up (talk_seconds=None).
MAX_CALL_SECONDS = 600.0
_TICK = 0.02

EndedBy = Literal["agent", "remote", "cancelled", "stopped"]
# A fixed number of seconds, or a function drawing a new one for each call.
Seconds = float | Callable[[], float]


def _draw(value: Seconds) -> float:
    return value() if callable(value) else value


def _quiet_debug(s: object, e: object = None) -> None:
    # pyVoIP prints some errors straight to stdout; send them to logging.
    _pyvoip_log.debug("%s", e if e is not None else s)


def _silence_pyvoip() -> None:
    for mod in (pyVoIP, SIP, RTP, _voip):
        mod.debug = _quiet_debug  # type: ignore[attr-defined]
    for text in (
        "RTP Packet failed to send",  # raised by RTP threads racing a hang-up
        "RTP Payload type",
        "RTP KeyError",
        "Unknown media description",
        "Unable to assign ports",
    ):
        warnings.filterwarnings("ignore", message=text)


def free_udp_port(*, low: int = 20000, high: int = 60000) -> int:
    for _ in range(200):
        port = random.randrange(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP port on 127.0.0.1")


@dataclass
class CallRecord:
    call_id: str
    caller: str
    rang_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    ended_by: EndedBy | None = None
    rx_packets: int = 0  # RTP packets received while answered


class _Phone(VoIPPhone):
    """VoIPPhone with no 1 s delay before the call callback, and CANCEL handled.

    pyVoIP 1.6.8 ignores CANCEL: the call would ring forever and Asterisk
    would get no 487 for its INVITE.
    """

    def __init__(self, *args: Any, on_invite: Callable[[str, Any], None], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._on_invite = on_invite
        self.cancel_handler: Callable[[str], None] | None = None

    def callback(self, request: SIP.SIPMessage) -> None:
        if request.type == SIP.SIPMessageType.MESSAGE and request.method == "CANCEL":
            self._cancel(request)
            return
        super().callback(request)

    def _callback_MSG_Invite(self, request: SIP.SIPMessage) -> None:
        call_id = request.headers["Call-ID"]
        if call_id in self.calls:
            super()._callback_MSG_Invite(request)  # re-INVITE
            return
        self._on_invite(call_id, request)
        self.sip.out.sendto(self.sip.gen_ringing(request).encode("utf8"), (self.server, self.port))
        sess_id = random.randint(1, 100000)
        self._create_Call(request, sess_id)
        assert self.callCallback is not None
        t = threading.Timer(0, self.callCallback, [self.calls[call_id]])
        t.name = f"Phone Call: {call_id}"
        t.daemon = True
        t.start()
        self.threads.append(t)
        self.threadLookup[t] = call_id

    def _cancel(self, request: SIP.SIPMessage) -> None:
        call_id = request.headers["Call-ID"]
        call = self.calls.get(call_id)
        if call is None or call.state != CallState.RINGING:
            return
        call.state = CallState.ENDED
        self.calls.pop(call_id, None)
        # The 200 for the CANCEL goes out after this returns; 487 follows it.
        t = threading.Timer(0.02, self._send_487, [call.request])
        t.daemon = True
        t.start()
        if self.cancel_handler is not None:
            self.cancel_handler(call_id)

    def _send_487(self, invite: SIP.SIPMessage) -> None:
        msg = self.sip.gen_busy(invite).replace("486 Busy Here", "487 Request Terminated", 1)
        tag = self.sip.tagLibrary.get(invite.headers["Call-ID"])
        if tag:
            to = f"To: {invite.headers['To']['raw']};tag={tag}"
            msg = re.sub(r"^To: .*$", lambda _: to, msg, count=1, flags=re.MULTILINE)
        msg = re.sub(r"^Warning: .*\r\n", "", msg, count=1, flags=re.MULTILINE)
        try:
            self.sip.out.sendto(msg.encode("utf8"), (self.server, self.port))
        except OSError:
            pass  # phone already stopped


class AgentPhone:
    """A registered agent phone that rings, answers after a delay and hangs up.

    ``answer_after=None``: never answer (ring-no-answer). ``talk_seconds=None``:
    stay on the call until the other side hangs up. Either may be a function, drawn
    again for every call. ``on_call_ended`` is called (from a pyVoIP thread) with the
    record of each call once it is over, answered or not.
    """

    def __init__(
        self,
        endpoint: str,
        secret: str,
        asterisk_sip_port: int,
        *,
        sip_port: int = 0,
        rtp_low: int,
        rtp_high: int,
        answer_after: Seconds | None = 0.5,
        talk_seconds: Seconds | None = 2.0,
        register_timeout: float = 5.0,
        on_call_ended: Callable[[CallRecord], None] | None = None,
    ) -> None:
        if rtp_high - rtp_low < 3:
            raise ValueError("give the phone at least 4 RTP ports")
        self.endpoint = endpoint
        self.secret = secret
        self.asterisk_sip_port = asterisk_sip_port
        self.sip_port = sip_port
        self.rtp_low = rtp_low
        self.rtp_high = rtp_high
        self.answer_after = answer_after
        self.talk_seconds = talk_seconds
        self.register_timeout = register_timeout
        self.on_call_ended = on_call_ended

        self.ring_times: list[float] = []  # when each INVITE arrived
        self.answered: list[float] = []
        self.hung_up: list[float] = []  # answered calls that ended, either side
        self.cancelled: list[float] = []  # ringing calls the PBX cancelled
        self.calls: list[CallRecord] = []

        self._lock = threading.Lock()
        self._records: dict[str, CallRecord] = {}
        self._workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._phone: _Phone | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Register with Asterisk; raise if not registered within the timeout."""
        if self._phone is not None:
            raise RuntimeError("already started")
        _silence_pyvoip()
        if not self.sip_port:
            self.sip_port = free_udp_port()
        self._stopping.clear()
        phone = _Phone(
            LOOPBACK,
            self.asterisk_sip_port,
            self.endpoint,
            self.secret,
            myIP=LOOPBACK,
            callCallback=self._on_call,
            sipPort=self.sip_port,
            rtpPortLow=self.rtp_low,
            rtpPortHigh=self.rtp_high,
            on_invite=self._on_invite,
        )
        phone.cancel_handler = self._on_cancel
        # pyVoIP waits 30 s per REGISTER response by default.
        phone.sip.register_timeout = max(1, round(self.register_timeout))
        self._phone = phone
        deadline = time.monotonic() + self.register_timeout
        try:
            # Blocks for the first REGISTER; pyVoIP retries failures in its own threads.
            phone.start()
            while time.monotonic() < deadline:
                status = phone.get_status()
                if status == PhoneStatus.REGISTERED:
                    log.debug("agent_phone_registered", endpoint=self.endpoint, port=self.sip_port)
                    return
                if status == PhoneStatus.FAILED:
                    break
                time.sleep(0.05)
        except Exception as exc:
            self._abandon()
            raise RuntimeError(f"agent {self.endpoint} failed to register: {exc}") from exc
        status = phone.get_status()
        self._abandon()
        raise RuntimeError(
            f"agent {self.endpoint} not registered with 127.0.0.1:{self.asterisk_sip_port} "
            f"within {self.register_timeout}s (status {status.value})"
        )

    def _abandon(self) -> None:
        phone, self._phone = self._phone, None
        if phone is None:
            return
        phone.sip.NSD = False  # stops the register retries and the receive loop
        if phone.sip.registerThread is not None:
            phone.sip.registerThread.cancel()
        phone.sip._close_sockets()

    def stop(self) -> None:
        """Hang up any call, unregister, and stop pyVoIP's threads."""
        self._stopping.set()
        for worker in list(self._workers):
            worker.join(timeout=2.0)
        phone, self._phone = self._phone, None
        if phone is None:
            return
        for call in list(phone.calls.values()):
            if call.state == CallState.RINGING:
                self._reject(phone, call)
        try:
            phone.stop()  # sends BYE for answered calls, then un-REGISTERs
        except Exception:
            log.debug("agent_phone_stop_failed", endpoint=self.endpoint, exc_info=True)
            phone.sip.NSD = False
            phone.sip._close_sockets()

    def _reject(self, phone: _Phone, call: VoIPCall) -> None:
        # VoIPCall.deny() fails on a call whose RTP never started; answer 486 directly.
        call.state = CallState.ENDED
        phone.calls.pop(call.call_id, None)
        try:
            busy = phone.sip.gen_busy(call.request).encode("utf8")
            phone.sip.out.sendto(busy, (phone.server, phone.port))
        except OSError:
            pass
        with self._lock:
            rec = self._records.get(call.call_id)
            if rec is not None and rec.ended_at is None:
                rec.ended_at, rec.ended_by = time.time(), "stopped"

    def __enter__(self) -> AgentPhone:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> AgentPhone:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def registered(self) -> bool:
        return self._phone is not None and self._phone.get_status() == PhoneStatus.REGISTERED

    @property
    def contact_uri(self) -> str:
        return f"sip:{self.endpoint}@{LOOPBACK}:{self.sip_port}"

    # -- asyncio waits -----------------------------------------------------

    async def wait_for(
        self, condition: Callable[[], bool], within: float, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"agent {self.endpoint}: no {what} within {within}s")
            await asyncio.sleep(_TICK)

    async def wait_rings(self, count: int = 1, within: float = 10.0) -> None:
        await self.wait_for(lambda: len(self.ring_times) >= count, within, f"{count} rings")

    async def wait_answered(self, count: int = 1, within: float = 10.0) -> None:
        await self.wait_for(lambda: len(self.answered) >= count, within, f"{count} answers")

    async def wait_call_ends(self, count: int = 1, within: float = 10.0) -> None:
        """Wait until ``count`` calls are over, answered (hung up) or not (cancelled)."""
        await self.wait_for(
            lambda: len(self.hung_up) + len(self.cancelled) >= count,
            within,
            f"{count} ended calls",
        )

    # -- pyVoIP callbacks (pyVoIP threads) ---------------------------------

    def _on_invite(self, call_id: str, request: SIP.SIPMessage) -> None:
        now = time.time()
        caller = str(request.headers.get("From", {}).get("number") or "")
        rec = CallRecord(call_id=call_id, caller=caller, rang_at=now)
        with self._lock:
            self._records[call_id] = rec
            self.calls.append(rec)
            self.ring_times.append(now)

    def _on_cancel(self, call_id: str) -> None:
        now = time.time()
        with self._lock:
            rec = self._records.get(call_id)
            if rec is not None and rec.ended_at is None:
                rec.ended_at, rec.ended_by = now, "cancelled"
            self.cancelled.append(now)
        if rec is not None:
            self._report_ended(rec)

    def _report_ended(self, rec: CallRecord) -> None:
        if self.on_call_ended is None:
            return
        try:
            self.on_call_ended(rec)
        except Exception:  # the listener's failure must not kill pyVoIP's thread
            log.exception("agent_phone_listener_failed", endpoint=self.endpoint)

    def _on_call(self, call: VoIPCall) -> None:
        worker = threading.current_thread()
        with self._lock:
            self._workers.append(worker)
        try:
            self._run_call(call)
        except Exception:
            log.exception("agent_phone_call_failed", endpoint=self.endpoint)
        finally:
            with self._lock:
                self._workers.remove(worker)

    def _run_call(self, call: VoIPCall) -> None:
        rec = self._records[call.call_id]
        # Ringing: a CANCEL (handled by _Phone) ends it, or we answer.
        answer_at = None if self.answer_after is None else rec.rang_at + _draw(self.answer_after)
        ring_deadline = rec.rang_at + MAX_CALL_SECONDS
        while call.state == CallState.RINGING and not self._stopping.is_set():
            now = time.time()
            if answer_at is not None and now >= answer_at:
                break
            if now >= ring_deadline:
                return
            time.sleep(_TICK)
        if call.state != CallState.RINGING or self._stopping.is_set():
            return
        call.answer()
        rec.answered_at = time.time()
        with self._lock:
            self.answered.append(rec.answered_at)

        hang_up_at = rec.answered_at + (
            _draw(self.talk_seconds) if self.talk_seconds is not None else MAX_CALL_SECONDS
        )
        ended_by: EndedBy = "remote"
        while call.state == CallState.ANSWERED:
            if self._stopping.is_set():
                ended_by = "stopped"
                break
            if time.time() >= hang_up_at:
                ended_by = "agent"
                break
            # pyVoIP sends silence when nothing is written; drain what we hear.
            call.read_audio(160, blocking=False)
            time.sleep(_TICK)
        rec.rx_packets = sum(len(c.pmin.log) for c in call.RTPClients)
        if ended_by in ("agent", "stopped") and call.state == CallState.ANSWERED:
            try:
                call.hangup()
            except Exception:  # the other side hung up at the same moment
                log.debug("agent_phone_hangup_raced", endpoint=self.endpoint, exc_info=True)
        rec.ended_at, rec.ended_by = time.time(), ended_by
        with self._lock:
            self.hung_up.append(rec.ended_at)
        self._report_ended(rec)


__all__ = ["AgentPhone", "CallRecord", "Seconds", "free_udp_port"]
