"""Queued callback: the resident presses 1, hangs up, and is called back when their turn comes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest

from cityline.simulated.sipp import call_with_keys, free_udp_port
from tests.conftest import CityFactory
from tests.support.checks import agent_is, eventually, only_call
from tests.support.desk import AgentAtDesk

pytestmark = pytest.mark.integration
POLISH_WASTE_THEN_CALLBACK = [(1.0, "1"), (1.5, "2"), (4.0, "1")]


@contextlib.asynccontextmanager
async def resident_phone(port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """The resident's phone behind the trunk: answers one call, waits for the BYE."""
    rtp = free_udp_port(4)
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
        "-mp", str(rtp), "-rtp_echo", "-m", "1", "-nostdin", "-timeout", "90s",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()


async def test_a_resident_who_presses_1_is_called_back_by_the_next_free_agent(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    trunk_port = free_udp_port()
    city = await make_city(callback_trunk=f"127.0.0.1:{trunk_port}", announce_period_seconds=60)
    mia = await AgentAtDesk(
        city, http, "mia", {"lang:pl": 4, "group:waste": 4}, talk_seconds=4.0
    ).arrive(ready=False)
    try:
        async with resident_phone(trunk_port) as phone:
            waiting = await call_with_keys(
                city.settings.sip_port,
                POLISH_WASTE_THEN_CALLBACK,
                caller="48601999888",
                hold_seconds=20,
            )
            assert waiting.ok and waiting.hung_up_by == "pbx"  # confirmed, then goodbye
            call = await only_call(city)
            assert call["outcome"] == "callback_requested"
            assert city.acd is not None and city.acd.waiting_count() == 1  # kept its place

            await mia.set_state("ready")
            pop = await mia.next_message("pop", timeout=20)
            assert pop["callback"] is True and pop["caller_number"] == "48601999888"
            assert await asyncio.wait_for(phone.wait(), timeout=40) == 0  # reached and hung up

        assert city.calls is not None

        await eventually(agent_is(city, "mia", state="ready"))  # the callback is over
        record = await city.calls.get_call(call["id"])
        assert record is not None
        assert (record["outcome"], record["agent"]) == ("callback_answered", "mia")
        assert record["ended_at"] > record["answered_at"]
        kinds = [e["kind"] for e in await city.calls.call_events(call["id"])]
        assert {"callback_requested", "callback_ringing_agent", "callback_answered"} <= set(kinds)
        assert kinds[-1] == "ended"
    finally:
        await mia.leave()


async def test_an_unreachable_resident_becomes_a_follow_up_case(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    # Nothing answers on the trunk: every attempt fails, then a case is opened for follow-up.
    city = await make_city(
        callback_trunk=f"127.0.0.1:{free_udp_port()}", announce_period_seconds=60
    )
    assert city.acd is not None
    city.acd.engine.callback_retry_seconds = 1.0
    city.acd.engine.callback_max_attempts = 2
    ned = await AgentAtDesk(city, http, "ned", {"lang:pl": 4, "group:waste": 4}).arrive(ready=False)
    try:
        waiting = await call_with_keys(
            city.settings.sip_port,
            POLISH_WASTE_THEN_CALLBACK,
            caller="48601777666",
            hold_seconds=20,
        )
        assert waiting.ok
        call = await only_call(city)
        await ned.set_state("ready")
        assert city.calls is not None

        async def follow_up() -> dict | None:
            assert city.calls is not None
            row = await city.calls.get_call(call["id"])
            return row if row and row["outcome"] == "callback_failed" else None

        await eventually(follow_up, timeout=90)
        cases = (await ned.api("GET", f"/api/calls/{call['id']}"))[1]["cases"]
        assert len(cases) == 1 and "48601777666" in cases[0]["description"]
        assert cases[0]["service_group"] == "waste" and cases[0]["department"] == "sanitation"
    finally:
        await ned.leave()


async def test_waiting_residents_hear_their_position_and_can_ask_for_a_callback(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    city = await make_city(callback_trunk=f"127.0.0.1:{free_udp_port()}", announce_period_seconds=2)
    olga = await AgentAtDesk(city, http, "olga", {"lang:en": 4, "group:roads": 4}).arrive(
        ready=False
    )
    try:
        result = await call_with_keys(
            city.settings.sip_port, [(1.0, "2"), (1.5, "1")], caller="48601555444", hang_up_after=20
        )
        call = await only_call(city)
        assert city.calls is not None
        events = await city.calls.call_events(call["id"])
        announced = [e["detail"] for e in events if e["kind"] == "announced"]
        assert announced and announced[0]["prompts"][0] == "position_1"
        assert announced[0]["prompts"][-1] == "callback_offer"
        assert result.hung_up_by == "caller" and call["outcome"] == "abandoned_queue"
    finally:
        await olga.leave()
