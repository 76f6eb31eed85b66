"""Queued callbacks: when a resident's turn comes, ring the reserved agent, then the resident.

The agent is rung first (AMI Originate into the city-callback context) so no resident is
called back only to wait again; once the agent answers, the dialplan rings the resident
through the trunk and reports back with two UserEvents. A failed attempt goes back to the
ACD, which retries in the same place and, after the last attempt, hands it over as a
follow-up case: a callback that failed is counted and acted on, never dropped.

Pending requests are kept in PostgreSQL (`pending_callbacks`, written behind by the dialer
alone) from the moment the resident asks until the callback is over, so a restart does not
lose them: at start they wait in the ACD again, in their place, and are dialled as before.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from acd.calls import Offer
from acd.engine import AcdError
from acd.live import AcdService
from calls.record import CallRecords
from cases.store import CaseStore
from db.pool import utcnow
from db.write_behind import WriteBehind
from pbx.ami import AmiError, AmiLink

log = structlog.get_logger(__name__)


@dataclass
class CallbackRequest:
    """What the agent needs to know when the callback rings (the resident is not on the line)."""

    call_id: str
    number: str
    language: str
    group: str | None
    queued_at: float
    pop: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0


class PendingCallbacks:
    """The rows of `pending_callbacks`, written behind for the dialer (their one writer).

    Each request's latest wish (its row, or none once it is over) is queued and one task writes
    it; while PostgreSQL is away it retries, and stop() writes what is left. Nothing on the
    call path waits for the database.
    """

    def __init__(self, pool: asyncpg.Pool, *, retry_seconds: float = 1.0) -> None:
        self._pool = pool
        # call id -> its row, or None: delete it
        self._behind: WriteBehind[str, tuple[Any, ...] | None] = WriteBehind(
            "pending-callbacks", self._write, retry_seconds=retry_seconds
        )

    def save(self, request: CallbackRequest, failures: int) -> None:
        pop = json.loads(json.dumps(request.pop, default=str))  # as the desk would get it
        row = (
            uuid.UUID(request.call_id), request.number, request.language, request.group,
            request.queued_at, pop, request.attempts, failures,
        )  # fmt: skip
        self._behind.put(request.call_id, row)

    def forget(self, call_id: str) -> None:
        self._behind.put(call_id, None)

    async def load(self) -> list[tuple[CallbackRequest, int]]:
        """Every pending request, oldest first, with how often the resident was not reached."""
        rows = await self._pool.fetch("SELECT * FROM pending_callbacks ORDER BY queued_at")
        return [
            (
                CallbackRequest(
                    str(row["call_id"]), row["number"], row["language"], row["service_group"],
                    row["queued_at"], pop=dict(row["pop"]), attempts=row["attempts"],
                ),
                row["failures"],
            )
            for row in rows
        ]  # fmt: skip

    async def start(self) -> None:
        await self._behind.start()

    async def stop(self) -> None:
        await self._behind.stop()

    async def _write(self, batch: dict[str, tuple[Any, ...] | None]) -> None:
        rows = [row for row in batch.values() if row is not None]
        over = [uuid.UUID(call_id) for call_id, row in batch.items() if row is None]
        async with self._pool.acquire() as conn, conn.transaction():
            if rows:
                await conn.executemany(
                    "INSERT INTO pending_callbacks (call_id, number, language, service_group,"
                    " queued_at, pop, attempts, failures) VALUES ($1, $2, $3, $4, $5, $6, $7,"
                    " $8) ON CONFLICT (call_id) DO UPDATE SET attempts = excluded.attempts,"
                    " failures = excluded.failures",
                    rows,
                )
            if over:
                await conn.execute(
                    "DELETE FROM pending_callbacks WHERE call_id = ANY($1::uuid[])", over
                )


class CallbackDialer:
    def __init__(
        self,
        *,
        acd: AcdService,
        ami: AmiLink,
        records: CallRecords,
        cases: CaseStore,
        endpoint_of: Callable[[str], str | None],
        send_pop: Callable[[str, Mapping[str, Any]], None],
        ring_timeout_seconds: int,
        pending: PendingCallbacks | None = None,
    ) -> None:
        self._acd = acd
        self._pending = pending
        self._ami = ami
        self._records = records
        self._cases = cases
        self._endpoint_of = endpoint_of
        self._send_pop = send_pop
        self._ring_timeout = ring_timeout_seconds
        self.requests: dict[str, CallbackRequest] = {}
        self._originating: dict[str, str] = {}  # ActionID -> call id
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, request: CallbackRequest) -> None:
        self.requests[request.call_id] = request
        self._save(request)

    async def restore(self) -> int:
        """Pending requests saved before a restart wait in the ACD again, in their place."""
        if self._pending is None:
            return 0
        restored = 0
        for request, failures in await self._pending.load():
            try:
                self._acd.restore_callback(
                    request.call_id, language=request.language, group=request.group,
                    number=request.number, enqueued_at=request.queued_at,
                    failed_attempts=failures,
                )  # fmt: skip
            except AcdError as exc:
                log.error("callback_not_restored", call_id=request.call_id, error=str(exc))
                continue
            self.requests[request.call_id] = request
            restored += 1
        log.info("callbacks_restored", count=restored)
        return restored

    def _save(self, request: CallbackRequest) -> None:
        if self._pending is not None:
            try:
                failures = self._acd.engine.call_info(request.call_id).callback_attempts
            except AcdError:
                failures = 0
            self._pending.save(request, failures)

    def _forget(self, call_id: str) -> None:
        if self._pending is not None:
            self._pending.forget(call_id)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the ACD reserved an agent --------------------------------------------------------------
    def on_offer(self, offer: Offer) -> None:
        self._spawn(self._ring_agent(offer))

    async def _ring_agent(self, offer: Offer) -> None:
        request = self.requests.get(offer.call_id)
        endpoint = self._endpoint_of(offer.agent_id)
        with structlog.contextvars.bound_contextvars(call_id=offer.call_id):
            if request is None or endpoint is None:
                log.error("callback_cannot_ring", agent=offer.agent_id, known=request is not None)
                self._acd_safely(lambda: self._acd.ring_failed(offer.call_id))
                return
            request.attempts += 1
            self._save(request)
            self._send_pop(offer.agent_id, {**request.pop, "callback": True,
                                            "callback_attempt": request.attempts})  # fmt: skip
            action_id = f"callback-{offer.call_id}-{uuid.uuid4().hex[:8]}"
            self._originating[action_id] = offer.call_id
            await self._event(offer.call_id, "callback_ringing_agent", agent=offer.agent_id,
                              attempt=request.attempts)  # fmt: skip
            try:
                await self._ami.originate(
                    f"PJSIP/{endpoint}",
                    context="city-callback",
                    exten="s",
                    caller_id=f"Callback <{request.number}>",
                    variables={
                        "CITYLINE_CALL_ID": offer.call_id,
                        "CITYLINE_CALLBACK_NUMBER": request.number,
                    },
                    ring_timeout=float(self._ring_timeout),
                    action_id=action_id,
                )
            except AmiError as exc:
                self._originating.pop(action_id, None)
                log.error("callback_originate_failed", error=str(exc))
                self._acd_safely(lambda: self._acd.ring_failed(offer.call_id))

    # -- what Asterisk tells us ----------------------------------------------------------------
    def subscribe(self, ami: AmiLink) -> None:
        ami.subscribe("OriginateResponse", self.on_ami_event)
        ami.subscribe("UserEvent", self.on_ami_event)

    def on_ami_event(self, event: Mapping[str, str]) -> None:
        name = event.get("Event")
        if name == "OriginateResponse":
            missed = self._originating.pop(event.get("ActionID", ""), None)
            if missed is not None and event.get("Response") != "Success":
                # The agent did not pick up: paused, and the callback waits for the next one.
                log.info("callback_agent_no_answer", call_id=missed, reason=event.get("Reason"))
                self._acd_safely(lambda: self._acd.ring_no_answer(missed))
        elif name == "UserEvent":
            kind = event.get("UserEvent")
            call_id = event.get("CallId", "")
            if call_id not in self.requests:
                return
            if kind == "CityLineCallbackAnswered":
                self._acd_safely(lambda: self._acd.callback_result(call_id, True))
                self._spawn(self._answered(call_id))
            elif kind == "CityLineCallbackDone":
                self._spawn(self._done(call_id, event.get("DialStatus", "")))

    async def _answered(self, call_id: str) -> None:
        # Looked up again: a report for the same callback may have finished it meanwhile
        # (these run as tasks, after the event that started them).
        request = self.requests.get(call_id)
        if request is None:
            log.info("callback_report_after_the_end", call_id=call_id, report="answered")
            return
        answered = utcnow()
        wait = answered.timestamp() - request.queued_at
        agent = self._agent_of(call_id)
        # A resident called back was never answered within the target: the wait counts, the
        # answer does not.
        await self._records.update(
            uuid.UUID(call_id), answered_at=answered, agent=agent, outcome="callback_answered",
            **self._records.wait_figures(wait, answered=False),
        )  # fmt: skip
        await self._event(call_id, "callback_answered", agent=agent)

    async def _done(self, call_id: str, dial_status: str) -> None:
        request = self.requests.get(call_id)
        if request is None:  # a repeated report: the first one finished the callback
            log.info("callback_report_after_the_end", call_id=call_id, report="done")
            return
        if dial_status == "ANSWER":
            self._acd_safely(lambda: self._acd.finish(call_id, talked=True))
            del self.requests[call_id]
            self._forget(call_id)
            await self._records.update(uuid.UUID(call_id), ended_at=utcnow())
            await self._event(call_id, "ended", outcome="callback_answered")
            return
        log.info("callback_resident_not_reached", call_id=call_id, status=dial_status)
        await self._event(call_id, "callback_attempt_failed", status=dial_status,
                          attempt=request.attempts)  # fmt: skip
        self._acd_safely(lambda: self._acd.callback_result(call_id, False))
        self._save(request)  # one more failure (a follow-up below ends it)
        for follow_up in self._acd.follow_ups():
            await self._open_follow_up_case(follow_up.call_id, follow_up.attempts)

    async def _open_follow_up_case(self, call_id: str, attempts: int) -> None:
        request = self.requests.pop(call_id, None)
        if request is None:
            return
        case = await self._cases.create_case(
            call_id=uuid.UUID(call_id),
            service_group=request.group or "other",
            description=(
                f"Callback requested from {request.number}; not reached after {attempts}"
                " attempts. Please contact the resident."
            ),
            created_by="callback",
        )
        self._forget(call_id)  # the case carries it from here
        await self._records.update(uuid.UUID(call_id), outcome="callback_failed", ended_at=utcnow())
        await self._event(call_id, "case_created", case_id=case["id"], agent_id="callback")
        await self._event(call_id, "callback_follow_up_case", case_id=case["id"])
        log.warning("callback_follow_up_case", call_id=call_id, case_id=case["id"])

    # -- helpers ---------------------------------------------------------------------------------
    def _agent_of(self, call_id: str) -> str | None:
        try:
            return self._acd.engine.call_info(call_id).agent_id
        except AcdError:
            return None

    def _acd_safely(self, change: Callable[[], None]) -> None:
        try:
            change()
        except AcdError as exc:
            log.warning("callback_acd_refused", error=str(exc))

    async def _event(self, call_id: str, kind: str, **detail: Any) -> None:
        await self._records.event_safely(uuid.UUID(call_id), kind, **detail)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
