"""Discrete-event simulator that drives the real Engine from a scenario file.

Poisson arrivals (piecewise-constant hourly rates), handle times from a distribution (scaled by
how well the answering agent knows the call's group and language), caller patience for
abandonment, queued callbacks, agent shifts and lunch pauses. The figures come from the same
ServiceLevelWindows the wallboard uses.

    python -m acd.simulator acd/scenarios/city.json [--agents N] [--policy strict|fixed|target]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acd.calls import CallState, Offer
from acd.engine import Engine
from acd.erlang import agents_needed
from acd.service_level import ServiceLevelWindows
from acd.widening import (
    DEFAULT_LADDER,
    FixedTimerWidening,
    Rung,
    StrictQueues,
    TargetDrivenWidening,
    WideningPolicy,
)

SCENARIOS = Path(__file__).with_name("scenarios")


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read a scenario; a bare name like 'city' means acd/scenarios/city.json."""
    p = Path(path)
    if not p.exists() and (SCENARIOS / f"{path}.json").exists():
        p = SCENARIOS / f"{path}.json"
    scenario: dict[str, Any] = json.loads(p.read_text())
    return scenario


def build_policy(scenario: Mapping[str, Any], name: str) -> WideningPolicy:
    ladder = (
        tuple(
            Rung(r.get("group_min"), r["lang_min"], r.get("neighbours", False))
            for r in scenario.get("ladder", [])
        )
        or DEFAULT_LADDER
    )
    if name == "strict":
        # The call's own group at any proficiency: what a per-group queue would hold.
        strict = scenario.get("strict_rung")
        return StrictQueues((Rung(**strict),) if strict else (ladder[min(1, len(ladder) - 1)],))
    if name == "fixed":
        return FixedTimerWidening(scenario.get("fixed_steps", (5.0, 10.0, 20.0)), ladder)
    if name == "target":
        return TargetDrivenWidening(ladder, headroom=scenario.get("target_headroom", 0.0))
    raise ValueError(f"unknown policy {name!r} (strict, fixed, target)")


def apportion(total: int, shares: list[float]) -> list[int]:
    """Split total by shares with the largest-remainder rule (sums exactly to total)."""
    weight = sum(shares)
    raw = [total * s / weight for s in shares]
    counts = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass
class SimAgent:
    agent_id: str
    skills: dict[str, int]
    shift_start: float
    shift_end: float
    lunch_start: float | None
    lunch_seconds: float
    pending: str | None = None  # "pause" or "logout" once the current call is done
    on_shift: bool = False


@dataclass
class SimResult:
    policy: str
    agents: int
    figures: dict[str, Any]
    offers_by_rung: dict[int, int]
    calls: int
    events: int
    follow_ups: int
    # offers by the agent's proficiency in the call's group (0: not in the group at all)
    offers_by_group_level: dict[int, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overall(self) -> dict[str, Any]:
        today: dict[str, Any] = self.figures["today"]["overall"]
        return today

    def summary(self) -> dict[str, Any]:
        o = self.overall
        return {
            "policy": self.policy,
            "agents": self.agents,
            "offered": o["offered"],
            "answered": o["answered"],
            "sl_percent": o["sl_percent"],
            "sl_with_abandons_percent": o["sl_with_abandons_percent"],
            "abandoned": o["abandoned"],
            "short_abandoned": o["short_abandoned"],
            "asa": o["asa"],
            "p50_wait": o["p50_wait"],
            "p90_wait": o["p90_wait"],
            "occupancy": o["occupancy"],
            "callbacks": o["callbacks"],
            "follow_ups": self.follow_ups,
            "offers_by_rung": self.offers_by_rung,
            "offers_by_group_level": self.offers_by_group_level,
            **self.extra,
        }


class Simulation:
    """One run of a scenario with a given headcount and policy."""

    def __init__(
        self,
        scenario: Mapping[str, Any],
        *,
        agents: int | None = None,
        policy: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.sc = scenario
        self.policy_name = policy or scenario.get("policy", "target")
        self.seed = scenario.get("seed", 1) if seed is None else seed
        self.headcount = agents if agents is not None else scenario["agents"]["total"]
        self.start = scenario.get("start_hour", 0) * 3600.0
        self.end = self.start + scenario["duration_hours"] * 3600.0
        self.drain = self.end + scenario.get("drain_hours", 1.0) * 3600.0  # last calls finish
        self.target = scenario.get("target_seconds", 15.0)
        self.stats = ServiceLevelWindows(target_seconds=self.target, day_start=self.start)
        queues = scenario["queues"]
        mean_aht = sum(q["share"] * q["aht"] for q in queues) / sum(q["share"] for q in queues)
        self.engine = Engine(
            widening=build_policy(scenario, self.policy_name),
            target_seconds=self.target,
            wrap_up_seconds=scenario.get("wrap_up_seconds", 0.0),
            neighbours=scenario.get("neighbours", {}),
            expected_handle_seconds=mean_aht + scenario.get("wrap_up_seconds", 0.0),
            callback_retry_seconds=scenario.get("callback", {}).get("retry_seconds", 120.0),
            callback_max_attempts=scenario.get("callback", {}).get("max_attempts", 3),
            stats=self.stats,
        )
        # Separate random streams, so changing the policy leaves arrivals and patience the same.
        self.rng_arrivals = random.Random(f"{self.seed}-arrivals")
        self.rng_handle = random.Random(f"{self.seed}-handle")
        self.rng_caller = random.Random(f"{self.seed}-caller")
        self.rng_ring = random.Random(f"{self.seed}-ring")
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = itertools.count()
        self.agents: dict[str, SimAgent] = {}
        self.calls: dict[str, dict[str, Any]] = {}
        self.offers_by_rung: Counter[int] = Counter()
        self.offers_by_group_level: Counter[int] = Counter()
        self.next_tick: float = math.inf
        self.event_count = 0
        self.follow_ups = 0

    # ---------------------------------------------------------------- set-up

    def _push(self, t: float, kind: str, data: Any = None) -> None:
        heapq.heappush(self.events, (t, next(self.seq), kind, data))

    def _build_agents(self) -> None:
        spec = self.sc["agents"]
        profiles = spec["profiles"]
        # Without shifts everyone works the whole run, drain included.
        shifts = spec.get("shifts") or [
            {"start_hour": self.start / 3600, "share": 1.0, "end_hour": self.drain / 3600}
        ]
        per_profile = apportion(self.headcount, [p["share"] for p in profiles])
        lunch_seconds = spec.get("lunch_minutes", 0) * 60.0
        n = 0
        # Lunch slots are dealt round the whole shift, not restarted for each profile: restarted,
        # every profile sent its first agent in the first slot and a 19-agent late shift lost 8
        # at once. Dealt in turn, each half-hour slot takes about 1/slots of the shift.
        dealt_on_shift = [0] * len(shifts)
        for profile, count in zip(profiles, per_profile, strict=True):
            per_shift = apportion(count, [s["share"] for s in shifts])
            for s_index, (shift, k) in enumerate(zip(shifts, per_shift, strict=True)):
                for _ in range(k):
                    n += 1
                    lunch = None
                    if lunch_seconds and "lunch_from_hour" in shift:
                        slot = dealt_on_shift[s_index] % shift.get("lunch_slots", 4)
                        dealt_on_shift[s_index] += 1
                        lunch = shift["lunch_from_hour"] * 3600.0 + slot * 1800.0
                    agent = SimAgent(
                        f"{profile['name']}-{n}",
                        dict(profile["skills"]),
                        shift["start_hour"] * 3600.0,
                        shift["end_hour"] * 3600.0,
                        lunch,
                        lunch_seconds,
                    )
                    self.agents[agent.agent_id] = agent
                    self.engine.upsert_agent(agent.agent_id, agent.skills, self.start)
                    self._push(max(agent.shift_start, self.start), "shift_start", agent.agent_id)
                    self._push(agent.shift_end, "shift_end", agent.agent_id)
                    if lunch is not None:
                        self._push(lunch, "lunch_start", agent.agent_id)
                        self._push(lunch + lunch_seconds, "lunch_end", agent.agent_id)

    def _build_arrivals(self) -> None:
        queues = self.sc["queues"]
        weights = [q["share"] for q in queues]
        profile = {int(h): float(r) for h, r in self.sc["calls_per_hour"].items()}
        priority_share = self.sc.get("priority_share", 0.0)
        n = 0
        hour = self.start
        while hour < self.end:
            rate = profile.get(int(hour // 3600) % 24, 0.0) / 3600.0
            segment_end = min(hour + 3600.0, self.end)
            t = hour
            while rate > 0:
                t += self.rng_arrivals.expovariate(rate)  # memoryless: restarting is exact
                if t >= segment_end:
                    break
                q = self.rng_arrivals.choices(queues, weights)[0]
                n += 1
                priority = 1 if self.rng_arrivals.random() < priority_share else 0
                self._push(t, "arrival", (f"call-{n}", q, priority))
            hour = segment_end

    # ---------------------------------------------------------------- dynamics

    def _handle_time(self, call: Mapping[str, Any], agent_id: str) -> float:
        q = call["queue"]
        skills = self.agents[agent_id].skills
        factors = self.sc.get("handle_factor_by_group_proficiency", {})
        group_level = skills.get(f"group:{q['group']}", 0)
        factor = float(factors.get(str(group_level), 1.0)) if factors else 1.0
        lang_factors = self.sc.get("handle_factor_by_language_proficiency", {})
        if lang_factors:
            factor *= float(lang_factors.get(str(skills.get(f"lang:{q['language']}", 0)), 1.0))
        mean = q["aht"] * factor
        dist = self.sc.get("handle_distribution", "exponential")
        if dist == "exponential":
            return self.rng_handle.expovariate(1.0 / mean)
        if dist == "lognormal":
            cv = self.sc.get("handle_cv", 0.8)
            sigma2 = math.log(1 + cv * cv)
            return self.rng_handle.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))
        raise ValueError(f"unknown handle_distribution {dist!r}")

    def _route(self, offers: list[Offer], now: float) -> None:
        ring = self.sc.get("ring_seconds", 0.0)
        no_answer = self.sc.get("no_answer_probability", 0.0)
        callback = self.sc.get("callback", {})
        for offer in offers:
            self.offers_by_rung[offer.rung] += 1
            group = self.calls[offer.call_id]["queue"]["group"]
            skills = self.agents[offer.agent_id].skills
            self.offers_by_group_level[skills.get(f"group:{group}", 0)] += 1
            if offer.callback_number is not None:
                ok = self.rng_ring.random() < callback.get("success_probability", 0.8)
                self._push(
                    now + callback.get("dial_seconds", 20.0),
                    "callback_result",
                    (offer.call_id, offer.agent_id, ok),
                )
            elif no_answer and self.rng_ring.random() < no_answer:
                self._push(
                    now + self.sc.get("ring_timeout_seconds", 15.0),
                    "no_answer",
                    (offer.call_id, offer.agent_id),
                )
            else:
                self._push(now + ring, "answer", (offer.call_id, offer.agent_id))

    def _still_ringing(self, call_id: str, agent_id: str) -> bool:
        info = self.engine.call_info(call_id)
        return info.state is CallState.RINGING and info.agent_id == agent_id

    def _after_call(self, agent_id: str, now: float) -> list[Offer]:
        """Apply a pause or logout that came due while the agent was talking."""
        agent = self.agents[agent_id]
        state = self.engine.agent_state(agent_id).value
        if agent.pending and state in ("wrap_up", "ready", "paused"):
            action, agent.pending = agent.pending, None
            if action == "pause":
                return self.engine.pause(agent_id, "lunch", now)
            return self.engine.logout(agent_id, now)
        return []

    def _agent_event(self, kind: str, agent_id: str, now: float) -> list[Offer]:
        agent = self.agents[agent_id]
        state = self.engine.agent_state(agent_id).value
        busy = state in ("ringing", "on_call")
        if kind == "shift_start":
            agent.on_shift = True
            self.engine.login(agent_id, now)
            return self.engine.set_ready(agent_id, now)
        if kind == "shift_end":
            agent.on_shift = False
            if busy:
                agent.pending = "logout"
                return []
            return self.engine.logout(agent_id, now) if state != "logged_out" else []
        if kind == "lunch_start":
            if not agent.on_shift or state == "logged_out":
                return []
            if busy:
                agent.pending = "pause"
                return []
            return self.engine.pause(agent_id, "lunch", now)
        # lunch_end
        if agent.pending == "pause":
            agent.pending = None  # lunch never started: the agent worked through it
        if agent.on_shift and state == "paused":
            return self.engine.set_ready(agent_id, now)
        return []

    def _handle(self, now: float, kind: str, data: Any) -> list[Offer]:
        engine = self.engine
        if kind == "arrival":
            call_id, q, priority = data
            self.calls[call_id] = {"queue": q}
            offers = engine.enqueue(
                call_id, language=q["language"], group=q["group"], priority=priority, now=now
            )
            patience = self.sc.get("patience_mean_seconds")
            if patience:
                self._push(now + self.rng_caller.expovariate(1.0 / patience), "patience", call_id)
            return offers
        if kind == "answer":
            call_id, agent_id = data
            if not self._still_ringing(call_id, agent_id):
                return []
            engine.answered(call_id, now)
            self._push(
                now + self._handle_time(self.calls[call_id], agent_id), "end", (call_id, agent_id)
            )
            return []
        if kind == "no_answer":
            call_id, agent_id = data
            if not self._still_ringing(call_id, agent_id):
                return []
            offers = engine.ring_no_answer(call_id, now)
            self._push(now + self.sc.get("no_answer_pause_seconds", 60.0), "unpause", agent_id)
            return offers
        if kind == "unpause":
            agent = self.agents[data]
            if agent.on_shift and engine.agent_info(data)["pause_reason"] == "no answer":
                return engine.set_ready(data, now)
            return []
        if kind == "callback_result":
            call_id, agent_id, ok = data
            if not self._still_ringing(call_id, agent_id):
                return []
            offers = engine.callback_result(call_id, ok, now)
            if ok:
                self._push(
                    now + self._handle_time(self.calls[call_id], agent_id),
                    "end",
                    (call_id, agent_id),
                )
            self.follow_ups += len(engine.pop_follow_ups())
            return offers + self._after_call(agent_id, now)
        if kind == "end":
            call_id, agent_id = data
            offers = engine.call_ended(call_id, now)
            return offers + self._after_call(agent_id, now)
        if kind == "patience":
            info = engine.call_info(data)
            if info.state is not CallState.WAITING or info.callback_number is not None:
                return []  # answered, ringing, or waiting for a callback: patience is moot
            callback = self.sc.get("callback", {})
            if self.rng_caller.random() < callback.get("take_up_probability", 0.0):
                return engine.request_callback(data, f"+48{data}", now)
            return engine.abandon(data, now)
        if kind == "tick":
            self.next_tick = math.inf
            return engine.tick(now)
        return self._agent_event(kind, data, now)

    def _schedule_tick(self, now: float) -> None:
        deadline = self.engine.next_deadline()
        want = math.inf if deadline is None else deadline
        if self.engine.wants_periodic_tick:
            want = min(want, now + self.sc.get("tick_seconds", 1.0))
        want = max(want, now)
        if want < self.next_tick:
            self.next_tick = want
            self._push(want, "tick")

    def run(self) -> SimResult:
        self._build_agents()
        self._build_arrivals()
        now = self.start
        while self.events:
            if self.events[0][0] > self.drain:
                break
            now, _, kind, data = heapq.heappop(self.events)
            self.event_count += 1
            offers = self._handle(now, kind, data)
            if offers:
                self._route(offers, now)
            self._schedule_tick(now)
        figures = self.stats.figures(now)
        return SimResult(
            self.policy_name,
            self.headcount,
            figures,
            dict(self.offers_by_rung),
            len(self.calls),
            self.event_count,
            self.follow_ups,
            dict(sorted(self.offers_by_group_level.items())),
        )


def run_scenario(
    scenario: Mapping[str, Any] | str | Path,
    *,
    agents: int | None = None,
    policy: str | None = None,
    seed: int | None = None,
) -> SimResult:
    """Run one simulated day (or whatever the scenario spans) and return the figures."""
    sc = load_scenario(scenario) if isinstance(scenario, str | Path) else scenario
    return Simulation(sc, agents=agents, policy=policy, seed=seed).run()


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}{unit}"
    return f"{value}{unit}"


def report(result: SimResult, scenario: Mapping[str, Any]) -> str:
    """The supervisor's figures as text."""
    today = result.figures["today"]
    o = today["overall"]
    lines = [
        f"scenario {scenario.get('name', '?')}: policy={result.policy} agents={result.agents} "
        f"calls={result.calls} events={result.events}",
        f"{'key':<14}{'offered':>8}{'answered':>9}{'aband.':>7}{'short':>6}{'SL%':>7}"
        f"{'SL%+ab':>8}{'ASA':>7}{'p50':>7}{'p90':>7}{'cb req/ok/fail':>16}",
    ]
    rows = [("overall", o), *sorted(today["by_key"].items())]
    for key, f in rows:
        cb = f["callbacks"]
        lines.append(
            f"{key:<14}{f['offered']:>8}{f['answered']:>9}{f['abandoned']:>7}"
            f"{f['short_abandoned']:>6}{_fmt(f['sl_percent']):>7}"
            f"{_fmt(f['sl_with_abandons_percent']):>8}{_fmt(f['asa']):>7}"
            f"{_fmt(f['p50_wait']):>7}{_fmt(f['p90_wait']):>7}"
            f"{cb['requested']:>6}/{cb['connected']}/{cb['failed'] + cb['cancelled']:<4}"
        )
    occupancy = o["occupancy"]
    lines.append(
        f"occupancy {_fmt(None if occupancy is None else 100 * occupancy, '%')}, "
        f"offers by rung {dict(sorted(result.offers_by_rung.items()))}, "
        f"by the agent's proficiency in the call's group {result.offers_by_group_level}, "
        f"follow-up cases from failed callbacks {result.follow_ups}"
    )
    rate = o["arrival_rate_per_hour"]
    if o["aht"] and rate:
        lines.append(
            f"Erlang C (one pooled queue, day average {rate:.0f} calls/h, AHT {o['aht']:.0f} s): "
            f"{agents_needed(rate, o['aht'])} agents for 90% in 15 s "
            f"vs {result.agents} on the roster"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acd.simulator", description=__doc__)
    parser.add_argument("scenario", help="scenario JSON file (or a name in acd/scenarios)")
    parser.add_argument("--agents", type=int, help="headcount (default: the scenario's)")
    parser.add_argument("--policy", choices=["strict", "fixed", "target"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", action="store_true", help="print the full figures as JSON")
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)
    result = run_scenario(scenario, agents=args.agents, policy=args.policy, seed=args.seed)
    if args.json:
        json.dump({"summary": result.summary(), "figures": result.figures}, sys.stdout, indent=2)
        print()
    else:
        print(report(result, scenario))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
