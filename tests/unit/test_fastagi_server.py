"""The FastAGI server over real loopback sockets, with asyncio streams playing Asterisk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from pbx.fastagi import AgiChannel, AgiError, AgiHangup, FastAgiServer
from tests.support.polling import eventually as poll

Handler = Callable[[AgiChannel], Awaitable[None]]
ServerFactory = Callable[..., Awaitable[FastAgiServer]]

STEP = 2.0  # generous bound for any single network step in these tests


def header(uniqueid: str = "1712345678.1", script: str = "city?lang=pl&x=1") -> bytes:
    return (
        "agi_network: yes\n"
        f"agi_network_script: {script}\n"
        f"agi_request: agi://127.0.0.1/{script}\n"
        "agi_channel: PJSIP/caller-00000001\n"
        f"agi_uniqueid: {uniqueid}\n"
        "agi_callerid: 48221234567\n"
        "agi_calleridname: Resident\n"
        "\n"
    ).encode()


class FakeAsterisk:
    """The Asterisk side of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, hdr: bytes | None = None) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        fake = cls(reader, writer)
        if hdr is not None:
            await fake.send(hdr)
        return fake

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def expect(self, command: bytes) -> None:
        line = await asyncio.wait_for(self.reader.readline(), STEP)
        assert line == command

    async def reply(self, command: bytes, answer: bytes) -> None:
        await self.expect(command)
        await self.send(answer)

    async def expect_closed(self) -> None:
        """The server closed the connection (maybe after sending nothing more)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), STEP)
        except ConnectionResetError:
            return  # closed with our unread bytes in its buffer: the kernel sends RST
        assert rest == b""

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[FastAgiServer] = []

    async def factory(handler: Handler, **kwargs: Any) -> FastAgiServer:
        kwargs.setdefault("header_timeout", 0.2)
        server = FastAgiServer(handler, "127.0.0.1", 0, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()


async def eventually(predicate: Callable[[], bool], within: float = STEP) -> None:
    await poll(predicate, within)


# -- a normal call ---------------------------------------------------------------------------


async def test_normal_session_with_several_commands(make_server: ServerFactory) -> None:
    seen: dict[str, Any] = {}

    async def handler(ch: AgiChannel) -> None:
        seen["ids"] = (ch.uniqueid, ch.caller_number, ch.script, dict(ch.params))
        seen["env_channel"] = ch.env["agi_channel"]
        seen["context"] = structlog.contextvars.get_contextvars()
        await ch.answer()
        seen["lang"] = await ch.get_variable("CHANNEL(language)")
        seen["unset"] = await ch.get_variable("NOPE")
        await ch.set_variable("CITYLINE_CALL_ID", "call 1")
        seen["digits"] = await ch.get_data("pl/menu", 3000, 1)
        seen["nothing"] = await ch.get_data("pl/menu", 3000, 1)
        seen["partial"] = await ch.get_data("pl/menu", 3000, 4)
        seen["pressed"] = await ch.stream_file("pl/hello", "12")
        await ch.set_music(True)
        reply = await ch.exec("Dial", "PJSIP/agent1", "20", "")
        seen["dial"] = reply.result
        seen["hung_up"] = ch.hung_up

    server = await make_server(handler)
    assert server.port > 0
    ast = await FakeAsterisk.connect(server.port, header())
    await ast.reply(b"ANSWER\n", b"200 result=0\n")
    await ast.reply(b"GET VARIABLE CHANNEL(language)\n", b"200 result=1 (pl)\n")
    await ast.reply(b"GET VARIABLE NOPE\n", b"200 result=0\n")
    await ast.reply(b'SET VARIABLE CITYLINE_CALL_ID "call 1"\n', b"200 result=1\n")
    await ast.reply(b"GET DATA pl/menu 3000 1\n", b"100 result=0 Trying...\n200 result=2\n")
    await ast.reply(b"GET DATA pl/menu 3000 1\n", b"200 result= (timeout)\n")
    await ast.reply(b"GET DATA pl/menu 3000 4\n", b"200 result=12 (timeout)\n")
    await ast.reply(b"STREAM FILE pl/hello 12\n", b"200 result=49 endpos=8000\n")
    await ast.reply(b"SET MUSIC ON default\n", b"200 result=0\n")
    await ast.reply(b"EXEC Dial PJSIP/agent1,20,\n", b"200 result=0\n")
    await ast.expect_closed()
    ast.close()

    assert seen["ids"] == ("1712345678.1", "48221234567", "city", {"lang": "pl", "x": "1"})
    assert seen["env_channel"] == "PJSIP/caller-00000001"
    assert seen["context"]["agi_uniqueid"] == "1712345678.1"
    assert seen["context"]["script"] == "city"
    assert seen["lang"] == "pl"
    assert seen["unset"] is None
    assert (seen["digits"], seen["nothing"], seen["partial"]) == ("2", "", "12")
    assert seen["pressed"] == "1"
    assert seen["dial"] == "0"
    assert seen["hung_up"] is False
    await eventually(lambda: server.active_sessions == 0)


async def test_rejected_commands_raise_but_keep_the_session_in_step(
    make_server: ServerFactory,
) -> None:
    errors: list[str] = []
    after: list[str | None] = []

    async def handler(ch: AgiChannel) -> None:
        for words in (("DATABASE", "GET"), ("BOGUS",), ("GOSUB", "x")):
            with pytest.raises(AgiError) as info:
                await ch.command(*words)
            errors.append(str(info.value))
        after.append(await ch.get_variable("X"))

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port, header())
    await ast.reply(
        b"DATABASE GET\n",
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b"Usage: DATABASE GET <family> <key>\n"
        b"520 End of proper usage.\n",
    )
    await ast.reply(b"BOGUS\n", b"510 Invalid or unknown command\n")
    await ast.reply(b"GOSUB x\n", b"520 Invalid command syntax.  Proper usage not available.\n")
    await ast.reply(b"GET VARIABLE X\n", b"200 result=1 (transfer)\n")
    await ast.expect_closed()
    ast.close()
    assert "DATABASE GET <family> <key>" in errors[0]
    assert "510" in errors[1]
    assert "not available" in errors[2]
    assert after == ["transfer"]


async def test_newline_in_an_argument_is_refused_before_sending(
    make_server: ServerFactory,
) -> None:
    async def handler(ch: AgiChannel) -> None:
        with pytest.raises(ValueError):
            await ch.set_variable("X", "1\nEXEC Dial PJSIP/premium")
        await ch.set_variable("X", "ok")

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port, header())
    await ast.reply(b"SET VARIABLE X ok\n", b"200 result=1\n")
    await ast.expect_closed()
    ast.close()


# -- connections that go wrong ----------------------------------------------------------------


async def normal_call(port: int, uniqueid: str = "9.9") -> None:
    ast = await FakeAsterisk.connect(port, header(uniqueid))
    await ast.reply(b"GET VARIABLE X\n", f"200 result=1 ({uniqueid})\n".encode())
    await ast.expect_closed()
    ast.close()


def echo_handler(results: list[str | None]) -> Handler:
    async def handler(ch: AgiChannel) -> None:
        results.append(await ch.get_variable("X"))

    return handler


async def test_connection_closed_before_header_end(make_server: ServerFactory) -> None:
    results: list[str | None] = []
    server = await make_server(echo_handler(results))
    with capture_logs() as logs:
        ast = await FakeAsterisk.connect(server.port, b"agi_network: yes\nagi_uniq")
        ast.close()
        await eventually(lambda: any(e["event"] == "agi_header_failed" for e in logs))
    failed = next(e for e in logs if e["event"] == "agi_header_failed")
    assert "before the header ended" in failed["reason"]
    assert failed["peer"].startswith("127.0.0.1:")
    await normal_call(server.port)
    assert results == ["9.9"]
    await eventually(lambda: server.active_sessions == 0)


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\n", b"\n\n"],
)
async def test_garbage_header_closes_that_connection(
    make_server: ServerFactory, garbage: bytes
) -> None:
    results: list[str | None] = []
    server = await make_server(echo_handler(results))
    with capture_logs() as logs:
        ast = await FakeAsterisk.connect(server.port, garbage)
        await ast.expect_closed()
        ast.close()
    assert any(e["event"] == "agi_header_failed" for e in logs)
    await normal_call(server.port)
    assert results == ["9.9"]


async def test_stalled_header_times_out_while_others_are_served(
    make_server: ServerFactory,
) -> None:
    results: list[str | None] = []
    server = await make_server(echo_handler(results), header_timeout=0.2)
    with capture_logs() as logs:
        stalled = await FakeAsterisk.connect(server.port, b"agi_network: yes\n")
        silent = await FakeAsterisk.connect(server.port)
        # served while both stall
        await asyncio.gather(*(normal_call(server.port, f"{i}.0") for i in range(5)))
        assert sorted(r or "" for r in results) == [f"{i}.0" for i in range(5)]
        assert server.active_sessions == 2
        await stalled.expect_closed()
        await silent.expect_closed()
        stalled.close()
        silent.close()
    reasons = [e["reason"] for e in logs if e["event"] == "agi_header_failed"]
    assert reasons == ["header timeout", "header timeout"]
    await eventually(lambda: server.active_sessions == 0)


async def test_garbage_mid_session_fails_the_pending_command(make_server: ServerFactory) -> None:
    outcome: list[BaseException] = []

    async def handler(ch: AgiChannel) -> None:
        try:
            await ch.get_variable("X")
        except AgiError as exc:
            outcome.append(exc)
        with pytest.raises(AgiError):
            await ch.get_variable("Y")  # the session is over
        await ch.wait_hangup()  # resolves: the call is no longer ours

    server = await make_server(handler)
    with capture_logs() as logs:
        ast = await FakeAsterisk.connect(server.port, header())
        await ast.reply(b"GET VARIABLE X\n", b"I am not Asterisk\n")
        await ast.expect_closed()
        ast.close()
        await eventually(lambda: server.active_sessions == 0)
    assert len(outcome) == 1 and "protocol error" in str(outcome[0])
    error = next(e for e in logs if e["event"] == "agi_protocol_error")
    assert error["line"] == "I am not Asterisk"


async def test_reply_without_a_command_ends_the_session(make_server: ServerFactory) -> None:
    done = asyncio.Event()

    async def handler(ch: AgiChannel) -> None:
        await ch.wait_hangup()
        assert ch.closed and not ch.hung_up
        done.set()

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port, header())
    await ast.send(b"200 result=1\n")
    await ast.expect_closed()
    ast.close()
    await asyncio.wait_for(done.wait(), STEP)


async def test_command_timeout_raises_and_ends_the_session(make_server: ServerFactory) -> None:
    outcome: list[str] = []

    async def handler(ch: AgiChannel) -> None:
        with pytest.raises(AgiError, match="timeout"):
            await ch.command("GET", "VARIABLE", "SLOW", timeout=0.2)
        with pytest.raises(AgiError, match="session ended"):
            await ch.get_variable("X")
        outcome.append("ok")

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port, header())
    await ast.expect(b"GET VARIABLE SLOW\n")
    await ast.expect_closed()  # no answer sent: the server gives up and hangs up on us
    ast.close()
    await eventually(lambda: outcome == ["ok"])


# -- hang-ups ----------------------------------------------------------------------------------


async def test_async_hangup_while_waiting(make_server: ServerFactory) -> None:
    seen: dict[str, Any] = {}

    async def handler(ch: AgiChannel) -> None:
        await ch.set_music(True)
        assert not ch.hung_up
        await ch.wait_hangup()  # no command is running while the caller waits
        seen["hung_up"] = ch.hung_up
        # dead-channel mode: GET VARIABLE still works, others get 511
        seen["status"] = await ch.get_variable("DIALSTATUS")
        with pytest.raises(AgiHangup):
            await ch.set_music(False)

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port, header())
    await ast.reply(b"SET MUSIC ON default\n", b"200 result=0\n")
    await asyncio.sleep(0.05)
    await ast.send(b"HANGUP\n")
    await ast.reply(b"GET VARIABLE DIALSTATUS\n", b"200 result=1 (CANCEL)\n")
    await ast.reply(
        b"SET MUSIC OFF default\n",
        b"511 Command Not Permitted on a dead channel or intercept routine\n",
    )
    await ast.send(b"HANGUP\n")  # res_agi repeats it when the script ends
    await ast.expect_closed()
    ast.close()
    assert seen == {"hung_up": True, "status": "CANCEL"}


async def test_hangup_notice_during_a_command_keeps_replies_in_step(
    make_server: ServerFactory,
) -> None:
    seen: list[Any] = []

    async def handler(ch: AgiChannel) -> None:
        with pytest.raises(AgiHangup):
            await ch.stream_file("pl/hello")
        seen.append(ch.hung_up)
        seen.append(await ch.get_variable("DIALSTATUS"))

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port, header())
    await ast.expect(b'STREAM FILE pl/hello ""\n')
    # HANGUP went out just before Asterisk read our command; the 511 is that command's reply
    await ast.send(b"HANGUP\n511 Command Not Permitted on a dead channel\n")
    await ast.reply(b"GET VARIABLE DIALSTATUS\n", b"200 result=1 (NOANSWER)\n")
    await ast.expect_closed()
    ast.close()
    assert seen == [True, "NOANSWER"]


async def test_eof_while_a_command_runs_is_a_hangup(make_server: ServerFactory) -> None:
    seen: list[Any] = []

    async def handler(ch: AgiChannel) -> None:
        with pytest.raises(AgiHangup):
            await ch.exec("Dial", "PJSIP/agent1", "20")
        seen.append(ch.hung_up)
        with pytest.raises(AgiHangup):
            await ch.get_variable("X")  # nothing is sent on a closed connection
        await ch.wait_hangup()
        seen.append("done")

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port, header())
    await ast.expect(b"EXEC Dial PJSIP/agent1,20\n")
    ast.close()
    await eventually(lambda: seen == [True, "done"])


async def test_exec_minus_one_and_get_data_minus_one_are_hangups(
    make_server: ServerFactory,
) -> None:
    seen: list[str] = []

    async def handler(ch: AgiChannel) -> None:
        with pytest.raises(AgiHangup):
            await ch.exec("Playback", "pl/hello")
        seen.append("exec")
        with pytest.raises(AgiHangup):
            await ch.get_data("pl/menu", 1000, 1)
        seen.append("get_data")

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port, header())
    await ast.reply(b"EXEC Playback pl/hello\n", b"200 result=-1\n")
    await ast.reply(b"GET DATA pl/menu 1000 1\n", b"200 result=-1\n")
    await ast.expect_closed()
    ast.close()
    assert seen == ["exec", "get_data"]


async def test_cancelled_command_does_not_shift_later_replies(make_server: ServerFactory) -> None:
    seen: list[str | None] = []

    async def handler(ch: AgiChannel) -> None:
        task = asyncio.create_task(ch.get_variable("FIRST"))
        await asyncio.sleep(0.05)
        task.cancel()
        seen.append(await ch.get_variable("SECOND"))

    server = await make_server(handler)
    ast = await FakeAsterisk.connect(server.port, header())
    await ast.expect(b"GET VARIABLE FIRST\n")
    await asyncio.sleep(0.1)  # the handler gives up on FIRST meanwhile
    await ast.send(b"200 result=1 (first)\n")
    await ast.reply(b"GET VARIABLE SECOND\n", b"200 result=1 (second)\n")
    await ast.expect_closed()
    ast.close()
    assert seen == ["second"]


# -- the server --------------------------------------------------------------------------------


async def test_handler_exception_does_not_stop_the_server(make_server: ServerFactory) -> None:
    calls: list[str] = []

    async def handler(ch: AgiChannel) -> None:
        calls.append(ch.uniqueid)
        if ch.uniqueid == "boom":
            raise RuntimeError("handler bug")
        await ch.get_variable("X")

    server = await make_server(handler)
    with capture_logs() as logs:
        ast = await FakeAsterisk.connect(server.port, header("boom"))
        await ast.expect_closed()
        ast.close()
        await eventually(lambda: server.active_sessions == 0)
    failed = next(e for e in logs if e["event"] == "agi_handler_failed")
    assert failed["exc_info"] is True
    await normal_call(server.port)
    assert calls == ["boom", "9.9"]


async def test_stop_ends_running_sessions(make_server: ServerFactory) -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def handler(ch: AgiChannel) -> None:
        started.set()
        try:
            await ch.wait_hangup()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    server = await make_server(handler)
    calls = [await FakeAsterisk.connect(server.port, header(f"{i}.1")) for i in range(3)]
    await asyncio.wait_for(started.wait(), STEP)
    await eventually(lambda: server.active_sessions == 3)
    await asyncio.wait_for(server.stop(), STEP)
    assert server.active_sessions == 0
    assert cancelled == [True, True, True]
    for ast in calls:
        await ast.expect_closed()
        ast.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


async def test_max_sessions_turns_away_the_excess(make_server: ServerFactory) -> None:
    release = asyncio.Event()

    async def handler(ch: AgiChannel) -> None:
        await release.wait()

    server = await make_server(handler, max_sessions=2)
    first = [await FakeAsterisk.connect(server.port, header(f"{i}.2")) for i in range(2)]
    await eventually(lambda: server.active_sessions == 2)
    with capture_logs() as logs:
        extra = await FakeAsterisk.connect(server.port, header("3.2"))
        await extra.expect_closed()
        extra.close()
    assert any(e["event"] == "agi_session_rejected" for e in logs)
    release.set()
    for ast in first:
        await ast.expect_closed()
        ast.close()


async def test_200_concurrent_sessions(make_server: ServerFactory) -> None:
    served: list[str] = []

    async def handler(ch: AgiChannel) -> None:
        value = await ch.get_variable("X")
        await ch.set_music(True)
        assert value == ch.uniqueid
        served.append(ch.uniqueid)

    server = await make_server(handler)

    async def call(i: int) -> None:
        uid = f"1000.{i}"
        ast = await FakeAsterisk.connect(server.port, header(uid))
        await ast.reply(b"GET VARIABLE X\n", f"200 result=1 ({uid})\n".encode())
        await ast.reply(b"SET MUSIC ON default\n", b"200 result=0\n")
        await ast.expect_closed()
        ast.close()

    await asyncio.wait_for(asyncio.gather(*(call(i) for i in range(200))), 20)
    assert sorted(served) == sorted(f"1000.{i}" for i in range(200))
    await eventually(lambda: server.active_sessions == 0)


async def test_with_a_key_only_connections_that_carry_it_become_calls(
    make_server: ServerFactory,
) -> None:
    calls: list[str] = []

    async def handler(channel: AgiChannel) -> None:
        calls.append(channel.params.get("lang", ""))

    server = await make_server(handler, key="s3cret-key")
    with capture_logs() as logs:
        for script in ("city?lang=pl", "city?lang=pl&key=wrong", "city?key=s3cret-key-and-more"):
            intruder = await FakeAsterisk.connect(server.port, header(script=script))
            await intruder.expect_closed()
            intruder.close()
        assert calls == []
        assert [e["reason"] for e in logs if e["event"] == "agi_session_refused"] == [
            "missing or wrong key"
        ] * 3
        asterisk = await FakeAsterisk.connect(
            server.port, header(script="city?lang=en&key=s3cret-key")
        )
        await eventually(lambda: calls == ["en"])
        asterisk.close()
