"""The agent desk in a real browser: the softphone answers a real call, the pop shows what the
IVR learnt, and the case typed in the page lands in PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from cityline.simulated.sipp import call_with_keys
from cityline.wiring import CityLine
from tests.conftest import CityFactory
from tests.support.browser import DESKTOP, TV, chromium, console_lines, new_page, screenshot
from tests.support.checks import agent_is, eventually, only_call
from tests.support.desk import (
    DEFAULT_PASSWORD,
    AgentAtDesk,
    admin_headers,
    base_url,
    create_account,
)
from tests.support.speech import STREET_LIGHT_OUT, korean, speech_city

pytestmark = pytest.mark.integration

POLISH_ROADS = [(1.0, "1"), (1.5, "1")]  # Polski, then roads and street lighting
PASSWORD = DEFAULT_PASSWORD


async def log_in(page: Page, city: CityLine, name: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base_url(city)}/desk")
    await page.fill("#login-name", name)
    await page.fill("#login-password", password)
    await page.click("#login-submit")


async def ready_at_desk(page: Page, city: CityLine, name: str) -> None:
    """Log in, wait for the browser phone to register, press Ready."""
    await log_in(page, city, name)
    await expect(page.locator("#phone-badge")).to_have_attribute("data-phone", "on", timeout=15_000)
    await page.click("#ready")


def acd_state(city: CityLine, agent: str) -> dict:
    assert city.acd is not None
    return city.acd.agent_view(agent)


async def test_browser_softphone_answers_a_real_call_and_saves_the_case(
    make_city: CityFactory, http: aiohttp.ClientSession
) -> None:
    city = await make_city(wrap_up_seconds=60)
    await create_account(city, http, "ewa")
    # A known fault on the same street, reported earlier by someone else.
    async with http.post(
        f"{base_url(city)}/api/cases",
        json={
            "service_code": "street_light_out",
            "description": "Lampa nie świeci",
            "address": "Marszałkowska 1",
            "caller_number": "48500000001",
        },
        headers=admin_headers(city),
    ) as response:
        known = await response.json()
        assert response.status == 201, known
    async with chromium() as browser:
        _, page = await new_page(browser, viewport=DESKTOP)
        try:
            await log_in(page, city, "ewa")
            # The browser phone registers over Asterisk's WebSocket transport.
            await expect(page.locator("#phone-badge")).to_have_attribute(
                "data-phone", "on", timeout=15_000
            )
            await eventually(lambda: _true(acd_state(city, "ewa")["reachable"]))
            await page.click("#ready")
            await eventually(lambda: _true(acd_state(city, "ewa")["state"] == "ready"))

            caller = asyncio.create_task(
                call_with_keys(
                    city.settings.sip_port, POLISH_ROADS, caller="48601777888", hold_seconds=40
                )
            )
            await expect(page.locator("#call-status")).to_have_attribute(
                "data-ringing", "true", timeout=30_000
            )
            await expect(page.locator("#pop-caller")).to_have_text("48601777888")
            await expect(page.locator("#pop-service")).to_contain_text("drogi")
            await screenshot(page, "desk-ringing")
            await page.keyboard.press("Alt+a")  # the answer shortcut
            await expect(page.locator("#call-status")).to_contain_text("Rozmowa", timeout=10_000)
            await eventually(lambda: _true(acd_state(city, "ewa")["state"] == "on_call"))
            # Media really flows both ways (ICE and DTLS-SRTP on loopback), not just signalling.
            await eventually(lambda: _media_flowing(page), timeout=10)

            # The agent fills in the case while talking; the open case nearby shows up.
            await page.select_option("#case-service", "street_light_out")
            await page.fill("#case-description", "Nie świeci latarnia przed domem")
            await page.fill("#case-address", "ul. Marszałkowskiej 5")
            known_id = known["id"]
            duplicate = page.locator(f'#pop-duplicates li[data-case="{known_id}"]')
            await expect(duplicate).to_be_visible(timeout=5_000)
            await duplicate.locator("button").click()  # same problem: link the call to it
            await expect(page.locator("#case-saved")).to_contain_text(f"nr {known_id}")
            # ... and, as it turns out to be a second lamp, a case of its own (Ctrl+S).
            await page.fill("#case-description", "Nie świeci latarnia przed domem")
            await page.keyboard.press("Control+s")
            saved = page.locator("#case-saved")
            await expect(saved).to_contain_text("Zapisano", timeout=10_000)
            case_id = int(await saved.get_attribute("data-case-id") or 0)
            await screenshot(page, "desk-on-call")
            await page.set_viewport_size(TV)
            await screenshot(page, "desk-on-call-tv")
            await page.click("#language")  # the same desk in English
            await expect(page.locator("#call-status")).to_contain_text("Talking")
            await screenshot(page, "desk-on-call-tv-en")
            await page.click("#language")

            await page.click("#hangup")
            await expect(page.locator("#call-status")).to_have_text(
                "Rozmowa zakończona", timeout=10_000
            )
            # Wrap-up, with its timer; the agent ends it early.
            await expect(page.locator("#state-badge")).to_have_attribute("data-state", "wrap_up")
            await expect(page.locator("#state-timer")).to_contain_text("zostało")
            await page.click("#ready")
            await eventually(lambda: _true(acd_state(city, "ewa")["state"] == "ready"))
            result = await caller
            assert result.ok, result.errors or result.stderr
            assert result.hung_up_by == "pbx"

            call = await only_call(city)
            assert call["outcome"] == "answered" and call["agent"] == "ewa"
            assert call["service_group"] == "roads"
            assert city.pool is not None
            case = await city.pool.fetchrow("SELECT * FROM cases WHERE id = $1", case_id)
            assert case is not None
            assert case["call_id"] == call["id"]
            assert case["service_code"] == "street_light_out"
            assert case["department"] == "roads"
            assert case["address"] == "ul. Marszałkowskiej 5"
            assert case["caller_number"] == "48601777888"
            linked = await city.pool.fetchval(
                "SELECT call_id FROM case_calls WHERE case_id = $1", known["id"]
            )
            assert linked == call["id"]

            # The saved case's recording plays in the page (stored as Opus in Ogg), and seeks.
            assert city.calls is not None
            calls = city.calls

            async def recorded() -> str | None:
                row = await calls.get_call(call["id"])
                return row["recording_path"] if row else None

            stored = Path(await eventually(recorded, timeout=30))
            assert stored.suffix == ".ogg"
            await page.locator("#case-saved button").click()
            duration = await (await page.wait_for_function(
                """() => { const a = document.getElementById("case-recording");
                           return a && !a.error && a.currentTime > 0.2 ? a.duration : null; }""",
                timeout=10_000,
            )).json_value()  # fmt: skip
            assert abs(duration - _seconds(stored)) < 0.3, duration
            position = await page.evaluate(
                """async () => { const a = document.getElementById("case-recording");
                    const seeked = new Promise((r) => a.addEventListener("seeked", r, { once: true }));
                    a.currentTime = a.duration / 2; await seeked; return a.currentTime; }"""
            )
            assert abs(position - duration / 2) < 1
        except Exception:
            print("\n".join(console_lines()))
            raise


async def test_what_the_resident_said_is_on_the_desk_and_in_the_saved_case(
    make_city: CityFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    city = await speech_city(make_city)
    await create_account(city, http, "zosia")
    async with chromium() as browser:
        _ctx, page = await new_page(browser)
        await ready_at_desk(page, city, "zosia")
        said = korean(STREET_LIGHT_OUT, tmp_path)
        caller = asyncio.create_task(
            call_with_keys(
                city.settings.sip_port,
                [(1.0, "1"), (2.0, said), (1.5, "1")],  # Polish; the problem; "yes" by key
                echo=False, hold_seconds=40, timeout=90,
            )
        )  # fmt: skip
        await expect(page.locator("#answer")).to_be_enabled(timeout=60_000)
        # The pop names the service the IVR found and shows what the resident said ...
        await expect(page.locator("#pop-service")).to_have_text("Niedziałająca latarnia uliczna")
        await expect(page.locator("#pop-transcript")).to_contain_text(STREET_LIGHT_OUT)
        # ... and the case form starts from it.
        await expect(page.locator("#case-service")).to_have_value("street_light_out")
        await expect(page.locator("#case-description")).to_have_value(STREET_LIGHT_OUT)
        await page.click("#answer")
        await expect(page.locator("#call-status")).to_contain_text("Rozmowa", timeout=10_000)
        await page.keyboard.press("Control+s")
        # A street light needs a place: the server says so, the page marks the field.
        await expect(page.locator("#case-error")).to_contain_text("address", timeout=10_000)
        await expect(page.locator("#case-address")).to_have_attribute("aria-invalid", "true")
        await page.fill("#case-address", "Nowy Świat 5")
        await page.keyboard.press("Control+s")
        saved = page.locator("#case-saved")
        await expect(saved).to_contain_text("Zapisano", timeout=10_000)
        case_id = int(await saved.get_attribute("data-case-id") or 0)
        await screenshot(page, "desk-speech-pop")
        await page.click("#hangup")
        assert (await caller).ok
    assert city.pool is not None
    case = await city.pool.fetchrow("SELECT * FROM cases WHERE id = $1", case_id)
    assert case is not None
    assert (case["service_code"], case["description"]) == ("street_light_out", STREET_LIGHT_OUT)


async def test_the_browser_agent_transfers_the_caller_to_a_colleague(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "iga")
    # A colleague with a desk SIP phone, logged in but paused: only the transfer reaches him.
    bob = await AgentAtDesk(
        city, http, "bob", {"lang:pl": 5, "group:roads": 3}, answer_after=0.5, talk_seconds=2.0
    ).arrive(ready=False)
    try:
        async with chromium() as browser:
            _, page = await new_page(browser)
            await ready_at_desk(page, city, "iga")
            caller = asyncio.create_task(
                call_with_keys(city.settings.sip_port, POLISH_ROADS, hold_seconds=40)
            )
            await expect(page.locator("#answer")).to_be_enabled(timeout=30_000)
            await page.click("#answer")
            await expect(page.locator("#transfer")).to_be_enabled(timeout=10_000)
            assert city.directory is not None
            await page.select_option("#transfer-target", city.directory.endpoint_of("bob"))
            await page.click("#transfer")
            assert bob.phone is not None
            await bob.phone.wait_answered(1, within=15)
            # Bob's desk got the caller's pop only now, with who passed the call on.
            pop = await bob.next_message("pop", timeout=5)
            assert pop["transferred_from"] == "iga" and pop["service_group"] == "roads"
            assert [m for _, m in bob.received if m.get("type") == "pop"] == [pop]
            await expect(page.locator("#call-status")).not_to_contain_text("Rozmowa:")
            result = await caller
            assert result.ok, result.errors or result.stderr
            assert result.hung_up_by == "pbx"  # bob finished the call
            call = await only_call(city)
            assert call["outcome"] == "answered" and call["agent"] == "iga"
            assert city.calls is not None
            events = {e["kind"]: e["detail"] for e in await city.calls.call_events(call["id"])}
            assert events["transferred"] == {"to": "bob", "by": "iga"}
    finally:
        await bob.leave()


async def test_typed_text_survives_a_reload(city: CityLine, http: aiohttp.ClientSession) -> None:
    await create_account(city, http, "olek")
    async with chromium() as browser:
        _, page = await new_page(browser)
        await log_in(page, city, "olek")
        await expect(page.locator("#desk")).to_be_visible()
        await page.fill("#case-description", "Wywrócony kosz na rogu")
        await page.reload()
        await expect(page.locator("#desk")).to_be_visible()  # still logged in
        await expect(page.locator("#case-description")).to_have_value("Wywrócony kosz na rogu")
        # The page keeps its session token, never the softphone's password; the phone still
        # registers after the reload (the page asked the service for its credentials).
        stored = await page.evaluate("JSON.stringify(localStorage)")
        assert "token" in stored and "password" not in stored
        await eventually(agent_is(city, "olek", reachable=True), timeout=20)


async def test_connection_loss_shows_a_banner_and_recovers(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "ula")
    async with chromium() as browser:
        _, page = await new_page(browser)
        await log_in(page, city, "ula")
        await expect(page.locator("#desk")).to_be_visible()
        await eventually(
            lambda: _true(city.desktops is not None and "ula" in city.desktops._connections)
        )
        assert city.desktops is not None
        city.desktops.close_all()  # the server drops every desktop socket
        await expect(page.locator("#banner")).to_have_attribute(
            "data-problem", "banner.offline", timeout=5_000
        )
        await expect(page.locator("#banner")).to_be_hidden(timeout=10_000)


async def test_an_agent_cannot_read_another_agents_pop_or_open_the_wallboard(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "adam")
    url = base_url(city)
    async with http.post(f"{url}/api/login", json={"name": "adam", "password": PASSWORD}) as r:
        token = (await r.json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{url}/api/wallboard", headers=headers) as r:
        assert r.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{url.replace('http', 'ws')}/ws/wallboard?token={token}")
    assert refused.value.status == 403
    # Each desk socket carries only its own agent's pops: the token decides whose it is.
    async with http.ws_connect(f"{url.replace('http', 'ws')}/ws/agent?token={token}") as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["agent"]["name"] == "adam"


async def test_an_agent_opening_the_wallboard_keeps_the_desk_session(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "kuba")
    url = base_url(city)
    async with http.post(f"{url}/api/login", json={"name": "kuba", "password": PASSWORD}) as r:
        token = (await r.json())["token"]
    async with http.post(
        f"{url}/api/login",
        json={"name": "kuba", "password": PASSWORD, "roles": ["supervisor"]},
    ) as r:
        assert r.status == 403
    async with http.get(f"{url}/api/me", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200  # the desk session is untouched
    async with http.post(
        f"{url}/api/login", json={"name": "kuba", "password": PASSWORD, "roles": "agent"}
    ) as r:
        assert r.status == 400


async def test_bad_logins_are_rate_limited(city: CityLine, http: aiohttp.ClientSession) -> None:
    await create_account(city, http, "marta")
    url = base_url(city)
    statuses = []
    for _ in range(6):
        async with http.post(
            f"{url}/api/login", json={"name": "marta", "password": "wrong-pass"}
        ) as r:
            statuses.append(r.status)
            retry_after = r.headers.get("Retry-After")
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429 and retry_after and int(retry_after) > 0
    # Even the right password waits now: a guesser cannot tell when it found it.
    async with http.post(f"{url}/api/login", json={"name": "marta", "password": PASSWORD}) as r:
        assert r.status == 429
    # Another account from the same address is not locked out by marta's guesser.
    await create_account(city, http, "jan")
    async with http.post(f"{url}/api/login", json={"name": "jan", "password": PASSWORD}) as r:
        assert r.status == 200
    # The page says so plainly.
    async with chromium() as browser:
        _, page = await new_page(browser)
        await log_in(page, city, "marta")
        await expect(page.locator("#login-error")).to_contain_text("Zbyt wiele")


async def test_a_desk_whose_session_ended_says_why_and_shows_the_log_in_form(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "zofia")
    url = base_url(city)
    async with chromium() as browser:
        _, page = await new_page(browser)
        await log_in(page, city, "zofia")
        await expect(page.locator("#desk")).to_be_visible()
        await eventually(agent_is(city, "zofia", state="paused"))
        # zofia logs in at another desk: this one closes and says so
        async with http.post(f"{url}/api/login", json={"name": "zofia", "password": PASSWORD}) as r:
            assert r.status == 200
        await expect(page.locator("#login-error")).to_contain_text("innym stanowisku")
        await expect(page.locator("#desk")).to_be_hidden()
        # back at this desk; then a supervisor logs her out
        await log_in(page, city, "zofia")
        await expect(page.locator("#desk")).to_be_visible()
        await eventually(agent_is(city, "zofia", state="paused"))
        async with http.post(f"{url}/api/agents/zofia/logout", headers=admin_headers(city)) as r:
            assert r.status == 200, await r.text()
        await expect(page.locator("#login-error")).to_contain_text("Kierownik zmiany")
        await expect(page.locator("#desk")).to_be_hidden()
    assert acd_state(city, "zofia")["state"] == "logged_out"


async def test_a_supervisor_is_sent_to_the_wallboard(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    await create_account(city, http, "szefowa", role="supervisor")
    async with chromium() as browser:
        _, page = await new_page(browser)
        await log_in(page, city, "szefowa")
        await expect(page.locator("#login-error")).to_contain_text("/wallboard")
        await expect(page.locator("#desk")).to_be_hidden()


async def _media_flowing(page: Page) -> bool | None:
    packets = await page.evaluate(
        """async () => {
            const pc = window.cityDesk.state.call && window.cityDesk.state.call.connection;
            if (!pc) return [0, 0];
            let received = 0, sent = 0;
            (await pc.getStats()).forEach((s) => {
                if (s.type === "inbound-rtp" && s.kind === "audio") received = s.packetsReceived;
                if (s.type === "outbound-rtp" && s.kind === "audio") sent = s.packetsSent;
            });
            return [received, sent];
        }"""
    )
    return True if packets[0] > 10 and packets[1] > 10 else None


def _seconds(path: Path) -> float:
    from pydub import AudioSegment

    with path.open("rb") as f:
        return len(AudioSegment.from_file(f, format="ogg")) / 1000


async def _true(value: bool) -> bool | None:
    return True if value else None
