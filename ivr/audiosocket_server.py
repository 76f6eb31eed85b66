"""AudioSocket server: caller audio in, prompt audio out, one asyncio task per connection.

A thin adapter around the sans-IO codec. Each connection must send its UUID frame within
`uuid_timeout`; the session is then registered under that UUID (so the AGI side, which put
the UUID into AudioSocket(), can `wait_session` for it) and handed to the handler, if any. A
reader task per session feeds the parser and queues caller audio and DTMF (bounded: the
oldest frames are dropped when nobody reads). Whatever a connection does wrong (garbage,
stall, stops mid-frame) ends that session only.

Asterisk facts this relies on (app_audiosocket, Asterisk 22):
- a hang-up frame or a clean close from us makes AudioSocket() return 0: the dial plan goes on;
- any other frame type from us, a zero-length audio frame, or a reset connection makes it
  return -1 and the channel hangs up;
- it reads each frame's 3-byte header with one read(), so a frame is always written whole;
- it writes our audio to the channel as it arrives, with no pacing: we pace (20 ms per frame);
- it gives up after 2 s with no activity in either direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from ivr.audiosocket import (
    FRAME_BYTES,
    FRAME_SECONDS,
    HEADER_BYTES,
    Audio,
    AudioSocketError,
    AudioSocketParser,
    Dtmf,
    Frame,
    Hangup,
    PeerError,
    SessionStart,
    encode_audio,
    encode_hangup,
)
from ivr.connections import ConnectionServer, peer_of

__all__ = ["AudioHandler", "AudioSession", "AudioSocketServer", "PlayResult"]

log = structlog.get_logger(__name__)

_READ_CHUNK = 65536
_UUID_FRAME_BYTES = HEADER_BYTES + 16
# A sender more than this far behind its schedule (a stalled loop) restarts the schedule
# instead of bursting the backlog into the caller's ear.
_MAX_LAG_S = 0.1


class PlayResult(enum.Enum):
    FINISHED = "finished"  # all audio was sent and its play time has passed
    STOPPED = "stopped"  # stop_audio() (barge-in) cut it short
    CLOSED = "closed"  # the session ended (hang-up, peer gone, write failed)


class AudioSession:
    """One AudioSocket connection, identified by the UUID Asterisk sent first."""

    def __init__(
        self,
        session_id: uuid.UUID,
        writer: asyncio.StreamWriter,
        *,
        max_queued_frames: int = 1000,
        write_timeout: float = 2.0,
    ) -> None:
        self.uuid = session_id
        self._writer = writer
        self._write_timeout = write_timeout
        self._queue: deque[Audio | Dtmf] = deque(maxlen=max_queued_frames)
        self._readable = asyncio.Event()  # frames queued or the session ended
        self._wake = asyncio.Event()  # stop_audio() or the end: interrupts paced sends
        self._ended = asyncio.Event()
        self._play_lock = asyncio.Lock()
        self._stop_generation = 0
        self._consumed = False
        self._hangup_sent = False
        self.end_reason: str | None = None
        self.dropped_frames = 0  # caller frames dropped because nobody read them in time
        self.peer_errors: list[int | None] = []

    @property
    def closed(self) -> bool:
        return self._ended.is_set()

    async def wait_closed(self) -> None:
        await self._ended.wait()

    # -- caller to us ------------------------------------------------------------------------

    async def frames(self) -> AsyncIterator[Audio | Dtmf]:
        """Caller audio and DTMF in arrival order; ends on hang-up, EOF or error.

        One consumer per session: a second call raises RuntimeError.
        """
        if self._consumed:
            raise RuntimeError("frames() already consumed for this session")
        self._consumed = True
        while True:
            while self._queue:
                yield self._queue.popleft()
            if self.closed:
                return
            self._readable.clear()
            await self._readable.wait()

    # -- us to the caller ----------------------------------------------------------------------

    async def send_audio(self, pcm: bytes) -> PlayResult:
        """Play 8 kHz 16-bit PCM to the caller in real time (20 ms per 320 bytes).

        Returns when the audio has played out, when stop_audio() interrupts it, or when the
        session ends. Calls queue behind one another; stop_audio() stops the queued ones too.
        """
        if len(pcm) % 2:
            raise ValueError(f"PCM of odd length {len(pcm)}: samples are 16-bit")
        generation = self._stop_generation
        async with self._play_lock:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for index, offset in enumerate(range(0, len(pcm), FRAME_BYTES)):
                due = start + index * FRAME_SECONDS
                now = loop.time()
                if now - due > _MAX_LAG_S:
                    start = now - index * FRAME_SECONDS
                elif due > now:
                    await self._pause(due - now)
                if (cut := self._interrupted(generation)) is not None:
                    return cut
                if not await self._write(encode_audio(pcm[offset : offset + FRAME_BYTES])):
                    return PlayResult.CLOSED
            # return when the last frame has played, so the caller can listen right after
            end = start + len(pcm) / FRAME_BYTES * FRAME_SECONDS
            if (left := end - loop.time()) > 0:
                await self._pause(left)
            return self._interrupted(generation) or PlayResult.FINISHED

    def stop_audio(self) -> None:
        """Barge-in: stop the audio being sent now and any queued behind it."""
        self._stop_generation += 1
        self._wake.set()

    async def hangup(self) -> None:
        """Send the hang-up frame: Asterisk's AudioSocket() returns and its dial plan goes on."""
        if self.closed:
            return
        if not self._hangup_sent:
            self._hangup_sent = True
            await self._write(encode_hangup())
            with contextlib.suppress(OSError, RuntimeError):
                # half-close: Asterisk reads the hang-up, then closes; no reset in between
                self._writer.write_eof()
        self._end("hangup sent")

    # -- called by the connection task ---------------------------------------------------------

    def _deliver(self, frame: Frame) -> None:
        if isinstance(frame, Audio | Dtmf):
            if self.closed:
                return
            if len(self._queue) == self._queue.maxlen:
                self.dropped_frames += 1
                if self.dropped_frames == 1:
                    log.warning("audiosocket_frames_dropped", reason="nobody reads the caller")
            self._queue.append(frame)
            self._readable.set()
        elif isinstance(frame, Hangup):
            self._end("peer hangup")
        elif isinstance(frame, PeerError):
            self.peer_errors.append(frame.code)
            log.warning("audiosocket_peer_error", code=frame.code)
        else:
            raise AudioSocketError(f"unexpected frame {frame!r}")  # the parser cannot do this

    def _end(self, reason: str) -> None:
        if self._ended.is_set():
            return
        self.end_reason = reason
        self._ended.set()
        self._readable.set()
        self._wake.set()

    # -- helpers ------------------------------------------------------------------------------

    def _interrupted(self, generation: int) -> PlayResult | None:
        if self.closed:
            return PlayResult.CLOSED
        if generation != self._stop_generation:
            return PlayResult.STOPPED
        return None

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake early on stop_audio() or the end of the session."""
        self._wake.clear()
        if self.closed:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _write(self, data: bytes) -> bool:
        if self.closed:
            return False
        if self._writer.is_closing():
            self._end("connection closed")
            return False
        try:
            self._writer.write(data)
            async with asyncio.timeout(self._write_timeout):
                await self._writer.drain()
        except TimeoutError:
            log.warning("audiosocket_write_stalled", timeout_s=self._write_timeout)
            self._end("write stalled")
            self._writer.close()
            return False
        except (ConnectionError, RuntimeError) as exc:
            self._end(f"write failed: {exc}")
            return False
        return True


AudioHandler = Callable[[AudioSession], Awaitable[None]]


class AudioSocketServer(ConnectionServer):
    """Serves AudioSocket connections from Asterisk.

    With a handler, each session runs `handler(session)` and is hung up when it returns.
    Without one, sessions wait for whoever `wait_session`s them, until hang-up or EOF.
    """

    def __init__(
        self,
        handler: AudioHandler | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        uuid_timeout: float = 5.0,
        idle_timeout: float = 10.0,
        max_sessions: int = 500,
        max_queued_frames: int = 1000,
        write_timeout: float = 2.0,
        close_timeout: float = 2.0,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(host, port, max_sessions=max_sessions, stop_timeout=stop_timeout)
        self._handler = handler
        self._uuid_timeout = uuid_timeout
        self._idle_timeout = idle_timeout
        self._max_queued_frames = max_queued_frames
        self._write_timeout = write_timeout
        self._close_timeout = close_timeout
        self._by_uuid: dict[uuid.UUID, AudioSession] = {}
        self._waiters: dict[uuid.UUID, list[asyncio.Future[AudioSession]]] = {}

    def session(self, session_id: uuid.UUID) -> AudioSession | None:
        return self._by_uuid.get(session_id)

    async def wait_session(self, session_id: uuid.UUID, timeout: float) -> AudioSession:
        """The session with this UUID, once Asterisk has connected; TimeoutError if it does
        not within `timeout` seconds."""
        if (found := self._by_uuid.get(session_id)) is not None:
            return found
        fut: asyncio.Future[AudioSession] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(session_id, []).append(fut)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            waiting = self._waiters.get(session_id, [])
            if fut in waiting:
                waiting.remove(fut)
            if not waiting:
                self._waiters.pop(session_id, None)

    def _after_sessions_stopped(self) -> None:
        for waiting in self._waiters.values():
            for fut in waiting:
                fut.cancel()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer)
        try:
            if self._over_limit():
                log.warning("audiosocket_rejected", peer=peer, reason="too many sessions")
                return
            parser = AudioSocketParser()
            try:
                start = await self._read_uuid(reader, parser)
            except TimeoutError:
                log.warning("audiosocket_start_failed", peer=peer, reason="no UUID in time")
                return
            except AudioSocketError as exc:
                log.warning("audiosocket_start_failed", peer=peer, reason=str(exc))
                return
            except OSError as exc:
                log.warning("audiosocket_start_failed", peer=peer, reason=f"connection: {exc}")
                return
            if start.uuid in self._by_uuid:
                log.warning(
                    "audiosocket_rejected",
                    peer=peer,
                    uuid=str(start.uuid),
                    reason="a session with this UUID is already open",
                )
                return
            session = AudioSession(
                start.uuid,
                writer,
                max_queued_frames=self._max_queued_frames,
                write_timeout=self._write_timeout,
            )
            with structlog.contextvars.bound_contextvars(audiosocket_uuid=str(start.uuid)):
                await self._run_session(session, parser, reader, peer)
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _read_uuid(
        self, reader: asyncio.StreamReader, parser: AudioSocketParser
    ) -> SessionStart:
        # Read no further than the 19-byte UUID frame, so bytes after it go through the
        # session's reader and an error there ends a session that the handler has seen.
        received = 0
        async with asyncio.timeout(self._uuid_timeout):
            while True:
                data = await reader.read(_UUID_FRAME_BYTES - received)
                if not data:
                    parser.close()  # raises: no UUID yet
                    raise AudioSocketError("connection closed before the UUID frame")
                received += len(data)
                frames = parser.feed(data)
                if frames:
                    first = frames[0]
                    if not isinstance(first, SessionStart):
                        raise AudioSocketError(f"{type(first).__name__} before the UUID frame")
                    return first
                if received >= _UUID_FRAME_BYTES:  # the table makes this unreachable
                    raise AudioSocketError("no UUID frame")

    async def _run_session(
        self,
        session: AudioSession,
        parser: AudioSocketParser,
        reader: asyncio.StreamReader,
        peer: str,
    ) -> None:
        started = time.monotonic()
        self._by_uuid[session.uuid] = session
        log.info("audiosocket_session_start", peer=peer)
        for fut in self._waiters.pop(session.uuid, []):
            if not fut.done():
                fut.set_result(session)
        reader_task = asyncio.create_task(self._read_loop(session, parser, reader))
        try:
            if self._handler is not None:
                try:
                    await self._handler(session)
                except Exception:
                    log.exception("audiosocket_handler_failed")
            else:
                await session.wait_closed()
            # hang up (a no-op if the session already ended), then let Asterisk close first
            # so our close never resets a socket it is still writing audio to
            await session.hangup()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader_task), self._close_timeout)
        finally:
            reader_task.cancel()
            await asyncio.gather(reader_task, return_exceptions=True)
            session._end("server closed the session")
            if self._by_uuid.get(session.uuid) is session:
                del self._by_uuid[session.uuid]
            log.info(
                "audiosocket_session_end",
                reason=session.end_reason,
                dropped_frames=session.dropped_frames,
                duration_s=round(time.monotonic() - started, 3),
            )

    async def _read_loop(
        self,
        session: AudioSession,
        parser: AudioSocketParser,
        reader: asyncio.StreamReader,
    ) -> None:
        """Own the read side until EOF; after our hang-up, drain what Asterisk still sends."""
        try:
            while True:
                try:
                    async with asyncio.timeout(self._idle_timeout):
                        data = await reader.read(_READ_CHUNK)
                except TimeoutError:
                    log.warning("audiosocket_idle", timeout_s=self._idle_timeout)
                    session._end("idle timeout")
                    return
                except OSError as exc:
                    session._end(f"read error: {exc}")
                    return
                if not data:
                    if not session.closed:
                        parser.close()  # raises if the peer stopped mid-frame
                    session._end("eof")
                    return
                if session.closed:
                    continue  # our hang-up is out; the rest is discarded until EOF
                for frame in parser.feed(data):
                    session._deliver(frame)
        except AudioSocketError as exc:
            log.warning("audiosocket_protocol_error", reason=str(exc))
            session._end(f"protocol error: {exc}")
