"""The live ACD adapter: offers reach the right waiting call, events reach listeners."""

from __future__ import annotations

import asyncio

from acd.engine import Engine
from acd.events import AcdEvent, AgentChanged, CallOffered
from acd.live import AcdService


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_acd() -> tuple[AcdService, Clock, list[AcdEvent]]:
    clock = Clock()
    acd = AcdService(Engine(), clock=clock)
    events: list[AcdEvent] = []
    acd.subscribe(events.append)
    return acd, clock, events


def ready_agent(acd: AcdService, name: str, **skills: int) -> None:
    acd.upsert_agent(name, {"lang:pl": 5, **{f"group:{g}": p for g, p in skills.items()}})
    acd.login(name)
    acd.set_ready(name)


async def test_a_free_agent_is_offered_at_once_without_waiting() -> None:
    acd, _, events = make_acd()
    ready_agent(acd, "anna", roads=5)
    ticket = acd.enqueue("c1", language="pl", group="roads")
    offer = ticket.take_offer()
    assert offer is not None and offer.agent_id == "anna"
    assert CallOffered("c1", "anna") in events
    assert acd.agent_view("anna")["state"] == "ringing"


async def test_a_waiting_call_gets_the_agent_who_becomes_ready() -> None:
    acd, clock, _ = make_acd()
    acd.upsert_agent("bob", {"lang:pl": 5, "group:waste": 5})
    acd.login("bob")
    ticket = acd.enqueue("c1", language="pl", group="waste")
    assert ticket.take_offer() is None
    clock.now += 3
    acd.set_ready("bob")
    offer = await asyncio.wait_for(ticket.next_offer(), 1)
    assert offer.agent_id == "bob"


async def test_no_answer_pauses_the_agent_and_offers_the_next_one() -> None:
    acd, clock, _ = make_acd()
    ready_agent(acd, "dave", roads=3)
    clock.now += 1
    ready_agent(acd, "erin", roads=3)
    ticket = acd.enqueue("c1", language="pl", group="roads")
    first = ticket.take_offer()
    assert first is not None and first.agent_id == "dave"
    acd.ring_no_answer("c1")
    second = ticket.take_offer()
    assert second is not None and second.agent_id == "erin"
    assert acd.agent_view("dave")["state"] == "paused"


async def test_finish_frees_the_agent_for_the_next_call() -> None:
    acd, _, events = make_acd()
    ready_agent(acd, "carol", noise=4)
    acd.enqueue("c1", language="pl", group="noise").take_offer()
    acd.answered("c1")
    assert acd.agent_view("carol")["state"] == "on_call"
    acd.finish("c1", talked=True)
    assert acd.agent_view("carol")["state"] == "ready"
    acd.finish("c1", talked=True)  # twice after a fault: nothing held, nothing raised
    assert any(isinstance(e, AgentChanged) and e.agent_id == "carol" for e in events)


async def test_a_caller_who_gives_up_while_ringing_frees_the_agent() -> None:
    acd, _, _ = make_acd()
    ready_agent(acd, "fay", roads=4)
    acd.enqueue("c1", language="pl", group="roads").take_offer()
    acd.finish("c1", talked=False)
    assert acd.agent_view("fay")["state"] == "ready"
    assert acd.waiting_count() == 0


async def test_no_group_goes_to_any_agent_of_the_language() -> None:
    acd, clock, _ = make_acd()
    ready_agent(acd, "gus", noise=2)
    ticket = acd.enqueue("c1", language="pl", group=None)
    clock.now += 1
    acd.engine.tick(clock.now)
    offer = ticket.take_offer()
    if offer is None:  # widening may need a tick of the live loop
        acd._dispatch(acd.engine.tick(clock.now + 1))
        offer = await asyncio.wait_for(ticket.next_offer(), 1)
    assert offer.agent_id == "gus"


async def test_a_failing_listener_does_not_stop_the_others() -> None:
    acd, _, events = make_acd()

    def broken(event: AcdEvent) -> None:
        raise RuntimeError("listener bug")

    acd.subscribe(broken)
    ready_agent(acd, "hal", roads=1)
    assert events  # the first listener still heard everything


async def test_unknown_agent_view_is_explicit() -> None:
    acd, _, _ = make_acd()
    assert acd.agent_view("nobody") == {"agent_id": "nobody", "state": "unknown"}
