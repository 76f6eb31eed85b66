"""The supervisors' wallboard hub: one computed state, pushed to every viewer.

The state (acd/board.py) is computed once per change (at most every `min_interval`) and at
least every `max_interval` so clocks like the longest wait move; each viewer has a small
outbox (web/outbox.py) and a viewer that falls behind is disconnected rather than allowed to
slow the others.

The hub also keeps the day's history for the chart (one sample per `history_interval`, 24 h at
most): a new viewer gets it once with its first state, later states carry only the newest point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from acd.board import DayHistory, history_point, wallboard_state
from acd.events import AcdEvent
from acd.live import AcdService
from web.outbox import SEND_BUFFER, Outbox

log = structlog.get_logger(__name__)


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
        send_buffer: int = SEND_BUFFER,
        faults: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self._acd = acd
        # Parts of the service outside the ACD whose failure supervisors must see (the PBX).
        self.faults = faults
        self._min_interval = min_interval
        self._max_interval = max_interval
        self._outbox_size = outbox_size
        self._close_timeout = close_timeout
        self._send_buffer = send_buffer
        self._viewers: set[Outbox] = set()
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

    def fault_changed(self) -> None:
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
        await asyncio.gather(*(v.aclose("server shutting down") for v in viewers))
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
        state = wallboard_state(self._acd.engine, self._acd.now(), self._acd.waiting_elsewhere)
        state["faults"] = self.faults()
        state["point"] = history_point(self.history, state)
        self._state = state
        self.last_text = json.dumps({"type": "wallboard", **state}, default=str)
        self.published += 1
        for viewer in list(self._viewers):
            viewer.put(self.last_text)  # a full outbox cuts the viewer off (_too_slow)

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

    def _viewer(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> Outbox:
        return Outbox(
            ws,
            self._outbox_size,
            transport=transport,
            send_buffer=self._send_buffer,
            close_timeout=self._close_timeout,
            on_too_slow=self._too_slow,
        )

    def _too_slow(self, viewer: Outbox) -> None:
        self._viewers.discard(viewer)
        self.cut_off += 1
        log.warning("wallboard_viewer_too_slow", viewers=len(self._viewers))
        if viewer.closing is not None:
            self._closing.add(viewer.closing)
            viewer.closing.add_done_callback(self._closing.discard)

    async def serve(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None = None
    ) -> None:
        """Feed one viewer until it leaves or falls behind."""
        viewer = self._viewer(ws, transport)
        viewer.put(self.welcome_text())
        self._viewers.add(viewer)
        viewer.start()
        try:
            async for _ in ws:  # viewers only listen; anything they send is ignored
                pass
        finally:
            self._viewers.discard(viewer)
            viewer.stop()
