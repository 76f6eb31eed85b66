"""What our two Asterisk-facing TCP servers (FastAGI, AudioSocket) share: listening, one
task per connection, a session limit, and a bounded stop. Each protocol is a subclass."""

from __future__ import annotations

import asyncio

import structlog

log = structlog.get_logger(__name__)


class ConnectionServer:
    """Accept connections and run `_connection(reader, writer)` in its own task for each."""

    name = "server"  # prefixes the log events, e.g. "fastagi_listening"

    def __init__(self, host: str, port: int, *, max_sessions: int, stop_timeout: float) -> None:
        self._host = host
        self._requested_port = port
        self._max_sessions = max_sessions
        self._stop_timeout = stop_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port=0)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_sessions(self) -> int:
        return len(self._tasks)

    def _over_limit(self) -> bool:
        return len(self._tasks) > self._max_sessions

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._on_connect, self._host, self._requested_port, backlog=1024
        )
        log.info(f"{self.name}_listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        """Stop accepting, cancel running sessions and wait for them (bounded)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._stop_timeout)
            if pending:
                log.warning(f"{self.name}_stop_sessions_left", count=len(pending))
        self._after_sessions_stopped()
        if server is not None:
            try:
                await asyncio.wait_for(server.wait_closed(), self._stop_timeout)
            except TimeoutError:
                log.warning(f"{self.name}_stop_wait_closed_timeout")
        log.info(f"{self.name}_stopped", sessions_cancelled=len(tasks))

    def _after_sessions_stopped(self) -> None:
        """Hook for subclasses: release what waits on sessions that will never come."""

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task rather than asyncio's callback task: stop() cancels it, and asyncio's
        # wrapper would report that cancellation as an error.
        if self._server is None:  # accepted just as stop() ran
            writer.close()
            return
        task = asyncio.create_task(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._connection_done)

    def _connection_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error(f"{self.name}_connection_crashed", exc_info=exc)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


def peer_of(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
