"""The ACD on live calls: widening when the target is at risk, why a call waits, the
wallboard, and phones that come and go."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from cityline.simulated.sipp import call_with_keys
from cityline.wiring import CityLine
from tests.conftest import CityFactory
from tests.support.checks import agent_is, eventually, only_call
from tests.support.desk import AgentAtDesk, admin_headers, base_url

pytestmark = pytest.mark.integration
ENGLISH_WASTE = [(1.0, "2"), (1.5, "2")]


async def test_a_call_nobody_skilled_can_take_widens_to_any_english_speaker(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    city = await make_city(widening="target")
    # Nobody has the waste group; Ida speaks English and knows roads.
    ida = await AgentAtDesk(city, http, "ida", {"lang:en": 3, "group:roads": 4}).arrive()
    try:
        caller = asyncio.create_task(
            call_with_keys(city.settings.sip_port, ENGLISH_WASTE, hold_seconds=30)
        )
        pop = await ida.next_message("pop", timeout=30)
        assert pop["service_group"] == "waste"
        assert (await caller).ok
        call = await only_call(city)
        assert call["outcome"] == "answered" and call["answered_within_target"] is True
        assert city.calls is not None
        offered = [e for e in await city.calls.call_events(call["id"]) if e["kind"] == "offered"]
        assert offered and offered[0]["detail"]["rung"] > 0  # served by widening, not its own skill
    finally:
        await ida.leave()


async def test_strict_queues_keep_the_call_waiting_and_say_why(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    city = await make_city(widening="strict")
    jan = await AgentAtDesk(city, http, "jan", {"lang:en": 3, "group:roads": 4}).arrive()
    try:
        caller = asyncio.create_task(
            call_with_keys(city.settings.sip_port, ENGLISH_WASTE, hang_up_after=9.0)
        )
        call = await only_call(city, ended=False)

        async def explained() -> dict | None:
            async with http.get(
                f"{base_url(city)}/api/acd/calls/{call['id']}/why", headers=admin_headers(city)
            ) as response:
                return dict(await response.json()) if response.status == 200 else None

        why = await eventually(explained)
        assert why["state"] == "waiting", why
        assert why.get("why"), why
        assert (await caller).hung_up_by == "caller"
        assert (await only_call(city))["outcome"] == "abandoned_queue"
        assert not jan.phone or not jan.phone.ring_times  # never offered outside its skills
    finally:
        await jan.leave()


async def test_the_wallboard_shows_a_waiting_call_within_a_second(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    kit = await AgentAtDesk(city, http, "kit", {"lang:pl": 3, "group:roads": 3}).arrive(ready=False)
    try:
        status, _ = await kit.api("GET", "/api/wallboard")
        assert status == 403  # agents cannot open the wallboard
        url = base_url(city).replace("http", "ws") + f"/ws/wallboard?token={city.admin_token}"
        async with http.ws_connect(url) as board:
            first = await board.receive_json(timeout=5)
            assert first["type"] == "wallboard" and first["live"]["calls"]["waiting"] == 0
            assert "today" in first["service_level"]
            caller = asyncio.create_task(
                call_with_keys(city.settings.sip_port, [(1.0, "1"), (1.5, "1")], hang_up_after=8.0)
            )
            call = await only_call(city, ended=False)

            async def queued() -> bool:
                assert city.calls is not None
                row = await city.calls.get_call(call["id"])
                return bool(row and row["queued_at"])

            await eventually(queued, timeout=10)
            loop = asyncio.get_running_loop()
            seen_at = None
            queued_seen = loop.time()
            while seen_at is None:
                state = json.loads((await board.receive(timeout=5)).data)
                if state["live"]["calls"]["waiting"] == 1:
                    seen_at = loop.time()
            assert seen_at - queued_seen < 1.0
            await caller
            while True:
                state = json.loads((await board.receive(timeout=5)).data)
                if state["live"]["calls"]["waiting"] == 0:
                    break
            assert state["service_level"]["today"]["overall"]["abandoned"] >= 1
    finally:
        await kit.leave()


async def test_an_agent_whose_phone_goes_away_is_not_offered_calls(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    lou = await AgentAtDesk(city, http, "lou", {"lang:pl": 3, "group:roads": 3}).arrive()
    try:
        await eventually(agent_is(city, "lou", reachable=True))
        assert lou.phone is not None
        await asyncio.to_thread(lou.phone.stop)  # unregisters
        await eventually(agent_is(city, "lou", reachable=False))
    finally:
        lou.phone = None
        await lou.leave()
