"""Simulator: runs the shipped scenario end to end, deterministic per seed."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from acd.simulator import Simulation, apportion, load_scenario, main, run_scenario


def test_apportion_sums_exactly() -> None:
    assert apportion(10, [0.5, 0.3, 0.2]) == [5, 3, 2]
    assert sum(apportion(7, [1, 1, 1])) == 7


@pytest.mark.parametrize("agents", [40, 48, 51, 60])
def test_lunch_slots_each_take_a_fair_share_of_their_shift(agents: int) -> None:
    """No half-hour slot sends more than its share of a shift to lunch, whatever the profiles."""
    scenario = load_scenario("city")
    sim = Simulation(scenario, agents=agents, policy="strict")
    sim._build_agents()
    for shift in scenario["agents"]["shifts"]:
        start = shift["start_hour"] * 3600.0
        on_shift = [a for a in sim.agents.values() if a.shift_start == start]
        slots = Counter(a.lunch_start for a in on_shift)
        assert len(slots) == shift["lunch_slots"]
        assert max(slots.values()) <= math.ceil(len(on_shift) / shift["lunch_slots"])


def test_city_scenario_runs_and_is_reproducible() -> None:
    scenario = load_scenario("city")
    a = run_scenario(scenario, agents=55, policy="target", seed=3)
    b = run_scenario(scenario, agents=55, policy="target", seed=3)
    assert a.summary() == b.summary()
    o = a.overall
    assert o["offered"] > 2000
    # no call lost: every offered call ended answered, abandoned or as a callback
    cb = o["callbacks"]
    assert o["answered"] + o["abandoned"] + o["short_abandoned"] + cb["requested"] == o["offered"]
    assert 0 < o["occupancy"] < 1
    assert set(a.offers_by_rung) <= {0, 1, 2, 3}


def test_policies_see_the_same_callers() -> None:
    scenario = load_scenario("city")
    offered = {
        p: run_scenario(scenario, agents=55, policy=p, seed=2).overall["offered"]
        for p in ("strict", "fixed", "target")
    }
    assert len(set(offered.values())) == 1
    assert run_scenario(scenario, agents=55, policy="strict", seed=2).offers_by_rung.keys() == {0}


def test_cli_prints_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["city", "--agents", "50", "--policy", "strict", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "overall" in out and "en/housing" in out and "Erlang C" in out


def test_offers_are_counted_by_the_agents_proficiency_in_the_calls_group() -> None:
    scenario = load_scenario("city")
    scenario["strict_rung"] = {"group_min": 4, "lang_min": 3}  # specialists only
    specialists = run_scenario(scenario, agents=55, policy="strict", seed=1)
    assert sum(specialists.offers_by_group_level.values()) == sum(
        specialists.offers_by_rung.values()
    )
    assert min(specialists.offers_by_group_level) >= 4
    widened = run_scenario(load_scenario("city"), agents=45, policy="target", seed=1)
    assert 0 in widened.offers_by_group_level  # the last rung takes anyone with the language
