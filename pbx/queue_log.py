"""Asterisk's queue_log, read back: the calls app_queue handled while nobody was listening.

When the CityLine process is gone, the dial plan still hands residents to the fallback queue,
and app_queue writes every step to queue_log (`epoch|callid|queue|member|EVENT|data...`).
At the next start the service rebuilds those calls' records from it. Pure: lines in, calls out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Events that end a caller's stay in the queue, answered or not.
_ANSWERED_END = frozenset({"COMPLETEAGENT", "COMPLETECALLER", "TRANSFER", "BLINDTRANSFER",
                           "ATTENDEDTRANSFER"})  # fmt: skip
_UNANSWERED_END = frozenset({"ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"})


@dataclass
class QueuedCall:
    uniqueid: str  # the caller's channel: Asterisk's Uniqueid, as on our call records
    entered_at: float
    caller: str = ""
    member: str | None = None  # the interface that answered, e.g. PJSIP/agent-ola
    answered_at: float | None = None
    wait_seconds: float | None = None
    ended_at: float | None = None

    @property
    def outcome(self) -> str:
        return "fallback" if self.answered_at is not None else "fallback_abandoned"


def queue_calls(lines: Iterable[str], queue: str) -> list[QueuedCall]:
    """The calls of one queue, in the order they entered it. Malformed lines are skipped."""
    calls: dict[str, QueuedCall] = {}
    for line in lines:
        fields = line.rstrip("\n").split("|")
        if len(fields) < 5 or fields[2] != queue:
            continue
        try:
            at = float(fields[0])
        except ValueError:
            continue
        uniqueid, member, event, data = fields[1], fields[3], fields[4], fields[5:]
        if event == "ENTERQUEUE":
            caller = data[1] if len(data) > 1 else ""
            calls[uniqueid] = QueuedCall(uniqueid, at, caller=caller)
            continue
        call = calls.get(uniqueid)
        if call is None:
            continue  # its ENTERQUEUE is in an older, rotated file
        if event == "CONNECT":
            call.member, call.answered_at = member, at
            call.wait_seconds = _number(data, 0)
        elif event in _ANSWERED_END or event in _UNANSWERED_END:
            call.ended_at = at
            if event in _UNANSWERED_END:
                call.wait_seconds = _number(data, 2)
    return sorted(calls.values(), key=lambda c: c.entered_at)


def _number(data: list[str], index: int) -> float | None:
    try:
        return float(data[index])
    except (IndexError, ValueError):
        return None
