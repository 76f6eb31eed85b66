"""Asterisk's own fallback queue: residents in it are followed across our restarts and while
the database is away, only agents the ACD has ready are rung, and nobody is cut off silently."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest

from cityline.simulated.sipp import call_with_keys
from cityline.wiring import CityLine
from tests.conftest import CityFactory
from tests.integration.test_database_faults import own_pg  # noqa: F401  (fixture)
from tests.support.checks import eventually, only_call
from tests.support.desk import AgentAtDesk, admin_headers, base_url
from tests.support.postgres import OwnServer

pytestmark = pytest.mark.integration


async def wallboard_waiting(city: CityLine, http: aiohttp.ClientSession) -> int:
    async with http.get(f"{base_url(city)}/api/wallboard", headers=admin_headers(city)) as r:
        assert r.status == 200, await r.text()
        return int((await r.json())["live"]["calls"]["waiting"])


async def test_a_resident_waiting_in_the_fallback_queue_at_a_restart_is_followed_live(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    name = f"test-{uuid.uuid4().hex[:10]}"
    first = await make_city(instance_name=name)
    assert first.agi is not None and first.ami is not None and first.asterisk is not None
    # As if our process had died: no AGI answers, no AMI event reaches anyone. No agent is
    # logged in, so the resident waits in the fallback queue.
    await first.agi.stop()
    await first.ami.stop()
    caller = asyncio.create_task(
        call_with_keys(first.settings.sip_port, [], caller="48600777888", hang_up_after=40,
                       timeout=90)
    )  # fmt: skip
    try:
        await asyncio.sleep(4)  # in the queue by now
        first._running.stops.remove(first.asterisk.stop)  # its Asterisk lives on
        await first.stop()
        s = first.settings
        second = await make_city(
            instance_name=name, sip_port=s.sip_port, ami_port=s.ami_port, agi_port=s.agi_port,
            asterisk_http_port=s.asterisk_http_port, rtp_start=s.rtp_start, rtp_end=s.rtp_end,
        )  # fmt: skip
        assert not caller.done(), "the resident was cut off by the restart"
        call = await only_call(second, ended=False)
        # Still waiting: neither abandoned nor ended, and the wallboard counts them.
        assert (call["outcome"], call["ended_at"]) == ("fallback", None)
        assert call["caller_number"] == "48600777888"
        assert await wallboard_waiting(second, http) == 1
        result = await caller
        assert result.ok and result.hung_up_by == "caller", result.errors

        async def ended() -> dict[str, Any] | None:
            assert second.calls is not None
            row = (await second.calls.recent_calls())[0]
            return row if row["ended_at"] is not None else None

        call = await eventually(ended)
        assert call["outcome"] == "fallback_abandoned"
        assert call["wait_seconds"] is not None and call["answered_within_target"] is False
        assert await wallboard_waiting(second, http) == 0
    finally:
        caller.cancel()


async def test_with_the_database_down_a_fallback_call_is_recorded_when_it_returns(
    make_city: CityFactory,
    http: aiohttp.ClientSession,
    own_pg: OwnServer,  # noqa: F811
) -> None:
    city = await make_city(database_dsn=own_pg.dsn)
    ola = await AgentAtDesk(city, http, "ola", {"lang:pl": 3, "group:other": 3}).arrive()
    try:
        assert city.agi is not None
        await own_pg.stop()
        await city.agi.stop()  # our call handling fails too: the fallback queue takes over
        result = await call_with_keys(
            city.settings.sip_port, [], caller="48600111222", hold_seconds=40, timeout=60
        )
        assert result.ok and result.hung_up_by == "pbx", result.errors
        assert ola.phone is not None and len(ola.phone.answered) == 1
        await own_pg.start_again()
        call = await only_call(city)
        assert (call["outcome"], call["agent"], call["caller_number"]) == (
            "fallback", "ola", "48600111222",
        )  # fmt: skip
        assert call["answered_at"] is not None and call["answered_within_target"] is True
        assert city.calls is not None
        kinds = [e["kind"] for e in await city.calls.call_events(call["id"])]
        assert kinds == ["arrived", "fallback", "answered", "ended"]
    finally:
        await ola.leave()
        await city.stop()


async def test_the_fallback_queue_rings_only_ready_agents_and_tells_before_it_ends(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    city = await make_city(fallback_wait_seconds=10)
    assert city.agi is not None and city.ami is not None
    heard: list[Mapping[str, str]] = []
    city.ami.add_listener(
        lambda e: (
            heard.append(e)
            if e.get("Event") in ("UserEvent", "Newexten") and "allback" in str(e)
            else None
        )
    )
    pam = await AgentAtDesk(city, http, "pam", {"lang:pl": 3, "group:other": 3}).arrive(
        ready=False
    )  # logged in, not ready
    try:
        await city.agi.stop()
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await call_with_keys(city.settings.sip_port, [], hold_seconds=60, timeout=90)
        lasted = loop.time() - began
        assert result.ok and result.hung_up_by == "pbx", result.errors
        assert pam.phone is not None and pam.phone.ring_times == []  # paused: never rung
        closing = [e for e in heard if e.get("UserEvent") == "CityLineFallbackClosing"]
        assert closing and closing[0].get("QueueStatus") == "TIMEOUT"
        played = [e.get("AppData", "") for e in heard if e.get("Application") == "Playback"]
        assert any("fallback_closing" in p for p in played), played
        assert lasted > 10 + 5, "the line was closed without the closing message"

        await pam.set_state("ready")  # now the fallback queue may ring her
        result = await call_with_keys(city.settings.sip_port, [], hold_seconds=40, timeout=60)
        assert result.ok and result.hung_up_by == "pbx", result.errors
        assert len(pam.phone.answered) == 1
    finally:
        await pam.leave()
