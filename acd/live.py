"""The live ACD: the one owner of the routing engine on the event loop.

Every change goes through this object, on the loop, so the engine never sees two writers.
Call sessions wait on their own ticket for offers; desktops and the wallboard subscribe to
what the ACD emits (acd/events.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from acd import reports
from acd.calls import Announcement, FollowUp, Offer
from acd.engine import AcdError, Engine
from acd.events import AcdEvent, AgentChanged, CallOffered, QueueChanged

log = structlog.get_logger(__name__)

Listener = Callable[[AcdEvent], None]
# Calls whose resident could not pick a group go to the general-questions group.
ANY_GROUP = "other"


class CallTicket:
    """A waiting call's side of the ACD: offers and announcements arrive here, in order."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self._offers: asyncio.Queue[Offer] = asyncio.Queue()
        self.announcements: asyncio.Queue[Announcement] = asyncio.Queue()

    async def next_offer(self) -> Offer:
        return await self._offers.get()

    def take_offer(self) -> Offer | None:
        """An offer already made (e.g. at enqueue, when an agent was free), without waiting."""
        try:
            return self._offers.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def _deliver(self, offer: Offer) -> None:
        self._offers.put_nowait(offer)


CallbackHandler = Callable[[Offer], None]


class AcdService:
    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        tick_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self._clock = clock
        self._tick_seconds = tick_seconds
        self._tickets: dict[str, CallTicket] = {}
        self._listeners: list[Listener] = []
        self._ticker: asyncio.Task[None] | None = None
        self._callback_handler: CallbackHandler | None = None
        # Residents waiting outside this ACD (Asterisk's fallback queue): (count, longest wait).
        self.waiting_elsewhere: Callable[[float], tuple[int, float]] | None = None

    # -- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_forever(), name="acd-tick")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_seconds)
            try:
                now = self._clock()
                self._dispatch(self.engine.tick(now))
                for announcement in self.engine.announcements(now):
                    ticket = self._tickets.get(announcement.call_id)
                    if ticket is not None:
                        ticket.announcements.put_nowait(announcement)
            except Exception:  # the loop must outlive one bad tick
                log.exception("acd_tick_failed")

    def handle_callbacks(self, handler: CallbackHandler) -> None:
        """Who rings agents reserved for a queued callback (the resident is not on the line)."""
        self._callback_handler = handler

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, event: AcdEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("acd_listener_failed", acd_event=type(event).__name__)

    def _dispatch(self, offers: Iterable[Offer]) -> None:
        for offer in offers:
            if offer.callback_number is not None and self._callback_handler is not None:
                log.info("acd_callback_offer", call_id=offer.call_id, agent=offer.agent_id)
                self._emit(CallOffered(offer.call_id, offer.agent_id))
                self._emit(AgentChanged(offer.agent_id, self.agent_view(offer.agent_id)))
                self._callback_handler(offer)
                continue
            ticket = self._tickets.get(offer.call_id)
            if ticket is None:
                # A call the engine knows but no session waits for (it vanished): free the agent.
                log.warning(
                    "acd_offer_without_session", call_id=offer.call_id, agent=offer.agent_id
                )
                self._dispatch(self.engine.abandon(offer.call_id, self._clock()))
                continue
            log.info("acd_offer", call_id=offer.call_id, agent=offer.agent_id, rung=offer.rung)
            ticket._deliver(offer)
            self._emit(CallOffered(offer.call_id, offer.agent_id))
            self._emit(AgentChanged(offer.agent_id, self.agent_view(offer.agent_id)))
        self._emit(QueueChanged())

    def _apply(self, change: Callable[[float], list[Offer]], agent_id: str | None = None) -> None:
        self._dispatch(change(self._clock()))
        if agent_id is not None:
            self._emit(AgentChanged(agent_id, self.agent_view(agent_id)))

    # -- agents -----------------------------------------------------------------------------
    def upsert_agent(self, agent_id: str, skills: Mapping[str, int]) -> None:
        self._apply(lambda now: self.engine.upsert_agent(agent_id, skills, now), agent_id)

    def login(self, agent_id: str) -> None:
        self._apply(lambda now: self.engine.login(agent_id, now), agent_id)

    def set_ready(self, agent_id: str) -> None:
        self._apply(lambda now: self.engine.set_ready(agent_id, now), agent_id)

    def pause(self, agent_id: str, reason: str) -> None:
        self._apply(lambda now: self.engine.pause(agent_id, reason, now), agent_id)

    def logout(self, agent_id: str) -> None:
        self._apply(lambda now: self.engine.logout(agent_id, now), agent_id)

    def set_reachable(self, agent_id: str, reachable: bool) -> None:
        self._apply(lambda now: self.engine.set_reachable(agent_id, reachable, now), agent_id)

    def agent_view(self, agent_id: str) -> dict[str, Any]:
        try:
            return self.engine.agent_info(agent_id)
        except AcdError:
            return {"agent_id": agent_id, "state": "unknown"}

    # -- calls ------------------------------------------------------------------------------
    def enqueue(
        self, call_id: str, *, language: str, group: str | None, priority: int = 0
    ) -> CallTicket:
        """Queue a call; group None (the resident could not choose) means any agent."""
        ticket = CallTicket(call_id)
        self._tickets[call_id] = ticket
        self._apply(
            lambda now: self.engine.enqueue(
                call_id, language=language, group=group or ANY_GROUP, priority=priority, now=now
            )
        )
        return ticket

    def answered(self, call_id: str) -> None:
        self._apply(lambda now: self.engine.answered(call_id, now), self._agent_of(call_id))

    def ring_no_answer(self, call_id: str) -> None:
        agent = self._agent_of(call_id)
        self._apply(lambda now: self.engine.ring_no_answer(call_id, now), agent)

    def ring_failed(self, call_id: str) -> None:
        agent = self._agent_of(call_id)
        self._apply(lambda now: self.engine.ring_failed(call_id, now), agent)

    def request_callback(self, call_id: str, number: str) -> None:
        """The resident pressed 1 and hangs up: the call keeps its place, no session waits."""
        self._apply(lambda now: self.engine.request_callback(call_id, number, now))
        self._tickets.pop(call_id, None)

    def restore_callback(
        self,
        call_id: str,
        *,
        language: str,
        group: str | None,
        number: str,
        enqueued_at: float,
        failed_attempts: int = 0,
    ) -> None:
        """A callback requested before a restart waits again in its place (no session waits)."""
        self._apply(
            lambda now: self.engine.restore_callback(
                call_id, language=language, group=group or ANY_GROUP, number=number,
                enqueued_at=enqueued_at, failed_attempts=failed_attempts, now=now,
            )
        )  # fmt: skip

    def callback_result(self, call_id: str, ok: bool) -> None:
        agent = self._agent_of(call_id)
        self._apply(lambda now: self.engine.callback_result(call_id, ok, now), agent)

    def follow_ups(self) -> list[FollowUp]:
        return self.engine.pop_follow_ups()

    def finish(self, call_id: str, *, talked: bool) -> None:
        """The call left the ACD: talk ended, or the caller gave up (waiting or ringing)."""
        self._tickets.pop(call_id, None)
        agent = self._agent_of(call_id)
        try:
            if talked:
                self._apply(lambda now: self.engine.call_ended(call_id, now), agent)
            else:
                self._apply(lambda now: self.engine.abandon(call_id, now), agent)
        except AcdError as exc:
            # Already gone (e.g. ended twice after a fault): nothing is held, nothing to free.
            log.info("acd_finish_unknown_call", call_id=call_id, error=str(exc))

    def now(self) -> float:
        return self._clock()

    def position(self, call_id: str) -> tuple[int, float]:
        return self.engine.position(call_id, self._clock())

    def explain(self, call_id: str) -> dict[str, Any]:
        return reports.explain(self.engine, call_id, self._clock())

    def snapshot(self) -> dict[str, Any]:
        return reports.snapshot(self.engine, self._clock())

    def _agent_of(self, call_id: str) -> str | None:
        try:
            return self.engine.call_info(call_id).agent_id
        except AcdError:
            return None

    def waiting_count(self) -> int:
        return self.engine.waiting_count()
