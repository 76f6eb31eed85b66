"""One resident's call, from the first AGI line to the call record.

The FastAGI session holds the call to its end: keypad or speech dialog, queue with music on
hold, ring the offered agent (screen-pop at the same moment), talk; every fact goes to the
call record as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from acd.calls import Announcement, Offer
from acd.engine import AcdError
from acd.live import CallTicket
from calls.callbacks import CallbackRequest
from db.pool import database_unavailable, utcnow
from ivr.dialog import Ask, KeypadDialog, Route
from ivr.prompts import position_prompt, wait_prompt
from ivr.speech_dialog import DEFAULT_LANGUAGE, Goodbye, SpeechRoute, UseKeypad
from pbx.fastagi import AgiChannel, AgiError, AgiHangup

if TYPE_CHECKING:
    from ivr.call_handler import CallHandler, LiveCall

log = structlog.get_logger(__name__)

CALLBACK_KEY = "1"
KEYS = "0123456789*#"
# How long one EXEC Dial may hold the AGI session: ring plus the whole conversation.
LONGEST_CONVERSATION_SECONDS = 4 * 3600.0
# The longest a resident waits, in silence, for their case history before being queued.
CASE_LOOKUP_SECONDS = 2.0


class CallSession:
    def __init__(self, handler: CallHandler, channel: AgiChannel, live: LiveCall) -> None:
        self.h = handler
        self.channel = channel
        self.live = live
        self.call_id = live.call_id
        self.db_id = uuid.UUID(live.call_id)
        self.phase = "ivr"
        self.queued_at: float | None = None
        self.offers = 0
        self.agent_id: str | None = None
        self._offered_at = 0.0
        self.recording: str | None = None
        self.outcome = "failed"
        self.language = "pl"
        self.callback_requested = False
        self.keys_consumed = 0  # keys AGI commands returned (menus, announcements)
        self.duplicates: list[dict[str, Any]] = []

    def _ts(self, at: float) -> datetime:
        return datetime.fromtimestamp(at, tz=utcnow().tzinfo)

    async def run(self) -> None:
        h = self.h
        caller = self.channel.caller_number
        log.info("call_arrived", caller=caller, uniqueid=self.channel.uniqueid)
        await h._records.arrived(
            self.db_id,
            asterisk_uniqueid=self.channel.uniqueid,
            caller_number=caller,
            at=utcnow(),
        )
        handled = False
        try:
            await self.channel.set_variable("CITYLINE_CALL_ID", self.call_id)
            route = await self._ivr()
            if route is None:  # the IVR answered the question itself
                handled = True
                return
            await h._records.update(
                self.db_id,
                language=route.language,
                service_group=route.group,
                service_code=route.service_code,
                transcript=route.transcript,
                ivr_ended_at=utcnow(),
            )
            await h._records.event(
                self.db_id,
                "ivr_done",
                {"language": route.language, "group": route.group, "reason": route.reason,
                 "service": route.service_code, "address": route.address},
            )  # fmt: skip
            self.language = route.language
            if route.group is None:
                await self._play("any_agent")
            handled = await self._queue_and_connect(route)
        except AgiHangup:
            if self.phase == "ringing" and not self.live.answered.is_set():
                # The caller may have hung up after talking; the channel still tells.
                with contextlib.suppress(AgiHangup, AgiError):
                    if await self.channel.get_variable("DIALSTATUS") == "ANSWER":
                        await self._talked(self._offered_at)
            if self.live.answered.is_set():
                self.outcome = "answered"
            elif self.channel.cut_off:
                self.outcome = "cut"  # Asterisk went away: the resident did not abandon
            else:
                self.outcome = f"abandoned_{self.phase}"
            if self.channel.cut_off:
                log.error("call_cut_off", phase=self.phase, outcome=self.outcome)
                await self.h._records.event(self.db_id, "cut_off", {"phase": self.phase})
            else:
                log.info("caller_hung_up", phase=self.phase, outcome=self.outcome)
            handled = True
        finally:
            await self._leave_acd()
            # A caller who already talked to an agent must not land in the fallback queue.
            if handled or self.live.answered.is_set():
                with contextlib.suppress(AgiHangup, AgiError):
                    await self.channel.set_variable("CITYLINE_DONE", "1")
            await self._write_record()

    async def _ivr(self) -> Route | None:
        """Speech where the default language has a model, else the keypad; None: answered."""
        speech = self.h._speech
        if speech is None or not speech.speaks(DEFAULT_LANGUAGE):
            return await self._keypad(KeypadDialog(self.h._catalogue))
        outcome = await speech.converse(
            self.channel, self.call_id, speech.dialog(), self._key_taken
        )
        if isinstance(outcome, SpeechRoute):
            return Route(
                outcome.language, outcome.group, outcome.reason,
                outcome.service_code, outcome.transcript, outcome.address,
            )  # fmt: skip
        if isinstance(outcome, Goodbye):
            self.language = outcome.language
            self.outcome = "answered_by_ivr"
            await self.h._records.update(
                self.db_id, language=outcome.language, service_code=outcome.service_code,
                ivr_ended_at=utcnow(),
            )  # fmt: skip
            await self._play("goodbye")
            return None
        assert isinstance(outcome, UseKeypad)
        log.info("speech_to_keypad", reason=outcome.reason, language=outcome.language)
        dialog = KeypadDialog(
            self.h._catalogue, max_retries=outcome.retries, language=outcome.language
        )
        return await self._keypad(dialog, first_key=outcome.key)

    def _key_taken(self) -> None:
        self.keys_consumed += 1

    async def _keypad(self, dialog: KeypadDialog, first_key: str | None = None) -> Route:
        step: Ask | Route = dialog.on_input(first_key) if first_key else dialog.start()
        while isinstance(step, Ask):
            try:
                digits = await self._ask(step)
            except AgiHangup:
                if not await self._caller_still_there():
                    raise
                # A prompt Asterisk could not play: the resident still gets an agent.
                log.error("prompt_failed", prompts=step.prompts, language=step.language)
                return Route(dialog.language, None, "prompt_failed")
            log.info("ivr_input", step=step.step.value, digits=digits)
            step = dialog.on_input(digits)
        return step

    async def _ask(self, step: Ask) -> str:
        """Play the prompts (a key interrupts any of them) and collect the answer."""
        *preface, menu = step.prompts
        for name in preface:
            pressed = await self._stream(name, step.language, KEYS)
            if pressed:
                return pressed
        digits = await self.channel.get_data(
            self._prompt(menu, step.language), step.timeout_ms, step.max_digits
        )
        self.keys_consumed += len(digits)
        return digits

    async def _caller_still_there(self) -> bool:
        """-1 from a prompt means a hang-up or an unplayable file; the channel tells which."""
        if self.channel.hung_up or self.channel.closed:
            return False
        try:
            await self.channel.command("CHANNEL", "STATUS")
        except (AgiHangup, AgiError):
            return False
        return True

    async def _queue_and_connect(self, route: Route) -> bool:
        h = self.h
        caller = self.channel.caller_number
        # Ready before any agent rings; a slow or absent database costs the pop, not the call.
        history = await self._look_up("caller_history", h._cases.caller_history(caller))
        if route.service_code:  # open cases of the same service there: maybe a known fault
            self.duplicates = await self._look_up(
                "possible_duplicates",
                h._cases.possible_duplicates(route.service_code, address=route.address or ""),
            )
        self.phase = "queue"
        self.queued_at = h._clock()
        await h._records.update(self.db_id, queued_at=self._ts(self.queued_at))
        await h._records.event(self.db_id, "queued")
        ticket = h._acd.enqueue(self.call_id, language=route.language, group=route.group)
        log.info("call_queued", language=route.language, group=route.group)
        while True:
            offer = ticket.take_offer() or await self._wait_in_queue(ticket, route, history)
            if offer is None:
                return True  # the resident asked to be called back and hangs up
            if await self._ring(offer, route, history):
                return True

    async def _look_up(
        self, what: str, lookup: Awaitable[list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """A read for the screen-pop, bounded: none (and a log line) when the database is away."""
        if self.h._records.database_down_since is not None:  # known away: not even 2 s
            if isinstance(lookup, Coroutine):
                lookup.close()  # never started: no "never awaited" warning
            log.warning("screen_pop_lookup_skipped", lookup=what, error="database unavailable")
            return []
        try:
            return await asyncio.wait_for(lookup, CASE_LOOKUP_SECONDS)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            log.warning("screen_pop_lookup_skipped", lookup=what, error=repr(exc),
                        limit_seconds=CASE_LOOKUP_SECONDS)  # fmt: skip
            return []

    async def _wait_in_queue(
        self, ticket: CallTicket, route: Route, history: list[dict[str, Any]]
    ) -> Offer | None:
        """Hold music until an agent is offered; announcements and the callback key meanwhile.

        None: the resident chose to be called back.
        """
        hold_class = f"{self.h._settings.moh_class_prefix}{route.language}"
        await self.channel.set_music(True, hold_class)
        while True:
            event = await self._next_queue_event(ticket)
            if isinstance(event, Offer):
                await self.channel.set_music(False)
                return event
            if isinstance(event, Announcement):
                key = await self._announce(event, hold_class)
            else:
                key = event
            if key == CALLBACK_KEY and self._callbacks_offered():
                if await self._request_callback(route, history):
                    return None

    async def _next_queue_event(self, ticket: CallTicket) -> Offer | Announcement | str:
        offer = asyncio.ensure_future(ticket.next_offer())
        waits = {
            offer,
            asyncio.ensure_future(ticket.announcements.get()),
            asyncio.ensure_future(self._fresh_key()),
            asyncio.ensure_future(self.channel.wait_hangup()),
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if offer in done:  # an offer wins over anything that finished with it
            return offer.result()
        if self.channel.hung_up or self.channel.closed:
            raise AgiHangup("caller hung up in the queue")
        result = next(iter(done)).result()
        assert isinstance(result, Announcement | str)
        return result

    async def _fresh_key(self) -> str:
        """The next key pressed during hold music (not one a menu already took)."""
        while True:
            number, digit = await self.live.keys.get()
            if number > self.keys_consumed:
                return digit

    def _callbacks_offered(self) -> bool:
        number = self.channel.caller_number
        return (
            self.h._settings.callbacks
            and self.h._callbacks is not None
            and number.isdigit()  # "unknown" or withheld: nowhere to call back
        )

    async def _announce(self, announcement: Announcement, hold_class: str) -> str:
        """Position and expected wait (and the callback offer); returns a key pressed, or ''."""
        await self.channel.set_music(False)
        names = [position_prompt(announcement.position), wait_prompt(announcement.expected_wait)]
        escape = ""
        if self._callbacks_offered():
            names.append("callback_offer")
            escape = CALLBACK_KEY
        pressed = ""
        for name in names:
            pressed = await self._stream(name, self.language, escape)
            if pressed:
                break
        log.info("queue_announcement", position=announcement.position,
                 expected_wait=announcement.expected_wait, key=pressed)  # fmt: skip
        await self.h._records.event(
            self.db_id, "announced",
            {"position": announcement.position, "prompts": names, "key": pressed},
        )  # fmt: skip
        await self.channel.set_music(True, hold_class)
        return pressed

    async def _request_callback(self, route: Route, history: list[dict[str, Any]]) -> bool:
        h = self.h
        number = self.channel.caller_number
        try:
            h._acd.request_callback(self.call_id, number)
        except AcdError as exc:  # an agent was offered a moment ago: just go on
            log.info("callback_not_taken", error=str(exc))
            return False
        assert h._callbacks is not None and self.queued_at is not None
        h._callbacks.register(
            CallbackRequest(
                self.call_id, number, route.language, route.group, self.queued_at,
                pop=self._pop(route, history, h._clock()),
            )
        )  # fmt: skip
        self.callback_requested = True
        self.outcome = "callback_requested"
        await h._records.event(self.db_id, "callback_requested", {"number": number})
        log.info("callback_requested", number=number)
        await self.channel.set_music(False)
        await self._play("callback_confirm")
        return True

    def _pop(self, route: Route, history: list[dict[str, Any]], at: float) -> dict[str, Any]:
        """The screen-pop: who is calling, about what, how long they waited, their history."""
        h = self.h
        assert self.queued_at is not None
        group = h._catalogue.groups.get(route.group) if route.group else None
        service = self.h._services.services.get(route.service_code or "")
        return {
            "call_id": self.call_id,
            "caller_number": self.channel.caller_number,
            "language": route.language,
            "service_group": route.group,
            "service_group_name": group.names.get(route.language) if group else None,
            "ivr_route": route.reason,
            "service_code": route.service_code,
            "service_name": service.name.get(route.language) if service else None,
            "transcript": route.transcript,
            "address": route.address,
            # The case the agent confirms: what the IVR heard, ready to save or correct.
            "case_draft": {
                "service_group": route.group,
                "service_code": route.service_code,
                "description": route.transcript or "",
                "address": route.address or "",
            },
            "queued_at": self.queued_at,
            "waited_seconds": round(at - self.queued_at, 1),
            "earlier_cases": [_json_ready(c) for c in history],
            "possible_duplicates": [_json_ready(c) for c in self.duplicates],
        }

    async def _ring(self, offer: Offer, route: Route, history: list[dict[str, Any]]) -> bool:
        """Ring the offered agent; True when they talked, False to wait for the next offer."""
        h = self.h
        self.phase = "ringing"
        self.offers += 1
        self.agent_id = offer.agent_id
        offered_at = self._offered_at = h._clock()
        phones = h._desktops.phones_of(offer.agent_id)
        await h._records.update(self.db_id, offered_at=self._ts(offered_at))
        await h._records.event(self.db_id, "offered", {"agent": offer.agent_id, "rung": offer.rung})
        if not phones:
            log.error("offered_agent_has_no_phone", agent=offer.agent_id)
            h._acd.ring_failed(self.call_id)
            return False
        pop = self._pop(route, history, offered_at)
        if self.recording is None:
            self.recording = h._recordings.asterisk_path_for(self.call_id)
            # b: record only while bridged, so the file is the conversation, not the music.
            await self.channel.exec("MixMonitor", f"{self.recording},b")
        h._desktops.send_pop(offer.agent_id, pop)  # the pop and the ring leave together
        log.info("ringing_agent", agent=offer.agent_id, phones=phones)
        await self.channel.exec(
            "Dial",
            "&".join(f"PJSIP/{phone}" for phone in phones),  # every phone the agent has on
            str(h._settings.ring_timeout_seconds),
            "",
            timeout=LONGEST_CONVERSATION_SECONDS,
        )
        status = await self.channel.get_variable("DIALSTATUS") or ""
        if status == "ANSWER" or self.live.answered.is_set():
            await self._talked(offered_at)
            return True
        log.info("agent_did_not_answer", agent=offer.agent_id, dial_status=status)
        h._desktops.send_call_update(offer.agent_id, self.call_id, "missed")
        await h._records.event(
            self.db_id, "ring_failed", {"agent": offer.agent_id, "status": status}
        )
        self.agent_id = None
        if status in ("NOANSWER", "BUSY"):
            h._acd.ring_no_answer(self.call_id)
        else:  # CHANUNAVAIL, CONGESTION: the phone is not there
            h._acd.ring_failed(self.call_id)
        self.phase = "queue"
        return False

    async def _talked(self, offered_at: float) -> None:
        h = self.h
        if not self.live.answered.is_set():
            # AMI missed the answer: Asterisk's own timers tell when it happened.
            dialed = float(await self.channel.get_variable("DIALEDTIME") or 0)
            talked = float(await self.channel.get_variable("ANSWEREDTIME") or 0)
            self.live.answered_at = offered_at + max(dialed - talked, 0.0)
            self.live.answered.set()
            h._acd.answered(self.call_id)
        self.phase = "talking"
        self.outcome = "answered"
        if self.agent_id:
            h._desktops.send_call_update(self.agent_id, self.call_id, "ended")
        with contextlib.suppress(AgiHangup, AgiError):
            await self.channel.exec("StopMixMonitor")

    async def _leave_acd(self) -> None:
        if self.queued_at is not None and not self.callback_requested:
            talked = self.live.answered.is_set()
            if not talked and self.agent_id:
                self.h._desktops.send_call_update(self.agent_id, self.call_id, "abandoned")
            self.h._acd.finish(self.call_id, talked=talked)

    async def _write_record(self) -> None:
        h = self.h
        ended = h._clock()
        fields: dict[str, Any] = {
            "ended_at": self._ts(ended),
            "outcome": self.outcome,
            "offers": self.offers,
        }
        if self.queued_at is not None and not self.callback_requested:
            answered_at = self.live.answered_at
            waited_until = answered_at if answered_at is not None else ended
            waited = waited_until - self.queued_at
            fields.update(h._records.wait_figures(waited, answered=answered_at is not None))
            if answered_at is not None:
                fields["answered_at"] = self._ts(answered_at)
        if self.agent_id is not None:
            fields["agent"] = self.agent_id
        try:
            await h._records.update(self.db_id, **fields)
            if self.live.transferred_to:
                await h._records.event(
                    self.db_id, "transferred", {"to": self.live.transferred_to, "by": self.agent_id}
                )
            await h._records.event(self.db_id, "ended", {"outcome": self.outcome})
        except Exception:
            log.exception("call_record_write_failed", **{k: str(v) for k, v in fields.items()})
        log.info(
            "call_ended",
            outcome=self.outcome,
            wait=fields.get("wait_seconds"),
            agent=self.agent_id,
            offers=self.offers,
        )
        if self.recording is not None and self.outcome == "answered":
            self.h.spawn(self._collect_recording(self.recording))

    async def _collect_recording(self, asterisk_path: str) -> None:
        with structlog.contextvars.bound_contextvars(call_id=self.call_id):
            path = await self.h._recordings.collect(self.call_id, asterisk_path)
            if path is not None:
                await self.h._records.update(self.db_id, recording_path=path)

    def _prompt(self, name: str, language: str) -> str:
        return f"{self.h._settings.prompt_dir}/{language}/{name}"

    async def _play(self, name: str) -> None:
        await self._stream(name, self.language, "")

    async def _stream(self, name: str, language: str, escape: str) -> str:
        """Play one prompt; the key that interrupted it, or ''. A prompt Asterisk cannot play
        is logged and skipped: the call goes on (a real hang-up still raises AgiHangup)."""
        try:
            pressed = await self.channel.stream_file(self._prompt(name, language), escape)
        except AgiHangup:
            if not await self._caller_still_there():
                raise
            log.error("prompt_failed", prompt=name, language=language)
            return ""
        if pressed:
            self.keys_consumed += 1
        return pressed


def _json_ready(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, timedelta):
            out[key] = value.total_seconds()
        else:
            out[key] = value
    return out
