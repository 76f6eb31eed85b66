"""Agent state machine as an explicit transition table.

The table is the single source of truth for what an agent may do next; the engine asks it
for every change, so an illegal request fails with one clear message instead of corrupting
the routing indexes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class AcdError(Exception):
    """An illegal transition or an unknown id; the message says which and why."""


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    RINGING = "ringing"  # reserved for one call (live ring or a callback being dialled)
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"  # not ready, always with a reason


class AgentEvent(StrEnum):
    LOGIN = "login"
    READY = "ready"
    PAUSE = "pause"
    LOGOUT = "logout"
    OFFER = "offer"
    ANSWER = "answer"
    NO_ANSWER = "no_answer"
    RING_FAILED = "ring_failed"
    CALLER_GONE = "caller_gone"  # caller hung up while the agent was ringing
    CALL_END = "call_end"
    WRAP_END = "wrap_end"


S = AgentState
E = AgentEvent

# (state, event) -> next state. Anything absent is illegal.
TRANSITIONS: dict[tuple[AgentState, AgentEvent], AgentState] = {
    (S.LOGGED_OUT, E.LOGIN): S.PAUSED,  # lands not-ready (reason "login") until the agent says so
    (S.LOGGED_OUT, E.LOGOUT): S.LOGGED_OUT,  # nothing to do: a log-out is never refused twice
    # A log-in at another desk ends the first desk's session; the agent stays logged in, not
    # ready (the new desk says when), and a call already on its way to the agent goes on.
    (S.READY, E.LOGIN): S.PAUSED,
    (S.PAUSED, E.LOGIN): S.PAUSED,
    (S.WRAP_UP, E.LOGIN): S.PAUSED,
    (S.RINGING, E.LOGIN): S.RINGING,
    (S.ON_CALL, E.LOGIN): S.ON_CALL,
    (S.PAUSED, E.READY): S.READY,
    (S.PAUSED, E.PAUSE): S.PAUSED,  # change of reason
    (S.PAUSED, E.LOGOUT): S.LOGGED_OUT,
    (S.READY, E.READY): S.READY,  # idempotent: a second "ready" keeps the idle time
    (S.READY, E.PAUSE): S.PAUSED,
    (S.READY, E.LOGOUT): S.LOGGED_OUT,
    (S.READY, E.OFFER): S.RINGING,
    (S.RINGING, E.ANSWER): S.ON_CALL,
    (S.RINGING, E.NO_ANSWER): S.PAUSED,
    (S.RINGING, E.RING_FAILED): S.PAUSED,
    (S.RINGING, E.CALLER_GONE): S.READY,
    (S.ON_CALL, E.CALL_END): S.WRAP_UP,
    (S.WRAP_UP, E.WRAP_END): S.READY,
    (S.WRAP_UP, E.READY): S.READY,  # agent ends wrap-up early
    (S.WRAP_UP, E.PAUSE): S.PAUSED,
    (S.WRAP_UP, E.LOGOUT): S.LOGGED_OUT,
}

# A pause reason is shown on the wallboard and the desk: one short line.
MAX_PAUSE_REASON = 40
# What a desk's pause without a reason means; supervisors must always give one.
DEFAULT_PAUSE_REASON = "not ready"
# What an agent may be asked to become; "not_ready" is the desk's older word for a pause.
REQUESTED_STATES = {"ready": S.READY, "paused": S.PAUSED, "not_ready": S.PAUSED}

# States in which the agent counts as handling work (for occupancy and the wait estimate).
BUSY_STATES = frozenset({S.RINGING, S.ON_CALL, S.WRAP_UP})
STAFFED_STATES = frozenset({S.READY, S.RINGING, S.ON_CALL, S.WRAP_UP, S.PAUSED})


def next_state(agent_id: str, state: AgentState, event: AgentEvent) -> AgentState:
    """The state after `event`, or AcdError naming the agent, the state and what is allowed."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is state)
        raise AcdError(
            f"agent {agent_id!r}: cannot {event.value!r} while {state.value!r} "
            f"(allowed: {', '.join(allowed) or 'nothing'})"
        ) from None


def check_skills(agent_id: str, skills: Mapping[str, int]) -> dict[str, int]:
    """The skills as a plain dict, or AcdError naming the first malformed one."""
    checked: dict[str, int] = {}
    for name, level in skills.items():
        if not isinstance(name, str) or ":" not in name:
            raise AcdError(
                f"agent {agent_id!r}: skill {name!r} must look like 'lang:pl' or 'group:roads'"
            )
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 5:
            raise AcdError(
                f"agent {agent_id!r}: proficiency of {name!r} must be 1-5, got {level!r}"
            )
        checked[name] = level
    return checked


@dataclass
class Agent:
    agent_id: str
    skills: dict[str, int]
    state: AgentState = AgentState.LOGGED_OUT
    since: float = 0.0  # when the current state began; for READY this is the idle start
    pause_reason: str | None = None
    reachable: bool = True
    call_id: str | None = None  # the one call it holds (ringing / on call / wrap-up)
    wrap_up_seconds: float | None = None  # per-agent override
    wrap_until: float | None = None
    ready_token: int = 0  # bumps each time the agent enters READY; stale heap entries differ
    pools: list[int] = field(default_factory=list)  # ids of the pools this agent belongs to

    @property
    def available(self) -> bool:
        return self.state is AgentState.READY and self.reachable


class StateChangeError(ValueError):
    """A {state, reason} request that asks for no legal state (the HTTP layer answers 400)."""


def parse_state_change(
    body: Mapping[str, Any], *, default_reason: str | None = None
) -> tuple[AgentState, str | None]:
    """{"state": "ready"} or {"state": "paused", "reason": "..."} as (state, reason).

    Ready ignores any reason. A pause needs a non-empty reason string unless `default_reason`
    stands in for a missing or blank one; its whitespace is collapsed to single spaces.
    """
    state = body.get("state")
    if not isinstance(state, str) or state not in REQUESTED_STATES:
        raise StateChangeError("state must be one of ['ready', 'paused']")
    if REQUESTED_STATES[state] is S.READY:
        return S.READY, None
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise StateChangeError("a pause needs a reason (a non-empty string)")
    reason = " ".join((reason or "").split()) or default_reason
    if not reason:
        raise StateChangeError("a pause needs a reason (a non-empty string)")
    if len(reason) > MAX_PAUSE_REASON:
        raise StateChangeError(f"reason: at most {MAX_PAUSE_REASON} characters")
    return S.PAUSED, reason
