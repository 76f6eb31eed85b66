"""Fuzzing both WebSockets against one running CityLine: the agent's desktop (/ws/agent) and the
supervisors' wallboard (/ws/wallboard) get hostile messages - text and binary, JSON of every
shape, nesting deeper than any parser's stack, huge numbers, NUL and lone surrogates, unknown
types, frames that are not UTF-8, messages over the size limit.

Properties: the desktop answers each bad message with an error message and keeps going; the
wallboard ignores what viewers send, or closes cleanly (a protocol-level code) when a frame
breaks the protocol; a good message still works after the bad ones; the server logs no fault
and still answers HTTP afterwards. Bounded like the HTTP suite (CITYLINE_FUZZ_WS_SECONDS for
all of it); the messages sent are counted in tests/artefacts/fuzz-websockets.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSMsgType
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs
from yarl import URL

from cityline.wiring import CityLine
from tests.fuzz.hostile import fuzz_settings
from tests.support.desk import admin_headers, base_url, create_account

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BUDGET_SECONDS = float(os.environ.get("CITYLINE_FUZZ_WS_SECONDS", "90"))
ARTEFACT = Path(__file__).resolve().parents[1] / "artefacts" / "fuzz-websockets.json"
PASSWORD = "fuzzing password"
AGENT = "fz-desk"
DESK_LIMIT = 16 * 1024  # agent_client/http.py MAX_WS_MESSAGE
WALLBOARD_LIMIT = 4096  # acd/http.py
# Closing codes that mean "your frame broke the protocol", a clean end of that connection.
CLEAN_CLOSES = {1002, 1003, 1007, 1009}
# What the server must never log while being fuzzed.
FAULTS = {"http_handler_failed", "write_behind_failed", "write_behind_not_saved"}


@dataclass
class Sockets:
    city: CityLine
    http: aiohttp.ClientSession
    token: str
    counts: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    deadlines: dict[str, float] = field(default_factory=dict)
    desk: aiohttp.ClientWebSocketResponse | None = None
    board: aiohttp.ClientWebSocketResponse | None = None
    board_states: int = 0
    board_reader: asyncio.Task[None] | None = None
    markers: int = 0
    done: bool = False  # we are closing the sockets ourselves
    desk_used_at: float = 0.0

    def has_time(self, test: str, share: float) -> bool:
        deadline = self.deadlines.setdefault(test, time.monotonic() + share * BUDGET_SECONDS)
        return time.monotonic() < deadline

    def ws_url(self, path: str, token: str) -> str:
        return base_url(self.city).replace("http", "ws") + f"{path}?token={token}"

    # -- the desktop --------------------------------------------------------------------------

    async def open_desk(self) -> aiohttp.ClientWebSocketResponse:
        # A client answers the server's heartbeat pings only while it reads: a desk left idle
        # (examples skipped once time is up, a slow machine) may have been closed for that.
        idle = time.monotonic() - self.desk_used_at > 5
        self.desk_used_at = time.monotonic()
        if self.desk is not None and not self.desk.closed and idle:
            await self.desk.close()
        if self.desk is None or self.desk.closed:
            self.desk = await self.http.ws_connect(
                self.ws_url("/ws/agent", self.token), max_msg_size=0
            )
            hello = await self.desk.receive_json(timeout=10)
            assert hello["type"] == "hello", hello
        return self.desk

    async def desk_exchange(self, frames: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Send the frames, then a marker of our own; every message up to the marker's answer.

        The marker is an unknown type, answered with an error naming it: nothing else in the
        stream can be mistaken for it."""
        ws = await self.open_desk()
        for kind, data in frames:
            await send_frame(ws, kind, data)
        self.markers += 1
        marker = f"fz-marker-{self.markers}"
        await ws.send_str(json.dumps({"type": marker}))
        answers: list[dict[str, Any]] = []
        while True:
            msg = await ws.receive(timeout=10)
            assert msg.type == WSMsgType.TEXT, (msg, frames)
            answer = json.loads(msg.data)
            if answer.get("type") == "error" and marker in answer.get("error", ""):
                return answers
            answers.append(answer)

    # -- the wallboard -----------------------------------------------------------------------

    async def open_board(self) -> aiohttp.ClientWebSocketResponse:
        if self.board is None or self.board.closed:
            if self.board_reader is not None:
                await self.board_reader
            self.board = await self.http.ws_connect(
                self.ws_url("/ws/wallboard", self.city.admin_token), max_msg_size=0
            )
            first = await self.board.receive_json(timeout=10)
            assert first["type"] == "wallboard" and "history" in first, first
            self.board_reader = asyncio.create_task(self._read_board(self.board))
        return self.board

    async def _read_board(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Take what the wallboard pushes (so it never sees us as slow) until it closes."""
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                assert json.loads(msg.data)["type"] == "wallboard"
                self.board_states += 1
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                if self.done:
                    return
                code = ws.close_code
                assert code in CLEAN_CLOSES, f"wallboard closed with {code}"
                self.closes[f"wallboard {code}"] += 1
                return
            elif msg.type == WSMsgType.ERROR:
                raise AssertionError(f"wallboard socket error {ws.exception()!r}")

    async def board_still_pushes(self) -> None:
        await self.open_board()
        seen = self.board_states
        for _ in range(60):  # pushed at least every second
            await asyncio.sleep(0.1)
            if self.board_states > seen:
                return
            if self.board is None or self.board.closed:
                await self.open_board()
                return
        raise AssertionError("the wallboard stopped pushing its state")


async def send_frame(ws: aiohttp.ClientWebSocketResponse, kind: str, data: Any) -> None:
    if kind == "text":
        await ws.send_str(data)
    elif kind == "binary":
        await ws.send_bytes(data)
    elif kind == "raw_text":  # bytes in a text frame, UTF-8 or not: no client API sends those
        await ws._writer.send_frame(data, WSMsgType.TEXT)
    elif kind == "ping":
        await ws.ping(data)
    else:
        await ws.pong(data)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sockets(module_city: CityLine) -> AsyncIterator[Sockets]:
    city = module_city
    with capture_logs() as logs:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await create_account(city, http, AGENT, password=PASSWORD)
            async with http.post(
                base_url(city) + "/api/login", json={"name": AGENT, "password": PASSWORD}
            ) as r:
                assert r.status == 200, await r.text()
                token = (await r.json())["token"]
            s = Sockets(city, http, token)
            yield s
            ARTEFACT.parent.mkdir(parents=True, exist_ok=True)
            tally = {"messages": dict(s.counts), "total": sum(s.counts.values()),
                     "closes": dict(s.closes)}  # fmt: skip
            ARTEFACT.write_text(json.dumps(tally, indent=1))
            s.done = True
            for ws in (s.desk, s.board):
                if ws is not None:
                    await ws.close()
            if s.board_reader is not None:
                await s.board_reader
            # the service still answers
            async with http.get(base_url(city) + "/api/agents", headers=admin_headers(city)) as r:
                assert r.status == 200
    faults = [
        e
        for e in logs
        if e["event"] in FAULTS or (e.get("log_level") in ("error", "critical") and "exc_info" in e)
    ]
    assert not faults, faults[:5]


# -- hostile messages -----------------------------------------------------------------------

_any_text = st.text(max_size=24)  # NUL and lone surrogates included
TYPES = ["ping", "state", "pong", "hello", "pop", "call", "error", "", "PING", " ping", "Ping"]
ODD = [
    None, True, 0, -1, 2**63, 10**400, 1e308, float("nan"), float("inf"), "", "\x00", "\ud800",
    "ready", "paused", "READY", "x" * 200, "１", [], {}, ["ready"], {"state": "ready"},
]  # fmt: skip
json_value = st.recursive(
    st.sampled_from(ODD) | st.integers() | st.floats() | _any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_any_text, inner, max_size=4),
    max_leaves=10,
)
desk_object = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(TYPES) | json_value,
        "state": st.sampled_from(["ready", "paused", "talking", "logged_out"]) | json_value,
        "reason": st.sampled_from(["lunch", "", "   ", "x" * 81, "a\x00b", "\ud800"]) | json_value,
    },
).flatmap(lambda d: st.dictionaries(_any_text, json_value, max_size=2).map(lambda x: {**x, **d}))


def dump(value: Any) -> str:
    return json.dumps(value)  # NaN/Infinity as Python writes them; surrogates as \\ud800


NESTINGS = {  # kind -> (opening, closing, per level): how deep fits in a size limit
    "list": ("", "", 2),
    "object": ("", "1", 6),
    "typed": ('{"type": "state", "state": ', "}", 2),
    "open": ("", "", 1),
}


def nested(depth: int, kind: str) -> str:
    head, tail, _ = NESTINGS[kind]
    if kind == "list" or kind == "typed":
        return head + "[" * depth + "]" * depth + tail
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth  # never closed


@st.composite
def nesting(draw: st.DrawFn, limit: int) -> str:
    """JSON nested 33 levels deep up to as deep as fits in `limit` bytes."""
    kind = draw(st.sampled_from(sorted(NESTINGS)))
    deepest = (limit - 40) // NESTINGS[kind][2]
    return nested(draw(st.sampled_from([33, 100, 1000, deepest // 2, deepest])), kind)


ODD_TEXTS = [
    "", " ", "null", "[]", "{}", '"ping"', "1", "NaN", "{", '{"type": "ping"', "ping",
    '{"type": "ping"}{"type": "ping"}', '{"type": "state", "state": "paused", "reason": "\\u0000"}',
    '{"type": "state", "state": "paused", "reason": "\\ud800"}', '{"type": "\\ud800"}',
    '{"type": "ping", "type": "state"}', '{"type": 1e999999}', "\x00", "\ufeff{}",
]  # fmt: skip


def text_message(limit: int) -> st.SearchStrategy[str]:
    return st.one_of(
        desk_object.map(dump),
        desk_object.map(dump),
        json_value.map(dump),
        st.sampled_from(ODD_TEXTS),
        nesting(limit),
        st.integers(1_000, min(6_000, limit - 50)).map(
            lambda n: '{"type": "state", "state": ' + "9" * n + "}"
        ),
        st.integers(1_000, min(6_000, limit - 50)).map(
            lambda n: '{"type": "ping", "n": -' + "1" * n + "}"
        ),
        _any_text.filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t)),
    )


def frame(limit: int) -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(
        text_message(limit).map(lambda t: ("text", t)),
        text_message(limit).map(lambda t: ("text", t)),
        st.binary(max_size=200).map(lambda b: ("binary", b)),
        text_message(limit).map(lambda t: ("binary", t.encode("utf-8", "surrogatepass"))),
        st.binary(max_size=64).map(lambda b: ("ping", b)),
        st.binary(max_size=64).map(lambda b: ("pong", b)),
    )


def surely_bad(kind: str, data: Any) -> bool:
    """Frames the desktop must answer with an error (others may be fine: a ping, a state)."""
    if kind == "binary":
        return True
    if kind != "text":
        return False  # control frames: the server answers pings itself
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return True
    return not isinstance(body, dict) or body.get("type") not in ("ping", "state")


# -- the desktop -----------------------------------------------------------------------------


@given(frames=st.lists(frame(DESK_LIMIT), min_size=1, max_size=6))
@fuzz_settings(2500)
async def test_desktop_answers_every_bad_message_and_goes_on(
    sockets: Sockets, frames: list[tuple[str, Any]]
) -> None:
    if not sockets.has_time("desk", 0.5):
        return
    answers = await sockets.desk_exchange(frames)
    sockets.counts["desk"] += len(frames)
    errors = [a for a in answers if a.get("type") == "error"]
    for answer in answers:
        assert answer.get("type") in ("error", "pong", "state"), (frames, answer)
    for error in errors:
        assert isinstance(error.get("error"), str) and 400 <= error.get("code", 0) < 500, error
    bad = sum(surely_bad(kind, data) for kind, data in frames)
    data_frames = sum(kind in ("text", "binary") for kind, _ in frames)
    assert bad <= len(errors) <= data_frames, (frames, answers)


@given(
    size=st.sampled_from([DESK_LIMIT + 1, DESK_LIMIT * 2, 100_000, 1_000_000]),
    kind=st.sampled_from(["text", "binary"]),
    deep=st.booleans(),
)
@fuzz_settings(40)
async def test_desktop_message_over_the_limit_closes_that_socket_only(
    sockets: Sockets, size: int, kind: str, deep: bool
) -> None:
    if not sockets.has_time("desk_big", 0.05):
        return
    ws = await sockets.open_desk()
    text = ("[" * size) if deep else ('{"type": "ping", "x": "' + "x" * size + '"}')
    await send_frame(ws, kind, text if kind == "text" else text.encode())
    sockets.counts["desk_big"] += 1
    msg = await ws.receive(timeout=10)
    while msg.type == WSMsgType.TEXT:  # a push or an answer sent before the frame arrived
        msg = await ws.receive(timeout=10)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED), msg
    assert ws.close_code in CLEAN_CLOSES, ws.close_code
    sockets.closes[f"desk {ws.close_code}"] += 1
    assert await sockets.desk_exchange([("text", '{"type": "ping"}')]) == [{"type": "pong"}]


@given(data=st.binary(min_size=1, max_size=100))
@fuzz_settings(60)
async def test_desktop_text_frames_that_are_not_utf8(sockets: Sockets, data: bytes) -> None:
    if not sockets.has_time("desk_raw", 0.05):
        return
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    if valid:
        answers = await sockets.desk_exchange([("raw_text", data)])
        assert all(a.get("type") in ("error", "pong", "state") for a in answers), answers
    else:
        ws = await sockets.open_desk()
        await send_frame(ws, "raw_text", data)
        msg = await ws.receive(timeout=10)
        while msg.type == WSMsgType.TEXT:
            msg = await ws.receive(timeout=10)
        assert ws.close_code in CLEAN_CLOSES, (data, msg, ws.close_code)
        sockets.closes[f"desk {ws.close_code}"] += 1
    sockets.counts["desk_raw"] += 1


async def test_desktop_state_changes_still_work_after_the_fuzz(sockets: Sockets) -> None:
    for state in ("paused", "ready"):
        message = {"type": "state", "state": state, "reason": "fuzz done"}
        answers = await sockets.desk_exchange([("text", json.dumps(message))])
        assert any(a["type"] == "state" and a["acd"]["state"] == state for a in answers), answers
    assert await sockets.desk_exchange([("text", '{"type": "ping"}')]) == [{"type": "pong"}]


# -- the wallboard ---------------------------------------------------------------------------


@given(frames=st.lists(frame(WALLBOARD_LIMIT), min_size=1, max_size=8))
@fuzz_settings(1500)
async def test_wallboard_ignores_what_viewers_send(
    sockets: Sockets, frames: list[tuple[str, Any]]
) -> None:
    if not sockets.has_time("wallboard", 0.3):
        return
    ws = await sockets.open_board()
    for kind, data in frames:
        await send_frame(ws, kind, data)
    sockets.counts["wallboard"] += len(frames)
    if sockets.counts["wallboard"] // 8 % 50 == 0:  # now and then: still pushing its state
        await sockets.board_still_pushes()
    assert not ws.closed or ws.close_code in CLEAN_CLOSES


@given(
    size=st.sampled_from([WALLBOARD_LIMIT + 1, 20_000, 1_000_000]),
    kind=st.sampled_from(["text", "binary", "raw_text"]),
)
@fuzz_settings(20)
async def test_wallboard_message_over_the_limit_or_not_utf8_closes_cleanly(
    sockets: Sockets, size: int, kind: str
) -> None:
    if not sockets.has_time("wallboard_big", 0.03):
        return
    ws = await sockets.open_board()
    data: str | bytes = {"raw_text": b"\xff" * size, "binary": b"[" * size}.get(kind, "[" * size)
    await send_frame(ws, kind, data)
    sockets.counts["wallboard_big"] += 1
    assert sockets.board_reader is not None
    await asyncio.wait_for(sockets.board_reader, 10)  # closed, with a clean code (checked there)
    await sockets.board_still_pushes()  # a new viewer gets the state at once


@given(
    path=st.sampled_from(["/ws/agent", "/ws/wallboard"]),
    token=st.one_of(
        st.sampled_from(["", "x", "null", "%00", "%ff%fe", "%ED%A0%80", "a" * 600]),
        st.text(max_size=30).map(
            lambda t: "".join(f"%{b:02X}" for b in t.encode("utf-8", "surrogatepass"))
        ),
    ),
)
@fuzz_settings(200)
async def test_handshakes_with_bad_tokens_are_refused(
    sockets: Sockets, path: str, token: str
) -> None:
    if not sockets.has_time("handshake", 0.04):
        return
    url = base_url(sockets.city).replace("http", "ws") + f"{path}?token={token}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await sockets.http.ws_connect(URL(url, encoded=True))
    assert refused.value.status in (400, 401), refused.value
    sockets.counts["handshake"] += 1
