"""An agent at their desk, for end-to-end tests: account, SIP phone, log-in, desktop socket."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from cityline.simulated.agent_phone import AgentPhone
from cityline.wiring import CityLine


def admin_headers(city: CityLine) -> dict[str, str]:
    return {"Authorization": f"Bearer {city.admin_token}"}


def base_url(city: CityLine) -> str:
    return f"http://127.0.0.1:{city.http_port}"


DEFAULT_PASSWORD = "correct horse battery"
DEFAULT_SKILLS = {"lang:pl": 5, "lang:en": 3, "group:roads": 4, "group:waste": 3}


async def create_account(
    city: CityLine,
    http: aiohttp.ClientSession,
    name: str,
    role: str = "agent",
    skills: Mapping[str, int] | None = None,
    password: str = DEFAULT_PASSWORD,
) -> dict[str, Any]:
    """An account made by the admin, as `POST /api/agents` does it; its JSON back."""
    body: dict[str, Any] = {"name": name, "password": password, "role": role}
    if role == "agent":
        body["skills"] = dict(skills or DEFAULT_SKILLS)
    async with http.post(
        f"{base_url(city)}/api/agents", json=body, headers=admin_headers(city)
    ) as response:
        assert response.status == 201, await response.text()
        return dict(await response.json())


class AgentAtDesk:
    def __init__(
        self,
        city: CityLine,
        http: aiohttp.ClientSession,
        name: str,
        skills: Mapping[str, int],
        *,
        answer_after: float | None = 0.5,
        talk_seconds: float | None = 2.0,
        password: str = DEFAULT_PASSWORD,
    ) -> None:
        self.city = city
        self.http = http
        self.name = name
        self.skills = dict(skills)
        self.password = password
        self.answer_after = answer_after
        self.talk_seconds = talk_seconds
        self.token = ""
        self.account: dict[str, Any] = {}
        self.phone: AgentPhone | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def arrive(self, *, ready: bool = True) -> AgentAtDesk:
        url = base_url(self.city)
        async with self.http.post(
            f"{url}/api/agents",
            json={"name": self.name, "password": self.password, "skills": self.skills},
            headers=admin_headers(self.city),
        ) as response:
            assert response.status == 201, await response.text()
            self.account = await response.json()
        sip = self.account["sip"]
        rtp_low = random.randrange(42000, 58000, 2)
        self.phone = AgentPhone(
            sip["username"],
            sip["password"],
            sip["port"],
            rtp_low=rtp_low,
            rtp_high=rtp_low + 40,
            answer_after=self.answer_after,
            talk_seconds=self.talk_seconds,
        )
        await asyncio.to_thread(self.phone.start)
        async with self.http.post(
            f"{url}/api/login", json={"name": self.name, "password": self.password}
        ) as response:
            assert response.status == 200, await response.text()
            self.token = (await response.json())["token"]
        self.ws = await self.http.ws_connect(
            f"{url.replace('http', 'ws')}/ws/agent?token={self.token}"
        )
        self._reader = asyncio.create_task(self._read())
        await self.next_message("hello")
        if ready:
            await self.set_state("ready")
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                # wall clock, comparable with the phone's ring times
                self.received.append((time.time(), data))
                self.messages.put_nowait(data)

    async def next_message(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.messages.get()
                if message.get("type") == kind:
                    return message

    async def set_state(self, state: str, reason: str = "") -> dict[str, Any]:
        async with self.http.post(
            f"{base_url(self.city)}/api/me/state",
            json={"state": state, "reason": reason},
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method,
            f"{base_url(self.city)}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            return response.status, await response.json()

    async def leave(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self.phone is not None:
            await asyncio.to_thread(self.phone.stop)
