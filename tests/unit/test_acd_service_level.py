"""Service-level windows against hand-computed cases."""

from __future__ import annotations

import pytest

from acd.engine import Engine
from acd.erlang import agents_needed
from acd.service_level import ServiceLevelWindows, percentile
from acd.widening import StrictQueues


def feed() -> ServiceLevelWindows:
    sl = ServiceLevelWindows(day_start=0.0)
    sl.agent_state("a", "ready", 0)
    sl.call_enqueued("c1", "pl", "roads", 0)
    sl.call_enqueued("c2", "pl", "roads", 5)
    sl.agent_state("a", "ringing", 8)
    sl.call_answered("c1", 10)  # wait 10
    sl.agent_state("a", "on_call", 10)
    sl.call_enqueued("c3", "en", "waste", 10)
    sl.call_abandoned("c3", 13)  # short abandon: 3 s
    sl.call_enqueued("c4", "pl", "roads", 20)
    sl.call_answered("c2", 25)  # wait 20
    sl.call_enqueued("c5", "en", "waste", 30)
    sl.call_answered("c5", 35)  # wait 5
    sl.call_abandoned("c4", 50)  # counted abandon: 30 s
    sl.call_enqueued("c6", "pl", "roads", 60)  # still waiting
    return sl


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0, 10.0, 20.0], 50) == 10.0
    assert percentile([5.0, 10.0, 20.0], 90) == 20.0
    assert percentile([float(i) for i in range(1, 11)], 90) == 9.0


def test_overall_figures_by_hand() -> None:
    figures = feed().figures(100)
    for window in ("15min", "1h", "today"):
        o = figures[window]["overall"]
        assert (o["offered"], o["answered"], o["abandoned"], o["short_abandoned"]) == (6, 3, 1, 1)
        assert o["sl_percent"] == pytest.approx(100 * 2 / 3)  # waits 10, 20, 5: two within 15
        assert o["sl_with_abandons_percent"] == pytest.approx(50.0)  # 2 / (3 + 1)
        assert o["abandon_percent"] == pytest.approx(20.0)  # 1 / (6 - 1 short)
        assert o["asa"] == pytest.approx(35 / 3)
        assert (o["p50_wait"], o["p90_wait"]) == (10.0, 20.0)
        assert o["longest_current_wait"] == 40.0 and o["waiting"] == 1
        assert o["occupancy"] == pytest.approx(92 / 100)  # ready 0-8, busy 8-100
        assert o["agents_logged_in"] == 1
        assert o["aht"] is None and o["erlang_agents_needed"] is None


def test_per_key_figures_by_hand() -> None:
    by_key = feed().figures(100)["today"]["by_key"]
    roads, waste = by_key["pl/roads"], by_key["en/waste"]
    assert (roads["offered"], roads["answered"], roads["abandoned"]) == (4, 2, 1)
    assert roads["sl_percent"] == 50.0
    assert roads["sl_with_abandons_percent"] == pytest.approx(100 / 3)
    assert roads["longest_current_wait"] == 40.0
    assert (waste["offered"], waste["answered"], waste["short_abandoned"]) == (2, 1, 1)
    assert waste["sl_percent"] == 100.0 and waste["abandon_percent"] == 0.0


def test_per_language_figures_add_up_the_groups() -> None:
    sl = feed()
    sl.call_enqueued("c7", "pl", "waste", 70)
    sl.call_answered("c7", 72)
    for window in ("15min", "1h", "today"):
        figures = sl.figures(100)[window]
        assert set(figures["by_key"]) == {"pl/roads", "pl/waste", "en/waste"}
        polish, english = figures["by_language"]["pl"], figures["by_language"]["en"]
        assert (polish["offered"], polish["answered"], polish["abandoned"]) == (5, 3, 1)
        assert polish["waiting"] == 1 and polish["longest_current_wait"] == 40.0
        assert (english["offered"], english["answered"], english["short_abandoned"]) == (2, 1, 1)
        assert english["waiting"] == 0


def test_windows_roll_and_erlang_uses_live_rate_and_handle() -> None:
    sl = feed()
    sl.call_ended("c1", 110, wrap_up_seconds=10)  # handle = 110 - 10 + 10 = 110
    figures = sl.figures(1000)
    last_15 = figures["15min"]["overall"]  # window 100..1000: only the hand-off at 110
    assert (last_15["offered"], last_15["answered"], last_15["aht"]) == (0, 0, 110.0)
    assert last_15["sl_percent"] is None
    hour = figures["1h"]["overall"]  # day only 1000 s old: rate = 6 calls / 1000 s
    assert hour["arrival_rate_per_hour"] == pytest.approx(21.6)
    assert hour["erlang_agents_needed"] == agents_needed(21.6, 110.0)
    assert figures["today"]["overall"]["offered"] == 6


def test_callbacks_counted_apart_from_live_answers() -> None:
    sl = ServiceLevelWindows()
    sl.call_enqueued("c", "pl", "roads", 0)
    sl.callback_requested("c", 10)
    assert sl.figures(11)["today"]["overall"]["waiting"] == 0  # resident is off the line
    sl.callback_connected("c", 400)
    sl.call_ended("c", 500)
    o = sl.figures(600)["today"]["overall"]
    assert o["answered"] == 0 and o["sl_percent"] is None
    assert o["callbacks"] == {"requested": 1, "connected": 1, "failed": 0, "cancelled": 0}


def test_new_day_resets_today_only() -> None:
    sl = feed()
    sl.start_day(100)
    figures = sl.figures(101)
    assert figures["today"]["overall"]["offered"] == 0
    assert figures["1h"]["overall"]["offered"] == 6


def test_engine_feeds_windows() -> None:
    sl = ServiceLevelWindows()
    e = Engine(widening=StrictQueues(), stats=sl)
    e.upsert_agent("a", {"lang:pl": 5, "group:roads": 5}, 0)
    e.login("a", 0)
    e.set_ready("a", 0)
    e.enqueue("c1", language="pl", group="roads", now=1)
    e.enqueue("c2", language="pl", group="roads", now=2)
    e.answered("c1", 3)
    e.call_ended("c1", 100)
    e.answered("c2", 101)
    o = sl.figures(102)["today"]["overall"]
    assert (o["offered"], o["answered"], o["answered_in_target"]) == (2, 2, 1)
    assert o["aht"] == 97.0
