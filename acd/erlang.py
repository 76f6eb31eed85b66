"""Erlang C for a single queue: the reference the simulator and the wallboard are checked against.

SL(t) = 1 - P_wait * exp(-(m - A) * t / AHT), with A = arrival rate * AHT in erlangs.
"""

from __future__ import annotations

import math


def erlang_b(agents: int, traffic_erlangs: float) -> float:
    """Blocking probability, by the stable recurrence B(k) = A B(k-1) / (k + A B(k-1))."""
    if agents < 0 or traffic_erlangs < 0:
        raise ValueError("agents and traffic must not be negative")
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic_erlangs * b / (k + traffic_erlangs * b)
    return b


def erlang_c_wait_probability(agents: int, traffic_erlangs: float) -> float:
    """Probability that a call waits at all (1.0 when the queue is unstable, m <= A)."""
    if agents <= traffic_erlangs:
        return 1.0
    b = erlang_b(agents, traffic_erlangs)
    return agents * b / (agents - traffic_erlangs * (1.0 - b))


def _traffic(arrival_rate_per_hour: float, aht_seconds: float) -> float:
    if arrival_rate_per_hour < 0 or aht_seconds <= 0:
        raise ValueError("arrival rate must be >= 0 and handle time > 0")
    return arrival_rate_per_hour * aht_seconds / 3600.0


def service_level(
    agents: int, arrival_rate_per_hour: float, aht_seconds: float, target_seconds: float = 15.0
) -> float:
    """Share of calls answered within target_seconds (0.0 when understaffed)."""
    a = _traffic(arrival_rate_per_hour, aht_seconds)
    if agents <= a:
        return 0.0
    pw = erlang_c_wait_probability(agents, a)
    return 1.0 - pw * math.exp(-(agents - a) * target_seconds / aht_seconds)


def average_speed_of_answer(agents: int, arrival_rate_per_hour: float, aht_seconds: float) -> float:
    """Mean wait over all calls, in seconds (inf when understaffed)."""
    a = _traffic(arrival_rate_per_hour, aht_seconds)
    if agents <= a:
        return math.inf
    return erlang_c_wait_probability(agents, a) * aht_seconds / (agents - a)


def agents_needed(
    arrival_rate_per_hour: float,
    aht_seconds: float,
    target_sl: float = 0.9,
    target_seconds: float = 15.0,
    max_agents: int = 100_000,
) -> int:
    """Fewest agents giving at least target_sl answered within target_seconds."""
    if not 0.0 < target_sl < 1.0:
        raise ValueError("target_sl must be between 0 and 1")
    a = _traffic(arrival_rate_per_hour, aht_seconds)
    if a == 0:
        return 0
    m = max(1, math.floor(a) + 1)
    while m <= max_agents:
        if service_level(m, arrival_rate_per_hour, aht_seconds, target_seconds) >= target_sl:
            return m
        m += 1
    raise ValueError(f"more than {max_agents} agents needed")
