"""What the supervisors' wallboard shows, computed from the ACD: pure, time passed in.

Besides the raw figures (`live`, `service_level`) the state has a `board` section with what the
page shows, already rated against the target, so the page only lays it out. The day's history
for the chart is kept here too (DayHistory); acd/wallboard_hub.py pushes it all to the viewers.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from acd.engine import AcdError, Engine
from acd.reports import snapshot

WINDOWS = ("15min", "1h", "today")
# The agent table is for a room of agents, not a city's whole roster: a bound on message size.
MAX_AGENT_ROWS = 500
DEFAULT_TARGET_SL = 0.9
# Amber starts this many points below the target; red below that.
WARN_MARGIN = 10.0


def sl_bands(target_sl: float) -> dict[str, float]:
    """Colour bands from the service-level target (0.9 -> green >= 90, amber >= 80, red below)."""
    good = round(100.0 * target_sl, 1)
    return {"good": good, "warn": max(0.0, good - WARN_MARGIN)}


def rate(percent: float | None, bands: Mapping[str, float]) -> str:
    """'good', 'warn' or 'bad' against the bands; 'none' when there is nothing to rate yet."""
    if percent is None:
        return "none"
    if percent >= bands["good"]:
        return "good"
    if percent >= bands["warn"]:
        return "warn"
    return "bad"


def wait_rating(longest_wait: float, waiting: int, target_seconds: float) -> str:
    """The longest current wait against the answer target: amber from half of it, red past it."""
    if waiting <= 0:
        return "none"
    if longest_wait >= target_seconds:
        return "bad"
    if longest_wait >= target_seconds / 2:
        return "warn"
    return "good"


def _split_key(key: str) -> tuple[str, str]:
    language, _, group = key.partition("/")
    return language, group


def queue_rows(
    live: Mapping[str, Any], service_level: Mapping[str, Any], bands: Mapping[str, float]
) -> list[dict[str, Any]]:
    """One row per language/group seen today or waiting now, ordered by language then group."""
    queues: Mapping[str, Any] = live.get("queues", {})
    by_window = {w: service_level.get(w, {}).get("by_key", {}) for w in WINDOWS}
    keys = sorted(set(queues) | set().union(*(set(v) for v in by_window.values())))
    rows = []
    for key in keys:
        language, group = _split_key(key)
        queue = queues.get(key, {})
        today = by_window["today"].get(key, {})
        row: dict[str, Any] = {
            "key": key,
            "language": language,
            "group": group,
            "waiting": queue.get("waiting", 0),
            "callbacks": queue.get("callbacks", 0),
            "longest_wait": queue.get("longest_wait", 0.0),
            "offered_today": today.get("offered", 0),
            "answered_today": today.get("answered", 0),
            "abandoned_today": today.get("abandoned", 0),
            "asa_today": today.get("asa"),
        }
        for window in ("15min", "today"):
            percent = by_window[window].get(key, {}).get("sl_percent")
            row[f"sl_{window}"] = percent
            row[f"rating_{window}"] = rate(percent, bands)
        rows.append(row)
    return rows


def _needed_now(service_level: Mapping[str, Any], *path: str) -> tuple[int | None, str | None]:
    """Erlang C agents needed in the 15 min window, else the last hour, and which window."""
    for name in ("15min", "1h"):
        figures: Any = service_level.get(name, {})
        for step in path:
            figures = figures.get(step, {})
        value = figures.get("erlang_agents_needed")
        if value is not None:
            return value, name
    return None, None


def staffing(live: Mapping[str, Any], service_level: Mapping[str, Any]) -> dict[str, Any]:
    """Erlang C agents needed now (15 min window, else the last hour) against agents logged in.

    gap > 0: that many agents short; gap <= 0: enough. None when there is no traffic to size.
    The same per language, against the agents who speak it: a floor can be fully staffed
    overall while its few English speakers cannot carry the English calls.
    """
    agents = live.get("agents", {})
    by_state = agents.get("by_state", {})
    logged_in = agents.get("total", 0) - by_state.get("logged_out", 0)
    working = logged_in - by_state.get("paused", 0)
    needed, window = _needed_now(service_level, "overall")
    gap = None if needed is None else needed - logged_in
    speakers = agents.get("by_language", {})
    last_hour = service_level.get("1h", {}).get("by_language", {})
    languages = sorted(set(speakers) | set(last_hour))
    by_language = []
    for language in languages:
        have = speakers.get(language, {"logged_in": 0, "working": 0})
        lang_needed, lang_window = _needed_now(service_level, "by_language", language)
        lang_gap = None if lang_needed is None else lang_needed - have["logged_in"]
        hour = last_hour.get(language, {})
        if not have["logged_in"] and (hour.get("offered") or hour.get("waiting")):
            lang_gap = max(lang_gap or 0, 1)  # callers nobody can answer: short before any AHT
        by_language.append(
            {
                "language": language,
                "needed": lang_needed,
                "window": lang_window,
                "logged_in": have["logged_in"],
                "working": have["working"],
                "gap": lang_gap,
            }
        )
    gaps = [g for g in [gap, *(row["gap"] for row in by_language)] if g is not None]
    return {
        "needed": needed,
        "window": window,
        "logged_in": logged_in,
        "working": working,
        "gap": gap,
        "by_language": by_language,
        # any language short makes the tile red: those callers wait whatever the total says
        "rating": "none" if not gaps else "bad" if max(gaps) > 0 else "good",
    }


def board_figures(
    live: Mapping[str, Any],
    service_level: Mapping[str, Any],
    target_sl: float,
    target_seconds: float,
) -> dict[str, Any]:
    """What the wallboard shows: tiles, rated service level, staffing and the queue rows."""
    bands = sl_bands(target_sl)
    calls = live.get("calls", {})
    waiting, longest = calls.get("waiting", 0), calls.get("longest_wait", 0.0)
    overall = {w: service_level.get(w, {}).get("overall", {}) for w in WINDOWS}

    def per_window(name: str, *windows: str) -> dict[str, Any]:
        return {w: overall[w].get(name) for w in windows}

    sl = {
        w: {
            "percent": overall[w].get("sl_percent"),
            "with_abandons": overall[w].get("sl_with_abandons_percent"),
            "answered": overall[w].get("answered", 0),
            "answered_in_target": overall[w].get("answered_in_target", 0),
            "rating": rate(overall[w].get("sl_percent"), bands),
        }
        for w in WINDOWS
    }
    callbacks_today = overall["today"].get("callbacks", {})
    agents = live.get("agents", {})
    return {
        "bands": bands,
        "waiting": waiting,
        "longest_wait": longest,
        "wait_rating": wait_rating(longest, waiting, target_seconds),
        "sl": sl,
        "asa": per_window("asa", "1h", "today"),
        "p90_wait": per_window("p90_wait", "1h", "today"),
        "abandon_percent": per_window("abandon_percent", "1h", "today"),
        "occupancy": per_window("occupancy", "15min", "today"),
        "offered_today": overall["today"].get("offered", 0),
        "callbacks": {
            "pending": sum(q.get("callbacks", 0) for q in live.get("queues", {}).values()),
            "requested_today": callbacks_today.get("requested", 0),
            "connected_today": callbacks_today.get("connected", 0),
            "failed_today": callbacks_today.get("failed", 0),
        },
        "agents": {
            "by_state": agents.get("by_state", {}),
            "paused_by_reason": agents.get("paused_by_reason", {}),
            "unreachable": agents.get("unreachable", 0),
            "total": agents.get("total", 0),
        },
        "staffing": staffing(live, service_level),
        "queues": queue_rows(live, service_level, bands),
    }


def agent_rows(engine: Engine, now: float, limit: int = MAX_AGENT_ROWS) -> list[dict[str, Any]]:
    """The agent table: state, pause reason, time in state and the call each one holds."""
    rows = []
    for agent_id in sorted(engine.agent_ids())[:limit]:
        info = engine.agent_info(agent_id)
        call = None
        if info["call_id"] is not None:
            try:
                held = engine.call_info(info["call_id"])
            except AcdError:
                held = None
            if held is not None:
                call = {
                    "call_id": held.call_id,
                    "state": held.state.value,
                    "language": held.language,
                    "group": held.group,
                    "callback": held.callback_number is not None,
                    "talk_seconds": None if held.answered_at is None else now - held.answered_at,
                }
        rows.append(
            {
                "agent_id": agent_id,
                "state": info["state"],
                "pause_reason": info["pause_reason"],
                "reachable": info["reachable"],
                "for_seconds": max(0.0, now - info["since"]),
                "call": call,
            }
        )
    return rows


class DayHistory:
    """The chart's samples: one per `interval` seconds, the last `horizon` seconds of them.

    Within one interval the newest service level wins and the queue keeps its peak, so a short
    burst of waiting calls between two samples still shows on the chart.
    """

    SERIES = ("sl_15min", "sl_today", "waiting")

    def __init__(self, interval: float = 30.0, horizon: float = 24 * 3600.0) -> None:
        if interval <= 0 or horizon < interval:
            raise ValueError("history needs interval > 0 and horizon >= interval")
        self.interval = interval
        self.horizon = horizon
        self._points: deque[dict[str, Any]] = deque(maxlen=math.ceil(horizon / interval) + 1)

    def __len__(self) -> int:
        return len(self._points)

    def add(
        self, at: float, *, sl_15min: float | None, sl_today: float | None, waiting: int
    ) -> dict[str, Any]:
        """Fold one state into its interval; returns that interval's point as it now stands."""
        bucket = math.floor(at / self.interval) * self.interval
        values = {
            "sl_15min": None if sl_15min is None else round(sl_15min, 1),
            "sl_today": None if sl_today is None else round(sl_today, 1),
        }
        last = self._points[-1] if self._points else None
        # A clock stepping back lands in the newest point rather than breaking the order.
        if last is not None and bucket <= last["t"]:
            last.update(values)
            last["waiting"] = max(last["waiting"], waiting)
        else:
            self._points.append({"t": bucket, **values, "waiting": waiting})
        newest = self._points[-1]["t"]
        while self._points and self._points[0]["t"] <= newest - self.horizon:
            self._points.popleft()
        return dict(self._points[-1])

    def columns(self) -> dict[str, Any]:
        """Column form (what uPlot draws): {"t": [...], "sl_15min": [...], ...}."""
        out: dict[str, Any] = {"interval": self.interval, "horizon": self.horizon}
        for name in ("t", *self.SERIES):
            out[name] = [p[name] for p in self._points]
        return out


def history_point(history: DayHistory, state: Mapping[str, Any]) -> dict[str, Any]:
    overall = {
        w: state.get("service_level", {}).get(w, {}).get("overall", {}) for w in ("15min", "today")
    }
    return history.add(
        state["at"],
        sl_15min=overall["15min"].get("sl_percent"),
        sl_today=overall["today"].get("sl_percent"),
        waiting=state["live"]["calls"]["waiting"],
    )


def wallboard_state(
    engine: Engine,
    now: float,
    waiting_elsewhere: Callable[[float], tuple[int, float]] | None = None,
) -> dict[str, Any]:
    """Everything a viewer gets: raw figures, what the board shows, and the agent table.

    `waiting_elsewhere`: residents waiting outside the ACD (the fallback queue), who wait too."""
    live = snapshot(engine, now)
    if waiting_elsewhere is not None:
        elsewhere, longest = waiting_elsewhere(now)
        calls = live["calls"]
        calls["waiting"] += elsewhere
        calls["waiting_in_fallback"] = elsewhere
        calls["longest_wait"] = max(calls["longest_wait"], longest)
    service_level = engine.stats.figures(now) if engine.stats is not None else {}
    target_sl = engine.stats.target_sl if engine.stats is not None else DEFAULT_TARGET_SL
    state: dict[str, Any] = {
        "at": now,
        "target_seconds": engine.target_seconds,
        "target_sl_percent": round(100.0 * target_sl, 1),
        "live": live,
        "board": board_figures(live, service_level, target_sl, engine.target_seconds),
        "agents": agent_rows(engine, now),
    }
    if engine.stats is not None:
        state["service_level"] = service_level
    return state
