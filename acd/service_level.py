"""Service-level figures the way supervisors read them, over rolling windows.

Pure and fed by events with times passed in. Definitions (each window, per language/group key
and overall):
- offered: calls that entered the queue in the window (the clock starts at the queue, not the IVR)
- answered: live calls answered in the window; wait = answer time - enqueue time
- abandoned: callers who hung up while waiting, in the window; short abandons (wait under
  short_abandon_seconds) are counted apart and left out of every percentage
- sl_percent = answered within target / answered
- sl_with_abandons_percent = answered within target / (answered + abandoned - short abandons)
- asa = mean wait of answered calls; p50/p90 = nearest-rank percentiles of those waits
- callbacks (requested, connected, failed, cancelled) are counted on their own: a callback's
  wait is not a live wait, so it is never mixed into SL or ASA, and never hidden either
- occupancy (overall) = busy agent time / (busy + ready agent time), busy = ringing, on call,
  wrap-up
- erlang_agents_needed: Erlang C agents for target_sl within target at the window's arrival rate
  and handle time (talk + wrap-up of calls that ended in the window)

Each window also has the same figures per language (all its groups together), so the staffing
a language needs can be set against the agents who speak it.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from acd.erlang import agents_needed

OVERALL = "overall"
LANGUAGE_PREFIX = "language:"  # tally keys per language, kept apart from "pl/roads" keys
BUSY = frozenset({"ringing", "on_call", "wrap_up"})


def tally_keys(key: str) -> tuple[str, str, str]:
    """A 'language/group' key counts for itself, its language and the overall figures."""
    return (key, LANGUAGE_PREFIX + key.split("/", 1)[0], OVERALL)


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below it."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class _Tally:
    offered: int = 0
    answered: int = 0
    answered_in_target: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    callbacks_requested: int = 0
    callbacks_connected: int = 0
    callbacks_failed: int = 0
    callbacks_cancelled: int = 0
    handled: int = 0
    handle_seconds: float = 0.0
    waits: list[float] = field(default_factory=list)  # kept sorted

    def add(self, kind: str, value: float, target: float, short: float) -> None:
        if kind == "offered":
            self.offered += 1
        elif kind == "answered":
            self.answered += 1
            self.answered_in_target += value <= target
            bisect.insort(self.waits, value)
        elif kind == "abandoned":
            if value < short:
                self.short_abandoned += 1
            else:
                self.abandoned += 1
        elif kind == "callback_requested":
            self.callbacks_requested += 1
        elif kind == "callback_connected":
            self.callbacks_connected += 1
        elif kind == "callback_failed":
            self.callbacks_failed += 1
        elif kind == "callback_cancelled":
            self.callbacks_cancelled += 1
        elif kind == "handled":
            self.handled += 1
            self.handle_seconds += value

    def figures(self, length: float, target_sl: float, target: float) -> dict[str, Any]:
        sl_base = self.answered + self.abandoned
        aht = self.handle_seconds / self.handled if self.handled else None
        rate = self.offered * 3600.0 / length if length > 0 else 0.0
        needed = None
        if aht is not None and rate > 0:
            needed = agents_needed(rate, aht, target_sl, target)
        return {
            "offered": self.offered,
            "answered": self.answered,
            "answered_in_target": self.answered_in_target,
            "abandoned": self.abandoned,
            "short_abandoned": self.short_abandoned,
            "sl_percent": 100.0 * self.answered_in_target / self.answered
            if self.answered
            else None,
            "sl_with_abandons_percent": (
                100.0 * self.answered_in_target / sl_base if sl_base else None
            ),
            "abandon_percent": (
                100.0 * self.abandoned / (self.offered - self.short_abandoned)
                if self.offered > self.short_abandoned
                else None
            ),
            "asa": sum(self.waits) / len(self.waits) if self.waits else None,
            "p50_wait": percentile(self.waits, 50),
            "p90_wait": percentile(self.waits, 90),
            "callbacks": {
                "requested": self.callbacks_requested,
                "connected": self.callbacks_connected,
                "failed": self.callbacks_failed,
                "cancelled": self.callbacks_cancelled,
            },
            "aht": aht,
            "arrival_rate_per_hour": rate,
            "erlang_agents_needed": needed,
        }


class ServiceLevelWindows:
    """Rolling 15 min and 1 h windows plus today, per language/group key and overall."""

    def __init__(
        self,
        *,
        target_seconds: float = 15.0,
        target_sl: float = 0.9,
        short_abandon_seconds: float = 5.0,
        windows: tuple[tuple[str, float], ...] = (("15min", 900.0), ("1h", 3600.0)),
        day_start: float = 0.0,
    ) -> None:
        self.target_seconds = target_seconds
        self.target_sl = target_sl
        self.short_abandon_seconds = short_abandon_seconds
        self.windows = windows
        self._keep = max((w for _, w in windows), default=0.0)
        self._events: deque[tuple[float, str, str, float]] = deque()
        self._calls: dict[str, tuple[str, float, bool]] = {}  # id -> key, enqueued, callback
        self._answered_at: dict[str, float] = {}
        self._waiting: dict[str, tuple[str, float]] = {}
        self._agent_state: dict[str, tuple[str, float]] = {}
        self._intervals: deque[tuple[float, float, bool]] = deque()  # start, end, busy
        self.start_day(day_start)

    def start_day(self, now: float) -> None:
        """Begin a new 'today' (call at midnight; rolling windows are unaffected)."""
        self.day_start = now
        self._today: dict[str, _Tally] = {}
        self._today_busy = 0.0
        self._today_ready = 0.0

    # ---------------------------------------------------------------- events

    def _record(self, kind: str, key: str, now: float, value: float = 0.0) -> None:
        self._events.append((now, kind, key, value))
        for k in tally_keys(key):
            self._today.setdefault(k, _Tally()).add(
                kind, value, self.target_seconds, self.short_abandon_seconds
            )
        self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - self._keep
        while self._events and self._events[0][0] < horizon:
            self._events.popleft()
        while self._intervals and self._intervals[0][1] < horizon:
            self._intervals.popleft()

    def call_enqueued(self, call_id: str, language: str, group: str, now: float) -> None:
        key = f"{language}/{group}"
        self._calls[call_id] = (key, now, False)
        self._waiting[call_id] = (key, now)
        self._record("offered", key, now)

    def call_answered(self, call_id: str, now: float) -> None:
        if call_id not in self._calls:
            return  # not seen entering the queue (e.g. fed from mid-day): nothing to measure
        key, enqueued, _ = self._calls[call_id]
        self._waiting.pop(call_id, None)
        self._answered_at[call_id] = now
        self._record("answered", key, now, now - enqueued)

    def call_abandoned(self, call_id: str, now: float) -> None:
        if call_id not in self._calls:
            return
        key, enqueued, callback = self._calls.pop(call_id)
        self._waiting.pop(call_id, None)
        self._record("callback_cancelled" if callback else "abandoned", key, now, now - enqueued)

    def callback_requested(self, call_id: str, now: float) -> None:
        if call_id not in self._calls:
            return
        key, enqueued, _ = self._calls[call_id]
        self._calls[call_id] = (key, enqueued, True)
        self._waiting.pop(call_id, None)  # no longer on the line
        self._record("callback_requested", key, now)

    def callback_connected(self, call_id: str, now: float) -> None:
        if call_id not in self._calls:
            return
        key, enqueued, _ = self._calls[call_id]
        self._answered_at[call_id] = now
        self._record("callback_connected", key, now, now - enqueued)

    def callback_failed(self, call_id: str, now: float) -> None:
        if call_id not in self._calls:
            return
        key, _, _ = self._calls.pop(call_id)
        self._record("callback_failed", key, now)

    def call_ended(self, call_id: str, now: float, wrap_up_seconds: float = 0.0) -> None:
        if call_id not in self._calls:
            return
        key, _, _ = self._calls.pop(call_id)
        answered = self._answered_at.pop(call_id, now)
        self._record("handled", key, now, now - answered + wrap_up_seconds)

    def agent_state(self, agent_id: str, state: str, now: float) -> None:
        previous = self._agent_state.get(agent_id)
        if previous is not None:
            old_state, since = previous
            if old_state in BUSY or old_state == "ready":
                busy = old_state in BUSY
                self._intervals.append((since, now, busy))
                counted = max(0.0, now - max(since, self.day_start))
                if busy:
                    self._today_busy += counted
                else:
                    self._today_ready += counted
        self._agent_state[agent_id] = (state, now)
        self._prune(now)

    # ---------------------------------------------------------------- figures

    def _occupancy(self, start: float, now: float, today: bool) -> float | None:
        if today:
            busy, ready = self._today_busy, self._today_ready
        else:
            busy = ready = 0.0
            for s, e, is_busy in self._intervals:
                overlap = min(e, now) - max(s, start)
                if overlap > 0:
                    if is_busy:
                        busy += overlap
                    else:
                        ready += overlap
        for state, since in self._agent_state.values():
            if state in BUSY or state == "ready":
                overlap = now - max(since, start)
                if overlap > 0:
                    if state in BUSY:
                        busy += overlap
                    else:
                        ready += overlap
        total = busy + ready
        return busy / total if total > 0 else None

    def figures(self, now: float) -> dict[str, Any]:
        """{window: {"overall", "by_key": {"pl/roads": ...}, "by_language": {"pl": ...}}}.

        Windows: 15min, 1h and today.
        """
        logged_in = sum(1 for s, _ in self._agent_state.values() if s != "logged_out")
        longest: dict[str, float] = {}
        waiting: dict[str, int] = {}
        for key, enqueued in self._waiting.values():
            for k in tally_keys(key):
                longest[k] = max(longest.get(k, 0.0), now - enqueued)
                waiting[k] = waiting.get(k, 0) + 1
        out: dict[str, Any] = {}
        spans = [(name, length, False) for name, length in self.windows]
        spans.append(("today", now - self.day_start, True))
        for name, length, today in spans:
            start = now - length
            if today:
                tallies = self._today
            else:
                tallies = {}
                for t, kind, key, value in self._events:
                    if t >= start:
                        for k in tally_keys(key):
                            tallies.setdefault(k, _Tally()).add(
                                kind, value, self.target_seconds, self.short_abandon_seconds
                            )
            effective = min(length, now - self.day_start) if self.day_start <= now else length
            keys = sorted(set(tallies) | set(waiting))
            per_key = {}
            for k in keys:
                fig = tallies.get(k, _Tally()).figures(
                    effective, self.target_sl, self.target_seconds
                )
                fig["waiting"] = waiting.get(k, 0)
                fig["longest_current_wait"] = longest.get(k, 0.0)
                per_key[k] = fig
            overall = per_key.pop(
                OVERALL,
                {
                    **_Tally().figures(effective, self.target_sl, self.target_seconds),
                    "waiting": 0,
                    "longest_current_wait": 0.0,
                },
            )
            by_language = {
                k.removeprefix(LANGUAGE_PREFIX): per_key.pop(k)
                for k in keys
                if k.startswith(LANGUAGE_PREFIX)
            }
            overall["agents_logged_in"] = logged_in
            overall["occupancy"] = self._occupancy(max(start, self.day_start), now, today)
            out[name] = {"overall": overall, "by_key": per_key, "by_language": by_language}
        return out
