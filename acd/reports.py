"""The ACD's read side: why a call waits (`explain`) and the live figures (`snapshot`).

Pure functions of the engine's state and the time passed in; they never change the engine,
so a supervisor's question or a wallboard refresh cannot disturb routing.
"""

from __future__ import annotations

import math
from typing import Any

from acd.agents import Agent, AgentState
from acd.calls import Call, CallState
from acd.engine import Engine

AGENTS_LISTED = 25  # agents named in an explanation; the rest are only counted


def explain(engine: Engine, call_id: str, now: float) -> dict[str, Any]:
    """Why a waiting call has not been offered: its rung, who could take it, what they do."""
    call = engine.live_calls.get(call_id)
    if call is None:
        info = engine.call_info(call_id)
        return {
            "call_id": call_id,
            "state": info.state.value,
            "outcome": info.outcome,
            "why": f"the call is finished ({info.outcome})",
        }
    policy = engine.policy
    out: dict[str, Any] = {
        "call_id": call_id,
        "state": call.state.value,
        "language": call.language,
        "group": call.group,
        "priority": call.priority,
        "waited": now - call.enqueued_at,
        "rung": call.rung,
        "rungs": len(policy.ladder),
        "rung_requires": policy.ladder[call.rung].describe(),
        "policy": policy.describe(),
        "callback_number": call.callback_number,
    }
    if call.state in (CallState.RINGING, CallState.ON_CALL):
        out["agent_id"] = call.agent_id
        out["why"] = f"already offered to agent {call.agent_id} ({call.state.value})"
        return out
    eligible = sorted(engine.rung_members(call))
    by_state, agents = _eligible_agents(engine, eligible, now)
    position, predicted = engine.position(call_id, now)
    out.update(
        {
            "position": position,
            "predicted_wait": None if math.isinf(predicted) else predicted,
            "eligible_agents": len(eligible),
            "eligible_by_state": by_state,
            "agents": agents,
        }
    )
    out["next_step"] = _next_step(engine, call, now)
    out["why"] = _why(call, eligible, by_state, position, out["rung_requires"])
    return out


def _state_label(agent: Agent) -> str:
    if agent.state is AgentState.PAUSED:
        return f"paused: {agent.pause_reason}"
    return agent.state.value if agent.reachable else f"{agent.state.value} (unreachable)"


def _eligible_agents(
    engine: Engine, eligible: list[str], now: float
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """How many eligible agents are in each state, and the first few of them in detail."""
    by_state: dict[str, int] = {}
    agents: list[dict[str, Any]] = []
    for agent_id in eligible:
        a = engine.agents[agent_id]
        label = _state_label(a)
        by_state[label] = by_state.get(label, 0) + 1
        if len(agents) < AGENTS_LISTED:
            agents.append(
                {
                    "agent_id": agent_id,
                    "state": a.state.value,
                    "pause_reason": a.pause_reason,
                    "reachable": a.reachable,
                    "for_seconds": now - a.since,
                    "call_id": a.call_id,
                }
            )
    return by_state, agents


def _next_step(engine: Engine, call: Call, now: float) -> str:
    policy = engine.policy
    due = policy.step_due_at(call.enqueued_at, call.rung)
    if call.rung + 1 >= len(policy.ladder):
        return "last rung: no further widening"
    if due is not None:
        return f"steps down at {due - now:.1f} s from now (fixed timer)"
    if engine.widens_by_target(call.call_id):
        return (
            f"steps down when waited + predicted wait > {engine.target_seconds} s"
            " and an agent on a wider rung is ready"
        )
    return "strict queue: never widened"


def _why(
    call: Call, eligible: list[str], by_state: dict[str, int], position: int, requires: str
) -> str:
    if call.state is CallState.CALLBACK_HOLD:
        return f"callback attempt failed; retries at {call.retry_at}"
    if not eligible:
        return f"no agent has the skills of rung {call.rung} ({requires})"
    ahead = position - 1
    why = (
        f"none of the {len(eligible)} eligible agents is ready and reachable"
        f" ({', '.join(f'{n} {s}' for s, n in sorted(by_state.items()))})"
    )
    if ahead:
        why += f"; {ahead} call(s) of the same queue are ahead"
    return why


def snapshot(engine: Engine, now: float) -> dict[str, Any]:
    """JSON-able live state for the wallboard."""
    return {
        "now": now,
        "policy": engine.policy.name,
        "agents": _agent_figures(engine),
        **_call_figures(engine, now),
        "handle_estimate": engine.handle_estimate,
    }


def _agent_figures(engine: Engine) -> dict[str, Any]:
    states: dict[str, int] = {s.value: 0 for s in AgentState}
    paused: dict[str, int] = {}
    unreachable = 0
    # Who can take a language's calls at all: its lowest level on any rung of the ladder.
    lang_min = min(rung.lang_min for rung in engine.policy.ladder)
    by_language: dict[str, dict[str, int]] = {}
    for a in engine.agents.values():
        states[a.state.value] += 1
        if a.state is not AgentState.LOGGED_OUT:
            for skill, level in a.skills.items():
                if skill.startswith("lang:") and level >= lang_min:
                    tally = by_language.setdefault(skill[5:], {"logged_in": 0, "working": 0})
                    tally["logged_in"] += 1
                    tally["working"] += a.state is not AgentState.PAUSED
        if a.state is AgentState.PAUSED:
            reason = a.pause_reason or "?"
            paused[reason] = paused.get(reason, 0) + 1
        if not a.reachable and a.state is not AgentState.LOGGED_OUT:
            unreachable += 1
    return {
        "by_state": states,
        "paused_by_reason": paused,
        "unreachable": unreachable,
        "total": len(engine.agents),
        "by_language": dict(sorted(by_language.items())),
    }


def _call_figures(engine: Engine, now: float) -> dict[str, Any]:
    """The "calls" and "queues" sections: live calls by state, waiting ones by queue."""
    call_states: dict[str, int] = {s.value: 0 for s in CallState if s is not CallState.DONE}
    queues: dict[str, dict[str, Any]] = {}
    longest = 0.0
    for call in engine.live_calls.values():
        call_states[call.state.value] += 1
        if call.state in (CallState.WAITING, CallState.CALLBACK_HOLD):
            q = queues.setdefault(
                f"{call.language}/{call.group}",
                {"waiting": 0, "callbacks": 0, "longest_wait": 0.0, "by_rung": {}},
            )
            waited = now - call.enqueued_at
            q["waiting"] += 1
            q["callbacks"] += call.callback_number is not None
            q["longest_wait"] = max(q["longest_wait"], waited)
            q["by_rung"][str(call.rung)] = q["by_rung"].get(str(call.rung), 0) + 1
            longest = max(longest, waited)
    return {
        "calls": {
            "by_state": call_states,
            "waiting": call_states[CallState.WAITING.value]
            + call_states[CallState.CALLBACK_HOLD.value],
            "longest_wait": longest,
        },
        "queues": queues,
    }
