"""The hub end to end with fake sockets: a new viewer's first message carries the day's history,
later ones only the newest point; a viewer that never reads is cut off and its connection
dropped, while the others keep getting every state."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from acd.engine import Engine
from acd.live import AcdService
from acd.service_level import ServiceLevelWindows
from acd.wallboard_hub import WallboardHub
from tests.support.transports import FakeTransport


class FakeSocket:
    """A viewer's WebSocket: never sends anything; a stuck one never drains."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.stuck = stuck
        self.sent: list[dict[str, Any]] = []
        self.closed = asyncio.Event()

    async def send_str(self, text: str) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        self.sent.append(json.loads(text))

    async def close(self, **_: Any) -> bool:
        if self.stuck:
            await asyncio.Event().wait()  # a close frame cannot get out either
        self.closed.set()
        return True

    def __aiter__(self) -> FakeSocket:
        return self

    async def __anext__(self) -> Any:
        await self.closed.wait()
        raise StopAsyncIteration


def make_hub(now: list[float]) -> tuple[WallboardHub, AcdService]:
    acd = AcdService(Engine(stats=ServiceLevelWindows()), clock=lambda: now[0])
    hub = WallboardHub(acd, outbox_size=4, history_interval=10.0, close_timeout=0.05)
    return hub, acd


async def test_a_new_viewer_gets_the_history_once_then_points() -> None:
    now = [1000.0]
    hub, acd = make_hub(now)
    acd.upsert_agent("ida", {"lang:pl": 3})
    hub.publish()
    now[0] = 1012.0
    hub.publish()
    ws = FakeSocket()
    viewer = asyncio.create_task(hub.serve(ws))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    now[0] = 1013.0
    acd.enqueue("c1", language="pl", group="roads")
    hub.publish()
    await asyncio.sleep(0.01)
    first, second = ws.sent
    assert first["type"] == "wallboard" and first["history"]["t"] == [1000.0, 1010.0]
    assert first["history"]["waiting"] == [0, 0]
    assert first["point"] == {"t": 1010.0, "sl_15min": None, "sl_today": None, "waiting": 0}
    assert "history" not in second
    assert second["point"]["t"] == 1010.0 and second["point"]["waiting"] == 1  # the peak
    assert second["agents"][0]["agent_id"] == "ida"
    ws.closed.set()
    await viewer
    assert hub.viewers == 0


async def test_viewers_arriving_together_share_one_welcome_text() -> None:
    hub, _ = make_hub([1000.0])
    hub.publish()
    assert hub.welcome_text() is hub.welcome_text()
    before = hub.welcome_text()
    hub.publish()
    assert hub.welcome_text() is not before


async def test_a_viewer_that_never_reads_is_dropped_and_the_others_get_every_state() -> None:
    hub, _ = make_hub([1000.0])
    fast, stuck = FakeSocket(), FakeSocket(stuck=True)
    transport = FakeTransport()
    viewers = [
        asyncio.create_task(hub.serve(fast, FakeTransport())),  # type: ignore[arg-type]
        asyncio.create_task(hub.serve(stuck, transport)),  # type: ignore[arg-type]
    ]
    await asyncio.sleep(0)
    for _ in range(20):
        hub.publish()
        await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    assert len(fast.sent) == 21  # the welcome and every state
    assert hub.cut_off == 1 and hub.viewers == 1
    assert transport.aborted  # the polite close could not get out: the connection is dropped
    fast.closed.set()
    await hub.stop()
    for task in viewers:
        task.cancel()
    await asyncio.gather(*viewers, return_exceptions=True)


async def test_stop_closes_every_viewer_even_a_stuck_one() -> None:
    hub, _ = make_hub([1000.0])
    await hub.start()
    stuck, transport = FakeSocket(stuck=True), FakeTransport()
    task = asyncio.create_task(hub.serve(stuck, transport))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    async with asyncio.timeout(2):
        await hub.stop()
    assert transport.aborted and hub.viewers == 0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
