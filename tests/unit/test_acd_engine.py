"""Engine: state transitions and routing rules, with hand-built situations."""

from __future__ import annotations

import pytest

from acd.agents import TRANSITIONS, AcdError, AgentEvent, AgentState
from acd.calls import CallState, Offer
from acd.engine import Engine
from acd.reports import explain, snapshot
from acd.widening import FixedTimerWidening, Rung, StrictQueues, TargetDrivenWidening
from tests.support.acd_invariants import check_invariants

PL_ROADS = {"lang:pl": 5, "group:roads": 5}
PL_WASTE = {"lang:pl": 5, "group:waste": 5}
LADDER = (
    Rung(group_min=4, lang_min=3),
    Rung(group_min=1, lang_min=3),
    Rung(group_min=1, lang_min=3, neighbours=True),
    Rung(group_min=None, lang_min=2),
)


def ready_agent(engine: Engine, agent_id: str, skills: dict[str, int], now: float) -> list[Offer]:
    engine.upsert_agent(agent_id, skills, now)
    engine.login(agent_id, now)
    offers = engine.set_ready(agent_id, now)
    check_invariants(engine)
    return offers


def strict() -> Engine:
    return Engine(widening=StrictQueues())


# ---------------------------------------------------------------- state table


def test_login_lands_paused_with_reason() -> None:
    e = strict()
    e.upsert_agent("a", PL_ROADS, 0)
    assert e.agent_state("a") is AgentState.LOGGED_OUT
    e.login("a", 1)
    assert e.agent_state("a") is AgentState.PAUSED
    assert e.agent_info("a")["pause_reason"] == "login"


def _agent_in(state: AgentState) -> tuple[Engine, str | None]:
    """An engine whose agent "a" is in `state`; the call it holds, if any."""
    e = Engine(widening=StrictQueues(), wrap_up_seconds=30)
    e.upsert_agent("a", PL_ROADS, 0)
    if state is AgentState.LOGGED_OUT:
        return e, None
    e.login("a", 1)
    if state is AgentState.PAUSED:
        e.pause("a", "lunch", 2)
        return e, None
    e.set_ready("a", 2)
    if state is AgentState.READY:
        return e, None
    e.enqueue("c", language="pl", group="roads", now=3)
    if state is AgentState.RINGING:
        return e, "c"
    e.answered("c", 4)
    if state is AgentState.ON_CALL:
        return e, "c"
    e.call_ended("c", 5)
    assert e.agent_state("a") is AgentState.WRAP_UP
    return e, None


@pytest.mark.parametrize(
    "state", [AgentState.READY, AgentState.PAUSED, AgentState.WRAP_UP, AgentState.LOGGED_OUT]
)
def test_a_log_in_in_any_state_without_a_call_lands_paused_for_login(state: AgentState) -> None:
    e, _ = _agent_in(state)
    assert e.login("a", 10) == []
    info = e.agent_info("a")
    assert (info["state"], info["pause_reason"], info["since"]) == ("paused", "login", 10)
    assert info["wrap_until"] is None
    check_invariants(e)
    e.enqueue("c2", language="pl", group="roads", now=11)
    assert e.tick(100) == []  # not offered anything until the agent says ready
    assert e.agent_state("a") is AgentState.PAUSED


@pytest.mark.parametrize("state", [AgentState.RINGING, AgentState.ON_CALL])
def test_a_log_in_during_a_call_keeps_the_call(state: AgentState) -> None:
    e, call_id = _agent_in(state)
    before = e.agent_info("a")
    assert e.login("a", 10) == []
    assert e.agent_info("a") == before
    assert call_id is not None and e.call_info(call_id).agent_id == "a"
    check_invariants(e)


def test_a_log_out_when_logged_out_changes_nothing() -> None:
    e, _ = _agent_in(AgentState.LOGGED_OUT)
    before = e.agent_info("a")
    assert e.logout("a", 10) == []
    assert e.agent_info("a") == before


@pytest.mark.parametrize(
    "state,event",
    sorted(
        ((s, ev) for s in AgentState for ev in AgentEvent if (s, ev) not in TRANSITIONS),
        key=str,
    ),
)
def test_every_illegal_transition_is_rejected(state: AgentState, event: AgentEvent) -> None:
    from acd.agents import next_state

    with pytest.raises(AcdError, match="cannot"):
        next_state("a", state, event)


def test_illegal_public_calls_raise_clear_errors() -> None:
    e = strict()
    with pytest.raises(AcdError, match="unknown agent"):
        e.set_ready("ghost", 0)
    e.upsert_agent("a", PL_ROADS, 0)
    with pytest.raises(AcdError, match="cannot 'ready' while 'logged_out'"):
        e.set_ready("a", 0)
    with pytest.raises(AcdError, match="unknown call"):
        e.answered("nope", 0)
    with pytest.raises(AcdError, match="proficiency"):
        e.upsert_agent("b", {"lang:pl": 9}, 0)
    with pytest.raises(AcdError, match="needs a reason"):
        e.pause("a", "", 0)
    e.enqueue("c1", language="pl", group="roads", now=0)
    with pytest.raises(AcdError, match="already enqueued"):
        e.enqueue("c1", language="pl", group="roads", now=0)
    with pytest.raises(AcdError, match="expected ringing"):
        e.answered("c1", 1)


def test_cannot_logout_while_on_call() -> None:
    e = strict()
    ready_agent(e, "a", PL_ROADS, 0)
    [offer] = e.enqueue("c", language="pl", group="roads", now=1)
    with pytest.raises(AcdError):
        e.logout("a", 2)
    e.answered("c", 2)
    with pytest.raises(AcdError, match="on_call"):
        e.logout("a", 3)
    assert offer == Offer("c", "a", 0)


def test_full_call_cycle_with_wrap_up() -> None:
    e = Engine(widening=StrictQueues(), wrap_up_seconds=10)
    ready_agent(e, "a", PL_ROADS, 0)
    assert e.enqueue("c1", language="pl", group="roads", now=5) == [Offer("c1", "a", 0)]
    assert e.agent_state("a") is AgentState.RINGING
    e.answered("c1", 7)
    assert e.agent_state("a") is AgentState.ON_CALL
    assert e.enqueue("c2", language="pl", group="roads", now=8) == []
    assert e.call_ended("c1", 100) == []
    assert e.agent_state("a") is AgentState.WRAP_UP
    assert e.tick(109) == []
    assert e.next_deadline() == 110
    assert e.tick(110) == [Offer("c2", "a", 0)]
    check_invariants(e)
    assert e.call_info("c1").outcome == "answered"


def test_wrap_up_per_group_and_per_agent() -> None:
    e = Engine(widening=StrictQueues(), wrap_up_seconds=5, group_wrap_up_seconds={"waste": 30})
    ready_agent(e, "a", {**PL_ROADS, **PL_WASTE}, 0)
    e.enqueue("c1", language="pl", group="waste", now=0)
    e.answered("c1", 1)
    e.call_ended("c1", 2)
    assert e.agent_info("a")["wrap_until"] == 32
    e.set_ready("a", 3)  # ends wrap-up early
    e.upsert_agent("a", {**PL_ROADS, **PL_WASTE}, 3, wrap_up_seconds=0)
    e.enqueue("c2", language="pl", group="waste", now=4)
    e.answered("c2", 4)
    e.call_ended("c2", 5)
    assert e.agent_state("a") is AgentState.READY
    assert e.tick(100) == []  # the stale wrap timer does nothing


def test_zero_wrap_up_goes_straight_to_next_call() -> None:
    e = strict()
    ready_agent(e, "a", PL_ROADS, 0)
    e.enqueue("c1", language="pl", group="roads", now=0)
    e.enqueue("c2", language="pl", group="roads", now=1)
    e.answered("c1", 1)
    assert e.call_ended("c1", 50) == [Offer("c2", "a", 0)]


def test_pause_reasons_and_logout() -> None:
    e = strict()
    ready_agent(e, "a", PL_ROADS, 0)
    e.pause("a", "lunch", 1)
    e.pause("a", "training", 2)  # change of reason
    assert e.agent_info("a")["pause_reason"] == "training"
    assert e.enqueue("c", language="pl", group="roads", now=3) == []
    assert snapshot(e, 4)["agents"]["paused_by_reason"] == {"training": 1}
    assert e.set_ready("a", 5) == [Offer("c", "a", 0)]
    e.abandon("c", 6)
    assert e.agent_state("a") is AgentState.READY
    e.logout("a", 7)
    assert e.agent_state("a") is AgentState.LOGGED_OUT


# ---------------------------------------------------------------- routing rules


def test_new_call_goes_to_longest_idle_agent() -> None:
    e = strict()
    ready_agent(e, "late", PL_ROADS, 10)
    ready_agent(e, "early", PL_ROADS, 5)
    ready_agent(e, "other_group", PL_WASTE, 0)
    assert e.enqueue("c", language="pl", group="roads", now=20) == [Offer("c", "early", 0)]


def test_ready_agent_takes_highest_priority_then_longest_waiting() -> None:
    e = strict()
    e.enqueue("old", language="pl", group="roads", now=0)
    e.enqueue("newer", language="pl", group="roads", now=1)
    e.enqueue("vip", language="pl", group="roads", priority=5, now=2)
    e.enqueue("vip2", language="pl", group="roads", priority=5, now=3)
    assert e.position("vip", 3)[0] == 1
    assert e.position("old", 3)[0] == 3
    got = []
    for i, agent_id in enumerate(["a1", "a2", "a3", "a4"]):
        got += [o.call_id for o in ready_agent(e, agent_id, PL_ROADS, 10 + i)]
    assert got == ["vip", "vip2", "old", "newer"]


def test_agent_only_gets_calls_it_is_skilled_for() -> None:
    e = strict()
    e.enqueue("en", language="en", group="roads", now=0)
    e.enqueue("waste", language="pl", group="waste", now=1)
    assert ready_agent(e, "a", PL_ROADS, 2) == []
    assert ready_agent(e, "b", {"lang:en": 4, "group:roads": 2}, 3) == [Offer("en", "b", 0)]


def test_ring_no_answer_pauses_agent_and_keeps_call_place() -> None:
    e = strict()
    ready_agent(e, "a", PL_ROADS, 0)
    e.enqueue("first", language="pl", group="roads", now=1)
    e.enqueue("second", language="pl", group="roads", now=2)
    assert e.ring_no_answer("first", 20) == []
    assert e.agent_state("a") is AgentState.PAUSED
    assert e.agent_info("a")["pause_reason"] == "no answer"
    assert e.position("first", 20)[0] == 1
    assert ready_agent(e, "b", PL_ROADS, 21) == [Offer("first", "b", 0)]


def test_ring_failed_pauses_as_unreachable_and_reoffers_elsewhere() -> None:
    e = strict()
    ready_agent(e, "a", PL_ROADS, 0)
    ready_agent(e, "b", PL_ROADS, 1)
    e.enqueue("c", language="pl", group="roads", now=2)
    assert e.ring_failed("c", 3) == [Offer("c", "b", 0)]
    assert e.agent_info("a")["pause_reason"] == "unreachable"


def test_abandon_while_ringing_frees_agent_for_next_call() -> None:
    e = strict()
    ready_agent(e, "a", PL_ROADS, 0)
    e.enqueue("c1", language="pl", group="roads", now=1)
    e.enqueue("c2", language="pl", group="roads", now=2)
    assert e.abandon("c1", 3) == [Offer("c2", "a", 0)]
    assert e.call_info("c1").outcome == "abandoned"
    with pytest.raises(AcdError, match="already finished"):
        e.abandon("c1", 4)


def test_unreachable_agent_is_not_offered() -> None:
    e = strict()
    ready_agent(e, "a", PL_ROADS, 0)
    e.set_reachable("a", False, 1)
    assert e.enqueue("c", language="pl", group="roads", now=2) == []
    assert e.agent_state("a") is AgentState.READY
    assert e.set_reachable("a", True, 3) == [Offer("c", "a", 0)]


def test_skill_change_of_ready_agent_routes_waiting_call() -> None:
    e = strict()
    ready_agent(e, "a", PL_WASTE, 0)
    e.enqueue("c", language="pl", group="roads", now=1)
    assert e.upsert_agent("a", {**PL_WASTE, "group:roads": 2}, 2) == [Offer("c", "a", 0)]


# ---------------------------------------------------------------- widening


def test_target_driven_widens_only_when_target_at_risk() -> None:
    e = Engine(widening=TargetDrivenWidening(LADDER), expected_handle_seconds=240)
    # two experts busy: predicted wait for position 1 = 1 * 240 / 2 = 120 s > 15 s
    ready_agent(e, "x1", PL_ROADS, 0)
    ready_agent(e, "x2", PL_ROADS, 0)
    ready_agent(e, "novice", {"lang:pl": 5, "group:roads": 2}, 0)
    e.enqueue("c1", language="pl", group="roads", now=1)
    e.enqueue("c2", language="pl", group="roads", now=1)
    assert [o.agent_id for o in e.enqueue("c3", language="pl", group="roads", now=2)] == ["novice"]
    assert e.call_info("c3").rung == 1


def test_target_driven_keeps_call_when_experts_free_up_fast() -> None:
    e = Engine(widening=TargetDrivenWidening(LADDER), expected_handle_seconds=20)
    for i in range(4):
        ready_agent(e, f"x{i}", PL_ROADS, 0)
        e.enqueue(f"busy{i}", language="pl", group="roads", now=0)
    ready_agent(e, "novice", {"lang:pl": 5, "group:roads": 2}, 0)
    # position 1, 4 busy experts, handle 20 s: predicted 5 s, waited 0: no widening
    assert e.enqueue("c", language="pl", group="roads", now=1) == []
    assert e.call_info("c").rung == 0
    assert "waited + predicted wait > 15" in explain(e, "c", 1)["next_step"]
    assert explain(e, "c", 1)["predicted_wait"] == 5
    assert e.tick(5) == []  # 4 + 5 = 9 < 15
    assert e.tick(11.5) == [Offer("c", "novice", 1)]  # 10.5 + 5 > 15


def test_target_driven_waits_at_its_rung_while_every_wider_agent_is_busy() -> None:
    e = Engine(widening=TargetDrivenWidening(LADDER), expected_handle_seconds=240)
    ready_agent(e, "x", PL_ROADS, 0)
    ready_agent(e, "waste", PL_WASTE, 0)
    e.enqueue("own", language="pl", group="roads", now=0)  # x takes it
    e.enqueue("other", language="pl", group="waste", now=0)  # waste takes it
    # At risk (240 s predicted) but nobody wider is ready: joining the waste agent's queue
    # would not answer it sooner, so the call keeps its rung.
    assert e.enqueue("c", language="pl", group="roads", now=1) == []
    assert e.tick(10) == [] and e.call_info("c").rung == 0
    assert "an agent on a wider rung is ready" in explain(e, "c", 10)["next_step"]
    # The waste agent frees up with nothing of its own waiting: at the next tick the call
    # steps down to it.
    e.answered("other", 2)
    assert e.call_ended("other", 11) == []
    assert e.tick(11.5) == [Offer("c", "waste", 3)]
    check_invariants(e)


def test_a_freed_agent_serves_its_own_queue_before_a_call_at_risk_elsewhere() -> None:
    e = Engine(widening=TargetDrivenWidening(LADDER), expected_handle_seconds=240)
    ready_agent(e, "x", PL_ROADS, 0)
    ready_agent(e, "waste", PL_WASTE, 0)
    e.enqueue("own", language="pl", group="roads", now=0)
    e.enqueue("other", language="pl", group="waste", now=0)
    e.enqueue("roads-late", language="pl", group="roads", now=1)
    e.enqueue("waste-next", language="pl", group="waste", now=2)
    e.answered("other", 2)
    assert e.call_ended("other", 12) == [Offer("waste-next", "waste", 0)]
    assert e.call_info("roads-late").rung == 0


def test_target_driven_walks_down_to_language_only() -> None:
    e = Engine(widening=TargetDrivenWidening(LADDER), neighbours={"roads": ["waste"]})
    ready_agent(e, "speaker", {"lang:pl": 3, "group:housing": 3}, 0)
    [offer] = e.enqueue("c", language="pl", group="roads", now=1)
    assert offer == Offer("c", "speaker", 3)


def test_neighbouring_group_rung() -> None:
    e = Engine(widening=TargetDrivenWidening(LADDER), neighbours={"roads": ["waste"]})
    ready_agent(e, "speaker", {"lang:pl": 3, "group:housing": 3}, 0)
    ready_agent(e, "waste", PL_WASTE, 1)  # idles less long, but a closer rung
    [offer] = e.enqueue("c", language="pl", group="roads", now=2)
    assert offer == Offer("c", "waste", 2)


def test_strict_never_widens() -> None:
    e = strict()
    ready_agent(e, "w", PL_WASTE, 0)
    e.enqueue("c", language="pl", group="roads", now=0)
    assert e.tick(1000) == []
    assert explain(e, "c", 1000)["next_step"] == "last rung: no further widening"


def test_fixed_timer_widening_steps_on_time() -> None:
    e = Engine(widening=FixedTimerWidening((5, 10, 20), LADDER), neighbours={"roads": ["waste"]})
    ready_agent(e, "novice", {"lang:pl": 5, "group:roads": 1}, 0)
    ready_agent(e, "w", PL_WASTE, 0)
    e.enqueue("busy", language="pl", group="roads", now=0)  # takes novice at rung... no: rung 0
    assert e.call_info("busy").rung == 0 and e.call_info("busy").state is CallState.WAITING
    assert e.next_deadline() == 5
    assert e.tick(4.9) == []
    assert e.tick(5) == [Offer("busy", "novice", 1)]
    e.enqueue("c", language="pl", group="roads", now=6)
    assert e.tick(11) == []
    assert e.call_info("c").rung == 1
    assert e.tick(16) == [Offer("c", "w", 2)]


# ---------------------------------------------------------------- callbacks, announcements


def test_callback_keeps_place_and_is_offered_with_number() -> None:
    e = strict()
    e.enqueue("c1", language="pl", group="roads", now=0)
    e.enqueue("c2", language="pl", group="roads", now=1)
    e.request_callback("c1", "+48111", 2)
    assert e.position("c1", 2)[0] == 1
    [offer] = ready_agent(e, "a", PL_ROADS, 3)
    assert offer == Offer("c1", "a", 0, "+48111")
    with pytest.raises(AcdError, match="callback_result"):
        e.answered("c1", 4)
    e.callback_result("c1", True, 5)
    assert e.agent_state("a") is AgentState.ON_CALL
    e.call_ended("c1", 6)
    assert e.call_info("c1").outcome == "callback_answered"


def test_failed_callback_retries_then_becomes_follow_up() -> None:
    e = Engine(widening=StrictQueues(), callback_retry_seconds=60, callback_max_attempts=2)
    e.enqueue("c1", language="pl", group="roads", now=0)
    e.request_callback("c1", "+48111", 1)
    ready_agent(e, "a", PL_ROADS, 2)
    e.enqueue("c2", language="pl", group="roads", now=3)
    # first failure: agent free again, takes c2; c1 waits in place for its retry
    assert e.callback_result("c1", False, 4) == [Offer("c2", "a", 0)]
    assert e.call_info("c1").state is CallState.CALLBACK_HOLD
    e.answered("c2", 5)
    e.call_ended("c2", 6)
    assert e.tick(63) == []
    assert e.tick(64) == [Offer("c1", "a", 0, "+48111")]
    assert e.callback_result("c1", False, 65) == []
    assert e.call_info("c1").outcome == "callback_failed"
    [fu] = e.pop_follow_ups()
    assert (fu.call_id, fu.number, fu.attempts) == ("c1", "+48111", 2)
    assert e.pop_follow_ups() == []


def test_a_restored_callback_waits_in_its_place_with_its_failures_counted() -> None:
    e = Engine(widening=StrictQueues(), callback_max_attempts=2)
    e.enqueue("new", language="pl", group="roads", now=100)  # queued after the restart
    # requested at t=40, before the restart; one attempt had failed already
    assert e.restore_callback(
        "old", language="pl", group="roads", number="+48111", enqueued_at=40,
        failed_attempts=1, now=101,
    ) == []  # fmt: skip
    check_invariants(e)
    assert e.position("old", 101)[0] == 1 and e.position("new", 101)[0] == 2
    [offer] = ready_agent(e, "a", PL_ROADS, 102)
    assert offer == Offer("old", "a", 0, "+48111")
    assert e.callback_result("old", False, 103) == [Offer("new", "a", 0)]
    [fu] = e.pop_follow_ups()  # its second failure was its last
    assert (fu.call_id, fu.attempts) == ("old", 2)
    assert e.call_info("old").outcome == "callback_failed"
    with pytest.raises(AcdError, match="already enqueued"):
        e.restore_callback(
            "old", language="pl", group="roads", number="+48111", enqueued_at=40, now=104
        )
    with pytest.raises(AcdError, match="number"):
        e.restore_callback("x", language="pl", group="roads", number="", enqueued_at=1, now=104)


def test_a_restored_callback_is_offered_at_once_to_a_ready_agent() -> None:
    e = strict()
    ready_agent(e, "a", PL_ROADS, 0)
    offers = e.restore_callback(
        "old", language="pl", group="roads", number="+48111", enqueued_at=-50, now=1
    )
    assert offers == [Offer("old", "a", 0, "+48111")]
    check_invariants(e)


def test_announcements_period_and_overflow() -> None:
    e = Engine(widening=StrictQueues(), announce_period=30, overflow_limit=2)
    e.enqueue("c1", language="pl", group="roads", now=0)
    e.enqueue("c2", language="pl", group="roads", now=1)
    e.enqueue("c3", language="pl", group="roads", now=2)
    [first] = e.announcements(2)
    assert (first.call_id, first.position, first.offer_callback) == ("c3", 3, True)
    assert [a.call_id for a in e.announcements(31)] == ["c1", "c2"]
    assert [a.call_id for a in e.announcements(32)] == ["c3"]


# ---------------------------------------------------------------- explain, snapshot


def test_explain_says_who_could_take_the_call() -> None:
    e = strict()
    ready_agent(e, "a", PL_ROADS, 0)
    e.pause("a", "lunch", 1)
    ready_agent(e, "b", PL_ROADS, 0)
    e.enqueue("busy", language="pl", group="roads", now=1)
    e.enqueue("c", language="pl", group="roads", now=2)
    why = explain(e, "c", 10)
    assert why["eligible_agents"] == 2
    assert why["eligible_by_state"] == {"paused: lunch": 1, "ringing": 1}
    assert "none of the 2 eligible agents is ready" in why["why"]
    assert why["position"] == 1
    e.enqueue("en", language="en", group="roads", now=3)
    assert "no agent has the skills" in explain(e, "en", 4)["why"]
    import json

    json.dumps(snapshot(e, 11))
    json.dumps(why)


def test_snapshot_counts() -> None:
    e = strict()
    ready_agent(e, "a", PL_ROADS, 0)
    e.enqueue("c1", language="pl", group="roads", now=0)
    e.enqueue("c2", language="pl", group="roads", now=3)
    snap = snapshot(e, 10)
    assert snap["agents"]["by_state"]["ringing"] == 1
    assert snap["calls"]["waiting"] == 1
    assert snap["calls"]["longest_wait"] == 7
    assert snap["queues"]["pl/roads"]["waiting"] == 1


def test_snapshot_counts_the_speakers_of_each_language() -> None:
    e = strict()  # its one rung asks for the language at 3+
    ready_agent(e, "pl", PL_ROADS, 0)
    ready_agent(e, "both", {"lang:pl": 5, "lang:en": 4, "group:roads": 4}, 0)
    ready_agent(e, "weak-en", {"lang:pl": 5, "lang:en": 2, "group:roads": 5}, 0)
    e.upsert_agent("gone", {"lang:en": 5, "group:roads": 5}, 0)  # logged out
    e.pause("both", "lunch", 1)
    assert snapshot(e, 2)["agents"]["by_language"] == {
        "en": {"logged_in": 1, "working": 0},
        "pl": {"logged_in": 3, "working": 2},
    }
