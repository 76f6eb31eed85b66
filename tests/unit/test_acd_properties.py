"""Property tests: random event sequences never break the engine's promises.

- no agent ever holds two calls, and the indexes agree with the states (check_invariants)
- no call is offered to an agent without the skills of the call's current rung
- no call is lost: every enqueued call is waiting, ringing, talking or finished with an outcome
- only AcdError ever escapes, and a rejected request changes nothing
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.agents import AcdError
from acd.calls import CallState, Offer
from acd.engine import Engine
from acd.reports import snapshot
from acd.widening import FixedTimerWidening, Rung, StrictQueues, TargetDrivenWidening
from tests.support.acd_invariants import check_invariants

LANGS = ["pl", "en"]
GROUPS = ["roads", "waste", "parks"]
NEIGHBOURS = {"roads": ["waste"], "waste": ["roads", "parks"], "parks": ["waste"]}
LADDER = (
    Rung(group_min=4, lang_min=3),
    Rung(group_min=1, lang_min=3),
    Rung(group_min=1, lang_min=3, neighbours=True),
    Rung(group_min=None, lang_min=2),
)

# Mostly plausible agents (a language and a group), sometimes anything at all.
skills_st = st.one_of(
    st.builds(
        lambda lang, group, extra: (
            {f"lang:{lang[0]}": lang[1], f"group:{group[0]}": group[1]} | extra
        ),
        st.tuples(st.sampled_from(LANGS), st.integers(2, 5)),
        st.tuples(st.sampled_from(GROUPS), st.integers(1, 5)),
        st.dictionaries(
            st.sampled_from([f"group:{g}" for g in GROUPS]), st.integers(1, 5), max_size=1
        ),
    ),
    st.dictionaries(
        st.sampled_from([f"lang:{x}" for x in LANGS] + [f"group:{g}" for g in GROUPS]),
        st.integers(1, 5),
        max_size=4,
    ),
)
agent_ops = st.tuples(
    st.sampled_from(
        [
            "agent_up",
            "agent_up",
            "upsert",
            "login",
            "ready",
            "ready",
            "pause",
            "logout",
            "reach",
            "unreach",
        ]
    ),
    st.integers(0, 3),
    skills_st,
)
call_ops = st.tuples(
    st.sampled_from(
        [
            "enqueue",
            "answer",
            "no_answer",
            "ring_failed",
            "end",
            "abandon",
            "callback",
            "cb_ok",
            "cb_fail",
        ]
    ),
    st.integers(0, 5),
    st.tuples(st.sampled_from(LANGS), st.sampled_from(GROUPS), st.integers(0, 2)),
)
ops_st = st.lists(
    st.tuples(
        st.floats(0, 30), st.one_of(agent_ops, call_ops, call_ops, st.just(("tick", 0, None)))
    ),
    max_size=150,
)
policies = st.sampled_from(["strict", "fixed", "target"])


def make_engine(policy: str) -> Engine:
    widening = {
        "strict": StrictQueues(),
        "fixed": FixedTimerWidening((3, 6, 12), LADDER),
        "target": TargetDrivenWidening(LADDER),
    }[policy]
    return Engine(
        widening=widening,
        neighbours=NEIGHBOURS,
        wrap_up_seconds=5,
        callback_retry_seconds=10,
        callback_max_attempts=2,
        expected_handle_seconds=60,
    )


def agent_fits(engine: Engine, offer: Offer) -> bool:
    call = engine.call_info(offer.call_id)
    rung = engine.policy.ladder[offer.rung]
    skills = engine.agent_info(offer.agent_id)["skills"]
    if skills.get(f"lang:{call.language}", 0) < rung.lang_min:
        return False
    if rung.group_min is None:
        return True
    groups = [call.group, *(NEIGHBOURS[call.group] if rung.neighbours else [])]
    return any(skills.get(f"group:{g}", 0) >= rung.group_min for g in groups)


def apply(engine: Engine, op: tuple[str, int, Any], now: float) -> list[Offer]:
    kind, index, arg = op
    agent_id, call_id = f"a{index}", f"c{index}"
    if kind == "upsert":
        return engine.upsert_agent(agent_id, arg, now)
    if kind == "agent_up":
        offers = engine.upsert_agent(agent_id, arg, now)
        state = engine.agent_state(agent_id).value
        if state == "logged_out":
            engine.login(agent_id, now)
        elif state in ("ringing", "on_call"):
            # Busy, perhaps with a call its new skills just won: "ready" would fail after the
            # upsert already changed things, and a failed op must change nothing.
            return offers
        return offers + engine.set_ready(agent_id, now)
    if kind == "login":
        return engine.login(agent_id, now)
    if kind == "ready":
        return engine.set_ready(agent_id, now)
    if kind == "pause":
        return engine.pause(agent_id, "lunch", now)
    if kind == "logout":
        return engine.logout(agent_id, now)
    if kind in ("reach", "unreach"):
        return engine.set_reachable(agent_id, kind == "reach", now)
    if kind == "enqueue":
        lang, group, priority = arg
        return engine.enqueue(call_id, language=lang, group=group, priority=priority, now=now)
    if kind == "answer":
        return engine.answered(call_id, now)
    if kind == "no_answer":
        return engine.ring_no_answer(call_id, now)
    if kind == "ring_failed":
        return engine.ring_failed(call_id, now)
    if kind == "end":
        return engine.call_ended(call_id, now)
    if kind == "abandon":
        return engine.abandon(call_id, now)
    if kind == "callback":
        return engine.request_callback(call_id, "+48100200300", now)
    if kind in ("cb_ok", "cb_fail"):
        return engine.callback_result(call_id, kind == "cb_ok", now)
    return engine.tick(now)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
    ],
)
@given(policy=policies, ops=ops_st)
def test_random_sequences_keep_every_promise(policy: str, ops: list[Any]) -> None:
    engine = make_engine(policy)
    now = 0.0
    enqueued: set[str] = set()
    for dt, op in ops:
        now += dt
        before = snapshot(engine, now)
        try:
            offers = apply(engine, op, now)
        except AcdError as error:
            assert str(error)
            assert snapshot(engine, now) == before, f"{op} failed but changed state"
            check_invariants(engine)
            continue
        if op[0] == "enqueue":
            enqueued.add(f"c{op[1]}")
        check_invariants(engine)
        held = [o.agent_id for o in offers]
        assert len(held) == len(set(held)), "one agent offered two calls at once"
        for offer in offers:
            assert agent_fits(engine, offer), offer
            info = engine.call_info(offer.call_id)
            assert info.state is CallState.RINGING and info.agent_id == offer.agent_id
        for call_id in enqueued:  # no call lost
            info = engine.call_info(call_id)
            if info.state is CallState.DONE:
                assert info.outcome in (
                    "answered",
                    "abandoned",
                    "callback_answered",
                    "callback_failed",
                )
            else:
                assert info.state in (
                    CallState.WAITING,
                    CallState.CALLBACK_HOLD,
                    CallState.RINGING,
                    CallState.ON_CALL,
                )


@settings(max_examples=100, deadline=None)
@given(
    policy=policies,
    agents=st.lists(skills_st, min_size=1, max_size=6),
    calls=st.lists(st.tuples(st.sampled_from(LANGS), st.sampled_from(GROUPS)), max_size=20),
)
def test_a_ready_agent_never_idles_next_to_a_call_it_may_take(
    policy: str, agents: list[dict[str, int]], calls: list[tuple[str, str]]
) -> None:
    engine = make_engine(policy)
    for i, skills in enumerate(agents):
        engine.upsert_agent(f"a{i}", skills, 0)
        engine.login(f"a{i}", 0)
        engine.set_ready(f"a{i}", 0)
    for j, (lang, group) in enumerate(calls):
        engine.enqueue(f"c{j}", language=lang, group=group, now=1 + j)
        check_invariants(engine)  # includes: no ready agent in a pool with a waiting call
    engine.tick(1000)
    check_invariants(engine)


def legal_biased_run(engine: Engine, rng: Any, steps: int) -> tuple[int, set[str]]:
    """Drive long, mostly legal sequences (random picks among the actions that make sense now)."""
    now = 0.0
    offers_made = 0
    enqueued: set[str] = set()
    for step in range(steps):
        now += rng.expovariate(1 / 4)
        roll = rng.random()
        agent_id = f"a{rng.randrange(8)}"
        try:
            if roll < 0.15:
                skills = {
                    f"lang:{rng.choice(LANGS)}": rng.randint(2, 5),
                    f"group:{rng.choice(GROUPS)}": rng.randint(1, 5),
                }
                offers = engine.upsert_agent(agent_id, skills, now)
                state = engine.agent_state(agent_id).value
                if state == "logged_out":
                    engine.login(agent_id, now)
                if state in ("logged_out", "paused"):
                    offers += engine.set_ready(agent_id, now)
            elif roll < 0.45:
                call_id = f"c{step}"
                enqueued.add(call_id)
                offers = engine.enqueue(
                    call_id,
                    language=rng.choice(LANGS),
                    group=rng.choice(GROUPS),
                    priority=rng.randint(0, 1),
                    now=now,
                )
            elif roll < 0.85:
                live = [c for c in enqueued if engine.call_info(c).state is not CallState.DONE]
                if not live:
                    continue
                info = engine.call_info(rng.choice(live))
                action = rng.random()
                if info.state is CallState.RINGING and info.callback_number:
                    offers = engine.callback_result(info.call_id, action < 0.6, now)
                elif info.state is CallState.RINGING:
                    if action < 0.7:
                        offers = engine.answered(info.call_id, now)
                    elif action < 0.8:
                        offers = engine.ring_no_answer(info.call_id, now)
                    elif action < 0.9:
                        offers = engine.ring_failed(info.call_id, now)
                    else:
                        offers = engine.abandon(info.call_id, now)
                elif info.state is CallState.ON_CALL:
                    offers = engine.call_ended(info.call_id, now)
                elif info.state is CallState.WAITING and action < 0.2:
                    offers = engine.request_callback(info.call_id, "+48100", now)
                else:
                    offers = engine.abandon(info.call_id, now) if action < 0.5 else []
            elif roll < 0.95:
                if rng.random() < 0.5:
                    offers = engine.pause(agent_id, rng.choice(["lunch", "training"]), now)
                else:
                    offers = engine.set_ready(agent_id, now)
            else:
                offers = engine.set_reachable(agent_id, rng.random() < 0.7, now)
        except AcdError:
            check_invariants(engine)
            continue
        offers += engine.tick(now)
        check_invariants(engine)
        offers_made += len(offers)
        for offer in offers:
            assert agent_fits(engine, offer), offer
    return offers_made, enqueued


@settings(max_examples=60, deadline=None)
@given(policy=policies, seed=st.integers(0, 2**32))
def test_long_mostly_legal_runs_keep_every_promise(policy: str, seed: int) -> None:
    engine = make_engine(policy)
    _, enqueued = legal_biased_run(engine, random.Random(seed), 400)
    for call_id in enqueued:  # no call lost
        info = engine.call_info(call_id)
        assert info.state is not CallState.DONE or info.outcome is not None
