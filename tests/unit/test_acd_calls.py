"""The call state table: every (state, event) pair is either the one legal move written here or
refused with a clear error, and a refused move changes nothing."""

from __future__ import annotations

import itertools

import pytest

from acd.agents import AcdError
from acd.calls import (
    CALL_TRANSITIONS,
    Call,
    CallEvent,
    CallState,
    next_call_state,
    states_allowing,
)

S, E = CallState, CallEvent

# Written out again on purpose: a change to the table must be a change to this list too.
LEGAL = {
    (S.WAITING, E.OFFER): S.RINGING,
    (S.WAITING, E.REQUEST_CALLBACK): S.WAITING,
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
EVERY_PAIR = sorted(itertools.product(CallState, CallEvent), key=str)


def test_the_table_is_exactly_the_legal_moves() -> None:
    assert CALL_TRANSITIONS == LEGAL


@pytest.mark.parametrize("state,event", [p for p in EVERY_PAIR if p in LEGAL])
def test_every_legal_transition_lands_where_the_table_says(
    state: CallState, event: CallEvent
) -> None:
    assert next_call_state("c", state, event) is LEGAL[(state, event)]
    call = Call("c", "pl", "roads", 0, 0.0, 0, state=state)
    call.transition(event)
    assert call.state is LEGAL[(state, event)]


@pytest.mark.parametrize("state,event", [p for p in EVERY_PAIR if p not in LEGAL])
def test_every_illegal_transition_is_rejected(state: CallState, event: CallEvent) -> None:
    with pytest.raises(AcdError, match=f"call 'c': cannot '{event.value}' while '{state.value}'"):
        next_call_state("c", state, event)
    call = Call("c", "pl", "roads", 0, 0.0, 0, state=state)
    with pytest.raises(AcdError, match="cannot"):
        call.transition(event)
    assert call.state is state


def test_done_is_final_and_every_state_but_done_can_end() -> None:
    assert not any(s is S.DONE for s, _ in CALL_TRANSITIONS)
    with pytest.raises(AcdError, match=r"allowed: nothing"):
        next_call_state("c", S.DONE, E.ABANDON)
    for state in CallState:
        if state is not S.DONE:
            assert any(new is S.DONE for (s, _), new in CALL_TRANSITIONS.items() if s is state)


def test_the_error_lists_what_is_allowed() -> None:
    with pytest.raises(
        AcdError,
        match=r"\(allowed: abandon, answer, callback_failed, give_up, no_answer, ring_failed\)",
    ):
        next_call_state("c", S.RINGING, E.OFFER)


def test_states_allowing_follows_the_table_in_state_order() -> None:
    assert states_allowing(E.ABANDON) == (S.WAITING, S.CALLBACK_HOLD, S.RINGING)
    assert states_allowing(E.ANSWER) == (S.RINGING,)
    for event in CallEvent:
        assert set(states_allowing(event)) == {s for s, e in LEGAL if e is event}
