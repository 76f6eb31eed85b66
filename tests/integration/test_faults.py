"""Faults: our service down or failing mid-call, garbage on the FastAGI port, AMI lost."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cityline.simulated.sipp import call_with_keys
from cityline.wiring import CityLine
from pbx.ami import AmiError
from pbx.asterisk import process_alive
from tests.conftest import CityFactory
from tests.integration.test_call_flow import ENGLISH_ROADS
from tests.integration.test_pbx_ami import _session_fds as session_fds
from tests.support.checks import eventually, only_call
from tests.support.desk import AgentAtDesk

pytestmark = pytest.mark.integration


async def test_service_down_callers_reach_an_agent_through_the_fallback_queue(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    gus = await AgentAtDesk(city, http, "gus", {"lang:pl": 3, "group:other": 3}).arrive()
    try:
        assert city.agi is not None
        await city.agi.stop()  # as if our process had died: nothing answers on the AGI port
        result = await call_with_keys(city.settings.sip_port, [], hold_seconds=40, timeout=60)
        assert result.ok and result.hung_up_by == "pbx", result.errors
        assert gus.phone is not None and len(gus.phone.answered) == 1
        call = await only_call(city)
        assert (call["outcome"], call["agent"]) == ("fallback", "gus")
        assert call["answered_at"] is not None and call["answered_within_target"] is True

        async def recorded() -> str | None:  # every answered call is recorded, this one too
            assert city.calls is not None
            row = await city.calls.get_call(call["id"])
            return row["recording_path"] if row else None

        path = await eventually(recorded, timeout=30)
        assert Path(path).is_file() and Path(path).stat().st_size > 44  # more than a header
    finally:
        await gus.leave()


async def test_a_fault_mid_call_hands_the_caller_to_the_fallback_queue(
    city: CityLine, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ready: the fallback queue rings only agents the ACD has ready (or on a call).
    hal = await AgentAtDesk(city, http, "hal", {"lang:en": 3, "group:roads": 3}).arrive()
    try:
        assert city.handler is not None

        async def broken(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            raise RuntimeError("simulated fault in the case store")

        monkeypatch.setattr(city.handler._cases, "caller_history", broken)
        result = await call_with_keys(
            city.settings.sip_port, ENGLISH_ROADS, hold_seconds=40, timeout=60
        )
        assert result.ok and result.hung_up_by == "pbx", result.errors
        assert hal.phone is not None and len(hal.phone.answered) == 1
        call = await only_call(city)
        assert call["outcome"] == "fallback"
        assert call["language"] == "en"  # what the IVR learnt before the fault is kept
    finally:
        await hal.leave()


async def test_garbage_and_stalled_fastagi_connections_do_not_hurt_real_calls(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    assert city.agi is not None
    port = city.agi.port
    # A connection that closes mid-header, one that sends garbage, one that stalls.
    _, early = await asyncio.open_connection("127.0.0.1", port)
    early.write(b"agi_network: yes\nagi_request: agi://127.0.0.1/ci")
    early.close()
    reader, garbage = await asyncio.open_connection("127.0.0.1", port)
    garbage.write(b"\x00\xff" * 5000 + b"\n\n")
    _, stalled = await asyncio.open_connection("127.0.0.1", port)
    stalled.write(b"agi_network: yes\n")
    try:
        ivy = await AgentAtDesk(city, http, "ivy", {"lang:en": 3, "group:roads": 3}).arrive()
        try:
            result = await call_with_keys(city.settings.sip_port, ENGLISH_ROADS, hold_seconds=30)
            assert result.ok and result.hung_up_by == "pbx"
            assert (await only_call(city))["outcome"] == "answered"
        finally:
            await ivy.leave()
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # garbage: closed
        await eventually(_no_agi_sessions(city))
    finally:
        garbage.close()
        stalled.close()


def _no_agi_sessions(city: CityLine) -> Any:
    async def check() -> bool:
        assert city.agi is not None
        return city.agi.active_sessions == 0

    return check


async def test_ami_reconnects_and_calls_carry_on(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    assert city.ami is not None
    reconnected = asyncio.Event()
    city.ami.add_reconnect_listener(reconnected.set)
    # Asterisk drops our AMI session; the link must come back by itself.
    fds = await session_fds(city.ami)
    with contextlib.suppress(AmiError):  # kicking our own session may cut its answer off
        await city.ami.command(f"manager kick session {fds[0]}")
    await asyncio.wait_for(reconnected.wait(), timeout=20)
    assert city.ami.connected
    jo = await AgentAtDesk(city, http, "jo", {"lang:en": 3, "group:roads": 3}).arrive()
    try:
        result = await call_with_keys(city.settings.sip_port, ENGLISH_ROADS, hold_seconds=30)
        assert result.ok
        call = await only_call(city)
        assert call["outcome"] == "answered" and call["answered_at"] is not None
    finally:
        await jo.leave()


async def test_missing_prompt_files_never_cost_the_resident_the_call(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    # The welcome menu and the "connecting you to any agent" prompt are gone from disk.
    assert city.asterisk is not None
    for name in ("welcome", "any_agent"):
        (city.asterisk.sounds_dir / "pl" / f"{name}.wav").unlink()
    pia = await AgentAtDesk(city, http, "pia", {"lang:pl": 3, "group:other": 3}).arrive()
    try:
        caller = asyncio.create_task(call_with_keys(city.settings.sip_port, [], hold_seconds=30))
        pop = await pia.next_message("pop", timeout=30)
        assert pop["ivr_route"] == "prompt_failed" and pop["service_group"] is None
        result = await caller
        assert result.ok and result.hung_up_by == "pbx"
        assert (await only_call(city))["outcome"] == "answered"
    finally:
        await pia.leave()


async def test_calls_the_fallback_queue_took_while_the_service_was_gone_get_records_at_restart(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    first = await make_city(instance_name=f"test-{uuid.uuid4().hex[:10]}")
    ola = await AgentAtDesk(first, http, "ola", {"lang:pl": 3, "group:other": 3}).arrive()
    try:
        assert first.agi is not None and first.ami is not None
        # As if our process had died: no AGI answers and no AMI event reaches anyone.
        await first.agi.stop()
        await first.ami.stop()
        result = await call_with_keys(
            first.settings.sip_port, [], caller="48600123123", hold_seconds=40, timeout=60
        )
        assert result.ok and result.hung_up_by == "pbx", result.errors
        assert ola.phone is not None and len(ola.phone.answered) == 1
        assert first.calls is not None and await first.calls.recent_calls() == []
    finally:
        await ola.leave()
    await first.stop()

    second = await make_city(instance_name=first.settings.instance_name)
    call = await only_call(second)
    assert (call["outcome"], call["agent"], call["caller_number"]) == (
        "fallback",
        "ola",
        "48600123123",
    )
    assert call["answered_at"] is not None and call["ended_at"] is not None
    assert call["answered_within_target"] is True
    assert second.calls is not None
    kinds = [e["kind"] for e in await second.calls.call_events(call["id"])]
    # The dial plan recorded the conversation; the restart files it under the call.
    assert kinds == ["arrived", "recovered_from_queue_log", "recording_recovered"]
    assert call["recording_path"] and Path(call["recording_path"]).is_file()
    # A second restart does not record it twice.
    await second.stop()
    third = await make_city(instance_name=first.settings.instance_name)
    assert third.calls is not None and len(await third.calls.recent_calls()) == 1


async def test_a_restart_takes_over_the_asterisk_a_dead_run_left_serving_residents(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    name = f"test-{uuid.uuid4().hex[:10]}"
    first = await make_city(instance_name=name)
    assert first.asterisk is not None
    survivor = first.asterisk.pid
    assert survivor is not None
    # Our process dies; its Asterisk (in a session of its own) does not, and keeps taking calls.
    first._running.stops.remove(first.asterisk.stop)
    await first.stop()
    assert process_alive(survivor)

    s = first.settings
    same_ports = {
        "sip_port": s.sip_port, "ami_port": s.ami_port, "agi_port": s.agi_port,
        "asterisk_http_port": s.asterisk_http_port, "rtp_start": s.rtp_start,
        "rtp_end": s.rtp_end,
    }  # fmt: skip
    second = await make_city(instance_name=name, **same_ports)
    assert second.asterisk is not None and second.asterisk.pid == survivor  # taken over
    # ... and it serves the new run: an agent made now registers, a resident reaches them.
    pia = await AgentAtDesk(second, http, "pia", {"lang:pl": 3, "group:other": 3}).arrive()
    try:
        result = await call_with_keys(
            second.settings.sip_port, [(1.0, "1"), (1.5, "4")], hold_seconds=30
        )
        assert result.ok, result.errors
        call = await only_call(second)
        assert (call["outcome"], call["agent"]) == ("answered", "pia")
    finally:
        await pia.leave()
    await second.stop()
    assert not process_alive(survivor)


async def test_a_survivor_on_other_ports_is_stopped_and_a_fresh_asterisk_started(
    make_city: CityFactory,
) -> None:
    name = f"test-{uuid.uuid4().hex[:10]}"
    first = await make_city(instance_name=name)
    assert first.asterisk is not None and first.asterisk.pid is not None
    survivor = first.asterisk.pid
    first._running.stops.remove(first.asterisk.stop)
    await first.stop()
    second = await make_city(instance_name=name)  # new ports: the survivor cannot be reused
    assert second.asterisk is not None and second.asterisk.pid not in (None, survivor)
    assert not process_alive(survivor)
