"""The FastAGI handler: every resident's call arrives here and runs as one CallSession.

It also takes what AMI reports about calls in progress (an agent answered, a key pressed
while on hold, a blind transfer) to the session it concerns. If the session fails, it ends
without CITYLINE_DONE and the dialplan's fallback queue takes the caller, so a fault here
never drops a resident.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from acd.live import AcdService
from calls.callbacks import CallbackRequest
from calls.record import CallRecords
from cases.catalogue import Catalogue
from cases.services import ServiceCatalogue
from cases.store import CaseStore
from ivr.call_session import CallSession
from ivr.speech_call import SpeechPath
from pbx.ami import AmiLink
from pbx.fastagi import AgiChannel

log = structlog.get_logger(__name__)

CITY_SCRIPT = "city"


class Desktops(Protocol):
    """The agents' side, as the call sees it (implemented by agent_client)."""

    def endpoint_of(self, agent_id: str) -> str | None: ...

    def phones_of(self, agent_id: str) -> list[str]: ...

    def send_pop(self, agent_id: str, pop: Mapping[str, Any]) -> None: ...

    def send_call_update(self, agent_id: str, call_id: str, status: str) -> None: ...

    def pass_pop(self, call_id: str, to_agent: str) -> None: ...


class Callbacks(Protocol):
    def register(self, request: CallbackRequest) -> None: ...


class Recordings(Protocol):
    def asterisk_path_for(self, call_id: str) -> str: ...

    async def collect(self, call_id: str, asterisk_path: str) -> str | None: ...


@dataclass
class CallSettings:
    ring_timeout_seconds: int = 15
    prompt_dir: str = ""  # prompt files as Asterisk sees them: <prompt_dir>/<lang>/<name>
    # Hold classes per language (asterisk-conf/musiconhold.conf), announcing "please hold".
    moh_class_prefix: str = "cityline-hold-"
    # Offer "press 1 to be called back" (needs a route to residents: the callback trunk).
    callbacks: bool = False


@dataclass
class LiveCall:
    """What the AMI side needs to reach a call in progress."""

    call_id: str
    asterisk_uniqueid: str
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    answered_at: float | None = None
    # Every key the caller pressed, as AMI saw it, numbered from 1. AMI also reports the keys
    # an AGI command consumed (menus, announcements); the session skips those by count.
    keys: asyncio.Queue[tuple[int, str]] = field(default_factory=asyncio.Queue)
    keys_seen: int = 0
    transferred_to: str | None = None  # where the agent sent the caller (blind transfer)


class CallHandler:
    """The FastAGI handler: one instance serves every call."""

    def __init__(
        self,
        *,
        records: CallRecords,
        cases: CaseStore,
        acd: AcdService,
        desktops: Desktops,
        recordings: Recordings,
        callbacks: Callbacks | None = None,
        speech: SpeechPath | None = None,
        catalogue: Catalogue,
        services: ServiceCatalogue,
        settings: CallSettings,
        agent_for_endpoint: Callable[[str], str | None] = lambda endpoint: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._records = records
        self._cases = cases
        self._acd = acd
        self._desktops = desktops
        self._recordings = recordings
        self._callbacks = callbacks
        self._speech = speech
        self._services = services
        self._catalogue = catalogue
        self._settings = settings
        self._agent_for_endpoint = agent_for_endpoint
        self._clock = clock
        self.live: dict[str, LiveCall] = {}  # by Asterisk uniqueid, for AMI events
        self._background: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Awaitable[Any]) -> None:
        """Work that outlives the call's session (recording collection), kept until done."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout: float = 10.0) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=timeout)

    async def __call__(self, channel: AgiChannel) -> None:
        if channel.script != CITY_SCRIPT:
            log.warning("agi_unknown_script", script=channel.script)
            return  # no CITYLINE_DONE: the dialplan's fallback serves the caller
        call_id = str(uuid.uuid4())
        live = LiveCall(call_id, channel.uniqueid)
        with structlog.contextvars.bound_contextvars(call_id=call_id):
            self.live[channel.uniqueid] = live
            try:
                await CallSession(self, channel, live).run()
            finally:
                self.live.pop(channel.uniqueid, None)

    def subscribe(self, ami: AmiLink) -> None:
        """What AMI says about calls in progress, each to the session it concerns."""
        ami.subscribe("DialEnd", self._on_dial_end)
        ami.subscribe("BlindTransfer", self._on_blind_transfer)
        ami.subscribe("DTMFEnd", self._on_dtmf_end)

    def _on_dial_end(self, event: Mapping[str, str]) -> None:
        if event.get("DialStatus") == "ANSWER":
            self.on_agent_answered(event.get("Uniqueid", ""))

    def _on_blind_transfer(self, event: Mapping[str, str]) -> None:
        if event.get("Result") != "Success":
            return
        target = event.get("Extension", "")
        colleague = self._agent_for_endpoint(target)
        call_id = self.on_transferred(event.get("TransfereeUniqueid", ""), colleague or target)
        if call_id is not None and colleague is not None:
            self._desktops.pass_pop(call_id, colleague)

    def _on_dtmf_end(self, event: Mapping[str, str]) -> None:
        if event.get("Direction") == "Received":
            self.on_key(event.get("Uniqueid", ""), event.get("Digit", ""))

    def on_key(self, asterisk_uniqueid: str, digit: str) -> None:
        """From AMI (DTMFEnd received): a key pressed while the caller waits with music."""
        live = self.live.get(asterisk_uniqueid)
        if live is not None:
            live.keys_seen += 1
            live.keys.put_nowait((live.keys_seen, digit))

    def on_transferred(self, asterisk_uniqueid: str, target: str) -> str | None:
        """From AMI (BlindTransfer): the agent passed the caller to a colleague (by name) or a
        department (its number).

        Returns the call's id (None when the call is not one of ours)."""
        live = self.live.get(asterisk_uniqueid)
        if live is None:
            return None
        live.transferred_to = target
        log.info("call_transferred", call_id=live.call_id, to=target)
        return live.call_id

    def on_agent_answered(self, asterisk_uniqueid: str) -> None:
        """From AMI (DialEnd ANSWER): the agent picked up while Dial still holds the session."""
        live = self.live.get(asterisk_uniqueid)
        if live is not None and not live.answered.is_set():
            live.answered_at = self._clock()
            live.answered.set()
            self._acd.answered(live.call_id)
