"""A resident says what is wrong and the call arrives as a categorised case: the real speech
pipeline (AudioSocket, Vosk in worker processes, the speech dialog, the intent matcher).

CI has no Polish or English model, so the Polish IVR runs on the packaged Korean model with
a few Korean phrases added to the catalogue (tests/data/ko_test_pack_phrases.json); the
caller speaks them through espeak-ng. Everything else is the production code path.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from cityline.simulated.sipp import call_with_keys
from tests.conftest import CityFactory
from tests.support.checks import only_call
from tests.support.desk import AgentAtDesk
from tests.support.speech import korean, speech_city

pytestmark = pytest.mark.integration


async def test_what_the_resident_says_becomes_the_service_on_the_agents_screen(
    make_city: CityFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    city = await speech_city(make_city)
    rita = await AgentAtDesk(city, http, "rita", {"lang:pl": 4, "group:roads": 4}).arrive()  # type: ignore[arg-type]
    try:
        said = korean("안녕하세요", tmp_path)  # the test pack's phrase for "street light out"
        caller = asyncio.create_task(
            call_with_keys(
                city.settings.sip_port,  # type: ignore[attr-defined]
                [(1.0, "1"), (2.0, said), (1.5, "1")],  # Polish; the problem; "yes" by key
                echo=False, hold_seconds=30, timeout=90,
            )
        )  # fmt: skip
        pop = await rita.next_message("pop", timeout=60)
        assert pop["service_code"] == "street_light_out" and pop["service_group"] == "roads"
        assert pop["transcript"] == "안녕하세요" and pop["ivr_route"] == "speech"
        assert pop["case_draft"]["service_code"] == "street_light_out"
        assert (await caller).ok
        call = await only_call(city)  # type: ignore[arg-type]
        assert (call["service_code"], call["transcript"]) == ("street_light_out", "안녕하세요")
        assert call["outcome"] == "answered"
    finally:
        await rita.leave()


async def test_silence_twice_falls_back_to_the_keypad_menu(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    city = await speech_city(make_city)
    sam = await AgentAtDesk(city, http, "sam", {"lang:pl": 4, "group:waste": 4}).arrive()  # type: ignore[arg-type]
    try:
        # Polish, then nothing said twice: the keypad group menu takes over; 2 = waste.
        caller = asyncio.create_task(
            call_with_keys(
                city.settings.sip_port,  # type: ignore[attr-defined]
                [(1.0, "1"), (22.0, "2")], echo=False, hold_seconds=30, timeout=120,
            )
        )  # fmt: skip
        pop = await sam.next_message("pop", timeout=100)
        assert pop["service_group"] == "waste" and pop["ivr_route"] == "keypad"
        assert (await caller).ok
    finally:
        await sam.leave()


async def test_a_recogniser_killed_mid_call_hands_the_resident_to_the_keypad(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    import os
    import signal

    from tests.support.checks import eventually

    city = await speech_city(make_city)
    tom = await AgentAtDesk(city, http, "tom", {"lang:pl": 4, "group:waste": 4}).arrive()  # type: ignore[arg-type]
    try:
        caller = asyncio.create_task(
            call_with_keys(
                city.settings.sip_port,  # type: ignore[attr-defined]
                [(1.0, "1"), (9.0, "2")], echo=False, hold_seconds=30, timeout=90,
            )
        )  # fmt: skip
        await only_call(city, ended=False)  # type: ignore[arg-type]
        await asyncio.sleep(3.0)  # Polish chosen; the open question is being asked
        pool = city.handler._speech.pool  # type: ignore[attr-defined]
        for pid in pool.worker_pids():
            os.kill(pid, signal.SIGKILL)
        pop = await tom.next_message("pop", timeout=60)
        assert pop["service_group"] == "waste" and pop["ivr_route"] == "keypad"
        assert (await caller).ok
        await eventually(lambda: _replaced(pool))  # a new worker serves the next call
    finally:
        await tom.leave()


async def _replaced(pool: object) -> bool:
    return bool(pool.worker_pids()) and pool.restarts >= 1  # type: ignore[attr-defined]
