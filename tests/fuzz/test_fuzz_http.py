"""Fuzzing the HTTP API against one running CityLine: hypothesis-made requests over every route
(methods, path ids of every shape, query strings, JSON and non-JSON bodies) as nobody, with a
bad token, as an agent, a supervisor and the admin.

Property: no answer is a 5xx (the server never fails on what a client sends), every error is
JSON with an "error", and the service still answers afterwards. The suite is bounded: fixed
seeds, a number of examples per test and a wall-clock share each (CITYLINE_FUZZ_HTTP_SECONDS
for all of them together); the cases run are counted in tests/artefacts/fuzz-http.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs
from yarl import URL

from cityline.wiring import CityLine
from db.pool import utcnow
from tests.fuzz.hostile import fuzz_settings
from tests.support.desk import admin_headers, base_url, create_account

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BUDGET_SECONDS = float(os.environ.get("CITYLINE_FUZZ_HTTP_SECONDS", "120"))
ARTEFACT = Path(__file__).resolve().parents[1] / "artefacts" / "fuzz-http.json"
PASSWORD = "fuzzing password"
AGENT, SUPERVISOR = "fz-agent", "fz-boss"
KNOWN_CALL = uuid.UUID("5e1ec7ed-0000-4000-8000-00000000ca11")  # a call record the suite makes

# -- the service under fuzz, shared by every test of the module ----------------------------


@dataclass
class Api:
    city: CityLine
    http: aiohttp.ClientSession
    tokens: dict[str, str]
    case_id: int
    call_id: uuid.UUID
    counts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    deadlines: dict[str, float] = field(default_factory=dict)

    def has_time(self, test: str, share: float) -> bool:
        """Whether `test` is still within its share of the module's wall-clock budget."""
        deadline = self.deadlines.setdefault(test, time.monotonic() + share * BUDGET_SECONDS)
        return time.monotonic() < deadline

    def auth(self, who: str) -> dict[str, str]:
        token = self.tokens.get(who, who)
        return {"Authorization": f"Bearer {token}"} if who != "none" else {}

    async def refresh(self) -> None:
        """New sessions for the agent and the supervisor (a fuzzed log-out or log-in ends
        them); straight from the directory, so the log-in throttle never stands in the way."""
        directory = self.city.directory
        assert directory is not None
        for who, name in (("agent", AGENT), ("supervisor", SUPERVISOR)):
            self.tokens[who] = await directory.open_session(directory.by_name[name])

    async def send(
        self,
        test: str,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One request (`target` already percent-encoded, sent as it is); checks the answer.

        The target is cut to 8,000 bytes: aiohttp's own parser answers a longer request line
        (over 8,190 bytes) with a plain-text 400 before the application sees it."""
        target = target[:8000]
        url = URL(base_url(self.city) + target, encoded=True)
        async with self.http.request(
            method, url, data=body, headers=headers or {}, allow_redirects=False
        ) as response:
            status, raw = response.status, await response.read()
            kind = response.headers.get("Content-Type", "")
        self.counts[test] += 1
        self.statuses[status] += 1
        where = f"{method} {target[:200]!r} body={(body or b'')[:200]!r} headers={headers!r}"
        # /healthz answers 503 when a part of the service is down: that is its job, not a fault
        healthz_down = target.startswith("/healthz") and status == 503
        assert status < 500 or healthz_down, f"{status} for {where}: {raw[:300]!r}"
        if status >= 400 and method != "HEAD":
            assert kind.startswith("application/json"), (
                f"{status} {kind} for {where}: {raw[:200]!r}"
            )
            answer = json.loads(raw)
            assert isinstance(answer, dict) and isinstance(answer.get("error"), str), (
                where,
                answer,
            )
        if (
            status == 401
            and headers
            and headers.get("Authorization", "").endswith(
                (self.tokens["agent"], self.tokens["supervisor"])
            )
        ):
            await self.refresh()
        elif target.startswith("/api/logout") and status == 200:
            await self.refresh()
        return status, raw


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(module_city: CityLine) -> AsyncIterator[Api]:
    city = module_city
    with capture_logs() as logs:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            api = await _prepare(city, http)
            yield api
            tally = {
                "cases": dict(api.counts),
                "total": sum(api.counts.values()),
                "statuses": {str(k): v for k, v in sorted(api.statuses.items())},
            }
            ARTEFACT.parent.mkdir(parents=True, exist_ok=True)
            ARTEFACT.write_text(json.dumps(tally, indent=1))
            # the service still answers
            async with http.get(base_url(city) + "/api/agents", headers=admin_headers(city)) as r:
                assert r.status == 200
    # nor did anything fail behind the answers (a write-behind, a background task)
    faults = [e for e in logs if e.get("log_level") in ("error", "critical") and "exc_info" in e]
    faults += [e for e in logs if e["event"] in ("write_behind_failed", "write_behind_not_saved")]
    assert not faults, faults[:5]


async def _prepare(city: CityLine, http: aiohttp.ClientSession) -> Api:
    """Accounts to act as, a call record and a case to point at."""
    await create_account(city, http, AGENT, password=PASSWORD)
    await create_account(city, http, SUPERVISOR, role="supervisor", password=PASSWORD)
    assert city.records is not None
    await city.records.arrived(
        KNOWN_CALL, asterisk_uniqueid="1700000000.1", caller_number="48221234567", at=utcnow()
    )
    async with http.post(
        base_url(city) + "/api/cases",
        json={"service_group": "roads", "description": "fuzz target", "address": "Długa 1"},
        headers=admin_headers(city),
    ) as r:
        assert r.status == 201, await r.text()
        case_id = int((await r.json())["id"])
    api = Api(city, http, {"admin": city.admin_token}, case_id, KNOWN_CALL)
    await api.refresh()
    return api


# -- what requests are made of --------------------------------------------------------------


def encode(text: str) -> str:
    """Percent-encode every byte, lone surrogates included (as their UTF-8-like bytes)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def on_the_wire(text: str) -> str:
    """Percent-encode what may not appear raw in a request line (non-ASCII, space, controls, #
    and ?), keeping the rest, odd % sequences included, as it is: the server's own parser
    refuses raw bytes before the application sees them (those are tried on a raw socket)."""
    return "".join(
        c if c.isascii() and c.isprintable() and c not in " #?" else encode(c) for c in text
    )


_any_text = st.text(max_size=24)  # any code point, NUL and lone surrogates included
ODD_IDS = [
    "0", "1", "-1", "01", "+1", " 1", "1 ", "1.5", "1e3", "0x10", "NaN", "inf", "null", "true",
    "9223372036854775807", "9223372036854775808", "18446744073709551616", "-9223372036854775809",
    "１２３", "٣", "²", "𝟙", "00000000000000000001", "", " ", "..", "../..", "%2e%2e",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%2f..%2f", "%00", "%ff", "%C0%AF", "%ED%A0%80", "%",
    "%2", "%zz", "%F0%9F%92%A9", "💩", "a" * 300, "x;y", "x?y", "x#y", "%23", "%3F", "%2F",
    "6f1c1d2e-8a8f-4c4e-9a53-111111111111", "{6f1c1d2e-8a8f-4c4e-9a53-111111111111}",
    "urn:uuid:6f1c1d2e-8a8f-4c4e-9a53-111111111111", "6F1C1D2E8A8F4C4E9A53111111111111",
    "pothole", "street_light_out", "fz-agent", "FZ-AGENT", "fz-boss", "admin",
]  # fmt: skip
path_id = st.one_of(
    st.sampled_from(ODD_IDS).map(on_the_wire),
    st.integers(-(2**80), 2**80).map(str),
    st.integers(19, 6000).map(lambda n: "9" * n),  # ids beyond int64, 5,000-digit ones
    _any_text.map(encode),
    st.text(st.characters(categories=["Nd"]), min_size=1, max_size=6).map(encode),  # any script
    st.uuids().map(str),
)
ID_ROUTES = [
    "/api/cases/{}", "/api/cases/{}/calls", "/api/calls/{}", "/api/calls/{}/recording",
    "/api/acd/calls/{}/why", "/api/agents/{}/state", "/api/agents/{}/listen",
    "/open311/v2/services/{}.json", "/static/common/{}", "/static/desk/{}", "/vendor/{}",
    "/static/wallboard/{}", "/api/{}", "/{}",
]  # fmt: skip
PLAIN_ROUTES = [
    ("POST", "/api/agents"), ("GET", "/api/agents"), ("POST", "/api/login"),
    ("POST", "/api/logout"), ("GET", "/api/me"), ("GET", "/api/me/sip"),
    ("POST", "/api/me/state"), ("GET", "/api/transfer-targets"), ("POST", "/api/cases"),
    ("GET", "/api/cases/nearby"), ("GET", "/api/calls"), ("GET", "/api/wallboard"),
    ("GET", "/open311/v2/services.json"), ("GET", "/healthz"), ("GET", "/desk"),
    ("GET", "/wallboard"), ("GET", "/"), ("GET", "/ws/agent"), ("GET", "/ws/wallboard"),
]  # fmt: skip
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
WHO = ["none", "bad", "agent", "supervisor", "admin"]
odd_token = st.one_of(
    st.sampled_from(["", " ", "Bearer", "null", "0" * 64, "x" * 5000, "ünïcödé", "a\tb"]),
    st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=40),
)

# JSON values of every kind, odd ones weighted in: huge numbers, NaN, NUL and surrogates.
ODD_SCALARS = [
    None, True, False, 0, -1, 2**63, -(2**63) - 1, 10**400, 1e308, float("nan"),
    float("inf"), -0.0, "", " ", "\x00", "\ud800", "a\x00b", "\udfff", "１２３", "🙂" * 50,
    "x" * 5000, "ready", "paused", "listen", "whisper", "agent", "supervisor", "admin",
    "roads", "pothole", "street_light_out", "lang:pl", "6f1c1d2e-8a8f-4c4e-9a53-111111111111",
]  # fmt: skip
json_scalar = st.one_of(
    st.sampled_from(ODD_SCALARS),
    st.integers(),
    st.floats(),
    _any_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_any_text, inner, max_size=4),
    max_leaves=12,
)
BODY_FIELDS = {
    "/api/agents": ["name", "password", "display_name", "role", "skills"],
    "/api/login": ["name", "password", "roles"],
    "/api/me/state": ["state", "reason"],
    "/api/cases": [
        "call_id",
        "service_code",
        "service_group",
        "description",
        "address",
        "lat",
        "lon",
        "attributes",
        "caller_number",
    ],
    "/api/cases/{}/calls": ["call_id"],
    "/api/agents/{}/state": ["state", "reason"],
    "/api/agents/{}/listen": ["mode"],
}


# Values a field takes when the request is right (or nearly): with them a body gets past the
# first checks and deeper into the route, where the odd value in another field meets the store.
GOOD_VALUES: dict[str, list[Any]] = {
    "name": [AGENT, SUPERVISOR, "fz-new", "nobody", "Bad Name!", "a" * 33],
    "password": [PASSWORD, "12345678", "short"],
    "display_name": ["Ola", "Zoë", ""],
    "role": ["agent", "supervisor", "admin", "root"],
    "skills": [{"lang:pl": 5, "group:roads": 3}, {"lang:xx": 1}, {"lang:pl": 9}, {}, {"lang:pl": 2**70}],
    "roles": [["agent"], ["supervisor"], [], ["agent", 5]],
    "state": ["ready", "paused", "READY", "talking"],
    "reason": ["lunch", "", " " * 10, "x" * 300],
    "mode": ["listen", "whisper", "barge"],
    "call_id": ["6f1c1d2e-8a8f-4c4e-9a53-111111111111", "not-a-uuid", ""],
    "service_code": ["pothole", "street_light_out", "office_hours", "moon_rock", ""],
    "service_group": ["roads", "waste", "noise", "other", "moon"],
    "description": ["Lampa nie świeci", "x" * 4001],
    "address": ["Długa 1", "Marszałkowska 140", ""],
    "lat": [52.2297, -91, "52.2", None],
    "lon": [21.0122, 181, "21", None],
    "attributes": [{"size": "small"}, {"size": "enormous"}, {"pole_number": "A-12"}, {"nope": 1}],
    "caller_number": ["48221234567", "+48 22 123", "x" * 41],
}  # fmt: skip


RIGHT_BODIES: dict[str, dict[str, Any]] = {
    "/api/agents": {"name": "fz-made", "password": PASSWORD, "skills": {"lang:pl": 3}},
    "/api/login": {"name": AGENT, "password": PASSWORD},
    "/api/me/state": {"state": "paused", "reason": "lunch"},
    "/api/cases": {"service_group": "roads", "description": "Lampa nie świeci", "address": "Długa 1",
                   "call_id": str(KNOWN_CALL), "lat": 52.2297, "lon": 21.0122},
    "/api/cases/{}/calls": {"call_id": str(KNOWN_CALL)},
    "/api/agents/{}/state": {"state": "paused", "reason": "meeting"},
    "/api/agents/{}/listen": {"mode": "listen"},
}  # fmt: skip


@st.composite
def nearly_right(draw: st.DrawFn, route: str) -> dict[str, Any]:
    """A right body with one or two fields made odd, dropped, or an unknown one added."""
    body = dict(RIGHT_BODIES.get(route, {"type": "ping"}))
    names = BODY_FIELDS.get(route, ["type"])
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(names))
        how = draw(st.sampled_from(["odd", "odd", "good", "drop", "extra"]))
        if how == "odd":
            body[name] = draw(json_value)
        elif how == "good":
            body[name] = draw(st.sampled_from(GOOD_VALUES.get(name, [None])))
        elif how == "drop":
            body.pop(name, None)
        else:
            body[draw(_any_text)] = draw(json_value)
    return body


def fields_of(route: str) -> st.SearchStrategy[dict[str, Any]]:
    """An object with the route's own fields, each right, odd or missing."""
    names = BODY_FIELDS.get(route, ["type", "state", "name"])
    return st.fixed_dictionaries(
        {},
        optional={n: st.sampled_from(GOOD_VALUES.get(n, [None])) | json_value for n in names},
    )


def dump(value: Any) -> bytes:
    # NaN and Infinity as Python writes them (not JSON, but Python's reader takes them);
    # lone surrogates as \\ud800 escapes.
    return json.dumps(value).encode()


def nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth  # never closed


ODD_BODIES = [
    b"", b"null", b"[]", b"{}", b'"x"', b"1", b"{", b"}", b"\xff\xfe", b"\xef\xbb\xbf{}",
    b'{"a": 1e999999}', b'{"a": NaN}', b'{"a": "\\ud800"}', b'{"a": "\\u0000"}',
    b'{"description": "\xff"}', b"\x00" * 10, b'{"a":1}{"b":2}', b'{"a":1,}',
    b"x" * 70_000, b'{"description": "' + b"y" * 300_000 + b'"}',
]  # fmt: skip
raw_body = st.one_of(
    st.builds(
        nested,
        st.sampled_from([33, 100, 1000, 30_000, 60_000]),
        st.sampled_from(["list", "object", "open"]),
    ),
    st.integers(4_000, 6_000).map(lambda n: b'{"lat": ' + b"1" * n + b', "lon": 1}'),
    st.integers(4_000, 6_000).map(lambda n: b'{"name": -' + b"9" * n + b"}"),
    st.sampled_from(ODD_BODIES),
    st.binary(max_size=200),
)
CONTENT_TYPES = [
    "application/json", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/json; charset=latin-1", "",
]  # fmt: skip


def body_for(route: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        nearly_right(route).map(dump),
        nearly_right(route).map(dump),
        fields_of(route).map(dump),
        json_value.map(dump),
        raw_body,
    )


QUERY_KEYS = ["limit", "lang", "service_code", "address", "lat", "lon", "token", "x", ""]
QUERY_VALUES = [
    "pl",
    "en",
    "PL",
    "pothole",
    "52.2",
    "21.0",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "１２",
    "500",
    "0",
    "501",
]
query_value = st.one_of(
    st.sampled_from(ODD_IDS + QUERY_VALUES).map(on_the_wire),
    _any_text.map(encode),
    st.integers(19, 6000).map(lambda n: "9" * n),
)
query = st.one_of(
    st.lists(st.tuples(st.sampled_from(QUERY_KEYS), query_value), max_size=5).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
    ),
    st.sampled_from(["", "&&&", "=", "a=%ZZ", "%", "token", "token=", "lat=1&lat=2", ";", "?"]),
)


@st.composite
def request(draw: st.DrawFn) -> tuple[str, str, bytes | None, dict[str, str], str]:
    """(method, target, body, extra headers, who)."""
    if draw(st.booleans()):
        method, path = draw(st.sampled_from(PLAIN_ROUTES))
        template = path
    else:
        template = draw(st.sampled_from(ID_ROUTES))
        path = template.format(draw(path_id))
        method = "POST" if template in BODY_FIELDS else "GET"
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(METHODS))
    if draw(st.booleans()):
        path += "?" + draw(query)
    body = draw(body_for(template)) if method in ("POST", "PUT", "PATCH") else None
    headers = {"Content-Type": draw(st.sampled_from(CONTENT_TYPES))} if body is not None else {}
    return method, path, body, headers, draw(st.sampled_from(WHO))


async def send(
    api: Api, test: str, req: tuple[str, str, bytes | None, dict[str, str], str]
) -> None:
    method, target, body, headers, who = req
    headers = {**headers, **api.auth(who)}
    if who == "bad":
        headers["Authorization"] = "Bearer not-a-session"
    await api.send(test, method, target, body=body, headers=headers)


# -- the suites -------------------------------------------------------------------------------


@given(req=request())
@fuzz_settings(4000)
async def test_any_request_to_any_route(api: Api, req: Any) -> None:
    if api.has_time("any", 0.35):
        await send(api, "any", req)


@given(template=st.sampled_from(ID_ROUTES), ident=path_id, who=st.sampled_from(WHO))
@fuzz_settings(2500)
async def test_ids_of_every_shape(api: Api, template: str, ident: str, who: str) -> None:
    if api.has_time("ids", 0.2):
        method = "POST" if template in BODY_FIELDS else "GET"
        body = b'{"call_id": "%s", "state": "ready", "mode": "listen"}' % str(api.call_id).encode()
        if method != "POST":
            body = None
        await api.send("ids", method, template.format(ident), body=body, headers=api.auth(who))


BODY_ROUTES = sorted(BODY_FIELDS)


@given(route=st.sampled_from(BODY_ROUTES), who=st.sampled_from(WHO), data=st.data())
@fuzz_settings(3000)
async def test_bodies_of_every_shape(api: Api, route: str, who: str, data: st.DataObject) -> None:
    # drawn whether or not time is left: hypothesis needs every example to draw alike
    body = data.draw(body_for(route))
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    if api.has_time("bodies", 0.3):
        target = route.format(api.case_id if "cases" in route else AGENT)
        headers = {**api.auth(who), "Content-Type": content_type}
        await api.send("bodies", "POST", target, body=body, headers=headers)


QUERY_ROUTES = [
    "/api/cases/nearby", "/api/calls", "/open311/v2/services.json", "/api/wallboard", "/api/me",
    "/healthz",
]  # fmt: skip


@given(
    path=st.sampled_from(QUERY_ROUTES),
    q=query,
    who=st.sampled_from(WHO),
)
@fuzz_settings(1000)
async def test_query_strings(api: Api, path: str, q: str, who: str) -> None:
    if api.has_time("queries", 0.08):
        await api.send("queries", "GET", f"{path}?{q}", headers=api.auth(who))


@given(
    path=st.sampled_from(
        ["/api/me", "/api/agents", "/api/calls", "/api/cases/1", "/api/wallboard"]
    ),
    scheme=st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer  "]),
    token=odd_token,
    in_query=st.booleans(),
)
@fuzz_settings(600)
async def test_tokens_of_every_shape(
    api: Api, path: str, scheme: str, token: str, in_query: bool
) -> None:
    if api.has_time("tokens", 0.07):
        if in_query:
            await api.send("tokens", "GET", f"{path}?token={encode(token)}")
        else:
            await api.send("tokens", "GET", path, headers={"Authorization": scheme + token})


# -- bytes no HTTP client would send: straight to the socket ----------------------------------

RAW_TARGETS = [
    b"/api/cases/\xff", b"/api/calls/\xed\xa0\x80", b"/api/agents/\xc3\xa9/state",
    b"/open311/v2/services/\x80.json", b"/api/me?token=\xff\xfe", b"/api/cases/1",
]  # fmt: skip


@given(
    target=st.sampled_from(RAW_TARGETS),
    token=st.sampled_from([b"\xff\xfe", b"\xed\xa0\x80", b"abc\x80", b"\xc3\xa9", b"ok"]),
    method=st.sampled_from([b"GET", b"POST"]),
)
@fuzz_settings(150)
async def test_raw_bytes_in_path_and_headers(
    api: Api, target: bytes, token: bytes, method: bytes
) -> None:
    if not api.has_time("raw", 0.02):
        return
    port = api.city.http_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        body = b'{"state": "ready"}' if method == b"POST" else b""
        writer.write(
            method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Authorization: Bearer " + token + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    api.counts["raw"] += 1
    status = int(answer.split(b" ", 2)[1])
    api.statuses[status] += 1
    assert status < 500, (method, target, token, answer[:300])
