"""A real Asterisk runs AudioSocket() against our server: UUID, caller audio and DTMF arrive,
our audio is accepted, and our hang-up frame ends the application so the dial plan goes on."""

from __future__ import annotations

import array
import asyncio
import math
import uuid
from collections.abc import AsyncIterator

import pytest

from ivr.audiosocket import FRAME_BYTES, Audio, Dtmf
from ivr.audiosocket_server import AudioSocketServer, PlayResult
from pbx.ami import AmiLink, AmiMessage
from pbx.asterisk import AsteriskInstance
from tests.support.asterisk import ami_link, running_asterisk

pytestmark = pytest.mark.integration

CONTEXT = "audiosocket-test"


@pytest.fixture
async def server() -> AsyncIterator[AudioSocketServer]:
    audio_server = AudioSocketServer(None, "127.0.0.1", 0)
    await audio_server.start()
    yield audio_server
    await audio_server.stop()


@pytest.fixture
async def asterisk() -> AsyncIterator[AsteriskInstance]:
    async with running_asterisk("audiosocket") as instance:
        yield instance


@pytest.fixture
async def ami(asterisk: AsteriskInstance) -> AsyncIterator[AmiLink]:
    link = ami_link(asterisk)
    await link.start()
    yield link
    await link.stop()


def rms(pcm: bytes) -> float:
    samples = array.array("h", pcm)  # little-endian on the hosts we run on
    return math.sqrt(sum(x * x for x in samples) / len(samples))


async def _wait_for(events: list[AmiMessage], name: str, within: float, **match: str) -> AmiMessage:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        for event in events:
            if event.get("Event") == name and all(event.get(k) == v for k, v in match.items()):
                return event
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} event {match} within {within}s")


async def test_asterisk_audiosocket_session(
    server: AudioSocketServer, asterisk: AsteriskInstance, ami: AmiLink
) -> None:
    sid = uuid.uuid4()
    # AudioSocket() needs an answered channel; after it returns 0 the dial plan goes on to
    # the UserEvent, which is how we see that our hang-up frame ended it gracefully.
    steps = [
        "s,1,Answer()",
        f"s,2,AudioSocket({sid},127.0.0.1:{server.port})",
        "s,3,UserEvent(AudioSocketDone)",
        "s,4,Hangup()",
    ]
    for step in steps:
        out = await ami.command(f"dialplan add extension {step} into {CONTEXT}")
        assert f"'{step}' added into '{CONTEXT}'" in out, out
    events: list[AmiMessage] = []
    ami.add_listener(events.append)

    # The ;1 half plays a prompt into the ;2 half, which runs the dial plan above.
    queued = await ami.originate(
        f"Local/s@{CONTEXT}", application="Playback", data="tt-monkeys", action_id="as-1"
    )
    assert queued["Response"] == "Success"
    session = await server.wait_session(sid, 10)
    assert session.uuid == sid

    frames = session.frames()
    audio: list[bytes] = []
    for _ in range(500):
        frame = await asyncio.wait_for(anext(frames), 2)
        if isinstance(frame, Audio):
            audio.append(frame.pcm)
        if len(audio) >= 50:
            break
    assert len(audio) >= 50
    assert {len(pcm) for pcm in audio} == {FRAME_BYTES}  # 20 ms of slin per frame
    assert max(rms(pcm) for pcm in audio) > 100  # the monkeys, not silence

    # DTMF pressed on the ;1 half reaches AudioSocket() on the ;2 half, which forwards it
    channel = (await _wait_for(events, "Newchannel", 5, Context=CONTEXT))["Channel"]
    caller_half = channel if channel.endswith(";1") else channel[:-1] + "1"
    await ami.action({"Action": "PlayDTMF", "Channel": caller_half, "Digit": "5"})
    digits: list[str] = []
    for _ in range(500):
        frame = await asyncio.wait_for(anext(frames), 2)
        if isinstance(frame, Dtmf):
            digits.append(frame.digit)
            break
    assert digits == ["5"]

    # our prompt is accepted (a rejected frame would make Asterisk hang up at once)
    prompt = (b"\x00\x10\x00\xf0" * (FRAME_BYTES // 4)) * 10  # 200 ms
    assert await session.send_audio(prompt) is PlayResult.FINISHED
    assert not session.closed

    await session.hangup()
    done = await _wait_for(events, "UserEvent", 5, UserEvent="AudioSocketDone")
    assert done["Context"] == CONTEXT
    await asyncio.wait_for(session.wait_closed(), 2)
    for _ in range(100):
        if server.active_sessions == 0:
            break
        await asyncio.sleep(0.05)
    assert server.active_sessions == 0
    complaints = [
        line
        for line in asterisk.log_tail(400).splitlines()
        if "audiosocket" in line.lower() and ("WARNING" in line or "ERROR" in line)
    ]
    assert complaints == []
