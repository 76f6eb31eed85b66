"""Malformed and hostile requests to the HTTP API and the desktop WebSocket."""

from __future__ import annotations

import json

import aiohttp
import pytest

from cityline.wiring import CityLine
from tests.support.desk import admin_headers, base_url

pytestmark = pytest.mark.integration


async def _agent_token(city: CityLine, http: aiohttp.ClientSession, name: str = "kim") -> str:
    url = base_url(city)
    body = {"name": name, "password": "long enough pw", "skills": {"lang:pl": 3, "group:waste": 2}}
    async with http.post(f"{url}/api/agents", json=body, headers=admin_headers(city)) as r:
        assert r.status == 201, await r.text()
    async with http.post(
        f"{url}/api/login", json={"name": name, "password": "long enough pw"}
    ) as r:
        assert r.status == 200
        return str((await r.json())["token"])


@pytest.mark.parametrize(
    ("method", "path", "body", "auth", "status"),
    [
        ("POST", "/api/agents", {"name": "x"}, None, 401),
        ("POST", "/api/agents", "not json", "admin", 400),
        ("POST", "/api/agents", [1, 2], "admin", 400),
        (
            "POST",
            "/api/agents",
            {"name": "Bad Name!", "password": "12345678", "skills": {"lang:pl": 1}},
            "admin",
            422,
        ),
        (
            "POST",
            "/api/agents",
            {"name": "ok", "password": "short", "skills": {"lang:pl": 1}},
            "admin",
            422,
        ),
        (
            "POST",
            "/api/agents",
            {"name": "ok", "password": "12345678", "skills": {"lang:xx": 1}},
            "admin",
            422,
        ),
        (
            "POST",
            "/api/agents",
            {"name": "ok", "password": "12345678", "skills": {"lang:pl": 9}},
            "admin",
            422,
        ),
        ("POST", "/api/login", {"name": "nobody", "password": "whatever1"}, None, 401),
        ("POST", "/api/login", {"name": 5}, None, 400),
        ("POST", "/api/cases", {"service_group": "roads", "description": "x"}, None, 401),
        (
            "POST",
            "/api/cases",
            {"call_id": "nope", "service_group": "roads", "description": "x"},
            "admin",
            400,
        ),
        ("POST", "/api/cases", {"service_group": "moon", "description": "x"}, "admin", 422),
        (
            "POST",
            "/api/cases",
            {
                "call_id": "6f1c1d2e-8a8f-4c4e-9a53-111111111111",
                "service_group": "roads",
                "description": "x",
            },
            "admin",
            422,
        ),
        ("POST", "/api/cases", {"service_group": "roads", "description": ""}, "admin", 400),
        ("GET", "/api/calls/not-a-uuid", None, "admin", 400),
        ("GET", "/api/cases/abc", None, "admin", 400),
        ("GET", "/api/cases/999999", None, "admin", 404),
        ("GET", "/api/no-such-thing", None, "admin", 404),
        ("POST", "/api/me/state", {"state": "ready"}, "bogus-token", 401),
        # the desk's case form and its helpers
        ("POST", "/api/cases", {"service_code": "moon_rock", "description": "x"}, "admin", 422),
        (
            "POST",
            "/api/cases",
            {"service_code": "pothole", "description": "x", "address": "Długa 1"},
            "admin",
            422,  # the pothole's required size is missing
        ),
        (
            "POST",
            "/api/cases",
            {
                "service_code": "pothole",
                "description": "x",
                "address": "Długa 1",
                "attributes": {"size": "enormous"},
            },
            "admin",
            422,
        ),
        (
            "POST",
            "/api/cases",
            {"service_code": "office_hours", "description": "x", "attributes": ["size"]},
            "admin",
            400,
        ),
        (
            "POST",
            "/api/cases",
            {"service_code": "street_light_out", "description": "x", "lat": 52.2},
            "admin",
            400,  # lat without lon
        ),
        (
            "POST",
            "/api/cases",
            {"service_code": "street_light_out", "description": "x", "lat": 95, "lon": 21},
            "admin",
            400,
        ),
        ("GET", "/api/cases/nearby?service_code=pothole&lat=x&lon=1", None, "admin", 400),
        ("GET", "/api/cases/nearby", None, "admin", 400),
        ("POST", "/api/cases/1/calls", {"call_id": "nope"}, "admin", 400),
        (
            "POST",
            "/api/cases/999999/calls",
            {"call_id": "6f1c1d2e-8a8f-4c4e-9a53-111111111111"},
            "admin",
            404,
        ),
        ("GET", "/api/calls/6f1c1d2e-8a8f-4c4e-9a53-111111111111/recording", None, "admin", 404),
        ("GET", "/api/transfer-targets", None, "admin", 403),
        ("POST", "/api/login", {"name": "x", "password": "y", "roles": "agent"}, None, 400),
    ],
)
async def test_bad_requests_get_a_clear_json_error(
    city: CityLine,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: object,
    auth: str | None,
    status: int,
) -> None:
    headers = {}
    if auth == "admin":
        headers = admin_headers(city)
    elif auth:
        headers = {"Authorization": f"Bearer {auth}"}
    data = body if isinstance(body, str) else json.dumps(body)
    async with http.request(method, base_url(city) + path, data=data, headers=headers) as response:
        assert response.status == status, await response.text()
        payload = await response.json()
        assert isinstance(payload.get("error"), str) and payload["error"]


async def test_oversized_body_is_refused(city: CityLine, http: aiohttp.ClientSession) -> None:
    async with http.post(
        base_url(city) + "/api/cases", data="x" * 300_000, headers=admin_headers(city)
    ) as response:
        assert response.status == 413


async def test_agent_cannot_create_agents_or_read_all_calls(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    token = await _agent_token(city, http)
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(base_url(city) + "/api/calls", headers=headers) as response:
        assert response.status == 403


async def test_illegal_state_change_is_a_conflict(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    token = await _agent_token(city, http)
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(base_url(city) + "/api/logout", headers=headers) as response:
        assert response.status == 200
    async with http.post(
        base_url(city) + "/api/me/state", json={"state": "ready"}, headers=headers
    ) as r:
        assert r.status == 401  # the session ended with the log-out


async def test_hostile_websocket_messages_get_errors_and_the_socket_survives(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    token = await _agent_token(city, http)
    url = base_url(city).replace("http", "ws") + f"/ws/agent?token={token}"
    async with http.ws_connect(url) as ws:
        assert (await ws.receive_json())["type"] == "hello"
        for bad in [
            "not json",
            "[]",
            '{"type": 5}',
            '{"type": "launch"}',
            '{"type": "state", "state": "x"}',
        ]:
            await ws.send_str(bad)
            reply = await ws.receive_json(timeout=5)
            assert reply["type"] == "error" and reply["code"] == 400, (bad, reply)
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive_json(timeout=5))["code"] == 400
        await ws.send_str('{"type": "ping"}')
        assert (await ws.receive_json(timeout=5)) == {"type": "pong"}
        await ws.send_str('{"type": "state", "state": "ready"}')
        reply = await ws.receive_json(timeout=5)
        while (
            reply["type"] != "state" or "acd" not in reply or reply["acd"].get("state") != "ready"
        ):
            reply = await ws.receive_json(timeout=5)
    # A message over the size limit closes that socket only; the service goes on.
    async with http.ws_connect(url) as ws:
        await ws.receive_json()
        await ws.send_str("x" * 100_000)
        closing = await ws.receive(timeout=5)
        assert closing.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        )
    async with http.get(base_url(city) + "/api/agents", headers=admin_headers(city)) as response:
        assert response.status == 200


async def test_websocket_without_a_session_is_refused(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(base_url(city).replace("http", "ws") + "/ws/agent?token=nope")
    assert refused.value.status == 401


async def test_the_service_catalogue_is_public_over_open311(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    async with http.get(base_url(city) + "/open311/v2/services.json?lang=en") as response:
        assert response.status == 200
        services = await response.json()
    assert len(services) >= 30
    assert {"service_code", "service_name", "group"} <= set(services[0])
    async with http.get(base_url(city) + "/open311/v2/services/street_light_out.json") as response:
        assert response.status == 200


async def test_api_answers_carry_security_headers_errors_included(
    city: CityLine, http: aiohttp.ClientSession
) -> None:
    for path, headers in (("/api/wallboard", {}), ("/api/calls", admin_headers(city))):
        async with http.get(base_url(city) + path, headers=headers) as response:
            assert response.status in (200, 401)
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["X-Frame-Options"] == "DENY"
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    async with http.get(base_url(city) + "/desk") as page:
        assert page.headers["Cache-Control"] == "no-cache"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
