"""Widening policies: the predicted wait by hand, several rungs in one step, and whole simulated
runs of every policy that keep the engine's promises (hypothesis over headcount and seed)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.calls import CallState, Offer
from acd.engine import Engine
from acd.simulator import Simulation, load_scenario
from acd.widening import FixedTimerWidening, Rung, StrictQueues, TargetDrivenWidening
from bench.bench_acd_city import early_shift, perfect_pooling
from tests.support.acd_invariants import check_invariants

LADDER = (
    Rung(group_min=4, lang_min=3),
    Rung(group_min=1, lang_min=3),
    Rung(group_min=1, lang_min=3, neighbours=True),
    Rung(group_min=None, lang_min=3),
)
EXPERT = {"lang:pl": 5, "group:roads": 5}
CROSS = {"lang:pl": 5, "group:roads": 2, "group:parks": 5}
OTHER = {"lang:pl": 5, "group:waste": 5}


def busy_floor(policy: Any, handle: float) -> tuple[Engine, list[Offer]]:
    """Two roads experts and one cross-skilled agent on calls, one waste agent ready."""
    engine = Engine(widening=policy, expected_handle_seconds=handle, target_seconds=15)
    offers: list[Offer] = []
    for i, (skills, group) in enumerate(((EXPERT, "roads"), (EXPERT, "roads"), (CROSS, "parks"))):
        engine.upsert_agent(f"busy{i}", skills, 0)
        engine.login(f"busy{i}", 0)
        engine.set_ready(f"busy{i}", 0)
        engine.enqueue(f"warm{i}", language="pl", group=group, now=0)
        engine.answered(f"warm{i}", 0)
    engine.upsert_agent("waste", OTHER, 0)
    engine.login("waste", 0)
    offers += engine.set_ready("waste", 0)
    return engine, offers


def test_predicted_wait_by_hand() -> None:
    # Strict rung (roads at 1+): 3 members on calls, live handle 240 s. The second caller in
    # line waits for the second of them to free up: 2 * 240 / 3 = 160 s.
    engine, _ = busy_floor(StrictQueues(), 240.0)
    engine.enqueue("a", language="pl", group="roads", now=1)
    engine.enqueue("b", language="pl", group="roads", now=2)
    assert engine.position("a", 2) == (1, 80.0)
    assert engine.position("b", 2) == (2, 160.0)


def test_target_steps_several_rungs_at_once_when_each_would_miss() -> None:
    # Rung 0: 2 busy experts, 240 / 2 = 120 s; rung 1: 240 / 3 = 80 s; rung 2 the same pool;
    # rung 3 has the ready waste agent: the call is offered there at once.
    engine, _ = busy_floor(TargetDrivenWidening(LADDER), 240.0)
    offers = engine.enqueue("c", language="pl", group="roads", now=1)
    assert [(o.agent_id, o.rung) for o in offers] == [("waste", 3)]


def test_target_keeps_the_narrow_rung_when_the_prediction_meets_the_target() -> None:
    # Live handle 20 s: 20 / 2 = 10 s at rung 0, within 15 s: wait for an expert.
    engine, _ = busy_floor(TargetDrivenWidening(LADDER), 20.0)
    assert engine.enqueue("c", language="pl", group="roads", now=1) == []
    assert engine.call_info("c").rung == 0
    # With 6 s of headroom the budget is 9 s: 10 s at rung 0 misses, 20 / 3 = 6.7 s at rung 1
    # meets it, so the call steps one rung and no further.
    engine, _ = busy_floor(TargetDrivenWidening(LADDER, headroom=6), 20.0)
    assert engine.enqueue("c", language="pl", group="roads", now=1) == []
    assert engine.call_info("c").rung == 1


def test_fixed_timers_ignore_the_prediction() -> None:
    engine, _ = busy_floor(FixedTimerWidening((4, 8, 12), LADDER), 240.0)
    assert engine.enqueue("c", language="pl", group="roads", now=1) == []
    assert engine.tick(4.9) == [] and engine.call_info("c").rung == 0
    assert engine.tick(5) == [] and engine.call_info("c").rung == 1  # 4 s after enqueue
    offers = engine.tick(13)
    assert [(o.agent_id, o.rung) for o in offers] == [("waste", 3)]


def test_early_shift_count_follows_the_roster() -> None:
    city = load_scenario("city")
    assert [early_shift(city, n) for n in (48, 50, 52, 54)] == [29, 31, 31, 32]


def test_perfect_pooling_changes_only_the_skills() -> None:
    city = load_scenario("city")
    pooled = perfect_pooling(city)
    every = {f"lang:{q['language']}" for q in city["queues"]} | {
        f"group:{q['group']}" for q in city["queues"]
    }
    for profile in pooled["agents"]["profiles"]:
        assert profile["skills"] == {skill: 5 for skill in every}
    assert pooled["queues"] == city["queues"] and pooled["calls_per_hour"] == city["calls_per_hour"]
    assert city["agents"]["profiles"][0]["skills"]["group:roads"] == 5  # the original is intact


# ------------------------------------------------------------------ whole simulated runs

SHORT_CITY = copy.deepcopy(load_scenario("city"))
SHORT_CITY.update({"start_hour": 8, "duration_hours": 1, "drain_hours": 0.5})
SHORT_CITY["agents"] = {**SHORT_CITY["agents"], "shifts": None}


def fits(sim: Simulation, offer: Offer) -> bool:
    call = sim.engine.call_info(offer.call_id)
    rung = sim.engine.policy.ladder[offer.rung]
    skills = sim.agents[offer.agent_id].skills
    if skills.get(f"lang:{call.language}", 0) < rung.lang_min:
        return False
    if rung.group_min is None:
        return True
    neighbours = sim.sc["neighbours"].get(call.group, []) if rung.neighbours else []
    return any(skills.get(f"group:{g}", 0) >= rung.group_min for g in [call.group, *neighbours])


@settings(max_examples=25, deadline=None)
@given(
    policy=st.sampled_from(["strict", "fixed", "target"]),
    agents=st.integers(8, 40),
    seed=st.integers(1, 10_000),
)
def test_simulated_runs_keep_every_promise(policy: str, agents: int, seed: int) -> None:
    sim = Simulation(SHORT_CITY, agents=agents, policy=policy, seed=seed)
    route = sim._route

    def checked_route(offers: list[Offer], now: float) -> None:
        agents_now = [o.agent_id for o in offers]
        assert len(agents_now) == len(set(agents_now)), "one agent offered two calls"
        for offer in offers:
            assert fits(sim, offer), f"{offer} offered without the rung's skills"
            # the agent holds this call and only this one
            assert sim.engine.agent_info(offer.agent_id)["call_id"] == offer.call_id
        route(offers, now)

    sim._route = checked_route  # type: ignore[method-assign]
    result = sim.run()
    check_invariants(sim.engine)
    assert result.overall["offered"] == len(sim.calls)
    for call_id in sim.calls:  # no call lost: each one finished with an outcome, or still live
        info = sim.engine.call_info(call_id)
        if info.state is CallState.DONE:
            assert info.outcome in ("answered", "abandoned", "callback_answered", "callback_failed")
    assert max(result.offers_by_rung, default=0) < len(sim.engine.policy.ladder)
    if policy == "strict":
        assert set(result.offers_by_rung) <= {0}


@pytest.mark.parametrize("policy", ["strict", "fixed", "target"])
def test_an_ample_floor_answers_everyone(policy: str) -> None:
    sim = Simulation(SHORT_CITY, agents=60, policy=policy, seed=7)
    o = sim.run().overall
    cb = o["callbacks"]
    assert o["answered"] + o["abandoned"] + o["short_abandoned"] + cb["requested"] == o["offered"]
