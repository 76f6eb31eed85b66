"""Fuzzing the AMI event path (pbx/ami.py and its subscribers), no Asterisk: hostile events
go through the real path - raw bytes through panoramisk's parser and our protocol into
AmiLink's queue, its consumer, and the real subscribers wired as cityline/wiring.py wires them
(DeviceTracker, CallbackDialer, CallHandler, FallbackCalls) over a real ACD.

Property: nothing raises out of the protocol (that would drop the AMI connection), no
listener fails, the ACD's invariants hold, and ordinary events afterwards still do their work."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule
from panoramisk.message import Message
from structlog.testing import capture_logs

from acd.devices import DeviceTracker
from acd.engine import Engine
from acd.live import AcdService
from acd.widening import StrictQueues
from calls.callbacks import CallbackDialer, CallbackRequest
from calls.fallback import FallbackCalls
from ivr.call_handler import CallHandler, CallSettings, LiveCall
from pbx.ami import AmiLink, _Manager, _Protocol
from tests.fuzz.hostile import cut, fuzz_settings, seeds
from tests.support.acd_invariants import check_invariants

# Bounded by example counts; the timeout only catches a run gone wrong on a loaded machine.
pytestmark = pytest.mark.timeout(600)

ENDPOINTS = {"ep-alice": "alice", "ep-bob": "bob", "ep-carol": "carol"}  # carol: never fuzzed
LIVE_UNIQUEID = "1700000000.1"
LIVE_CALL = str(uuid.UUID(int=1))
CALLBACK_CALL = str(uuid.UUID(int=2))
PENDING_ACTION = "callback-pending-1"
FAILURES = {
    "ami_listener_failed", "ami_event_unreadable", "ami_event_enqueue_failed",
    "ami_reconnect_listener_failed", "ami_message_unreadable", "fallback_record_failed", "call_event_not_stored",
}  # fmt: skip


class FakeRecords:
    """CallRecords in memory (the database is not what this suite tests)."""

    def __init__(self) -> None:
        self.read = self
        self.calls: dict[uuid.UUID, dict[str, Any]] = {}
        self.events: list[tuple[uuid.UUID, str, dict[str, Any]]] = []

    async def get_call(self, call_id: uuid.UUID) -> dict[str, Any] | None:
        return self.calls.get(call_id)

    async def arrived(self, call_id: uuid.UUID, **fields: Any) -> None:
        assert isinstance(call_id, uuid.UUID)
        self.calls[call_id] = dict(fields)

    async def update(self, call_id: uuid.UUID, **fields: Any) -> None:
        assert isinstance(call_id, uuid.UUID)
        self.calls.setdefault(call_id, {}).update(fields)

    async def event(
        self, call_id: uuid.UUID, kind: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        assert isinstance(call_id, uuid.UUID)
        self.events.append((call_id, kind, dict(detail or {})))

    async def event_safely(self, call_id: uuid.UUID, kind: str, **detail: Any) -> None:
        await self.event(call_id, kind, detail)

    def wait_figures(self, wait_seconds: float, *, answered: bool) -> dict[str, Any]:
        return {"wait_seconds": wait_seconds}


class FakeDesktops:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def endpoint_of(self, agent_id: str) -> str | None:
        return next((e for e, a in ENDPOINTS.items() if a == agent_id), None)

    def phones_of(self, agent_id: str) -> list[str]:
        endpoint = self.endpoint_of(agent_id)
        return [endpoint] if endpoint else []

    def send_pop(self, agent_id: str, pop: Mapping[str, Any]) -> None:
        self.sent.append((agent_id, dict(pop)))

    def send_call_update(self, agent_id: str, call_id: str, status: str) -> None:
        self.sent.append((agent_id, status))

    def pass_pop(self, call_id: str, to_agent: str) -> None:
        self.sent.append((to_agent, call_id))


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class Rig:
    """An AmiLink that never connects, fed through panoramisk's protocol, with the service's
    subscribers on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = 1_000.0
        self.link = AmiLink("127.0.0.1", 1, "fuzz", "fuzz")
        self.link._transport_up = True  # FullyBooted then logs in, as after a real connect
        manager = _Manager(
            self.link, loop=loop, host="127.0.0.1", port=1, username="fuzz", secret="fuzz",
            events="on", ping_delay=10**6, ping_interval=10**6, protocol_factory=_Protocol,
        )  # fmt: skip
        manager.register_event("*", self.link._on_event)
        self.manager = manager
        self.protocol = _Protocol()
        self.protocol.connection_made(_Transport())  # type: ignore[arg-type]
        self.protocol.factory = manager
        self.protocol.encoding = "utf8"
        manager.protocol = self.protocol

        self.acd = AcdService(Engine(widening=StrictQueues()), clock=lambda: self.now)
        for agent in ENDPOINTS.values():
            self.acd.upsert_agent(agent, {"lang:pl": 5, "group:roads": 5})
            self.acd.login(agent)
            self.acd.set_ready(agent)
        self.records = FakeRecords()
        self.desktops = FakeDesktops()
        self.devices = DeviceTracker(self.acd, ENDPOINTS.get)
        self.callbacks = CallbackDialer(
            acd=self.acd, ami=self.link, records=self.records, cases=None,  # type: ignore[arg-type]
            endpoint_of=self.desktops.endpoint_of, send_pop=self.desktops.send_pop,
            ring_timeout_seconds=5,
        )  # fmt: skip
        self.handler = CallHandler(
            records=self.records, cases=None, acd=self.acd, desktops=self.desktops,  # type: ignore[arg-type]
            recordings=None, catalogue=None, services=None, settings=CallSettings(),  # type: ignore[arg-type]
            callbacks=self.callbacks, agent_for_endpoint=ENDPOINTS.get, clock=lambda: self.now,
        )  # fmt: skip
        self.fallback = FallbackCalls(self.records, agent_for_endpoint=ENDPOINTS.get)  # type: ignore[arg-type]
        # wired as cityline/wiring.py does, in the same order
        self.callbacks.subscribe(self.link)
        self.handler.subscribe(self.link)
        self.fallback.subscribe(self.link)
        self.devices.subscribe(self.link)
        self.seen: list[str] = []
        self.link.add_listener(lambda event: self.seen.append(event.get("Seq", "")))

        # state for the hostile events to hit: a call in progress, a callback being dialled
        self.live = LiveCall(LIVE_CALL, LIVE_UNIQUEID)
        self.handler.live[LIVE_UNIQUEID] = self.live
        self.acd.enqueue(LIVE_CALL, language="pl", group="roads")
        self.callbacks.register(CallbackRequest(CALLBACK_CALL, "48221234567", "pl", "roads", 0.0))
        self.callbacks._originating[PENDING_ACTION] = CALLBACK_CALL
        # every task a subscriber starts, to see that none of them failed
        self.spawned: list[asyncio.Future[Any]] = []
        spawn = self.callbacks._spawn

        def spawn_and_keep(work: Any) -> None:
            spawn(work)
            self.spawned.extend(self.callbacks._tasks - set(self.spawned))

        self.callbacks._spawn = spawn_and_keep  # type: ignore[method-assign]
        self.tasks = [
            loop.create_task(self.link._consume()),
            loop.create_task(self.fallback.follow()),
        ]
        self._seq = 0

    def feed(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def push(self, headers: Mapping[str, Any]) -> None:
        """An event as panoramisk's parser hands it over."""
        self.protocol.handle_message(Message(dict(headers)))

    async def settle(self) -> None:
        """Until every event given so far has been through every listener."""
        self._seq += 1
        marker = f"settle-{self._seq}"
        self.feed(f"Event: FuzzMarker\r\nSeq: {marker}\r\n\r\n".encode())
        for _ in range(10_000):
            if marker in self.seen:
                break
            await asyncio.sleep(0)
        else:
            raise AssertionError("the event stream stopped")
        for _ in range(20):  # the fallback follower and spawned tasks run their turn
            await asyncio.sleep(0)

    async def close(self) -> None:
        for task in self.tasks + list(self.callbacks._tasks):
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def check_state(rig: Rig) -> None:
    failed = [
        t.exception() for t in rig.spawned if t.done() and not t.cancelled() and t.exception()
    ]
    assert not failed, failed
    check_invariants(rig.acd.engine)
    for agent in ENDPOINTS.values():
        if agent in rig.devices._registered:  # once a phone was seen, the ACD follows it
            assert rig.acd.agent_view(agent)["reachable"] == bool(rig.devices.phones_of(agent))
    rig.acd.snapshot()


async def ordinary_events_still_work(rig: Rig) -> None:
    """After whatever came before (on other agents and calls): a phone goes and comes back, a
    key reaches a call that starts now, and a call in the fallback queue is recorded from entry
    to hang-up."""
    for state, reachable in (("UNAVAILABLE", False), ("NOT_INUSE", True)):
        rig.feed(
            f"Event: DeviceStateChange\r\nDevice: PJSIP/ep-carol\r\nState: {state}\r\n\r\n".encode()
        )
        await rig.settle()
        assert rig.acd.agent_view("carol")["reachable"] is reachable
    fresh = LiveCall(str(uuid.uuid4()), "1700000099.9")
    rig.handler.live[fresh.asterisk_uniqueid] = fresh
    rig.feed(b"Event: DTMFEnd\r\nUniqueid: 1700000099.9\r\nDirection: Received\r\nDigit: 5\r\n\r\n")
    await rig.settle()
    assert fresh.keys.get_nowait() == (1, "5")
    rig.feed(
        b"Event: UserEvent\r\nUserEvent: CityLineFallback\r\nUniqueid: 1700000097.7\r\n"
        b"CallId: \r\nCaller: 48221234567\r\nAgiStatus: FAILURE\r\n\r\n"
    )
    await rig.settle()
    entered = [c for c, kind, _ in rig.records.events if kind == "fallback"]
    assert entered, "the fallback call was not recorded"
    followed = entered[-1]
    rig.feed(b"Event: Hangup\r\nUniqueid: 1700000097.7\r\nCause: 16\r\n\r\n")
    await rig.settle()
    ended = [d for c, kind, d in rig.records.events if c == followed and kind == "ended"]
    assert ended == [{"outcome": "fallback_abandoned"}], ended


@contextlib.contextmanager
def failures_recorded() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as logs:
        yield logs
    bad = [
        e
        for e in logs
        if e["event"] in FAILURES
        or (e.get("log_level") in ("error", "critical") and "exc_info" in e)
    ]
    assert not bad, bad


# -- what the hostile events are made of -----------------------------------------------------

EVENT_NAMES = [
    "DeviceStateChange", "DialEnd", "BlindTransfer", "DTMFEnd", "OriginateResponse",
    "UserEvent", "Hangup", "AgentConnect", "FullyBooted", "Newchannel", "VarSet", "",
]  # fmt: skip
HEADERS = [
    "Device", "State", "DialStatus", "Uniqueid", "Result", "Extension", "TransfereeUniqueid",
    "Direction", "Digit", "ActionID", "Response", "Reason", "UserEvent", "CallId", "Caller",
    "AgiStatus", "Interface", "Event", "EVENT", "uniqueid", "CommandID", "Seq",
]  # fmt: skip
KNOWN_VALUES = [
    LIVE_UNIQUEID, LIVE_CALL, CALLBACK_CALL, PENDING_ACTION, "PJSIP/ep-alice", "PJSIP/ep-bob",
    "PJSIP/ep-alice-web", "ep-alice", "ep-bob", "ANSWER", "Success", "Failure", "Received",
    "Sent", "UNAVAILABLE", "NOT_INUSE", "INVALID", "CityLineFallback", "CityLineCallbackAnswered",
    "CityLineCallbackDone", "5", "#", "", " ", "1700000098.8",
]  # fmt: skip
_odd_text = st.text(max_size=40)  # any code point: NUL, surrogates, controls, non-ASCII
header_value = st.one_of(
    st.sampled_from(KNOWN_VALUES),
    _odd_text,
    st.integers(1_000, 100_000).map(lambda n: "9" * n),
    st.lists(st.sampled_from(KNOWN_VALUES) | _odd_text, min_size=2, max_size=3),
)
any_event = st.fixed_dictionaries(
    {"Event": st.sampled_from(EVENT_NAMES) | _odd_text | header_value},
    optional={h: header_value for h in HEADERS if h != "Event"},
).flatmap(
    lambda d: st.dictionaries(_odd_text.filter(bool), header_value, max_size=3).map(
        lambda extra: {**extra, **d}
    )
)
# Events the subscribers act on, their headers mostly naming the calls, agents and actions
# they know about (so the odd ones meet real state), some hostile, some missing.
_U = [LIVE_UNIQUEID]
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "DeviceStateChange": {"Device": ["PJSIP/ep-alice", "PJSIP/ep-alice-web", "PJSIP/ep-bob", "PJSIP/", "SIP/ep-bob"],
                          "State": ["NOT_INUSE", "UNAVAILABLE", "INUSE", "INVALID", "UNKNOWN", "RINGING"]},
    "DialEnd": {"DialStatus": ["ANSWER", "NOANSWER", "BUSY", "CANCEL"], "Uniqueid": _U},
    "BlindTransfer": {"Result": ["Success", "Fail"], "Extension": ["ep-bob", "ep-alice", "19115", ""],
                      "TransfereeUniqueid": _U},
    "DTMFEnd": {"Direction": ["Received", "Sent"], "Uniqueid": _U, "Digit": ["5", "#", "*", "A"]},
    "OriginateResponse": {"ActionID": [PENDING_ACTION, "other"], "Response": ["Success", "Failure"],
                          "Reason": ["0", "3", "5"]},
    "UserEvent:Fallback": {"UserEvent": ["CityLineFallback"], "CallId": [LIVE_CALL, "", "x"],
                           "Uniqueid": _U, "Caller": ["48221234567", ""], "AgiStatus": ["FAILURE"]},
    "UserEvent:Answered": {"UserEvent": ["CityLineCallbackAnswered"], "CallId": [CALLBACK_CALL]},
    "UserEvent:Done": {"UserEvent": ["CityLineCallbackDone"], "CallId": [CALLBACK_CALL],
                       "DialStatus": ["ANSWER", "NOANSWER", "BUSY"]},
    "Hangup": {"Uniqueid": _U},
    "AgentConnect": {"Uniqueid": _U, "Interface": ["PJSIP/ep-alice", "PJSIP/ep-bob", "Local/x"]},
    "FullyBooted": {},
}  # fmt: skip


def _field(values: list[str]) -> st.SearchStrategy[Any]:
    return st.sampled_from(["known"] * 7 + ["odd"] * 2 + ["missing"]).flatmap(
        lambda how: (
            st.sampled_from(values)
            if how == "known"
            else header_value
            if how == "odd"
            else st.just(None)
        )
    )


targeted_event = st.sampled_from(sorted(TEMPLATES)).flatmap(
    lambda name: st.fixed_dictionaries({h: _field(v) for h, v in TEMPLATES[name].items()}).map(
        lambda fields: {
            "Event": name.partition(":")[0],
            **{h: v for h, v in fields.items() if v is not None},
        }
    )
)
event_dict = st.one_of(targeted_event, targeted_event, any_event)
# raw AMI text: header lines, as Asterisk writes them, or nearly
_line_value = st.text(st.characters(exclude_characters="\r\n"), max_size=30) | st.sampled_from(
    KNOWN_VALUES
)
ODD_LINES = [
    "Response: Success", "Response: Error", "Response: Follows", "Response: Fail",
    f"ActionID: {PENDING_ACTION}", "Event:", ": x", ":",
]  # fmt: skip
raw_line = st.one_of(
    st.tuples(st.sampled_from(["Event", *HEADERS]), _line_value).map(
        lambda kv: f"{kv[0]}: {kv[1]}"
    ),
    st.sampled_from(EVENT_NAMES).map(lambda name: f"Event: {name}"),
    st.sampled_from(ODD_LINES),
    _line_value,
)
raw_message = st.lists(raw_line, min_size=1, max_size=8).map(
    lambda lines: ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", errors="surrogatepass")
)
raw_stream = st.one_of(
    st.lists(raw_message, max_size=10).map(b"".join),
    st.binary(max_size=300),
    st.lists(raw_message | st.binary(max_size=30), max_size=10).map(b"".join),
)
_loop = asyncio.new_event_loop()


def run(coro: Any) -> None:
    _loop.run_until_complete(coro)


@given(raw_stream, seeds)
@fuzz_settings(600)
def test_raw_ami_bytes_never_drop_the_link_or_fail_a_listener(data: bytes, seed: int) -> None:
    async def scenario() -> None:
        rig = Rig(_loop)
        try:
            with failures_recorded():
                for read in cut(data, seed):
                    rig.feed(read)  # an exception here would drop the AMI connection
                rig.feed(b"\r\n\r\n")  # whatever was left unterminated ends here
                await rig.settle()
                check_state(rig)
                await ordinary_events_still_work(rig)
                check_state(rig)
        finally:
            await rig.close()

    run(scenario())


class EventStream(RuleBasedStateMachine):
    """Events one after another: targeted or any headers, repeats of earlier ones, sometimes
    in the same read as the next, sometimes handled before the next arrives."""

    sent = Bundle("sent")

    def __init__(self) -> None:
        super().__init__()
        self.rig = Rig(_loop)
        self.logs = capture_logs()
        self.captured = self.logs.__enter__()

    @rule(target=sent, event=targeted_event)
    def targeted(self, event: dict[str, Any]) -> dict[str, Any]:
        self.rig.push(event)
        return event

    @rule(target=sent, event=any_event)
    def any_headers(self, event: dict[str, Any]) -> dict[str, Any]:
        self.rig.push(event)
        return event

    @rule(event=sent)
    def again(self, event: dict[str, Any]) -> None:
        self.rig.push(event)

    @rule()
    def handled(self) -> None:
        _loop.run_until_complete(self.rig.settle())

    @invariant()
    def consistent(self) -> None:
        check_state(self.rig)
        failed = [e for e in self.captured if e["event"] in FAILURES]
        assert not failed, failed

    def teardown(self) -> None:
        async def end() -> None:
            try:
                await self.rig.settle()
                check_state(self.rig)
                await ordinary_events_still_work(self.rig)
                check_state(self.rig)
            finally:
                await self.rig.close()
                self.logs.__exit__(None, None, None)

        _loop.run_until_complete(end())
        failed = [e for e in self.captured if e["event"] in FAILURES]
        assert not failed, failed


EventStream.TestCase.settings = settings(fuzz_settings(300), stateful_step_count=50)
test_any_event_headers_leave_the_subscribers_working = EventStream.TestCase
