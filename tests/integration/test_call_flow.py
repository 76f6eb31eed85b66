"""A resident's call through the real Asterisk to a pyVoIP agent, and what it leaves behind."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest

from cityline.simulated.sipp import call_with_keys
from cityline.wiring import CityLine
from tests.support.checks import agent_is, eventually, no_call_left, only_call
from tests.support.desk import AgentAtDesk

pytestmark = pytest.mark.integration
T = TypeVar("T")

ENGLISH_ROADS = [(1.0, "2"), (1.5, "1")]  # English, then roads and street lighting


async def test_resident_reaches_agent_and_case_is_stored(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    anna = await AgentAtDesk(
        city, http, "anna", {"lang:en": 4, "lang:pl": 5, "group:roads": 4}
    ).arrive()
    try:
        caller = asyncio.create_task(
            call_with_keys(
                city.settings.sip_port, ENGLISH_ROADS, caller="48601222333", hold_seconds=30
            )
        )
        pop = await anna.next_message("pop", timeout=30)
        assert pop["caller_number"] == "48601222333"
        assert pop["language"] == "en"
        assert pop["service_group"] == "roads"
        assert pop["waited_seconds"] >= 0
        assert pop["earlier_cases"] == []
        result = await caller
        assert result.ok, result.errors or result.stderr
        assert result.hung_up_by == "pbx"  # the agent finished the call, not the resident
        assert anna.phone is not None and len(anna.phone.answered) == 1

        status, case = await anna.api(
            "POST",
            "/api/cases",
            {
                "call_id": pop["call_id"],
                "service_group": "roads",
                "description": "Street light out",
                "address": "Main Street 5",
            },
        )
        assert status == 201, case
        assert case["department"] == "roads" and case["caller_number"] == "48601222333"

        call = await only_call(city)
        assert str(call["id"]) == pop["call_id"]
        assert call["outcome"] == "answered"
        assert call["agent"] == "anna"
        assert call["language"] == "en" and call["service_group"] == "roads"
        stamps = [
            "arrived_at",
            "ivr_ended_at",
            "queued_at",
            "offered_at",
            "answered_at",
            "ended_at",
        ]
        times = [call[name] for name in stamps]
        assert all(times) and times == sorted(times), dict(zip(stamps, times, strict=True))
        assert call["answered_within_target"] is True
        assert 0 <= call["wait_seconds"] < 15

        async def recorded() -> str | None:
            assert city.calls is not None
            row = await city.calls.get_call(uuid.UUID(pop["call_id"]))
            return row["recording_path"] if row else None

        recording = Path(await eventually(recorded))
        assert recording.is_file() and recording.stat().st_size > 1000
        assert recording.is_relative_to(city.settings.recordings_dir)

        # The next call from the same number pops with the case just made.
        caller = asyncio.create_task(
            call_with_keys(
                city.settings.sip_port, ENGLISH_ROADS, caller="48601222333", hold_seconds=30
            )
        )
        second_pop = await anna.next_message("pop", timeout=30)
        assert [c["id"] for c in second_pop["earlier_cases"]] == [case["id"]]
        assert (await caller).ok
    finally:
        await anna.leave()


async def test_caller_hangs_up_in_the_ivr(city: CityLine) -> None:
    result = await call_with_keys(city.settings.sip_port, [], hang_up_after=2.0)
    assert result.hung_up_by == "caller"
    call = await only_call(city)
    assert call["outcome"] == "abandoned_ivr"
    assert call["queued_at"] is None
    assert city.agi is not None
    await eventually(lambda: no_call_left(city))


async def test_caller_hangs_up_while_waiting_in_the_queue(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    # An agent is logged in but paused: the caller waits with music, then gives up.
    bob = await AgentAtDesk(city, http, "bob", {"lang:pl": 5, "group:waste": 3}).arrive(ready=False)
    try:
        result = await call_with_keys(
            city.settings.sip_port, [(1.0, "1"), (1.5, "2")], hang_up_after=7.0
        )
        assert result.hung_up_by == "caller"
        call = await only_call(city)
        assert call["outcome"] == "abandoned_queue"
        assert call["queued_at"] is not None and call["answered_at"] is None
        assert call["answered_within_target"] is False
        await eventually(lambda: no_call_left(city))
    finally:
        await bob.leave()


async def test_caller_hangs_up_while_the_agent_rings(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    carol = await AgentAtDesk(
        city, http, "carol", {"lang:pl": 5, "group:noise": 3}, answer_after=None
    ).arrive()
    try:
        caller = asyncio.create_task(
            call_with_keys(city.settings.sip_port, [(1.0, "1"), (1.5, "3")], hang_up_after=8.0)
        )
        await carol.next_message("pop", timeout=20)
        assert (await caller).hung_up_by == "caller"
        call = await only_call(city)
        assert call["outcome"] == "abandoned_ringing"
        update = await carol.next_message("call")
        assert update["status"] == "abandoned"
        # Carol is not held: she is ready for the next resident.
        assert city.acd is not None
        await eventually(agent_is(city, "carol", state="ready"))
    finally:
        await carol.leave()


async def test_ring_no_answer_pauses_the_agent_and_the_call_goes_on(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    # Dave has been idle longest, so he rings first, but never answers.
    dave = await AgentAtDesk(
        city, http, "dave", {"lang:en": 3, "group:roads": 3}, answer_after=None
    ).arrive()
    await asyncio.sleep(0.2)
    erin = await AgentAtDesk(city, http, "erin", {"lang:en": 3, "group:roads": 3}).arrive()
    try:
        caller = asyncio.create_task(
            call_with_keys(city.settings.sip_port, ENGLISH_ROADS, hold_seconds=40, timeout=90)
        )
        first = await dave.next_message("pop", timeout=30)
        missed = await dave.next_message("call", timeout=20)
        assert missed == {"type": "call", "call_id": first["call_id"], "status": "missed"}
        second = await erin.next_message("pop", timeout=20)
        assert second["call_id"] == first["call_id"]
        assert (await caller).ok
        call = await only_call(city)
        assert (call["outcome"], call["agent"], call["offers"]) == ("answered", "erin", 2)
        view = city.acd.agent_view("dave") if city.acd else {}
        assert view.get("state") == "paused", view
    finally:
        await dave.leave()
        await erin.leave()


async def test_invalid_keys_go_to_any_agent_instead_of_hanging_up(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    # Polish by default after three bad language choices; any Polish speaker takes it.
    fay = await AgentAtDesk(city, http, "fay", {"lang:pl": 2, "group:noise": 2}).arrive()
    try:
        caller = asyncio.create_task(
            call_with_keys(
                city.settings.sip_port,
                [(1.0, "9"), (2.0, "9"), (2.0, "9")],
                hold_seconds=30,
                timeout=90,
            )
        )
        pop = await fay.next_message("pop", timeout=60)
        assert pop["service_group"] is None and pop["ivr_route"] == "language_menu_failed"
        assert (await caller).ok
        assert (await only_call(city))["outcome"] == "answered"
    finally:
        await fay.leave()
