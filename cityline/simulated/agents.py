"""A simulated agent: a pyVoIP phone plus the same HTTP API and desktop socket a person uses.

It logs in, goes ready, answers after a short delay, talks for a while, hangs up, saves a
case for the call it was popped, and now and then pauses. Everything goes through the public
API, so what the wallboard shows is what real agents would make it show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from cityline.simulated.agent_phone import AgentPhone, CallRecord, free_udp_port
from cityline.simulated.traffic import AgentHabits, case_note

log = structlog.get_logger(__name__)

# An agent put on pause by the ACD (a missed ring, say) goes ready again after this.
BACK_TO_READY_SECONDS = 3.0
RTP_PORTS_PER_PHONE = 40
LOG_OUT_WITHIN_SECONDS = 5.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait until each has finished; whatever they raise is dropped."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class SimulatedAgentError(RuntimeError):
    """The agent could not start: the message says which step failed and why."""


@dataclass
class AgentTally:
    finished: int = 0  # answered calls that are over
    missed: int = 0
    cases_saved: int = 0
    case_failures: int = 0
    pauses: int = 0


class SimulatedAgent:
    def __init__(
        self,
        name: str,
        password: str,
        *,
        base_url: str,
        http: aiohttp.ClientSession,
        habits: AgentHabits,
        rng: random.Random,
        port_range: tuple[int, int],
    ) -> None:
        self.name = name
        self.password = password
        self.base_url = base_url
        self.http = http
        self.habits = habits
        self.rng = rng
        self.port_range = port_range
        self.tally = AgentTally()
        self.phone: AgentPhone | None = None
        self.token = ""
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._saving: set[asyncio.Task[None]] = set()  # cases being saved: finished at a stop
        # Screen-pops by call id, in arrival order; a finished call takes the oldest open one.
        self._pops: dict[str, dict[str, Any]] = {}
        self._ended: asyncio.Queue[CallRecord] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own_pause = False
        self._resuming = False
        self._state = ""

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Log in, register the phone, open the desktop socket and go ready."""
        status, body = await self._request("POST", "/api/login", {
            "name": self.name, "password": self.password})  # fmt: skip
        if status != 200:
            raise SimulatedAgentError(f"{self.name}: log-in failed ({status}: {body})")
        self.token = body["token"]
        sip = body["sip"]
        low, high = self.port_range
        rtp_low = free_udp_port(low=low, high=high - RTP_PORTS_PER_PHONE) & ~1
        self._loop = asyncio.get_running_loop()
        self.phone = AgentPhone(
            sip["username"],
            sip["password"],
            int(sip["port"]),
            sip_port=free_udp_port(low=low, high=high),
            rtp_low=rtp_low,
            rtp_high=rtp_low + RTP_PORTS_PER_PHONE,
            # Drawn per call, in pyVoIP's threads: each agent has its own generator.
            answer_after=lambda: self.habits.draw_answer_delay(self.rng),
            talk_seconds=lambda: self.habits.draw_talk_seconds(self.rng),
            on_call_ended=self._phone_call_ended,
        )
        try:
            await asyncio.to_thread(self.phone.start)
        except RuntimeError as exc:
            raise SimulatedAgentError(f"{self.name}: {exc}") from exc
        ws_url = self.base_url.replace("http", "ws", 1) + f"/ws/agent?token={self.token}"
        self._ws = await self.http.ws_connect(ws_url, heartbeat=20.0)
        self._tasks = [
            asyncio.create_task(self._read_desktop(), name=f"{self.name}-desktop"),
            asyncio.create_task(self._after_calls(), name=f"{self.name}-calls"),
        ]
        await self._set_state("ready")
        log.info("simulated_agent_ready", agent=self.name, phone=self.phone.endpoint)

    async def stop(self) -> None:
        """Hang up and unregister the phone, then log out. Never raises."""
        await cancel_and_wait(self._tasks)
        if self._saving:
            await asyncio.wait(self._saving, timeout=HTTP_TIMEOUT.total)
        if self.phone is not None:
            await asyncio.to_thread(self.phone.stop)
        if self.token:
            await self._log_out()
        if self._ws is not None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self._ws.close()
        log.info("simulated_agent_stopped", agent=self.name, **vars(self.tally))

    async def _log_out(self) -> None:
        # The ACD refuses a log-out while the call just hung up is still ending: retry briefly.
        deadline = time.monotonic() + LOG_OUT_WITHIN_SECONDS
        while True:
            try:
                status, body = await self._request("POST", "/api/logout")
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, body = 0, repr(exc)
            if status in (200, 401) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        if status != 200:
            log.warning("simulated_agent_logout_failed", agent=self.name, status=status, error=body)

    def _phone_call_ended(self, record: CallRecord) -> None:
        """From pyVoIP's thread: hand the finished call to the event loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._ended.put_nowait, record)

    # -- what the agent does --------------------------------------------------------------------
    async def _read_desktop(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            kind = message.get("type")
            if kind == "pop" and message.get("call_id"):
                self._pops[str(message["call_id"])] = message
            elif kind == "call" and message.get("status") in ("missed", "abandoned"):
                self._pops.pop(str(message.get("call_id")), None)
                self.tally.missed += message.get("status") == "missed"
            elif kind in ("state", "hello"):
                self._state = str(message.get("acd", {}).get("state", ""))
                if self._state == "paused" and not self._own_pause and not self._resuming:
                    # The ACD paused us (a ring we did not answer in time): carry on shortly.
                    self._resuming = True
                    self._tasks.append(asyncio.create_task(self._resume()))

    async def _resume(self) -> None:
        try:
            await asyncio.sleep(BACK_TO_READY_SECONDS)
            if self._state == "paused" and not self._own_pause:
                await self._set_state("ready")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("simulated_agent_request_failed", agent=self.name, error=repr(exc))
        finally:
            self._resuming = False

    async def _after_calls(self) -> None:
        while True:
            record = await self._ended.get()
            if record.answered_at is None:
                continue  # rang but never answered: nothing to write up
            self.tally.finished += 1
            try:
                # A case being saved when the demo stops is finished, not cut off half-sent
                # (the service would store it while the tally never learnt of it).
                save = asyncio.create_task(self._save_case(record))
                self._saving.add(save)
                save.add_done_callback(self._saving.discard)
                await asyncio.shield(save)
                pause = self.habits.draw_pause(self.rng)
                if pause is not None:
                    await self._pause(*pause)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("simulated_agent_request_failed", agent=self.name, error=repr(exc))

    def _pop_for(self, record: CallRecord) -> tuple[str, dict[str, Any]] | None:
        """The screen-pop of the call that just ended: the caller's number, else the oldest."""
        for call_id, pop in self._pops.items():
            if record.caller and pop.get("caller_number") == record.caller:
                return call_id, self._pops.pop(call_id)
        if self._pops:
            call_id = next(iter(self._pops))
            return call_id, self._pops.pop(call_id)
        return None

    async def _save_case(self, record: CallRecord) -> None:
        found = self._pop_for(record)
        if found is None:
            log.warning("simulated_agent_no_pop", agent=self.name, caller=record.caller)
            return
        call_id, pop = found
        group = pop.get("service_group") or "other"
        description, address = case_note(self.rng, group)
        status, body = await self._request("POST", "/api/cases", {
            "call_id": call_id, "service_group": group,
            "description": description, "address": address,
        })  # fmt: skip
        if status == 201:
            self.tally.cases_saved += 1
            log.info("simulated_case_saved", agent=self.name, call_id=call_id, case=body.get("id"))
        else:
            self.tally.case_failures += 1
            log.warning("simulated_case_failed", agent=self.name, status=status, error=body)

    async def _pause(self, reason: str, seconds: float) -> None:
        self._own_pause = True
        try:
            if await self._set_state("paused", reason):
                self.tally.pauses += 1
                await asyncio.sleep(seconds)
        finally:
            self._own_pause = False
        await self._set_state("ready")

    async def _set_state(self, state: str, reason: str = "") -> bool:
        status, body = await self._request("POST", "/api/me/state", {
            "state": state, "reason": reason})  # fmt: skip
        if status != 200:
            # e.g. a call was offered in the meantime: the ACD decides, we simply go on
            log.info("simulated_agent_state_refused", agent=self.name, state=state, error=body)
        return status == 200

    async def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(
            method, self.base_url + path, json=body, headers=headers, timeout=HTTP_TIMEOUT
        ) as response:
            try:
                return response.status, await response.json()
            except (aiohttp.ContentTypeError, json.JSONDecodeError):
                return response.status, {"error": await response.text()}
