"""The supervisors' wallboard: one computed state, pushed to every viewer.

The state is computed once per change (at most every `min_interval`) and at least every
`max_interval` so clocks like the longest wait move; each viewer has a small outbox and a
viewer that falls behind is disconnected rather than allowed to slow the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import structlog
from aiohttp import web

from acd.events import AcdEvent
from acd.service import AcdService

log = structlog.get_logger(__name__)


def wallboard_state(acd: AcdService) -> dict[str, Any]:
    now = acd.now()
    engine = acd.engine
    state: dict[str, Any] = {
        "at": now,
        "target_seconds": engine.target_seconds,
        "live": engine.snapshot(now),
    }
    if engine.stats is not None:
        state["service_level"] = engine.stats.figures(now)
    return state


class _Viewer:
    def __init__(self, ws: web.WebSocketResponse, outbox_size: int) -> None:
        self.ws = ws
        self.outbox: asyncio.Queue[str] = asyncio.Queue(outbox_size)


class WallboardHub:
    def __init__(
        self,
        acd: AcdService,
        *,
        min_interval: float = 0.2,
        max_interval: float = 1.0,
        outbox_size: int = 8,
    ) -> None:
        self._acd = acd
        self._min_interval = min_interval
        self._max_interval = max_interval
        self._outbox_size = outbox_size
        self._viewers: set[_Viewer] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
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
        for viewer in list(self._viewers):
            await viewer.ws.close()

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
        self.last_text = json.dumps(
            {"type": "wallboard", **wallboard_state(self._acd)}, default=str
        )
        self.published += 1
        for viewer in list(self._viewers):
            try:
                viewer.outbox.put_nowait(self.last_text)
            except asyncio.QueueFull:
                self._cut_off(viewer)

    def _cut_off(self, viewer: _Viewer) -> None:
        self._viewers.discard(viewer)
        self.cut_off += 1
        log.warning("wallboard_viewer_too_slow")
        viewer.outbox = asyncio.Queue(1)
        viewer.outbox.put_nowait("")  # wakes its writer, which then closes the socket

    async def serve(self, ws: web.WebSocketResponse) -> None:
        """Feed one viewer until it leaves or falls behind."""
        viewer = _Viewer(ws, self._outbox_size)
        self._viewers.add(viewer)
        writer = asyncio.create_task(self._write(viewer))
        try:
            if not self.last_text:
                self.publish()
            else:
                viewer.outbox.put_nowait(self.last_text)
            async for _ in ws:  # viewers only listen; anything they send is ignored
                pass
        finally:
            self._viewers.discard(viewer)
            writer.cancel()

    async def _write(self, viewer: _Viewer) -> None:
        while True:
            text = await viewer.outbox.get()
            if not text:
                await viewer.ws.close(message=b"too slow")
                return
            await viewer.ws.send_str(text)
