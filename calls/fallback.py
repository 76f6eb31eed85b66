"""Calls Asterisk's own fallback queue took: followed live from AMI, one event at a time.

The dialplan sends a resident to the fallback queue (asterisk-conf/queues.conf) when this
process cannot take the call; a UserEvent says so, then AgentConnect and Hangup tell the rest.
Calls already in that queue when this process (re)starts are taken up with adopt() (from
queue_log and the channels Asterisk still has, see calls/leftovers.py) and followed the same
way. Nothing here reads the database: the records are told to CallRecords, which never waits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from calls.record import CallRecords
from db.pool import utcnow
from pbx.ami import AmiLink

log = structlog.get_logger(__name__)

# The dial plan's last resort (asterisk-conf/queues.conf) when this process cannot take a call.
FALLBACK_QUEUE = "cityline-fallback"


@dataclass
class FollowedCall:
    call_id: uuid.UUID
    queued_at: datetime
    answered_at: datetime | None = None


def waiting_figures(calls: Mapping[str, FollowedCall], now: datetime) -> tuple[int, float]:
    """How many followed calls still wait for an agent, and the longest wait in seconds."""
    waits = [(now - c.queued_at).total_seconds() for c in calls.values() if c.answered_at is None]
    return len(waits), max(waits, default=0.0)


class FallbackRecordings(Protocol):
    """Where the dial plan records fallback calls, and how a finished file is archived."""

    def fallback_path_for(self, asterisk_uniqueid: str) -> str: ...

    async def collect(self, call_id: str, asterisk_path: str) -> str | None: ...


class FallbackCalls:
    def __init__(
        self,
        records: CallRecords,
        *,
        agent_for_endpoint: Callable[[str], str | None],
        recordings: FallbackRecordings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._records = records
        self._recordings = recordings
        self._collecting: set[asyncio.Task[None]] = set()
        self._agent_for_endpoint = agent_for_endpoint
        self._clock = clock
        self._events: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.following: dict[str, FollowedCall] = {}  # by Asterisk uniqueid
        # Entered the queue (the UserEvent is queued here) but not followed yet: their hang-up
        # may come in the same read, before follow() has got to the UserEvent.
        self._entering: set[str] = set()

    def subscribe(self, ami: AmiLink) -> None:
        ami.subscribe("UserEvent", self._on_user_event)
        ami.subscribe("AgentConnect", self._on_followed_call)
        ami.subscribe("Hangup", self._on_followed_call)

    def _on_user_event(self, event: Mapping[str, str]) -> None:
        if event.get("UserEvent") == "CityLineFallback":
            self._entering.add(event.get("Uniqueid", ""))
            self._events.put_nowait(dict(event))

    def _on_followed_call(self, event: Mapping[str, str]) -> None:
        uniqueid = event.get("Uniqueid")
        if uniqueid in self.following or uniqueid in self._entering:
            self._events.put_nowait(dict(event))

    def waiting(self, _now: float | None = None) -> tuple[int, float]:
        """Residents waiting in the fallback queue now, and the longest wait (the wallboard's)."""
        return waiting_figures(self.following, self._clock())

    def adopt(
        self,
        uniqueid: str,
        call_id: uuid.UUID,
        *,
        queued_at: datetime,
        answered_at: datetime | None = None,
    ) -> None:
        """A call already in the fallback queue (waiting or talking) when this process started."""
        self.following[uniqueid] = FollowedCall(call_id, queued_at, answered_at)
        log.warning("fallback_call_followed_after_start", call_id=str(call_id),
                    uniqueid=uniqueid, talking=answered_at is not None)  # fmt: skip

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
            try:
                await self._entered(uniqueid, event)
            finally:
                self._entering.discard(uniqueid)
            return
        call = self.following.get(uniqueid)
        if call is None:
            return
        now = self._clock()
        if event.get("Event") == "AgentConnect":
            if call.answered_at is not None:
                return
            endpoint = event.get("Interface", "").removeprefix("PJSIP/").removesuffix("-web")
            agent = self._agent_for_endpoint(endpoint) or endpoint
            call.answered_at = now
            wait = (now - call.queued_at).total_seconds()
            await self._records.update(
                call.call_id,
                answered_at=now,
                agent=agent,
                **self._records.wait_figures(wait, answered=True),
            )
            await self._records.event(call.call_id, "answered", {"agent": agent, "via": "fallback"})
            log.info("fallback_call_answered", call_id=str(call.call_id), agent=agent)
            return
        del self.following[uniqueid]
        if call.answered_at is not None:
            await self._records.update(call.call_id, ended_at=now, outcome="fallback")
            await self._records.event(call.call_id, "ended", {"outcome": "fallback"})
            if self._recordings is not None:  # the dial plan recorded the conversation
                task = asyncio.create_task(self._collect(uniqueid, call.call_id))
                self._collecting.add(task)
                task.add_done_callback(self._collecting.discard)
        else:
            wait = (now - call.queued_at).total_seconds()
            await self._records.update(
                call.call_id, ended_at=now, outcome="fallback_abandoned",
                **self._records.wait_figures(wait, answered=False),
            )  # fmt: skip
            await self._records.event(call.call_id, "ended", {"outcome": "fallback_abandoned"})
        log.info("fallback_call_ended", call_id=str(call.call_id),
                 answered=call.answered_at is not None)  # fmt: skip

    async def _collect(self, uniqueid: str, call_id: uuid.UUID) -> None:
        assert self._recordings is not None
        with structlog.contextvars.bound_contextvars(call_id=str(call_id)):
            try:
                path = await self._recordings.collect(
                    str(call_id), self._recordings.fallback_path_for(uniqueid)
                )
            except OSError:
                log.exception("fallback_recording_not_stored", uniqueid=uniqueid)
                return
            if path is not None:
                await self._records.update(call_id, recording_path=path)

    async def drain(self) -> None:
        """Let recordings being filed finish (bounded by the collector's own give-up time)."""
        if self._collecting:
            await asyncio.wait(self._collecting, timeout=10)

    async def _entered(self, uniqueid: str, event: Mapping[str, str]) -> None:
        now = self._clock()
        try:
            call_id = uuid.UUID(event.get("CallId", ""))
        except ValueError:
            call_id = uuid.uuid4()  # the service never saw this call (it was down)
        # A call the service already recorded keeps its row (arrival is idempotent by id).
        await self._records.arrived(
            call_id, asterisk_uniqueid=uniqueid, caller_number=event.get("Caller", ""), at=now
        )
        # The session that failed may have written an end: the call goes on in the queue.
        await self._records.update(call_id, outcome="fallback", queued_at=now, ended_at=None)
        await self._records.event(call_id, "fallback", {"agi_status": event.get("AgiStatus")})
        self.following[uniqueid] = FollowedCall(call_id, now)
        log.warning("call_in_fallback_queue", call_id=str(call_id), uniqueid=uniqueid)
