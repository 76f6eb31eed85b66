"""Open311 GeoReport v2 read endpoints: the services list and service definitions.

Public, without authentication, like the service lists of real Open311 servers: they say
only what a resident may report. Served from the ``services`` table, so they show what the
server has synced, not whatever services.json on disk says now.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from cases.services import LANGUAGES, to_open311, to_open311_definition
from cases.services_store import get_service, list_services, row_to_service
from web.kit import json_error, path_text, to_json

SERVICES_POOL: web.AppKey[asyncpg.Pool] = web.AppKey("services_pool", asyncpg.Pool)
DEFAULT_LANGUAGE = LANGUAGES[0]

routes = web.RouteTableDef()


def _language(request: web.Request) -> str:
    language = request.query.get("lang", DEFAULT_LANGUAGE)
    if language not in LANGUAGES:
        raise json_error(400, f"lang must be one of {list(LANGUAGES)}")
    return language


@routes.get("/open311/v2/services.json")
async def services_list(request: web.Request) -> web.Response:
    language = _language(request)
    rows = await list_services(request.app[SERVICES_POOL])
    return to_json([to_open311(row_to_service(row), language) for row in rows])


@routes.get("/open311/v2/services/{code}.json")
async def service_definition(request: web.Request) -> web.Response:
    language = _language(request)
    code = path_text(request.match_info["code"], "service code", max_len=100)
    row = await get_service(request.app[SERVICES_POOL], code)
    if row is None:
        raise json_error(404, f"no service {code}")
    return to_json(to_open311_definition(row_to_service(row), language))


def setup(app: web.Application, *, pool: asyncpg.Pool) -> None:
    app.add_routes(routes)
    app[SERVICES_POOL] = pool
