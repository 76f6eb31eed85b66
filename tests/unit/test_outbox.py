"""The bounded WebSocket outbox shared by desks and the wallboard: messages go out in order, a
close waits for what is queued, and a client that stops reading is cut off and dropped."""

from __future__ import annotations

import asyncio
from typing import Any

from agent_client.desktops import DesktopHub
from tests.support.transports import FakeTransport
from web.outbox import TOO_SLOW, Outbox


class FakeSocket:
    def __init__(self, *, stuck: bool = False) -> None:
        self.stuck = stuck
        self.sent: list[str] = []
        self.closes: list[dict[str, Any]] = []

    async def send_str(self, text: str) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        self.sent.append(text)

    async def close(self, **kwargs: Any) -> bool:
        if self.stuck:
            await asyncio.Event().wait()
        self.closes.append(kwargs)
        return True


async def test_a_close_waits_for_what_is_queued_then_says_why() -> None:
    ws = FakeSocket()
    outbox = Outbox(ws, 4)  # type: ignore[arg-type]
    assert outbox.put("a") and outbox.put("b")
    outbox.close("replaced by a newer connection")
    assert not outbox.put("c")
    outbox.start()
    await asyncio.sleep(0.01)
    assert ws.sent == ["a", "b"]
    assert ws.closes == [{"message": b"replaced by a newer connection"}]


async def test_a_client_that_stops_reading_is_cut_off_and_dropped() -> None:
    ws, transport = FakeSocket(stuck=True), FakeTransport()
    slow: list[Outbox] = []
    outbox = Outbox(
        ws,  # type: ignore[arg-type]
        2,
        transport=transport,  # type: ignore[arg-type]
        close_timeout=0.05,
        on_too_slow=slow.append,
    )
    outbox.start()
    results = []
    for text in "abcd":
        results.append(outbox.put(text))
        await asyncio.sleep(0)
    assert results == [True, True, True, False]  # one in the stuck send, two queued, then full
    assert slow == [outbox] and outbox.closed_reason == TOO_SLOW
    assert not outbox.put("e")
    await outbox.wait_closed()
    assert transport.aborted


async def test_a_close_with_a_full_queue_cuts_off_at_once() -> None:
    ws, transport = FakeSocket(stuck=True), FakeTransport()
    outbox = Outbox(ws, 1, transport=transport, close_timeout=0.05)  # type: ignore[arg-type]
    outbox.start()
    outbox.put("a")
    await asyncio.sleep(0)
    outbox.put("b")
    outbox.close("server shutting down")
    assert outbox.closing is not None
    await outbox.wait_closed()
    assert transport.aborted and outbox.closed_reason == "server shutting down"


class FakeDirectory:
    def endpoint_of(self, agent_id: str) -> str | None:
        return f"agent-{agent_id}"


async def test_a_desktop_too_slow_is_cut_off_and_a_newer_one_replaces_it() -> None:
    hub = DesktopHub(FakeDirectory(), outbox_size=2)  # type: ignore[arg-type]
    stuck, transport = FakeSocket(stuck=True), FakeTransport()
    old = hub.attach("ola", stuck, transport)  # type: ignore[arg-type]
    old.outbox._close_timeout = 0.05
    old.start()
    sent = [hub.send("ola", {"type": "ping", "n": n}) for n in range(2)]
    await asyncio.sleep(0)  # the first is taken into the send that never ends
    sent += [hub.send("ola", {"type": "ping", "n": n}) for n in range(2, 5)]
    assert sent == [True, True, True, False, False] and old.closed_reason == TOO_SLOW
    await old.outbox.wait_closed()
    assert transport.aborted
    fresh = FakeSocket()
    new = hub.attach("ola", fresh)  # type: ignore[arg-type]
    new.start()
    hub.send_pop("ola", {"call_id": "c1"})
    await asyncio.sleep(0.01)
    assert fresh.sent == ['{"type": "pop", "call_id": "c1"}']
    hub.detach(old)  # a stale connection leaving does not drop the new one
    assert hub.send("ola", {"type": "pong"})
    hub.close_all()
    await asyncio.sleep(0.01)
    assert fresh.closes == [{"message": b"server shutting down"}]
