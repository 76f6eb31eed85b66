"""Call state machine as an explicit transition table, beside the agents' (acd/agents.py).

The engine changes a call's state only through `transition`, so an illegal request fails with
one clear message instead of leaving a call held, queued and finished at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from acd.agents import AcdError

QueueKey = tuple[str, str]  # (language, group)
CallKey = tuple[int, float, int]  # (-priority, enqueued_at, seq): smaller is served first


class CallState(StrEnum):
    WAITING = "waiting"
    CALLBACK_HOLD = "callback_hold"  # callback failed, waiting to retry (keeps its place)
    RINGING = "ringing"  # an agent is reserved
    ON_CALL = "on_call"
    DONE = "done"


class CallEvent(StrEnum):
    OFFER = "offer"  # an agent is reserved for it
    REQUEST_CALLBACK = "request_callback"  # the resident hangs up to be called back
    ANSWER = "answer"  # the agent picked up, or the called-back resident did
    NO_ANSWER = "no_answer"  # the agent did not pick up: back in its place
    RING_FAILED = "ring_failed"  # the agent's phone could not be rung: back in its place
    CALLBACK_FAILED = "callback_failed"  # the resident did not pick up: retry later
    GIVE_UP = "give_up"  # the last callback attempt failed: a follow-up case
    RETRY = "retry"  # time to call the resident back again
    END = "end"  # talk ended
    ABANDON = "abandon"  # the caller hung up before being answered


S = CallState
E = CallEvent

# (state, event) -> next state. Anything absent is illegal; DONE is final.
CALL_TRANSITIONS: dict[tuple[CallState, CallEvent], CallState] = {
    (S.WAITING, E.OFFER): S.RINGING,
    (S.WAITING, E.REQUEST_CALLBACK): S.WAITING,  # keeps its place; no session waits any more
    (S.WAITING, E.ABANDON): S.DONE,
    (S.RINGING, E.ANSWER): S.ON_CALL,
    (S.RINGING, E.NO_ANSWER): S.WAITING,
    (S.RINGING, E.RING_FAILED): S.WAITING,
    (S.RINGING, E.CALLBACK_FAILED): S.CALLBACK_HOLD,
    (S.RINGING, E.GIVE_UP): S.DONE,
    (S.RINGING, E.ABANDON): S.DONE,
    (S.CALLBACK_HOLD, E.RETRY): S.WAITING,
    (S.CALLBACK_HOLD, E.ABANDON): S.DONE,
    (S.ON_CALL, E.END): S.DONE,
}


def next_call_state(call_id: str, state: CallState, event: CallEvent) -> CallState:
    """The state after `event`, or AcdError naming the call, the state and what is allowed."""
    try:
        return CALL_TRANSITIONS[(state, event)]
    except KeyError:
        allowed = sorted(e.value for (s, e) in CALL_TRANSITIONS if s is state)
        raise AcdError(
            f"call {call_id!r}: cannot {event.value!r} while {state.value!r} "
            f"(allowed: {', '.join(allowed) or 'nothing'})"
        ) from None


def states_allowing(event: CallEvent) -> tuple[CallState, ...]:
    """The states in which `event` is legal, in the order of CallState."""
    return tuple(s for s in CallState if (s, event) in CALL_TRANSITIONS)


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    state: CallState
    language: str
    group: str
    priority: int
    enqueued_at: float
    rung: int
    agent_id: str | None
    callback_number: str | None
    callback_attempts: int
    answered_at: float | None
    outcome: str | None  # answered, abandoned, callback_answered, callback_failed
    overflow: bool


@dataclass
class Call:
    """A call the engine routes; only the engine writes it, and its state only by `transition`."""

    call_id: str
    language: str
    group: str
    priority: int
    enqueued_at: float
    seq: int
    state: CallState = CallState.WAITING
    rung: int = 0
    version: int = 0  # bumps when the call leaves its pools; older heap entries are stale
    pools: tuple[int, ...] = ()
    agent_id: str | None = None
    callback_number: str | None = None
    callback_attempts: int = 0
    retry_at: float | None = None
    answered_at: float | None = None
    outcome: str | None = None
    overflow: bool = False

    @property
    def key(self) -> CallKey:
        return (-self.priority, self.enqueued_at, self.seq)

    @property
    def queue(self) -> QueueKey:
        return (self.language, self.group)

    def transition(self, event: CallEvent) -> None:
        self.state = next_call_state(self.call_id, self.state, event)

    def info(self) -> CallInfo:
        return CallInfo(
            self.call_id,
            self.state,
            self.language,
            self.group,
            self.priority,
            self.enqueued_at,
            self.rung,
            self.agent_id,
            self.callback_number,
            self.callback_attempts,
            self.answered_at,
            self.outcome,
            self.overflow,
        )


# -- what the engine tells its caller ------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """The engine reserved agent_id for call_id: ring the agent now.

    With callback_number set, the resident already hung up: call them back (Originate) and
    report with Engine.callback_result.
    """

    call_id: str
    agent_id: str
    rung: int
    callback_number: str | None = None


@dataclass(frozen=True)
class Announcement:
    """Tell a waiting caller where they stand; offer_callback when the queue overflows."""

    call_id: str
    position: int
    expected_wait: float
    offer_callback: bool


@dataclass(frozen=True)
class FollowUp:
    """A callback that could not reach the resident: becomes a case for follow-up."""

    call_id: str
    number: str
    language: str
    group: str
    attempts: int
    at: float
