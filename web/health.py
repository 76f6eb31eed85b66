"""GET /healthz: is each part of the service working, in words an operator can act on.

Each folder registers a check (a name and a function returning its view, with "ok"); the
answer is 200 when every check is ok, else 503, so a load balancer or a monitor can tell.
No personal data is in it; it needs no log-in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

Check = Callable[[], Awaitable[dict[str, Any]]]
CHECKS: web.AppKey[dict[str, Check]] = web.AppKey("health_checks")


def add_check(app: web.Application, name: str, check: Check) -> None:
    app.setdefault(CHECKS, {})[name] = check


async def healthz(request: web.Request) -> web.Response:
    parts: dict[str, dict[str, Any]] = {}
    for name, check in request.app.get(CHECKS, {}).items():
        try:
            parts[name] = await check()
        except Exception as exc:  # a check that fails is a part that is not ok
            log.warning("health_check_failed", check=name, error=str(exc))
            parts[name] = {"ok": False, "problem": str(exc) or type(exc).__name__}
    ok = all(part.get("ok") for part in parts.values())
    return web.json_response({"ok": ok, "parts": parts}, status=200 if ok else 503)


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
