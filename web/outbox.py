"""A WebSocket client's bounded outbox: how the server pushes to agents' desks and wallboards.

Each client gets a small queue and one pump task that writes it to the socket. Putting never
waits: a client whose queue is full is cut off (closed with a reason, its connection dropped if
even the close frame cannot get out) rather than allowed to slow the loop or the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from aiohttp import WSCloseCode, web

TOO_SLOW = "too slow"
# Kernel send buffer per client. Left alone the kernel grows it to megabytes, and a client that
# stopped reading would fill its queue (and be cut off) only minutes later.
SEND_BUFFER = 32 * 1024
MAX_REASON_BYTES = 120  # a close frame carries at most 123 bytes of reason


class Outbox:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        size: int,
        *,
        transport: asyncio.Transport | None = None,
        send_buffer: int = SEND_BUFFER,
        close_timeout: float = 2.0,
        on_too_slow: Callable[[Outbox], None] | None = None,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.closed_reason: str | None = None
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(size)
        self._send_buffer = send_buffer
        self._close_timeout = close_timeout
        self._on_too_slow = on_too_slow
        self._pump: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def closing(self) -> asyncio.Task[None] | None:
        """The cut-off in progress (a polite close, then the connection dropped), if any."""
        return self._closing

    def start(self) -> None:
        """Cap the socket's send buffer and start writing the queue to it."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone: the pump ends at once
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        self._pump = asyncio.create_task(self._write())

    def put(self, text: str) -> bool:
        """Queue one message; False when closed, or full (the client is then cut off)."""
        if self.closed_reason is not None:
            return False
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self.cut_off(TOO_SLOW)
            if self._on_too_slow is not None:
                self._on_too_slow(self)
            return False
        return True

    def close(self, reason: str) -> None:
        """Close after what is queued has been written; at once when the queue is full."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            self.cut_off(reason)  # the pump is stuck on a socket that does not drain

    def cut_off(self, reason: str) -> None:
        """Stop writing and close now: politely if the client still reads, else drop it."""
        if self._closing is not None:
            return
        if self.closed_reason is None:
            self.closed_reason = reason
        if self._pump is not None:
            self._pump.cancel()  # it may be stuck on a socket that never drains
        self._closing = asyncio.create_task(self._close_now(self.closed_reason))

    async def aclose(self, reason: str) -> None:
        """Cut off and wait until the connection is closed or dropped."""
        self.cut_off(reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)

    def stop(self) -> None:
        """The client has left: stop writing (a cut-off under way still finishes)."""
        if self.closed_reason is None:
            self.closed_reason = "disconnected"
        if self._pump is not None:
            self._pump.cancel()

    async def _close_now(self, reason: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._close_timeout):
                await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=_reason(reason))
        if self.transport is not None:
            # A peer that never reads would otherwise hold the socket and its buffer forever.
            self.transport.abort()

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                text = await self._queue.get()
                if text is None:
                    await self.ws.close(message=_reason(self.closed_reason or ""))
                    return
                await self.ws.send_str(text)


def _reason(reason: str) -> bytes:
    return reason.encode()[:MAX_REASON_BYTES]
