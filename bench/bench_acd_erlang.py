"""Benchmark 1: the simulator against Erlang C on a single queue without abandonment.

At 100, 400 and 1,600 calls/h, AHT 240 s (exponential), and the Erlang C staffing for 90% in
15 s (11, 34, 118 agents), the simulated share answered within 15 s must be within 2 points of
the Erlang C figure. Each level pools `--seeds` independent runs of about `--calls` calls each
through the real engine (near 90% occupancy one run of 60k calls still swings by +-2 points).

    .venv/bin/python -m bench.bench_acd_erlang [--calls 100000] [--seeds 4]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from acd.erlang import agents_needed, average_speed_of_answer, service_level
from acd.simulator import run_scenario
from bench.common import write_result

AHT = 240.0


def single_queue(rate_per_hour: float, hours: float) -> dict[str, Any]:
    return {
        "name": f"single-queue-{rate_per_hour:g}",
        "start_hour": 0,
        "duration_hours": hours,
        "drain_hours": 0.25,  # enough for the last calls; longer would dilute occupancy
        "calls_per_hour": {str(h): rate_per_hour for h in range(24)},
        "queues": [{"language": "pl", "group": "general", "share": 1.0, "aht": AHT}],
        "handle_distribution": "exponential",
        "ring_seconds": 0,
        "wrap_up_seconds": 0,
        "strict_rung": {"group_min": 1, "lang_min": 1},
        "agents": {
            "total": 1,
            "profiles": [
                {"name": "agent", "share": 1.0, "skills": {"lang:pl": 5, "group:general": 5}}
            ],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000, help="calls per run")
    parser.add_argument("--seeds", type=int, default=4, help="independent runs per load level")
    args = parser.parse_args()
    rows = []
    started = time.perf_counter()
    for rate in (100, 400, 1600):
        agents = agents_needed(rate, AHT)
        hours = args.calls / rate
        t0 = time.perf_counter()
        answered = in_target = 0
        wait_total = occupancy = 0.0
        per_seed = []
        for seed in range(1, args.seeds + 1):
            o = run_scenario(
                single_queue(rate, hours), agents=agents, policy="strict", seed=seed
            ).overall
            answered += o["answered"]
            in_target += o["answered_in_target"]
            wait_total += o["asa"] * o["answered"]
            occupancy += o["occupancy"] / args.seeds
            per_seed.append(o["sl_percent"])
        sim_sl = 100.0 * in_target / answered
        erlang_sl = 100.0 * service_level(agents, rate, AHT)
        row = {
            "calls_per_hour": rate,
            "agents": agents,
            "simulated_hours": hours,
            "answered": answered,
            "sl_per_seed": per_seed,
            "sl_simulated": sim_sl,
            "sl_erlang_c": erlang_sl,
            "difference_points": sim_sl - erlang_sl,
            "within_2_points": abs(sim_sl - erlang_sl) <= 2.0,
            "asa_simulated": wait_total / answered,
            "asa_erlang_c": average_speed_of_answer(agents, rate, AHT),
            "occupancy": occupancy,
            "occupancy_erlang": rate * AHT / 3600.0 / agents,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(
            f"{rate:5d} calls/h {agents:4d} agents: SL15 simulated {sim_sl:5.2f}% "
            f"Erlang C {erlang_sl:5.2f}% (diff {row['difference_points']:+.2f} points), "
            f"ASA {row['asa_simulated']:.1f} s vs {row['asa_erlang_c']:.1f} s, "
            f"occupancy {occupancy:.3f} vs {row['occupancy_erlang']:.3f}, "
            f"{answered} calls in {row['seconds']:.1f} s (per run: "
            f"{', '.join(f'{x:.1f}' for x in per_seed)})"
        )
    ok = all(r["within_2_points"] for r in rows)
    print(f"all within 2 points: {ok}; {time.perf_counter() - started:.1f} s")
    print(f"wrote {write_result('bench_acd_erlang', {'aht': AHT, 'rows': rows, 'pass': ok})}")


if __name__ == "__main__":
    main()
