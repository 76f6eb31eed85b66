"""FastAGI server: one asyncio task per call, a thin adapter around the sans-IO codec.

Each connection reads the `agi_*` header under a timeout, then hands an AgiChannel to the
handler. The protocol state (which command is owed a reply, hang-up, dead or failed session)
is the codec's AgiSession; this module adds the socket, a future per command, timeouts and a
lock. A reader task per session owns the socket's read side: it feeds the session, resolves
the one pending command, and notices hang-ups even while no command is running. Whatever a
connection does wrong (closes early, sends garbage, stalls, times out) ends that session only.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

import structlog

from ivr.connections import ConnectionServer, peer_of
from pbx.agi import (
    AgiCommand,
    AgiDeadChannel,
    AgiEvent,
    AgiProtocolError,
    AgiReply,
    AgiSession,
    AgiUsageError,
    SessionState,
)

__all__ = ["AgiChannel", "AgiError", "AgiHandler", "AgiHangup", "FastAgiServer"]

log = structlog.get_logger(__name__)

_READ_CHUNK = 65536
# Prompts have no known length here; these only catch an Asterisk that stopped answering.
_PROMPT_ALLOWANCE = 300.0


class AgiHangup(Exception):
    """The caller hung up (HANGUP line, 511 reply, EOF, or a command returned -1)."""


class AgiError(Exception):
    """Protocol error, rejected command (510/520) or a command that timed out."""


class AgiChannel:
    """One call's AGI session, handed to the handler. Commands run one at a time.

    After a HANGUP notice commands are still sent: Asterisk runs the channel in dead mode and
    answers dead-capable commands (GET/SET VARIABLE) and 511 to the rest. Once the connection
    is gone or the session failed, commands raise at once.
    """

    def __init__(self, session: AgiSession, writer: asyncio.StreamWriter) -> None:
        header = session.header
        if header is None:
            raise ValueError("the AGI session has not had its header yet")
        self.env: Mapping[str, str] = MappingProxyType(dict(header.env))
        self.script: str = header.script
        self.params: Mapping[str, str] = MappingProxyType(dict(header.params))
        self.uniqueid: str = header.env.get("agi_uniqueid", "")
        self.caller_number: str = header.env.get("agi_callerid", "")
        self._session = session
        self._writer = writer
        self._lock = asyncio.Lock()
        # The future of the command whose reply is owed. It stays set if the caller gave up
        # waiting (was cancelled): the next command first waits for that reply, or the two
        # would swap.
        self._pending: asyncio.Future[AgiEvent] | None = None
        self._ended = asyncio.Event()  # the call is no longer ours: hang-up, EOF or failure

    # -- state -----------------------------------------------------------------------------------

    @property
    def hung_up(self) -> bool:
        return self._session.hung_up

    @property
    def cut_off(self) -> bool:
        """Gone without a hang-up from Asterisk (see AgiSession.cut_off)."""
        return self._session.cut_off

    @property
    def closed(self) -> bool:
        """True once the session is over (hang-up, EOF, or ended on an error)."""
        return self._ended.is_set()

    async def wait_hangup(self) -> None:
        """Resolve when the caller hangs up or the session ends, even with no command running."""
        await self._ended.wait()

    # -- commands --------------------------------------------------------------------------------

    # `timeout` is the deadline for Asterisk's reply, part of this API (hence noqa ASYNC109)
    async def command(self, *words: str, timeout: float | None = 10.0) -> AgiReply:
        """Send one command and return its 200 reply. `timeout=None` waits as long as it takes.

        Raises AgiHangup (dead channel, connection gone) or AgiError (rejected, timed out,
        session failed). A timeout ends the session: a late reply would desynchronise it.
        """
        command = AgiCommand(*words)  # ValueError before anything is sent
        async with self._lock:
            await self._drain_abandoned(timeout)
            self._check_usable()
            data = self._session.send(command)  # the session now owes `command` a reply
            fut = self._new_pending()
            try:
                self._writer.write(data)
                await self._writer.drain()
                # shield: if our caller is cancelled the reply is still owed (see _pending)
                event = await asyncio.wait_for(asyncio.shield(fut), timeout)
            except TimeoutError:
                self._fail(f"no reply to {words[0]} within {timeout} s")
                raise AgiError(f"timeout waiting for the reply to {' '.join(words)!r}") from None
            except ConnectionError as exc:
                self._lost(f"write failed: {exc}")
                raise AgiHangup(f"connection lost: {exc}") from exc
        return self._outcome(words, event)

    # No timeout by default: Dial or AudioSocket last as long as the call.
    async def exec(self, app: str, *args: str, timeout: float | None = None) -> AgiReply:
        """EXEC app "a,b,c"; AgiHangup when the application returns -1 (the channel hung up)."""
        words = ("EXEC", app, ",".join(args)) if args else ("EXEC", app)
        reply = await self.command(*words, timeout=timeout)
        if reply.result == "-1":
            raise AgiHangup(f"EXEC {app} returned -1")
        return reply

    async def answer(self) -> None:
        await self._checked("ANSWER")

    async def hangup(self) -> None:
        await self._checked("HANGUP")

    async def set_music(self, on: bool = True, moh_class: str = "default") -> None:
        """Start or stop music on hold (SET MUSIC ON|OFF class)."""
        await self.command("SET", "MUSIC", "ON" if on else "OFF", moh_class)

    async def get_variable(self, name: str) -> str | None:
        """GET VARIABLE: None when the variable is not set (result=0)."""
        reply = await self.command("GET", "VARIABLE", name)
        return reply.data if reply.result == "1" else None

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET", "VARIABLE", name, value)

    async def stream_file(
        self,
        file: str,
        escape_digits: str = "",
        *,
        timeout: float | None = _PROMPT_ALLOWANCE,
    ) -> str:
        """Play a prompt; return the escape digit pressed, or '' when it played to the end."""
        reply = await self.command("STREAM", "FILE", file, escape_digits, timeout=timeout)
        code = _int_result(reply)
        if code < 0:
            raise AgiHangup(f"STREAM FILE {file} returned -1 (hang-up or unplayable prompt)")
        return chr(code) if code > 0 else ""

    async def get_data(
        self,
        file: str,
        timeout_ms: int,
        max_digits: int,
        *,
        timeout: float | None = None,
    ) -> str:
        """GET DATA: play a prompt and collect digits; '' when nothing was pressed in time."""
        if timeout is None:
            timeout = timeout_ms / 1000 + _PROMPT_ALLOWANCE
        reply = await self.command(
            "GET", "DATA", file, str(timeout_ms), str(max_digits), timeout=timeout
        )
        # "200 result=12 (timeout)" keeps the digits typed before the timeout
        if reply.result == "-1":
            raise AgiHangup(f"GET DATA {file} returned -1 (hang-up or unplayable prompt)")
        return reply.result

    async def _checked(self, *words: str) -> None:
        reply = await self.command(*words)
        if reply.result == "-1":
            raise AgiHangup(f"{words[0]} returned -1")

    # -- called by the session's reader task ------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        """Bytes read from Asterisk (b"" at EOF). Raises AgiProtocolError."""
        self._session.receive_data(data)
        self._deliver_events()

    def _deliver_events(self) -> None:
        """Take what the session has received: replies resolve the pending command."""
        try:
            while (event := self._session.next_event()) is not None:
                if isinstance(event, AgiReply | AgiUsageError | AgiDeadChannel):
                    # the session checked that a command is owed this reply
                    fut, self._pending = self._pending, None
                    if fut is not None and not fut.done():
                        fut.set_result(event)
        finally:
            self._sync()

    def _lost(self, reason: str) -> None:
        """The connection is gone (EOF or reset): for a call that is a hang-up."""
        self._session.connection_lost(reason)
        self._sync()

    def _fail(self, reason: str) -> None:
        """End the session on an error: the stream can no longer be trusted."""
        self._session.fail(reason)
        self._sync()
        # closing makes Asterisk continue its dialplan (which has a fallback)
        self._writer.close()

    # -- helpers ------------------------------------------------------------------------------

    def _sync(self) -> None:
        """Bring the pending command and the ended flag in line with the session's state."""
        session = self._session
        if session.state is SessionState.FAILED:
            self._ended.set()
            self._settle_pending(AgiError(session.failure))
        elif session.state is SessionState.CLOSED:
            self._ended.set()
            self._settle_pending(AgiHangup(f"connection closed ({session.closed_reason})"))
        elif session.hung_up:
            # a pending command still gets its reply (511, result=-1, or a real answer from a
            # dead-capable command)
            self._ended.set()

    def _new_pending(self) -> asyncio.Future[AgiEvent]:
        fut: asyncio.Future[AgiEvent] = asyncio.get_running_loop().create_future()
        # an abandoned command's failure has no reader; retrieve it so asyncio does not warn
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending = fut
        return fut

    def _settle_pending(self, exc: Exception) -> None:
        fut, self._pending = self._pending, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    async def _drain_abandoned(self, wait_s: float | None) -> None:
        """Wait for the reply still owed to a command whose caller stopped waiting."""
        fut = self._pending
        if fut is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(fut), wait_s)
        except TimeoutError:
            self._fail("no reply to an abandoned command")
            raise AgiError("timeout waiting for an earlier command's reply") from None
        except (AgiHangup, AgiError):
            pass  # that command's outcome has no taker; this one checks the state itself

    def _check_usable(self) -> None:
        session = self._session
        if session.state is SessionState.FAILED:
            raise AgiError(f"session ended: {session.failure}")
        if session.state is SessionState.CLOSED:
            raise AgiHangup(f"connection closed ({session.closed_reason})")

    @staticmethod
    def _outcome(words: tuple[str, ...], event: AgiEvent) -> AgiReply:
        if isinstance(event, AgiDeadChannel):
            raise AgiHangup(f"{words[0]}: {event.text or 'dead channel'}")
        if isinstance(event, AgiUsageError):
            raise AgiError(f"{' '.join(words)!r} rejected: {event.text}")
        if isinstance(event, AgiReply):
            if event.code != 200:
                raise AgiError(f"{' '.join(words)!r} failed: {event.raw}")
            return event
        raise AgiError(f"unexpected event {event!r}")


def _int_result(reply: AgiReply) -> int:
    try:
        return int(reply.result)
    except ValueError:
        raise AgiError(f"non-numeric result: {reply.raw}") from None


AgiHandler = Callable[[AgiChannel], Awaitable[None]]


class FastAgiServer(ConnectionServer):
    """Serves FastAGI connections from Asterisk; each call runs `handler(channel)`."""

    name = "fastagi"

    def __init__(
        self,
        handler: AgiHandler,
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        header_timeout: float = 5.0,
        max_sessions: int = 1000,
        stop_timeout: float = 5.0,
        key: str | None = None,
    ) -> None:
        super().__init__(host, port, max_sessions=max_sessions, stop_timeout=stop_timeout)
        self._handler = handler
        self._header_timeout = header_timeout
        # With a key, only connections that carry it (?key= in the AGI URL) are calls: any
        # other local process could otherwise inject calls with a made-up caller number.
        self._key = key

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer)
        try:
            if self._over_limit():
                # Asterisk sees the close and falls back to its own dialplan
                log.warning("agi_session_rejected", peer=peer, reason="too many sessions")
                return
            session = AgiSession()
            try:
                await self._read_header(reader, session)
            except TimeoutError:
                log.warning("agi_header_failed", peer=peer, reason="header timeout")
                return
            except AgiProtocolError as exc:
                log.warning("agi_header_failed", peer=peer, reason=exc.reason, line=exc.line)
                return
            except OSError as exc:
                log.warning("agi_header_failed", peer=peer, reason=f"connection error: {exc}")
                return
            if not self._key_matches(session):
                log.warning("agi_session_refused", peer=peer, reason="missing or wrong key")
                return
            await self._run_session(session, reader, writer, peer)
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, TimeoutError):
                pass  # already reset or gone: nothing more to release

    def _key_matches(self, session: AgiSession) -> bool:
        if self._key is None:
            return True
        given = session.header.params.get("key", "") if session.header else ""
        return hmac.compare_digest(given.encode(), self._key.encode())

    async def _read_header(self, reader: asyncio.StreamReader, session: AgiSession) -> None:
        """Read until the session has its header; what came after it stays queued there."""
        # chunked reads (not readuntil) so the parser's line and header bounds apply
        async with asyncio.timeout(self._header_timeout):
            while session.header is None:
                # b"" at EOF raises: the stream ended inside the header
                session.receive_data(await reader.read(_READ_CHUNK))
                session.next_event()  # the header, the only event of the header state

    async def _run_session(
        self,
        session: AgiSession,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> None:
        channel = AgiChannel(session, writer)
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(
            agi_uniqueid=channel.uniqueid, script=channel.script
        ):
            log.info("agi_session_start", peer=peer, caller=channel.caller_number)
            reader_task = asyncio.create_task(_read_loop(channel, reader))
            try:
                await self._handler(channel)
            except AgiHangup as exc:
                log.info("agi_session_hangup", reason=str(exc))
            except Exception:
                # Asterisk continues its dialplan (which has a fallback) once we close
                log.exception("agi_handler_failed")
            finally:
                reader_task.cancel()
                await asyncio.gather(reader_task, return_exceptions=True)
                log.info(
                    "agi_session_end",
                    hung_up=channel.hung_up,
                    duration_s=round(time.monotonic() - started, 3),
                )


async def _read_loop(channel: AgiChannel, reader: asyncio.StreamReader) -> None:
    """Own the read side of one session until EOF or a protocol error."""
    try:
        channel._deliver_events()  # what came in with the header
        while True:
            try:
                data = await reader.read(_READ_CHUNK)
            except OSError as exc:
                channel._lost(f"read error: {exc}")
                return
            channel._receive(data)
            if not data:
                return  # the session saw the end of the stream: a hang-up
    except AgiProtocolError as exc:
        log.error("agi_protocol_error", reason=exc.reason, line=exc.line)
        channel._fail(f"protocol error: {exc.reason}")
    except Exception:
        log.exception("agi_reader_failed")
        channel._fail("reader failed")
