"""Benchmark 3: engine cost with 1,000 agents, 20 skills and 5,000 waiting calls.

A routing decision is one Offer. The measured loop is the hot path of a busy centre: an agent
answers, finishes (no wrap-up), is offered the best waiting call at once, and a new call arrives
so that 5,000 calls keep waiting. Decisions/s counts offers over the wall time of the whole loop
(answered + call_ended + enqueue included), on one core. The same loop with 100 and 10,000
agents shows the cost does not grow with the number of agents (no per-call agent scan).

    .venv/bin/python -m bench.bench_acd_engine [--decisions 100000]
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from typing import Any

from acd.calls import Offer
from acd.engine import Engine
from acd.widening import TargetDrivenWidening
from bench.common import write_result

LANGUAGES = ["pl", "en", "uk", "de"]
GROUPS = [f"g{i}" for i in range(16)]  # 4 languages + 16 groups = 20 skills
NEIGHBOURS = {g: [GROUPS[(i + 1) % 16], GROUPS[(i - 1) % 16]] for i, g in enumerate(GROUPS)}


def build(agents: int, waiting: int, rng: random.Random) -> tuple[Engine, list[Offer], float]:
    engine = Engine(widening=TargetDrivenWidening(), neighbours=NEIGHBOURS)
    now = 0.0
    for i in range(agents):
        skills = {"lang:pl": rng.randint(3, 5)}
        for lang in rng.sample(LANGUAGES[1:], rng.randint(0, 1)):
            skills[f"lang:{lang}"] = rng.randint(3, 5)
        for group in rng.sample(GROUPS, rng.randint(2, 4)):
            skills[f"group:{group}"] = rng.randint(1, 5)
        engine.upsert_agent(f"a{i}", skills, now)
        engine.login(f"a{i}", now)  # paused("login"): nobody takes calls yet
    for j in range(waiting + agents):
        now += 0.001
        engine.enqueue(
            f"c{j}",
            language=rng.choices(LANGUAGES, [85, 8, 5, 2])[0],
            group=rng.choice(GROUPS),
            priority=rng.random() < 0.05,
            now=now,
        )
    offers: list[Offer] = []
    for i in range(agents):
        now += 0.001
        offers += engine.set_ready(f"a{i}", now)
    return engine, offers, now


def hot_loop(
    engine: Engine, offers: list[Offer], now: float, decisions: int, rng: random.Random
) -> dict[str, Any]:
    ringing = list(offers)
    made = 0
    next_call = 10**9
    started = time.perf_counter()
    while made < decisions and ringing:  # bounded by `decisions`
        offer = ringing.pop(rng.randrange(len(ringing)))
        now += 0.01
        engine.answered(offer.call_id, now)
        new = engine.call_ended(offer.call_id, now)
        next_call += 1
        new += engine.enqueue(
            f"c{next_call}",
            language=rng.choices(LANGUAGES, [85, 8, 5, 2])[0],
            group=rng.choice(GROUPS),
            now=now,
        )
        made += len(new)
        ringing += new
    elapsed = time.perf_counter() - started
    t0 = time.perf_counter()
    ticks = 100
    for _ in range(ticks):
        now += 1.0
        engine.tick(now)
    tick_ms = (time.perf_counter() - t0) * 1000 / ticks
    return {
        "decisions": made,
        "seconds": elapsed,
        "decisions_per_second": made / elapsed,
        "waiting_after": engine.waiting_count(),
        "tick_ms_with_waiting_calls": tick_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(5)
    tracemalloc.start()
    t0 = time.perf_counter()
    engine, offers, now = build(1000, 5000, rng)
    build_seconds = time.perf_counter() - t0
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    engine.check_invariants()
    main_run = hot_loop(engine, offers, now, args.decisions, rng)
    engine.check_invariants()
    print(
        f"1000 agents, 20 skills, {main_run['waiting_after']} waiting: "
        f"{main_run['decisions_per_second']:,.0f} decisions/s "
        f"({main_run['decisions']} decisions in {main_run['seconds']:.2f} s); "
        f"tick {main_run['tick_ms_with_waiting_calls']:.2f} ms; "
        f"engine memory {current / 2**20:.1f} MiB (peak {peak / 2**20:.1f} MiB), "
        f"built in {build_seconds:.2f} s"
    )
    scaling = {}
    for agents in (100, 10_000):
        e, o, t = build(agents, 5000, random.Random(agents))
        scaling[agents] = hot_loop(e, o, t, min(args.decisions, 50_000), random.Random(1))
        print(f"{agents:6d} agents: {scaling[agents]['decisions_per_second']:,.0f} decisions/s")
    ok = main_run["decisions_per_second"] >= 20_000
    print(f"goal >= 20,000 decisions/s: {'MET' if ok else 'NOT MET'}")
    path = write_result(
        "bench_acd_engine",
        {
            "agents": 1000,
            "skills": 20,
            "waiting_calls": 5000,
            "main": main_run,
            "memory_mib": current / 2**20,
            "memory_peak_mib": peak / 2**20,
            "build_seconds": build_seconds,
            "scaling_by_agents": scaling,
            "goal_met": ok,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
