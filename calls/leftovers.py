"""What a run that died left behind, taken up at start-up so nothing is lost to a crash.

Recordings still in Asterisk's spool go to the archive and onto their call records; calls
the fallback queue took while this process was gone (so no AMI event reached us) get their
records from app_queue's queue_log. Calls we already know are left be.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from acd.devices import WEB_PHONE_SUFFIX
from calls.fallback import FALLBACK_QUEUE
from calls.record import CallRecords
from pbx.queue_log import QueuedCall, queue_calls
from recordings.service import RecordingCollector

log = structlog.get_logger(__name__)


async def recover_recordings(records: CallRecords, recordings: RecordingCollector) -> None:
    for call_id, source in await recordings.leftovers():
        try:
            stored = await recordings.archive(call_id, source)
            call = await records.read.get_call(uuid.UUID(call_id))
            if call is not None and not call.get("recording_path"):
                await records.update(uuid.UUID(call_id), recording_path=stored)
                await records.event(uuid.UUID(call_id), "recording_recovered")
            log.warning("recording_recovered", call_id=call_id, path=stored,
                        known_call=call is not None)  # fmt: skip
        except Exception:
            log.exception("recording_recovery_failed", call_id=call_id, path=str(source))


async def recover_fallback_calls(
    records: CallRecords,
    queue_log_path: Path,
    agent_for_endpoint: Callable[[str], str | None],
) -> None:
    if not await asyncio.to_thread(queue_log_path.is_file):
        return
    text = await asyncio.to_thread(queue_log_path.read_text, "utf-8", "replace")
    recovered = 0
    for queued in queue_calls(text.splitlines(), FALLBACK_QUEUE):
        try:
            recovered += await _record_queued_call(records, queued, agent_for_endpoint)
        except Exception:
            log.exception("fallback_recovery_failed", uniqueid=queued.uniqueid)
    if recovered:
        log.warning("fallback_calls_recovered", calls=recovered, source=str(queue_log_path))


async def _record_queued_call(
    records: CallRecords, queued: QueuedCall, agent_for_endpoint: Callable[[str], str | None]
) -> int:
    known = await records.read.call_by_uniqueid(queued.uniqueid)
    if known is not None and known.get("ended_at") is not None:
        return 0
    if known is None:
        call_id = uuid.uuid4()
        await records.arrived(
            call_id,
            asterisk_uniqueid=queued.uniqueid,
            caller_number=queued.caller,
            at=datetime.fromtimestamp(queued.entered_at, UTC),
        )
    else:
        call_id = known["id"]
    fields: dict[str, Any] = {
        "outcome": queued.outcome,
        "queued_at": datetime.fromtimestamp(queued.entered_at, UTC),
    }
    if queued.member is not None:
        endpoint = queued.member.removeprefix("PJSIP/").removesuffix(WEB_PHONE_SUFFIX)
        fields["agent"] = agent_for_endpoint(endpoint) or endpoint
    if queued.answered_at is not None:
        fields["answered_at"] = datetime.fromtimestamp(queued.answered_at, UTC)
    if queued.wait_seconds is not None:
        fields.update(
            records.wait_figures(queued.wait_seconds, answered=queued.answered_at is not None)
        )
    if queued.ended_at is not None:
        fields["ended_at"] = datetime.fromtimestamp(queued.ended_at, UTC)
    await records.update(call_id, **fields)
    await records.event(call_id, "recovered_from_queue_log", {"outcome": queued.outcome})
    return 1
