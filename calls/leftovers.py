"""What a run that died left behind, taken up at start-up so nothing is lost to a crash.

Recordings still in Asterisk's spool go to the archive and onto their call records; calls
the fallback queue took while this process was gone (so no AMI event reached us) get their
records from app_queue's queue_log. Calls we already know are left be.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from acd.devices import WEB_PHONE_SUFFIX
from calls.fallback import FALLBACK_QUEUE
from calls.record import CallRecords
from pbx.queue_log import QueuedCall, queue_calls
from recordings.collector import RecordingCollector

log = structlog.get_logger(__name__)


class FollowCall(Protocol):
    def __call__(
        self, uniqueid: str, call_id: uuid.UUID, *, queued_at: datetime,
        answered_at: datetime | None = None,
    ) -> None: ...  # fmt: skip


async def recover_fallback_recordings(
    records: CallRecords, recordings: RecordingCollector, live_channels: Collection[str]
) -> None:
    """Recordings the dial plan made in the fallback queue (named by channel), onto their calls.
    A channel still up is still being recorded: followed live, filed when it ends."""
    for uniqueid, source in await recordings.fallback_leftovers():
        if uniqueid in live_channels:
            continue
        try:
            call = await records.read.call_by_uniqueid(uniqueid)
            if call is None or call.get("recording_path"):
                log.warning("fallback_recording_left", path=str(source), known_call=bool(call))
                continue
            stored = await recordings.archive(str(call["id"]), source)
            await records.update(call["id"], recording_path=stored)
            await records.event(call["id"], "recording_recovered")
            log.warning("recording_recovered", call_id=str(call["id"]), path=stored)
        except Exception:
            log.exception("recording_recovery_failed", uniqueid=uniqueid, path=str(source))


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
    *,
    live_channels: Collection[str] = (),
    follow: FollowCall | None = None,
) -> None:
    """Records of the calls queue_log shows; those whose channel is still up (waiting or
    talking in the fallback queue now) are handed to `follow` to be ended when they end."""
    if not await asyncio.to_thread(queue_log_path.is_file):
        return
    text = await asyncio.to_thread(queue_log_path.read_text, "utf-8", "replace")
    recovered = 0
    for queued in queue_calls(text.splitlines(), FALLBACK_QUEUE):
        in_progress = queued.ended_at is None and queued.uniqueid in live_channels
        try:
            call_id = await _record_queued_call(
                records, queued, agent_for_endpoint, in_progress=in_progress
            )
        except Exception:
            log.exception("fallback_recovery_failed", uniqueid=queued.uniqueid)
            continue
        if call_id is None:
            continue
        recovered += 1
        if in_progress and follow is not None:
            follow(
                queued.uniqueid,
                call_id,
                queued_at=_time(queued.entered_at),
                answered_at=_time(queued.answered_at) if queued.answered_at else None,
            )
    if recovered:
        log.warning("fallback_calls_recovered", calls=recovered, source=str(queue_log_path))


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def _record_queued_call(
    records: CallRecords,
    queued: QueuedCall,
    agent_for_endpoint: Callable[[str], str | None],
    *,
    in_progress: bool,
) -> uuid.UUID | None:
    known = await records.read.call_by_uniqueid(queued.uniqueid)
    if known is not None and known.get("ended_at") is not None:
        return None
    if known is None:
        call_id = uuid.uuid4()
        await records.arrived(
            call_id,
            asterisk_uniqueid=queued.uniqueid,
            caller_number=queued.caller,
            at=_time(queued.entered_at),
        )
    else:
        call_id = known["id"]
    # A resident still on the line is neither abandoned nor ended: followed live from now.
    fields: dict[str, Any] = {
        "outcome": "fallback" if in_progress else queued.outcome,
        "queued_at": _time(queued.entered_at),
    }
    if queued.member is not None:
        endpoint = queued.member.removeprefix("PJSIP/").removesuffix(WEB_PHONE_SUFFIX)
        fields["agent"] = agent_for_endpoint(endpoint) or endpoint
    if queued.answered_at is not None:
        fields["answered_at"] = _time(queued.answered_at)
    if queued.wait_seconds is not None and (queued.answered_at is not None or not in_progress):
        fields.update(
            records.wait_figures(queued.wait_seconds, answered=queued.answered_at is not None)
        )
    if queued.ended_at is not None:
        fields["ended_at"] = _time(queued.ended_at)
    await records.update(call_id, **fields)
    await records.event(call_id, "recovered_from_queue_log",
                        {"outcome": fields["outcome"], "in_progress": in_progress})  # fmt: skip
    return call_id
