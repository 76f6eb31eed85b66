"""The callback dialer keeps each pending request in PostgreSQL from the resident's "press 1"
until the callback is over, and puts the saved ones back in the ACD at start."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from acd.engine import Engine
from acd.live import AcdService
from calls.callbacks import CallbackDialer, CallbackRequest, PendingCallbacks


class FakeAmi:
    def __init__(self) -> None:
        self.originated: list[dict[str, Any]] = []

    async def originate(self, channel: str, **kwargs: Any) -> None:
        self.originated.append({"channel": channel, **kwargs})


class FakeRecords:
    async def update(self, call_id: uuid.UUID, **fields: Any) -> None:
        pass

    async def event_safely(self, call_id: uuid.UUID, kind: str, **detail: Any) -> None:
        pass

    def wait_figures(self, wait: float, *, answered: bool) -> dict[str, Any]:
        return {}


class FakeCases:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    async def create_case(self, **fields: Any) -> dict[str, Any]:
        self.created.append(fields)
        return {"id": len(self.created)}


class FakePending(PendingCallbacks):
    """The wishes the dialer hands over, without PostgreSQL."""

    def __init__(self, saved: list[tuple[CallbackRequest, int]] | None = None) -> None:
        self.saved = list(saved or [])
        self.rows: dict[str, tuple[int, int] | None] = {}

    def save(self, request: CallbackRequest, failures: int) -> None:
        self.rows[request.call_id] = (request.attempts, failures)

    def forget(self, call_id: str) -> None:
        self.rows[call_id] = None

    async def load(self) -> list[tuple[CallbackRequest, int]]:
        return self.saved


def make_dialer(
    pending: FakePending, **engine: Any
) -> tuple[CallbackDialer, AcdService, FakeCases]:
    acd = AcdService(Engine(**engine), clock=lambda: 1000.0)
    acd.upsert_agent("ola", {"lang:pl": 4, "group:waste": 4})
    acd.login("ola")
    cases = FakeCases()
    dialer = CallbackDialer(
        acd=acd, ami=FakeAmi(), records=FakeRecords(), cases=cases,  # type: ignore[arg-type]
        endpoint_of=lambda agent: f"agent-{agent}", send_pop=lambda agent, pop: None,
        ring_timeout_seconds=5, pending=pending,
    )  # fmt: skip
    acd.handle_callbacks(dialer.on_offer)
    return dialer, acd, cases


async def test_a_request_is_kept_until_the_callback_is_over() -> None:
    pending = FakePending()
    dialer, acd, _ = make_dialer(pending)
    call_id = str(uuid.uuid4())
    acd.enqueue(call_id, language="pl", group="waste")
    acd.request_callback(call_id, "48601")
    dialer.register(CallbackRequest(call_id, "48601", "pl", "waste", 990.0))
    assert pending.rows[call_id] == (0, 0)
    acd.set_ready("ola")  # the agent is rung for it
    await dialer.drain()
    assert pending.rows[call_id] == (1, 0)
    dialer.on_ami_event({"Event": "UserEvent", "UserEvent": "CityLineCallbackDone",
                         "CallId": call_id, "DialStatus": "NOANSWER"})  # fmt: skip
    await dialer.drain()
    assert pending.rows[call_id] == (1, 1)  # the resident was not reached once
    assert acd.waiting_count() == 1  # it waits to retry in its place


async def test_an_answered_callback_and_a_follow_up_are_forgotten() -> None:
    pending = FakePending()
    dialer, acd, cases = make_dialer(pending, callback_max_attempts=1)
    answered, failed = str(uuid.uuid4()), str(uuid.uuid4())
    for call_id in (answered, failed):
        acd.enqueue(call_id, language="pl", group="waste")
        acd.request_callback(call_id, "48601")
        dialer.register(CallbackRequest(call_id, "48601", "pl", "waste", 990.0))
    acd.set_ready("ola")
    await dialer.drain()
    dialer.on_ami_event({"Event": "UserEvent", "UserEvent": "CityLineCallbackAnswered",
                         "CallId": answered})  # fmt: skip
    dialer.on_ami_event({"Event": "UserEvent", "UserEvent": "CityLineCallbackDone",
                         "CallId": answered, "DialStatus": "ANSWER"})  # fmt: skip
    await dialer.drain()
    assert pending.rows[answered] is None
    await asyncio.sleep(0)
    await dialer.drain()  # the agent is free: the second callback rings it
    dialer.on_ami_event({"Event": "UserEvent", "UserEvent": "CityLineCallbackDone",
                         "CallId": failed, "DialStatus": "BUSY"})  # fmt: skip
    await dialer.drain()
    assert pending.rows[failed] is None and len(cases.created) == 1  # a case carries it on


async def test_saved_requests_wait_in_the_acd_again_and_are_dialled() -> None:
    old = CallbackRequest(str(uuid.uuid4()), "48602", "pl", None, 900.0, pop={"x": 1},
                          attempts=2)  # fmt: skip
    pending = FakePending([(old, 1)])
    dialer, acd, _ = make_dialer(pending)
    assert await dialer.restore() == 1
    info = acd.engine.call_info(old.call_id)
    assert (info.callback_number, info.group, info.callback_attempts) == ("48602", "other", 1)
    assert info.enqueued_at == 900.0
    assert dialer.requests[old.call_id] is old
    acd.upsert_agent("ola", {"lang:pl": 4, "group:other": 4})
    acd.set_ready("ola")
    await dialer.drain()
    assert isinstance(dialer._ami, FakeAmi) and len(dialer._ami.originated) == 1
    assert pending.rows[old.call_id] == (3, 1)
