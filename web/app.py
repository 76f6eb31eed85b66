"""The aiohttp application: every capability's routes, JSON errors, request logging."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web

from web.kit import ERROR_IDS, ApiError, domain_status

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON with a clear message; an unexpected one is logged, not fatal."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _refused(request, exc)
    except web.HTTPException as exc:
        if exc.content_type != "application/json" and exc.status >= 400:
            exc.text = json.dumps({"error": exc.reason, "error_id": ERROR_IDS.get(exc.status)})
            exc.content_type = "application/json"
        if exc.status >= 400:
            log.info("http_rejected", method=request.method, path=request.path, status=exc.status)
        raise
    except Exception as exc:
        status = domain_status(request.app, exc)
        if status is not None:
            return _refused(request, ApiError(status, str(exc)))
        log.exception("http_handler_failed", method=request.method, path=request.path)
        return web.json_response(
            {"error": "internal error; it has been logged", "error_id": "internal"}, status=500
        )


def _refused(request: web.Request, exc: ApiError) -> web.Response:
    log.info("http_rejected", method=request.method, path=request.path, status=exc.status,
             error_id=exc.error_id, error=exc.message)  # fmt: skip
    return web.json_response(exc.body(), status=exc.status, headers=exc.headers)


@web.middleware
async def page_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages and their scripts: always revalidated, never framed, no third-party content."""
    response = await handler(request)
    if not request.path.startswith(("/api/", "/ws/")):
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # connect-src: the page's own WebSockets plus the PBX's (the softphone registers there).
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws://127.0.0.1:* ws://localhost:*; "
            "media-src 'self' blob:; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
        )
    return response


# The pages: each capability keeps its own static folder; libraries from npm come from
# build/web (scripts/setup.sh bundles them there).
PAGES = {
    "/desk": Path(__file__).resolve().parent.parent / "agent_client" / "static" / "desk.html",
    "/wallboard": Path(__file__).resolve().parent.parent / "acd" / "static" / "wallboard.html",
}
STATIC_DIRS = {
    "/static/common": Path(__file__).resolve().parent.parent / "cityline" / "static",
    "/static/desk": PAGES["/desk"].parent,
    "/static/wallboard": PAGES["/wallboard"].parent,
}


def setup_pages(app: web.Application, vendor_dir: Path) -> None:
    routes = web.RouteTableDef()

    @routes.get("/")
    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/desk")

    for path, page in PAGES.items():
        routes.get(path)(_serve_file(page))
    for prefix, folder in STATIC_DIRS.items():
        routes.static(prefix, folder)
    if vendor_dir.is_dir():
        routes.static("/vendor", vendor_dir)
    else:
        log.error("page_libraries_missing", dir=str(vendor_dir), fix="run scripts/setup.sh")
    app.add_routes(routes)


def _serve_file(path: Path) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path)

    return serve


def create_app() -> web.Application:
    """The application every folder's setup() adds its routes to."""
    return web.Application(middlewares=[json_errors, page_headers], client_max_size=256 * 1024)
