"""Calls Asterisk's own fallback queue took: followed live from AMI, one event at a time.

The dialplan sends a resident to the fallback queue (asterisk-conf/queues.conf) when this
process cannot take the call; a UserEvent says so, then AgentConnect and Hangup tell the rest.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

import structlog

from calls.record import CallRecords
from calls.store import CallStore
from db.pool import utcnow
from pbx.ami import AmiLink

log = structlog.get_logger(__name__)

# The dial plan's last resort (asterisk-conf/queues.conf) when this process cannot take a call.
FALLBACK_QUEUE = "cityline-fallback"


class FallbackCalls:
    def __init__(
        self,
        records: CallRecords,
        *,
        agent_for_endpoint: Callable[[str], str | None],
    ) -> None:
        self._records = records
        self._calls: CallStore = records.read
        self._agent_for_endpoint = agent_for_endpoint
        self._events: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        # Asterisk uniqueid -> (call id, entered the fallback queue at)
        self._following: dict[str, tuple[uuid.UUID, datetime]] = {}

    def subscribe(self, ami: AmiLink) -> None:
        ami.subscribe("UserEvent", self._on_user_event)
        ami.subscribe("AgentConnect", self._on_followed_call)
        ami.subscribe("Hangup", self._on_followed_call)

    def _on_user_event(self, event: Mapping[str, str]) -> None:
        if event.get("UserEvent") == "CityLineFallback":
            self._events.put_nowait(dict(event))

    def _on_followed_call(self, event: Mapping[str, str]) -> None:
        if event.get("Uniqueid") in self._following:
            self._events.put_nowait(dict(event))

    async def follow(self) -> None:
        """Keep the records of calls in the fallback queue, one event at a time, in order."""
        while True:
            event = await self._events.get()
            try:
                await self._on_event(event)
            except Exception:
                log.exception("fallback_record_failed", ami_event=event)

    async def _on_event(self, event: dict[str, str]) -> None:
        uniqueid = event.get("Uniqueid", "")
        if event.get("Event") == "UserEvent":
            await self._entered(uniqueid, event)
            return
        followed = self._following.get(uniqueid)
        if followed is None:
            # Events are queued while the call is followed and handled later: a repeated
            # Hangup, or anything after the first, finds the call already ended.
            return
        call_id, queued_at = followed
        if event.get("Event") == "AgentConnect":
            endpoint = event.get("Interface", "").removeprefix("PJSIP/")
            agent = self._agent_for_endpoint(endpoint) or endpoint
            answered = utcnow()
            wait = (answered - queued_at).total_seconds()
            await self._records.update(
                call_id,
                answered_at=answered,
                agent=agent,
                **self._records.wait_figures(wait, answered=True),
            )
            await self._records.event(call_id, "answered", {"agent": agent, "via": "fallback"})
        else:
            del self._following[uniqueid]
            await self._records.update(call_id, ended_at=utcnow())
            await self._records.event(call_id, "ended", {"outcome": "fallback"})

    async def _entered(self, uniqueid: str, event: Mapping[str, str]) -> None:
        try:
            call_id: uuid.UUID | None = uuid.UUID(event.get("CallId", ""))
        except ValueError:
            call_id = None  # the service never saw this call (it was down)
        if call_id is None or await self._calls.get_call(call_id) is None:
            call_id = uuid.uuid4()
            await self._records.arrived(
                call_id,
                asterisk_uniqueid=uniqueid,
                caller_number=event.get("Caller", ""),
                at=utcnow(),
            )
        now = utcnow()
        await self._records.update(call_id, outcome="fallback", queued_at=now)
        await self._records.event(call_id, "fallback", {"agi_status": event.get("AgiStatus")})
        self._following[uniqueid] = (call_id, now)
        log.warning("call_in_fallback_queue", call_id=str(call_id), uniqueid=uniqueid)
