"""What every folder's routes share: who is asking, reading a request safely, JSON replies
and errors."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Principal:
    """Who is asking: 'admin' (the service's admin token), 'supervisor' or 'agent'."""

    name: str
    role: str


Authenticate = Callable[[web.Request], Awaitable[Principal]]
AUTHENTICATE: web.AppKey[Authenticate] = web.AppKey("authenticate")

# A stable, machine-readable id per status; a route may give a more precise one.
ERROR_IDS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """A request refused: its HTTP status, a stable error id and a message for people.

    Raised anywhere below a route; the one middleware (web/app.py) turns it into the reply
    {"error": message, "error_id": id, ...}, and a WebSocket turns it into an error message.
    """

    def __init__(
        self, status: int, message: str, *, error_id: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_id = error_id or ERROR_IDS.get(status, "error")
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "error_id": self.error_id, **self.extra}


def json_error(status: int, message: str, **extra: Any) -> ApiError:
    return ApiError(status, message, **extra)


# Errors of the folders' own logic (no HTTP in them) -> the status they mean at the edge.
# Each folder's setup() registers its own; routes that mean something else catch them.
DOMAIN_ERRORS: web.AppKey[dict[type[Exception], int]] = web.AppKey("domain_errors")


def map_errors(app: web.Application, statuses: Mapping[type[Exception], int]) -> None:
    app.setdefault(DOMAIN_ERRORS, {}).update(statuses)


def domain_status(app: web.Application, exc: Exception) -> int | None:
    for kind, status in app.get(DOMAIN_ERRORS, {}).items():
        if isinstance(exc, kind):
            return status
    return None


# Errors that mean "something this request needs is down or not answering" (the database):
# 503 with a clear message and Retry-After, never 500. Registered by the wiring.
UNAVAILABLE: web.AppKey[list[tuple[tuple[type[BaseException], ...], str]]] = web.AppKey(
    "unavailable"
)
RETRY_AFTER_SECONDS = 5


def map_unavailable(
    app: web.Application, kinds: tuple[type[BaseException], ...], message: str
) -> None:
    app.setdefault(UNAVAILABLE, []).append((kinds, message))


def unavailable_error(app: web.Application, exc: BaseException) -> ApiError | None:
    for kinds, message in app.get(UNAVAILABLE, []):
        if isinstance(exc, kinds):
            error = ApiError(503, message, retry_after_seconds=RETRY_AFTER_SECONDS)
            error.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return error
    return None


async def read_object(request: web.Request, max_bytes: int = 64 * 1024) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > max_bytes:
        raise json_error(413, f"body larger than {max_bytes} bytes")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise json_error(413, f"body larger than {max_bytes} bytes")
    return parse_json_object(raw or b"null", what="body")


# Deeper than any request of ours: a bound, so nesting cannot exhaust the stack.
MAX_JSON_DEPTH = 32
# Text PostgreSQL cannot store (NUL) or that is not Unicode text (lone surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def parse_json_object(raw: bytes | str, *, what: str = "message") -> dict[str, Any]:
    """A JSON object from a client, checked for what would fail deeper down: too deep, numbers
    too long to read, text that cannot be stored. Anything else is an ApiError (400)."""
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise json_error(400, f"{what} is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, integers over 4,300 digits
        raise json_error(400, f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise json_error(400, f"{what} must be a JSON object")
    problem = _unclean(body, MAX_JSON_DEPTH)
    if problem:
        raise json_error(400, f"{what}: {problem}")
    return body


def _unclean(value: Any, depth: int) -> str | None:
    """Why a parsed JSON value cannot be taken ("" or None when it can)."""
    if depth <= 0:
        return f"nested deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, str):
        return "text with NUL or invalid characters" if _UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        problem = _unclean(item, depth - 1)
        if problem:
            return problem
    return None


def whole_number(text: str, name: str, *, maximum: int = 2**63 - 1) -> int:
    """A non-negative id or count written in ASCII digits (not "１２", not 5,000 digits)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > maximum:
        raise json_error(400, f"{name} must be a whole number up to {maximum}")
    return int(text)


def text_field(
    body: dict[str, Any], name: str, *, max_len: int = 200, required: bool = True
) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise json_error(400, f"{name}: a non-empty string is required")
    if len(value) > max_len:
        raise json_error(400, f"{name}: at most {max_len} characters")
    if _UNSTORABLE.search(value):
        raise json_error(400, f"{name}: text with NUL or invalid characters")
    return value.strip()


def path_text(value: str, name: str, *, max_len: int = 200) -> str:
    """A name taken from a path or query string (a code, a key): at most `max_len` characters
    and none that PostgreSQL cannot store, else 400 (a NUL reaching a query is a 500)."""
    if len(value) > max_len or _UNSTORABLE.search(value):
        raise json_error(400, f"{name}: at most {max_len} characters, no NUL or invalid ones")
    return value


def parse_uuid(value: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise json_error(400, f"{name}: not a valid id") from exc


async def principal(request: web.Request, *roles: str) -> Principal:
    who = await request.app[AUTHENTICATE](request)
    if roles and who.role not in roles:
        raise json_error(403, f"needs one of the roles {list(roles)}")
    return who


def to_json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def location_field(body: Mapping[str, Any]) -> tuple[float, float] | None:
    """Optional "lat"/"lon" (WGS84 degrees): both or neither."""
    lat, lon = body.get("lat"), body.get("lon")
    if lat in (None, "") and lon in (None, ""):
        return None
    try:
        point = (float(lat), float(lon))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise json_error(400, "lat/lon: two numbers (degrees) are required together") from exc
    if not (-90 <= point[0] <= 90 and -180 <= point[1] <= 180) or any(map(math.isnan, point)):
        raise json_error(400, "lat/lon: outside the globe")
    return point
