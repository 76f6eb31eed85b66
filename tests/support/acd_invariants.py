"""The ACD engine's self-check for tests: its indexes agree with the states they index."""

from __future__ import annotations

from acd.agents import AgentState
from acd.calls import CallState
from acd.engine import Engine


def check_invariants(engine: Engine) -> None:
    """Raise AssertionError if the engine's indexes disagree with its states."""
    holders: dict[str, str] = {}
    for a in engine._agents.values():
        if a.call_id is not None:
            assert a.state in (AgentState.RINGING, AgentState.ON_CALL), a
            assert a.call_id not in holders, f"call {a.call_id} held twice"
            holders[a.call_id] = a.agent_id
        else:
            assert a.state not in (AgentState.RINGING, AgentState.ON_CALL), a
    for call in engine._calls.values():
        if call.state in (CallState.RINGING, CallState.ON_CALL):
            assert holders.get(call.call_id) == call.agent_id, call
        queued = call.key in engine._queues.get(call.queue, [])
        assert queued == (call.state in (CallState.WAITING, CallState.CALLBACK_HOLD)), call
        assert bool(call.pools) == (call.state is CallState.WAITING), call
    engine._pools.check_invariants()
