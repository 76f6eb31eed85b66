"""What the wallboard shows: figures rated against the target, staffing, queue and agent rows."""

from __future__ import annotations

from typing import Any

import pytest

from acd.board import (
    agent_rows,
    board_figures,
    queue_rows,
    rate,
    sl_bands,
    staffing,
    wait_rating,
    wallboard_state,
)
from acd.engine import Engine
from acd.live import AcdService
from acd.service_level import ServiceLevelWindows


def test_colour_bands_follow_the_target() -> None:
    assert sl_bands(0.9) == {"good": 90.0, "warn": 80.0}
    assert sl_bands(0.8) == {"good": 80.0, "warn": 70.0}
    assert sl_bands(0.05) == {"good": 5.0, "warn": 0.0}


@pytest.mark.parametrize(
    ("percent", "rating"),
    [(None, "none"), (100.0, "good"), (90.0, "good"), (89.99, "warn"), (80.0, "warn"),
     (79.9, "bad"), (0.0, "bad")],
)  # fmt: skip
def test_service_level_is_green_amber_or_red(percent: float | None, rating: str) -> None:
    assert rate(percent, sl_bands(0.9)) == rating


def test_the_longest_wait_turns_amber_at_half_the_target_and_red_past_it() -> None:
    assert wait_rating(30.0, 0, 15.0) == "none"  # nothing waiting
    assert wait_rating(3.0, 2, 15.0) == "good"
    assert wait_rating(7.5, 1, 15.0) == "warn"
    assert wait_rating(15.0, 1, 15.0) == "bad"


def _live(by_state: dict[str, int], total: int) -> dict[str, Any]:
    return {"agents": {"by_state": by_state, "total": total}, "calls": {}, "queues": {}}


def test_staffing_compares_erlang_agents_needed_with_agents_logged_in() -> None:
    live = _live({"logged_out": 2, "paused": 1, "ready": 3}, 6)
    figures = {"15min": {"overall": {"erlang_agents_needed": 7}}, "1h": {"overall": {}}}
    assert staffing(live, figures) == {
        "needed": 7, "window": "15min", "logged_in": 4, "working": 3, "gap": 3,
        "by_language": [], "rating": "bad",
    }  # fmt: skip
    quiet = {"15min": {"overall": {"erlang_agents_needed": None}},
             "1h": {"overall": {"erlang_agents_needed": 2}}}  # fmt: skip
    assert staffing(live, quiet)["window"] == "1h"
    assert staffing(live, quiet)["rating"] == "good"
    assert staffing(live, {})["rating"] == "none"


def test_staffing_per_language_sets_each_language_against_its_speakers() -> None:
    live = _live({"logged_out": 0, "ready": 10}, 10)
    live["agents"]["by_language"] = {
        "pl": {"logged_in": 10, "working": 10},
        "en": {"logged_in": 1, "working": 0},
    }
    figures = {
        "15min": {"overall": {"erlang_agents_needed": 8},
                  "by_language": {"pl": {"erlang_agents_needed": 7},
                                  "en": {"erlang_agents_needed": None}}},
        "1h": {"overall": {}, "by_language": {"en": {"erlang_agents_needed": 2},
                                              "de": {"erlang_agents_needed": 1}}},
    }  # fmt: skip
    board = staffing(live, figures)
    assert board["gap"] == -2  # enough agents overall ...
    rows = {row["language"]: row for row in board["by_language"]}
    assert rows["pl"] == {"language": "pl", "needed": 7, "window": "15min", "logged_in": 10,
                          "working": 10, "gap": -3}  # fmt: skip
    assert rows["en"]["needed"] == 2 and rows["en"]["window"] == "1h" and rows["en"]["gap"] == 1
    assert rows["de"]["logged_in"] == 0 and rows["de"]["gap"] == 1  # calls nobody can take
    assert board["rating"] == "bad"  # ... but the English callers are short of speakers

    # English callers waiting, no English speaker, no call finished yet to size the need: short
    live["agents"]["by_language"] = {"pl": {"logged_in": 10, "working": 10}}
    early = {"1h": {"overall": {}, "by_language": {"en": {"offered": 2, "waiting": 2}}}}
    (english,) = [r for r in staffing(live, early)["by_language"] if r["language"] == "en"]
    assert english["needed"] is None and english["gap"] == 1
    assert staffing(live, early)["rating"] == "bad"


def test_queue_rows_join_live_queues_with_the_windows() -> None:
    live = {"queues": {"en/waste": {"waiting": 2, "callbacks": 1, "longest_wait": 12.5}}}
    figures = {
        "15min": {"by_key": {"pl/roads": {"sl_percent": 85.0}}},
        "today": {"by_key": {"pl/roads": {"sl_percent": 95.0, "offered": 9, "answered": 8,
                                          "abandoned": 1, "asa": 4.0}}},
    }  # fmt: skip
    rows = queue_rows(live, figures, sl_bands(0.9))
    assert [r["key"] for r in rows] == ["en/waste", "pl/roads"]
    waste, roads = rows
    assert waste["language"] == "en" and waste["group"] == "waste"
    assert waste["waiting"] == 2 and waste["callbacks"] == 1 and waste["rating_today"] == "none"
    assert roads["rating_15min"] == "warn" and roads["rating_today"] == "good"
    assert roads["offered_today"] == 9 and roads["asa_today"] == 4.0 and roads["waiting"] == 0


def _acd(now: list[float]) -> AcdService:
    return AcdService(Engine(stats=ServiceLevelWindows()), clock=lambda: now[0])


def test_the_board_from_a_live_engine() -> None:
    now = [1000.0]
    acd = _acd(now)
    for name in ("anna", "olek"):
        acd.upsert_agent(name, {"lang:pl": 5, "group:roads": 5})
        acd.login(name)
    acd.set_ready("anna")
    acd.enqueue("c1", language="pl", group="roads")  # offered to anna at once
    now[0] = 1004.0
    acd.answered("c1")
    acd.enqueue("c2", language="pl", group="roads")  # nobody free: waits
    acd.request_callback("c2", "48600100200")
    now[0] = 1010.0
    state = wallboard_state(acd.engine, acd.now())
    board = state["board"]
    assert state["target_sl_percent"] == 90.0
    assert board["bands"] == {"good": 90.0, "warn": 80.0}
    assert board["waiting"] == 1 and board["callbacks"]["pending"] == 1
    assert board["sl"]["15min"]["percent"] == 100.0 and board["sl"]["15min"]["rating"] == "good"
    assert board["sl"]["today"]["answered"] == 1
    assert board["asa"]["today"] == 4.0
    assert board["agents"]["by_state"]["on_call"] == 1
    assert board["agents"]["paused_by_reason"] == {"login": 1}
    assert [r["key"] for r in board["queues"]] == ["pl/roads"]
    rows = {r["agent_id"]: r for r in state["agents"]}
    assert rows["anna"]["state"] == "on_call" and rows["anna"]["for_seconds"] == 6.0
    assert rows["anna"]["call"] == {
        "call_id": "c1", "state": "on_call", "language": "pl", "group": "roads",
        "callback": False, "talk_seconds": 6.0,
    }  # fmt: skip
    assert rows["olek"]["pause_reason"] == "login" and rows["olek"]["call"] is None


def test_agent_rows_are_sorted_and_bounded() -> None:
    acd = _acd([0.0])
    for name in ("cyd", "abe", "bob"):
        acd.upsert_agent(name, {"lang:pl": 1})
    assert [r["agent_id"] for r in agent_rows(acd.engine, 5.0)] == ["abe", "bob", "cyd"]
    assert len(agent_rows(acd.engine, 5.0, limit=2)) == 2
    assert agent_rows(acd.engine, 5.0)[0]["state"] == "logged_out"


def test_a_board_with_no_service_level_figures_yet() -> None:
    board = board_figures(_live({}, 0), {}, 0.9, 15.0)
    assert board["sl"]["today"]["rating"] == "none"
    assert board["waiting"] == 0 and board["queues"] == []
    assert board["staffing"]["needed"] is None
