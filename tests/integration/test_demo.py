"""The demo's simulated city against a real CityLine: residents call, agents answer and write
cases, the wallboard moves, and stopping leaves no sipp or pyVoIP behind."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from pathlib import Path

import aiohttp
import pytest

from cityline.demo import (
    ACCOUNTS_FILE,
    HUMAN_AGENT,
    SUPERVISOR,
    Demo,
    DemoAccounts,
    DemoOptions,
)
from cityline.simulated.traffic import AgentHabits
from tests.conftest import CityFactory
from tests.support.checks import eventually as until
from tests.support.checks import no_call_left
from tests.support.desk import admin_headers, base_url
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


def sipp_children() -> list[int]:
    """sipp processes whose parent is this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..."; comm may hold spaces, so split after the last ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if comm == "sipp" and ppid == os.getpid():
            found.append(int(entry.name))
    return found


def pyvoip_threads() -> list[str]:
    # pyVoIP names its call threads "Phone Call: <id>"; its SIP/RTP threads run its modules.
    names = []
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)
        module = getattr(target, "__module__", "") or ""
        if thread.name.startswith("Phone Call") or module.startswith("pyVoIP"):
            names.append(thread.name)
    return names


@pytest.mark.timeout(300)
async def test_a_short_demo_run_answers_calls_saves_cases_and_cleans_up(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    city = await make_city()
    out = io.StringIO()
    options = DemoOptions(
        rate_per_hour=900.0,  # one resident every 4 s on average
        agents=3,
        minutes=0.4,
        max_concurrent_calls=6,
        drain_seconds=45.0,
        seed=11,
    )
    # Short talks, rare pauses: a 24 s run should show several answered calls.
    habits = AgentHabits(answer_delay=(0.5, 1.5), talk_bounds=(2.0, 5.0), talk_scale=1.5)
    demo = Demo(city, options, out=out, habits=habits)
    try:
        await demo.start()
        banner = demo.banner()
        assert f"{base_url(city)}/desk" in banner and f"{base_url(city)}/wallboard" in banner
        assert demo.human is not None and demo.human.password
        assert demo.supervisor is not None and demo.supervisor.password
        assert f"name {HUMAN_AGENT}" in banner and demo.human.password in banner
        assert f"name {SUPERVISOR}" in banner and demo.supervisor.password in banner
        assert "press Ready" in banner

        # While it runs: the wallboard moves and the simulated agents are logged in.
        board_mid = await demo.wallboard()
        assert board_mid["live"]["agents"]["total"] >= 3
        await asyncio.wait_for(demo.done.wait(), timeout=options.minutes * 60 + 90)
    finally:
        await demo.stop()

    r = demo.residents
    assert r.placed >= 3, vars(r)
    assert r.failed == 0, vars(r)
    assert r.on_the_line == 0
    answered = sum(len(a.phone.answered) for a in demo.agents if a.phone)
    saved = sum(a.tally.cases_saved for a in demo.agents)
    assert answered >= 2 and saved >= 2, [vars(a.tally) for a in demo.agents]

    async with http.get(f"{base_url(city)}/api/wallboard", headers=admin_headers(city)) as resp:
        board = await resp.json()
    today = board["service_level"]["today"]["overall"]
    assert today["offered"] >= r.placed - r.hung_up - 1, (today, vars(r))
    assert today["answered"] >= answered - 1 and today["answered"] >= 2, today
    assert board["live"]["agents"]["by_state"]["logged_out"] >= 3  # they logged out at the stop

    # The cases landed in PostgreSQL, linked to the calls, written by the simulated agents.
    assert city.pool is not None
    rows = await city.pool.fetch(
        "SELECT c.created_by, c.service_group, c.call_id, k.outcome FROM cases c"
        " JOIN calls k ON k.id = c.call_id"
    )
    assert len(rows) == saved
    assert all(row["created_by"].startswith("sim-agent-") for row in rows)
    assert all(row["outcome"] == "answered" for row in rows)
    assert {row["service_group"] for row in rows} <= {"roads", "waste", "noise", "other"}

    # Accounts: the human and the supervisor exist, and asking again changes nothing.
    async with http.get(f"{base_url(city)}/api/agents", headers=admin_headers(city)) as resp:
        agents = {a["name"]: a for a in await resp.json()}
    assert agents[HUMAN_AGENT]["role"] == "agent"
    assert agents[SUPERVISOR]["role"] == "supervisor"
    assert agents[HUMAN_AGENT]["acd"]["state"] == "logged_out"  # the demo never logs it in
    accounts_file = city.settings.state_dir / ACCOUNTS_FILE
    assert accounts_file.stat().st_mode & 0o777 == 0o600
    again = DemoAccounts(accounts_file, base_url(city), city.admin_token, http)
    same = await again.ensure(HUMAN_AGENT, role="agent", display_name="x", skills={"lang:pl": 1})
    assert same.password == demo.human.password
    async with http.post(
        f"{base_url(city)}/api/login",
        json={"name": SUPERVISOR, "password": demo.supervisor.password},
    ) as resp:
        assert resp.status == 200

    # Nothing of the simulation is left running.
    assert sipp_children() == []
    assert all(a.phone is not None and not a.phone.registered for a in demo.agents)
    await asyncio.sleep(0.5)
    assert pyvoip_threads() == []
    assert "minutes are up" in out.getvalue()


@pytest.mark.timeout(180)
async def test_stopping_mid_call_kills_the_callers_and_hangs_up_the_phones(
    make_city: CityFactory,
) -> None:
    city = await make_city()
    options = DemoOptions(rate_per_hour=3600.0, agents=2, minutes=5, max_concurrent_calls=4, seed=3)
    # Agents talk for a long time, so calls are surely in progress when we stop.
    habits = AgentHabits(answer_delay=(0.5, 1.0), talk_bounds=(120.0, 120.0))
    demo = Demo(city, options, out=io.StringIO(), habits=habits)
    try:
        await demo.start()
        await eventually(lambda: any(a.phone and a.phone.answered for a in demo.agents), 60)
        assert sipp_children(), "residents should be on the line"
        # Four residents on the line (long talks): the next ones are turned away.
        await eventually(lambda: demo.residents.turned_away >= 1, 30)
        assert demo.residents.placed >= 4 and len(sipp_children()) <= 4
    finally:
        await demo.stop()
    assert demo.residents.cut_at_stop >= 1
    assert sipp_children() == []
    # The cut callers hung up (sipp sends BYE on abort): no call is left on the PBX side.
    await until(lambda: no_call_left(city), timeout=10)
    assert city.calls is not None
    assert all(call["ended_at"] is not None for call in await city.calls.recent_calls())
    await asyncio.sleep(0.5)
    assert pyvoip_threads() == []
    assert city.acd is not None
    assert all(city.acd.agent_view(a.name)["state"] == "logged_out" for a in demo.agents)
