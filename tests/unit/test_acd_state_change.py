"""The {state, reason} body of the desk and the supervisor routes: one parser, one vocabulary.
The desk may pause without a reason ("not ready"); a supervisor must say why."""

from __future__ import annotations

from typing import Any

import pytest

from acd.agents import (
    DEFAULT_PAUSE_REASON,
    AgentState,
    StateChangeError,
    parse_state_change,
)

BAD_ANYWHERE: list[tuple[dict[str, Any], str]] = [
    ({}, "state must be"),
    ({"state": "on_call"}, "state must be"),
    ({"state": " ready "}, "state must be"),
    ({"state": ["ready"]}, "state must be"),
    ({"state": 5}, "state must be"),
    ({"state": "paused", "reason": 5}, "needs a reason"),
    ({"state": "paused", "reason": ["lunch"]}, "needs a reason"),
    ({"state": "paused", "reason": "x" * 41}, "at most 40"),
]


@pytest.mark.parametrize("default", [None, DEFAULT_PAUSE_REASON])
@pytest.mark.parametrize("body,error", BAD_ANYWHERE)
def test_bad_bodies_are_refused_by_both(
    body: dict[str, Any], error: str, default: str | None
) -> None:
    with pytest.raises(StateChangeError, match=error):
        parse_state_change(body, default_reason=default)


def test_ready_ignores_any_reason() -> None:
    assert parse_state_change({"state": "ready", "reason": 5}) == (AgentState.READY, None)
    assert parse_state_change({"state": "ready"}, default_reason="x") == (AgentState.READY, None)


def test_a_pause_reason_is_one_tidy_line_of_at_most_40() -> None:
    body = {"state": "paused", "reason": "  team \n  meeting "}
    assert parse_state_change(body) == (AgentState.PAUSED, "team meeting")
    padded = {"state": "paused", "reason": "  " + "x" * 40 + "  "}
    assert parse_state_change(padded) == (AgentState.PAUSED, "x" * 40)


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_only_the_desk_may_pause_without_a_reason(reason: str | None) -> None:
    body = {"state": "paused"} if reason is None else {"state": "paused", "reason": reason}
    with pytest.raises(StateChangeError, match="needs a reason"):
        parse_state_change(body)
    assert parse_state_change(body, default_reason=DEFAULT_PAUSE_REASON) == (
        AgentState.PAUSED,
        "not ready",
    )


def test_not_ready_is_a_pause() -> None:
    body = {"state": "not_ready", "reason": "lunch"}
    assert parse_state_change(body) == (AgentState.PAUSED, "lunch")
