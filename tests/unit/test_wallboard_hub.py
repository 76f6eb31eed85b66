"""The wallboard fan-out: one computed state, and a slow viewer never delays the others."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from acd.engine import Engine
from acd.live import AcdService
from acd.service_level import ServiceLevelWindows
from acd.wallboard_hub import WallboardHub


class FakeSocket:
    def __init__(self, *, stuck: bool = False) -> None:
        self.stuck = stuck
        self.sent: list[str] = []
        self.closed = False

    async def send_str(self, text: str) -> None:
        if self.stuck:
            await asyncio.Event().wait()  # a viewer whose network never drains
        self.sent.append(text)

    async def close(self, **_: Any) -> bool:
        self.closed = True
        return True


def hub() -> tuple[WallboardHub, AcdService]:
    acd = AcdService(Engine(stats=ServiceLevelWindows()), clock=lambda: 1000.0)
    return WallboardHub(acd, outbox_size=4), acd


async def test_a_stuck_viewer_is_cut_off_and_the_others_get_every_update() -> None:
    board, _ = hub()
    fast, stuck = FakeSocket(), FakeSocket(stuck=True)
    viewers = [board._viewer(fast, None), board._viewer(stuck, None)]  # type: ignore[arg-type]
    for viewer in viewers:
        board._viewers.add(viewer)
        viewer.start()
    for _ in range(10):
        board.publish()
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert len(fast.sent) == 10
    assert board.cut_off == 1 and board.viewers == 1
    for viewer in viewers:
        viewer.stop()


async def test_the_state_has_live_figures_and_service_level() -> None:
    board, acd = hub()
    acd.upsert_agent("anna", {"lang:pl": 5, "group:roads": 5})
    acd.login("anna")
    acd.enqueue("c1", language="pl", group="roads")
    board.publish()
    state = json.loads(board.last_text)
    assert state["type"] == "wallboard"
    assert state["live"]["calls"]["waiting"] == 1
    assert state["live"]["agents"]["by_state"]["paused"] == 1
    assert state["service_level"]["15min"]["overall"]["waiting"] == 1
