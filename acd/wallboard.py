"""The supervisors' wallboard: one computed state, pushed to every viewer.

The state is computed once per change (at most every `min_interval`) and at least every
`max_interval` so clocks like the longest wait move; each viewer has a small outbox and a
viewer that falls behind is disconnected rather than allowed to slow the others.

The hub also keeps the day's history for the chart (one sample per `history_interval`, 24 h at
most): a new viewer gets it once with its first state, later states carry only the newest point.

Besides the raw figures (`live`, `service_level`) the state has a `board` section with what the
page shows, already rated against the target, so the page only lays it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
from collections import deque
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import WSCloseCode, web

from acd.engine import AcdError, Engine
from acd.events import AcdEvent
from acd.service import AcdService

log = structlog.get_logger(__name__)

WINDOWS = ("15min", "1h", "today")
# The agent table is for a room of agents, not a city's whole roster: a bound on message size.
MAX_AGENT_ROWS = 500
DEFAULT_TARGET_SL = 0.9
# Amber starts this many points below the target; red below that.
WARN_MARGIN = 10.0


# -- pure figures ----------------------------------------------------------------------------


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


# -- the state and its fan-out -----------------------------------------------------------------


def wallboard_state(acd: AcdService) -> dict[str, Any]:
    now = acd.now()
    engine = acd.engine
    live = engine.snapshot(now)
    if acd.waiting_elsewhere is not None:  # the fallback queue's residents wait too
        elsewhere, longest = acd.waiting_elsewhere(now)
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


class _Viewer:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        outbox_size: int,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.ws = ws
        self.outbox: asyncio.Queue[str] = asyncio.Queue(outbox_size)
        self.transport = transport
        self.writer: asyncio.Task[None] | None = None


class WallboardHub:
    def __init__(
        self,
        acd: AcdService,
        *,
        min_interval: float = 0.2,
        max_interval: float = 1.0,
        outbox_size: int = 8,
        history_interval: float = 30.0,
        close_timeout: float = 2.0,
        send_buffer: int = 32 * 1024,
    ) -> None:
        self._acd = acd
        self._min_interval = min_interval
        self._max_interval = max_interval
        self._outbox_size = outbox_size
        self._close_timeout = close_timeout
        self._send_buffer = send_buffer
        self._viewers: set[_Viewer] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.history = DayHistory(history_interval)
        self._state: dict[str, Any] = {}
        self._welcome = ("", -1)  # (text, published count it was made for)
        self.last_text = ""
        self.published = 0
        self.cut_off = 0

    def on_acd_event(self, event: AcdEvent) -> None:
        self._changed.set()

    async def start(self) -> None:
        self._acd.subscribe(self.on_acd_event)
        self._task = asyncio.create_task(self._publish_forever(), name="wallboard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        viewers, self._viewers = list(self._viewers), set()
        await asyncio.gather(*(self._close(v, b"server shutting down") for v in viewers))
        await asyncio.gather(*self._closing, return_exceptions=True)

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    async def _publish_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._max_interval)
            self._changed.clear()
            try:
                self.publish()
            except Exception:
                log.exception("wallboard_publish_failed")
            await asyncio.sleep(self._min_interval)

    def publish(self) -> None:
        state = wallboard_state(self._acd)
        state["point"] = history_point(self.history, state)
        self._state = state
        self.last_text = json.dumps({"type": "wallboard", **state}, default=str)
        self.published += 1
        for viewer in list(self._viewers):
            try:
                viewer.outbox.put_nowait(self.last_text)
            except asyncio.QueueFull:
                self._cut_off(viewer)

    def welcome_text(self) -> str:
        """The newest state with the day's history: a new viewer's first message."""
        if not self._state:
            self.publish()
        text, made_for = self._welcome
        if made_for != self.published:
            # Made once per state, however many viewers arrive together.
            text = json.dumps(
                {"type": "wallboard", **self._state, "history": self.history.columns()},
                default=str,
            )
            self._welcome = (text, self.published)
        return text

    def _cut_off(self, viewer: _Viewer) -> None:
        self._viewers.discard(viewer)
        self.cut_off += 1
        log.warning("wallboard_viewer_too_slow", viewers=len(self._viewers))
        if viewer.writer is not None:
            viewer.writer.cancel()  # it may be stuck on a socket that never drains
        task = asyncio.create_task(self._close(viewer, b"too slow"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, viewer: _Viewer, why: bytes) -> None:
        """Close politely if the viewer still reads; drop the connection if it does not."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._close_timeout):
                await viewer.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=why)
        if viewer.transport is not None:
            # A peer that never reads would otherwise hold the socket and its buffer forever.
            viewer.transport.abort()

    async def serve(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None = None
    ) -> None:
        """Feed one viewer until it leaves or falls behind."""
        viewer = _Viewer(ws, self._outbox_size, transport)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            # The kernel would grow the buffer to megabytes, and a viewer that stopped reading
            # would fill its outbox (and be cut off) only minutes later.
            with contextlib.suppress(OSError):  # already gone: the loop below ends at once
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        viewer.outbox.put_nowait(self.welcome_text())
        self._viewers.add(viewer)
        viewer.writer = asyncio.create_task(self._write(viewer))
        try:
            async for _ in ws:  # viewers only listen; anything they send is ignored
                pass
        finally:
            self._viewers.discard(viewer)
            viewer.writer.cancel()

    async def _write(self, viewer: _Viewer) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                text = await viewer.outbox.get()
                if not text:
                    await viewer.ws.close(message=b"too slow")
                    return
                await viewer.ws.send_str(text)
