"""The supervisors' wallboard in a real browser: live figures within a second, service-level
tiles that move with answered calls, supervisor actions that reach the ACD and the phone
system, and no way in for an agent's account."""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from acd.board import DayHistory
from cityline.simulated.agent_phone import AgentPhone
from cityline.simulated.sipp import call_with_keys
from cityline.wiring import CityLine
from tests.support.browser import DESKTOP, TV, chromium, console_lines, new_page, screenshot
from tests.support.checks import eventually
from tests.support.desk import DEFAULT_PASSWORD, AgentAtDesk, base_url, create_account

pytestmark = pytest.mark.integration

POLISH_ROADS = [(1.0, "1"), (1.5, "1")]  # Polski, then roads and street lighting
PASSWORD = DEFAULT_PASSWORD


async def api_login(city: CityLine, http: aiohttp.ClientSession, name: str) -> str:
    async with http.post(
        f"{base_url(city)}/api/login", json={"name": name, "password": PASSWORD}
    ) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["token"])


async def post(
    city: CityLine, http: aiohttp.ClientSession, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(f"{base_url(city)}{path}", json=body, headers=headers) as response:
        return response.status, await response.json()


async def open_board(page: Page, city: CityLine, name: str) -> None:
    await page.goto(f"{base_url(city)}/wallboard")
    await page.fill("#login-name", name)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#board")).to_be_visible()
    await expect(page.locator("#link")).to_have_attribute("data-state", "online")
    await expect(page.locator("#clock")).not_to_have_text("")


def acd_view(city: CityLine, agent: str) -> dict[str, Any]:
    assert city.acd is not None
    return city.acd.agent_view(agent)


async def _value(value: Any) -> Any:
    """An awaitable of a value, for eventually()'s checks."""
    return value


async def test_a_waiting_call_shows_within_a_second_and_answered_calls_move_the_service_level(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "sara", role="supervisor")
    ida = await AgentAtDesk(
        city, http, "ida", {"lang:pl": 4, "group:roads": 4}, answer_after=0.3, talk_seconds=1.0
    ).arrive(ready=False)
    assert city.acd is not None
    queued_at: list[float] = []

    def on_acd_event(_: object) -> None:
        assert city.acd is not None
        if city.acd.waiting_count() and not queued_at:
            queued_at.append(time.time())  # wall clock, comparable with the page's

    city.acd.subscribe(on_acd_event)
    try:
        async with chromium() as browser:
            _, page = await new_page(browser, viewport=TV)
            await open_board(page, city, "sara")
            await expect(page.locator("#waiting")).to_have_text("0")
            await expect(page.locator("#sl-15min")).to_have_text("—")
            # Polish speakers logged in, against an Erlang C need there is no traffic for yet
            await expect(page.locator("#staffing-languages")).to_have_text(unbroken("PL: 1 / —"))
            # The page notes the moment it first shows a waiting call.
            await page.evaluate(
                """() => {
                  const el = document.getElementById("waiting");
                  new MutationObserver(() => {
                    if (el.textContent === "1" && !window.shownAt) window.shownAt = Date.now();
                  }).observe(el, {childList: true, characterData: true, subtree: true});
                }"""
            )

            # (a) nobody is ready: the call waits, and the board shows it within a second
            first = asyncio.create_task(
                call_with_keys(city.settings.sip_port, POLISH_ROADS, hold_seconds=40)
            )
            await page.wait_for_function("() => window.shownAt", timeout=30_000)
            shown_at = await page.evaluate("() => window.shownAt") / 1000.0
            assert queued_at, "the ACD never queued the call"
            assert 0 <= shown_at - queued_at[0] < 1.0, shown_at - queued_at[0]
            await expect(page.locator("#tile-longest")).not_to_have_attribute("data-rating", "none")
            row = page.locator('#queue-rows tr[data-queue="pl/roads"]')
            await expect(row.locator("td").nth(1)).to_have_text("1")

            # (b) answered within the target: 100%, green
            await ida.set_state("ready")
            assert (await first).ok
            await expect(page.locator("#sl-15min")).to_have_text("100%", timeout=10_000)
            await expect(page.locator("#tile-sl-15min")).to_have_attribute("data-rating", "good")
            await expect(page.locator("#tile-sl-today")).to_have_attribute("data-rating", "good")
            await expect(page.locator("#waiting")).to_have_text("0")

            # ... then one answered after 16 s: 1 of 2 within target, red
            await ida.set_state("paused", "break")
            second = asyncio.create_task(
                call_with_keys(city.settings.sip_port, POLISH_ROADS, hold_seconds=60)
            )
            await expect(page.locator("#waiting")).to_have_text("1", timeout=30_000)
            await eventually(lambda: _value(_longest_wait(city) > 16.0), timeout=30)
            await expect(page.locator("#tile-longest")).to_have_attribute("data-rating", "bad")
            await ida.set_state("ready")
            assert (await second).ok
            await expect(page.locator("#sl-15min")).to_have_text("50%", timeout=10_000)
            await expect(page.locator("#tile-sl-15min")).to_have_attribute("data-rating", "bad")
            await expect(page.locator("#sl-15min-sub")).to_contain_text("2 odebranych")
            # The chart's history has the day's points: a reload gets them back.
            points = await page.evaluate("() => document.querySelectorAll('#chart canvas').length")
            assert points == 1
            await page.reload()
            await expect(page.locator("#board")).to_be_visible()
            await expect(page.locator("#sl-15min")).to_have_text("50%")
    finally:
        await ida.leave()
        print("\n".join(console_lines()))


def unbroken(text: str) -> str:
    """A language's staffing as the board writes it: spaces that never break the line."""
    return text.replace(" ", "\u00a0")


def _longest_wait(city: CityLine) -> float:
    assert city.acd is not None
    return float(city.acd.snapshot()["calls"]["longest_wait"])


def _prefill_history(city: CityLine, hours: float = 9.0) -> None:
    """A made-up morning for the chart in the screenshots (live points follow it)."""
    assert city.wallboard is not None
    history = DayHistory(city.wallboard.history.interval)
    now = time.time()
    t = now - hours * 3600
    while t < now - 60:
        hour = (t - (now - hours * 3600)) / 3600
        peak = math.exp(-((hour - 3.0) ** 2) / 1.5)  # the morning rush
        history.add(
            t,
            sl_15min=max(40.0, 97.0 - 30.0 * peak + 3.0 * math.sin(hour * 5)),
            sl_today=max(60.0, 95.0 - 8.0 * min(1.0, hour / 3.0)),
            waiting=round(7 * peak + abs(math.sin(hour * 7))),
        )
        t += history.interval
    city.wallboard.history = history


async def test_screenshots_of_a_busy_board_at_desktop_and_tv_sizes(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "sara", role="supervisor")
    skills = {"lang:pl": 5, "group:roads": 4, "group:waste": 3, "group:noise": 3}
    desks = [
        AgentAtDesk(city, http, name, skills, answer_after=0.3, talk_seconds=90.0)
        for name in ("anna", "bartek", "celina", "dawid", "ewa")
    ]
    for desk in desks:
        await desk.arrive(ready=False)
    await create_account(
        city, http, "filip", skills={"lang:pl": 5, "group:roads": 4}
    )  # never logs in
    admin = city.admin_token
    try:
        await post(city, http, "/api/agents/anna/state", admin, {"state": "ready"})
        await post(city, http, "/api/agents/bartek/state", admin, {"state": "ready"})
        await post(
            city, http, "/api/agents/celina/state", admin, {"state": "paused", "reason": "break"}
        )
        await post(
            city, http, "/api/agents/dawid/state", admin, {"state": "paused", "reason": "training"}
        )
        calls = [
            asyncio.create_task(call_with_keys(city.settings.sip_port, keys, hold_seconds=120))
            for keys in (POLISH_ROADS, [(1.0, "1"), (1.5, "2")])
        ]
        await eventually(lambda: _value(acd_view(city, "anna")["state"] == "on_call"), timeout=30)
        await eventually(lambda: _value(acd_view(city, "bartek")["state"] == "on_call"), timeout=30)
        # Nobody speaks English: these two wait, and the English noise call is the oldest.
        calls += [
            asyncio.create_task(call_with_keys(city.settings.sip_port, keys, hang_up_after=60))
            for keys in ([(1.0, "2"), (1.5, "3")], [(1.0, "2"), (1.5, "1")])
        ]
        await eventually(lambda: _value(_waiting(city) == 2), timeout=30)
        await asyncio.sleep(9)  # the longest wait turns amber
        _prefill_history(city)
        async with chromium() as browser:
            for viewport, size, locale in ((TV, "tv", "pl-PL"), (DESKTOP, "desktop", "en-GB")):
                context, page = await new_page(browser, viewport=viewport, locale=locale)
                await open_board(page, city, "sara")
                await expect(page.locator("#waiting")).to_have_text("2")
                await expect(page.locator("#agent-rows tr")).to_have_count(6)
                await expect(page.locator("#sl-today")).to_have_text("100%")
                # English callers and no English speaker logged in: short, however full the floor
                await expect(page.locator("#staffing-languages")).to_contain_text(
                    unbroken("EN: 0 / —, ")
                )
                await expect(page.locator("#tile-staffing")).to_have_attribute("data-rating", "bad")
                await page.wait_for_timeout(500)  # the chart's first frame
                path = await screenshot(page, f"wallboard-{size}-{locale[:2]}")
                assert path.stat().st_size > 20_000
                # Nothing spills out sideways at either size.
                overflow = await page.evaluate(
                    "() => document.documentElement.scrollWidth - window.innerWidth"
                )
                assert overflow <= 0, f"{size}: {overflow}px wider than the screen"
                await context.close()
            context, page = await new_page(browser, viewport=TV, locale="en-GB")
            await page.goto(f"{base_url(city)}/wallboard")
            await expect(page.locator("#login-form")).to_be_visible()
            await screenshot(page, "wallboard-login")
            await context.close()
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        for desk in desks:
            await desk.leave()


def _waiting(city: CityLine) -> int:
    assert city.acd is not None
    return city.acd.waiting_count()


async def test_an_agent_account_cannot_open_the_wallboard(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "kit", skills={"lang:pl": 5, "group:roads": 4})
    async with chromium() as browser:
        _, page = await new_page(browser, viewport=DESKTOP)
        await page.goto(f"{base_url(city)}/wallboard")
        await page.fill("#login-name", "kit")
        await page.fill("#login-password", PASSWORD)
        await page.click("#login-submit")
        await expect(page.locator("#login-error")).to_contain_text("tylko dla kierowników")
        await expect(page.locator("#board")).to_be_hidden()
        kept = await page.evaluate("() => localStorage.getItem('cityline.wallboard.session')")
        assert kept is None  # the agent's token is not kept
        await screenshot(page, "wallboard-refused")
    # The refused log-in left the agent as it was: logged out of the ACD, session closed.
    assert acd_view(city, "kit")["state"] == "logged_out"

    token = await api_login(city, http, "kit")
    url = base_url(city)
    async with http.get(f"{url}/api/wallboard", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 403 and "error" in await r.json()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{url.replace('http', 'ws')}/ws/wallboard?token={token}")
    assert refused.value.status == 403
    for path, body in (
        ("/api/agents/kit/state", {"state": "ready"}),
        ("/api/agents/kit/listen", {"mode": "listen"}),
    ):
        status, reply = await post(city, http, path, token, body)
        assert status == 403 and "supervisor" in reply["error"], (path, status, reply)


async def test_supervisor_actions_reject_bad_requests_with_clear_errors(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "sara", role="supervisor")
    await create_account(city, http, "olek", skills={"lang:pl": 5, "group:roads": 4})
    sara = await api_login(city, http, "sara")
    url = base_url(city)
    cases: list[tuple[str, Any, int, str]] = [
        ("/api/agents/olek/state", None, 400, "JSON object"),
        ("/api/agents/olek/state", [1, 2], 400, "JSON object"),
        ("/api/agents/olek/state", {"state": "asleep"}, 400, "state must be"),
        ("/api/agents/olek/state", {"state": "paused"}, 400, "needs a reason"),
        ("/api/agents/olek/state", {"state": "paused", "reason": 7}, 400, "needs a reason"),
        ("/api/agents/olek/state", {"state": "paused", "reason": "x" * 41}, 400, "at most"),
        ("/api/agents/olek/state", {"state": "ready"}, 409, "logged_out"),
        ("/api/agents/nobody/state", {"state": "ready"}, 404, "no agent"),
        ("/api/agents/sara/state", {"state": "ready"}, 404, "no agent"),  # not an ACD agent
        ("/api/agents/%2E%2E%2Fetc/state", {"state": "ready"}, 404, "no agent"),
        ("/api/agents/" + "a" * 300 + "/state", {"state": "ready"}, 404, "no agent"),
        ("/api/agents/olek/listen", {"mode": "barge"}, 400, "mode must be"),
        ("/api/agents/olek/listen", {"mode": "listen"}, 409, "not on a call"),
        ("/api/agents/nobody/listen", {"mode": "listen"}, 404, "no agent"),
    ]
    for path, body, status, words in cases:
        async with http.post(
            f"{url}{path}", json=body, headers={"Authorization": f"Bearer {sara}"}
        ) as response:
            reply = await response.json()
            assert response.status == status, (path, body, response.status, reply)
            assert words in reply["error"], (path, body, reply)
    async with http.post(
        f"{url}/api/agents/olek/state",
        data=b"{not json",
        headers={"Authorization": f"Bearer {sara}", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400 and "not valid JSON" in (await response.json())["error"]
    async with http.post(
        f"{url}/api/agents/olek/state",
        data=b'{"state": "' + b"x" * 10_000 + b'"}',
        headers={"Authorization": f"Bearer {sara}"},
    ) as response:
        assert response.status == 413
    status, reply = await post(city, http, "/api/agents/olek/state", None, {"state": "ready"})
    assert status == 401 and reply["error"]
    # The admin may force states, but has no phone to listen with.
    await api_login(city, http, "olek")
    status, reply = await post(
        city, http, "/api/agents/olek/state", city.admin_token, {"state": "ready"}
    )
    assert status == 200 and reply["state"] == "ready"


async def test_force_pause_and_ready_from_the_board_reach_the_acd_and_the_desk(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "sara", role="supervisor")
    jan = await AgentAtDesk(city, http, "jan", {"lang:pl": 3, "group:roads": 3}).arrive()
    try:
        async with chromium() as browser:
            _, page = await new_page(browser, viewport=DESKTOP, locale="en-GB")
            await open_board(page, city, "sara")
            row = page.locator('#agent-rows tr[data-agent="jan"]')
            await expect(row).to_have_attribute("data-state", "ready")
            await row.locator("select.reason").select_option("training")
            await row.locator("button.pause").click()
            # The ACD routes by it at once; the agent's own desktop hears of it.
            await eventually(lambda: _value(acd_view(city, "jan")["state"] == "paused"), timeout=2)
            assert acd_view(city, "jan")["pause_reason"] == "training"
            state = await jan.next_message("state", timeout=5)
            while state["acd"]["state"] != "paused":
                state = await jan.next_message("state", timeout=5)
            assert state["acd"]["pause_reason"] == "training"
            await expect(page.locator("#toast")).to_contain_text("jan paused (training)")
            await expect(row).to_have_attribute("data-state", "paused")
            await expect(row.locator(".reason-cell")).to_have_text("training")

            await row.locator("button.ready").click()
            await eventually(lambda: _value(acd_view(city, "jan")["state"] == "ready"), timeout=2)
            await expect(row).to_have_attribute("data-state", "ready")
            await expect(page.locator("#toast")).to_contain_text("jan is now ready")
            await expect(row.locator("button.listen")).to_be_disabled()
    finally:
        await jan.leave()


async def test_listen_and_whisper_ring_the_supervisor_into_chanspy_on_the_agents_call(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    supervisor = await create_account(city, http, "sara", role="supervisor")
    sip = supervisor["sip"]
    rtp_low = random.randrange(42000, 58000, 2)
    phone = AgentPhone(
        sip["username"], sip["password"], sip["port"],
        rtp_low=rtp_low, rtp_high=rtp_low + 40, answer_after=0.3, talk_seconds=None,
    )  # fmt: skip
    await asyncio.to_thread(phone.start)
    ida = await AgentAtDesk(
        city, http, "ida", {"lang:pl": 4, "group:roads": 4}, talk_seconds=20.0
    ).arrive()
    assert city.ami is not None
    ami_events: list[dict[str, str]] = []
    city.ami.add_listener(lambda event: ami_events.append(dict(event)))
    caller = asyncio.create_task(
        call_with_keys(city.settings.sip_port, POLISH_ROADS, hold_seconds=60)
    )
    try:
        async with chromium() as browser:
            _, page = await new_page(browser, viewport=DESKTOP)
            await open_board(page, city, "sara")
            row = page.locator('#agent-rows tr[data-agent="ida"]')
            await expect(row).to_have_attribute("data-state", "on_call", timeout=30_000)
            await expect(row.locator(".call")).to_contain_text("PL")
            await row.locator("button.listen").click()
            await expect(page.locator("#toast")).to_contain_text(f"({sip['username']})")
            try:
                await phone.wait_answered(1, within=10)
            except TimeoutError as exc:
                seen = [e for e in ami_events if sip["username"] in str(e)]
                raise AssertionError(f"{exc}; rings {phone.ring_times}; AMI: {seen[-8:]}") from exc

            def spy_started() -> dict[str, str] | None:
                return next((e for e in ami_events if e.get("Event") == "ChanSpyStart"), None)

            started = await eventually(lambda: _value(spy_started()))
            agent_leg = started["SpyeeChannel"]
            assert agent_leg.startswith(f"PJSIP/{ida.account['sip']['username']}-"), started
            assert started["SpyerChannel"].startswith(f"PJSIP/{sip['username']}-"), started

            # Whisper through the API: the same leg, named in full.
            status, reply = await post(
                city, http, "/api/agents/ida/listen", await _token(page), {"mode": "whisper"}
            )
            assert status == 202, reply
            assert reply["channel"] == agent_leg and reply["phone"] == sip["username"]
            await phone.wait_answered(2, within=10)
            await eventually(
                lambda: _value(sum(e.get("Event") == "ChanSpyStart" for e in ami_events) >= 2)
            )
            originates = [e for e in ami_events if e.get("Event") == "OriginateResponse"]
            assert originates and all(e.get("Response") == "Success" for e in originates)
        assert (await caller).ok
        # E: the spy leaves when the agent's call ends, so the supervisor's phone hangs up too.
        await phone.wait_call_ends(2, within=10)
    finally:
        caller.cancel()
        await asyncio.gather(caller, return_exceptions=True)
        await ida.leave()
        await asyncio.to_thread(phone.stop)


async def _token(page: Page) -> str:
    saved = await page.evaluate(
        "() => JSON.parse(localStorage.getItem('cityline.wallboard.session'))"
    )
    return str(saved["token"])


async def test_a_dropped_connection_shows_a_banner_and_the_board_comes_back(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "sara", role="supervisor")
    async with chromium() as browser:
        context, page = await new_page(browser, viewport=TV, locale="en-GB")
        await open_board(page, city, "sara")
        # The network goes (no close reaches either side): the page notices the silence.
        await context.set_offline(True)
        await expect(page.locator("#banner")).to_be_visible(timeout=10_000)
        await expect(page.locator("#link")).not_to_have_attribute("data-state", "online")
        await expect(page.locator("#board")).to_have_class("board stale")
        await screenshot(page, "wallboard-offline")
        await context.set_offline(False)
        await expect(page.locator("#banner")).to_be_hidden(timeout=15_000)
        await expect(page.locator("#link")).to_have_attribute("data-state", "online")
        await expect(page.locator("#board")).to_have_class("board")
        # ... and the service ending the session sends the supervisor back to the log-in form.
        assert city.directory is not None
        await city.directory.end_session(await _token(page))
        assert city.wallboard is not None
        await city.wallboard.stop()  # closes every viewer; the page reconnects and is refused
        await expect(page.locator("#login-error")).to_contain_text("session has ended")


async def test_a_pbx_fault_shows_above_the_board_until_it_is_mended(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "sara", role="supervisor")
    assert city.pbx is not None and city.wallboard is not None
    async with chromium() as browser:
        _, page = await new_page(browser, viewport=TV, locale="en-GB")
        await open_board(page, city, "sara")
        await expect(page.locator("#faults")).to_be_hidden()
        # The state the PBX keeper sets when Asterisk dies (tests/integration/test_pbx_restart.py
        # kills a real one), told to the board as the keeper tells it.
        city.pbx.health.died(time.time(), "Asterisk process ended")
        city.wallboard.fault_changed()
        await expect(page.locator("#faults")).to_be_visible(timeout=5_000)
        await expect(page.locator("#faults")).to_contain_text("residents cannot get through")
        await screenshot(page, "wallboard-pbx-down")
        async with http.get(
            base_url(city) + "/api/wallboard",
            headers={"Authorization": f"Bearer {await _token(page)}"},
        ) as response:
            assert (await response.json())["faults"]["pbx"]["state"] == "down"
        city.pbx.health.restarted(time.time())
        city.wallboard.fault_changed()
        await expect(page.locator("#faults")).to_be_hidden(timeout=5_000)
