"""The aiohttp application: every capability's routes, JSON errors, request logging."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON with a clear message; an unexpected one is logged, not fatal."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type != "application/json" and exc.status >= 400:
            exc.text = json.dumps({"error": exc.reason})
            exc.content_type = "application/json"
        if exc.status >= 400:
            log.info("http_rejected", method=request.method, path=request.path, status=exc.status)
        raise
    except Exception:
        log.exception("http_handler_failed", method=request.method, path=request.path)
        return web.json_response({"error": "internal error; it has been logged"}, status=500)


def build_app(route_tables: list[web.RouteTableDef]) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=256 * 1024)
    for table in route_tables:
        app.add_routes(table)
    return app
