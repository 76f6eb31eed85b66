"""The aiohttp application: every capability's routes, JSON errors, request logging."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web

from web.kit import ERROR_IDS, ApiError, domain_status, unavailable_error

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
        unavailable = unavailable_error(request.app, exc)
        if unavailable is not None:
            log.warning("http_unavailable", method=request.method, path=request.path,
                        error=repr(exc))  # fmt: skip
            return _refused(request, unavailable)
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


COMMON_STATIC = Path(__file__).resolve().parent / "static"  # shared by every page


def add_page(app: web.Application, path: str, html: Path, static_prefix: str) -> None:
    """A page of a folder: its HTML at `path`, its scripts and styles under `static_prefix`."""
    app.router.add_get(path, _serve_file(html))
    app.router.add_static(static_prefix, html.parent)


def setup_pages(app: web.Application, vendor_dir: Path) -> None:
    """What every page shares: the start page, the common scripts, the npm libraries
    (scripts/setup.sh bundles them into vendor_dir; no CDN)."""

    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/desk")

    app.router.add_get("/", home)
    app.router.add_static("/static/common", COMMON_STATIC)
    if vendor_dir.is_dir():
        app.router.add_static("/vendor", vendor_dir)
    else:
        log.error("page_libraries_missing", dir=str(vendor_dir), fix="run scripts/setup.sh")


def _serve_file(path: Path) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path)

    return serve


def create_app() -> web.Application:
    """The application every folder's setup() adds its routes to."""
    return web.Application(middlewares=[json_errors, page_headers], client_max_size=256 * 1024)
