"""The aiohttp application: every capability's routes, JSON errors, request logging."""

from __future__ import annotations

import asyncio
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
    except ConnectionResetError:
        # The client went away mid-request (closed tab, timeout): nothing to answer, no fault.
        log.info("http_client_gone", method=request.method, path=request.path)
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


# Every answer: never sniffed, never framed, no referrer leaks the page's address.
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# API answers carry personal data: never cached, never run as a document.
API_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# Pages and their scripts: always revalidated, no third-party content. connect-src: the
# page's own WebSockets plus the PBX's (the softphone registers there).
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws://127.0.0.1:* ws://localhost:*; "
        "media-src 'self' blob:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'"
    ),
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Set on every response as it is sent, errors and files included."""
    api = request.path.startswith(("/api/", "/ws/", "/open311/", "/healthz"))
    for name, value in {**COMMON_HEADERS, **(API_HEADERS if api else PAGE_HEADERS)}.items():
        response.headers.setdefault(name, value)


COMMON_STATIC = Path(__file__).resolve().parent / "static"  # shared by every page


def add_page(app: web.Application, path: str, html: Path, static_prefix: str) -> None:
    """A page of a folder: its HTML at `path`, its scripts and styles under `static_prefix`."""
    app.router.add_get(path, _serve_file(html))
    add_files(app, static_prefix, html.parent)


def add_files(app: web.Application, prefix: str, directory: Path) -> None:
    """The files in `directory` (and below it) under `prefix`.

    Not aiohttp's add_static: since aiohttp 3.10 its 404 and 403 are decided while the answer is
    sent, so they leave as empty octet-streams that no middleware can turn into a JSON error.
    Here a name that is not a file inside `directory` (traversal, a link out, NUL, bytes that are
    no file name) is a 404 before any answer is made.
    """
    root = directory.resolve()

    async def serve(request: web.Request) -> web.StreamResponse:
        path = await asyncio.to_thread(_file_inside, root, request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app.router.add_get(prefix.rstrip("/") + "/{name:.+}", serve)


def _file_inside(root: Path, name: str) -> Path | None:
    try:
        path = (root / name).resolve()
        path.relative_to(root)
        return path if path.is_file() else None
    except (ValueError, OSError):  # outside root, NUL, surrogates, a name too long
        return None


def setup_pages(app: web.Application, vendor_dir: Path) -> None:
    """What every page shares: the start page, the common scripts, the npm libraries
    (scripts/setup.sh bundles them into vendor_dir; no CDN)."""

    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/desk")

    app.router.add_get("/", home)
    add_files(app, "/static/common", COMMON_STATIC)
    if vendor_dir.is_dir():
        add_files(app, "/vendor", vendor_dir)
    else:
        log.error("page_libraries_missing", dir=str(vendor_dir), fix="run scripts/setup.sh")


def _serve_file(path: Path) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path)

    return serve


def create_app() -> web.Application:
    """The application every folder's setup() adds its routes to."""
    app = web.Application(middlewares=[json_errors], client_max_size=256 * 1024)
    app.on_response_prepare.append(security_headers)
    return app
