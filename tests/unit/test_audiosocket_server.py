"""The AudioSocket server over real loopback sockets, with asyncio streams playing Asterisk."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from ivr.audiosocket import (
    FRAME_BYTES,
    Audio,
    Dtmf,
    Kind,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_session_start,
)
from ivr.audiosocket_server import AudioSession, AudioSocketServer, PlayResult
from tests.support.polling import eventually as poll

Handler = Callable[[AudioSession], Awaitable[None]]
ServerFactory = Callable[..., Awaitable[AudioSocketServer]]

STEP = 2.0  # generous bound for any single network step in these tests
PCM = bytes(range(256)) + bytes(64)  # one 20-ms frame, not silence


def tone(seconds: float) -> bytes:
    frames = round(seconds / 0.02)
    return PCM * frames


class FakeAsterisk:
    """The Asterisk side of one AudioSocket connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.uuid = uuid.uuid4()

    @classmethod
    async def connect(cls, port: int, *, start: bool = True) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        fake = cls(reader, writer)
        if start:
            await fake.send(encode_session_start(fake.uuid))
        return fake

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self, within: float = STEP) -> tuple[Kind, bytes]:
        header = await asyncio.wait_for(self.reader.readexactly(3), within)
        length = int.from_bytes(header[1:], "big")
        payload = await asyncio.wait_for(self.reader.readexactly(length), within)
        return Kind(header[0]), payload

    async def read_until_hangup(self) -> list[bytes]:
        """The audio payloads the server sends, up to and including its hang-up frame."""
        audio: list[bytes] = []
        for _ in range(10_000):
            kind, payload = await self.read_frame()
            if kind is Kind.HANGUP:
                return audio
            assert kind is Kind.AUDIO
            audio.append(payload)
        raise AssertionError("no hang-up frame")

    async def expect_closed(self) -> None:
        """The server closed the connection (maybe after sending nothing more)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), STEP)
        except ConnectionResetError:
            return
        assert rest == b""

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[AudioSocketServer] = []

    async def factory(handler: Handler | None, **kwargs: Any) -> AudioSocketServer:
        kwargs.setdefault("uuid_timeout", 0.3)
        kwargs.setdefault("close_timeout", 0.5)
        server = AudioSocketServer(handler, "127.0.0.1", 0, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()


async def eventually(predicate: Callable[[], bool], within: float = STEP) -> None:
    await poll(predicate, within)


# -- a normal call ---------------------------------------------------------------------------


async def test_normal_session_audio_both_ways_and_dtmf(make_server: ServerFactory) -> None:
    seen: dict[str, Any] = {"frames": []}

    async def handler(session: AudioSession) -> None:
        seen["uuid"] = session.uuid
        seen["context"] = structlog.contextvars.get_contextvars()
        seen["registered"] = server.session(session.uuid) is session
        async for frame in session.frames():
            seen["frames"].append(frame)
            if frame == Dtmf("#"):
                break
        seen["play"] = await session.send_audio(tone(0.06))

    server = await make_server(handler)
    assert server.port > 0
    ast = await FakeAsterisk.connect(server.port)
    body = encode_audio(PCM * 3) + encode_dtmf("1") + encode_audio(PCM) + encode_dtmf("#")
    await ast.send(body)
    audio = await ast.read_until_hangup()
    await ast.expect_closed()
    ast.close()

    assert audio == [PCM] * 3
    assert seen["uuid"] == ast.uuid
    assert seen["context"]["audiosocket_uuid"] == str(ast.uuid)
    assert seen["registered"]
    assert seen["frames"] == [Audio(PCM)] * 3 + [Dtmf("1"), Audio(PCM), Dtmf("#")]
    assert seen["play"] is PlayResult.FINISHED
    await eventually(lambda: server.active_sessions == 0)
    assert server.session(ast.uuid) is None


async def test_peer_hangup_frame_ends_frames(make_server: ServerFactory) -> None:
    done: asyncio.Future[AudioSession] = asyncio.get_running_loop().create_future()

    async def handler(session: AudioSession) -> None:
        frames = [f async for f in session.frames()]
        assert frames == [Audio(PCM)]
        assert await session.send_audio(PCM) is PlayResult.CLOSED
        await session.hangup()  # a no-op once ended
        done.set_result(session)

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port)
    await ast.send(encode_audio(PCM) + encode_hangup())
    session = await asyncio.wait_for(done, STEP)
    assert session.end_reason == "peer hangup"
    await ast.expect_closed()  # no hang-up frame back: the peer already ended it
    ast.close()


async def test_eof_ends_the_session_cleanly(make_server: ServerFactory) -> None:
    done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    async def handler(session: AudioSession) -> None:
        async for _ in session.frames():
            pass
        done.set_result(session.end_reason)

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port)
    await ast.send(encode_audio(PCM))
    ast.close()
    assert await asyncio.wait_for(done, STEP) == "eof"
    await eventually(lambda: server.active_sessions == 0)


async def test_peer_error_frame_is_logged_and_the_stream_goes_on(
    make_server: ServerFactory,
) -> None:
    got: list[Any] = []

    async def handler(session: AudioSession) -> None:
        async for frame in session.frames():
            got.append(frame)
        got.append(session.peer_errors)

    server = await make_server(handler)
    with capture_logs() as logs:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(encode_error(2) + encode_dtmf("9") + encode_hangup())
        await eventually(lambda: len(got) == 2)
    ast.close()
    assert got == [Dtmf("9"), [2]]
    assert any(e["event"] == "audiosocket_peer_error" and e["code"] == 2 for e in logs)


# -- paced sending and barge-in ---------------------------------------------------------------


async def test_send_audio_is_paced_in_real_time(make_server: ServerFactory) -> None:
    result: dict[str, Any] = {}
    loop = asyncio.get_running_loop()

    async def handler(session: AudioSession) -> None:
        started = loop.time()
        result["play"] = await session.send_audio(tone(1.0))
        result["took"] = loop.time() - started

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port)
    arrivals: list[float] = []
    for _ in range(50):
        kind, payload = await ast.read_frame()
        assert kind is Kind.AUDIO and payload == PCM
        arrivals.append(loop.time())
    assert (await ast.read_frame())[0] is Kind.HANGUP
    ast.close()

    assert result["play"] is PlayResult.FINISHED
    assert 0.98 <= result["took"] < 1.25  # returns once the last frame has played
    span = arrivals[-1] - arrivals[0]
    assert 0.95 <= span < 1.2  # 49 gaps of 20 ms
    first = arrivals[0]
    # never ahead of the schedule (a flood would be played at once by Asterisk)
    assert all(t - first >= i * 0.02 - 0.005 for i, t in enumerate(arrivals))


async def test_barge_in_stops_the_prompt_and_queued_ones(make_server: ServerFactory) -> None:
    loop = asyncio.get_running_loop()
    result: dict[str, Any] = {}

    async def handler(session: AudioSession) -> None:
        first = asyncio.create_task(session.send_audio(tone(5.0)))
        queued = asyncio.create_task(session.send_audio(tone(5.0)))
        async for frame in session.frames():
            if isinstance(frame, Dtmf):
                stopped_at = loop.time()
                session.stop_audio()
                result["first"] = await first
                result["queued"] = await queued
                result["lag"] = loop.time() - stopped_at
                break
        result["after"] = await session.send_audio(PCM * 2)  # a new prompt plays

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port)
    for _ in range(5):
        assert (await ast.read_frame())[0] is Kind.AUDIO
    await ast.send(encode_dtmf("0"))
    frames = await ast.read_until_hangup()
    ast.close()

    assert result["first"] is PlayResult.STOPPED
    assert result["queued"] is PlayResult.STOPPED
    assert result["lag"] < 0.1
    assert result["after"] is PlayResult.FINISHED
    assert 2 <= len(frames) < 20  # a few in flight, the new prompt's two, not 5 s of audio


async def test_peer_disconnect_during_send(make_server: ServerFactory) -> None:
    loop = asyncio.get_running_loop()
    result: dict[str, Any] = {}
    closed_at: list[float] = []

    async def handler(session: AudioSession) -> None:
        result["play"] = await session.send_audio(tone(5.0))
        result["returned"] = loop.time()
        result["reason"] = session.end_reason

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port)
    for _ in range(3):
        await ast.read_frame()
    ast.close()
    closed_at.append(loop.time())
    await eventually(lambda: "play" in result)
    assert result["play"] is PlayResult.CLOSED
    assert result["returned"] - closed_at[0] < 0.2
    assert result["reason"] in {"eof"} or result["reason"].startswith(("read", "write"))
    await eventually(lambda: server.active_sessions == 0)


async def test_send_audio_rejects_odd_pcm(make_server: ServerFactory) -> None:
    errors: list[Exception] = []

    async def handler(session: AudioSession) -> None:
        try:
            await session.send_audio(b"\x00")
        except ValueError as exc:
            errors.append(exc)

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port)
    assert await ast.read_until_hangup() == []
    ast.close()
    assert len(errors) == 1


# -- broken peers ----------------------------------------------------------------------------


async def test_garbage_before_the_uuid_is_closed(make_server: ServerFactory) -> None:
    calls: list[AudioSession] = []

    async def handler(session: AudioSession) -> None:
        calls.append(session)

    server = await make_server(handler)
    with capture_logs() as logs:
        ast = await FakeAsterisk.connect(server.port, start=False)
        await ast.send(b"GET / HTTP/1.1\r\n\r\n")
        await ast.expect_closed()
        ast.close()
        await eventually(lambda: server.active_sessions == 0)
    assert calls == []
    failed = [e for e in logs if e["event"] == "audiosocket_start_failed"]
    assert failed and "unknown frame type 0x47" in failed[0]["reason"]


async def test_garbage_mid_session_ends_only_that_session(make_server: ServerFactory) -> None:
    reasons: dict[uuid.UUID, str | None] = {}

    async def handler(session: AudioSession) -> None:
        async for _ in session.frames():
            pass
        reasons[session.uuid] = session.end_reason

    server = await make_server(handler)
    good = await FakeAsterisk.connect(server.port)
    bad = await FakeAsterisk.connect(server.port)
    with capture_logs() as logs:
        await bad.send(encode_audio(PCM) + b"\x42\x00\x05hello")
        await bad.expect_closed()
        await eventually(lambda: bad.uuid in reasons)
    bad.close()
    assert "unknown frame type 0x42" in (reasons[bad.uuid] or "")
    assert any(e["event"] == "audiosocket_protocol_error" for e in logs)

    await good.send(encode_audio(PCM) + encode_hangup())  # the other call is untouched
    await eventually(lambda: good.uuid in reasons)
    assert reasons[good.uuid] == "peer hangup"
    good.close()


@pytest.mark.parametrize("sent", [b"", b"\x01\x00\x10" + bytes(7)])
async def test_stall_before_the_uuid_is_closed(make_server: ServerFactory, sent: bytes) -> None:
    server = await make_server(None, uuid_timeout=0.2)
    loop = asyncio.get_running_loop()
    with capture_logs() as logs:
        ast = await FakeAsterisk.connect(server.port, start=False)
        await ast.send(sent)
        started = loop.time()
        await ast.expect_closed()
        took = loop.time() - started
    ast.close()
    assert 0.15 <= took < 1.0
    assert any(e.get("reason") == "no UUID in time" for e in logs)


async def test_mid_frame_disconnect_is_logged_and_ends_cleanly(
    make_server: ServerFactory,
) -> None:
    got: list[Any] = []

    async def handler(session: AudioSession) -> None:
        got.extend([f async for f in session.frames()])
        got.append(session.end_reason)

    server = await make_server(handler)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(encode_audio(PCM) + encode_audio(PCM)[:100])
        ast.close()
        await eventually(lambda: len(got) == 2)
        await eventually(lambda: server.active_sessions == 0)
    assert got[0] == Audio(PCM)
    assert "closed mid-frame" in got[1]
    errors = [e for e in logs if e["event"] == "audiosocket_protocol_error"]
    assert errors and "97 of 320 bytes" in errors[0]["reason"]
    assert errors[0]["audiosocket_uuid"] == str(ast.uuid)
    assert not any(e["log_level"] == "error" for e in logs)


async def test_idle_peer_is_timed_out(make_server: ServerFactory) -> None:
    reasons: list[str | None] = []

    async def handler(session: AudioSession) -> None:
        async for _ in session.frames():
            pass
        reasons.append(session.end_reason)

    server = await make_server(handler, idle_timeout=0.2)
    ast = await FakeAsterisk.connect(server.port)
    await ast.send(encode_audio(PCM))
    await ast.expect_closed()  # a close is a hang-up to Asterisk too
    ast.close()
    assert reasons == ["idle timeout"]


async def test_handler_failure_hangs_up(make_server: ServerFactory) -> None:
    async def handler(session: AudioSession) -> None:
        raise RuntimeError("boom")

    server = await make_server(handler)
    with capture_logs() as logs:
        ast = await FakeAsterisk.connect(server.port)
        assert await ast.read_until_hangup() == []
        await ast.expect_closed()
        ast.close()
        await eventually(lambda: server.active_sessions == 0)
    assert any(e["event"] == "audiosocket_handler_failed" for e in logs)


async def test_slow_reader_drops_the_oldest_frames(make_server: ServerFactory) -> None:
    release = asyncio.Event()
    got: list[Any] = []

    async def handler(session: AudioSession) -> None:
        await release.wait()
        got.extend([f async for f in session.frames()])
        got.append(session.dropped_frames)

    server = await make_server(handler, max_queued_frames=3)
    ast = await FakeAsterisk.connect(server.port)
    await ast.send(b"".join(encode_dtmf(d) for d in "12345") + encode_hangup())
    await asyncio.sleep(0.1)
    release.set()
    await eventually(lambda: len(got) == 4)
    ast.close()
    assert got == [Dtmf("3"), Dtmf("4"), Dtmf("5"), 2]


async def test_frames_has_one_consumer(make_server: ServerFactory) -> None:
    errors: list[Exception] = []

    async def handler(session: AudioSession) -> None:
        session.frames()  # an async generator: nothing runs until iterated
        first = session.frames()
        await anext(first, None)
        try:
            await anext(session.frames(), None)
        except RuntimeError as exc:
            errors.append(exc)

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port)
    await ast.send(encode_audio(PCM))
    await ast.read_until_hangup()
    ast.close()
    assert len(errors) == 1


# -- registry, limits, many sessions --------------------------------------------------------------


async def test_wait_session_for_an_agi_call(make_server: ServerFactory) -> None:
    server = await make_server(None)
    sid = uuid.uuid4()
    waiting = asyncio.create_task(server.wait_session(sid, STEP))
    await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    ast = FakeAsterisk(reader, writer)
    ast.uuid = sid
    await ast.send(encode_session_start(sid) + encode_dtmf("7"))
    session = await waiting
    assert session.uuid == sid
    assert await server.wait_session(sid, 0.01) is session  # already there: at once
    frames = session.frames()
    assert await anext(frames) == Dtmf("7")
    await session.send_audio(PCM)
    await session.hangup()
    assert await ast.read_until_hangup() == [PCM]
    await ast.expect_closed()
    ast.close()
    await eventually(lambda: server.active_sessions == 0)
    assert server.session(sid) is None


async def test_wait_session_times_out(make_server: ServerFactory) -> None:
    server = await make_server(None)
    with pytest.raises(TimeoutError):
        await server.wait_session(uuid.uuid4(), 0.05)
    assert server._waiters == {}


async def test_duplicate_uuid_is_rejected(make_server: ServerFactory) -> None:
    server = await make_server(None)
    first = await FakeAsterisk.connect(server.port)
    await eventually(lambda: server.session(first.uuid) is not None)
    second = FakeAsterisk(*await asyncio.open_connection("127.0.0.1", server.port))
    await second.send(encode_session_start(first.uuid))
    await second.expect_closed()
    second.close()
    session = server.session(first.uuid)
    assert session is not None and not session.closed
    await first.send(encode_hangup())
    await first.expect_closed()
    first.close()


async def test_max_sessions(make_server: ServerFactory) -> None:
    server = await make_server(None, max_sessions=1)
    first = await FakeAsterisk.connect(server.port)
    await eventually(lambda: server.session(first.uuid) is not None)
    with capture_logs() as logs:
        second = await FakeAsterisk.connect(server.port)
        await second.expect_closed()
    second.close()
    assert any(e.get("reason") == "too many sessions" for e in logs)
    first.close()
    await eventually(lambda: server.active_sessions == 0)


async def test_stop_ends_running_sessions(make_server: ServerFactory) -> None:
    server = await make_server(None)
    ast = await FakeAsterisk.connect(server.port)
    await eventually(lambda: server.session(ast.uuid) is not None)
    await server.stop()
    await ast.expect_closed()
    ast.close()
    assert server.active_sessions == 0


async def test_hundred_concurrent_sessions(make_server: ServerFactory) -> None:
    async def echo(session: AudioSession) -> None:
        async for frame in session.frames():
            if isinstance(frame, Audio):
                await session.send_audio(frame.pcm)
            elif frame.digit == "#":
                return

    server = await make_server(echo, max_sessions=200)
    loop = asyncio.get_running_loop()

    async def call(n: int) -> list[bytes]:
        ast = await FakeAsterisk.connect(server.port)
        pcm = n.to_bytes(2, "little") * (FRAME_BYTES // 2)
        try:
            await ast.send(encode_audio(pcm * 10) + encode_dtmf("#"))
            audio = await ast.read_until_hangup()
            assert audio == [pcm] * 10
            return audio
        finally:
            ast.close()

    started = loop.time()
    results = await asyncio.wait_for(asyncio.gather(*(call(n) for n in range(100))), 10)
    took = loop.time() - started
    assert len(results) == 100
    assert took < 3.0  # 10 paced frames each (0.2 s): they ran side by side
    await eventually(lambda: server.active_sessions == 0)
