"""A dead Asterisk: restarted by the service, its fault visible, the cut call recorded as cut."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest

from cityline.simulated.sipp import call_with_keys
from cityline.wiring import CityLine
from tests.integration.test_call_flow import ENGLISH_ROADS
from tests.support.checks import eventually, only_call
from tests.support.desk import base_url

pytestmark = pytest.mark.integration


async def test_a_killed_asterisk_is_restarted_and_the_cut_call_is_recorded_as_cut(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    assert city.asterisk is not None and city.pbx is not None and city.acd is not None
    # A resident waits in the queue (nobody is logged in to answer).
    caller = asyncio.create_task(
        call_with_keys(city.settings.sip_port, ENGLISH_ROADS, hold_seconds=60, timeout=90)
    )
    acd = city.acd
    await eventually(lambda: _async(acd.waiting_count() == 1), timeout=30)
    old_pid = city.asterisk.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)

    # The service notices, restarts its Asterisk, and says so.
    async def restarted() -> bool:
        return city.pbx is not None and city.pbx.health.restarts == 1 and city.pbx.health.ok

    await eventually(restarted, timeout=30)
    states = [entry["state"] for entry in city.pbx.health.history]
    assert states[:3] == ["down", "restarting", "up"]
    assert city.asterisk.pid not in (None, old_pid) and city.asterisk.running
    await eventually(lambda: _async(city.ami is not None and city.ami.connected), timeout=30)
    async with http.get(base_url(city) + "/healthz") as response:
        health = await response.json()
        assert response.status == 200, health
        assert health["parts"]["pbx"]["restarts"] == 1
        assert health["parts"]["pbx"]["ami_connected"] is True

    # The resident's call was cut by the PBX's death, not abandoned by the resident.
    call = await only_call(city)
    assert call["outcome"] == "cut"
    assert city.calls is not None
    kinds = [e["kind"] for e in await city.calls.call_events(call["id"])]
    assert "cut_off" in kinds
    caller.cancel()

    # Residents can call again.
    second = asyncio.create_task(
        call_with_keys(city.settings.sip_port, ENGLISH_ROADS, hold_seconds=3, timeout=60)
    )
    result = await second
    assert result.ok, result.errors or result.stderr
    assert city.calls is not None
    calls = await city.calls.recent_calls()
    assert len(calls) == 2 and calls[0]["queued_at"] is not None


async def test_health_answers_503_while_the_pbx_is_down(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    assert city.pbx is not None
    city.pbx.health.died(0.0, "Asterisk process ended")  # the state the keeper sets
    async with http.get(base_url(city) + "/healthz") as response:
        body = await response.json()
        assert response.status == 503
        assert body["parts"]["pbx"]["state"] == "down" and body["ok"] is False
        assert body["parts"]["database"]["ok"] is True


async def _async(value: bool) -> bool:
    return value
