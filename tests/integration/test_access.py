"""Who may see what: an agent reads and acts on the calls they handled and their cases only;
supervisors and admins see every call and case."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import aiohttp
import pytest

from cityline.wiring import CityLine
from tests.support.desk import admin_headers, base_url, create_account

pytestmark = pytest.mark.integration


async def _login(city: CityLine, http: aiohttp.ClientSession, name: str) -> dict[str, str]:
    async with http.post(
        f"{base_url(city)}/api/login", json={"name": name, "password": "long enough pw"}
    ) as r:
        assert r.status == 200, await r.text()
        return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def _offered_call(city: CityLine, agent: str) -> uuid.UUID:
    assert city.records is not None
    call_id = uuid.uuid4()
    await city.records.arrived(
        call_id, asterisk_uniqueid=f"t.{call_id.hex[:6]}", caller_number="48600111222",
        at=datetime.now(UTC),
    )  # fmt: skip
    await city.records.event(call_id, "offered", {"agent": agent, "rung": 0})
    return call_id


async def test_an_agent_sees_and_acts_on_their_own_calls_and_cases_only(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    url = base_url(city)
    skills = {"lang:pl": 3, "group:roads": 3}
    for name, role in (("anna", "agent"), ("bob", "agent"), ("sue", "supervisor")):
        await create_account(city, http, name, role, skills=skills, password="long enough pw")
    anna, bob, sue = [await _login(city, http, n) for n in ("anna", "bob", "sue")]
    call_id = await _offered_call(city, "anna")

    async def status(method: str, path: str, headers: dict[str, str], body: object = None) -> int:
        async with http.request(method, url + path, json=body, headers=headers) as r:
            return r.status

    assert await status("GET", f"/api/calls/{call_id}", bob) == 403
    assert await status("GET", f"/api/calls/{call_id}", anna) == 200
    assert await status("GET", f"/api/calls/{call_id}", sue) == 200
    case_body = {"call_id": str(call_id), "service_group": "roads", "description": "Pothole"}
    assert await status("POST", "/api/cases", bob, case_body) == 403
    async with http.post(url + "/api/cases", json=case_body, headers=anna) as r:
        assert r.status == 201
        case_id = (await r.json())["id"]
    assert await status("GET", f"/api/cases/{case_id}", bob) == 403
    assert await status("GET", f"/api/cases/{case_id}", anna) == 200
    assert await status("GET", f"/api/cases/{case_id}", sue) == 200
    assert await status("GET", f"/api/cases/{case_id}", admin_headers(city)) == 200

    # A second call, Bob's: he may link it to Anna's case (a duplicate report), not hers.
    bobs_call = await _offered_call(city, "bob")
    link = f"/api/cases/{case_id}/calls"
    assert await status("POST", link, bob, {"call_id": str(call_id)}) == 403
    assert await status("POST", link, bob, {"call_id": str(bobs_call)}) == 200
    assert await status("GET", f"/api/cases/{case_id}", bob) == 200  # he reported it too
