"""The supervisors' wallboard: one computed state, pushed to every viewer.

The state is computed once per change (at most every `min_interval`) and at least every
`max_interval` so clocks like the longest wait move; each viewer has a small outbox and a
viewer that falls behind is disconnected rather than allowed to slow the others.

The hub also keeps the day's history for the chart (one sample per `history_interval`, 24 h at
most): a new viewer gets it once with its first state, later states carry only the newest point.
What the state holds is computed in acd/board.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

import structlog
from aiohttp import WSCloseCode, web

from acd.board import DayHistory, history_point, wallboard_state
from acd.events import AcdEvent
from acd.service import AcdService

log = structlog.get_logger(__name__)


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
        state = wallboard_state(self._acd.engine, self._acd.now())
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
