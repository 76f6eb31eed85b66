"""Our Asterisk instance: agents appear after a reload, and the dial plan routes a resident's
call to FastAGI and falls back to the queue when the service is not there."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx.ami import AmiLink, AmiMessage
from pbx.asterisk import AgentEndpoint, AsteriskInstance, reload_agents
from tests.support.asterisk import ami_link, free_port, running_asterisk
from tests.support.polling import eventually as poll
from tests.support.requirements import require

pytestmark = pytest.mark.integration

SIPP = shutil.which("sipp")


@pytest.fixture
async def agi_port() -> int:
    return free_port()


@pytest.fixture
async def asterisk(agi_port: int) -> AsyncIterator[AsteriskInstance]:
    async with running_asterisk("pbx", agi_port) as instance:
        yield instance


@pytest.fixture
async def ami(asterisk: AsteriskInstance) -> AsyncIterator[AmiLink]:
    link = ami_link(asterisk)
    await link.start()
    yield link
    await link.stop()


async def test_instance_layout(asterisk: AsteriskInstance) -> None:
    assert asterisk.running
    sandbox = asterisk.settings.sandbox_root
    assert asterisk.host_path(asterisk.spool_dir).is_dir()
    assert asterisk.host_path(asterisk.asterisk_sounds_dir) == asterisk.sounds_dir
    if sandbox is not None:
        assert asterisk.spool_dir.startswith("/var/lib/cityline/")
        assert asterisk.run_dir.is_relative_to(sandbox)
    assert (asterisk.etc_dir / "manager.conf").stat().st_mode & 0o077 == 0  # holds the secret


async def test_asterisk_does_not_run_as_root(asterisk: AsteriskInstance) -> None:
    """It drops to its own user once started; its config belongs to that user alone."""
    assert asterisk.pid is not None

    def uid_of(pid: int) -> int:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])

    pid = asterisk.pid
    await poll(lambda: uid_of(pid) != 0, 10)  # it drops to its user just after starting
    uid = uid_of(pid)
    assert uid != 0
    manager = (asterisk.etc_dir / "manager.conf").stat()
    assert manager.st_uid == uid and manager.st_mode & 0o077 == 0


async def test_agents_appear_after_reload(asterisk: AsteriskInstance, ami: AmiLink) -> None:
    assert "agent-x" not in await ami.command("pjsip show endpoints")
    asterisk.write_agents(
        [AgentEndpoint("agent-x", "s3cret-x"), AgentEndpoint("agent-y", "s3cret-y")]
    )
    await reload_agents(ami)
    endpoint = await ami.command("pjsip show endpoint agent-x")
    assert "city-agents" in endpoint
    assert "agent-x-auth" in endpoint
    queue = await ami.command("queue show cityline-fallback")
    assert "PJSIP/agent-x" in queue and "PJSIP/agent-y" in queue

    asterisk.write_agents([AgentEndpoint("agent-y", "s3cret-y")])
    await reload_agents(ami)
    assert "agent-x" not in await ami.command("pjsip show endpoints")
    queue = await ami.command("queue show cityline-fallback")
    assert "PJSIP/agent-x" not in queue and "PJSIP/agent-y" in queue


async def test_originate_reports_its_outcome_as_an_event(ami: AmiLink) -> None:
    events: list[AmiMessage] = []
    ami.add_listener(events.append)
    queued = await ami.originate(
        "Local/19115@city-inbound", application="Wait", data="1", action_id="cityline-test-1"
    )
    assert queued["Response"] == "Success"
    outcome = await _wait_for_event(events, "OriginateResponse", 10)
    assert outcome["ActionID"] == "cityline-test-1"
    assert outcome["Response"] == "Success"


async def _call_19115(asterisk: AsteriskInstance, hold_ms: int) -> asyncio.subprocess.Process:
    """A resident's call with sipp's built-in UAC: INVITE 19115, hold, then BYE."""
    assert SIPP is not None
    return await asyncio.create_subprocess_exec(
        SIPP,
        "-sn",
        "uac",
        f"127.0.0.1:{asterisk.settings.sip_port}",
        "-s",
        "19115",
        "-m",
        "1",
        "-d",
        str(hold_ms),
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port(udp_too=True)),
        "-mp",
        str(free_port(udp_too=True)),
        "-nostdin",
        "-timeout",
        "30s",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _wait_for_event(events: list[AmiMessage], name: str, within: float) -> AmiMessage:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for event in events:
            if event.get("Event") == name:
                return event
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} event within {within}s: {[e.get('Event') for e in events]}")


@pytest.mark.parametrize("service", ["closes", "absent"])
async def test_call_reaches_agi_then_falls_back_to_queue(
    asterisk: AsteriskInstance, ami: AmiLink, agi_port: int, service: str
) -> None:
    require(SIPP, "sipp (Debian sip-tester)")
    headers: list[bytes] = []

    async def agi_that_gives_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers.append(await reader.readuntil(b"\n\n"))
        writer.close()  # the service "dies" before handling the call

    server = (
        await asyncio.start_server(agi_that_gives_up, "127.0.0.1", agi_port)
        if service == "closes"
        else None
    )
    events: list[AmiMessage] = []
    ami.add_listener(events.append)
    sipp = await _call_19115(asterisk, hold_ms=3000)
    try:
        fallback = await _wait_for_event(events, "UserEvent", 10)
        assert fallback["UserEvent"] == "CityLineFallback"
        assert fallback["Caller"] == "sipp"
        assert fallback["Channel"].startswith("PJSIP/anonymous-")
        joined = await _wait_for_event(events, "QueueCallerJoin", 5)
        assert joined["Queue"] == "cityline-fallback"
        assert "PJSIP/anonymous-" in await ami.command("queue show cityline-fallback")
        if server is not None:
            key = asterisk.settings.agi_key
            assert f"agi_network_script: city?key={key}\n".encode() in headers[0]
            assert b"agi_context: city-inbound\n" in headers[0]
        assert await asyncio.wait_for(sipp.wait(), 20) == 0
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
        if server is not None:
            server.close()
