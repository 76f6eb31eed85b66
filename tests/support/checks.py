"""Waiting for what a live system does eventually, without sleeping blindly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cityline.wiring import CityLine

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 15.0) -> T:
    """Poll until check() returns something truthy; the last value is in the failure."""
    deadline = asyncio.get_running_loop().time() + timeout
    value: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout} s; last value {value!r}")


async def only_call(city: CityLine, *, ended: bool = True) -> dict[str, Any]:
    """The one call record of this test, once it has ended (or as soon as it exists)."""

    async def check() -> dict[str, Any] | None:
        assert city.calls is not None
        calls = await city.calls.recent_calls()
        if len(calls) == 1 and (calls[0]["ended_at"] is not None or not ended):
            return calls[0]
        return None

    return await eventually(check)


def agent_is(city: CityLine, agent: str, **expected: Any) -> Callable[[], Awaitable[bool]]:
    """A check for eventually(): the agent's ACD view has these values (state, reachable...)."""

    async def check() -> bool:
        assert city.acd is not None
        view = city.acd.agent_view(agent)
        return all(view.get(key) == value for key, value in expected.items())

    return check


async def no_call_left(city: CityLine) -> bool:
    assert city.agi is not None and city.acd is not None
    return city.agi.active_sessions == 0 and city.acd.waiting_count() == 0
